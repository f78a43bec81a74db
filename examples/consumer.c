/* SPDX-License-Identifier: MIT */
/*
 * Consumer: creates the ring, receives --count sequence-numbered elements, checks that none is
 * lost, duplicated or reordered, and prints the rate. Run examples/producer beside it.
 *
 * It claims the consumer role and receives with the blocking calls, as a real consumer would:
 * they spin briefly, then sleep on the ring's futex, and say -EPIPE once the producer has gone
 * (died or closed) and everything it sent has been received, so a killed producer ends the
 * demo at once with a message rather than with a timeout. Where there is no /proc to claim a
 * role through, it receives without one: then only the deadline notices a dead producer.
 */
#include <errno.h>
#include <shmring/shmring.h>

#include "common.h"

int main(int argc, char **argv)
{
	struct ex_args a;
	struct shmring *r;
	int rc;

	if (ex_parse(argc, argv, &a))
		return 2;
	struct shmring_params p = {.kind = SHMRING_SPSC,
				   .elem_size = a.elem_size,
				   .capacity = a.capacity,
				   .flags = SHMRING_F_PREFAULT};
	rc = shmring_create(a.name, &p, &r);
	if (rc) {
		fprintf(stderr, "consumer: create %s: %s\n", a.name, shmring_strerror(rc));
		return 1;
	}

	unsigned char *buf = malloc((size_t)a.elem_size * a.burst);
	uint64_t next = 0;
	double t0 = 0;

	if (!buf) {
		rc = -ENOMEM;
		goto out;
	}
	rc = shmring_claim(r, SHMRING_F_CONSUMER);
	if (rc && rc != -EOPNOTSUPP) {
		fprintf(stderr, "consumer: claim: %s\n", shmring_strerror(rc));
		goto out;
	}
	while (next < a.count) {
		struct timespec dl = ex_deadline(EX_PATIENCE);
		rc = shmring_spsc_pop_burst_wait(r, buf, a.burst, &dl);
		if (rc < 0) { /* the exit status says so: demo.sh stops on it */
			if (rc == -EPIPE)
				fprintf(stderr,
					"consumer: the producer went away after %llu of %llu "
					"elements\n",
					(unsigned long long)next, (unsigned long long)a.count);
			else if (rc == -ETIMEDOUT)
				fprintf(stderr, "consumer: nothing for %d s after %llu elements\n",
					EX_PATIENCE, (unsigned long long)next);
			else
				fprintf(stderr, "consumer: %s\n", shmring_strerror(rc));
			goto out;
		}
		if (next == 0)
			t0 = ex_now();
		for (int i = 0; i < rc; i++, next++) {
			uint64_t seq;

			memcpy(&seq, buf + (size_t)i * a.elem_size, sizeof(seq));
			if (seq != next) {
				fprintf(stderr, "consumer: expected %llu, got %llu\n",
					(unsigned long long)next, (unsigned long long)seq);
				rc = -EPROTO;
				goto out;
			}
		}
	}
	double dt = ex_now() - t0;
	printf("spsc  elem %5u B  burst %3u  %12llu msgs  %8.2f M msgs/s  %9.1f MB/s  no loss, "
	       "no reordering\n",
	       a.elem_size, a.burst, (unsigned long long)a.count, (double)a.count / dt / 1e6,
	       (double)a.count * a.elem_size / dt / 1e6);
	rc = 0;
out:
	free(buf);
	shmring_close(r);
	shmring_unlink(a.name);
	return rc ? 1 : 0;
}

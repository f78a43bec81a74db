/* SPDX-License-Identifier: MIT */
/*
 * Producer: opens the ring the consumer created (waiting for it to appear), then sends --count
 * sequence-numbered elements of --elem bytes, --burst at a time. It claims the producer role and
 * sends with the blocking calls: a consumer that has gone (died or closed) makes them say
 * -EPIPE instead of waiting for room that will never come (without /proc, no role: then the
 * deadline does).
 */
#include <errno.h>
#include <shmring/shmring.h>
#include <unistd.h>

#include "common.h"

int main(int argc, char **argv)
{
	struct ex_args a;
	struct shmring *r = NULL;
	int rc;

	if (ex_parse(argc, argv, &a))
		return 2;
	struct shmring_params p = {.kind = SHMRING_SPSC, .elem_size = a.elem_size};
	for (int tries = 0; tries < 5000; tries++) {
		rc = shmring_open(a.name, &p, &r);
		if (rc != -ENOENT)
			break;
		usleep(1000); /* the consumer has not created it yet */
	}
	if (rc) {
		fprintf(stderr, "producer: open %s: %s\n", a.name, shmring_strerror(rc));
		return 1;
	}
	rc = shmring_claim(r, SHMRING_F_PRODUCER);
	if (rc && rc != -EOPNOTSUPP) {
		fprintf(stderr, "producer: claim: %s\n", shmring_strerror(rc));
		shmring_close(r);
		return 1;
	}

	unsigned char *buf = calloc(a.burst, a.elem_size);
	uint64_t seq = 0;

	if (!buf)
		return 1;
	while (seq < a.count) {
		unsigned n = a.count - seq < a.burst ? (unsigned)(a.count - seq) : a.burst;

		for (unsigned i = 0; i < n; i++) {
			uint64_t s = seq + i;
			memcpy(buf + (size_t)i * a.elem_size, &s, sizeof(s));
		}
		struct timespec dl = ex_deadline(EX_PATIENCE);
		rc = shmring_spsc_push_burst_wait(r, buf, n, &dl);
		if (rc < 0) {
			if (rc == -EPIPE)
				fprintf(stderr,
					"producer: the consumer went away after %llu elements\n",
					(unsigned long long)seq);
			else
				fprintf(stderr, "producer: %s\n", shmring_strerror(rc));
			break;
		}
		seq += (unsigned)rc;
	}
	free(buf);
	shmring_close(r);
	return rc < 0 ? 1 : 0;
}

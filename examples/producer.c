/* SPDX-License-Identifier: MIT */
/*
 * Producer: opens the ring the consumer created (waiting for it to appear), then sends --count
 * sequence-numbered elements of --elem bytes, --burst at a time.
 */
#include <errno.h>
#include <sched.h>
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
		rc = shmring_spsc_push_burst(r, buf, n);
		if (rc == -EAGAIN) {
			sched_yield();
			continue;
		}
		if (rc < 0) {
			fprintf(stderr, "producer: %s\n", shmring_strerror(rc));
			break;
		}
		seq += (unsigned)rc;
	}
	free(buf);
	shmring_close(r);
	return rc < 0 ? 1 : 0;
}

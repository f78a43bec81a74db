/* SPDX-License-Identifier: MIT */
/* Argument parsing shared by the two example programs. */
#ifndef SHMRING_EXAMPLES_COMMON_H
#define SHMRING_EXAMPLES_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct ex_args {
	const char *name;   /* POSIX shm name of the ring */
	uint64_t count;	    /* messages to send or expect */
	uint32_t elem_size; /* bytes per message, >= 8 (the first 8 carry the sequence number) */
	uint64_t capacity;  /* ring capacity in elements */
	unsigned burst;	    /* elements per call */
};

static inline int ex_parse(int argc, char **argv, struct ex_args *a)
{
	*a = (struct ex_args){"/shmring-example", 10000000, 64, 4096, 32};
	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--name"))
			a->name = argv[i + 1];
		else if (!strcmp(argv[i], "--count"))
			a->count = strtoull(argv[i + 1], NULL, 0);
		else if (!strcmp(argv[i], "--elem"))
			a->elem_size = (uint32_t)strtoul(argv[i + 1], NULL, 0);
		else if (!strcmp(argv[i], "--capacity"))
			a->capacity = strtoull(argv[i + 1], NULL, 0);
		else if (!strcmp(argv[i], "--burst"))
			a->burst = (unsigned)strtoul(argv[i + 1], NULL, 0);
		else
			goto usage;
	}
	if ((argc - 1) % 2 || a->elem_size < 8 || a->burst == 0 || a->burst > 1024)
		goto usage;
	return 0;
usage:
	fprintf(stderr,
		"usage: %s [--name /shm-name] [--count N] [--elem BYTES>=8] [--capacity POW2] "
		"[--burst 1..1024]\n",
		argv[0]);
	return -1;
}

/* Deadline for one blocking call: this many seconds from now (CLOCK_MONOTONIC). */
static inline struct timespec ex_deadline(int seconds)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += seconds;
	return ts;
}

/* Seconds a blocking call waits for the peer before the example gives up. */
#define EX_PATIENCE 10

static inline double ex_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

#endif

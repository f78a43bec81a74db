/* SPDX-License-Identifier: MIT */
/*
 * Pinning by position in the affinity mask the program started with, not by CPU number: "CPU
 * k" of a benchmark is the k-th CPU (mod their count) that `taskset` or the cgroup allows. So
 * `taskset -c 0,8 prog` puts the two sides on CPUs 0 and 8 (two cores rather than two threads
 * of one core, on a machine that numbers its SMT siblings that way), and `taskset -c 0,1` makes
 * a 16-CPU machine oversubscribe as a 2-CPU one does.
 */
#ifndef SHMRING_BENCH_PIN_H
#define SHMRING_BENCH_PIN_H

#include <sched.h>

/*
 * The allowed CPUs, read at the first call: main calls it before it pins or starts anything,
 * so that children and threads see the list it read (a fork copies it).
 */
static inline int bench_cpus(int **list)
{
	static int cpus[CPU_SETSIZE], n;

	if (n == 0) {
		cpu_set_t s;

		if (sched_getaffinity(0, sizeof(s), &s) == 0)
			for (int c = 0; c < CPU_SETSIZE; c++)
				if (CPU_ISSET(c, &s))
					cpus[n++] = c;
		if (n == 0)
			cpus[n++] = 0;
	}
	*list = cpus;
	return n;
}

/* Pins the calling thread (or process) to the k-th allowed CPU, mod their count. */
static inline int bench_pin_nth(int k)
{
	int *cpus, n = bench_cpus(&cpus);
	cpu_set_t s;

	CPU_ZERO(&s);
	CPU_SET(cpus[k % n], &s);
	return sched_setaffinity(0, sizeof(s), &s);
}

#endif

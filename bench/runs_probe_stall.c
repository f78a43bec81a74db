/* SPDX-License-Identifier: MIT */
/*
 * The flaw of the first version of the run-claiming probe (docs/mpmc-runs.md), on purpose: three
 * producer threads push (producer, counter) elements in bursts and bulks of 1 to 40, and once in
 * 512 pushes a producer sleeps 2 ms between its claim and its copy, long enough for consumers to
 * skip its run and for the ring (64 slots) to go round. Two consumers count the elements that
 * arrive out of their producer's order; at the end the ring is drained and every element pushed
 * must have been popped once (a loss and a duplicate could cancel out: the count is a check
 * beside the order, not a proof). Built twice: runs_probe_stall, with an arena per
 * producer, and runs_probe_stall_one_arena, where the late copy lands in a run another producer
 * committed since.
 *
 * Usage: runs_probe_stall [SECONDS] [ORDER]; exit status 1 if any element arrived out of order
 * or the counts differ.
 */
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static _Thread_local unsigned seed;

#define RUNS_PROBE_STALL()                                                                         \
	do {                                                                                       \
		if (rand_r(&seed) % 512 == 0)                                                      \
			usleep(2000);                                                              \
	} while (0)

#include "runs_probe.h"

enum { NP = 3, NC = 2, MAXB = 40 };

static struct runs *q;
static _Atomic int stop;
static _Atomic uint64_t pushed, total, bad;

static void *producer(void *a)
{
	unsigned id = (unsigned)(uintptr_t)a;
	uint64_t c = 0, buf[MAXB];

	seed = id + 1; /* producer ids are 0 to NP - 1, their arenas */
	while (!atomic_load(&stop)) {
		unsigned b = 1 + (unsigned)rand_r(&seed) % MAXB;
		for (unsigned k = 0; k < b; k++)
			buf[k] = (uint64_t)id << 56 | (c + k + 1);
		unsigned got = runs_push(q, id, buf, b, rand_r(&seed) & 1);
		c += got;
		if (!got)
			sched_yield();
	}
	atomic_fetch_add(&pushed, c);
	return NULL;
}

static void *consumer(void *a)
{
	uint64_t buf[MAXB], last[NP] = {0}, n = 0, wrong = 0;
	unsigned s = (unsigned)(uintptr_t)a + 1;

	while (!atomic_load(&stop)) {
		unsigned b = 1 + (unsigned)rand_r(&s) % MAXB;
		unsigned got = runs_pop(q, buf, b, rand_r(&s) & 1);
		if (!got) {
			sched_yield();
			continue;
		}
		for (unsigned k = 0; k < got; k++) {
			uint64_t id = buf[k] >> 56, c = buf[k] & ((1ull << 56) - 1);
			if (id >= NP || c <= last[id])
				wrong++;
			else
				last[id] = c;
		}
		n += got;
	}
	atomic_fetch_add(&total, n);
	atomic_fetch_add(&bad, wrong);
	return NULL;
}

int main(int argc, char **argv)
{
	int secs = argc > 1 ? atoi(argv[1]) : 3;
	unsigned order = argc > 2 ? (unsigned)atoi(argv[2]) : 6;
	pthread_t t[NP + NC];

	if (secs < 1 || order > 20)
		return 2;
	q = aligned_alloc(128, (runs_size(order, 8, NP) + 127) / 128 * 128);
	if (!q)
		return 2;
	runs_init(q, order, 8, NP);
	for (int i = 0; i < NP + NC; i++)
		pthread_create(&t[i], NULL, i < NP ? producer : consumer, (void *)(uintptr_t)i);
	sleep((unsigned)secs);
	atomic_store(&stop, 1);
	for (int i = 0; i < NP + NC; i++)
		pthread_join(t[i], NULL);
	uint64_t buf[MAXB], left = 0;
	for (unsigned got; (got = runs_pop(q, buf, MAXB, 0)) != 0;)
		left += got;
	int ok = bad == 0 && pushed == total + left;
	printf("%s: %llu elements pushed, %llu popped and %llu left; %llu out of their producer's "
	       "order\n",
#ifdef RUNS_PROBE_ONE_ARENA
	       "one shared arena",
#else
	       "an arena per producer",
#endif
	       (unsigned long long)pushed, (unsigned long long)total, (unsigned long long)left,
	       (unsigned long long)bad);
	free(q);
	return !ok;
}

/* SPDX-License-Identifier: MIT */
/*
 * Threaded MPMC stress, for TSan: 4 producer and 4 consumer threads, each with its own handle
 * (participant record), sequence-numbered payloads. Checks no duplicate, no loss, and each
 * producer's order as each consumer sees it. Exits non-zero on failure.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <shmring/shmring.h>

#define NP 4
#define NC 4
#ifndef PER_PRODUCER
#define PER_PRODUCER 20000u
#endif

static struct shmring *ring;
static _Atomic uint64_t consumed;
static unsigned char seen[NP][PER_PRODUCER];
static _Atomic int failed;

struct payload {
	uint32_t prod, pad;
	uint64_t cnt;
};

static struct shmring *own_handle(void)
{
	size_t len;
	void *base = shmring_base(ring, &len);
	struct shmring_params e = {.kind = SHMRING_MPMC};
	struct shmring *h = NULL;
	if (shmring_attach(base, len, &e, &h) != 0)
		abort();
	return h;
}

static void *producer(void *arg)
{
	struct shmring *h = own_handle();
	struct payload p = {(uint32_t)(uintptr_t)arg, 0, 0};
	for (uint64_t c = 0; c < PER_PRODUCER;) {
		p.cnt = c;
		int rc = shmring_mpmc_push(h, &p);
		if (rc == 0)
			c++;
		else if (rc == -EAGAIN)
			sched_yield();
		else {
			atomic_store(&failed, 1);
			break;
		}
	}
	shmring_close(h);
	return NULL;
}

static void *consumer(void *arg)
{
	struct shmring *h = own_handle();
	uint64_t last[NP];
	struct payload p;
	(void)arg;
	memset(last, 0xff, sizeof(last));
	while (atomic_load(&consumed) < (uint64_t)NP * PER_PRODUCER && !atomic_load(&failed)) {
		int rc = shmring_mpmc_pop(h, &p);
		if (rc == -EAGAIN) {
			sched_yield();
			continue;
		}
		if (rc != 0 || p.prod >= NP || p.cnt >= PER_PRODUCER ||
		    (last[p.prod] != UINT64_MAX && p.cnt <= last[p.prod])) {
			fprintf(stderr, "stress_mpmc: bad element rc %d prod %u cnt %lu\n", rc,
				p.prod, (unsigned long)p.cnt);
			atomic_store(&failed, 1);
			break;
		}
		last[p.prod] = p.cnt;
		/* Each element reaches exactly one consumer: this byte has one writer. */
		seen[p.prod][p.cnt]++;
		atomic_fetch_add(&consumed, 1);
	}
	shmring_close(h);
	return NULL;
}

int main(void)
{
	struct shmring_params p = {.kind = SHMRING_MPMC, .elem_size = 16, .capacity = 64};
	pthread_t t[NP + NC];
	if (shmring_create_anon(&p, &ring) != 0)
		return 1;
	for (int i = 0; i < NP; i++)
		pthread_create(&t[i], NULL, producer, (void *)(uintptr_t)i);
	for (int i = 0; i < NC; i++)
		pthread_create(&t[NP + i], NULL, consumer, NULL);
	for (int i = 0; i < NP + NC; i++)
		pthread_join(t[i], NULL);
	int bad = atomic_load(&failed);
	for (int i = 0; i < NP; i++)
		for (unsigned c = 0; c < PER_PRODUCER; c++)
			if (seen[i][c] != 1) {
				if (!bad)
					fprintf(
					    stderr,
					    "stress_mpmc: producer %d element %u seen %d times\n",
					    i, c, seen[i][c]);
				bad = 1;
			}
	shmring_close(ring);
	printf("stress_mpmc: %s, %u elements through 4 producers and 4 consumers\n",
	       bad ? "FAILED" : "ok", NP * PER_PRODUCER);
	return bad;
}

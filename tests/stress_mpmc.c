/* SPDX-License-Identifier: MIT */
/*
 * Threaded MPMC stress, for TSan: 4 producer and 4 consumer threads, each with its own handle
 * (participant record), sequence-numbered payloads, moved one at a time, in bursts and in
 * all-or-none bulks. Checks no duplicate, no loss, and each
 * producer's order as each consumer sees it. Exits non-zero on failure. With the argument
 * "runs", the same over an SHMRING_MPMC_RUNS ring (a consumer's speculative copies and the
 * producers' arenas under TSan).
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <shmring/shmring.h>

#define NP 4
#define NC 4
#ifndef PER_PRODUCER
#define PER_PRODUCER 20000u
#endif

static struct shmring *ring;
static uint32_t kind = SHMRING_MPMC;
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
	struct shmring_params e = {.kind = kind};
	struct shmring *h = NULL;
	if (shmring_attach(base, len, &e, &h) != 0)
		abort();
	return h;
}

/* Participant i moves elements one at a time (i % 3 == 0), in bursts (1) or in all-or-none
 * bulks (2) of up to B. */
#define B 5

static void *producer(void *arg)
{
	struct shmring *h = own_handle();
	uint32_t id = (uint32_t)(uintptr_t)arg;
	struct payload p[B];
	for (uint64_t c = 0; c < PER_PRODUCER && !atomic_load(&failed);) {
		unsigned n = id % 3 == 0 ? 1 : B;
		if (n > PER_PRODUCER - c)
			n = (unsigned)(PER_PRODUCER - c);
		for (unsigned k = 0; k < n; k++)
			p[k] = (struct payload){id, 0, c + k};
		int rc = id % 3 == 0   ? (shmring_mpmc_push(h, p) == 0 ? 1 : -EAGAIN)
			 : id % 3 == 1 ? shmring_mpmc_push_burst(h, p, n)
				       : shmring_mpmc_push_bulk(h, p, n);
		if (rc > 0 && (id % 3 != 2 || rc == (int)n))
			c += (uint64_t)rc;
		else if (rc == -EAGAIN)
			sched_yield();
		else {
			fprintf(stderr, "stress_mpmc: push rc %d\n", rc);
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
	unsigned id = (unsigned)(uintptr_t)arg;
	uint64_t last[NP];
	struct payload p[B];
	memset(last, 0xff, sizeof(last));
	/* A lost element would leave the consumers waiting for it for ever: 60 s without one
	 * (the whole run takes well under a second, several under TSan) is a failure. */
	time_t stuck = time(NULL) + 60;
	while (atomic_load(&consumed) < (uint64_t)NP * PER_PRODUCER && !atomic_load(&failed)) {
		if (time(NULL) > stuck) {
			fprintf(stderr, "stress_mpmc: no element for 60 s: lost\n");
			atomic_store(&failed, 1);
			break;
		}
		int rc = id % 3 == 0   ? (shmring_mpmc_pop(h, p) == 0 ? 1 : -EAGAIN)
			 : id % 3 == 1 ? shmring_mpmc_pop_burst(h, p, B)
				       : shmring_mpmc_pop_bulk(h, p, 2);
		if (rc == -EAGAIN) {
			sched_yield();
			continue;
		}
		stuck = time(NULL) + 60;
		if (rc <= 0 || (id % 3 == 2 && rc != 2)) {
			fprintf(stderr, "stress_mpmc: pop rc %d\n", rc);
			atomic_store(&failed, 1);
			break;
		}
		for (int k = 0; k < rc; k++) {
			struct payload *q = &p[k];
			if (q->prod >= NP || q->cnt >= PER_PRODUCER ||
			    (last[q->prod] != UINT64_MAX && q->cnt <= last[q->prod])) {
				fprintf(stderr, "stress_mpmc: bad element prod %u cnt %lu\n",
					q->prod, (unsigned long)q->cnt);
				atomic_store(&failed, 1);
				break;
			}
			last[q->prod] = q->cnt;
			/* Each element reaches exactly one consumer: this byte has one writer. */
			seen[q->prod][q->cnt]++;
		}
		atomic_fetch_add(&consumed, (uint64_t)rc);
	}
	shmring_close(h);
	return NULL;
}

int main(int argc, char **argv)
{
	int runs = argc > 1 && strcmp(argv[1], "runs") == 0;
	kind = runs ? SHMRING_MPMC_RUNS : SHMRING_MPMC;
	struct shmring_params p = {
	    .kind = kind, .elem_size = 16, .capacity = 64, .producers = runs ? NP : 0};
	pthread_t t[NP + NC];
	if (shmring_create_anon(&p, &ring) != 0)
		return 1;
	for (int i = 0; i < NP; i++)
		pthread_create(&t[i], NULL, producer, (void *)(uintptr_t)i);
	for (int i = 0; i < NC; i++)
		pthread_create(&t[NP + i], NULL, consumer, (void *)(uintptr_t)i);
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
	printf("stress_mpmc%s: %s, %u elements through 4 producers and 4 consumers\n",
	       runs ? " runs" : "", bad ? "FAILED" : "ok", NP * PER_PRODUCER);
	return bad;
}

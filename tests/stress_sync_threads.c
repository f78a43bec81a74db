/* SPDX-License-Identifier: MIT */
/*
 * Threaded stress of the blocking SPSC variants (run under TSan in the sanitizer build):
 * a producer thread and a consumer thread on one anonymous ring, each with its own handle,
 * for both back-ends and for a spinning and a sleeping policy; every element checked.
 * Plain executable: exits 0 on success, prints the failure and exits 1 otherwise.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#define N 200000u

struct job {
	struct shmring *r;
	int nospin;
	int fail;
};

static void policy(struct shmring *r, int nospin)
{
	struct shmring_wait_policy p = {0};

	if (nospin) {
		p.spin_ns = UINT32_MAX;
		p.yields = UINT32_MAX;
	}
	shmring_set_wait_policy(r, &p);
}

static void *producer(void *arg)
{
	struct job *j = arg;
	uint64_t buf[16];

	policy(j->r, j->nospin);
	for (uint64_t i = 0; i < N;) {
		int rc;
		switch (i % 3) {
		case 0:
			rc = shmring_spsc_push_wait(j->r, &i, NULL) == 0 ? 1 : -1;
			break;
		case 1: {
			unsigned k = 1 + (unsigned)(i % 16);
			if (i + k > N)
				k = (unsigned)(N - i);
			for (unsigned m = 0; m < k; m++)
				buf[m] = i + m;
			rc = shmring_spsc_push_burst_wait(j->r, buf, k, NULL);
			break;
		}
		default: {
			void *slots;
			rc = shmring_spsc_reserve_wait(j->r, 4, &slots, NULL);
			if (rc > 0) {
				if ((uint64_t)rc > N - i)
					rc = (int)(N - i);
				for (int m = 0; m < rc; m++) {
					uint64_t v = i + (uint64_t)m;
					memcpy((char *)slots + 8 * m, &v, 8);
				}
				shmring_spsc_commit(j->r, (unsigned)rc);
			}
		}
		}
		if (rc <= 0) {
			j->fail = 1;
			return NULL;
		}
		i += (uint64_t)rc;
	}
	return NULL;
}

static void *consumer(void *arg)
{
	struct job *j = arg;
	uint64_t buf[16], next = 0;

	policy(j->r, j->nospin);
	while (next < N) {
		int rc;
		if (next % 2) {
			rc = shmring_spsc_pop_burst_wait(j->r, buf, 16, NULL);
		} else {
			const void *slots;
			rc = shmring_spsc_peek_wait(j->r, 8, &slots, NULL);
			if (rc > 0) {
				memcpy(buf, slots, 8 * (size_t)rc);
				shmring_spsc_release(j->r, (unsigned)rc);
			}
		}
		if (rc <= 0) {
			j->fail = 2;
			return NULL;
		}
		for (int m = 0; m < rc; m++)
			if (buf[m] != next++) {
				j->fail = 3;
				return NULL;
			}
	}
	return NULL;
}

static int run(int sem, int nospin)
{
	struct shmring_params p = tu_params(8, 64);
	struct shmring *a, *b;
	pthread_t tp, tc;

	if (sem)
		p.flags |= SHMRING_F_SEMAPHORE;
	if (shmring_create_anon(&p, &a) != 0)
		return 1;
	size_t len;
	void *base = shmring_base(a, &len);
	struct shmring_params q = tu_params(8, 64);
	/* second handle on the same memory: attach shares the mapping */
	if (shmring_attach(base, len, &q, &b) != 0)
		return 1;
	struct job jp = {a, nospin, 0}, jc = {b, nospin, 0};
	pthread_create(&tp, NULL, producer, &jp);
	pthread_create(&tc, NULL, consumer, &jc);
	pthread_join(tp, NULL);
	pthread_join(tc, NULL);
	struct shmring_stats sp, sc;
	shmring_stats(a, &sp);
	shmring_stats(b, &sc);
	printf("sem=%d nospin=%d: producer %llu wakes %llu waits, consumer %llu wakes %llu waits: "
	       "%s\n",
	       sem, nospin, (unsigned long long)sp.wake_syscalls,
	       (unsigned long long)sp.wait_syscalls, (unsigned long long)sc.wake_syscalls,
	       (unsigned long long)sc.wait_syscalls, jp.fail || jc.fail ? "FAIL" : "ok");
	shmring_close(b);
	shmring_close(a);
	return jp.fail || jc.fail;
}

/* Under TSan: the registry (ring/registry.c) frees nodes from liburcu's call_rcu thread,
 * whose hand-off TSan cannot see (liburcu is not instrumented). Not a sync/ matter. */
const char *__tsan_default_suppressions(void);
const char *__tsan_default_suppressions(void)
{
	return "race:free_node\n";
}

int main(void)
{
	int bad = 0;

	for (int sem = 0; sem < 2; sem++)
		for (int nospin = 0; nospin < 2; nospin++)
			bad |= run(sem, nospin);
	return bad;
}

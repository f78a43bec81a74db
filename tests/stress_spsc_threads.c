/* SPDX-License-Identifier: MIT */
/*
 * The cross-process exchange, with threads, so that ThreadSanitizer can see both sides: a
 * producer thread and a consumer thread move sequence-numbered elements over the burst and
 * zero-copy paths, first with a handle each on a POSIX shm ring, then sharing one handle on a
 * ring in caller's memory. The consumer checks order and payload. Exits non-zero on failure.
 *
 * Usage: stress_spsc_threads [elements per phase]
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#define DEADLINE_MS 120000u

struct side {
	struct shmring *r;
	uint64_t n;
	uint32_t es;
	unsigned cap;
	/* results, read by main after join */
	int failed;
	uint64_t done, at, got;
	int64_t err;
};

static uint64_t xs(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static uint64_t low(uint64_t seq, uint32_t es)
{
	return es >= 8 ? seq : seq & ((1ull << (8 * es)) - 1);
}

/* Returns non-zero once the other side has made no progress for too long. */
static int wait_a_bit(uint64_t *spins, uint64_t *since)
{
	sched_yield();
	if ((++*spins & 1023) != 0)
		return 0;
	uint64_t now = tu_now_ms();
	if (*since == 0)
		*since = now;
	return now - *since > DEADLINE_MS;
}

static void *producer(void *arg)
{
	struct side *sd = arg;
	unsigned char *buf = malloc((size_t)sd->es * sd->cap);
	uint64_t seed = 99, spins = 0, since = 0, s = 0;

	if (!buf) {
		sd->failed = 1;
		return NULL;
	}
	while (s < sd->n) {
		unsigned k = 1 + (unsigned)(xs(&seed) % sd->cap);
		int rc;

		if (k > sd->n - s)
			k = (unsigned)(sd->n - s);
		if (s & 1) {
			void *slots = NULL;
			rc = shmring_spsc_reserve(sd->r, k, &slots);
			if (rc > 0) {
				for (int j = 0; j < rc; j++)
					tu_fill((unsigned char *)slots + (size_t)j * sd->es, sd->es,
						s + (uint64_t)j);
				if (shmring_spsc_commit(sd->r, (unsigned)rc) != 0)
					rc = -EBADMSG;
			}
		} else {
			for (unsigned j = 0; j < k; j++)
				tu_fill(buf + (size_t)j * sd->es, sd->es, s + j);
			rc = shmring_spsc_push_burst(sd->r, buf, k);
		}
		if (rc == -EAGAIN) {
			if (wait_a_bit(&spins, &since)) {
				sd->failed = 1;
				sd->err = -ETIMEDOUT;
				break;
			}
			continue;
		}
		if (rc <= 0) {
			sd->failed = 1;
			sd->err = rc;
			break;
		}
		s += (uint64_t)rc;
		since = 0;
	}
	sd->done = s;
	free(buf);
	return NULL;
}

static void *consumer(void *arg)
{
	struct side *sd = arg;
	unsigned char *buf = malloc((size_t)sd->es * sd->cap);
	uint64_t seed = 77, spins = 0, since = 0, s = 0;

	if (!buf) {
		sd->failed = 1;
		return NULL;
	}
	while (s < sd->n && !sd->failed) {
		unsigned k = 1 + (unsigned)(xs(&seed) % sd->cap);
		const unsigned char *from = buf;
		int rc;

		if (seed & 1) {
			const void *slots = NULL;
			rc = shmring_spsc_peek(sd->r, k, &slots);
			from = slots;
		} else {
			rc = shmring_spsc_pop_burst(sd->r, buf, k);
		}
		if (rc == -EAGAIN) {
			if (wait_a_bit(&spins, &since)) {
				sd->failed = 1;
				sd->err = -ETIMEDOUT;
			}
			continue;
		}
		if (rc <= 0) {
			sd->failed = 1;
			sd->err = rc;
			break;
		}
		for (int j = 0; j < rc; j++) {
			uint64_t got = tu_check(from + (size_t)j * sd->es, sd->es);
			if (got != low(s + (uint64_t)j, sd->es)) {
				sd->failed = 1;
				sd->at = s + (uint64_t)j;
				sd->got = got;
				break;
			}
		}
		if (from != buf && shmring_spsc_release(sd->r, (unsigned)rc) != 0) {
			sd->failed = 1;
			sd->err = -EBADMSG;
		}
		s += (uint64_t)rc;
		since = 0;
	}
	sd->done = s;
	free(buf);
	return NULL;
}

static int exchange(const char *what, struct shmring *prod, struct shmring *cons, uint64_t n)
{
	struct side p = {.r = prod,
			 .n = n,
			 .es = shmring_elem_size(prod),
			 .cap = (unsigned)shmring_capacity(prod)};
	struct side c = p;
	pthread_t tp, tc;
	uint64_t t0 = tu_now_ms();

	c.r = cons;
	if (pthread_create(&tc, NULL, consumer, &c) || pthread_create(&tp, NULL, producer, &p)) {
		fprintf(stderr, "%s: pthread_create failed\n", what);
		return 1;
	}
	pthread_join(tp, NULL);
	pthread_join(tc, NULL);
	if (p.failed || c.failed || p.done != n || c.done != n) {
		fprintf(stderr,
			"%s: FAILED: producer moved %llu (err %lld), consumer %llu (err %lld), "
			"element %llu held %llu\n",
			what, (unsigned long long)p.done, (long long)p.err,
			(unsigned long long)c.done, (long long)c.err, (unsigned long long)c.at,
			(unsigned long long)c.got);
		return 1;
	}
	if (shmring_spsc_size(cons) != 0 || shmring_spsc_free(prod) != (int64_t)p.cap) {
		fprintf(stderr, "%s: FAILED: ring not empty at the end\n", what);
		return 1;
	}
	printf("%s: %llu elements of %u bytes in order, %llu ms\n", what, (unsigned long long)n,
	       p.es, (unsigned long long)(tu_now_ms() - t0));
	return 0;
}

int main(int argc, char **argv)
{
	uint64_t n = argc > 1 ? strtoull(argv[1], NULL, 0) : 1000000;
	struct shmring_params p = tu_params(24, 64);
	struct shmring *prod, *cons;
	int rc = -EINVAL, fail = 0;

	/* Phase 1: POSIX shm, a handle per thread (the second open shares the mapping). */
	const char *name = tu_shm_name("tsan");
	if (!name || (rc = shmring_create(name, &p, &prod)) != 0) {
		fprintf(stderr, "create: %s\n", shmring_strerror(rc));
		return 1;
	}
	if ((rc = shmring_open(name, &p, &cons)) != 0) {
		fprintf(stderr, "open: %s\n", shmring_strerror(rc));
		shmring_close(prod);
		shmring_unlink(name);
		return 1;
	}
	fail |= exchange("shm, two handles", prod, cons, n);
	shmring_close(cons);
	shmring_close(prod);
	shmring_unlink(name);

	/* Phase 2: caller's memory, one handle shared by both threads. */
	p = tu_params(3, 32);
	ssize_t len = shmring_memsize(&p);
	void *mem = len > 0 ? aligned_alloc(128, (size_t)len) : NULL;
	if (!mem || shmring_init(mem, (size_t)len, &p) != 0 ||
	    (rc = shmring_attach(mem, (size_t)len, &p, &prod)) != 0) {
		fprintf(stderr, "caller's memory: set-up failed\n");
		free(mem);
		return 1;
	}
	fail |= exchange("caller's memory, one handle", prod, prod, n);
	shmring_close(prod);
	free(mem);
	return fail;
}

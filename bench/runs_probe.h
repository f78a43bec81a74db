/* SPDX-License-Identifier: MIT */
/*
 * A probe, not a ring of the library: an MPMC design that decides a whole run of elements with
 * one locked operation per side, measured beside SCQ and the peers by `mpmc_bench --probe` and
 * checked against a stopped producer by `runs_probe_stall`. docs/mpmc-runs.md gives the design,
 * why each producer writes its own arena, the numbers, and what the library's ring would still
 * need (a patience scaled to the claim, TSan annotations, recovery, the memory, fresh tags).
 *
 * Shared state: head and tail positions, one header per slot, and an arena per producer with a
 * slot per position. A header speaks for the position p of its slot when its cycle tag is p's.
 *
 * Build with RUNS_PROBE_ONE_ARENA to give every producer the same arena: the first version of
 * the design, whose flaw runs_probe_stall shows. RUNS_PROBE_STALL(), if defined, runs between a
 * producer's claim and its copy.
 */
#ifndef SHMRING_BENCH_RUNS_PROBE_H
#define SHMRING_BENCH_RUNS_PROBE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#define RUNS_COMMIT 1u
#define RUNS_SKIP   2u
#define RUNS_CLAIM  3u	/* announced, not committed */
#define RUNS_MAXP   64u /* producers: 6 bits of the header */

/*
 * How long a claimed, uncommitted run is waited for before it is skipped (see runs_pop), in
 * nanoseconds of CLOCK_MONOTONIC, the same on every architecture: a base, plus a nanosecond
 * for each byte an announced claim copies (a copy at 1 GB/s), so that a live producer of large
 * elements is not skipped for the size of its copy.
 */
#ifndef RUNS_PATIENCE_NS
#define RUNS_PATIENCE_NS 50000
#endif

static inline uint64_t runs_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

struct runs {
	_Alignas(128) _Atomic uint64_t head;
	_Alignas(128) _Atomic uint64_t tail;
	_Alignas(128) uint64_t n, mask, tagmask;
	unsigned order, nprod;
	size_t esz;
	/* Each producer's last read of head (a line each): room is judged from it and head is
	 * read again only when it does not show enough. */
	struct {
		_Alignas(64) uint64_t head;
	} seen[RUNS_MAXP];
	_Alignas(128) _Atomic uint64_t hdr[]; /* n headers, then nprod arenas of n elements */
};

static inline size_t runs_size(unsigned order, size_t esz, unsigned nprod)
{
	return sizeof(struct runs) + ((size_t)8 << order) + ((size_t)nprod * esz << order);
}

static inline unsigned char *runs_arena(struct runs *q, unsigned pid)
{
#ifdef RUNS_PROBE_ONE_ARENA
	pid = 0;
#endif
	return (unsigned char *)&q->hdr[q->n] + (size_t)pid * q->esz * q->n;
}

/* Header: cycle tag | producer (6 bits) | state (2) | length - 1 (order bits). */
static inline uint64_t runs_tag(const struct runs *q, uint64_t p)
{
	return (p >> q->order) & q->tagmask;
}

static inline uint64_t runs_enc(const struct runs *q, uint64_t p, unsigned st, uint64_t len,
				unsigned pid)
{
	return runs_tag(q, p) << (q->order + 8) | (uint64_t)pid << (q->order + 2) |
	       (uint64_t)st << q->order | (len - 1);
}

static inline unsigned runs_st(const struct runs *q, uint64_t v)
{
	return (unsigned)(v >> q->order) & 3u;
}

static inline unsigned runs_pid(const struct runs *q, uint64_t v)
{
	return (unsigned)(v >> (q->order + 2)) & 63u;
}

static inline uint64_t runs_len(const struct runs *q, uint64_t v)
{
	return (v & ((1ull << q->order) - 1)) + 1;
}

/* -1: the header is of an older lap than position p (undecided for p); 0: p's; 1: newer. */
static inline int runs_cmp(const struct runs *q, uint64_t v, uint64_t p)
{
	uint64_t d = (runs_tag(q, p) - (v >> (q->order + 8))) & q->tagmask;

	return d == 0 ? 0 : d <= q->tagmask >> 1 ? -1 : 1;
}

/* order at most 30, nprod at most RUNS_MAXP. */
static inline void runs_init(struct runs *q, unsigned order, size_t esz, unsigned nprod)
{
	q->n = 1ull << order;
	q->mask = q->n - 1;
	q->order = order;
	q->tagmask = (1ull << (56 - order)) - 1;
	q->esz = esz;
	q->nprod = nprod;
	atomic_store(&q->head, 0);
	atomic_store(&q->tail, 0);
	for (unsigned i = 0; i < RUNS_MAXP; i++)
		q->seen[i].head = 0;
	for (uint64_t i = 0; i < q->n; i++)
		atomic_store(&q->hdr[i], q->tagmask << (order + 8)); /* lap -1 */
}

static inline void runs_copy(struct runs *q, unsigned pid, uint64_t p, void *buf, uint64_t k,
			     int in)
{
	unsigned char *a = runs_arena(q, pid), *b = buf;
	uint64_t s = p & q->mask, first = q->n - s < k ? q->n - s : k;
	size_t len = first * q->esz, wrap = (k - first) * q->esz;

	if (in) {
		memcpy(a + s * q->esz, b, len);
		if (wrap)
			memcpy(a, b + len, wrap);
	} else {
		memcpy(b, a + s * q->esz, len);
		if (wrap)
			memcpy(b + len, a, wrap);
	}
}

/*
 * Moves the header of position p from an older lap to `want`. Returns 0 if it did, 1 if the
 * header is already of p's lap (another's decision), 2 if it is of a newer lap (the caller is
 * stale).
 */
static inline int runs_decide(struct runs *q, uint64_t p, uint64_t want, memory_order mo)
{
	_Atomic uint64_t *h = &q->hdr[p & q->mask];
	uint64_t v = atomic_load_explicit(h, memory_order_relaxed);

	for (;;) {
		int c = runs_cmp(q, v, p);
		if (c >= 0)
			return c == 0 ? 1 : 2;
		if (atomic_compare_exchange_weak_explicit(h, &v, want, mo, memory_order_relaxed))
			return 0;
	}
}

/* Returns how many were pushed (all k for bulk, or none). */
static inline unsigned runs_push(struct runs *q, unsigned pid, const void *src, unsigned k,
				 int bulk)
{
	if (pid >= q->nprod)
		return 0;
	for (;;) {
		uint64_t h = q->seen[pid].head;
		uint64_t t = atomic_load_explicit(&q->tail, memory_order_relaxed);
		if (t - h > q->n || q->n - (t - h) < k) {
			/* Acquire pairs with the release of the consumers' head CAS: their
			 * copies of the slots this claim reuses are done. */
			h = atomic_load_explicit(&q->head, memory_order_acquire);
			q->seen[pid].head = h;
			t = atomic_load_explicit(&q->tail, memory_order_relaxed);
			if (t - h > q->n)
				continue; /* head moved on between the loads: a stale head */
		}
		uint64_t room = q->n - (t - h), n = room < k ? (bulk ? 0 : room) : k;
		if (n == 0)
			return 0;
		if (!atomic_compare_exchange_strong_explicit(
			&q->tail, &t, t + n, memory_order_relaxed, memory_order_relaxed))
			continue;
#ifdef RUNS_PROBE_STALL
		RUNS_PROBE_STALL();
#endif
		/* A claim of several positions is announced before the copy, so that a consumer
		 * that finds it stopped skips all of it at once (one patience, not one for each
		 * position). Relaxed: nothing is published with it, and a consumer that skips the
		 * claim reads only its length. */
		uint64_t claim = runs_enc(q, t, RUNS_CLAIM, n, pid);
		int announced = n > 1;
		if (announced && runs_decide(q, t, claim, memory_order_relaxed) != 0)
			goto skipped;
#ifdef RUNS_PROBE_STALL
		RUNS_PROBE_STALL();
#endif
		runs_copy(q, pid, t, (void *)(uintptr_t)src, n, 1);
		/* Release pairs with the consumer's acquire load of this header: the copy is
		 * seen with the commit. */
		uint64_t commit = runs_enc(q, t, RUNS_COMMIT, n, pid);
		if (announced) {
			if (atomic_compare_exchange_strong_explicit(&q->hdr[t & q->mask], &claim,
								    commit, memory_order_release,
								    memory_order_relaxed))
				return (unsigned)n;
			continue; /* a consumer skipped the whole claim */
		}
		if (runs_decide(q, t, commit, memory_order_release) == 0)
			return (unsigned)n;
	skipped:
		/* A consumer skipped position t before the claim was announced: the rest of the
		 * claim goes too (from the first position not skipped one by one), and the
		 * elements again from the start. */
		for (uint64_t i = 1; i < n; i++)
			if (runs_decide(q, t + i, runs_enc(q, t + i, RUNS_SKIP, n - i, 0),
					memory_order_release) != 1)
				break;
	}
}

static inline unsigned runs_pop(struct runs *q, void *dst, unsigned m, int bulk)
{
	unsigned char *out = dst;

	for (;;) {
		/* Acquire pairs with the release of the head CAS that put head here: a rest of a
		 * run that consumer posted is seen. */
		uint64_t h = atomic_load_explicit(&q->head, memory_order_acquire);
		uint64_t p = h, got = 0, rest_at = 0, rest = 0;
		int stale = 0;

		while (got < m) {
			_Atomic uint64_t *hp = &q->hdr[p & q->mask];
			/* Acquire pairs with the release of a producer's commit or a consumer's
			 * posted rest: the elements copied below are the run's. */
			uint64_t v = atomic_load_explicit(hp, memory_order_acquire);
			int c = runs_cmp(q, v, p);
			if (c > 0) {
				stale = 1;
				break;
			}
			uint64_t len = runs_len(q, v), skip = runs_enc(q, p, RUNS_SKIP, 1, 0);
			if (c == 0 && runs_st(q, v) == RUNS_CLAIM) {
				skip = runs_enc(q, p, RUNS_SKIP, len, 0); /* all of it */
			} else if (c == 0) {
				if (runs_st(q, v) == RUNS_SKIP) {
					p += len;
					continue;
				}
				uint64_t take = len < m - got ? len : m - got;
				runs_copy(q, runs_pid(q, v), p, out + got * q->esz, take, 0);
				got += take;
				p += take;
				if (take < len) {
					rest_at = p;
					rest =
					    runs_enc(q, p, RUNS_COMMIT, len - take, runs_pid(q, v));
				}
				continue;
			}
			if (got && !bulk)
				break; /* a bulk waits out a stopped claim behind what it has */
			if (c != 0 &&
			    (int64_t)(atomic_load_explicit(&q->tail, memory_order_relaxed) - p) <=
				0)
				break; /* empty */
			/* Claimed, not committed: wait, then skip the position, or the whole claim
			 * if it was announced. */
			uint64_t until = 0, wait = RUNS_PATIENCE_NS;
			int expired = 0;
			if (c == 0) /* announced: the claim's copy too */
				wait += len * q->esz;
			for (unsigned i = 0;
			     atomic_load_explicit(hp, memory_order_relaxed) == v &&
			     atomic_load_explicit(&q->head, memory_order_relaxed) == h;
			     i++) {
				if (i % 64 == 0) { /* the clock every 64 spins */
					uint64_t now = runs_now();
					if (!until)
						until = now + wait;
					else if ((expired = now >= until))
						break;
				}
#if defined(__x86_64__) || defined(__i386__)
				__builtin_ia32_pause();
#endif
			}
			if (atomic_load_explicit(&q->head, memory_order_relaxed) != h) {
				stale = 1;
				break;
			}
			if (expired)
				/* Release pairs with the acquire load of the header by the consumer
				 * that walks past the skip: its tail read is no older than the one
				 * that showed this position claimed, so it never skips a position
				 * beyond tail. */
				atomic_compare_exchange_strong_explicit(
				    hp, &v, skip, memory_order_release, memory_order_relaxed);
		}
		if (stale)
			continue;
		if ((got == 0 && p == h) || (bulk && got < m))
			return 0;
		if (rest && runs_decide(q, rest_at, rest, memory_order_release) == 2)
			continue;
		/* Release pairs with the producers' acquire load of head: the copies above are
		 * done before a slot is written for its next lap. */
		if (atomic_compare_exchange_strong_explicit(&q->head, &h, p, memory_order_release,
							    memory_order_relaxed))
			return (unsigned)got;
	}
}

#endif

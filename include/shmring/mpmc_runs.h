/* SPDX-License-Identifier: MIT */
/*
 * Internal: the hot paths of SHMRING_MPMC_RUNS rings, reached through the shmring_mpmc_* calls
 * of shmring/mpmc.h (which documents them). Included by mpmc.h; include that instead.
 *
 * Why another algorithm than SCQ: SCQ hands every element over with its own locked operations
 * (four per element, counting both queues), so a burst of 32 costs 128 of them, where rte_ring
 * spends two CASes on the whole burst. A runs ring decides a whole run of elements with one CAS
 * per side, and still lets no stopped process wedge the others:
 *
 *  - Shared state: head and tail (positions, in the PROD and CONS blocks), one 64-bit header
 *    per slot, and one data arena per producer with a slot per position (arena[a][p mod N]).
 *  - A producer CASes tail from t to t + n (the claim), announces a claim of several positions
 *    in the header of t (CLAIM, n), copies into its own arena, and commits by a CAS of that
 *    header (COMMIT, n, its arena).
 *  - A consumer walks the headers from head, copies committed runs out speculatively (as a
 *    seqlock's reader does), posts the rest of a run it stops inside as a header of its own, and
 *    then takes everything it walked with one CAS on head. A failed CAS throws the copies away.
 *  - A claim left uncommitted (its producer preempted, stopped or dead) is waited for a bounded
 *    patience and then skipped: the whole claim if it was announced, else its first position.
 *    The producer's commit then fails and it claims again. A stopped consumer holds nothing.
 *  - Why an arena per producer: a producer stopped between its claim and its copy is skipped,
 *    and when it runs again its late stores land; no one can revoke them. With a shared data
 *    array they would land in a run another producer committed at those positions a lap later
 *    (docs/mpmc-runs.md shows the duplicates). In its own arena they land at positions that no
 *    one else fills, before its own next commit.
 *
 * Header: tag (51 bits: the lap of the position, p >> log2(N), modulo 2^51) << 13 | arena (6)
 * << 7 | state (2) << 5 | length - 1 (5). It speaks for position p only when its tag is p's
 * lap; an older tag means "not decided yet". A run's inner headers are not written, so they age:
 * consumers refresh them in one lap of every 1024 (_SHMRING_MR_REFRESH), which keeps every
 * header within 2048 laps of its position, far inside the 2^50 that the comparison tells apart.
 */
#include <shmring/shmring.h>

#ifndef SHMRING_MPMC_RUNS_H
#define SHMRING_MPMC_RUNS_H

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#define _SHMRING_MR_COMMIT   1u
#define _SHMRING_MR_SKIP     2u
#define _SHMRING_MR_CLAIM    3u
#define _SHMRING_MR_TAG_MASK ((1ull << 51) - 1)
#define _SHMRING_MR_REFRESH  1023u

/* Record phase of a producer between its claim and its commit: pos holds t, bits 16.. of the
 * state the claim's length (ring/mpmc.c skips the claim of a dead one). */
#define _SHMRING_MR_CLAIMING 7

/* Attempts of one call before it says -EAGAIN: each failed attempt is another participant's
 * progress (a CAS it won), so only heavy contention or a peer that rewrites the positions
 * without end gets here; the caller may simply call again. */
#define _SHMRING_MR_TRIES 4096u

/* Default patience: see shmring_mpmc_set_patience(). */
#define _SHMRING_MR_PATIENCE_NS 50000u

/* Whether this is a TSan build (gcc says so by a macro, clang by a feature). */
#if defined(__SANITIZE_THREAD__)
#define _SHMRING_MR_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define _SHMRING_MR_TSAN 1
#endif
#endif

int _shmring_mr_join(struct shmring *r); /* ring/mpmc.c: takes an arena for our first push */
/* ring/mpmc.c: spins while header *hp holds v and head holds h, for at most wait ns of
 * CLOCK_MONOTONIC; 1 if the time ran out. Out of line: the clock would need POSIX feature macros
 * in every includer, and this is the slow path. */
int _shmring_mr_wait(struct shmring *r, _Atomic uint64_t *hp, uint64_t v, uint64_t h,
		     uint64_t wait);

static inline uint64_t _shmring_mr_enc(const struct shmring *r, uint64_t p, unsigned st,
				       uint64_t len, unsigned arena)
{
	return ((p >> r->m.order) & _SHMRING_MR_TAG_MASK) << 13 | (uint64_t)arena << 7 |
	       (uint64_t)st << 5 | (len - 1);
}
#define _SHMRING_MR_ST(v)    ((unsigned)((v) >> 5) & 3u)
#define _SHMRING_MR_ARENA(v) ((unsigned)((v) >> 7) & 63u)
#define _SHMRING_MR_LEN(v)   (((v)&31u) + 1)

/* -1: header v is of an older lap than position p (not decided for p); 0: p's; 1: newer. */
static inline int _shmring_mr_cmp(const struct shmring *r, uint64_t v, uint64_t p)
{
	uint64_t d = ((p >> r->m.order) - (v >> 13)) & _SHMRING_MR_TAG_MASK;

	return d == 0 ? 0 : d <= _SHMRING_MR_TAG_MASK >> 1 ? -1 : 1;
}

/*
 * Moves the header of position p from an older lap to want. Returns 0 if it did, 1 if the
 * header is already p's lap (another's decision), 2 if it is of a newer lap (the caller is
 * stale), -EPROTO if it changed more often than any correct ring changes one header.
 */
static inline int _shmring_mr_decide(struct shmring *r, uint64_t p, uint64_t want, memory_order mo)
{
	_Atomic uint64_t *h = &r->m.hdr[p & r->mask];
	uint64_t v = atomic_load_explicit(h, memory_order_relaxed);

	for (unsigned i = 0; i < _SHMRING_MP_CAS_TRIES; i++) {
		int c = _shmring_mr_cmp(r, v, p);
		if (c >= 0)
			return c == 0 ? 1 : 2;
		/* Strong: a spurious failure (neighbours' CASes share the line) must not count
		 * towards the bound. */
		if (atomic_compare_exchange_strong_explicit(h, &v, want, mo, memory_order_relaxed))
			return 0;
	}
	return -EPROTO;
}

/*
 * Copies k elements between buf and arena a at positions p.. (in = 1: into the arena). Under
 * TSan the arena side is read and written with relaxed atomic bytes: a consumer's copy may race
 * a producer's write of the next lap, and is then thrown away (its head CAS fails), which TSan
 * cannot know.
 */
static inline void _shmring_mr_copy(struct shmring *r, unsigned a, uint64_t p, unsigned char *buf,
				    uint64_t k, int in)
{
	unsigned char *base = r->data + a * r->m.astride;
	uint64_t s = p & r->mask, first = r->capacity - s < k ? r->capacity - s : k;
	size_t es = r->elem_size;
	struct {
		unsigned char *at;
		size_t off, len;
	} part[2] = {{base + s * es, 0, (size_t)first * es},
		     {base, (size_t)first * es, (size_t)(k - first) * es}};

	for (int i = 0; i < 2 && part[i].len; i++) {
#ifdef _SHMRING_MR_TSAN
		for (size_t j = 0; j < part[i].len; j++)
			if (in)
				__atomic_store_n(part[i].at + j, buf[part[i].off + j],
						 __ATOMIC_RELAXED);
			else
				buf[part[i].off + j] =
				    __atomic_load_n(part[i].at + j, __ATOMIC_RELAXED);
#else
		if (in)
			memcpy(part[i].at, buf + part[i].off, part[i].len);
		else
			memcpy(buf + part[i].off, part[i].at, part[i].len);
#endif
	}
}

/*
 * Marks positions [t + from, t + n) of claim t (n positions) skipped where no consumer has:
 * a producer whose claim was skipped at a position (it was not announced yet), and recovery
 * for a dead one. A consumer skips one unannounced position at a time, in order, so the first
 * position still undecided takes the rest at once. Returns 0 or -EPROTO.
 */
static inline int _shmring_mr_abandon(struct shmring *r, uint64_t t, uint64_t n, uint64_t from)
{
	for (uint64_t i = from; i < n; i++) {
		/* R2: as a consumer's skip (R2 in _shmring_mr_pop). */
		int rc = _shmring_mr_decide(r, t + i,
					    _shmring_mr_enc(r, t + i, _SHMRING_MR_SKIP, n - i, 0),
					    memory_order_release);
		if (rc < 0)
			return rc;
		if (rc == 0)
			break; /* ours now, and the rest with it */
		/* 1: a consumer skipped it alone; 2: and the ring has lapped it: the next
		 * positions may still be undecided either way. */
	}
	return 0;
}

/* Internal: how many of n elements one call moves: a bulk all n or -EINVAL (more than one
 * call moves, or than the ring holds), a burst at most that many. */
static inline int _shmring_mr_want(unsigned n, uint64_t cap, int bulk)
{
	if (n > SHMRING_MPMC_BULK_MAX || n > cap) {
		if (bulk)
			return -EINVAL;
		n = n > SHMRING_MPMC_BULK_MAX ? SHMRING_MPMC_BULK_MAX : n;
		n = n > cap ? (unsigned)cap : n;
	}
	return (int)n;
}

/* Internal: push of up to k elements (all or none with bulk). */
static inline int _shmring_mr_push(struct shmring *r, const unsigned char *src, unsigned k,
				   int bulk)
{
	_Atomic uint64_t *head = r->cons_pos, *tail = r->prod_pos;
	const uint64_t cap = r->capacity;

	if (__builtin_expect(r->broken, 0))
		return -EPROTO;
	if (k == 0)
		return 0;
	int want = _shmring_mr_want(k, cap, bulk);
	if (want < 0)
		return want;
	k = (unsigned)want;
	if (__builtin_expect(r->m.arena < 0, 0)) {
		int rc = _shmring_mr_join(r);
		if (rc)
			return rc;
	}
	const unsigned me = (unsigned)r->m.arena;
	struct _shmring_mpmc_rec *rec = r->m.rec;

	for (unsigned tries = 0; tries < _SHMRING_MR_TRIES; tries++) {
		/* Room is judged from our last read of head, and head read again only when that
		 * shows too little: one shared line fewer per push while there is room. */
		uint64_t h = r->m.seen_head, t = atomic_load_explicit(tail, memory_order_relaxed);
		if (t - h > cap || cap - (t - h) < k) {
			/* A1: pairs with R4 in _shmring_mr_pop: the consumers' copies out of the
			 * slots this claim reuses are done before we write them. */
			h = atomic_load_explicit(head, memory_order_acquire);
			/* A4: pairs with R6 of the producer whose claim put tail here: the head
			 * it judged room from happens before the second head load below, which
			 * therefore sees at least that much. */
			t = atomic_load_explicit(tail, memory_order_acquire);
			if (t - h > cap) {
				/* Both moved between the loads (a stale head: read again), unless
				 * head did not: then tail is past head + capacity, which no
				 * correct ring shows. */
				if (atomic_load_explicit(head, memory_order_relaxed) == h)
					return _shmring_mp_break(r);
				continue;
			}
			r->m.seen_head = h;
		}
		uint64_t room = cap - (t - h), n = room < k ? (bulk ? 0 : room) : k;
		if (n == 0)
			return -EAGAIN;
		/* R6: pairs with A4 above in other producers (the room this claim was judged
		 * from is seen with it); the elements are published by the commit (R1). */
		if (!atomic_compare_exchange_strong_explicit(tail, &t, t + n, memory_order_release,
							     memory_order_relaxed))
			continue;
		/* For recovery, should we die before the commit (R5 in _shmring_mp_state). */
		atomic_store_explicit(&rec->pos, t, memory_order_relaxed);
		_shmring_mp_state(rec, _SHMRING_MR_CLAIMING, 0, n << 16);
		_SHMRING_MP_HOOK(r, SHMRING_MPMC_HOOK_RUN_CLAIMED, 0);
		/* A claim of several positions is announced before the copy, so that a consumer
		 * that finds it stopped skips all of it at once (one patience, not one for each
		 * position). R7: pairs with A2 of a consumer that skips the claim: our tail CAS
		 * happens before its head CAS past the claim, so no one who sees that head sees
		 * an older tail (a skip of an unannounced position is covered by the skipper's
		 * own read of tail). */
		uint64_t claim = _shmring_mr_enc(r, t, _SHMRING_MR_CLAIM, n, me);
		int announced = n > 1, rc = 0;
		if (announced)
			rc = _shmring_mr_decide(r, t, claim, memory_order_release);
		if (rc == 0) {
			_shmring_mr_copy(r, me, t, (unsigned char *)(uintptr_t)src, n, 1);
			_SHMRING_MP_HOOK(r, SHMRING_MPMC_HOOK_FILLED, 0);
			/* R1: pairs with A2 in _shmring_mr_pop: the copy is seen with the commit.
			 */
			uint64_t commit = _shmring_mr_enc(r, t, _SHMRING_MR_COMMIT, n, me);
			if (announced)
				rc = atomic_compare_exchange_strong_explicit(
					 &r->m.hdr[t & r->mask], &claim, commit,
					 memory_order_release, memory_order_relaxed)
					 ? 0
					 : 3; /* the whole claim was skipped */
			else
				rc = _shmring_mr_decide(r, t, commit, memory_order_release);
			if (rc == 0) {
				_shmring_mp_state(rec, _SHMRING_MP_IDLE, 0, 0);
				_shmring_mp_wake(r, r->wake_data);
				return (int)n;
			}
		}
		/* Skipped at t before the announcement (rc 1 or 2): the rest of the claim goes
		 * too, and the elements again from the start; rc 3 needs nothing more. */
		if (rc < 0 || (rc != 3 && _shmring_mr_abandon(r, t, n, 1) < 0))
			return _shmring_mp_break(r);
		_shmring_mp_state(rec, _SHMRING_MP_IDLE, 0, 0);
	}
	return -EAGAIN;
}

/*
 * In one lap of every _SHMRING_MR_REFRESH + 1, a consumer rewrites the inner headers of a run it
 * walked (st, len from position p on, of arena a), positions (p, p + take), to what a posted
 * rest there would say: inner headers are never written otherwise, and must not age out of
 * the tag's range. A CAS from the old value each, so a late one changes nothing that moved on.
 */
static inline int _shmring_mr_refresh(struct shmring *r, uint64_t p, uint64_t take, unsigned st,
				      uint64_t len, unsigned a)
{
	if (((p >> r->m.order) & _SHMRING_MR_REFRESH) != 0 &&
	    (((p + take - 1) >> r->m.order) & _SHMRING_MR_REFRESH) != 0)
		return 0;
	for (uint64_t i = 1; i < take; i++) { /* by offset: a run may cross 2^64 */
		uint64_t x = p + i;
		/* R3: as a posted rest (R3 in _shmring_mr_pop). */
		if (((x >> r->m.order) & _SHMRING_MR_REFRESH) == 0 &&
		    _shmring_mr_decide(r, x, _shmring_mr_enc(r, x, st, len - i, a),
				       memory_order_release) < 0)
			return -EPROTO;
	}
	return 0;
}

/* Internal: pop of up to m elements (all or none with bulk). */
static inline int _shmring_mr_pop(struct shmring *r, unsigned char *out, unsigned m, int bulk)
{
	_Atomic uint64_t *head = r->cons_pos, *tail = r->prod_pos;
	const uint64_t cap = r->capacity;
	const size_t es = r->elem_size;

	if (__builtin_expect(r->broken, 0))
		return -EPROTO;
	if (m == 0)
		return 0;
	int want = _shmring_mr_want(m, cap, bulk);
	if (want < 0)
		return want;
	m = (unsigned)want;
	for (unsigned tries = 0; tries < _SHMRING_MR_TRIES; tries++) {
		/* A3: pairs with R4, the head CAS that put head here: a rest that consumer posted
		 * is seen. */
		uint64_t h = atomic_load_explicit(head, memory_order_acquire);
		uint64_t p = h, got = 0, rest_at = 0, rest = 0;
		int stale = 0;

		while (got < m) {
			if (p - h > cap) {
				/* Only a stale head walks this far (others took what we walked and
				 * producers filled it again), or a corrupt header. */
				if (atomic_load_explicit(head, memory_order_relaxed) == h)
					return _shmring_mp_break(r);
				stale = 1;
				break;
			}
			_Atomic uint64_t *hp = &r->m.hdr[p & r->mask];
			/* A2: pairs with R1 (a producer's commit), R2 (a skip), R3 (a posted
			 * rest) and R7 (an announcement): the elements copied below are the
			 * run's. */
			uint64_t v = atomic_load_explicit(hp, memory_order_acquire);
			int c = _shmring_mr_cmp(r, v, p);
			if (c > 0) {
				/* A newer lap at p: head has moved past p (the claim of p + N
				 * needed that), or the header is corrupt. */
				if (atomic_load_explicit(head, memory_order_relaxed) == h)
					return _shmring_mp_break(r);
				stale = 1;
				break;
			}
			unsigned st = _SHMRING_MR_ST(v), a = _SHMRING_MR_ARENA(v);
			uint64_t len = _SHMRING_MR_LEN(v);
			if (c == 0 && (st == 0 || len > cap ||
				       (st != _SHMRING_MR_SKIP && a >= r->m.producers)))
				return _shmring_mp_break(r);
			if (c == 0 && st == _SHMRING_MR_SKIP) {
				if (_shmring_mr_refresh(r, p, len, st, len, 0) < 0)
					return _shmring_mp_break(r);
				p += len;
				continue;
			}
			if (c == 0 && st == _SHMRING_MR_COMMIT) {
				uint64_t take = len < m - got ? len : m - got;
				_shmring_mr_copy(r, a, p, out + got * es, take, 0);
				if (_shmring_mr_refresh(r, p, take, st, len, a) < 0)
					return _shmring_mp_break(r);
				got += take;
				p += take;
				if (take < len) {
					rest_at = p;
					rest = _shmring_mr_enc(r, p, _SHMRING_MR_COMMIT, len - take,
							       a);
				}
				continue;
			}
			if (got && !bulk)
				break; /* a bulk waits out a stopped claim behind what it has */
			if (c != 0 &&
			    (int64_t)(atomic_load_explicit(tail, memory_order_relaxed) - p) <= 0)
				break; /* empty (signed: a stale tail says empty, never "claimed")
					*/
			/* Claimed, not committed: wait, then skip the position, or the whole claim
			 * if it was announced (its copy is waited for too, at a byte a ns). */
			uint64_t wait = r->m.patience_ns + (c == 0 ? len * es : 0);
			uint64_t skip =
			    _shmring_mr_enc(r, p, _SHMRING_MR_SKIP, c == 0 ? len : 1, 0);
			int expired = _shmring_mr_wait(r, hp, v, h, wait);
			if (atomic_load_explicit(head, memory_order_relaxed) != h) {
				stale = 1;
				break;
			}
			/* R2: pairs with A2 of the consumer that walks past the skip: its read of
			 * tail is then no older than the one that showed this position claimed,
			 * so no one skips a position beyond tail. */
			if (expired &&
			    atomic_compare_exchange_strong_explicit(
				hp, &v, skip, memory_order_release, memory_order_relaxed) &&
			    c == 0 && _shmring_mr_refresh(r, p, len, _SHMRING_MR_SKIP, len, 0) < 0)
				return _shmring_mp_break(r);
		}
		if (stale)
			continue;
		/* Short of m, a bulk takes nothing; but with nothing in hand, any call moves head
		 * over the skipped claims it passed, so that no one walks them again. */
		if ((got == 0 && p == h) || (bulk && got && got < m))
			return -EAGAIN;
		if (rest) {
			/* R3: pairs with A2 of the consumer that starts at the rest. */
			int rc = _shmring_mr_decide(r, rest_at, rest, memory_order_release);
			if (rc < 0)
				return _shmring_mp_break(r);
			if (rc == 2)
				continue;
		}
		_SHMRING_MP_HOOK(r, SHMRING_MPMC_HOOK_READ, 1);
		/* R4: pairs with A1 in _shmring_mr_push (our copies are done before a producer
		 * writes these slots for their next lap) and with A3 of the next consumer. */
		if (atomic_compare_exchange_strong_explicit(head, &h, p, memory_order_release,
							    memory_order_relaxed)) {
			/* Room for producers either way (a skipped claim's positions too). */
			_shmring_mp_wake(r, r->wake_space);
			return got ? (int)got : -EAGAIN; /* none: passed skipped claims only */
		}
	}
	return -EAGAIN;
}

#endif

/* SPDX-License-Identifier: MIT */
/*
 * Differential harness for SHMRING_MPMC_RUNS rings (shmring/mpmc_runs.h). Several simulated
 * participants (one handle and one participant record each, with fake owner ids and a liveness
 * hook) push and pop against a model of the ring's positions; any of them may "die" at a hook
 * point of a push or pop (the test hook abandons the call there), or "park" there (the hook runs
 * the next operations, by the others, before it returns), another recovers; and the input may
 * write hostile values into the shared words.
 *
 * The model is exact, position by position: every position between head and tail holds a value
 * (committed), or belongs to a claim not committed: of a dead producer not yet recovered, of the
 * parked producer, or skipped (by a pop that waited it out, or by recovery). Checked while
 * nothing hostile was written:
 *  - every push, burst and bulk returns exactly what the room says (burst: up to the room,
 *    bulk: all or -EAGAIN, -EINVAL beyond 32 or the capacity), and -EUSERS exactly when the
 *    pushing handle has no arena and every one is held by the record of a live handle that
 *    pushed (one that finds every arena held recovers the dead first, freeing theirs);
 *  - every pop returns exactly the oldest values, in order, with no value skipped, invented or
 *    repeated: a claim not committed is waited out (a patience of 1 us) and skipped, a burst
 *    stops at one once it has values, a bulk goes on past it and says -EAGAIN short of n values;
 *  - a producer that dies at RUN_CLAIMED or FILLED (before its commit) never has its values
 *    delivered; a consumer that dies at READ (before its head CAS) takes nothing;
 *  - a parked producer whose claim was skipped claims again at the tail of then (a burst as
 *    much as there is room for); else it commits where it claimed; a parked consumer moves head
 *    over what it walked, or walks again if others moved head;
 *  - a dead handle answers -EPROTO to everything; a dead participant keeps its record and
 *    arena until recovery, which reports exactly the dead, or (idle) until an attach takes
 *    the record over, arena and all: attach takes the first free record, else the first idle
 *    one of a dead owner, else says -EUSERS; shmring_mpmc_size() is tail - head, the model's
 *    positions;
 *  - at the end, with every participant closed, a last recovery: the drain returns the model's
 *    values without waiting out a claim (its patience is then 1 s: recovery must have skipped
 *    every dead claim), every slot's header is as fresh as the refresh makes it, the ring takes
 *    exactly its capacity again and gives it back in order, and every record and arena but the
 *    last handle's is free.
 * After a hostile write the model is void: every call returns, with a count up to n, -EAGAIN,
 * -EINVAL, -EUSERS or -EPROTO, a handle that said -EPROTO says it to every later call, nothing
 * crashes or reads out of bounds (ASan), and nothing hangs (libFuzzer's timeout).
 *
 * Input: byte 0 capacity (bits 0-2: 1..64), start position (bits 3-4: 0, lap 1021 where the
 * refresh of lap 1024 comes soon, lap 2^51 - 2 where the header tag wraps, or 2 laps below
 * 2^64 where positions wrap), element size (bits 5-6: 8, 12, 24, 64 bytes); byte 1
 * participants (bits 0-2: 1..5), producer arenas (bits 4-5: 1..4), a crowd (bit 3: every
 * record but the last 1, or 3 with bit 6, held by idle live owners), hostile writes allowed
 * (bit 7); then per operation one byte (kind in bits 0-3, participant in bits 4-7), one byte of
 * count n (mod 40) or selector, a third byte for kinds 6, 7, 10 and 12, a fourth for 10. Kinds:
 *  0-2   push, burst, bulk of n;  3-5, 13-15  pop, burst, bulk;  11  burst push;
 *  6, 7  a push (pop) with the die hook; third byte: the call (bits 0-1: single, burst, bulk)
 *        and the hook point to die at (bits 2-3: the 1st to 4th; a push passes two,
 *        RUN_CLAIMED then FILLED, a pop one, READ);
 *  8     recover;  9  close and attach anew;
 *  10    hostile write: selector (head or tail, a header, an arena word, a record field), value
 *        from the third and fourth bytes;
 *  12    park; third byte: the call (bits 0-1), pop (bit 2), at the 1st or 2nd hook point
 *        (bit 3), for the next 0..15 operations (bits 4-7).
 * At most 200 operations, and 24 after the first hostile write.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <shmring/shmring.h>

#include "fuzz_die_hook.h"

#include "fuzz_input.h"

#define MAXPART	    5
#define MAXOWN	    512
#define OWNER(i)    (0x6000ull + (uint64_t)(i))
#define MAXOPS	    200
#define TAINTED_OPS 24 /* operations after the first hostile write */
#define MAXCAP	    64
#define MAXES	    64
#define MAXN	    40 /* counts asked for go up to 39: beyond the 32 of a bulk */

#define CHECK(c)                                                                                   \
	do {                                                                                       \
		if (!(c)) {                                                                        \
			fprintf(stderr, "fuzz_mpmc_runs: check failed: %s (line %d)\n", #c,        \
				__LINE__);                                                         \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

static unsigned char dead_owner[MAXOWN];

static int alive_fn(uint64_t owner, void *arg)
{
	(void)arg;
	uint64_t i = owner - OWNER(0);
	if (i >= MAXOWN)
		return 1; /* the harness itself (the creating handle), or a crowd record's */
	return !dead_owner[i];
}

/* The ring's positions from head on: what each holds. PARK: the claim of the participant parked
 * in its hook (alive: recovery leaves it; a pop waits it out and skips it as a dead one's). */
enum { VAL, PEND, PARK, SKIPD };
static struct {
	uint64_t v[MAXCAP];
	unsigned char t[MAXCAP];
	unsigned head, n;
	unsigned moves;	  /* head moves so far */
	int park_skipped; /* a pop skipped the parked producer's claim */
} m;

static struct shmring *ring;
static struct shmring *part[MAXPART];
/* The participant records as the model sees them: free, a live handle's, or a dead one's (idle,
 * or mid-claim) until recovery frees it or an attach takes over an idle one; and whether the
 * record holds an arena (taken at its first push, kept when a handle takes the record over). */
enum { R_FREE, R_LIVE, R_DEAD_IDLE, R_DEAD_CLAIM };
static unsigned char rst[SHMRING_MPMC_PARTICIPANTS], rarena[SHMRING_MPMC_PARTICIPANTS];
static unsigned prec[MAXPART];			       /* the record of part[i] */
static unsigned char dummy[SHMRING_MPMC_PARTICIPANTS]; /* held by an idle live process */
static unsigned char broke[MAXPART]; /* part[i] has said -EPROTO (after a hostile write) */
static unsigned nown, np, producers, es;
static uint64_t cap;
static struct input in;
static unsigned ops, left; /* operations run, and the most this input may run */
static int tainted, hostile_ok;
static uint64_t next = 1; /* the next value to push */
static int parked = -1;	  /* the participant parked in its hook, running nested operations */
static uint64_t start;	  /* the first position */

static void encode(unsigned char *dst, uint64_t v)
{
	memcpy(dst, &v, 8);
	for (unsigned j = 8; j < es; j++)
		dst[j] = (unsigned char)(v * 131 + j);
}

static uint64_t decode(const unsigned char *src)
{
	uint64_t v;
	memcpy(&v, src, 8);
	for (unsigned j = 8; j < es; j++)
		CHECK(src[j] == (unsigned char)(v * 131 + j)); /* an element torn or mixed */
	return v;
}

static void model_append(int type, uint64_t v)
{
	CHECK(m.n < cap);
	m.t[(m.head + m.n) % MAXCAP] = (unsigned char)type;
	m.v[(m.head + m.n) % MAXCAP] = v;
	m.n++;
}

static unsigned dead_records(void)
{
	unsigned k = 0;
	for (int i = 0; i < SHMRING_MPMC_PARTICIPANTS; i++)
		k += rst[i] == R_DEAD_IDLE || rst[i] == R_DEAD_CLAIM;
	return k;
}

/* Recovery: every dead record free, with its arena, and every dead claim skipped. */
static void model_recovered(void)
{
	for (unsigned i = 0; i < m.n; i++)
		if (m.t[(m.head + i) % MAXCAP] == PEND)
			m.t[(m.head + i) % MAXCAP] = SKIPD;
	for (int i = 0; i < SHMRING_MPMC_PARTICIPANTS; i++)
		if (rst[i] == R_DEAD_IDLE || rst[i] == R_DEAD_CLAIM)
			rst[i] = R_FREE, rarena[i] = 0;
}

static unsigned arenas_held(void)
{
	unsigned k = 0;
	for (int i = 0; i < SHMRING_MPMC_PARTICIPANTS; i++)
		k += rarena[i];
	return k;
}

/* The model's own reading of a request of *n elements: a bulk beyond what one call moves or
 * the ring holds is invalid (1), a burst moves at most that much. */
static int clamp(unsigned *n, int bulk)
{
	unsigned most = cap < SHMRING_MPMC_BULK_MAX ? (unsigned)cap : SHMRING_MPMC_BULK_MAX;
	if (*n <= most)
		return 0;
	*n = most;
	return bulk;
}

/*
 * What a push of k (bulk: all or none) from part[who] must do: -EINVAL, -EUSERS, -EAGAIN, or
 * the number n > 0 it claims (the call reaches its hook points then). Takes the arena where
 * the call would.
 */
static int plan_push(unsigned who, unsigned k, int bulk)
{
	if (k == 0)
		return 0;
	if (clamp(&k, bulk))
		return -EINVAL;
	if (!rarena[prec[who]]) {
		/* Every arena held: the push recovers the dead first (their arenas and claims),
		 * whatever it returns then. */
		if (arenas_held() >= producers && dead_records())
			model_recovered();
		if (arenas_held() >= producers)
			return -EUSERS;
		rarena[prec[who]] = 1; /* at its first push that gets here, whatever it says */
	}
	uint64_t room = cap - m.n, n = room < k ? (bulk ? 0 : room) : k;
	return n ? (int)n : -EAGAIN;
}

/*
 * What a pop of up to mreq (bulk: all or none) must do. Walks the model as the pop walks the
 * headers: values are taken, a pending claim is skipped (that much sticks whatever the call
 * returns) unless a burst already has values. Returns the count (-EAGAIN as 0, -EINVAL), the
 * values in vals, the positions head moves over in *adv, and in *cas whether the call gets to
 * its head CAS (and so to the READ hook).
 */
static int plan_pop(unsigned mreq, int bulk, uint64_t *vals, unsigned *adv, int *cas)
{
	unsigned got = 0, i = 0;

	*adv = 0;
	*cas = 0;
	if (mreq == 0)
		return 0;
	if (clamp(&mreq, bulk))
		return -EINVAL;
	while (got < mreq && i < m.n) {
		unsigned k = (m.head + i) % MAXCAP;
		if (m.t[k] == PEND || m.t[k] == PARK) {
			if (got && !bulk)
				break;
			m.park_skipped |= m.t[k] == PARK;
			m.t[k] = SKIPD;
		} else if (m.t[k] == VAL) {
			vals[got++] = m.v[k];
		}
		i++;
	}
	*cas = !((got == 0 && i == 0) || (bulk && got && got < mreq));
	*adv = *cas ? i : 0;
	return *cas ? (int)got : 0;
}

static void model_advance(unsigned adv)
{
	m.head = (m.head + adv) % MAXCAP;
	m.n -= adv;
	m.moves += adv > 0;
}

/*
 * A new handle for part[who]. It takes the first free record, else the first idle one of a
 * dead owner, whose arena it then has; else attach says -EUSERS.
 */
static struct shmring *attach_one(unsigned who)
{
	size_t len;
	void *base = shmring_base(ring, &len);
	struct shmring_params e = {.kind = SHMRING_MPMC_RUNS};
	struct shmring *h = NULL;
	int want = -1;

	if (nown >= MAXOWN)
		return NULL;
	for (int i = 0; i < SHMRING_MPMC_PARTICIPANTS && want < 0; i++)
		if (rst[i] == R_FREE)
			want = i;
	for (int i = 0; i < SHMRING_MPMC_PARTICIPANTS && want < 0; i++)
		if (rst[i] == R_DEAD_IDLE)
			want = i;
	int rc = shmring_attach(base, len, &e, &h);
	if (!tainted)
		CHECK(want < 0 ? rc == -EUSERS : rc == 0 && h->m.rec_i == (uint32_t)want);
	if (rc != 0)
		return NULL;
	rst[h->m.rec_i] = R_LIVE;
	prec[who] = h->m.rec_i;
	CHECK(shmring_mpmc_set_owner(h, OWNER(nown)) == 0);
	nown++;
	CHECK(shmring_mpmc_set_patience(h, 1000) == 0);
	return h;
}

static void new_participant(unsigned who)
{
	broke[who] = 0;
	part[who] = NULL;
	part[who] = attach_one(who);
}

/* A live handle closes: its record (idle) is free again, its arena too. */
static void close_participant(unsigned who)
{
	if (!part[who])
		return;
	shmring_close(part[who]);
	part[who] = NULL;
	if (!tainted)
		rst[prec[who]] = R_FREE, rarena[prec[who]] = 0;
}

/* A dead (hook-abandoned) handle answers -EPROTO to everything. */
static void check_dead_handle(struct shmring *h)
{
	unsigned char buf[2 * MAXES] = {0};

	CHECK(shmring_is_broken(h) == 1);
	CHECK(shmring_mpmc_push(h, buf) == -EPROTO);
	CHECK(shmring_mpmc_pop(h, buf) == -EPROTO);
	CHECK(shmring_mpmc_push_burst(h, buf, 2) == -EPROTO);
	CHECK(shmring_mpmc_pop_burst(h, buf, 2) == -EPROTO);
	CHECK(shmring_mpmc_push_bulk(h, buf, 1) == -EPROTO);
	CHECK(shmring_mpmc_pop_bulk(h, buf, 1) == -EPROTO);
	CHECK(shmring_mpmc_recover(h) == -EPROTO);
	CHECK(shmring_mpmc_size(h) == -EPROTO);
}

/* After a hostile write: a count up to n, or an error a peer may cause; -EPROTO sticks. */
static void check_tainted(unsigned char *brk, struct shmring *h, int rc, int n)
{
	if (*brk)
		CHECK(rc == -EPROTO);
	CHECK(rc <= n &&
	      (rc >= 0 || rc == -EAGAIN || rc == -EPROTO || rc == -EINVAL || rc == -EUSERS));
	if (rc == -EPROTO) {
		*brk = 1;
		CHECK(shmring_is_broken(h) == 1);
	}
	/* A broken handle says -EPROTO, whatever else went wrong (a push that broke its handle
	 * in its own recovery said -EUSERS once). */
	CHECK(rc == -EPROTO || !shmring_is_broken(h));
}

/* kind 0 single, 1 burst, 2 bulk. Single calls are reported as a count (1) like the others. */
static int do_push(struct shmring *h, int kind, const unsigned char *buf, unsigned n)
{
	if (kind == 0) {
		int rc = shmring_mpmc_push(h, buf);
		return rc == 0 ? 1 : rc;
	}
	return kind == 1 ? shmring_mpmc_push_burst(h, buf, n) : shmring_mpmc_push_bulk(h, buf, n);
}

static int do_pop(struct shmring *h, int kind, unsigned char *buf, unsigned n)
{
	if (kind == 0) {
		int rc = shmring_mpmc_pop(h, buf);
		return rc == 0 ? 1 : rc;
	}
	return kind == 1 ? shmring_mpmc_pop_burst(h, buf, n) : shmring_mpmc_pop_bulk(h, buf, n);
}

/* A push or pop of cnt (kind 0 single, 1 burst, 2 bulk) by part[who], checked. */
static void move(unsigned who, int push, int kind, unsigned cnt, unsigned char *buf)
{
	struct shmring *h = part[who];
	uint64_t want[MAXN];
	unsigned adv;
	int cas, rc, exp;

	if (push) {
		for (unsigned k = 0; k < cnt; k++)
			encode(buf + k * es, next + k);
		rc = do_push(h, kind, buf, cnt);
	} else {
		memset(buf, 0x5a, MAXN * MAXES);
		rc = do_pop(h, kind, buf, cnt);
	}
	if (tainted) {
		check_tainted(&broke[who], h, rc, (int)cnt);
	} else if (push) {
		CHECK(rc == plan_push(who, cnt, kind != 1));
		for (int k = 0; k < rc; k++)
			model_append(VAL, next + (uint64_t)k);
	} else {
		exp = plan_pop(cnt, kind != 1, want, &adv, &cas);
		CHECK(rc == (exp == 0 && cnt ? -EAGAIN : exp));
		for (int k = 0; k < rc; k++)
			CHECK(decode(buf + (size_t)k * es) == want[k]);
		model_advance(adv);
	}
	if (push)
		next += cnt;
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* A hostile value for word w, chosen by bytes val and x (and the ring's state). */
static uint64_t hostile_value(_Atomic uint64_t *w, int is_hdr, uint64_t slot, unsigned char val,
			      unsigned char x)
{
	uint64_t cur = atomic_load(w);
	switch (val & 3) {
	case 0:
		return (uint64_t)val * 0x0101010101010101ull ^ (uint64_t)x << 8;
	case 1:
		return (uint64_t)(val >> 2) | (uint64_t)x << 6;
	case 2:
		return cur + (uint64_t)(int64_t)(int8_t)x; /* a small step either way */
	default:
		if (is_hdr) {
			/* A plausible header: of the lap of the position at or after head in this
			 * slot (or one off, or two on), any state, length up to 16, any arena. */
			uint64_t h = atomic_load(ring->cons_pos);
			uint64_t p =
			    h + ((slot - h) & ring->mask) + ((uint64_t)((val >> 2) & 3) - 1) * cap;
			unsigned len = 1 + ((unsigned)(val >> 6) << 2 | x >> 6) % (unsigned)cap;
			return _shmring_mr_enc(ring, p, (val >> 4) & 3, len, x & 63);
		}
		/* For a record's state: a claim in flight of x positions. */
		return _SHMRING_MR_CLAIMING | (uint64_t)x << 16;
	}
}

static void hostile_write(unsigned char sel, unsigned char val, unsigned char x)
{
	size_t len;
	unsigned char *base = shmring_base(ring, &len);
	_Atomic uint64_t *w;
	int is_hdr = 0;
	uint64_t slot = 0;

	switch (sel % 5) {
	case 0:
		w = sel & 8 ? ring->prod_pos : ring->cons_pos;
		break;
	case 1:
	case 2:
		slot = (sel / 5) & ring->mask;
		w = &ring->m.hdr[slot];
		is_hdr = 1;
		break;
	case 3:
		w = &ring->m.arenas[(sel / 5) % producers];
		break;
	default:
		/* owner, state, lo, pos, idx, seq of one of the first 8 records */
		w = &ring->m.recs[(sel / 5) % 8].owner + (sel / 40) % 6;
		break;
	}
	CHECK((unsigned char *)w >= base && (unsigned char *)w + 8 <= base + len);
	atomic_store(w, hostile_value(w, is_hdr, slot, val, x));
}

/* A push or pop with the die hook: it dies at the cd-th hook point it passes, if it gets there. */
static void die_in(unsigned who, int push, int kind, unsigned cnt, int cd, unsigned char *buf)
{
	struct shmring *h = part[who];
	uint64_t want[MAXN];
	unsigned adv;
	int cas, rc, exp;

	countdown = cd;
	died_point = 0;
	CHECK(shmring_mpmc_set_hook(h, die_hook, NULL) == 0);
	if (push) {
		for (unsigned k = 0; k < cnt; k++)
			encode(buf + k * es, next + k);
		rc = do_push(h, kind, buf, cnt);
	} else {
		rc = do_pop(h, kind, buf, cnt);
	}
	shmring_mpmc_set_hook(h, NULL, NULL);
	if (tainted) {
		if (rc != -ECANCELED)
			check_tainted(&broke[who], h, rc, (int)cnt);
	} else if (push) {
		exp = plan_push(who, cnt, kind != 1);
		if (exp > 0 && cd <= 2) {
			/* A push passes RUN_CLAIMED, then FILLED, both before its commit. */
			CHECK(rc == -ECANCELED);
			CHECK(died_point ==
			      (cd == 1 ? SHMRING_MPMC_HOOK_RUN_CLAIMED : SHMRING_MPMC_HOOK_FILLED));
			/* Its claim stays, never to be delivered. */
			for (int k = 0; k < exp; k++)
				model_append(PEND, 0);
		} else {
			CHECK(rc == exp);
			for (int k = 0; k < rc; k++)
				model_append(VAL, next + (uint64_t)k);
		}
	} else {
		exp = plan_pop(cnt, kind != 1, want, &adv, &cas);
		if (cas && cd == 1) {
			/* Died before its head CAS: took nothing (what its walk skipped stays
			 * skipped). */
			CHECK(rc == -ECANCELED);
			CHECK(died_point == SHMRING_MPMC_HOOK_READ);
		} else {
			CHECK(rc == (exp == 0 && cnt ? -EAGAIN : exp));
			for (int k = 0; k < rc; k++)
				CHECK(decode(buf + (size_t)k * es) == want[k]);
			model_advance(adv);
		}
	}
	if (push)
		next += cnt;
	if (rc != -ECANCELED)
		return;
	/* Died: its owner is dead from now on, and its record stays as it was, with its arena
	 * (mid-claim for a producer, idle for a consumer), for recovery or, if idle, for an
	 * attach to take over. A dead process never closes: the handle goes without its
	 * close's release of the record (a field the harness may touch, as a test). */
	check_dead_handle(h);
	uint64_t o = h->m.owner - OWNER(0);
	if (o < MAXOWN)
		dead_owner[o] = 1;
	rst[prec[who]] = push ? R_DEAD_CLAIM : R_DEAD_IDLE;
	h->m.rec = NULL;
	shmring_close(h);
	new_participant(who);
}

static void step(int depth);

/* A participant parked in its hook: the next operations run there, by the others. */
struct park {
	int countdown, fired, push;
	unsigned who, nested, n;
	uint64_t first; /* its values: first.. */
	unsigned moves; /* m.moves when it parked */
};

static int park_hook(struct shmring *r, int point, int queue, void *arg)
{
	struct park *pk = arg;
	(void)r;
	(void)queue;
	if (pk->fired || --pk->countdown)
		return 0;
	pk->fired = point;
	if (!tainted && pk->push) {
		/* Claimed, not committed: its positions are taken. */
		for (unsigned k = 0; k < pk->n; k++)
			model_append(PARK, pk->first + k);
		m.park_skipped = 0;
	}
	pk->moves = m.moves;
	parked = (int)pk->who;
	for (unsigned k = 0; k < pk->nested && ops < left && in.n > 0; k++) {
		ops++;
		step(1);
	}
	parked = -1;
	return 0;
}

/*
 * A push or pop parked at its cd-th hook point (a producer between claim and commit, a consumer
 * with its copies done and head not moved) while the next operations run. A parked producer's
 * claim is waited out and skipped by the pops that meet it: then its commit fails and it claims
 * again, at the tail of then; else it commits where it claimed. A parked consumer moves head
 * over what it walked, unless others moved head meanwhile: then it walks again from there.
 */
static void park_in(unsigned who, int push, int kind, unsigned cnt, int cd, unsigned nested)
{
	struct shmring *h = part[who];
	struct park pk = {.countdown = cd, .push = push, .who = who, .nested = nested};
	unsigned char buf[MAXN * MAXES];
	uint64_t want[MAXN];
	unsigned adv = 0;
	int cas = 0, rc, exp = 0;

	if (!tainted) {
		/* What the call does up to its hook point. */
		if (push)
			exp = plan_push(who, cnt, kind != 1);
		else
			exp = plan_pop(cnt, kind != 1, want, &adv, &cas);
	}
	pk.n = exp > 0 ? (unsigned)exp : 0;
	pk.first = next;
	CHECK(shmring_mpmc_set_hook(h, park_hook, &pk) == 0);
	if (push) {
		for (unsigned k = 0; k < cnt; k++)
			encode(buf + k * es, next + k);
		next += cnt;
		rc = do_push(h, kind, buf, cnt);
	} else {
		memset(buf, 0x3c, sizeof(buf));
		rc = do_pop(h, kind, buf, cnt);
	}
	shmring_mpmc_set_hook(h, NULL, NULL);
	if (tainted) {
		check_tainted(&broke[who], h, rc, (int)cnt);
		return;
	}
	if (push) {
		/* Parked at RUN_CLAIMED (1) or FILLED (2) of its first claim, if it claimed. */
		CHECK(!!pk.fired == (exp > 0 && cd <= 2));
		if (pk.fired && m.park_skipped) {
			/* Skipped: all of it (a walk skips a claim whole). Claims again. */
			for (unsigned i = 0; i < m.n; i++)
				CHECK(m.t[(m.head + i) % MAXCAP] != PARK);
			exp = plan_push(who, cnt, kind != 1);
			CHECK(rc == exp);
			for (int k = 0; k < rc; k++)
				model_append(VAL, pk.first + (uint64_t)k);
		} else if (pk.fired) {
			/* Committed where it claimed. */
			CHECK(rc == exp);
			for (unsigned i = 0; i < m.n; i++)
				if (m.t[(m.head + i) % MAXCAP] == PARK)
					m.t[(m.head + i) % MAXCAP] = VAL;
		} else {
			CHECK(rc == exp);
			for (int k = 0; k < rc; k++)
				model_append(VAL, pk.first + (uint64_t)k);
		}
		return;
	}
	/* A pop parks at its READ hook (cd 1), which it reaches only to move head. */
	CHECK(!!pk.fired == (cas && cd == 1));
	if (pk.fired && m.moves != pk.moves) {
		/* Its head CAS failed: it walked again from the new head. */
		exp = plan_pop(cnt, kind != 1, want, &adv, &cas);
	}
	CHECK(rc == (exp == 0 && cnt ? -EAGAIN : exp));
	for (int k = 0; k < rc; k++)
		CHECK(decode(buf + (size_t)k * es) == want[k]);
	model_advance(adv);
}

/* One operation from the input (depth 1: run by a parked participant's hook). */
static void step(int depth)
{
	unsigned char a = next8(&in), b = next8(&in), c = 0, d = 0;
	unsigned who = (a >> 4) % np, op = a & 15, n = b % MAXN;
	struct shmring *h = part[who];
	unsigned char buf[MAXN * MAXES];
	int kind; /* 0 single, 1 burst, 2 bulk */

	if (op == 6 || op == 7 || op == 10 || op == 12)
		c = next8(&in);
	if (op == 10)
		d = next8(&in);
	if ((int)who == parked)
		return;			      /* it is inside its call */
	if (op < 6 || op >= 13 || op == 11) { /* pushes and pops */
		int push = op < 3 || op == 11;
		kind = op < 6 ? (int)op % 3 : op == 11 ? 1 : (int)op - 13;
		if (h)
			move(who, push, kind, kind == 0 ? 1 : n, buf);
	} else if (op < 8) { /* 6: die in a push, 7: in a pop */
		kind = c & 3;
		kind = kind == 3 ? 1 : kind;
		if (h)
			die_in(who, op == 6, kind, kind == 0 ? 1 : n, 1 + ((c >> 2) & 3), buf);
	} else if (op == 8) { /* recover */
		if (!h)
			return;
		int rc = shmring_mpmc_recover(h);
		if (tainted) {
			if (broke[who])
				CHECK(rc == -EPROTO);
			CHECK(rc >= 0 || rc == -EAGAIN || rc == -EPROTO);
			if (rc == -EPROTO) {
				broke[who] = 1;
				CHECK(shmring_is_broken(h) == 1);
			}
		} else {
			/* Exactly the dead (a parked producer is alive: left alone). */
			CHECK(rc == (int)dead_records());
			model_recovered();
		}
	} else if (op == 9) { /* close the participant (its arena is free), attach anew */
		close_participant(who);
		new_participant(who);
	} else if (op == 10) { /* hostile write */
		if (!hostile_ok || depth)
			return;
		hostile_write(b, c, d);
		/* A few calls more: on a corrupt ring a call may run to its bounds (a pop that
		 * meets a header of a later lap retries 4096 times), so a long tail of them would
		 * only slow the fuzzer down. */
		if (!tainted && left > ops + TAINTED_OPS)
			left = ops + TAINTED_OPS;
		tainted = 1;
	} else if (op == 12) { /* park in a push or pop while the next c >> 4 operations run */
		if (!h || depth)
			return;
		kind = c & 3;
		kind = kind == 3 ? 1 : kind;
		park_in(who, !(c & 4), kind, kind == 0 ? 1 : n, 1 + ((c >> 3) & 1), c >> 4);
	}
	if (!tainted) {
		/* tail - head: values and dead positions alike, across 2^64 too. */
		uint64_t hd = atomic_load(ring->cons_pos), tl = atomic_load(ring->prod_pos);
		CHECK(tl - hd == m.n);
		CHECK(shmring_mpmc_size(ring) == (int64_t)m.n);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const unsigned sizes[4] = {8, 12, 24, 64};

	if (size < 2)
		return 0;
	in = (struct input){data, size};
	unsigned char b0 = next8(&in), b1 = next8(&in);
	unsigned order = b0 & 7;
	order = order > 6 ? 6 : order;
	cap = 1ull << order;
	es = sizes[(b0 >> 5) & 3];
	np = 1 + (b1 & 7) % MAXPART;
	producers = 1 + ((b1 >> 4) & 3);
	hostile_ok = (b1 & 0x80) != 0;
	struct shmring_params p = {
	    .kind = SHMRING_MPMC_RUNS, .elem_size = es, .capacity = cap, .producers = producers};
	/* In caller's memory of exactly the ring's size, so that ASan catches a read past it (an
	 * arena index out of range, say). */
	ssize_t sz = shmring_memsize(&p);
	CHECK(sz > 0);
	unsigned char *mem = aligned_alloc(128, ((size_t)sz + 127) & ~(size_t)127);
	CHECK(mem != NULL);
	CHECK(shmring_init(mem, (size_t)sz, &p) == 0);
	CHECK(shmring_attach(mem, (size_t)sz, &p, &ring) == 0);
	CHECK(shmring_mpmc_set_patience(ring, 1000) == 0);

	/* Start position: a ring that has run for L laps, its headers of lap L - 1 (all older than
	 * any position from here on, as a real ring's are; a fresh ring's lap -1 stays older for
	 * 2^50 laps, so only the far starts need them rewritten). */
	uint64_t lap = 0;
	switch ((b0 >> 3) & 3) {
	case 1:
		lap = 1021;
		break;
	case 2:
		lap = (1ull << 51) - 2;
		break;
	case 3:
		lap = (0 - (2ull << order)) >> order;
		break;
	}
	start = lap << order;
	if (lap) {
		uint64_t x = start;
		atomic_store(ring->prod_pos, x);
		atomic_store(ring->cons_pos, x);
		if (lap >= 2048)
			for (uint64_t s = 0; s < cap; s++)
				atomic_store(
				    &ring->m.hdr[s],
				    _shmring_mr_enc(ring, x - cap + s, _SHMRING_MR_COMMIT, 1, 0));
	}

	memset(&m, 0, sizeof(m));
	memset(dead_owner, 0, sizeof(dead_owner));
	memset(part, 0, sizeof(part));
	memset(rst, 0, sizeof(rst));
	memset(rarena, 0, sizeof(rarena));
	memset(dummy, 0, sizeof(dummy));
	memset(broke, 0, sizeof(broke));
	nown = 0;
	ops = 0;
	left = MAXOPS;
	tainted = 0;
	next = 1;
	parked = -1;
	/* Process-wide, so that attach too sees the fake owners as the harness does. */
	shmring_mpmc_set_alive_fn(NULL, alive_fn, NULL);
	rst[ring->m.rec_i] = R_LIVE;
	for (unsigned i = 0; i < np; i++)
		new_participant(i);
	/* Crowded (bit 3 of byte 1): idle records of other live processes (owner words the
	 * liveness hook calls alive) hold all but the last 1 or 3, so that the attach after a
	 * death takes over a dead one's idle record (and its arena). */
	for (int i = 0; (b1 & 8) && i < SHMRING_MPMC_PARTICIPANTS - (b1 & 0x40 ? 3 : 1); i++)
		if (rst[i] == R_FREE) {
			atomic_store(&ring->m.recs[i].owner, OWNER(MAXOWN) + (uint64_t)i);
			rst[i] = R_LIVE;
			dummy[i] = 1;
		}

	while (ops < left && in.n > 0) {
		ops++;
		step(0);
	}

	unsigned char buf[MAXN * MAXES];
	for (unsigned i = 0; i < np; i++)
		close_participant(i);
	for (int i = 0; i < SHMRING_MPMC_PARTICIPANTS; i++)
		if (dummy[i]) { /* those processes close */
			atomic_store(&ring->m.recs[i].owner, 0);
			rst[i] = R_FREE;
		}
	if (!tainted) {
		int rc = shmring_mpmc_recover(ring);
		CHECK(rc == (int)dead_records());
		model_recovered();
		/* Drain. Recovery skipped every dead claim: no pop may wait one out now. */
		CHECK(shmring_mpmc_set_patience(ring, 1000000000u) == 0);
		uint64_t t0 = now_ns(), want[1];
		for (;;) {
			unsigned adv;
			int cas, exp = plan_pop(1, 1, want, &adv, &cas);
			rc = shmring_mpmc_pop(ring, buf);
			CHECK(rc == (exp ? 0 : -EAGAIN));
			model_advance(adv);
			if (rc)
				break;
			CHECK(decode(buf) == want[0]);
		}
		CHECK(now_ns() - t0 < 500000000u); /* a dead claim waited out: not recovered */
		CHECK(m.n == 0 && shmring_mpmc_size(ring) == 0);
		CHECK(shmring_mpmc_set_patience(ring, 1000) == 0);
		/* The refresh: a position of a lap that is a multiple of 1024 leaves its slot's
		 * header at that lap or newer, once consumed, whether it had a header of its own
		 * or was inside a run (else inner headers would age out of the tag's range); so
		 * every header is within 1024 laps of its slot's last position, and within 2048
		 * always (the positions before the start may be older). */
		uint64_t t = atomic_load(ring->prod_pos);
		CHECK(atomic_load(ring->cons_pos) == t);
		for (uint64_t s = 0; s < cap; s++) {
			uint64_t ps = t - cap + ((s - (t - cap)) & ring->mask);
			uint64_t lp = ps >> order, lx = lp & ~1023ull, xs = lx << order | s;
			uint64_t age =
			    (lp - (atomic_load(&ring->m.hdr[s]) >> 13)) & _SHMRING_MR_TAG_MASK;
			CHECK(age <= 2048);
			/* xs consumed in this run (across 2^64 too). */
			if (xs - start < t - start)
				CHECK(age <= lp - lx);
		}
		/* Capacity: exactly cap again, in order. */
		for (uint64_t k = 0; k < cap; k++) {
			encode(buf, k);
			CHECK(shmring_mpmc_push(ring, buf) == 0);
		}
		CHECK(shmring_mpmc_push(ring, buf) == -EAGAIN);
		for (uint64_t k = 0; k < cap; k++) {
			CHECK(shmring_mpmc_pop(ring, buf) == 0);
			CHECK(decode(buf) == k);
		}
		CHECK(shmring_mpmc_pop(ring, buf) == -EAGAIN);
		/* Nothing leaked: only the creating handle's record and arena are held. */
		unsigned recs = 0, arenas = 0;
		for (int i = 0; i < SHMRING_MPMC_PARTICIPANTS; i++)
			recs += atomic_load(&ring->m.recs[i].owner) != 0;
		for (unsigned a = 0; a < producers; a++)
			arenas += atomic_load(&ring->m.arenas[a]) != 0;
		CHECK(recs == 1 && arenas == 1);
	} else {
		/* The last handle recovers, pops and pushes a few times: only the return codes
		 * count. */
		unsigned char brk = 0;
		int rc = shmring_mpmc_recover(ring);
		CHECK(rc >= 0 || rc == -EAGAIN || rc == -EPROTO);
		if (rc == -EPROTO)
			brk = 1;
		for (uint64_t k = 0; k < 4; k++) {
			rc = shmring_mpmc_pop_burst(ring, buf, (unsigned)k % MAXN);
			check_tainted(&brk, ring, rc, (int)(k % MAXN));
			encode(buf, k);
			rc = shmring_mpmc_push(ring, buf);
			check_tainted(&brk, ring, rc == 0 ? 1 : rc, 1);
		}
	}
	shmring_close(ring);
	free(mem);
	return 0;
}

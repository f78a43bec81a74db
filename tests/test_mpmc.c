/* SPDX-License-Identifier: MIT */
/* MPMC ring: single-thread semantics, participant records, every death point through the test
 * hook, the parked producer, multi-process runs and kill injection. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <poll.h>
#include <sched.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

static struct shmring_params mp_params(uint32_t es, uint64_t cap)
{
	struct shmring_params p = {0};
	p.kind = SHMRING_MPMC;
	p.elem_size = es;
	p.capacity = cap;
	return p;
}

/* A second handle (own participant record) on the same anonymous mapping. */
static struct shmring *mp_attach(struct shmring *r)
{
	size_t len;
	void *base = shmring_base(r, &len);
	struct shmring_params e = mp_params(0, 0);
	struct shmring *h = NULL;
	cr_assert_eq(shmring_attach(base, len, &e, &h), 0);
	return h;
}

Test(mpmc, fifo_single_thread)
{
	uint64_t caps[] = {1, 2, 8, 64, 1024};
	for (unsigned c = 0; c < sizeof(caps) / sizeof(caps[0]); c++) {
		struct shmring_params p = mp_params(8, caps[c]);
		struct shmring *r;
		cr_assert_eq(shmring_create_anon(&p, &r), 0);
		cr_assert_eq(shmring_kind(r), SHMRING_MPMC);
		uint64_t next_in = 0, next_out = 0, v;
		for (int round = 0; round < 50; round++) {
			unsigned k = (unsigned)(round * 7 % (caps[c] + 1));
			for (unsigned i = 0; i < k; i++, next_in++)
				cr_assert_eq(shmring_mpmc_push(r, &next_in), 0);
			cr_assert_eq(shmring_mpmc_size(r), (int64_t)k);
			if (k == caps[c])
				cr_assert_eq(shmring_mpmc_push(r, &v), -EAGAIN);
			for (unsigned i = 0; i < k; i++, next_out++) {
				cr_assert_eq(shmring_mpmc_pop(r, &v), 0);
				cr_assert_eq(v, next_out);
			}
			cr_assert_eq(shmring_mpmc_pop(r, &v), -EAGAIN);
		}
		shmring_close(r);
	}
}

Test(mpmc, burst_and_odd_sizes)
{
	struct shmring_params p = mp_params(13, 16);
	struct shmring *r;
	unsigned char in[40 * 13], out[40 * 13];
	cr_assert_eq(shmring_create_anon(&p, &r), 0);
	for (unsigned i = 0; i < sizeof(in); i++)
		in[i] = (unsigned char)(i * 31 + 7);
	cr_assert_eq(shmring_mpmc_push_burst(r, in, 40), 16);
	cr_assert_eq(shmring_mpmc_push_burst(r, in, 1), -EAGAIN);
	cr_assert_eq(shmring_mpmc_pop_burst(r, out, 40), 16);
	cr_assert_eq(memcmp(in, out, 16 * 13), 0);
	cr_assert_eq(shmring_mpmc_pop_burst(r, out, 4), -EAGAIN);
	cr_assert_eq(shmring_mpmc_push_burst(r, in, 0), 0);
	shmring_close(r);
}

Test(mpmc, geometry_and_kind)
{
	struct shmring_params p = mp_params(8, 1ull << 30);
	if (sizeof(ssize_t) < 8) /* 32-bit: beyond what a ssize_t holds (found on i386) */
		cr_assert_eq(shmring_memsize(&p), -EOVERFLOW);
	else
		cr_assert_gt(shmring_memsize(&p), (ssize_t)(1ull << 35));
	p = mp_params(8, 3);
	cr_assert_eq(shmring_memsize(&p), -EINVAL);
	const char *name = tu_shm_name("mpmc-kind");
	p = mp_params(8, 8);
	struct shmring *r, *s;
	cr_assert_eq(shmring_create(name, &p, &r), 0);
	struct shmring_params spsc = tu_params(8, 8);
	cr_assert_eq(shmring_open(name, &spsc, &s), -EPROTO);
	cr_assert_eq(shmring_open(name, &p, &s), 0);
	uint64_t v = 5;
	cr_assert_eq(shmring_mpmc_push(r, &v), 0);
	cr_assert_eq(shmring_mpmc_pop(s, &v), 0);
	cr_assert_eq(v, 5);
	shmring_close(s);
	shmring_close(r);
}

Test(mpmc, participant_records)
{
	struct shmring_params p = mp_params(8, 4);
	struct shmring *r, *h[SHMRING_MPMC_PARTICIPANTS];
	cr_assert_eq(shmring_create_anon(&p, &r), 0);
	size_t len;
	void *base = shmring_base(r, &len);
	for (int i = 0; i < SHMRING_MPMC_PARTICIPANTS - 1; i++)
		h[i] = mp_attach(r);
	struct shmring_params e = mp_params(0, 0);
	cr_assert_eq(shmring_attach(base, len, &e, &h[63]), -EUSERS);
	shmring_close(h[5]);
	h[5] = mp_attach(r);
	for (int i = 0; i < SHMRING_MPMC_PARTICIPANTS - 1; i++)
		shmring_close(h[i]);
	cr_assert_eq(shmring_mpmc_recover(r), 0);
	shmring_close(r);
}

/* ---- deaths at every hook point, through the test hook ----------------------------------- */

#define FAKE_OWNER 0xdead00000001ull
static int die_point, die_queue;
static int hook_die(struct shmring *r, int point, int queue, void *arg)
{
	(void)r;
	(void)arg;
	return point == die_point && queue == die_queue;
}
static int alive_unless_fake(uint64_t owner, void *arg)
{
	(void)arg;
	return owner != FAKE_OWNER;
}

/* A ring of capacity cap, and in *v a second handle whose owner the ring takes for dead. */
static struct shmring *ring_with_victim(uint64_t cap, struct shmring **v)
{
	struct shmring_params p = mp_params(8, cap);
	struct shmring *r;
	cr_assert_eq(shmring_create_anon(&p, &r), 0);
	shmring_mpmc_set_alive_fn(r, alive_unless_fake, NULL);
	*v = mp_attach(r);
	shmring_mpmc_set_owner(*v, FAKE_OWNER);
	return r;
}

/*
 * In a quiescent ring every slot index sits in exactly one entry of the two queues: the filled
 * one if its slot holds an element, else the free one. An entry left holding an index that is
 * also elsewhere is lost to the queue for good (no enqueue lands on it, no dequeue takes it),
 * which capacity alone does not show while the 2n entries still have room (found by planting a
 * recovery that left a dead bulk take's entries full: every death test passed).
 */
static void assert_each_index_once(struct shmring *r, const char *what, int k)
{
	static unsigned char seen[1024];
	uint64_t cap = r->capacity;

	cr_assert_leq(cap, 1024);
	memset(seen, 0, sizeof(seen));
	for (int q = 0; q < 2; q++)
		for (uint64_t j = 0; j <= r->m.emask; j++) {
			uint64_t ei = _SHMRING_MP_IDX(r, atomic_load(&r->m.ent[q][j]));
			if (ei == r->m.bot)
				continue;
			cr_assert_lt(ei, cap, "%s %d: entry %lu of queue %d holds %#lx", what, k,
				     (unsigned long)j, q, (unsigned long)ei);
			cr_assert_eq(seen[ei]++, 0, "%s %d: index %lu in two entries", what, k,
				     (unsigned long)ei);
		}
	for (uint64_t i = 0; i < cap; i++)
		cr_assert_eq(seen[i], 1, "%s %d: index %lu in no entry", what, k, (unsigned long)i);
}

/* The ring takes exactly cap elements: recovery gave every slot back, each once. */
static void assert_capacity(struct shmring *r, uint64_t cap, const char *what, int k)
{
	uint64_t x = 0;
	assert_each_index_once(r, what, k);
	for (uint64_t i = 0; i < cap; i++)
		cr_assert_eq(shmring_mpmc_push(r, &i), 0, "%s %d: capacity shrank", what, k);
	cr_assert_eq(shmring_mpmc_push(r, &x), -EAGAIN);
}

/*
 * Pops what is left after a recovery and checks its order: the survivors (values below vmin,
 * pushed in ascending order before the victim's call) come out ascending, then the victim's
 * (vmin and up, pushed ascending by its call), none twice. seen[] (nseen values) counts what
 * was popped, the victim's pops already in it. Returns how many of the victim's came out.
 * Found in review: the death tests checked counts alone, and a recovery that republished in
 * another order would have passed them.
 */
static int drain_in_order(struct shmring *r, int *seen, uint64_t nseen, uint64_t vmin,
			  const char *what, long k)
{
	uint64_t x, last = 0;
	int any = 0, nvictim = 0;

	while (shmring_mpmc_pop(r, &x) == 0) {
		if (x < nseen)
			cr_assert_eq(seen[x]++, 0, "%s %ld: %lu twice", what, k, (unsigned long)x);
		cr_assert(!any || x > last, "%s %ld: %lu after %lu", what, k, (unsigned long)x,
			  (unsigned long)last);
		cr_assert(x >= vmin || nvictim == 0, "%s %ld: survivor %lu after the victim's",
			  what, k, (unsigned long)x);
		nvictim += x >= vmin;
		last = x;
		any = 1;
	}
	return nvictim;
}

/* Fills a ring, kills a producer or consumer (simulated) at point pt on queue q, recovers, and
 * checks: no duplicate, at most one loss, full capacity afterwards. */
static int death_case(int producer, int pt, int q, uint64_t cap, uint64_t shift)
{
	struct shmring *v, *r = ring_with_victim(cap, &v);
	uint64_t x;
	int seen[1024] = {0}, npushed = 0;
	/* Both queues' heads and tails move by shift first, so that the positions the victim
	 * takes fall on any entry of the layout. */
	for (uint64_t i = 0; i < shift; i++) {
		cr_assert_eq(shmring_mpmc_push(r, &i), 0);
		cr_assert_eq(shmring_mpmc_pop(r, &x), 0);
	}
	for (uint64_t i = 0; i < cap / 2; i++, npushed++)
		cr_assert_eq(shmring_mpmc_push(r, &i), 0);
	die_point = pt;
	die_queue = q;
	shmring_mpmc_set_hook(v, hook_die, NULL);
	uint64_t victim = 1u << 20; /* above every value pushed */
	int rc = producer ? shmring_mpmc_push(v, &victim) : shmring_mpmc_pop(v, &x);
	if (rc == 0 && !producer)
		seen[x]++;
	int died = rc == -ECANCELED;
	shmring_close(v); /* leaves the record if it died */
	int rec = shmring_mpmc_recover(r);
	cr_assert(rec >= 0, "recover: %d", rec);
	cr_assert_eq(rec, died, "capacity %lu shift %lu point %d q %d producer %d: rc %d rec %d",
		     (unsigned long)cap, (unsigned long)shift, pt, q, producer, rc, rec);
	int victim_seen = drain_in_order(r, seen, 1024, victim, "point", pt);
	/* A producer that died before it began publishing (FILLED or before, or anywhere in its
	 * take from the free queue) never pushed its element; one that died in its enqueue into
	 * the filled queue has it published by recovery, exactly once (shmring_mpmc_recover()).
	 * Found in review: either count passed, and so did a recovery that dropped it. */
	if (producer)
		cr_assert_eq(
		    victim_seen,
		    died ? (q == _SHMRING_MP_AQ && pt >= SHMRING_MPMC_HOOK_ENQ_FAA) : rc == 0,
		    "capacity %lu shift %lu point %d q %d: victim delivered %d times, rc %d",
		    (unsigned long)cap, (unsigned long)shift, pt, q, victim_seen, rc);
	int lost = 0;
	for (int i = 0; i < npushed; i++)
		lost += seen[i] == 0;
	cr_assert_leq(lost, producer ? 0 : 1,
		      "capacity %lu shift %lu point %d q %d producer %d: lost %d",
		      (unsigned long)cap, (unsigned long)shift, pt, q, producer, lost);
	assert_capacity(r, cap, "point", pt);
	for (uint64_t i = 0; i < cap; i++) {
		cr_assert_eq(shmring_mpmc_pop(r, &x), 0);
		cr_assert_eq(x, i);
	}
	shmring_close(r);
	return died;
}

Test(mpmc, death_at_every_point)
{
	/* 128 and up: entries are laid out in runs across regions (_shmring_mp_slot), which
	 * recovery's scan for a position taken but not recorded inverts (entry_pos). */
	uint64_t caps[] = {8, 128, 1024};
	for (int c = 0; c < 3; c++) {
		int died = 0;
		for (int producer = 0; producer < 2; producer++)
			for (int pt = SHMRING_MPMC_HOOK_DEQ_FAA; pt <= SHMRING_MPMC_HOOK_ENQ_DONE;
			     pt++)
				for (int q = 0; q < 2; q++)
					died += death_case(producer, pt, q, caps[c], 0);
		/* A push passes DEQ_FAA..HELD on the free queue, FILLED, and ENQ_FAA..ENQ_DONE
		 * on the filled queue: 9 points; a pop the same with the queues swapped and
		 * READ. */
		cr_assert_eq(died, 18, "capacity %lu: %d deaths", (unsigned long)caps[c], died);
	}
}

/*
 * Recovery finds a position taken but not recorded (DEQ_POS) by scanning the entries and
 * inverting the layout (entry_pos() in ring/mpmc.c). At capacity 128 every entry offset, at 1024
 * every 61st (odd, so lanes, runs and regions all vary). Found in review: at offset 0 alone, an
 * inverse that dropped the lane within a run passed.
 */
Test(mpmc, death_at_every_entry_offset)
{
	static const uint64_t caps[] = {128, 1024};
	for (int c = 0; c < 2; c++)
		for (uint64_t shift = 0; shift < 2 * caps[c]; shift += caps[c] == 128 ? 1 : 61)
			for (int producer = 0; producer < 2; producer++) {
				/* A push takes its position in the free queue, a pop in the filled
				 * one (found in review: the other queue never reaches the point).
				 */
				int q = producer ? _SHMRING_MP_FQ : _SHMRING_MP_AQ;
				cr_assert_eq(death_case(producer, SHMRING_MPMC_HOOK_DEQ_POS, q,
							caps[c], shift),
					     1, "capacity %lu shift %lu producer %d: no death",
					     (unsigned long)caps[c], (unsigned long)shift,
					     producer);
			}
}

/* ---- bulk: all or none, also across a death ------------------------------------------------ */

Test(mpmc, bulk_all_or_none)
{
	struct shmring_params p = mp_params(8, 8);
	struct shmring *r;
	uint64_t in[SHMRING_MPMC_BULK_MAX + 1], out[SHMRING_MPMC_BULK_MAX + 1];
	cr_assert_eq(shmring_create_anon(&p, &r), 0);
	for (uint64_t i = 0; i < SHMRING_MPMC_BULK_MAX + 1; i++)
		in[i] = 1000 + i;
	cr_assert_eq(shmring_mpmc_push_bulk(r, in, 0), 0);
	cr_assert_eq(shmring_mpmc_push_bulk(r, in, 9), -EINVAL); /* more than capacity */
	cr_assert_eq(shmring_mpmc_pop_bulk(r, out, 9), -EINVAL);
	cr_assert_eq(shmring_mpmc_push_bulk(r, in, 5), 5);
	cr_assert_eq(shmring_mpmc_push_bulk(r, in + 5, 4), -EAGAIN); /* 3 free: nothing moves */
	cr_assert_eq(shmring_mpmc_size(r), 5);
	cr_assert_eq(shmring_mpmc_pop_bulk(r, out, 6), -EAGAIN); /* 5 there: nothing moves */
	cr_assert_eq(shmring_mpmc_push_bulk(r, in + 5, 3), 3);
	cr_assert_eq(shmring_mpmc_pop_bulk(r, out, 8), 8);
	for (int i = 0; i < 8; i++)
		cr_assert_eq(out[i], 1000 + (uint64_t)i);
	cr_assert_eq(shmring_mpmc_pop_bulk(r, out, 1), -EAGAIN);
	/* Bursts move what there is, at most SHMRING_MPMC_BULK_MAX a call. */
	cr_assert_eq(shmring_mpmc_push_burst(r, in, 6), 6);
	cr_assert_eq(shmring_mpmc_push_burst(r, in + 6, 6), 2);
	cr_assert_eq(shmring_mpmc_pop_burst(r, out, 3), 3);
	cr_assert_eq(shmring_mpmc_pop_burst(r, out + 3, 30), 5);
	for (int i = 0; i < 8; i++)
		cr_assert_eq(out[i], 1000 + (uint64_t)i);
	shmring_close(r);
	p = mp_params(8, 64);
	cr_assert_eq(shmring_create_anon(&p, &r), 0);
	cr_assert_eq(shmring_mpmc_push_bulk(r, in, SHMRING_MPMC_BULK_MAX + 1), -EINVAL);
	cr_assert_eq(shmring_mpmc_push_burst(r, in, SHMRING_MPMC_BULK_MAX + 1),
		     SHMRING_MPMC_BULK_MAX);
	shmring_close(r);
}

static int die_countdown;
static int hook_countdown(struct shmring *r, int point, int queue, void *arg)
{
	(void)r;
	(void)point;
	(void)queue;
	(void)arg;
	return --die_countdown == 0;
}

/* A bulk push of n or a bulk pop of n dies at its k-th hook call, after shift positions of both
 * queues (as in death_case); recovery; then: a dead bulk push published all n or none, a dead
 * bulk pop lost at most n, nothing twice, and the ring takes its whole capacity again. Returns 1
 * if the victim died (k within the call). */
static int bulk_death_case(int producer, int k, uint64_t cap, unsigned n, uint64_t shift)
{
	enum { NMAX = 32, VICTIM = 1000 };
	struct shmring *v, *r = ring_with_victim(cap, &v);
	uint64_t x[NMAX], in[NMAX], pre = cap / 2 < n + 8 ? cap / 2 : n + 8;
	static int seen[2048];
	memset(seen, 0, sizeof(seen));
	for (unsigned i = 0; i < n; i++)
		in[i] = VICTIM + i;
	for (uint64_t i = 0; i < shift; i++) {
		cr_assert_eq(shmring_mpmc_push(r, &i), 0);
		cr_assert_eq(shmring_mpmc_pop(r, x), 0);
	}
	for (uint64_t i = 0; i < pre; i++)
		cr_assert_eq(shmring_mpmc_push(r, &i), 0);
	die_countdown = k;
	shmring_mpmc_set_hook(v, hook_countdown, NULL);
	int rc = producer ? shmring_mpmc_push_bulk(v, in, n) : shmring_mpmc_pop_bulk(v, x, n);
	int died = rc == -ECANCELED;
	cr_assert(died || rc == (int)n, "k %d: rc %d", k, rc);
	if (!died && !producer)
		for (unsigned i = 0; i < n; i++)
			seen[x[i]]++;
	shmring_close(v);
	int rec = shmring_mpmc_recover(r);
	cr_assert_eq(rec, died, "capacity %lu shift %lu k %d: recover %d", (unsigned long)cap,
		     (unsigned long)shift, k, rec);
	unsigned nvictim = (unsigned)drain_in_order(r, seen, 2048, VICTIM, "k", k);
	if (producer)
		cr_assert(nvictim == 0 || nvictim == n, "k %d: %u of the bulk published", k,
			  nvictim);
	int lost = 0;
	for (uint64_t i = 0; i < pre; i++)
		lost += seen[i] == 0;
	cr_assert_leq(lost, producer ? 0 : (int)n, "capacity %lu shift %lu k %d: lost %d",
		      (unsigned long)cap, (unsigned long)shift, k, lost);
	assert_capacity(r, cap, "k", k);
	shmring_close(r);
	return died;
}

Test(mpmc, bulk_death_at_every_step)
{
	for (int producer = 0; producer < 2; producer++) {
		int k = 1;
		while (bulk_death_case(producer, k, 8, 3, 0))
			k++;
		/* the DEQ_FAA and DEQ_POS points of the take, BULK_EMPTY per element, HELD,
		 * FILLED or READ, one ENQ_FAA and ENQ_POS for the run of positions, then ENQ_CAS
		 * and ENQ_DONE per element */
		cr_assert_geq(k, 2 + 3 + 1 + 1 + 2 + 3 * 2 + 1, "only %d steps seen", k - 1);
	}
}

/* A bulk of 32 dying in its take (DEQ_FAA, DEQ_POS; with none, one, 16 or 31 of its run's
 * entries emptied; HELD), at entry offsets spread over the layout: recovery's bounded scan for
 * the run's positions through entry_pos(), and its emptying of what is left of a run (found in
 * review: no bulk death ran where the layout remaps). */
Test(mpmc, bulk_death_at_every_entry_offset)
{
	static const uint64_t caps[] = {128, 1024};
	static const int steps[] = {1, 2, 3, 4, 19, 34, 35};
	for (int c = 0; c < 2; c++)
		for (uint64_t shift = 0; shift < 2 * caps[c]; shift += caps[c] == 128 ? 5 : 67)
			for (int producer = 0; producer < 2; producer++)
				for (int i = 0; i < 7; i++)
					cr_assert_eq(
					    bulk_death_case(producer, steps[i], caps[c], 32, shift),
					    1, "step %d of the take must be inside the call",
					    steps[i]);
}

/*
 * A bulk push takes its run of tail positions with one fetch-and-add. Right after it, a consumer
 * passes the first two of them (closing them, as SCQ's dequeuer does when it finds no element;
 * the threshold is set so that it gives up after two). The first element must land in the third
 * position, the other two past the run, in order; with a death at any later step, all three are
 * published or none, nothing is lost or duplicated, and the capacity is whole again.
 */
struct closer {
	struct shmring *c;
	int closed, countdown;
};
static int hook_close_run(struct shmring *r, int point, int queue, void *arg)
{
	struct closer *cl = arg;
	uint64_t x;
	(void)r;
	if (point == SHMRING_MPMC_HOOK_ENQ_POS && queue == _SHMRING_MP_AQ && !cl->closed) {
		cl->closed = 1;
		atomic_store(&cl->c->m.ctl[_SHMRING_MP_AQ]->threshold, 1);
		cr_assert_eq(shmring_mpmc_pop(cl->c, &x), -EAGAIN);
	}
	return --cl->countdown == 0;
}

static int run_closed_case(int k)
{
	enum { CAP = 8, N = 3 };
	struct shmring *v, *r = ring_with_victim(CAP, &v);
	struct closer cl = {.c = mp_attach(r), .countdown = k};
	uint64_t in[3] = {100, 101, 102}, x;
	/* One push and pop, so the consumer's threshold lets it take positions. */
	cr_assert_eq(shmring_mpmc_push(r, &in[0]), 0);
	cr_assert_eq(shmring_mpmc_pop(r, &x), 0);
	uint64_t h0 = atomic_load(&r->m.ctl[_SHMRING_MP_AQ]->head);
	shmring_mpmc_set_hook(v, hook_close_run, &cl);
	int rc = shmring_mpmc_push_bulk(v, in, N), died = rc == -ECANCELED;
	cr_assert(died || rc == N, "k %d: rc %d", k, rc);
	/* the take's points (DEQ_FAA, DEQ_POS, BULK_EMPTY per element, HELD, FILLED) and
	 * ENQ_FAA come before the hook that closes */
	cr_assert(cl.closed || (died && k <= 4 + N + 1), "k %d: the run was never closed", k);
	if (cl.closed)
		cr_assert_eq(atomic_load(&r->m.ctl[_SHMRING_MP_AQ]->head), h0 + 2,
			     "k %d: the consumer passed more than two", k);
	shmring_close(v);
	cr_assert_eq(shmring_mpmc_recover(r), died, "k %d", k);
	int got = 0;
	while (shmring_mpmc_pop(cl.c, &x) == 0)
		cr_assert_eq(x, in[got++], "k %d: out of order", k);
	cr_assert(got == N || (died && got == 0), "k %d: %d of the bulk published", k, got);
	shmring_close(cl.c);
	assert_capacity(r, CAP, "k", k);
	shmring_close(r);
	return died;
}

Test(mpmc, bulk_push_run_closed_under_it)
{
	cr_assert_eq(run_closed_case(0), 0);
	int k = 1;
	while (run_closed_case(k))
		k++;
	/* the take's 4 + 3 points, ENQ_FAA and ENQ_POS, then ENQ_CAS at the two closed
	 * positions, CAS and DONE at the third, and the second run for the other two: FAA, POS,
	 * 2 x 2 */
	cr_assert_geq(k, 4 + 3 + 2 + 2 + 2 + 2 + 4 + 1, "only %d steps seen", k - 1);
}

/* ---- cases found in review ---------------------------------------------------------------- */

#define FAKE_OWNER2 0xdead00000002ull
static int alive_unless_fakes(uint64_t owner, void *arg)
{
	(void)arg;
	return (owner >> 32) != 0xdead;
}

/* How many more elements the ring takes (pushing zeroes): its free capacity. */
static uint64_t free_slots(struct shmring *r, uint64_t cap)
{
	uint64_t x = 0, n = 0;
	while (n <= cap && shmring_mpmc_push(r, &x) == 0)
		n++;
	return n;
}

/*
 * A bulk pop dies right after its CAS (its record still says DEQ_FAA over its run), and a
 * single pop dies right after its fetch-and-add just past that run. In either visiting order
 * recovery must take both: the single record may not take from the bulk's run, which only the
 * bulk's bounded range can reach, and leave its own position stranded.
 */
Test(mpmc, review_dead_bulk_and_single_dequeuers)
{
	enum { CAP = 8 };
	for (int order = 0; order < 2; order++) {
		struct shmring_params p = mp_params(8, CAP);
		struct shmring *r, *h1, *h2;
		cr_assert_eq(shmring_create_anon(&p, &r), 0);
		shmring_mpmc_set_alive_fn(r, alive_unless_fakes, NULL);
		h1 = mp_attach(r);
		h2 = mp_attach(r);
		struct shmring *single = order ? h2 : h1, *bulk = order ? h1 : h2;
		shmring_mpmc_set_owner(single, FAKE_OWNER);
		shmring_mpmc_set_owner(bulk, FAKE_OWNER2);
		for (uint64_t i = 0; i < 6; i++)
			cr_assert_eq(shmring_mpmc_push(r, &i), 0);
		uint64_t out[2], x;
		die_point = SHMRING_MPMC_HOOK_DEQ_POS;
		die_queue = _SHMRING_MP_AQ;
		shmring_mpmc_set_hook(bulk, hook_die, NULL);
		shmring_mpmc_set_hook(single, hook_die, NULL);
		cr_assert_eq(shmring_mpmc_pop_bulk(bulk, out, 2), -ECANCELED);
		cr_assert_eq(shmring_mpmc_pop(single, &x), -ECANCELED);
		shmring_close(bulk);
		shmring_close(single);
		cr_assert_eq(shmring_mpmc_recover(r), 2);
		uint64_t got = 0;
		while (shmring_mpmc_pop(r, &x) == 0) {
			cr_assert_geq(x, 3, "order %d: %lu should be lost", order,
				      (unsigned long)x);
			got++;
		}
		cr_assert_eq(got, 3, "order %d", order);
		cr_assert_eq(free_slots(r, CAP), CAP, "order %d: a slot leaked", order);
		shmring_close(r);
	}
}

/*
 * A consumer dies after recording its position (DEQ) and before looking at its entry, while a
 * live producer holds that very tail position, not yet written. Recovery must close the
 * position as the dead dequeuer would have: otherwise the live push lands behind head, returns
 * 0, and its element is never delivered.
 */
static struct shmring *g_ring, *g_dead;
static int g_done;
static int hook_kill_dequeuer(struct shmring *r, int pt, int q, void *arg)
{
	(void)r;
	(void)arg;
	if (pt != SHMRING_MPMC_HOOK_ENQ_CAS || q != _SHMRING_MP_AQ || g_done)
		return 0;
	g_done = 1;
	/* g_dead does what _shmring_mp_deq() does up to its DEQ state store, then dies. */
	struct _shmring_mpmc_rec *rec = g_dead->m.rec;
	struct _shmring_scq_ctl *c = g_dead->m.ctl[_SHMRING_MP_AQ];
	atomic_store(&rec->lo, g_dead->m.lo[_SHMRING_MP_AQ]);
	_shmring_mp_state(rec, _SHMRING_MP_DEQ_FAA, _SHMRING_MP_AQ, 0);
	atomic_store(&rec->pos, atomic_fetch_add(&c->head, 1));
	_shmring_mp_state(rec, _SHMRING_MP_DEQ, _SHMRING_MP_AQ, 0);
	shmring_mpmc_set_owner(g_dead, FAKE_OWNER);
	cr_assert_eq(shmring_mpmc_recover(g_ring), 1);
	return 0;
}

Test(mpmc, review_dead_dequeuer_position_closed)
{
	enum { CAP = 8 };
	struct shmring_params p = mp_params(8, CAP);
	cr_assert_eq(shmring_create_anon(&p, &g_ring), 0);
	shmring_mpmc_set_alive_fn(g_ring, alive_unless_fakes, NULL);
	struct shmring *prod = mp_attach(g_ring);
	g_dead = mp_attach(g_ring);
	g_done = 0;
	shmring_mpmc_set_hook(prod, hook_kill_dequeuer, NULL);
	uint64_t v = 42, x = 0;
	cr_assert_eq(shmring_mpmc_push(prod, &v), 0);
	cr_assert(g_done);
	cr_assert_eq(shmring_mpmc_pop(g_ring, &x), 0, "a pushed element was lost");
	cr_assert_eq(x, 42);
	cr_assert_eq(free_slots(g_ring, CAP), CAP);
	shmring_close(prod);
	shmring_close(g_dead);
	shmring_close(g_ring);
}

/* A gap that will never fill (a producer died after its tail fetch-and-add; recovery published
 * its element elsewhere) must not stop bulk-only callers: pop_bulk crosses it. The same on the
 * free queue for push_bulk (a consumer died after its fetch-and-add there). */
Test(mpmc, review_bulk_crosses_gaps)
{
	enum { CAP = 8 };
	struct shmring *v, *r = ring_with_victim(CAP, &v);
	uint64_t x = 7, out[8];
	die_point = SHMRING_MPMC_HOOK_ENQ_POS;
	die_queue = _SHMRING_MP_AQ;
	shmring_mpmc_set_hook(v, hook_die, NULL);
	cr_assert_eq(shmring_mpmc_push(v, &x), -ECANCELED);
	shmring_close(v);
	cr_assert_eq(shmring_mpmc_recover(r), 1);
	for (uint64_t i = 0; i < 3; i++)
		cr_assert_eq(shmring_mpmc_push(r, &i), 0);
	cr_assert_eq(shmring_mpmc_pop_bulk(r, out, 4), 4);
	cr_assert_eq(out[0], 7);
	for (int i = 1; i < 4; i++)
		cr_assert_eq(out[i], (uint64_t)i - 1);
	shmring_close(r);

	r = ring_with_victim(CAP, &v);
	for (uint64_t i = 0; i < CAP; i++)
		out[i] = i;
	cr_assert_eq(shmring_mpmc_push_bulk(r, out, CAP), CAP);
	die_queue = _SHMRING_MP_FQ;
	shmring_mpmc_set_hook(v, hook_die, NULL);
	cr_assert_eq(shmring_mpmc_pop(v, &x), -ECANCELED);
	shmring_close(v);
	cr_assert_eq(shmring_mpmc_recover(r), 1);
	cr_assert_eq(shmring_mpmc_pop_bulk(r, out, 7), 7);
	for (int round = 0; round < 3; round++) {
		cr_assert_eq(shmring_mpmc_push_bulk(r, out, CAP), CAP, "round %d", round);
		cr_assert_eq(shmring_mpmc_pop_bulk(r, out, CAP), CAP, "round %d", round);
	}
	shmring_close(r);
}

/* ---- a parked producer ------------------------------------------------------------------- */

static _Atomic int parked, release_park;
static int hook_park(struct shmring *r, int point, int queue, void *arg)
{
	(void)r;
	(void)queue;
	(void)arg;
	if (point == SHMRING_MPMC_HOOK_FILLED) {
		atomic_store(&parked, 1);
		while (!atomic_load(&release_park))
			usleep(100);
	}
	return 0;
}

static void *parked_producer(void *arg)
{
	struct shmring *h = arg;
	uint64_t v = 999999;
	shmring_mpmc_set_hook(h, hook_park, NULL);
	cr_assert_eq(shmring_mpmc_push(h, &v), 0);
	return NULL;
}

Test(mpmc, parked_producer_does_not_block_others)
{
	struct shmring_params p = mp_params(8, 16);
	struct shmring *r, *h;
	pthread_t t;
	cr_assert_eq(shmring_create_anon(&p, &r), 0);
	h = mp_attach(r);
	cr_assert_eq(pthread_create(&t, NULL, parked_producer, h), 0);
	while (!atomic_load(&parked))
		usleep(100);
	/* The parked producer holds one slot, claimed and filled, not published. */
	uint64_t x;
	for (uint64_t i = 0; i < 10000; i++) {
		cr_assert_eq(shmring_mpmc_push(r, &i), 0, "push %lu", (unsigned long)i);
		cr_assert_eq(shmring_mpmc_pop(r, &x), 0);
		cr_assert_eq(x, i);
	}
	/* 15 of 16 slots usable while one is parked. */
	for (uint64_t i = 0; i < 15; i++)
		cr_assert_eq(shmring_mpmc_push(r, &i), 0);
	cr_assert_eq(shmring_mpmc_push(r, &x), -EAGAIN);
	atomic_store(&release_park, 1);
	pthread_join(t, NULL);
	int n = 0, got = 0;
	while (shmring_mpmc_pop(r, &x) == 0) {
		got += x == 999999;
		n++;
	}
	cr_assert_eq(n, 16);
	cr_assert_eq(got, 1);
	shmring_close(h);
	shmring_close(r);
}

static void dump(struct shmring *r);
/* Recovers until nothing is deferred (bounded), dumping the records if it never settles. */
static int recover_all(struct shmring *r)
{
	int rc = 0;
	for (int i = 0; i < 20000; i++) {
		rc = shmring_mpmc_recover(r);
		if (rc != -EAGAIN)
			return rc;
		usleep(100);
	}
	dump(r);
	return rc;
}

static void dump(struct shmring *r)
{
	for (int q = 0; q < 2; q++)
		fprintf(stderr, "q%d head %lu tail %lu thr %ld\n", q,
			(unsigned long)r->m.ctl[q]->head, (unsigned long)r->m.ctl[q]->tail,
			(long)r->m.ctl[q]->threshold);
	for (int i = 0; i < SHMRING_MPMC_PARTICIPANTS; i++) {
		struct _shmring_mpmc_rec *x = &r->m.recs[i];
		if (x->owner)
			fprintf(stderr, "rec %d owner %lx state %lx lo %lu pos %lu idx %lu\n", i,
				(unsigned long)x->owner, (unsigned long)x->state,
				(unsigned long)x->lo, (unsigned long)x->pos, (unsigned long)x->idx);
	}
	for (int q = 0; q < 2; q++) {
		fprintf(stderr, "q%d:", q);
		for (uint64_t k = 0; k <= r->m.emask; k++)
			fprintf(stderr, " %lx", (unsigned long)r->m.ent[q][k]);
		fprintf(stderr, "\n");
	}
}

/* ---- multi-process ----------------------------------------------------------------------- */

#define MP_B	 4 /* bulk and burst size of the odd-numbered processes */
#define MAXP	 8
#define MAXC	 8
#define PER_CONS (1u << 18)
#define VMAX	 (1u << 16)  /* most elements a producer pushes in a run with a kill */
#define PL_MAGIC 0x600dda7au /* pad of every pushed element: tells one from 0 or the 0xff fill */

struct payload {
	uint32_t prod, pad;
	uint64_t cnt;
};

struct shared {
	_Atomic uint64_t pushed[MAXP]; /* pushes returned so far, per producer */
	_Atomic uint64_t ngot[MAXC];
	_Atomic int stop;
	_Atomic int stop_push; /* runs with a kill: producers push until this is set */
	/* What each consumer popped, in order. It pops straight into got[c][ngot[c]..] (filled
	 * with 0xff first), then moves ngot[c]: what a consumer killed between its pop's return
	 * and that store had in hand is still there. */
	struct payload got[MAXC][PER_CONS + MP_B];
};

/* Children die with the test, and give up after a few seconds rather than spin forever. */
static time_t child_setup(void)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	return time(NULL) + 5;
}

/*
 * Pushes elements 0..n1-1; mode 1: goes on (up to VMAX) until told to stop (stop_push); mode 2:
 * the victim, pushes until killed (or, having run out of numbers, waits for it).
 */
static void producer_main(const char *name, struct shared *sh, int id, uint64_t n1, int mode)
{
	uint64_t n = mode ? VMAX : n1;
	time_t deadline = child_setup();
	struct shmring_params e = mp_params(0, 0);
	struct shmring *r;
	if (shmring_open(name, &e, &r) != 0)
		_exit(2);
	struct payload pl[MP_B];
	for (uint64_t c = 0; c < n && !(mode == 1 && c >= n1 && atomic_load(&sh->stop_push));) {
		/* Odd producers push all-or-none bulks of MP_B, even ones one at a time. */
		unsigned k = id & 1 ? (n - c < MP_B ? (unsigned)(n - c) : MP_B) : 1;
		for (unsigned j = 0; j < k; j++)
			pl[j] = (struct payload){(uint32_t)id, PL_MAGIC, c + j};
		int rc = id & 1 ? shmring_mpmc_push_bulk(r, pl, k) : shmring_mpmc_push(r, pl);
		if (rc == 0 || rc == (int)k) {
			c += k;
			atomic_store(&sh->pushed[id], c);
		} else if (rc == -EAGAIN) {
			if (time(NULL) > deadline)
				_exit(5);
			sched_yield();
		} else {
			_exit(3);
		}
	}
	while (mode == 2)
		pause();
	shmring_close(r);
	_exit(0);
}

/* Pops until told to stop and the ring is empty; endless: until killed. */
static void consumer_main(const char *name, struct shared *sh, int id, int endless)
{
	time_t deadline = child_setup();
	struct shmring_params e = mp_params(0, 0);
	struct shmring *r;
	if (shmring_open(name, &e, &r) != 0)
		_exit(2);
	int idle = 0;
	for (;;) {
		uint64_t k = atomic_load(&sh->ngot[id]);
		if (k + MP_B > PER_CONS)
			_exit(4);
		struct payload *hand = &sh->got[id][k];
		memset(hand, 0xff, MP_B * sizeof(*hand));
		/* Odd consumers pop bursts of up to MP_B, even ones one at a time. */
		int rc = id & 1 ? shmring_mpmc_pop_burst(r, hand, MP_B) : shmring_mpmc_pop(r, hand);
		if (rc == 0 && !(id & 1))
			rc = 1;
		if (rc > 0) {
			atomic_store(&sh->ngot[id], k + (uint64_t)rc);
			idle = 0;
		} else if (rc == -EAGAIN) {
			if (!endless && atomic_load(&sh->stop) && ++idle > 3)
				break;
			if (time(NULL) > deadline + 2)
				_exit(5);
			sched_yield();
		} else {
			_exit(3);
		}
	}
	shmring_close(r);
	_exit(0);
}

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* An element as the checks name it. */
static uint64_t pl_key(const struct payload *p)
{
	return (uint64_t)p->prod << 40 | p->cnt;
}

/* The record of process pid on r's ring (owner = pid | locked << 31 | start time << 32). */
static struct _shmring_mpmc_rec *rec_of(struct shmring *r, pid_t pid)
{
	for (int i = 0; i < SHMRING_MPMC_PARTICIPANTS; i++) {
		uint64_t o = atomic_load(&r->m.recs[i].owner);
		if (o && (o & 0x7fffffffu) == (uint64_t)pid)
			return &r->m.recs[i];
	}
	return NULL;
}

/* Stops a child and waits until it is stopped: 1, or -(its exit status) if it ended instead. */
static int stop_child(pid_t pid)
{
	int st = 0;
	kill(pid, SIGSTOP);
	pid_t w = waitpid(pid, &st, WUNTRACED);
	if (w == pid && WIFSTOPPED(st))
		return 1;
	return -(w == pid ? (WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st)) : 1000);
}

/* A victim's record when it was killed (stopped there), and what recovery must do with it. */
struct kill_shot {
	uint64_t st;	 /* its state word */
	uint64_t pushed; /* producer: pushes returned before the kill */
	int must; /* producer: its call's elements must be published (1), must not (0), -1 either */
	int hand; /* consumer: what it popped and holds in got[] counts as delivered */
	int exact; /* consumer: held[0..nheld) are exactly the elements it loses */
	int nheld;
	uint64_t held[MP_B];
	unsigned may_lose; /* consumer, not exact: at most this many lost */
};

/*
 * Catches the victim inside a call: stops it at a random moment and reads its record; kills it
 * there if the record is not IDLE, else lets it go on for a short random while and tries again,
 * up to a bound (then kills it wherever it is). Fills ks from the record it was killed in.
 */
static void kill_mid_call(struct shmring *r, struct shared *sh, pid_t pid, int producer, int id,
			  uint64_t *seed, struct kill_shot *ks)
{
	struct _shmring_mpmc_rec *rec = NULL;
	for (int i = 0; i < 100000 && !(rec = rec_of(r, pid)); i++)
		usleep(20);
	cr_assert_not_null(rec, "victim %d never took a record", (int)pid);
	uint64_t st = 0;
	for (int tries = 0;; tries++) {
		int sc = stop_child(pid);
		cr_assert_eq(sc, 1, "victim exited before the kill (%d, try %d)", -sc, tries);
		st = atomic_load(&rec->state);
		/* Inside a call: a phase, or IDLE with a bulk's indices held. */
		if ((st & 0xff) != _SHMRING_MP_IDLE || st >> 16 || tries == 300)
			break;
		kill(pid, SIGCONT);
		usleep((useconds_t)(rnd(seed) % 60));
	}
	/* Stopped: its record and what it wrote to sh hold still. */
	uint64_t ph = st & 0xff, q = (st >> 8) & 0xff, cnt = _SHMRING_MP_GET(st, 16);
	int full = (st & _SHMRING_MP_B_FULL) != 0;
	memset(ks, 0, sizeof(*ks));
	ks->st = st;
	if (producer) {
		ks->pushed = atomic_load(&sh->pushed[id]);
		if (full ||
		    (q == _SHMRING_MP_AQ && (ph == _SHMRING_MP_ENQ_FAA || ph == _SHMRING_MP_ENQ)))
			ks->must = 1; /* began publishing: published, exactly once */
		else if (q == _SHMRING_MP_FQ && (ph != _SHMRING_MP_IDLE || cnt > 0))
			ks->must = 0; /* taking or filling free slots: never published */
		else
			ks->must = -1; /* between calls, or its call about to return */
	} else if (ph == _SHMRING_MP_IDLE && (st >> 16) == 0) {
		ks->hand = 1; /* between calls: what its last pop returned is in got[] */
		ks->exact = 1;
	} else if (q == _SHMRING_MP_AQ && ph == _SHMRING_MP_HOLD) {
		/* Took an element out of the filled queue: that one is dropped. Its slot is out
		 * of both queues, so its data holds still. */
		const struct payload *d = (const void *)(r->data + rec->idx * r->elem_size);
		ks->held[ks->nheld++] = pl_key(d);
		ks->exact = 1;
	} else if (q == _SHMRING_MP_AQ &&
		   (ph == _SHMRING_MP_DEQ_BULK || (ph == _SHMRING_MP_IDLE && cnt > 0))) {
		/* A burst took cnt: all dropped. */
		cr_assert_leq(cnt, MP_B);
		for (uint64_t j = 0; j < cnt; j++) {
			const struct payload *d =
			    (const void *)(r->data + rec->held[j] * r->elem_size);
			ks->held[ks->nheld++] = pl_key(d);
		}
		ks->exact = 1;
	} else if (q == _SHMRING_MP_FQ) {
		/* Giving its slots back: it copied them all out, into got[] past ngot, but its
		 * pop has not returned: they are dropped. */
		uint64_t k = atomic_load(&sh->ngot[id]);
		for (int j = 0; j < MP_B && sh->got[id][k + j].pad == PL_MAGIC; j++)
			ks->held[ks->nheld++] = pl_key(&sh->got[id][k + j]);
		cr_assert_gt(ks->nheld, 0, "consumer giving slots back holds no copy");
		ks->exact = 1;
	} else {
		/* DEQ_FAA or DEQ: whatever landed at the position(s) it took, if any. */
		ks->may_lose = id & 1 ? MP_B : 1;
	}
	kill(pid, SIGKILL);
}

/*
 * One run: np producers, nc consumers, n elements each. kill_us >= 0: one random child runs
 * until killed; after kill_us microseconds it is killed inside a call where possible
 * (kill_mid_call()), then recovered. Checks every guarantee, exactly for what the victim's
 * record said. Returns 0 if no process was killed, else 1 + the phase of the victim's record,
 * or 8 for IDLE between two steps of a bulk or burst (held indices).
 */
static int mp_run(int np, int nc, uint64_t n, uint64_t cap, long kill_us, uint64_t *seed)
{
	const char *name = tu_shm_name("mpmc-mp");
	struct shmring_params p = mp_params(sizeof(struct payload), cap);
	struct shmring *r;
	cr_assert_eq(shmring_create(name, &p, &r), 0);
	struct shared *sh =
	    mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(sh, MAP_FAILED);
	int victim = kill_us >= 0 ? (int)(rnd(seed) % (uint64_t)(np + nc)) : -1;
	pid_t pids[MAXP + MAXC];
	for (int i = 0; i < np; i++)
		if ((pids[i] = fork()) == 0)
			producer_main(name, sh, i, n, i == victim ? 2 : victim >= 0);
	for (int i = 0; i < nc; i++)
		if ((pids[np + i] = fork()) == 0)
			consumer_main(name, sh, i, np + i == victim);
	struct kill_shot ks = {.must = -1};
	if (victim >= 0) {
		usleep((useconds_t)kill_us);
		kill_mid_call(r, sh, pids[victim], victim < np, victim < np ? victim : victim - np,
			      seed, &ks);
		int st = tu_wait(pids[victim]);
		cr_assert_eq(st, 128 + SIGKILL, "victim status %d", st);
		int rc = recover_all(r);
		if (rc < 0) {
			for (int i = 0; i < np + nc; i++)
				kill(pids[i], SIGKILL);
		}
		cr_assert(rc >= 0, "recover %d", rc);
		atomic_store(&sh->stop_push, 1);
	}
	for (int i = 0; i < np; i++)
		if (i != victim) {
			int st = tu_wait(pids[i]);
			if (st != 0)
				dump(r);
			cr_assert_eq(st, 0, "producer %d (victim %d of %d+%d)", i, victim, np, nc);
		}
	atomic_store(&sh->stop, 1);
	for (int i = 0; i < nc; i++)
		if (np + i != victim)
			cr_assert_eq(tu_wait(pids[np + i]), 0, "consumer %d", i);
	/* A killed consumer may have left elements behind: drain them here. */
	int rc = recover_all(r);
	cr_assert(rc >= 0, "final recover %d", rc);
	static struct payload extra[1 << 12];
	int nextra = 0;
	while (nextra < (1 << 12) && shmring_mpmc_pop(r, &extra[nextra]) == 0)
		nextra++;

	/* Every element at most once; each producer's order kept per consumer. */
	uint64_t lim = victim >= 0 ? VMAX : n;
	unsigned char *seen = calloc((size_t)np * (lim + 1), 1);
	for (int c = 0; c <= nc; c++) {
		uint64_t last[MAXP];
		memset(last, 0xff, sizeof(last));
		uint64_t k = c < nc ? atomic_load(&sh->ngot[c]) : (uint64_t)nextra;
		const struct payload *g = c < nc ? sh->got[c] : extra;
		/* A consumer killed between calls: what its last pop returned counts. */
		if (c < nc && np + c == victim && ks.hand)
			while (k < PER_CONS + MP_B && g[k].pad == PL_MAGIC)
				k++;
		for (uint64_t j = 0; j < k; j++) {
			uint64_t pr = g[j].prod, cnt = g[j].cnt;
			cr_assert_eq(g[j].pad, PL_MAGIC, "consumer %d: element %lu torn", c,
				     (unsigned long)j);
			cr_assert_lt(pr, (uint64_t)np);
			cr_assert_lt(cnt, lim);
			cr_assert_eq(seen[pr * (lim + 1) + cnt]++, 0, "duplicate %lu/%lu",
				     (unsigned long)pr, (unsigned long)cnt);
			if (c < nc) {
				cr_assert(last[pr] == UINT64_MAX || cnt > last[pr],
					  "order: producer %lu: %lu after %lu", (unsigned long)pr,
					  (unsigned long)cnt, (unsigned long)last[pr]);
				last[pr] = cnt;
			}
		}
	}
	/* Loss: every push that returned is delivered, except what a dead consumer held. A
	 * producer killed inside a push shows that push's elements (one, or a bulk of MP_B) all
	 * or none, all once it had begun publishing them, none while it was still taking or
	 * filling its slots. */
	uint64_t nlost = 0;
	for (int i = 0; i < np; i++) {
		uint64_t done = atomic_load(&sh->pushed[i]), got = 0;
		uint64_t inflight = i != victim ? 0 : i & 1 ? MP_B : 1;
		const unsigned char *s = seen + i * (lim + 1);
		if (victim < 0)
			cr_assert_eq(done, n, "producer %d finished with %lu pushed", i,
				     (unsigned long)done);
		else if (i == victim)
			cr_assert_eq(done, ks.pushed, "victim pushed after its kill");
		for (uint64_t c = 0; c < done; c++)
			nlost += !s[c];
		for (uint64_t c = done; c < lim; c++) {
			if (c >= done + inflight)
				cr_assert_eq(s[c], 0, "producer %d: %lu never pushed, delivered", i,
					     (unsigned long)c);
			else
				got += s[c];
		}
		if (i == victim) {
			cr_assert(got == 0 || got == inflight,
				  "producer %d: %lu of a bulk delivered", i, (unsigned long)got);
			if (ks.must >= 0)
				cr_assert_eq(got, ks.must ? inflight : 0,
					     "producer %d killed in state %lx: %lu of its %lu "
					     "elements published",
					     i, (unsigned long)ks.st, (unsigned long)got,
					     (unsigned long)inflight);
		}
	}
	if (ks.exact) {
		/* Exactly what the dead consumer held is lost, and never delivered to anyone. */
		cr_assert_eq(nlost, (uint64_t)ks.nheld,
			     "consumer killed in state %lx: lost %lu of %d", (unsigned long)ks.st,
			     (unsigned long)nlost, ks.nheld);
		for (int j = 0; j < ks.nheld; j++) {
			uint64_t pr = ks.held[j] >> 40, cnt = ks.held[j] & ((1ull << 40) - 1);
			cr_assert(pr < (uint64_t)np && cnt < lim, "held %lx",
				  (unsigned long)ks.held[j]);
			cr_assert_eq(seen[pr * (lim + 1) + cnt], 0,
				     "consumer killed in state %lx: its element %lu/%lu delivered",
				     (unsigned long)ks.st, (unsigned long)pr, (unsigned long)cnt);
		}
	} else {
		cr_assert_leq(nlost, ks.may_lose, "lost %lu (victim %d, state %lx)",
			      (unsigned long)nlost, victim, (unsigned long)ks.st);
	}
	/* Capacity intact: the parent can fill the whole ring. */
	struct payload pl = {0};
	for (uint64_t i = 0; i < cap; i++)
		cr_assert_eq(shmring_mpmc_push(r, &pl), 0, "capacity shrank at %lu",
			     (unsigned long)i);
	cr_assert_eq(shmring_mpmc_push(r, &pl), -EAGAIN);
	free(seen);
	munmap(sh, sizeof(*sh));
	shmring_close(r);
	shmring_unlink(name);
	if (victim < 0)
		return 0;
	return (ks.st & 0xff) == _SHMRING_MP_IDLE ? (ks.st >> 16 ? 8 : 1) : 1 + (int)(ks.st & 0xff);
}

Test(mpmc, processes_2x2)
{
	uint64_t s = 1;
	cr_assert_eq(mp_run(2, 2, 40000, 64, -1, &s), 0, "no process may die in this run");
}

Test(mpmc, processes_4x4)
{
	uint64_t s = 1;
	cr_assert_eq(mp_run(4, 4, 15000, 64, -1, &s), 0, "no process may die in this run");
}

Test(mpmc, processes_8x8_small_ring)
{
	uint64_t s = 1;
	cr_assert_eq(mp_run(8, 8, 6000, 8, -1, &s), 0, "no process may die in this run");
}

/*
 * Kill injection: each run kills one random producer or consumer, running without end, inside a
 * call where it can be caught there (its record not IDLE), and checks what recovery did against
 * what that record said. Kills between calls alone would leave recovery of a half-done call
 * untested (found in review: every victim of 500 runs was IDLE, and a recovery that dropped a
 * dead producer's element it had begun publishing, or freed records unfinished, passed).
 */
Test(mpmc, kill_injection_200_runs, .timeout = 120)
{
	uint64_t seed = (uint64_t)time(NULL) * 2654435761u | 1;
	int killed = 0, mid = 0, phase[8] = {0};
	const char *env = getenv("MPMC_KILL_RUNS");
	int runs = env ? atoi(env) : 200;
	for (int i = 0; i < runs; i++) {
		int np = 1 + (int)(rnd(&seed) % 3), nc = 2 + (int)(rnd(&seed) % 2);
		int k = mp_run(np, nc, 3000, 16, (long)(rnd(&seed) % 3000), &seed);
		killed += k > 0;
		mid += k > 1;
		phase[k > 0 && k <= 8 ? k - 1 : 7]++;
	}
	cr_log_info("kill injection: %d runs, %d killed, %d inside a call; by phase idle %d "
		    "deq_faa %d deq %d hold %d enq_faa %d enq %d deq_bulk %d idle-in-bulk %d",
		    runs, killed, mid, phase[0], phase[1], phase[2], phase[3], phase[4], phase[5],
		    phase[6], phase[7]);
	cr_assert_eq(killed, runs, "a run without its kill");
	/* Measured: 150-199 of 200 in a debug build, 76-126 in the optimized ones of
	 * scripts/test.sh (shorter calls, and a victim that waits in sched_yield longer), on 2
	 * loaded CPUs. A fifth still puts every phase to the test. */
	cr_assert_geq(mid, runs / 5, "only %d of %d runs killed their victim inside a call", mid,
		      runs);
}

/*
 * Participants parked by the test hook, as preemption parks them: a thread per participant,
 * stopped at one hook point until released.
 */
struct park {
	int point, queue, fired;
	sem_t parked, go;
};
static int hook_park_at(struct shmring *r, int point, int queue, void *arg)
{
	struct park *pk = arg;
	(void)r;
	if (!pk->fired && point == pk->point && queue == pk->queue) {
		pk->fired = 1;
		sem_post(&pk->parked);
		sem_wait(&pk->go);
	}
	return 0;
}
struct parked_call {
	struct shmring *h;
	int op; /* 0 pop, 1 push, 2 pop_bulk of 1 */
	uint64_t v;
	int rc;
	struct park *pk;
};
static void *parked_call_run(void *arg)
{
	struct parked_call *pc = arg;
	pc->rc = pc->op == 0   ? shmring_mpmc_pop(pc->h, &pc->v)
		 : pc->op == 1 ? shmring_mpmc_push(pc->h, &pc->v)
			       : shmring_mpmc_pop_bulk(pc->h, &pc->v, 1);
	if (!pc->pk->fired)
		sem_post(&pc->pk->parked); /* returned without passing the point */
	return NULL;
}
/* Starts pc on its own thread, parked at pk's point; returns once it is parked there, or has
 * returned without reaching it. */
static pthread_t park_at(struct parked_call *pc, struct park *pk, int point)
{
	pthread_t t;
	pc->pk = pk;
	pk->fired = 0;
	pk->point = point;
	pk->queue = _SHMRING_MP_AQ;
	sem_init(&pk->parked, 0, 0);
	sem_init(&pk->go, 0, 0);
	shmring_mpmc_set_hook(pc->h, hook_park_at, pk);
	cr_assert_eq(pthread_create(&t, NULL, parked_call_run, pc), 0);
	sem_wait(&pk->parked);
	return t;
}

/*
 * A bulk pop's scan meets, inside its run, an entry still holding the previous cycle's element
 * (its consumer is slow). Clearing that entry's safe bit, as a single pop does, stops a late
 * producer only once head has passed the position, and the bulk moves head later, at its CAS.
 * In between, the slow consumer takes its element and a late producer lands there; the CAS then
 * moved head past it, and the pushed element was lost with nobody dead. The scan must stop at
 * such an entry. All alive throughout; nothing may be lost.
 */
Test(mpmc, review_bulk_scan_does_not_cross_an_older_element)
{
	struct shmring_params p = mp_params(8, 4);
	struct shmring *r;
	cr_assert_eq(shmring_create_anon(&p, &r), 0);
	struct parked_call slow = {.h = mp_attach(r), .op = 0},
			   late = {.h = mp_attach(r), .op = 1, .v = 1000},
			   bulk = {.h = mp_attach(r), .op = 2};
	struct park pk[3];
	uint64_t v = 1, out;
	cr_assert_eq(shmring_mpmc_push(r, &v), 0);
	/* The slow consumer takes position 8 (capacity 4: 8 entries) and stops there. */
	pthread_t ts = park_at(&slow, &pk[0], SHMRING_MPMC_HOOK_DEQ_POS);
	for (v = 10; v < 17; v++) {
		cr_assert_eq(shmring_mpmc_push(r, &v), 0);
		cr_assert_eq(shmring_mpmc_pop(r, &out), 0);
		cr_assert_eq(out, v);
	}
	/* A late producer takes position 16 (the slow one's entry, next cycle) and stops. */
	pthread_t tl = park_at(&late, &pk[1], SHMRING_MPMC_HOOK_ENQ_POS);
	v = 2000;
	cr_assert_eq(shmring_mpmc_push(r, &v), 0); /* position 17 */
	/* The bulk pop scans from 16 and stops before its head CAS (or gives up at once). */
	pthread_t tb = park_at(&bulk, &pk[2], SHMRING_MPMC_HOOK_DEQ_FAA);
	sem_post(&pk[0].go);
	pthread_join(ts, NULL);
	cr_assert_eq(slow.rc, 0);
	cr_assert_eq(slow.v, 1);
	sem_post(&pk[1].go);
	pthread_join(tl, NULL);
	cr_assert_eq(late.rc, 0);
	sem_post(&pk[2].go);
	pthread_join(tb, NULL);
	int got1000 = 0, got2000 = 0;
	if (bulk.rc == 1) {
		got1000 += bulk.v == 1000;
		got2000 += bulk.v == 2000;
	} else {
		cr_assert_eq(bulk.rc, -EAGAIN);
	}
	while (shmring_mpmc_pop(r, &out) == 0) {
		got1000 += out == 1000;
		got2000 += out == 2000;
	}
	cr_assert_eq(got1000, 1, "the late producer's element was lost (or doubled)");
	cr_assert_eq(got2000, 1);
	cr_assert_eq(shmring_mpmc_recover(r), 0);
	cr_assert_eq(free_slots(r, 4), 4, "a slot leaked");
	shmring_close(slow.h);
	shmring_close(late.h);
	shmring_close(bulk.h);
	shmring_close(r);
}

/* ---- a death at every instruction ---------------------------------------------------------- */

/*
 * The hook points are where a test can stop a participant, but a process can die between any
 * two instructions, and a record can be inconsistent between two stores with no hook point in
 * between (found in review: put_n rewrote idx and seq before leaving ENQ, and recovery of a
 * death there published an index twice). So the victim, a child process, single-steps (x86 trap
 * flag) from its first hook point on and SIGKILLs itself at its n-th instruction, for every n
 * up to the end of the call (or, where the call is long, for n spread evenly over it).
 */
static int hook_step_on(struct shmring *r, int point, int queue, void *arg)
{
	static int on; /* per process: each victim is a fresh child */
	(void)r;
	(void)point;
	(void)queue;
	(void)arg;
	if (!on) {
		on = 1;
		tu_step_arm();
	}
	return 0;
}

/*
 * One victim: a bulk push (op 1) or pop (op 0) of 3, or a single push (3) or pop (2), into a
 * ring of 8 holding 4, killed at instruction die_at (0: never). Then recovery and the checks of
 * bulk_death_case(). Returns the number of instructions the victim ran from its first hook
 * point to the end of the call.
 */
static long step_case(int op, long die_at)
{
	enum { CAP = 8 };
	int N = op >= 2 ? 1 : 3, push = op & 1;
	struct shmring_params p = mp_params(8, CAP);
	struct shmring *r;
	uint64_t in[3] = {100, 101, 102};
	int seen[128] = {0};

	cr_assert_eq(shmring_create_anon(&p, &r), 0);
	for (uint64_t i = 0; i < 4; i++)
		cr_assert_eq(shmring_mpmc_push(r, &i), 0);
	_Atomic long *slot = tu_step_slots(); /* [0] call done, [1..3] what it popped */
	tu_step_plan(die_at);
	atomic_store(&slot[0], 0);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct shmring *h = mp_attach(r);
		uint64_t out[3];
		shmring_mpmc_set_hook(h, hook_step_on, NULL);
		int rc = op == 3   ? (shmring_mpmc_push(h, in) ? -1 : 1)
			 : op == 2 ? (shmring_mpmc_pop(h, out) ? -1 : 1)
			 : op	   ? shmring_mpmc_push_bulk(h, in, 3)
				   : shmring_mpmc_pop_bulk(h, out, 3);
		tu_step_disarm();
		atomic_store(&slot[0], rc == N ? 1 : -1);
		for (int i = 0; !push && rc == N && i < N; i++)
			atomic_store(&slot[1 + i], (long)out[i]);
		_exit(0);
	}
	int st = tu_wait(pid);
	long done = atomic_load(&slot[0]), ran = tu_step_ran();
	cr_assert(st == 0 || st == 128 + SIGKILL, "die_at %ld: exit %d", die_at, st);
	cr_assert_neq(done, -1, "die_at %ld: the call failed", die_at);
	if (done == 1 && !push)
		for (int i = 0; i < N; i++)
			seen[atomic_load(&slot[1 + i])]++;
	int rec = shmring_mpmc_recover(r);
	cr_assert_geq(rec, 0, "die_at %ld: recover %d", die_at, rec);
	int nvictim = drain_in_order(r, seen, 128, 100, "die_at", die_at);
	if (push)
		cr_assert(nvictim == 0 || nvictim == N, "die_at %ld: %d of the bulk published",
			  die_at, nvictim);
	int lost = 0;
	for (int i = 0; i < 4; i++)
		lost += seen[i] == 0;
	cr_assert_leq(lost, push ? 0 : N, "die_at %ld: lost %d", die_at, lost);
	assert_capacity(r, CAP, "die_at", (int)die_at);
	shmring_close(r);
	return ran;
}

Test(mpmc, death_at_every_instruction, .timeout = 300)
{
	if (!tu_step_supported())
		cr_skip_test("single-stepping is implemented for x86-64 only");
	cr_assert_gt(tu_step_each(step_case, 4), 50, "too few instructions stepped");
}

/*
 * What a bulk may not cross (see shmring_mpmc_pop_bulk()): a consumer stopped between its
 * fetch-and-add and its claim holds the previous cycle's element at a position now at head.
 * pop_bulk says -EAGAIN, as documented; pop_burst crosses it and gets what is behind, and so
 * does the bulk once the stopped consumer goes on. Found in review of the scan's stop.
 */
Test(mpmc, bulk_waits_behind_a_stopped_taker)
{
	struct shmring_params p = mp_params(8, 4);
	struct shmring *r;
	cr_assert_eq(shmring_create_anon(&p, &r), 0);
	struct parked_call slow = {.h = mp_attach(r), .op = 0};
	struct park pk;
	uint64_t v = 1, out[2], a[3] = {20, 21, 22};
	cr_assert_eq(shmring_mpmc_push(r, &v), 0);
	pthread_t ts = park_at(&slow, &pk, SHMRING_MPMC_HOOK_DEQ_POS); /* position 8 */
	for (v = 10; v < 17; v++) {
		cr_assert_eq(shmring_mpmc_push(r, &v), 0);
		cr_assert_eq(shmring_mpmc_pop(r, out), 0);
	}
	for (int i = 0; i < 3; i++)
		cr_assert_eq(shmring_mpmc_push(r, &a[i]), 0); /* past position 16 */
	cr_assert_eq(shmring_mpmc_pop_bulk(r, out, 1), -EAGAIN);
	cr_assert_eq(shmring_mpmc_pop_burst(r, out, 1), 1);
	cr_assert_eq(out[0], 20);
	sem_post(&pk.go);
	pthread_join(ts, NULL);
	cr_assert_eq(slow.rc, 0);
	cr_assert_eq(slow.v, 1);
	cr_assert_eq(shmring_mpmc_pop_bulk(r, out, 2), 2);
	cr_assert(out[0] == 21 && out[1] == 22);
	cr_assert_eq(shmring_mpmc_recover(r), 0);
	cr_assert_eq(free_slots(r, 4), 4);
	shmring_close(slow.h);
	shmring_close(r);
}

/*
 * A bulk push of 32 dies right after its fetch-and-add on the filled queue's tail: 32 positions
 * that will never hold anything, between an element before them and one after. Recovery
 * publishes the dead bulk further on. A bulk pop of 2 must get the two elements within a few
 * calls: each scan closes at most 16 positions, but crosses the ones closed before. Found in
 * review: every scan counted the closed positions again, stopped at 16, and pop_bulk said
 * -EAGAIN for good, with 34 elements in the ring.
 */
Test(mpmc, bulk_crosses_a_dead_bulks_positions)
{
	enum { CAP = 64, N = 32 };
	struct shmring *v, *r = ring_with_victim(CAP, &v);
	uint64_t in[N], out[2], e1 = 1, e2 = 2;
	for (int i = 0; i < N; i++)
		in[i] = 100 + (uint64_t)i;
	cr_assert_eq(shmring_mpmc_push(r, &e1), 0);
	die_point = SHMRING_MPMC_HOOK_ENQ_POS;
	die_queue = _SHMRING_MP_AQ;
	shmring_mpmc_set_hook(v, hook_die, NULL);
	cr_assert_eq(shmring_mpmc_push_bulk(v, in, N), -ECANCELED);
	shmring_close(v);
	cr_assert_eq(shmring_mpmc_push(r, &e2), 0);
	cr_assert_eq(shmring_mpmc_recover(r), 1);
	int calls = 0, rc;
	while ((rc = shmring_mpmc_pop_bulk(r, out, 2)) == -EAGAIN && ++calls < 8)
		;
	cr_assert_eq(rc, 2, "pop_bulk still %d after %d calls", rc, calls);
	cr_assert(out[0] == 1 && out[1] == 2);
	for (int i = 0; i < N; i += 2) {
		cr_assert_eq(shmring_mpmc_pop_bulk(r, out, 2), 2);
		cr_assert(out[0] == in[i] && out[1] == in[i + 1]);
	}
	cr_assert_eq(shmring_mpmc_recover(r), 0);
	assert_capacity(r, CAP, "after", 0);
	shmring_close(r);
}

/* ---- liveness across pid namespaces, and fork children ------------------------------------ */

/* Parks a push at FILLED (the element written, not published): says so on fds[1], then waits
 * for a byte on fds[2]. */
static int park_filled(struct shmring *r, int point, int queue, void *arg)
{
	const int *fds = arg;
	char c = 'p';
	(void)r;
	(void)queue;
	if (point == SHMRING_MPMC_HOOK_FILLED) {
		if (write(fds[1], &c, 1) != 1 || read(fds[2], &c, 1) != 1)
			_exit(3);
	}
	return 0;
}

/* In a child: opens the ring, recovers (expecting nothing dead) if asked, pushes v parked at
 * FILLED. Exit status: 0, or which step failed. */
static int park_push(const char *name, const int *fds, uint64_t v, int recover_first, int attach)
{
	struct shmring_params p = mp_params(8, 8);
	struct shmring *o, *h;
	size_t len;
	if (shmring_open(name, &p, &o) != 0)
		return 1;
	/* attach: the pushing handle is made by shmring_attach at the opened ring's base. */
	void *base = shmring_base(o, &len); /* before len is read (found in review) */
	if (!attach)
		h = o;
	else if (shmring_attach(base, len, &p, &h) != 0)
		return 3;
	int rec = recover_first ? shmring_mpmc_recover(h) : 0;
	shmring_mpmc_set_hook(h, park_filled, (void *)fds);
	int rc = shmring_mpmc_push(h, &v);
	shmring_close(h);
	if (h != o)
		shmring_close(o);
	return rc != 0 ? 2 : rec != 0 ? 10 + (rec & 0xf) : 0;
}

enum { NS_PID, NS_TIME, NS_NO_PROC, NS_PID_NO_PROC };

/*
 * Moves the calling process's future children into a new pid namespace (pid = 1) or time
 * namespace (boottime shifted by 1000 s, so that every start time read there differs), or the
 * calling process into a mount namespace with an empty /proc; as root or, where that is
 * refused, inside a new user namespace. Returns 0 or -1.
 */
static int new_ns(int kind)
{
	static const int flags[] = {CLONE_NEWPID, CLONE_NEWTIME, CLONE_NEWNS,
				    CLONE_NEWPID | CLONE_NEWNS};
	int flag = flags[kind];
	if (unshare(flag) != 0 && unshare(CLONE_NEWUSER | flag) != 0)
		return -1;
	if (kind == NS_TIME) {
		FILE *f = fopen("/proc/self/timens_offsets", "w");
		if (!f || fputs("boottime 1000 0\n", f) < 0 || fclose(f) != 0)
			return -1;
	}
	/* Private first: an empty /proc must not propagate to the machine's mount namespace. */
	if (flag & CLONE_NEWNS && (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
				   mount("none", "/proc", "tmpfs", 0, NULL) != 0))
		return -1;
	return 0;
}

/* One byte from fd within 10 s: 1, or 0 (a child that was to write it failed instead). */
static int read_byte(int fd)
{
	struct pollfd pf = {.fd = fd, .events = POLLIN};
	char c;
	return poll(&pf, 1, 10000) == 1 && read(fd, &c, 1) == 1;
}

/* 1 if new_ns(kind) works here (tried in a child). */
static int ns_supported(int kind)
{
	pid_t c = fork();
	if (c == 0)
		_exit(new_ns(kind) == 0 ? 0 : 1);
	return tu_wait(c) == 0;
}

/*
 * A participant in another pid or time namespace is alive, and recovery on either side must say
 * so: its pid names no process here (or another one), and start times differ between time
 * namespaces. Recovery by pid and start time took every live record of the other namespace for
 * dead and freed what they held (a slot a producer was filling went back to the free queue
 * under it: the other namespace's recovery returned 2 here). Records of a named ring are held
 * by an OFD lock, which the kernel drops at death whatever the namespaces. Skipped where
 * neither unshare() nor a user namespace is permitted. NS_NO_PROC: a process without /proc
 * (no description of its own to lock through, no start times) judged every live process dead,
 * and was itself judged dead (found in review: a duplicated slot). NS_PID_NO_PROC: such a
 * process in another pid namespace must still see the others' locks (a judge by pid alone took
 * them for dead); it is itself judged by kill alone, right here only because its pid, 1, also
 * exists here (the documented limit of handles without /proc).
 */
static uint64_t other_namespace_case(int kind, int attach)
{
	static const char *tags[] = {"mpmc-pidns", "mpmc-timens", "mpmc-noproc",
				     "mpmc-pidns-noproc"};
	const char *name = tu_shm_name(tags[kind]);
	struct shmring_params p = mp_params(8, 8);
	struct shmring *r;
	cr_assert_eq(shmring_create(name, &p, &r), 0);
	int parked[2], go[2];
	cr_assert_eq(pipe(parked), 0);
	cr_assert_eq(pipe(go), 0);
	int fds[3] = {parked[0], parked[1], go[0]};
	/* Here: a producer parked mid-push. */
	pid_t a = fork();
	if (a == 0) {
		close(go[1]); /* so that a failed test's exit releases it (EOF) */
		_exit(park_push(name, fds, 1, 0, attach));
	}
	cr_assert(read_byte(parked[0]), "the producer here did not park");
	/* There: a process that recovers, then parks mid-push. */
	pid_t b = fork();
	if (b == 0) {
		close(go[1]);
		if (new_ns(kind) != 0)
			_exit(20);
		pid_t b1 = fork();
		if (b1 == 0)
			_exit(park_push(name, fds, 2, 1, attach));
		_exit(tu_wait(b1));
	}
	cr_assert(read_byte(parked[0]), "the process there did not park (status %d)",
		  waitpid(b, NULL, WNOHANG) == b ? -1 : 0);
	cr_assert_eq(shmring_mpmc_recover(r), 0, "the other namespace's producer read as dead");
	cr_assert_eq(write(go[1], "gg", 2), 2);
	cr_assert_eq(tu_wait(a), 0);
	int st = tu_wait(b);
	cr_assert_eq(st, 0, "step %d failed in the other namespace (1x: it recovered x records)",
		     st);
	uint64_t x, seen = 0;
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(shmring_mpmc_pop(r, &x), 0);
		seen |= 1u << x;
	}
	cr_assert_eq(shmring_mpmc_pop(r, &x), -EAGAIN);
	assert_capacity(r, 8, "after", 0);
	shmring_close(r);
	shmring_unlink(name);
	close(parked[0]);
	close(parked[1]);
	close(go[0]);
	close(go[1]);
	return seen; /* 6: both elements, each once */
}

/* Skips where the namespace of that kind cannot be made, else runs the case. */
static uint64_t ns_case(int kind, int attach)
{
	static const char *what[] = {"a pid namespace", "a time namespace", "a mount namespace",
				     "pid and mount namespaces"};
	if (!ns_supported(kind))
		cr_skip_test("%s cannot be made here", what[kind]);
	return other_namespace_case(kind, attach);
}

Test(mpmc, participant_in_another_pid_namespace_is_alive)
{
	cr_assert_eq(ns_case(NS_PID, 0), 6u, "not both elements, each once");
}

/* A handle made by shmring_attach at the base of a ring opened by name holds its record by the
 * ring's file, as the opened one would (it used to be judged by pid, read dead from there). */
Test(mpmc, attached_participant_in_another_pid_namespace_is_alive)
{
	cr_assert_eq(ns_case(NS_PID, 1), 6u, "not both elements, each once");
}

Test(mpmc, participant_in_another_time_namespace_is_alive)
{
	cr_assert_eq(ns_case(NS_TIME, 0), 6u, "not both elements, each once");
}

Test(mpmc, participant_without_proc_is_alive)
{
	cr_assert_eq(ns_case(NS_NO_PROC, 0), 6u, "not both elements, each once");
}

Test(mpmc, participant_without_proc_in_another_pid_namespace_sees_locks)
{
	cr_assert_eq(ns_case(NS_PID_NO_PROC, 0), 6u, "not both elements, each once");
}

/* Parks a push at FILLED after forking a child that outlives us: the child sends its pid to
 * fds[0] (so its fork handlers have run), then waits for a byte (or EOF) on fds[1]. */
static int park_with_child(struct shmring *r, int point, int queue, void *arg)
{
	const int *fds = arg;
	(void)r;
	(void)queue;
	if (point != SHMRING_MPMC_HOOK_FILLED)
		return 0;
	if (fork() == 0) {
		char c;
		pid_t g = getpid();
		if (write(fds[0], &g, sizeof(g)) != (ssize_t)sizeof(g))
			_exit(3);
		_exit(read(fds[1], &c, 1) < 0);
	}
	for (;;)
		pause();
}

/*
 * A process that dies while a child it forked lives on: the child's copy of the handle must not
 * keep the parent's record looking alive (the copy of its lock's file description is closed in
 * the child), or recovery waits for the child's exit.
 */
Test(mpmc, dead_parents_record_recovered_while_its_child_lives)
{
	const char *name = tu_shm_name("mpmc-forkchild");
	struct shmring_params p = mp_params(8, 8);
	struct shmring *r;
	cr_assert_eq(shmring_create(name, &p, &r), 0);
	int info[2], hold[2];
	cr_assert_eq(pipe(info), 0);
	cr_assert_eq(pipe(hold), 0);
	pid_t a = fork();
	if (a == 0) {
		alarm(30);	/* not left parked for ever if the test fails before killing it */
		close(hold[1]); /* the grandchild's wait ends when the test process goes */
		struct shmring *h;
		int fds[2] = {info[1], hold[0]};
		uint64_t v = 7;
		if (shmring_open(name, &p, &h) != 0)
			_exit(1);
		shmring_mpmc_set_hook(h, park_with_child, fds);
		shmring_mpmc_push(h, &v);
		_exit(2);
	}
	pid_t g = 0;
	struct pollfd pf = {.fd = info[0], .events = POLLIN};
	cr_assert_eq(poll(&pf, 1, 10000), 1, "the producer did not park");
	cr_assert_eq(read(info[0], &g, sizeof(g)), (ssize_t)sizeof(g));
	cr_assert_eq(shmring_mpmc_recover(r), 0);
	kill(a, SIGKILL);
	cr_assert_eq(tu_wait(a), 128 + SIGKILL);
	int rc = shmring_mpmc_recover(r);
	cr_assert_eq(rc, 1, "recover %d: the child kept its dead parent's record alive", rc);
	cr_assert_gt(g, 0);
	cr_assert_eq(write(hold[1], "x", 1), 1); /* the grandchild exits (not ours to reap) */
	/* Dead at FILLED, its record still says it was filling: the element is lost (push had not
	 * returned), the slot comes back. */
	uint64_t x;
	cr_assert_eq(shmring_mpmc_pop(r, &x), -EAGAIN);
	assert_capacity(r, 8, "after", 0);
	shmring_close(r);
	shmring_unlink(name);
	for (int i = 0; i < 2; i++) {
		close(info[i]);
		close(hold[i]);
	}
}

/*
 * Found in review: a bulk take that lost its CAS on head to other consumers counted each loss
 * against the budget meant for corrupt memory, and after 66560 of them said -EPROTO and broke
 * its handle; a burst beside single pops on many cores could get there. Here another handle
 * pops and pushes back one element before every CAS of ours, for ever: the bulk now says
 * -EAGAIN and the burst takes one element by fetch-and-add, and the handle goes on.
 */
static struct shmring *racer;
static long races;

static int race_head(struct shmring *r, int point, int q, void *arg)
{
	(void)r;
	(void)arg;
	uint64_t x;
	if (point == SHMRING_MPMC_HOOK_DEQ_FAA && q == 0 && races++ < 200000 &&
	    shmring_mpmc_pop(racer, &x) == 0)
		cr_assert_eq(shmring_mpmc_push(racer, &x), 0);
	return 0;
}

Test(mpmc, bulk_take_that_keeps_losing_head_gives_up, .timeout = 60)
{
	struct shmring_params p = mp_params(8, 64);
	struct shmring *r, *b;
	uint64_t out[8], x;

	cr_assert_eq(shmring_create_anon(&p, &r), 0);
	racer = mp_attach(r);
	b = mp_attach(r);
	for (uint64_t i = 0; i < 64; i++)
		cr_assert_eq(shmring_mpmc_push(r, &i), 0);
	cr_assert_eq(shmring_mpmc_set_hook(b, race_head, NULL), 0);
	races = 0;
	cr_assert_eq(shmring_mpmc_pop_bulk(b, out, 8), -EAGAIN);
	cr_assert_lt(races, 100, "gave up only after %ld lost races", races);
	races = 0;
	cr_assert_eq(shmring_mpmc_pop_burst(b, out, 8), 1, "the burst goes on as a single pop");
	cr_assert_lt(races, 100, "gave up only after %ld lost races", races);
	cr_assert_eq(shmring_mpmc_set_hook(b, NULL, NULL), 0);
	/* Not broken, and nothing lost: 63 left, and the one popped. */
	int n = 0;
	while (shmring_mpmc_pop(b, &x) == 0)
		n++;
	cr_assert_eq(n, 63);
	shmring_close(b);
	shmring_close(racer);
	shmring_close(r);
}

/*
 * Found in review: a consumer wrongly judged dead (liveness lied: another pid namespace, say)
 * emptied its entry with a fetch-or after recovery had taken its element over, freed its slot,
 * and a producer had landed another index in the same entry for the next cycle: the fetch-or
 * wiped that index and lost its element. The entry is now emptied by a CAS on the word that
 * still holds ours: the stray consumer says -EPROTO, and the element stays for the others.
 * Deterministic: the victim parks at HELD, and its hook runs the rest of the story.
 */
static struct shmring *lied_ring, *lied_p;
static int lied_hook_ran;

static int lied_hook(struct shmring *r, int point, int q, void *arg)
{
	(void)r;
	(void)arg;
	if (point != SHMRING_MPMC_HOOK_HELD || q != 0 || lied_hook_ran++)
		return 0;
	/* Recovery takes our element over: dropped, slot freed. */
	cr_assert_eq(shmring_mpmc_recover(lied_ring), 1);
	/* Four more through a 2-slot ring (2n = 4 entries): the fourth lands in our entry, a
	 * cycle on; the first three go straight through. */
	uint64_t x;
	for (uint64_t i = 1; i <= 4; i++) {
		cr_assert_eq(shmring_mpmc_push(lied_p, &i), 0);
		if (i < 4) {
			cr_assert_eq(shmring_mpmc_pop(lied_ring, &x), 0);
			cr_assert_eq(x, i);
		}
	}
	return 0;
}

Test(mpmc, consumer_judged_dead_does_not_wipe_the_next_cycles_entry)
{
	struct shmring *v;
	uint64_t x = 0;

	lied_ring = ring_with_victim(2, &v);
	lied_p = mp_attach(lied_ring);
	cr_assert_eq(shmring_mpmc_push(lied_p, &x), 0);
	lied_hook_ran = 0;
	cr_assert_eq(shmring_mpmc_set_hook(v, lied_hook, NULL), 0);
	int rc = shmring_mpmc_pop(v, &x);
	cr_assert_eq(lied_hook_ran, 1, "the victim never reached HELD: nothing tested");
	cr_assert_eq(rc, -EPROTO, "the stray consumer went on as if its element were there: %d",
		     rc);
	/* The element landed in its entry is still there, and nothing else. */
	cr_assert_eq(shmring_mpmc_pop(lied_ring, &x), 0, "the next cycle's element was lost");
	cr_assert_eq(x, 4);
	cr_assert_eq(shmring_mpmc_pop(lied_ring, &x), -EAGAIN);
	shmring_close(v);
	shmring_close(lied_p);
	shmring_close(lied_ring);
}

/*
 * Found in review: a handle whose call the test hook abandoned (-ECANCELED: "died there") was
 * not marked, and its next call overwrote the record left for recovery, so a slot leaked for
 * good. Now it is broken: every later data call says -EPROTO, and recovery finds the record.
 */
Test(mpmc, handle_abandoned_by_the_hook_is_broken)
{
	struct shmring *v, *r = ring_with_victim(4, &v);
	uint64_t x = 7;

	cr_assert_eq(shmring_mpmc_push(r, &x), 0);
	die_point = SHMRING_MPMC_HOOK_HELD;
	die_queue = 0;
	cr_assert_eq(shmring_mpmc_set_hook(v, hook_die, NULL), 0);
	cr_assert_eq(shmring_mpmc_pop(v, &x), -ECANCELED);
	cr_assert_eq(shmring_mpmc_set_hook(v, NULL, NULL), 0);
	cr_assert_eq(shmring_mpmc_push(v, &x), -EPROTO);
	cr_assert_eq(shmring_mpmc_pop(v, &x), -EPROTO);
	cr_assert_eq(shmring_mpmc_push_burst(v, &x, 1), -EPROTO);
	shmring_close(v);
	cr_assert_eq(shmring_mpmc_recover(r), 1);
	assert_capacity(r, 4, "abandoned at", SHMRING_MPMC_HOOK_HELD);
	shmring_close(r);
}

/* SPDX-License-Identifier: MIT */
/*
 * SHMRING_MPMC_RUNS rings: semantics of every call, producer arenas, parked and dead producers,
 * a death at every instruction, multi-process runs with kill injection, the header refresh, and
 * hostile values in shared memory.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

static struct shmring_params mr_params(uint32_t es, uint64_t cap, uint32_t producers)
{
	struct shmring_params p = {0};
	p.kind = SHMRING_MPMC_RUNS;
	p.elem_size = es;
	p.capacity = cap;
	p.producers = producers;
	return p;
}

/* A second handle on the same anonymous mapping. */
static struct shmring *mr_attach(struct shmring *r)
{
	size_t len;
	void *base = shmring_base(r, &len);
	struct shmring_params e = mr_params(0, 0, 0);
	struct shmring *h = NULL;
	cr_assert_eq(shmring_attach(base, len, &e, &h), 0);
	return h;
}

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
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

/* Random pushes and pops of every shape against a FIFO model, over many laps. */
Test(mpmc_runs, fifo_against_a_model)
{
	uint64_t caps[] = {1, 2, 8, 64, 1024};
	uint64_t seed = 88172645463325252ull;
	for (unsigned c = 0; c < sizeof(caps) / sizeof(caps[0]); c++) {
		uint64_t cap = caps[c];
		struct shmring_params p = mr_params(8, cap, 1);
		struct shmring *r;
		cr_assert_eq(shmring_create_anon(&p, &r), 0);
		cr_assert_eq(shmring_kind(r), SHMRING_MPMC_RUNS);
		uint64_t in = 0, out = 0, buf[SHMRING_MPMC_BULK_MAX];
		for (int op = 0; op < 40000; op++) {
			uint64_t x = rnd(&seed);
			unsigned n = 1 + (unsigned)(x >> 8) % SHMRING_MPMC_BULK_MAX;
			int kind = (int)(x % 3), push = (x >> 4) & 1, rc;
			uint64_t size = in - out;
			cr_assert_eq(shmring_mpmc_size(r), (int64_t)size);
			if (push) {
				for (unsigned i = 0; i < n; i++)
					buf[i] = in + i;
				rc = kind == 0	 ? (shmring_mpmc_push(r, buf) ? -EAGAIN : 1)
				     : kind == 1 ? shmring_mpmc_push_burst(r, buf, n)
						 : shmring_mpmc_push_bulk(r, buf, n);
				uint64_t room = cap - size, want = kind == 0 ? 1 : n;
				if (kind == 2 && n > cap)
					cr_assert_eq(rc, -EINVAL);
				else if (kind == 2)
					cr_assert_eq(rc, room >= n ? (int)n : -EAGAIN);
				else {
					want = want > cap ? cap : want;
					cr_assert_eq(rc,
						     room == 0 ? -EAGAIN
							       : (int)(room < want ? room : want),
						     "cap %lu op %d push kind %d n %u size %lu: %d",
						     (unsigned long)cap, op, kind, n,
						     (unsigned long)size, rc);
				}
				if (rc > 0)
					in += (uint64_t)rc;
			} else {
				memset(buf, 0xff, sizeof(buf));
				rc = kind == 0	 ? (shmring_mpmc_pop(r, buf) ? -EAGAIN : 1)
				     : kind == 1 ? shmring_mpmc_pop_burst(r, buf, n)
						 : shmring_mpmc_pop_bulk(r, buf, n);
				uint64_t want = kind == 0 ? 1 : n;
				if (kind == 2 && n > cap)
					cr_assert_eq(rc, -EINVAL);
				else if (kind == 2)
					cr_assert_eq(rc, size >= n ? (int)n : -EAGAIN);
				else
					cr_assert_eq(rc, size == 0
							     ? -EAGAIN
							     : (int)(size < want ? size : want));
				for (int i = 0; i < rc; i++)
					cr_assert_eq(buf[i], out + (uint64_t)i, "cap %lu op %d",
						     (unsigned long)cap, op);
				if (rc > 0)
					out += (uint64_t)rc;
			}
		}
		cr_assert_eq(shmring_mpmc_push_burst(r, buf, 0), 0);
		cr_assert_eq(shmring_mpmc_pop_bulk(r, buf, 0), 0);
		shmring_close(r);
	}
}

Test(mpmc_runs, geometry_and_params)
{
	struct shmring_params p = mr_params(16, 64, 0);
	struct shmring *r, *h;
	cr_assert_eq(shmring_memsize(&p), -EINVAL, "a create needs producers");
	p.producers = SHMRING_RUNS_PRODUCERS_MAX + 1;
	cr_assert_eq(shmring_memsize(&p), -EINVAL);
	p.producers = 1;
	ssize_t one = shmring_memsize(&p);
	p.producers = 4;
	ssize_t four = shmring_memsize(&p);
	cr_assert_gt(one, 0);
	cr_assert_geq(four - one, 3 * 16 * 64, "an arena per producer");
	struct shmring_params spsc = {.kind = SHMRING_SPSC, .elem_size = 8, .capacity = 8};
	spsc.producers = 2;
	cr_assert_eq(shmring_memsize(&spsc), -EINVAL, "producers belongs to the runs kind");
	p = mr_params(1u << 20, 1u << 21, 64);
	cr_assert_eq(shmring_memsize(&p), -EOVERFLOW);

	const char *name = tu_shm_name("mr-geo");
	p = mr_params(16, 64, 3);
	cr_assert_eq(shmring_create(name, &p, &r), 0);
	struct shmring_params e = mr_params(0, 0, 0);
	cr_assert_eq(shmring_open(name, &e, &h), 0, "producers 0: any");
	shmring_close(h);
	e.producers = 3;
	cr_assert_eq(shmring_open(name, &e, &h), 0);
	shmring_close(h);
	e.producers = 2;
	cr_assert_eq(shmring_open(name, &e, &h), -EPROTO, "another number of producers");
	e.producers = 65;
	cr_assert_eq(shmring_open(name, &e, &h), -EINVAL);
	e = mr_params(0, 0, 0);
	e.kind = SHMRING_MPMC;
	cr_assert_eq(shmring_open(name, &e, &h), -EPROTO, "the other MPMC kind");
	/* Attach at the base of the named ring shares its segment: the same checks. */
	size_t len;
	void *base = shmring_base(r, &len);
	e = mr_params(0, 0, 2);
	cr_assert_eq(shmring_attach(base, len, &e, &h), -EPROTO);
	e.producers = 3;
	cr_assert_eq(shmring_attach(base, len, &e, &h), 0);
	shmring_close(h);
	cr_assert_eq(shmring_mpmc_set_patience(r, 2000000000ull), -EINVAL);
	cr_assert_eq(shmring_mpmc_set_patience(r, 0), 0);
	shmring_close(r);
	shmring_unlink(name);

	/* set_patience is for this kind only. */
	struct shmring_params scq = {.kind = SHMRING_MPMC, .elem_size = 8, .capacity = 8};
	cr_assert_eq(shmring_create_anon(&scq, &r), 0);
	cr_assert_eq(shmring_mpmc_set_patience(r, 1000), -EINVAL);
	shmring_close(r);
}

/* A handle takes an arena at its first push and gives it back at close. */
Test(mpmc_runs, producer_arenas)
{
	struct shmring_params p = mr_params(8, 16, 2);
	struct shmring *r, *a, *b;
	uint64_t x = 7;
	cr_assert_eq(shmring_create_anon(&p, &r), 0);
	a = mr_attach(r);
	b = mr_attach(r);
	cr_assert_eq(shmring_mpmc_pop(b, &x), -EAGAIN, "a consumer takes no arena");
	cr_assert_eq(shmring_mpmc_push(r, &x), 0);
	cr_assert_eq(shmring_mpmc_push(a, &x), 0);
	cr_assert_eq(shmring_mpmc_push(b, &x), -EUSERS, "both arenas are taken");
	cr_assert_eq(shmring_mpmc_push_burst(b, &x, 1), -EUSERS);
	cr_assert_eq(shmring_is_broken(b), 0);
	shmring_close(a);
	cr_assert_eq(shmring_mpmc_push(b, &x), 0, "a's arena, given back at its close");
	for (int i = 0; i < 3; i++)
		cr_assert_eq(shmring_mpmc_pop(b, &x), 0);
	cr_assert_eq(shmring_mpmc_pop(b, &x), -EAGAIN);
	shmring_close(b);
	shmring_close(r);
}

/*
 * With every participant record taken, an attach takes over a dead owner's idle record, and the
 * arena the dead owner held with it. A handle that never pushes must still give that arena back
 * at close (found in review: only the arena a handle joined was freed, and this one stayed
 * taken for good, behind a free record that recovery does not look at).
 */
Test(mpmc_runs, inherited_arena_freed_at_close)
{
	struct shmring_params p = mr_params(8, 8, 1);
	struct shmring *r, *h[SHMRING_MPMC_PARTICIPANTS];
	uint64_t x = 1;
	cr_assert_eq(shmring_create_anon(&p, &r), 0);
	for (int i = 0; i < SHMRING_MPMC_PARTICIPANTS - 2; i++)
		h[i] = mr_attach(r);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) { /* takes the last record and the one arena, and dies idle */
		struct shmring *c = mr_attach(r);
		_exit(shmring_mpmc_push(c, &x) == 0 ? 0 : 3);
	}
	cr_assert_eq(tu_wait(pid), 0);
	struct shmring *heir = mr_attach(r); /* the dead child's record, and its arena word */
	shmring_close(heir);
	cr_assert_eq(shmring_mpmc_push(h[0], &x), 0, "the inherited arena was freed at close");
	for (int i = 0; i < SHMRING_MPMC_PARTICIPANTS - 2; i++)
		shmring_close(h[i]);
	shmring_close(r);
}

/* ---- parked and dead producers ---------------------------------------------------------- */

struct park {
	int point;
	sem_t parked, go;
	_Atomic int fired;
};

static int hook_park(struct shmring *r, int point, int queue, void *arg)
{
	struct park *pk = arg;
	(void)r;
	(void)queue;
	if (point == pk->point && !atomic_exchange(&pk->fired, 1)) {
		sem_post(&pk->parked);
		sem_wait(&pk->go);
	}
	return 0;
}

struct parked_push {
	struct shmring *h;
	uint64_t v[4];
	unsigned n;
	int rc;
};

static void *parked_push_run(void *arg)
{
	struct parked_push *pp = arg;
	pp->rc = shmring_mpmc_push_burst(pp->h, pp->v, pp->n);
	return NULL;
}

/*
 * A producer parked between its claim and its commit (at each of the two hook points, alone and
 * with a burst, so announced and not): consumers skip its claim after their patience and go on
 * with what the others push; once it goes on, its commit fails, it claims again, and each of its
 * elements arrives once, in order.
 */
Test(mpmc_runs, parked_producer_is_skipped_and_claims_again)
{
	int points[] = {SHMRING_MPMC_HOOK_RUN_CLAIMED, SHMRING_MPMC_HOOK_FILLED};
	for (int pi = 0; pi < 2; pi++)
		for (unsigned n = 1; n <= 4; n += 3) {
			struct shmring_params p = mr_params(8, 16, 2);
			struct shmring *r, *h;
			struct park pk = {.point = points[pi]};
			pthread_t t;
			cr_assert_eq(shmring_create_anon(&p, &r), 0);
			h = mr_attach(r);
			sem_init(&pk.parked, 0, 0);
			sem_init(&pk.go, 0, 0);
			shmring_mpmc_set_hook(h, hook_park, &pk);
			cr_assert_eq(shmring_mpmc_set_patience(r, 200000), 0);
			struct parked_push pp = {h, {1000000, 1000001, 1000002, 1000003}, n, 0};
			cr_assert_eq(pthread_create(&t, NULL, parked_push_run, &pp), 0);
			sem_wait(&pk.parked);
			uint64_t x, t0 = tu_now_ns();
			for (uint64_t i = 0; i < 5000; i++) {
				cr_assert_eq(shmring_mpmc_push(r, &i), 0, "push %lu",
					     (unsigned long)i);
				cr_assert_eq(shmring_mpmc_pop(r, &x), 0);
				cr_assert_eq(x, i);
			}
			/* One patience for the claim, whatever its size: it was skipped once,
			 * not waited for at each pop. */
			cr_assert_lt(tu_now_ns() - t0, 2000000000ull,
				     "the parked claim was "
				     "waited for again");
			sem_post(&pk.go);
			pthread_join(t, NULL);
			cr_assert_eq(pp.rc, (int)n, "the parked push claims again and succeeds");
			for (unsigned i = 0; i < n; i++) {
				cr_assert_eq(shmring_mpmc_pop(r, &x), 0);
				cr_assert_eq(x, 1000000 + i);
			}
			cr_assert_eq(shmring_mpmc_pop(r, &x), -EAGAIN);
			sem_destroy(&pk.parked);
			sem_destroy(&pk.go);
			shmring_close(h);
			shmring_close(r);
		}
}

static int hook_die(struct shmring *r, int point, int queue, void *arg)
{
	(void)r;
	(void)queue;
	if (point == *(int *)arg)
		raise(SIGKILL);
	return 0;
}

/*
 * A producer process killed between claim and commit: with a patience of 1 s, a pop would wait
 * that long for the claim, but recovery skips it at once and frees the dead producer's arena
 * (the ring has one: the parent can push only once it is free, and its first push, finding no
 * arena, runs the recovery itself).
 */
Test(mpmc_runs, dead_producer_recovered_at_once)
{
	int points[] = {SHMRING_MPMC_HOOK_RUN_CLAIMED, SHMRING_MPMC_HOOK_FILLED};
	for (int pi = 0; pi < 2; pi++)
		for (unsigned n = 1; n <= 3; n += 2) {
			struct shmring_params p = mr_params(8, 8, 1);
			struct shmring *r;
			cr_assert_eq(shmring_create_anon(&p, &r), 0);
			cr_assert_eq(shmring_mpmc_set_patience(r, 1000000000u), 0);
			pid_t pid = fork();
			cr_assert_geq(pid, 0);
			if (pid == 0) {
				struct shmring *h = mr_attach(r);
				uint64_t v[3] = {1, 2, 3}, w = 0;
				if (shmring_mpmc_push(h, &w) != 0)
					_exit(3);
				shmring_mpmc_set_hook(h, hook_die, &points[pi]);
				shmring_mpmc_push_burst(h, v, n);
				_exit(4);
			}
			cr_assert_eq(tu_wait(pid), 128 + SIGKILL);
			uint64_t x = 9;
			if (n == 1) {
				cr_assert_eq(shmring_mpmc_recover(r), 1);
			} else {
				/* The one arena is the dead one's: the first push recovers it. */
				cr_assert_eq(shmring_mpmc_push(r, &x), 0);
				cr_assert_eq(shmring_mpmc_recover(r), 0, "already recovered");
			}
			uint64_t t0 = tu_now_ns();
			cr_assert_eq(shmring_mpmc_pop(r, &x), 0);
			cr_assert_eq(x, 0);
			if (n > 1) {
				cr_assert_eq(shmring_mpmc_pop(r, &x), 0);
				cr_assert_eq(x, 9);
			}
			cr_assert_eq(shmring_mpmc_pop(r, &x), -EAGAIN,
				     "its claim is never delivered");
			cr_assert_lt(tu_now_ns() - t0, 100000000ull, "recovery skipped the claim");
			cr_assert_eq(shmring_mpmc_size(r), 0, "pi %d n %u head %lu tail %lu h1 %lx",
				     pi, n, (unsigned long)*r->cons_pos,
				     (unsigned long)*r->prod_pos, (unsigned long)r->m.hdr[1]);
			for (uint64_t i = 0; i < 8; i++)
				cr_assert_eq(shmring_mpmc_push(r, &i), 0,
					     "capacity after recovery");
			cr_assert_eq(shmring_mpmc_push(r, &x), -EAGAIN);
			for (uint64_t i = 0; i < 8; i++) {
				cr_assert_eq(shmring_mpmc_pop(r, &x), 0);
				cr_assert_eq(x, i);
			}
			cr_assert_eq(shmring_mpmc_recover(r), 0);
			shmring_close(r);
		}
}

/* ---- a death at every instruction ---------------------------------------------------------- */

/*
 * One victim, a child process: a push (op 1) or pop (op 0) of a burst of 3, or a single push (3)
 * or pop (2), on a ring of 8 holding 4, single-stepped from the call's first instruction and
 * killed at instruction die_at (0: never). Then recovery, and: a push's elements arrive all or
 * none, in order; a pop loses at most what it took; nothing twice; full capacity.
 */
static long step_case(int op, long die_at)
{
	enum { CAP = 8 };
	unsigned n = op >= 2 ? 1 : 3;
	int push = op & 1;
	struct shmring_params p = mr_params(8, CAP, 2);
	struct shmring *r;
	uint64_t in[3] = {100, 101, 102};
	int seen[128] = {0};

	cr_assert_eq(shmring_create_anon(&p, &r), 0);
	cr_assert_eq(shmring_mpmc_set_patience(r, 50000000u), 0); /* 50 ms: recovery must skip */
	for (uint64_t i = 0; i < 4; i++)
		cr_assert_eq(shmring_mpmc_push(r, &i), 0);
	_Atomic long *slot = tu_step_slots(); /* [0] call done, [1..3] what it popped */
	tu_step_plan(die_at);
	atomic_store(&slot[0], 0);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct shmring *h = mr_attach(r);
		uint64_t out[3], warm = 50;
		/* The first push takes the arena: not the call under test. */
		if (push && shmring_mpmc_push(h, &warm) != 0)
			_exit(3);
		tu_step_arm();
		int rc = op == 3   ? (shmring_mpmc_push(h, in) ? -1 : 1)
			 : op == 2 ? (shmring_mpmc_pop(h, out) ? -1 : 1)
			 : op	   ? shmring_mpmc_push_burst(h, in, 3)
				   : shmring_mpmc_pop_burst(h, out, 3);
		tu_step_disarm();
		atomic_store(&slot[0], rc == (int)n ? 1 : -1);
		for (unsigned i = 0; !push && rc == (int)n && i < n; i++)
			atomic_store(&slot[1 + i], (long)out[i]);
		_exit(0);
	}
	int st = tu_wait(pid);
	long done = atomic_load(&slot[0]), ran = tu_step_ran();
	cr_assert(st == 0 || st == 128 + SIGKILL, "die_at %ld: exit %d", die_at, st);
	cr_assert_neq(done, -1, "die_at %ld: the call failed", die_at);
	if (done == 1 && !push)
		for (unsigned i = 0; i < n; i++)
			seen[atomic_load(&slot[1 + i])]++;
	/* Whether the victim's record shows its claim: it does from the store after its tail
	 * CAS on; a death in the instructions between the two costs a patience per position. */
	struct _shmring_mpmc_rec *vrec = rec_of(r, pid);
	int recorded = vrec && (atomic_load(&vrec->state) & 0xff) == _SHMRING_MR_CLAIMING;
	int rec = shmring_mpmc_recover(r);
	cr_assert_geq(rec, 0, "die_at %ld: recover %d", die_at, rec);
	uint64_t x, last = 0, t0 = tu_now_ns();
	int nvictim = 0, any = 0;
	while (shmring_mpmc_pop(r, &x) == 0) {
		cr_assert_lt(x, 128);
		cr_assert_eq(seen[x]++, 0, "die_at %ld: %lu twice", die_at, (unsigned long)x);
		cr_assert(!any || x > last, "die_at %ld: %lu after %lu", die_at, (unsigned long)x,
			  (unsigned long)last);
		nvictim += x >= 100;
		last = x;
		any = 1;
	}
	uint64_t took = tu_now_ns() - t0;
	if (recorded || !push)
		cr_assert_lt(took, 40000000ull, "die_at %ld: a claim waited out", die_at);
	else
		cr_assert_lt(took, n * 50000000ull + 200000000ull, "die_at %ld", die_at);
	if (push)
		cr_assert(nvictim == 0 || nvictim == (int)n, "die_at %ld: %d of the burst", die_at,
			  nvictim);
	if (push && done == 1)
		cr_assert_eq(nvictim, (int)n, "die_at %ld: a push that returned, lost", die_at);
	int lost = 0;
	for (int i = 0; i < 4; i++)
		lost += seen[i] == 0;
	cr_assert_leq(lost, push ? 0 : (int)n, "die_at %ld: lost %d", die_at, lost);
	if (!push && st == 0)
		cr_assert_eq(lost, 0, "die_at %ld: a pop that returned, lost", die_at);
	for (uint64_t i = 0; i < CAP; i++)
		cr_assert_eq(shmring_mpmc_push(r, &i), 0, "die_at %ld: capacity shrank", die_at);
	cr_assert_eq(shmring_mpmc_push(r, &x), -EAGAIN);
	shmring_close(r);
	return ran;
}

Test(mpmc_runs, death_at_every_instruction, .timeout = 300)
{
	if (!tu_step_supported())
		cr_skip_test("single-stepping is implemented for x86-64 only");
	cr_assert_gt(tu_step_each(step_case, 4), 50, "too few instructions stepped");
}

/* ---- multi-process -------------------------------------------------------------------------- */

#define MP_B	 4 /* burst size of the odd-numbered processes */
#define MAXP	 8
#define MAXC	 8
#define PER_CONS (1u << 18)
#define PL_MAGIC 0x600dda7au

struct payload {
	uint32_t prod, pad;
	uint64_t cnt;
};

struct shared {
	_Atomic uint64_t pushed[MAXP]; /* pushes returned */
	_Atomic uint64_t ngot[MAXC];
	_Atomic int stop, stop_push;
	/* A consumer pops straight into got[c][ngot[c]..] (0xff first), then moves ngot[c]. */
	struct payload got[MAXC][PER_CONS + MP_B];
};

static void child_setup(void)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
}

/* Pushes 0..n-1 (victim or kill run: until stop_push, up to n). */
/* The victim producer of a kill run spends a few microseconds between its claim and its commit,
 * as a preempted or faulting producer would, so that the parent's stops find it there: without
 * it, 13-22 runs of 200 caught a producer inside a claim. */
static int hook_slow_claim(struct shmring *r, int point, int queue, void *arg)
{
	(void)r;
	(void)queue;
	(void)arg;
	if (point == SHMRING_MPMC_HOOK_FILLED)
		for (uint64_t t0 = tu_now_ns(); tu_now_ns() - t0 < 20000;)
			;
	return 0;
}

static void producer_main(const char *name, struct shared *sh, int id, uint64_t n, int endless)
{
	child_setup();
	time_t deadline = time(NULL) + 20;
	struct shmring_params e = mr_params(0, 0, 0);
	struct shmring *r;
	if (shmring_open(name, &e, &r) != 0)
		_exit(2);
	if (endless == 2)
		shmring_mpmc_set_hook(r, hook_slow_claim, NULL);
	struct payload pl[MP_B];
	for (uint64_t c = 0; c < n && !(endless && atomic_load(&sh->stop_push));) {
		unsigned k = id & 1 ? (n - c < MP_B ? (unsigned)(n - c) : MP_B) : 1;
		for (unsigned j = 0; j < k; j++)
			pl[j] = (struct payload){(uint32_t)id, PL_MAGIC, c + j};
		int rc = id & 1 ? shmring_mpmc_push_burst(r, pl, k)
				: (shmring_mpmc_push(r, pl) ? -EAGAIN : 1);
		if (rc > 0) {
			c += (uint64_t)rc;
			atomic_store(&sh->pushed[id], c);
		} else if (rc == -EAGAIN) {
			if (time(NULL) > deadline)
				_exit(5);
			sched_yield();
		} else {
			_exit(3);
		}
	}
	while (endless == 2)
		pause();
	shmring_close(r);
	_exit(0);
}

static void consumer_main(const char *name, struct shared *sh, int id)
{
	child_setup();
	time_t deadline = time(NULL) + 22;
	struct shmring_params e = mr_params(0, 0, 0);
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
		/* Odd consumers pop bursts, even ones bulks of 2 and single elements. */
		int rc = id & 1	   ? shmring_mpmc_pop_burst(r, hand, MP_B)
			 : (k & 1) ? shmring_mpmc_pop_bulk(r, hand, 2)
				   : (shmring_mpmc_pop(r, hand) ? -EAGAIN : 1);
		if (rc > 0) {
			atomic_store(&sh->ngot[id], k + (uint64_t)rc);
			idle = 0;
		} else if (rc == -EAGAIN) {
			if (atomic_load(&sh->stop) && ++idle > 3)
				break;
			if (time(NULL) > deadline)
				_exit(5);
			sched_yield();
		} else {
			_exit(3);
		}
	}
	shmring_close(r);
	_exit(0);
}

/*
 * One run: np producers and nc consumers (processes), n elements each. kill_us >= 0: one random
 * child is SIGKILLed after kill_us microseconds (a producer preferably between its claim and its
 * commit: stopped until its record shows a claim, a few hundred tries), then the ring recovered.
 * Checks: no element twice; each producer's order in each consumer; every push that returned is
 * delivered unless a killed consumer took it (then it is in that consumer's hands, copied before
 * its head CAS); a killed producer's last push all or none; full capacity afterwards. Returns 1
 * if the victim was caught inside a claim, else 0.
 */
static int mp_run(int np, int nc, uint64_t n, uint64_t cap, long kill_us, uint64_t *seed)
{
	const char *name = tu_shm_name("mr-mp");
	struct shmring_params p = mr_params(sizeof(struct payload), cap, (uint32_t)np + 1);
	struct shmring *r;
	cr_assert_eq(shmring_create(name, &p, &r), 0);
	/* Short, so that a kill inside a claim costs the survivors little even unrecovered. */
	cr_assert_eq(shmring_mpmc_set_patience(r, 20000), 0);
	struct shared *sh =
	    mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(sh, MAP_FAILED);
	int victim = kill_us >= 0 ? (int)(rnd(seed) % (uint64_t)(np + nc)) : -1, caught = 0;
	pid_t pids[MAXP + MAXC];
	for (int i = 0; i < np; i++)
		if ((pids[i] = fork()) == 0)
			producer_main(name, sh, i, victim >= 0 ? PER_CONS / 4 : n,
				      i == victim ? 2 : victim >= 0);
	for (int i = 0; i < nc; i++)
		if ((pids[np + i] = fork()) == 0)
			consumer_main(name, sh, i);
	uint64_t vpushed = 0;
	if (victim >= 0) {
		usleep((useconds_t)kill_us);
		struct _shmring_mpmc_rec *rec = NULL;
		for (int i = 0; i < 100000 && !(rec = rec_of(r, pids[victim])); i++)
			usleep(20);
		cr_assert_not_null(rec, "the victim never took a record");
		for (int tries = 0; victim < np && tries < 300; tries++) {
			kill(pids[victim], SIGSTOP);
			int st;
			waitpid(pids[victim], &st, WUNTRACED);
			if ((caught = (atomic_load(&rec->state) & 0xff) == _SHMRING_MR_CLAIMING))
				break;
			kill(pids[victim], SIGCONT);
			usleep((useconds_t)(rnd(seed) % 50));
		}
		vpushed = victim < np ? atomic_load(&sh->pushed[victim]) : 0;
		kill(pids[victim], SIGKILL);
		cr_assert_eq(tu_wait(pids[victim]), 128 + SIGKILL);
		cr_assert_geq(shmring_mpmc_recover(r), 1, "the victim's record");
		atomic_store(&sh->stop_push, 1);
	}
	for (int i = 0; i < np; i++)
		if (i != victim)
			cr_assert_eq(tu_wait(pids[i]), 0, "producer %d (victim %d)", i, victim);
	atomic_store(&sh->stop, 1);
	for (int i = 0; i < nc; i++)
		if (np + i != victim)
			cr_assert_eq(tu_wait(pids[np + i]), 0, "consumer %d (victim %d)", i,
				     victim);
	static struct payload extra[1 << 12];
	int nextra = 0;
	while (nextra < (1 << 12) && shmring_mpmc_pop(r, &extra[nextra]) == 0)
		nextra++;

	uint64_t lim = victim >= 0 ? PER_CONS / 4 : n;
	unsigned char *seen = calloc((size_t)np * lim, 1);
	for (int c = 0; c <= nc; c++) {
		uint64_t last[MAXP];
		memset(last, 0xff, sizeof(last));
		uint64_t k = c < nc ? atomic_load(&sh->ngot[c]) : (uint64_t)nextra;
		const struct payload *g = c < nc ? sh->got[c] : extra;
		for (uint64_t j = 0; j < k; j++) {
			uint64_t pr = g[j].prod, cnt = g[j].cnt;
			cr_assert_eq(g[j].pad, PL_MAGIC, "consumer %d: element %lu torn", c,
				     (unsigned long)j);
			cr_assert_lt(pr, (uint64_t)np);
			cr_assert_lt(cnt, lim);
			cr_assert_eq(seen[pr * lim + cnt]++, 0, "duplicate %lu/%lu",
				     (unsigned long)pr, (unsigned long)cnt);
			if (c < nc) {
				cr_assert(last[pr] == UINT64_MAX || cnt > last[pr],
					  "order: producer %lu: %lu after %lu", (unsigned long)pr,
					  (unsigned long)cnt, (unsigned long)last[pr]);
				last[pr] = cnt;
			}
		}
	}
	/* A killed consumer's hands: what it copied before its head CAS, taken or not. */
	unsigned char *hand = calloc((size_t)np * lim, 1);
	if (victim >= np) {
		int c = victim - np;
		uint64_t k = atomic_load(&sh->ngot[c]);
		for (int j = 0; j < MP_B && sh->got[c][k + j].pad == PL_MAGIC; j++)
			if (sh->got[c][k + j].prod < (uint32_t)np && sh->got[c][k + j].cnt < lim)
				hand[sh->got[c][k + j].prod * lim + sh->got[c][k + j].cnt] = 1;
	}
	uint64_t nlost = 0;
	for (int i = 0; i < np; i++) {
		uint64_t done = atomic_load(&sh->pushed[i]), got = 0;
		uint64_t inflight = i != victim ? 0 : i & 1 ? MP_B : 1;
		if (victim < 0)
			cr_assert_eq(done, n, "producer %d pushed %lu", i, (unsigned long)done);
		if (i == victim)
			cr_assert_eq(done, vpushed, "the victim pushed after its kill");
		for (uint64_t c = 0; c < done; c++)
			if (!seen[i * lim + c]) {
				cr_assert(hand[i * lim + c], "producer %d: %lu lost (victim %d)", i,
					  (unsigned long)c, victim);
				nlost++;
			}
		/* The victim's last claim, committed or not: a prefix of its burst (a burst may
		 * claim fewer than it asked for, all or none of those). */
		for (uint64_t c = done; c < lim; c++) {
			if (c >= done + inflight || (got < c - done && seen[i * lim + c]))
				cr_assert_eq(seen[i * lim + c], 0,
					     "producer %d: %lu never pushed, delivered", i,
					     (unsigned long)c);
			got += seen[i * lim + c];
		}
	}
	cr_assert_leq(nlost, MP_B);
	/* Capacity intact: the parent fills the whole ring. */
	struct payload pl = {0};
	for (uint64_t i = 0; i < cap; i++)
		cr_assert_eq(shmring_mpmc_push(r, &pl), 0, "capacity shrank at %lu",
			     (unsigned long)i);
	cr_assert_eq(shmring_mpmc_push(r, &pl), -EAGAIN);
	free(seen);
	free(hand);
	munmap(sh, sizeof(*sh));
	shmring_close(r);
	shmring_unlink(name);
	return caught;
}

Test(mpmc_runs, processes_2x2)
{
	uint64_t s = 1;
	cr_assert_eq(mp_run(2, 2, 40000, 64, -1, &s), 0, "no process may die in this run");
}

Test(mpmc_runs, processes_4x4)
{
	uint64_t s = 1;
	cr_assert_eq(mp_run(4, 4, 15000, 64, -1, &s), 0, "no process may die in this run");
}

Test(mpmc_runs, processes_8x8_small_ring)
{
	uint64_t s = 1;
	cr_assert_eq(mp_run(8, 8, 6000, 8, -1, &s), 0, "no process may die in this run");
}

Test(mpmc_runs, kill_injection_200_runs, .timeout = 240)
{
	uint64_t seed = (uint64_t)time(NULL) * 2654435761u | 1;
	const char *env = getenv("MPMC_KILL_RUNS");
	int runs = env ? atoi(env) : 200, caught = 0;
	for (int i = 0; i < runs; i++) {
		int np = 1 + (int)(rnd(&seed) % 3), nc = 2 + (int)(rnd(&seed) % 2);
		caught += mp_run(np, nc, 0, 16, (long)(rnd(&seed) % 3000), &seed);
	}
	cr_log_info("kill injection: %d runs, %d producers killed inside a claim", runs, caught);
	/* About half the victims are producers, and most of those are caught inside a claim. */
	cr_assert_geq(caught, runs / 8, "only %d of %d runs killed a producer inside a claim",
		      caught, runs);
}

/* ---- blocking calls ------------------------------------------------------------------------- */

static void *blocking_producer(void *arg)
{
	struct shmring *h = mr_attach(arg);
	for (uint64_t i = 0; i < 20000;) {
		uint64_t v[3] = {i, i + 1, i + 2};
		struct timespec dl = tu_in_ms(10000);
		int rc = shmring_mpmc_push_burst_wait(h, v, 3, &dl);
		if (rc <= 0)
			abort();
		i += (uint64_t)rc;
	}
	shmring_close(h);
	return NULL;
}

Test(mpmc_runs, blocking_calls)
{
	struct shmring_params p = mr_params(8, 4, 1);
	struct shmring *r;
	pthread_t t;
	cr_assert_eq(shmring_create_anon(&p, &r), 0);
	uint64_t x;
	struct timespec dl = tu_in_ms(20);
	cr_assert_eq(shmring_mpmc_pop_wait(r, &x, &dl), -ETIMEDOUT);
	cr_assert_eq(pthread_create(&t, NULL, blocking_producer, r), 0);
	for (uint64_t i = 0; i < 20000; i++) {
		dl = tu_in_ms(10000);
		cr_assert_eq(shmring_mpmc_pop_wait(r, &x, &dl), 0);
		cr_assert_eq(x, i);
	}
	pthread_join(t, NULL);
	shmring_close(r);
}

/* ---- the header refresh, and hostile values ------------------------------------------------ */

/*
 * Bursts of a whole ring keep every position but the first inside a run, whose header nothing
 * else writes: over 5000 laps the refresh must keep each header within 2048 laps of its
 * position (the tag tells older from newer across 2^50).
 */
Test(mpmc_runs, inner_headers_stay_fresh)
{
	struct shmring_params p = mr_params(8, 8, 1);
	struct shmring *r;
	uint64_t v[8] = {0};
	cr_assert_eq(shmring_create_anon(&p, &r), 0);
	for (int lap = 0; lap < 5000; lap++) {
		cr_assert_eq(shmring_mpmc_push_bulk(r, v, 8), 8);
		cr_assert_eq(shmring_mpmc_pop_burst(r, v, 3), 3);
		cr_assert_eq(shmring_mpmc_pop_bulk(r, v, 5), 5);
	}
	uint64_t head = atomic_load(r->cons_pos);
	for (uint64_t i = 0; i < 8; i++) {
		uint64_t tag = atomic_load(&r->m.hdr[i]) >> 13, lap = (head - 8 + i) >> 3;
		cr_assert_lt((lap - tag) & _SHMRING_MR_TAG_MASK, 2048, "slot %lu: tag %lu lap %lu",
			     (unsigned long)i, (unsigned long)tag, (unsigned long)lap);
	}
	shmring_close(r);
}

/* What a peer may write into the shared words: each call returns, none reads out of bounds. */
Test(mpmc_runs, hostile_values)
{
	struct shmring_params p = mr_params(8, 8, 2);
	struct shmring *r, *h;
	uint64_t v[4] = {1, 2, 3, 4};
	/* A header naming an arena beyond the ring's producers. */
	cr_assert_eq(shmring_create_anon(&p, &r), 0);
	cr_assert_eq(shmring_mpmc_push(r, v), 0);
	atomic_store(&r->m.hdr[0], _shmring_mr_enc(r, 0, _SHMRING_MR_COMMIT, 1, 5));
	cr_assert_eq(shmring_mpmc_pop(r, v), -EPROTO);
	cr_assert_eq(shmring_is_broken(r), 1);
	shmring_close(r);
	/* A run longer than the ring. */
	p = mr_params(8, 4, 2);
	cr_assert_eq(shmring_create_anon(&p, &r), 0);
	cr_assert_eq(shmring_mpmc_push(r, v), 0);
	atomic_store(&r->m.hdr[0], _shmring_mr_enc(r, 0, _SHMRING_MR_COMMIT, 8, 0));
	cr_assert_eq(shmring_mpmc_pop(r, v), -EPROTO);
	shmring_close(r);
	/* Tail beyond head + capacity. */
	p = mr_params(8, 8, 2);
	cr_assert_eq(shmring_create_anon(&p, &r), 0);
	h = mr_attach(r);
	atomic_store(r->prod_pos, 100);
	cr_assert_eq(shmring_mpmc_push(h, v), -EPROTO);
	shmring_close(h);
	shmring_close(r);
	/* A skip run past tail: the pop moves head past it (no bound crossed), and the next
	 * push sees head beyond tail. */
	cr_assert_eq(shmring_create_anon(&p, &r), 0);
	atomic_store(&r->m.hdr[0], _shmring_mr_enc(r, 0, _SHMRING_MR_SKIP, 8, 0));
	atomic_store(r->prod_pos, 1);
	cr_assert_eq(shmring_mpmc_pop(r, v), -EAGAIN);
	size_t len;
	void *base = shmring_base(r, &len);
	struct shmring_params e = mr_params(0, 0, 0);
	cr_assert_eq(shmring_attach(base, len, &e, &h), -EPROTO, "head past tail");
	shmring_close(r);
	/* A header of no state. */
	cr_assert_eq(shmring_create_anon(&p, &r), 0);
	cr_assert_eq(shmring_mpmc_push(r, v), 0);
	atomic_store(&r->m.hdr[0], _shmring_mr_enc(r, 0, 0, 1, 0));
	cr_assert_eq(shmring_mpmc_pop_burst(r, v, 4), -EPROTO);
	shmring_close(r);
}

/* SPDX-License-Identifier: MIT */
/* MPMC ring, blocking variants (issue 5, item 1): cross-process blocking streams with several
 * producers and consumers that sleep, deadlines, -EPIPE once the producers are gone, waiters
 * that get what a dead process held through the recovery their wait runs, and no busy loop
 * behind a producer killed after its fetch-and-add on the tail. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../sync/sync.h"
#include "testutil.h"

#define SLICE_MS 20

static struct shmring_params mp_params(uint64_t cap, uint32_t flags)
{
	struct shmring_params p = {0};

	p.kind = SHMRING_MPMC;
	p.elem_size = 16;
	p.capacity = cap;
	p.flags = flags;
	return p;
}

/* spin 0, no yields: every wait goes to sleep, so a lost wake-up shows as a stall. */
static void sleepy(struct shmring *r, uint32_t slice_ms)
{
	struct shmring_wait_policy pol = {0};

	pol.spin_ns = UINT32_MAX;
	pol.yields = UINT32_MAX;
	pol.slice_ms = slice_ms;
	cr_assert_eq(shmring_set_wait_policy(r, &pol), 0);
}

struct elem {
	uint64_t prod, cnt;
};

#define NPROD 3
#define NCONS 3
#define PER   20000u

struct tally {
	_Atomic uint64_t got[NPROD][PER];
	_Atomic uint64_t total;
};

static void producer(const char *name, int id)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	struct shmring_params e = mp_params(0, SHMRING_F_PRODUCER);
	struct shmring *r;
	if (shmring_open(name, &e, &r) != 0)
		_exit(2);
	if (id == 0)
		sleepy(r, 3000);
	for (uint64_t c = 0; c < PER; c++) {
		struct elem x = {(uint64_t)id, c};
		struct timespec dl = tu_in_ms(10000);
		if (shmring_mpmc_push_wait(r, &x, &dl) != 0)
			_exit(3);
	}
	shmring_close(r);
	_exit(0);
}

/* Pops until -EPIPE; checks per-producer order as this consumer sees it. */
static void consumer(const char *name, int id, struct tally *t)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	struct shmring_params e = mp_params(0, SHMRING_F_CONSUMER);
	struct shmring *r;
	if (shmring_open(name, &e, &r) != 0)
		_exit(2);
	if (id == 0)
		sleepy(r, 3000);
	int64_t last[NPROD] = {-1, -1, -1};
	for (;;) {
		struct elem x;
		struct timespec dl = tu_in_ms(10000);
		int rc = shmring_mpmc_pop_wait(r, &x, &dl);
		if (rc == -EPIPE)
			break;
		if (rc != 0)
			_exit(3);
		if (x.prod >= NPROD || x.cnt >= PER || (int64_t)x.cnt <= last[x.prod])
			_exit(4); /* invented, or out of order */
		last[x.prod] = (int64_t)x.cnt;
		atomic_fetch_add(&t->got[x.prod][x.cnt], 1);
		atomic_fetch_add(&t->total, 1);
	}
	shmring_close(r);
	_exit(0);
}

Test(mpmc_wait, blocking_stream_many_to_many)
{
	const char *name = tu_shm_name("mpmc-wait");
	struct shmring_params p = mp_params(8, 0);
	struct shmring *r;
	cr_assert_eq(shmring_create(name, &p, &r), 0);
	struct tally *t =
	    mmap(NULL, sizeof(*t), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(t, MAP_FAILED);
	pid_t pid[NPROD + NCONS];
	for (int i = 0; i < NCONS; i++)
		if ((pid[NPROD + i] = fork()) == 0)
			consumer(name, i, t);
	for (int i = 0; i < NPROD; i++)
		if ((pid[i] = fork()) == 0)
			producer(name, i);
	for (int i = 0; i < NPROD + NCONS; i++)
		cr_assert_eq(tu_wait(pid[i]), 0, "child %d", i);
	cr_assert_eq(atomic_load(&t->total), (uint64_t)NPROD * PER);
	for (int i = 0; i < NPROD; i++)
		for (unsigned c = 0; c < PER; c++)
			cr_assert_eq(atomic_load(&t->got[i][c]), 1, "producer %d element %u", i, c);
	munmap(t, sizeof(*t));
	shmring_close(r);
	shmring_unlink(name);
}

Test(mpmc_wait, deadlines)
{
	struct shmring_params p = mp_params(4, 0);
	struct shmring *r;
	struct elem x = {1, 2}, y[4];
	cr_assert_eq(shmring_create_anon(&p, &r), 0);
	sleepy(r, SLICE_MS);
	uint64_t t0 = tu_now_ms();
	struct timespec dl = tu_in_ms(100);
	cr_assert_eq(shmring_mpmc_pop_wait(r, &x, &dl), -ETIMEDOUT);
	dl = tu_in_ms(100);
	cr_assert_eq(shmring_mpmc_pop_burst_wait(r, y, 4, &dl), -ETIMEDOUT);
	cr_assert_geq(tu_now_ms() - t0, 200);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(shmring_mpmc_push_wait(r, &x, NULL), 0);
	t0 = tu_now_ms();
	dl = tu_in_ms(100);
	cr_assert_eq(shmring_mpmc_push_wait(r, &x, &dl), -ETIMEDOUT);
	dl = tu_in_ms(100);
	cr_assert_eq(shmring_mpmc_push_burst_wait(r, y, 2, &dl), -ETIMEDOUT);
	cr_assert_geq(tu_now_ms() - t0, 200);
	cr_assert_eq(shmring_mpmc_pop_burst_wait(r, y, 4, NULL), 4);
	cr_assert_eq(shmring_mpmc_push_wait(NULL, &x, NULL), -EINVAL);
	struct shmring_params sp = tu_params(8, 8);
	struct shmring *s;
	cr_assert_eq(shmring_create_anon(&sp, &s), 0);
	cr_assert_eq(shmring_mpmc_pop_wait(s, &x, NULL), -EINVAL);
	shmring_close(s);
	shmring_close(r);
}

/* ---- what a dead process held comes back through the waiter's own recovery --------------- */

#define FAKE_OWNER 0xdead00000002ull
static int die_at;
static int hook_die(struct shmring *r, int point, int queue, void *arg)
{
	(void)r;
	(void)queue;
	(void)arg;
	return point == die_at;
}
static int alive_unless_fake(uint64_t owner, void *arg)
{
	(void)arg;
	return owner != FAKE_OWNER;
}

static struct shmring *victim(struct shmring *r, int point)
{
	size_t len;
	void *base = shmring_base(r, &len);
	struct shmring_params e = {.kind = SHMRING_MPMC};
	struct shmring *v = NULL;
	cr_assert_eq(shmring_attach(base, len, &e, &v), 0);
	cr_assert_eq(shmring_mpmc_set_owner(v, FAKE_OWNER), 0);
	die_at = point;
	cr_assert_eq(shmring_mpmc_set_hook(v, hook_die, NULL), 0);
	return v;
}

/* An anonymous ring whose handle sleeps in slices of slice_ms and takes FAKE_OWNER for dead. */
static struct shmring *waiting_ring(uint64_t cap, uint32_t slice_ms)
{
	struct shmring_params p = mp_params(cap, 0);
	struct shmring *r;
	cr_assert_eq(shmring_create_anon(&p, &r), 0);
	sleepy(r, slice_ms);
	shmring_mpmc_set_alive_fn(r, alive_unless_fake, NULL);
	return r;
}

Test(mpmc_wait, producer_waits_out_a_dead_consumer)
{
	struct shmring *r = waiting_ring(4, SLICE_MS);
	struct elem x = {0, 0};
	for (uint64_t i = 0; i < 4; i++) {
		x.cnt = i;
		cr_assert_eq(shmring_mpmc_push(r, &x), 0);
	}
	/* A consumer dies after reading element 0, holding its slot. */
	struct shmring *v = victim(r, SHMRING_MPMC_HOOK_READ);
	cr_assert_eq(shmring_mpmc_pop(v, &x), -ECANCELED);
	shmring_close(v);
	cr_assert_eq(shmring_mpmc_push(r, &x), -EAGAIN); /* 3 queued + 1 held = full */
	struct timespec dl = tu_in_ms(5000);
	x.cnt = 4;
	uint64_t t0 = tu_now_ms();
	cr_assert_eq(shmring_mpmc_push_wait(r, &x, &dl), 0);
	cr_assert_lt(tu_now_ms() - t0, 2000, "waited past several slices");
	for (uint64_t i = 1; i <= 4; i++) {
		cr_assert_eq(shmring_mpmc_pop(r, &x), 0);
		cr_assert_eq(x.cnt, i);
	}
	shmring_close(r);
}

Test(mpmc_wait, consumer_gets_a_dead_producers_element)
{
	struct shmring *r = waiting_ring(4, SLICE_MS);
	struct elem x = {7, 77};
	/* A producer dies after writing its element and recording that it is about to publish
	 * it (at HOOK_FILLED its record cannot yet tell a finished copy from a torn one, and
	 * recovery drops the element: see shmring_mpmc_recover()). */
	struct shmring *v = victim(r, SHMRING_MPMC_HOOK_ENQ_FAA);
	cr_assert_eq(shmring_mpmc_push(v, &x), -ECANCELED);
	shmring_close(v);
	struct elem y = {0, 0};
	cr_assert_eq(shmring_mpmc_pop(r, &y), -EAGAIN);
	struct timespec dl = tu_in_ms(5000);
	cr_assert_eq(shmring_mpmc_pop_wait(r, &y, &dl), 0);
	cr_assert_eq(y.prod, 7);
	cr_assert_eq(y.cnt, 77);
	shmring_close(r);
}

/* A producer killed between its fetch-and-add on the tail and its entry write leaves tail ahead
 * of head with nothing behind it. A waiting consumer must sleep, not retry in a loop: every
 * wait that reaches the sleeping phase counts one in stats.sleeps. The recovery at the end of
 * the (long) slice would publish the dead producer's element, so the deadline comes first. */
Test(mpmc_wait, no_busy_loop_behind_a_dead_enqueuer)
{
	struct shmring *r = waiting_ring(8, 5000);
	struct elem x = {1, 1};
	/* One element through first, so that the threshold is up: it alone would hide a loop. */
	cr_assert_eq(shmring_mpmc_push(r, &x), 0);
	cr_assert_eq(shmring_mpmc_pop(r, &x), 0);
	struct shmring *v = victim(r, SHMRING_MPMC_HOOK_ENQ_POS);
	cr_assert_eq(shmring_mpmc_push(v, &x), -ECANCELED);
	shmring_close(v);
	shmring_stats_reset(r);
	struct timespec dl = tu_in_ms(300);
	cr_assert_eq(shmring_mpmc_pop_wait(r, &x, &dl), -ETIMEDOUT);
	struct shmring_stats st;
	cr_assert_eq(shmring_stats(r, &st), 0);
	cr_assert_leq(st.sleeps, 3, "%lu waits: a busy loop", (unsigned long)st.sleeps);
	cr_assert_geq(st.wait_syscalls, 1);
	/* Recovery publishes it (the element was written). */
	cr_assert_eq(shmring_mpmc_recover(r), 1);
	cr_assert_eq(shmring_mpmc_pop_wait(r, &x, NULL), 0);
	cr_assert_eq(x.cnt, 1);
	shmring_close(r);
}

/* A consumer asleep in pop_wait is woken by a push from another process, with one wake-up
 * system call, and the producer makes none while nobody sleeps. */
Test(mpmc_wait, sleeper_woken_by_push)
{
	const char *name = tu_shm_name("mpmc-wake");
	struct shmring_params p = mp_params(8, SHMRING_F_CONSUMER);
	struct shmring *r;
	cr_assert_eq(shmring_create(name, &p, &r), 0);
	sleepy(r, 3000);
	pid_t pid = fork();
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		struct shmring_params e = mp_params(0, SHMRING_F_PRODUCER);
		struct shmring *w;
		if (shmring_open(name, &e, &w) != 0)
			_exit(2);
		/* Until the consumer is registered asleep (found in review: a fixed 200 ms, and
		 * on a loaded machine the push could come first and wake nobody). */
		for (int i = 0; i < 2000 && !(atomic_load(w->wake_data) & _SHMRING_WQ_COUNT); i++)
			usleep(1000);
		struct elem x = {3, 33};
		if (shmring_mpmc_push(w, &x) != 0)
			_exit(3);
		struct shmring_stats st;
		shmring_stats(w, &st);
		shmring_close(w);
		_exit(st.wake_syscalls == 1 ? 0 : 4);
	}
	struct elem y = {0, 0};
	struct timespec dl = tu_in_ms(2500);
	uint64_t t0 = tu_now_ms();
	cr_assert_eq(shmring_mpmc_pop_wait(r, &y, &dl), 0);
	cr_assert_lt(tu_now_ms() - t0, 2000, "woken by the slice, not the push");
	cr_assert_eq(y.cnt, 33);
	cr_assert_eq(tu_wait(pid), 0);
	/* The producer is gone: -EPIPE at once, not at the deadline. */
	dl = tu_in_ms(2500);
	cr_assert_eq(shmring_mpmc_pop_wait(r, &y, &dl), -EPIPE);
	shmring_close(r);
	shmring_unlink(name);
}

/* SPDX-License-Identifier: MIT */
/*
 * Across processes: a producer process and a consumer process (fork) exchange sequence-numbered
 * elements through small rings, so they wrap and fill all the time, over every data path; and
 * the races of creation: openers against a creator, and two creators.
 *
 * Children report through exit codes and a shared report block, never through criterion.
 * They spin with sched_yield() on full and empty, so two processes share even one core.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../ring/layout.h"
#include "testutil.h"

enum pmode { P_SINGLE, P_BURST, P_BULK, P_RESERVE };
enum cmode { C_SINGLE, C_BURST, C_BULK, C_PEEK };
static const char *pname[] = {"push", "push_burst", "push_bulk", "reserve/commit"};
static const char *cname[] = {"pop", "pop_burst", "pop_bulk", "peek/release"};

enum backing { B_SHM, B_FILE, B_ANON };

/* Exit codes of the children. */
enum {
	XC_OK = 0,
	XC_OPEN = 2,	/* could not open the ring */
	XC_ERR = 3,	/* a data call returned an unexpected error */
	XC_STALL = 4,	/* no progress before the deadline */
	XC_DATA = 5,	/* wrong element: lost, duplicated, reordered or corrupted */
	XC_COMMIT = 6,	/* commit or release refused */
	XC_GEOMETRY = 7 /* the opened ring is not what was created */
};

/* Where a child says what went wrong, in memory shared with the parent. */
struct report {
	uint64_t at;   /* sequence number expected */
	uint64_t got;  /* what the slot held */
	int64_t err;   /* the return value that stopped it */
	uint64_t done; /* elements moved */
};

struct xfer {
	enum backing b;
	const char *name; /* shm name or file path */
	struct shmring *anon;
	struct shmring_params p;
	uint64_t n;
	enum pmode pm;
	enum cmode cm;
	struct report *rep; /* [0] producer, [1] consumer */
};

#define DEADLINE_MS 60000u

static uint64_t xs(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static struct shmring *child_open(const struct xfer *x)
{
	struct shmring *r = NULL;
	int rc = -EINVAL;

	if (x->b == B_ANON)
		return x->anon; /* inherited across fork, handle and all */
	if (x->b == B_SHM)
		rc = shmring_open(x->name, &x->p, &r);
	else
		rc = shmring_open_file(x->name, &x->p, &r);
	if (rc)
		_exit(XC_OPEN);
	if (shmring_capacity(r) != x->p.capacity || shmring_elem_size(r) != x->p.elem_size)
		_exit(XC_GEOMETRY);
	return r;
}

/* One failed attempt: yield, and give up if the peer has stopped moving for too long. */
static void backoff(uint64_t *spins, uint64_t *last_ms, struct report *rep)
{
	sched_yield();
	if ((++*spins & 1023) == 0) {
		uint64_t now = tu_now_ms();
		if (*last_ms == 0)
			*last_ms = now;
		else if (now - *last_ms > DEADLINE_MS) {
			rep->err = -EAGAIN;
			_exit(XC_STALL);
		}
	}
}

static uint64_t low(uint64_t seq, uint32_t es)
{
	return es >= 8 ? seq : seq & ((1ull << (8 * es)) - 1);
}

/* How many elements the next call asks for, by mode (pmode and cmode share their order:
 * single, burst, bulk, zero-copy), never more than the left that remain. */
static unsigned batch(int mode, uint64_t *seed, unsigned cap, uint64_t left)
{
	unsigned k = 1;

	switch (mode) {
	case P_BURST:
		k = 1 + (unsigned)(xs(seed) % (2 * cap));
		break;
	case P_BULK:
		/* At most half the ring on both sides, or both could wait forever. */
		k = 1 + (unsigned)(xs(seed) % (cap / 2));
		break;
	case P_RESERVE:
		k = 1 + (unsigned)(xs(seed) % cap);
		break;
	}
	return k > left ? (unsigned)left : k;
}
_Static_assert((int)P_BURST == (int)C_BURST && (int)P_BULK == (int)C_BULK &&
		   (int)P_RESERVE == (int)C_PEEK,
	       "batch() serves both sides");

static void producer(const struct xfer *x)
{
	struct shmring *r = child_open(x);
	struct report *rep = &x->rep[0];
	const uint32_t es = x->p.elem_size;
	const unsigned cap = (unsigned)x->p.capacity;
	unsigned char *buf = malloc((size_t)es * 2 * cap);
	uint64_t seed = 0x1234567 + x->n, spins = 0, last = 0;
	uint64_t s = 0;

	if (!buf)
		_exit(XC_ERR);
	while (s < x->n) {
		unsigned k = batch((int)x->pm, &seed, cap, x->n - s);
		int rc;

		if (x->pm == P_RESERVE) {
			void *slots = NULL;
			rc = shmring_spsc_reserve(r, k, &slots);
			if (rc > 0) {
				for (int j = 0; j < rc; j++)
					tu_fill((unsigned char *)slots + (size_t)j * es, es,
						s + (uint64_t)j);
				/* Sometimes commit only part: the rest is reserved again. */
				unsigned c = 1 + (unsigned)(xs(&seed) % (unsigned)rc);
				if (shmring_spsc_commit(r, c) != 0)
					_exit(XC_COMMIT);
				rc = (int)c;
			}
		} else {
			for (unsigned j = 0; j < k; j++)
				tu_fill(buf + (size_t)j * es, es, s + j);
			if (x->pm == P_SINGLE) {
				rc = shmring_spsc_push(r, buf);
				rc = rc == 0 ? 1 : rc;
			} else if (x->pm == P_BURST)
				rc = shmring_spsc_push_burst(r, buf, k);
			else
				rc = shmring_spsc_push_bulk(r, buf, k);
		}
		if (rc == -EAGAIN) {
			backoff(&spins, &last, rep);
			continue;
		}
		if (rc <= 0 || (x->pm == P_BULK && (unsigned)rc != k)) {
			rep->err = rc;
			rep->done = s;
			_exit(XC_ERR);
		}
		s += (uint64_t)rc;
		last = 0;
	}
	rep->done = s;
	_exit(XC_OK);
}

static void bad(struct report *rep, uint64_t at, uint64_t got)
{
	rep->at = at;
	rep->got = got;
	_exit(XC_DATA);
}

static void consumer(const struct xfer *x)
{
	struct shmring *r = child_open(x);
	struct report *rep = &x->rep[1];
	const uint32_t es = x->p.elem_size;
	const unsigned cap = (unsigned)x->p.capacity;
	unsigned char *buf = malloc((size_t)es * 2 * cap);
	uint64_t seed = 0x7654321 + x->n, spins = 0, last = 0;
	uint64_t s = 0;

	if (!buf)
		_exit(XC_ERR);
	while (s < x->n) {
		unsigned k = batch((int)x->cm, &seed, cap, x->n - s);
		int rc;

		if (x->cm == C_PEEK) {
			const void *slots = NULL;
			rc = shmring_spsc_peek(r, k, &slots);
			if (rc > 0) {
				for (int j = 0; j < rc; j++) {
					uint64_t got = tu_check(
					    (const unsigned char *)slots + (size_t)j * es, es);
					if (got != low(s + (uint64_t)j, es))
						bad(rep, s + (uint64_t)j, got);
				}
				unsigned c = 1 + (unsigned)(xs(&seed) % (unsigned)rc);
				if (shmring_spsc_release(r, c) != 0)
					_exit(XC_COMMIT);
				rc = (int)c;
			}
		} else {
			if (x->cm == C_SINGLE) {
				rc = shmring_spsc_pop(r, buf);
				rc = rc == 0 ? 1 : rc;
			} else if (x->cm == C_BURST)
				rc = shmring_spsc_pop_burst(r, buf, k);
			else
				rc = shmring_spsc_pop_bulk(r, buf, k);
			for (int j = 0; j < rc; j++) {
				uint64_t got = tu_check(buf + (size_t)j * es, es);
				if (got != low(s + (uint64_t)j, es))
					bad(rep, s + (uint64_t)j, got);
			}
		}
		if (rc == -EAGAIN) {
			backoff(&spins, &last, rep);
			continue;
		}
		if (rc <= 0 || (x->cm == C_BULK && (unsigned)rc != k)) {
			rep->err = rc;
			rep->done = s;
			_exit(XC_ERR);
		}
		s += (uint64_t)rc;
		last = 0;
	}
	rep->done = s;
	_exit(XC_OK);
}

/* Runs one exchange in two children and checks what they and the ring say afterwards. */
static void run_xfer(struct xfer *x)
{
	struct report *rep =
	    mmap(NULL, 2 * sizeof(*rep), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	cr_assert_neq(rep, MAP_FAILED);
	memset(rep, 0, 2 * sizeof(*rep));
	x->rep = rep;
	pid_t c = fork();
	cr_assert_geq(c, 0);
	if (c == 0)
		consumer(x);
	pid_t p = fork();
	cr_assert_geq(p, 0);
	if (p == 0)
		producer(x);
	/* Whichever ends first: if it failed, the other would only wait for its deadline. */
	int st, pst = -1, cst = -1;
	pid_t first = waitpid(-1, &st, 0);
	cr_assert(first == p || first == c);
	st = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	if (st != 0)
		kill(first == p ? c : p, SIGKILL);
	if (first == p) {
		pst = st;
		cst = tu_wait(c);
	} else {
		cst = st;
		pst = tu_wait(p);
	}
	cr_assert_eq(cst, 0,
		     "consumer (%s <- %s, es %u) exit %d at %llu: expected %llu, got %llu "
		     "(err %lld)",
		     cname[x->cm], pname[x->pm], x->p.elem_size, cst,
		     (unsigned long long)rep[1].done, (unsigned long long)rep[1].at,
		     (unsigned long long)rep[1].got, (long long)rep[1].err);
	cr_assert_eq(pst, 0, "producer (%s) exit %d after %llu (err %lld)", pname[x->pm], pst,
		     (unsigned long long)rep[0].done, (long long)rep[0].err);
	cr_assert_eq(rep[0].done, x->n);
	cr_assert_eq(rep[1].done, x->n);
	munmap(rep, 2 * sizeof(*rep));
}

/* After the exchanges, the shared positions must say exactly total: nothing pushed twice or
 * left behind. */
/* Returns the consumer's final position in shared memory, once it is checked. */
static uint64_t check_positions(struct shmring *r, uint64_t total)
{
	unsigned char *base = shmring_base(r, NULL);
	const struct _shmring_hdr *h = (const struct _shmring_hdr *)base;
	_Atomic uint64_t *prod = (_Atomic uint64_t *)(base + h->part[_SHMRING_PART_PROD].off);
	_Atomic uint64_t *cons = (_Atomic uint64_t *)(base + h->part[_SHMRING_PART_CONS].off);

	cr_assert_eq(atomic_load(prod), total, "producer position %llu, want %llu",
		     (unsigned long long)atomic_load(prod), (unsigned long long)total);
	cr_assert_eq(atomic_load(cons), total);
	return atomic_load(cons);
}

struct plan {
	enum pmode pm;
	enum cmode cm;
	uint32_t es;
	uint64_t n;
};

/* Returns how many elements the consumers took out, as their positions in shared memory say
 * (every one checked by the consumer on the way). */
static uint64_t run_plan(enum backing b, const struct plan *pl, size_t npl, uint64_t cap)
{
	uint64_t moved = 0;

	for (size_t i = 0; i < npl; i++) {
		struct xfer x = {.b = b, .pm = pl[i].pm, .cm = pl[i].cm, .n = pl[i].n};
		struct shmring *r;
		uint64_t t0 = tu_now_ms();

		x.p = tu_params(pl[i].es, cap);
		if (b == B_SHM) {
			x.name = tu_shm_name("xp");
			cr_assert_eq(shmring_create(x.name, &x.p, &r), 0);
			/* The children open it by name, in processes that never mapped it. */
			shmring_close(r);
		} else if (b == B_FILE) {
			x.name = tu_file_path("xp");
			cr_assert_eq(shmring_create_file(x.name, &x.p, &r), 0);
			shmring_close(r);
		} else {
			cr_assert_eq(shmring_create_anon(&x.p, &x.anon), 0);
		}
		run_xfer(&x);
		if (b == B_SHM) {
			cr_assert_eq(shmring_open(x.name, &x.p, &r), 0);
			moved += check_positions(r, x.n);
			cr_assert_eq(shmring_spsc_size(r), 0);
			shmring_close(r);
			cr_assert_eq(shmring_unlink(x.name), 0);
		} else if (b == B_FILE) {
			cr_assert_eq(shmring_open_file(x.name, &x.p, &r), 0);
			moved += check_positions(r, x.n);
			shmring_close(r);
			cr_assert_eq(shmring_unlink_file(x.name), 0);
		} else {
			moved += check_positions(x.anon, x.n);
			shmring_close(x.anon);
		}
		cr_log_info("%s -> %s, es %u, cap %llu: %llu elements in %llu ms", pname[x.pm],
			    cname[x.cm], x.p.elem_size, (unsigned long long)cap,
			    (unsigned long long)x.n, (unsigned long long)(tu_now_ms() - t0));
	}
	return moved;
}

/* The sum of a plan's element counts. */
static uint64_t plan_total(const struct plan *pl, size_t npl)
{
	uint64_t n = 0;

	for (size_t i = 0; i < npl; i++)
		n += pl[i].n;
	return n;
}

/* 10^7 elements through POSIX shm, 2.5 * 10^6 on each path, plus the paths crossed. */
Test(xproc, shm_ten_million, .timeout = 300)
{
	const struct plan pl[] = {
	    {P_SINGLE, C_SINGLE, 16, 2500000}, {P_BURST, C_BURST, 24, 2500000},
	    {P_BULK, C_BULK, 8, 2500000},      {P_RESERVE, C_PEEK, 32, 2500000},
	    {P_BULK, C_PEEK, 3, 200000},       {P_RESERVE, C_SINGLE, 1, 200000},
	    {P_SINGLE, C_BULK, 64, 200000},    {P_BURST, C_PEEK, 13, 200000},
	    {P_RESERVE, C_BURST, 7, 200000},   {P_BULK, C_SINGLE, 40, 200000},
	};
	cr_assert_eq(run_plan(B_SHM, pl, sizeof(pl) / sizeof(pl[0]), 64),
		     plan_total(pl, sizeof(pl) / sizeof(pl[0])));
}

Test(xproc, file_million, .timeout = 120)
{
	const struct plan pl[] = {
	    {P_SINGLE, C_SINGLE, 16, 250000},
	    {P_BURST, C_BURST, 24, 250000},
	    {P_BULK, C_BULK, 8, 250000},
	    {P_RESERVE, C_PEEK, 32, 250000},
	};
	cr_assert_eq(run_plan(B_FILE, pl, sizeof(pl) / sizeof(pl[0]), 64),
		     plan_total(pl, sizeof(pl) / sizeof(pl[0])));
}

Test(xproc, anon_million, .timeout = 120)
{
	const struct plan pl[] = {
	    {P_SINGLE, C_SINGLE, 16, 250000},
	    {P_BURST, C_BURST, 24, 250000},
	    {P_BULK, C_BULK, 8, 250000},
	    {P_RESERVE, C_PEEK, 32, 250000},
	};
	cr_assert_eq(run_plan(B_ANON, pl, sizeof(pl) / sizeof(pl[0]), 64),
		     plan_total(pl, sizeof(pl) / sizeof(pl[0])));
}

/* A tiny ring with big elements: every call wraps or fills. */
Test(xproc, shm_tiny_ring_big_elements, .timeout = 120)
{
	const struct plan pl[] = {
	    {P_BURST, C_PEEK, 4096, 20000},
	    {P_RESERVE, C_BURST, 65536, 5000},
	};
	cr_assert_eq(run_plan(B_SHM, pl, sizeof(pl) / sizeof(pl[0]), 4),
		     plan_total(pl, sizeof(pl) / sizeof(pl[0])));
}

/* ---- creation races ---------------------------------------------------------------------- */

enum { R_OPENED = 0, R_PROTO = 10, R_TIMEDOUT = 11, R_OTHER = 12, R_STALL = 13, R_GEOM = 14 };

/* Opens until the ring is there. Between "no such name" and a valid ring there must be
 * nothing else: never a half-written header. */
static void opener(const char *name, const struct shmring_params *p, _Atomic int *go,
		   _Atomic uint64_t *enoent)
{
	struct shmring_params q = *p;
	uint64_t t0 = tu_now_ms();
	struct shmring *r;

	q.open_timeout_ms = 5000;
	atomic_fetch_add(go, 1);
	for (;;) {
		int rc = shmring_open(name, &q, &r);
		if (rc == 0)
			break;
		if (rc == -EPROTO) {
			/* Say what was there, for whoever has to explain it. */
			struct stat st;
			int fd = shm_open(name, O_RDONLY, 0);
			if (fd >= 0 && fstat(fd, &st) == 0 && st.st_size >= 256) {
				const unsigned char *m =
				    mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
				if (m != MAP_FAILED)
					fprintf(
					    stderr,
					    "opener: -EPROTO; object %lld bytes, state word %#x, "
					    "kind %u\n",
					    (long long)st.st_size, *(const unsigned *)(m + 176),
					    *(const unsigned *)(m + 12));
			} else {
				fprintf(stderr, "opener: -EPROTO; object %lld bytes\n",
					fd >= 0 ? (long long)st.st_size : -1LL);
			}
			_exit(R_PROTO);
		}
		if (rc == -ETIMEDOUT)
			_exit(R_TIMEDOUT);
		if (rc != -ENOENT)
			_exit(R_OTHER);
		atomic_fetch_add(enoent, 1);
		if (tu_now_ms() - t0 > 20000)
			_exit(R_STALL);
	}
	if (shmring_capacity(r) != p->capacity || shmring_elem_size(r) != p->elem_size ||
	    shmring_spsc_size(r) < 0)
		_exit(R_GEOM);
	shmring_close(r);
	_exit(R_OPENED);
}

Test(race, openers_against_creator, .timeout = 120)
{
	enum { ROUNDS = 40, OPENERS = 3 };
	_Atomic int *go =
	    mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(go, MAP_FAILED);
	_Atomic uint64_t *enoent = (_Atomic uint64_t *)(go + 16);
	uint64_t seed = 42;

	for (int round = 0; round < ROUNDS; round++) {
		const char *name = tu_shm_name("race");
		/* Half the rounds prefault a larger ring: a longer window between sizing the
		 * object and publishing its header. */
		struct shmring_params p = tu_params(64, round & 1 ? 4096 : 16);
		pid_t pid[OPENERS];
		struct shmring *r;

		if (round & 1)
			p.flags = SHMRING_F_PREFAULT;
		atomic_store(go, 0);
		for (int i = 0; i < OPENERS; i++) {
			pid[i] = fork();
			cr_assert_geq(pid[i], 0);
			if (pid[i] == 0)
				opener(name, &p, go, enoent);
		}
		while (atomic_load(go) < OPENERS)
			sched_yield();
		for (uint64_t d = xs(&seed) % 3; d > 0; d--)
			usleep(300);
		cr_assert_eq(shmring_create(name, &p, &r), 0);
		for (int i = 0; i < OPENERS; i++) {
			int st = tu_wait(pid[i]);
			cr_assert_eq(st, R_OPENED, "round %d opener %d: exit %d (%s)", round, i, st,
				     st == R_PROTO ? "saw a half-written header" : "see codes");
		}
		shmring_close(r);
		cr_assert_eq(shmring_unlink(name), 0);
	}
	cr_log_info("openers saw ENOENT %llu times", (unsigned long long)atomic_load(enoent));
	munmap(go, 4096);
}

Test(race, two_creators, .timeout = 120)
{
	enum { ROUNDS = 40 };
	_Atomic int *go =
	    mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(go, MAP_FAILED);

	for (int round = 0; round < ROUNDS; round++) {
		const char *name = tu_shm_name("twin");
		struct shmring_params p = tu_params(32, round & 1 ? 2048 : 8);
		pid_t pid[2];
		int st[2];

		if (round & 1)
			p.flags = SHMRING_F_PREFAULT;
		atomic_store(go, 0);
		for (int i = 0; i < 2; i++) {
			pid[i] = fork();
			cr_assert_geq(pid[i], 0);
			if (pid[i] == 0) {
				struct shmring *r;
				/* Both start together, as near as two processes can. */
				atomic_fetch_add(go, 1);
				while (atomic_load(go) < 3)
					;
				int rc = shmring_create(name, &p, &r);
				if (rc == 0) {
					/* Leave a mark that only the winner's ring carries. */
					uint64_t mark[4] = {(uint64_t)getpid(), 0, 0, 0};
					if (shmring_spsc_push(r, mark) != 0)
						_exit(9);
					shmring_close(r);
					_exit(0);
				}
				_exit(rc == -EEXIST ? 1 : 2);
			}
		}
		while (atomic_load(go) < 2)
			sched_yield();
		atomic_store(go, 3);
		st[0] = tu_wait(pid[0]);
		st[1] = tu_wait(pid[1]);
		cr_assert(st[0] + st[1] == 1 && (st[0] == 0 || st[1] == 0),
			  "round %d: exits %d and %d, want one 0 (created) and one 1 (EEXIST)",
			  round, st[0], st[1]);
		/* The loser removed nothing: the winner's ring is there, with its mark. */
		struct shmring *r;
		uint64_t mark[4];
		cr_assert_eq(shmring_open(name, &p, &r), 0, "round %d", round);
		cr_assert_eq(shmring_spsc_pop(r, mark), 0);
		cr_assert_eq(mark[0], (uint64_t)pid[st[0] == 0 ? 0 : 1]);
		shmring_close(r);
		cr_assert_eq(shmring_unlink(name), 0);
	}
	munmap(go, 4096);
}

/* In the runner, after every worker has ended: what a crashed worker could not clean up. */
ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
	tu_sweep_report(stats->tests_crashed);
}

/* SPDX-License-Identifier: MIT */
/*
 * MPMC throughput on shared memory: shmring's two MPMC kinds (SHMRING_MPMC, SCQ, and
 * SHMRING_MPMC_RUNS, which hands bursts over as runs) against DPDK rte_ring (MP/MC, RTS and HTS;
 * rte_ring_init on memory we map, no EAL) and Concurrency Kit's ck_ring mpmc (on the same
 * MAP_SHARED memory). 8-byte elements, capacity 1024.
 *
 * Configurations: P producers and C consumers as processes (1/1, 2/2, 4/4) or as threads of
 * one process (4/4: 8 threads), at burst 1 and 32. Participant i is pinned to CPU i mod ncpu
 * (of the CPUs its affinity mask allows: see pin.h),
 * so on a 2-CPU machine 2/2 and 4/4 are oversubscribed on purpose: a participant preempted in
 * the middle of an operation is exactly what this measures.
 *
 * Each run lasts a fixed time window: producers push and consumers pop until a stop flag, and
 * the score is elements popped per second during the window. A design in which one preempted
 * participant stalls the others scores what it manages, rather than running for ever. Rounds
 * interleave every contender of every configuration; the table gives the median over rounds,
 * with min-max, and the ratio of each shmring kind's median to the best peer's median.
 *
 * Two idle policies, each for every configuration: a participant whose push finds the ring full
 * or whose pop finds it empty either yields its CPU (sched_yield) or busy-polls (a pause and
 * straight back, as latency-sensitive programs wait). Yielding hands the CPU to the
 * participant pinned beside it at once, so a participant is rarely preempted in the middle
 * of an operation. Busy-polling keeps every participant running until the scheduler takes the
 * CPU away at an arbitrary instruction: that is the case where a design that blocks leaves
 * every later participant waiting for a preempted one.
 *
 * Every element carries (producer, counter); each consumer checks that every producer's
 * counters arrive in increasing order and that no value is invented. A run that fails the
 * check is reported as FAILED, never averaged in.
 *
 * After the table, one core without a peer: a burst of 32 pushed then popped, both shmring kinds
 * against rte_ring, beside the floor of SCQ's design (see solo() and floor_cas()).
 *
 * Usage: mpmc_bench [--quick] [--wide] [--window MS] [--rounds N] [--only SUBSTR] [--shmring-only]
 * --wide adds 8/8 (processes and threads): 16 participants, one per CPU on a 16-CPU machine,
 * twice oversubscribed on 8 CPUs, eight times on 2 (--quick ignores it);
 * --only keeps the configurations whose name ("2/2 procs b=32 spin") contains SUBSTR;
 * --shmring-only skips the peers (to compare two builds of shmring run one after the other).
 */
#include <ck_ring.h>
#include <pthread.h>
#include <rte_ring.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <shmring/shmring.h>

#include "pin.h"

#define CAP   1024u
#define MAXPC 8

/* The two shmring kinds first, then the peers. */
enum kind { K_SHMRING, K_RUNS, K_RTE_MPMC, K_RTE_RTS, K_RTE_HTS, K_CK, K_N };
static const char *kname[K_N] = {"shmring SCQ", "shmring runs", "rte MP/MC",
				 "rte RTS",	"rte HTS",	"ck mpmc"};

static int ours(enum kind k)
{
	return k == K_SHMRING || k == K_RUNS;
}

struct shared {
	_Atomic uint64_t popped;
	_Atomic int go, stop, bad;
	_Atomic int ready;
	ck_ring_t ck;
	_Alignas(128) ck_ring_buffer_t ckbuf[CAP];
	_Alignas(128) unsigned char rte[1 << 20];
};

static struct shared *sh;
static struct shmring *ring; /* creator's handle (anonymous memory); each participant attaches */
static enum kind cur;
static unsigned burst;
static int use_threads, ncpu, spin_idle;

/* After a push that found the ring full or a pop that found it empty (see the idle policies
 * above). */
static inline void idle(void)
{
	if (!spin_idle) {
		sched_yield();
		return;
	}
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

static void pin(int i)
{
	bench_pin_nth(i);
}

static struct shmring *my_handle(void)
{
	size_t len;
	void *base = shmring_base(ring, &len);
	struct shmring_params e = {.kind = shmring_kind(ring)};
	struct shmring *h = NULL;

	if (shmring_attach(base, len, &e, &h) != 0)
		abort();
	return h;
}

static void start_line(void)
{
	atomic_fetch_add(&sh->ready, 1);
	while (!atomic_load_explicit(&sh->go, memory_order_acquire))
		sched_yield();
}

/* Element value: producer id in the top byte, counter below (never 0: ck and rte carry it as a
 * pointer). */
#define VAL(id, c) ((uint64_t)(id) << 56 | ((c) + 1))

static void producer(int id)
{
	struct shmring *h = ours(cur) ? my_handle() : NULL;
	struct rte_ring *rr = (struct rte_ring *)sh->rte;
	uint64_t buf[32];
	void *pb[32];
	uint64_t c = 0;

	start_line();
	while (!atomic_load_explicit(&sh->stop, memory_order_relaxed)) {
		for (unsigned k = 0; k < burst; k++) {
			buf[k] = VAL(id, c + k);
			pb[k] = (void *)(uintptr_t)buf[k];
		}
		int got;
		switch (cur) {
		case K_SHMRING:
		case K_RUNS:
			got = burst == 1 ? shmring_mpmc_push(h, buf) == 0
					 : shmring_mpmc_push_burst(h, buf, burst);
			break;
		case K_CK:
			got = 0;
			while ((unsigned)got < burst &&
			       ck_ring_enqueue_mpmc(&sh->ck, sh->ckbuf, pb[got]))
				got++;
			break;
		default:
			got = (int)rte_ring_enqueue_burst(rr, pb, burst, NULL);
		}
		if (got > 0)
			c += (uint64_t)got;
		else
			idle();
	}
	if (h)
		shmring_close(h);
}

static void consumer(void)
{
	struct shmring *h = ours(cur) ? my_handle() : NULL;
	struct rte_ring *rr = (struct rte_ring *)sh->rte;
	uint64_t buf[32], last[MAXPC] = {0}, n = 0;
	void *pb[32];

	start_line();
	while (!atomic_load_explicit(&sh->stop, memory_order_relaxed)) {
		int got;
		switch (cur) {
		case K_SHMRING:
		case K_RUNS:
			got = burst == 1 ? shmring_mpmc_pop(h, buf) == 0
					 : shmring_mpmc_pop_burst(h, buf, burst);
			break;
		case K_CK:
			got = 0;
			while ((unsigned)got < burst &&
			       ck_ring_dequeue_mpmc(&sh->ck, sh->ckbuf, &pb[got]))
				got++;
			for (int k = 0; k < got; k++)
				buf[k] = (uint64_t)(uintptr_t)pb[k];
			break;
		default:
			got = (int)rte_ring_dequeue_burst(rr, pb, burst, NULL);
			for (int k = 0; k < got; k++)
				buf[k] = (uint64_t)(uintptr_t)pb[k];
		}
		if (got <= 0) {
			idle();
			continue;
		}
		for (int k = 0; k < got; k++) {
			unsigned id = (unsigned)(buf[k] >> 56);
			uint64_t c = buf[k] & ((1ull << 56) - 1);
			if (id >= MAXPC || c <= last[id])
				atomic_store(&sh->bad, 1);
			else
				last[id] = c;
		}
		n += (uint64_t)got;
	}
	atomic_fetch_add(&sh->popped, n);
	if (h)
		shmring_close(h);
}

struct targ {
	int i, np;
};

static void *thr_main(void *a)
{
	struct targ *t = a;

	pin(t->i);
	if (t->i < t->np)
		producer(t->i);
	else
		consumer();
	return NULL;
}

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int setup(enum kind k)
{
	struct rte_ring *rr = (struct rte_ring *)sh->rte;
	unsigned flags = 0;

	switch (k) {
	case K_SHMRING:
	case K_RUNS: {
		/* A runs ring: an arena for each producer (8), and the creator's handle. */
		struct shmring_params p = {.kind = k == K_RUNS ? SHMRING_MPMC_RUNS : SHMRING_MPMC,
					   .elem_size = 8,
					   .capacity = CAP,
					   .producers = k == K_RUNS ? MAXPC + 1 : 0};
		return shmring_create_anon(&p, &ring);
	}
	case K_CK:
		ck_ring_init(&sh->ck, CAP);
		return 0;
	case K_RTE_RTS:
		flags = RING_F_MP_RTS_ENQ | RING_F_MC_RTS_DEQ;
		break;
	case K_RTE_HTS:
		flags = RING_F_MP_HTS_ENQ | RING_F_MC_HTS_DEQ;
		break;
	default:
		break;
	}
	if (rte_ring_get_memsize(CAP) > (ssize_t)sizeof(sh->rte))
		return -1;
	/* rte_ring_init takes CAP - 1 usable slots (no RING_F_EXACT_SZ); ck_ring also keeps one
	 * slot empty. shmring's 1024 are all usable. */
	return rte_ring_init(rr, "mpmc_bench", CAP, flags);
}

/* Million elements per second popped during one window; -1 if the integrity check failed. */
static double run_once(enum kind k, int np, int nc, unsigned b, double window)
{
	cur = k;
	burst = b;
	atomic_store(&sh->popped, 0);
	atomic_store(&sh->go, 0);
	atomic_store(&sh->stop, 0);
	atomic_store(&sh->bad, 0);
	atomic_store(&sh->ready, 0);
	if (setup(k) != 0) {
		fprintf(stderr, "mpmc_bench: setup of %s failed\n", kname[k]);
		return -1;
	}
	pid_t pids[2 * MAXPC];
	pthread_t tids[2 * MAXPC];
	struct targ ta[2 * MAXPC];
	for (int i = 0; i < np + nc; i++) {
		ta[i] = (struct targ){i, np};
		if (use_threads) {
			pthread_create(&tids[i], NULL, thr_main, &ta[i]);
		} else if ((pids[i] = fork()) == 0) {
			thr_main(&ta[i]);
			_exit(0);
		}
	}
	while (atomic_load(&sh->ready) < np + nc)
		usleep(1000);
	double t0 = now();
	atomic_store_explicit(&sh->go, 1, memory_order_release);
	struct timespec w = {(time_t)window, (long)((window - (double)(time_t)window) * 1e9)};
	nanosleep(&w, NULL);
	atomic_store(&sh->stop, 1);
	double dt = now() - t0;
	for (int i = 0; i < np + nc; i++) {
		if (use_threads)
			pthread_join(tids[i], NULL);
		else
			waitpid(pids[i], NULL, 0);
	}
	if (ours(k)) {
		shmring_close(ring);
		ring = NULL;
	}
	/* Elements popped after the stop flag (at most a burst per consumer) count too, over the
	 * window measured up to the flag: a bias of under 0.01 % at these rates. */
	if (atomic_load(&sh->bad))
		return -1;
	return (double)atomic_load(&sh->popped) / dt / 1e6;
}

/*
 * One core, no peer: where a burst's time goes. SCQ moves every element through two index
 * queues, with a locked read-modify-write on its entry in each for the push and again for the
 * pop (the take that empties an entry and the enqueue that lands one): four per element, where
 * rte_ring takes a whole burst with one CAS per side. The floor below is those four CASes per
 * element alone, uncontended, on entries in L1: what no design of this kind goes under on this
 * machine, with nothing else counted. ns per element pushed and popped, bursts of 32.
 */
static double solo(enum kind k, long n)
{
	struct rte_ring *rr = (struct rte_ring *)sh->rte;
	uint64_t buf[32] = {0};
	void *pb[32];

	for (int i = 0; i < 32; i++)
		pb[i] = (void *)(uintptr_t)(i + 1);
	if (setup(k) != 0)
		return -1;
	double t0 = now();
	for (long i = 0; i < n; i += 32) {
		if (ours(k)) {
			if (shmring_mpmc_push_burst(ring, buf, 32) != 32 ||
			    shmring_mpmc_pop_burst(ring, buf, 32) != 32)
				return -1;
		} else if (rte_ring_enqueue_burst(rr, pb, 32, NULL) != 32 ||
			   rte_ring_dequeue_burst(rr, pb, 32, NULL) != 32) {
			return -1;
		}
	}
	double dt = now() - t0;
	if (ours(k)) {
		shmring_close(ring);
		ring = NULL;
	}
	return dt / (double)n * 1e9;
}

static double floor_cas(long n)
{
	static _Atomic uint64_t ent[2][2 * CAP];
	double t0 = now();

	for (long i = 0; i < n; i++)
		for (int q = 0; q < 4; q++) {
			_Atomic uint64_t *e = &ent[q & 1][(i + (q >> 1) * CAP) & (2 * CAP - 1)];
			uint64_t v = atomic_load_explicit(e, memory_order_relaxed);
			atomic_compare_exchange_strong_explicit(e, &v, v + 1, memory_order_acq_rel,
								memory_order_relaxed);
		}
	return (now() - t0) / (double)n * 1e9;
}

static int cmp(const void *a, const void *b);

static void one_core(int rounds, long n, int only_ours)
{
	double v[4][99];
	const char *what[4] = {"shmring SCQ", "rte MP/MC", "4 CAS/element floor", "shmring runs"};

	pin(0);
	for (int rd = 0; rd < rounds; rd++) {
		/* Interleaved, in a rotating order. */
		for (int j = 0; j < 4; j++) {
			int w = (j + rd) % 4;
			v[w][rd] = w == 0   ? solo(K_SHMRING, n)
				   : w == 1 ? (only_ours ? 0 : solo(K_RTE_MPMC, n))
				   : w == 2 ? floor_cas(n)
					    : solo(K_RUNS, n);
		}
	}
	double med[4];
	printf(
	    "\nOne core, bursts of 32 pushed then popped, ns per element: median [min-max] of %d "
	    "rounds\n",
	    rounds);
	for (int w = 0; w < 4; w++) {
		if (w == 1 && only_ours)
			continue;
		qsort(v[w], (size_t)rounds, sizeof(double), cmp);
		med[w] =
		    rounds % 2 ? v[w][rounds / 2] : (v[w][rounds / 2 - 1] + v[w][rounds / 2]) / 2;
		printf("  %-22s %6.2f [%.2f-%.2f]\n", what[w], med[w], v[w][0], v[w][rounds - 1]);
	}
	if (med[0] > 0)
		printf("  SCQ takes %.2fx its design's floor", med[0] / med[2]);
	if (!only_ours && med[1] > 0)
		printf("; that floor alone is %.1fx rte_ring's whole burst;\n  runs takes %.2fx "
		       "rte_ring's burst",
		       med[2] / med[1], med[3] / med[1]);
	printf("\n");
}

struct cfg {
	int np, nc, threads;
	unsigned b;
	int spin;
};

static void cfg_name(const struct cfg *c, char *name)
{
	snprintf(name, 40, "%d/%d %s b=%u %s", c->np, c->nc, c->threads ? "threads" : "procs", c->b,
		 c->spin ? "spin" : "yield");
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	double window = 0.3;
	int rounds = 7, quick = 0, only_ours = 0, wide = 0;
	const char *only = NULL;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--quick"))
			quick = 1;
		else if (!strcmp(argv[i], "--window") && i + 1 < argc)
			window = atof(argv[++i]) / 1000.0;
		else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
			rounds = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--only") && i + 1 < argc)
			only = argv[++i];
		else if (!strcmp(argv[i], "--shmring-only"))
			only_ours = 1;
		else if (!strcmp(argv[i], "--wide"))
			wide = 1;
		else {
			fprintf(stderr, "usage: mpmc_bench [--quick] [--wide] [--window MS] "
					"[--rounds N] [--only SUBSTR] [--shmring-only]\n");
			return 2;
		}
	}
	if (quick) {
		window = 0.1;
		rounds = 3;
	}
	if (rounds < 1 || rounds > 99 || window <= 0)
		return 2;
	int *cpus;
	ncpu = bench_cpus(&cpus);
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED)
		return 1;
	/* The last eight (8/8) only with --wide. */
	struct cfg all[] = {{1, 1, 0, 1, 0}, {1, 1, 0, 32, 0}, {2, 2, 0, 1, 0}, {2, 2, 0, 32, 0},
			    {4, 4, 0, 1, 0}, {4, 4, 0, 32, 0}, {4, 4, 1, 1, 0}, {4, 4, 1, 32, 0},
			    {1, 1, 0, 1, 1}, {1, 1, 0, 32, 1}, {2, 2, 0, 1, 1}, {2, 2, 0, 32, 1},
			    {4, 4, 0, 1, 1}, {4, 4, 0, 32, 1}, {4, 4, 1, 1, 1}, {4, 4, 1, 32, 1},
			    {8, 8, 0, 1, 0}, {8, 8, 0, 32, 0}, {8, 8, 1, 1, 0}, {8, 8, 1, 32, 0},
			    {8, 8, 0, 1, 1}, {8, 8, 0, 32, 1}, {8, 8, 1, 1, 1}, {8, 8, 1, 32, 1}},
		   few[] = {{1, 1, 0, 1, 0},  {1, 1, 0, 32, 0}, {4, 4, 1, 1, 0},
			    {4, 4, 1, 32, 0}, {4, 4, 1, 1, 1},	{4, 4, 1, 32, 1}};
	enum { NALL = sizeof(all) / sizeof(all[0]), NFEW = sizeof(few) / sizeof(few[0]) };
	int nfrom = quick ? NFEW : wide ? NALL : NALL - 8;
	struct cfg *from = quick ? few : all, cfg[NALL];
	int ncfg = 0, nk = 0, npeer = 0;
	enum kind ks[K_N];
	static double res[NALL][K_N][99];

	ks[nk++] = K_SHMRING;
	ks[nk++] = K_RUNS;
	for (int k = K_RTE_MPMC; k <= K_CK && !only_ours; k++, npeer++)
		ks[nk++] = (enum kind)k;

	for (int c = 0; c < nfrom; c++) {
		char name[40];
		cfg_name(&from[c], name);
		if (!only || strstr(name, only))
			cfg[ncfg++] = from[c];
	}
	if (ncfg == 0) {
		fprintf(stderr, "mpmc_bench: no configuration matches --only %s\n", only);
		return 2;
	}
	fprintf(stderr, "mpmc_bench: %d configurations x %d contenders x %d rounds of %.0f ms\n",
		ncfg, nk, rounds, window * 1000);
	for (int rd = 0; rd < rounds; rd++) {
		for (int c = 0; c < ncfg; c++) {
			use_threads = cfg[c].threads;
			spin_idle = cfg[c].spin;
			for (int k = 0; k < nk; k++) {
				/* Rotate the order within a round so that no contender always runs
				 * right after the same one. */
				enum kind kk = ks[(k + rd) % nk];
				res[c][kk][rd] =
				    run_once(kk, cfg[c].np, cfg[c].nc, cfg[c].b, window);
			}
		}
		fprintf(stderr, "\rmpmc_bench: round %d/%d", rd + 1, rounds);
	}
	fprintf(stderr, "\n");
	printf("MPMC throughput, million elements/s: median [min-max] of %d rounds of %.0f ms; "
	       "%d CPUs; capacity %u; 8-byte elements;\nparticipant i pinned to CPU i mod %d; "
	       "procs = separate processes on MAP_SHARED memory, threads = one process;\n"
	       "idle: what a participant does when the ring is full or empty (yield the CPU, or "
	       "spin on a pause)\n",
	       rounds, window * 1000, ncpu, CAP, ncpu);
	printf("%-24s", "P/C, kind, burst, idle");
	for (int k = 0; k < nk; k++)
		printf(" %21s", kname[ks[k]]);
	printf("%s\n", npeer ? "  SCQ/best peer  runs/best peer" : "");
	for (int c = 0; c < ncfg; c++) {
		char name[40];
		cfg_name(&cfg[c], name);
		printf("%-24s", name);
		double med[K_N], peer = 0;
		for (int i = 0; i < nk; i++) {
			enum kind k = ks[i];
			double v[99];
			int n = 0, failed = 0;
			for (int rd = 0; rd < rounds; rd++) {
				if (res[c][k][rd] < 0)
					failed = 1;
				else
					v[n++] = res[c][k][rd];
			}
			if (failed || n == 0) {
				printf(" %21s", "FAILED");
				med[k] = 0;
				continue;
			}
			qsort(v, (size_t)n, sizeof(double), cmp);
			med[k] = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
			char cell[40];
			snprintf(cell, sizeof(cell), "%.2f [%.2f-%.2f]", med[k], v[0], v[n - 1]);
			printf(" %21s", cell);
			if (!ours(k) && med[k] > peer)
				peer = med[k];
		}
		if (npeer && peer > 0) {
			printf("  %12.2fx  %13.2fx", med[K_SHMRING] / peer, med[K_RUNS] / peer);
		} else if (npeer) {
			printf("  -");
		}
		printf("\n");
	}
	one_core(rounds, quick ? 1 << 18 : 1 << 21, only_ours);
	return 0;
}

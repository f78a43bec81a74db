/* SPDX-License-Identifier: MIT */
/*
 * MPMC throughput across processes (and threads, oversubscribed): shmring's MPMC ring against
 * DPDK rte_ring (MP/MC, RTS, HTS; rte_ring_init on memory we map, no EAL) and Concurrency Kit's
 * ck_ring mpmc. 8-byte elements, capacity 1024. Each configuration: P producers push N elements
 * each (burst b), C consumers pop until all are counted; best of 3 runs. Prints Mops/s and the
 * ratio of shmring to the best peer measured in the same run.
 *
 * Build (from the repository root, after building libshmring.a in build-mpmc):
 *   gcc -O2 -std=gnu11 -D_GNU_SOURCE -Iinclude $(pkg-config --cflags libdpdk) \
 *       bench/mpmc_bench.c build-mpmc/libshmring.a -lrte_ring -lrte_eal -lck \
 *       $(pkg-config --libs liburcu-bp liburcu-cds) -lpthread -lrt -o build-mpmc/mpmc_bench
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

#define CAP 1024u

enum kind { K_SHMRING, K_RTE_MPMC, K_RTE_RTS, K_RTE_HTS, K_CK, K_N };
static const char *kname[K_N] = {"shmring mpmc", "rte_ring MP/MC", "rte_ring RTS", "rte_ring HTS",
				 "ck_ring mpmc"};

struct shared {
	_Atomic uint64_t popped;
	_Atomic int go;
	ck_ring_t ck;
	_Alignas(128) ck_ring_buffer_t ckbuf[CAP];
	_Alignas(128) unsigned char rte[1 << 20];
};

static struct shared *sh;
static struct shmring *ring; /* creator's handle (anon); children attach their own */
static enum kind cur;
static uint64_t per_prod, total;
static unsigned burst;
static int use_threads;

static struct shmring *my_handle(void)
{
	size_t len;
	void *base = shmring_base(ring, &len);
	struct shmring_params e = {.kind = SHMRING_MPMC};
	struct shmring *h = NULL;
	if (shmring_attach(base, len, &e, &h) != 0)
		abort();
	return h;
}

static void producer(void)
{
	struct shmring *h = cur == K_SHMRING ? my_handle() : NULL;
	struct rte_ring *rr = (struct rte_ring *)sh->rte;
	uint64_t buf[32];
	void *pb[32];
	while (!atomic_load(&sh->go))
		;
	for (uint64_t i = 0; i < per_prod;) {
		unsigned n = burst;
		if (per_prod - i < n)
			n = (unsigned)(per_prod - i);
		for (unsigned k = 0; k < n; k++) {
			buf[k] = i + k + 1;
			pb[k] = (void *)(uintptr_t)(i + k + 1);
		}
		int got;
		switch (cur) {
		case K_SHMRING:
			got = n == 1 ? (shmring_mpmc_push(h, buf) == 0)
				     : shmring_mpmc_push_burst(h, buf, n);
			break;
		case K_CK:
			got = 0;
			while ((unsigned)got < n &&
			       ck_ring_enqueue_mpmc(&sh->ck, sh->ckbuf, pb[got]))
				got++;
			break;
		default:
			got = (int)rte_ring_enqueue_burst(rr, pb, n, NULL);
		}
		if (got > 0)
			i += (uint64_t)got;
		else
			sched_yield();
	}
	if (h)
		shmring_close(h);
}

static void consumer(void)
{
	struct shmring *h = cur == K_SHMRING ? my_handle() : NULL;
	struct rte_ring *rr = (struct rte_ring *)sh->rte;
	uint64_t buf[32];
	void *pb[32];
	while (!atomic_load(&sh->go))
		;
	while (atomic_load_explicit(&sh->popped, memory_order_relaxed) < total) {
		int got;
		switch (cur) {
		case K_SHMRING:
			got = burst == 1 ? (shmring_mpmc_pop(h, buf) == 0)
					 : shmring_mpmc_pop_burst(h, buf, burst);
			break;
		case K_CK:
			got = 0;
			while ((unsigned)got < burst &&
			       ck_ring_dequeue_mpmc(&sh->ck, sh->ckbuf, &pb[got]))
				got++;
			break;
		default:
			got = (int)rte_ring_dequeue_burst(rr, pb, burst, NULL);
		}
		if (got > 0)
			atomic_fetch_add_explicit(&sh->popped, (uint64_t)got, memory_order_relaxed);
		else
			sched_yield();
	}
	if (h)
		shmring_close(h);
}

static void *thr_prod(void *a)
{
	(void)a;
	producer();
	return NULL;
}
static void *thr_cons(void *a)
{
	(void)a;
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
	atomic_store(&sh->popped, 0);
	atomic_store(&sh->go, 0);
	switch (k) {
	case K_SHMRING: {
		struct shmring_params p = {.kind = SHMRING_MPMC, .elem_size = 8, .capacity = CAP};
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
	return rte_ring_init(rr, "mpmc_bench", CAP, flags);
}

/* Mops/s for one configuration (one run). */
static double run_once(enum kind k, int np, int nc, unsigned b)
{
	cur = k;
	burst = b;
	total = per_prod * (uint64_t)np;
	if (setup(k) != 0) {
		fprintf(stderr, "setup of %s failed\n", kname[k]);
		return 0;
	}
	pid_t pids[16];
	pthread_t tids[16];
	for (int i = 0; i < np + nc; i++) {
		if (use_threads) {
			pthread_create(&tids[i], NULL, i < np ? thr_prod : thr_cons, NULL);
		} else if ((pids[i] = fork()) == 0) {
			if (i < np)
				producer();
			else
				consumer();
			_exit(0);
		}
	}
	usleep(20000);
	double t0 = now();
	atomic_store(&sh->go, 1);
	for (int i = 0; i < np + nc; i++) {
		if (use_threads)
			pthread_join(tids[i], NULL);
		else
			waitpid(pids[i], NULL, 0);
	}
	double dt = now() - t0;
	if (k == K_SHMRING) {
		shmring_close(ring);
		ring = NULL;
	}
	return (double)total / dt / 1e6;
}

int main(int argc, char **argv)
{
	per_prod = argc > 1 ? strtoull(argv[1], NULL, 10) : 200000;
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED)
		return 1;
	struct {
		int np, nc, threads;
	} cfg[] = {{1, 1, 0}, {2, 2, 0}, {4, 4, 0}, {4, 4, 1}};
	unsigned bursts[] = {1, 32};
	printf("MPMC throughput, Mops/s (best of 3), %ld CPUs, capacity %u, 8-byte elements, "
	       "%lu elements per producer\n",
	       sysconf(_SC_NPROCESSORS_ONLN), CAP, (unsigned long)per_prod);
	printf("%-22s", "config");
	for (int k = 0; k < K_N; k++)
		printf(" %15s", kname[k]);
	printf("  shmring/best-peer\n");
	for (unsigned c = 0; c < sizeof(cfg) / sizeof(cfg[0]); c++) {
		for (unsigned bi = 0; bi < 2; bi++) {
			use_threads = cfg[c].threads;
			double best[K_N] = {0};
			for (int rep = 0; rep < 3; rep++)
				for (int k = 0; k < K_N; k++) {
					double v = run_once((enum kind)k, cfg[c].np, cfg[c].nc,
							    bursts[bi]);
					if (v > best[k])
						best[k] = v;
				}
			char name[64];
			snprintf(name, sizeof(name), "%d/%d %s b=%u", cfg[c].np, cfg[c].nc,
				 cfg[c].threads ? "threads" : "procs", bursts[bi]);
			printf("%-22s", name);
			double peer = 0;
			for (int k = 0; k < K_N; k++) {
				printf(" %15.2f", best[k]);
				if (k != K_SHMRING && best[k] > peer)
					peer = best[k];
			}
			printf("  %.2fx\n", best[K_SHMRING] / peer);
			fflush(stdout);
		}
	}
	return 0;
}

/* SPDX-License-Identifier: MIT */
/*
 * DPDK rte_ring on shared memory, without the EAL: rte_ring_get_memsize_elem() sizes the ring,
 * rte_ring_init() lays it out in memory we mapped, and the _elem burst calls copy whole
 * elements in and out (esize is any multiple of 4), so the work matches shmring's. The mode
 * (SP/SC, MP/MC, RTS, HTS) is a flag of the ring; the generic burst calls dispatch on it.
 * A ring of count n holds n - 1 elements (no RING_F_EXACT_SZ).
 */
#include <stdlib.h>

#include "bench.h"

#ifdef HAVE_DPDK
#include <rte_ring.h>
#include <rte_ring_elem.h>

struct rte_chan {
	struct rte_ring *r;
	size_t len;
	unsigned es;
};

static void *rte_create(unsigned flags, const struct bench_cfg *cfg, const char **why)
{
	ssize_t len = rte_ring_get_memsize_elem(cfg->es, (unsigned)cfg->cap);
	struct rte_chan *c;
	if (len < 0) {
		*why = "rte_ring_get_memsize_elem refused the geometry";
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	c->len = (size_t)len;
	c->r = bench_shm(c->len);
	c->es = cfg->es;
	if (rte_ring_init(c->r, "bench", (unsigned)cfg->cap, flags) < 0) {
		*why = "rte_ring_init failed";
		bench_shm_free(c->r, c->len);
		free(c);
		return NULL;
	}
	return c;
}

static void *rte_open(void *chan, int role)
{
	(void)role;
	return chan;
}

static int rte_send(void *side, const void *buf, unsigned n)
{
	struct rte_chan *c = side;
	return (int)rte_ring_enqueue_burst_elem(c->r, buf, c->es, n, NULL);
}

static int rte_recv(void *side, void *buf, unsigned n)
{
	struct rte_chan *c = side;
	return (int)rte_ring_dequeue_burst_elem(c->r, buf, c->es, n, NULL);
}

static void rte_close(void *side)
{
	(void)side;
}

static void rte_destroy(void *chan)
{
	struct rte_chan *c = chan;
	bench_shm_free(c->r, c->len);
	free(c);
}

#define MODE(fn, flags)                                                                            \
	static void *fn(const struct bench_cfg *cfg, const char **why)                             \
	{                                                                                          \
		return rte_create(flags, cfg, why);                                                \
	}
MODE(rte_spsc, RING_F_SP_ENQ | RING_F_SC_DEQ)
MODE(rte_mpmc, 0)
MODE(rte_rts, RING_F_MP_RTS_ENQ | RING_F_MC_RTS_DEQ)
MODE(rte_hts, RING_F_MP_HTS_ENQ | RING_F_MC_HTS_DEQ)

#define ROW(name, fn)                                                                              \
	{                                                                                          \
		name, 0, NULL, fn, rte_open, rte_send, rte_recv, rte_close, rte_destroy            \
	}
const struct contender bench_rte[] = {
    ROW("rte_ring SP/SC", rte_spsc),
    ROW("rte_ring MP/MC", rte_mpmc),
    ROW("rte_ring RTS", rte_rts),
    ROW("rte_ring HTS", rte_hts),
};
#else
#define WHY "dpdk-dev (pkg-config libdpdk) not found"
const struct contender bench_rte[] = {
    {"rte_ring SP/SC", 0, WHY, 0, 0, 0, 0, 0, 0},
    {"rte_ring MP/MC", 0, WHY, 0, 0, 0, 0, 0, 0},
    {"rte_ring RTS", 0, WHY, 0, 0, 0, 0, 0, 0},
    {"rte_ring HTS", 0, WHY, 0, 0, 0, 0, 0, 0},
};
#endif
const unsigned bench_rte_n = sizeof(bench_rte) / sizeof(bench_rte[0]);

/* SPDX-License-Identifier: MIT */
/*
 * liburcu's wait-free concurrent queue (wfcqueue), with threads: it links nodes by pointer, so
 * it cannot cross processes. It is unbounded; to do the same work as a bounded ring, nodes
 * come from a pool of cap nodes with the payload inline, node i is reused only after the
 * consumer has counted it out, and the producer sees "full" when cap nodes are in flight.
 */
#define _LGPL_SOURCE
#include <stdalign.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <urcu/wfcqueue.h>

#include "bench.h"

struct wq_node {
	struct cds_wfcq_node n;
	uint64_t idx;
	unsigned char data[];
};

struct wq_chan {
	struct __cds_wfcq_head head;
	alignas(128) struct cds_wfcq_tail tail;
	alignas(128) _Atomic uint64_t consumed;
	alignas(128) uint64_t produced, consumed_cache; /* producer's */
	unsigned char *pool;
	size_t nsz;
	uint64_t cap;
	unsigned es;
};

static void *wq_create(const struct bench_cfg *cfg, const char **why)
{
	struct wq_chan *c = aligned_alloc(128, sizeof(*c));
	(void)why;
	memset(c, 0, sizeof(*c));
	__cds_wfcq_init(&c->head, &c->tail);
	c->nsz = (sizeof(struct wq_node) + cfg->es + 63) / 64 * 64;
	c->pool = aligned_alloc(64, c->nsz * cfg->cap);
	memset(c->pool, 0, c->nsz * cfg->cap);
	c->cap = cfg->cap;
	c->es = cfg->es;
	return c;
}

static void *wq_open(void *chan, int role)
{
	(void)role;
	return chan;
}

static int wq_send(void *side, const void *buf, unsigned n)
{
	struct wq_chan *c = side;
	unsigned i;
	for (i = 0; i < n; i++) {
		if (c->produced - c->consumed_cache >= c->cap) {
			/* pairs with the release increment in wq_recv: the node is free */
			c->consumed_cache =
			    atomic_load_explicit(&c->consumed, memory_order_acquire);
			if (c->produced - c->consumed_cache >= c->cap)
				break;
		}
		struct wq_node *nd = (void *)(c->pool + (c->produced % c->cap) * c->nsz);
		cds_wfcq_node_init(&nd->n);
		memcpy(nd->data, (const char *)buf + (size_t)i * c->es, c->es);
		cds_wfcq_enqueue(&c->head, &c->tail, &nd->n);
		c->produced++;
	}
	return (int)i;
}

static int wq_recv(void *side, void *buf, unsigned n)
{
	struct wq_chan *c = side;
	unsigned i;
	for (i = 0; i < n; i++) {
		struct cds_wfcq_node *x = __cds_wfcq_dequeue_nonblocking(&c->head, &c->tail);
		if (!x || x == CDS_WFCQ_WOULDBLOCK)
			break;
		struct wq_node *nd = caa_container_of(x, struct wq_node, n);
		memcpy((char *)buf + (size_t)i * c->es, nd->data, c->es);
		atomic_fetch_add_explicit(&c->consumed, 1, memory_order_release);
	}
	return (int)i;
}

static void wq_close(void *side)
{
	(void)side;
}

static void wq_destroy(void *chan)
{
	struct wq_chan *c = chan;
	free(c->pool);
	free(c);
}

const struct contender bench_urcu = {"urcu wfcqueue", BENCH_THREADS, NULL,     wq_create, wq_open,
				     wq_send,	      wq_recv,	     wq_close, wq_destroy};

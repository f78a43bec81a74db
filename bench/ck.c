/* SPDX-License-Identifier: MIT */
/*
 * Concurrency Kit ck_ring, SPSC, on shared memory: struct ck_ring and the slot array both live
 * in the mapping, and the typed API (CK_RING_PROTOTYPE) copies whole elements in and out, as
 * shmring does. ck_ring has no burst call, so a burst is a loop of single operations, and a
 * ring of size n holds n - 1 elements.
 */
#include <stdlib.h>

#include "bench.h"

#ifdef HAVE_CK
#include <ck_ring.h>

#define SIZES(X) X(8) X(64) X(256) X(1024)
#define DECL(N)                                                                                    \
	struct e##N {                                                                              \
		unsigned char b[N];                                                                \
	};                                                                                         \
	CK_RING_PROTOTYPE(e##N, e##N)
SIZES(DECL)

struct ck_chan {
	struct ck_ring *ring;
	void *buf;
	size_t len;
	unsigned es;
};

static void *ck_create(const struct bench_cfg *cfg, const char **why)
{
	struct ck_chan *c = calloc(1, sizeof(*c));
	if (cfg->es != 8 && cfg->es != 64 && cfg->es != 256 && cfg->es != 1024) {
		*why = "element size not instantiated";
		free(c);
		return NULL;
	}
	c->len = 4096 + cfg->cap * cfg->es;
	c->ring = bench_shm(c->len);
	c->buf = (char *)c->ring + 4096;
	c->es = cfg->es;
	ck_ring_init(c->ring, (unsigned)cfg->cap);
	return c;
}

static void *ck_open(void *chan, int role)
{
	(void)role;
	return chan;
}

#define SEND(N)                                                                                    \
	case N:                                                                                    \
		for (i = 0; i < n; i++)                                                            \
			if (!ck_ring_enqueue_spsc_e##N(c->ring, c->buf,                            \
						       (struct e##N *)((char *)buf + i * N)))      \
				break;                                                             \
		break;
#define RECV(N)                                                                                    \
	case N:                                                                                    \
		for (i = 0; i < n; i++)                                                            \
			if (!ck_ring_dequeue_spsc_e##N(c->ring, c->buf,                            \
						       (struct e##N *)((char *)buf + i * N)))      \
				break;                                                             \
		break;

static int ck_send(void *side, const void *buf, unsigned n)
{
	struct ck_chan *c = side;
	unsigned i = 0;
	switch (c->es) {
		SIZES(SEND)
	}
	return (int)i;
}

static int ck_recv(void *side, void *buf, unsigned n)
{
	struct ck_chan *c = side;
	unsigned i = 0;
	switch (c->es) {
		SIZES(RECV)
	}
	return (int)i;
}

static void ck_close(void *side)
{
	(void)side;
}

static void ck_destroy(void *chan)
{
	struct ck_chan *c = chan;
	bench_shm_free(c->ring, c->len);
	free(c);
}

const struct contender bench_ck[] = {
    {"ck_ring spsc", 0, NULL, ck_create, ck_open, ck_send, ck_recv, ck_close, ck_destroy},
};
#else
const struct contender bench_ck[] = {
    {"ck_ring spsc", 0, "libck-dev not found by pkg-config (ck)", 0, 0, 0, 0, 0, 0},
};
#endif
const unsigned bench_ck_n = sizeof(bench_ck) / sizeof(bench_ck[0]);

/* SPDX-License-Identifier: MIT */
/*
 * shmring's own rows, and the textbook ring used as a fixed baseline. Both live in the same
 * kind of memory as every peer (bench_shm), so the layout of the ring is the only difference.
 */
#include <errno.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <shmring/shmring.h>

#include "bench.h"

struct sr_chan {
	void *mem;
	size_t len;
	struct shmring_params p;
};

static void *sr_create(const struct bench_cfg *cfg, const char **why)
{
	struct sr_chan *c = calloc(1, sizeof(*c));
	c->p.kind = SHMRING_SPSC;
	c->p.elem_size = cfg->es;
	c->p.capacity = cfg->cap;
	ssize_t len = shmring_memsize(&c->p);
	if (len < 0) {
		*why = shmring_strerror((int)len);
		free(c);
		return NULL;
	}
	c->len = (size_t)len;
	c->mem = bench_shm(c->len);
	int rc = shmring_init(c->mem, c->len, &c->p);
	if (rc < 0) {
		*why = shmring_strerror(rc);
		free(c);
		return NULL;
	}
	return c;
}

static void *sr_open(void *chan, int role)
{
	struct sr_chan *c = chan;
	struct shmring *r = NULL;
	(void)role;
	if (shmring_attach(c->mem, c->len, &c->p, &r) < 0)
		return NULL;
	return r;
}

/* Single-element calls for n == 1, as a user moving one message at a time would write it. */
static int sr_send(void *side, const void *buf, unsigned n)
{
	int rc = n == 1 ? shmring_spsc_push(side, buf) : shmring_spsc_push_burst(side, buf, n);
	if (rc == -EAGAIN)
		return 0;
	return n == 1 && rc == 0 ? 1 : rc;
}

static int sr_recv(void *side, void *buf, unsigned n)
{
	int rc = n == 1 ? shmring_spsc_pop(side, buf) : shmring_spsc_pop_burst(side, buf, n);
	if (rc == -EAGAIN)
		return 0;
	return n == 1 && rc == 0 ? 1 : rc;
}

static void sr_close(void *side)
{
	shmring_close(side);
}

static void sr_destroy(void *chan)
{
	struct sr_chan *c = chan;
	bench_shm_free(c->mem, c->len);
	free(c);
}

/* ---- the other kinds: the same channel, another kind and other calls ------------------- */

static void *sr_create_kind(uint32_t kind, const struct bench_cfg *cfg, const char **why)
{
	struct bench_cfg c = *cfg;
	if (kind == SHMRING_MSG) {
		/* capacity in bytes: cap records of header + payload, and room for the largest
		 * message, which may be at most a quarter of the ring */
		uint64_t b = 64;
		while (b < cfg->cap * (8 + (cfg->es + 7) / 8 * 8) || b / 4 - 8 < cfg->es)
			b *= 2;
		c.cap = b;
		c.es = 1;
	}
	struct sr_chan *ch = sr_create(&c, why);
	if (ch && kind != SHMRING_SPSC) {
		/* sr_create wrote an SPSC ring: rewrite it as the kind asked for */
		ch->p.kind = kind;
		ssize_t len = shmring_memsize(&ch->p);
		int rc = len < 0 ? (int)len : 0;
		if (!rc && (size_t)len > ch->len) {
			bench_shm_free(ch->mem, ch->len);
			ch->len = (size_t)len;
			ch->mem = bench_shm(ch->len);
		}
		if (!rc)
			rc = shmring_init(ch->mem, ch->len, &ch->p);
		if (rc) {
			*why = shmring_strerror(rc);
			sr_destroy(ch);
			return NULL;
		}
	}
	return ch;
}

static void *mp_create(const struct bench_cfg *cfg, const char **why)
{
	return sr_create_kind(SHMRING_MPMC, cfg, why);
}

static int mp_send(void *side, const void *buf, unsigned n)
{
	int rc = n == 1 ? shmring_mpmc_push(side, buf) : shmring_mpmc_push_burst(side, buf, n);
	if (rc == -EAGAIN)
		return 0;
	return n == 1 && rc == 0 ? 1 : rc;
}

static int mp_recv(void *side, void *buf, unsigned n)
{
	int rc = n == 1 ? shmring_mpmc_pop(side, buf) : shmring_mpmc_pop_burst(side, buf, n);
	if (rc == -EAGAIN)
		return 0;
	return n == 1 && rc == 0 ? 1 : rc;
}

struct msg_side {
	struct shmring *r;
	unsigned es;
};

/* The message size of the current measurement. The handle has no room for it, and each
 * measurement runs in processes of its own, so a global is enough. */
static unsigned ms_es;

static void *ms_create(const struct bench_cfg *cfg, const char **why)
{
	ms_es = cfg->es;
	return sr_create_kind(SHMRING_MSG, cfg, why);
}

/* Each element is one message of es bytes. */
static int ms_send(void *side, const void *buf, unsigned n)
{
	struct shmring_msgvec v[64];
	int rc;
	if (n == 1) {
		rc = shmring_msg_send(side, buf, ms_es, 0);
		return rc == -EAGAIN ? 0 : rc == 0 ? 1 : rc;
	}
	n = n > 64 ? 64 : n;
	for (unsigned i = 0; i < n; i++)
		v[i] = (struct shmring_msgvec){(char *)buf + (size_t)i * ms_es, ms_es, 0, ms_es, 0};
	rc = shmring_msg_send_burst(side, v, n);
	return rc == -EAGAIN ? 0 : rc;
}

static int ms_recv(void *side, void *buf, unsigned n)
{
	struct shmring_msgvec v[64];
	int rc;
	if (n == 1) {
		rc = shmring_msg_recv(side, buf, ms_es, NULL);
		return rc == -EAGAIN ? 0 : rc == (int)ms_es ? 1 : rc < 0 ? rc : -EPROTO;
	}
	n = n > 64 ? 64 : n;
	for (unsigned i = 0; i < n; i++)
		v[i] = (struct shmring_msgvec){(char *)buf + (size_t)i * ms_es, 0, 0, ms_es, 0};
	rc = shmring_msg_recv_burst(side, v, n);
	return rc == -EAGAIN ? 0 : rc;
}

/* Blocking calls (sync.h): spin a bounded time, then sleep on the futex; no deadline. */
static int bl_send(void *side, const void *buf, unsigned n)
{
	if (n > 1)
		return shmring_spsc_push_burst_wait(side, buf, n, NULL);
	int rc = shmring_spsc_push_wait(side, buf, NULL);
	return rc ? rc : 1;
}

static int bl_recv(void *side, void *buf, unsigned n)
{
	if (n > 1)
		return shmring_spsc_pop_burst_wait(side, buf, n, NULL);
	int rc = shmring_spsc_pop_wait(side, buf, NULL);
	return rc ? rc : 1;
}

/* bench.c picks these by index for its suites: keep the order. */
const struct contender bench_shmring[] = {
    {"shmring", 0, NULL, sr_create, sr_open, sr_send, sr_recv, sr_close, sr_destroy},
    {"shmring mpmc", 0, NULL, mp_create, sr_open, mp_send, mp_recv, sr_close, sr_destroy},
    {"shmring msg", 0, NULL, ms_create, sr_open, ms_send, ms_recv, sr_close, sr_destroy},
    {"shmring blocking", BENCH_BLOCKING, NULL, sr_create, sr_open, bl_send, bl_recv, sr_close,
     sr_destroy},
};
const unsigned bench_shmring_n = sizeof(bench_shmring) / sizeof(bench_shmring[0]);

/*
 * Textbook (Lamport) ring: head and tail on their own lines, but every operation reloads the
 * other side's index, so each push and pop pulls a line that the peer keeps writing. Bursts
 * are a loop of single operations. This is the fixed point that does not change when
 * shmring does.
 */
struct tb_ring {
	alignas(128) _Atomic uint64_t head;
	alignas(128) _Atomic uint64_t tail;
	alignas(128) unsigned char data[];
};

struct tb_chan {
	struct tb_ring *r;
	size_t len;
	uint64_t mask;
	unsigned es;
};

static void *tb_create(const struct bench_cfg *cfg, const char **why)
{
	struct tb_chan *c = calloc(1, sizeof(*c));
	(void)why;
	c->len = sizeof(struct tb_ring) + cfg->cap * cfg->es;
	c->r = bench_shm(c->len);
	c->mask = cfg->cap - 1;
	c->es = cfg->es;
	return c;
}

static void *tb_open(void *chan, int role)
{
	(void)role;
	return chan;
}

static int tb_send(void *side, const void *buf, unsigned n)
{
	struct tb_chan *c = side;
	unsigned i;
	for (i = 0; i < n; i++) {
		uint64_t t = atomic_load_explicit(&c->r->tail, memory_order_relaxed);
		/* pairs with the release store of head in tb_recv: slot is free */
		if (t - atomic_load_explicit(&c->r->head, memory_order_acquire) > c->mask)
			break;
		memcpy(c->r->data + (t & c->mask) * c->es, (const char *)buf + i * c->es, c->es);
		/* pairs with the acquire load of tail in tb_recv: slot is written */
		atomic_store_explicit(&c->r->tail, t + 1, memory_order_release);
	}
	return (int)i;
}

static int tb_recv(void *side, void *buf, unsigned n)
{
	struct tb_chan *c = side;
	unsigned i;
	for (i = 0; i < n; i++) {
		uint64_t h = atomic_load_explicit(&c->r->head, memory_order_relaxed);
		/* pairs with the release store of tail in tb_send */
		if (atomic_load_explicit(&c->r->tail, memory_order_acquire) == h)
			break;
		memcpy((char *)buf + i * c->es, c->r->data + (h & c->mask) * c->es, c->es);
		/* pairs with the acquire load of head in tb_send */
		atomic_store_explicit(&c->r->head, h + 1, memory_order_release);
	}
	return (int)i;
}

static void tb_close(void *side)
{
	(void)side;
}

static void tb_destroy(void *chan)
{
	struct tb_chan *c = chan;
	bench_shm_free(c->r, c->len);
	free(c);
}

const struct contender bench_textbook = {"textbook", 0,	      NULL,	tb_create, tb_open,
					 tb_send,    tb_recv, tb_close, tb_destroy};

/*
 * eventfd + shared memory: shmring carries the data, and the consumer sleeps in read() on an
 * eventfd when the ring is empty; the producer writes the eventfd after every push, as a
 * design without a waiter flag must. Shows what a system call per message costs over the
 * same ring.
 */
struct ev_chan {
	struct sr_chan *sr;
	int efd;
};

struct ev_side {
	struct shmring *r;
	int efd;
};

static void *ev_create(const struct bench_cfg *cfg, const char **why)
{
	struct ev_chan *c = calloc(1, sizeof(*c));
	c->sr = sr_create(cfg, why);
	c->efd = eventfd(0, 0);
	if (!c->sr || c->efd < 0) {
		free(c);
		return NULL;
	}
	return c;
}

static void *ev_open(void *chan, int role)
{
	struct ev_chan *c = chan;
	struct ev_side *s = calloc(1, sizeof(*s));
	s->r = sr_open(c->sr, role);
	s->efd = c->efd;
	return s->r ? s : NULL;
}

static int ev_send(void *side, const void *buf, unsigned n)
{
	struct ev_side *s = side;
	uint64_t one = 1;
	int k = sr_send(s->r, buf, n);
	if (k > 0 && write(s->efd, &one, 8) != 8)
		return -errno;
	return k;
}

static int ev_recv(void *side, void *buf, unsigned n)
{
	struct ev_side *s = side;
	uint64_t v;
	int k;
	/* the eventfd counter keeps every post, so a wake-up between pop and read is not lost */
	while ((k = sr_recv(s->r, buf, n)) == 0)
		if (read(s->efd, &v, 8) != 8)
			return -errno;
	return k;
}

static void ev_close(void *side)
{
	struct ev_side *s = side;
	shmring_close(s->r);
	free(s);
}

static void ev_destroy(void *chan)
{
	struct ev_chan *c = chan;
	close(c->efd);
	sr_destroy(c->sr);
	free(c);
}

const struct contender bench_eventfd_shm = {"eventfd+shm", BENCH_BLOCKING, NULL,
					    ev_create,	   ev_open,	   ev_send,
					    ev_recv,	   ev_close,	   ev_destroy};

/* SPDX-License-Identifier: MIT */
/*
 * ZeroMQ PUSH/PULL over ipc:// (a Unix socket underneath). A burst is one message of n
 * elements. Each side has its own context, so each process also runs ZeroMQ's I/O thread,
 * which inherits the side's CPU pinning.
 */
#include <stdio.h>
#include <stdlib.h>

#include "bench.h"

#ifdef HAVE_ZMQ
#include <errno.h>
#include <zmq.h>

struct zq_chan {
	char ep[128];
	unsigned es;
};

struct zq_side {
	void *ctx, *sock;
	unsigned es;
};

static void *zq_create(const struct bench_cfg *cfg, const char **why)
{
	struct zq_chan *c = calloc(1, sizeof(*c));
	(void)why;
	snprintf(c->ep, sizeof(c->ep), "ipc:///tmp/%s", cfg->name);
	c->es = cfg->es;
	return c;
}

static void *zq_open(void *chan, int role)
{
	struct zq_chan *c = chan;
	struct zq_side *s = calloc(1, sizeof(*s));
	s->es = c->es;
	s->ctx = zmq_ctx_new();
	s->sock = zmq_socket(s->ctx, role == BENCH_PROD ? ZMQ_PUSH : ZMQ_PULL);
	/* the two sides start together: a connect that beats the bind retries after this
	 * (100 ms by default, which would land inside the timed part) */
	int ivl = 1;
	if (s->sock)
		zmq_setsockopt(s->sock, ZMQ_RECONNECT_IVL, &ivl, sizeof(ivl));
	if (!s->sock ||
	    (role == BENCH_PROD ? zmq_bind(s->sock, c->ep) : zmq_connect(s->sock, c->ep))) {
		zmq_ctx_term(s->ctx);
		free(s);
		return NULL;
	}
	return s;
}

static int zq_send(void *side, const void *buf, unsigned n)
{
	struct zq_side *s = side;
	return zmq_send(s->sock, buf, (size_t)n * s->es, 0) < 0 ? -zmq_errno() : (int)n;
}

static int zq_recv(void *side, void *buf, unsigned n)
{
	struct zq_side *s = side;
	int r = zmq_recv(s->sock, buf, (size_t)n * s->es, 0);
	return r < 0 ? -zmq_errno() : r / (int)s->es;
}

static void zq_close(void *side)
{
	struct zq_side *s = side;
	/* default linger: the producer's last messages may still be queued in its I/O thread */
	zmq_close(s->sock);
	zmq_ctx_term(s->ctx);
	free(s);
}

static void zq_destroy(void *chan)
{
	struct zq_chan *c = chan;
	remove(c->ep + 6);
	free(c);
}

const struct contender bench_zmq = {"zeromq ipc", BENCH_BLOCKING, NULL,	    zq_create, zq_open,
				    zq_send,	  zq_recv,	  zq_close, zq_destroy};
#else
const struct contender bench_zmq = {
    "zeromq ipc", 0, "libzmq3-dev (pkg-config libzmq) not found", 0, 0, 0, 0, 0, 0};
#endif

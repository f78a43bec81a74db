/* SPDX-License-Identifier: MIT */
/*
 * The runner. It builds a plan of cells (one contender, one parameter set, one measurement
 * kind), then runs round after round, each round running every cell once, so that a burst of
 * load from elsewhere on the machine lands on all contenders alike rather than on one. Round 0
 * calibrates the amount of work and is discarded.
 *
 * Every measurement runs in a child process of its own (its process group is killed if it
 * overruns), which creates the channel and starts the producer and the consumer as two
 * processes (or two threads, for peers that only work in one address space) pinned to CPU 0
 * and CPU 1 (the first two that the affinity mask allows: pin.h). The consumer checks every
 * element's sequence number, in every contender.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

#define MAX_ROUNDS  64
#define MAX_CELLS   1024
#define MAX_METRICS 4

/* ---- log-linear histogram: 32 linear steps per power of two, about 3% resolution -------- */

#define H_SUB	  32
#define H_BUCKETS (2 * H_SUB + 58 * H_SUB)

struct hist {
	uint64_t n, max;
	uint32_t b[H_BUCKETS];
};

static unsigned h_index(uint64_t v)
{
	if (v < 2 * H_SUB)
		return (unsigned)v;
	unsigned k = 63 - (unsigned)__builtin_clzll(v); /* k >= 6 */
	return 2 * H_SUB + (k - 6) * H_SUB + (unsigned)((v >> (k - 5)) & (H_SUB - 1));
}

static uint64_t h_value(unsigned i)
{
	if (i < 2 * H_SUB)
		return i;
	unsigned k = (i - 2 * H_SUB) / H_SUB + 6, sub = (i - 2 * H_SUB) % H_SUB;
	/* middle of the bucket, so that the error is at most half a step either way */
	return ((uint64_t)(H_SUB + sub) << (k - 5)) + ((1ull << (k - 5)) >> 1);
}

static void h_add(struct hist *h, uint64_t v)
{
	h->b[h_index(v)]++;
	h->n++;
	if (v > h->max)
		h->max = v;
}

static double h_pct(const struct hist *h, double q)
{
	uint64_t rank = (uint64_t)ceil(q * (double)h->n), seen = 0;
	if (rank == 0)
		rank = 1;
	for (unsigned i = 0; i < H_BUCKETS; i++) {
		seen += h->b[i];
		if (seen >= rank)
			return (double)(h_value(i) < h->max ? h_value(i) : h->max);
	}
	return (double)h->max;
}

/* ---- the plan --------------------------------------------------------------------------- */

enum cell_kind { K_TPUT, K_RTT, K_OWL, K_CACHELINE, K_MEMCPY, K_FWAKE };

struct cell {
	const char *suite;
	const struct contender *c;
	const char *label; /* for the floors that are not channels */
	enum cell_kind kind;
	struct bench_cfg cfg;
	size_t bytes;	/* memcpy floor */
	double rate;	/* open loop: offered messages per second */
	uint64_t count; /* work per round, fixed after round 0 */
	char fail[160]; /* non-empty: failed, and why */
	unsigned nmet;
	const char *met[MAX_METRICS], *unit;
	double v[MAX_METRICS][MAX_ROUNDS];
	unsigned done;
	uint64_t spent_ns;	      /* wall time of all its measurements, overhead included */
	unsigned first_kept;	      /* index in v of the first round that counts */
	double r1_spent_s, r1_work_s; /* round 1: wall time, and the part that was work */
};

/* Shared with the children of one measurement. */
struct ctl {
	_Atomic int ready;
	_Atomic int received; /* throughput: the consumer has every element */
	uint64_t t_start, t_end;
	int err;
	char why[160];
	double out[MAX_METRICS];
	struct hist h;
};

static struct cell cells[MAX_CELLS];
static unsigned ncells;
static struct ctl *ctl;
static pid_t top_pid;
static int quick;
static const char *filter; /* run only contenders whose name contains this (debugging) */

/* ---- one side of a measurement ---------------------------------------------------------- */

struct side {
	const struct contender *c;
	struct cell *cell;
	void *chan[2];
	int which; /* 0: producer / pinger, 1: consumer / ponger */
};

static int side_fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	ctl->err = 1;
	vsnprintf(ctl->why, sizeof(ctl->why), fmt, ap);
	va_end(ap);
	return 1;
}

/* The payload: sequence number first, its complement last, so that a torn or misplaced copy
 * is caught as well as a lost or repeated element. */
static void fill(unsigned char *p, unsigned es, uint64_t seq)
{
	memcpy(p, &seq, 8);
	if (es >= 16) {
		uint64_t x = ~seq;
		memcpy(p + es - 8, &x, 8);
	}
}

static int check(const unsigned char *p, unsigned es, uint64_t seq)
{
	uint64_t a, b = ~seq;
	memcpy(&a, p, 8);
	if (a != seq)
		return side_fail("integrity: expected seq %llu, got %llu", (unsigned long long)seq,
				 (unsigned long long)a);
	if (es >= 16) {
		memcpy(&b, p + es - 8, 8);
		if (b != ~seq)
			return side_fail("integrity: torn element at seq %llu",
					 (unsigned long long)seq);
	}
	return 0;
}

static void barrier(void)
{
	atomic_fetch_add(&ctl->ready, 1);
	/* yield: the process that still has to arrive may need this CPU to get there */
	while (atomic_load(&ctl->ready) < 2)
		sched_yield();
}

static int send_all(const struct contender *c, void *h, const unsigned char *buf, unsigned n,
		    unsigned es)
{
	unsigned off = 0;
	while (off < n) {
		int k = c->send(h, buf + (size_t)off * es, n - off);
		if (k < 0)
			return side_fail("send: %s", strerror(-k));
		if (k == 0)
			bench_relax();
		off += (unsigned)k;
	}
	return 0;
}

static int recv_one(const struct contender *c, void *h, unsigned char *buf)
{
	for (;;) {
		int k = c->recv(h, buf, 1);
		if (k < 0)
			return side_fail("recv: %s", strerror(-k));
		if (k > 0)
			return 0;
		bench_relax();
	}
}

static int run_side(struct side *s)
{
	const struct contender *c = s->c;
	struct cell *cl = s->cell;
	unsigned es = cl->cfg.es, b = cl->cfg.burst;
	uint64_t n = cl->count;
	int rc = 0;
	void *h[2] = {NULL, NULL};
	unsigned char *buf = aligned_alloc(64, ((size_t)b * es + 63) / 64 * 64);
	struct hist *hist = calloc(1, sizeof(*hist));

	memset(buf, 0, (size_t)b * es);
	if (cl->kind == K_RTT) {
		/* pinger sends on 0 and receives on 1; the ponger the other way round */
		h[0] = c->open(s->chan[0], s->which ? BENCH_CONS : BENCH_PROD);
		h[1] = c->open(s->chan[1], s->which ? BENCH_PROD : BENCH_CONS);
		if (!h[0] || !h[1])
			return side_fail("%s: open failed", c->name);
	} else {
		h[0] = c->open(s->chan[0], s->which ? BENCH_CONS : BENCH_PROD);
		if (!h[0])
			return side_fail("%s: open failed", c->name);
	}
	barrier();

	if (cl->kind == K_TPUT && s->which == 0) {
		ctl->t_start = bench_now_ns();
		for (uint64_t seq = 0; seq < n && !rc;) {
			unsigned k = n - seq < b ? (unsigned)(n - seq) : b;
			for (unsigned i = 0; i < k; i++)
				fill(buf + (size_t)i * es, es, seq + i);
			rc = send_all(c, h[0], buf, k, es);
			seq += k;
		}
		/* Close only once the consumer has everything (or failed, or after 5 s). A ZeroMQ
		 * PUSH that closed and exited first, with the default (infinite) linger, left its
		 * PULL short of the last messages (one run: more than 10 000 of 10 089 arrived),
		 * and the run waited for them until its timeout, in 2 to 4 runs of 6. Outside the
		 * timed part. */
		for (uint64_t end = bench_now_ns() + 5000000000u;
		     !rc && !atomic_load(&ctl->received) && !ctl->err && bench_now_ns() < end;)
			usleep(100);
	} else if (cl->kind == K_TPUT) {
		for (uint64_t seq = 0; seq < n && !rc;) {
			int k = c->recv(h[0], buf, n - seq < b ? (unsigned)(n - seq) : b);
			if (k < 0)
				rc = side_fail("recv: %s", strerror(-k));
			if (k == 0)
				bench_relax();
			for (int i = 0; i < k && !rc; i++)
				rc = check(buf + (size_t)i * es, es, seq++);
		}
		ctl->t_end = bench_now_ns();
		atomic_store(&ctl->received, 1);
	} else if (cl->kind == K_RTT && s->which == 0) {
		for (uint64_t seq = 0; seq < n && !rc; seq++) {
			fill(buf, es, seq);
			uint64_t t0 = bench_now_ns();
			rc = send_all(c, h[0], buf, 1, es);
			if (!rc)
				rc = recv_one(c, h[1], buf);
			h_add(hist, bench_now_ns() - t0);
			if (!rc)
				rc = check(buf, es, seq);
		}
	} else if (cl->kind == K_RTT) {
		for (uint64_t seq = 0; seq < n && !rc; seq++) {
			rc = recv_one(c, h[0], buf);
			if (!rc)
				rc = send_all(c, h[1], buf, 1, es);
		}
	} else if (cl->kind == K_OWL && s->which == 0) {
		/* Open loop: message i is due at base + i * period whatever happened before, and
		 * carries that due time, so a stall delays every message behind it and shows up
		 * in their latency (no coordinated omission). */
		double period = 1e9 / cl->rate;
		uint64_t base = bench_now_ns() + 100000;
		for (uint64_t seq = 0; seq < n && !rc; seq++) {
			uint64_t due = base + (uint64_t)(period * (double)seq);
			while (bench_now_ns() < due)
				bench_relax();
			fill(buf, es, seq);
			memcpy(buf + 8, &due, 8);
			rc = send_all(c, h[0], buf, 1, es);
		}
	} else if (cl->kind == K_OWL) {
		for (uint64_t seq = 0; seq < n && !rc; seq++) {
			uint64_t due;
			rc = recv_one(c, h[0], buf);
			uint64_t t = bench_now_ns();
			if (rc || (rc = check(buf, es, seq)))
				break;
			memcpy(&due, buf + 8, 8);
			h_add(hist, t > due ? t - due : 0);
		}
	}
	if (hist->n)
		ctl->h = *hist;
	for (int i = 0; i < 2; i++)
		if (h[i])
			c->close(h[i]);
	free(buf);
	free(hist);
	return rc;
}

static void *side_thread(void *arg)
{
	struct side *s = arg;
	bench_pin(s->which);
	return (void *)(intptr_t)run_side(s);
}

/* In the measurement's own process: create, start both sides, wait, destroy. */
static int measure_channel(struct cell *cl)
{
	const struct contender *c = cl->c;
	struct side s[2];
	struct bench_cfg cfg[2] = {cl->cfg, cl->cfg};
	char nm[2][64];
	const char *why = "create failed";
	void *chan[2] = {NULL, NULL};
	int nchan = cl->kind == K_RTT ? 2 : 1, rc = 0;

	for (int i = 0; i < nchan; i++) {
		snprintf(nm[i], sizeof(nm[i]), "shmrb-%d-%d-%c", (int)top_pid, (int)getpid(),
			 'a' + i);
		cfg[i].name = nm[i];
		if (cl->kind != K_TPUT)
			cfg[i].burst = 1;
		chan[i] = c->create(&cfg[i], &why);
		if (!chan[i])
			return side_fail("%s", why);
	}
	for (int i = 0; i < 2; i++)
		s[i] = (struct side){c, cl, {chan[0], chan[1]}, i};

	if (c->flags & BENCH_THREADS) {
		pthread_t t[2];
		void *r;
		for (int i = 0; i < 2; i++)
			pthread_create(&t[i], NULL, side_thread, &s[i]);
		for (int i = 0; i < 2; i++) {
			pthread_join(t[i], &r);
			rc |= (int)(intptr_t)r;
		}
	} else {
		pid_t pid[2];
		for (int i = 0; i < 2; i++) {
			pid[i] = fork();
			if (pid[i] == 0) {
				bench_pin(i);
				_exit(run_side(&s[i]));
			}
		}
		for (int i = 0; i < 2; i++) {
			int st;
			waitpid(pid[i], &st, 0);
			if (!WIFEXITED(st) || WEXITSTATUS(st))
				rc = ctl->err ? 1 : side_fail("side %d died (status %#x)", i, st);
		}
	}
	for (int i = 0; i < nchan; i++)
		c->destroy(chan[i]);
	if (rc || ctl->err)
		return 1;
	if (cl->kind == K_TPUT) {
		ctl->out[0] = (double)cl->count * 1e3 / (double)(ctl->t_end - ctl->t_start);
	} else {
		ctl->out[0] = h_pct(&ctl->h, 0.50);
		ctl->out[1] = h_pct(&ctl->h, 0.99);
		ctl->out[2] = h_pct(&ctl->h, 0.999);
		ctl->out[3] = (double)ctl->h.max;
	}
	return 0;
}

static int measure_in_child(struct cell *cl)
{
	switch (cl->kind) {
	case K_CACHELINE:
		ctl->out[0] = bench_floor_cacheline_ns(cl->count);
		return 0;
	case K_MEMCPY:
		bench_pin(0);
		ctl->out[0] = bench_floor_memcpy_gbs(cl->bytes, quick ? 3000000 : 10000000);
		return 0;
	case K_FWAKE:
		bench_pin(0);
		ctl->out[0] = bench_floor_futex_wake_ns(cl->count);
		return 0;
	default:
		return measure_channel(cl);
	}
}

/* Runs one cell once; 0 and the values in ctl->out, or 1 with the reason in cl->fail. */
static int measure(struct cell *cl)
{
	memset(ctl, 0, sizeof(*ctl));
	uint64_t t0 = bench_now_ns();
	pid_t pid = fork();
	if (pid == 0) {
		/* own group, so that an overrun kills the producer and consumer too */
		setpgid(0, 0);
		_exit(measure_in_child(cl));
	}
	setpgid(pid, pid);
	uint64_t limit = (quick ? 10ull : 30ull) * 1000000000ull;
	int st = 0;
	for (;;) {
		pid_t w = waitpid(pid, &st, WNOHANG);
		if (w == pid)
			break;
		if (bench_now_ns() - t0 > limit) {
			kill(-pid, SIGKILL);
			waitpid(pid, &st, 0);
			snprintf(cl->fail, sizeof(cl->fail), "timed out after %llu s",
				 (unsigned long long)(limit / 1000000000ull));
			return 1;
		}
		/* short naps at first (most measurements last milliseconds), then longer ones, so
		 * that this process does not take CPU time from the two it is waiting for */
		uint64_t el = (bench_now_ns() - t0) / 1000;
		usleep((useconds_t)(el < 20000 ? 200 : 2000));
	}
	if (!WIFEXITED(st) || WEXITSTATUS(st)) {
		snprintf(cl->fail, sizeof(cl->fail), "%s",
			 ctl->err ? ctl->why : "measurement process died");
		return 1;
	}
	return 0;
}

/* ---- building the plan ------------------------------------------------------------------ */

static struct cell *add(const char *suite, const struct contender *c, enum cell_kind k)
{
	if (ncells == MAX_CELLS) {
		fprintf(stderr, "bench: too many cells\n");
		exit(2);
	}
	static struct cell dropped;
	if (filter && c && !strstr(c->name, filter))
		return &dropped;
	struct cell *cl = &cells[ncells++];
	memset(cl, 0, sizeof(*cl));
	cl->suite = suite;
	cl->c = c;
	cl->kind = k;
	cl->label = c ? c->name : "";
	cl->first_kept = 1;
	cl->cfg = (struct bench_cfg){64, 1, 4096, NULL};
	if (c && c->skip)
		snprintf(cl->fail, sizeof(cl->fail), "skipped: %s", c->skip);
	if (k == K_TPUT) {
		cl->nmet = 1;
		cl->met[0] = "throughput";
		cl->unit = "Mmsg/s";
	} else if (k == K_RTT || k == K_OWL) {
		static const char *rtt[] = {"rtt_p50", "rtt_p99", "rtt_p99.9", "rtt_max"};
		static const char *owl[] = {"oneway_p50", "oneway_p99", "oneway_p99.9",
					    "oneway_max"};
		cl->nmet = 4;
		for (int i = 0; i < 4; i++)
			cl->met[i] = k == K_RTT ? rtt[i] : owl[i];
		cl->unit = "ns";
	} else {
		cl->nmet = 1;
		cl->met[0] = k == K_MEMCPY ? "bandwidth" : "mean";
		cl->unit = k == K_MEMCPY ? "GB/s" : "ns";
	}
	return cl;
}

/*
 * The contenders of each suite, in table order; the first is the reference of "x shmring".
 * A new ring kind or peer is one line here (and its row in its family's file).
 */
#define SR(i) (&bench_shmring[i]) /* 0 spsc, 1 mpmc, 2 msg, 3 spsc blocking (rings.c) */

static unsigned suite_list(const char *suite, const struct contender **t)
{
	unsigned n = 0;
	if (!strcmp(suite, "spsc")) {
		t[n++] = SR(0);
		t[n++] = &bench_textbook;
		t[n++] = &bench_ck[0];
		t[n++] = &bench_rte[0];
		t[n++] = &bench_boost[0];
	} else if (!strcmp(suite, "mpmc")) {
		/* one producer and one consumer (two CPUs): the cost of MPMC safety, not scaling */
		t[n++] = SR(1);
		for (unsigned j = 1; j < bench_rte_n; j++)
			t[n++] = &bench_rte[j];
		t[n++] = &bench_boost[1];
		t[n++] = &bench_urcu;
	} else if (!strcmp(suite, "msg")) {
		t[n++] = SR(2);
		t[n++] = SR(0);
		t[n++] = &bench_ipc[3]; /* unix-dgram */
		t[n++] = &bench_ipc[4]; /* posix-mq */
	} else if (!strcmp(suite, "rtt")) {
		for (unsigned j = 0; j < 3; j++)
			t[n++] = SR(j);
		t[n++] = &bench_textbook;
		t[n++] = &bench_ck[0];
		for (unsigned j = 0; j < bench_rte_n; j++)
			t[n++] = &bench_rte[j];
		for (unsigned j = 0; j < bench_boost_n; j++)
			t[n++] = &bench_boost[j];
		t[n++] = &bench_urcu;
		/* iceoryx is measured in ipc: each of its measurements waits for RouDi's
		 * discovery, and one round trip of it per round is enough */
	} else if (!strcmp(suite, "ipc")) {
		t[n++] = SR(0);
		t[n++] = SR(3);
		for (unsigned j = 0; j < bench_ipc_n; j++)
			t[n++] = &bench_ipc[j];
		t[n++] = &bench_eventfd_shm;
		t[n++] = &bench_zmq;
		t[n++] = &bench_iceoryx;
	}
	return n;
}

static const char *reference(const char *suite)
{
	const struct contender *t[32];
	return suite_list(suite, t) ? t[0]->name : NULL;
}

static uint64_t large_cap(unsigned es)
{
	uint64_t c = (16u << 20) / es;
	return c > 65536 ? 65536 : c;
}

static int want(const char *only, const char *suite)
{
	if (!only)
		return 1;
	const char *p = strstr(only, suite);
	size_t n = strlen(suite);
	return p && (p == only || p[-1] == ',') && (p[n] == 0 || p[n] == ',');
}

static void plan(const char *only)
{
	static const unsigned es_full[] = {8, 64, 256, 1024}, es_quick[] = {8, 64};
	static const unsigned bursts[] = {1, 32};
	const unsigned *es = quick ? es_quick : es_full;
	unsigned nes = quick ? 2 : 4, ncap = quick ? 1 : 2;
	double owl_rate = 100000;
	/* Floors always run: every ratio in the table needs them. */
	add("floor", NULL, K_CACHELINE)->label = "cacheline-pingpong";
	add("floor", NULL, K_FWAKE)->label = "futex-wake-nowaiter";
	add("floor", &bench_spin_mailbox, K_RTT);
	add("floor", &bench_futex_mailbox, K_RTT);
	add("floor", &bench_spin_mailbox, K_OWL)->rate = owl_rate;
	add("floor", &bench_futex_mailbox, K_OWL)->rate = owl_rate;

	/* throughput: spsc over every size, burst and capacity; mpmc and msg over fewer */
	static const char *tput[] = {"spsc", "mpmc", "msg"};
	for (unsigned s = 0; s < 3; s++) {
		const struct contender *t[32];
		unsigned n = suite_list(tput[s], t), ne = s == 0 ? nes : quick ? 1 : 2;
		static const unsigned es_other[] = {64, 1024};
		if (!want(only, tput[s]))
			continue;
		for (unsigned e = 0; e < ne; e++)
			for (unsigned b = 0; b < 2; b++)
				for (unsigned k = 0; k < (s == 0 ? ncap : 1u); k++)
					for (unsigned i = 0; i < n; i++) {
						struct cell *cl = add(tput[s], t[i], K_TPUT);
						cl->cfg.es = s == 0 ? es[e] : es_other[e];
						cl->cfg.burst = bursts[b];
						cl->cfg.cap = k ? large_cap(cl->cfg.es) : 256;
					}
	}
	if (want(only, "rtt")) {
		const struct contender *t[32];
		unsigned n = suite_list("rtt", t);
		for (unsigned i = 0; i < n; i++) {
			add("rtt", t[i], K_RTT);
			/* quick: open loop for shmring only, it takes a fixed time per round */
			if (!quick || i == 0)
				add("rtt", t[i], K_OWL)->rate = owl_rate;
		}
	}
	if (want(only, "ipc")) {
		const struct contender *t[32];
		unsigned n = suite_list("ipc", t);
		for (unsigned i = 0; i < n; i++) {
			/* quick: 64 B and burst 1, the case a kernel transport is used for */
			for (unsigned b = 0; b < (quick ? 1u : 2u); b++)
				for (unsigned e = 0; e < (quick ? 1u : 2u); e++) {
					struct cell *cl = add("ipc", t[i], K_TPUT);
					cl->cfg.burst = bursts[b];
					cl->cfg.es = e ? 1024 : 64;
				}
			add("ipc", t[i], K_RTT);
			/* at the floor's rate, so that the two compare */
			if (!quick)
				add("ipc", t[i], K_OWL)->rate = owl_rate;
		}
	}

	/* memcpy at every ring size that a throughput cell uses */
	for (unsigned i = 0, n = ncells; i < n; i++) {
		if (cells[i].kind != K_TPUT)
			continue;
		size_t bytes = cells[i].cfg.cap * cells[i].cfg.es;
		unsigned j;
		for (j = 0; j < ncells; j++)
			if (cells[j].kind == K_MEMCPY && cells[j].bytes == bytes)
				break;
		if (j == ncells)
			add("floor", NULL, K_MEMCPY)->bytes = bytes;
	}
	for (unsigned i = 0; i < ncells; i++)
		if (cells[i].kind == K_MEMCPY)
			cells[i].label = "memcpy";
}

static void params(const struct cell *cl, char *s, size_t n)
{
	switch (cl->kind) {
	case K_TPUT:
		snprintf(s, n, "es=%u;burst=%u;cap=%llu", cl->cfg.es, cl->cfg.burst,
			 (unsigned long long)cl->cfg.cap);
		break;
	case K_RTT:
		snprintf(s, n, "es=%u", cl->cfg.es);
		break;
	case K_OWL:
		snprintf(s, n, "es=%u;rate=%.0f/s", cl->cfg.es, cl->rate);
		break;
	case K_MEMCPY:
		snprintf(s, n, "bytes=%zu", cl->bytes);
		break;
	default:
		snprintf(s, n, "-");
	}
}

/* ---- running ---------------------------------------------------------------------------- */

/* Round 0 runs a fixed amount of work; its time sets the amount for the real rounds. */
static void calibrate(struct cell *cl, double first)
{
	double target_ms = quick ? 5 : 40;
	if (cl->kind == K_TPUT) {
		double n = first * 1e6 * target_ms / 1e3; /* first is Mmsg/s */
		cl->count = n < 5000 ? 5000 : n > 4e8 ? 4e8 : (uint64_t)n;
	} else if (cl->kind == K_RTT) {
		double n = target_ms * 1e6 / first; /* first is the p50 in ns */
		/* enough samples for p99.9 to be more than the max in full mode */
		uint64_t lo = quick ? 1000 : 20000;
		cl->count = n < lo ? lo : n > 2e6 ? 2e6 : (uint64_t)n;
	}
}

/* Seconds of the last measurement (in ctl->out) that were work rather than set-up. */
static double work_s(const struct cell *cl)
{
	switch (cl->kind) {
	case K_TPUT:
		return (double)cl->count / (ctl->out[0] * 1e6);
	case K_RTT:
		return (double)cl->count * ctl->out[0] / 1e9;
	case K_OWL:
		return (double)cl->count / cl->rate;
	case K_CACHELINE:
	case K_FWAKE:
		return (double)cl->count * ctl->out[0] / 1e9;
	default:
		return 0; /* memcpy runs for a fixed time */
	}
}

static double scale = 1; /* work per measurement, relative to the calibrated amount */

static void rescale(struct cell *cl, double f)
{
	uint64_t lo = cl->kind == K_TPUT ? 2000 : cl->kind == K_MEMCPY ? 0 : 500;
	double n = (double)cl->count * f;
	if (cl->count > lo)
		cl->count = n < lo ? lo : (uint64_t)n;
}

static void initial_count(struct cell *cl)
{
	int blocking = cl->c && (cl->c->flags & BENCH_BLOCKING);
	switch (cl->kind) {
	case K_TPUT:
		cl->count = blocking ? 2000 : 20000;
		break;
	case K_RTT:
		cl->count = blocking ? 300 : 2000;
		break;
	case K_OWL:
		cl->count = (uint64_t)(cl->rate * (quick ? 0.02 : 0.1));
		break;
	case K_CACHELINE:
		cl->count = quick ? 20000 : 100000;
		break;
	case K_FWAKE:
		cl->count = quick ? 20000 : 100000;
		break;
	case K_MEMCPY:
		break;
	}
}

static void progress(unsigned r, unsigned rounds, unsigned i, const struct cell *cl)
{
	char p[64];
	static int tty = -1;
	if (tty < 0)
		tty = isatty(2);
	if (!tty) {
		if (i == 0)
			fprintf(stderr, "bench: round %u/%u\n", r + 1, rounds);
		return;
	}
	params(cl, p, sizeof(p));
	fprintf(stderr, "\r\033[K[round %u/%u %3u/%u] %-5s %-20s %s", r + 1, rounds, i + 1, ncells,
		cl->suite, cl->label, p);
}

/* ---- statistics and output -------------------------------------------------------------- */

struct stat5 {
	double med, p25, p75, min, max;
};

static int cmpd(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double q_sorted(const double *v, unsigned n, double q)
{
	double pos = q * (n - 1);
	unsigned i = (unsigned)pos;
	return i + 1 < n ? v[i] + (pos - i) * (v[i + 1] - v[i]) : v[n - 1];
}

/* Over the kept rounds: round 0 was calibration (and round 1 too after a rescale). */
static int stats(const struct cell *cl, unsigned m, struct stat5 *s)
{
	double v[MAX_ROUNDS];
	unsigned n = 0;
	for (unsigned r = cl->first_kept; r < cl->done; r++)
		v[n++] = cl->v[m][r];
	if (!n || cl->fail[0])
		return -1;
	qsort(v, n, sizeof(double), cmpd);
	*s = (struct stat5){q_sorted(v, n, .5), q_sorted(v, n, .25), q_sorted(v, n, .75), v[0],
			    v[n - 1]};
	return (int)n;
}

static const struct cell *find(const char *suite, const char *name, enum cell_kind k,
			       const struct bench_cfg *cfg, size_t bytes)
{
	for (unsigned i = 0; i < ncells; i++) {
		const struct cell *c = &cells[i];
		if (c->kind != k || strcmp(c->suite, suite) || strcmp(c->label, name))
			continue;
		if (k == K_MEMCPY ? c->bytes == bytes
				  : !cfg || (c->cfg.es == cfg->es && c->cfg.burst == cfg->burst &&
					     c->cfg.cap == cfg->cap))
			return c;
	}
	return NULL;
}

static double median_of(const struct cell *c, unsigned m)
{
	struct stat5 s;
	return c && stats(c, m, &s) > 0 ? s.med : NAN;
}

/* The floor a cell's metric is compared with: memcpy at the ring's size for throughput
 * (in bytes per second), the spinning or blocking mailbox for latencies. */
static double ratio_floor(const struct cell *cl, unsigned m, double med)
{
	if (!strcmp(cl->suite, "floor"))
		return NAN;
	if (cl->kind == K_TPUT) {
		const struct cell *f =
		    find("floor", "memcpy", K_MEMCPY, NULL, cl->cfg.cap * cl->cfg.es);
		return med * cl->cfg.es / 1e3 / median_of(f, 0);
	}
	const char *fl =
	    cl->c->flags & BENCH_BLOCKING ? bench_futex_mailbox.name : bench_spin_mailbox.name;
	return med / median_of(find("floor", fl, cl->kind, NULL, 0), m);
}

static double ratio_shmring(const struct cell *cl, unsigned m, double med)
{
	if (!strcmp(cl->suite, "floor"))
		return NAN;
	const char *ref = reference(cl->suite);
	return ref ? med / median_of(find(cl->suite, ref, cl->kind, &cl->cfg, 0), m) : NAN;
}

static void fmt_num(char *s, size_t n, double v)
{
	if (isnan(v))
		snprintf(s, n, "-");
	else if (v >= 1000)
		snprintf(s, n, "%.0f", v);
	else if (v >= 10)
		snprintf(s, n, "%.1f", v);
	else
		snprintf(s, n, "%.3g", v);
}

/* Cells in suite order (floors first), keeping the plan's order within a suite. */
static unsigned order[MAX_CELLS];

static void sort_cells(void)
{
	static const char *suites[] = {"floor", "spsc", "mpmc", "msg", "rtt", "ipc"};
	unsigned n = 0;
	for (unsigned s = 0; s < sizeof(suites) / sizeof(suites[0]); s++)
		for (unsigned i = 0; i < ncells; i++)
			if (!strcmp(cells[i].suite, suites[s]))
				order[n++] = i;
}

static void print_table(FILE *f)
{
	const char *last_suite = "";
	char last_p[64] = "", p[64];
	for (unsigned o = 0; o < ncells; o++) {
		const struct cell *cl = &cells[order[o]];
		if (strcmp(cl->suite, last_suite)) {
			fprintf(f,
				"\n== %s ==  (median over rounds; x shmring: this / %s; "
				"x floor: this / floor)\n",
				cl->suite, strcmp(cl->suite, "floor") ? reference(cl->suite) : "-");
			fprintf(f, "%-22s %-13s %10s %-8s %-21s %-21s %9s %9s\n", "contender",
				"metric", "median", "unit", "p25-p75", "min-max", "x shmring",
				"x floor");
			last_suite = cl->suite;
			last_p[0] = 0;
		}
		params(cl, p, sizeof(p));
		if (strcmp(p, last_p) && strcmp(cl->suite, "floor"))
			fprintf(f, "-- %s\n", p);
		snprintf(last_p, sizeof(last_p), "%s", p);
		if (cl->fail[0]) {
			fprintf(f, "%-22s %s\n", cl->label, cl->fail);
			continue;
		}
		for (unsigned m = 0; m < cl->nmet; m++) {
			struct stat5 s;
			char a[5][24], sp1[48], sp2[48];
			if (stats(cl, m, &s) < 0)
				continue;
			fmt_num(a[0], 24, s.med);
			fmt_num(a[1], 24, s.p25);
			fmt_num(a[2], 24, s.p75);
			fmt_num(a[3], 24, s.min);
			fmt_num(a[4], 24, s.max);
			snprintf(sp1, sizeof(sp1), "%s-%s", a[1], a[2]);
			snprintf(sp2, sizeof(sp2), "%s-%s", a[3], a[4]);
			char rs[24], rf[24];
			fmt_num(rs, 24, ratio_shmring(cl, m, s.med));
			fmt_num(rf, 24, ratio_floor(cl, m, s.med));
			fprintf(f, "%-22s %-13s %10s %-8s %-21s %-21s %9s %9s\n",
				m ? "" : cl->label, cl->met[m], a[0], cl->unit, sp1, sp2, rs, rf);
		}
	}
}

static void csv_clean(char *s)
{
	for (; *s; s++)
		if (*s == ',' || *s == '"' || *s == '\n')
			*s = ';';
}

static int write_csv(const char *path)
{
	FILE *f = fopen(path, "w");
	char p[256];
	if (!f)
		return -1;
	fprintf(f, "suite,contender,params,metric,unit,median,p25,p75,min,max,rounds\n");
	for (unsigned o = 0; o < ncells; o++) {
		const struct cell *cl = &cells[order[o]];
		params(cl, p, sizeof(p));
		if (cl->fail[0]) {
			int skip = !strncmp(cl->fail, "skipped: ", 9);
			size_t l = strlen(p);
			snprintf(p + l, sizeof(p) - l, ";reason=%s", cl->fail + (skip ? 9 : 0));
			csv_clean(p);
			fprintf(f, "%s,%s,%s,%s,,,,,,,0\n", cl->suite, cl->label, p,
				skip ? "skipped" : "failed");
			continue;
		}
		for (unsigned m = 0; m < cl->nmet; m++) {
			struct stat5 s;
			int n = stats(cl, m, &s);
			if (n > 0)
				fprintf(f, "%s,%s,%s,%s,%s,%.6g,%.6g,%.6g,%.6g,%.6g,%d\n",
					cl->suite, cl->label, p, cl->met[m], cl->unit, s.med, s.p25,
					s.p75, s.min, s.max, n);
		}
	}
	return fclose(f);
}

/* gnuplot script with its data inline, so that the plots need nothing but this one file. */
static void write_plot(const char *dir)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/plot.gp", dir);
	FILE *f = fopen(path, "w");
	if (!f)
		return;
	fprintf(f, "set terminal pngcairo size 1200,520 noenhanced\nset key outside right\n"
		   "set grid\nset logscale y\n");
	const char *names[32];
	unsigned nn = 0;
	for (unsigned i = 0; i < ncells; i++) {
		const struct cell *cl = &cells[i];
		unsigned j;
		if (strcmp(cl->suite, "spsc") || cl->fail[0])
			continue;
		for (j = 0; j < nn && strcmp(names[j], cl->label); j++)
			;
		if (j == nn && nn < 32)
			names[nn++] = cl->label;
	}
	/* throughput by element size: one block per contender, for burst 1 and 32 at 256 */
	for (unsigned b = 1; b <= 32; b += 31)
		for (unsigned j = 0; j < nn; j++) {
			fprintf(f, "$t%u_%u << EOD\n", b, j);
			for (unsigned i = 0; i < ncells; i++) {
				const struct cell *cl = &cells[i];
				if (!strcmp(cl->suite, "spsc") && !strcmp(cl->label, names[j]) &&
				    cl->cfg.burst == b && cl->cfg.cap == 256 && !cl->fail[0])
					fprintf(f, "%u %g\n", cl->cfg.es, median_of(cl, 0));
			}
			fprintf(f, "EOD\n");
		}
	if (nn) {
		fprintf(f,
			"set output '%s/spsc_throughput.png'\nset multiplot layout 1,2\n"
			"set logscale x 2\nset xlabel 'element size (B)'\nset ylabel 'Mmsg/s'\n",
			dir);
		for (unsigned b = 1; b <= 32; b += 31) {
			fprintf(f, "set title 'SPSC throughput, burst %u, capacity 256'\nplot ", b);
			for (unsigned j = 0; j < nn; j++)
				fprintf(f, "%s$t%u_%u using 1:2 with linespoints title '%s'",
					j ? ", " : "", b, j, names[j]);
			fprintf(f, nn ? "\n" : "1/0 notitle\n");
		}
		fprintf(f, "unset multiplot\nunset logscale x\n");
	}

	/* latency percentiles: one column per contender, one point per percentile; closed-loop
	 * round trip above, open-loop one way below */
	fprintf(f,
		"set terminal pngcairo size 1400,1000 noenhanced\n"
		"set output '%s/latency.png'\nset multiplot layout 2,1\nunset xlabel\n"
		"set ylabel 'ns'\nset key top left\nset xtics rotate by -40 font ',9'\n"
		"set bmargin 9\nset style data points\nset offsets 0.5, 0.5, 0, 0\n",
		dir);
	for (int k = K_RTT; k <= K_OWL; k++) {
		unsigned np = 0;
		fprintf(f, "$lat%d << EOD\n", k);
		for (unsigned o = 0; o < ncells; o++) {
			const struct cell *cl = &cells[order[o]];
			if ((int)cl->kind != k || cl->fail[0])
				continue;
			fprintf(f, "%u \"%s %s\"", np++, cl->suite, cl->label);
			for (unsigned m = 0; m < 4; m++)
				fprintf(f, " %g", median_of(cl, m));
			fprintf(f, "\n");
		}
		fprintf(f, "EOD\n");
		if (!np)
			continue;
		fprintf(f, "set title '%s (median over rounds of each percentile)'\n",
			k == K_RTT ? "round trip, closed loop, 64 B" : "one way, open loop, 64 B");
		fprintf(f,
			"plot $lat%d using 1:3:xtic(2) pt 7 title 'p50', '' using 1:4 pt 5 title "
			"'p99', '' using 1:5 pt 9 title 'p99.9', '' using 1:6 pt 2 title 'max'\n",
			k);
	}
	fprintf(f, "unset multiplot\n");
	fclose(f);
}

/* Removes whatever a killed measurement left behind under this run's prefix. */
static void sweep(void)
{
	static const char *dirs[] = {"/dev/shm", "/dev/mqueue", "/tmp"};
	char pre[64], path[512];
	snprintf(pre, sizeof(pre), "shmrb-%d-", (int)top_pid);
	for (unsigned i = 0; i < 3; i++) {
		DIR *d = opendir(dirs[i]);
		struct dirent *e;
		if (!d)
			continue;
		while ((e = readdir(d)))
			if (!strncmp(e->d_name, pre, strlen(pre))) {
				snprintf(path, sizeof(path), "%s/%s", dirs[i], e->d_name);
				unlink(path);
			}
		closedir(d);
	}
}

static void usage(void)
{
	fprintf(stderr, "usage: shmring_bench [--quick] [--only SUITE[,SUITE]] [--rounds N] "
			"[--out DIR] [--filter NAME]\n  suites: floor spsc mpmc msg rtt ipc (floor "
			"always runs); sync is scripts/bench.sh's (bench/sync_bench)\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {{"quick", no_argument, NULL, 'q'},
					     {"only", required_argument, NULL, 'o'},
					     {"rounds", required_argument, NULL, 'r'},
					     {"out", required_argument, NULL, 'd'},
					     {"filter", required_argument, NULL, 'f'},
					     {"help", no_argument, NULL, 'h'},
					     {NULL, 0, NULL, 0}};
	const char *only = NULL, *out = "bench/results";
	unsigned rounds = 0;
	int o;
	while ((o = getopt_long(argc, argv, "qo:r:d:h", opts, NULL)) != -1) {
		switch (o) {
		case 'q':
			quick = 1;
			break;
		case 'o':
			only = optarg;
			break;
		case 'r':
			rounds = (unsigned)atoi(optarg);
			break;
		case 'd':
			out = optarg;
			break;
		case 'f':
			filter = optarg;
			break;
		default:
			usage();
			return o == 'h' ? 0 : 2;
		}
	}
	if (!rounds)
		rounds = quick ? 10 : 12;
	if (rounds < 2 || rounds > MAX_ROUNDS) {
		fprintf(stderr, "bench: --rounds must be 2..%d\n", MAX_ROUNDS);
		return 2;
	}
	for (const char *p = only; p && *p;) {
		/* sync: scripts/bench.sh runs bench/sync_bench for it; nothing here. */
		static const char *known[] = {"floor", "spsc", "mpmc", "msg", "rtt", "ipc", "sync"};
		size_t n = strcspn(p, ",");
		unsigned k;
		for (k = 0; k < 7 && (strlen(known[k]) != n || strncmp(p, known[k], n)); k++)
			;
		if (k == 7) {
			fprintf(stderr, "bench: unknown suite '%.*s'\n", (int)n, p);
			usage();
			return 2;
		}
		p += n + (p[n] == ',');
	}
	top_pid = getpid();
	(void)bench_ncpus(); /* the affinity mask, before anything pins */
	signal(SIGPIPE, SIG_IGN);
	ctl = bench_shm(sizeof(*ctl));
	plan(only);

	for (unsigned i = 0; i < ncells; i++)
		if (cells[i].c == &bench_iceoryx && !cells[i].fail[0]) {
			const char *why = bench_iceoryx_start();
			for (unsigned j = i; why && j < ncells; j++)
				if (cells[j].c == &bench_iceoryx)
					snprintf(cells[j].fail, sizeof(cells[j].fail),
						 "skipped: %s", why);
			break;
		}

	/* Wall budget of the runner: on a loaded machine every measurement stretches, so when
	 * round 1 shows that the rest would not fit, the work per measurement is scaled down
	 * and round 1 is discarded too (it did different work), with one round added. */
	double budget_s = quick ? 45 : 540;
	unsigned discard = 1;
	uint64_t t0 = bench_now_ns(), r1 = 0;
	for (unsigned r = 0; r < rounds; r++) {
		if (r == 1)
			r1 = bench_now_ns();
		if (r == 2 && discard == 1) {
			double el = (double)(bench_now_ns() - t0) / 1e9;
			double d1 = (double)(bench_now_ns() - r1) / 1e9;
			/* the set-up of a measurement (fork, mapping, connecting) does not shrink
			 * with the work, so only the work is scaled */
			double ovh = 0, work = 0, left = rounds - 1;
			for (unsigned i = 0; i < ncells; i++) {
				ovh += cells[i].r1_spent_s - cells[i].r1_work_s;
				work += cells[i].r1_work_s;
			}
			double f = (d1 * left <= budget_s - el || work <= 0)
				       ? 1
				       : ((budget_s - el) / left - ovh) / work;
			if (f < 1) {
				/* below this a measurement is shorter than a scheduler tick and
				 * says more about the load than about the contender: run over */
				f = f < 0.2 ? 0.2 : f;
				scale = f;
				for (unsigned i = 0; i < ncells; i++) {
					rescale(&cells[i], f);
					cells[i].first_kept = cells[i].done;
				}
				discard = 2;
				rounds = rounds < MAX_ROUNDS ? rounds + 1 : rounds;
			}
		}
		for (unsigned i = 0; i < ncells; i++) {
			struct cell *cl = &cells[i];
			if (cl->fail[0])
				continue;
			if (r == 0)
				initial_count(cl);
			progress(r, rounds, i, cl);
			uint64_t m0 = bench_now_ns();
			int bad = measure(cl);
			cl->spent_ns += bench_now_ns() - m0;
			if (bad)
				continue;
			if (r == 1) {
				cl->r1_spent_s = (double)(bench_now_ns() - m0) / 1e9;
				cl->r1_work_s = work_s(cl);
				if (cl->r1_work_s > cl->r1_spent_s)
					cl->r1_work_s = cl->r1_spent_s;
			}
			if (r == 0)
				calibrate(cl, ctl->out[0]);
			for (unsigned m = 0; m < cl->nmet; m++)
				cl->v[m][cl->done] = ctl->out[m];
			cl->done++;
		}
	}
	fprintf(stderr, "\r\033[K");
	if (getenv("SHMRING_BENCH_PROFILE"))
		for (unsigned i = 0; i < ncells; i++)
			fprintf(stderr, "%8.3f s  %s %s %d\n", cells[i].spent_ns / 1e9,
				cells[i].suite, cells[i].label, cells[i].kind);
	bench_iceoryx_stop();
	sweep();

	char path[512];
	FILE *tf;
	sort_cells();
	print_table(stdout);
	snprintf(path, sizeof(path), "%s/latest.txt", out);
	if ((tf = fopen(path, "w"))) {
		print_table(tf);
		fclose(tf);
	}
	snprintf(path, sizeof(path), "%s/latest.csv", out);
	if (write_csv(path))
		fprintf(stderr, "bench: cannot write %s: %s\n", path, strerror(errno));
	write_plot(out);
	printf("\n%u rounds (first %u discarded), %.1f s; csv: %s\n", rounds, discard,
	       (double)(bench_now_ns() - t0) / 1e9, path);
	if (scale < 1)
		printf("the machine was too busy for the time budget: work per measurement was "
		       "scaled by %.2f after round 1\n",
		       scale);
	return 0;
}

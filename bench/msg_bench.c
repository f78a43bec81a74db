/* SPDX-License-Identifier: MIT */
/*
 * msg_bench: the message ring against the kernel's message channels, as ratios measured in
 * one run. A producer process pinned to "CPU 0" sends messages of one size to a consumer process
 * pinned to "CPU 1" (the first two CPUs that the affinity mask allows: pin.h) for a fixed time;
 * both copy (the producer copies in, the consumer copies out and checks a sequence number).
 * Reported: messages/s and bytes/s of each channel, and the ratios: shmring / POSIX mq, / SysV msg,
 * / pipe, / Unix datagram socket, and bytes/s over memcpy bandwidth at the ring's size (one core
 * copying chunks of the message size out of a buffer as large as the ring: the floor), and
 * over a cross-core floor (the least ring that moves those bytes between the same two CPUs). Rounds
 * interleave every channel, with the order rotated; each cell is the median over rounds, with
 * min-max. Under each table, for sizes that fit a 128 KiB ring: the ring's own data path on one
 * CPU, in cache (one_cpu()).
 *
 * Usage: msg_bench [seconds per run, default 0.3] [rounds, default 5] [sizes, comma-separated,
 * default 64,1024,4096,65536]. Prints a table. With MSG_BENCH_TRACE set in the environment, the
 * consumer of each shared-memory channel also prints, every 2^18 messages, the rate over them
 * and how much is in flight: throughput here follows whether the consumer runs right behind the
 * producer (little in flight) or far behind it.
 */
#include <errno.h>
#include <fcntl.h>
#include <mqueue.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/msg.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <shmring/shmring.h>

#include "pin.h"
#include <stdalign.h>

#ifndef RING_BYTES
#define RING_BYTES (1u << 20)
#endif
#define END_SEQ UINT64_MAX

static double run_s = 0.3;
static int trace; /* MSG_BENCH_TRACE set: the consumer prints a sample every 2^18 messages */

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void pin(int cpu)
{
	bench_pin_nth(cpu);
}

struct shared {
	_Atomic int ready, go, stop;
	uint64_t msgs, ns;
	_Atomic int err;
};
static struct shared *cur; /* this run's, for the children's waits */

/* Waiting for the peer: spin a while, then give the CPU away (the machine may be shared). A
 * child whose peer gave up (say a send refused the size) leaves instead of waiting for ever. */
static _Thread_local unsigned spins;
static inline void relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
	if (++spins % 256 == 0) {
		if (cur && atomic_load_explicit(&cur->err, memory_order_relaxed))
			_exit(4);
		sched_yield();
	}
}

/* One channel: created before fork, used by both children. */
struct chan {
	const char *name;
	int (*create)(struct chan *c, uint32_t size); /* 0, or -1 with why set */
	int (*send)(struct chan *c, const void *buf, uint32_t size);
	int (*recv)(struct chan *c, void *buf, uint32_t size); /* bytes, or -1 */
	void (*destroy)(struct chan *c);
	uint64_t (*lag)(struct chan *c); /* bytes sent and not yet received; NULL if unknown */
	const char *why;
	struct shmring *r;
	mqd_t mq;
	int qid;
	int fd[2];
	char mqname[64];
};

/* ---- shmring ---- */
static int ring_create_kind(struct chan *c, uint32_t kind, uint32_t size)
{
	struct shmring_params p = {.kind = kind, .capacity = RING_BYTES};
	if (shmring_create_anon(&p, &c->r)) {
		c->why = "shmring_create_anon failed";
		return -1;
	}
	if (size > shmring_msg_max(c->r)) {
		c->why = "larger than shmring_msg_max() of this ring (a quarter of it)";
		shmring_close(c->r);
		return -1;
	}
	return 0;
}
static int ring_create(struct chan *c, uint32_t size)
{
	return ring_create_kind(c, SHMRING_MSG, size);
}
static int mpsc_create(struct chan *c, uint32_t size)
{
	return ring_create_kind(c, SHMRING_MSG_MPSC, size);
}
static int ring_send(struct chan *c, const void *buf, uint32_t size)
{
	int rc;
	while ((rc = shmring_msg_send(c->r, buf, size, 1)) == -EAGAIN)
		relax();
	return rc;
}
static int ring_recv(struct chan *c, void *buf, uint32_t size)
{
	int rc;
	while ((rc = shmring_msg_recv(c->r, buf, size, NULL)) == -EAGAIN)
		relax();
	return rc;
}
/* Zero-copy: the producer writes into the reservation, the consumer copies out of the peek. */
static int zc_send(struct chan *c, const void *buf, uint32_t size)
{
	void *w;
	int rc;
	while ((rc = shmring_msg_reserve(c->r, size, &w)) == -EAGAIN)
		relax();
	if (rc)
		return rc;
	memcpy(w, buf, size);
	return shmring_msg_commit(c->r, size, 1);
}
static int zc_recv(struct chan *c, void *buf, uint32_t size)
{
	const void *p;
	uint32_t n;
	int rc;
	while ((rc = shmring_msg_peek(c->r, &p, &n, NULL)) == -EAGAIN)
		relax();
	if (rc)
		return rc;
	memcpy(buf, p, n < size ? n : size);
	shmring_msg_release(c->r);
	return (int)n;
}
static void ring_destroy(struct chan *c)
{
	shmring_close(c->r);
}
/* Read by the consumer, for MSG_BENCH_TRACE: its own position against the producer's. */
static uint64_t ring_lag(struct chan *c)
{
	return atomic_load_explicit(c->r->prod_pos, memory_order_relaxed) - c->r->c.head;
}

/* ---- the cross-core floor ----
 * The least any ring can do to move size-byte messages from one pinned core to another: a
 * hand-rolled SPSC ring of fixed-size slots the size of a message, no headers, no checks, each
 * side caching the other's position. Both copies, as for every channel. What the machine's
 * cache hierarchy allows between these two CPUs right now: on a VM it moves with the host's
 * placement of the two vCPUs (same core, same complex, or not), which memcpy on one core
 * cannot see. */
struct xfloor {
	alignas(128) _Atomic uint64_t tail;	    /* messages sent */
	alignas(128) _Atomic uint64_t head;	    /* messages received */
	alignas(128) uint64_t p_tail, p_head_cache; /* producer's */
	alignas(128) uint64_t c_head, c_tail_cache; /* consumer's */
	alignas(128) uint64_t slots, stride;
	alignas(4096) unsigned char buf[RING_BYTES];
};
static struct xfloor *xf;
static int xf_create(struct chan *c, uint32_t size)
{
	xf = mmap(NULL, sizeof(*xf), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (xf == MAP_FAILED) {
		c->why = "mmap failed";
		return -1;
	}
	/* Slots a cache line apart, as a header would put them: back-to-back 4 KiB slots would
	 * make every copy hit 4K aliasing against the private buffers, a floor no ring has. */
	xf->stride = size + 64;
	xf->slots = RING_BYTES / xf->stride;
	return 0;
}
static int xf_send(struct chan *c, const void *buf, uint32_t size)
{
	(void)c;
	uint64_t t = xf->p_tail;
	while (t - xf->p_head_cache >= xf->slots) {
		xf->p_head_cache = atomic_load_explicit(&xf->head, memory_order_acquire);
		if (t - xf->p_head_cache >= xf->slots)
			relax();
	}
	memcpy(xf->buf + t % xf->slots * xf->stride, buf, size);
	xf->p_tail = t + 1;
	atomic_store_explicit(&xf->tail, t + 1, memory_order_release);
	return 0;
}
static int xf_recv(struct chan *c, void *buf, uint32_t size)
{
	(void)c;
	uint64_t h = xf->c_head;
	while (xf->c_tail_cache == h) {
		xf->c_tail_cache = atomic_load_explicit(&xf->tail, memory_order_acquire);
		if (xf->c_tail_cache == h)
			relax();
	}
	memcpy(buf, xf->buf + h % xf->slots * xf->stride, size);
	xf->c_head = h + 1;
	atomic_store_explicit(&xf->head, h + 1, memory_order_release);
	return (int)size;
}
static uint64_t xf_lag(struct chan *c)
{
	(void)c;
	return (atomic_load_explicit(&xf->tail, memory_order_relaxed) - xf->c_head) * xf->stride;
}
static void xf_destroy(struct chan *c)
{
	(void)c;
	munmap(xf, sizeof(*xf));
}

/* ---- POSIX mq ---- */
static int mq_create(struct chan *c, uint32_t size)
{
	struct mq_attr a = {.mq_maxmsg = 64, .mq_msgsize = size};
	snprintf(c->mqname, sizeof(c->mqname), "/shmring-msgbench-%d", (int)getpid());
	mq_unlink(c->mqname);
	c->mq = mq_open(c->mqname, O_CREAT | O_EXCL | O_RDWR, 0600, &a);
	if (c->mq == (mqd_t)-1) {
		a.mq_maxmsg = 10;
		c->mq = mq_open(c->mqname, O_CREAT | O_EXCL | O_RDWR, 0600, &a);
	}
	if (c->mq == (mqd_t)-1) {
		c->why = "mq_open refused this size (fs.mqueue.msgsize_max)";
		return -1;
	}
	return 0;
}
static int mq_send_(struct chan *c, const void *buf, uint32_t size)
{
	return mq_send(c->mq, buf, size, 0);
}
static int mq_recv_(struct chan *c, void *buf, uint32_t size)
{
	return (int)mq_receive(c->mq, buf, size, NULL);
}
static void mq_destroy(struct chan *c)
{
	mq_close(c->mq);
	mq_unlink(c->mqname);
}

/* ---- SysV ---- */
struct sysv_msg {
	long mtype;
	char mtext[];
};
static _Thread_local struct sysv_msg *sv_buf;
static int sv_create(struct chan *c, uint32_t size)
{
	c->qid = msgget(IPC_PRIVATE, IPC_CREAT | 0600);
	if (c->qid < 0) {
		c->why = "msgget failed";
		return -1;
	}
	struct msqid_ds ds;
	if (msgctl(c->qid, IPC_STAT, &ds) == 0 && ds.msg_qbytes < 16u * size) {
		ds.msg_qbytes = 16u * size;
		msgctl(c->qid, IPC_SET, &ds);
	}
	sv_buf = realloc(sv_buf, sizeof(long) + size);
	sv_buf->mtype = 1;
	if (msgsnd(c->qid, sv_buf, size, IPC_NOWAIT) < 0) {
		c->why = "msgsnd refused this size (kernel.msgmax)";
		msgctl(c->qid, IPC_RMID, NULL);
		return -1;
	}
	msgrcv(c->qid, sv_buf, size, 0, 0);
	return 0;
}
static int sv_send(struct chan *c, const void *buf, uint32_t size)
{
	memcpy(sv_buf->mtext, buf, size);
	return msgsnd(c->qid, sv_buf, size, 0);
}
static int sv_recv(struct chan *c, void *buf, uint32_t size)
{
	ssize_t n = msgrcv(c->qid, sv_buf, size, 0, 0);
	if (n > 0)
		memcpy(buf, sv_buf->mtext, (size_t)n);
	return (int)n;
}
static void sv_destroy(struct chan *c)
{
	msgctl(c->qid, IPC_RMID, NULL);
}

/* ---- pipe and Unix datagram socket ---- */
static int pipe_create(struct chan *c, uint32_t size)
{
	(void)size;
	if (pipe(c->fd)) {
		c->why = "pipe failed";
		return -1;
	}
	fcntl(c->fd[1], F_SETPIPE_SZ, RING_BYTES);
	return 0;
}
static int fd_send(struct chan *c, const void *buf, uint32_t size)
{
	const char *p = buf;
	for (uint32_t off = 0; off < size;) {
		ssize_t n = write(c->fd[1], p + off, size - off);
		if (n <= 0)
			return -1;
		off += (uint32_t)n;
	}
	return 0;
}
static int pipe_recv(struct chan *c, void *buf, uint32_t size)
{
	char *p = buf;
	for (uint32_t off = 0; off < size;) { /* a byte stream: read the whole message */
		ssize_t n = read(c->fd[0], p + off, size - off);
		if (n <= 0)
			return -1;
		off += (uint32_t)n;
	}
	return (int)size;
}
static int dgram_create(struct chan *c, uint32_t size)
{
	if (socketpair(AF_UNIX, SOCK_DGRAM, 0, c->fd)) {
		c->why = "socketpair failed";
		return -1;
	}
	int sz = 4 * RING_BYTES;
	setsockopt(c->fd[1], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	setsockopt(c->fd[0], SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	(void)size;
	return 0;
}
static int dgram_send(struct chan *c, const void *buf, uint32_t size)
{
	return send(c->fd[1], buf, size, 0) == (ssize_t)size ? 0 : -1;
}
static int dgram_recv(struct chan *c, void *buf, uint32_t size)
{
	return (int)recv(c->fd[0], buf, size, 0);
}
static void fd_destroy(struct chan *c)
{
	close(c->fd[0]);
	close(c->fd[1]);
}

/* ---- one run ---- */
static int run(struct chan *c, uint32_t size, double *msgs_per_s)
{
	struct shared *sh =
	    mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	pid_t pp, cp;

	if (sh == MAP_FAILED)
		return -1;
	memset(sh, 0, sizeof(*sh));
	cur = sh;
	if (c->create(c, size)) {
		munmap(sh, sizeof(*sh));
		return -1;
	}
	pp = fork();
	if (pp == 0) {
		pin(0);
		unsigned char *buf = calloc(1, size);
		atomic_fetch_add(&sh->ready, 1);
		while (!atomic_load(&sh->go))
			relax();
		uint64_t seq = 0;
		while (!atomic_load_explicit(&sh->stop, memory_order_relaxed)) {
			memcpy(buf, &seq, 8);
			if (c->send(c, buf, size)) {
				sh->err = 1;
				break;
			}
			seq++;
		}
		seq = END_SEQ;
		memcpy(buf, &seq, 8);
		c->send(c, buf, size);
		_exit(0);
	}
	cp = fork();
	if (cp == 0) {
		pin(1);
		unsigned char *buf = calloc(1, size);
		uint64_t want = 0, seq = 0;
		atomic_fetch_add(&sh->ready, 1);
		while (!atomic_load(&sh->go))
			relax();
		uint64_t t0 = now_ns(), t1 = t0, ts = t0, end = t0 + (uint64_t)(run_s * 1e9);
		for (;;) {
			if (c->recv(c, buf, size) != (int)size) {
				sh->err = 2;
				break;
			}
			memcpy(&seq, buf, 8);
			if (seq == END_SEQ)
				break;
			if (seq != want) {
				sh->err = 3;
				break;
			}
			want++;
			if (trace && c->lag && (want & 0x3ffff) == 0) {
				uint64_t tn = now_ns();
				fprintf(stderr,
					"trace %u B %s: %.2f M msgs/s, %llu KiB in flight\n", size,
					c->name, 262144e3 / (double)(tn - ts),
					(unsigned long long)(c->lag(c) >> 10));
				ts = tn;
			}
			if (!atomic_load_explicit(&sh->stop, memory_order_relaxed) &&
			    (want & 15) == 0 && (t1 = now_ns()) >= end) {
				sh->msgs = want;
				sh->ns = t1 - t0;
				atomic_store(&sh->stop, 1);
			}
		}
		_exit(0);
	}
	while (atomic_load(&sh->ready) < 2)
		usleep(100);
	atomic_store(&sh->go, 1);
	int st1 = 0, st2 = 0;
	waitpid(pp, &st1, 0);
	waitpid(cp, &st2, 0);
	c->destroy(c);
	int rc = sh->err || !sh->ns ? -1 : 0;
	if (!rc)
		*msgs_per_s = (double)sh->msgs * 1e9 / (double)sh->ns;
	cur = NULL;
	munmap(sh, sizeof(*sh));
	return rc;
}

/* memcpy bandwidth (bytes/s): one core (CPU 0) copying size-byte chunks out of a buffer of ring
 * bytes. */
static double memcpy_at(uint32_t size, uint32_t ring)
{
	unsigned char *src = aligned_alloc(4096, ring), *dst = aligned_alloc(4096, ring);
	memset(src, 1, ring);
	memset(dst, 2, ring);
	pin(0);
	uint64_t bytes = 0, t0 = now_ns(), t1;
	do {
		for (uint32_t off = 0; off + size <= ring; off += size)
			memcpy(dst + off, src + off, size);
		__asm__ volatile("" : : "r"(dst) : "memory");
		bytes += ring - ring % size;
	} while ((t1 = now_ns()) - t0 < (uint64_t)(run_s * 1e9));
	free(src);
	free(dst);
	return (double)bytes * 1e9 / (double)(t1 - t0);
}

static double memcpy_floor(uint32_t size)
{
	return memcpy_at(size, RING_BYTES);
}

/*
 * The ring's own data path, with no peer: one thread on CPU 0 sends each message and receives
 * it again, through a ring of ONE_CPU_RING bytes that stays in cache. Message bytes per second,
 * or 0 when the size does not fit that ring. Each message is copied twice (in, out), so half
 * of memcpy's bandwidth is the pace of two copies at memcpy's speed: what headers, fillers
 * and the copies' alignment cost shows here, where the cross-core runs above drown it.
 */
#define ONE_CPU_RING (1u << 17)
static double one_cpu(uint32_t size)
{
	struct shmring_params p = {.kind = SHMRING_MSG, .capacity = ONE_CPU_RING};
	struct shmring *r;
	size_t room = ((size_t)size + 4095) & ~(size_t)4095; /* aligned_alloc wants a multiple */
	unsigned char *src = aligned_alloc(4096, room), *dst = aligned_alloc(4096, room);
	double rate = 0;

	if (!src || !dst || shmring_create_anon(&p, &r) != 0)
		goto out;
	if (size <= shmring_msg_max(r)) {
		memset(src, 3, size);
		pin(0);
		uint64_t n = 0, t0 = now_ns(), t1;
		do {
			for (int i = 0; i < 64; i++, n++)
				if (shmring_msg_send(r, src, size, 0) != 0 ||
				    shmring_msg_recv(r, dst, size, NULL) != (int)size)
					goto close;
		} while ((t1 = now_ns()) - t0 < (uint64_t)(run_s * 1e9));
		rate = (double)n * size * 1e9 / (double)(t1 - t0);
	}
close:
	shmring_close(r);
out:
	free(src);
	free(dst);
	return rate;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* Median of the n > 0 values (sorted in place); min and max through lo and hi. */
static double median(double *v, int n, double *lo, double *hi)
{
	qsort(v, (size_t)n, sizeof(double), cmp_d);
	*lo = v[0];
	*hi = v[n - 1];
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

#define MAXROUNDS 31

int main(int argc, char **argv)
{
	uint32_t sizes[8] = {64, 1024, 4096, 65536};
	unsigned nsizes = 4;
	int *cpus;

	(void)bench_cpus(&cpus); /* before anything pins: see pin.h */
	struct chan chans[] = {
	    {.name = "shmring msg", ring_create, ring_send, ring_recv, ring_destroy, ring_lag},
	    {.name = "shmring msg 0-copy", ring_create, zc_send, zc_recv, ring_destroy, ring_lag},
	    {.name = "shmring msg mpsc", mpsc_create, ring_send, ring_recv, ring_destroy, ring_lag},
	    {.name = "x-core floor", xf_create, xf_send, xf_recv, xf_destroy, xf_lag},
	    {.name = "posix mq", mq_create, mq_send_, mq_recv_, mq_destroy},
	    {.name = "sysv msg", sv_create, sv_send, sv_recv, sv_destroy},
	    {.name = "pipe", pipe_create, fd_send, pipe_recv, fd_destroy},
	    {.name = "unix dgram", dgram_create, dgram_send, dgram_recv, fd_destroy},
	};
	enum { NCH = sizeof(chans) / sizeof(chans[0]), XF = 3, FIRST_PEER = 4 };
	int rounds = 5;

	if (argc > 1)
		run_s = atof(argv[1]) > 0 ? atof(argv[1]) : run_s;
	if (argc > 2)
		rounds = atoi(argv[2]);
	if (rounds < 1 || rounds > MAXROUNDS)
		rounds = 5;
	if (argc > 3) { /* sizes to run, comma-separated, instead of the four above */
		char *s = argv[3], *end;
		for (nsizes = 0; nsizes < 8 && *s; s = *end ? end + 1 : end) {
			unsigned long v = strtoul(s, &end, 0);
			if (end == s || v == 0 || v > (1u << 24)) {
				fprintf(stderr, "msg_bench: bad size list '%s'\n", argv[3]);
				return 2;
			}
			sizes[nsizes++] = (uint32_t)v;
		}
	}
	signal(SIGPIPE, SIG_IGN);
	trace = getenv("MSG_BENCH_TRACE") != NULL;
	printf("msg_bench: %d interleaved rounds of %.2f s per channel, ring %u KiB, producer on "
	       "CPU 0, consumer on CPU 1.\nmedian [min-max]; 'of memcpy': of one core's memcpy "
	       "bandwidth at the ring's size (median of the rounds);\n'of x-core': median "
	       "[min-max] over "
	       "rounds of each run divided by a run of the cross-core floor just before it\n(a "
	       "minimal hand-rolled ring, same copies)\n",
	       rounds, run_s, RING_BYTES >> 10);
	for (unsigned si = 0; si < nsizes; si++) {
		uint32_t size = sizes[si];
		static double rate[NCH][MAXROUNDS], fl[MAXROUNDS], pair[XF][MAXROUNDS];
		int nr[NCH] = {0}, np[XF] = {0};
		const char *why[NCH] = {0};

		for (int rd = 0; rd < rounds; rd++) {
			fl[rd] = memcpy_floor(size);
			for (int k = 0; k < NCH; k++) {
				int i = (k + rd) % NCH; /* rotate the order from round to round */
				double pf = 0;
				/* Each shmring run right after a run of the floor: the host's
				 * placement of the two vCPUs changes between runs, and a ratio of
				 * medians would divide numbers taken in different placements. */
				if (i < XF && run(&chans[XF], size, &pf) != 0)
					pf = 0;
				chans[i].why = NULL;
				if (run(&chans[i], size, &rate[i][nr[i]]) != 0) {
					why[i] = chans[i].why ? chans[i].why : "run failed";
					continue;
				}
				if (i < XF && pf > 0)
					pair[i][np[i]++] = rate[i][nr[i]] / pf;
				nr[i]++;
			}
		}
		double lo, hi, floor_bps = median(fl, rounds, &lo, &hi), med[NCH] = {0};
		printf("\n%u-byte messages (memcpy floor %.2f GB/s [%.2f-%.2f])\n", size,
		       floor_bps / 1e9, lo / 1e9, hi / 1e9);
		printf("  %-20s %24s %10s %10s  %s\n", "channel", "msgs/s", "MB/s", "of memcpy",
		       "of x-core (paired)");
		for (int i = 0; i < NCH; i++)
			if (nr[i] == rounds)
				med[i] = median(rate[i], nr[i], &lo, &hi);
		for (int i = 0; i < NCH; i++) {
			if (nr[i] < rounds) {
				printf("  %-20s skipped: %s\n", chans[i].name,
				       why[i] ? why[i] : "?");
				continue;
			}
			median(rate[i], nr[i], &lo, &hi);
			char cell[64];
			snprintf(cell, sizeof(cell), "%.0f [%.0f-%.0f]", med[i], lo, hi);
			printf("  %-20s %24s %10.1f %9.1f%%", chans[i].name, cell,
			       med[i] * size / 1e6, 100.0 * med[i] * size / floor_bps);
			if (i < XF && np[i] > 0) {
				double pm = median(pair[i], np[i], &lo, &hi);
				printf("  %5.0f%% [%.0f-%.0f]", 100 * pm, 100 * lo, 100 * hi);
			}
			printf("\n");
		}
		printf("  ratios of shmring msg (copying):");
		for (int i = FIRST_PEER; i < NCH; i++)
			if (med[i] > 0)
				printf("  %.1fx %s", med[0] / med[i], chans[i].name);
		printf("\n");
		/* Alternated with memcpy at the same size, round by round. */
		double oc[MAXROUNDS], of[MAXROUNDS], olo, ohi;
		for (int rd = 0; rd < rounds; rd++) {
			of[rd] = memcpy_at(size, ONE_CPU_RING);
			oc[rd] = one_cpu(size) / of[rd];
		}
		double om = median(oc, rounds, &olo, &ohi);
		if (om > 0)
			printf("  one CPU, in cache (send then recv by one thread, %u KiB ring): "
			       "%.0f%% "
			       "[%.0f-%.0f] of memcpy there (two copies each: 50%% is memcpy's "
			       "pace)\n",
			       ONE_CPU_RING >> 10, 100 * om, 100 * olo, 100 * ohi);
	}
	return 0;
}

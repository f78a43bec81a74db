/* SPDX-License-Identifier: MIT */
/*
 * msg_bench: the message ring against the kernel's message channels, as ratios measured in
 * one run. A producer process pinned to CPU 0 sends messages of one size to a consumer process
 * pinned to CPU 1 for a fixed time; both copy (the producer copies in, the consumer copies
 * out and checks a sequence number). Reported: messages/s and bytes/s of each channel, and
 * the ratios: shmring / POSIX mq, / SysV msg, / pipe, / Unix datagram socket, and bytes/s over
 * memcpy bandwidth at the ring's size (one core copying chunks of the message size out of a
 * buffer as large as the ring: the floor).
 *
 * Usage: msg_bench [seconds per run, default 0.3]. Prints a table; exits 0.
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

#define RING_BYTES (1u << 20)
#define END_SEQ	   UINT64_MAX

static double run_s = 0.3;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void pin(int cpu)
{
	cpu_set_t s;
	CPU_ZERO(&s);
	CPU_SET(cpu, &s);
	sched_setaffinity(0, sizeof(s), &s);
}

/* Waiting for the peer: spin a while, then give the CPU away (the machine may be shared). */
static _Thread_local unsigned spins;
static inline void relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
	if (++spins % 256 == 0)
		sched_yield();
}

struct shared {
	_Atomic int ready, go, stop;
	uint64_t msgs, ns;
	int err;
};

/* One channel: created before fork, used by both children. */
struct chan {
	const char *name;
	int (*create)(struct chan *c, uint32_t size); /* 0, or -1 with why set */
	int (*send)(struct chan *c, const void *buf, uint32_t size);
	int (*recv)(struct chan *c, void *buf, uint32_t size); /* bytes, or -1 */
	void (*destroy)(struct chan *c);
	const char *why;
	struct shmring *r;
	mqd_t mq;
	int qid;
	int fd[2];
	char mqname[64];
};

/* ---- shmring ---- */
static int ring_create_kind(struct chan *c, uint32_t kind)
{
	struct shmring_params p = {.kind = kind, .capacity = RING_BYTES};
	if (shmring_create_anon(&p, &c->r)) {
		c->why = "shmring_create_anon failed";
		return -1;
	}
	return 0;
}
static int ring_create(struct chan *c, uint32_t size)
{
	(void)size;
	return ring_create_kind(c, SHMRING_MSG);
}
static int mpsc_create(struct chan *c, uint32_t size)
{
	(void)size;
	return ring_create_kind(c, SHMRING_MSG_MPSC);
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
		uint64_t t0 = now_ns(), t1 = t0, end = t0 + (uint64_t)(run_s * 1e9);
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
	munmap(sh, sizeof(*sh));
	return rc;
}

/* memcpy bandwidth (bytes/s): one core copying size-byte chunks out of a ring-sized buffer. */
static double memcpy_floor(uint32_t size)
{
	unsigned char *src = aligned_alloc(4096, RING_BYTES),
		      *dst = aligned_alloc(4096, RING_BYTES);
	memset(src, 1, RING_BYTES);
	memset(dst, 2, RING_BYTES);
	pin(0);
	uint64_t bytes = 0, t0 = now_ns(), t1;
	do {
		for (uint32_t off = 0; off + size <= RING_BYTES; off += size)
			memcpy(dst + off, src + off, size);
		__asm__ volatile("" : : "r"(dst) : "memory");
		bytes += RING_BYTES - RING_BYTES % size;
	} while ((t1 = now_ns()) - t0 < (uint64_t)(run_s * 1e9));
	free(src);
	free(dst);
	return (double)bytes * 1e9 / (double)(t1 - t0);
}

int main(int argc, char **argv)
{
	static const uint32_t sizes[] = {64, 1024, 4096, 65536};
	struct chan chans[] = {
	    {.name = "shmring msg", ring_create, ring_send, ring_recv, ring_destroy},
	    {.name = "shmring msg 0-copy", ring_create, zc_send, zc_recv, ring_destroy},
	    {.name = "shmring msg mpsc", mpsc_create, ring_send, ring_recv, ring_destroy},
	    {.name = "posix mq", mq_create, mq_send_, mq_recv_, mq_destroy},
	    {.name = "sysv msg", sv_create, sv_send, sv_recv, sv_destroy},
	    {.name = "pipe", pipe_create, fd_send, pipe_recv, fd_destroy},
	    {.name = "unix dgram", dgram_create, dgram_send, dgram_recv, fd_destroy},
	};
	enum { NCH = sizeof(chans) / sizeof(chans[0]) };

	if (argc > 1)
		run_s = atof(argv[1]) > 0 ? atof(argv[1]) : run_s;
	signal(SIGPIPE, SIG_IGN);
	printf("msg_bench: %.2f s per run, ring %u KiB, producer on CPU 0, consumer on CPU 1\n",
	       run_s, RING_BYTES >> 10);
	for (unsigned si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++) {
		uint32_t size = sizes[si];
		double rate[NCH] = {0};
		double floor_bps = memcpy_floor(size);

		printf("\n%u-byte messages (memcpy floor %.2f GB/s)\n", size, floor_bps / 1e9);
		printf("  %-20s %14s %12s %10s\n", "channel", "msgs/s", "MB/s", "of memcpy");
		for (int i = 0; i < NCH; i++) {
			chans[i].why = NULL;
			if (run(&chans[i], size, &rate[i]) != 0) {
				printf("  %-20s skipped: %s\n", chans[i].name,
				       chans[i].why ? chans[i].why : "run failed");
				rate[i] = 0;
				continue;
			}
			printf("  %-20s %14.0f %12.1f %9.1f%%\n", chans[i].name, rate[i],
			       rate[i] * size / 1e6, 100.0 * rate[i] * size / floor_bps);
		}
		printf("  ratios of shmring msg (copying):");
		for (int i = 3; i < NCH; i++)
			if (rate[i] > 0)
				printf("  %.1fx %s", rate[0] / rate[i], chans[i].name);
		printf("\n");
	}
	return 0;
}

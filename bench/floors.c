/* SPDX-License-Identifier: MIT */
/*
 * The machine's floors, measured in the same run as the contenders so that every ratio is
 * taken against this machine under today's load, and the two minimal channels (a spinning
 * and a futex-blocking mailbox of one element) whose round trips are the latency floors.
 */
#include <errno.h>
#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"
#include "pin.h"

void *bench_shm(size_t len)
{
	/* MAP_POPULATE: page faults belong to set-up, not to the first round of a contender */
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_POPULATE,
		       -1, 0);
	if (p == MAP_FAILED)
		abort();
	return p;
}

void bench_shm_free(void *p, size_t len)
{
	munmap(p, len);
}

int bench_ncpus(void)
{
	int *cpus;

	return bench_cpus(&cpus);
}

int bench_pin(int cpu)
{
	/* pid 0 is the calling thread, so this pins threads as well as processes */
	return bench_pin_nth(cpu);
}

static long futex(_Atomic uint32_t *w, int op, uint32_t val)
{
	/* not FUTEX_PRIVATE_FLAG: the word is in memory shared between processes, as in shmring */
	return syscall(SYS_futex, w, op, val, NULL, NULL, 0);
}

/* One element, one full/empty state: the least work any shared-memory channel can do. */
struct mbox {
	alignas(128) _Atomic uint32_t written;
	alignas(128) _Atomic uint32_t read;
	alignas(128) unsigned char data[];
};

struct mbox_chan {
	struct mbox *m;
	size_t len;
	unsigned es;
};

static void *mb_create(const struct bench_cfg *cfg, const char **why)
{
	struct mbox_chan *c = calloc(1, sizeof(*c));
	(void)why;
	c->len = sizeof(struct mbox) + cfg->es;
	c->m = bench_shm(c->len);
	c->es = cfg->es;
	return c;
}

static void *mb_open(void *chan, int role)
{
	(void)role;
	return chan;
}

static int mb_send(void *side, const void *buf, unsigned n)
{
	struct mbox_chan *c = side;
	(void)n;
	uint32_t w = atomic_load_explicit(&c->m->written, memory_order_relaxed);
	/* pairs with the release store of read in mb_recv */
	if (atomic_load_explicit(&c->m->read, memory_order_acquire) != w)
		return 0;
	memcpy(c->m->data, buf, c->es);
	/* pairs with the acquire load of written in mb_recv */
	atomic_store_explicit(&c->m->written, w + 1, memory_order_release);
	return 1;
}

static int mb_recv(void *side, void *buf, unsigned n)
{
	struct mbox_chan *c = side;
	(void)n;
	uint32_t r = atomic_load_explicit(&c->m->read, memory_order_relaxed);
	/* pairs with the release store of written in mb_send */
	if (atomic_load_explicit(&c->m->written, memory_order_acquire) == r)
		return 0;
	memcpy(buf, c->m->data, c->es);
	atomic_store_explicit(&c->m->read, r + 1, memory_order_release);
	return 1;
}

/* The blocking floor: every send wakes (no waiter check), every empty recv sleeps. */
static int fm_send(void *side, const void *buf, unsigned n)
{
	struct mbox_chan *c = side;
	while (mb_send(side, buf, n) == 0)
		sched_yield(); /* only a ping-pong uses this channel, so it is never full */
	futex(&c->m->written, FUTEX_WAKE, 1);
	return 1;
}

static int fm_recv(void *side, void *buf, unsigned n)
{
	struct mbox_chan *c = side;
	uint32_t r = atomic_load_explicit(&c->m->read, memory_order_relaxed);
	/* FUTEX_WAIT re-checks the word in the kernel, so a wake between the load and the
	 * call is not lost */
	while (atomic_load_explicit(&c->m->written, memory_order_acquire) == r)
		futex(&c->m->written, FUTEX_WAIT, r);
	return mb_recv(side, buf, n);
}

static void mb_close(void *side)
{
	(void)side;
}

static void mb_destroy(void *chan)
{
	struct mbox_chan *c = chan;
	bench_shm_free(c->m, c->len);
	free(c);
}

const struct contender bench_spin_mailbox = {"spin-mailbox", 0,	      NULL,	mb_create, mb_open,
					     mb_send,	     mb_recv, mb_close, mb_destroy};
const struct contender bench_futex_mailbox = {"futex-mailbox", BENCH_BLOCKING, NULL,
					      mb_create,       mb_open,	       fm_send,
					      fm_recv,	       mb_close,       mb_destroy};

/* Both sides store into the same line and spin on it: the cost of moving one line there and
 * back, with no clock read inside the loop. */
double bench_floor_cacheline_ns(uint64_t iters)
{
	_Atomic uint64_t *line = bench_shm(4096);
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		bench_pin(1);
		for (uint64_t i = 0; i < iters; i++) {
			while (atomic_load_explicit(line, memory_order_acquire) != 2 * i + 1)
				bench_relax();
			atomic_store_explicit(line, 2 * i + 2, memory_order_release);
		}
		_exit(0);
	}
	bench_pin(0);
	/* let the child reach its loop so that fork is not part of the time */
	usleep(2000);
	uint64_t t0 = bench_now_ns();
	for (uint64_t i = 0; i < iters; i++) {
		atomic_store_explicit(line, 2 * i + 1, memory_order_release);
		while (atomic_load_explicit(line, memory_order_acquire) != 2 * i + 2)
			bench_relax();
	}
	uint64_t t1 = bench_now_ns();
	int st;
	waitpid(pid, &st, 0);
	bench_shm_free((void *)line, 4096);
	return (double)(t1 - t0) / (double)iters;
}

double bench_floor_memcpy_gbs(size_t bytes, uint64_t target_ns)
{
	char *a = bench_shm(bytes), *b = bench_shm(bytes);
	memset(a, 1, bytes);
	uint64_t n = 0, t0 = bench_now_ns(), t1;
	do {
		memcpy(b, a, bytes);
		/* keeps the compiler from dropping copies whose result is never read */
		__asm__ volatile("" : : "r"(b) : "memory");
		n++;
		t1 = bench_now_ns();
	} while (t1 - t0 < target_ns);
	bench_shm_free(a, bytes);
	bench_shm_free(b, bytes);
	return (double)(n * bytes) / (double)(t1 - t0);
}

double bench_floor_futex_wake_ns(uint64_t iters)
{
	_Atomic uint32_t *w = bench_shm(4096);
	uint64_t t0 = bench_now_ns();
	for (uint64_t i = 0; i < iters; i++)
		futex(w, FUTEX_WAKE, 1);
	uint64_t t1 = bench_now_ns();
	bench_shm_free((void *)w, 4096);
	return (double)(t1 - t0) / (double)iters;
}

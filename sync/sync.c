/* SPDX-License-Identifier: MIT */
/*
 * Sleep and wake across processes (futex or POSIX semaphore), spin policy, peer liveness,
 * the event FIFO. The hand-shake and its proof are described in sync/sync.h and modelled in
 * sync/handshake.pml.
 *
 * Why an asymmetric barrier (membarrier) rather than a fence on publish: the publish path
 * runs once per message (or burst) while sleeping is rare, so the full barrier belongs on the
 * sleeper's side. Measured with bench/sync_bench.c on this machine (see the report / README):
 * a seq_cst fence in every publish costs more per message than the whole non-blocking push,
 * whereas membarrier(GLOBAL_EXPEDITED) adds a few microseconds to a sleep that already costs
 * tens. Where membarrier is unavailable (old kernel, seccomp), the process sets the sticky
 * _SHMRING_WQ_FENCE bit in both waiters words at attach; every waker then sees a non-zero
 * word, takes the slow path and fences there (F2) before it looks again: a plain seq_cst
 * fence per publish, option (c), for that ring only.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <linux/membarrier.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../ring/internal.h"
#include "sync.h"

#define DEFAULT_SPIN_NS	 20000u
#define DEFAULT_YIELDS	 4u
#define DEFAULT_SLICE_MS 100u
/* OFD lock bytes of the roles: far beyond any ring, so no other lock of the library meets them */
#define LOCK_BYTE_BASE (1ll << 40)
/* OFD lock bytes of MPMC participant records, one each, after the roles' */
#define REC_LOCK_BASE (LOCK_BYTE_BASE + 64)

/* ---- process-wide: membarrier registration (the only global state, per issue 4) ------------ */

static _Atomic int mb_state; /* 0 unknown, 1 usable, -1 not usable */
static _Atomic pid_t mb_pid; /* process that registered (a fork child registers again) */

static int membarrier(int cmd, unsigned flags)
{
	return (int)syscall(SYS_membarrier, cmd, flags, 0);
}

/* Registers this process as a target of MEMBARRIER_CMD_GLOBAL_EXPEDITED. Returns 1 if usable. */
static int mb_register(void)
{
	pid_t me = getpid();

	if (atomic_load(&mb_pid) == me)
		return atomic_load(&mb_state) > 0;
	int ok = 0;
	if (!getenv("SHMRING_NO_MEMBARRIER")) {
		int q = membarrier(MEMBARRIER_CMD_QUERY, 0);
		if (q > 0 && (q & MEMBARRIER_CMD_GLOBAL_EXPEDITED) &&
		    (q & MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) &&
		    membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED, 0) == 0)
			ok = 1;
	}
	atomic_store(&mb_state, ok ? 1 : -1);
	atomic_store(&mb_pid, me);
	return ok;
}

/* ---- time ---------------------------------------------------------------------------------- */

void _shmring_now(struct timespec *ts)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
}

int _shmring_ts_before(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

/* A normalised time in ns; 0 before the epoch of the clock, saturated far in the future. */
static uint64_t ts_ns(const struct timespec *t)
{
	if (t->tv_sec < 0)
		return 0;
	if ((uint64_t)t->tv_sec >= UINT64_MAX / 1000000000ull - 1)
		return UINT64_MAX;
	return (uint64_t)t->tv_sec * 1000000000ull + (uint64_t)t->tv_nsec;
}

/* A deadline the blocking calls accept: none, or one with tv_nsec in [0, 1e9). */
static int deadline_ok(const struct timespec *d)
{
	return !d || (d->tv_nsec >= 0 && d->tv_nsec < 1000000000L);
}

static uint64_t now_ns(void)
{
	struct timespec t;

	_shmring_now(&t);
	return ts_ns(&t);
}

static struct timespec ns_ts(uint64_t ns)
{
	return (struct timespec){(time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull)};
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield" ::: "memory");
#else
	atomic_signal_fence(memory_order_seq_cst);
#endif
}

/* ---- counters ------------------------------------------------------------------------------- */

/* The counters, as 8-byte aligned words: on 32-bit x86 a uint64_t in a struct is only 4-byte
 * aligned, and a 64-bit atomic there would be a library call, or a lock split over two lines
 * (the member is _Alignas(8) in sync/sync.h, so the promise holds). */
typedef uint64_t stat_word __attribute__((aligned(8)));
#define STAT(r, field)	(*(stat_word *)&(r)->sync->st.field)
#define COUNT(r, field) __atomic_fetch_add(&STAT(r, field), 1, __ATOMIC_RELAXED)

int shmring_stats(const struct shmring *r, struct shmring_stats *out)
{
	if (!r || !out || !r->sync)
		return -EINVAL;
	out->wake_syscalls = __atomic_load_n(&STAT(r, wake_syscalls), __ATOMIC_RELAXED);
	out->wait_syscalls = __atomic_load_n(&STAT(r, wait_syscalls), __ATOMIC_RELAXED);
	out->barrier_syscalls = __atomic_load_n(&STAT(r, barrier_syscalls), __ATOMIC_RELAXED);
	out->event_syscalls = __atomic_load_n(&STAT(r, event_syscalls), __ATOMIC_RELAXED);
	out->spins = __atomic_load_n(&STAT(r, spins), __ATOMIC_RELAXED);
	out->sleeps = __atomic_load_n(&STAT(r, sleeps), __ATOMIC_RELAXED);
	return 0;
}

void shmring_stats_reset(struct shmring *r)
{
	if (!r || !r->sync)
		return;
	__atomic_store_n(&STAT(r, wake_syscalls), 0, __ATOMIC_RELAXED);
	__atomic_store_n(&STAT(r, wait_syscalls), 0, __ATOMIC_RELAXED);
	__atomic_store_n(&STAT(r, barrier_syscalls), 0, __ATOMIC_RELAXED);
	__atomic_store_n(&STAT(r, event_syscalls), 0, __ATOMIC_RELAXED);
	__atomic_store_n(&STAT(r, spins), 0, __ATOMIC_RELAXED);
	__atomic_store_n(&STAT(r, sleeps), 0, __ATOMIC_RELAXED);
}

/* ---- policy ---------------------------------------------------------------------------------- */

/* One CPU for this thread (affinity) or for the machine: spinning only delays the peer. */
static int one_cpu(void)
{
	cpu_set_t set;

	if (sysconf(_SC_NPROCESSORS_ONLN) <= 1)
		return 1;
	if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) <= 1)
		return 1;
	return 0;
}

int shmring_set_wait_policy(struct shmring *r, const struct shmring_wait_policy *p)
{
	struct shmring_wait_policy d = {DEFAULT_SPIN_NS, DEFAULT_YIELDS, DEFAULT_SLICE_MS, 0};

	if (!r || !r->sync)
		return -EINVAL;
	if (p) {
		if (p->reserved_)
			return -EINVAL;
		if (p->spin_ns)
			d.spin_ns = p->spin_ns == UINT32_MAX ? 0 : p->spin_ns;
		if (p->yields)
			d.yields = p->yields == UINT32_MAX ? 0 : p->yields;
		if (p->slice_ms)
			d.slice_ms = p->slice_ms;
	}
	if (one_cpu())
		d.spin_ns = 0;
	r->sync->pol = d;
	return 0;
}

int shmring_get_wait_policy(const struct shmring *r, struct shmring_wait_policy *p)
{
	if (!r || !r->sync || !p)
		return -EINVAL;
	*p = r->sync->pol;
	return 0;
}

/* ---- back-end: format, wake, sleep ---------------------------------------------------------- */

void _shmring_sync_format(void *sync_part, uint32_t hflags)
{
	struct _shmring_syncarea *a = sync_part;

	memset(a, 0, sizeof(*a));
	if (hflags & _SHMRING_HF_SEM)
		for (int i = 0; i < 2; i++)
			sem_init(&a->wq[i].sem, 1, 0);
}

static long futex(_Atomic uint32_t *w, int op, uint32_t val, const struct timespec *ts,
		  uint32_t bits)
{
	/* Shared futex (no FUTEX_PRIVATE_FLAG): the word is in memory mapped by other processes. */
	return syscall(SYS_futex, (uint32_t *)w, op, val, ts, NULL, bits);
}

static void event_fire(struct shmring *r);

/*
 * glibc aborts the process ("The futex facility returned an unexpected error code") when a
 * sem_t in shared memory holds garbage in its flags word. A peer's bug must not kill us, so we
 * compare its flags word (and the padding after it), not the words that move (the count, the
 * number of sleepers), with a freshly initialised process-shared semaphore before each call.
 * glibc's layout: with 64-bit atomics {uint64_t value and sleepers; int private; int pad}, else
 * {unsigned value; int private; int pad; unsigned sleepers}. Comparing bytes 8 on, as fits 64-bit,
 * took a 32-bit semaphore with a sleeper inside for corrupt (found in review: on i386 a waker
 * posted nothing, a second sleeper got -EPROTO). A hostile peer can still change it between the
 * check and the call: the futex back-end, which parses nothing, is the one to use against hostile
 * peers.
 */
static sem_t sem_model;
static size_t sem_fixed_from, sem_fixed_to;
static pthread_once_t sem_model_once = PTHREAD_ONCE_INIT;

/* Where the flags word is, found at run time rather than guessed from the target (x32 and
 * others differ from what their pointer size suggests; found in review): the one word a
 * process-private and a process-shared semaphore differ in. Compared: it and the padding word
 * after it, where there is one. A C library whose two differ nowhere is not checked. */
static void sem_model_init(void)
{
	sem_t priv;

	memset(&sem_model, 0, sizeof(sem_model));
	memset(&priv, 0, sizeof(priv));
	sem_init(&sem_model, 1, 0);
	sem_init(&priv, 0, 0);
	for (size_t i = 0; i < sizeof(sem_t); i++)
		if (((const unsigned char *)&sem_model)[i] != ((const unsigned char *)&priv)[i]) {
			sem_fixed_from = i & ~(size_t)3;
			sem_fixed_to = sem_fixed_from + 8 <= sizeof(sem_t) ? sem_fixed_from + 8
									   : sem_fixed_from + 4;
			break;
		}
	sem_destroy(&priv);
}

static int sem_sane(sem_t *s)
{
	pthread_once(&sem_model_once, sem_model_init);
	return memcmp((char *)s + sem_fixed_from, (char *)&sem_model + sem_fixed_from,
		      sem_fixed_to - sem_fixed_from) == 0;
}

static void wake_q(struct shmring *r, struct _shmring_wq *q, uint32_t v, int force)
{
	if (v & _SHMRING_WQ_EVENT) {
		if (atomic_fetch_and_explicit(&q->waiters, ~_SHMRING_WQ_EVENT,
					      memory_order_relaxed) &
		    _SHMRING_WQ_EVENT)
			event_fire(r);
	}
	uint32_t n = v & _SHMRING_WQ_COUNT;
	if (!n)
		return;
	/* A4: pairs with the seq_cst registration RMW in _shmring_wq_register(), which follows
	 * the registrant's read of seq: we read that seq or a later one. */
	uint32_t s = atomic_load_explicit(&q->seq, memory_order_acquire);
	/* seq moved since the last registrant read it: all of them are awake, because a futex
	 * sleeper whose seq is stale returns at once. A semaphore sleeper compares nothing, and
	 * one that registered with the old seq sleeps on (found in review: up to a slice late),
	 * so on that back-end there is no skip (the posts below are capped instead). */
	if (!force && !r->sync->sem &&
	    (s & 0xffffu) != (v & _SHMRING_WQ_SSEQ) >> _SHMRING_WQ_SSEQ_SHIFT)
		return;
	/* R3: pairs with A3 in _shmring_wq_register(): a waiter that reads the new seq also
	 * sees the position published before it. */
	atomic_fetch_add_explicit(&q->seq, 1, memory_order_release);
	if (r->sync->sem) {
		if (n > 64)
			n = 64;
		if (!sem_sane(&q->sem))
			return;
		/* Tokens up to the sleepers counted, not one more per publish: with no skip on this
		 * back-end, posting n each time piled tokens up, and waits spun through them (found
		 * in review; worst with a count left by a sleeper that died). */
		int have = 0;
		if (sem_getvalue(&q->sem, &have) != 0 || have < 0)
			have = 0;
		for (uint32_t i = (uint32_t)have; i < n; i++) {
			sem_post(&q->sem);
			COUNT(r, wake_syscalls);
		}
	} else {
		futex(&q->seq, FUTEX_WAKE, INT_MAX, NULL, 0);
		COUNT(r, wake_syscalls);
	}
}

static void try_cool(struct _shmring_wq *q, uint32_t v, uint64_t now, uint64_t slept,
		     uint64_t *seen);

void _shmring_wake(struct shmring *r, _Atomic uint32_t *waiters)
{
	struct _shmring_wq *q =
	    (struct _shmring_wq *)((char *)waiters - offsetof(struct _shmring_wq, waiters));
	uint32_t v = atomic_load_explicit(waiters, memory_order_relaxed);

	if (v & (_SHMRING_WQ_FENCE | _SHMRING_WQ_HOT | _SHMRING_WQ_HOTP)) {
		/* F2: pairs with F3 in _shmring_wq_register() (hot mode, or some process has no
		 * membarrier): publish (R1/R2), fence, then look at the waiters again. */
		atomic_thread_fence(memory_order_seq_cst);
	}
	/* A4': the registration we see carries the seq its sleeper read (see A4). */
	v = atomic_load_explicit(waiters, memory_order_acquire);
	wake_q(r, q, v, 0);
	/* Hot with nobody registered: a handle that only publishes, non-blocking, cools it too
	 * (else the queue stayed hot, and this fence and call stayed on every publish, until some
	 * blocking call of a handle of it returned without sleeping). It looks at the clock once
	 * every 64 such publishes. A sleeper seen registered, or a registration since the last
	 * look (the seq it recorded changed: one after a wake), starts its second again, so a queue
	 * whose sleeper sleeps often stays hot. So it cools at the first look a second or more
	 * after the look that started the second: after at least a second and 128 publishes
	 * (found in review: a restart on a pause between looks never let a slow publisher cool
	 * it). */
	if (__builtin_expect(v & (_SHMRING_WQ_HOT | _SHMRING_WQ_HOTP), 0)) {
		struct _shmring_sync *s = r->sync;
		int dir =
		    q == &s->area->wq[_SHMRING_DIR_DATA] ? _SHMRING_DIR_DATA : _SHMRING_DIR_SPACE;
		if (v & _SHMRING_WQ_COUNT) {
			s->wake_seen_ns[dir] = 0;
		} else if (!(++s->wake_hot[dir] & 63)) {
			if ((v & _SHMRING_WQ_SSEQ) != s->wake_sseq[dir]) {
				s->wake_sseq[dir] = v & _SHMRING_WQ_SSEQ;
				s->wake_seen_ns[dir] = 0;
			}
			try_cool(q, v, now_ns(), 0, &s->wake_seen_ns[dir]);
		}
	}
}

void _shmring_wq_wake(struct shmring *r, int dir, int force)
{
	struct _shmring_wq *q = &r->sync->area->wq[dir];
	/* F2': pairs with F3/M1 in _shmring_wq_register(), as in _shmring_wake(). */
	atomic_thread_fence(memory_order_seq_cst);
	uint32_t v = atomic_load_explicit(&q->waiters, memory_order_relaxed);

	if (force && !(v & _SHMRING_WQ_COUNT))
		v |= 1; /* bump seq and wake even if no one seems registered */
	wake_q(r, q, v, force);
}

/* The barrier of the sleeper's side: M1, or F3 without membarrier. */
static void sleeper_barrier(struct shmring *r)
{
	if (atomic_load_explicit(&mb_state, memory_order_relaxed) > 0) {
		/* M1: pairs with F1 in the publish paths (shmring/spsc.h, shmring/msg.h): every CPU
		 * running a registered process passes a full barrier, so a waker's load of the
		 * waiters word either follows our registration or its position store precedes our
		 * re-check. */
		if (membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0) == 0) {
			COUNT(r, barrier_syscalls);
			return;
		}
	}
	/* F3: pairs with F2 in _shmring_wake(): classic Dekker with both sides fenced. */
	atomic_thread_fence(memory_order_seq_cst);
}

uint32_t _shmring_wq_register(struct shmring *r, int dir)
{
	struct _shmring_wq *q = &r->sync->area->wq[dir];
	/* Acquire here and on a failed CAS: a registration we overwrite happens before our read
	 * of seq below, so we read at least the seq its registrant read. */
	uint32_t old = atomic_load_explicit(&q->waiters, memory_order_acquire), nw, seq;
	int mb = atomic_load_explicit(&mb_state, memory_order_relaxed) > 0;
	/* Bounded (found in review): each failure is another writer's success, and only a peer
	 * rewriting the word without end fails us this often. Then we sleep unregistered, which
	 * a slice bounds, and our unregister takes one from the count it made up. */
	unsigned tries = 0;

	do {
		/* A3: pairs with R3 in wake_q(): read before registering (see sync.h). Read again
		 * in every attempt: SSEQ must never go back to an older seq than a sleeper's, or
		 * wakers skip it (found in review; sync/sseq.pml -DSTALE is the old order). */
		seq = atomic_load_explicit(&q->seq, memory_order_acquire);
		if ((old & _SHMRING_WQ_COUNT) == _SHMRING_WQ_COUNT)
			nw = old; /* saturated (a hostile peer): wakers still see it non-zero */
		else
			nw = (old & ~_SHMRING_WQ_SSEQ) + 1;
		nw = (nw & ~_SHMRING_WQ_SSEQ) | ((seq & 0xffffu) << _SHMRING_WQ_SSEQ_SHIFT);
		if (mb && !(old & (_SHMRING_WQ_HOT | _SHMRING_WQ_FENCE)))
			nw |= _SHMRING_WQ_HOTP; /* wakers fence from now on; M1 below */
	} while (!atomic_compare_exchange_weak_explicit(&q->waiters, &old, nw, memory_order_seq_cst,
							memory_order_acquire) &&
		 ++tries < (1u << 16));

	if (old & (_SHMRING_WQ_HOT | _SHMRING_WQ_FENCE)) {
		/* F3: pairs with F2 in _shmring_wake(): every waker fences since HOT was set
		 * after an M1 (or FENCE at attach). */
		atomic_thread_fence(memory_order_seq_cst);
	} else {
		sleeper_barrier(r);
		/* M1 done: every waker that missed HOTP has its store drained; the next
		 * sleepers may skip M1 (hot mode). */
		if (mb)
			atomic_fetch_or_explicit(&q->waiters, _SHMRING_WQ_HOT,
						 memory_order_relaxed);
	}
	return seq;
}

void _shmring_wq_unregister(struct shmring *r, int dir)
{
	struct _shmring_wq *q = &r->sync->area->wq[dir];
	uint32_t v = atomic_load_explicit(&q->waiters, memory_order_relaxed);

	/* Never below zero, whatever a peer wrote; bounded as the registration. */
	for (unsigned tries = 0; (v & _SHMRING_WQ_COUNT) && tries < (1u << 16); tries++) {
		if (atomic_compare_exchange_weak_explicit(
			&q->waiters, &v, v - 1, memory_order_relaxed, memory_order_relaxed))
			return;
	}
}

int _shmring_wq_sleep(struct shmring *r, int dir, uint32_t seq, const struct timespec *until)
{
	struct _shmring_wq *q = &r->sync->area->wq[dir];
	int rc;

	COUNT(r, wait_syscalls);
	if (r->sync->sem) {
		int cs, err;
		if (!sem_sane(&q->sem))
			return -EPROTO;
		/* sem_wait and sem_clockwait are cancellation points, and a thread cancelled in
		 * one left its registration behind: the waiter count one high for good, and every
		 * publish then paid a wake for nobody (found in review). Neither is one here, as
		 * the futex sleep below is not: a cancel is acted on after the call returns. */
		pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cs);
		rc = until ? sem_clockwait(&q->sem, CLOCK_MONOTONIC, until) : sem_wait(&q->sem);
		err = errno;
		pthread_setcancelstate(cs, NULL);
		if (rc == 0)
			return 0;
		return err == ETIMEDOUT ? -ETIMEDOUT : err == EINTR ? -EINTR : 0;
	}
	/* FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC time (no FUTEX_CLOCK_REALTIME). */
	if (futex(&q->seq, FUTEX_WAIT_BITSET, seq, until, FUTEX_BITSET_MATCH_ANY) == 0)
		return 0;
	if (errno == ETIMEDOUT)
		return -ETIMEDOUT;
	if (errno == EINTR)
		return -EINTR;
	return 0; /* EAGAIN: seq moved, a wake came in between */
}

/* ---- liveness ----------------------------------------------------------------------------------
 */

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434 /* the same number on every architecture (Linux 5.3) */
#endif

int _shmring_group_exited(pid_t pid)
{
	int fd = (int)syscall(SYS_pidfd_open, pid, 0);

	if (fd < 0)
		return errno == ESRCH ? 1 : -1;
	/* A pidfd polls readable once every thread of the group has exited (zombie or reaped),
	 * not when only the leader has. */
	struct pollfd pf = {.fd = fd, .events = POLLIN};
	int rc;
	do
		rc = poll(&pf, 1, 0);
	while (rc < 0 && errno == EINTR);
	close(fd);
	return rc < 0 ? -1 : rc > 0;
}

/* proc_start() could not tell: a judge short of descriptors or memory, an unreadable entry. */
#define START_UNKNOWN UINT64_MAX

/*
 * Field 22 of /proc/pid/stat (start time in clock ticks since boot); 0 when the process has no
 * entry (ENOENT, ESRCH) or has exited and waits to be reaped; START_UNKNOWN when that cannot be
 * told, which judges must read as alive (found in review: at EMFILE a live holder read as gone,
 * a blocking call said -EPIPE and a claimer took the holder's slot; ring/mpmc.c already counted
 * only ENOENT and ESRCH).
 */
static uint64_t proc_start(pid_t pid)
{
	char path[64], buf[512];
	int fd;
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT || errno == ESRCH ? 0 : START_UNKNOWN;
	n = read(fd, buf, sizeof(buf) - 1);
	int e = errno;
	close(fd);
	if (n < 0)
		return e == ESRCH ? 0 : START_UNKNOWN; /* ESRCH: it exited after the open */
	if (n == 0)
		return 0;
	buf[n] = 0;
	char *p = strrchr(buf, ')'); /* comm may hold spaces and parentheses */
	if (!p)
		return START_UNKNOWN;
	p++;
	while (*p == ' ')
		p++;
	/* field 3, the state: a zombie has exited (its claim is gone) but keeps its start time
	 * until its parent reaps it, and the parent may be the one waiting for us. The state is
	 * the leader's: a process whose main thread called pthread_exit reads Z while its other
	 * threads run on (found in review: a live producer read as gone), so ask its pidfd. */
	if (*p == 'Z' || *p == 'X' || *p == 'x') {
		int ex = _shmring_group_exited(pid);
		/* Short of descriptors or memory for the pidfd: cannot tell. Without pidfds at
		 * all (a kernel before 5.3, a seccomp filter), Z reads gone as before. */
		if (ex < 0 && (errno == EMFILE || errno == ENFILE || errno == ENOMEM))
			return START_UNKNOWN;
		if (ex != 0)
			return 0;
	}
	/* fields 3.. follow; field 22 is the 20th of them */
	for (int f = 3; f < 22; f++) {
		while (*p == ' ')
			p++;
		while (*p && *p != ' ')
			p++;
	}
	return strtoull(p, NULL, 10);
}

/*
 * A liveness slot holds one word: the holder's pid in the low 22 bits (Linux's PID_MAX_LIMIT is
 * 2^22) and its start time above (field 22, clock ticks since boot, 42 bits: centuries). One
 * word, so that a claim is one CAS from the word judged free (0, or a dead holder's), and no
 * state lies between "free" and "held by a known process": with separate pid and start words a
 * losing claimer's reset of start could land after the winner's store and leave a slot reading
 * "being claimed", alive for ever (found in review). Freeing a dead holder's slot by CAS from its
 * exact word cannot free a later claim: the same word would be the same process.
 */
#define LIVE_PID_BITS 22
#define LIVE_PID_MASK ((1ull << LIVE_PID_BITS) - 1)

static uint64_t live_word(pid_t pid, uint64_t start)
{
	return (uint64_t)pid | start << LIVE_PID_BITS;
}

static int slot_alive(uint64_t w)
{
	pid_t pid = (pid_t)(w & LIVE_PID_MASK);
	uint64_t start = w >> LIVE_PID_BITS;

	if (pid == 0 || _shmring_group_exited(pid) == 1)
		return 0; /* gone, or a zombie: its claim is over */
	/* No /proc when it claimed, or none here now (found in review: every start time then
	 * read as 0, so a claim without /proc took live holders' slots): the pid alone, so a
	 * holder's reused pid reads alive until that process exits. */
	if (start == 0 || access("/proc/self/stat", F_OK) != 0)
		return kill(pid, 0) == 0 || errno == EPERM;
	uint64_t now = proc_start(pid);
	if (now == START_UNKNOWN)
		return 1;
	/* No entry for a pid that kill() says exists and is another user's: hidden by hidepid,
	 * alive (as ring/mpmc.c judges it; found in review). */
	if (now == 0)
		return kill(pid, 0) != 0 && errno == EPERM;
	return (now & (UINT64_MAX >> LIVE_PID_BITS)) == start;
}

/*
 * Claims are per process. A child made by fork() shares its parent's open file descriptions,
 * so it would keep the parent's OFD claims alive after the parent died; the child handler
 * closes its copies (the parent's locks stay), forgets its copies of the parent's liveness
 * slots (anonymous memory), and the child claims for itself if it wants.
 */
static pthread_mutex_t claims_mu = PTHREAD_MUTEX_INITIALIZER;
static struct _shmring_sync *claims_head;
static pthread_once_t claims_once = PTHREAD_ONCE_INIT;

static void claims_prepare(void)
{
	pthread_mutex_lock(&claims_mu);
}

static void claims_parent(void)
{
	pthread_mutex_unlock(&claims_mu);
}

static void claims_child(void)
{
	struct _shmring_sync *next;

	for (struct _shmring_sync *s = claims_head; s; s = next) {
		next = s->next;
		for (int i = 0; i < 2; i++) {
			if (s->lock_fd[i] >= 0)
				close(s->lock_fd[i]);
			s->lock_fd[i] = -1;
			s->live_slot[i] = -1; /* the parent's pid, not ours */
		}
		/* The parent's record lock: our copy would keep it held after the parent died
		 * (closing it does not drop it while the parent's copy is open). */
		if (s->rec_fd >= 0)
			close(s->rec_fd);
		s->rec_fd = -1;
		/* And the parent's handle takes none in the child, but for a message ring's
		 * producer, whose child takes a record of its own (_shmring_rec_after_fork()). */
		s->rec_fd_state = -2;
		s->roles = 0;
		/* Unlinked: a claim the child then makes links it again, so that the child's
		 * own children forget it in turn (found in review: a grandchild's close freed
		 * the child's claim). */
		s->next = s->prev = NULL;
		s->linked = 0;
	}
	claims_head = NULL;
	pthread_mutex_unlock(&claims_mu);
}

static void claims_init(void)
{
	pthread_atfork(claims_prepare, claims_parent, claims_child);
}

/* With claims_mu held. */
static void claims_link(struct _shmring_sync *s)
{
	if (!s->linked) {
		s->next = claims_head;
		s->prev = NULL;
		if (claims_head)
			claims_head->prev = s;
		claims_head = s;
		s->linked = 1;
	}
}

/* With claims_mu held. */
static void claims_unlink(struct _shmring_sync *s)
{
	if (s->linked) {
		if (s->prev)
			s->prev->next = s->next;
		else
			claims_head = s->next;
		if (s->next)
			s->next->prev = s->prev;
		s->linked = 0;
	}
}

/* A new open file description of the ring's own file (not of whatever its name now names). */
static int reopen_own(int fd)
{
	char path[64];

	/* thread-self first: /proc/self/fd is gone once the main thread has called pthread_exit
	 * (ENOENT, found in review), while the process and its descriptors live on. */
	snprintf(path, sizeof(path), "/proc/thread-self/fd/%d", fd);
	int r = open(path, O_RDWR | O_CLOEXEC);
	if (r >= 0 || errno != ENOENT)
		return r;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	return open(path, O_RDWR | O_CLOEXEC);
}

static int claim_role_locked(struct shmring *r, int role);

/*
 * Takes the role's claim and links the handle, all under claims_mu: a fork from another thread
 * between the claim and the link would leave the child a copy that claims_child() cannot see,
 * holding the parent's claim for as long as the child lives (found in review).
 */
static int claim_role(struct shmring *r, int role)
{
	pthread_once(&claims_once, claims_init);
	pthread_mutex_lock(&claims_mu);
	int rc = claim_role_locked(r, role);
	pthread_mutex_unlock(&claims_mu);
	return rc;
}

static int claim_role_locked(struct shmring *r, int role)
{
	struct _shmring_sync *s = r->sync;
	struct _shmring_live *lv = &s->area->live[role];
	int fd = r->seg->fd;

	if (s->lock_fd[role] >= 0 || s->live_slot[role] >= 0)
		return 0;
	/* A new open file description of our own: its lock is this handle's claim, and seg->fd
	 * (no locks) can see it with F_OFD_GETLK. Without /proc there is none to be had, and no
	 * slot either: a slot claimed without /proc is judged by pid alone, which a handle with
	 * the file in another pid namespace misreads (found in review, of a slot fallback). */
	int lfd = fd >= 0 ? reopen_own(fd) : -1;
	if (fd >= 0 && lfd < 0) /* not -ENOENT, which means "no such ring" to open's callers */
		return errno == ENOENT ? -EOPNOTSUPP : -errno;
	if (lfd >= 0) {
		struct flock fl = {.l_type = F_RDLCK,
				   .l_whence = SEEK_SET,
				   .l_start = LOCK_BYTE_BASE + role,
				   .l_len = 1};
		if (fcntl(lfd, F_OFD_SETLK, &fl) != 0) {
			int e = -errno;
			close(lfd);
			return e;
		}
		s->lock_fd[role] = lfd;
		claims_link(s);
	} else {
		uint64_t st = proc_start(getpid());
		/* Our own start time unknown (short of descriptors): claim by pid alone, as a
		 * process without /proc does. */
		uint64_t me = live_word(getpid(), st == START_UNKNOWN ? 0 : st);
		int got = -1;
		for (int i = 0; i < _SHMRING_LIVE_SLOTS && got < 0; i++) {
			uint64_t w = atomic_load(&lv->slot[i].word);
			if (w && slot_alive(w))
				continue;
			/* Free, or its holder is dead: ours, unless it changed since we judged. */
			if (atomic_compare_exchange_strong(&lv->slot[i].word, &w, me))
				got = i;
		}
		if (got < 0)
			return -EBUSY;
		s->live_slot[role] = got;
		s->live_word[role] = me;
		/* So that a fork child forgets it (claims_child()): closing its copy must not
		 * free our slot (found in review), and its own claim takes a slot of its own. */
		claims_link(s);
	}
	atomic_store(&lv->seen, 1);
	return 0;
}

static int rec_lock_op(int fd, unsigned i, short type, int cmd)
{
	struct flock fl = {
	    .l_type = type, .l_whence = SEEK_SET, .l_start = REC_LOCK_BASE + (off_t)i, .l_len = 1};

	if (fcntl(fd, cmd, &fl) != 0)
		return errno == EAGAIN || errno == EACCES ? -EAGAIN : -errno;
	return cmd == F_OFD_GETLK ? fl.l_type != F_UNLCK : 0;
}

int _shmring_rec_open(struct shmring *r)
{
	struct _shmring_sync *s = r->sync;
	int rc = 0;

	if (s->rec_fd_state != 0)
		return s->rec_fd_state > 0 ? 0 : -ENOTSUP;
	if (r->seg->fd < 0) {
		s->rec_fd_state = -1;
		return -ENOTSUP;
	}
	pthread_once(&claims_once, claims_init);
	/* Opened and linked under claims_mu, as a role claim is (claim_role()). */
	pthread_mutex_lock(&claims_mu);
	s->rec_fd = reopen_own(r->seg->fd);
	if (s->rec_fd >= 0) {
		s->rec_fd_state = 1;
		claims_link(s);
	} else if (errno == ENOENT) {
		s->rec_fd_state = -1; /* no /proc: judged by pid and start time for good */
		rc = -ENOTSUP;
	} else {
		rc = -errno; /* EMFILE and the like: say so rather than judge by pid */
	}
	pthread_mutex_unlock(&claims_mu);
	return rc;
}

void _shmring_rec_after_fork(struct shmring *r)
{
	if (r->sync->rec_fd_state == -2)
		r->sync->rec_fd_state = 0;
}

int _shmring_rec_lock(struct shmring *r, unsigned i)
{
	struct _shmring_sync *s = r->sync;

	int rc = _shmring_rec_open(r);

	return rc ? rc : rec_lock_op(s->rec_fd, i, F_WRLCK, F_OFD_SETLK);
}

void _shmring_rec_unlock(struct shmring *r, unsigned i)
{
	if (r->sync->rec_fd >= 0)
		rec_lock_op(r->sync->rec_fd, i, F_UNLCK, F_OFD_SETLK);
}

int _shmring_rec_locked(struct shmring *r, unsigned i)
{
	/* seg->fd holds no lock: every lock, ours included, is another description's. */
	if (r->seg->fd < 0)
		return -ENOTSUP;
	return rec_lock_op(r->seg->fd, i, F_WRLCK, F_OFD_GETLK);
}

int _shmring_role_seen(struct shmring *r, int role)
{
	return atomic_load_explicit(&r->sync->area->live[role].seen, memory_order_relaxed) != 0;
}

/*
 * Both kinds of claim count, whichever kind this handle would make: on one file, a handle that
 * has it claims by lock, and one that attached its own mapping of it by slot
 * (found in review: each looked only at its own kind and read the other's peer as gone).
 */
int _shmring_role_alive(struct shmring *r, int role)
{
	if (r->seg->fd >= 0) {
		struct flock fl = {.l_type = F_WRLCK,
				   .l_whence = SEEK_SET,
				   .l_start = LOCK_BYTE_BASE + role,
				   .l_len = 1};
		if (fcntl(r->seg->fd, F_OFD_GETLK, &fl) != 0)
			return -errno;
		if (fl.l_type != F_UNLCK)
			return 1;
	}
	struct _shmring_live *lv = &r->sync->area->live[role];
	for (int i = 0; i < _SHMRING_LIVE_SLOTS; i++)
		if (slot_alive(atomic_load(&lv->slot[i].word)))
			return 1;
	return 0;
}

int shmring_peer_alive(struct shmring *r, int role)
{
	if (!r || !r->sync || (role != SHMRING_ROLE_PRODUCER && role != SHMRING_ROLE_CONSUMER))
		return -EINVAL;
	return _shmring_role_alive(r, role);
}

static void drop_role(struct shmring *r, int role);

int shmring_claim(struct shmring *r, uint32_t role_flags)
{
	int rc = 0;

	if (!r || !r->sync || (role_flags & ~(SHMRING_F_PRODUCER | SHMRING_F_CONSUMER)))
		return -EINVAL;
	mb_register(); /* a child after fork() registers for itself */
	if (role_flags & SHMRING_F_PRODUCER)
		rc = claim_role(r, _SHMRING_ROLE_PROD);
	if (!rc && (role_flags & SHMRING_F_CONSUMER)) {
		rc = claim_role(r, _SHMRING_ROLE_CONS);
		/* All or nothing: a producer claim made by this call goes again (found in
		 * review: it stayed, read alive, and nothing would drop it). */
		if (rc && (role_flags & SHMRING_F_PRODUCER) &&
		    !(r->sync->roles & SHMRING_F_PRODUCER)) {
			/* Under claims_mu, as the claim was: a fork between the close of the lock
			 * fd and forgetting it would have the child close whatever reused that
			 * number. */
			pthread_mutex_lock(&claims_mu);
			drop_role(r, _SHMRING_ROLE_PROD);
			pthread_mutex_unlock(&claims_mu);
		}
	}
	if (!rc)
		r->sync->roles |= (int)role_flags;
	return rc;
}

static void drop_role(struct shmring *r, int role)
{
	struct _shmring_sync *s = r->sync;

	if (s->lock_fd[role] >= 0) {
		close(s->lock_fd[role]);
		s->lock_fd[role] = -1;
	}
	if (s->live_slot[role] >= 0) {
		uint64_t me = s->live_word[role];
		/* Only our own claim: a fork child's copies have live_slot -1 (claims_child()),
		 * and the pid check covers a fork from another thread between our claim and its
		 * link. */
		if ((pid_t)(me & LIVE_PID_MASK) == getpid())
			atomic_compare_exchange_strong(
			    &s->area->live[role].slot[s->live_slot[role]].word, &me, 0);
		s->live_slot[role] = -1;
	}
}

/* ---- handles ------------------------------------------------------------------------------------
 */

int _shmring_sync_handle_init(struct shmring *r, uint32_t hflags)
{
	struct _shmring_sync *s = calloc(1, sizeof(*s));
	unsigned char *base = r->seg->base;

	if (!s)
		return -ENOMEM;
	s->area = (struct _shmring_syncarea *)(base + r->seg->geo.part[_SHMRING_PART_SYNC].off);
	s->sem = (hflags & _SHMRING_HF_SEM) != 0;
	s->lock_fd[0] = s->lock_fd[1] = -1;
	s->live_slot[0] = s->live_slot[1] = -1;
	s->fifo_fd = s->fifo_wfd = -1;
	s->rec_fd = -1;
	r->sync = s;
	r->wake_data = &s->area->wq[_SHMRING_DIR_DATA].waiters;
	r->wake_space = &s->area->wq[_SHMRING_DIR_SPACE].waiters;
	shmring_set_wait_policy(r, NULL);
	if (!mb_register()) {
		/* No asymmetric barrier here: every waker of this ring must fence (F2). */
		atomic_fetch_or(r->wake_data, _SHMRING_WQ_FENCE);
		atomic_fetch_or(r->wake_space, _SHMRING_WQ_FENCE);
	}
	return 0;
}

static int fifo_path(struct shmring *r, char *out, size_t n);

void _shmring_sync_handle_fini(struct shmring *r)
{
	struct _shmring_sync *s = r->sync;

	if (!s)
		return;
	int had = s->roles;
	/* Unlinked and closed in one critical section: a fork from another thread in between
	 * would leave the child copies that claims_child() cannot see, holding our claims and
	 * our record's lock for as long as the child lives (found in review). */
	pthread_mutex_lock(&claims_mu);
	claims_unlink(s);
	drop_role(r, _SHMRING_ROLE_PROD);
	drop_role(r, _SHMRING_ROLE_CONS);
	if (s->rec_fd >= 0)
		close(s->rec_fd); /* drops our record's lock, after mpmc.c freed the record */
	s->rec_fd = -1;
	pthread_mutex_unlock(&claims_mu);
	/* Peers asleep learn at once that a role may be gone (pipe close semantics). */
	if (had & SHMRING_F_PRODUCER)
		_shmring_wq_wake(r, _SHMRING_DIR_DATA, 1);
	if (had & SHMRING_F_CONSUMER)
		_shmring_wq_wake(r, _SHMRING_DIR_SPACE, 1);
	/* The FIFO's name stays: it belongs to the segment's name, and goes with it in
	 * shmring_unlink() (found in review: unlinked here, a fork child's close or a consumer
	 * that restarted left producers writing into a FIFO nobody would open again). */
	if (s->fifo_fd >= 0)
		close(s->fifo_fd);
	if (s->fifo_wfd >= 0)
		close(s->fifo_wfd);
	free(s);
	r->sync = NULL;
}

int _shmring_sync_opened(int rc, uint32_t flags, struct shmring **out)
{
	uint32_t roles = flags & (SHMRING_F_PRODUCER | SHMRING_F_CONSUMER);

	if (rc || !roles)
		return rc;
	rc = shmring_claim(*out, roles);
	if (rc) {
		shmring_close(*out);
		*out = NULL;
	}
	return rc;
}

/* ---- the wait loop ----------------------------------------------------------------------------
 */

/*
 * A wait that did not sleep: leave hot mode if this handle has not slept for a second, and only
 * while nobody is registered. Another handle of the same queue (MPMC, MPSC) may be between its
 * registration, which found HOT and so skipped M1, and its sleep: clearing HOT then lets wakers
 * skip F2 against a sleeper that relied on it (found in review; sync/handshake.pml -DOLDCOOL is
 * the old unconditional clear, and spin finds the lost wake-up). With no one registered, the
 * next registrant finds HOT clear and does M1 itself.
 */
static int cool(struct shmring *r, int dir, int rc)
{
	struct _shmring_sync *s = r->sync;
	struct _shmring_wq *q = &s->area->wq[dir];
	uint32_t v = atomic_load_explicit(&q->waiters, memory_order_relaxed);

	if (__builtin_expect(!(v & (_SHMRING_WQ_HOT | _SHMRING_WQ_HOTP)), 1)) {
		s->hot_seen_ns[dir] = 0;
		return rc;
	}
	try_cool(q, v, now_ns(), s->last_sleep_ns, &s->hot_seen_ns[dir]);
	return rc;
}

/* Clears HOT and HOTP of queue q (whose waiters word read v, hot) if nobody is registered and
 * neither slept (the handle's last sleep) nor *seen (when the handle first saw the queue hot, set
 * here if 0) lies within the second before now. The waker's side keeps its *seen apart from
 * the blocking side's: its publishes on a queue say nothing about its own sleeps there. */
static void try_cool(struct _shmring_wq *q, uint32_t v, uint64_t now, uint64_t slept,
		     uint64_t *seen)
{
	/* A second since this handle's last sleep, and since it first saw the queue hot: HOT is
	 * the queue's, and a handle that never sleeps would otherwise cool it at once under one
	 * that sleeps often, whose every sleep would then pay M1 again; with the second, at most
	 * one M1 a second (found in review, as was the opposite: a queue left hot for good once
	 * its only sleeper had gone). */
	uint64_t since = slept;
	if (!*seen)
		*seen = now;
	if (*seen > since)
		since = *seen;
	if (now - since <= 1000000000ull)
		return;
	/* Bounded: a peer rewriting the word without end must not keep us here. */
	for (int i = 0;
	     i < 4 && !(v & _SHMRING_WQ_COUNT) && (v & (_SHMRING_WQ_HOT | _SHMRING_WQ_HOTP)); i++)
		if (atomic_compare_exchange_weak_explicit(
			&q->waiters, &v, v & ~(_SHMRING_WQ_HOT | _SHMRING_WQ_HOTP),
			memory_order_relaxed, memory_order_relaxed)) {
			*seen = 0;
			break;
		}
}

int _shmring_settled(struct shmring *r, int dir, int rc)
{
	return cool(r, dir, rc);
}

void (*_shmring_wait_hook)(struct shmring *r, int dir);

int _shmring_wait(struct shmring *r, int dir, int (*ready)(struct shmring *r, void *arg), void *arg,
		  const struct timespec *deadline)
{
	struct _shmring_sync *s = r->sync;
	int peer = dir == _SHMRING_DIR_DATA ? _SHMRING_ROLE_PROD : _SHMRING_ROLE_CONS;
	uint64_t dl = deadline ? ts_ns(deadline) : UINT64_MAX;
	int rc;

	if (!deadline_ok(deadline))
		return -EINVAL;
	/* Spin: the pause instruction, checking the clock every 64 rounds. */
	if (s->pol.spin_ns) {
		uint64_t end = now_ns() + s->pol.spin_ns;
		for (;;) {
			for (int i = 0; i < 64; i++) {
				rc = ready(r, arg);
				if (rc) {
					COUNT(r, spins);
					return cool(r, dir, rc > 0 ? 0 : rc);
				}
				cpu_relax();
			}
			uint64_t t = now_ns();
			if (t >= end || t >= dl)
				break;
		}
	}
	/* Yield, checking the clock every 64 (found in review: a large yield count stretched a
	 * 10 ms deadline to 1.4 s); the sleep loop below then says -ETIMEDOUT. */
	for (uint32_t y = 0; y < s->pol.yields; y++) {
		sched_yield();
		rc = ready(r, arg);
		if (rc)
			return cool(r, dir, rc > 0 ? 0 : rc);
		if ((y & 63) == 63 && now_ns() >= dl)
			break;
	}

	/* Sleep, in slices. Liveness is checked before the first sleep and then once per slice of
	 * elapsed time (not per slice that ran out: a signal every millisecond would otherwise
	 * postpone it forever). A peer that closes wakes us (shmring_close); one that dies not. */
	uint64_t next_live = 0;
	_Atomic uint32_t *seqw = &s->area->wq[dir].seq;
	COUNT(r, sleeps);
	for (;;) {
		rc = ready(r, arg);
		if (rc)
			return rc > 0 ? 0 : rc;
		/* Any wake from here on moves seq, a closing peer's included (see below). */
		uint32_t seq0 = atomic_load_explicit(seqw, memory_order_acquire);
		uint64_t t = now_ns();
		if (t >= dl)
			return -ETIMEDOUT;
		uint64_t slice = (uint64_t)s->pol.slice_ms * 1000000ull;
		int check = t >= next_live;
		if (check)
			next_live = t + slice;
		if (check && _shmring_role_seen(r, peer) && _shmring_role_alive(r, peer) == 0) {
			/* Gone: what it committed before dying is visible now (its exit ordered its
			 * stores before the kernel dropped its claim). Last look, then EOF. */
			rc = ready(r, arg);
			if (rc)
				return rc > 0 ? 0 : rc;
			return -EPIPE;
		}
		uint64_t until = next_live < dl ? next_live : dl;
		struct timespec uts = ns_ts(until);

		if (__builtin_expect(_shmring_wait_hook != NULL, 0))
			_shmring_wait_hook(r, dir);
		uint32_t seq = _shmring_wq_register(r, dir);
		rc = ready(r, arg);
		if (rc == 0 && seq != seq0) {
			/* Woken between our liveness check and our registration, maybe by a peer
			 * that closed right after the check: look again, liveness included (found
			 * in review: the sleep below missed that wake, and -EPIPE came a slice
			 * late). */
			next_live = 0;
		} else if (rc == 0) {
			/* Only a corrupt semaphore is an error; the rest means "look again". */
			int w = _shmring_wq_sleep(r, dir, seq, &uts);

			if (w == -EPROTO)
				rc = -EPROTO;
			/* Woken: if the ring is still not ready the wake may be a closing peer's,
			 * so look at liveness now rather than at the end of the slice. */
			if (w == 0)
				next_live = 0;
			s->last_sleep_ns = now_ns();
			s->hot_seen_ns[dir] = s->last_sleep_ns; /* it went hot for us */
		}
		_shmring_wq_unregister(r, dir);
		if (rc)
			return rc > 0 ? 0 : rc;
		/* Woken, EINTR or end of slice: go round with the same absolute deadline. */
	}
}

int _shmring_wait_slice(struct shmring *r, int dir, int (*ready)(struct shmring *r, void *arg),
			void *arg, const struct timespec *deadline)
{
	struct timespec now, until;

	if (!deadline_ok(deadline))
		return -EINVAL;
	_shmring_now(&now);
	uint64_t ns = (uint64_t)now.tv_nsec + (uint64_t)r->sync->pol.slice_ms * 1000000ull;
	until.tv_sec = now.tv_sec + (time_t)(ns / 1000000000ull);
	until.tv_nsec = (long)(ns % 1000000000ull);
	if (deadline && _shmring_ts_before(deadline, &until))
		until = *deadline;
	int rc = _shmring_wait(r, dir, ready, arg, &until);
	if (rc != -ETIMEDOUT)
		return rc;
	_shmring_now(&now);
	return deadline && !_shmring_ts_before(&now, deadline) ? -ETIMEDOUT : 1;
}

/* ---- the event FIFO
 * ------------------------------------------------------------------------------ */

static int fifo_path(struct shmring *r, char *out, size_t n)
{
	char link[64];
	ssize_t k;

	if (r->seg->fd < 0)
		return -EOPNOTSUPP;
	snprintf(link, sizeof(link), "/proc/thread-self/fd/%d", r->seg->fd);
	k = readlink(link, out, n - 4);
	if (k < 0 && errno == ENOENT) { /* a kernel before 3.17 */
		snprintf(link, sizeof(link), "/proc/self/fd/%d", r->seg->fd);
		k = readlink(link, out, n - 4);
	}
	if (k < 0) /* no /proc: nothing to name the FIFO after (found in review) */
		return errno == ENOENT ? -EOPNOTSUPP : -errno;
	if (k == 0 || (size_t)k >= n - 4)
		return -ENAMETOOLONG;
	out[k] = 0;
	if (strstr(out, " (deleted)"))
		return -ENOENT;
	memcpy(out + k, ".ev", 4);
	return 0;
}

/* Opens the FIFO at path for reading and writing, and only a FIFO: whoever can write the
 * directory may have put anything there. Returns the fd or -errno. */
static int fifo_open(const char *path)
{
	struct stat st;
	int fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOFOLLOW);

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) != 0 || !S_ISFIFO(st.st_mode)) {
		close(fd);
		return -EEXIST;
	}
	return fd;
}

void _shmring_event_unlink(const char *seg_path)
{
	char path[PATH_MAX];
	struct stat st;

	/* Only a FIFO: a file of that name beside a ring file is someone's data (found in review:
	 * a user's plain "data.ev" went with the ring "data"). Whoever's: the consumer that made
	 * it may be another user than the one removing the ring (found in review of an owner
	 * check: root's unlink left another user's FIFO behind). */
	if ((size_t)snprintf(path, sizeof(path), "%s.ev", seg_path) < sizeof(path) &&
	    lstat(path, &st) == 0 && S_ISFIFO(st.st_mode))
		unlink(path);
}

static void event_fire(struct shmring *r)
{
	struct _shmring_sync *s = r->sync;

	if (s->fifo_wfd < 0) {
		char path[PATH_MAX];
		if (fifo_path(r, path, sizeof(path)) != 0)
			return;
		/* O_RDWR: we hold a read end too, so a write never meets a FIFO without readers,
		 * which raises SIGPIPE and kills a producer that did not ignore it (found in
		 * review: a consumer that closed did that). */
		int fd = fifo_open(path);
		if (fd < 0)
			return;
		s->fifo_wfd = fd;
	}
	/* A full FIFO already says "readable": EAGAIN is fine. */
	if (write(s->fifo_wfd, "", 1) < 0) {
		/* nothing to do */
	}
	COUNT(r, event_syscalls);
}

int shmring_event_rearm(struct shmring *r)
{
	char buf[256];

	if (!r || !r->sync || r->sync->fifo_fd < 0)
		return -EINVAL;
	if (r->kind != SHMRING_SPSC)
		return -EOPNOTSUPP;
	while (read(r->sync->fifo_fd, buf, sizeof(buf)) > 0)
		COUNT(r, event_syscalls);
	atomic_fetch_or(r->wake_data, _SHMRING_WQ_EVENT);
	sleeper_barrier(r); /* M1/F3, as for a sleeper: arm, barrier, re-check */
	/* A2': pairs with R1 in the publish path, as A2 does. */
	uint64_t t = atomic_load_explicit(r->prod_pos, memory_order_acquire);
	return t != r->c.head;
}

int shmring_event_fd(struct shmring *r)
{
	char path[PATH_MAX];
	int rc;

	if (!r || !r->sync)
		return -EINVAL;
	if (r->sync->fifo_fd >= 0)
		return r->sync->fifo_fd;
	if (r->kind != SHMRING_SPSC)
		return -EOPNOTSUPP; /* before the FIFO exists: the next call must answer the same */
	rc = fifo_path(r, path, sizeof(path));
	if (rc)
		return rc;
	if (mkfifo(path, 0600) != 0 && errno != EEXIST)
		return -errno;
	/* O_RDWR: we never see EOF/POLLHUP when no producer holds the write end. */
	int fd = fifo_open(path);
	if (fd < 0)
		return fd;
	r->sync->fifo_fd = fd;
	rc = shmring_event_rearm(r);
	if (rc < 0)
		return rc;
	if (rc == 1 && write(fd, "", 1) < 0) {
		/* data already there: make the fd readable now */
	}
	return fd;
}

/* SPDX-License-Identifier: MIT */
/*
 * Sleep and wake, and peer liveness: the internal API every ring kind uses. Internal.
 *
 * Shared part _SHMRING_PART_SYNC (4 blocks of 128 B, zero at creation):
 *   block 0  wait queue "data":  the consumer side sleeps here, producers wake it
 *   block 1  wait queue "space": the producer side sleeps here, consumers wake it
 *   block 2  liveness of the producer role (anonymous memory: pid + start time slots)
 *   block 3  liveness of the consumer role
 *
 * A wait queue (struct _shmring_wq) holds:
 *   seq      the futex word; a waker bumps it before FUTEX_WAKE, so a waiter that read it before
 *            its last check sleeps only if nothing was published since;
 *   waiters  the word every publish reads (relaxed, no fence): bits 0..11 count registered
 *            sleepers, bits 12..27 the low 16 bits of the seq the last of them read (a waker
 *            that finds seq already moved past it skips the wake: one wake per sleep, not
 *            one per publish while the woken sleeper gets going), bit 28 (_SHMRING_WQ_HOTP)
 *            says a registrant set hot mode and its membarrier is under way, bit 29
 * (_SHMRING_WQ_HOT) says someone slept recently and a membarrier has made every waker fence since
 * (see below), bit 30 (_SHMRING_WQ_EVENT) says an event fd is armed, bit 31
 *            (_SHMRING_WQ_FENCE) says some attached process has no membarrier, so wakers must
 *            fence before they look (sticky);
 *   sem      the POSIX semaphore of the SHMRING_F_SEMAPHORE back-end.
 *
 * The hand-shake (asymmetric Dekker, model in sync/handshake.pml):
 *   waker:  publish position (release, R1/R2) ; F1 compiler barrier ; load waiters (relaxed) ;
 *           if non-zero: [fence F2 if FENCE bit] ; reload ; if counted: seq++ ; FUTEX_WAKE
 *   waiter: s = load seq ; waiters++ with s recorded ; M1 membarrier(GLOBAL_EXPEDITED) (or
 *           fence F3) ; re-check position ; if still nothing: FUTEX_WAIT(seq, s, slice) ;
 *           waiters--
 *   (the waker that sees the registration reads seq >= s: if equal it bumps and wakes; if
 *   greater, someone bumped since s was read, so FUTEX_WAIT(seq, s) returns at once)
 * M1 forces a full barrier on every CPU running a registered process, so either the waker's
 * position store is visible to the re-check, or the waker's load of waiters (which follows the
 * store in program order) comes after M1 and sees the registration.
 *
 * Hot mode: membarrier costs ~10-17 us here (IPIs), about a futex round trip. A sleeper that
 * does M1 sets HOTP in its registration RMW, and HOT once M1 returned; a waker that sees HOT,
 * HOTP or FENCE fences (F2) and looks again, and a sleeper whose registration RMW returned HOT
 * (or FENCE) uses a fence (F3) instead of M1: plain Dekker, both sides fenced. A waker whose
 * load missed both bits loaded before HOTP was set, so the M1 that followed drained its store
 * before HOT was set, before any F3-only registration could happen. (A first version set HOT
 * only after M1 and no HOTP: spin found the lost wake-up, combined with the seq skip below.)
 * A handle that has neither slept nor first seen the queue hot within the last second clears HOT
 * and HOTP at its next blocking call that did not sleep (_shmring_settled(), or a wait that
 * found the ring ready), or at a publish that found the queue hot and nobody registered (every
 * 64th such publish looks at the clock; a sleeper seen registered, or a new registration, starts
 * the second again), if no sleeper is registered (CAS), and the fast path is fence-free again;
 * another handle that sleeps often then pays M1 at most about once a second per publishing
 * handle. So a queue whose handles use only non-blocking calls from then on cools once its
 * publisher has seen it hot for a second and at least 128 publishes. Modelled in
 * sync/handshake.pml, with another handle cooling at any moment.
 *
 * The skip (a waker that finds seq moved since the last registrant read it does not wake) is
 * for the futex back-end only: FUTEX_WAIT(seq, s) returns at once for a registrant whose s is
 * old, but sem_clockwait() compares nothing, so the semaphore back-end has no skip: every wake
 * that finds sleepers posts the tokens missing up to the number of sleepers counted
 * (sync/sseq.pml -DSEM).
 *
 * Use by a ring kind (see sync/spsc_wait.c): try the non-blocking operation; on -EAGAIN call
 * _shmring_wait() with a ready() predicate that re-checks the condition; retry on 0.
 */
#ifndef SHMRING_SYNC_SYNC_H
#define SHMRING_SYNC_SYNC_H

#include <semaphore.h>
#include <stdalign.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include <shmring/shmring.h>

#include "../ring/layout.h"

#define _SHMRING_WQ_COUNT      0x00000fffu
#define _SHMRING_WQ_SSEQ       0x0ffff000u /* low 16 bits of the seq the last registrant read */
#define _SHMRING_WQ_SSEQ_SHIFT 12
#define _SHMRING_WQ_HOTP       0x10000000u /* hot mode pending: a registrant's M1 under way */
#define _SHMRING_WQ_HOT	       0x20000000u
#define _SHMRING_WQ_EVENT      0x40000000u
#define _SHMRING_WQ_FENCE      0x80000000u

/* Header flag (struct _shmring_hdr.flags): the ring uses the POSIX semaphore back-end. */
#define _SHMRING_HF_SEM	  1u
#define _SHMRING_HF_KNOWN _SHMRING_HF_SEM

struct _shmring_wq {
	_Atomic uint32_t seq;
	_Atomic uint32_t waiters;
	uint32_t pad_[14];
	sem_t sem; /* at offset 64 */
};
_Static_assert(sizeof(struct _shmring_wq) <= _SHMRING_BLOCK, "a wait queue is one block");

#define _SHMRING_LIVE_SLOTS 7
struct _shmring_live {
	_Atomic uint32_t seen; /* 1 once some process claimed the role (sticky) */
	uint32_t pad_[3];
	struct {
		/* 0 = free; else the holder: pid | start time << 22 (sync.c, live_word()) */
		_Atomic uint64_t word;
		uint64_t unused_;
	} slot[_SHMRING_LIVE_SLOTS];
};
_Static_assert(sizeof(struct _shmring_live) <= _SHMRING_BLOCK, "a liveness block is one block");

struct _shmring_syncarea {
	alignas(128) struct _shmring_wq wq[2];	   /* _SHMRING_DIR_DATA, _SHMRING_DIR_SPACE */
	alignas(128) struct _shmring_live live[2]; /* _SHMRING_ROLE_PROD, _SHMRING_ROLE_CONS */
};
_Static_assert(sizeof(struct _shmring_syncarea) == _SHMRING_SYNC_SIZE, "sync part layout");

enum {
	_SHMRING_DIR_DATA = 0,	/* consumer waits for data; the producer role is the peer */
	_SHMRING_DIR_SPACE = 1, /* producer waits for space; the consumer role is the peer */
};
enum {
	_SHMRING_ROLE_PROD = 0,
	_SHMRING_ROLE_CONS = 1,
};

/* Process-local sync state of a handle (struct shmring.sync). */
struct _shmring_sync {
	struct _shmring_syncarea *area;
	int sem;	       /* back-end recorded in the header */
	int roles;	       /* SHMRING_F_PRODUCER / SHMRING_F_CONSUMER claimed by this handle */
	int lock_fd[2];	       /* own open file description holding the OFD claim, or -1 */
	int live_slot[2];      /* anonymous memory: our slot, or -1 */
	uint64_t live_word[2]; /* ... and the word we put there */
	int rec_fd;	       /* MPMC: own open file description holding our record's lock */
	int rec_fd_state; /* 0 not tried, 1 open, -1 unavailable (no file or no /proc), -2 closed
			   * in a fork child (claims_child()) */
	int fifo_fd;	  /* event FIFO, opened lazily (-1) */
	int fifo_wfd;	  /* producer's write end (-1) */
	struct shmring_wait_policy pol;
	_Alignas(8) struct shmring_stats st; /* relaxed counters, this handle only */
	struct _shmring_sync *next, *prev;   /* process list of handles holding OFD claims */
	uint64_t last_sleep_ns;		     /* CLOCK_MONOTONIC of this handle's last sleep */
	uint64_t hot_seen_ns[2];	     /* when it first saw the queue hot, this time; 0 */
	uint64_t wake_seen_ns[2];	     /* the same, as its publishes saw it (try_cool()) */
	uint32_t wake_sseq[2];		     /* the registrant's seq bits at that first look */
	uint32_t wake_hot[2];		     /* publishes that found the queue hot, unregistered */
	int linked;
};

/* Called from _shmring_format() before the header is published: initialises the back-end. */
void _shmring_sync_format(void *sync_part, uint32_t hflags);
/* Called from _shmring_handle_new(): sets r->wake_* and r->sync. Returns 0 or -ENOMEM. */
int _shmring_sync_handle_init(struct shmring *r, uint32_t hflags);
/* Called from shmring_close(): drops claims, wakes peers, frees r->sync. */
void _shmring_sync_handle_fini(struct shmring *r);
/* Called by the public openers: claims the roles in flags, or closes *out on failure. */
int _shmring_sync_opened(int rc, uint32_t flags, struct shmring **out);

/*
 * Low level. One sleep of the calling thread on queue dir, after registering with
 * _shmring_wq_register() (which returned seq) and re-checking: sleeps until woken, until the
 * absolute CLOCK_MONOTONIC time until (NULL = no limit), or a signal. Returns 0 (woken or
 * spurious), -ETIMEDOUT (until passed), -EINTR, -EPROTO (the semaphore back-end's sem_t is
 * corrupt). Counts the system call.
 */
uint32_t _shmring_wq_register(struct shmring *r, int dir);
void _shmring_wq_unregister(struct shmring *r, int dir);
/* Testing only: called in _shmring_wait() between its liveness check and its registration, the
 * window a peer's close wake must not be lost in. NULL (the default) costs one branch per sleep. */
extern void (*_shmring_wait_hook)(struct shmring *r, int dir);
int _shmring_wq_sleep(struct shmring *r, int dir, uint32_t seq, const struct timespec *until);
/* Wakes every sleeper of queue dir if any is registered (force: even if none seems to be). */
void _shmring_wq_wake(struct shmring *r, int dir, int force);

/*
 * MPMC participant records and MPSC message-ring claim records on a ring with a file (named, or
 * from a descriptor): record i is held by an OFD write lock on one byte of that file, which the
 * kernel drops when its holder dies, whatever pid or time namespace the holder and the judge are
 * in (ring/mpmc.c, ring/msg.c; a ring is one kind or the other, so they share the bytes).
 * _shmring_rec_open(): opens this handle's own open file description of the file, through
 * which its record locks are taken (closed in a fork child, as role claims are). Returns 0,
 * -ENOTSUP (no file, or no /proc to open it through: records are then judged by pid), -errno.
 * _shmring_rec_lock(): takes record i's lock (opening first). Returns 0, -EAGAIN (another
 * description holds it), -ENOTSUP, -errno. _shmring_rec_locked(): 1 if another description
 * holds record i's lock, 0 if none does, -ENOTSUP or -errno.
 */
int _shmring_rec_open(struct shmring *r);
/* In a fork child, lets an inherited handle open a description of its own again (a message
 * ring's producer takes a record of its own there; an MPMC handle must not be used). */
void _shmring_rec_after_fork(struct shmring *r);
int _shmring_rec_lock(struct shmring *r, unsigned i);
void _shmring_rec_unlock(struct shmring *r, unsigned i);
int _shmring_rec_locked(struct shmring *r, unsigned i);

/* Whether every thread of process pid has exited (1: a zombie, or no such process), 0 if it
 * runs, -1 with errno set if it cannot tell (ENOSYS or EPERM: no pidfd_open; EMFILE, ENFILE,
 * ENOMEM: short of resources right now). Its pid namespace's view, as kill(). */
int _shmring_group_exited(pid_t pid);

/*
 * A blocking call's operation returned rc without (or no longer) waiting: as after a wait that
 * did not sleep, queue dir leaves hot mode if this handle has neither slept nor first seen it
 * hot within a second, and nobody is registered (found in review: a consumer that slept once and
 * then always found data at its first try kept hot mode for good, and every publish paid the F2
 * fence). One relaxed load while the queue is not hot. Returns rc.
 */
int _shmring_settled(struct shmring *r, int dir, int rc);

/*
 * High level: waits until ready(r, arg) returns non-zero, spinning then yielding then sleeping
 * per r's policy, in slices of the liveness bound. Returns 0 (ready said 1: retry the
 * operation), a negative value ready returned, -ETIMEDOUT at deadline (absolute
 * CLOCK_MONOTONIC, NULL = forever), -EPIPE once the peer role of dir has been seen and has no
 * live holder and ready still says 0. Restarts after signals without moving the deadline.
 */
int _shmring_wait(struct shmring *r, int dir, int (*ready)(struct shmring *r, void *arg), void *arg,
		  const struct timespec *deadline);

/*
 * As _shmring_wait(), but for at most one slice of the wait policy: returns 1 when the slice
 * ended before the deadline (for kinds that must run a recovery now and then while they wait:
 * a dead peer can hold what they wait for), -ETIMEDOUT only at the deadline itself.
 */
int _shmring_wait_slice(struct shmring *r, int dir, int (*ready)(struct shmring *r, void *arg),
			void *arg, const struct timespec *deadline);

/* 1 if role (_SHMRING_ROLE_*) has a live holder, 0 if not, -errno. */
int _shmring_role_alive(struct shmring *r, int role);
/* 1 if the role was ever claimed. */
int _shmring_role_seen(struct shmring *r, int role);

/* Monotonic now, and timespec helpers. */
void _shmring_now(struct timespec *ts);
int _shmring_ts_before(const struct timespec *a, const struct timespec *b);

#endif

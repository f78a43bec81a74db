/* SPDX-License-Identifier: MIT */
/*
 * Sleeping and waking: blocking variants, wait policy, peer liveness, a pollable fd, counters.
 *
 * Every blocking call takes an absolute CLOCK_MONOTONIC deadline (NULL waits forever), tries
 * the non-blocking operation first, then spins (pause instruction) for the handle's budget,
 * yields, and finally sleeps on a shared futex word (or a POSIX semaphore for rings created
 * with SHMRING_F_SEMAPHORE) in slices of at most the handle's liveness bound. A signal never
 * ends or stretches a wait. No blocking call is a cancellation point (pthread_cancel() takes
 * effect after it returns, at the caller's next one). A deadline before the clock's start has
 * passed; one too far to represent never comes; one whose tv_nsec is outside [0, 1e9) gives
 * -EINVAL when the call has to wait. Returns as the non-blocking call does, or -ETIMEDOUT at
 * the deadline, or -EPIPE when the peer role is gone: a consumer gets everything committed
 * before the last producer died or closed, then -EPIPE; a producer whose consumers are gone gets
 * -EPIPE when it would have to wait. A role that was never claimed is not "gone": waiting for
 * a producer that has not attached yet is allowed.
 *
 * A publish costs no system call unless the other side is asleep: the waker reads one shared
 * word (relaxed) after its release store; one wake covers a whole burst.
 */
/* Any of the headers may be included first: shmring.h declares the common API and then
 * includes the others in dependency order, this one among them. */
#include <shmring/shmring.h>

#ifndef SHMRING_SYNC_H
#define SHMRING_SYNC_H

#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

struct shmring;
struct shmring_msgvec;

/* Wait policy of one handle. Zero fields take the defaults. */
struct shmring_wait_policy {
	uint32_t
	    spin_ns; /* busy-wait budget before yielding; default 20000 (UINT32_MAX = no spin) */
	uint32_t yields;   /* sched_yield() calls before sleeping; default 4 */
	uint32_t slice_ms; /* longest single sleep = liveness bound; default 100 */
	uint32_t reserved_;
};

/* Sets (p != NULL) the policy of handle r. On a machine (or an affinity mask) with one CPU the
 * spin budget is forced to zero: spinning there only delays the peer. Returns 0 or -EINVAL. */
int shmring_set_wait_policy(struct shmring *r, const struct shmring_wait_policy *p);
/* The policy in effect (after defaults and the one-CPU rule). */
int shmring_get_wait_policy(const struct shmring *r, struct shmring_wait_policy *p);

/* Per-handle counters of the slow paths (relaxed, never reset except by shmring_stats_reset). */
struct shmring_stats {
	uint64_t wake_syscalls;	   /* FUTEX_WAKE or sem_post issued by this handle */
	uint64_t wait_syscalls;	   /* FUTEX_WAIT or sem_clockwait issued by this handle */
	uint64_t barrier_syscalls; /* membarrier calls issued before sleeping */
	uint64_t event_syscalls;   /* writes/reads on the event FIFO */
	uint64_t spins;		   /* waits that ended while spinning */
	uint64_t sleeps;	   /* waits that slept at least once */
};
int shmring_stats(const struct shmring *r, struct shmring_stats *out);
void shmring_stats_reset(struct shmring *r);

/* Roles, for shmring_peer_alive() and shmring_claim(). */
enum shmring_role {
	SHMRING_ROLE_PRODUCER = 0,
	SHMRING_ROLE_CONSUMER = 1,
};

/*
 * Declares that this handle acts as producer and/or consumer (SHMRING_F_PRODUCER,
 * SHMRING_F_CONSUMER), as those flags do at open. A handle with the ring's file (opened by name
 * or path, or attached at the base of such a ring) claims by an OFD lock on a byte of that file
 * (released by the kernel when the process dies), taken through a description of its own
 * opened through /proc (-EOPNOTSUPP without /proc). Anonymous and caller's memory (a caller's own
 * mapping of a ring's file included) claim with the pid and start time of the calling process
 * (the pid alone without /proc), written into one of 7 slots per role with one CAS (use it in a
 * child after fork()); a slot whose holder is dead is taken over. The lock works across pid and
 * time namespaces; pid and start time only within one. A handle with the file sees claims of
 * both kinds; one without sees only slots, so give every process that needs to see its peers
 * the file. A slot holder reads gone once all its threads have exited (a zombie included,
 * where pidfd_open works: Linux 5.3 and no seccomp filter against it; where it is refused, a
 * live holder whose main thread has exited reads gone); a reader without /proc
 * judges slots by pid alone, and a holder hidden by hidepid (another user's, no /proc entry)
 * reads alive: there a dead holder's reused pid reads alive until that process exits. Returns 0,
 * -EINVAL, -EBUSY (7 live slot holders already), -errno.
 */
int shmring_claim(struct shmring *r, uint32_t role_flags);

/* 1 if some live process holds role (enum shmring_role), 0 if none, -errno. Makes system
 * calls (fcntl where the handle has the file; reads /proc for slot holders). Any role. */
int shmring_peer_alive(struct shmring *r, int role);

/*
 * A file descriptor that polls readable when the ring may have data (consumer). Named rings
 * only: a FIFO "<segment>.ev" beside the shm object or file, so unrelated processes need not
 * pass fds. Use: poll; on POLLIN call shmring_event_rearm(), pop until -EAGAIN; repeat.
 * Cost: one write(2) by the producer per empty-to-non-empty transition while armed, one read
 * and one barrier by the consumer per rearm; nothing while the event is not armed.
 * The FIFO is made on the first call and stays, for later consumers too, until
 * shmring_unlink() or shmring_unlink_file() removes it with the ring's name. Only a FIFO is
 * used there: never through a symbolic link, never a file of another type (-EEXIST). The
 * producer holds it open for reading too, so it never gets SIGPIPE when consumers go.
 * Returns the fd (owned by the handle, closed by shmring_close), -EOPNOTSUPP (not SPSC, or
 * anonymous or caller's memory; a handle attached at the base of a named ring has its file; or
 * no /proc to name the FIFO after: a producer without /proc never fires it either), -EEXIST,
 * -errno.
 */
int shmring_event_fd(struct shmring *r);
/* Consumer: drains the fd and arms it. Returns 1 if data is already present (pop, do not
 * poll), 0 (armed: poll now), -errno. */
int shmring_event_rearm(struct shmring *r);

/* ---- SPSC blocking variants: same returns as the non-blocking calls, plus -ETIMEDOUT and
 * -EPIPE. Producer: push*, reserve. Consumer: pop*, peek. May block until deadline. */
int shmring_spsc_push_wait(struct shmring *r, const void *elem, const struct timespec *deadline);
int shmring_spsc_pop_wait(struct shmring *r, void *elem, const struct timespec *deadline);
int shmring_spsc_push_burst_wait(struct shmring *r, const void *elems, unsigned n,
				 const struct timespec *deadline);
int shmring_spsc_pop_burst_wait(struct shmring *r, void *elems, unsigned n,
				const struct timespec *deadline);
int shmring_spsc_reserve_wait(struct shmring *r, unsigned n, void **slots,
			      const struct timespec *deadline);
int shmring_spsc_peek_wait(struct shmring *r, unsigned n, const void **slots,
			   const struct timespec *deadline);

/*
 * ---- Message-ring blocking variants (SHMRING_MSG, SHMRING_MSG_MPSC; shmring/msg.h). Same
 * returns as the non-blocking calls, plus -ETIMEDOUT at the deadline and -EPIPE when the peer
 * role is gone. Only -EAGAIN waits: -EMSGSIZE (a message that can never fit, or a receive
 * buffer too small), -EBUSY, -EINVAL and -EPROTO return at once. May block until deadline
 * (absolute CLOCK_MONOTONIC, NULL = forever).
 *
 * Producer: send, send_burst (waits until the first message fits, then sends what fits),
 * reserve. Consumer: recv, recv_burst (waits for the first message), peek. A consumer gets
 * every message committed before the last producer died or closed, then -EPIPE.
 * MPSC: a consumer blocked behind the claim of a dead producer discards that claim (as
 * shmring_msg_recover() with shmring_msg_pid_gone() does) within one slice of the wait policy;
 * once the producer role has no live holder, a claim whose header was never written is
 * discarded as well (this assumes every producer of the ring claims SHMRING_F_PRODUCER). The
 * claim of a producer that holds its record's lock is judged by it, on a ring with a file
 * (shmring/msg.h, shmring_msg_recover()); the claim of one of another pid namespace without a
 * lock is never discarded here (its pid means nothing to shmring_msg_pid_gone()): what was
 * committed behind it waits for shmring_msg_recover_all() with a judge that knows, and the
 * consumer may see -EPIPE first.
 */
int shmring_msg_send_wait(struct shmring *r, const void *buf, uint32_t len, uint32_t type,
			  const struct timespec *deadline);
int shmring_msg_recv_wait(struct shmring *r, void *buf, uint32_t cap, uint32_t *type,
			  const struct timespec *deadline);
int shmring_msg_reserve_wait(struct shmring *r, uint32_t len, void **ptr,
			     const struct timespec *deadline);
int shmring_msg_peek_wait(struct shmring *r, const void **ptr, uint32_t *len, uint32_t *type,
			  const struct timespec *deadline);
int shmring_msg_send_burst_wait(struct shmring *r, const struct shmring_msgvec *v, unsigned n,
				const struct timespec *deadline);
int shmring_msg_recv_burst_wait(struct shmring *r, struct shmring_msgvec *v, unsigned n,
				const struct timespec *deadline);

/*
 * ---- MPMC blocking variants (SHMRING_MPMC; shmring/mpmc.h). Same returns as the non-blocking
 * calls, plus -ETIMEDOUT at the deadline and -EPIPE when the peer role is gone (consumers get
 * everything published before the last producer died or closed; this needs the processes to
 * claim SHMRING_F_PRODUCER / SHMRING_F_CONSUMER, as for SPSC). Producer: push, push_burst
 * (waits until the first element fits, then pushes what fits). Consumer: pop, pop_burst (waits
 * for the first element). A dead process may hold a slot or an unpublished element that a
 * waiter needs: every wait runs shmring_mpmc_recover() once per slice of the wait policy
 * (default 100 ms), and once more before -EPIPE; an error of that recovery other than -EAGAIN
 * ends the wait with it (-ENOLCK, -EMFILE: a record-lock call failed). Any number of handles may
 * wait on one ring; each publish wakes them all when any sleeps (a thundering herd only while some
 * sleep).
 */
int shmring_mpmc_push_wait(struct shmring *r, const void *elem, const struct timespec *deadline);
int shmring_mpmc_pop_wait(struct shmring *r, void *elem, const struct timespec *deadline);
int shmring_mpmc_push_burst_wait(struct shmring *r, const void *elems, unsigned n,
				 const struct timespec *deadline);
int shmring_mpmc_pop_burst_wait(struct shmring *r, void *elems, unsigned n,
				const struct timespec *deadline);

/* Internal, called by the inline publish paths when the waiters word is non-zero. */
void _shmring_wake(struct shmring *r, _Atomic uint32_t *waiters);

#endif

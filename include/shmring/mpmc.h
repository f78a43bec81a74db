/* SPDX-License-Identifier: MIT */
/*
 * MPMC ring of fixed-size elements that no dead or descheduled process can wedge.
 *
 * Algorithm: Nikolaev's SCQ (DISC 2019). Two index rings of 2n entries each over n data slots:
 * fq holds the free slot indices, aq the filled ones. A producer dequeues an index from fq,
 * writes data[idx], enqueues idx into aq; a consumer dequeues from aq, reads data[idx], enqueues
 * idx into fq. Head and tail move by fetch-and-add; an entry is one 64-bit word
 * (cycle | safe | index) changed by single-width CAS or fetch-or. A process stopped at any
 * instruction holds at most one index: it never blocks a position the others need, because a
 * dequeuer that meets an entry not yet written for its cycle marks it and moves on, and an
 * enqueuer that meets a used entry takes the next position.
 *
 * Two changes to SCQ, both for recovery of dead processes:
 *  - a dequeue takes its entry in two steps: fetch-or of a CLAIMED bit (the index stays visible),
 *    then, once the index is recorded in the participant record, fetch-or of the empty value.
 *    So a process that dies between the two is still known to hold that index.
 *  - every index has a hand-over count seq[idx], bumped by whoever takes it out of a queue. A dead
 *    enqueuer's record (idx, seq, position) tells whether its enqueue landed.
 * Each handle owns a participant record in the segment (owner = pid + start time) saying which
 * phase it is in and which index it holds; shmring_mpmc_recover() finishes the operation of a
 * dead owner. See shmring_mpmc_recover() for the exact guarantee.
 *
 * Bursts and bulks take up to SHMRING_MPMC_BULK_MAX indices out of a queue with one CAS on its
 * head (rather than SCQ's fetch-and-add), made only when every entry of the run holds an index
 * of its position's cycle or is closed for it (a gap, up to 16 closed by the scan itself and 128
 * positions in all): so a bulk gets all n or nothing, and the CAS that wins owns the run
 * outright, with no CLAIMED step. A caller that keeps losing that CAS to others gives up after a
 * few tries: a bulk says -EAGAIN, a burst goes on as a single push or pop. The indices are written
 * into the record (held[]) before the CAS; recovery treats a record caught between its CAS and the
 * next state store like a single dequeuer caught after its fetch-and-add. The elements then go into
 * the other queue through one fetch-and-add on its tail for all of them, and one entry CAS each: a
 * position may be closed under us (a dequeuer passed it), so an index that fails there lands in the
 * next position of the run, and only what is left after the run takes a new fetch-and-add.
 *
 * Entry word, with k = log2(capacity) and W = k + 2 index bits:
 *   bits 0..W-1   index: 0..n-1 valid; CLAIMED (bit W-1) | index: taken, being recorded;
 *                 all ones: empty
 *   bit  W        safe bit of SCQ
 *   bits W+1..63  cycle = position >> (k + 1)
 * Cycle bits + position bits per cycle = 62: positions are valid below 2^62 (centuries).
 *
 * Return convention (as SPSC): 0 or a count on success, -EAGAIN when nothing moved (full or
 * empty), -EPROTO when shared memory holds an impossible value (the handle is then broken),
 * -EINVAL (also for a handle of another kind). Every loop is bounded: in a correct ring by far
 * less than the bound, which is O(capacity) attempts (8 per entry); a peer that writes hostile
 * values into the queues can make one call run to that bound before it says -EPROTO (about
 * 0.6 s for a push at 2^20 slots here, linear in capacity; found in review). None of these
 * calls blocks or makes a system call while no one sleeps on the ring.
 *
 * A handle is one participant: use it from one thread at a time. After fork() a child must make
 * its own handle (shmring_open for a named ring, or shmring_attach on shmring_base()), never use
 * its parent's (closing it is fine: a child's close leaves the parent's record alone).
 */
/*
 * SHMRING_MPMC_RUNS, the second MPMC kind, takes the same calls (shmring_mpmc_*, the blocking
 * ones of shmring/sync.h too) and hands bursts over as runs: one CAS on tail and one on the
 * claim's header for a producer's whole burst, one CAS on head for a consumer's (see
 * shmring/mpmc_runs.h and docs/mpmc-runs.md). The differences from SHMRING_MPMC:
 *  - Memory: shmring_params.producers (1..64) arenas of capacity * elem_size bytes each, one
 *    per producer handle; no index queues. A handle takes an arena at its first push (a few
 *    atomic operations) and gives it back at close; a push with every arena taken says -EUSERS.
 *  - Progress: nothing any process holds blocks another for long. A consumer holds nothing; a
 *    claim that its producer does not commit (preempted, stopped, dead) is skipped once it has
 *    waited the patience (shmring_mpmc_set_patience, 50 us by default; an unannounced claim,
 *    one stopped in the few instructions between its tail CAS and its announcement, costs a
 *    patience per position). The producer's commit then fails and it claims again: nothing is
 *    lost, and the elements keep their order. It is lock-free given a clock, not in the strict
 *    sense SCQ is: a producer that is always slower than the patience would never get through.
 *  - Death: a producer that dies loses the elements of the push it was in (push had not
 *    returned); shmring_mpmc_recover() skips its claim at once (else the patience does) and frees
 *    its arena. A consumer that dies after its head CAS loses what it took; before it, nothing.
 *    Recovery is not needed for capacity.
 *  - Returns as for SHMRING_MPMC, plus -EUSERS from a push (no free arena, even after the
 *    recovery that the first push of a handle runs when it finds none: system calls then). A
 *    pop waits a patience for each claim in flight it meets (a patience per position of one
 *    stopped before its announcement), then skips it: bounded by the positions it walks, with
 *    no system call but the clock's. Any call may say -EAGAIN after 4096 lost races in a row
 *    (others kept winning: call again).
 *  - Liveness: as for SHMRING_MPMC (see shmring_mpmc_recover), but a live producer misjudged
 *    dead (across pid namespaces, with handles not opened by name) costs more here: its arena
 *    goes to another producer while it still writes there, and elements can arrive corrupt.
 *  - Bulk pops wait out a stopped claim behind what they have (after the patience, skip it);
 *    bursts return what they have.
 */
/* Any of the headers may be included first: shmring.h declares the common API and then
 * includes the others in dependency order, this one among them. */
#include <shmring/shmring.h>

#ifndef SHMRING_MPMC_H
#define SHMRING_MPMC_H

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include <shmring/handle.h>
#include <shmring/sync.h>

/* Number of participant records: handles attached to one MPMC ring at the same time. */
#define SHMRING_MPMC_PARTICIPANTS 64

/* Most elements one bulk or burst call moves (a burst asked for more moves this many). */
#define SHMRING_MPMC_BULK_MAX 32

/* Internal: the shared participant record, two 128-byte blocks each. */
struct _shmring_mpmc_rec {
	_Atomic uint64_t owner; /* 0 free; pid | locked << 31 | start time << 32 */
	_Atomic uint64_t state; /* phase | queue << 8 | bulk fields (written last, with release) */
	_Atomic uint64_t lo;	/* DEQ_FAA: lower bound of the position being taken */
	_Atomic uint64_t pos;	/* DEQ/ENQ: the position taken; DEQ_BULK: the first one */
	_Atomic uint64_t idx;	/* HOLD/ENQ*: the index held */
	_Atomic uint64_t seq;	/* HOLD/ENQ*: seq[idx] after our take */
	uint64_t pad_[10];
	_Atomic uint32_t held[SHMRING_MPMC_BULK_MAX]; /* bulk: the indices taken at once */
};

/*
 * Internal: bulk fields of the state word. COUNT: held[0..count) are ours (IDLE, ENQ*: the
 * ones not yet given back or published). FULL: their elements are written, so they are to be
 * published in order (DONE: held[0..done) already are); without FULL they go back to the free
 * queue. RANGE: a bulk take in flight, positions [lo, lo + range) of queue RQ may be ours.
 */
#define _SHMRING_MP_B_COUNT(n)	((uint64_t)(n) << 16)
#define _SHMRING_MP_B_DONE(n)	((uint64_t)(n) << 24)
#define _SHMRING_MP_B_FULL	(1ull << 32)
#define _SHMRING_MP_B_RANGE(n)	((uint64_t)(n) << 40)
#define _SHMRING_MP_B_RQ(q)	((uint64_t)(q) << 48)
#define _SHMRING_MP_GET(st, sh) (((st) >> (sh)) & 0xff)

/* Internal: a queue's control block in shared memory (three 128-byte blocks, then entries). */
struct _shmring_scq_ctl {
	_Atomic uint64_t head;
	uint64_t pad0_[15];
	_Atomic uint64_t tail;
	uint64_t pad1_[15];
	_Atomic int64_t threshold;
	uint64_t pad2_[15];
};

/* Internal: phases of a participant record. */
enum {
	_SHMRING_MP_IDLE = 0,
	_SHMRING_MP_DEQ_FAA = 1,  /* about to fetch-and-add head; lo says from where */
	_SHMRING_MP_DEQ = 2,	  /* head position pos taken */
	_SHMRING_MP_HOLD = 3,	  /* index idx taken out of queue q (fq: filling; aq: reading) */
	_SHMRING_MP_ENQ_FAA = 4,  /* about to fetch-and-add tail to put idx into q */
	_SHMRING_MP_ENQ = 5,	  /* tail position pos taken for idx */
	_SHMRING_MP_DEQ_BULK = 6, /* head moved over [pos, pos + count): held[] are ours */
};
#define _SHMRING_MP_AQ 0
#define _SHMRING_MP_FQ 1

/* Test hook points (see shmring_mpmc_set_hook). */
enum shmring_mpmc_hook_point {
	SHMRING_MPMC_HOOK_DEQ_FAA = 1, /* record says DEQ_FAA, fetch-and-add not done */
	SHMRING_MPMC_HOOK_DEQ_POS = 2, /* fetch-and-add done, position not recorded */
	SHMRING_MPMC_HOOK_CLAIMED = 3, /* entry CLAIMED, index not recorded */
	SHMRING_MPMC_HOOK_HELD = 4,    /* index recorded, entry not yet emptied */
	SHMRING_MPMC_HOOK_FILLED =
	    5,			    /* producer: data written, not published (the parking point) */
	SHMRING_MPMC_HOOK_READ = 6, /* consumer: data read, index not given back */
	SHMRING_MPMC_HOOK_ENQ_FAA = 7,	   /* record says ENQ_FAA */
	SHMRING_MPMC_HOOK_ENQ_POS = 8,	   /* tail taken, not recorded */
	SHMRING_MPMC_HOOK_ENQ_CAS = 9,	   /* recorded, entry not written */
	SHMRING_MPMC_HOOK_ENQ_DONE = 10,   /* entry written, record not idle */
	SHMRING_MPMC_HOOK_BULK_EMPTY = 11, /* bulk take: head moved over the run (record says
					    * DEQ_BULK), entries before this one emptied, this one
					    * not: once per element */
	/* SHMRING_MPMC_RUNS rings: FILLED (elements copied into the arena, claim not committed)
	 * and READ (run copied out, head not moved) as above, and: */
	SHMRING_MPMC_HOOK_RUN_CLAIMED = 12 /* producer: tail moved over the claim, the record
					    * says so, claim not announced */
};

/*
 * Test hook: called at each point above with the queue (0 = filled, 1 = free). Returning
 * non-zero abandons the operation on the spot, exactly as if the process had died there: the
 * call returns -ECANCELED and the handle is broken from then on (its data calls say -EPROTO;
 * close it, and its record stays for shmring_mpmc_recover()). A hook that sleeps parks the
 * participant there.
 * Internal to tests and fuzzing; NULL (the default) costs one predictable branch.
 */
typedef int (*shmring_mpmc_hook_fn)(struct shmring *r, int point, int queue, void *arg);
int shmring_mpmc_set_hook(struct shmring *r, shmring_mpmc_hook_fn fn, void *arg);

/*
 * Test hook for liveness: recovery asks fn(owner, arg) instead of the kernel whether the owner
 * of a record is alive (1) or dead (0). Owners are pid | start time << 32, with bit 31 set when
 * the owner holds its record's lock (see shmring_mpmc_recover). With r == NULL, sets
 * it for every handle of the process that has none of its own, including the liveness check of
 * attach (which may take over the idle record of a dead owner). Testing only; not thread-safe.
 */
typedef int (*shmring_mpmc_alive_fn)(uint64_t owner, void *arg);
int shmring_mpmc_set_alive_fn(struct shmring *r, shmring_mpmc_alive_fn fn, void *arg);

/*
 * Testing only: sets the owner word this handle's record shows (so a fuzzer can simulate many
 * processes in one), without bit 31: use it with a liveness hook (shmring_mpmc_set_alive_fn),
 * since the record's lock, if any, stays held. Returns 0 or -EINVAL.
 */
int shmring_mpmc_set_owner(struct shmring *r, uint64_t owner);

/*
 * Recovery. For every participant record whose owner is dead, finishes the operation that owner
 * was in, so that every index it held goes back to a queue and capacity does not shrink.
 * Who is dead:
 *  - a handle made from a file (shmring_create/open, shmring_create_file/open_file, or
 *    shmring_attach at the base of a ring this process has open that way) holds its
 *    record by an OFD lock on one byte of that file, taken through an open file description of
 *    its own before it owns the record, and dropped by the kernel when the process dies. That
 *    holds whatever pid or time namespaces the processes are in (containers sharing /dev/shm);
 *  - a handle made by shmring_attach on memory with no file (anonymous or caller's memory, or
 *    a mapping of the ring's file that this process did not get from shmring_open and the like),
 *    or one that could not open a description of its own (no /proc), is judged by pid
 *    and start time (dead once every thread has exited, a zombie included, where pidfd_open
 *    works; else kill(pid, 0) fails with ESRCH, or /proc/<pid>/stat field 22 differs from the
 *    recorded one; without /proc no start time is compared; where pidfd_open is refused, a
 *    process whose main thread has exited reads dead), and judges others' records that way (a
 *    record whose lock it sees held reads alive). That is right only between processes in the
 *    same pid and time namespaces: a process in another one reads as dead, and its slots are
 *    taken from under it. Across namespaces, open every participant's handle by name or path.
 * Then, for each dead owner:
 *  - a producer that died before it began publishing its element (written or not, its record
 *    still holding the free index): the index returns to the free queue; that element is lost
 *    (it was never pushed: push had not returned);
 *  - a producer that died once it had begun publishing (its record in an enqueue phase; push may
 *    or may not have returned): the element is published, exactly once;
 *  - a consumer that died after taking an element out of the filled queue (whether or not it had
 *    copied it out): the element is dropped, never delivered again, and its slot freed;
 *  - a participant that died between a fetch-and-add on a head and recording it: the element
 *    that landed at that position (if any) is dropped and its slot freed.
 *  - bulk and burst calls: a producer that died before all its elements were written loses
 *    them all (none was pushed); after that, recovery publishes all of them, in order; a
 *    consumer that died after its take loses the elements it took (at most the n it asked for).
 * So a dead process loses at most the elements it was handling (one, or one call's bulk or
 * burst), and an element is never delivered twice. Recovery is itself safe to kill: a later call
 * resumes it. Returns the number of records recovered (0 if none was dead), -EAGAIN if none
 * was and a dead record could not be finished yet because a live participant was mid-step or
 * another handle was taking it (call again), -EPROTO, or -errno when a record lock call failed
 * (ENOLCK, EMFILE: what was recovered before it is complete; call again). A positive count may
 * also leave such a record behind: call again until it returns 0.
 * Any role; never blocks (it reads /proc and asks fcntl about locks). Cost: O(records), plus
 * O(capacity) for each dead participant that died inside its few-instruction fetch-and-add window,
 * times the elements it may have left there for a bulk or burst take (up to 128 positions).
 */
int shmring_mpmc_recover(struct shmring *r);

/* Approximate number of elements in the ring (exact when quiescent), or -EPROTO. Any role. */
int64_t shmring_mpmc_size(struct shmring *r);

/*
 * SHMRING_MPMC_RUNS rings only: how long a pop waits for a claimed, uncommitted run before it
 * skips it (the producer is preempted, stopped or dead), in ns of CLOCK_MONOTONIC; the wait
 * for an announced claim adds a nanosecond per byte it copies. 0 restores the default, 50 us.
 * Shorter makes pops behind a stopped producer return sooner, and skips live producers that
 * are merely slow more often (their push claims again, so nothing is lost, but a producer that
 * is always slower than the patience never gets through). At most 1 s. Per handle; returns 0
 * or -EINVAL (another kind, or more than 1 s). Any role.
 */
int shmring_mpmc_set_patience(struct shmring *r, uint64_t ns);

/* ---- internals of the hot path ---------------------------------------------------------- */

static inline uint64_t _shmring_mp_ent(const struct shmring *r, uint64_t cyc, uint64_t safe,
				       uint64_t idx)
{
	return cyc << (r->m.w + 1) | safe << r->m.w | idx;
}
#define _SHMRING_MP_CYC(r, e)  ((e) >> ((r)->m.w + 1))
#define _SHMRING_MP_SAFE(r, e) (((e) >> (r)->m.w) & 1u)
#define _SHMRING_MP_IDX(r, e)  ((e) & (r)->m.bot)

/*
 * Entry of position p. From 256 entries up (capacity 128), runs of 8 consecutive positions
 * share a 64-byte line, and consecutive runs go to 16 different regions of the array, so lines
 * that neighbour in memory (which Intel's adjacent-line prefetcher pairs) hold positions 128
 * apart; smaller rings keep position order. SCQ spreads single positions instead (each
 * neighbour to another region); measured on a 16-core Xeon (docs/bench-16cpu-2026-11-24.txt,
 * section 4), that made a burst of 32 touch 16 lines that the next burst, on positions 32 on,
 * shared with it, and gave 1/2 to 2/3 of the burst throughput of runs, for no gain one element
 * at a time. Part of the shared format (since ABI 5): entry_pos() in ring/mpmc.c
 * inverts it.
 */
static inline _Atomic uint64_t *_shmring_mp_slot(const struct shmring *r, int q, uint64_t p)
{
	uint64_t j = p & r->m.emask;

	if (r->m.emask >= 255)
		j = ((j >> 3) & 15) * ((r->m.emask + 1) >> 4) + ((j >> 7) << 3) + (j & 7);
	return r->m.ent[q] + j;
}

/*
 * Internal: asks for the cache line at p, for writing (write = 1) or reading, ahead of the
 * locked read-modify-writes and copies of a burst, which touch lines last written by other CPUs:
 * asked for together, their misses overlap instead of coming one after another. A hint: it
 * changes nothing that is read or written. The write hint is PREFETCHW where the compiler may
 * use it (-mprfchw, or an -march that has it), otherwise (on x86) a read prefetch; the
 * single-element path does not use it.
 */
static inline void _shmring_mp_prefetch(const volatile void *p, int write)
{
	const void *a = (const void *)(uintptr_t)p;

	/* The builtin's rw and locality arguments must be constants. */
	if (write)
		__builtin_prefetch(a, 1, 3);
	else
		__builtin_prefetch(a, 0, 3);
}

static inline int _shmring_mp_break(struct shmring *r)
{
	r->broken = 1;
	return -EPROTO;
}

static inline void _shmring_mp_state(struct _shmring_mpmc_rec *rec, int phase, int q, uint64_t bulk)
{
	/* R5: pairs with A5 in recovery: the fields written before the phase are visible with it.
	 */
	atomic_store_explicit(&rec->state, (uint64_t)phase | (uint64_t)q << 8 | bulk,
			      memory_order_release);
}

#define _SHMRING_MP_HOOK(r, pt, q)                                                                 \
	do {                                                                                       \
		if (__builtin_expect((r)->m.hook != NULL, 0) &&                                    \
		    (r)->m.hook((r), (pt), (q), (r)->m.hook_arg)) {                                \
			(r)->broken = 1; /* "died": found in review, a later call overwrote        \
					  * the record left for recovery, and leaked a slot */     \
			return -ECANCELED;                                                         \
		}                                                                                  \
	} while (0)

/*
 * Most CAS attempts on one entry before calling the ring corrupt. Each failure means the entry
 * changed, and a position's entry changes only a few times a cycle, so only a peer rewriting it
 * without end gets near this; without a bound that peer could keep us looping for ever.
 */
#define _SHMRING_MP_CAS_TRIES 1024u

/* Bound on the attempts of one enqueue or dequeue; a correct ring needs far fewer. */
static inline uint64_t _shmring_mp_budget(const struct shmring *r)
{
	return 8 * (r->m.emask + 1) + (1u << 16);
}

/*
 * Internal: one SCQ enqueue attempt: puts index idx into the entry of tail position t of queue
 * q, a position the caller took from tail. Returns 1 (landed), 0 (the position is no use: a
 * dequeuer has passed it, or its entry still holds an older index; take another), -EPROTO.
 */
static inline int _shmring_mp_land(struct shmring *r, int q, uint64_t t, uint64_t idx)
{
	_Atomic uint64_t *slot = _shmring_mp_slot(r, q, t);
	uint64_t tc = t >> r->m.ishift;
	/* A3: pairs with R3/R4 in the dequeue: an emptied entry's index is no longer read. */
	uint64_t e = atomic_load_explicit(slot, memory_order_acquire);

	for (unsigned tries = 0;; tries++) {
		uint64_t ei = _SHMRING_MP_IDX(r, e);
		if (__builtin_expect(tries == _SHMRING_MP_CAS_TRIES, 0))
			return _shmring_mp_break(r);
		if (ei != r->m.bot && (ei & ~r->m.claimed) >= r->capacity)
			return _shmring_mp_break(r);
		if (_SHMRING_MP_CYC(r, e) >= tc || ei != r->m.bot)
			return 0;
		if (!_SHMRING_MP_SAFE(r, e) &&
		    atomic_load_explicit(&r->m.ctl[q]->head, memory_order_relaxed) > t)
			return 0;
		/* R2: pairs with A2 in the dequeue: data[idx] (written before) is visible to the
		 * consumer that sees this entry. Strong: only a real change of the entry counts
		 * towards the tries (a spurious LL/SC failure is no sign of a hostile peer). */
		if (atomic_compare_exchange_strong_explicit(
			slot, &e, _shmring_mp_ent(r, tc, 1, idx), memory_order_acq_rel,
			memory_order_acquire))
			return 1;
	}
}

/*
 * Internal: empties the entry of position p, which holds index x (CLAIMED or not) for its taker:
 * sets the index bits to all ones, keeping the cycle and the safe bit (a dequeuer of a later
 * cycle may clear that bit meanwhile). A CAS on the word that still holds x of p's cycle, not a
 * fetch-or: after a recovery that judged the taker dead has emptied the entry itself, a producer
 * may land another index there for the next cycle, and a fetch-or would wipe that index and lose
 * its element (found in review). Returns 1 (emptied), 0 (it no longer holds x of p's cycle).
 */
static inline int _shmring_mp_empty(const struct shmring *r, _Atomic uint64_t *slot, uint64_t p,
				    uint64_t x)
{
	uint64_t e = atomic_load_explicit(slot, memory_order_relaxed);

	for (unsigned tries = 0; tries < _SHMRING_MP_CAS_TRIES; tries++) {
		uint64_t ei = _SHMRING_MP_IDX(r, e);
		if (_SHMRING_MP_CYC(r, e) != p >> r->m.ishift || ei == r->m.bot ||
		    (ei & ~r->m.claimed) != x)
			return 0;
		/* R3: pairs with A3 in the enqueue and A4 in recovery: seq[x], bumped by the caller
		 * before, is visible to whoever sees the entry empty. */
		if (atomic_compare_exchange_strong_explicit(
			slot, &e, e | r->m.bot, memory_order_release, memory_order_relaxed))
			return 1;
	}
	return 0;
}

/* Internal: after a landing, as SCQ: dequeuers that gave up on the threshold look again. */
static inline void _shmring_mp_reset_threshold(struct shmring *r, int q)
{
	struct _shmring_scq_ctl *c = r->m.ctl[q];

	if (atomic_load_explicit(&c->threshold, memory_order_relaxed) != r->m.thr_max)
		atomic_store_explicit(&c->threshold, r->m.thr_max, memory_order_relaxed);
}

/*
 * Internal: one attempt of an enqueue at tail position t, which the caller took: the record
 * says ENQ at t for idx, then the entry CAS. Returns 1 (landed: the record is IDLE again, with
 * the bulk fields, before anything overwrites the fields that name idx; found in review: a bulk
 * that went on to the next index first had recovery publish it twice), 0 (the position is no
 * use: take another), -EPROTO, -ECANCELED.
 */
static inline int _shmring_mp_try_at(struct shmring *r, struct _shmring_mpmc_rec *rec, int q,
				     uint64_t t, uint64_t idx, uint64_t bulk)
{
	atomic_store_explicit(&rec->pos, t, memory_order_relaxed);
	_shmring_mp_state(rec, _SHMRING_MP_ENQ, q, bulk);
	_SHMRING_MP_HOOK(r, SHMRING_MPMC_HOOK_ENQ_CAS, q);
	int rc = _shmring_mp_land(r, q, t, idx);
	if (rc <= 0)
		return rc;
	_SHMRING_MP_HOOK(r, SHMRING_MPMC_HOOK_ENQ_DONE, q);
	_shmring_mp_reset_threshold(r, q);
	_shmring_mp_state(rec, _SHMRING_MP_IDLE, q, bulk);
	return 1;
}

/*
 * Internal: SCQ enqueue of index idx (seq s) into queue q through record rec. Always finds room
 * in a correct ring (only n indices exist for 2n entries). Returns 0, -EPROTO, -ECANCELED.
 */
static inline int _shmring_mp_enq(struct shmring *r, struct _shmring_mpmc_rec *rec, int q,
				  uint64_t idx, uint64_t s, uint64_t bulk)
{
	struct _shmring_scq_ctl *c = r->m.ctl[q];
	uint64_t budget = _shmring_mp_budget(r);

	atomic_store_explicit(&rec->idx, idx, memory_order_relaxed);
	atomic_store_explicit(&rec->seq, s, memory_order_relaxed);
	while (budget--) {
		_shmring_mp_state(rec, _SHMRING_MP_ENQ_FAA, q, bulk);
		_SHMRING_MP_HOOK(r, SHMRING_MPMC_HOOK_ENQ_FAA, q);
		/* F1: acq_rel, though no reader relies on its ordering: recovery finds records
		 * through head (F2), never through tail; only the atomicity matters. */
		uint64_t t = atomic_fetch_add_explicit(&c->tail, 1, memory_order_acq_rel);
		_SHMRING_MP_HOOK(r, SHMRING_MPMC_HOOK_ENQ_POS, q);
		if (t >= (1ull << 62))
			return _shmring_mp_break(r);
		int rc = _shmring_mp_try_at(r, rec, q, t, idx, bulk);
		if (rc < 0)
			return rc;
		if (rc == 1)
			return 0;
	}
	return _shmring_mp_break(r);
}

/* Internal: SCQ catch-up: moves tail up to head after dequeuers overshot. Bounded. */
static inline void _shmring_mp_catchup(struct _shmring_scq_ctl *c, uint64_t t, uint64_t h)
{
	for (int i = 0; i < 64; i++) {
		if (atomic_compare_exchange_weak_explicit(&c->tail, &t, h, memory_order_relaxed,
							  memory_order_relaxed))
			return;
		h = atomic_load_explicit(&c->head, memory_order_relaxed);
		t = atomic_load_explicit(&c->tail, memory_order_relaxed);
		if (t >= h)
			return;
	}
}

/*
 * Internal: SCQ dequeue from queue q through record rec. On success stores the index in *idx and
 * its new seq in *s, with the record in phase HOLD. Returns 0, -EAGAIN (empty), -EPROTO,
 * -ECANCELED.
 */
static inline int _shmring_mp_deq(struct shmring *r, struct _shmring_mpmc_rec *rec, int q,
				  uint64_t *idx, uint64_t *s)
{
	struct _shmring_scq_ctl *c = r->m.ctl[q];
	uint64_t budget = _shmring_mp_budget(r);

	if (r->broken)
		return -EPROTO;
	if (atomic_load_explicit(&c->threshold, memory_order_relaxed) < 0)
		return -EAGAIN;
	while (budget--) {
		atomic_store_explicit(&rec->lo, r->m.lo[q], memory_order_relaxed);
		_shmring_mp_state(rec, _SHMRING_MP_DEQ_FAA, q, 0);
		_SHMRING_MP_HOOK(r, SHMRING_MPMC_HOOK_DEQ_FAA, q);
		/* F2: acq_rel. Release: the DEQ_FAA record (R5) is visible to a recovery that
		 * sees this head (A6 in ring/mpmc.c). */
		uint64_t h = atomic_fetch_add_explicit(&c->head, 1, memory_order_acq_rel);
		_SHMRING_MP_HOOK(r, SHMRING_MPMC_HOOK_DEQ_POS, q);
		if (h >= (1ull << 62))
			return _shmring_mp_break(r);
		atomic_store_explicit(&rec->pos, h, memory_order_relaxed);
		_shmring_mp_state(rec, _SHMRING_MP_DEQ, q, 0);
		r->m.lo[q] = h + 1;
		_Atomic uint64_t *slot = _shmring_mp_slot(r, q, h);
		uint64_t hc = h >> r->m.ishift;
		/* A2: pairs with R2 in the enqueue: the data of the index we find is visible. */
		uint64_t e = atomic_load_explicit(slot, memory_order_acquire);
		for (unsigned tries = 0;; tries++) {
			uint64_t ec = _SHMRING_MP_CYC(r, e), ei = _SHMRING_MP_IDX(r, e);
			if (__builtin_expect(tries == _SHMRING_MP_CAS_TRIES, 0))
				return _shmring_mp_break(r);
			if (ei != r->m.bot && (ei & ~r->m.claimed) >= r->capacity)
				return _shmring_mp_break(r);
			if (ec == hc && ei != r->m.bot) {
				if (ei & r->m.claimed)
					break; /* recovery took it (thought us dead): next position
						*/
				/* Only the holder of position h (us) or recovery takes this entry:
				 * a CAS on the word we read, so that if recovery has taken it
				 * meanwhile (and a producer landed another index here for the next
				 * cycle) we mark nothing (found in review); a failure looks again.
				 */
				if (!atomic_compare_exchange_strong_explicit(
					slot, &e, e | r->m.claimed, memory_order_acq_rel,
					memory_order_acquire))
					continue;
				_SHMRING_MP_HOOK(r, SHMRING_MPMC_HOOK_CLAIMED, q);
				uint64_t ns =
				    atomic_load_explicit(&r->m.seq[ei], memory_order_relaxed) + 1;
				atomic_store_explicit(&rec->idx, ei, memory_order_relaxed);
				atomic_store_explicit(&rec->seq, ns, memory_order_relaxed);
				_shmring_mp_state(rec, _SHMRING_MP_HOLD, q, 0);
				_SHMRING_MP_HOOK(r, SHMRING_MPMC_HOOK_HELD, q);
				atomic_store_explicit(&r->m.seq[ei], ns, memory_order_relaxed);
				/* R3 there, after the seq bump. Not ours any more: a recovery took
				 * it, thinking us dead (liveness lied). */
				if (!_shmring_mp_empty(r, slot, h, ei))
					return _shmring_mp_break(r);
				*idx = ei;
				*s = ns;
				return 0;
			}
			if (ec >= hc)
				break; /* newer: ours is gone */
			uint64_t ne = ei == r->m.bot
					  ? _shmring_mp_ent(r, hc, _SHMRING_MP_SAFE(r, e), ei)
					  : _shmring_mp_ent(r, ec, 0, ei);
			/* R4: a late enqueuer for h now fails (cycle), or sees the entry unsafe.
			 * Strong, as in _shmring_mp_land(). */
			if (atomic_compare_exchange_strong_explicit(
				slot, &e, ne, memory_order_acq_rel, memory_order_acquire))
				break;
		}
		uint64_t t = atomic_load_explicit(&c->tail, memory_order_relaxed);
		if (t <= h + 1) {
			_shmring_mp_catchup(c, t, h + 1);
			atomic_fetch_sub_explicit(&c->threshold, 1, memory_order_relaxed);
			_shmring_mp_state(rec, _SHMRING_MP_IDLE, q, 0);
			return -EAGAIN;
		}
		if (atomic_fetch_sub_explicit(&c->threshold, 1, memory_order_relaxed) <= 0) {
			_shmring_mp_state(rec, _SHMRING_MP_IDLE, q, 0);
			return -EAGAIN;
		}
	}
	return _shmring_mp_break(r);
}

/* Most positions without an element that one bulk scan closes, and most positions one scan
 * covers (see _shmring_mp_deq_n(); the state word's RANGE field holds up to 255). */
#define _SHMRING_MP_GAPS 16
#define _SHMRING_MP_SPAN 128
/* Races for head that a bulk take loses before it gives up (-EBUSY, internal). */
#define _SHMRING_MP_LOST 8

/*
 * Internal: takes k indices at once out of queue q, 1 <= k <= n <= SHMRING_MPMC_BULK_MAX: head
 * moves over a run of span positions with one CAS, and only when the k entries of the run hold
 * an index of their own position's cycle, so no other dequeuer can have any of them. With up_to,
 * k is as many as are ready; without, k is n or nothing moves.
 *
 * Positions in the run with no element are gaps: an enqueue that will never land there (its
 * enqueuer died, or moved on), or one still in flight. The scan closes each one by moving its
 * entry to the position's cycle (R4), so no late enqueue lands behind head, and crosses it; an
 * entry still holding an older cycle's element cannot be closed that way and stops the scan;
 * like a failed single dequeue, each gap costs one unit of the threshold, and with the threshold
 * spent the scan stops at gaps (SCQ's bound on dequeuers that keep overtaking enqueuers). Gaps
 * at head are crossed even when nothing is taken, so that a bulk caller is never stuck behind
 * one.
 *
 * The indices go into rec->held[] before the CAS, with the record saying DEQ_FAA over
 * [lo, lo + span) (the CAS may or may not land: recovery treats those positions as it treats a
 * single dequeuer's unrecorded fetch-and-add); after it DEQ_BULK over [pos, pos + span) until
 * the entries are emptied; then IDLE holding k. There is no CLAIMED step: the index of every
 * position is recorded before the position is ours. Returns k (idx[] filled), -EAGAIN (not
 * enough ready), -EBUSY (lost the race for head _SHMRING_MP_LOST times), -EPROTO, -ECANCELED.
 */
static inline int _shmring_mp_deq_n(struct shmring *r, struct _shmring_mpmc_rec *rec, int q,
				    uint64_t *idx, unsigned n, int up_to)
{
	struct _shmring_scq_ctl *c = r->m.ctl[q];
	uint64_t budget = _shmring_mp_budget(r);
	unsigned char off[SHMRING_MPMC_BULK_MAX];
	unsigned lost = 0;

	if (r->broken)
		return -EPROTO;
	while (budget--) {
		uint64_t h = atomic_load_explicit(&c->head, memory_order_acquire);
		uint64_t t = atomic_load_explicit(&c->tail, memory_order_acquire);
		unsigned k = 0, m = 0, gaps = 0;

		if (h >= (1ull << 62) || t >= (1ull << 62))
			return _shmring_mp_break(r);
		while (k < n && h + m < t && m < _SHMRING_MP_SPAN) {
			uint64_t p = h + m, pc = p >> r->m.ishift;
			_Atomic uint64_t *slot = _shmring_mp_slot(r, q, p);
			/* A2 (bulk): pairs with R2 in the enqueue, as A2 in _shmring_mp_deq(). */
			uint64_t e = atomic_load_explicit(slot, memory_order_acquire);
			uint64_t ec = _SHMRING_MP_CYC(r, e), ei = _SHMRING_MP_IDX(r, e);
			if (ec == pc && ei != r->m.bot && !(ei & r->m.claimed)) {
				if (ei >= r->capacity)
					return _shmring_mp_break(r);
				idx[k] = ei;
				off[k++] = (unsigned char)m++;
				continue;
			}
			if (ec > pc || (ec == pc && ei != r->m.bot))
				break; /* a newer entry, or one being taken */
			if (ec == pc) {
				/* Closed already (by a dequeuer that passed, or a scan before us
				 * that paid for it): nothing lands here. Free to cross, so a run of
				 * dead positions longer than one scan closes (a dead bulk push
				 * leaves up to 31) holds bulk callers up for a few calls, not for
				 * good (found in review). */
				m++;
				continue;
			}
			if (gaps == _SHMRING_MP_GAPS ||
			    atomic_load_explicit(&c->threshold, memory_order_relaxed) < 0)
				break; /* enough closed by this scan */
			/* An older cycle's element its slow dequeuer has not taken yet: a
			 * single dequeuer clears its safe bit, which stops a late enqueuer
			 * only once head is past p. Ours moves at the CAS below, and in
			 * between the element may go and an enqueuer land here, behind the
			 * head we set (found in review: an element lost). Stop instead. */
			if (ei != r->m.bot)
				break;
			uint64_t ne = _shmring_mp_ent(r, pc, _SHMRING_MP_SAFE(r, e), ei);
			/* R4 (bulk): as R4 in _shmring_mp_deq(): a late enqueuer for p now
			 * fails, on the cycle, whether head has moved or not. */
			if (!atomic_compare_exchange_strong_explicit(
				slot, &e, ne, memory_order_acq_rel, memory_order_acquire))
				break;
			atomic_fetch_sub_explicit(&c->threshold, 1, memory_order_relaxed);
			gaps++; /* closed by us now: nothing lands here */
			m++;
		}
		if (k > 0)
			m = off[k - 1] + 1u; /* trailing gaps stay closed for the next caller */
		if (k == 0 || (k < n && !up_to)) {
			unsigned lead = k ? off[0] : m; /* closed positions at head */
			uint64_t hh = h;
			if (lead == 0)
				return -EAGAIN;
			/* Move head over them (they hold nothing, and nothing can land there):
			 * the next scan starts at what is ready. */
			if (!atomic_compare_exchange_strong_explicit(&c->head, &hh, h + lead,
								     memory_order_relaxed,
								     memory_order_relaxed) &&
			    ++lost == _SHMRING_MP_LOST)
				return -EBUSY;
			continue;
		}
		for (unsigned j = 0; j < k; j++)
			atomic_store_explicit(&rec->held[j], (uint32_t)idx[j],
					      memory_order_relaxed);
		atomic_store_explicit(&rec->lo, h, memory_order_relaxed);
		atomic_store_explicit(&rec->pos, h, memory_order_relaxed);
		_shmring_mp_state(rec, _SHMRING_MP_DEQ_FAA, q,
				  _SHMRING_MP_B_RANGE(m) | _SHMRING_MP_B_RQ(q));
		_SHMRING_MP_HOOK(r, SHMRING_MPMC_HOOK_DEQ_FAA, q);
		/* F2 (bulk): acq_rel, as F2 in _shmring_mp_deq(): the DEQ_FAA record (R5) is
		 * visible to a recovery that sees this head (A6 in ring/mpmc.c). */
		uint64_t hh = h;
		if (!atomic_compare_exchange_strong_explicit(
			&c->head, &hh, h + m, memory_order_acq_rel, memory_order_relaxed)) {
			_shmring_mp_state(rec, _SHMRING_MP_IDLE, q, 0);
			/* Another dequeuer moved head: it made progress. A scan takes long
			 * beside a single fetch-and-add, and under a stream of them we would
			 * lose every race: after a few, give up (not -EPROTO: nothing is
			 * wrong; found in review, a burst beside single pops broke its handle
			 * after 66560 lost races). */
			if (++lost == _SHMRING_MP_LOST)
				return -EBUSY;
			continue;
		}
		_SHMRING_MP_HOOK(r, SHMRING_MPMC_HOOK_DEQ_POS, q);
		/* The lines the loop below and the caller's copies write or read, all at once. */
		for (unsigned j = 0; j < k; j++) {
			_shmring_mp_prefetch(_shmring_mp_slot(r, q, h + off[j]), 1);
			_shmring_mp_prefetch(&r->m.seq[idx[j]], 1);
			_shmring_mp_prefetch(r->data + idx[j] * r->elem_size, q == _SHMRING_MP_FQ);
		}
		r->m.lo[q] = h + m;
		_shmring_mp_state(rec, _SHMRING_MP_DEQ_BULK, q,
				  _SHMRING_MP_B_COUNT(k) | _SHMRING_MP_B_RANGE(m) |
				      _SHMRING_MP_B_RQ(q));
		for (unsigned j = 0; j < k; j++) {
			_Atomic uint64_t *slot = _shmring_mp_slot(r, q, h + off[j]);
			/* Lets a test die with part of the run emptied (recovery's DEQ_BULK case);
			 * without it only single-stepping reached that state. */
			_SHMRING_MP_HOOK(r, SHMRING_MPMC_HOOK_BULK_EMPTY, q);
			atomic_store_explicit(
			    &r->m.seq[idx[j]],
			    atomic_load_explicit(&r->m.seq[idx[j]], memory_order_relaxed) + 1,
			    memory_order_relaxed);
			/* R3 (bulk) there, after the seq bump. */
			if (!_shmring_mp_empty(r, slot, h + off[j], idx[j]))
				return _shmring_mp_break(
				    r); /* a recovery took ours: liveness lied */
		}
		_SHMRING_MP_HOOK(r, SHMRING_MPMC_HOOK_HELD, q);
		_shmring_mp_state(rec, _SHMRING_MP_IDLE, q, _SHMRING_MP_B_COUNT(k));
		return (int)k;
	}
	return _shmring_mp_break(r);
}

/*
 * Internal: disposes of the k indices a bulk take left held: into the filled queue in order
 * (q = AQ: their elements are written; the record says FULL first), or back into the free queue
 * from the last (q = FQ). One fetch-and-add on tail takes a position for each index still to
 * go; each index then lands in the next of those positions that will take it (SCQ's enqueue,
 * with the retry on a position a dequeuer has passed made on the next position already ours
 * rather than on a new fetch-and-add). Positions stay in order, so the indices do too; a
 * position that took none is a gap, as after SCQ's failed attempt, and there are never more
 * such positions than indices still held (SCQ's bound on what dequeuers must cross). The
 * record always names the index being landed and the position it is tried at, exactly as for
 * a single enqueue (IDLE between two landings), so recovery sees no difference; positions
 * still ours when the owner dies are gaps. Each landing moves one index out of the held[] range
 * in the same state store that names it. Returns 0, -EPROTO, -ECANCELED.
 */
static inline int _shmring_mp_put_n(struct shmring *r, struct _shmring_mpmc_rec *rec, int q,
				    const uint64_t *idx, unsigned k)
{
	struct _shmring_scq_ctl *c = r->m.ctl[q];
	uint64_t budget = _shmring_mp_budget(r), t = 0, end = 0;
	unsigned j = 0;

	if (q == _SHMRING_MP_AQ)
		_shmring_mp_state(rec, _SHMRING_MP_IDLE, q,
				  _SHMRING_MP_B_COUNT(k) | _SHMRING_MP_B_FULL);
	while (j < k) {
		uint64_t x = q == _SHMRING_MP_AQ ? idx[j] : idx[k - 1 - j];
		uint64_t bulk =
		    q == _SHMRING_MP_AQ
			? _SHMRING_MP_B_COUNT(k) | _SHMRING_MP_B_DONE(j + 1) | _SHMRING_MP_B_FULL
			: _SHMRING_MP_B_COUNT(k - 1 - j);

		if (!budget--)
			return _shmring_mp_break(r);
		atomic_store_explicit(&rec->idx, x, memory_order_relaxed);
		atomic_store_explicit(&rec->seq,
				      atomic_load_explicit(&r->m.seq[x], memory_order_relaxed),
				      memory_order_relaxed);
		if (t == end) {
			_shmring_mp_state(rec, _SHMRING_MP_ENQ_FAA, q, bulk);
			_SHMRING_MP_HOOK(r, SHMRING_MPMC_HOOK_ENQ_FAA, q);
			/* F1 (run): acq_rel, as F1 in _shmring_mp_enq(). */
			t = atomic_fetch_add_explicit(&c->tail, k - j, memory_order_acq_rel);
			_SHMRING_MP_HOOK(r, SHMRING_MPMC_HOOK_ENQ_POS, q);
			if (t >= (1ull << 62))
				return _shmring_mp_break(r);
			end = t + (k - j);
			for (uint64_t p = t; p < end; p++)
				_shmring_mp_prefetch(_shmring_mp_slot(r, q, p), 1);
		}
		int rc = _shmring_mp_try_at(r, rec, q, t++, x, bulk);
		if (rc < 0)
			return rc;
		j += (unsigned)rc;
	}
	_shmring_mp_state(rec, _SHMRING_MP_IDLE, q, 0);
	return 0;
}

/*
 * Internal: after an index landed in a queue (R2 in _shmring_mp_enq(), then the threshold
 * reset), wake whoever sleeps for it (sync/mpmc_wait.c): consumers for the filled queue,
 * producers for the free queue.
 */
static inline void _shmring_mp_wake(struct shmring *r, _Atomic uint32_t *waiters)
{
	/* F1: compiler barrier only; pairs with M1 (membarrier) in _shmring_wq_register(), or in
	 * hot mode with F3 there through F2 in _shmring_wake() (sync/sync.h): the waiters load
	 * must not be hoisted above the entry CAS and the threshold store that ready_q() in
	 * sync/mpmc_wait.c reads. Zero system calls while no one sleeps. */
	atomic_signal_fence(memory_order_seq_cst);
	if (__builtin_expect(atomic_load_explicit(waiters, memory_order_relaxed) != 0, 0))
		_shmring_wake(r, waiters);
}

#include <shmring/mpmc_runs.h>

/* ---- the API ---------------------------------------------------------------------------- */

/*
 * Producer. Copies one element in. Returns 0, -EAGAIN (full), -EPROTO. Non-blocking. Lock-free:
 * no other process, stopped anywhere, can make it wait.
 */
static inline int shmring_mpmc_push(struct shmring *r, const void *elem)
{
	if (r->kind == SHMRING_MPMC_RUNS) {
		int rc = _shmring_mr_push(r, (const unsigned char *)elem, 1, 1);
		return rc == 1 ? 0 : rc;
	}
	_SHMRING_KIND_CHECK(r, SHMRING_MPMC);
	struct _shmring_mpmc_rec *rec = r->m.rec;
	uint64_t idx, s;
	int rc = _shmring_mp_deq(r, rec, _SHMRING_MP_FQ, &idx, &s);

	if (__builtin_expect(rc != 0, 0))
		return rc;
	_shmring_copy(r->data + idx * r->elem_size, elem, r->elem_size);
	_SHMRING_MP_HOOK(r, SHMRING_MPMC_HOOK_FILLED, _SHMRING_MP_AQ);
	rc = _shmring_mp_enq(r, rec, _SHMRING_MP_AQ, idx, s, 0);
	if (rc == 0)
		_shmring_mp_wake(r, r->wake_data);
	return rc;
}

/* Consumer. Copies one element out. Returns 0, -EAGAIN (empty), -EPROTO. Non-blocking. */
static inline int shmring_mpmc_pop(struct shmring *r, void *elem)
{
	if (r->kind == SHMRING_MPMC_RUNS) {
		int rc = _shmring_mr_pop(r, (unsigned char *)elem, 1, 1);
		return rc == 1 ? 0 : rc;
	}
	_SHMRING_KIND_CHECK(r, SHMRING_MPMC);
	struct _shmring_mpmc_rec *rec = r->m.rec;
	uint64_t idx, s;
	int rc = _shmring_mp_deq(r, rec, _SHMRING_MP_AQ, &idx, &s);

	if (__builtin_expect(rc != 0, 0))
		return rc;
	_shmring_copy(elem, r->data + idx * r->elem_size, r->elem_size);
	_SHMRING_MP_HOOK(r, SHMRING_MPMC_HOOK_READ, _SHMRING_MP_FQ);
	rc = _shmring_mp_enq(r, rec, _SHMRING_MP_FQ, idx, s, 0);
	if (rc == 0)
		_shmring_mp_wake(r, r->wake_space);
	return rc;
}

/*
 * Internal: the body of push_burst/push_bulk (push = 1: buf is only read) and of
 * pop_burst/pop_bulk (push = 0); up_to = 1 for bursts, 0 for bulks.
 */
static inline int _shmring_mpmc_move_n(struct shmring *r, unsigned char *buf, unsigned n, int up_to,
				       int push)
{
	if (r->kind == SHMRING_MPMC_RUNS)
		return push ? _shmring_mr_push(r, buf, n, !up_to)
			    : _shmring_mr_pop(r, buf, n, !up_to);
	_SHMRING_KIND_CHECK(r, SHMRING_MPMC);
	struct _shmring_mpmc_rec *rec = r->m.rec;
	int from = push ? _SHMRING_MP_FQ : _SHMRING_MP_AQ, to = !from;
	uint64_t idx[SHMRING_MPMC_BULK_MAX];

	/* A broken handle answers -EPROTO to everything, as SPSC's do, even to requests that
	 * move nothing or can never succeed (found by fuzz_mpmc's check of broken handles). */
	if (n == 0)
		return r->broken ? -EPROTO : 0;
	if (n > SHMRING_MPMC_BULK_MAX || n > r->capacity) {
		if (!up_to)
			return r->broken ? -EPROTO : -EINVAL;
		n = n > SHMRING_MPMC_BULK_MAX ? SHMRING_MPMC_BULK_MAX : n;
	}
	int k = _shmring_mp_deq_n(r, rec, from, idx, n, up_to);
	if (k == -EBUSY) /* lost the race for head a few times: others are moving */
		k = -EAGAIN;
	if (k == -EAGAIN && up_to) {
		/* No run ready at head, or others keep taking it first: the single path crosses
		 * gaps, tells empty from a gap, keeps the threshold that makes empty pops cheap,
		 * and takes its position by fetch-and-add, which no one can take from it. */
		int rc = push ? shmring_mpmc_push(r, buf) : shmring_mpmc_pop(r, buf);
		return rc ? rc : 1;
	}
	if (k < 0)
		return k;
	for (int j = 0; j < k; j++) {
		unsigned char *slot = r->data + idx[j] * r->elem_size;
		unsigned char *mine = buf + (size_t)j * r->elem_size;
		if (push)
			_shmring_copy(slot, mine, r->elem_size);
		else
			_shmring_copy(mine, slot, r->elem_size);
	}
	_SHMRING_MP_HOOK(r, push ? SHMRING_MPMC_HOOK_FILLED : SHMRING_MPMC_HOOK_READ, to);
	int rc = _shmring_mp_put_n(r, rec, to, idx, (unsigned)k);
	if (rc)
		return rc;
	_shmring_mp_wake(r, push ? r->wake_data : r->wake_space);
	return k;
}

/*
 * Producer. Pushes up to n elements, in order, with one CAS on the free queue's head for the
 * run of free slots it finds (at most SHMRING_MPMC_BULK_MAX per call). Returns how many (1..n),
 * 0 when n is 0, -EAGAIN (full), -EPROTO. Non-blocking.
 */
static inline int shmring_mpmc_push_burst(struct shmring *r, const void *elems, unsigned n)
{
	return _shmring_mpmc_move_n(r, (unsigned char *)(uintptr_t)elems, n, 1, 1);
}

/* Consumer. Pops up to n elements (at most SHMRING_MPMC_BULK_MAX), in order. Returns how many
 * (1..n), 0 when n is 0, -EAGAIN (empty), -EPROTO. Non-blocking. */
static inline int shmring_mpmc_pop_burst(struct shmring *r, void *elems, unsigned n)
{
	return _shmring_mpmc_move_n(r, elems, n, 1, 0);
}

/*
 * Producer. Pushes all n elements or none (n <= SHMRING_MPMC_BULK_MAX and <= capacity, else
 * -EINVAL), published in order (other producers' elements may land between them). Returns n,
 * -EAGAIN (fewer than n free slots ready in the run it scans from the free queue's head: under
 * contention this can say -EAGAIN while n slots are free in total), -EINVAL, -EPROTO. A producer
 * that dies inside it: either none of the n is published (it died before all were written) or
 * recovery publishes all of them.
 *
 * Progress: a bulk cannot cross a free-queue position whose slot from the previous cycle is
 * still being taken (a producer stopped between its fetch-and-add and its claim: preempted,
 * SIGSTOPped, or dead and not yet recovered) without risking an element, so it says -EAGAIN
 * until that producer goes on or recovery runs. push and push_burst cross it: only all-or-none
 * callers wait on a stopped peer.
 */
static inline int shmring_mpmc_push_bulk(struct shmring *r, const void *elems, unsigned n)
{
	return _shmring_mpmc_move_n(r, (unsigned char *)(uintptr_t)elems, n, 0, 1);
}

/*
 * Consumer. Pops n elements, the next n in the ring, or none. Returns n, -EAGAIN (fewer than n
 * ready in the run it scans from head; it closes up to 16 positions that hold nothing per call,
 * as a single pop would, so a producer still publishing there retries further on, and crosses
 * positions closed before, up to 128 in all),
 * -EINVAL (n > SHMRING_MPMC_BULK_MAX or capacity), -EPROTO. A consumer that dies
 * inside it loses the n elements (never delivered to anyone else).
 *
 * Progress: as for push_bulk, a position at head whose previous cycle's element is still being
 * taken by a stopped consumer (between its fetch-and-add and its claim, or dead and not yet
 * recovered) makes pop_bulk say -EAGAIN until that consumer goes on or recovery runs; pop and
 * pop_burst cross it (tested: bulk_waits_behind_a_stopped_taker).
 */
static inline int shmring_mpmc_pop_bulk(struct shmring *r, void *elems, unsigned n)
{
	return _shmring_mpmc_move_n(r, elems, n, 0, 0);
}

#endif

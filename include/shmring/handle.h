/* SPDX-License-Identifier: MIT */
/*
 * The process-local handle. It is visible only so that the hot paths can be static inline;
 * its fields are not part of the API and change between versions. Never touch them.
 *
 * Everything here is copied from a validated header at attach time: geometry is never read
 * from shared memory again, so a peer that rewrites the header cannot move our bounds.
 */
/* Any of the headers may be included first: shmring.h declares the common API and then
 * includes the others in dependency order (this one through them). */
#include <shmring/shmring.h>

#ifndef SHMRING_HANDLE_H
#define SHMRING_HANDLE_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stdint.h>

struct _shmring_mpmc_rec; /* MPMC participant record (mpmc.h) */
struct _shmring_scq_ctl;  /* MPMC queue control block (mpmc.h) */
struct _shmring_seg;	  /* registry entry: the mapping, its refcount (ring/registry.c) */

struct shmring {
	/* read-only after attach */
	unsigned char *data;	    /* first slot */
	_Atomic uint64_t *prod_pos; /* producer's published position, in its own 128-byte block */
	_Atomic uint64_t *cons_pos; /* consumer's published position, in its own 128-byte block */
	uint64_t mask;		    /* capacity - 1 */
	uint64_t capacity;
	uint32_t elem_size;
	uint32_t kind;
	uint32_t hints;
	int broken; /* set on the first impossible value read from the peer */
	struct _shmring_seg *seg;
	/* sleep and wake (sync/): waiters words that the publish paths read after R1/R2 */
	_Atomic uint32_t *wake_data;  /* consumers sleeping for data: the producer checks it */
	_Atomic uint32_t *wake_space; /* producers sleeping for space: the consumer checks it */
	struct _shmring_sync *sync;   /* process-local wait state (sync/sync.h) */

	/*
	 * Producer-side state, in a block of its own, so that one SPSC handle shared by a
	 * producer thread and a consumer thread for the non-blocking calls does not bounce a
	 * line on every operation (stress_spsc_threads runs that under TSan). The blocking calls
	 * share this handle's sleep state (last_sleep_ns): they need a handle per thread.
	 */
	alignas(64) struct {
		uint64_t tail; /* next position to write; authoritative (we are the only writer) */
		uint64_t head_cache; /* last consumer position seen (Rigtorp's cached index) */
		uint64_t reserved;   /* slots handed out by reserve and not yet committed */
	} p;

	/* Consumer-side state. */
	alignas(64) struct {
		uint64_t head;	     /* next position to read; authoritative */
		uint64_t tail_cache; /* last producer position seen */
		uint64_t peeked;     /* slots handed out by peek and not yet released */
	} c;

	/* Message rings (msg.h): the reservation and the peeked record. Positions live in p, c. */
	struct {
		alignas(64) struct {
			uint64_t res_pos;  /* header position of the reserved record */
			uint64_t res_word; /* MPSC: the busy header we wrote (commit swaps it) */
			uint32_t res_len;
			uint32_t res_active;
			struct _shmring_msg_rec *rec; /* MPSC: our claim record, or NULL */
			uint32_t rec_pid;	      /* the pid its owner word holds */
			uint32_t rec_locked; /* 1: we hold its lock (_SHMRING_MSG_LOCKED) */
		} p;
		alignas(64) struct {
			uint64_t peek_stride;	       /* bytes of the peeked record; 0 when none */
			struct _shmring_msg_rec *recs; /* MPSC: every producer's claim record */
		} c;
	} msg;

	/* MPMC rings (mpmc.h): this handle's participant record and the two index queues. */
	alignas(64) struct {
		struct _shmring_mpmc_rec *rec;	 /* our record in the segment */
		struct _shmring_scq_ctl *ctl[2]; /* [0] filled queue (aq), [1] free queue (fq) */
		_Atomic uint64_t *ent[2];	 /* 2 * capacity entries each */
		_Atomic uint64_t *seq;		 /* hand-over count of each index */
		struct _shmring_mpmc_rec *recs;	 /* all records */
		uint64_t emask;			 /* 2 * capacity - 1 */
		uint64_t bot;			 /* empty index value (all ones, w bits) */
		uint64_t claimed;		 /* CLAIMED bit of the index field */
		int64_t thr_max;		 /* 3 * capacity - 1 */
		uint64_t lo[2];			 /* lower bound of our next head position */
		uint32_t w;			 /* index bits: log2(capacity) + 2 */
		uint32_t ishift;		 /* log2(2 * capacity) */
		uint64_t owner;			 /* what our record's owner word holds */
		int (*hook)(struct shmring *, int, int, void *);
		void *hook_arg;
		int (*alive)(uint64_t, void *);
		void *alive_arg;
		pid_t pid; /* the process that made this handle */
		/* SHMRING_MPMC_RUNS (mpmc.h): the rest of the geometry, and our producer state */
		_Atomic uint64_t *hdr;	  /* one header per slot */
		_Atomic uint64_t *arenas; /* arena owner words: record index + 1, or 0 */
		uint64_t astride;	  /* bytes of one arena: capacity * elem_size */
		uint64_t seen_head;	  /* our last read of head (room is judged from it) */
		uint64_t patience_ns;	  /* how long a claim is waited for before it is skipped */
		uint32_t order;		  /* log2(capacity) */
		uint32_t producers;	  /* arenas */
		int32_t arena;		  /* our arena, or -1 before our first push */
		uint32_t rec_i;		  /* index of our record */
	} m;
};

/* Internal: the inline data calls of one kind answer -EINVAL on a handle of another kind (a
 * push on the wrong handle would write through another kind's fields). One compare with a field
 * on the line the fast path reads anyway. */
#define _SHMRING_KIND_CHECK(r, k)                                                                  \
	do {                                                                                       \
		if (__builtin_expect((r)->kind != (k), 0))                                         \
			return -EINVAL;                                                            \
	} while (0)

#endif

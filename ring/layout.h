/* SPDX-License-Identifier: MIT */
/*
 * The shared layout: what a segment holds, and how it is checked. Internal.
 *
 * A segment is: the header (two 128-byte blocks), then the parts it names. Every part starts on
 * a 128-byte boundary, so each index and each waiter word sits alone in a block (the adjacent
 * line prefetcher pairs 64-byte lines). Everything is an offset; nothing is a pointer.
 */
#ifndef SHMRING_RING_LAYOUT_H
#define SHMRING_RING_LAYOUT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <shmring/shmring.h>

#define _SHMRING_MAGIC	   0x00474e49524d4853ull /* "SHMRING\0" read little-endian */
#define _SHMRING_READY	   0x52454459u		 /* "READY" state of a published header */
#define _SHMRING_BLOCK	   128u
#define _SHMRING_HDR_SIZE  256u
#define _SHMRING_NPARTS	   8
#define _SHMRING_SYNC_SIZE (4u * _SHMRING_BLOCK) /* waiter words and liveness, for sync/ */

/* Index of each part in the header's table. Kinds may use the rest. */
enum {
	_SHMRING_PART_PROD = 0,	  /* producer position block */
	_SHMRING_PART_CONS = 1,	  /* consumer position block */
	_SHMRING_PART_SYNC = 2,	  /* sleep/wake words and liveness */
	_SHMRING_PART_DATA = 3,	  /* slots */
	_SHMRING_PART_MSGREC = 4, /* MPSC message rings: producer claim records (msg.h) */
};

struct _shmring_part {
	uint64_t off;
	uint64_t size;
};

/* Immutable once published, except state. */
struct _shmring_hdr {
	uint64_t magic;
	uint32_t abi;
	uint32_t kind;
	uint32_t flags; /* creation options every process must agree on; none defined yet */
	uint32_t elem_size;
	uint64_t capacity;
	uint64_t total_size;
	struct _shmring_part part[_SHMRING_NPARTS];
	uint64_t check; /* FNV-1a over every byte above */
	_Atomic uint32_t state;
};

_Static_assert(sizeof(struct _shmring_hdr) <= _SHMRING_HDR_SIZE, "header outgrew its blocks");
_Static_assert(offsetof(struct _shmring_hdr, check) == 168, "header layout is ABI");

/* The geometry a header must describe, derived from (kind, elem_size, capacity) alone. */
struct _shmring_layout {
	uint32_t kind;
	uint32_t elem_size;
	uint64_t capacity;
	uint64_t total_size;
	struct _shmring_part part[_SHMRING_NPARTS];
	uint32_t hflags;    /* header flags (sync back-end, sync/sync.h _SHMRING_HF_*; for
			     * SHMRING_MPMC_RUNS the producers in bits 8..15) */
	uint32_t producers; /* SHMRING_MPMC_RUNS: producer arenas; else 0 */
};

/* Header flags: bit 0 the semaphore back-end, bits 8..15 an SHMRING_MPMC_RUNS ring's producers. */
#define _SHMRING_HF_PRODUCERS(f) (((f) >> 8) & 0xffu)

/* Whether expect's producers field is wrong for its kind: non-zero for a kind without producers,
 * or (runs) above the maximum, or zero where any_ok is 0 (a create). */
int _shmring_producers_bad(const struct shmring_params *expect, int any_ok);

/* Whether an open's or attach's expect matches an already mapped ring's geometry (zero fields
 * are "any"). */
int _shmring_layout_matches(const struct _shmring_layout *g, const struct shmring_params *expect);

/* Checks a geometry and computes its layout. Returns 0, -EINVAL or -EOVERFLOW. */
int _shmring_layout(const struct shmring_params *p, struct _shmring_layout *out);

/* Writes an empty ring and publishes its header. mem is at least out->total_size bytes. */
void _shmring_format(void *mem, const struct _shmring_layout *l);

/*
 * Validates a published header in len bytes of memory against expect. On success fills *out
 * with the geometry (from the expected layout, not from shared memory). Returns 0, -EPROTO,
 * -EAGAIN (not published).
 */
/* sync/: initialises the sync part (semaphores) before the header is published. */
void _shmring_sync_format(void *sync_part, uint32_t hflags);

/* -EINVAL for an expect (open, attach) that no ring can match: no such kind, an impossible
 * element size or capacity, unknown flags or reserved bits; else 0. The caller's mistake, not a
 * foreign segment (found in review: it said -EPROTO). */
int _shmring_expect_check(const struct shmring_params *expect);
int _shmring_validate(const void *mem, size_t len, const struct shmring_params *expect,
		      struct _shmring_layout *out);

uint64_t _shmring_hdr_check(const struct _shmring_hdr *h);

/* MPMC (ring/mpmc.c): adds parts 4..7 from offset off and returns the end; formats them. Both
 * kinds, SHMRING_MPMC and SHMRING_MPMC_RUNS. */
uint64_t _shmring_mpmc_layout(struct _shmring_layout *l, uint64_t off);
void _shmring_mpmc_format(void *mem, const struct _shmring_layout *l);

#endif

/* SPDX-License-Identifier: MIT */
/*
 * The process-local handle. It is visible only so that the hot paths can be static inline;
 * its fields are not part of the API and change between versions. Never touch them.
 *
 * Everything here is copied from a validated header at attach time: geometry is never read
 * from shared memory again, so a peer that rewrites the header cannot move our bounds.
 */
#ifndef SHMRING_HANDLE_H
#define SHMRING_HANDLE_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stdint.h>

struct _shmring_seg; /* registry entry: the mapping, its refcount (ring/registry.c) */

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

	/*
	 * Producer-side state. Own block, so that one handle shared by a producer thread and a
	 * consumer thread does not bounce a line on every operation.
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
};

#endif

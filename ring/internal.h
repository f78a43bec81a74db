/* SPDX-License-Identifier: MIT */
/* Process-local side: the registry of open segments and the handle factory. Internal. */
#ifndef SHMRING_RING_INTERNAL_H
#define SHMRING_RING_INTERNAL_H

#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

#include "layout.h"

/* File sizes and lock offsets are 64-bit: the record and role locks sit at byte 2^40 of the
 * ring's file, and a ring's file may pass 2 GiB. On a 32-bit target the library's sources must
 * be compiled with -D_FILE_OFFSET_BITS=64 (CMakeLists.txt does; found when the library was
 * first built for i386: without it those offsets were cut to 32 bits). The API has no off_t,
 * so programs using the library need not be. */
_Static_assert(sizeof(off_t) == 8, "compile shmring's sources with -D_FILE_OFFSET_BITS=64");

enum _shmring_key_type {
	_SHMRING_KEY_INODE = 1,	  /* a named backing: (device, inode) */
	_SHMRING_KEY_ADDRESS = 2, /* caller's memory or anonymous memory: the address */
};

struct _shmring_key {
	uint32_t type;
	uint64_t a, b;
};

/* One mapping of one segment in this process, shared by every handle on it. */
struct _shmring_seg {
	struct _shmring_key key;
	_Atomic long refs;
	void *base;
	size_t len;
	int fd;		  /* -1 when there is none */
	int owns_mapping; /* 0 for caller's memory: never unmapped by us */
	_Atomic uint32_t hints;
	struct _shmring_layout geo; /* validated once, at first mapping */
	void *reg_node;		    /* registry bookkeeping (ring/registry.c) */
};

/*
 * Finds the live segment with this key and takes a reference, without a lock.
 * Returns NULL if there is none.
 */
struct _shmring_seg *_shmring_reg_get(const struct _shmring_key *key);

/* A live named segment (one with a file) mapped at base in this process, referenced, or NULL. */
struct _shmring_seg *_shmring_reg_named_at(const void *base);

/*
 * Registers seg (refs already 1). If a live segment with the same key got there first, takes a
 * reference on that one and returns it instead; the caller then discards its own. Returns seg,
 * the winner, or NULL (out of memory).
 */
struct _shmring_seg *_shmring_reg_insert(struct _shmring_seg *seg);

/* Drops a reference; the last one unregisters, unmaps and frees after a grace period. */
void _shmring_reg_put(struct _shmring_seg *seg);

/* Unmaps and closes what seg holds (no registry involvement). */
void _shmring_seg_release(struct _shmring_seg *seg);

/* Applies hint flags to a mapping. Returns 0 or -errno; *effective gets what took effect. */
int _shmring_apply_hints(void *base, size_t len, int fd, uint32_t flags, uint32_t *effective);

/* Makes a handle on a segment whose reference the caller passes to it. */
int _shmring_handle_new(struct _shmring_seg *seg, struct shmring **out);

/* MPSC message rings (ring/msg.c): finds the claim records; gives back the handle's. */
void _shmring_msg_handle_init(struct shmring *r, unsigned char *base,
			      const struct _shmring_layout *g);
void _shmring_msg_handle_fini(struct shmring *r);

/* MPMC (ring/mpmc.c): sets up the handle's view of the queues and claims a participant record
 * (-EUSERS when all are taken by live handles); fini gives the record back. */
int _shmring_mpmc_handle_init(struct shmring *r, unsigned char *base,
			      const struct _shmring_layout *g);
void _shmring_mpmc_handle_fini(struct shmring *r);

/* sync/: per-handle sleep/wake state (sync/sync.h). */
int _shmring_sync_handle_init(struct shmring *r, uint32_t hflags);
void _shmring_sync_handle_fini(struct shmring *r);
/* sync/: removes the event FIFO of the segment at seg_path, if there is one
 * (shmring_event_fd()); called when the segment's name is removed. */
void _shmring_event_unlink(const char *seg_path);
/* sync/: after a public opener made *out (rc == 0), claims the roles in flags; on failure
 * closes *out. Returns rc or the claim's error. */
int _shmring_sync_opened(int rc, uint32_t flags, struct shmring **out);

/* shmring_msg_recover() and shmring_msg_recover_all() (ring/msg.c), with what to make of a
 * producer whose claim record says it runs in another pid namespace than ours. */
enum {
	_SHMRING_FOREIGN_ALIVE = 1, /* not asked about: alive (its pid means nothing here) */
	_SHMRING_FOREIGN_ASK = 0,   /* asked about as any other */
};
/* Testing only: called by a producer taking another owner's record (ring/msg.c), at point 0
 * before it judges record i, at point 2 holding record i's lock before it judges it again, at
 * point 1 right before its owner CAS. NULL by default. */
extern void (*_shmring_msg_take_hook)(struct shmring *r, int i, int point);

int _shmring_msg_recover(struct shmring *r, int (*is_dead)(uint32_t pid, void *arg), void *arg,
			 int foreign_rule);

#endif

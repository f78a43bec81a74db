/* SPDX-License-Identifier: MIT */
/* Handles: made from a validated segment, closed through the registry; queries; error texts. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/*
 * A consistent pair of positions from a ring that may be running. Reading one position and
 * then the other can see a pair that never existed (the peer moved in between, so t - h looks
 * larger than the capacity). The consumer's position read between two equal reads of the
 * producer's was read while the producer's held that value, so the pair did exist and
 * t - h <= capacity must hold. Retries are bounded: a peer that never lets t rest gets -EAGAIN.
 */
static int snapshot_positions(struct shmring *r, uint64_t *h, uint64_t *t)
{
	for (int i = 0; i < 100000; i++) {
		/* A5: pairs with R1 (spsc.h): the slots below t are visible to this handle. */
		uint64_t t1 = atomic_load_explicit(r->prod_pos, memory_order_acquire);
		/* A6: pairs with R2 (spsc.h): the consumer is done with the slots below h. */
		uint64_t h1 = atomic_load_explicit(r->cons_pos, memory_order_acquire);
		uint64_t t2 = atomic_load_explicit(r->prod_pos, memory_order_acquire);

		if (t1 != t2)
			continue;
		*h = h1;
		*t = t1;
		return t1 - h1 > r->capacity ? -EPROTO : 0;
	}
	return -EAGAIN;
}

int _shmring_handle_new(struct _shmring_seg *seg, struct shmring **out)
{
	const struct _shmring_layout *g = &seg->geo;
	unsigned char *base = seg->base;
	struct shmring *r;

	r = aligned_alloc(_SHMRING_BLOCK, (sizeof(*r) + _SHMRING_BLOCK - 1) & ~(size_t)127);
	if (!r) {
		_shmring_reg_put(seg);
		return -ENOMEM;
	}
	memset(r, 0, sizeof(*r));
	r->seg = seg;
	r->kind = g->kind;
	r->elem_size = g->elem_size;
	r->capacity = g->capacity;
	r->mask = g->capacity - 1;
	r->hints = atomic_load(&seg->hints);
	r->data = base + g->part[_SHMRING_PART_DATA].off;
	r->prod_pos = (_Atomic uint64_t *)(base + g->part[_SHMRING_PART_PROD].off);
	r->cons_pos = (_Atomic uint64_t *)(base + g->part[_SHMRING_PART_CONS].off);

	/* Start from the positions as they are: a side that re-attaches resumes. */
	uint64_t h, t;
	int rc = snapshot_positions(r, &h, &t);
	/* Message rings (msg.h): records start on 8-byte boundaries. */
	if (rc == 0 && (r->kind == SHMRING_MSG || r->kind == SHMRING_MSG_MPSC) && ((t | h) & 7))
		rc = -EPROTO;
	if (rc) {
		free(r);
		_shmring_reg_put(seg);
		return rc;
	}
	r->p.tail = t;
	r->p.head_cache = h;
	r->c.head = h;
	r->c.tail_cache = t;
	if (_shmring_sync_handle_init(r, g->hflags) != 0) {
		free(r);
		_shmring_reg_put(seg);
		return -ENOMEM;
	}
	if (r->kind == SHMRING_MSG_MPSC)
		_shmring_msg_handle_init(r, base, g); /* ring/msg.c: a producer claim record */
	if (r->kind == SHMRING_MPMC || r->kind == SHMRING_MPMC_RUNS) {
		int rc = _shmring_mpmc_handle_init(r, base, g); /* ring/mpmc.c: claims a record */
		if (rc != 0) {
			_shmring_sync_handle_fini(r);
			free(r);
			_shmring_reg_put(seg);
			return rc;
		}
	}
	*out = r;
	return 0;
}

int shmring_close(struct shmring *r)
{
	if (!r)
		return 0;
	if (r->kind == SHMRING_MPMC || r->kind == SHMRING_MPMC_RUNS)
		_shmring_mpmc_handle_fini(r); /* ring/mpmc.c: frees our record */
	if (r->kind == SHMRING_MSG_MPSC)
		_shmring_msg_handle_fini(r);
	_shmring_sync_handle_fini(r);
	_shmring_reg_put(r->seg);
	free(r);
	return 0;
}

uint64_t shmring_capacity(const struct shmring *r)
{
	return r ? r->capacity : 0;
}

uint32_t shmring_elem_size(const struct shmring *r)
{
	return r ? r->elem_size : 0;
}

uint32_t shmring_kind(const struct shmring *r)
{
	return r ? r->kind : 0;
}

uint32_t shmring_hints(const struct shmring *r)
{
	return r ? atomic_load(&r->seg->hints) : 0;
}

void *shmring_base(const struct shmring *r, size_t *len)
{
	if (!r)
		return NULL;
	if (len)
		*len = r->seg->len;
	return r->seg->base;
}

int shmring_is_broken(const struct shmring *r)
{
	return r ? r->broken : 0;
}

const char *shmring_strerror(int err)
{
	/* Negated as unsigned: -INT_MIN overflows (found in review, by UBSan). */
	switch (err < 0 ? 0u - (unsigned)err : (unsigned)err) {
	case 0:
		return "success";
	case EAGAIN:
		return "ring full or empty (try again)";
	case ETIMEDOUT:
		return "deadline passed, or the segment's creator never published its header";
	case EPIPE:
		return "peer gone";
	case EPROTO:
		return "corrupt, incompatible or unexpected segment (wrong kind or geometry, or a "
		       "peer wrote an impossible value)";
	case EINVAL:
		return "invalid argument (null pointer, bad name, bad geometry or count)";
	case EEXIST:
		return "a segment with this name already exists";
	case ENOENT:
		return "no segment with this name";
	case ENOSPC:
		return "no space left for the segment (full /dev/shm or file system, or memory "
		       "too small)";
	case ENOMEM:
		return "out of memory, or mlock refused: the ring exceeds RLIMIT_MEMLOCK "
		       "(see shmring_lock_bytes and ulimit -l)";
	case EPERM:
		return "not permitted (for mlock: RLIMIT_MEMLOCK is 0 and no CAP_IPC_LOCK)";
	case EACCES:
		return "permission denied";
	case EOVERFLOW:
		return "ring too large for this address space";
	case EMSGSIZE:
		return "message too large for this ring";
	case EBUSY:
		return "busy (a reservation is open, or every liveness slot of the role is held)";
	case EUSERS:
		return "every participant record is taken (an MPMC ring's handles or a runs ring's "
		       "producer arenas, or a message "
		       "ring's producers)";
	case EOWNERDEAD:
		return "recovery declared this producer dead and discarded its claim";
	case ECANCELED:
		return "stopped by a test hook";
	case EOPNOTSUPP:
		return "not supported by this kind of ring or backing, or here (a role on a ring's "
		       "file, or its event FIFO, needs /proc)";
	case EMFILE:
	case ENFILE:
		return "too many open files";
	case ENOLCK:
		return "no record locks available";
	default:
		return "unknown error";
	}
}

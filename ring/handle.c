/* SPDX-License-Identifier: MIT */
/* Handles: made from a validated segment, closed through the registry; queries; error texts. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

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
	uint64_t h = atomic_load_explicit(r->cons_pos, memory_order_acquire);
	uint64_t t = atomic_load_explicit(r->prod_pos, memory_order_acquire);
	if (t - h > r->capacity) {
		free(r);
		_shmring_reg_put(seg);
		return -EPROTO;
	}
	r->p.tail = t;
	r->p.head_cache = h;
	r->c.head = h;
	r->c.tail_cache = t;
	*out = r;
	return 0;
}

int shmring_close(struct shmring *r)
{
	if (!r)
		return 0;
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
	switch (err < 0 ? -err : err) {
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
	default:
		return "unknown error";
	}
}

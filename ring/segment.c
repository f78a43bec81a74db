/* SPDX-License-Identifier: MIT */
/* The shared header: layout of each kind, formatting, and validation of what a peer wrote. */
#include <errno.h>
#include <limits.h>
#include <string.h>

#include "layout.h"

static int is_pow2(uint64_t x)
{
	return x && !(x & (x - 1));
}

static uint64_t round_block(uint64_t x)
{
	return (x + _SHMRING_BLOCK - 1) & ~(uint64_t)(_SHMRING_BLOCK - 1);
}

int _shmring_layout(const struct shmring_params *p, struct _shmring_layout *out)
{
	if (!p || !out)
		return -EINVAL;
	/* Message rings (msg.h): capacity in bytes, SHMRING_MSG_CAPACITY_MIN..MAX; elem_size 0
	 * or 1, recorded as 1. */
	int msg = p->kind == SHMRING_MSG || p->kind == SHMRING_MSG_MPSC;
	uint32_t es = msg && p->elem_size == 0 ? 1 : p->elem_size;
	if (msg && (es != 1 || p->capacity < SHMRING_MSG_CAPACITY_MIN ||
		    p->capacity > SHMRING_MSG_CAPACITY_MAX))
		return -EINVAL;
	int runs = p->kind == SHMRING_MPMC_RUNS;
	if (p->kind != SHMRING_SPSC && p->kind != SHMRING_MPMC && !runs && !msg)
		return -EINVAL;
	if (es == 0 || es > SHMRING_ELEM_MAX)
		return -EINVAL;
	if (!is_pow2(p->capacity) || p->capacity > SHMRING_CAPACITY_MAX)
		return -EINVAL;
	if (_shmring_producers_bad(p, 0) ||
	    (p->flags & ~(SHMRING_F_HINTS_MASK | SHMRING_F_SYNC_MASK)))
		return -EINVAL;

	/* 2^30 slots of 2^20 bytes is 2^50: fits in 64 bits, but not in a mapping. A runs ring
	 * has an arena of capacity slots for each producer. */
	uint64_t data = p->capacity * es;
	if (data > (1ull << 46))
		return -EOVERFLOW;
	if (runs) {
		data *= p->producers;
		if (data > (1ull << 46))
			return -EOVERFLOW;
	}

	memset(out, 0, sizeof(*out));
	out->kind = p->kind;
	out->elem_size = es;
	out->capacity = p->capacity;
	uint64_t off = _SHMRING_HDR_SIZE;
	out->part[_SHMRING_PART_PROD] = (struct _shmring_part){off, _SHMRING_BLOCK};
	off += _SHMRING_BLOCK;
	out->part[_SHMRING_PART_CONS] = (struct _shmring_part){off, _SHMRING_BLOCK};
	off += _SHMRING_BLOCK;
	out->part[_SHMRING_PART_SYNC] = (struct _shmring_part){off, _SHMRING_SYNC_SIZE};
	off += _SHMRING_SYNC_SIZE;
	out->part[_SHMRING_PART_DATA] = (struct _shmring_part){off, data};
	off += round_block(data);
	out->producers = runs ? p->producers : 0;
	if (p->kind == SHMRING_MPMC || runs)
		off = _shmring_mpmc_layout(out, off); /* parts 4..7 (ring/mpmc.c) */
	if (p->kind == SHMRING_MSG_MPSC) {
		uint64_t n = (uint64_t)SHMRING_MSG_PRODUCERS * sizeof(struct _shmring_msg_rec);
		out->part[_SHMRING_PART_MSGREC] = (struct _shmring_part){off, n};
		off += round_block(n);
	}
	out->total_size = off;
	out->hflags = (p->flags & SHMRING_F_SEMAPHORE) ? 1u /* _SHMRING_HF_SEM */ : 0;
	out->hflags |= out->producers << 8;
	/* Mappable, and its size a non-negative ssize_t (shmring_memsize()): on a 32-bit target
	 * (found when the library was first run on i386: 2 to 4 GiB came back negative). */
	if (out->total_size > (uint64_t)SSIZE_MAX)
		return -EOVERFLOW;
	return 0;
}

uint64_t _shmring_hdr_check(const struct _shmring_hdr *h)
{
	const unsigned char *b = (const unsigned char *)h;
	uint64_t x = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < offsetof(struct _shmring_hdr, check); i++) {
		x ^= b[i];
		x *= 0x100000001b3ull;
	}
	return x;
}

void _shmring_format(void *mem, const struct _shmring_layout *l)
{
	struct _shmring_hdr *h = mem;
	unsigned char *base = mem;

	/* Positions and waiter words start at zero; the slots need no initialisation. */
	memset(base, 0, l->part[_SHMRING_PART_DATA].off);
	/* MPSC message rings (msg.h): free space must read as "not written" (zero headers). */
	if (l->kind == SHMRING_MSG_MPSC) {
		memset(base + l->part[_SHMRING_PART_DATA].off, 0, l->part[_SHMRING_PART_DATA].size);
		memset(base + l->part[_SHMRING_PART_MSGREC].off, 0,
		       l->part[_SHMRING_PART_MSGREC].size);
	}
	h->magic = _SHMRING_MAGIC;
	h->abi = SHMRING_ABI_VERSION;
	h->kind = l->kind;
	h->flags = l->hflags;
	h->elem_size = l->elem_size;
	h->capacity = l->capacity;
	h->total_size = l->total_size;
	memcpy(h->part, l->part, sizeof(h->part));
	_shmring_sync_format(base + l->part[_SHMRING_PART_SYNC].off, l->hflags);
	if (l->kind == SHMRING_MPMC || l->kind == SHMRING_MPMC_RUNS)
		_shmring_mpmc_format(mem, l); /* queues or headers, records (ring/mpmc.c) */
	h->check = _shmring_hdr_check(h);
	/* R0: pairs with A0 in _shmring_validate(): every byte above is visible before READY. */
	atomic_store_explicit(&h->state, _SHMRING_READY, memory_order_release);
}

int _shmring_expect_check(const struct shmring_params *expect)
{
	struct shmring_params want = *expect;
	struct _shmring_layout l;
	int msg = expect->kind == SHMRING_MSG || expect->kind == SHMRING_MSG_MPSC;

	/* Judged by the rules of a create, with its zero (any) fields made valid. */
	want.elem_size = want.elem_size ? want.elem_size : 1;
	want.producers = want.producers ? want.producers : expect->kind == SHMRING_MPMC_RUNS;
	want.capacity = want.capacity ? want.capacity : msg ? SHMRING_MSG_CAPACITY_MIN : 1;
	int rc = _shmring_layout(&want, &l);
	return rc == -EINVAL ? rc : 0;
}

int _shmring_validate(const void *mem, size_t len, const struct shmring_params *expect,
		      struct _shmring_layout *out)
{
	const struct _shmring_hdr *h = mem;
	struct shmring_params want;
	struct _shmring_layout l;

	if (!mem || !expect || !out)
		return -EINVAL;
	if (len < _SHMRING_HDR_SIZE)
		return -EPROTO;
	/* A0: pairs with R0 in _shmring_format(): the header is complete once READY is seen. */
	uint32_t state =
	    atomic_load_explicit(&((struct _shmring_hdr *)h)->state, memory_order_acquire);
	/* Zero means "being written"; anything else is not ours. Judge the one value read: a
	 * second load could see the creator's READY land in between and call it foreign. */
	if (state != _SHMRING_READY)
		return state == 0 ? -EAGAIN : -EPROTO;

	/* Copy once, then judge the copy: a peer rewriting the header cannot change our mind
	 * between two reads. */
	struct _shmring_hdr snap;
	memcpy(&snap, h, offsetof(struct _shmring_hdr, state));
	if (snap.magic != _SHMRING_MAGIC || snap.abi != SHMRING_ABI_VERSION)
		return -EPROTO;
	if (snap.check != _shmring_hdr_check(&snap))
		return -EPROTO;
	if (snap.kind != expect->kind)
		return -EPROTO;
	if (expect->elem_size && snap.elem_size != expect->elem_size)
		return -EPROTO;
	if (expect->capacity && snap.capacity != expect->capacity)
		return -EPROTO;
	/* _SHMRING_HF_SEM, and a runs ring's producers (checked by the layout below) */
	if (snap.flags & ~0xff01u)
		return -EPROTO;
	if (expect->producers && _SHMRING_HF_PRODUCERS(snap.flags) != expect->producers)
		return -EPROTO;

	/* Recompute the layout from the geometry and demand the header says exactly that. */
	want = (struct shmring_params){.kind = snap.kind,
				       .elem_size = snap.elem_size,
				       .capacity = snap.capacity,
				       .producers = _SHMRING_HF_PRODUCERS(snap.flags),
				       .flags = (snap.flags & 1u) ? SHMRING_F_SEMAPHORE : 0};
	if (_shmring_layout(&want, &l) != 0)
		return -EPROTO;
	if (snap.total_size != l.total_size || memcmp(snap.part, l.part, sizeof(l.part)) != 0 ||
	    l.hflags != snap.flags)
		return -EPROTO;
	if (l.total_size > len)
		return -EPROTO;
	l.hflags = snap.flags;
	*out = l;
	return 0;
}

int _shmring_producers_bad(const struct shmring_params *expect, int any_ok)
{
	if (expect->kind != SHMRING_MPMC_RUNS)
		return expect->producers != 0;
	return expect->producers > SHMRING_RUNS_PRODUCERS_MAX || (!any_ok && !expect->producers);
}

int _shmring_layout_matches(const struct _shmring_layout *g, const struct shmring_params *expect)
{
	return g->kind == expect->kind &&
	       (!expect->elem_size || g->elem_size == expect->elem_size) &&
	       (!expect->capacity || g->capacity == expect->capacity) &&
	       (!expect->producers || g->producers == expect->producers);
}

/* SPDX-License-Identifier: MIT */
/*
 * SPSC ring of fixed-size elements: the hot paths, inline.
 *
 * One producer and one consumer, each in any process or thread; each side uses its own handle,
 * or both share one: from one thread, or from a producer thread and a consumer thread for the
 * non-blocking calls (the blocking calls need a handle per thread: they share its sleep state).
 * Positions are 64-bit and free running; slot = position & mask. Each side keeps its own
 * position in its handle (it is the only writer) and a cached copy of the other side's, and
 * reads the shared copy only when the cache says the ring is full (producer) or empty
 * (consumer).
 *
 * Return convention of every data call: the number of elements moved (or 0 on success for the
 * single-element calls), -EAGAIN if nothing could move (full or empty), -EPROTO if the peer
 * wrote an impossible position (the handle is then broken and every later call says -EPROTO),
 * -EINVAL for a request that can never succeed (a handle of another kind included). None of
 * them blocks. None makes a system call while no one sleeps on the ring; a publish that finds a
 * sleeper registered wakes it (sync/sync.h: one futex wake per sleep, not one per publish).
 *
 * Memory ordering: the producer fills slots, then publishes its position with a release store
 * (R1); the consumer reads that position with an acquire load (A2) before reading the slots.
 * The consumer finishes reading slots, then publishes its position with a release store (R2);
 * the producer reads it with an acquire load (A1) before overwriting those slots.
 */
/* Any of the headers may be included first: shmring.h declares the common API and then
 * includes the others in dependency order, this one among them. */
#include <shmring/shmring.h>

#ifndef SHMRING_SPSC_H
#define SHMRING_SPSC_H

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include <shmring/handle.h>
#include <shmring/sync.h>

/* Internal: marks the handle broken, and empties both caches so every fast path falls through
 * to a slow path that reports -EPROTO. Costs nothing on the fast path. */
static inline int _shmring_spsc_break(struct shmring *r)
{
	r->broken = 1;
	r->p.head_cache = r->p.tail - r->capacity;
	r->c.tail_cache = r->c.head;
	return -EPROTO;
}

/* Internal, producer: free slots, reading the consumer's position only if the cache shows
 * fewer than want. */
static inline int64_t _shmring_spsc_free(struct shmring *r, uint64_t want)
{
	uint64_t t = r->p.tail;
	uint64_t old = r->p.head_cache;
	uint64_t f = r->capacity - (t - old);

	if (__builtin_expect(f >= want, 1))
		return (int64_t)f;
	if (r->broken)
		return -EPROTO;
	/* A1: pairs with R2 in shmring_spsc_release()/pop: the consumer is done with the slots
	 * below h before we overwrite them. */
	uint64_t h = atomic_load_explicit(r->cons_pos, memory_order_acquire);
	/* The consumer can neither pass us nor move backwards. Unsigned: a hostile h wraps to a
	 * huge distance and fails the same tests. */
	if (t - h > r->capacity || h - old > t - old)
		return _shmring_spsc_break(r);
	r->p.head_cache = h;
	return (int64_t)(r->capacity - (t - h));
}

/* Internal, consumer: elements available, reading the producer's position only if the cache
 * shows fewer than want. */
static inline int64_t _shmring_spsc_avail(struct shmring *r, uint64_t want)
{
	uint64_t h = r->c.head;
	uint64_t old = r->c.tail_cache;
	uint64_t a = old - h;

	if (__builtin_expect(a >= want, 1))
		return (int64_t)a;
	if (r->broken)
		return -EPROTO;
	/* A2: pairs with R1 in shmring_spsc_commit()/push: slot contents below t are visible. */
	uint64_t t = atomic_load_explicit(r->prod_pos, memory_order_acquire);
	if (t - h > r->capacity || t - h < old - h)
		return _shmring_spsc_break(r);
	r->c.tail_cache = t;
	return (int64_t)(t - h);
}

/* Internal: copy of n bytes where n is usually one element; small powers of two become moves.
 * GCC cannot see that the size matches the caller's object in the branches not taken, and
 * would warn about them at every call site. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Warray-bounds"
#pragma GCC diagnostic ignored "-Wstringop-overflow"
#pragma GCC diagnostic ignored "-Wstringop-overread"
#endif
static inline void _shmring_copy(void *dst, const void *src, size_t n)
{
	switch (n) {
	case 4:
		memcpy(dst, src, 4);
		break;
	case 8:
		memcpy(dst, src, 8);
		break;
	case 16:
		memcpy(dst, src, 16);
		break;
	case 32:
		memcpy(dst, src, 32);
		break;
	case 64:
		memcpy(dst, src, 64);
		break;
	default:
		memcpy(dst, src, n);
	}
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

/* Internal: copy n elements into the ring at position pos, in two pieces if they wrap. */
static inline void _shmring_spsc_put(struct shmring *r, uint64_t pos, const void *src, uint64_t n)
{
	size_t es = r->elem_size;
	uint64_t slot = pos & r->mask;
	uint64_t n1 = r->capacity - slot;

	if (n1 >= n) {
		_shmring_copy(r->data + slot * es, src, n * es);
		return;
	}
	memcpy(r->data + slot * es, src, n1 * es);
	memcpy(r->data, (const unsigned char *)src + n1 * es, (n - n1) * es);
}

/* Internal: copy n elements out of the ring from position pos. */
static inline void _shmring_spsc_get(struct shmring *r, uint64_t pos, void *dst, uint64_t n)
{
	size_t es = r->elem_size;
	uint64_t slot = pos & r->mask;
	uint64_t n1 = r->capacity - slot;

	if (n1 >= n) {
		_shmring_copy(dst, r->data + slot * es, n * es);
		return;
	}
	memcpy(dst, r->data + slot * es, n1 * es);
	memcpy((unsigned char *)dst + n1 * es, r->data, (n - n1) * es);
}

/* Internal, producer: make positions below t visible to the consumer. */
static inline void _shmring_spsc_publish_tail(struct shmring *r, uint64_t t)
{
	r->p.tail = t;
	r->p.reserved = 0;
	/* R1: pairs with A2 in _shmring_spsc_avail(): slot writes happen before the position. */
	atomic_store_explicit(r->prod_pos, t, memory_order_release);
	/* F1: compiler barrier only; pairs with M1 (membarrier) in _shmring_wq_register(), or in
	 * hot mode with F3 there through F2 in _shmring_wake() (sync/sync.h): the waiters load
	 * must not be hoisted above R1. Zero system calls while no one sleeps. */
	atomic_signal_fence(memory_order_seq_cst);
	if (__builtin_expect(atomic_load_explicit(r->wake_data, memory_order_relaxed) != 0, 0))
		_shmring_wake(r, r->wake_data);
}

/* Internal, consumer: hand slots below h back to the producer. */
static inline void _shmring_spsc_publish_head(struct shmring *r, uint64_t h)
{
	r->c.head = h;
	r->c.peeked = 0;
	/* R2: pairs with A1 in _shmring_spsc_free(): slot reads happen before the position. */
	atomic_store_explicit(r->cons_pos, h, memory_order_release);
	/* F1: as in _shmring_spsc_publish_tail(), for producers sleeping for space. */
	atomic_signal_fence(memory_order_seq_cst);
	if (__builtin_expect(atomic_load_explicit(r->wake_space, memory_order_relaxed) != 0, 0))
		_shmring_wake(r, r->wake_space);
}

/* Internal: the common body of burst (all_or_none = 0) and bulk (1) on the producer side. */
static inline int _shmring_spsc_push_n(struct shmring *r, const void *elems, unsigned n,
				       int all_or_none)
{
	_SHMRING_KIND_CHECK(r, SHMRING_SPSC);
	/* A broken handle answers -EPROTO to everything, even to requests that move nothing. */
	if (n == 0)
		return r->broken ? -EPROTO : 0;
	if (all_or_none && n > r->capacity)
		return r->broken ? -EPROTO : -EINVAL;
	int64_t f = _shmring_spsc_free(r, n);
	if (f < 0)
		return (int)f;
	if (f == 0 || (all_or_none && (uint64_t)f < n))
		return -EAGAIN;
	if ((uint64_t)f < n)
		n = (unsigned)f;
	_shmring_spsc_put(r, r->p.tail, elems, n);
	_shmring_spsc_publish_tail(r, r->p.tail + n);
	return (int)n;
}

static inline int _shmring_spsc_pop_n(struct shmring *r, void *elems, unsigned n, int all_or_none)
{
	_SHMRING_KIND_CHECK(r, SHMRING_SPSC);
	/* A broken handle answers -EPROTO to everything, even to requests that move nothing. */
	if (n == 0)
		return r->broken ? -EPROTO : 0;
	if (all_or_none && n > r->capacity)
		return r->broken ? -EPROTO : -EINVAL;
	int64_t a = _shmring_spsc_avail(r, n);
	if (a < 0)
		return (int)a;
	if (a == 0 || (all_or_none && (uint64_t)a < n))
		return -EAGAIN;
	if ((uint64_t)a < n)
		n = (unsigned)a;
	_shmring_spsc_get(r, r->c.head, elems, n);
	_shmring_spsc_publish_head(r, r->c.head + n);
	return (int)n;
}

/*
 * Producer. Copies one element (elem_size bytes) in. Returns 0, -EAGAIN (full), -EPROTO.
 * Non-blocking. Cancels an outstanding reservation.
 */
static inline int shmring_spsc_push(struct shmring *r, const void *elem)
{
	_SHMRING_KIND_CHECK(r, SHMRING_SPSC);
	int64_t f = _shmring_spsc_free(r, 1);

	if (__builtin_expect(f <= 0, 0))
		return f < 0 ? (int)f : -EAGAIN;
	_shmring_spsc_put(r, r->p.tail, elem, 1);
	_shmring_spsc_publish_tail(r, r->p.tail + 1);
	return 0;
}

/* Consumer. Copies one element out. Returns 0, -EAGAIN (empty), -EPROTO. Non-blocking. */
static inline int shmring_spsc_pop(struct shmring *r, void *elem)
{
	_SHMRING_KIND_CHECK(r, SHMRING_SPSC);
	int64_t a = _shmring_spsc_avail(r, 1);

	if (__builtin_expect(a <= 0, 0))
		return a < 0 ? (int)a : -EAGAIN;
	_shmring_spsc_get(r, r->c.head, elem, 1);
	_shmring_spsc_publish_head(r, r->c.head + 1);
	return 0;
}

/* Producer. Pushes up to n elements (n * elem_size bytes at elems). Returns how many (1..n),
 * 0 when n is 0, -EAGAIN (full), -EPROTO. Non-blocking. */
static inline int shmring_spsc_push_burst(struct shmring *r, const void *elems, unsigned n)
{
	return _shmring_spsc_push_n(r, elems, n, 0);
}

/* Producer. Pushes all n elements or none. Returns n, -EAGAIN (not enough room), -EINVAL
 * (n > capacity), -EPROTO. Non-blocking. */
static inline int shmring_spsc_push_bulk(struct shmring *r, const void *elems, unsigned n)
{
	return _shmring_spsc_push_n(r, elems, n, 1);
}

/* Consumer. Pops up to n elements. Returns how many (1..n), 0 when n is 0, -EAGAIN (empty),
 * -EPROTO. Non-blocking. */
static inline int shmring_spsc_pop_burst(struct shmring *r, void *elems, unsigned n)
{
	return _shmring_spsc_pop_n(r, elems, n, 0);
}

/* Consumer. Pops all n elements or none. Returns n, -EAGAIN, -EINVAL (n > capacity), -EPROTO. */
static inline int shmring_spsc_pop_bulk(struct shmring *r, void *elems, unsigned n)
{
	return _shmring_spsc_pop_n(r, elems, n, 1);
}

/*
 * Producer, zero-copy. Reserves up to n free slots that are contiguous in memory and sets
 * *slots to the first. Returns how many (1..n; fewer than n when the span would wrap past the
 * end of the ring or the ring is nearly full), 0 when n is 0, -EAGAIN (full), -EPROTO.
 * Write the elements, then call shmring_spsc_commit(). A second reserve replaces the first.
 * Non-blocking.
 */
static inline int shmring_spsc_reserve(struct shmring *r, unsigned n, void **slots)
{
	_SHMRING_KIND_CHECK(r, SHMRING_SPSC);
	if (n == 0)
		return r->broken ? -EPROTO : 0;
	int64_t f = _shmring_spsc_free(r, n);
	if (f <= 0)
		return f < 0 ? (int)f : -EAGAIN;
	uint64_t slot = r->p.tail & r->mask;
	uint64_t k = r->capacity - slot; /* contiguous up to the end of the ring */

	if (k > (uint64_t)f)
		k = (uint64_t)f;
	if (k > n)
		k = n;
	*slots = r->data + slot * r->elem_size;
	r->p.reserved = k;
	return (int)k;
}

/* Producer. Publishes the first k slots of the last reservation (k may be less than reserved;
 * the rest is dropped). Returns 0, -EINVAL if k exceeds the reservation, -EPROTO (broken).
 * Non-blocking. */
static inline int shmring_spsc_commit(struct shmring *r, unsigned k)
{
	_SHMRING_KIND_CHECK(r, SHMRING_SPSC);
	/* Broken: no more publishing, even of slots reserved before the break. */
	if (__builtin_expect(k > r->p.reserved || r->broken, 0))
		return r->broken ? -EPROTO : -EINVAL;
	_shmring_spsc_publish_tail(r, r->p.tail + k);
	return 0;
}

/*
 * Consumer, zero-copy. Exposes up to n filled slots that are contiguous in memory, setting
 * *slots to the first. Returns how many (1..n), 0 when n is 0, -EAGAIN (empty), -EPROTO.
 * Read them, then call shmring_spsc_release(). Non-blocking.
 */
static inline int shmring_spsc_peek(struct shmring *r, unsigned n, const void **slots)
{
	_SHMRING_KIND_CHECK(r, SHMRING_SPSC);
	if (n == 0)
		return r->broken ? -EPROTO : 0;
	int64_t a = _shmring_spsc_avail(r, n);
	if (a <= 0)
		return a < 0 ? (int)a : -EAGAIN;
	uint64_t slot = r->c.head & r->mask;
	uint64_t k = r->capacity - slot;

	if (k > (uint64_t)a)
		k = (uint64_t)a;
	if (k > n)
		k = n;
	*slots = r->data + slot * r->elem_size;
	r->c.peeked = k;
	return (int)k;
}

/* Consumer. Frees the first k slots of the last peek. Returns 0, or -EINVAL if k exceeds what
 * was peeked, -EPROTO (broken). Non-blocking. */
static inline int shmring_spsc_release(struct shmring *r, unsigned k)
{
	_SHMRING_KIND_CHECK(r, SHMRING_SPSC);
	if (__builtin_expect(k > r->c.peeked || r->broken, 0))
		return r->broken ? -EPROTO : -EINVAL;
	_shmring_spsc_publish_head(r, r->c.head + k);
	return 0;
}

/* Consumer: elements ready to pop, exact for the consumer (reads the producer's position).
 * Returns the count or -EPROTO. */
static inline int64_t shmring_spsc_size(struct shmring *r)
{
	_SHMRING_KIND_CHECK(r, SHMRING_SPSC);
	return _shmring_spsc_avail(r, UINT64_MAX);
}

/* Producer: free slots, exact for the producer (reads the consumer's position).
 * Returns the count or -EPROTO. */
static inline int64_t shmring_spsc_free(struct shmring *r)
{
	_SHMRING_KIND_CHECK(r, SHMRING_SPSC);
	return _shmring_spsc_free(r, UINT64_MAX);
}

#endif

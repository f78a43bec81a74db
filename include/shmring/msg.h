/* SPDX-License-Identifier: MIT */
/*
 * Message rings: variable-length byte records, SPSC (SHMRING_MSG) and MPSC (SHMRING_MSG_MPSC).
 *
 * Geometry: capacity is in bytes (a power of two, 64 .. SHMRING_MSG_CAPACITY_MAX); elem_size is
 * 0 or 1 at create (recorded as 1). A record is an 8-byte header then the payload, padded to a
 * multiple of 8; records never straddle the end of the ring: a padding record fills the rest
 * of the ring instead. A message of SHMRING_MSG_ALIGN_MIN bytes or more has its payload on a
 * 64-byte boundary, behind a small discarded record where needed. The largest message is
 * shmring_msg_max() = capacity / 4 - 8 bytes.
 *
 * Header: one 64-bit word. Low 32 bits: length (bits 0..27) and flags (VALID 28, PAD 29,
 * DISCARD 30, BUSY 31). High 32 bits: the user's type tag; while BUSY, the claimant's pid.
 * A header word of 0 means "not written yet" (MPSC). Every header is checked before use: VALID
 * set, one known kind, the record inside the ring and below the producer position, a padding
 * record exactly up to the end, a message no larger than shmring_msg_max(). Anything else is
 * -EPROTO and the handle refuses every later call.
 *
 * SPSC: the producer writes header and payload, then publishes its position (R1/A2), as the
 * fixed-size ring does. Nothing is zeroed.
 * MPSC: producers claim space with one compare-and-swap on the shared producer position, write
 * a BUSY header carrying their pid, fill the payload and commit by swapping the header to its
 * final value (R3/A3). The consumer stops at a BUSY or unwritten header. It zeroes every byte
 * it frees, so that free space always reads as "not written". Before each claim a producer
 * names the range in its claim record (R6), so that even a claim whose header was never
 * written has a known owner. A producer that dies holding a claim is turned into a discarded
 * record by shmring_msg_recover().
 *
 * Return convention: 0 or a count on success; -EAGAIN nothing moved (full, empty, or the next
 * record still being written); -EMSGSIZE too large for this ring (or for the caller's buffer);
 * -EINVAL misuse (wrong kind, no reservation); -EPROTO the shared memory holds an impossible
 * value (the handle is then broken). None of these calls blocks, and none makes a system
 * call unless a peer sleeps in a blocking variant (shmring/sync.h): every publication (SPSC
 * position, MPSC commit or abort, consumer position) then reads one shared word, relaxed, and
 * wakes the sleepers only when that word is non-zero.
 */
/* Any of the headers may be included first: shmring.h declares the common API and then
 * includes the others in dependency order, this one among them. */
#include <shmring/shmring.h>

#ifndef SHMRING_MSG_H
#define SHMRING_MSG_H

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include <shmring/handle.h>
#include <shmring/sync.h>

/* Largest capacity of a message ring (bytes): every length fits the header's 28 bits. */
#define SHMRING_MSG_CAPACITY_MAX (1ull << 28)
#define SHMRING_MSG_CAPACITY_MIN 64u

#define _SHMRING_MSG_VALID   (1u << 28)
#define _SHMRING_MSG_PAD     (1u << 29)
#define _SHMRING_MSG_DISCARD (1u << 30)
#define _SHMRING_MSG_BUSY    (1u << 31)
#define _SHMRING_MSG_LEN     (_SHMRING_MSG_VALID - 1)

/* Producer claim records of an MPSC ring: at most this many producing handles; beyond that,
 * reserve and send say -EUSERS. A dead producer's record is taken again once the consumer has
 * passed its last claim (one of another pid namespace only if it held its record's lock, and
 * the taker has the file to see that). */
#define SHMRING_MSG_PRODUCERS 64

/*
 * Internal: one producer's claim record in the segment (MPSC). Before each compare-and-swap that
 * may claim [t, end) (padding to the end of the ring and a filler included), the producer stores
 * end and claim = t | 1, and clears claim when it gives up; so a claim whose header was never
 * written (the producer died right after the CAS, or between its padding or filler and its
 * message's header) still names its claimant, and recovery can ask whether that one is dead while
 * other producers live.
 */
struct _shmring_msg_rec {
	_Atomic uint64_t owner; /* pid of the handle's process | _SHMRING_MSG_LOCKED; 0 free */
	_Atomic uint64_t claim; /* t | 1 while claiming from t (or holding what it claimed); 0 */
	_Atomic uint64_t end;	/* end of that claim */
	_Atomic uint64_t ns;	/* owner's pid namespace (inode of /proc/self/ns/pid); 0 unknown */
	uint64_t pad_[4];
};

/* Owner word flag: the owner holds the record's OFD lock on the ring's file (ring/msg.c). In the
 * same word as the pid, so that no owner change can leave it stale (found in review: in a word
 * of its own, a taker's late clear hid a lock holder, and an older library's owner inherited a
 * dead owner's flag). Bit 31: Linux pids stay below 2^22. */
#define _SHMRING_MSG_LOCKED (1ull << 31)

/* One message of a burst. send: base, len, type in. recv: base and cap in; len, type out. */
struct shmring_msgvec {
	void *base;
	uint32_t len;
	uint32_t type;
	uint32_t cap;
	uint32_t reserved_;
};

/* Largest payload a message ring accepts: capacity / 4 - 8 bytes. Any role. */
static inline uint32_t shmring_msg_max(const struct shmring *r)
{
	return (uint32_t)(r->capacity / 4 - 8);
}

/* Internal: bytes a record of len payload bytes occupies. */
static inline uint64_t _shmring_msg_stride(uint64_t len)
{
	return 8 + ((len + 7) & ~(uint64_t)7);
}

/*
 * A message of at least this many bytes has its payload on a 64-byte boundary (a cache line):
 * where its header would not leave it there, the producer puts a discarded record of 8 to 56
 * bytes (a "filler") before it, which the consumer skips like any other. Why: copying into a
 * destination 8 bytes past a 64-byte boundary ran at 16 GB/s against 37 GB/s aligned for
 * 64 KiB, and 25 against 36 GB/s for 8 KiB, on the AMD EPYC where this was measured (glibc's
 * memcpy uses the CPU's string copy from a few KiB up, and that is the one that minds). Below
 * 1 KiB the copy does not care and a filler would only cost space. Old consumers skip fillers
 * too: the ring's format is unchanged.
 */
#define SHMRING_MSG_ALIGN_MIN 1024u

/* Internal: filler bytes before a record of len payload bytes whose header would go at t. */
static inline uint64_t _shmring_msg_gap(uint64_t t, uint64_t len)
{
	return len < SHMRING_MSG_ALIGN_MIN ? 0 : (56 - (t & 63)) & 63;
}

/*
 * Internal: where a message of len goes at producer position t. Returns the bytes it needs
 * there: *pad bytes of padding record when it does not fit before the end of the ring (else 0),
 * then *gap bytes of filler (else 0), then its record.
 */
static inline uint64_t _shmring_msg_need(const struct shmring *r, uint64_t t, uint64_t len,
					 uint64_t *pad, uint64_t *gap)
{
	uint64_t to_end = r->capacity - (t & r->mask), stride = _shmring_msg_stride(len);

	*gap = _shmring_msg_gap(t, len);
	*pad = *gap + stride <= to_end ? 0 : to_end;
	if (*pad)
		*gap = _shmring_msg_gap(0, len);
	return *pad + *gap + stride;
}

static inline _Atomic uint64_t *_shmring_msg_hdr(struct shmring *r, uint64_t pos)
{
	return (_Atomic uint64_t *)(void *)(r->data + (pos & r->mask));
}

/* Internal, MPSC: the consumer block's second word, "freed up to" (_shmring_msg_advance()). */
static inline _Atomic uint64_t *_shmring_msg_freed(struct shmring *r)
{
	return r->cons_pos + 1;
}

static inline int _shmring_msg_break(struct shmring *r)
{
	r->broken = 1;
	return -EPROTO;
}

/* Internal: this process's pid, cached per thread and reset in a forked child (ring/msg.c). */
uint32_t _shmring_msg_pid(void);

/* Internal, producer: after a store that lets the consumer move on (R1, R3), wake consumers
 * sleeping for data (sync/sync.h). */
static inline void _shmring_msg_wake_data(struct shmring *r)
{
	/* F1 (the sleep hand-shake's, as in shmring/spsc.h; not the reserve's F1 below):
	 * compiler barrier only; pairs with M1 (membarrier) in _shmring_wq_register(), or in hot
	 * mode with F3 there through F2 in _shmring_wake() (sync/sync.h): the waiters load must
	 * not be hoisted above the publishing store. Zero system calls while no one sleeps. */
	atomic_signal_fence(memory_order_seq_cst);
	if (__builtin_expect(atomic_load_explicit(r->wake_data, memory_order_relaxed) != 0, 0))
		_shmring_wake(r, r->wake_data);
}

/* Internal, producer: writes the padding and filler records that _shmring_msg_need() asked
 * for at t, and returns where the message's header goes. */
static inline uint64_t _shmring_msg_lay(struct shmring *r, uint64_t t, uint64_t pad, uint64_t gap,
					memory_order mo)
{
	if (pad) {
		atomic_store_explicit(_shmring_msg_hdr(r, t),
				      _SHMRING_MSG_VALID | _SHMRING_MSG_PAD | (uint32_t)(pad - 8),
				      mo);
		t += pad;
	}
	if (gap) {
		atomic_store_explicit(
		    _shmring_msg_hdr(r, t),
		    _SHMRING_MSG_VALID | _SHMRING_MSG_DISCARD | (uint32_t)(gap - 8), mo);
		t += gap;
	}
	return t;
}

/* ---- producer ----------------------------------------------------------------------------- */

/* Internal, SPSC: room for need bytes at tail t, reading the consumer's position only when the
 * cache says there is not. Returns 0, -EAGAIN, -EPROTO. */
static inline int _shmring_msg_spsc_room(struct shmring *r, uint64_t t, uint64_t need)
{
	uint64_t cap = r->capacity;

	if (__builtin_expect(cap - (t - r->p.head_cache) >= need, 1))
		return 0;
	if (r->broken)
		return -EPROTO;
	uint64_t old = r->p.head_cache;
	/* A1: pairs with R2 in _shmring_msg_publish_head(): the consumer is done with the bytes
	 * below h before we overwrite them. */
	uint64_t h = atomic_load_explicit(r->cons_pos, memory_order_acquire);
	if (t - h > cap || h - old > t - old || (h & 7))
		return _shmring_msg_break(r);
	r->p.head_cache = h;
	return cap - (t - h) >= need ? 0 : -EAGAIN;
}

static inline int _shmring_msg_spsc_reserve(struct shmring *r, uint32_t len, void **ptr)
{
	uint64_t t = r->p.tail, pad, gap;
	int rc = _shmring_msg_spsc_room(r, t, _shmring_msg_need(r, t, len, &pad, &gap));

	if (rc)
		return rc;
	/* Unpublished until R1; an abort leaves them behind harmlessly. */
	t = _shmring_msg_lay(r, t, pad, gap, memory_order_relaxed);
	r->msg.p.res_pos = t;
	r->msg.p.res_len = len;
	r->msg.p.res_active = 1;
	*ptr = r->data + (t & r->mask) + 8;
	return 0;
}

/* Internal, MPSC producer (ring/msg.c): takes a claim record for this process (-EUSERS when
 * SHMRING_MSG_PRODUCERS processes' handles hold them all). */
int _shmring_msg_rec_take(struct shmring *r);

/* Internal, MPSC producer: a reserve that gives up names no position (a live producer whose
 * failed attempt named the position a dead one then claimed must not shield that claim). */
static inline void _shmring_msg_unclaim(struct shmring *r)
{
	atomic_store_explicit(&r->msg.p.rec->claim, 0, memory_order_relaxed);
}

static inline int _shmring_msg_mpsc_reserve(struct shmring *r, uint32_t len, void **ptr)
{
	uint64_t cap = r->capacity;
	uint64_t t = atomic_load_explicit(r->prod_pos, memory_order_relaxed);
	uint64_t need, pad, gap;
	unsigned tries;

	if (r->broken)
		return -EPROTO;
	/* Every claim is made through a record of our own (a forked child takes its own). */
	if (__builtin_expect(!r->msg.p.rec || r->msg.p.rec_pid != _shmring_msg_pid(), 0)) {
		int rc = _shmring_msg_rec_take(r);
		if (rc)
			return rc;
	}
	for (tries = 0; tries < 1024; tries++) {
		if (__builtin_expect(t & 7, 0)) {
			/* Only a peer that wrote garbage: our headers would be misaligned atomics
			 * (a split lock, SIGBUS where the kernel makes those fatal). */
			_shmring_msg_unclaim(r);
			return _shmring_msg_break(r);
		}
		need = _shmring_msg_need(r, t, len, &pad, &gap);
		uint64_t used = t - r->p.head_cache;
		if (used > cap || cap - used < need) {
			/* t first, then h: an honest ring always has prod <= cons + cap, and cons
			 * only grows, so h >= t - cap. h may have passed a stale t (we were
			 * preempted between the loads): read both again. */
			t = atomic_load_explicit(r->prod_pos, memory_order_acquire);
			/* A1: pairs with R2 in _shmring_msg_publish_head(): the consumer has read
			 * and zeroed the bytes below h. */
			uint64_t h = atomic_load_explicit(r->cons_pos, memory_order_acquire);
			if ((int64_t)(h - t) > 0)
				continue; /* counts as a try: a hostile h cannot hold us */
			if (t - h > cap || ((h | t) & 7)) {
				_shmring_msg_unclaim(r);
				return _shmring_msg_break(r);
			}
			r->p.head_cache = h;
			need = _shmring_msg_need(r, t, len, &pad, &gap);
			if (cap - (t - h) < need) {
				_shmring_msg_unclaim(r);
				return -EAGAIN;
			}
		}
		/* Name ourselves as the claimant of [t, t + need) first. R6: the release CAS
		 * below orders these stores before the new position; pairs with A6 in
		 * shmring_msg_recover(), which reads the position before the records. */
		atomic_store_explicit(&r->msg.p.rec->end, t + need, memory_order_relaxed);
		atomic_store_explicit(&r->msg.p.rec->claim, t | 1, memory_order_relaxed);
		/* The claim itself publishes nothing else: the headers below do (R3). */
		if (atomic_compare_exchange_weak_explicit(
			r->prod_pos, &t, t + need, memory_order_release, memory_order_relaxed))
			break;
	}
	if (tries == 1024) {
		_shmring_msg_unclaim(r);
		return -EAGAIN;
	}
	/* R3: pairs with A3 in shmring_msg_peek(). A producer that dies after these leaves a
	 * zero header at the claim's record, inside its named range: recovered as before. */
	t = _shmring_msg_lay(r, t, pad, gap, memory_order_release);
	uint64_t busy =
	    _SHMRING_MSG_VALID | _SHMRING_MSG_BUSY | len | ((uint64_t)_shmring_msg_pid() << 32);
	atomic_store_explicit(_shmring_msg_hdr(r, t), busy, memory_order_relaxed);
	/* F1: pairs with the zero scan in shmring_msg_recover(): the busy header is visible
	 * before any payload byte, so a claim whose header is still 0 holds only zeroes. */
	atomic_thread_fence(memory_order_release);
	r->msg.p.res_pos = t;
	r->msg.p.res_len = len;
	r->msg.p.res_word = busy;
	r->msg.p.res_active = 1;
	*ptr = r->data + (t & r->mask) + 8;
	return 0;
}

/*
 * Producer, zero-copy. Reserves room for a message of len bytes and sets *ptr to where its
 * payload goes (contiguous; 8-byte aligned, and 64-byte aligned when len >=
 * SHMRING_MSG_ALIGN_MIN). Fill it, then shmring_msg_commit() or
 * shmring_msg_abort(). One reservation per handle at a time; a second reserve replaces an
 * SPSC reservation (and returns -EBUSY on MPSC, where the first is already claimed).
 * Returns 0, -EAGAIN (no room; on MPSC also after 1024 claims lost in a row to other producers,
 * a bound that keeps the call non-blocking: retry), -EMSGSIZE (len > shmring_msg_max()),
 * -EINVAL (not a message ring), -EUSERS (MPSC: SHMRING_MSG_PRODUCERS other handles already
 * produce into this ring; see shmring_msg_recover()), -EPROTO. Non-blocking.
 */
static inline int shmring_msg_reserve(struct shmring *r, uint32_t len, void **ptr)
{
	if (__builtin_expect(r->broken, 0)) /* found in review: the room cache let calls through */
		return -EPROTO;
	if (__builtin_expect(len > shmring_msg_max(r), 0))
		return r->kind == SHMRING_MSG || r->kind == SHMRING_MSG_MPSC ? -EMSGSIZE : -EINVAL;
	if (r->kind == SHMRING_MSG)
		return _shmring_msg_spsc_reserve(r, len, ptr);
	if (r->kind != SHMRING_MSG_MPSC)
		return -EINVAL;
	if (r->msg.p.res_active)
		return -EBUSY;
	return _shmring_msg_mpsc_reserve(r, len, ptr);
}

/* Internal, SPSC: writes the header of the reservation and advances the local tail. */
static inline uint64_t _shmring_msg_spsc_fill(struct shmring *r, uint32_t len, uint32_t type)
{
	uint64_t pos = r->msg.p.res_pos;

	atomic_store_explicit(_shmring_msg_hdr(r, pos),
			      _SHMRING_MSG_VALID | len | ((uint64_t)type << 32),
			      memory_order_relaxed);
	r->msg.p.res_active = 0;
	r->p.tail = pos + _shmring_msg_stride(len);
	return r->p.tail;
}

static inline void _shmring_msg_publish_tail(struct shmring *r)
{
	/* R1: pairs with A2 in shmring_msg_peek(): headers and payloads before the position. */
	atomic_store_explicit(r->prod_pos, r->p.tail, memory_order_release);
	_shmring_msg_wake_data(r); /* F1 there, after R1 */
}

/*
 * Producer. Publishes the first len bytes (len <= the reserved length; the rest is dropped)
 * of the reservation as a message with this type tag. Returns 0, -EINVAL (no reservation,
 * len too large), -EOWNERDEAD (MPSC: shmring_msg_recover() declared this producer dead and
 * discarded the claim; the message is lost). Non-blocking.
 */
static inline int shmring_msg_commit(struct shmring *r, uint32_t len, uint32_t type)
{
	if (!r->msg.p.res_active || len > r->msg.p.res_len)
		return -EINVAL;
	if (r->kind == SHMRING_MSG) {
		_shmring_msg_spsc_fill(r, len, type);
		_shmring_msg_publish_tail(r);
		return 0;
	}
	uint64_t pos = r->msg.p.res_pos;
	uint64_t s0 = _shmring_msg_stride(r->msg.p.res_len), s1 = _shmring_msg_stride(len);
	uint64_t want = r->msg.p.res_word;

	r->msg.p.res_active = 0;
	/* The rest of the claim becomes a discarded record. Its header goes where the user's
	 * payload was, so it is written while the claim still reads BUSY and the consumer waits
	 * at pos: once the header below lands, the consumer may read this word at once (found in
	 * review: written after it, the user's bytes passed for a header). If recovery discards
	 * the claim meanwhile, the whole of it is skipped and this word is never read. */
	if (s1 < s0)
		atomic_store_explicit(_shmring_msg_hdr(r, pos + s1),
				      _SHMRING_MSG_VALID | _SHMRING_MSG_DISCARD |
					  (uint32_t)(s0 - s1 - 8),
				      memory_order_relaxed);
	/* R3: pairs with A3 in shmring_msg_peek(): the payload, and the discard header above,
	 * before the header. */
	if (!atomic_compare_exchange_strong_explicit(
		_shmring_msg_hdr(r, pos), &want, _SHMRING_MSG_VALID | len | ((uint64_t)type << 32),
		memory_order_release, memory_order_relaxed))
		return -EOWNERDEAD;
	_shmring_msg_wake_data(r); /* F1 there, after R3 */
	return 0;
}

/*
 * Producer. Drops the reservation. SPSC: nothing was published. MPSC: the claim becomes a
 * discarded record that the consumer skips. Returns 0, -EINVAL (no reservation),
 * -EOWNERDEAD (already discarded by shmring_msg_recover()). Non-blocking.
 */
static inline int shmring_msg_abort(struct shmring *r)
{
	if (!r->msg.p.res_active)
		return -EINVAL;
	r->msg.p.res_active = 0;
	if (r->kind == SHMRING_MSG)
		return 0;
	uint64_t want = r->msg.p.res_word;
	/* R3: pairs with A3 in shmring_msg_peek(). */
	if (!atomic_compare_exchange_strong_explicit(_shmring_msg_hdr(r, r->msg.p.res_pos), &want,
						     _SHMRING_MSG_VALID | _SHMRING_MSG_DISCARD |
							 r->msg.p.res_len,
						     memory_order_release, memory_order_relaxed))
		return -EOWNERDEAD;
	/* The consumer may be asleep at our busy header, with committed records behind it. */
	_shmring_msg_wake_data(r); /* F1 there, after R3 */
	return 0;
}

/*
 * Producer. Copies a message of len bytes with this type tag into the ring. Returns 0,
 * -EAGAIN (no room), -EMSGSIZE, -EINVAL, -EUSERS (as reserve), -EBUSY (MPSC: a reservation of
 * this handle is open), -EPROTO, -EOWNERDEAD (as commit: the message is lost). Non-blocking.
 */
static inline int shmring_msg_send(struct shmring *r, const void *buf, uint32_t len, uint32_t type)
{
	void *p;
	int rc = shmring_msg_reserve(r, len, &p);

	if (rc)
		return rc;
	if (len) /* a zero-length message may come with a null buffer */
		memcpy(p, buf, len);
	return shmring_msg_commit(r, len, type);
}

/*
 * Producer. Sends up to n messages (in order; SPSC publishes them with one store). Returns how
 * many were sent (1..n), 0 when n is 0, or the error of the first one (-EAGAIN, -EMSGSIZE,
 * -EINVAL, -EUSERS, -EBUSY, -EPROTO, -EOWNERDEAD). Non-blocking.
 */
static inline int shmring_msg_send_burst(struct shmring *r, const struct shmring_msgvec *v,
					 unsigned n)
{
	unsigned i;
	int rc = 0;

	for (i = 0; i < n; i++) {
		void *p;

		if (r->kind == SHMRING_MSG) {
			rc = shmring_msg_reserve(r, v[i].len, &p);
			if (rc)
				break;
			if (v[i].len)
				memcpy(p, v[i].base, v[i].len);
			_shmring_msg_spsc_fill(r, v[i].len, v[i].type);
		} else {
			rc = shmring_msg_send(r, v[i].base, v[i].len, v[i].type);
			if (rc)
				break;
		}
	}
	if (i > 0 && r->kind == SHMRING_MSG)
		_shmring_msg_publish_tail(r);
	return i > 0 ? (int)i : rc;
}

/* ---- consumer ----------------------------------------------------------------------------- */

static inline void _shmring_msg_publish_head(struct shmring *r)
{
	/* R2: pairs with A1 in the producers' reserve: reads (and MPSC zeroing) of the bytes
	 * below head happen before the producer may reuse them. */
	atomic_store_explicit(r->cons_pos, r->c.head, memory_order_release);
	/* F1 (sleep hand-shake): as in _shmring_msg_wake_data(), for producers sleeping for
	 * space; pairs with M1/F3 in _shmring_wq_register(). */
	atomic_signal_fence(memory_order_seq_cst);
	if (__builtin_expect(atomic_load_explicit(r->wake_space, memory_order_relaxed) != 0, 0))
		_shmring_wake(r, r->wake_space);
}

/* Internal, consumer: frees the record of stride bytes at head (zeroing it on MPSC). The header
 * first becomes a discarded record of the same size, then the payload is zeroed, then the
 * header: a consumer that dies in the middle leaves a well-formed record that its successor
 * skips, never a half-zeroed one that would read as garbage. */
static inline void _shmring_msg_advance(struct shmring *r, uint64_t stride)
{
	if (r->kind == SHMRING_MSG_MPSC) {
		_Atomic uint64_t *hp = _shmring_msg_hdr(r, r->c.head);
		/* Only we write these words now; R2 publishes them with the position. */
		atomic_store_explicit(
		    hp, _SHMRING_MSG_VALID | _SHMRING_MSG_DISCARD | (uint32_t)(stride - 8),
		    memory_order_relaxed);
		/* F2, F3, F4: keep the four steps in this order for a successor reading after our
		 * death (on x86 stores stay in order; elsewhere this is best effort). */
		atomic_signal_fence(memory_order_seq_cst);
		memset((unsigned char *)(uintptr_t)hp + 8, 0, stride - 8);
		atomic_signal_fence(memory_order_seq_cst);
		/* Zeroed up to here: a successor that finds a zero header at the published
		 * position, with this mark ahead of it, knows the span was freed by a consumer
		 * that died before R2 (found in review: without it, the zero header read as a
		 * claim not written yet, for ever). */
		atomic_store_explicit(_shmring_msg_freed(r), r->c.head + stride,
				      memory_order_relaxed);
		atomic_signal_fence(memory_order_seq_cst);
		atomic_store_explicit(hp, 0, memory_order_relaxed);
	}
	r->c.head += stride;
}

/*
 * Internal, MPSC consumer: zeroes positions [h, f) of the data, in two pieces if they wrap. A
 * consumer that died after its mark may have left its last record's discard header (found in
 * review of the mark: skipped without clearing, it stayed in free space and a lap later read
 * as a header inside a live claim). No producer can claim these bytes: they lie below the
 * published position plus the capacity.
 */
static inline void _shmring_msg_zero_span(struct shmring *r, uint64_t h, uint64_t f)
{
	uint64_t at = h & r->mask, n = f - h, first = r->capacity - at < n ? r->capacity - at : n;

	memset(r->data + at, 0, first);
	if (n > first)
		memset(r->data, 0, n - first);
}

/*
 * Internal, MPSC consumer: the header at h (our position) reads 0. Returns the position a
 * predecessor that died between freeing records and publishing its position had zeroed up to,
 * if its mark says so, or h: nothing to skip (a claim not written yet, or a hostile mark).
 */
static inline uint64_t _shmring_msg_freed_to(struct shmring *r, uint64_t h)
{
	uint64_t f = atomic_load_explicit(_shmring_msg_freed(r), memory_order_relaxed);

	/* Only (h, tail] can end the freed records of a dead consumer: producers claim at tail.
	 * Modular, as every position comparison: a mark past 2^64 wraps to a small number (found
	 * in review: f <= h then skipped nothing, and what was committed behind stayed unread). */
	if ((f & 7) || f - h - 1 >= r->c.tail_cache - h)
		return h;
	return f;
}

/*
 * Consumer, zero-copy. Skips padding and discarded records and exposes the next message:
 * *ptr (8-byte aligned; 64-byte aligned from SHMRING_MSG_ALIGN_MIN bytes on when the producer
 * runs this version of the library, which peek does not check: do not fault on it; valid
 * until shmring_msg_release()), *len and *type (either may be
 * NULL). Returns 0, -EAGAIN (empty, or the next record is still being written), -EINVAL,
 * -EPROTO (bad header or position: the handle is broken). Non-blocking.
 */
static inline int shmring_msg_peek(struct shmring *r, const void **ptr, uint32_t *len,
				   uint32_t *type)
{
	int mp = r->kind == SHMRING_MSG_MPSC;
	uint64_t cap = r->capacity, h0 = r->c.head;
	int refreshed = 0, rc;

	if (!mp && r->kind != SHMRING_MSG)
		return -EINVAL;
	/* Only a peek that succeeds leaves a message to release (found in review: one that
	 * failed left the last one's, and a release freed it again). */
	r->msg.c.peek_stride = 0;
	if (r->broken)
		return -EPROTO;
	for (;;) {
		uint64_t h = r->c.head;

		if (h == r->c.tail_cache) {
			uint64_t old = r->c.tail_cache;
			if (refreshed) {
				rc = -EAGAIN;
				break;
			}
			refreshed = 1;
			/* A2: pairs with R1 in the SPSC commit (records below t are complete);
			 * on MPSC, with nothing: t only bounds what may be read. */
			uint64_t t = atomic_load_explicit(r->prod_pos, memory_order_acquire);
			if (t - h > cap || t - h < old - h || (t & 7))
				return _shmring_msg_break(r);
			r->c.tail_cache = t;
			if (t == h) {
				rc = -EAGAIN;
				break;
			}
		}
		/* A3: pairs with R3 in the MPSC reserve/commit/abort: payload before header. On
		 * SPSC A2 already ordered it. */
		uint64_t w = atomic_load_explicit(_shmring_msg_hdr(r, h),
						  mp ? memory_order_acquire : memory_order_relaxed);
		uint32_t lw = (uint32_t)w, fl = lw & ~_SHMRING_MSG_LEN, n = lw & _SHMRING_MSG_LEN;
		uint64_t room = cap - (h & r->mask), stride = _shmring_msg_stride(n);

		if (mp && w == 0) { /* claimed, header not written yet */
			uint64_t f = _shmring_msg_freed_to(r, h);
			if (f != h) { /* freed by a consumer that died before R2 */
				_shmring_msg_zero_span(r, h, f);
				r->c.head = f;
				continue;
			}
			rc = -EAGAIN;
			break;
		}
		if (stride > room || stride > r->c.tail_cache - h)
			return _shmring_msg_break(r);
		if (fl == _SHMRING_MSG_VALID) {
			if (n > shmring_msg_max(r))
				return _shmring_msg_break(r);
			if (h != h0)
				_shmring_msg_publish_head(r);
			*ptr = r->data + (h & r->mask) + 8;
			if (len)
				*len = n;
			if (type)
				*type = (uint32_t)(w >> 32);
			r->msg.c.peek_stride = stride;
			return 0;
		}
		if (fl == (_SHMRING_MSG_VALID | _SHMRING_MSG_PAD)) {
			if (stride != room)
				return _shmring_msg_break(r);
		} else if (fl == (_SHMRING_MSG_VALID | _SHMRING_MSG_BUSY) && mp) {
			rc = -EAGAIN;
			break;
		} else if (fl != (_SHMRING_MSG_VALID | _SHMRING_MSG_DISCARD)) {
			return _shmring_msg_break(r);
		}
		_shmring_msg_advance(r, stride);
	}
	if (r->c.head != h0)
		_shmring_msg_publish_head(r);
	return rc;
}

/* Consumer. Frees the message of the last successful peek. Returns 0, -EINVAL if there is
 * none, -EPROTO (the handle is broken). Non-blocking. */
static inline int shmring_msg_release(struct shmring *r)
{
	if (r->broken)
		return -EPROTO;
	if (!r->msg.c.peek_stride)
		return -EINVAL;
	_shmring_msg_advance(r, r->msg.c.peek_stride);
	r->msg.c.peek_stride = 0;
	_shmring_msg_publish_head(r);
	return 0;
}

/*
 * Consumer. Copies the next message into buf (cap bytes) and frees it. Returns its length
 * (0 is a valid length), sets *type (may be NULL); -EAGAIN (nothing ready), -EMSGSIZE (longer
 * than cap: the message stays; peek it to learn its length), -EINVAL, -EPROTO. Non-blocking.
 */
static inline int shmring_msg_recv(struct shmring *r, void *buf, uint32_t cap, uint32_t *type)
{
	const void *p;
	uint32_t n;
	int rc = shmring_msg_peek(r, &p, &n, type);

	if (rc)
		return rc;
	if (n > cap) {
		r->msg.c.peek_stride = 0;
		return -EMSGSIZE;
	}
	if (n) /* a zero-length message may be received into a null buffer */
		memcpy(buf, p, n);
	shmring_msg_release(r);
	return (int)n;
}

/*
 * Consumer. Receives up to n messages into v[i].base (v[i].cap bytes each), setting v[i].len
 * and v[i].type. Returns how many (1..n), 0 when n is 0, or the error that stopped the first
 * one (-EAGAIN, -EMSGSIZE, -EINVAL, -EPROTO). Non-blocking.
 */
static inline int shmring_msg_recv_burst(struct shmring *r, struct shmring_msgvec *v, unsigned n)
{
	unsigned i;
	int rc = 0;

	for (i = 0; i < n; i++) {
		rc = shmring_msg_recv(r, v[i].base, v[i].cap, &v[i].type);
		if (rc < 0)
			break;
		v[i].len = (uint32_t)rc;
	}
	return i > 0 ? (int)i : rc;
}

/*
 * Consumer, MPSC. Unwedges the ring when the record at the consumer's position belongs to a
 * dead producer. is_dead(pid, arg) is asked about the pid in a BUSY header; the claim then
 * becomes a discarded record (that producer's commit/abort will return -EOWNERDEAD). A header
 * still 0 means a producer died (or is stalled) between its claim and the store of its message's
 * BUSY header (after a padding record or a filler of its claim, if any), a window of a few
 * instructions. Its claim record names it: a handle's first reserve takes one of
 * SHMRING_MSG_PRODUCERS records for its process (a forked child producing through an inherited
 * handle takes its own; beyond that many, reserve says -EUSERS), and every claim writes its
 * range there before its compare-and-swap. is_dead(pid, arg) is asked about every producer
 * whose record names this position, and the claim is discarded only if all of them are dead,
 * and only up to the end of that claim (a next claim, not written yet either, waits for its
 * own round). Zeroes a consumer freed before it died (its mark says how far) are no claim: the
 * next peek skips them, and recovery leaves them. Any other zero header that no record names
 * (which only a corrupt or hostile peer makes) asks is_dead(0, arg), which must then say yes only
 * when no live producer can be inside that window; the zeroed span up to the next written header is
 * discarded. A producer whose record holds its OFD lock (a ring with a file, opened by name or
 * path, /proc on the producer's side; the lock goes when the producer dies, in any pid namespace)
 * is judged by that lock, when the caller's handle has the file, and is_dead is not asked: held, it
 * is alive; free, dead. Of the others, one whose record says it runs in another pid namespace than
 * the caller (both with /proc) is not asked about either: a pid judge cannot tell its pid from one
 * of ours, and it counts as alive, so its claim, if it died, waits for shmring_msg_recover_all().
 * is_dead must never say yes for a producer that is alive: its late stores (its payload, a short
 * commit's discard header) land in space the ring has reused, and later records read as corrupt.
 * Returns 1 if a record was discarded, 0 if nothing was stuck or the claimant is alive (and always
 * 0 on SPSC, where a dead producer holds no claim), -EINVAL, -EPROTO. Non-blocking apart from
 * is_dead.
 */
int shmring_msg_recover(struct shmring *r, int (*is_dead)(uint32_t pid, void *arg), void *arg);

/* Consumer, MPSC. As shmring_msg_recover(), but is_dead is asked about every producer not judged
 * by its record's lock, those of other pid namespaces included (their own pids, which may name
 * another process or none here): for a judge that knows them, never for shmring_msg_pid_gone.
 * Same returns. */
int shmring_msg_recover_all(struct shmring *r, int (*is_dead)(uint32_t pid, void *arg), void *arg);

/* An is_dead for shmring_msg_recover(): 1 when no process has this pid, or it has exited and
 * waits to be reaped (a zombie: its pidfd says so; where there is none, kill(pid, 0) failing
 * with ESRCH), 0 otherwise and for pid 0. A recycled pid reads as alive: the ring stays wedged
 * rather than lose a live message. arg is unused. The pids in the ring are the producers' own:
 * shmring_msg_recover() never asks about a producer whose claim record says it is in another pid
 * namespace than the caller (it reads alive), where both have /proc; without /proc, use it only
 * for producers in the caller's pid namespace, and never with shmring_msg_recover_all(). */
int shmring_msg_pid_gone(uint32_t pid, void *arg);

#endif

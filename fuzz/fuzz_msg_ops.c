/* SPDX-License-Identifier: MIT */
/*
 * fuzz_msg_ops: differential test of the message rings (SPSC and MPSC) against a model that
 * keeps the queue of records and the byte positions (padding, discarded records, shorter
 * commits), so that every -EAGAIN of the producer is predicted exactly.
 *
 * Input: 2 bytes of set-up, then operations.
 *   byte 0: bit 0: MPSC (else SPSC); bit 1: producer and consumer on separate handles
 *   byte 1: log2 of the capacity: 6 + byte % 9 (64 .. 16384 bytes: from 8192 on, messages
 *           reach SHMRING_MSG_ALIGN_MIN and take fillers)
 *   then: an opcode byte (mod 9) and its arguments, until the input ends
 * Any difference from the model (return value, length, type, contents, alignment) traps.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <shmring/shmring.h>

#include "fuzz_input.h"

#define CAP_MAX	 16384u
#define QMAX	 (CAP_MAX / 8 + 8)
#define CHECK(c) ((c) ? (void)0 : __builtin_trap())

struct rec {
	uint64_t bytes; /* padding before it + its stride */
	int msg;	/* 0: a discarded record (abort, or the rest of a shorter commit) */
	uint32_t len, type, seed;
	uint32_t res; /* the length reserved for it: from SHMRING_MSG_ALIGN_MIN, 64-byte aligned */
};

struct model {
	uint64_t cap, head, tail;
	int mpsc;
	struct rec q[QMAX * 2];
	unsigned qh, qt;
	uint32_t seed;
};

static uint8_t pb(uint32_t seed, uint32_t i)
{
	return (uint8_t)((seed * 2654435761u) >> 13 ^ i * 31u);
}

static uint64_t stride(uint32_t len)
{
	return 8 + (((uint64_t)len + 7) & ~7ull);
}

/* The first header position from h on, within its lap, that leaves a payload of len where the
 * ring promises it (on a 64-byte boundary from SHMRING_MSG_ALIGN_MIN on), or UINT64_MAX if the
 * record would then cross the end of the lap. */
static uint64_t header_at(const struct model *m, uint64_t h, uint32_t len)
{
	uint64_t end = (h / m->cap + 1) * m->cap;

	while (len >= SHMRING_MSG_ALIGN_MIN && (h + 8) % 64 != 0)
		h += 8;
	return h + stride(len) <= end ? h : UINT64_MAX;
}

/* Bytes a record of len needs at the model's tail: *pad of padding to the end of the lap when
 * it does not fit there, then *fill of filler before its header, then the record. */
static uint64_t need(const struct model *m, uint32_t len, uint64_t *pad, uint64_t *fill)
{
	uint64_t h = header_at(m, m->tail, len);

	*pad = 0;
	if (h == UINT64_MAX) {
		*pad = m->cap - m->tail % m->cap;
		h = header_at(m, m->tail + *pad, len);
	}
	*fill = h - m->tail - *pad;
	return *pad + *fill + stride(len);
}

static int fits(const struct model *m, uint32_t len)
{
	uint64_t pad, fill;
	return need(m, len, &pad, &fill) <= m->cap - (m->tail - m->head);
}

static void push(struct model *m, uint64_t bytes, int msg, uint32_t len, uint32_t type,
		 uint32_t seed)
{
	CHECK(m->qt - m->qh < QMAX * 2);
	m->q[m->qt++ % (QMAX * 2)] = (struct rec){bytes, msg, len, type, seed, 0};
	m->tail += bytes;
}

/* Drops leading discarded records, as the consumer's peek does. Returns the next message. */
static struct rec *front(struct model *m)
{
	while (m->qh != m->qt && !m->q[m->qh % (QMAX * 2)].msg)
		m->head += m->q[m->qh++ % (QMAX * 2)].bytes;
	return m->qh == m->qt ? NULL : &m->q[m->qh % (QMAX * 2)];
}

static void pop(struct model *m)
{
	m->head += m->q[m->qh++ % (QMAX * 2)].bytes;
}

static void fill(uint8_t *p, uint32_t seed, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		p[i] = pb(seed, i);
}

static void check_msg(const struct rec *e, const uint8_t *p, uint32_t n, uint32_t type)
{
	CHECK(n == e->len && type == e->type);
	CHECK(((uintptr_t)p & 7) == 0);
	for (uint32_t i = 0; i < n; i++)
		CHECK(p[i] == pb(e->seed, i));
}

/* A message seen in place (peek): as check_msg, and where the ring promised to put it. */
static void check_peek(const struct rec *e, const uint8_t *p, uint32_t n, uint32_t type)
{
	check_msg(e, p, n, type);
	CHECK(((uintptr_t)p & (e->res >= SHMRING_MSG_ALIGN_MIN ? 63 : 7)) == 0);
}

/* The padding and filler records a reservation of res needs, as records of their own: MPSC
 * publishes them at reserve, SPSC with the message at commit. */
static void model_pad(struct model *m, uint32_t res)
{
	uint64_t pad, fill;
	need(m, res, &pad, &fill);
	if (pad)
		push(m, pad, 0, 0, 0, 0);
	if (fill)
		push(m, fill, 0, 0, 0, 0);
}

/* Producer side of one message: the model's view of a commit of len of a reservation of res
 * (on MPSC, model_pad() was called at reserve). */
static void model_commit(struct model *m, uint32_t res, uint32_t len, uint32_t type, uint32_t seed)
{
	if (!m->mpsc)
		model_pad(m, res);
	push(m, stride(len), 1, len, type, seed);
	m->q[(m->qt - 1) % (QMAX * 2)].res = res;
	if (m->mpsc && stride(len) < stride(res))
		push(m, stride(res) - stride(len), 0, 0, 0, 0);
}

static void model_send(struct model *m, uint32_t len, uint32_t type, uint32_t seed)
{
	if (m->mpsc)
		model_pad(m, len);
	model_commit(m, len, len, type, seed);
}

static uint8_t buf[CAP_MAX];

static int dead_all(uint32_t pid, void *arg)
{
	(void)pid;
	(void)arg;
	return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct input in = {data, size};
	static struct model m;
	uint8_t b0 = next8(&in);
	struct shmring_params prm = {0};
	struct shmring *pr, *cr;

	memset(&m, 0, sizeof(m));
	m.mpsc = b0 & 1;
	m.cap = 1ull << (6 + next8(&in) % 9);
	prm.kind = m.mpsc ? SHMRING_MSG_MPSC : SHMRING_MSG;
	prm.capacity = m.cap;
	ssize_t sz = shmring_memsize(&prm);
	CHECK(sz > 0 && (size_t)sz <= CAP_MAX + 16384);
	/* Exactly the segment (found in review: a static buffer with room to spare hid any access
	 * past the segment's end from ASan). */
	uint8_t *mem = aligned_alloc(128, ((size_t)sz + 127) & ~(size_t)127);
	CHECK(mem != NULL);
	CHECK(shmring_init(mem, (size_t)sz, &prm) == 0);
	CHECK(shmring_attach(mem, (size_t)sz, &prm, &pr) == 0);
	cr = pr;
	if (b0 & 2)
		CHECK(shmring_attach(mem, (size_t)sz, &prm, &cr) == 0);
	uint32_t max = shmring_msg_max(pr);
	CHECK(max == m.cap / 4 - 8);

	for (unsigned ops = 0; in.n && ops < 4096; ops++) {
		uint8_t op = next8(&in) % 9;
		uint32_t len = next16(&in) % (max + 2), type = next8(&in) * 0x01010101u;
		struct rec *e;
		void *w;
		const void *p;
		uint32_t n, t;
		int rc = 0;

		switch (op) {
		case 0: /* send */
			fill(buf, ++m.seed, len > max ? 0 : len);
			rc = shmring_msg_send(pr, buf, len, type);
			if (len > max) {
				CHECK(rc == -EMSGSIZE);
			} else if (fits(&m, len)) {
				CHECK(rc == 0);
				model_send(&m, len, type, m.seed);
			} else {
				CHECK(rc == -EAGAIN);
			}
			break;
		case 1:	  /* reserve, then commit len2 <= len */
		case 2:	  /* reserve, then abort */
		case 3: { /* reserve, let the consumer look, then commit */
			rc = shmring_msg_reserve(pr, len, &w);
			if (len > max) {
				CHECK(rc == -EMSGSIZE);
				break;
			}
			if (!fits(&m, len)) {
				CHECK(rc == -EAGAIN);
				break;
			}
			CHECK(rc == 0 &&
			      ((uintptr_t)w & (len >= SHMRING_MSG_ALIGN_MIN ? 63 : 7)) == 0);
			if (m.mpsc)
				model_pad(&m, len);
			uint32_t len2 = op == 1 ? (len ? next16(&in) % (len + 1) : 0) : len;
			fill(w, ++m.seed, len2);
			if (op == 3) {
				/* the consumer sees what was there before, and stops at our claim
				 */
				e = front(&m);
				rc = shmring_msg_peek(cr, &p, &n, &t);
				if (e) {
					CHECK(rc == 0);
					check_peek(e, p, n, t);
					CHECK(shmring_msg_release(cr) == 0);
					pop(&m);
				} else {
					CHECK(rc == -EAGAIN);
				}
			}
			if (op == 2) {
				CHECK(shmring_msg_abort(pr) == 0);
				if (m.mpsc)
					push(&m, stride(len), 0, 0, 0, 0);
			} else {
				CHECK(shmring_msg_commit(pr, len2, type) == 0);
				model_commit(&m, len, len2, type, m.seed);
			}
			break;
		}
		case 4: /* recv */
			e = front(&m);
			rc = shmring_msg_recv(cr, buf, len, &t);
			if (!e) {
				CHECK(rc == -EAGAIN);
			} else if (e->len > len) {
				CHECK(rc == -EMSGSIZE);
			} else {
				CHECK(rc == (int)e->len);
				check_msg(e, buf, (uint32_t)rc, t);
				pop(&m);
			}
			break;
		case 5: /* peek, release */
			e = front(&m);
			rc = shmring_msg_peek(cr, &p, &n, &t);
			if (!e) {
				CHECK(rc == -EAGAIN);
				CHECK(shmring_msg_release(cr) == -EINVAL);
			} else {
				CHECK(rc == 0);
				check_peek(e, p, n, t);
				CHECK(shmring_msg_release(cr) == 0);
				pop(&m);
			}
			break;
		case 6: { /* send burst of k */
			struct shmring_msgvec v[4];
			uint32_t k = len % 5, off = 0, sent = 0;
			for (uint32_t i = 0; i < k; i++) {
				/* up to a third of the largest: from 16 KiB rings on, fillers */
				uint32_t l = next16(&in) % (max / 3 + 1);
				fill(buf + off, m.seed + 1 + i, l);
				v[i] = (struct shmring_msgvec){
				    .base = buf + off, .len = l, .type = type + i};
				off += l;
			}
			rc = shmring_msg_send_burst(pr, v, k);
			for (uint32_t i = 0; i < k && fits(&m, v[i].len); i++) {
				model_send(&m, v[i].len, v[i].type, m.seed + 1 + i);
				sent++;
			}
			m.seed += k;
			CHECK(k == 0 ? rc == 0 : sent ? rc == (int)sent : rc == -EAGAIN);
			break;
		}
		case 7: { /* recv burst of k, with 64-byte buffers */
			static uint8_t bb[4][CAP_MAX / 4];
			struct shmring_msgvec v[4];
			uint32_t k = len % 5, got = 0;
			for (uint32_t i = 0; i < k; i++)
				v[i] = (struct shmring_msgvec){.base = bb[i], .cap = 64};
			rc = shmring_msg_recv_burst(cr, v, k);
			int want = 0;
			for (uint32_t i = 0; i < k; i++) {
				e = front(&m);
				if (!e) {
					want = got ? (int)got : -EAGAIN;
					break;
				}
				if (e->len > 64) {
					want = got ? (int)got : -EMSGSIZE;
					break;
				}
				check_msg(e, bb[i], v[i].len, v[i].type);
				pop(&m);
				got++;
				want = (int)got;
			}
			CHECK(rc == want);
			break;
		}
		case 8: /* nothing is stuck: recovery finds nothing */
			CHECK(shmring_msg_recover(cr, dead_all, NULL) == 0);
			break;
		}
		if (getenv("FUZZ_MSG_TRACE"))
			fprintf(stderr, "op %u len %u rc %d model head %lu tail %lu ring %lu %lu\n",
				op, len, rc, (unsigned long)m.head, (unsigned long)m.tail,
				(unsigned long)atomic_load(pr->cons_pos),
				(unsigned long)atomic_load(pr->prod_pos));
		CHECK(!shmring_is_broken(pr) && !shmring_is_broken(cr));
	}
	/* Drain: everything the model holds comes out, in order. */
	struct rec *e;
	while ((e = front(&m)) != NULL) {
		const void *p;
		uint32_t n, t;
		CHECK(shmring_msg_peek(cr, &p, &n, &t) == 0);
		check_peek(e, p, n, t);
		CHECK(shmring_msg_release(cr) == 0);
		pop(&m);
	}
	const void *p;
	CHECK(shmring_msg_peek(cr, &p, NULL, NULL) == -EAGAIN);
	if (cr != pr)
		shmring_close(cr);
	shmring_close(pr);
	free(mem);
	return 0;
}

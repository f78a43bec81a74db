/* SPDX-License-Identifier: MIT */
/*
 * fuzz_spsc: differential test of the SPSC ring against a plain FIFO model.
 *
 * Input: 3 bytes of set-up, then operations.
 *   byte 0: element size (low 4 bits index es_table), bit 4: two handles (producer and
 *           consumer apart) rather than one handle for both sides
 *   byte 1: log2 of the capacity (mod 8)
 *   byte 2: both positions start at -byte2, so that the 64-bit positions wrap early
 *   then: an opcode byte (mod 12) and its arguments, until the input ends
 *
 * The harness also plays a hostile peer: it overwrites the producer's or the consumer's position
 * word in shared memory (opcode 11). It writes the true value, or an impossible one: far away
 * (more than a capacity off, with a margin so that it stays impossible however far the reader
 * moves on its cached index), or behind what the reader has already cached (a move backwards).
 * The ring may keep serving from its cache, so while such a value sits there an operation of the
 * reading side may give either the model's result or -EPROTO; once -EPROTO was seen, or the side
 * asked for the exact count (size/free always read the peer), the handle is broken and every
 * operation on it must say -EPROTO. The value stops being hostile when its owner publishes again.
 * Plausible values (a peer claiming to have moved forwards) are not written: what the ring does
 * then depends on when it looks, and the model would have to copy the ring to predict it.
 *
 * Any difference from the model (return value, contents, slot address, broken flag) traps.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <shmring/shmring.h>

#include "fuzz_input.h"

#include "ring/layout.h"

#define CAP_MAX	 128u
#define N_MAX	 (2u * CAP_MAX + 1u)
#define ES_MAX	 1000u
#define OPS_MAX	 4096u
#define CHECK(c) ((c) ? (void)0 : __builtin_trap())

static const uint32_t es_table[16] = {1,  2,  3,  4,  5,  7,   8,   12,
				      16, 24, 32, 48, 64, 100, 128, ES_MAX};

struct model {
	uint64_t cap, mask;
	uint32_t es;
	int two;	     /* two handles; else one handle is both sides */
	uint64_t head, tail; /* true positions; what each owner last published */
	uint64_t seq;	     /* sequence number of the next element pushed */
	uint64_t q[CAP_MAX]; /* sequence number held at position p, at q[p & mask] */
	uint64_t reserved;   /* slots of the outstanding reservation */
	uint64_t peeked;
	int pbroken, cbroken;
	int ppois, cpois; /* the producer's / consumer's word holds a hostile value */
};

/* The harness's own loops carry no coverage instrumentation (nor get inlined into code that
 * does): tracing every byte compared took most of the run time and taught the fuzzer nothing. */
#define NOCOV __attribute__((no_sanitize("coverage"), noinline))

/* Byte j of element number seq: distinct across neighbours, cheap to recompute. */
NOCOV static uint64_t key(uint64_t seq)
{
	uint64_t x = (seq + 1) * 0x9e3779b97f4a7c15ull;

	return x ^ (x >> 29);
}

static inline uint8_t content(uint64_t k, uint32_t j)
{
	return (uint8_t)((k >> (8 * (j & 7))) + j / 8);
}

NOCOV static void fill(unsigned char *dst, uint64_t seq, uint64_t n, uint32_t es)
{
	for (uint64_t i = 0; i < n; i++) {
		uint64_t k = key(seq + i);
		for (uint32_t j = 0; j < es; j++)
			dst[i * es + j] = content(k, j);
	}
}

/* The n elements at src must be the n at the model's head. */
NOCOV static void expect_front(const struct model *m, const unsigned char *src, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++) {
		uint64_t k = key(m->q[(m->head + i) & m->mask]);
		for (uint32_t j = 0; j < m->es; j++)
			CHECK(src[i * m->es + j] == content(k, j));
	}
}

static void break_prod(struct model *m)
{
	m->pbroken = 1;
	if (!m->two)
		m->cbroken = 1;
}

static void break_cons(struct model *m)
{
	m->cbroken = 1;
	if (!m->two)
		m->pbroken = 1;
}

/*
 * Judges the return value of an operation of one side. want is the model's answer; a hostile
 * word of the peer (pois) also allows -EPROTO. Returns 1 when the model's effect applies.
 */
static int judge(struct model *m, int is_prod, int64_t rc, int64_t want)
{
	int broken = is_prod ? m->pbroken : m->cbroken;
	int pois = is_prod ? m->cpois : m->ppois;

	if (broken) {
		CHECK(rc == -EPROTO);
		return 0;
	}
	if (pois && rc == -EPROTO) {
		if (is_prod)
			break_prod(m);
		else
			break_cons(m);
		return 0;
	}
	CHECK(rc == want);
	return rc >= 0;
}

static void model_push(struct model *m, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++)
		m->q[(m->tail + i) & m->mask] = m->seq + i;
	m->seq += n;
	m->tail += n;
	m->reserved = 0;
	m->ppois = 0;
}

static void model_pop(struct model *m, uint64_t n)
{
	m->head += n;
	m->peeked = 0;
	m->cpois = 0;
}

static uint64_t min3(uint64_t a, uint64_t b, uint64_t c)
{
	uint64_t x = a < b ? a : b;

	return x < c ? x : c;
}

/* Model answer of a burst (bulk = 0) or bulk (1) call of n elements, given what is there. */
static int64_t want_n(const struct model *m, uint64_t n, uint64_t there, int bulk)
{
	if (n == 0)
		return 0;
	if (bulk && n > m->cap)
		return -EINVAL;
	if (there == 0 || (bulk && there < n))
		return -EAGAIN;
	return (int64_t)(n < there ? n : there);
}

static unsigned char buf[N_MAX * ES_MAX];
static int trace; /* FUZZ_TRACE=1: print each operation, to read a crash */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	trace = getenv("FUZZ_TRACE") != NULL;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct input in = {data, size};
	struct model m;
	struct shmring *prod = NULL, *cons = NULL;
	unsigned char *mem = NULL;

	memset(&m, 0, sizeof(m));
	uint8_t b0 = next8(&in);
	m.es = es_table[b0 & 15];
	m.two = (b0 >> 4) & 1;
	m.cap = 1ull << (next8(&in) % 8);
	m.mask = m.cap - 1;
	m.head = m.tail = 0 - (uint64_t)next8(&in);

	struct shmring_params p = {.kind = SHMRING_SPSC, .elem_size = m.es, .capacity = m.cap};
	struct _shmring_layout l;
	ssize_t len = shmring_memsize(&p);
	CHECK(len > 0 && _shmring_layout(&p, &l) == 0 && (uint64_t)len == l.total_size);
	CHECK(posix_memalign((void **)&mem, _SHMRING_BLOCK, (size_t)len) == 0);
	memset(mem, 0, (size_t)len);
	CHECK(shmring_init(mem, (size_t)len, &p) == 0);
	_Atomic uint64_t *pword = (_Atomic uint64_t *)(mem + l.part[_SHMRING_PART_PROD].off);
	_Atomic uint64_t *cword = (_Atomic uint64_t *)(mem + l.part[_SHMRING_PART_CONS].off);
	unsigned char *slots0 = mem + l.part[_SHMRING_PART_DATA].off;
	/* Positions are never reset: a ring met at any position must behave the same. */
	atomic_store_explicit(pword, m.tail, memory_order_relaxed);
	atomic_store_explicit(cword, m.head, memory_order_relaxed);

	struct shmring_params any = {.kind = SHMRING_SPSC};
	CHECK(shmring_attach(mem, (size_t)len, &any, &prod) == 0);
	if (m.two)
		CHECK(shmring_attach(mem, (size_t)len, &p, &cons) == 0);
	else
		cons = prod;
	CHECK(shmring_capacity(prod) == m.cap && shmring_elem_size(cons) == m.es);

	for (unsigned nops = 0; in.n && nops < OPS_MAX; nops++) {
		uint8_t op = next8(&in) % 12;
		/* The count argument, for the operations that take one. */
		uint64_t n = (op >= 2 && op <= 9) ? next8(&in) % (2 * m.cap + 2) : 0;
		uint64_t count = m.tail - m.head, space = m.cap - count;
		int64_t rc = 0;
		void *ws;
		const void *rs;

		switch (op) {
		case 0:
			fill(buf, m.seq, 1, m.es);
			rc = shmring_spsc_push(prod, buf);
			if (judge(&m, 1, rc, space ? 0 : -EAGAIN))
				model_push(&m, 1);
			break;
		case 1:
			memset(buf, 0, m.es);
			rc = shmring_spsc_pop(cons, buf);
			if (judge(&m, 0, rc, count ? 0 : -EAGAIN)) {
				expect_front(&m, buf, 1);
				model_pop(&m, 1);
			}
			break;
		case 2:
		case 3:
			/* Only what can fit is read; the rest of buf is never looked at. */
			fill(buf, m.seq, n < space ? n : space, m.es);
			rc = op == 2 ? shmring_spsc_push_burst(prod, buf, (unsigned)n)
				     : shmring_spsc_push_bulk(prod, buf, (unsigned)n);
			/* n = 0 returns before publishing: a reservation survives it. */
			if (judge(&m, 1, rc, want_n(&m, n, space, op == 3)) && rc > 0)
				model_push(&m, (uint64_t)rc);
			break;
		case 4:
		case 5:
			memset(buf, 0, n * m.es);
			rc = op == 4 ? shmring_spsc_pop_burst(cons, buf, (unsigned)n)
				     : shmring_spsc_pop_bulk(cons, buf, (unsigned)n);
			if (judge(&m, 0, rc, want_n(&m, n, count, op == 5)) && rc > 0) {
				expect_front(&m, buf, (uint64_t)rc);
				model_pop(&m, (uint64_t)rc);
			}
			break;
		case 6: {
			int64_t want = n == 0 ? 0
				       : space == 0
					   ? -EAGAIN
					   : (int64_t)min3(n, space, m.cap - (m.tail & m.mask));
			ws = NULL;
			rc = shmring_spsc_reserve(prod, (unsigned)n, &ws);
			if (judge(&m, 1, rc, want) && rc > 0) {
				CHECK(ws == slots0 + (m.tail & m.mask) * m.es);
				fill(ws, m.seq, (uint64_t)rc, m.es);
				m.reserved = (uint64_t)rc;
			}
			break;
		}
		case 7:
			rc = shmring_spsc_commit(prod, (unsigned)n);
			/* A live reservation means nothing was published since, so m.seq is
			 * still the sequence number its slots were filled with. */
			if (judge(&m, 1, rc, n > m.reserved ? -EINVAL : 0))
				model_push(&m, n);
			break;
		case 8: {
			int64_t want = n == 0 ? 0
				       : count == 0
					   ? -EAGAIN
					   : (int64_t)min3(n, count, m.cap - (m.head & m.mask));
			rs = NULL;
			rc = shmring_spsc_peek(cons, (unsigned)n, &rs);
			if (judge(&m, 0, rc, want) && rc > 0) {
				CHECK(rs == slots0 + (m.head & m.mask) * m.es);
				expect_front(&m, rs, (uint64_t)rc);
				m.peeked = (uint64_t)rc;
			}
			break;
		}
		case 9:
			rc = shmring_spsc_release(cons, (unsigned)n);
			if (judge(&m, 0, rc, n > m.peeked ? -EINVAL : 0))
				model_pop(&m, n);
			break;
		case 10:
			/* Exact queries always read the peer: a hostile word must be caught here.
			 */
			rc = shmring_spsc_size(cons);
			if (m.ppois && !m.cbroken) {
				CHECK(rc == -EPROTO);
				break_cons(&m);
			}
			judge(&m, 0, rc, (int64_t)(m.tail - m.head));
			rc = shmring_spsc_free(prod);
			if (m.cpois && !m.pbroken) {
				CHECK(rc == -EPROTO);
				break_prod(&m);
			}
			judge(&m, 1, rc, (int64_t)(m.cap - (m.tail - m.head)));
			break;
		case 11: {
			/*
			 * Selector: bit 0 the word (producer's, consumer's), bits 1-3 the value:
			 * 0 the true one; 1 impossible with a margin (below); 2 raw from the input,
			 * written only if it is the true one or impossible with that margin; 3 as
			 * 1, then the exact query; 4 behind what the reader has already seen (its
			 * cached copy), so moving backwards; 5 as 4, then the exact query; 6-7 the
			 * true one.
			 */
			uint8_t sel = next8(&in);
			int cons_word = sel & 1, kind = (sel >> 1) & 7;
			uint64_t x = (kind >= 1 && kind <= 5) ? next64(&in) : 0;
			/* Impossible with a margin: the reader's own index moves by at most cap
			 * while it serves from its cache, and the value stays impossible. */
			uint64_t span = UINT64_MAX - 3 * m.cap;
			uint64_t v, room;
			int pois = 1;

			if (kind == 2) {
				v = x;
				uint64_t d = cons_word ? m.tail - v : v - m.head;
				uint64_t lo_ = cons_word ? m.cap : 2 * m.cap;
				if (v == (cons_word ? m.head : m.tail))
					pois = 0;
				else if (!(d > lo_ && d < 0 - (cons_word ? 2 * m.cap : m.cap)))
					break; /* possible but not modelled: leave the word alone */
			} else if (kind == 1 || kind == 3) {
				v = cons_word ? m.tail - (m.cap + 1 + x % span)
					      : m.head + 2 * m.cap + 1 + x % span;
			} else if (kind == 4 || kind == 5) {
				/*
				 * White box: the reader's cached copy of this word (handle.h). A
				 * value below it is a move backwards, and stays one until the
				 * reader looks again, since the cache only changes then.
				 */
				if (cons_word) {
					/* producer: [tail - cap, head_cache) */
					room = prod->p.head_cache - (m.tail - m.cap);
					v = m.tail - m.cap + (room ? x % room : 0);
				} else {
					/* consumer: [head, tail_cache) */
					room = cons->c.tail_cache - m.head;
					v = m.head + (room ? x % room : 0);
				}
				if (!room || room > m.cap)
					break;
			} else {
				v = cons_word ? m.head : m.tail;
				pois = 0;
			}
			atomic_store_explicit(cons_word ? cword : pword, v, memory_order_relaxed);
			if (cons_word)
				m.cpois = pois;
			else
				m.ppois = pois;
			if (kind == 3 || kind == 5) {
				rc = cons_word ? shmring_spsc_free(prod) : shmring_spsc_size(cons);
				CHECK(rc == -EPROTO);
				if (cons_word)
					break_prod(&m);
				else
					break_cons(&m);
			}
			break;
		}
		}
		if (trace)
			fprintf(stderr,
				"op %u n %llu rc %lld | head %llu tail %llu res %llu peek %llu "
				"broken %d/%d pois %d/%d\n",
				op, (unsigned long long)n, (long long)rc,
				(unsigned long long)m.head, (unsigned long long)m.tail,
				(unsigned long long)m.reserved, (unsigned long long)m.peeked,
				m.pbroken, m.cbroken, m.ppois, m.cpois);
		CHECK(shmring_is_broken(prod) == m.pbroken);
		CHECK(shmring_is_broken(cons) == m.cbroken);
	}

	if (m.two)
		shmring_close(cons);
	shmring_close(prod);
	free(mem);
	return 0;
}

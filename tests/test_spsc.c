/* SPDX-License-Identifier: MIT */
/*
 * The SPSC ring on its own: every data call against a plain FIFO model, the zero-copy calls
 * across the wrap, and a hostile peer that writes impossible positions.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../ring/layout.h"
#include "testutil.h"

/* A ring in caller's memory, with a producer handle and a consumer handle (the same handle
 * for both when shared is set). */
struct fix {
	unsigned char *mem;
	size_t len;
	struct shmring *prod, *cons;
	_Atomic uint64_t *prod_pos, *cons_pos;
	unsigned char *data;
	uint32_t es;
	uint64_t cap;
};

static void fix_open(struct fix *f, uint32_t es, uint64_t cap, int shared)
{
	struct shmring_params p = tu_params(es, cap);
	ssize_t n = shmring_memsize(&p);

	cr_assert_gt(n, 0);
	f->len = (size_t)n;
	f->mem = aligned_alloc(128, f->len);
	cr_assert_not_null(f->mem);
	cr_assert_eq(shmring_init(f->mem, f->len, &p), 0);
	cr_assert_eq(shmring_attach(f->mem, f->len, &p, &f->prod), 0);
	if (shared)
		f->cons = f->prod;
	else
		cr_assert_eq(shmring_attach(f->mem, f->len, &p, &f->cons), 0);
	/* Where the header says the parts are: the test plays the peer from there. */
	const struct _shmring_hdr *h = (const struct _shmring_hdr *)f->mem;
	f->prod_pos = (_Atomic uint64_t *)(f->mem + h->part[_SHMRING_PART_PROD].off);
	f->cons_pos = (_Atomic uint64_t *)(f->mem + h->part[_SHMRING_PART_CONS].off);
	f->data = f->mem + h->part[_SHMRING_PART_DATA].off;
	f->es = es;
	f->cap = cap;
}

static void fix_close(struct fix *f)
{
	if (f->cons != f->prod)
		shmring_close(f->cons);
	shmring_close(f->prod);
	free(f->mem);
}

static uint64_t low(uint64_t seq, uint32_t es)
{
	return es >= 8 ? seq : seq & ((1ull << (8 * es)) - 1);
}

/* ---- basics ------------------------------------------------------------------------------ */

Test(spsc, push_pop_full_empty)
{
	struct fix f;
	unsigned char e[24];

	fix_open(&f, 24, 4, 0);
	cr_assert_eq(shmring_spsc_pop(f.cons, e), -EAGAIN);
	cr_assert_eq(shmring_spsc_size(f.cons), 0);
	cr_assert_eq(shmring_spsc_free(f.prod), 4);
	for (uint64_t s = 0; s < 4; s++) {
		tu_fill(e, 24, s);
		cr_assert_eq(shmring_spsc_push(f.prod, e), 0);
		cr_assert_eq(shmring_spsc_size(f.cons), (int64_t)s + 1);
		cr_assert_eq(shmring_spsc_free(f.prod), 3 - (int64_t)s);
	}
	cr_assert_eq(shmring_spsc_push(f.prod, e), -EAGAIN);
	for (uint64_t s = 0; s < 4; s++) {
		cr_assert_eq(shmring_spsc_pop(f.cons, e), 0);
		cr_assert_eq(tu_check(e, 24), s);
	}
	cr_assert_eq(shmring_spsc_pop(f.cons, e), -EAGAIN);
	cr_assert_eq(shmring_is_broken(f.prod), 0);
	cr_assert_eq(shmring_is_broken(f.cons), 0);
	fix_close(&f);
}

Test(spsc, burst_and_bulk)
{
	struct fix f;
	uint64_t in[40], out[40];

	fix_open(&f, 8, 16, 0);
	for (int i = 0; i < 40; i++)
		in[i] = 1000 + (uint64_t)i;
	cr_assert_eq(shmring_spsc_push_burst(f.prod, in, 0), 0);
	cr_assert_eq(shmring_spsc_push_bulk(f.prod, in, 0), 0);
	cr_assert_eq(shmring_spsc_push_bulk(f.prod, in, 17), -EINVAL);
	cr_assert_eq(shmring_spsc_pop_bulk(f.cons, out, 17), -EINVAL);
	cr_assert_eq(shmring_spsc_pop_burst(f.cons, out, 4), -EAGAIN);
	cr_assert_eq(shmring_spsc_pop_bulk(f.cons, out, 4), -EAGAIN);
	cr_assert_eq(shmring_spsc_pop_burst(f.cons, out, 0), 0);

	cr_assert_eq(shmring_spsc_push_burst(f.prod, in, 10), 10);
	cr_assert_eq(shmring_spsc_push_bulk(f.prod, in + 10, 7), -EAGAIN, "all or none");
	cr_assert_eq(shmring_spsc_size(f.cons), 10);
	cr_assert_eq(shmring_spsc_push_burst(f.prod, in + 10, 30), 6, "up to n");
	cr_assert_eq(shmring_spsc_push_burst(f.prod, in, 1), -EAGAIN);
	cr_assert_eq(shmring_spsc_pop_bulk(f.cons, out, 16), 16);
	for (int i = 0; i < 16; i++)
		cr_assert_eq(out[i], 1000 + (uint64_t)i);

	/* Across the wrap: positions 16.. land on slots 0..; move the start to slot 13 first. */
	cr_assert_eq(shmring_spsc_push_bulk(f.prod, in, 13), 13);
	cr_assert_eq(shmring_spsc_pop_bulk(f.cons, out, 13), 13);
	cr_assert_eq(shmring_spsc_push_bulk(f.prod, in + 20, 9), 9);
	cr_assert_eq(shmring_spsc_pop_bulk(f.cons, out, 10), -EAGAIN);
	cr_assert_eq(shmring_spsc_pop_burst(f.cons, out, 10), 9);
	for (int i = 0; i < 9; i++)
		cr_assert_eq(out[i], 1020 + (uint64_t)i);
	fix_close(&f);
}

Test(spsc, element_sizes_across_wrap)
{
	uint32_t sizes[] = {1, 3, 7, 8, 13, 64, 65536};
	unsigned char *buf = malloc(65536 * 8), *one = malloc(65536);

	cr_assert_not_null(buf);
	cr_assert_not_null(one);
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		uint32_t es = sizes[i];
		struct fix f;
		uint64_t w = 0, r = 0;

		fix_open(&f, es, 4, 0);
		for (int round = 0; round < 9; round++) {
			unsigned k = 1 + (unsigned)round % 4;
			for (unsigned j = 0; j < k; j++)
				tu_fill(buf + (size_t)j * es, es, w + j);
			cr_assert_eq(shmring_spsc_push_burst(f.prod, buf, k), (int)k);
			w += k;
			memset(buf, 0, (size_t)k * es);
			cr_assert_eq(shmring_spsc_pop_bulk(f.cons, buf, k), (int)k);
			for (unsigned j = 0; j < k; j++, r++)
				cr_assert_eq(tu_check(buf + (size_t)j * es, es), low(r, es),
					     "es %u seq %llu", es, (unsigned long long)r);
			tu_fill(one, es, w);
			cr_assert_eq(shmring_spsc_push(f.prod, one), 0);
			w++;
			cr_assert_eq(shmring_spsc_pop(f.cons, one), 0);
			cr_assert_eq(tu_check(one, es), low(r, es));
			r++;
		}
		fix_close(&f);
	}
	free(buf);
	free(one);
}

/* ---- zero copy --------------------------------------------------------------------------- */

Test(spsc, reserve_commit_across_wrap)
{
	struct fix f;
	uint64_t v[8];
	void *slots;

	fix_open(&f, 8, 8, 0);
	cr_assert_eq(shmring_spsc_reserve(f.prod, 0, &slots), 0);
	cr_assert_eq(shmring_spsc_commit(f.prod, 1), -EINVAL, "nothing reserved");
	cr_assert_eq(shmring_spsc_push_bulk(f.prod, v, 6), 6);
	cr_assert_eq(shmring_spsc_pop_bulk(f.cons, v, 6), 6);

	/* Positions at 6: two slots to the end of the ring, then the span wraps. */
	cr_assert_eq(shmring_spsc_reserve(f.prod, 8, &slots), 2);
	cr_assert_eq(slots, f.data + 6 * 8);
	((uint64_t *)slots)[0] = 500;
	((uint64_t *)slots)[1] = 501;
	cr_assert_eq(shmring_spsc_commit(f.prod, 3), -EINVAL, "more than reserved");
	cr_assert_eq(shmring_spsc_size(f.cons), 0, "a refused commit publishes nothing");
	cr_assert_eq(shmring_spsc_commit(f.prod, 2), 0);
	cr_assert_eq(shmring_spsc_commit(f.prod, 1), -EINVAL, "a reservation commits once");
	cr_assert_eq(shmring_spsc_size(f.cons), 2);
	cr_assert_eq(shmring_spsc_free(f.prod), 6);

	cr_assert_eq(shmring_spsc_reserve(f.prod, 8, &slots), 6);
	cr_assert_eq(slots, f.data);
	for (int i = 0; i < 6; i++)
		((uint64_t *)slots)[i] = 502 + (uint64_t)i;
	/* Committing fewer than reserved drops the rest. */
	cr_assert_eq(shmring_spsc_commit(f.prod, 4), 0);
	cr_assert_eq(shmring_spsc_size(f.cons), 6);
	cr_assert_eq(shmring_spsc_free(f.prod), 2);
	cr_assert_eq(shmring_spsc_reserve(f.prod, 1, &slots), 1);
	cr_assert_eq(slots, f.data + 4 * 8);
	*(uint64_t *)slots = 506;
	cr_assert_eq(shmring_spsc_commit(f.prod, 1), 0);

	/* A push cancels an outstanding reservation. */
	cr_assert_eq(shmring_spsc_reserve(f.prod, 1, &slots), 1);
	uint64_t x = 507;
	cr_assert_eq(shmring_spsc_push(f.prod, &x), 0);
	cr_assert_eq(shmring_spsc_commit(f.prod, 1), -EINVAL);
	cr_assert_eq(shmring_spsc_reserve(f.prod, 1, &slots), -EAGAIN, "full");
	cr_assert_eq(shmring_spsc_free(f.prod), 0);

	cr_assert_eq(shmring_spsc_pop_bulk(f.cons, v, 8), 8);
	for (int i = 0; i < 8; i++)
		cr_assert_eq(v[i], 500 + (uint64_t)i);
	fix_close(&f);
}

Test(spsc, peek_release_across_wrap)
{
	struct fix f;
	uint64_t v[8];
	const void *slots;

	fix_open(&f, 8, 8, 0);
	cr_assert_eq(shmring_spsc_peek(f.cons, 4, &slots), -EAGAIN);
	cr_assert_eq(shmring_spsc_peek(f.cons, 0, &slots), 0);
	cr_assert_eq(shmring_spsc_release(f.cons, 1), -EINVAL, "nothing peeked");
	cr_assert_eq(shmring_spsc_push_bulk(f.prod, v, 5), 5);
	cr_assert_eq(shmring_spsc_pop_bulk(f.cons, v, 5), 5);
	for (int i = 0; i < 8; i++)
		v[i] = 700 + (uint64_t)i;
	cr_assert_eq(shmring_spsc_push_bulk(f.prod, v, 8), 8);

	/* Head at 5: three slots to the end, the other five wrap. */
	cr_assert_eq(shmring_spsc_peek(f.cons, 8, &slots), 3);
	cr_assert_eq(slots, f.data + 5 * 8);
	cr_assert_eq(((const uint64_t *)slots)[0], 700);
	cr_assert_eq(((const uint64_t *)slots)[2], 702);
	cr_assert_eq(shmring_spsc_release(f.cons, 4), -EINVAL, "more than peeked");
	cr_assert_eq(shmring_spsc_free(f.prod), 0, "a refused release frees nothing");
	cr_assert_eq(shmring_spsc_release(f.cons, 1), 0);
	cr_assert_eq(shmring_spsc_release(f.cons, 1), -EINVAL, "a peek releases once");
	cr_assert_eq(shmring_spsc_free(f.prod), 1);
	cr_assert_eq(shmring_spsc_size(f.cons), 7);

	cr_assert_eq(shmring_spsc_peek(f.cons, 1, &slots), 1);
	cr_assert_eq(*(const uint64_t *)slots, 701);
	cr_assert_eq(shmring_spsc_release(f.cons, 0), 0, "releasing none keeps them");
	cr_assert_eq(shmring_spsc_peek(f.cons, 8, &slots), 2);
	cr_assert_eq(*(const uint64_t *)slots, 701);
	cr_assert_eq(shmring_spsc_release(f.cons, 2), 0);
	cr_assert_eq(shmring_spsc_peek(f.cons, 8, &slots), 5);
	cr_assert_eq(slots, f.data);
	for (int i = 0; i < 5; i++)
		cr_assert_eq(((const uint64_t *)slots)[i], 703 + (uint64_t)i);
	/* A pop cancels an outstanding peek. */
	cr_assert_eq(shmring_spsc_pop(f.cons, v), 0);
	cr_assert_eq(v[0], 703);
	cr_assert_eq(shmring_spsc_release(f.cons, 1), -EINVAL);
	cr_assert_eq(shmring_spsc_size(f.cons), 4);
	cr_assert_eq(shmring_spsc_free(f.prod), 4);
	fix_close(&f);
}

/* ---- against a model --------------------------------------------------------------------- */

static uint64_t rng_state;

static uint64_t rnd(uint64_t n)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return n ? rng_state % n : 0;
}

/* Random operations on the ring and on two counters (the model: what was pushed is the
 * sequence [head, tail)). Every return value and every payload is predicted exactly. */
/* Returns how many elements the consumer side took out (checked against the model). */
static uint64_t model_run(uint32_t es, uint64_t cap, int shared, int ops)
{
	struct fix f;
	uint64_t head = 0, tail = 0;
	unsigned char *buf = malloc((size_t)es * (2 * cap + 2));

	cr_assert_not_null(buf);
	fix_open(&f, es, cap, shared);
	rng_state = 0x9e3779b97f4a7c15ull ^ (es * 131 + cap * 7 + (uint64_t)shared);
	for (int op = 0; op < ops; op++) {
		uint64_t fr = cap - (tail - head), av = tail - head;
		unsigned k = (unsigned)rnd(2 * cap + 2);
		int rc, want;

		switch (rnd(9)) {
		case 0:
			tu_fill(buf, es, tail);
			rc = shmring_spsc_push(f.prod, buf);
			cr_assert_eq(rc, fr ? 0 : -EAGAIN, "op %d push", op);
			tail += fr ? 1 : 0;
			break;
		case 1:
			rc = shmring_spsc_pop(f.cons, buf);
			cr_assert_eq(rc, av ? 0 : -EAGAIN, "op %d pop", op);
			if (av)
				cr_assert_eq(tu_check(buf, es), low(head++, es), "op %d pop", op);
			break;
		case 2:
		case 3: {
			int bulk = rnd(2);
			for (unsigned j = 0; j < k; j++)
				tu_fill(buf + (size_t)j * es, es, tail + j);
			if (bulk) {
				rc = shmring_spsc_push_bulk(f.prod, buf, k);
				want = !k ? 0 : k > cap ? -EINVAL : k > fr ? -EAGAIN : (int)k;
			} else {
				rc = shmring_spsc_push_burst(f.prod, buf, k);
				want = !k ? 0 : !fr ? -EAGAIN : (int)(k < fr ? k : fr);
			}
			cr_assert_eq(rc, want, "op %d push %s %u (free %llu)", op,
				     bulk ? "bulk" : "burst", k, (unsigned long long)fr);
			if (rc > 0)
				tail += (uint64_t)rc;
			break;
		}
		case 4:
		case 5: {
			int bulk = rnd(2);
			if (bulk) {
				rc = shmring_spsc_pop_bulk(f.cons, buf, k);
				want = !k ? 0 : k > cap ? -EINVAL : k > av ? -EAGAIN : (int)k;
			} else {
				rc = shmring_spsc_pop_burst(f.cons, buf, k);
				want = !k ? 0 : !av ? -EAGAIN : (int)(k < av ? k : av);
			}
			cr_assert_eq(rc, want, "op %d pop %s %u (avail %llu)", op,
				     bulk ? "bulk" : "burst", k, (unsigned long long)av);
			for (int j = 0; j < rc; j++)
				cr_assert_eq(tu_check(buf + (size_t)j * es, es), low(head++, es),
					     "op %d elem %d", op, j);
			break;
		}
		case 6: {
			void *slots = NULL;
			uint64_t contig = cap - (tail & (cap - 1));
			uint64_t exp = k < fr ? k : fr;
			exp = exp < contig ? exp : contig;
			rc = shmring_spsc_reserve(f.prod, k, &slots);
			want = !k ? 0 : !fr ? -EAGAIN : (int)exp;
			cr_assert_eq(rc, want, "op %d reserve %u", op, k);
			if (rc <= 0)
				break;
			cr_assert_eq(slots, f.data + (tail & (cap - 1)) * es);
			unsigned c = (unsigned)rnd((uint64_t)rc + 2);
			for (unsigned j = 0; j < (unsigned)rc; j++)
				tu_fill((unsigned char *)slots + (size_t)j * es, es, tail + j);
			if (c > (unsigned)rc) {
				cr_assert_eq(shmring_spsc_commit(f.prod, c), -EINVAL);
				c = (unsigned)rc;
			}
			cr_assert_eq(shmring_spsc_commit(f.prod, c), 0);
			tail += c;
			break;
		}
		case 7: {
			const void *slots = NULL;
			uint64_t contig = cap - (head & (cap - 1));
			uint64_t exp = k < av ? k : av;
			exp = exp < contig ? exp : contig;
			rc = shmring_spsc_peek(f.cons, k, &slots);
			want = !k ? 0 : !av ? -EAGAIN : (int)exp;
			cr_assert_eq(rc, want, "op %d peek %u", op, k);
			if (rc <= 0)
				break;
			cr_assert_eq(slots, f.data + (head & (cap - 1)) * es);
			for (int j = 0; j < rc; j++)
				cr_assert_eq(
				    tu_check((const unsigned char *)slots + (size_t)j * es, es),
				    low(head + (uint64_t)j, es), "op %d peek %d", op, j);
			unsigned c = (unsigned)rnd((uint64_t)rc + 2);
			if (c > (unsigned)rc) {
				cr_assert_eq(shmring_spsc_release(f.cons, c), -EINVAL);
				c = (unsigned)rc;
			}
			cr_assert_eq(shmring_spsc_release(f.cons, c), 0);
			head += c;
			break;
		}
		default:
			cr_assert_eq(shmring_spsc_size(f.cons), (int64_t)(tail - head), "op %d",
				     op);
			cr_assert_eq(shmring_spsc_free(f.prod), (int64_t)(cap - (tail - head)),
				     "op %d", op);
			break;
		}
	}
	cr_assert_eq(shmring_is_broken(f.prod), 0);
	cr_assert_eq(shmring_is_broken(f.cons), 0);
	fix_close(&f);
	free(buf);
	return head;
}

Test(model, two_handles)
{
	uint32_t es[] = {1, 3, 8, 24, 64};
	uint64_t cap[] = {1, 2, 16};

	for (size_t i = 0; i < 5; i++)
		for (size_t j = 0; j < 3; j++)
			cr_assert_gt(model_run(es[i], cap[j], 0, 20000), 1000);
}

Test(model, one_handle_both_sides)
{
	cr_assert_gt(model_run(3, 8, 1, 50000), 1000);
	cr_assert_gt(model_run(16, 64, 1, 50000), 1000);
}

/* ---- a hostile peer ---------------------------------------------------------------------- */

/* Every producer call on a broken handle says -EPROTO, and stays broken. */
static void producer_is_dead(struct shmring *r, const char *what)
{
	unsigned char e[64] = {0};
	void *slots;

	cr_assert_eq(shmring_is_broken(r), 1, "%s", what);
	for (int pass = 0; pass < 2; pass++) {
		cr_assert_eq(shmring_spsc_push(r, e), -EPROTO, "%s", what);
		cr_assert_eq(shmring_spsc_push_burst(r, e, 1), -EPROTO, "%s", what);
		cr_assert_eq(shmring_spsc_push_bulk(r, e, 1), -EPROTO, "%s", what);
		cr_assert_eq(shmring_spsc_reserve(r, 1, &slots), -EPROTO, "%s", what);
		cr_assert_eq(shmring_spsc_commit(r, 0), -EPROTO, "%s", what);
		cr_assert_eq(shmring_spsc_commit(r, 1), -EPROTO, "%s", what);
		cr_assert_eq(shmring_spsc_free(r), -EPROTO, "%s", what);
	}
}

static void consumer_is_dead(struct shmring *r, const char *what)
{
	unsigned char e[64];
	const void *slots;

	cr_assert_eq(shmring_is_broken(r), 1, "%s", what);
	for (int pass = 0; pass < 2; pass++) {
		cr_assert_eq(shmring_spsc_pop(r, e), -EPROTO, "%s", what);
		cr_assert_eq(shmring_spsc_pop_burst(r, e, 1), -EPROTO, "%s", what);
		cr_assert_eq(shmring_spsc_pop_bulk(r, e, 1), -EPROTO, "%s", what);
		cr_assert_eq(shmring_spsc_peek(r, 1, &slots), -EPROTO, "%s", what);
		cr_assert_eq(shmring_spsc_release(r, 0), -EPROTO, "%s", what);
		cr_assert_eq(shmring_spsc_release(r, 1), -EPROTO, "%s", what);
		cr_assert_eq(shmring_spsc_size(r), -EPROTO, "%s", what);
	}
}

Test(hostile, consumer_position)
{
	const uint64_t cap = 8;

	for (int c = 0; c < 6; c++) {
		struct fix f;
		uint64_t v[8] = {0};
		char what[64];

		fix_open(&f, 8, cap, 0);
		/* Producer at 11, consumer at 3, producer's cache says full. */
		cr_assert_eq(shmring_spsc_push_bulk(f.prod, v, 8), 8);
		cr_assert_eq(shmring_spsc_pop_bulk(f.cons, v, 3), 3);
		cr_assert_eq(shmring_spsc_push_bulk(f.prod, v, 3), 3);
		uint64_t t = 11, bad[] = {t + 1, 2, 0, UINT64_MAX, t + (1ull << 63), 1};
		atomic_store(f.cons_pos, bad[c]);
		snprintf(what, sizeof(what), "consumer at %llu", (unsigned long long)bad[c]);
		/* Detected by whichever call reads the position first. */
		if (c & 1)
			cr_assert_eq(shmring_spsc_push(f.prod, v), -EPROTO, "%s", what);
		else
			cr_assert_eq(shmring_spsc_free(f.prod), -EPROTO, "%s", what);
		producer_is_dead(f.prod, what);
		/* Putting a sane value back does not revive the handle. */
		atomic_store(f.cons_pos, 3);
		producer_is_dead(f.prod, what);
		/* The consumer's own handle is not poisoned by the producer's verdict. */
		cr_assert_eq(shmring_is_broken(f.cons), 0);
		cr_assert_eq(shmring_spsc_size(f.cons), 8);
		fix_close(&f);
	}
}

Test(hostile, producer_position)
{
	const uint64_t cap = 8;

	for (int c = 0; c < 6; c++) {
		struct fix f;
		uint64_t v[8] = {0};
		char what[64];

		fix_open(&f, 8, cap, 0);
		/* Both at 5, consumer's cache says empty. */
		cr_assert_eq(shmring_spsc_push_bulk(f.prod, v, 5), 5);
		cr_assert_eq(shmring_spsc_pop_bulk(f.cons, v, 5), 5);
		uint64_t h = 5,
			 bad[] = {h + cap + 1, 4, 0, UINT64_MAX, h + (1ull << 63), h + cap + 1000};
		atomic_store(f.prod_pos, bad[c]);
		snprintf(what, sizeof(what), "producer at %llu", (unsigned long long)bad[c]);
		if (c & 1)
			cr_assert_eq(shmring_spsc_pop(f.cons, v), -EPROTO, "%s", what);
		else
			cr_assert_eq(shmring_spsc_size(f.cons), -EPROTO, "%s", what);
		consumer_is_dead(f.cons, what);
		atomic_store(f.prod_pos, 5);
		consumer_is_dead(f.cons, what);
		cr_assert_eq(shmring_is_broken(f.prod), 0);
		fix_close(&f);
	}
}

/* A position that moves backwards is impossible even when it stays within capacity: positions
 * only grow. The size and free queries always read the peer, so they see it at once. */
Test(hostile, backwards_within_capacity)
{
	struct fix f;
	uint64_t v[8] = {0};

	fix_open(&f, 8, 8, 0);
	cr_assert_eq(shmring_spsc_push_bulk(f.prod, v, 8), 8);
	cr_assert_eq(shmring_spsc_pop_bulk(f.cons, v, 6), 6);
	cr_assert_eq(shmring_spsc_free(f.prod), 6); /* the producer has now seen 6 */
	atomic_store(f.cons_pos, 4);		    /* 8 - 4 <= capacity, but behind 6 */
	cr_assert_eq(shmring_spsc_free(f.prod), -EPROTO);
	producer_is_dead(f.prod, "consumer moved back from 6 to 4");
	fix_close(&f);

	fix_open(&f, 8, 8, 0);
	cr_assert_eq(shmring_spsc_push_bulk(f.prod, v, 5), 5);
	cr_assert_eq(shmring_spsc_pop_bulk(f.cons, v, 2), 2);
	cr_assert_eq(shmring_spsc_size(f.cons), 3); /* the consumer has now seen 5 */
	atomic_store(f.prod_pos, 4);		    /* ahead of the consumer's 2, but behind 5 */
	cr_assert_eq(shmring_spsc_size(f.cons), -EPROTO);
	consumer_is_dead(f.cons, "producer moved back from 5 to 4");
	fix_close(&f);
}

/* A hostile position while a zero-copy span is outstanding: the span was valid when it was
 * handed out, but the broken handle must not publish anything more. */
Test(hostile, break_during_reservation)
{
	struct fix f;
	void *slots;
	const void *cslots;
	uint64_t v[8] = {0};

	fix_open(&f, 8, 8, 0);
	cr_assert_eq(shmring_spsc_push_bulk(f.prod, v, 6), 6);
	cr_assert_eq(shmring_spsc_reserve(f.prod, 2, &slots), 2);
	atomic_store(f.cons_pos, 100);
	cr_assert_eq(shmring_spsc_reserve(f.prod, 4, &slots), -EPROTO);
	cr_assert_eq(shmring_spsc_commit(f.prod, 2), -EPROTO);
	cr_assert_eq(atomic_load(f.prod_pos), 6, "a broken producer published");
	fix_close(&f);

	fix_open(&f, 8, 8, 0);
	cr_assert_eq(shmring_spsc_push_bulk(f.prod, v, 2), 2);
	cr_assert_eq(shmring_spsc_peek(f.cons, 2, &cslots), 2);
	atomic_store(f.prod_pos, 1000);
	cr_assert_eq(shmring_spsc_peek(f.cons, 4, &cslots), -EPROTO);
	cr_assert_eq(shmring_spsc_release(f.cons, 2), -EPROTO);
	cr_assert_eq(atomic_load(f.cons_pos), 0, "a broken consumer published");
	fix_close(&f);
}

/* Positions anywhere in the 64-bit space are fine as long as they are consistent: they are
 * free running and never reset, so a ring that wrapped 2^64 must keep working. */
Test(spsc, positions_near_wraparound)
{
	struct shmring_params p = tu_params(8, 8);
	size_t n = (size_t)shmring_memsize(&p);
	unsigned char *m = aligned_alloc(128, n);
	struct shmring *a, *b;
	uint64_t v;

	cr_assert_not_null(m);
	cr_assert_eq(shmring_init(m, n, &p), 0);
	const struct _shmring_hdr *h = (const struct _shmring_hdr *)m;
	atomic_store((_Atomic uint64_t *)(m + h->part[_SHMRING_PART_PROD].off), UINT64_MAX - 3);
	atomic_store((_Atomic uint64_t *)(m + h->part[_SHMRING_PART_CONS].off), UINT64_MAX - 3);
	cr_assert_eq(shmring_attach(m, n, &p, &a), 0);
	cr_assert_eq(shmring_attach(m, n, &p, &b), 0);
	for (uint64_t s = 0; s < 100; s++) {
		v = s;
		cr_assert_eq(shmring_spsc_push(a, &v), 0);
		if (s % 3 == 0)
			cr_assert_eq(shmring_spsc_push(a, &(uint64_t){s + 1000}), 0);
		cr_assert_eq(shmring_spsc_pop(b, &v), 0);
		cr_assert_eq(v, s);
		if (s % 3 == 0) {
			cr_assert_eq(shmring_spsc_pop(b, &v), 0);
			cr_assert_eq(v, s + 1000);
		}
	}
	cr_assert_eq(shmring_spsc_size(b), 0);
	cr_assert_eq(shmring_spsc_free(a), 8);
	cr_assert_eq(shmring_is_broken(a) | shmring_is_broken(b), 0);
	shmring_close(a);
	shmring_close(b);
	free(m);
}

/* In the runner, after every worker has ended: what a crashed worker could not clean up. */
ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
	tu_sweep_report(stats->tests_crashed);
}

/*
 * Found in review: the inline data calls did not check the ring's kind, so shmring_mpmc_push on
 * an SPSC handle crashed, and shmring_spsc_push on an MPMC or message ring said 0 and wrote
 * through fields that kind does not use. Each answers -EINVAL now, and the ring is untouched.
 */
Test(spsc, data_calls_refuse_a_handle_of_another_kind)
{
	struct shmring_params pp[3] = {
	    {.kind = SHMRING_SPSC, .elem_size = 8, .capacity = 8},
	    {.kind = SHMRING_MPMC, .elem_size = 8, .capacity = 8},
	    {.kind = SHMRING_MSG, .capacity = 1024},
	};
	uint64_t e[4] = {1, 2, 3, 4};
	void *w;
	const void *rd;

	for (int i = 0; i < 3; i++) {
		struct shmring *r;
		cr_assert_eq(shmring_create_anon(&pp[i], &r), 0);
		if (i != 0) {
			cr_assert_eq(shmring_spsc_push(r, e), -EINVAL, "kind %d", i);
			cr_assert_eq(shmring_spsc_pop(r, e), -EINVAL, "kind %d", i);
			cr_assert_eq(shmring_spsc_push_burst(r, e, 4), -EINVAL, "kind %d", i);
			cr_assert_eq(shmring_spsc_push_bulk(r, e, 4), -EINVAL, "kind %d", i);
			cr_assert_eq(shmring_spsc_pop_burst(r, e, 4), -EINVAL, "kind %d", i);
			cr_assert_eq(shmring_spsc_pop_bulk(r, e, 4), -EINVAL, "kind %d", i);
			cr_assert_eq(shmring_spsc_reserve(r, 1, &w), -EINVAL, "kind %d", i);
			cr_assert_eq(shmring_spsc_commit(r, 0), -EINVAL, "kind %d", i);
			cr_assert_eq(shmring_spsc_peek(r, 1, &rd), -EINVAL, "kind %d", i);
			cr_assert_eq(shmring_spsc_release(r, 0), -EINVAL, "kind %d", i);
			cr_assert_eq(shmring_spsc_size(r), -EINVAL, "kind %d", i);
			cr_assert_eq(shmring_spsc_free(r), -EINVAL, "kind %d", i);
		}
		if (i != 1) {
			cr_assert_eq(shmring_mpmc_push(r, e), -EINVAL, "kind %d", i);
			cr_assert_eq(shmring_mpmc_pop(r, e), -EINVAL, "kind %d", i);
			cr_assert_eq(shmring_mpmc_push_burst(r, e, 4), -EINVAL, "kind %d", i);
			cr_assert_eq(shmring_mpmc_push_bulk(r, e, 4), -EINVAL, "kind %d", i);
			cr_assert_eq(shmring_mpmc_pop_burst(r, e, 4), -EINVAL, "kind %d", i);
			cr_assert_eq(shmring_mpmc_pop_bulk(r, e, 4), -EINVAL, "kind %d", i);
		}
		/* Nothing went in through the wrong calls. */
		if (i == 0)
			cr_assert_eq(shmring_spsc_size(r), 0);
		else if (i == 1)
			cr_assert_eq(shmring_mpmc_size(r), 0);
		else
			cr_assert_eq(shmring_msg_recv(r, e, sizeof(e), NULL), -EAGAIN);
		shmring_close(r);
	}
}

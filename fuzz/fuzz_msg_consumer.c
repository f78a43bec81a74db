/* SPDX-License-Identifier: MIT */
/*
 * fuzz_msg_consumer: arbitrary bytes as the ring's data and positions, read by the consumer
 * side (and the producer side's view of the consumer position) of a message ring, with a
 * hostile peer rewriting bytes between calls. The rings must never read or write outside the
 * segment (ASan sits right behind it), never hand out a record outside the data part, never
 * loop without bound, and once -EPROTO was returned say -EPROTO forever.
 *
 * Input: byte 0: bit 0 MPSC, bit 1 a producer handle too; byte 1: log2 capacity 6 + b % 5;
 * 8 bytes consumer position, 8 bytes producer position; then capacity bytes of data (missing
 * bytes are zero); then (op, offset16, value) triples: op % 8 picks peek+release, recv (a
 * recv_burst when value is odd), recover (is_dead answering from the input), a producer call
 * (send; or, when offset >> 13 is 4 to 7, reserve, commit, abort or send_burst), a byte write
 * into the data, a position write, a byte write into the MPSC producers' claim records, and a
 * write of the consumer's "freed up to" mark near its position (msg.h).
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <shmring/shmring.h>

#include "fuzz_input.h"
#include "ring/layout.h"

#define CAP_MAX	 1024u
#define CHECK(c) ((c) ? (void)0 : __builtin_trap())

/* is_dead for recover: the answer for each pid comes from the op's value byte. */
static int dead_some(uint32_t pid, void *arg)
{
	uint8_t salt = *(const uint8_t *)arg;

	return ((pid ^ salt) & 1) || salt == 0xff;
}

/*
 * The producer's other calls on the hostile ring (found missing in review): a reservation
 * must lie inside the data part, 8-byte aligned, and be writable whole; a commit (of any
 * length, too long included), an abort and a burst must keep to the segment.
 */
static void producer_op(struct shmring *pr, uint8_t *d, uint64_t cap, uint32_t off, uint8_t val)
{
	static uint8_t src[CAP_MAX];
	uint32_t len = off % (uint32_t)(cap / 4);
	void *w;

	switch (off >> 13) {
	case 4:
		if (shmring_msg_reserve(pr, len, &w) == 0) {
			CHECK((uint8_t *)w >= d + 8 && (uint8_t *)w + len <= d + cap);
			CHECK(((uintptr_t)w & 7) == 0);
			memset(w, val, len);
		}
		break;
	case 5:
		(void)shmring_msg_commit(pr, (off >> 4) % (uint32_t)(cap / 4 + 8), val);
		break;
	case 6:
		(void)shmring_msg_abort(pr);
		break;
	default: {
		struct shmring_msgvec v[4];
		unsigned k = val % 5;
		for (unsigned i = 0; i < k; i++)
			v[i] = (struct shmring_msgvec){
			    .base = src, .len = (off >> (3 * i)) % (uint32_t)(cap / 4), .type = i};
		CHECK(shmring_msg_send_burst(pr, v, k) <= (int)k);
		break;
	}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct input in = {data, size};
	struct shmring_params prm = {0};
	struct shmring *r, *pr = NULL;
	uint8_t b0 = next8(&in);
	uint64_t cap = 1ull << (6 + next8(&in) % 5);
	static uint8_t buf[CAP_MAX];

	prm.kind = (b0 & 1) ? SHMRING_MSG_MPSC : SHMRING_MSG;
	prm.capacity = cap;
	ssize_t sz = shmring_memsize(&prm);
	CHECK(sz > 0);
	/* Exactly the segment's size, so that ASan catches a byte past it. */
	uint8_t *mem = aligned_alloc(128, ((size_t)sz + 127) & ~(size_t)127);
	CHECK(mem != NULL);
	CHECK(shmring_init(mem, (size_t)sz, &prm) == 0);
	CHECK(shmring_attach(mem, (size_t)sz, &prm, &r) == 0);
	if (b0 & 2)
		CHECK(shmring_attach(mem, (size_t)sz, &prm, &pr) == 0);
	uint8_t *d = r->data;
	CHECK(d + cap <= mem + sz);
	atomic_store(r->cons_pos, next64(&in));
	atomic_store(r->prod_pos, next64(&in));
	for (uint64_t i = 0; i < cap; i++)
		d[i] = next8(&in);
	/* A fresh handle sees the hostile positions at attach. */
	struct shmring *c2;
	if (shmring_attach(mem, (size_t)sz, &prm, &c2) == 0) {
		shmring_close(r);
		r = c2;
	}

	int broken = 0;
	for (unsigned ops = 0; ops < 256; ops++) {
		uint8_t op = next8(&in) % 8;
		uint32_t off = next8(&in);
		off |= (uint32_t)next8(&in) << 8;
		uint8_t val = next8(&in);
		const void *p;
		uint32_t n, t;
		int rc = 0;

		switch (op) {
		case 0:
			/* Each successful peek consumes at least 8 bytes; the ring holds at most
			 * cap, and a peek reads the producer position at most once. */
			for (unsigned k = 0; k <= cap / 8 + 1; k++) {
				rc = shmring_msg_peek(r, &p, &n, &t);
				if (rc)
					break;
				CHECK((const uint8_t *)p >= d + 8 &&
				      (const uint8_t *)p + n <= d + cap);
				CHECK(n <= shmring_msg_max(r));
				/* The record lies below the producer position the consumer read
				 * (found in review: a peek without that check passed). */
				CHECK(8 + (((uint64_t)n + 7) & ~7ull) <=
				      r->c.tail_cache - r->c.head);
				volatile uint8_t sink = 0;
				for (uint32_t i = 0; i < n; i++)
					sink ^= ((const uint8_t *)p)[i];
				(void)sink;
				CHECK(shmring_msg_release(r) == 0);
			}
			break;
		case 1:
			if (val & 1) { /* a burst of up to 4, each into its own part of buf */
				struct shmring_msgvec v[4];
				unsigned k = (val >> 1) % 5;
				for (unsigned i = 0; i < k; i++)
					v[i] = (struct shmring_msgvec){
					    .base = buf + i * (CAP_MAX / 4),
					    .cap = (off >> (4 * i)) % (CAP_MAX / 4 + 1)};
				rc = shmring_msg_recv_burst(r, v, k);
				CHECK(rc <= (int)k);
				for (int i = 0; i < rc; i++)
					CHECK(v[i].len <= v[i].cap);
				if (k == 0) /* 0 for n = 0, broken or not */
					continue;
				if (rc > 0 && shmring_is_broken(r)) { /* broke after the first */
					broken = 1;
					continue;
				}
				break;
			}
			rc = shmring_msg_recv(r, buf, off % (CAP_MAX + 1), &t);
			CHECK(rc < 0 || (uint32_t)rc <= off % (CAP_MAX + 1));
			break;
		case 2:
			rc = shmring_msg_recover(r, dead_some, &val);
			CHECK(rc == 0 || rc == 1 || rc == -EPROTO);
			break;
		case 3:
			if (pr && (off >> 13) >= 4) {
				producer_op(pr, d, cap, off, val);
			} else if (pr) {
				int prc = shmring_msg_send(pr, buf, off % (uint32_t)(cap / 4), val);
				/* -EUSERS: the harness's own writes can make every claim
				 * record's owner read alive (found in review); -EBUSY: an
				 * MPSC reservation left open by producer_op(); -EOWNERDEAD:
				 * recover() discarded the claim under the send. */
				CHECK(prc == 0 || prc == -EAGAIN || prc == -EPROTO ||
				      prc == -EMSGSIZE || prc == -EUSERS || prc == -EBUSY ||
				      prc == -EOWNERDEAD);
			}
			break;
		case 4:
			d[off % cap] = val;
			break;
		case 5:
			if (val & 1)
				atomic_store(r->prod_pos, atomic_load(r->prod_pos) + (off & 0x7ff) -
							      (val & 0x80 ? 0x400 : 0));
			else
				atomic_store(r->cons_pos, off);
			break;
		case 6: {
			const struct _shmring_hdr *h = (const struct _shmring_hdr *)mem;
			uint64_t ro = h->part[_SHMRING_PART_MSGREC].off;
			uint64_t rs = h->part[_SHMRING_PART_MSGREC].size;
			if (rs)
				mem[ro + off % rs] = val;
			break;
		}
		case 7: /* cons_pos + 1: the consumer block's "freed up to" word */
			atomic_store(r->cons_pos + 1, atomic_load(r->cons_pos) + (off & 0x7ff) -
							  (val & 0x80 ? 0x400 : 0));
			break;
		}
		if (op <= 2) {
			if (broken)
				CHECK(rc == -EPROTO);
			if (rc == -EPROTO)
				broken = 1;
			CHECK(broken == shmring_is_broken(r));
		}
	}
	if (pr)
		shmring_close(pr);
	shmring_close(r);
	free(mem);
	return 0;
}

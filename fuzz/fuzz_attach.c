/* SPDX-License-Identifier: MIT */
/*
 * fuzz_attach: the input is a whole segment, as a hostile or broken peer could have left it.
 * The kind the caller expects is the one the input's header names, if it is MPMC (either kind)
 * or a message ring, and SPSC otherwise, so that every kind's validation and operations meet any
 * bytes.
 *
 * shmring_attach() must either refuse it with a negative errno or return a handle whose every
 * operation stays inside the input (ASan sees the exact input size) and ends. The bytes after
 * the ring's total size, if any, script those operations; with none, a fixed script runs.
 *
 * Most mutations break the header's check word, which would stop the fuzzer at the first
 * comparison; a hostile peer can compute the check as well as we can, so every input is also
 * tried a second time with the check recomputed, to reach the validation behind it.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <shmring/shmring.h>

#include "ring/layout.h"

#define SCRATCH_ELEMS 8u

static const uint8_t default_script[] = {
    0,	  1,	2,    3,    4,	  5,	6,    7,    8,	  9,	10,   11,   0x12, 0x23, 0x34, 0x45,
    0x56, 0x67, 0x78, 0x89, 0x9a, 0xab, 0xbc, 0xcd, 0xde, 0xef, 0xf0, 0x01, 0x12, 0x23, 0x34, 0x45,
};

static int trace; /* FUZZ_TRACE=1: say what attach answered, to read a crash or check a seed */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	trace = getenv("FUZZ_TRACE") != NULL;
	return 0;
}

/* Bounds of what the ring may touch: [lo, hi) of the input. */
static const unsigned char *lo, *hi;

static void in_bounds(const void *p, uint64_t n)
{
	const unsigned char *c = p;

	if (c < lo || c > hi || n > (uint64_t)(hi - c))
		__builtin_trap();
}

/* One operation chosen by op; the count comes from its high bits, so that sizes around the
 * capacity (where the all-or-none and wrap paths live) are common. */
static void one_op(struct shmring *r, uint8_t op, unsigned char *scratch)
{
	uint64_t cap = shmring_capacity(r);
	uint32_t es = shmring_elem_size(r);
	unsigned n = op >> 4;
	void *slots;
	const void *cslots;
	int rc;

	if (n > SCRATCH_ELEMS)
		n = (unsigned)(n == 15 ? cap
				       : cap + (n & 1)); /* only passed to the counting calls */
	switch (op & 15) {
	case 0:
		rc = shmring_spsc_push(r, scratch);
		break;
	case 1:
		rc = shmring_spsc_pop(r, scratch);
		break;
	case 2:
		rc = shmring_spsc_push_burst(r, scratch, n > SCRATCH_ELEMS ? SCRATCH_ELEMS : n);
		break;
	case 3:
		rc = shmring_spsc_push_bulk(r, scratch, n > SCRATCH_ELEMS ? SCRATCH_ELEMS : n);
		break;
	case 4:
		rc = shmring_spsc_pop_burst(r, scratch, n > SCRATCH_ELEMS ? SCRATCH_ELEMS : n);
		break;
	case 5:
		rc = shmring_spsc_pop_bulk(r, scratch, n > SCRATCH_ELEMS ? SCRATCH_ELEMS : n);
		break;
	case 6:
		rc = shmring_spsc_reserve(r, n, &slots);
		if (rc > 0) {
			in_bounds(slots, (uint64_t)rc * es);
			memset(slots, 0xa5, (size_t)rc * es);
			if (shmring_spsc_commit(r, (unsigned)rc) != 0)
				__builtin_trap();
		}
		break;
	case 7:
		rc = shmring_spsc_peek(r, n, &cslots);
		if (rc > 0) {
			in_bounds(cslots, (uint64_t)rc * es);
			/* Read every byte, so ASan checks the whole span. */
			unsigned char x = 0;
			for (uint64_t i = 0; i < (uint64_t)rc * es; i++)
				x ^= ((const unsigned char *)cslots)[i];
			scratch[0] ^= x;
			if (shmring_spsc_release(r, (unsigned)rc) != 0)
				__builtin_trap();
		}
		break;
	case 8: {
		int64_t s = shmring_spsc_size(r);
		if (s > (int64_t)cap || (s < 0 && s != -EPROTO))
			__builtin_trap();
		return;
	}
	case 9: {
		int64_t f = shmring_spsc_free(r);
		if (f > (int64_t)cap || (f < 0 && f != -EPROTO))
			__builtin_trap();
		return;
	}
	case 10:
		rc = shmring_spsc_commit(r, n);
		break;
	case 11:
		rc = shmring_spsc_release(r, n);
		break;
	default:
		/* A second attach of the same memory shares the registry entry. */
		return;
	}
	if (rc < 0 && rc != -EAGAIN && rc != -EPROTO && rc != -EINVAL)
		__builtin_trap();
}

/* One MPMC operation (either kind): the ring may be anything that passed attach. A runs ring
 * says -EUSERS to a push when every producer arena reads taken. */
static void one_mpmc_op(struct shmring *r, uint8_t op, unsigned char *scratch)
{
	unsigned n = (op >> 3) % (SCRATCH_ELEMS + 1);
	int rc;

	switch (op & 7) {
	case 0:
		rc = shmring_mpmc_push(r, scratch);
		break;
	case 1:
		rc = shmring_mpmc_pop(r, scratch);
		break;
	case 2:
		rc = shmring_mpmc_push_burst(r, scratch, n);
		break;
	case 3:
		rc = shmring_mpmc_pop_burst(r, scratch, n);
		break;
	case 4:
		rc = shmring_mpmc_push_bulk(r, scratch, n);
		break;
	case 5:
		rc = shmring_mpmc_pop_bulk(r, scratch, n);
		break;
	case 6:
		rc = shmring_mpmc_recover(r);
		break;
	default: {
		int64_t sz = shmring_mpmc_size(r);
		if (sz > (int64_t)shmring_capacity(r) && sz != -EPROTO)
			__builtin_trap();
		return;
	}
	}
	if (rc < 0 && rc != -EAGAIN && rc != -EPROTO && rc != -EINVAL && rc != -EUSERS)
		__builtin_trap();
}

static int all_dead(uint32_t pid, void *arg)
{
	(void)pid, (void)arg;
	return 1;
}

/* One message-ring operation; records handed out must lie inside the input. */
static void one_msg_op(struct shmring *r, uint8_t op, unsigned char *scratch, size_t room)
{
	uint32_t len = (uint32_t)((op >> 3) * 37u % (room + 1));
	const void *p;
	void *w;
	uint32_t n;
	int rc;

	switch (op & 7) {
	case 0:
		rc = shmring_msg_send(r, scratch, len, op);
		break;
	case 1:
		rc = shmring_msg_recv(r, scratch, (uint32_t)room, NULL);
		if (rc > (int)room)
			__builtin_trap();
		break;
	case 2:
		rc = shmring_msg_peek(r, &p, &n, NULL);
		if (rc == 0) {
			in_bounds(p, n);
			unsigned char x = 0;
			for (uint32_t i = 0; i < n; i++)
				x ^= ((const unsigned char *)p)[i];
			scratch[0] ^= x;
			if (shmring_msg_release(r) != 0)
				__builtin_trap();
		}
		break;
	case 3:
	case 4:
		rc = shmring_msg_reserve(r, len, &w);
		if (rc == 0) {
			in_bounds(w, len);
			memset(w, 0x5a, len);
			rc = (op & 7) == 3 ? shmring_msg_commit(r, len / 2, 1)
					   : shmring_msg_abort(r);
		}
		break;
	case 5:
		rc = shmring_msg_recover(r, all_dead, NULL);
		break;
	default:
		return;
	}
	if (rc < 0 && rc != -EAGAIN && rc != -EPROTO && rc != -EINVAL && rc != -EMSGSIZE &&
	    rc != -EOWNERDEAD && rc != -EUSERS && rc != -EBUSY)
		__builtin_trap();
}

static void try_attach(unsigned char *mem, size_t len)
{
	struct shmring_params expect = {.kind = SHMRING_SPSC};

	if (len >= _SHMRING_HDR_SIZE) {
		uint32_t k = ((const struct _shmring_hdr *)mem)->kind;
		if (k == SHMRING_MPMC || k == SHMRING_MPMC_RUNS || k == SHMRING_MSG ||
		    k == SHMRING_MSG_MPSC)
			expect.kind = k;
	}
	struct shmring *r = NULL, *r2 = NULL;

	int rc = shmring_attach(mem, len, &expect, &r);
	if (trace)
		fprintf(stderr, "attach(%zu bytes): %d %s, elem_size %u, capacity %llu\n", len, rc,
			shmring_strerror(rc), rc ? 0 : shmring_elem_size(r),
			rc ? 0ull : (unsigned long long)shmring_capacity(r));
	if (rc != 0) {
		if (rc > 0 || r != NULL)
			__builtin_trap();
		return;
	}
	uint64_t cap = shmring_capacity(r);
	uint32_t es = shmring_elem_size(r);
	int msg = expect.kind == SHMRING_MSG || expect.kind == SHMRING_MSG_MPSC;
	if (!cap || (cap & (cap - 1)) || (!msg && cap > SHMRING_CAPACITY_MAX) ||
	    (!msg && (!es || es > SHMRING_ELEM_MAX)))
		__builtin_trap();
	lo = mem;
	hi = mem + len;

	/* A runs ring's producers: the header's, as attach validated them (and copied them). */
	uint32_t np = expect.kind == SHMRING_MPMC_RUNS ? r->m.producers : 0;
	size_t total = (size_t)shmring_memsize(&(struct shmring_params){
	    .kind = expect.kind, .elem_size = msg ? 0 : es, .capacity = cap, .producers = np});
	if (total > len)
		__builtin_trap();
	const uint8_t *script = default_script;
	size_t nscript = sizeof(default_script);
	if (len > total) {
		script = mem + total;
		nscript = len - total;
	}
	/* The script lives in the input, which the ring may not write: copy it out first. */
	uint8_t *ops = malloc(nscript);
	size_t room = msg ? shmring_msg_max(r) : 0;
	unsigned char *scratch = msg ? calloc(1, room + 1) : calloc(SCRATCH_ELEMS, es);
	if (!ops || !scratch)
		__builtin_trap();
	memcpy(ops, script, nscript);
	if (nscript > 256)
		nscript = 256;
	for (size_t i = 0; i < nscript; i++) {
		if (expect.kind == SHMRING_MPMC || expect.kind == SHMRING_MPMC_RUNS) {
			one_mpmc_op(r, ops[i], scratch);
			continue;
		}
		if (msg) {
			one_msg_op(r, ops[i], scratch, room);
			continue;
		}
		if ((ops[i] & 15) == 12 && !r2) {
			if (shmring_attach(mem, len, &expect, &r2) == 0)
				one_op(r2, ops[i] >> 4, scratch);
			continue;
		}
		one_op(r, ops[i], scratch);
	}
	free(ops);
	free(scratch);
	shmring_close(r2);
	shmring_close(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned char *mem = NULL;

	/* posix_memalign, not aligned_alloc: the length must stay exactly the input's, so that
	 * ASan flags a single byte read past it. */
	if (posix_memalign((void **)&mem, _SHMRING_BLOCK, size ? size : 1) != 0)
		return 0;
	memcpy(mem, data, size);
	try_attach(mem, size);

	if (size >= _SHMRING_HDR_SIZE) {
		struct _shmring_hdr *h = (struct _shmring_hdr *)mem;
		memcpy(mem, data, size);
		uint64_t c = _shmring_hdr_check(h);
		if (c != h->check) {
			h->check = c;
			try_attach(mem, size);
		}
	}
	free(mem);
	return 0;
}

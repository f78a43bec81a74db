/* SPDX-License-Identifier: MIT */
/*
 * fuzz_sync: the sleep/wake words and the liveness slots of sync/ as a hostile peer leaves them.
 *
 * A ring (SPSC, MPMC or MPSC messages; futex or semaphore back-end, from the first byte) lives
 * in memory of exactly its size. Two handles, a producer and a consumer, run a script read from
 * the input. Between their calls the script writes arbitrary words anywhere in the sync part:
 * the waiter counts, seq numbers and bits of both wait queues, the semaphores, the liveness
 * slots and their "seen" flags. Every call must end (the waits have deadlines of at most a few
 * milliseconds), return one of its documented values, and stay inside the segment (ASan). A
 * hostile peer may make a wait time out, wake it early, or make a role read dead or alive; it
 * must not make a call crash, loop for ever or write outside the ring.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <shmring/shmring.h>

#include "ring/layout.h"

#define CHECK(c) ((c) ? (void)0 : __builtin_trap())

struct input {
	const uint8_t *p;
	size_t n;
};

static uint8_t next8(struct input *in)
{
	if (!in->n)
		return 0;
	in->n--;
	return *in->p++;
}

static uint32_t next32(struct input *in)
{
	uint32_t v = 0;

	for (int i = 0; i < 4; i++)
		v = v << 8 | next8(in);
	return v;
}

/* A deadline ms milliseconds from now (0: already passed). */
static struct timespec in_ms(unsigned ms)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	t.tv_nsec += (long)ms * 1000000L;
	t.tv_sec += t.tv_nsec / 1000000000L;
	t.tv_nsec %= 1000000000L;
	return t;
}

/* The values a data call may return here: a count, 0, or one of these. */
static int ok_rc(int rc)
{
	return rc >= 0 || rc == -EAGAIN || rc == -ETIMEDOUT || rc == -EPIPE || rc == -EPROTO ||
	       rc == -EINVAL || rc == -EBUSY || rc == -EUSERS || rc == -EOWNERDEAD;
}

static void push(struct shmring *p, uint32_t kind, unsigned wait_ms, int wait)
{
	uint64_t v = 42;
	struct timespec d = in_ms(wait_ms);
	int rc;

	if (kind == SHMRING_SPSC)
		rc = wait ? shmring_spsc_push_wait(p, &v, &d) : shmring_spsc_push(p, &v);
	else if (kind == SHMRING_MPMC)
		rc = wait ? shmring_mpmc_push_wait(p, &v, &d) : shmring_mpmc_push(p, &v);
	else
		rc = wait ? shmring_msg_send_wait(p, &v, 8, 1, &d) : shmring_msg_send(p, &v, 8, 1);
	CHECK(ok_rc(rc));
}

static void pop(struct shmring *c, uint32_t kind, unsigned wait_ms, int wait)
{
	uint64_t v[4];
	struct timespec d = in_ms(wait_ms);
	int rc;

	if (kind == SHMRING_SPSC)
		rc = wait ? shmring_spsc_pop_wait(c, v, &d) : shmring_spsc_pop(c, v);
	else if (kind == SHMRING_MPMC)
		rc = wait ? shmring_mpmc_pop_wait(c, v, &d) : shmring_mpmc_pop(c, v);
	else
		rc = wait ? shmring_msg_recv_wait(c, v, sizeof(v), NULL, &d)
			  : shmring_msg_recv(c, v, sizeof(v), NULL);
	CHECK(ok_rc(rc) || rc == -EMSGSIZE);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint32_t kinds[] = {SHMRING_SPSC, SHMRING_MPMC, SHMRING_MSG_MPSC};
	struct input in = {data, size};
	uint8_t b0 = next8(&in);
	uint32_t kind = kinds[(b0 & 3) % 3];
	struct shmring_params p = {.kind = kind,
				   .elem_size = kind == SHMRING_MSG_MPSC ? 0 : 8,
				   .capacity = kind == SHMRING_MSG_MPSC ? 1024 : 8,
				   .flags = (b0 & 4) ? SHMRING_F_SEMAPHORE : 0};
	struct shmring_params e = {.kind = kind};
	struct shmring_wait_policy pol = {.spin_ns = 2000, .yields = UINT32_MAX, .slice_ms = 2};
	struct shmring *pr, *co;
	unsigned waits = 0;

	ssize_t sz = shmring_memsize(&p);
	CHECK(sz > 0);
	uint8_t *mem = aligned_alloc(128, ((size_t)sz + 127) & ~(size_t)127);
	CHECK(mem != NULL);
	CHECK(shmring_init(mem, (size_t)sz, &p) == 0);
	CHECK(shmring_attach(mem, (size_t)sz, &e, &pr) == 0);
	CHECK(shmring_attach(mem, (size_t)sz, &e, &co) == 0);
	shmring_set_wait_policy(pr, &pol);
	shmring_set_wait_policy(co, &pol);
	const struct _shmring_hdr *h = (const struct _shmring_hdr *)mem;
	uint8_t *sync = mem + h->part[_SHMRING_PART_SYNC].off;
	uint64_t sync_len = h->part[_SHMRING_PART_SYNC].size;
	CHECK(sync_len >= 8 && h->part[_SHMRING_PART_SYNC].off + sync_len <= (uint64_t)sz);

	for (unsigned ops = 0; in.n && ops < 256; ops++) {
		uint8_t op = next8(&in);
		/* Waits cost up to a few ms each: a handful per input keeps the fuzzer fast. */
		int wait = (op & 0x80) && waits < 4;
		unsigned ms = (op >> 4) & 3;

		waits += wait;
		switch (op & 7) {
		case 0: /* the hostile peer: a word anywhere in the sync part */
		case 1: {
			uint32_t off = next32(&in) % (uint32_t)(sync_len / 4) * 4;
			uint32_t v = next32(&in);
			memcpy(sync + off, &v, 4);
			break;
		}
		case 2:
			push(pr, kind, ms, wait);
			break;
		case 3:
			pop(co, kind, ms, wait);
			break;
		case 4: {
			int rc = shmring_claim(op & 8 ? co : pr,
					       op & 8 ? SHMRING_F_CONSUMER : SHMRING_F_PRODUCER);
			CHECK(rc == 0 || rc == -EBUSY || rc == -EINVAL);
			break;
		}
		case 5: {
			int rc =
			    shmring_peer_alive(op & 8 ? pr : co, op & 8 ? SHMRING_ROLE_CONSUMER
									: SHMRING_ROLE_PRODUCER);
			CHECK(rc == 0 || rc == 1 || rc < 0);
			break;
		}
		case 6: /* a consumer or producer handle goes and comes back (close wakes peers) */
			if (op & 8) {
				shmring_close(co);
				CHECK(shmring_attach(mem, (size_t)sz, &e, &co) == 0);
				shmring_set_wait_policy(co, &pol);
			} else {
				shmring_close(pr);
				CHECK(shmring_attach(mem, (size_t)sz, &e, &pr) == 0);
				shmring_set_wait_policy(pr, &pol);
			}
			break;
		default: { /* counters read back */
			struct shmring_stats st;
			CHECK(shmring_stats(co, &st) == 0);
			break;
		}
		}
	}
	shmring_close(co);
	shmring_close(pr);
	free(mem);
	return 0;
}

/* SPDX-License-Identifier: MIT */
/*
 * Differential harness for the MPMC ring. Several simulated participants (one handle and one
 * participant record each, with fake owner ids) run pushes and pops against a FIFO model; any of
 * them may "die" at any step of an operation (the test hook abandons it there), another recovers;
 * and the input may write hostile values into the shared indices, entries and records.
 *
 * Checked while nothing hostile was written: every pop returns the model's oldest element, or an
 * element of a dead producer (at most once), or skips elements only as far as dead consumers
 * allow (one each); no element twice; push says full only if the ring really can be full.
 * At the end, after a last recovery and a drain, the ring must take exactly its capacity again
 * and give it back in order: no slot is leaked by a death or a recovery.
 * After a hostile write: every call returns (bounded), never crashes, never touches memory out
 * of the mapping (ASan).
 *
 * Bulk mode (bit 4 of byte 0): pushes and pops are bursts and all-or-none bulks of 1..16
 * elements; a bulk must move all or nothing, and a death inside one counts as n deaths.
 *
 * Input: byte 0 capacity (1..128, bits 0-2) and mode (bit 4: bulk calls), byte 1 participants
 * (2..5), then 2-3 bytes per operation.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <shmring/shmring.h>

#include "fuzz_die_hook.h"

#define MAXPART	 5
#define MAXOWN	 512
#define OWNER(i) (0x5000ull + (uint64_t)(i))
/* The model keeps what dead consumers may have dropped (up to 16 per death in bulk mode) until
 * a later pop skips it: room for every record dying once in a bulk, and the ring. */
#define MODELQ 2048

static unsigned char dead_owner[MAXOWN];

static int alive_fn(uint64_t owner, void *arg)
{
	(void)arg;
	uint64_t i = owner - 0x5000ull;
	if (i >= MAXOWN)
		return 1; /* a real process: the harness itself, alive */
	return !dead_owner[i];
}

struct model {
	uint64_t q[MODELQ]; /* pushed, not yet popped (or dropped by a dead consumer) */
	unsigned head, n;
	uint64_t pending[64 * 64];   /* values of dead producers: may appear once, anywhere */
	unsigned char must[64 * 64]; /* its producer died publishing it: recovery publishes it */
	unsigned npending;
	unsigned lose; /* dead consumers: elements that may be skipped */
	unsigned unrecovered;
};

#define CHECK(c)                                                                                   \
	do {                                                                                       \
		if (!(c)) {                                                                        \
			fprintf(stderr, "fuzz_mpmc: check failed: %s (line %d)\n", #c, __LINE__);  \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

static struct model m;

/* A push that returned: its value joins the queue. */
static void model_push(uint64_t v)
{
	CHECK(m.n < MODELQ);
	m.q[(m.head + m.n++) % MODELQ] = v;
}

/* A value a pop returned: a dead producer's (once), or the oldest, skipping only as many as
 * dead consumers may have taken. */
static void model_pop(uint64_t v)
{
	for (unsigned k = 0; k < m.npending; k++)
		if (m.pending[k] == v) {
			m.npending--;
			m.pending[k] = m.pending[m.npending];
			m.must[k] = m.must[m.npending];
			return;
		}
	for (;;) {
		CHECK(m.n > 0); /* invented or duplicated */
		uint64_t f = m.q[m.head];
		m.head = (m.head + 1) % MODELQ;
		m.n--;
		if (f == v)
			return;
		CHECK(m.lose > 0); /* lost beyond the guarantee */
		m.lose--;
	}
}

static struct shmring *ring;
static struct shmring *part[MAXPART];
static unsigned char broke[MAXPART]; /* part[i] has said -EPROTO */
static unsigned nown;

/*
 * Once shared memory holds hostile words the model is void, but not the contract: every call
 * returns a count up to n, -EAGAIN, -EINVAL (a bulk larger than the ring) or -EPROTO, and a
 * handle that said -EPROTO says it to every later call and reads broken (found in review:
 * nothing was checked after a hostile write). ok is what the untainted run accepts besides.
 */
static void check_tainted(unsigned who, int rc, int n)
{
	if (broke[who])
		CHECK(rc == -EPROTO);
	CHECK(rc <= n && (rc >= 0 || rc == -EAGAIN || rc == -EPROTO || rc == -EINVAL));
	if (rc == -EPROTO) {
		broke[who] = 1;
		CHECK(shmring_is_broken(part[who]) == 1);
	}
}

static struct shmring *new_participant(void)
{
	size_t len;
	void *base = shmring_base(ring, &len);
	struct shmring_params e = {.kind = SHMRING_MPMC};
	struct shmring *h = NULL;
	if (nown >= MAXOWN || shmring_attach(base, len, &e, &h) != 0)
		return NULL;
	shmring_mpmc_set_owner(h, OWNER(nown));
	nown++;
	return h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	/* 1 to 128: from 128 on, entries are laid out in runs across regions (mpmc.h). */
	uint64_t cap = 1ull << (data[0] % 8);
	unsigned np = 2 + data[1] % (MAXPART - 1);
	struct shmring_params p = {.kind = SHMRING_MPMC, .elem_size = 8, .capacity = cap};
	if (shmring_create_anon(&p, &ring) != 0)
		return 0;
	memset(&m, 0, sizeof(m));
	memset(dead_owner, 0, sizeof(dead_owner));
	nown = 0;
	/* Process-wide, so that attach too sees the fake owners as the harness does (else the
	 * kernel says pid 0x5002 is gone and attach takes over a live participant's record). */
	shmring_mpmc_set_alive_fn(NULL, alive_fn, NULL);
	memset(broke, 0, sizeof(broke));
	for (unsigned i = 0; i < np; i++)
		part[i] = new_participant();
	int tainted = 0, bulk = (data[0] & 0x10) != 0;
	uint64_t next = 1;
	size_t len;
	unsigned char *base = shmring_base(ring, &len);

	for (size_t i = 2; i + 1 < size && i < 2 + 3 * 256; i += 2) {
		unsigned who = data[i] % np, op = data[i + 1] % 16;
		struct shmring *h = part[who];
		if (!h)
			continue;
		/* Bulk mode (bit 4 of byte 0): pushes and pops move n = 1..16 elements, as a
		 * burst (even op) or all or none (odd op). */
		unsigned n = bulk ? 1 + (data[i + 1] >> 4) : 1;
		uint64_t v[16];
		if (op < 12) { /* push, pop */
			int rc;
			if (op < 6) {
				for (unsigned k = 0; k < n; k++)
					v[k] = next++;
				rc = !bulk    ? shmring_mpmc_push(h, v)
				     : op & 1 ? shmring_mpmc_push_bulk(h, v, n)
					      : shmring_mpmc_push_burst(h, v, n);
			} else {
				rc = !bulk    ? shmring_mpmc_pop(h, v)
				     : op & 1 ? shmring_mpmc_pop_bulk(h, v, n)
					      : shmring_mpmc_pop_burst(h, v, n);
			}
			if (tainted) {
				check_tainted(who, rc, (int)n);
				continue;
			}
			CHECK(rc >= 0 || rc == -EAGAIN ||
			      (rc == -EINVAL && bulk && (op & 1) && n > cap));
			if (!bulk)
				rc = rc == 0 ? 1 : rc;
			else if (op & 1)
				CHECK(rc < 0 || rc == (int)n); /* all or none */
			CHECK(rc <= (int)n);
			/* A burst that finds no run goes on as a single push or pop, so it says
			 * -EAGAIN only where one would; a bulk may say it with n ready (see
			 * shmring_mpmc_pop_bulk). A pop says it only if everything left may be
			 * what dead consumers hold, dead participants not yet recovered or not:
			 * SCQ's threshold must not run out with an element that a pop can reach
			 * (a corner a review could not rule out, with a stopped consumer). */
			if (rc == -EAGAIN && (!bulk || !(op & 1))) {
				if (op >= 6)
					CHECK(m.n <= m.lose);
				else if (m.unrecovered == 0)
					CHECK(m.n + m.npending >= cap);
			}
			for (int k = 0; k < rc; k++) {
				if (op < 6)
					model_push(v[k]);
				else
					model_pop(v[k]);
			}
			/* The ring holds at most cap of them; the rest are what dead consumers
			 * may have dropped. */
			CHECK(m.n <= cap + m.lose);
		} else if (op < 14) { /* die inside a push or pop, at step data[i+2] */
			if (i + 2 >= size)
				break;
			countdown = 1 + data[i + 2] % (bulk ? 64 : 12);
			i++;
			shmring_mpmc_set_hook(h, die_hook, NULL);
			for (unsigned k = 0; k < n; k++)
				v[k] = next++;
			int rc;
			if (op == 12)
				rc = !bulk   ? shmring_mpmc_push(h, v)
				     : n & 1 ? shmring_mpmc_push_bulk(h, v, n)
					     : shmring_mpmc_push_burst(h, v, n);
			else
				rc = !bulk   ? shmring_mpmc_pop(h, v)
				     : n & 1 ? shmring_mpmc_pop_bulk(h, v, n)
					     : shmring_mpmc_pop_burst(h, v, n);
			shmring_mpmc_set_hook(h, NULL, NULL);
			if (rc != -ECANCELED) {
				countdown = 0;
				if (tainted) {
					check_tainted(who, rc, (int)n);
					continue;
				}
				/* it finished: account as a normal op (found in review: its return
				 * went unchecked) */
				CHECK(rc >= 0 || rc == -EAGAIN ||
				      (rc == -EINVAL && bulk && (n & 1) && n > cap));
				CHECK(!bulk || !(n & 1) || rc < 0 || rc == (int)n);
				CHECK(rc <= (int)n);
				if (!bulk)
					rc = rc == 0 ? 1 : rc;
				for (int k = 0; k < rc; k++) {
					if (op == 12)
						model_push(v[k]);
					else
						model_pop(v[k]);
				}
				continue;
			}
			/* died: its record stays; its owner is now dead */
			uint64_t o = h->m.owner - 0x5000ull;
			if (o < MAXOWN)
				dead_owner[o] = 1;
			shmring_close(h);
			part[who] = new_participant();
			broke[who] = 0;
			m.unrecovered++;
			if (op == 12) {
				/* A single push that died before it began publishing (at FILLED
				 * or before) was never pushed: its element must never appear. One
				 * that died in an enqueue phase is published, exactly once, by
				 * recovery (shmring_mpmc_recover()). Found in review: the model
				 * took either for "may appear", and a recovery that dropped such
				 * an element passed. */
				if (!bulk && died_point < SHMRING_MPMC_HOOK_ENQ_FAA)
					continue;
				for (unsigned k = 0; k < n; k++) {
					m.must[m.npending] = !bulk;
					m.pending[m.npending++] = v[k];
				}
			} else if (bulk || died_point != SHMRING_MPMC_HOOK_DEQ_FAA) {
				/* Dead before its fetch-and-add (DEQ_FAA), a single pop took
				 * nothing; else it may have taken n (a dead producer's published
				 * element among them: the final check counts those). */
				m.lose += n;
			}
		} else if (op == 14) { /* recover */
			int rc = shmring_mpmc_recover(h);
			if (tainted) {
				if (broke[who])
					CHECK(rc == -EPROTO);
				if (rc == -EPROTO)
					broke[who] = 1;
				continue;
			}
			CHECK(rc >= 0); /* nothing live is mid-step in a sequential run */
			m.unrecovered = 0;
		} else { /* hostile write: a byte-chosen word of the shared state */
			if (i + 2 >= size)
				break;
			unsigned char sel = data[i + 2];
			i++;
			uint64_t val = (uint64_t)sel * 0x0101010101010101ull;
			if (sel & 1)
				val = (uint64_t)(sel >> 1); /* small values too */
			_Atomic uint64_t *w;
			switch (sel % 5) {
			case 0:
				w = &ring->m.ctl[sel / 5 % 2]->head;
				break;
			case 1:
				w = &ring->m.ctl[sel / 5 % 2]->tail;
				break;
			case 2:
				w = (_Atomic uint64_t *)&ring->m.ctl[sel / 5 % 2]->threshold;
				break;
			case 3:
				w = &ring->m.ent[sel / 5 % 2][(sel / 10) & ring->m.emask];
				break;
			default:
				w = &ring->m.recs[sel / 5 % 8].state + (sel / 40) % 5;
				break;
			}
			CHECK((unsigned char *)w >= base && (unsigned char *)w + 8 <= base + len);
			atomic_store(w, val);
			tainted = 1;
		}
	}
	if (!tainted && shmring_mpmc_recover(ring) >= 0) {
		/* Drain: everything left is in the model, pending or lost. */
		uint64_t v;
		unsigned got = 0;
		while (shmring_mpmc_pop(ring, &v) == 0 && got < 1000) {
			model_pop(v); /* found in review: only counted, a duplicate could hide */
			got++;
		}
		/* What never came out, queued or published by recovery for a dead producer, dead
		 * consumers may have taken: a dead dequeuer's position can also swallow an
		 * element recovery publishes later (ring/mpmc.c, find_stranded()). */
		unsigned must_left = 0;
		for (unsigned k = 0; k < m.npending; k++)
			must_left += m.must[k];
		CHECK(m.n + must_left <= m.lose);
		/* Capacity never shrinks: recovery gave back every slot the dead held. */
		for (uint64_t k = 0; k < cap; k++) {
			v = k;
			CHECK(shmring_mpmc_push(ring, &v) == 0);
		}
		CHECK(shmring_mpmc_push(ring, &v) == -EAGAIN);
		for (uint64_t k = 0; k < cap; k++)
			CHECK(shmring_mpmc_pop(ring, &v) == 0 && v == k);
		CHECK(shmring_mpmc_pop(ring, &v) == -EAGAIN);
		/* Empty and quiescent: every slot index in exactly one entry, of the free queue.
		 * An entry left holding an index that is also elsewhere is lost to the queue for
		 * good, which the capacity check alone misses while the 2n entries still have room
		 * (a recovery that left a dead bulk take's entries full passed it). */
		unsigned char seen[128] = {0};
		for (int q = 0; q < 2; q++)
			for (uint64_t j = 0; j <= ring->m.emask; j++) {
				uint64_t ei =
				    _SHMRING_MP_IDX(ring, atomic_load(&ring->m.ent[q][j]));
				if (ei == ring->m.bot)
					continue;
				CHECK(q == _SHMRING_MP_FQ && ei < cap && seen[ei]++ == 0);
			}
		for (uint64_t k = 0; k < cap; k++)
			CHECK(seen[k] == 1);
	}
	for (unsigned i = 0; i < np; i++)
		shmring_close(part[i]);
	shmring_close(ring);
	return 0;
}

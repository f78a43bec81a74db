/* SPDX-License-Identifier: MIT */
/*
 * fuzz_msg_ops: differential test of the message rings (SPSC and MPSC) against a model that
 * keeps the queue of records and the byte positions (padding, discarded records, shorter
 * commits), so that every -EAGAIN of the producer is predicted exactly.
 *
 * MPSC only: up to NSLOT more producers, each on a handle of its own whose claim record and
 * BUSY headers carry a made-up pid (all handles live in this process, so only a pid of their
 * own lets the judge tell them apart). They can hold a claim across operations, stall between
 * their claim and their message's header, and die: holding a reserved claim never committed,
 * between the claim's compare-and-swap and any header, after their padding or filler but
 * before their header, after naming a claim in their record but before its compare-and-swap,
 * or between calls. Recovery asks a judge that knows who died, and the model says exactly what
 * it owes: which claim at the consumer's position is discarded and how many bytes of it, what
 * stays (a live producer's claim, and everything behind it), and a dead producer's message is
 * never delivered. A dead producer's slot is filled again by a new handle (a new process).
 *
 * Positions are 64-bit byte counts that wrap at 2^64, and the model's arithmetic on them is
 * modular (distances from a position, never absolute ends), so a run may start just below 2^64
 * and cross it. There, on MPSC, the run may also start behind a consumer that died after
 * freeing records but before publishing its position (its freed-up-to mark ahead of the
 * published position): its successor skips what the mark says, across 2^64 too.
 *
 * Input: 2 bytes of set-up (6 when it starts near 2^64), then operations.
 *   byte 0: bit 0: MPSC (else SPSC); bit 1: producer and consumer on separate handles;
 *           bits 5..7 at 0b110 (which no committed input before it had): the positions start
 *           at 2^64 - k * capacity - j, k = bits 2..4, and bytes 2..5 follow
 *   byte 1: log2 of the capacity: 6 + byte % 9 (64 .. 16384 bytes: from 8192 on, messages
 *           reach SHMRING_MSG_ALIGN_MIN and take fillers)
 *   bytes 2-3 (near 2^64): j = 8 * value, modulo the capacity
 *   bytes 4-5 (near 2^64; unused on SPSC): a dead consumer freed 8 * (value % (capacity / 8
 *           + 1)) bytes from the start and published none of it (0: no such consumer)
 *   then: an opcode byte and its arguments (len: 2 bytes, type: 1 byte, then per opcode),
 *   until the input ends. Opcode bytes 0x32..0x39 are the producer-death opcodes 9..16,
 *   followed by one byte more for 9..15 (which producer slot); every other byte is opcode
 *   byte % 9, as before (no committed input used 0x32..0x39 as an opcode):
 *   0 send; 1 reserve, commit shorter; 2 reserve, abort; 3 reserve, peek, commit; 4 recv;
 *   5 peek, release; 6 send burst; 7 recv burst; 8 recovery (shmring_msg_recover);
 *   9 slot reserves len and holds it (a stalled slot writes its headers instead);
 *   10 slot commits len % (reserved + 2) (reserved + 1: too long, -EINVAL);
 *   11 slot aborts; 12 slot sends; 13 slot claims len and stalls before its message's header
 *   (type bit 0: with its padding and filler written); 14 slot dies where it stands;
 *   15 slot names a claim of len in its record and dies before the compare-and-swap;
 *   16 recovery (shmring_msg_recover_all).
 * At the end, live slots commit what they hold, and the consumer drains the ring, recovering
 * each dead claim it stops at: everything committed comes out, in order, and the ring ends empty.
 * Any difference from the model (return value, length, type, contents, alignment, positions)
 * traps.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <shmring/shmring.h>

#include "fuzz_input.h"
#include "ring/layout.h"

#define CAP_MAX	 16384u
#define QMAX	 (CAP_MAX / 8 + 8)
#define QN	 (QMAX * 2)
#define CHECK(c) ((c) ? (void)0 : __builtin_trap())

/* Producer slots besides the main producer, and how many handles may take their place in one
 * run: below SHMRING_MSG_PRODUCERS, so that every handle takes a free claim record and no
 * taker ever judges a made-up pid with kill() (which would make a run depend on the host). */
#define NSLOT	 3
#define HMAX	 40
#define OP_DEATH 0x32u
#define FAKE_PID 0x40000000u /* above any real pid, below _SHMRING_MSG_LOCKED */

enum { CL_NONE, CL_ZERO, CL_BUSY }; /* a claim's header: none (a record), 0, BUSY */
enum { ST_IDLE, ST_HOLD, ST_STALL0, ST_STALL1 };

struct rec {
	uint64_t bytes; /* padding before it + its stride */
	int msg;	/* 0: a discarded record (abort, or the rest of a shorter commit) */
	uint32_t len, type, seed;
	uint32_t res; /* the length reserved for it: from SHMRING_MSG_ALIGN_MIN, 64-byte aligned */
	int claim;    /* CL_ZERO, CL_BUSY: not written yet; the consumer stops here */
	unsigned who; /* the claimant's handle */
	int freed;    /* the span a dead consumer freed before publishing its position */
};

/* A producing handle, and the model of its claim record (what the reserve writes there). */
struct hdl {
	struct shmring *h;
	uint32_t pid;
	int dead;
	uint64_t claim, end;
};

/* A producer slot: its current handle and what that one holds. */
struct slot {
	unsigned who; /* 0: none yet, or its handle died */
	int st;
	uint32_t res, seed;
	uint64_t at, pad, gap; /* a stalled claim: where it starts, its padding and filler */
};

struct model {
	uint64_t cap, head, tail;
	int mpsc;
	struct rec q[QN];
	unsigned qh, qt;
	uint32_t seed;
	struct hdl hd[HMAX + 1]; /* 0: the main producer */
	unsigned nhd;
	struct slot sl[NSLOT];
};

static uint8_t pb(uint32_t seed, uint32_t i)
{
	return (uint8_t)((seed * 2654435761u) >> 13 ^ i * 31u);
}

static uint64_t stride(uint32_t len)
{
	return 8 + (((uint64_t)len + 7) & ~7ull);
}

static struct rec *qat(struct model *m, unsigned i)
{
	return &m->q[i % QN];
}

/* Bytes of filler from h, within its lap, before the header that leaves a payload of len where
 * the ring promises it (on a 64-byte boundary from SHMRING_MSG_ALIGN_MIN on), or UINT64_MAX if
 * the record would then cross the end of the lap. Measured from h, never as an absolute lap
 * end: the last lap before 2^64 ends at 0. */
static uint64_t gap_at(const struct model *m, uint64_t h, uint32_t len)
{
	uint64_t room = m->cap - h % m->cap, gap = 0;

	while (len >= SHMRING_MSG_ALIGN_MIN && (h + gap + 8) % 64 != 0)
		gap += 8;
	return gap + stride(len) <= room ? gap : UINT64_MAX;
}

/* Bytes a record of len needs at the model's tail: *pad of padding to the end of the lap when
 * it does not fit there, then *fill of filler before its header, then the record. */
static uint64_t need(const struct model *m, uint32_t len, uint64_t *pad, uint64_t *fill)
{
	*pad = 0;
	*fill = gap_at(m, m->tail, len);
	if (*fill == UINT64_MAX) {
		*pad = m->cap - m->tail % m->cap;
		*fill = gap_at(m, m->tail + *pad, len);
	}
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
	CHECK(m->qt - m->qh < QN);
	*qat(m, m->qt++) = (struct rec){bytes, msg, len, type, seed, 0, CL_NONE, 0, 0};
	m->tail += bytes;
}

/* Puts r before the i-th record (a claim in the middle of the queue resolved in place). */
static void insert(struct model *m, unsigned i, struct rec r)
{
	CHECK(m->qt - m->qh < QN && i - m->qh <= m->qt - m->qh);
	for (unsigned j = m->qt; j != i; j--)
		*qat(m, j) = *qat(m, j - 1);
	*qat(m, i) = r;
	m->qt++;
}

/* Drops leading discarded records, as the consumer's peek does. Returns the next message, or
 * NULL where the queue ends or a claim not written yet stops the consumer. */
static struct rec *front(struct model *m)
{
	while (m->qh != m->qt && !qat(m, m->qh)->msg && !qat(m, m->qh)->claim)
		m->head += qat(m, m->qh++)->bytes;
	return m->qh == m->qt || qat(m, m->qh)->claim ? NULL : qat(m, m->qh);
}

static void pop(struct model *m)
{
	m->head += qat(m, m->qh++)->bytes;
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
 * publishes them at reserve, SPSC with the message at commit. On MPSC the reserve also names
 * the claim in handle who's record first. */
static void model_pad(struct model *m, unsigned who, uint32_t res)
{
	uint64_t pad, fill, n = need(m, res, &pad, &fill);
	if (m->mpsc) {
		m->hd[who].claim = m->tail | 1;
		m->hd[who].end = m->tail + n;
	}
	if (pad)
		push(m, pad, 0, 0, 0, 0);
	if (fill)
		push(m, fill, 0, 0, 0, 0);
}

/* A reserve that found no room gives up its name on any position. */
static void model_full(struct model *m, unsigned who)
{
	if (m->mpsc)
		m->hd[who].claim = 0;
}

/* Producer side of one message: the model's view of a commit of len of a reservation of res
 * (on MPSC, model_pad() was called at reserve). */
static void model_commit(struct model *m, uint32_t res, uint32_t len, uint32_t type, uint32_t seed)
{
	if (!m->mpsc)
		model_pad(m, 0, res);
	push(m, stride(len), 1, len, type, seed);
	qat(m, m->qt - 1)->res = res;
	if (m->mpsc && stride(len) < stride(res))
		push(m, stride(res) - stride(len), 0, 0, 0, 0);
}

static void model_send(struct model *m, unsigned who, uint32_t len, uint32_t type, uint32_t seed)
{
	if (m->mpsc)
		model_pad(m, who, len);
	model_commit(m, len, len, type, seed);
}

/* Where handle who's claim sits in the queue. */
static unsigned find_claim(struct model *m, unsigned who)
{
	for (unsigned i = m->qh; i != m->qt; i++)
		if (qat(m, i)->claim && qat(m, i)->who == who)
			return i;
	CHECK(0);
	return 0;
}

/* A held claim committed (len of res) or aborted (len > res) in place, wherever it stands. */
static void model_close_claim(struct model *m, unsigned who, uint32_t res, uint32_t len,
			      uint32_t type, uint32_t seed)
{
	unsigned i = find_claim(m, who);
	struct rec *e = qat(m, i);

	CHECK(e->claim == CL_BUSY && e->bytes == stride(res));
	e->claim = CL_NONE;
	if (len > res)
		return; /* a discarded record of the whole claim */
	*e = (struct rec){stride(len), 1, len, type, seed, res, CL_NONE, 0, 0};
	if (stride(len) < stride(res))
		insert(m, i + 1,
		       (struct rec){stride(res) - stride(len), 0, 0, 0, 0, 0, CL_NONE, 0, 0});
}

static int covers(const struct hdl *d, uint64_t h)
{
	return d->claim && (int64_t)(h - (d->claim & ~1ull)) >= 0 && (int64_t)(d->end - h) > 0;
}

/* The judge: knows which made-up pid died. The only zero header that no record names is the
 * span a dead consumer freed (set-up), which peek skips: recovery may ask about pid 0 there
 * and hears alive, as from shmring_msg_pid_gone(). Any other question about pid 0, or about a
 * pid no handle had, is a library bug. */
static int judge(uint32_t pid, void *arg)
{
	struct model *m = arg;

	if (pid == 0) {
		CHECK(m->qh != m->qt && qat(m, m->qh)->freed);
		return 0;
	}
	for (unsigned i = 0; i <= m->nhd; i++)
		if (m->hd[i].h && m->hd[i].pid == pid)
			return m->hd[i].dead;
	CHECK(0);
	return 0;
}

/*
 * What recovery owes at the consumer's position (msg.h, shmring_msg_recover()), applied to the
 * model; returns what it must return. Only a claim right at the position counts (a discarded
 * record there is peek's to skip first). A BUSY claim: discarded whole when every record of its
 * pid that names it is dead (the judge, if none). A claim with no header: waits while any
 * producer whose record names the position lives; else discarded up to the least end those
 * records name: a stale record of one that died before its compare-and-swap may end first,
 * and the rest of the claim then waits for a round of its own.
 */
static int model_recover(struct model *m)
{
	if (!m->mpsc || m->qh == m->qt || !qat(m, m->qh)->claim)
		return 0;
	struct rec *e = qat(m, m->qh);
	uint64_t h = m->head, span = UINT64_MAX; /* a distance from h: ends wrap at 2^64 */
	int named = 0;

	if (e->claim == CL_BUSY) {
		uint32_t pid = m->hd[e->who].pid;
		int alive = 0;
		for (unsigned i = 0; i <= m->nhd; i++)
			if (m->hd[i].pid == pid && covers(&m->hd[i], h)) {
				named = 1;
				alive |= !m->hd[i].dead;
			}
		if (named ? alive : !judge(pid, m))
			return 0;
		e->claim = CL_NONE;
		return 1;
	}
	for (unsigned i = 0; i <= m->nhd; i++) {
		if (!covers(&m->hd[i], h))
			continue;
		named = 1;
		if (!m->hd[i].dead)
			return 0;
		if (m->hd[i].end - h < span)
			span = m->hd[i].end - h;
	}
	CHECK(named); /* the claimant's own record names it */
	uint64_t d = span;
	CHECK(d >= 8 && d <= e->bytes && d % 8 == 0);
	if (d == e->bytes) {
		e->claim = CL_NONE;
	} else {
		e->bytes -= d;
		insert(m, m->qh, (struct rec){d, 0, 0, 0, 0, 0, CL_NONE, 0, 0});
	}
	return 1;
}

static uint8_t buf[CAP_MAX];

/*
 * Where the run starts: at 0, as a new ring; or, with byte 0's bits 5..7 at 0b110, at
 * 2^64 - k * capacity - j, as after that many bytes, so that the run crosses 2^64 (every
 * position comparison must be modular; found in review, twice, where no run could get there).
 * On MPSC a consumer may have died there after freeing s bytes of records (zeroed, and its
 * mark says how far) but before publishing its position: the first peek skips them, up to a
 * mark that may lie past 2^64. Planted before any handle attaches, which reads them.
 */
static void start(struct model *m, struct input *in, uint8_t b0, uint8_t *mem)
{
	const struct _shmring_hdr *hd = (const struct _shmring_hdr *)(void *)mem;
	_Atomic uint64_t *prod =
	    (_Atomic uint64_t *)(void *)(mem + hd->part[_SHMRING_PART_PROD].off);
	_Atomic uint64_t *cons =
	    (_Atomic uint64_t *)(void *)(mem + hd->part[_SHMRING_PART_CONS].off);

	if ((b0 & 0xe0) != 0xc0)
		return;
	uint64_t k = (b0 >> 2) & 7, j = ((uint64_t)next16(in) * 8) & (m->cap - 1);
	uint64_t s = (next16(in) % (m->cap / 8 + 1)) * 8;

	m->head = m->tail = 0 - k * m->cap - j;
	if (m->mpsc && s) {
		push(m, s, 0, 0, 0, 0);
		qat(m, m->qh)->freed = 1;
	}
	atomic_store(prod, m->tail);
	atomic_store(cons, m->head);
	if (m->mpsc) /* its freed-up-to mark (_shmring_msg_freed()): as a consumer leaves it */
		atomic_store(cons + 1, m->tail);
}

/* The handle in slot s, a new one (a new process, with a pid of its own) where it has none or
 * its last one died; NULL once HMAX handles were made. Its claim record is taken first, as its
 * first reserve would, so that its owner word can carry the made-up pid. */
static struct shmring *slot_handle(struct model *m, unsigned s, void *mem, size_t sz,
				   const struct shmring_params *prm)
{
	struct slot *sl = &m->sl[s];
	struct shmring *h;

	if (sl->who)
		return m->hd[sl->who].h;
	if (m->nhd == HMAX)
		return NULL;
	CHECK(shmring_attach(mem, sz, prm, &h) == 0);
	CHECK(_shmring_msg_rec_take(h) == 0);
	sl->who = ++m->nhd;
	sl->st = ST_IDLE;
	m->hd[sl->who] = (struct hdl){h, FAKE_PID + sl->who, 0, 0, 0};
	atomic_store(&h->msg.p.rec->owner, (uint64_t)(FAKE_PID + sl->who));
	return h;
}

/* A reservation of ours as the made-up pid's: the BUSY header names the claimant. */
static void own_busy(struct shmring *h, uint32_t pid)
{
	CHECK(h->msg.p.res_active && (uint32_t)(h->msg.p.res_word >> 32) == _shmring_msg_pid());
	uint64_t w = (h->msg.p.res_word & 0xffffffffull) | (uint64_t)pid << 32;
	atomic_store_explicit(_shmring_msg_hdr(h, h->msg.p.res_pos), w, memory_order_release);
	h->msg.p.res_word = w;
}

/* A stalled slot goes on from where its reserve stopped: its padding and filler (unless
 * written), its BUSY header, the reservation in its handle (what the reserve does after its
 * compare-and-swap), and its payload. */
static void resume(struct model *m, struct slot *sl)
{
	struct shmring *h = m->hd[sl->who].h;
	uint32_t pid = m->hd[sl->who].pid;
	unsigned i = find_claim(m, sl->who);
	uint64_t at = sl->at + sl->pad + sl->gap;

	CHECK(qat(m, i)->claim == CL_ZERO);
	if (sl->st == ST_STALL0) {
		CHECK(_shmring_msg_lay(h, sl->at, sl->pad, sl->gap, memory_order_release) == at);
		qat(m, i)->bytes = stride(sl->res);
		if (sl->gap)
			insert(m, i, (struct rec){sl->gap, 0, 0, 0, 0, 0, CL_NONE, 0, 0});
		if (sl->pad)
			insert(m, i, (struct rec){sl->pad, 0, 0, 0, 0, 0, CL_NONE, 0, 0});
		i += (sl->gap != 0) + (sl->pad != 0);
	}
	CHECK(qat(m, i)->bytes == stride(sl->res));
	qat(m, i)->claim = CL_BUSY;
	uint64_t busy = _SHMRING_MSG_VALID | _SHMRING_MSG_BUSY | sl->res | (uint64_t)pid << 32;
	atomic_store_explicit(_shmring_msg_hdr(h, at), busy, memory_order_relaxed);
	h->msg.p.res_pos = at;
	h->msg.p.res_len = sl->res;
	h->msg.p.res_word = busy;
	h->msg.p.res_active = 1;
	sl->seed = ++m->seed;
	fill(h->data + (at & h->mask) + 8, sl->seed, sl->res);
	sl->st = ST_HOLD;
}

/* Slot sl commits len of its claim, or aborts it; a len beyond what it reserved is -EINVAL and
 * leaves the claim held. A stalled slot first goes on to its header, as its reserve would. */
static void slot_commit(struct model *m, struct slot *sl, uint32_t len, uint32_t type, int abort)
{
	struct shmring *h = m->hd[sl->who].h;

	if (sl->st == ST_STALL0 || sl->st == ST_STALL1)
		resume(m, sl);
	if (sl->st == ST_IDLE) {
		CHECK((abort ? shmring_msg_abort(h) : shmring_msg_commit(h, len, type)) == -EINVAL);
		return;
	}
	if (abort) {
		CHECK(shmring_msg_abort(h) == 0);
		model_close_claim(m, sl->who, sl->res, sl->res + 1, 0, 0);
	} else if (len > sl->res) {
		CHECK(shmring_msg_commit(h, len, type) == -EINVAL); /* still held */
		return;
	} else {
		CHECK(shmring_msg_commit(h, len, type) == 0);
		model_close_claim(m, sl->who, sl->res, len, type, sl->seed);
	}
	sl->st = ST_IDLE;
}

/* The producer-death opcodes 9..16 (MPSC; only the recoveries mean anything on SPSC). */
static int death_op(struct model *m, struct input *in, unsigned op, uint32_t len, uint32_t type,
		    struct shmring *cr, void *mem, size_t sz, const struct shmring_params *prm)
{
	uint32_t max = shmring_msg_max(cr);

	if (op == 16) {
		int want = model_recover(m);
		CHECK(shmring_msg_recover_all(cr, judge, m) == want);
		return want;
	}
	unsigned s = next8(in) % NSLOT;
	if (!m->mpsc)
		return 0;
	struct slot *sl = &m->sl[s];
	struct shmring *h = slot_handle(m, s, mem, sz, prm);
	if (!h)
		return 0;
	struct hdl *d = &m->hd[sl->who];
	int stalled = sl->st == ST_STALL0 || sl->st == ST_STALL1;
	uint64_t pad, gap, n;
	void *w;
	int rc = 0;

	switch (op) {
	case 9: /* reserve and hold */
		if (stalled) {
			resume(m, sl);
			break;
		}
		rc = shmring_msg_reserve(h, len, &w);
		if (len > max) {
			CHECK(rc == -EMSGSIZE);
		} else if (sl->st == ST_HOLD) {
			CHECK(rc == -EBUSY);
		} else if (!fits(m, len)) {
			CHECK(rc == -EAGAIN);
			model_full(m, sl->who);
		} else {
			CHECK(rc == 0 &&
			      ((uintptr_t)w & (len >= SHMRING_MSG_ALIGN_MIN ? 63 : 7)) == 0);
			own_busy(h, d->pid);
			model_pad(m, sl->who, len);
			push(m, stride(len), 0, 0, 0, 0);
			qat(m, m->qt - 1)->claim = CL_BUSY;
			qat(m, m->qt - 1)->who = sl->who;
			sl->st = ST_HOLD;
			sl->res = len;
			sl->seed = ++m->seed;
			fill(w, sl->seed, len);
		}
		break;
	case 10: /* commit */
	case 11: /* abort */
		if (sl->st == ST_HOLD || stalled)
			len %= sl->res + 2;
		slot_commit(m, sl, len, type, op == 11);
		break;
	case 12: /* send */
		if (stalled)
			break; /* stuck in its reserve: it makes no call */
		fill(buf, ++m->seed, len > max ? 0 : len);
		rc = shmring_msg_send(h, buf, len, type);
		if (len > max) {
			CHECK(rc == -EMSGSIZE);
		} else if (sl->st == ST_HOLD) {
			CHECK(rc == -EBUSY);
		} else if (fits(m, len)) {
			CHECK(rc == 0);
			model_send(m, sl->who, len, type, m->seed);
		} else {
			CHECK(rc == -EAGAIN);
			model_full(m, sl->who);
		}
		break;
	case 13:   /* claim, then stall before the message's header */
	case 15: { /* name a claim, then die before the compare-and-swap */
		if (sl->st != ST_IDLE || len > max) {
			if (op == 15)
				d->dead = 1;
			break;
		}
		if (!fits(m, len)) {
			rc = shmring_msg_reserve(h, len, &w);
			CHECK(rc == -EAGAIN);
			model_full(m, sl->who);
			if (op == 15)
				d->dead = 1;
			break;
		}
		/* The reserve's claim, stopped where a SIGKILL could stop it. */
		uint64_t t = atomic_load(h->prod_pos), mpad, mgap;
		CHECK(t == m->tail);
		n = _shmring_msg_need(h, t, len, &pad, &gap);
		CHECK(n == need(m, len, &mpad, &mgap) && pad == mpad && gap == mgap);
		atomic_store_explicit(&h->msg.p.rec->end, t + n, memory_order_relaxed);
		atomic_store_explicit(&h->msg.p.rec->claim, t | 1, memory_order_relaxed);
		d->claim = t | 1;
		d->end = t + n;
		if (op == 15) {
			d->dead = 1;
			break;
		}
		CHECK(atomic_compare_exchange_strong(h->prod_pos, &t, t + n));
		sl->at = t;
		sl->pad = pad;
		sl->gap = gap;
		sl->res = len;
		if (type & 1) {
			CHECK(_shmring_msg_lay(h, t, pad, gap, memory_order_release) ==
			      t + pad + gap);
			if (pad)
				push(m, pad, 0, 0, 0, 0);
			if (gap)
				push(m, gap, 0, 0, 0, 0);
			n = stride(len);
		}
		push(m, n, 0, 0, 0, 0);
		qat(m, m->qt - 1)->claim = CL_ZERO;
		qat(m, m->qt - 1)->who = sl->who;
		sl->st = type & 1 ? ST_STALL1 : ST_STALL0;
		break;
	}
	case 14: /* die where it stands */
		d->dead = 1;
		break;
	}
	if (d->dead)
		sl->who = 0; /* its handle stays open, as a dead process's mapping would */
	else
		CHECK(!shmring_is_broken(h));
	return rc;
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
	start(&m, &in, b0, mem);
	CHECK(shmring_attach(mem, (size_t)sz, &prm, &pr) == 0);
	cr = pr;
	if (b0 & 2)
		CHECK(shmring_attach(mem, (size_t)sz, &prm, &cr) == 0);
	uint32_t max = shmring_msg_max(pr);
	CHECK(max == m.cap / 4 - 8);
	m.hd[0] = (struct hdl){pr, _shmring_msg_pid(), 0, 0, 0};

	for (unsigned ops = 0; in.n && ops < 4096; ops++) {
		uint8_t ob = next8(&in);
		unsigned op = ob - OP_DEATH < 8 ? 9 + ob - OP_DEATH : ob % 9u;
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
				model_send(&m, 0, len, type, m.seed);
			} else {
				CHECK(rc == -EAGAIN);
				model_full(&m, 0);
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
				model_full(&m, 0);
				break;
			}
			CHECK(rc == 0 &&
			      ((uintptr_t)w & (len >= SHMRING_MSG_ALIGN_MIN ? 63 : 7)) == 0);
			if (m.mpsc)
				model_pad(&m, 0, len);
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
				model_send(&m, 0, v[i].len, v[i].type, m.seed + 1 + i);
				sent++;
			}
			if (sent < k)
				model_full(&m, 0);
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
		case 8: { /* recovery: nothing is stuck unless a claim of the death opcodes is */
			rc = model_recover(&m);
			CHECK(shmring_msg_recover(cr, judge, &m) == rc);
			break;
		}
		default:
			rc = death_op(&m, &in, op, len, type, cr, mem, (size_t)sz, &prm);
			break;
		}
		if (getenv("FUZZ_MSG_TRACE"))
			fprintf(stderr, "op %u len %u rc %d model head %lu tail %lu ring %lu %lu\n",
				op, len, rc, (unsigned long)m.head, (unsigned long)m.tail,
				(unsigned long)atomic_load(pr->cons_pos),
				(unsigned long)atomic_load(pr->prod_pos));
		CHECK(!shmring_is_broken(pr) && !shmring_is_broken(cr));
		/* Positions too: a recovery that discards the wrong span shows here at once. */
		CHECK(atomic_load(pr->prod_pos) == m.tail && atomic_load(pr->cons_pos) == m.head);
	}
	/* The live slots finish what they hold. */
	for (unsigned s = 0; s < NSLOT; s++)
		if (m.sl[s].who && m.sl[s].st != ST_IDLE)
			slot_commit(&m, &m.sl[s], m.sl[s].res, 0x5107u + s, 0);
	/* Drain: everything the model holds comes out, in order; each claim the consumer stops
	 * at is now a dead one's, and recovery owes its discard. */
	for (;;) {
		const void *p;
		uint32_t n, t;
		struct rec *e = front(&m);
		int rc = shmring_msg_peek(cr, &p, &n, &t);
		if (e) {
			CHECK(rc == 0);
			check_peek(e, p, n, t);
			CHECK(shmring_msg_release(cr) == 0);
			pop(&m);
			continue;
		}
		CHECK(rc == -EAGAIN);
		if (m.qh == m.qt)
			break;
		CHECK(model_recover(&m) == 1);
		CHECK(shmring_msg_recover(cr, judge, &m) == 1);
	}
	CHECK(m.head == m.tail && atomic_load(pr->prod_pos) == m.tail &&
	      atomic_load(pr->cons_pos) == m.head);
	CHECK(!shmring_is_broken(pr) && !shmring_is_broken(cr));
	for (unsigned i = 1; i <= m.nhd; i++)
		shmring_close(m.hd[i].h);
	if (cr != pr)
		shmring_close(cr);
	shmring_close(pr);
	free(mem);
	return 0;
}

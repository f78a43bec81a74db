/* SPDX-License-Identifier: MIT */
/*
 * MPMC ring: layout, formatting, participant records, liveness and recovery. The hot paths are
 * in include/shmring/mpmc.h, which explains the algorithm (Nikolaev's SCQ) and the entry word.
 *
 * Recovery adopts the record of a dead participant (CAS of its owner word to our own identity)
 * and finishes the operation that record describes, step by step, through the same record: if
 * the recovering process dies too, the record again has a dead owner and a consistent phase, and
 * the next recovery resumes it.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../sync/sync.h"
#include "internal.h"

enum {
	_PART_AQ = 4,	/* filled queue: control blocks, then 2n entries */
	_PART_FQ = 5,	/* free queue */
	_PART_RECS = 6, /* participant records */
	_PART_SEQ = 7,	/* hand-over count of each index */
};

#define CTL_SIZE ((uint64_t)sizeof(struct _shmring_scq_ctl))
_Static_assert(sizeof(struct _shmring_scq_ctl) == 3 * _SHMRING_BLOCK, "ctl is 3 blocks");
_Static_assert(sizeof(struct _shmring_mpmc_rec) == 2 * _SHMRING_BLOCK, "a record is two blocks");

static uint64_t round_block(uint64_t x)
{
	return (x + _SHMRING_BLOCK - 1) & ~(uint64_t)(_SHMRING_BLOCK - 1);
}

static unsigned log2u(uint64_t x)
{
	return (unsigned)(63 - __builtin_clzll(x));
}

/* A runs ring's parts: one header per slot, and the arena owner words. */
enum {
	_PART_HDR = 4,
	_PART_ARENAS = 5,
};

static int runs(const struct shmring *r)
{
	return r->kind == SHMRING_MPMC_RUNS;
}

static int mpmc(const struct shmring *r)
{
	return r->kind == SHMRING_MPMC || r->kind == SHMRING_MPMC_RUNS;
}

uint64_t _shmring_mpmc_layout(struct _shmring_layout *l, uint64_t off)
{
	uint64_t q = CTL_SIZE + round_block(2 * l->capacity * 8);

	if (l->kind == SHMRING_MPMC_RUNS) {
		l->part[_PART_HDR] = (struct _shmring_part){off, l->capacity * 8};
		off += round_block(l->capacity * 8);
		l->part[_PART_ARENAS] = (struct _shmring_part){off, (uint64_t)l->producers * 8};
		off += round_block((uint64_t)l->producers * 8);
		l->part[_PART_RECS] = (struct _shmring_part){
		    off, (uint64_t)SHMRING_MPMC_PARTICIPANTS * sizeof(struct _shmring_mpmc_rec)};
		return off + l->part[_PART_RECS].size;
	}

	l->part[_PART_AQ] = (struct _shmring_part){off, q};
	off += q;
	l->part[_PART_FQ] = (struct _shmring_part){off, q};
	off += q;
	l->part[_PART_RECS] = (struct _shmring_part){off, (uint64_t)SHMRING_MPMC_PARTICIPANTS *
							      sizeof(struct _shmring_mpmc_rec)};
	off += l->part[_PART_RECS].size;
	l->part[_PART_SEQ] = (struct _shmring_part){off, l->capacity * 8};
	off += round_block(l->capacity * 8);
	return off;
}

/* Fills the handle-side geometry (never from shared memory: from the validated layout). */
static void geometry(struct shmring *r, unsigned char *base, const struct _shmring_layout *g)
{
	unsigned k = log2u(g->capacity);

	r->m.recs = (struct _shmring_mpmc_rec *)(base + g->part[_PART_RECS].off);
	r->capacity = g->capacity;
	if (g->kind == SHMRING_MPMC_RUNS) {
		r->m.hdr = (_Atomic uint64_t *)(base + g->part[_PART_HDR].off);
		r->m.arenas = (_Atomic uint64_t *)(base + g->part[_PART_ARENAS].off);
		r->m.order = k;
		r->m.producers = g->producers;
		r->m.astride = g->capacity * g->elem_size;
		r->m.arena = -1;
		r->m.patience_ns = _SHMRING_MR_PATIENCE_NS;
		return;
	}

	for (int q = 0; q < 2; q++) {
		unsigned char *p = base + g->part[q == 0 ? _PART_AQ : _PART_FQ].off;
		r->m.ctl[q] = (struct _shmring_scq_ctl *)p;
		r->m.ent[q] = (_Atomic uint64_t *)(p + CTL_SIZE);
	}
	r->m.recs = (struct _shmring_mpmc_rec *)(base + g->part[_PART_RECS].off);
	r->m.seq = (_Atomic uint64_t *)(base + g->part[_PART_SEQ].off);
	r->capacity = g->capacity;
	r->m.w = k + 2;
	r->m.ishift = k + 1;
	r->m.emask = 2 * g->capacity - 1;
	r->m.bot = (1ull << r->m.w) - 1;
	r->m.claimed = 1ull << (r->m.w - 1);
	r->m.thr_max = (int64_t)(3 * g->capacity - 1);
}

void _shmring_mpmc_format(void *mem, const struct _shmring_layout *l)
{
	struct shmring r;
	uint64_t n = l->capacity;

	memset(&r, 0, sizeof(r));
	r.kind = l->kind;
	geometry(&r, mem, l);
	memset(r.m.recs, 0, l->part[_PART_RECS].size);
	if (runs(&r)) {
		/* Every header of lap -1: older than any position's. */
		memset((void *)r.m.arenas, 0, l->part[_PART_ARENAS].size);
		for (uint64_t i = 0; i < n; i++)
			atomic_init(&r.m.hdr[i], _SHMRING_MR_TAG_MASK << 13);
		return;
	}
	memset((void *)r.m.seq, 0, l->part[_PART_SEQ].size);
	for (int q = 0; q < 2; q++) {
		for (uint64_t j = 0; j < 2 * n; j++)
			atomic_init(&r.m.ent[q][j], _shmring_mp_ent(&r, 0, 1, r.m.bot));
		/* Positions start at 2n (cycle 1), so every entry (cycle 0) is older. */
		atomic_init(&r.m.ctl[q]->head, 2 * n);
		atomic_init(&r.m.ctl[q]->tail, 2 * n);
		atomic_init(&r.m.ctl[q]->threshold, -1);
	}
	/* The free queue starts full: index i at position 2n + i. */
	for (uint64_t i = 0; i < n; i++)
		atomic_init(_shmring_mp_slot(&r, _SHMRING_MP_FQ, 2 * n + i),
			    _shmring_mp_ent(&r, 1, 1, i));
	atomic_init(&r.m.ctl[_SHMRING_MP_FQ]->tail, 3 * n);
	atomic_init(&r.m.ctl[_SHMRING_MP_FQ]->threshold, r.m.thr_max);
}

/* ---- liveness ---------------------------------------------------------------------------- */

/* Start time (field 22 of /proc/<pid>/stat, clock ticks since boot), low 32 bits, or 0 when
 * unknown (no /proc). *gone set when the process has no entry (returns UINT32_MAX) or is a
 * zombie (returns 0). */
static uint32_t start_time(pid_t pid, int *gone)
{
	char path[64], buf[1024];
	*gone = 0;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		/* Gone, unless there is no /proc at all to look in (found in review: every live
		 * process read as dead then). */
		*gone = (errno == ENOENT || errno == ESRCH) && access("/proc/self/stat", F_OK) == 0;
		return *gone ? UINT32_MAX : 0; /* UINT32_MAX: no entry (rather than a zombie) */
	}
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0) {
		*gone = 1;
		return 0;
	}
	buf[n] = 0;
	char *p = strrchr(buf, ')');
	if (!p)
		return 0;
	p++;
	/* p is at " S ppid ...": field 3 is the state. */
	char state = p[1];
	/* The leader's state: Z also for a process whose main thread called pthread_exit while
	 * its other threads run on, which is alive (found in review); its pidfd tells. */
	if (state == 'Z' || state == 'X') {
		int ex = _shmring_group_exited(pid);
		/* Short of descriptors for the pidfd: cannot tell, so not gone (as sync/sync.c's
		 * proc_start(); found in review there). Without pidfds at all, Z reads gone. */
		if (ex < 0 && (errno == EMFILE || errno == ENFILE || errno == ENOMEM))
			return 0;
		if (ex != 0) {
			*gone = 1;
			return 0;
		}
	}
	for (int field = 2; field < 22 && *p; p++)
		if (*p == ' ')
			field++;
	return (uint32_t)strtoull(p, NULL, 10);
}

static uint64_t self_owner(void)
{
	int gone;
	pid_t pid = getpid();
	uint32_t st = start_time(pid, &gone);
	return (uint64_t)(uint32_t)pid | (uint64_t)(gone ? 0 : st) << 32;
}

/* The process-wide liveness hook (shmring_mpmc_set_alive_fn(NULL, ...)): testing only. */
static shmring_mpmc_alive_fn alive_default;
static void *alive_default_arg;

/*
 * Owner word flag: the owner holds its record's OFD lock (sync/sync.h, _shmring_rec_lock()) from
 * before it wrote this word until after it cleared it, so the record's owner is alive exactly
 * while the lock is held. Bit 31 of the pid half: Linux pids stay below 2^22.
 */
#define OWNER_LOCKED (1ull << 31)

static int hooked(const struct shmring *r)
{
	return r->m.alive || alive_default;
}

/* By pid and start time, as this process sees them: wrong across pid or time namespaces (a
 * pid means another process there, and start times are shifted), so only for owners that hold
 * no lock, or when we cannot see locks. 1 alive, 0 dead; a process we cannot see for lack of
 * permission counts as alive. */
static int pid_alive(const struct shmring *r, uint64_t owner)
{
	pid_t pid = (pid_t)(uint32_t)(owner & ~OWNER_LOCKED);
	if (pid <= 0)
		return 0;
	if (pid == getpid())
		return (owner >> 32) == (r->m.owner >> 32);
	if (_shmring_group_exited(pid) == 1)
		return 0; /* gone, or a zombie: even where only kill() is left (no /proc) */
	int hidden = 0;
	if (kill(pid, 0) != 0) {
		if (errno == ESRCH)
			return 0;
		hidden = errno == EPERM; /* another user's: /proc may hide it (hidepid) */
	}
	if ((owner >> 32) == 0)
		return 1; /* recorded without /proc: the pid alone (as sync's liveness slots) */
	int gone;
	uint32_t st = start_time(pid, &gone);
	if (gone)
		return hidden && st == UINT32_MAX; /* no entry, yet kill saw it: alive */
	return st == 0 || st == (uint32_t)(owner >> 32);
}

/* Whether owner, which record i names, is alive: 1 alive, 0 dead. */
static int owner_alive(struct shmring *r, int i, uint64_t owner)
{
	if (r->m.alive)
		return r->m.alive(owner, r->m.alive_arg) != 0;
	if (alive_default)
		return alive_default(owner, alive_default_arg) != 0;
	if (owner & OWNER_LOCKED) {
		int held = _shmring_rec_locked(r, (unsigned)i);
		if (held >= 0)
			return held;
	}
	return pid_alive(r, owner);
}

/*
 * Before taking record i over (an idle record of a dead owner, or one recovery adopts): takes
 * its lock if this handle can, and says whether its owner o is dead. Holding the lock decides
 * for an owner that held it; a free record (o == 0) is ours to take. Returns 1 (dead or free:
 * go on; *locked says whether we now hold the lock, to drop if the owner word's CAS fails), 0
 * (alive, or another handle is taking it: leave it; no lock held), or -errno (the lock call
 * failed: ENOLCK and the like).
 */
static int take_lock_if_dead(struct shmring *r, int i, uint64_t o, int *locked)
{
	*locked = 0;
	if (hooked(r))
		return o == 0 || !owner_alive(r, i, o);
	int rc = _shmring_rec_lock(r, (unsigned)i);
	if (rc == -ENOTSUP) {
		/* No description of our own (no /proc). A free lock alone does not say dead here:
		 * the owner's handle may have closed and another handle of the same process taken
		 * the record again under the same owner word, and our CAS would then adopt a live
		 * record (found in review). So its process must be gone as well. */
		if (o == 0)
			return 1;
		if ((o & OWNER_LOCKED) && _shmring_rec_locked(r, (unsigned)i) == 1)
			return 0;
		return !pid_alive(r, o);
	}
	if (rc == -EAGAIN)
		return 0;
	if (rc != 0)
		return rc;
	*locked = 1;
	if (o == 0 || (o & OWNER_LOCKED) || !pid_alive(r, o))
		return 1;
	_shmring_rec_unlock(r, (unsigned)i);
	*locked = 0;
	return 0;
}

/*
 * After adopting record i by a CAS from o without holding its lock (no description of our
 * own): the word may be o again because a handle of o's process took the record again after we
 * judged it free (our kill() cannot see that process across pid namespaces). Such a handle
 * locks before its CAS, so it holds the lock now. A held lock may also be a locking handle about
 * to adopt or take the record itself (its CAS then fails against ours): we cannot tell the two
 * apart, so give the record back either way, and the caller looks again (found in review: a
 * recover said nothing was dead). Returns 1 (given back), 0 (ours).
 */
static int retaken(struct shmring *r, int i, uint64_t o, uint64_t me, int locked)
{
	if (locked || hooked(r) || !(o & OWNER_LOCKED) || _shmring_rec_locked(r, (unsigned)i) != 1)
		return 0;
	atomic_compare_exchange_strong_explicit(&r->m.recs[i].owner, &me, o, memory_order_release,
						memory_order_relaxed);
	return 1;
}

/* ---- handles ------------------------------------------------------------------------------ */

/* A record holds nothing: IDLE, whatever its queue field, and no bulk fields (an IDLE record
 * may still hold a bulk's indices). */
static int rec_idle(uint64_t st)
{
	return (st & ~0xff00ull) == _SHMRING_MP_IDLE;
}

int _shmring_mpmc_handle_init(struct shmring *r, unsigned char *base,
			      const struct _shmring_layout *g)
{
	geometry(r, base, g);
	r->m.owner = self_owner();
	r->m.pid = getpid();
	/* Our own description of the ring's file, for the record locks; no /proc (or no file)
	 * leaves pid and start time, any other failure (EMFILE) fails the attach rather than
	 * quietly judging by pid across namespaces (found in review). */
	int rc = hooked(r) ? 0 : _shmring_rec_open(r);
	if (rc && rc != -ENOTSUP)
		return rc;
	if (runs(r)) /* A1 (mpmc_runs.h), for a first push that judges room from it */
		r->m.seen_head = atomic_load_explicit(r->cons_pos, memory_order_acquire);
	else
		for (int q = 0; q < 2; q++)
			r->m.lo[q] = atomic_load_explicit(&r->m.ctl[q]->head, memory_order_relaxed);
	/* A free record first; else an idle one whose owner died. A record given back by
	 * retaken() may have been a locking handle's passing lock: look again, a few times. */
	for (int pass = 0, gave_back = 0, rounds = 0; pass < 2 || (gave_back && ++rounds < 4);
	     pass++) {
		if (pass == 2) { /* a round gave a record back: both passes again */
			pass = 0;
			gave_back = 0;
		}
		for (int i = 0; i < SHMRING_MPMC_PARTICIPANTS; i++) {
			struct _shmring_mpmc_rec *rec = &r->m.recs[i];
			uint64_t o = atomic_load_explicit(&rec->owner, memory_order_acquire);
			int locked;
			if (pass == 0 ? o != 0
				      : (o == 0 || !rec_idle(atomic_load_explicit(
						       &rec->state, memory_order_acquire))))
				continue;
			int dead = take_lock_if_dead(r, i, o, &locked);
			if (dead < 0)
				return dead;
			if (!dead)
				continue;
			/* With the ring's file, the record is held by its lock (OWNER_LOCKED):
			 * then any process that sees the file, in any namespace, can tell
			 * whether we are alive. */
			uint64_t mine = r->m.owner | (locked ? OWNER_LOCKED : 0);
			/* A7: pairs with R7 in handle_fini/recovery: the record is idle. */
			uint64_t was = o;
			if (atomic_compare_exchange_strong_explicit(&rec->owner, &o, mine,
								    memory_order_acq_rel,
								    memory_order_relaxed)) {
				if (retaken(r, i, was, mine, locked)) {
					gave_back = 1;
					continue;
				}
				atomic_store_explicit(&rec->state, _SHMRING_MP_IDLE,
						      memory_order_relaxed);
				r->m.owner = mine;
				r->m.rec = rec;
				r->m.rec_i = (uint32_t)i;
				return 0;
			}
			if (locked)
				_shmring_rec_unlock(r, (unsigned)i);
		}
	}
	return -EUSERS;
}

/* Frees every arena that names record i (a runs ring). */
static void free_arenas(struct shmring *r, uint32_t i)
{
	for (uint32_t a = 0; a < r->m.producers; a++) {
		uint64_t mine = (uint64_t)i + 1;
		/* R8: pairs with A8 in _shmring_mr_join(): the last copy into the arena is done
		 * before another producer takes it. */
		atomic_compare_exchange_strong_explicit(&r->m.arenas[a], &mine, 0,
							memory_order_release, memory_order_relaxed);
	}
}

void _shmring_mpmc_handle_fini(struct shmring *r)
{
	struct _shmring_mpmc_rec *rec = r->m.rec;

	if (!rec)
		return;
	/* A fork child closing its copy of our handle: the record is its parent's. */
	if (getpid() != r->m.pid)
		return;
	/* A record left mid-operation (abandoned by the test hook) stays for recovery. */
	if (!rec_idle(atomic_load_explicit(&rec->state, memory_order_relaxed)))
		return;
	if (runs(r))
		free_arenas(r, r->m.rec_i); /* ours, and any our record inherited unused */
	uint64_t o = r->m.owner;
	/* R7: pairs with A7 in handle_init. */
	atomic_compare_exchange_strong_explicit(&rec->owner, &o, 0, memory_order_release,
						memory_order_relaxed);
}

int shmring_mpmc_set_hook(struct shmring *r, shmring_mpmc_hook_fn fn, void *arg)
{
	if (!r || !mpmc(r))
		return -EINVAL;
	r->m.hook = fn;
	r->m.hook_arg = arg;
	return 0;
}

int shmring_mpmc_set_alive_fn(struct shmring *r, shmring_mpmc_alive_fn fn, void *arg)
{
	if (!r) {
		alive_default = fn;
		alive_default_arg = arg;
		return 0;
	}
	if (!mpmc(r))
		return -EINVAL;
	r->m.alive = fn;
	r->m.alive_arg = arg;
	return 0;
}

int shmring_mpmc_set_owner(struct shmring *r, uint64_t owner)
{
	if (!r || !mpmc(r) || !r->m.rec || owner == 0)
		return -EINVAL;
	atomic_store_explicit(&r->m.rec->owner, owner, memory_order_release);
	r->m.owner = owner;
	return 0;
}

int shmring_mpmc_set_patience(struct shmring *r, uint64_t ns)
{
	if (!r || !runs(r) || ns > 1000000000u)
		return -EINVAL;
	r->m.patience_ns = ns ? ns : _SHMRING_MR_PATIENCE_NS;
	return 0;
}

int64_t shmring_mpmc_size(struct shmring *r)
{
	if (!r || !mpmc(r))
		return -EINVAL;
	if (r->broken)
		return -EPROTO;
	struct _shmring_scq_ctl *c = r->m.ctl[_SHMRING_MP_AQ];
	_Atomic uint64_t *hp = runs(r) ? r->cons_pos : &c->head;
	_Atomic uint64_t *tp = runs(r) ? r->prod_pos : &c->tail;
	uint64_t h = atomic_load_explicit(hp, memory_order_relaxed);
	uint64_t t = atomic_load_explicit(tp, memory_order_relaxed);
	if ((int64_t)(t - h) <= 0) /* also where tail has wrapped past 2^64 and head not */
		return 0;
	return t - h > r->capacity ? (int64_t)r->capacity : (int64_t)(t - h);
}

/* ---- recovery ----------------------------------------------------------------------------- */

/* Position of entry number k (inverse of _shmring_mp_slot's remap), given its cycle. */
static uint64_t entry_pos(const struct shmring *r, uint64_t k, uint64_t cyc)
{
	uint64_t j = k;
	if (r->m.emask >= 255) {
		/* k = region * size + run * 8 + i  <-  j = run * 128 + region * 8 + i */
		uint64_t size = (r->m.emask + 1) >> 4, region = k / size, in = k % size;
		j = (in >> 3) * 128 + region * 8 + (in & 7);
	}
	return cyc << r->m.ishift | j;
}

/*
 * A participant that died between its fetch-and-add on the head of q and recording the position
 * may have left an element there that nobody will take ("stranded"): a valid, unclaimed entry at
 * a position p, lo <= p < head. Only the process that took p may take it, so such an entry
 * belongs to a dead process unless a live one is still in that window (it protects every p >= its
 * lo) or has recorded p (any record in DEQ at p protects it: a dead one is recovered through its
 * own record). Returns a position to take through self, UINT64_MAX if none, -EAGAIN (as
 * UINT64_MAX - 1) if only protected-by-the-living ones remain, UINT64_MAX - 2 on corruption.
 *
 * Several dead records may each own one of several stranded positions, and a record knows only
 * a lower bound of its position. Each takes the lowest candidate: if it took a higher one, a
 * later record whose bound lies between the two could be left without one, and that element's
 * slot would leak for good (fuzz input fuzz_mpmc-after-recovery-06a80b81). Lowest-first is an
 * optimal matching whatever the order the records are visited in, since every record's range
 * of possible positions is unbounded above: swapping two choices never loses a match.
 *
 * A bulk take (DEQ_FAA with a RANGE) may own every position of [lo, lo + range): its recovery
 * asks with lim = lo + range, once per candidate, until none is left. Records in DEQ protect
 * their position, records in DEQ_BULK their whole run, and a live record with a RANGE (its
 * owner in the window, or a recovery of it under way) every position from its lo.
 */
#define NO_POS	     UINT64_MAX
#define DEFERRED_POS (UINT64_MAX - 1)
#define CORRUPT_POS  (UINT64_MAX - 2)
static uint64_t find_stranded(struct shmring *r, struct _shmring_mpmc_rec *self, int q, uint64_t lo,
			      uint64_t lim)
{
	uint64_t prot[2 * SHMRING_MPMC_PARTICIPANTS], plen[2 * SHMRING_MPMC_PARTICIPANTS];
	uint64_t minlo = UINT64_MAX, best = NO_POS;
	int np = 0, deferred = 0;

	/* A6: pairs with F2 in _shmring_mp_deq(): the record of whoever took a position below h
	 * (written before its fetch-and-add) is visible to the loads below. */
	uint64_t h = atomic_load_explicit(&r->m.ctl[q]->head, memory_order_acquire);
	if (h >= (1ull << 62))
		return CORRUPT_POS;
	for (int i = 0; i < SHMRING_MPMC_PARTICIPANTS; i++) {
		struct _shmring_mpmc_rec *x = &r->m.recs[i];
		if (x == self)
			continue;
		/* A5: pairs with R5: the fields written before this phase are visible. */
		uint64_t st = atomic_load_explicit(&x->state, memory_order_acquire);
		uint64_t ph = st & 0xff, xq = (st >> 8) & 0xff;
		uint64_t rng = _SHMRING_MP_GET(st, 40);
		int ranged = rng && _SHMRING_MP_GET(st, 48) == (uint64_t)q;
		if (xq == (uint64_t)q && (ph == _SHMRING_MP_DEQ || ph == _SHMRING_MP_DEQ_BULK)) {
			prot[np] = atomic_load_explicit(&x->pos, memory_order_relaxed);
			plen[np++] = ph == _SHMRING_MP_DEQ ? 1 : rng;
		}
		if ((xq == (uint64_t)q && ph == _SHMRING_MP_DEQ_FAA) || ranged) {
			uint64_t o = atomic_load_explicit(&x->owner, memory_order_relaxed);
			uint64_t xl = atomic_load_explicit(&x->lo, memory_order_relaxed);
			if (o != 0 && owner_alive(r, i, o)) {
				if (xl < minlo)
					minlo = xl;
			} else if (ranged && lim == UINT64_MAX) {
				/* A dead bulk take's run is for its own recovery, which takes all
				 * of it: a single record (whose range is unbounded above) must not
				 * take from it and leave one there that only the bulk's record can
				 * reach (found in review: a slot leaked). Bulk records ignore each
				 * other's runs: each takes every stranded element of its own. */
				prot[np] = xl;
				plen[np++] = rng;
			}
		}
	}
	for (uint64_t k = 0; k <= r->m.emask; k++) {
		uint64_t e = atomic_load_explicit(&r->m.ent[q][k], memory_order_acquire);
		uint64_t ei = _SHMRING_MP_IDX(r, e);
		if (ei == r->m.bot || (ei & r->m.claimed))
			continue;
		if (ei >= r->capacity)
			return CORRUPT_POS;
		uint64_t p = entry_pos(r, k, _SHMRING_MP_CYC(r, e));
		if (p < lo || p >= h || p >= lim)
			continue;
		int mine = 1;
		for (int i = 0; i < np; i++)
			if (p >= prot[i] && p - prot[i] < plen[i])
				mine = 0;
		if (!mine)
			continue;
		if (p >= minlo) {
			deferred = 1;
			continue;
		}
		if (p < best)
			best = p;
	}
	if (best != NO_POS)
		return best;
	return deferred ? DEFERRED_POS : NO_POS;
}

static void close_positions(struct shmring *r, int q, uint64_t from);

/* What a dequeuer of position p does when it finds no element of p's cycle there (R4 in the
 * dequeue): an empty older entry moves to p's cycle, an older occupied one loses its safe bit. */
static void close_one(struct shmring *r, int q, uint64_t p)
{
	_Atomic uint64_t *slot = _shmring_mp_slot(r, q, p);
	uint64_t hc = p >> r->m.ishift;
	uint64_t e = atomic_load_explicit(slot, memory_order_acquire);

	for (int tries = 0; tries < 64; tries++) {
		uint64_t ec = _SHMRING_MP_CYC(r, e), ei = _SHMRING_MP_IDX(r, e);

		if (ec >= hc)
			return;
		uint64_t ne = ei == r->m.bot ? _shmring_mp_ent(r, hc, _SHMRING_MP_SAFE(r, e), ei)
					     : _shmring_mp_ent(r, ec, 0, ei);
		/* R4 (recovery side): a late enqueuer for p now fails, or sees it unsafe. Strong:
		 * giving up leaves the position open behind head, so only real changes of the
		 * entry may use up the tries (found in review: LL/SC fails spuriously). */
		if (atomic_compare_exchange_strong_explicit(slot, &e, ne, memory_order_acq_rel,
							    memory_order_acquire))
			return;
	}
}

/* Bits a state word may have: phase, queue, COUNT, DONE, FULL, RANGE, RQ. */
#define STATE_BITS 0x0001ff01ffffffffull

/* Enqueues x into q through the adopted record; a death simulated by a test hook in the
 * recovering handle reads as "try again later". */
static int re_enq(struct shmring *r, struct _shmring_mpmc_rec *rec, int q, uint64_t x, uint64_t s,
		  uint64_t bulk)
{
	int broken = r->broken;
	int rc = _shmring_mp_enq(r, rec, q, x, s, bulk);

	if (rc != -ECANCELED)
		return rc;
	/* The hook's "death" broke the handle (_SHMRING_MP_HOOK); here it only means "later",
	 * and the recovering handle goes on (found in review: its next recover said -EPROTO). */
	r->broken = broken;
	return -EAGAIN;
}

/* A held[] index of the adopted record, checked. */
static int held_at(struct shmring *r, struct _shmring_mpmc_rec *rec, uint64_t j, uint64_t *x)
{
	if (j >= SHMRING_MPMC_BULK_MAX)
		return -EPROTO;
	*x = atomic_load_explicit(&rec->held[j], memory_order_relaxed);
	return *x < r->capacity ? 0 : -EPROTO;
}

/*
 * Finishes the operation of the adopted record rec, one state at a time, each step leaving the
 * record consistent for a later recovery if this one dies. Returns 0, -EAGAIN, -EPROTO.
 */
static int finish(struct shmring *r, struct _shmring_mpmc_rec *rec)
{
	/* Enough for a bulk of SHMRING_MPMC_BULK_MAX going through every state, per element. */
	for (int step = 0; step < 16 * (SHMRING_MPMC_BULK_MAX + 2); step++) {
		/* A5: pairs with R5. */
		uint64_t st = atomic_load_explicit(&rec->state, memory_order_acquire);
		uint64_t ph = st & 0xff, q = (st >> 8) & 0xff, bulk = st & ~0xffffull;
		uint64_t cnt = _SHMRING_MP_GET(st, 16), dn = _SHMRING_MP_GET(st, 24);
		uint64_t rng = _SHMRING_MP_GET(st, 40), rq = _SHMRING_MP_GET(st, 48);
		uint64_t pos = atomic_load_explicit(&rec->pos, memory_order_relaxed);
		uint64_t idx = atomic_load_explicit(&rec->idx, memory_order_relaxed);
		uint64_t s = atomic_load_explicit(&rec->seq, memory_order_relaxed);
		uint64_t x;
		int rc;

		if ((st & ~STATE_BITS) || q > 1 || rq > 1 || ph > _SHMRING_MP_DEQ_BULK ||
		    cnt > SHMRING_MPMC_BULK_MAX || dn > cnt || rng > _SHMRING_MP_SPAN)
			return -EPROTO;
		if ((ph == _SHMRING_MP_HOLD || ph == _SHMRING_MP_ENQ_FAA ||
		     ph == _SHMRING_MP_ENQ) &&
		    idx >= r->capacity)
			return -EPROTO;
		if ((ph == _SHMRING_MP_DEQ || ph >= _SHMRING_MP_HOLD) && pos >= (1ull << 62))
			return -EPROTO;
		switch (ph) {
		case _SHMRING_MP_IDLE:
			if (rng) {
				/* A bulk take: look for its next stranded position. */
				_shmring_mp_state(rec, _SHMRING_MP_DEQ_FAA, (int)rq, bulk);
				break;
			}
			if ((st & _SHMRING_MP_B_FULL) && dn < cnt) {
				/* Written by a bulk push: publish the rest, in order. */
				if ((rc = held_at(r, rec, dn, &x)) < 0)
					return rc;
				rc =
				    re_enq(r, rec, _SHMRING_MP_AQ, x,
					   atomic_load_explicit(&r->m.seq[x], memory_order_relaxed),
					   _SHMRING_MP_B_COUNT(cnt) | _SHMRING_MP_B_DONE(dn + 1) |
					       _SHMRING_MP_B_FULL);
				if (rc < 0)
					return rc;
				break;
			}
			if (!(st & _SHMRING_MP_B_FULL) && cnt > 0) {
				/* Taken by a bulk pop or an unfinished bulk push: slots freed. */
				if ((rc = held_at(r, rec, cnt - 1, &x)) < 0)
					return rc;
				rc =
				    re_enq(r, rec, _SHMRING_MP_FQ, x,
					   atomic_load_explicit(&r->m.seq[x], memory_order_relaxed),
					   _SHMRING_MP_B_COUNT(cnt - 1));
				if (rc < 0)
					return rc;
				break;
			}
			if (bulk)
				_shmring_mp_state(rec, _SHMRING_MP_IDLE, (int)q, 0);
			return 0;
		case _SHMRING_MP_DEQ_FAA: {
			uint64_t lo = atomic_load_explicit(&rec->lo, memory_order_relaxed);
			/* First close every position the dead one may have taken, so that no
			 * enqueue (live, or this recovery's own) lands there from now on; then
			 * take the element that may already have landed there. Fuzz input
			 * regress-recovery-enqueue-into-dead-gap: recovering another record first
			 * gave a slot back into such a position, and it leaked. */
			close_positions(r, (int)q, lo);
			uint64_t p = find_stranded(r, rec, (int)q, lo, rng ? lo + rng : UINT64_MAX);
			if (p == CORRUPT_POS)
				return -EPROTO;
			if (p == DEFERRED_POS)
				return -EAGAIN;
			if (p == NO_POS) {
				_shmring_mp_state(rec, _SHMRING_MP_IDLE, (int)q, 0);
				break;
			}
			atomic_store_explicit(&rec->pos, p, memory_order_relaxed);
			_shmring_mp_state(rec, _SHMRING_MP_DEQ, (int)q, bulk);
			break;
		}
		case _SHMRING_MP_DEQ: {
			_Atomic uint64_t *slot = _shmring_mp_slot(r, (int)q, pos);
			/* A4: pairs with R3: an emptied entry's seq bump is visible. */
			uint64_t e = atomic_load_explicit(slot, memory_order_acquire);
			uint64_t ei = _SHMRING_MP_IDX(r, e);
			if (_SHMRING_MP_CYC(r, e) != pos >> r->m.ishift || ei == r->m.bot) {
				/* Nothing of ours there: close the position as the dead dequeuer
				 * would have, or a live enqueuer that took it lands behind head
				 * (found in review: a pushed element lost). */
				close_one(r, (int)q, pos);
				_shmring_mp_state(rec, _SHMRING_MP_IDLE, (int)q, bulk);
				break;
			}
			if ((ei & ~r->m.claimed) >= r->capacity)
				return -EPROTO;
			/* Claimed by a CAS on the word read, as in _shmring_mp_deq(), never by
			 * a fetch-or that could mark another index landed there for the next
			 * cycle since (found in review). If the word changed: the same index
			 * now CLAIMED means its taker, judged dead, is alive and took it (not
			 * ours); anything else, the next step looks again. */
			if (!(ei & r->m.claimed) &&
			    !atomic_compare_exchange_strong_explicit(slot, &e, e | r->m.claimed,
								     memory_order_acq_rel,
								     memory_order_relaxed)) {
				if (_SHMRING_MP_CYC(r, e) == pos >> r->m.ishift &&
				    _SHMRING_MP_IDX(r, e) == (ei | r->m.claimed))
					_shmring_mp_state(rec, _SHMRING_MP_IDLE, (int)q, bulk);
				break;
			}
			idx = ei & ~r->m.claimed;
			uint64_t ns =
			    atomic_load_explicit(&r->m.seq[idx], memory_order_relaxed) + 1;
			atomic_store_explicit(&rec->idx, idx, memory_order_relaxed);
			atomic_store_explicit(&rec->seq, ns, memory_order_relaxed);
			_shmring_mp_state(rec, _SHMRING_MP_HOLD, (int)q, bulk);
			break;
		}
		case _SHMRING_MP_HOLD: {
			/* Finish the take (seq bump, entry emptied) if the owner died inside it. */
			_Atomic uint64_t *slot = _shmring_mp_slot(r, (int)q, pos);
			uint64_t e = atomic_load_explicit(slot, memory_order_acquire);
			if (_SHMRING_MP_CYC(r, e) == pos >> r->m.ishift &&
			    _SHMRING_MP_IDX(r, e) == (idx | r->m.claimed)) {
				atomic_store_explicit(&r->m.seq[idx], s, memory_order_relaxed);
				/* R3 (recovery side) in _shmring_mp_empty(): pairs with A3/A4;
				 * never on a word that changed since (found in review). */
				_shmring_mp_empty(r, slot, pos, idx);
			}
			/* Whether filling (from fq) or reading (from aq): dropped; slot freed. */
			if ((rc = re_enq(r, rec, _SHMRING_MP_FQ, idx, s, bulk)) < 0)
				return rc;
			break;
		}
		case _SHMRING_MP_ENQ_FAA:
		case _SHMRING_MP_ENQ: {
			if (ph == _SHMRING_MP_ENQ) {
				_Atomic uint64_t *slot = _shmring_mp_slot(r, (int)q, pos);
				/* A4: pairs with R3: if the entry was emptied, seq moved. */
				uint64_t e = atomic_load_explicit(slot, memory_order_acquire);
				int landed = _SHMRING_MP_CYC(r, e) == pos >> r->m.ishift &&
					     (_SHMRING_MP_IDX(r, e) & ~r->m.claimed) == idx &&
					     _SHMRING_MP_IDX(r, e) != r->m.bot;
				if (landed || atomic_load_explicit(&r->m.seq[idx],
								   memory_order_relaxed) != s) {
					_shmring_mp_state(rec, _SHMRING_MP_IDLE, (int)q, bulk);
					break;
				}
			}
			/* Not published: publish it (a filled element is delivered once; a free
			 * index goes back to the free queue). */
			if ((rc = re_enq(r, rec, (int)q, idx, s, bulk)) < 0)
				return rc;
			break;
		}
		case _SHMRING_MP_DEQ_BULK:
			/* Head moved over [pos, pos + rng) for us, with our cnt indices among the
			 * gaps: empty what is still there (a second seq bump of one emptied in
			 * between is harmless: the ENQ check only asks whether seq moved), then the
			 * indices are held, to be freed. */
			if (cnt == 0 || rng < cnt)
				return -EPROTO;
			for (uint64_t p = pos; p < pos + rng; p++) {
				_Atomic uint64_t *slot = _shmring_mp_slot(r, (int)q, p);
				uint64_t e = atomic_load_explicit(slot, memory_order_acquire);
				uint64_t ei = _SHMRING_MP_IDX(r, e);
				int ours = 0;
				if (_SHMRING_MP_CYC(r, e) != p >> r->m.ishift)
					continue;
				for (uint64_t j = 0; j < cnt; j++) {
					if ((rc = held_at(r, rec, j, &x)) < 0)
						return rc;
					ours |= x == ei;
				}
				if (!ours)
					continue;
				atomic_store_explicit(
				    &r->m.seq[ei],
				    atomic_load_explicit(&r->m.seq[ei], memory_order_relaxed) + 1,
				    memory_order_relaxed);
				/* R3 (recovery side) in _shmring_mp_empty(): pairs with A3/A4. */
				_shmring_mp_empty(r, slot, p, ei);
			}
			_shmring_mp_state(rec, _SHMRING_MP_IDLE, (int)q, _SHMRING_MP_B_COUNT(cnt));
			break;
		}
	}
	return -EPROTO;
}

/*
 * A dequeuer that died between its fetch-and-add on head and closing its entry leaves a
 * position that head has passed but whose entry still accepts an enqueue: a later push (or a
 * recovery giving a slot back) would land there, where no consumer will look, and its slot
 * would leak. For every position in [from, head) do what a dequeuer of that position does when
 * it finds no element of its cycle (R4 in the dequeue): an empty entry moves to the position's
 * cycle, an older occupied one loses its safe bit. That is harmless for a position a live
 * dequeuer holds (it would have done the same; the enqueuer racing it retries elsewhere), and it
 * never touches an element of the position's own cycle (find_stranded()'s business).
 */
static void close_positions(struct shmring *r, int q, uint64_t from)
{
	struct _shmring_scq_ctl *c = r->m.ctl[q];
	uint64_t h = atomic_load_explicit(&c->head, memory_order_acquire);

	if (from >= h || h >= (1ull << 62))
		return;
	if (h - from > r->m.emask + 1)
		from = h - (r->m.emask + 1); /* only 2n entries exist; older positions wrapped */
	for (uint64_t p = from; p < h; p++)
		close_one(r, q, p);
}

/* Closes [tail, head) and moves tail up to head, as a dequeuer that finds the queue empty. */
static void close_gap(struct shmring *r, int q)
{
	struct _shmring_scq_ctl *c = r->m.ctl[q];

	uint64_t t = atomic_load_explicit(&c->tail, memory_order_acquire);
	uint64_t h = atomic_load_explicit(&c->head, memory_order_acquire);

	if (t >= h || h >= (1ull << 62))
		return; /* nothing passed by dequeuers; tail must never move back */
	close_positions(r, q, t);
	_shmring_mp_catchup(c, t, h);
}

/*
 * A runs ring's dead participant, record i: skips the claim it had not committed (so consumers
 * need not wait out their patience for it) and frees its arena. A dead process's late stores
 * cannot come, so the arena is safe to hand on. Returns 0 or -EPROTO.
 */
static int finish_runs(struct shmring *r, int i, struct _shmring_mpmc_rec *rec)
{
	/* A5: pairs with R5 (_shmring_mp_state) in _shmring_mr_push: pos is the claim's. */
	uint64_t st = atomic_load_explicit(&rec->state, memory_order_acquire);

	if ((st & 0xff) == _SHMRING_MR_CLAIMING) {
		uint64_t t = atomic_load_explicit(&rec->pos, memory_order_relaxed);
		uint64_t n = (st >> 16) & 0xff;
		if (n == 0 || n > SHMRING_MPMC_BULK_MAX || n > r->capacity)
			return -EPROTO;
		/* R2 (mpmc_runs.h): an undecided first position takes the whole claim. Else it
		 * was announced (CLAIM: skip all of it), committed (nothing to do), skipped one
		 * position at a time by consumers (the rest), or a lap ago (nothing). */
		int rc = _shmring_mr_decide(r, t, _shmring_mr_enc(r, t, _SHMRING_MR_SKIP, n, 0),
					    memory_order_release);
		if (rc < 0)
			return rc;
		_Atomic uint64_t *hp = &r->m.hdr[t & r->mask];
		uint64_t v = atomic_load_explicit(hp, memory_order_relaxed);
		if (rc == 1 && _SHMRING_MR_ST(v) == _SHMRING_MR_CLAIM &&
		    _shmring_mr_cmp(r, v, t) == 0)
			atomic_compare_exchange_strong_explicit(
			    hp, &v, _shmring_mr_enc(r, t, _SHMRING_MR_SKIP, _SHMRING_MR_LEN(v), 0),
			    memory_order_release, memory_order_relaxed);
		else if (rc == 1 && _SHMRING_MR_ST(v) == _SHMRING_MR_SKIP &&
			 _SHMRING_MR_LEN(v) < n &&
			 (rc = _shmring_mr_abandon(r, t, n, _SHMRING_MR_LEN(v))) < 0)
			return rc;
	}
	free_arenas(r, (uint32_t)i);
	_shmring_mp_state(rec, _SHMRING_MP_IDLE, 0, 0);
	return 0;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int _shmring_mr_wait(struct shmring *r, _Atomic uint64_t *hp, uint64_t v, uint64_t h, uint64_t wait)
{
	uint64_t until = 0;

	for (unsigned i = 0; atomic_load_explicit(hp, memory_order_relaxed) == v &&
			     atomic_load_explicit(r->cons_pos, memory_order_relaxed) == h;
	     i++) {
		if (i % 64 == 0) { /* the clock every 64 spins */
			uint64_t now = now_ns();
			if (!until)
				until = now + wait;
			else if (now >= until)
				return 1;
		}
#if defined(__x86_64__) || defined(__i386__)
		__builtin_ia32_pause();
#endif
	}
	return 0;
}

int _shmring_mr_join(struct shmring *r)
{
	if (!r->m.rec || getpid() != r->m.pid)
		return -EINVAL; /* a fork child's copy of its parent's handle */
	uint64_t mine = (uint64_t)r->m.rec_i + 1;
	/* An arena our record already names: its last owner died, its record idle, and we took
	 * that record over at attach. */
	for (uint32_t a = 0; a < r->m.producers; a++)
		if (atomic_load_explicit(&r->m.arenas[a], memory_order_acquire) == mine) {
			r->m.arena = (int32_t)a;
			return 0;
		}
	/* Every arena taken: a dead producer may hold one until recovery frees it (as attach
	 * looks for dead owners' records when none is free). */
	for (int pass = 0; pass < 2; pass++) {
		for (uint32_t a = 0; a < r->m.producers; a++) {
			uint64_t free_ = 0;
			/* A8: pairs with R8 of whoever freed it (close, recovery). */
			if (atomic_compare_exchange_strong_explicit(&r->m.arenas[a], &free_, mine,
								    memory_order_acquire,
								    memory_order_relaxed)) {
				r->m.arena = (int32_t)a;
				return 0;
			}
		}
		if (pass == 0 && shmring_mpmc_recover(r) <= 0)
			break;
	}
	/* A recovery that found a corrupt record broke the handle: say so (found by
	 * fuzz_mpmc_runs: -EUSERS from a broken handle). */
	return r->broken ? -EPROTO : -EUSERS;
}

int shmring_mpmc_recover(struct shmring *r)
{
	int done = 0, again = 0, err = 0;

	if (!r || !mpmc(r))
		return -EINVAL;
	if (r->broken)
		return -EPROTO;
	for (int i = 0; i < SHMRING_MPMC_PARTICIPANTS; i++) {
		struct _shmring_mpmc_rec *rec = &r->m.recs[i];
		if (rec == r->m.rec)
			continue;
		uint64_t o = atomic_load_explicit(&rec->owner, memory_order_acquire);
		int locked, dead = o == 0 ? 0 : take_lock_if_dead(r, i, o, &locked);
		if (dead < 0) {
			/* Not broken: the ring is fine, our lock call was not. What was recovered
			 * so far still gets its gap closed and its wakes (found in review). */
			err = dead;
			break;
		}
		if (!dead)
			continue;
		/* Adopt it: from now on its owner is us, and alive (with OWNER_LOCKED while we
		 * hold its lock, so that no other recovery adopts it while we finish it). */
		uint64_t me = (r->m.owner & ~OWNER_LOCKED) | (locked ? OWNER_LOCKED : 0);
		uint64_t was = o;
		if (!atomic_compare_exchange_strong_explicit(
			&rec->owner, &o, me, memory_order_acq_rel, memory_order_relaxed)) {
			if (locked)
				_shmring_rec_unlock(r, (unsigned)i);
			continue;
		}
		if (retaken(r, i, was, me, locked)) {
			again = 1; /* a locking handle's, live or about to adopt it: look again */
			continue;
		}
		int rc = runs(r) ? finish_runs(r, i, rec) : finish(r, rec);
		if (rc < 0 && rc != -EAGAIN) {
			r->broken = 1; /* the record stays ours, and locked until we close */
			return rc;
		}
		/* EAGAIN: give it back to its dead owner, and a later call resumes. Else R7:
		 * pairs with A7 in handle_init: the record is idle and free. */
		atomic_compare_exchange_strong_explicit(&rec->owner, &me, rc == -EAGAIN ? o : 0,
							memory_order_release, memory_order_relaxed);
		if (locked)
			_shmring_rec_unlock(r, (unsigned)i);
		if (rc == -EAGAIN) {
			again = 1;
			continue;
		}
		done++;
	}
	if (done && !runs(r))
		for (int q = 0; q < 2; q++) {
			close_gap(r, q);
			/* An enqueuer that died between its entry CAS and its threshold reset left
			 * an element that dequeuers would not look for (threshold < 0 reads
			 * "empty"). A high threshold only costs a failed dequeue some extra steps,
			 * so always reset it. */
			atomic_store_explicit(&r->m.ctl[q]->threshold, r->m.thr_max,
					      memory_order_relaxed);
		}
	if (done) {
		/* Recovery may have published elements and freed slots: wake both sides. */
		_shmring_mp_wake(r, r->wake_data);
		_shmring_mp_wake(r, r->wake_space);
	}
	if (err)
		return err;
	return again && done == 0 ? -EAGAIN : done;
}

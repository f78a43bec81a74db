/* SPDX-License-Identifier: MIT */
/* Message rings: the out-of-line parts (recovery from dead producers, the pid cache). */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../sync/sync.h"
#include "internal.h"

static _Thread_local uint32_t cached_pid;
static _Thread_local uint64_t cached_ns;
static _Thread_local int ns_known;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void child_after_fork(void)
{
	/* Only the forking thread survives in the child; its cached pid is the parent's, and so
	 * may its pid namespace be (a parent that called unshare(CLONE_NEWPID)). */
	cached_pid = 0;
	ns_known = 0;
}

static void register_atfork(void)
{
	pthread_atfork(NULL, NULL, child_after_fork);
}

uint32_t _shmring_msg_pid(void)
{
	if (__builtin_expect(cached_pid == 0, 0)) {
		pthread_once(&atfork_once, register_atfork);
		cached_pid = (uint32_t)getpid();
	}
	return cached_pid;
}

/* This process's pid namespace (the inode of /proc/self/ns/pid), or 0 without /proc. */
static uint64_t pid_ns(void)
{
	if (!ns_known) {
		struct stat st;
		pthread_once(&atfork_once, register_atfork);
		cached_ns = stat("/proc/self/ns/pid", &st) == 0 ? (uint64_t)st.st_ino : 0;
		ns_known = 1;
	}
	return cached_ns;
}

/*
 * Whether record x's owner lives in another pid namespace than ours, where its pid names another
 * process or none: no judgement by pid can be made of it, and it reads alive (found in review:
 * the blocking consumer's recovery discarded the claim of a live producer in a child pid
 * namespace, whose pid did not exist here, and its payload then landed in freed space).
 */
static int foreign(const struct _shmring_msg_rec *x)
{
	uint64_t n = atomic_load_explicit(&((struct _shmring_msg_rec *)(uintptr_t)x)->ns,
					  memory_order_relaxed);
	uint64_t me = pid_ns();

	return n && me && n != me;
}

int shmring_msg_pid_gone(uint32_t pid, void *arg)
{
	(void)arg;
	if (pid == 0 || pid > (uint32_t)INT32_MAX)
		return 0;
	/* A zombie is gone too (found in review: a dead producer that its parent, blocked
	 * consuming, could not reap read alive, and the parent waited for ever). */
	int ex = _shmring_group_exited((pid_t)pid);
	if (ex >= 0)
		return ex;
	return kill((pid_t)pid, 0) < 0 && errno == ESRCH; /* no pidfd_open here */
}

void _shmring_msg_handle_init(struct shmring *r, unsigned char *base,
			      const struct _shmring_layout *g)
{
	/* Records are taken by the first reserve (_shmring_msg_rec_take()): a consumer needs
	 * none, and a forked child producing through this handle needs its own. */
	r->msg.c.recs = (struct _shmring_msg_rec *)(base + g->part[_SHMRING_PART_MSGREC].off);
}

/*
 * Claim records on a ring with a file are held as MPMC participant records are: by an OFD lock
 * on one byte of the file per record (sync/sync.h, _shmring_rec_lock()), which the kernel drops
 * when the holder dies, whatever pid namespace holder and judge are in. A taker takes the lock
 * before it owns the record, and says so in the same CAS that makes it the owner
 * (_SHMRING_MSG_LOCKED in the owner word); it frees the record, then drops the lock. So an
 * owner word with the flag and a free lock means the owner is dead (or its handle gone with an
 * exec, or closed holding an open reservation: dead to the ring alike), and a held lock that it
 * is alive, whatever a judge by pid would say. A record without the flag (no file, no /proc,
 * short of descriptors) is judged by pid, as before; a pid of another pid namespace cannot be.
 */

static uint32_t owner_pid(uint64_t o)
{
	return (uint32_t)(o & ~_SHMRING_MSG_LOCKED);
}

/* Whether the owner o of record x, if it has the flag, still holds its lock: 1 alive, 0 dead,
 * -1 unknown (no flag, no file to ask through, or the query failed). */
static int lock_verdict(struct shmring *r, const struct _shmring_msg_rec *x, uint64_t o)
{
	if (!(o & _SHMRING_MSG_LOCKED))
		return -1;
	int held = _shmring_rec_locked(r, (unsigned)(x - r->msg.c.recs));
	return held < 0 ? -1 : held;
}

/* For a taker: whether record x's owner o is gone. lr is our own lock call's result on the
 * record's byte (0: we hold it now, so no live description does, and no one can take the record
 * with the flag before we drop it). */
static int owner_gone(struct shmring *r, const struct _shmring_msg_rec *x, uint64_t o, int lr)
{
	if (o & _SHMRING_MSG_LOCKED) {
		if (lr == 0)
			return 1;
		if (lock_verdict(r, x, o) == 1)
			return 0;
		/* Free, but we hold no lock (out of descriptors, no /proc): the record may be
		 * freed and taken again under the very same owner word before our CAS, by another
		 * handle of that process, and we would take it from under that one (found in
		 * review). A free lock proves nothing to us: judge by pid, as MPMC does. */
	}
	/* By pid; a foreign owner without a lock to judge it by stays. */
	return !foreign(x) && shmring_msg_pid_gone(owner_pid(o), NULL);
}

void (*_shmring_msg_take_hook)(struct shmring *r, int i, int point);

/* Whether the consumer has passed record x's last claim (or it names none). Monotone once the
 * owner is dead: its claim and end stay as they are until the record is taken again, and the
 * consumer's position only grows. */
static int claim_passed(struct shmring *r, struct _shmring_msg_rec *x)
{
	uint64_t c = atomic_load_explicit(&x->claim, memory_order_relaxed);
	uint64_t e = atomic_load_explicit(&x->end, memory_order_relaxed);
	/* A1: pairs with R2 in _shmring_msg_publish_head(): the consumer is done with the
	 * claims below h. */
	uint64_t h = atomic_load_explicit(r->cons_pos, memory_order_acquire);

	return !c || (int64_t)(e - h) <= 0;
}

int _shmring_msg_rec_take(struct shmring *r)
{
	uint32_t me = _shmring_msg_pid();

	/* A child producing through its parent's handle takes a record, and a lock, of its own. */
	_shmring_rec_after_fork(r);
	/* A free record first; else one whose owner is gone and whose last claim the consumer
	 * has passed (a claim it still waits on must stay attributed to the dead owner). */
	for (int pass = 0; pass < 2; pass++) {
		for (int i = 0; i < SHMRING_MSG_PRODUCERS; i++) {
			struct _shmring_msg_rec *x = &r->msg.c.recs[i];
			uint64_t o = atomic_load_explicit(&x->owner, memory_order_acquire);
			if (pass == 0 ? o != 0 : o == 0)
				continue;
			if (pass == 1) {
				if (__builtin_expect(_shmring_msg_take_hook != NULL, 0))
					_shmring_msg_take_hook(r, i, 0);
				/* Not even the lock of a record whose claim the consumer still
				 * waits on: held by us, it reads as its dead owner alive, and
				 * the consumer keeps the claim, and what is committed behind
				 * it, until we drop it (found in review: a blocking consumer
				 * said -EPIPE in that window with messages still behind). */
				if (!claim_passed(r, x))
					continue;
			}
			/* The lock first: a live owner (or another taker) holds it, and then the
			 * record is not ours to take. Free, it is ours until we drop it. */
			int lr = _shmring_rec_lock(r, (unsigned)i);
			if (lr == -EAGAIN)
				continue;
			if (pass == 1) {
				if (__builtin_expect(_shmring_msg_take_hook != NULL, 0) && lr == 0)
					_shmring_msg_take_hook(r, i, 2);
				/* Again under the lock: a live owner may have claimed since. */
				if (!owner_gone(r, x, o, lr) || !claim_passed(r, x)) {
					if (lr == 0)
						_shmring_rec_unlock(r, (unsigned)i);
					continue;
				}
			}
			if (__builtin_expect(_shmring_msg_take_hook != NULL, 0) && pass == 1)
				_shmring_msg_take_hook(r, i, 1);
			uint64_t mine = me | (lr == 0 ? _SHMRING_MSG_LOCKED : 0);
			/* A7: pairs with R7 in _shmring_msg_handle_fini(). */
			if (atomic_compare_exchange_strong_explicit(
				&x->owner, &o, mine, memory_order_acq_rel, memory_order_relaxed)) {
				atomic_store_explicit(&x->ns, pid_ns(), memory_order_relaxed);
				atomic_store_explicit(&x->claim, 0, memory_order_relaxed);
				r->msg.p.rec = x;
				r->msg.p.rec_pid = me;
				r->msg.p.rec_locked = lr == 0;
				return 0;
			}
			if (lr == 0)
				_shmring_rec_unlock(r, (unsigned)i);
		}
	}
	return -EUSERS;
}

void _shmring_msg_handle_fini(struct shmring *r)
{
	struct _shmring_msg_rec *x = r->msg.p.rec;
	uint64_t me = r->msg.p.rec_pid | (r->msg.p.rec_locked ? _SHMRING_MSG_LOCKED : 0);

	/* Only the process that took the record gives it back (a forked child closing the
	 * handles it inherited must not free its parent's record). A handle closed with a claim
	 * still unwritten (only a test does that) keeps its record named, so that recovery can
	 * attribute the claim (its lock goes with the handle's description: dead by lock). */
	if (!x || r->msg.p.rec_pid != _shmring_msg_pid() || r->msg.p.res_active)
		return;
	atomic_store_explicit(&x->claim, 0, memory_order_relaxed);
	/* R7: pairs with A7 in _shmring_msg_rec_take(). Freed before the lock goes: a taker
	 * that gets the lock then finds the record free or another's. */
	atomic_compare_exchange_strong_explicit(&x->owner, &me, 0, memory_order_release,
						memory_order_relaxed);
	if (r->msg.p.rec_locked)
		_shmring_rec_unlock(r, (unsigned)(x - r->msg.c.recs));
}

/*
 * Whether the owner o of record x is dead, for recovery. An owner that holds its record's lock
 * is judged by it alone, in both directions: the lock cannot be wrong (found in review: a dead
 * producer of another pid namespace, whose pid means nothing to a judge by pid, wedged the ring
 * until a judge that knew was asked, and 64 of them shut every producer out), and no judge may
 * call a live producer dead. Any other owner is is_dead's to judge, as the caller asked; one of
 * another pid namespace as foreign_rule says.
 */
static int judged_dead(struct shmring *r, const struct _shmring_msg_rec *x, uint64_t o,
		       int (*is_dead)(uint32_t, void *), void *arg, int foreign_rule)
{
	int v = lock_verdict(r, x, o);
	if (v >= 0)
		return !v;
	if (foreign_rule != _SHMRING_FOREIGN_ASK && foreign(x))
		return foreign_rule != _SHMRING_FOREIGN_ALIVE;
	return is_dead(owner_pid(o), arg) != 0;
}

/*
 * Is the zero-header claim at h still held by someone alive? 1 (wait), 0 (every producer whose
 * record names h is dead; *span is then the least end - h among them), or -1 (no record names
 * h). A distance from h, not an end: positions wrap at 2^64, and an end kept as a number had
 * no value above every end when h is near 2^64 (found in review: the scan below it then ran
 * on to 2^61 words).
 * A record names h when its claim [claim, end) holds h. Every claim is attributed (a reserve
 * takes a record first), and the claimant wrote its record before its CAS, so the real
 * claimant is among those named; the others are stale attempts from before a failed CAS. A
 * live one of those makes us wait a few instructions; a dead one could only widen the span,
 * hence the least end: the real claim ends there or later, and what follows it belongs to the
 * next claimant, alive or not, for a later round.
 */
static int claimant_alive(struct shmring *r, uint64_t h, int (*is_dead)(uint32_t, void *),
			  void *arg, int foreign_rule, uint64_t *span)
{
	int named = 0;

	*span = UINT64_MAX;
	for (int i = 0; i < SHMRING_MSG_PRODUCERS; i++) {
		struct _shmring_msg_rec *x = &r->msg.c.recs[i];
		uint64_t c = atomic_load_explicit(&x->claim, memory_order_relaxed);
		uint64_t e = atomic_load_explicit(&x->end, memory_order_relaxed);
		if (!c || (int64_t)(h - (c & ~1ull)) < 0 || (int64_t)(e - h) <= 0)
			continue;
		uint64_t o = atomic_load_explicit(&x->owner, memory_order_relaxed);
		if (owner_pid(o) == 0 || o > UINT32_MAX)
			continue; /* freed, or not a pid: names nobody */
		named = 1;
		if (!judged_dead(r, x, o, is_dead, arg, foreign_rule))
			return 1;
		if (e - h < *span)
			*span = e - h;
	}
	return named ? 0 : -1;
}

/* Whether the BUSY claim at h, whose header names pid, is held by a live producer: asked of
 * every record of that pid naming h (a pid of ours and one of another namespace may both), or
 * of is_dead alone when none does. */
static int busy_alive(struct shmring *r, uint64_t h, uint32_t pid, int (*is_dead)(uint32_t, void *),
		      void *arg, int foreign_rule)
{
	int named = 0;

	for (int i = 0; i < SHMRING_MSG_PRODUCERS; i++) {
		struct _shmring_msg_rec *x = &r->msg.c.recs[i];
		uint64_t c = atomic_load_explicit(&x->claim, memory_order_relaxed);
		uint64_t e = atomic_load_explicit(&x->end, memory_order_relaxed);
		uint64_t o = atomic_load_explicit(&x->owner, memory_order_relaxed);
		if (!c || (int64_t)(h - (c & ~1ull)) < 0 || (int64_t)(e - h) <= 0 ||
		    owner_pid(o) == 0 || o > UINT32_MAX || owner_pid(o) != pid)
			continue;
		named = 1;
		if (!judged_dead(r, x, o, is_dead, arg, foreign_rule))
			return 1;
	}
	return named ? 0 : !is_dead(pid, arg);
}

int shmring_msg_recover(struct shmring *r, int (*is_dead)(uint32_t pid, void *arg), void *arg)
{
	return _shmring_msg_recover(r, is_dead, arg, _SHMRING_FOREIGN_ALIVE);
}

int shmring_msg_recover_all(struct shmring *r, int (*is_dead)(uint32_t pid, void *arg), void *arg)
{
	return _shmring_msg_recover(r, is_dead, arg, _SHMRING_FOREIGN_ASK);
}

int _shmring_msg_recover(struct shmring *r, int (*is_dead)(uint32_t pid, void *arg), void *arg,
			 int foreign_rule)
{
	if (!r || !is_dead || (r->kind != SHMRING_MSG && r->kind != SHMRING_MSG_MPSC))
		return -EINVAL;
	if (r->broken)
		return -EPROTO;
	if (r->kind == SHMRING_MSG)
		return 0;
	if (r->msg.c.peek_stride) /* the record at head is a committed message */
		return 0;

	uint64_t cap = r->capacity, h = r->c.head, old = r->c.tail_cache;
	/* A2 as in shmring_msg_peek(): t only bounds what may be read. */
	uint64_t t = atomic_load_explicit(r->prod_pos, memory_order_acquire);
	if (t - h > cap || t - h < old - h || (t & 7))
		return _shmring_msg_break(r);
	r->c.tail_cache = t;
	if (t == h)
		return 0;

	_Atomic uint64_t *hp = _shmring_msg_hdr(r, h);
	uint64_t room = cap - (h & r->mask);
	/* A3: pairs with R3 in the MPSC reserve/commit/abort. */
	uint64_t w = atomic_load_explicit(hp, memory_order_acquire);

	/* Zeroes a consumer freed and died before publishing are no claim: the next peek skips
	 * them. Judged as a claim, a judge that reads pid 0 (no record names them) as dead had
	 * the scan run on through them into a live producer's unwritten claim (found in review).
	 */
	if (w == 0 && _shmring_msg_freed_to(r, h) != h)
		return 0;
	if (w == 0) {
		/* A6: the acquire load of t above pairs with R6 in the reserve: every claim record
		 * written before a claim below t is visible. */
		uint64_t span;
		int alive = claimant_alive(r, h, is_dead, arg, foreign_rule, &span);
		if (alive == 1 || (alive < 0 && !is_dead(0, arg)))
			return 0;
		/* F1 in the reserve: a claim whose header is 0 holds only zeroes, so the first
		 * non-zero word is the next record's header. The scan is bounded by t. */
		/* Named: the dead claim ends at end at the latest; never discard past it, into
		 * a next claim whose header is not written yet (its owner may be alive). */
		uint64_t lim = alive == 0 && span < t - h ? span : t - h; /* from h */
		uint64_t n = h + 8;
		while (n - h < lim &&
		       atomic_load_explicit(_shmring_msg_hdr(r, n), memory_order_acquire) == 0)
			n += 8;
		uint64_t gap = n - h, first = gap < room ? gap : room;
		uint32_t fl = first == room ? _SHMRING_MSG_PAD : _SHMRING_MSG_DISCARD;
		uint64_t want = 0;
		/* R3 (as a producer would): pairs with A3 in shmring_msg_peek(). */
		if (!atomic_compare_exchange_strong_explicit(
			hp, &want, _SHMRING_MSG_VALID | fl | (uint32_t)(first - 8),
			memory_order_release, memory_order_relaxed))
			return 0; /* the claimant wrote its header meanwhile: alive */
		if (gap > room)
			atomic_store_explicit(_shmring_msg_hdr(r, h + room),
					      _SHMRING_MSG_VALID | _SHMRING_MSG_DISCARD |
						  (uint32_t)(gap - room - 8),
					      memory_order_release);
		return 1;
	}

	uint32_t lw = (uint32_t)w, n = lw & _SHMRING_MSG_LEN;
	if ((lw & ~_SHMRING_MSG_LEN) != (_SHMRING_MSG_VALID | _SHMRING_MSG_BUSY))
		return 0; /* not stuck here; a corrupt header is peek's to report */
	uint64_t stride = _shmring_msg_stride(n);
	if (stride > room || stride > t - h || n > shmring_msg_max(r))
		return _shmring_msg_break(r);
	if (busy_alive(r, h, (uint32_t)(w >> 32), is_dead, arg, foreign_rule))
		return 0;
	/* R3 (as the producer's abort would): pairs with A3 in shmring_msg_peek(). The producer's
	 * own commit/abort is a compare-and-swap from w too: exactly one of us wins. */
	if (!atomic_compare_exchange_strong_explicit(hp, &w,
						     _SHMRING_MSG_VALID | _SHMRING_MSG_DISCARD | n,
						     memory_order_release, memory_order_relaxed))
		return 0;
	return 1;
}

/* SPDX-License-Identifier: MIT */
/*
 * MPMC ring: the blocking variants. As sync/spsc_wait.c: each tries the non-blocking call, and
 * on -EAGAIN waits for a ready() that re-checks the condition, then tries again.
 *
 * ready() must not say "ready" for ever behind a dead process, or a waiter would spin instead
 * of sleeping. The ring's size cannot serve: a producer killed between its fetch-and-add on the
 * tail and its entry write leaves tail > head with nothing to take. ready_q() asks instead
 * whether the queue is worth one more attempt: its threshold is not exhausted and tail is
 * ahead of head. A failed dequeue always makes that false (it moves head up to tail, or it ran
 * the threshold out), and only an enqueue, which moves tail, or the landing of an element,
 * which resets the threshold, makes it true again. So one dead producer costs a waiter one
 * failed attempt, not a busy loop.
 *
 * A dead process can also hold what a waiter needs: a slot (the free queue looks empty to
 * producers) or a written but unpublished element. So the wait runs in slices of the policy's
 * liveness bound and runs shmring_mpmc_recover() after each one, and once more before -EPIPE.
 */
#include <errno.h>

#include "sync.h"

/*
 * A runs ring (mpmc_runs.h): consumers try while tail is ahead of head, producers while there
 * is room. A claim that a stopped or dead producer holds makes "ahead" true with nothing to
 * take, but a pop waits a patience for it and then skips it, which moves head: a waiter pays
 * that patience once per such claim, not a busy loop.
 */
static int ready_runs(struct shmring *r, int q)
{
	if (r->broken)
		return -EPROTO;
	/* Acquire: as ready_q(), only "try"; the retried call reads with its own A1/A2. */
	uint64_t h = atomic_load_explicit(r->cons_pos, memory_order_acquire);
	uint64_t t = atomic_load_explicit(r->prod_pos, memory_order_acquire);
	return q == _SHMRING_MP_AQ ? (int64_t)(t - h) > 0 : t - h < r->capacity;
}

/* The queue a producer takes from (free indices) or a consumer takes from (filled ones). */
static int ready_q(struct shmring *r, void *arg)
{
	if (r->kind == SHMRING_MPMC_RUNS)
		return ready_runs(r, *(const int *)arg);
	struct _shmring_scq_ctl *c = r->m.ctl[*(const int *)arg];

	if (r->broken)
		return -EPROTO;
	/* Relaxed: every store to the threshold is relaxed, so an acquire here would pair with
	 * nothing (found in review). The reset follows the entry CAS (R2) that published the
	 * element and reaches a sleeper through the sleep hand-shake (F1 in _shmring_mp_wake()
	 * against M1); what this says is only "try", and the retried operation reads the entry
	 * with its own acquire (A2). Head before tail: a stale head only says "try". */
	if (atomic_load_explicit(&c->threshold, memory_order_relaxed) < 0)
		return 0;
	uint64_t h = atomic_load_explicit(&c->head, memory_order_acquire);
	uint64_t t = atomic_load_explicit(&c->tail, memory_order_acquire);
	return t > h;
}

/* Waits until queue q is worth another attempt. Returns 0 (retry the operation) or a negative
 * errno (-ETIMEDOUT, -EPIPE, -EPROTO). */
static int wait_q(struct shmring *r, int q, const struct timespec *deadline)
{
	int dir = q == _SHMRING_MP_AQ ? _SHMRING_DIR_DATA : _SHMRING_DIR_SPACE;
	int rc = _shmring_wait_slice(r, dir, ready_q, &q, deadline);

	if (rc == 1 || rc == -EPIPE) {
		int rec = shmring_mpmc_recover(r);
		if (rec < 0 && rec != -EAGAIN)
			return rec;
		if (rc == 1 || rec > 0)
			return 0; /* end of a slice, or recovery freed something: look again */
	}
	return rc;
}

static int bad(struct shmring *r)
{
	return !r || !r->sync || (r->kind != SHMRING_MPMC && r->kind != SHMRING_MPMC_RUNS);
}

#define WAIT_LOOP(op, q)                                                                           \
	do {                                                                                       \
		for (;;) {                                                                         \
			int rc_ = (op);                                                            \
			if (rc_ != -EAGAIN)                                                        \
				return _shmring_settled(r,                                         \
							(q) == _SHMRING_MP_AQ                      \
							    ? _SHMRING_DIR_DATA                    \
							    : _SHMRING_DIR_SPACE,                  \
							rc_);                                      \
			rc_ = wait_q(r, (q), deadline);                                            \
			if (rc_)                                                                   \
				return rc_;                                                        \
		}                                                                                  \
	} while (0)

int shmring_mpmc_push_wait(struct shmring *r, const void *elem, const struct timespec *deadline)
{
	if (bad(r))
		return -EINVAL;
	WAIT_LOOP(shmring_mpmc_push(r, elem), _SHMRING_MP_FQ);
}

int shmring_mpmc_pop_wait(struct shmring *r, void *elem, const struct timespec *deadline)
{
	if (bad(r))
		return -EINVAL;
	WAIT_LOOP(shmring_mpmc_pop(r, elem), _SHMRING_MP_AQ);
}

int shmring_mpmc_push_burst_wait(struct shmring *r, const void *elems, unsigned n,
				 const struct timespec *deadline)
{
	if (bad(r))
		return -EINVAL;
	WAIT_LOOP(shmring_mpmc_push_burst(r, elems, n), _SHMRING_MP_FQ);
}

int shmring_mpmc_pop_burst_wait(struct shmring *r, void *elems, unsigned n,
				const struct timespec *deadline)
{
	if (bad(r))
		return -EINVAL;
	WAIT_LOOP(shmring_mpmc_pop_burst(r, elems, n), _SHMRING_MP_AQ);
}

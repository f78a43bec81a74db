/* SPDX-License-Identifier: MIT */
/* SPSC ring: the blocking variants. Each tries the non-blocking call, and on -EAGAIN waits
 * (sync/sync.c _shmring_wait) for a ready() that re-checks the condition, then tries again. */
#include <errno.h>

#include "sync.h"

/* Consumer: at least *want elements. Reads the producer's position (A2). */
static int ready_data(struct shmring *r, void *arg)
{
	int64_t a = _shmring_spsc_avail(r, *(const uint64_t *)arg);

	return a < 0 ? (int)a : (uint64_t)a >= *(const uint64_t *)arg;
}

/* Producer: at least *want free slots. Reads the consumer's position (A1). */
static int ready_space(struct shmring *r, void *arg)
{
	int64_t f = _shmring_spsc_free(r, *(const uint64_t *)arg);

	return f < 0 ? (int)f : (uint64_t)f >= *(const uint64_t *)arg;
}

static int bad(struct shmring *r)
{
	return !r || !r->sync || r->kind != SHMRING_SPSC;
}

#define WAIT_LOOP(op, dir, readyfn)                                                                \
	do {                                                                                       \
		uint64_t one = 1;                                                                  \
		for (;;) {                                                                         \
			int rc_ = (op);                                                            \
			if (rc_ != -EAGAIN)                                                        \
				return _shmring_settled(r, dir, rc_);                              \
			rc_ = _shmring_wait(r, dir, readyfn, &one, deadline);                      \
			if (rc_)                                                                   \
				return rc_;                                                        \
		}                                                                                  \
	} while (0)

int shmring_spsc_push_wait(struct shmring *r, const void *elem, const struct timespec *deadline)
{
	if (bad(r))
		return -EINVAL;
	WAIT_LOOP(shmring_spsc_push(r, elem), _SHMRING_DIR_SPACE, ready_space);
}

int shmring_spsc_pop_wait(struct shmring *r, void *elem, const struct timespec *deadline)
{
	if (bad(r))
		return -EINVAL;
	WAIT_LOOP(shmring_spsc_pop(r, elem), _SHMRING_DIR_DATA, ready_data);
}

int shmring_spsc_push_burst_wait(struct shmring *r, const void *elems, unsigned n,
				 const struct timespec *deadline)
{
	if (bad(r))
		return -EINVAL;
	WAIT_LOOP(shmring_spsc_push_burst(r, elems, n), _SHMRING_DIR_SPACE, ready_space);
}

int shmring_spsc_pop_burst_wait(struct shmring *r, void *elems, unsigned n,
				const struct timespec *deadline)
{
	if (bad(r))
		return -EINVAL;
	WAIT_LOOP(shmring_spsc_pop_burst(r, elems, n), _SHMRING_DIR_DATA, ready_data);
}

int shmring_spsc_reserve_wait(struct shmring *r, unsigned n, void **slots,
			      const struct timespec *deadline)
{
	if (bad(r))
		return -EINVAL;
	WAIT_LOOP(shmring_spsc_reserve(r, n, slots), _SHMRING_DIR_SPACE, ready_space);
}

int shmring_spsc_peek_wait(struct shmring *r, unsigned n, const void **slots,
			   const struct timespec *deadline)
{
	if (bad(r))
		return -EINVAL;
	WAIT_LOOP(shmring_spsc_peek(r, n, slots), _SHMRING_DIR_DATA, ready_data);
}

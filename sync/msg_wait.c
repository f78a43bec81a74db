/* SPDX-License-Identifier: MIT */
/* Message rings: the blocking variants. As sync/spsc_wait.c: each tries the non-blocking call,
 * and on -EAGAIN waits (sync/sync.c _shmring_wait) for a ready() that re-checks the condition,
 * then tries again. Anything but -EAGAIN (-EMSGSIZE above all: a message that can never fit)
 * returns at once. */
#include <errno.h>

#include "../ring/internal.h"
#include "sync.h"

/* Consumer: the next record is a message. shmring_msg_peek() itself is the re-check: it reads
 * the producer's position (A2) and the header at our position (A3), and only moves over
 * padding and discarded records (our own work, published with R2); the message stays. */
static int ready_data(struct shmring *r, void *arg)
{
	const void *p;
	int rc = shmring_msg_peek(r, &p, NULL, NULL);

	(void)arg;
	return rc == 0 ? 1 : rc == -EAGAIN ? 0 : rc;
}

/* Producer: room for a message of *len bytes at the producer's position. */
static int ready_space(struct shmring *r, void *arg)
{
	uint64_t cap = r->capacity, len = *(const uint32_t *)arg, pad, gap;

	if (r->kind == SHMRING_MSG) {
		uint64_t t = r->p.tail;
		/* Reads the consumer's position (A1) when the cache says there is no room. */
		int rc = _shmring_msg_spsc_room(r, t, _shmring_msg_need(r, t, len, &pad, &gap));
		return rc == 0 ? 1 : rc == -EAGAIN ? 0 : rc;
	}
	if (r->broken)
		return -EPROTO;
	for (int i = 0; i < 4; i++) {
		/* t first, then h, as in _shmring_msg_mpsc_reserve(). */
		uint64_t t = atomic_load_explicit(r->prod_pos, memory_order_acquire);
		/* A1: pairs with R2 in _shmring_msg_publish_head(): the space below h is free. */
		uint64_t h = atomic_load_explicit(r->cons_pos, memory_order_acquire);
		if ((int64_t)(h - t) > 0)
			continue; /* t went stale meanwhile: read both again */
		if (t - h > cap)
			return 1; /* impossible: the reserve reports it (-EPROTO) */
		return cap - (t - h) >= _shmring_msg_need(r, t, len, &pad, &gap);
	}
	return 0; /* a peer that never lets the pair rest: sleep, up to a slice */
}

/* 1 for a BUSY claimant with no process, and for a header never written (pid 0): asked only
 * once the producer role has no live holder. */
static int gone_or_unwritten(uint32_t pid, void *arg)
{
	return pid == 0 ? 1 : shmring_msg_pid_gone(pid, arg);
}

/*
 * Consumer: waits for a message. Returns 0 (retry the operation), or a negative errno. MPSC: a
 * dead producer's claim at our position would wedge us, so the wait runs in slices of the
 * policy's liveness bound and tries shmring_msg_recover() after each one; after -EPIPE (no
 * producer left) a last recovery also discards a claim whose header was never written, so that
 * everything committed behind it is still delivered before -EPIPE.
 */
static int wait_data(struct shmring *r, const struct timespec *deadline)
{
	if (r->kind == SHMRING_MSG)
		return _shmring_wait(r, _SHMRING_DIR_DATA, ready_data, NULL, deadline);

	int rc = _shmring_wait_slice(r, _SHMRING_DIR_DATA, ready_data, NULL, deadline);
	if (rc == 1) {
		rc = _shmring_msg_recover(r, shmring_msg_pid_gone, NULL, _SHMRING_FOREIGN_ALIVE);
		return rc < 0 ? rc : 0; /* end of a slice: look again */
	}
	if (rc == -EPIPE) {
		/* A claim of a producer of another pid namespace stays here too: the role check
		 * above was made before this recovery, and a producer that claimed the role
		 * since, or never claims it, would lose its message (found in review of a
		 * version that counted such claims dead here). */
		rc = _shmring_msg_recover(r, gone_or_unwritten, NULL, _SHMRING_FOREIGN_ALIVE);
		return rc < 0 ? rc : rc == 1 ? 0 : -EPIPE;
	}
	return rc;
}

static int bad(struct shmring *r)
{
	return !r || !r->sync || (r->kind != SHMRING_MSG && r->kind != SHMRING_MSG_MPSC);
}

#define WAIT_SPACE(op, len)                                                                        \
	do {                                                                                       \
		uint32_t len_ = (len);                                                             \
		for (;;) {                                                                         \
			int rc_ = (op);                                                            \
			if (rc_ != -EAGAIN)                                                        \
				return _shmring_settled(r, _SHMRING_DIR_SPACE, rc_);               \
			rc_ = _shmring_wait(r, _SHMRING_DIR_SPACE, ready_space, &len_, deadline);  \
			if (rc_)                                                                   \
				return rc_;                                                        \
		}                                                                                  \
	} while (0)

#define WAIT_DATA(op)                                                                              \
	do {                                                                                       \
		for (;;) {                                                                         \
			int rc_ = (op);                                                            \
			if (rc_ != -EAGAIN)                                                        \
				return _shmring_settled(r, _SHMRING_DIR_DATA, rc_);                \
			rc_ = wait_data(r, deadline);                                              \
			if (rc_)                                                                   \
				return rc_;                                                        \
		}                                                                                  \
	} while (0)

int shmring_msg_send_wait(struct shmring *r, const void *buf, uint32_t len, uint32_t type,
			  const struct timespec *deadline)
{
	if (bad(r))
		return -EINVAL;
	WAIT_SPACE(shmring_msg_send(r, buf, len, type), len);
}

int shmring_msg_reserve_wait(struct shmring *r, uint32_t len, void **ptr,
			     const struct timespec *deadline)
{
	if (bad(r))
		return -EINVAL;
	WAIT_SPACE(shmring_msg_reserve(r, len, ptr), len);
}

int shmring_msg_send_burst_wait(struct shmring *r, const struct shmring_msgvec *v, unsigned n,
				const struct timespec *deadline)
{
	if (bad(r) || (n && !v))
		return -EINVAL;
	WAIT_SPACE(shmring_msg_send_burst(r, v, n), n ? v[0].len : 0);
}

int shmring_msg_recv_wait(struct shmring *r, void *buf, uint32_t cap, uint32_t *type,
			  const struct timespec *deadline)
{
	if (bad(r))
		return -EINVAL;
	WAIT_DATA(shmring_msg_recv(r, buf, cap, type));
}

int shmring_msg_peek_wait(struct shmring *r, const void **ptr, uint32_t *len, uint32_t *type,
			  const struct timespec *deadline)
{
	if (bad(r))
		return -EINVAL;
	WAIT_DATA(shmring_msg_peek(r, ptr, len, type));
}

int shmring_msg_recv_burst_wait(struct shmring *r, struct shmring_msgvec *v, unsigned n,
				const struct timespec *deadline)
{
	if (bad(r) || (n && !v))
		return -EINVAL;
	WAIT_DATA(shmring_msg_recv_burst(r, v, n));
}

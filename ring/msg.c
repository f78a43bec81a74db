/* SPDX-License-Identifier: MIT */
/* Message rings: the out-of-line parts (recovery from dead producers, the pid cache). */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include "internal.h"

static _Thread_local uint32_t cached_pid;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void child_after_fork(void)
{
	/* Only the forking thread survives in the child; its cached pid is the parent's. */
	cached_pid = 0;
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

int shmring_msg_pid_gone(uint32_t pid, void *arg)
{
	(void)arg;
	if (pid == 0 || pid > (uint32_t)INT32_MAX)
		return 0;
	return kill((pid_t)pid, 0) < 0 && errno == ESRCH;
}

int shmring_msg_recover(struct shmring *r, int (*is_dead)(uint32_t pid, void *arg), void *arg)
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

	if (w == 0) {
		if (!is_dead(0, arg))
			return 0;
		/* F1 in the reserve: a claim whose header is 0 holds only zeroes, so the first
		 * non-zero word is the next record's header. The scan is bounded by t. */
		uint64_t n = h + 8;
		while (n < t &&
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
	if (!is_dead((uint32_t)(w >> 32), arg))
		return 0;
	/* R3 (as the producer's abort would): pairs with A3 in shmring_msg_peek(). The producer's
	 * own commit/abort is a compare-and-swap from w too: exactly one of us wins. */
	if (!atomic_compare_exchange_strong_explicit(hp, &w,
						     _SHMRING_MSG_VALID | _SHMRING_MSG_DISCARD | n,
						     memory_order_release, memory_order_relaxed))
		return 0;
	return 1;
}

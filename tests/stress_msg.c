/* SPDX-License-Identifier: MIT */
/*
 * Threaded stress of the message rings, for TSan: SPSC (one producer thread, one consumer
 * thread) and MPSC (three producer threads, one consumer), random sizes from 0 to the maximum,
 * zero-copy and copying calls mixed, every payload checked, per-producer order checked.
 * Usage: stress_msg [messages per producer]. Exits 0 on success.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <shmring/shmring.h>

#define NPROD 3

static unsigned char pbyte(uint32_t id, uint64_t seq, uint32_t i)
{
	uint64_t x = (seq * 0x9e3779b97f4a7c15ull) ^ ((uint64_t)id << 40) ^ (i * 0xff51afd7ull);
	x ^= x >> 29;
	return (unsigned char)(x ^ (x >> 17));
}

static uint32_t plen(uint32_t id, uint64_t seq, uint32_t max)
{
	uint64_t x = (seq + 1) * 0xbf58476d1ce4e5b9ull ^ id;
	x ^= x >> 31;
	return x % 4 == 0 ? (x % 8 == 0 ? 0 : max) : (uint32_t)((x >> 8) % (max + 1));
}

struct arg {
	struct shmring *r;
	uint32_t id;
	uint64_t count;
	int err;
};

static void *producer(void *p)
{
	struct arg *a = p;
	uint32_t max = shmring_msg_max(a->r);
	unsigned char *tmp = malloc(max + 1);

	for (uint64_t seq = 0; seq < a->count && tmp;) {
		uint32_t n = plen(a->id, seq, max);
		uint32_t type = (a->id << 24) | (uint32_t)(seq & 0xffffff);
		int rc;

		if (seq & 1) {
			void *w;
			rc = shmring_msg_reserve(a->r, n, &w);
			if (rc == 0) {
				for (uint32_t i = 0; i < n; i++)
					((unsigned char *)w)[i] = pbyte(a->id, seq, i);
				rc = shmring_msg_commit(a->r, n, type);
			}
		} else {
			for (uint32_t i = 0; i < n; i++)
				tmp[i] = pbyte(a->id, seq, i);
			rc = shmring_msg_send(a->r, tmp, n, type);
		}
		if (rc == 0)
			seq++;
		else if (rc == -EAGAIN)
			sched_yield();
		else {
			a->err = rc;
			break;
		}
	}
	free(tmp);
	return NULL;
}

static int consume(struct shmring *r, int nprod, uint64_t count)
{
	uint64_t next[NPROD] = {0}, total = 0;
	time_t t0 = time(NULL);

	while (total < count * (uint64_t)nprod) {
		const void *p;
		uint32_t n, type;
		int rc = shmring_msg_peek(r, &p, &n, &type);

		if (rc == -EAGAIN) {
			if (time(NULL) - t0 > 120) {
				fprintf(stderr, "stress_msg: stalled after %llu\n",
					(unsigned long long)total);
				return 1;
			}
			sched_yield();
			continue;
		}
		if (rc) {
			fprintf(stderr, "stress_msg: peek: %s\n", shmring_strerror(rc));
			return 1;
		}
		uint32_t id = type >> 24;
		if (id >= (uint32_t)nprod) {
			fprintf(stderr, "stress_msg: bad type %x\n", type);
			return 1;
		}
		uint64_t seq = next[id]++;
		if ((type & 0xffffff) != (seq & 0xffffff) ||
		    n != plen(id, seq, shmring_msg_max(r))) {
			fprintf(stderr,
				"stress_msg: producer %u: want seq %llu, got type %x len %u\n", id,
				(unsigned long long)seq, type, n);
			return 1;
		}
		for (uint32_t i = 0; i < n; i++)
			if (((const unsigned char *)p)[i] != pbyte(id, seq, i)) {
				fprintf(stderr, "stress_msg: corrupt payload\n");
				return 1;
			}
		shmring_msg_release(r);
		total++;
	}
	return 0;
}

static int run(uint32_t kind, uint64_t cap, int nprod, uint64_t count)
{
	struct shmring_params prm = {.kind = kind, .capacity = cap};
	ssize_t sz = shmring_memsize(&prm);
	void *mem = sz > 0 ? aligned_alloc(128, ((size_t)sz + 127) & ~(size_t)127) : NULL;
	struct shmring *cons, *prod[NPROD];
	pthread_t th[NPROD];
	struct arg a[NPROD];
	int rc = 1;

	if (!mem || shmring_init(mem, (size_t)sz, &prm) ||
	    shmring_attach(mem, (size_t)sz, &prm, &cons))
		return 1;
	for (int i = 0; i < nprod; i++) {
		if (shmring_attach(mem, (size_t)sz, &prm, &prod[i]))
			return 1;
		a[i] = (struct arg){.r = prod[i], .id = (uint32_t)i, .count = count};
		pthread_create(&th[i], NULL, producer, &a[i]);
	}
	rc = consume(cons, nprod, count);
	for (int i = 0; i < nprod; i++) {
		if (rc)
			a[i].count = 0; /* a stalled run: let them go */
		pthread_join(th[i], NULL);
		if (a[i].err) {
			fprintf(stderr, "stress_msg: producer %d: %s\n", i,
				shmring_strerror(a[i].err));
			rc = 1;
		}
		shmring_close(prod[i]);
	}
	shmring_close(cons);
	free(mem);
	printf("stress_msg: kind %u, %d producer(s), %llu messages each: %s\n", kind, nprod,
	       (unsigned long long)count, rc ? "FAILED" : "ok");
	return rc;
}

int main(int argc, char **argv)
{
	uint64_t count = argc > 1 ? strtoull(argv[1], NULL, 0) : 10000;
	int rc = 0;

	rc |= run(SHMRING_MSG, 4096, 1, count * 3);
	rc |= run(SHMRING_MSG_MPSC, 4096, 1, count);
	rc |= run(SHMRING_MSG_MPSC, 8192, NPROD, count);
	return rc;
}

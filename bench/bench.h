/* SPDX-License-Identifier: MIT */
/*
 * The benchmark's contract with its contenders. Every contender is a channel that moves
 * fixed-size elements from one producer to one consumer; the runner (bench.c) owns timing,
 * pinning, integrity checks and statistics, so a contender file holds only its own API calls
 * and can be audited on its own.
 */
#ifndef SHMRING_BENCH_H
#define SHMRING_BENCH_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#ifdef __cplusplus
extern "C" {
#endif

/* What one channel is created for. */
struct bench_cfg {
	unsigned es;	  /* element size in bytes (8, 64, 256, 1024) */
	unsigned burst;	  /* most elements per send/recv call */
	uint64_t cap;	  /* capacity in elements (power of two) */
	const char *name; /* unique per channel, for contenders that need a system-wide name */
};

enum { BENCH_PROD = 0, BENCH_CONS = 1 };

/* Contender flags. */
#define BENCH_THREADS  (1u << 0) /* producer and consumer must be threads of one process */
#define BENCH_BLOCKING (1u << 1) /* send/recv sleep in the kernel instead of returning 0 */

struct contender {
	const char *name;
	unsigned flags;
	const char *skip; /* non-NULL: not available in this build, and why */
	/* In the process that owns the channel, before the two sides start. NULL on failure,
	 * with a reason in *why. */
	void *(*create)(const struct bench_cfg *cfg, const char **why);
	/* In the side's own process or thread. Returns the side's handle, NULL on failure. */
	void *(*open)(void *chan, int role);
	/* Move up to n elements; the count moved (0 = full/empty, try again), < 0 on error. */
	int (*send)(void *side, const void *buf, unsigned n);
	int (*recv)(void *side, void *buf, unsigned n);
	void (*close)(void *side);
	void (*destroy)(void *chan);
};

/* Memory shared with forked children: MAP_SHARED | MAP_ANONYMOUS, populated, 4 KiB aligned. */
void *bench_shm(size_t len);
void bench_shm_free(void *p, size_t len);

static inline uint64_t bench_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline void bench_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

/* The contender tables, one per family (a family compiled without its library still
 * provides its rows, with skip set). */
extern const struct contender bench_shmring[];
extern const unsigned bench_shmring_n;
extern const struct contender bench_textbook;
extern const struct contender bench_ck[];
extern const unsigned bench_ck_n;
extern const struct contender bench_rte[];
extern const unsigned bench_rte_n;
extern const struct contender bench_boost[];
extern const unsigned bench_boost_n;
extern const struct contender bench_urcu;
extern const struct contender bench_ipc[];
extern const unsigned bench_ipc_n;
extern const struct contender bench_eventfd_shm;
extern const struct contender bench_zmq;
extern const struct contender bench_iceoryx;
extern const struct contender bench_spin_mailbox;
extern const struct contender bench_futex_mailbox;

/* Floors that are not channels (floors.c). Each returns the mean, or < 0 on failure. */
double bench_floor_cacheline_ns(uint64_t iters);		 /* ns per round trip */
double bench_floor_memcpy_gbs(size_t bytes, uint64_t target_ns); /* GB/s */
double bench_floor_futex_wake_ns(uint64_t iters);		 /* ns per FUTEX_WAKE */
/* Number of CPUs the affinity mask allowed at the first call (pin.h); main calls it before
 * anything pins. */
int bench_ncpus(void);
/* Pins the calling thread or process to "CPU cpu": the cpu-th of those CPUs, mod their count. */
int bench_pin(int cpu);

/* iceoryx's daemon, started and stopped by the runner: NULL, or why it could not start. */
const char *bench_iceoryx_start(void);
void bench_iceoryx_stop(void);

#ifdef __cplusplus
}
#endif

#endif

/* SPDX-License-Identifier: MIT */
/*
 * shmring: lock-free rings in shared memory.
 *
 * Two levels:
 *  - caller's memory: shmring_memsize(), shmring_init(), shmring_attach(). No system call per
 *    operation; attach itself makes a few: the CPU count (from /sys) and sched_getaffinity,
 *    membarrier QUERY and REGISTER once per process, and for MPMC a read of /proc/self/stat and,
 *    when no participant record is free, a liveness check of idle records' owners; more at the
 *    base of a named ring (see shmring_attach) and with the role flags of shmring/sync.h.
 *  - named backings on top: POSIX shm (shmring_create/open), a regular file
 *    (shmring_create_file/open_file), anonymous MAP_SHARED memory (shmring_create_anon).
 *
 * Every function returns 0 (or a count) on success and a negative errno on failure.
 * Nothing here prints, aborts or exits. Hot paths are static inline in the per-kind headers
 * (shmring/spsc.h), included at the end of this file.
 */
#ifndef SHMRING_SHMRING_H
#define SHMRING_SHMRING_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
#error "shmring's headers are C11 (they use <stdatomic.h>); call them from a C translation unit"
#endif

#define SHMRING_ABI_VERSION 6u

/* Ring kinds, recorded in the segment header. */
enum shmring_kind {
	SHMRING_SPSC = 1,      /* one producer, one consumer, fixed-size elements */
	SHMRING_MPMC = 2,      /* many producers, many consumers, fixed-size elements (mpmc.h) */
	SHMRING_MSG = 3,       /* one producer, one consumer, variable-length messages (msg.h) */
	SHMRING_MSG_MPSC = 4,  /* many producers, one consumer, variable-length messages */
	SHMRING_MPMC_RUNS = 5, /* MPMC that hands bursts over as runs: faster bursts, an arena of
				* capacity * elem_size bytes per producer (mpmc.h) */
};

/* Most producers an SHMRING_MPMC_RUNS ring can have (shmring_params.producers). */
#define SHMRING_RUNS_PRODUCERS_MAX 64u

/* Largest element size a ring accepts, and the largest capacity. */
#define SHMRING_ELEM_MAX     (1u << 20)
#define SHMRING_CAPACITY_MAX (1ull << 30)

/*
 * Memory hints, passed in shmring_params.flags at create and open. Advisory hints that the
 * kernel refuses are dropped silently unless SHMRING_F_REQUIRE is set; shmring_hints() tells
 * which took effect (also after an open whose later hint failed: what the mapping, shared with
 * the process's other handles on the ring, did take). SHMRING_F_MLOCK is never silently
 * dropped.
 */
#define SHMRING_F_PREFAULT                                                                         \
	(1u << 0) /* allocate backing now (ENOSPC at create, not SIGBUS later)                     \
		   */
/* mlock the mapping; fails with -ENOMEM or -EPERM where the lock is refused, -ENOSPC where a
 * bounded tmpfs lacks room for the pages (told before anything is allocated, as for PREFAULT).
 * On a disk file system the lock allocates no blocks: ask PREFAULT too */
#define SHMRING_F_MLOCK (1u << 1)
/* MADV_HUGEPAGE (advisory), given before anything allocates the ring's pages (the create's
 * format, PREFAULT, MLOCK), so that they are huge where the kernel gives huge pages to shared
 * memory: for shm and file rings on tmpfs, the mount's huge= option (advise, within_size or
 * always; /dev/shm is often mounted without it); for anonymous rings, /sys/kernel/mm/
 * transparent_hugepage/shmem_enabled. Where they say no, the advice is taken and changes
 * nothing */
#define SHMRING_F_HUGEPAGE (1u << 2)
#define SHMRING_F_DONTDUMP                                                                         \
	(1u << 3) /* MADV_DONTDUMP: keep payloads out of core dumps (advisory)                     \
		   */
/* fail if an advisory hint is refused: create and open return madvise's -errno (-EINVAL where
 * the kernel lacks the advice) */
#define SHMRING_F_REQUIRE    (1u << 4)
#define SHMRING_F_HINTS_MASK 0x1fu

/*
 * Roles and sleep/wake back-end (see shmring/sync.h). A role flag at create or open makes the
 * handle hold a claim on that role for peer liveness (shmring_peer_alive, -EPIPE); a handle
 * with no role flag holds no claim. SHMRING_F_SEMAPHORE, at creation only, selects the POSIX
 * semaphore back-end instead of futexes; it is recorded in the header (ignored at open). Its
 * tokens go to any sleeper: when sleepers of one queue wait for different amounts (MPSC
 * producers sending different sizes), one that cannot go on may take the token another needed,
 * which then waits until its sleep slice ends (100 ms by default). The futex back-end wakes
 * every sleeper and has no such delay.
 */
#define SHMRING_F_PRODUCER  (1u << 8)
#define SHMRING_F_CONSUMER  (1u << 9)
#define SHMRING_F_SEMAPHORE (1u << 10)
#define SHMRING_F_SYNC_MASK (0x7u << 8)

/* Geometry and options. Zero-initialise, then set what you need. */
struct shmring_params {
	uint32_t kind;	    /* enum shmring_kind; required */
	uint32_t elem_size; /* bytes per element, 1..SHMRING_ELEM_MAX; 0 = any (open only) */
	uint64_t
	    capacity;	/* elements, power of two, 1..SHMRING_CAPACITY_MAX; 0 = any (open only) */
	uint32_t flags; /* SHMRING_F_* */
	uint32_t mode;	/* permission bits of a created object, set exactly (not cut by the umask);
			 * 0 means 0600 */
	uint32_t open_timeout_ms; /* how long open waits for the creator to publish; 0 = 1000 */
	uint32_t producers;	  /* SHMRING_MPMC_RUNS: producer handles that may push at one time,
				   * 1..SHMRING_RUNS_PRODUCERS_MAX (each has an arena of its own);
				   * 0 = any (open only). Zero for every other kind */
};

struct shmring;

/* ---- caller's memory: no system call per operation (attach makes a few: see the top) ---- */

/*
 * Bytes a ring of this geometry needs (p->kind, elem_size, capacity); the memory passed to
 * shmring_init() must be 128-byte aligned. Returns the size, or -EINVAL for a bad geometry,
 * -EOVERFLOW if capacity * elem_size exceeds 2^46 bytes or the segment does not fit in a
 * ssize_t (SSIZE_MAX: about 2 GiB on a 32-bit target). Never blocks. Any role.
 */
ssize_t shmring_memsize(const struct shmring_params *p);

/*
 * Writes an empty ring into mem (len bytes, 128-byte aligned, at least shmring_memsize()).
 * The header is published last, with a release store, so a concurrent attach never sees it
 * half written. Returns 0, -EINVAL (bad geometry, null or misaligned mem), -EOVERFLOW (too
 * large, as for shmring_memsize()) or -ENOSPC (len too small). Never blocks. Call it once,
 * before any attach.
 */
int shmring_init(void *mem, size_t len, const struct shmring_params *p);

/*
 * Validates the ring at mem (len bytes) against expect (kind required; elem_size and capacity
 * checked when non-zero) and returns a handle in *out. Attaching the same address twice in one
 * process shares one registry entry. Attaching at the base of a ring this process opened by name
 * or path (shmring_base()) shares that ring's, file included, as a second open would: the
 * handle then claims roles and MPMC records by the file's locks (a reopen through /proc and fcntl:
 * system calls), has an event fd, and keeps the mapping alive after the opener's
 * handle closes. Returns 0, -EINVAL (also for memory hints in flags: they make system calls, so
 * apply them to your own mapping), -EPROTO (not a valid ring of that kind and geometry, or len
 * short of it), -EAGAIN (header not yet published), -ENOMEM; with role flags -EBUSY (no free
 * slot, memory without a file); for MPMC -EUSERS; at a named base also what a lock or reopen
 * gives (-EMFILE, -EACCES, -ENOLCK; -EOPNOTSUPP for a role without /proc). Never blocks. Any role.
 */
int shmring_attach(void *mem, size_t len, const struct shmring_params *expect,
		   struct shmring **out);

/* ---- named backings --------------------------------------------------------------------- */

/*
 * Creates a POSIX shm object name ("/name", at most 255 bytes, one slash, not ending in ".ev":
 * that is an event FIFO's, see shmring_event_fd; open and unlink still take such a name),
 * exclusively (O_EXCL), mode 0600 unless
 * p->mode says otherwise, sizes it, maps it, applies the hints and writes an empty ring.
 * Returns 0, -EEXIST (another creator won), -EINVAL (bad name or geometry), -EOVERFLOW
 * (capacity * elem_size over 2^46 bytes, or the segment over SSIZE_MAX), -ENOSPC/-EDQUOT
 * (no room for what the create writes; for the slots too with SHMRING_F_PREFAULT or
 * SHMRING_F_MLOCK, which report here what would otherwise be a SIGBUS at a later push),
 * -ENOMEM, -EPERM/-ENOMEM (mlock refused), or another errno from the kernel;
 * for MPMC also -EUSERS (every participant record taken) and what reopening the ring's own
 * file for its record lock and locking can give (-EMFILE, -EACCES: a mode the caller may not
 * open read-write; -ENOLCK); with a role flag, -EOPNOTSUPP without /proc (shmring/sync.h,
 * shmring_claim). On failure nothing is left behind in /dev/shm. Never blocks.
 */
int shmring_create(const char *name, const struct shmring_params *p, struct shmring **out);

/*
 * Opens an existing POSIX shm ring. Waits up to expect->open_timeout_ms for a concurrent creator
 * to publish the header, then validates it against the mapping's real size. Opening the same
 * object twice in one process shares one mapping. Only the ring's own size is mapped, whatever
 * size the object has. Returns 0, -ENOENT, -ETIMEDOUT (never published: creator still working
 * or died), -EPROTO (corrupt, incompatible or of another kind or geometry; nothing stays
 * mapped), -EAGAIN (a peer kept moving its position while the first reading was taken),
 * -EINVAL (also for an expect that no ring can match: no such kind, a capacity that is not a
 * power of two), -ENOSPC (SHMRING_F_PREFAULT or SHMRING_F_MLOCK on a sparse ring with no room
 * left for its pages), -EPERM/-ENOMEM (mlock refused); for MPMC also -EUSERS, -EMFILE, -EACCES,
 * -ENOLCK as for shmring_create; with a role flag (SHMRING_F_PRODUCER, SHMRING_F_CONSUMER)
 * -EOPNOTSUPP where there is no /proc (as for shmring_create). May block up to the timeout.
 */
int shmring_open(const char *name, const struct shmring_params *expect, struct shmring **out);

/* Removes a POSIX shm name, and its event FIFO (<name>.ev in /dev/shm) if there is one (only a
 * FIFO: another file of that name stays; removed before the name and again after it unless a
 * new ring already stands under the name). Mappings stay valid until closed. Returns 0,
 * -ENOENT, -EINVAL, or another -errno. */
int shmring_unlink(const char *name);

/* Same as shmring_create/open over a regular file, opened with O_NOFOLLOW. */
int shmring_create_file(const char *path, const struct shmring_params *p, struct shmring **out);
int shmring_open_file(const char *path, const struct shmring_params *expect, struct shmring **out);
/* Removes a ring file (unlink(2), refusing an empty path), and its event FIFO (<path>.ev) if
 * there is one, as shmring_unlink() (a file of that name that is not such a FIFO stays).
 * Returns 0 or -errno. */
int shmring_unlink_file(const char *path);

/*
 * Creates a ring in anonymous MAP_SHARED memory. A child made by fork() inherits the mapping
 * and the handle, and may use an SPSC or message-ring handle directly (an MPMC handle is one
 * participant: the child attaches its own, see mpmc.h). Returns 0, -EINVAL, -EOVERFLOW (as
 * shmring_create), -ENOMEM, -EPERM.
 */
int shmring_create_anon(const struct shmring_params *p, struct shmring **out);

/*
 * msync(MS_SYNC) of the whole mapping: makes a file-backed ring durable. For a ring in the
 * caller's memory (shmring_attach on memory the library did not map), msync of the pages the
 * ring lies in, which makes it durable when the caller mapped a file there; a mapping msync
 * refuses with EINVAL (a device's, with nothing to sync) gives 0. Anonymous memory has
 * nothing behind it: 0. Returns 0 or -errno. May block on I/O.
 */
int shmring_sync(struct shmring *r);

/*
 * Releases the handle. The last handle on a mapping unmaps it (the registry entry is freed after
 * an RCU grace period). Does not unlink. Accepts NULL. Returns 0.
 */
int shmring_close(struct shmring *r);

/* ---- queries ---------------------------------------------------------------------------- */

/* Capacity in elements, element size in bytes. Never fail on a valid handle. */
uint64_t shmring_capacity(const struct shmring *r);
uint32_t shmring_elem_size(const struct shmring *r);
/* The kind recorded in the segment (enum shmring_kind). */
uint32_t shmring_kind(const struct shmring *r);
/* SHMRING_F_* hints that took effect on this mapping. */
uint32_t shmring_hints(const struct shmring *r);
/* Base address and size of the mapping (for tests and tools). */
void *shmring_base(const struct shmring *r, size_t *len);
/* Bytes SHMRING_F_MLOCK would lock for this geometry (page rounded), or -EINVAL, -EOVERFLOW (as
 * shmring_memsize()). */
ssize_t shmring_lock_bytes(const struct shmring_params *p);
/* 1 once the handle has seen an impossible value in shared memory (every op then says -EPROTO). */
int shmring_is_broken(const struct shmring *r);

/* A short text for a negative (or positive) errno returned by shmring. Never NULL. */
const char *shmring_strerror(int err);

#include <shmring/sync.h>
#include <shmring/spsc.h>
#include <shmring/mpmc.h>
#include <shmring/msg.h>

#endif

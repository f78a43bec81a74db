/* SPDX-License-Identifier: MIT */
/*
 * Mapping backends: POSIX shm, regular files, anonymous shared memory, caller's memory; and the
 * memory hints applied to a mapping.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14; older headers lack it, older kernels say EINVAL */
#endif

#define DEFAULT_OPEN_TIMEOUT_MS 1000u

/* ---- hints ------------------------------------------------------------------------------- */

static int advise(void *base, size_t len, int advice, uint32_t flag, uint32_t flags, uint32_t *eff)
{
	if (madvise(base, len, advice) == 0) {
		*eff |= flag;
		return 0;
	}
	return (flags & SHMRING_F_REQUIRE) ? -errno : 0;
}

/*
 * fallocate(2) of [off, off + len) of the object: it fills holes only, never changing what a
 * live peer wrote, so it is safe at open too. Never glibc's posix_fallocate(), which emulates
 * a missing fallocate by pread/pwrite of one byte per block, racing a peer's stores. A file
 * system without it: 0 (a store may then meet SIGBUS, as for any shared mapping).
 */
static int alloc_range(int fd, uint64_t off, uint64_t len)
{
	int rc;

	if (!len)
		return 0;
	do
		rc = fallocate(fd, 0, (off_t)off, (off_t)len);
	while (rc != 0 && errno == EINTR);
	return rc == 0 || errno == EOPNOTSUPP || errno == EINVAL ? 0 : -errno;
}

/*
 * Allocates [off, off + len) of the mapping at base, through the mapping: so that
 * MADV_HUGEPAGE, advised before, chooses the pages (fallocate allocates small ones, which the
 * advice does not replace: found in review, PREFAULT | HUGEPAGE got no huge page). The kernel
 * says EFAULT where a store would have met SIGBUS: on tmpfs, no room, which is -ENOSPC (found
 * in review: it came out as an unknown error; a quota, EDQUOT, reads as -ENOSPC too). Before
 * Linux 5.14 (no MADV_POPULATE_WRITE, EINVAL): fallocate, then with touch each page written
 * (an atomic add of zero, which changes nothing a peer writes meanwhile): never a touch
 * before the fallocate that turns no room into -ENOSPC rather than SIGBUS (found in review).
 * A file system without fallocate on such a kernel is left as any shared mapping is: a page
 * with no room behind it is a SIGBUS at the touch.
 */
static int populate(unsigned char *base, int fd, uint64_t off, uint64_t len, int touch)
{
	uint64_t pg = (uint64_t)sysconf(_SC_PAGESIZE), a = off & ~(pg - 1);

	if (!len)
		return 0;
	if (madvise(base + a, (size_t)(len + (off - a)), MADV_POPULATE_WRITE) == 0)
		return 0;
	if (errno == EFAULT)
		return -ENOSPC;
	if (errno == ENOMEM || errno == EINTR)
		return -errno;
	/* EINVAL (before 5.14), or madvise refused by a seccomp filter (EPERM, ENOSYS: found in
	 * review, a create with no hints then failed): what the library did before it used
	 * madvise here. */
	int rc = fd >= 0 ? alloc_range(fd, off, len) : 0;
	for (uint64_t o = a; !rc && touch && o < off + len; o += pg)
		__atomic_fetch_add(base + o, 0, __ATOMIC_RELAXED);
	return rc;
}

/*
 * Bytes of [0, len) of fd's object that hold no page yet (its holes), or 0 where it cannot
 * tell. Of the ring's range only: a peer may have grown the object and allocated past it
 * (found in review: whole-file block counts then read as room). */
static uint64_t holes(int fd, uint64_t len)
{
	uint64_t n = 0;
	off_t at = 0;

	while ((uint64_t)at < len) {
		off_t h = lseek(fd, at, SEEK_HOLE);
		if (h < 0 || (uint64_t)h >= len)
			break;
		off_t d = lseek(fd, h, SEEK_DATA);
		uint64_t end = d < 0 || (uint64_t)d > len ? len : (uint64_t)d;
		n += end - (uint64_t)h;
		at = (off_t)end;
	}
	return n;
}

/*
 * -ENOSPC when fd's object lies on a bounded tmpfs without room for the pages [0, len) lacks,
 * else 0. Asked before PREFAULT or MLOCK allocate anything: allocating until the tmpfs is full
 * and then failing left it full, and other rings on it then died of SIGBUS at their next
 * store (found in review). Only tmpfs: there a read fault, as mlock() makes, allocates; on a
 * disk file system it does not, and a refused lock is never a matter of room there (found in
 * review). A tmpfs with no size bound (no block count) always has room. A peer allocating
 * meanwhile can still take the room: this is a check, not a reservation.
 */
static int room_for(int fd, uint64_t len)
{
	struct statfs fs;

	if (fd < 0 || fstatfs(fd, &fs) != 0 || fs.f_type != TMPFS_MAGIC || fs.f_blocks == 0)
		return 0;
	return holes(fd, len) > (uint64_t)fs.f_bavail * (uint64_t)fs.f_bsize ? -ENOSPC : 0;
}

/*
 * Applies the hints in flags to the mapping [base, base + len) of fd (-1: anonymous). What took
 * effect goes to *effective even when a later hint fails: on a mapping shared with earlier
 * handles it stays, and shmring_hints() must say so (found in review).
 */
int _shmring_apply_hints(void *base, size_t len, int fd, uint32_t flags, uint32_t *effective)
{
	uint32_t eff = 0;
	int rc = 0;

	/* Before anything allocates a page here: pages allocated before the advice stay small.
	 * (The creator allocates the format's pages after this too: alloc_formatted().) */
	if (flags & SHMRING_F_HUGEPAGE)
		rc = advise(base, len, MADV_HUGEPAGE, SHMRING_F_HUGEPAGE, flags, &eff);
	if (!rc && (flags & SHMRING_F_DONTDUMP))
		rc = advise(base, len, MADV_DONTDUMP, SHMRING_F_DONTDUMP, flags, &eff);
	if (!rc && (flags & (SHMRING_F_PREFAULT | SHMRING_F_MLOCK)))
		rc = room_for(fd, len);
	/* Never advisory: a caller who asked for locked memory must know it did not get it. The
	 * lock first: a refusal for the limit comes before the kernel allocates anything (found
	 * in review: populating first filled a whole ring, then the lock was refused). */
	if (!rc && (flags & SHMRING_F_MLOCK)) {
		if (mlock(base, len) == 0) {
			eff |= SHMRING_F_MLOCK;
		} else {
			int err = errno == EAGAIN ? ENOMEM : errno;
			/* Refused after it began: the range may read locked (found in review). */
			munlock(base, len);
			/* tmpfs says ENOMEM for no room too, which reads as the lock limit. */
			rc = err == ENOMEM && room_for(fd, len) ? -ENOSPC : -err;
		}
	}
	/* On a full tmpfs this is where ENOSPC belongs, rather than a SIGBUS at the first store
	 * that finds no page. */
	if (!rc && (flags & SHMRING_F_PREFAULT)) {
		rc = populate(base, fd, 0, len, 1);
		if (!rc)
			eff |= SHMRING_F_PREFAULT;
	}
	*effective = eff;
	return rc;
}

ssize_t shmring_lock_bytes(const struct shmring_params *p)
{
	struct _shmring_layout l;
	int rc = _shmring_layout(p, &l);
	long pg = sysconf(_SC_PAGESIZE);

	if (rc)
		return rc;
	uint64_t n = (l.total_size + (uint64_t)pg - 1) & ~((uint64_t)pg - 1);
	return n > (uint64_t)SSIZE_MAX ? -EOVERFLOW : (ssize_t)n;
}

static int unlink_ring(const char *seg_path, const char *name, int (*rm)(const char *));

/* ---- segments ---------------------------------------------------------------------------- */

void _shmring_seg_release(struct _shmring_seg *seg)
{
	if (seg->owns_mapping && seg->base) {
		if (atomic_load_explicit(&seg->hints, memory_order_relaxed) & SHMRING_F_MLOCK)
			munlock(seg->base, seg->len);
		munmap(seg->base, seg->len);
	}
	if (seg->fd >= 0)
		close(seg->fd);
	/* base stays as it was: _shmring_reg_named_at() may still read it from a walk that began
	 * before the node left the table (found in review: clearing it was a data race). */
	seg->fd = -1;
}

static struct _shmring_seg *seg_new(void *base, size_t len, int fd, int owns)
{
	struct _shmring_seg *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	atomic_init(&s->refs, 1);
	s->base = base;
	s->len = len;
	s->fd = fd;
	s->owns_mapping = owns;
	return s;
}

/* Registers a new segment and makes a handle, or joins the one that won a race. Consumes the
 * segment (and its mapping) on every path. */
static int publish_seg(struct _shmring_seg *s, uint32_t flags, struct shmring **out)
{
	struct _shmring_seg *won = _shmring_reg_insert(s);

	if (!won) {
		_shmring_seg_release(s);
		free(s);
		return -ENOMEM;
	}
	if (won != s) {
		_shmring_seg_release(s);
		free(s);
		/* Our hints went with our mapping: give the winner's mapping what it lacks. */
		uint32_t want = flags & SHMRING_F_HINTS_MASK & ~atomic_load(&won->hints);
		if (want & ~SHMRING_F_REQUIRE) {
			uint32_t eff = 0;
			int rc = _shmring_apply_hints(won->base, won->len, won->fd, want, &eff);
			atomic_fetch_or(&won->hints, eff);
			if (rc) {
				_shmring_reg_put(won);
				return rc;
			}
		}
	}
	return _shmring_handle_new(won, out);
}

static int valid_shm_name(const char *name)
{
	size_t n;

	if (!name || name[0] != '/')
		return 0;
	n = strnlen(name, NAME_MAX + 2);
	if (n < 2 || n > NAME_MAX)
		return 0;
	if (strchr(name + 1, '/'))
		return 0;
	if (!strcmp(name, "/.") || !strcmp(name, "/.."))
		return 0;
	return 1;
}

/* A name a new ring may take: not one ending in ".ev", the name of ring "/x"'s event FIFO
 * "/x.ev" beside it (shmring_event_fd), whose place such a ring would take. Only at create:
 * opening or unlinking such a ring that an older version made still works (found in review). */
static int valid_new_shm_name(const char *name)
{
	size_t n = valid_shm_name(name) ? strlen(name) : 0;

	return n && !(n >= 4 && !strcmp(name + n - 3, ".ev"));
}

static mode_t create_mode(const struct shmring_params *p)
{
	return p->mode ? (mode_t)(p->mode & 0777) : 0600;
}

/*
 * Allocates the bytes of a fresh object that _shmring_format() writes, before it writes them:
 * on a full tmpfs, or over a quota, that is -ENOSPC (or -EDQUOT) here, where the caller unlinks
 * the name, rather than a SIGBUS in the middle of the format (found in review: the process was
 * killed inside shmring_create and left its object behind). Through the mapping, after the
 * hints, so that MADV_HUGEPAGE applies to these pages too (found in review: allocated before
 * the mapping, an MPSC message ring's data and every ring's first 2 MiB stayed small). The
 * slots stay unallocated (sparse) unless the format writes them (MPSC message rings) or
 * SHMRING_F_PREFAULT asks for all of it. A filesystem without fallocate() keeps the old
 * behaviour.
 */
static int alloc_formatted(unsigned char *base, int fd, const struct _shmring_layout *l)
{
	const struct _shmring_part *data = &l->part[_SHMRING_PART_DATA];
	int rc = populate(base, fd, 0, data->off, 0); /* header, positions, waiter words */

	for (int i = 0; !rc && i < _SHMRING_NPARTS; i++)
		if (l->part[i].off >= data->off &&
		    (i != _SHMRING_PART_DATA || l->kind == SHMRING_MSG_MPSC))
			rc = populate(base, fd, l->part[i].off, l->part[i].size, 0);
	return rc;
}

/* Common body of the two named creators: fd is fresh, exclusive, empty. */
static int create_on_fd(int fd, const struct shmring_params *p, struct shmring **out)
{
	struct _shmring_layout l;
	struct stat st;
	uint32_t eff = 0;
	void *base;
	int rc;

	rc = _shmring_layout(p, &l);
	if (rc)
		goto fail_fd;
	/* The mode asked for, not what the umask leaves of it (found in review: 0660 became
	 * 0640 under umask 022, and the group's peers got -EACCES). */
	if (fchmod(fd, create_mode(p)) != 0 || fstat(fd, &st) != 0) {
		rc = -errno;
		goto fail_fd;
	}
	if (ftruncate(fd, (off_t)l.total_size) != 0) {
		rc = -errno;
		goto fail_fd;
	}
	base = mmap(NULL, l.total_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (base == MAP_FAILED) {
		rc = -errno;
		goto fail_fd;
	}
	/* The hints first (MADV_HUGEPAGE before any page is allocated), then the pages the
	 * format writes, through the mapping (-ENOSPC on a full tmpfs, not SIGBUS below). */
	rc = _shmring_apply_hints(base, l.total_size, fd, p->flags, &eff);
	if (!rc)
		rc = alloc_formatted(base, fd, &l);
	if (rc) {
		munmap(base, l.total_size);
		goto fail_fd;
	}
	_shmring_format(base, &l);

	struct _shmring_seg *s = seg_new(base, l.total_size, fd, 1);
	if (!s) {
		munmap(base, l.total_size);
		rc = -ENOMEM;
		goto fail_fd;
	}
	s->key = (struct _shmring_key){_SHMRING_KEY_INODE, st.st_dev, st.st_ino};
	s->geo = l;
	atomic_init(&s->hints, eff);
	return publish_seg(s, p->flags, out);

fail_fd:
	close(fd);
	return rc;
}

static int sleep_ms(unsigned ms)
{
	struct timespec ts = {0, (long)ms * 1000000L};

	return nanosleep(&ts, NULL);
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Common body of the two named openers: fd is open read-write. */
static int open_on_fd(int fd, const struct shmring_params *expect, struct shmring **out)
{
	struct _shmring_layout l;
	struct stat st;
	uint32_t eff = 0;
	void *base = NULL;
	size_t len = 0;
	int rc;
	unsigned timeout =
	    expect->open_timeout_ms ? expect->open_timeout_ms : DEFAULT_OPEN_TIMEOUT_MS;
	uint64_t deadline = now_ms() + timeout;

	if (_shmring_producers_bad(expect, 1) ||
	    (expect->flags & ~(SHMRING_F_HINTS_MASK | SHMRING_F_SYNC_MASK))) {
		rc = -EINVAL;
		goto fail;
	}
	for (;;) {
		if (fstat(fd, &st) != 0) {
			rc = -errno;
			goto fail;
		}
		if (!S_ISREG(st.st_mode)) {
			rc = -EINVAL;
			goto fail;
		}
		/* The creator sizes the object before it writes the header: size zero means it
		 * has not got that far yet. */
		if (st.st_size >= (off_t)_SHMRING_HDR_SIZE)
			break;
		if (st.st_size != 0 || now_ms() >= deadline) {
			rc = st.st_size ? -EPROTO : -ETIMEDOUT;
			goto fail;
		}
		sleep_ms(1);
	}

	struct _shmring_key key = {_SHMRING_KEY_INODE, st.st_dev, st.st_ino};
	struct _shmring_seg *s = _shmring_reg_get(&key);
	if (s) {
		/* Already mapped here: share it, and add any hint it does not have yet. */
		uint32_t want = expect->flags & SHMRING_F_HINTS_MASK & ~atomic_load(&s->hints);

		close(fd);
		if (!_shmring_layout_matches(&s->geo, expect)) {
			_shmring_reg_put(s);
			return -EPROTO;
		}
		if (want & ~SHMRING_F_REQUIRE) {
			rc = _shmring_apply_hints(s->base, s->len, s->fd, want, &eff);
			atomic_fetch_or(&s->hints, eff);
			if (rc) {
				_shmring_reg_put(s);
				return rc;
			}
		}
		return _shmring_handle_new(s, out);
	}

	/* The header alone first, then the ring it describes: a peer may have grown the object to
	 * any size, and a mapping of all of it could fail (found in review: -ENOMEM for an object
	 * grown to 2^48 bytes). _shmring_validate() reads only the header; the object's size is
	 * what it checks the ring's size against. */
	size_t objlen = (uint64_t)st.st_size > SIZE_MAX ? SIZE_MAX : (size_t)st.st_size;
	len = _SHMRING_HDR_SIZE;
	base = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
	if (base == MAP_FAILED) {
		base = NULL;
		rc = -errno;
		goto fail;
	}
	for (;;) {
		rc = _shmring_validate(base, objlen, expect, &l);
		if (rc != -EAGAIN)
			break;
		if (now_ms() >= deadline) {
			rc = -ETIMEDOUT;
			break;
		}
		sleep_ms(1);
	}
	if (rc)
		goto fail;
	munmap(base, len);
	len = (size_t)l.total_size;
	base = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (base == MAP_FAILED) {
		base = NULL;
		rc = -errno;
		goto fail;
	}
	/* A peer that rewrote the header between the two mappings is seen here. */
	struct _shmring_layout again;
	rc = _shmring_validate(base, len, expect, &again);
	if (rc || again.kind != l.kind || again.elem_size != l.elem_size ||
	    again.capacity != l.capacity || again.hflags != l.hflags ||
	    again.producers != l.producers) {
		rc = -EPROTO;
		goto fail;
	}
	rc = _shmring_apply_hints(base, len, fd, expect->flags, &eff);
	if (rc)
		goto fail;
	s = seg_new(base, len, fd, 1);
	if (!s) {
		rc = -ENOMEM;
		goto fail;
	}
	s->key = key;
	s->geo = l;
	atomic_init(&s->hints, eff);
	return publish_seg(s, expect->flags, out);

fail:
	if (base)
		munmap(base, len);
	close(fd);
	return rc;
}

static int dup_cloexec(int fd)
{
	return fcntl(fd, F_DUPFD_CLOEXEC, 0);
}

/*
 * After a failed create: removes the name (a shm name if shm, else a path) only while it still
 * names the object we made (mine; keep, when the dup succeeded, holds it open so that its inode
 * number cannot be reused meanwhile). Someone may have unlinked it and created another ring
 * there since (found in review: a failed creator deleted a restarted service's live ring). The
 * name is looked at with lstat(), not opened: opening blocks on a FIFO put in its place, and
 * fails for a mode without read permission (both found in the review of this fix). If even
 * fstat() of our own fd failed we cannot tell, and remove the name as before. A window remains
 * between the check and the unlink; creating under a temporary name and renaming with
 * RENAME_NOREPLACE would close it.
 */
static void unlink_if_ours(const char *name, int shm, int have_mine, const struct stat *mine)
{
	char path[NAME_MAX + 16];
	struct stat now;

	if (shm && (size_t)snprintf(path, sizeof(path), "/dev/shm%s", name) >= sizeof(path))
		return;
	if (have_mine && (lstat(shm ? path : name, &now) != 0 || now.st_dev != mine->st_dev ||
			  now.st_ino != mine->st_ino))
		return;
	/* With its event FIFO: the header reads READY before the last steps that can fail (the
	 * record lock, the role claim), and a peer that opened the ring in between may have made
	 * it (found in review: a failed create left <name>.ev in /dev/shm). */
	unlink_ring(shm ? path : name, name, shm ? shm_unlink : unlink);
}

int shmring_create(const char *name, const struct shmring_params *p, struct shmring **out)
{
	int fd, rc;

	if (!p || !out)
		return -EINVAL;
	if (!valid_new_shm_name(name))
		return -EINVAL;
	/* Check the geometry before creating anything, so a bad call leaves nothing behind. */
	struct _shmring_layout l;
	rc = _shmring_layout(p, &l);
	if (rc)
		return rc;
	fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, create_mode(p));
	if (fd < 0)
		return -errno;
	struct stat mine;
	int have_mine = fstat(fd, &mine) == 0;
	int keep =
	    have_mine ? dup_cloexec(fd) : -1; /* pins the inode; failing is no reason to leak */
	rc = _shmring_sync_opened(create_on_fd(fd, p, out), p->flags, out);
	if (rc)
		unlink_if_ours(name, 1, have_mine, &mine);
	if (keep >= 0)
		close(keep);
	return rc;
}

int shmring_open(const char *name, const struct shmring_params *expect, struct shmring **out)
{
	int fd;

	if (!expect || !out)
		return -EINVAL;
	if (!valid_shm_name(name) || _shmring_expect_check(expect))
		return -EINVAL;
	fd = shm_open(name, O_RDWR | O_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	return _shmring_sync_opened(open_on_fd(fd, expect, out), expect->flags, out);
}

/*
 * The event FIFO goes before the ring's name and again after it. Before: once the name is gone a
 * new ring may take it and adopt the FIFO it finds, which a late unlink would take from it
 * (found in review). After: a consumer of the ring may have made the FIFO anew in between (found
 * in review of that order), and once the name is gone no consumer of it can (fifo_path() reads
 * the name as deleted). So after, unless a ring stands under the name again: a new one, whose
 * FIFO that may already be. Left: a new ring and its FIFO both made between the two calls here.
 */
static void event_unlink_again(const char *seg_path)
{
	struct stat st;

	if (lstat(seg_path, &st) != 0 && errno == ENOENT)
		_shmring_event_unlink(seg_path);
}

/*
 * Removes the ring at seg_path (its file; rm(name) removes its name) and its event FIFO. A path
 * ending in ".ev" that is not a regular file is a ring's event FIFO, not a ring an older version
 * made: never removed as if it were one (found in review: a live ring's consumer then polled a
 * FIFO its producers could no longer open).
 */
static int unlink_ring(const char *seg_path, const char *name, int (*rm)(const char *))
{
	size_t n = strlen(seg_path);
	struct stat st;

	if (n >= 3 && !strcmp(seg_path + n - 3, ".ev") && lstat(seg_path, &st) == 0 &&
	    !S_ISREG(st.st_mode))
		return -EINVAL;
	_shmring_event_unlink(seg_path);
	int rc = rm(name) == 0 ? 0 : -errno;
	event_unlink_again(seg_path);
	return rc;
}

int shmring_unlink(const char *name)
{
	char path[NAME_MAX + 16];

	if (!valid_shm_name(name))
		return -EINVAL;
	/* glibc's shm_open() keeps its objects in /dev/shm, where the FIFO sits beside them. */
	if ((size_t)snprintf(path, sizeof(path), "/dev/shm%s", name) >= sizeof(path))
		return shm_unlink(name) == 0 ? 0 : -errno;
	return unlink_ring(path, name, shm_unlink);
}

int shmring_create_file(const char *path, const struct shmring_params *p, struct shmring **out)
{
	struct _shmring_layout l;
	int fd, rc;

	if (!path || !*path || !p || !out)
		return -EINVAL;
	rc = _shmring_layout(p, &l);
	if (rc)
		return rc;
	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, create_mode(p));
	if (fd < 0)
		return -errno;
	struct stat mine;
	int have_mine = fstat(fd, &mine) == 0;
	int keep =
	    have_mine ? dup_cloexec(fd) : -1; /* pins the inode; failing is no reason to leak */
	rc = _shmring_sync_opened(create_on_fd(fd, p, out), p->flags, out);
	if (rc)
		unlink_if_ours(path, 0, have_mine, &mine);
	if (keep >= 0)
		close(keep);
	return rc;
}

int shmring_open_file(const char *path, const struct shmring_params *expect, struct shmring **out)
{
	int fd;

	if (!path || !*path || !expect || !out || _shmring_expect_check(expect))
		return -EINVAL;
	/* O_NONBLOCK, O_NOCTTY: a path that names a device or a FIFO is refused after fstat(),
	 * without the open blocking or making a terminal ours; no effect on a regular file. */
	fd = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (fd < 0) /* a directory is not a ring file, as a FIFO is not (found in review) */
		return errno == EISDIR ? -EINVAL : -errno;
	return _shmring_sync_opened(open_on_fd(fd, expect, out), expect->flags, out);
}

int shmring_unlink_file(const char *path)
{
	if (!path || !*path)
		return -EINVAL;
	return unlink_ring(path, path, unlink);
}

int shmring_create_anon(const struct shmring_params *p, struct shmring **out)
{
	struct _shmring_layout l;
	uint32_t eff = 0;
	void *base;
	int rc;

	if (!p || !out)
		return -EINVAL;
	rc = _shmring_layout(p, &l);
	if (rc)
		return rc;
	base = mmap(NULL, l.total_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (base == MAP_FAILED)
		return -errno;
	rc = _shmring_apply_hints(base, l.total_size, -1, p->flags, &eff);
	if (rc) {
		munmap(base, l.total_size);
		return rc;
	}
	_shmring_format(base, &l);
	struct _shmring_seg *s = seg_new(base, l.total_size, -1, 1);
	if (!s) {
		munmap(base, l.total_size);
		return -ENOMEM;
	}
	s->key = (struct _shmring_key){_SHMRING_KEY_ADDRESS, (uintptr_t)base, 0};
	s->geo = l;
	atomic_init(&s->hints, eff);
	return _shmring_sync_opened(publish_seg(s, p->flags, out), p->flags, out);
}

int shmring_sync(struct shmring *r)
{
	if (!r || !r->seg)
		return -EINVAL;
	if (r->seg->fd < 0 && r->seg->owns_mapping)
		return 0; /* anonymous: nothing durable behind it */
	/* The caller's memory may be its own MAP_SHARED file mapping (found in review: this said
	 * 0 for it without syncing); msync() wants a page-aligned start. */
	uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE), b = (uintptr_t)r->seg->base;
	uintptr_t a = b & ~(pg - 1);
	if (msync((void *)a, r->seg->len + (b - a), MS_SYNC) == 0)
		return 0;
	/* In the caller's memory, with the start aligned, EINVAL is a mapping with nothing to
	 * sync (a device's, as ivshmem or VFIO BARs between virtual machines give; found in
	 * review): nothing durable behind it, as for anonymous memory. */
	return errno == EINVAL && !r->seg->owns_mapping ? 0 : -errno;
}

/* ---- caller's memory ---------------------------------------------------------------------- */

ssize_t shmring_memsize(const struct shmring_params *p)
{
	struct _shmring_layout l;
	int rc = _shmring_layout(p, &l);

	return rc ? rc : (ssize_t)l.total_size;
}

int shmring_init(void *mem, size_t len, const struct shmring_params *p)
{
	struct _shmring_layout l;
	int rc;

	if (!mem || ((uintptr_t)mem & (_SHMRING_BLOCK - 1)))
		return -EINVAL;
	rc = _shmring_layout(p, &l);
	if (rc)
		return rc;
	if (len < l.total_size)
		return -ENOSPC;
	_shmring_format(mem, &l);
	return 0;
}

int shmring_attach(void *mem, size_t len, const struct shmring_params *expect, struct shmring **out)
{
	struct _shmring_layout l;
	struct _shmring_key key;
	struct _shmring_seg *s;
	int rc;

	if (!mem || !expect || !out || ((uintptr_t)mem & (_SHMRING_BLOCK - 1)))
		return -EINVAL;
	/* Memory hints make system calls, which this level promises not to (found in review:
	 * accepted and ignored). The caller applies them to its own mapping. */
	if (expect->flags & SHMRING_F_HINTS_MASK)
		return -EINVAL;
	if (_shmring_expect_check(expect))
		return -EINVAL;
	key = (struct _shmring_key){_SHMRING_KEY_ADDRESS, (uintptr_t)mem, 0};
	/* The mapping of a ring this process opened by name or path: the handle shares that
	 * segment, file included, as a second open would. Without the file an MPMC handle
	 * would hold its participant record by pid alone, which other pid namespaces misread
	 * (shmring_mpmc_recover). */
	s = _shmring_reg_named_at(mem);
	if (!s)
		s = _shmring_reg_get(&key);
	if (s) {
		if (!_shmring_layout_matches(&s->geo, expect) || len < s->len) {
			_shmring_reg_put(s);
			return -EPROTO;
		}
		return _shmring_sync_opened(_shmring_handle_new(s, out), expect->flags, out);
	}
	rc = _shmring_validate(mem, len, expect, &l);
	if (rc)
		return rc;
	s = seg_new(mem, (size_t)l.total_size, -1, 0);
	if (!s)
		return -ENOMEM;
	s->key = key;
	s->geo = l;
	return _shmring_sync_opened(publish_seg(s, 0, out), expect->flags, out);
}

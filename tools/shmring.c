/* SPDX-License-Identifier: MIT */
/*
 * shmring: inspect and remove rings.
 *   shmring ls              rings in /dev/shm, with their geometry and fill
 *   shmring info NAME|PATH  the header, whether it validates, the positions
 *   shmring rm NAME...      unlink POSIX shm rings
 * It maps segments read-only and never writes to them.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../ring/layout.h"

static const char *kind_name(uint32_t k)
{
	switch (k) {
	case 1:
		return "spsc";
	case 2:
		return "mpmc";
	case 3:
		return "msg";
	case 4:
		return "msg-mpsc";
	case 5:
		return "mpmc-runs";
	default:
		return "?";
	}
}

/*
 * Maps path read-only; returns the mapping or NULL. Quiet unless verbose. *len is what is mapped
 * (for munmap), *objlen the object's size (what describe() checks the ring's size against):
 * the header alone first, then, if it describes a ring, only that ring, as shmring_open() does
 * (an object grown past the address space cannot be mapped whole; found in review).
 */
static void *map_ro(const char *path, size_t *len, size_t *objlen, int verbose)
{
	struct stat st;
	void *m;
	/* O_NONBLOCK: a FIFO in /dev/shm (an event FIFO whose consumer has gone, or anyone's
	 * mkfifo) would block a read-only open until a writer came (found in review: "ls" hung). */
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);

	if (fd < 0) {
		if (verbose)
			fprintf(stderr, "shmring: %s: %s\n", path, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size < _SHMRING_HDR_SIZE) {
		if (verbose)
			fprintf(stderr, "shmring: %s: not a ring (too small)\n", path);
		close(fd);
		return NULL;
	}
	*objlen = (uint64_t)st.st_size > SIZE_MAX ? SIZE_MAX : (size_t)st.st_size;
	*len = _SHMRING_HDR_SIZE;
	m = mmap(NULL, *len, PROT_READ, MAP_SHARED, fd, 0);
	if (m != MAP_FAILED) {
		const struct _shmring_hdr *h = m;
		struct shmring_params expect = {.kind = h->kind};
		struct _shmring_layout l;
		if (_shmring_validate(m, *objlen, &expect, &l) == 0) {
			void *all = mmap(NULL, (size_t)l.total_size, PROT_READ, MAP_SHARED, fd, 0);
			munmap(m, *len);
			m = all; /* MAP_FAILED too: said below */
			*len = *objlen = (size_t)l.total_size;
		}
	}
	close(fd);
	if (m == MAP_FAILED) {
		if (verbose)
			fprintf(stderr, "shmring: %s: %s\n", path, strerror(errno));
		return NULL;
	}
	return m;
}

/* One line (or, verbose, a block) about the segment at m. Returns 0 if it validates. */
static int describe(const char *label, const void *m, size_t len, int verbose)
{
	const struct _shmring_hdr *h = m;
	struct shmring_params expect = {.kind = h->kind};
	struct _shmring_layout l;
	int rc = _shmring_validate(m, len, &expect, &l);

	if (rc) {
		printf("%-40s %s\n", label, shmring_strerror(rc));
		return 1;
	}
	const unsigned char *b = m;
	uint64_t t = atomic_load((_Atomic uint64_t *)(b + l.part[_SHMRING_PART_PROD].off));
	uint64_t c = atomic_load((_Atomic uint64_t *)(b + l.part[_SHMRING_PART_CONS].off));
	if (!verbose) {
		printf("%-40s %-9s elem %7u B  capacity %10llu  used %10llu  %10zu bytes\n", label,
		       kind_name(l.kind), l.elem_size, (unsigned long long)l.capacity,
		       (unsigned long long)(t - c), len);
		return 0;
	}
	printf("%s\n  kind        %s (%u)\n  abi         %u\n  elem_size   %u\n  capacity    %llu\n"
	       "  total_size  %llu (mapping %zu)\n  header flags %#x\n",
	       label, kind_name(l.kind), l.kind, h->abi, l.elem_size,
	       (unsigned long long)l.capacity, (unsigned long long)l.total_size, len, h->flags);
	for (int i = 0; i < _SHMRING_NPARTS; i++)
		if (l.part[i].size)
			printf("  part %d      offset %llu size %llu\n", i,
			       (unsigned long long)l.part[i].off,
			       (unsigned long long)l.part[i].size);
	printf("  producer    %llu\n  consumer    %llu\n  used        %llu%s\n",
	       (unsigned long long)t, (unsigned long long)c, (unsigned long long)(t - c),
	       t - c > l.capacity ? "  (IMPOSSIBLE: corrupt positions)" : "");
	return 0;
}

static int cmd_ls(void)
{
	DIR *d = opendir("/dev/shm");
	struct dirent *e;
	char path[512];

	if (!d) {
		perror("shmring: /dev/shm");
		return 1;
	}
	while ((e = readdir(d))) {
		size_t len, objlen;
		void *m;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/dev/shm/%s", e->d_name);
		m = map_ro(path, &len, &objlen, 0);
		if (!m)
			continue;
		if (((const struct _shmring_hdr *)m)->magic == _SHMRING_MAGIC) {
			snprintf(path, sizeof(path), "/%s", e->d_name);
			describe(path, m, objlen, 0);
		}
		munmap(m, len);
	}
	closedir(d);
	return 0;
}

static int cmd_info(const char *arg)
{
	char path[512];
	size_t len, objlen;
	void *m;
	int rc;

	/* "/name" with no other slash is a POSIX shm name; anything else is a file path. */
	if (arg[0] == '/' && !strchr(arg + 1, '/'))
		snprintf(path, sizeof(path), "/dev/shm%s", arg);
	else
		snprintf(path, sizeof(path), "%s", arg);
	m = map_ro(path, &len, &objlen, 1);
	if (!m)
		return 1;
	rc = describe(arg, m, objlen, 1);
	munmap(m, len);
	return rc;
}

int main(int argc, char **argv)
{
	if (argc == 2 && !strcmp(argv[1], "ls"))
		return cmd_ls();
	if (argc == 3 && !strcmp(argv[1], "info"))
		return cmd_info(argv[2]);
	if (argc >= 3 && !strcmp(argv[1], "rm")) {
		int bad = 0;

		for (int i = 2; i < argc; i++) {
			int rc = shmring_unlink(argv[i]);

			if (rc) {
				fprintf(stderr, "shmring: rm %s: %s\n", argv[i],
					shmring_strerror(rc));
				bad = 1;
			}
		}
		return bad;
	}
	fprintf(stderr, "usage: shmring ls | shmring info NAME|PATH | shmring rm NAME...\n");
	return 2;
}

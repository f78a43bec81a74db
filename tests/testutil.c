/* SPDX-License-Identifier: MIT */
#include "testutil.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_NAMES 256

static char names[MAX_NAMES][96];
static int is_file[MAX_NAMES];
static int nnames;
static pid_t owner;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

void tu_cleanup(void)
{
	/* Only the process that handed the names out cleans them: a forked child exiting must
	 * not unlink a ring its parent still uses. */
	if (getpid() != owner)
		return;
	pthread_mutex_lock(&lock);
	for (int i = 0; i < nnames; i++) {
		if (is_file[i])
			unlink(names[i]);
		else
			shm_unlink(names[i]);
	}
	pthread_mutex_unlock(&lock);
}

static const char *remember(const char *fmt, const char *tag, int file)
{
	static unsigned counter;
	const char *out;

	pthread_mutex_lock(&lock);
	if (nnames == 0) {
		owner = getpid();
		atexit(tu_cleanup);
	}
	if (nnames >= MAX_NAMES) {
		pthread_mutex_unlock(&lock);
		return NULL;
	}
	snprintf(names[nnames], sizeof(names[0]), fmt, (int)getpid(), counter++, tag);
	is_file[nnames] = file;
	out = names[nnames++];
	pthread_mutex_unlock(&lock);
	return out;
}

const char *tu_shm_name(const char *tag)
{
	return remember("/shmring-test-%d-%u-%s", tag, 0);
}

const char *tu_file_path(const char *tag)
{
	return remember("/tmp/shmring-test-%d-%u-%s", tag, 1);
}

int tu_wait(pid_t pid)
{
	int st;

	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -1;
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	return 128 + WTERMSIG(st);
}

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	return x;
}

void tu_fill(void *elem, size_t es, uint64_t seq)
{
	unsigned char *b = elem;

	if (es >= 8) {
		memcpy(b, &seq, 8);
		uint64_t m = mix(seq);
		for (size_t i = 8; i < es; i++)
			b[i] = (unsigned char)(m >> ((i & 7) * 8));
	} else {
		/* Small elements carry the low bytes of the sequence number. */
		for (size_t i = 0; i < es; i++)
			b[i] = (unsigned char)(seq >> (i * 8));
	}
}

uint64_t tu_check(const void *elem, size_t es)
{
	const unsigned char *b = elem;
	uint64_t seq = 0;

	if (es < 8) {
		for (size_t i = 0; i < es; i++)
			seq |= (uint64_t)b[i] << (i * 8);
		return seq;
	}
	memcpy(&seq, b, 8);
	uint64_t m = mix(seq);
	for (size_t i = 8; i < es; i++)
		if (b[i] != (unsigned char)(m >> ((i & 7) * 8)))
			return UINT64_MAX;
	return seq;
}

struct shmring_params tu_params(uint32_t elem_size, uint64_t capacity)
{
	struct shmring_params p = {0};

	p.kind = SHMRING_SPSC;
	p.elem_size = elem_size;
	p.capacity = capacity;
	return p;
}

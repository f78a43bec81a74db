/* SPDX-License-Identifier: MIT */
/* Helpers shared by the tests: unique names, cleanup of /dev/shm, child processes. */
#ifndef SHMRING_TESTUTIL_H
#define SHMRING_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <shmring/shmring.h>

/* A name unique to this process and call ("/shmring-test-<pid>-<n>-<tag>"), remembered so that
 * tu_cleanup() (run at exit, also after a failed assertion) unlinks it. */
const char *tu_shm_name(const char *tag);
/* The same for a file path under /tmp. */
const char *tu_file_path(const char *tag);
/* Unlinks every name and path handed out so far. Safe to call twice. */
void tu_cleanup(void);

/* Waits for a child; returns its exit status, or 128 + signal. */
int tu_wait(pid_t pid);

/* Deterministic sequence-numbered payload: fills elem_size bytes for sequence number seq. */
void tu_fill(void *elem, size_t elem_size, uint64_t seq);
/* Checks a payload; returns the sequence number it holds, or UINT64_MAX if corrupt. */
uint64_t tu_check(const void *elem, size_t elem_size);

/* SPSC params in one line. */
struct shmring_params tu_params(uint32_t elem_size, uint64_t capacity);

#endif

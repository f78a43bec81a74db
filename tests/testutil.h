/* SPDX-License-Identifier: MIT */
/* Helpers shared by the tests: unique names, cleanup of /dev/shm, child processes. */
#ifndef SHMRING_TESTUTIL_H
#define SHMRING_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include <shmring/shmring.h>

/* 1 in a build under AddressSanitizer, which makes mlock() a no-op. */
#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

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

/* A registered name of exactly len bytes (slash included), for probing NAME_MAX. */
const char *tu_shm_name_len(size_t len);
/* 1 if /dev/shm holds this name. */
int tu_shm_exists(const char *name);

/* The VmFlags line of /proc/self/smaps for the mapping holding addr (0, or -1 if none). */
int tu_vmflags(const void *addr, char *flags, size_t len);
/* 1 if that mapping carries the two-letter flag ("dd", "hg", "lo"), 0 if not, -1 if unknown. */
int tu_has_vmflag(const void *addr, const char *flag);
/* Lines of /proc/self/maps that contain needle (a shm name or a path): live mappings of it. */
int tu_maps_count(const char *needle);

/* Drops a capability (CAP_*) from this process's effective, permitted and inheritable sets.
 * Returns 0 or -errno. For forked children that must run as an unprivileged user would. */
int tu_drop_cap(int cap);

/* For the rest of the calling process (call it in a child): system call nr fails with err when
 * argi < 0, or when its argument argi equals val; every other call goes through. Returns 0, or
 * -1 where seccomp filters are not permitted. */
int tu_fail_syscall(long nr, int argi, unsigned long val, int err);

/* In a child: a mount namespace of its own (and a user namespace where only that permits it,
 * mapping our uid and gid to themselves), with a tmpfs mounted at dir with opts. Returns 0, or
 * 77 where that is not permitted here. */
int tu_private_tmpfs(const char *dir, const char *opts);

/* CLOCK_MONOTONIC in milliseconds, and in nanoseconds. */
uint64_t tu_now_ms(void);
uint64_t tu_now_ns(void);
/* The absolute CLOCK_MONOTONIC time ms milliseconds from now: a deadline. */
struct timespec tu_in_ms(uint64_t ms);

/* Unlinks the test objects (in /dev/shm and /tmp) of processes that died without cleaning up:
 * a sanitizer report or a crash ends a process without running atexit. Criterion's runner
 * calls it once every test has ended. Returns how many it removed. */
int tu_sweep_dead(void);
/* For a suite's POST_ALL hook: tu_sweep_dead(), saying on stderr what it removed, so that a
 * leak (not only a crashed worker's leftovers) shows in the log. */
void tu_sweep_report(size_t tests_crashed);

/*
 * A death at every instruction (x86-64 only; tu_step_supported() says). The parent calls
 * tu_step_init() once, tu_step_plan(die_at) before each fork; the child calls tu_step_arm() where
 * stepping starts, and from there single-steps (trap flag) and SIGKILLs itself at its die_at-th
 * instruction (0: never), until tu_step_disarm(). tu_step_ran() gives the instructions it
 * stepped; tu_step_cases() the number of victims worth making per call (fewer under ASan).
 */
int tu_step_supported(void);
void tu_step_init(void);
void tu_step_plan(long die_at);
void tu_step_arm(void);
void tu_step_disarm(void);
long tu_step_ran(void);
long tu_step_cases(void);
/* Spare words shared between the parent and its stepped child (tu_step_init()'s memory). */
_Atomic long *tu_step_slots(void);
/* For op = 0..ops-1: one(op, 0) counts the instructions of a call, then one(op, n) kills the
 * victim at n = 1.. that count (each one, or tu_step_cases() of them spread evenly). one()
 * makes the victim, checks what it left, and returns tu_step_ran(). Returns the smallest count,
 * for the caller to check that stepping happened at all. */
long tu_step_each(long (*one)(int op, long die_at), int ops);

/* Message-ring payloads: byte i of message seq from producer id; a length in 0..max that makes
 * 0 and max frequent; fill and check n bytes (check returns 1 when intact). */
unsigned char tu_msg_byte(uint32_t id, uint64_t seq, uint32_t i);
uint32_t tu_msg_len(uint32_t id, uint64_t seq, uint32_t max);
void tu_msg_fill(unsigned char *b, uint32_t id, uint64_t seq, uint32_t n);
int tu_msg_check(const unsigned char *b, uint32_t id, uint64_t seq, uint32_t n);
/* Type tag: producer id in the top byte, low 24 bits of the sequence number. */
#define TU_MSG_TYPE(id, seq) (((uint32_t)(id) << 24) | ((uint32_t)(seq)&0xffffff))

#endif

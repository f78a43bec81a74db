/* SPDX-License-Identifier: MIT */
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <limits.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <stddef.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_NAMES 256

/* Room for the longest name shm_open accepts, so tests can probe that limit too. */
static char names[MAX_NAMES][NAME_MAX + 2];
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
		if (is_file[i]) /* with the event FIFO beside it, if a test made one */
			shmring_unlink_file(names[i]);
		else
			shmring_unlink(names[i]);
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
		/* Say so: a NULL name only made shmring_create fail far from the cause (seen with
		 * MPMC_KILL_RUNS=300). */
		fprintf(stderr, "testutil: more than %d ring names in one process\n", MAX_NAMES);
		abort();
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

const char *tu_shm_name_len(size_t len)
{
	char pad[NAME_MAX + 2];
	const char *base = tu_shm_name("");
	size_t n;

	if (!base || len > NAME_MAX || len < strlen(base))
		return NULL;
	n = len - strlen(base);
	memset(pad, 'x', n);
	pad[n] = '\0';
	/* The name was remembered with an empty tag: extend it in place, so cleanup sees the
	 * padded one. */
	pthread_mutex_lock(&lock);
	strcat((char *)base, pad);
	pthread_mutex_unlock(&lock);
	return base;
}

int tu_shm_exists(const char *name)
{
	char path[NAME_MAX + 16];
	struct stat st;

	snprintf(path, sizeof(path), "/dev/shm%s", name);
	return stat(path, &st) == 0;
}

int tu_vmflags(const void *addr, char *flags, size_t len)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	char line[512];
	int in = 0, found = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;

		/* Only the header line of a mapping starts with "hex-hex". */
		if (line[strspn(line, "0123456789abcdef")] == '-' &&
		    sscanf(line, "%lx-%lx ", &lo, &hi) == 2) {
			in = (uintptr_t)addr >= lo && (uintptr_t)addr < hi;
			continue;
		}
		if (in && !strncmp(line, "VmFlags:", 8)) {
			snprintf(flags, len, "%s", line + 8);
			found = 0;
			break;
		}
	}
	fclose(f);
	return found;
}

int tu_has_vmflag(const void *addr, const char *flag)
{
	char flags[256], *save = NULL;

	if (tu_vmflags(addr, flags, sizeof(flags)) != 0)
		return -1;
	for (char *t = strtok_r(flags, " \n", &save); t; t = strtok_r(NULL, " \n", &save))
		if (!strcmp(t, flag))
			return 1;
	return 0;
}

int tu_maps_count(const char *needle)
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[1024];
	int n = 0;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (strstr(line, needle))
			n++;
	fclose(f);
	return n;
}

int tu_drop_cap(int cap)
{
	struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
	struct __user_cap_data_struct data[2];

	if (syscall(SYS_capget, &hdr, data) != 0)
		return -errno;
	data[cap / 32].effective &= ~(1u << (cap % 32));
	data[cap / 32].permitted &= ~(1u << (cap % 32));
	data[cap / 32].inheritable &= ~(1u << (cap % 32));
	if (syscall(SYS_capset, &hdr, data) != 0)
		return -errno;
	return 0;
}

uint64_t tu_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Unlinks every "shmring-test-<pid>-..." object in dir whose pid is dead. */
static int sweep_dir(const char *dir, int shm)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	if (!d)
		return 0;
	while ((e = readdir(d))) {
		char *end;
		long pid;

		if (strncmp(e->d_name, "shmring-test-", 13))
			continue;
		pid = strtol(e->d_name + 13, &end, 10);
		if (end == e->d_name + 13 || *end != '-' || pid <= 0)
			continue;
		if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
			continue;
		char path[NAME_MAX + 16];
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if ((shm ? shm_unlink(path + strlen(dir)) : unlink(path)) == 0)
			n++;
	}
	closedir(d);
	return n;
}

int tu_sweep_dead(void)
{
	return sweep_dir("/dev/shm", 1) + sweep_dir("/tmp", 0);
}

void tu_sweep_report(size_t tests_crashed)
{
	int n = tu_sweep_dead();

	if (n)
		fprintf(stderr,
			"removed %d shmring-test object(s) left by dead processes (%zu test(s) "
			"crashed)\n",
			n, tests_crashed);
}

unsigned char tu_msg_byte(uint32_t id, uint64_t seq, uint32_t i)
{
	uint64_t x = (seq * 0x9e3779b97f4a7c15ull) ^ ((uint64_t)id << 40) ^ (i * 0xff51afd7ull);

	x ^= x >> 29;
	return (unsigned char)(x ^ (x >> 17));
}

uint32_t tu_msg_len(uint32_t id, uint64_t seq, uint32_t max)
{
	uint64_t x = (seq + 1) * 0xbf58476d1ce4e5b9ull ^ id;

	x ^= x >> 31;
	/* Make the extremes frequent: 0, max, and everything between. */
	switch (x % 8) {
	case 0:
		return 0;
	case 1:
		return max;
	default:
		return (uint32_t)((x >> 8) % (max + 1));
	}
}

void tu_msg_fill(unsigned char *b, uint32_t id, uint64_t seq, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		b[i] = tu_msg_byte(id, seq, i);
}

int tu_msg_check(const unsigned char *b, uint32_t id, uint64_t seq, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		if (b[i] != tu_msg_byte(id, seq, i))
			return 0;
	return 1;
}

uint64_t tu_now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

struct timespec tu_in_ms(uint64_t ms)
{
	uint64_t t = tu_now_ns() + ms * 1000000ull;

	return (struct timespec){(time_t)(t / 1000000000ull), (long)(t % 1000000000ull)};
}

/* ---- a death at every instruction ------------------------------------------------------------ */

static _Atomic long *step; /* [0] instructions stepped, [1] die at (0: never), [2..] spare */

int tu_step_supported(void)
{
#if defined(__x86_64__)
	return 1;
#else
	return 0;
#endif
}

void tu_step_init(void)
{
	if (!step) {
		step = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		if (step == MAP_FAILED)
			abort();
	}
}

void tu_step_plan(long die_at)
{
	atomic_store(&step[0], 0);
	atomic_store(&step[1], die_at);
}

#if defined(__x86_64__) /* single-stepping is x86-64 only (tu_step_arm()) */
static void step_trap(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)si;
	(void)uc; /* the kernel clears the trap flag while a handler runs */
	long n = atomic_fetch_add(&step[0], 1) + 1;
	if (atomic_load(&step[1]) && n >= atomic_load(&step[1]))
		kill(getpid(), SIGKILL);
}
#endif

void tu_step_arm(void)
{
#if defined(__x86_64__)
	struct sigaction sa = {.sa_sigaction = step_trap, .sa_flags = SA_SIGINFO};
	sigaction(SIGTRAP, &sa, NULL);
	__asm__ volatile("pushfq; orq $0x100, (%%rsp); popfq" ::: "memory", "cc");
#endif
}

void tu_step_disarm(void)
{
#if defined(__x86_64__)
	__asm__ volatile("pushfq; andq $~0x100, (%%rsp); popfq" ::: "memory", "cc");
#endif
}

long tu_step_ran(void)
{
	return atomic_load(&step[0]);
}

_Atomic long *tu_step_slots(void)
{
	return step + 2;
}

long tu_step_cases(void)
{
	/* Every instruction of the plain builds; a sample under ASan, whose instrumentation
	 * triples the instructions and the cost of each fork. */
#if defined(__SANITIZE_ADDRESS__)
	return 300;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
	return 300;
#endif
#endif
	return 1500;
}

long tu_step_each(long (*one)(int op, long die_at), int ops)
{
	long least = LONG_MAX;

	tu_step_init();
	for (int op = 0; op < ops; op++) {
		long total = one(op, 0);
		long stride = total / tu_step_cases() + 1;
		for (long n = 1; n <= total; n += stride)
			one(op, n);
		if (total < least)
			least = total;
	}
	return least;
}

int tu_fail_syscall(long nr, int argi, unsigned long val, int err)
{
	/* A 32-bit comparison of the argument: enough for the flags and advice values tests
	 * name. */
	struct sock_filter f[] = {
	    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
	    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)nr, 0, 2), /* else allow */
	    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, /* the low word, on a little-endian target */
		     offsetof(struct seccomp_data, args) + 8 * (argi < 0 ? 0 : (unsigned)argi)),
	    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)val, 1, argi < 0 ? 1 : 0), /* fail */
	    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ((uint32_t)err & SECCOMP_RET_DATA)),
	};
	struct sock_fprog prog = {(unsigned short)(sizeof(f) / sizeof(f[0])), f};

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
	    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
		return -1;
	return 0;
}

static int write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	ssize_t n = fd < 0 ? -1 : write(fd, text, strlen(text));

	if (fd >= 0)
		close(fd);
	return n == (ssize_t)strlen(text) ? 0 : -1;
}

int tu_private_tmpfs(const char *dir, const char *opts)
{
	char map[64];
	unsigned uid = (unsigned)getuid(), gid = (unsigned)getgid();

	if (unshare(CLONE_NEWNS) != 0) {
		/* Unmapped, our uid reads as the overflow id there, and files made there fail with
		 * EOVERFLOW (found in review: the tests failed as non-root instead of skipping). */
		if (unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0)
			return 77;
		snprintf(map, sizeof(map), "%u %u 1", uid, uid);
		if (write_file("/proc/self/setgroups", "deny") != 0 ||
		    write_file("/proc/self/uid_map", map) != 0)
			return 77;
		snprintf(map, sizeof(map), "%u %u 1", gid, gid);
		if (write_file("/proc/self/gid_map", map) != 0)
			return 77;
	}
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
	    mount("none", dir, "tmpfs", 0, opts) != 0)
		return 77;
	return 0;
}

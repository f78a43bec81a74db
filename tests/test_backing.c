/* SPDX-License-Identifier: MIT */
/*
 * The backing and the registry against fork, concurrent threads and hostile peers: tests for
 * the findings of a review of ring/backing.c and ring/registry.c (each fails on the code
 * before its fix).
 */
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <linux/capability.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

/* ---- a fork while another thread registers with urcu-bp ----------------------------------- */

static sem_t inside, go_on;
static __thread int is_t2;
static volatile int armed;

/* urcu-bp calls this from add_thread() with its registry lock held: the test holds it there
 * while the main thread forks. Everyone else goes straight through. */
int pthread_setspecific(pthread_key_t k, const void *v)
{
	static int (*real)(pthread_key_t, const void *);

	if (!real)
		real =
		    (int (*)(pthread_key_t, const void *))dlsym(RTLD_NEXT, "pthread_setspecific");
	if (armed && is_t2) {
		armed = 0;
		sem_post(&inside);
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1; /* a fixed library's fork waits for the lock: let it go by then */
		sem_timedwait(&go_on, &ts);
	}
	return real(k, v);
}

static _Alignas(128) unsigned char mem_a[1 << 16], mem_b[1 << 16];

static void *registering_thread(void *arg)
{
	struct shmring_params p = tu_params(8, 64);
	struct shmring *r;

	(void)arg;
	is_t2 = 1;
	armed = 1;
	if (shmring_attach(mem_a, sizeof(mem_a), &p, &r) == 0) /* its first rcu_read_lock */
		shmring_close(r);
	return NULL;
}

/* Found in review: the atfork handlers did not call urcu-bp's own, so the child inherited its
 * registry lock held and its first shmring call blocked for ever. */
Test(backing, fork_while_a_thread_registers_with_urcu, .timeout = 30)
{
	struct shmring_params p = tu_params(8, 64);
	pthread_t th;
	int st = 0;

	cr_assert_eq(shmring_init(mem_a, sizeof(mem_a), &p), 0);
	cr_assert_eq(shmring_init(mem_b, sizeof(mem_b), &p), 0);
	sem_init(&inside, 0, 0);
	sem_init(&go_on, 0, 0);
	cr_assert_eq(pthread_create(&th, NULL, registering_thread, NULL), 0);
	sem_wait(&inside);
	pid_t pid = fork();
	if (pid == 0) {
		struct shmring *r;
		alarm(20);
		_exit(shmring_attach(mem_b, sizeof(mem_b), &p, &r) == 0 ? 0 : 3);
	}
	sem_post(&go_on);
	pthread_join(th, NULL);
	int done = 0;
	for (int i = 0; i < 100 && !done; i++) {
		done = waitpid(pid, &st, WNOHANG) == pid;
		if (!done)
			usleep(50000);
	}
	if (!done) {
		kill(pid, SIGKILL);
		waitpid(pid, &st, 0);
	}
	cr_assert(done, "the fork child is still blocked in shmring_attach after 5 s");
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %#x", st);
}

/* ---- hostile peers and hints ------------------------------------------------------------- */

/* Found in review: an opener mapped (and prefaulted, and locked) whatever size a peer had
 * grown the object to, not the ring. */
Test(backing, opener_maps_only_the_ring)
{
	const char *name = tu_shm_name("grown");
	struct shmring_params p = tu_params(8, 64), e = {.kind = SHMRING_SPSC};
	struct shmring *c, *r;
	size_t len = 0;

	/* Created by another process: this one must map it anew, not join the creator's mapping
	 * in the registry. */
	pid_t pid = fork();
	if (pid == 0)
		_exit(shmring_create(name, &p, &c) == 0 ? 0 : 1);
	cr_assert_eq(tu_wait(pid), 0);
	ssize_t need = shmring_memsize(&p);
	int fd = shm_open(name, O_RDWR, 0);
	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, 64 << 20), 0); /* the peer grows it */
	e.flags = SHMRING_F_PREFAULT;
	cr_assert_eq(shmring_open(name, &e, &r), 0);
	shmring_base(r, &len);
	cr_assert_eq(len, (size_t)need, "mapped %zu bytes of a %zd-byte ring", len, need);
	struct stat sb;
	cr_assert_eq(fstat(fd, &sb), 0);
	cr_assert_lt((long long)sb.st_blocks * 512, 1 << 20, "the opener allocated the object");
	shmring_close(r);
	/* Grown far beyond any ring (found in review: the opener mapped the whole object first,
	 * and a 2^48-byte object gave -ENOMEM). */
	cr_assert_eq(ftruncate(fd, (off_t)1 << 48), 0); /* more than the address space */
	cr_assert_eq(shmring_open(name, &e, &r), 0);
	shmring_base(r, &len);
	cr_assert_eq(len, (size_t)need);
	close(fd);
	shmring_close(r);
}

/* Found in review: a fork child inherited the registry entry saying MLOCK, though the kernel
 * does not lock the child's copy; its open with MLOCK then locked nothing and said it had. */
Test(backing, fork_child_mlock_is_real)
{
	const char *name = tu_shm_name("mlk");
	struct shmring_params p = tu_params(8, 64);
	struct shmring *r;

	p.flags = SHMRING_F_MLOCK;
	int rc = shmring_create(name, &p, &r);
	if (rc == -EPERM || rc == -ENOMEM)
		cr_skip_test("mlock refused here (RLIMIT_MEMLOCK): %s", shmring_strerror(rc));
	cr_assert_eq(rc, 0);
	/* Only AddressSanitizer, which makes mlock() a no-op, may leave it unlocked (found in
	 * review: any unlocked mapping skipped, so a create that ignored the flag passed). */
	int locked = tu_has_vmflag(shmring_base(r, NULL), "lo") == 1;
	if (!locked && UNDER_ASAN) {
		shmring_close(r);
		cr_skip_test("mlock() is a no-op under AddressSanitizer");
	}
	cr_assert(locked, "created with SHMRING_F_MLOCK, and not locked");
	pid_t pid = fork();
	if (pid == 0) {
		struct shmring *q;
		if (shmring_open(name, &p, &q) != 0)
			_exit(2);
		int lo = tu_has_vmflag(shmring_base(q, NULL), "lo");
		int says = (shmring_hints(q) & SHMRING_F_MLOCK) != 0;
		_exit(lo == says ? 0 : 1); /* locked and saying so, or neither */
	}
	cr_assert_eq(tu_wait(pid), 0, "the child's hints and its mapping disagree");
	shmring_close(r);
}

/* Found in review: attach accepted memory hints and did nothing with them. */
Test(backing, attach_refuses_hints)
{
	struct shmring_params p = tu_params(8, 64), e = {.kind = SHMRING_SPSC};
	struct shmring *r;

	cr_assert_eq(shmring_init(mem_a, sizeof(mem_a), &p), 0);
	e.flags = SHMRING_F_MLOCK;
	cr_assert_eq(shmring_attach(mem_a, sizeof(mem_a), &e, &r), -EINVAL);
	e.flags = SHMRING_F_PRODUCER;
	cr_assert_eq(shmring_attach(mem_a, sizeof(mem_a), &e, &r), 0);
	shmring_close(r);
}

/* Found in review: five documented returns had no text. */
Test(backing, strerror_names_every_documented_error)
{
	static const int errs[] = {EAGAIN,     ETIMEDOUT, EPIPE,      EPROTO, EINVAL,
				   EEXIST,     ENOENT,	  ENOSPC,     ENOMEM, EPERM,
				   EACCES,     EOVERFLOW, EMSGSIZE,   EBUSY,  EUSERS,
				   EOWNERDEAD, ECANCELED, EOPNOTSUPP, EMFILE, ENOLCK};

	for (unsigned i = 0; i < sizeof(errs) / sizeof(errs[0]); i++)
		cr_assert_str_neq(shmring_strerror(-errs[i]), "unknown error", "errno %d", errs[i]);
}

/* Found in review of the create fix: with no descriptor left for its dup, a failed create left
 * its ring behind under the name (the claim that failed needs a descriptor too). The claim
 * fails after the header reads READY, when a peer may already have opened the ring and made
 * its event FIFO: the FIFO made here beforehand stands for that one, and must go too (found in
 * review: it stayed in /dev/shm). */
Test(backing, failed_create_out_of_descriptors_leaves_nothing)
{
	const char *name = tu_shm_name("emfile");
	char fifo[300];
	struct stat st;

	snprintf(fifo, sizeof(fifo), "/dev/shm%s.ev", name);
	cr_assert_eq(mkfifo(fifo, 0600), 0);
	pid_t pid = fork();

	if (pid == 0) {
		struct shmring_params p = tu_params(8, 64);
		struct shmring *r;
		int lowest = dup(0);
		struct rlimit rl;

		if (lowest < 0 || getrlimit(RLIMIT_NOFILE, &rl) != 0)
			_exit(2);
		close(lowest);
		rl.rlim_cur = (rlim_t)lowest + 1; /* exactly one descriptor free: shm_open's */
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			_exit(2);
		p.flags = SHMRING_F_PRODUCER;
		int rc = shmring_create(name, &p, &r);
		_exit(rc == 0 ? 3 : tu_shm_exists(name) ? 4 : 0);
	}
	int rc = tu_wait(pid), left = lstat(fifo, &st) == 0;
	unlink(fifo);
	cr_assert_neq(rc, 3, "the create succeeded: nothing tested");
	cr_assert_neq(rc, 4, "the failed create left its ring under the name");
	cr_assert_eq(rc, 0);
	cr_assert_not(left, "the failed create left the ring's event FIFO");
}

/*
 * A create on a full filesystem (a small tmpfs, filled, in a mount namespace of a child) fails
 * with -ENOSPC and leaves no file, for every kind: found in review, the format's first store to
 * a page tmpfs could not allocate killed the process with SIGBUS inside shmring_create_file, and
 * the half-made file stayed. Child exit codes: 0 ok, 77 no namespace here, 128 + signal, else
 * the step that failed (10 + kind: a create that did not say -ENOSPC; 20 + kind: a file left).
 */
Test(backing, create_on_a_full_filesystem_fails_cleanly)
{
	char dir[] = "/tmp/shmring-full-XXXXXX";

	cr_assert_not_null(mkdtemp(dir));
	pid_t c = fork();
	if (c == 0) {
		char path[64], fill[64];
		static char chunk[4096];
		if (tu_private_tmpfs(dir, "size=64k") != 0)
			_exit(77);
		snprintf(fill, sizeof(fill), "%s/fill", dir);
		int fd = open(fill, O_WRONLY | O_CREAT, 0600);
		if (fd < 0)
			_exit(2);
		while (write(fd, chunk, sizeof(chunk)) > 0)
			;
		close(fd);
		for (uint32_t kind = SHMRING_SPSC; kind <= SHMRING_MSG_MPSC; kind++) {
			struct shmring_params p = {.kind = kind, .elem_size = 8, .capacity = 1024};
			struct shmring *r;
			struct stat st;
			if (kind == SHMRING_MSG || kind == SHMRING_MSG_MPSC)
				p = (struct shmring_params){.kind = kind, .capacity = 1 << 16};
			snprintf(path, sizeof(path), "%s/ring", dir);
			if (shmring_create_file(path, &p, &r) != -ENOSPC)
				_exit(10 + (int)kind);
			if (stat(path, &st) == 0)
				_exit(20 + (int)kind);
		}
		_exit(0);
	}
	int st = tu_wait(c);
	rmdir(dir);
	if (st == 77)
		cr_skip_test("no mount namespace here");
	cr_assert_eq(st, 0, "the child failed: %d (128 + signal, or the step)", st);
}

/*
 * Memory hints that allocate, on a tmpfs with room for the format but not the slots: each says
 * -ENOSPC, as documented, and leaves no file. Found in review: MLOCK said -ENOMEM (which reads
 * as RLIMIT_MEMLOCK) and an open with PREFAULT said -EFAULT (unknown to shmring_strerror). Then
 * the same as on a kernel before 5.14, without MADV_POPULATE_WRITE (seccomp makes it EINVAL),
 * where the library touches pages itself: found in review, an open with MLOCK or PREFAULT there
 * died of SIGBUS. Child exit codes: 0 ok, 77 no namespace here, 128 + signal, else
 * 100 * round + 10 * step + (what the call returned, or 9 for a file left).
 */
Test(backing, hints_on_a_filesystem_without_room_say_enospc)
{
	char dir[] = "/tmp/shmring-room-XXXXXX";

	cr_assert_not_null(mkdtemp(dir));
	pid_t c = fork();
	if (c == 0) {
		static const uint32_t flags[] = {SHMRING_F_MLOCK, SHMRING_F_PREFAULT,
						 SHMRING_F_PREFAULT | SHMRING_F_HUGEPAGE,
						 SHMRING_F_MLOCK | SHMRING_F_HUGEPAGE};
		struct shmring_params p = tu_params(8, 1 << 17); /* 1 MiB of slots */
		struct shmring *r, *o;
		struct stat st;
		struct rlimit rl;
		char path[64];
		if (tu_private_tmpfs(dir, "size=256k") != 0)
			_exit(77);
		/* A lock limit under the ring: no room is still -ENOSPC, whether the lock was
		 * refused for the limit (without CAP_IPC_LOCK) or for the room (found in review:
		 * a guess from the limit said -ENOMEM for root). */
		if (getrlimit(RLIMIT_MEMLOCK, &rl) == 0 &&
		    (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > 65536)) {
			rl.rlim_cur = 65536;
			setrlimit(RLIMIT_MEMLOCK, &rl);
		}
		snprintf(path, sizeof(path), "%s/ring", dir);
		for (int round = 0; round < 2; round++) {
			if (round == 1 &&
			    tu_fail_syscall(SYS_madvise, 2, 23 /* POPULATE_WRITE */, EINVAL) != 0)
				break;
			for (int i = 0; i < 4; i++) {
				p.flags = flags[i];
				int rc = shmring_create_file(path, &p, &r);
				if (rc != -ENOSPC)
					_exit(100 * round + 10 * (i + 1) +
					      (rc == -ENOMEM ? 1
					       : rc == 0     ? 2
							     : 3));
				if (stat(path, &st) == 0)
					_exit(100 * round + 10 * (i + 1) + 9);
			}
			/* Sparse: only the format is allocated; an open that prefaults or locks
			 * finds no room. */
			p.flags = 0;
			if (shmring_create_file(path, &p, &r) != 0)
				_exit(100 * round + 50);
			shmring_close(r);
			/* An open with MLOCK asks mlock() first, which AddressSanitizer makes a
			 * no-op that allocates nothing and says 0. */
			for (int i = UNDER_ASAN ? 1 : 0; i < 2; i++) {
				struct shmring_params e = {.kind = SHMRING_SPSC, .flags = flags[i]};
				struct statvfs before, after;
				/* ... and leaves the room there was: a tmpfs filled by a failed
				 * open killed other rings' writers with SIGBUS (found in review).
				 */
				if (statvfs(dir, &before) != 0)
					_exit(2);
				int rc = shmring_open_file(path, &e, &o);
				int code = rc == -EFAULT ? 1 : rc == 0 ? 2 : 3;
				if (rc != -ENOSPC)
					_exit(100 * round + 60 + 10 * i + code);
				if (statvfs(dir, &after) != 0 || after.f_bavail != before.f_bavail)
					_exit(100 * round + 60 + 10 * i + 8);
			}
			shmring_unlink_file(path);
		}
		_exit(0);
	}
	int st = tu_wait(c);
	rmdir(dir);
	if (st == 77)
		cr_skip_test("no mount namespace here");
	cr_assert_eq(st, 0,
		     "the child failed: %d (100 * round (1: no MADV_POPULATE_WRITE) + 10 * step "
		     "+ 1: -ENOMEM, 2: 0, 3: other, 9: a file left; 61: an open said -EFAULT, 68: "
		     "it used up the room)",
		     st);
}

/* A seccomp filter that refuses MADV_POPULATE_WRITE with EPERM (as sandboxes refuse what they
 * do not know): a create without hints still works, as before the library used it (found in
 * review: -EPERM), and so does one with PREFAULT. Child exit codes: 0 ok, 77 no seccomp here,
 * else the step. */
Test(backing, create_where_madvise_populate_is_refused)
{
	const char *name = tu_shm_name("noadvise");
	pid_t c = fork();

	if (c == 0) {
		struct shmring_params p = tu_params(8, 1024);
		struct shmring *r;
		if (tu_fail_syscall(SYS_madvise, 2, 23 /* POPULATE_WRITE */, EPERM) != 0)
			_exit(77);
		for (int i = 0; i < 2; i++) {
			p.flags = i ? SHMRING_F_PREFAULT : 0;
			if (shmring_create(name, &p, &r) != 0)
				_exit(2 + i);
			shmring_close(r);
			shmring_unlink(name);
		}
		_exit(0);
	}
	int st = tu_wait(c);
	if (st == 77)
		cr_skip_test("no seccomp here");
	cr_assert_eq(st, 0, "step %d: a create failed", st);
	cr_assert_not(tu_shm_exists(name));
}

/*
 * Without CAP_IPC_LOCK and under a small RLIMIT_MEMLOCK: a create with MLOCK is refused before
 * anything is allocated (found in review: a 256 MiB ring was filled first, then refused), and
 * a second open of a mapped ring with DONTDUMP | MLOCK, refused, leaves the advice it gave
 * reported by shmring_hints() (found in review: the mapping said dd, the hints 0). Child exit
 * codes: 0 ok, 77 cannot drop the capability, else the step.
 */
Test(backing, refused_mlock_allocates_nothing_and_hides_nothing)
{
	const char *name = tu_shm_name("mlock-limit");

	if (UNDER_ASAN)
		cr_skip_test("mlock() is a no-op under AddressSanitizer");
	pid_t c = fork();

	if (c == 0) {
		struct shmring_params p = tu_params(8, 1 << 25); /* 256 MiB of slots */
		struct shmring *r, *a, *b;
		struct rlimit rl = {65536, 65536};
		struct rusage ru0, ru1;
		if (tu_drop_cap(CAP_IPC_LOCK) != 0 || setrlimit(RLIMIT_MEMLOCK, &rl) != 0)
			_exit(77);
		getrusage(RUSAGE_SELF, &ru0);
		p.flags = SHMRING_F_MLOCK;
		int rc = shmring_create(name, &p, &r);
		getrusage(RUSAGE_SELF, &ru1);
		if (rc != -ENOMEM || tu_shm_exists(name))
			_exit(2);
		if (ru1.ru_maxrss - ru0.ru_maxrss > 16 * 1024) /* KiB */
			_exit(3);
		p = tu_params(8, 1 << 16);
		if (shmring_create(name, &p, &a) != 0)
			_exit(4);
		struct shmring_params e = {.kind = SHMRING_SPSC,
					   .flags = SHMRING_F_DONTDUMP | SHMRING_F_MLOCK};
		if (shmring_open(name, &e, &b) != -ENOMEM)
			_exit(5);
		size_t len;
		void *base = shmring_base(a, &len);
		if (tu_has_vmflag(base, "dd") != 1 || !(shmring_hints(a) & SHMRING_F_DONTDUMP))
			_exit(6);
		if (tu_has_vmflag(base, "lo") != 0)
			_exit(7);
		shmring_close(a);
		shmring_unlink(name);
		_exit(0);
	}
	int st = tu_wait(c);
	shmring_unlink(name);
	if (st == 77)
		cr_skip_test("cannot drop CAP_IPC_LOCK here");
	cr_assert_eq(st, 0,
		     "step %d (2: the create was not refused, or left its ring; 3: it allocated "
		     "first; 6: the advice given is not reported; 7: the mapping reads locked)",
		     st);
}

/* ---- shmring_attach at the base of a ring opened by name ---------------------------------- */

/* A liveness hook that believes only the record lock: bit 31 of the owner word. */
static int locked_only(uint64_t owner, void *arg)
{
	(void)arg;
	return (int)((owner >> 31) & 1);
}

/* The attached handle shares the opened ring, file included: its MPMC record is held by the
 * file's lock (recovery that believes only locks finds nobody dead), its event fd works, it
 * keeps the mapping after the opener closes, and a smaller length or another kind is refused. */
Test(backing, attach_at_a_named_base_shares_the_ring)
{
	const char *name = tu_shm_name("attach-named");
	struct shmring_params mp = {.kind = SHMRING_MPMC, .elem_size = 8, .capacity = 8};
	struct shmring *o, *h;
	size_t len;
	cr_assert_eq(shmring_create(name, &mp, &o), 0);
	void *base = shmring_base(o, &len);
	cr_assert_eq(shmring_attach(base, len, &mp, &h), 0);
	cr_assert_eq(shmring_mpmc_set_alive_fn(o, locked_only, NULL), 0);
	cr_assert_eq(shmring_mpmc_recover(o), 0, "the attached handle's record read as unlocked");
	shmring_close(h);
	shmring_close(o);
	cr_assert_eq(shmring_unlink(name), 0);

	struct shmring_params sp = tu_params(8, 8);
	uint64_t x = 7;
	cr_assert_eq(shmring_create(name, &sp, &o), 0);
	base = shmring_base(o, &len);
	cr_assert_eq(shmring_attach(base, len - 1, &sp, &h), -EPROTO);
	struct shmring_params other = sp;
	other.kind = SHMRING_MPMC;
	cr_assert_eq(shmring_attach(base, len, &other, &h), -EPROTO);
	cr_assert_eq(shmring_attach(base, len, &sp, &h), 0);
	int efd = shmring_event_fd(h);
	cr_assert_geq(efd, 0, "event fd: %d", efd);
	shmring_close(o);
	cr_assert_eq(shmring_spsc_push(h, &x), 0); /* the mapping lives on with h */
	cr_assert_eq(shmring_spsc_pop(h, &x), 0);
	cr_assert_eq(x, 7);
	shmring_close(h);
	cr_assert_eq(shmring_unlink(name), 0);
}

/* A producer that attached its own mapping of the file claims its role by pid slot; a consumer
 * with the file (opened by name) must still see it alive, and see it gone once it closes. (The
 * other way round cannot work: a handle without the file cannot see locks, as sync.h says.) */
Test(backing, role_claims_of_both_kinds_are_seen)
{
	const char *name = tu_shm_name("claims-mixed");
	char path[300];
	struct shmring_params sp = tu_params(8, 8);
	struct shmring *c, *p;
	size_t len;
	sp.flags = SHMRING_F_CONSUMER;
	cr_assert_eq(shmring_create(name, &sp, &c), 0);
	shmring_base(c, &len);
	snprintf(path, sizeof(path), "/dev/shm%s", name);
	int fd = open(path, O_RDWR | O_CLOEXEC);
	cr_assert_geq(fd, 0);
	void *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	cr_assert_neq(mem, MAP_FAILED);
	close(fd);
	sp.flags = SHMRING_F_PRODUCER;
	cr_assert_eq(shmring_attach(mem, len, &sp, &p), 0);
	cr_assert_eq(shmring_peer_alive(c, SHMRING_ROLE_PRODUCER), 1);
	shmring_close(p);
	cr_assert_eq(shmring_peer_alive(c, SHMRING_ROLE_PRODUCER), 0);
	munmap(mem, len);
	shmring_close(c);
	cr_assert_eq(shmring_unlink(name), 0);
}

/* ---- role slots claimed without /proc ----------------------------------------------------- */

/*
 * A process without /proc (a mount namespace with an empty one) claims the producer role of an
 * anonymous ring while its parent, alive, holds a slot: it must take another slot, not the
 * parent's (it used to read every start time as 0, so every holder as dead), and the parent
 * still reads as a producer once the child has closed its handle. Child exit codes: 0 ok,
 * 77 no namespace here, else the step that failed.
 */
Test(backing, slot_claim_without_proc_keeps_live_holders)
{
	struct shmring_params sp = tu_params(8, 8);
	struct shmring *r;
	sp.flags = SHMRING_F_PRODUCER;
	cr_assert_eq(shmring_create_anon(&sp, &r), 0);
	pid_t c = fork();
	if (c == 0) {
		struct shmring *h;
		struct shmring_params ap = tu_params(8, 8);
		size_t len;
		void *base = shmring_base(r, &len);
		if (unshare(CLONE_NEWNS) != 0 && unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0)
			_exit(77);
		if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
		    mount("none", "/proc", "tmpfs", 0, NULL) != 0)
			_exit(77);
		if (access("/proc/self/stat", F_OK) == 0)
			_exit(2);
		if (shmring_attach(base, len, &ap, &h) != 0)
			_exit(3);
		if (shmring_claim(h, SHMRING_F_PRODUCER) != 0)
			_exit(4);
		shmring_close(h);
		_exit(0);
	}
	int st = tu_wait(c);
	if (st == 77)
		cr_skip_test("no mount namespace here");
	cr_assert_eq(st, 0, "step %d failed in the child", st);
	cr_assert_eq(shmring_peer_alive(r, SHMRING_ROLE_PRODUCER), 1,
		     "the child without /proc took the live parent's slot");
	shmring_close(r);
}

/*
 * A judge with no descriptor left cannot read /proc nor open a pidfd: a live holder must still
 * read alive (found in review: at EMFILE it read gone, a blocking pop said -EPIPE with the
 * producer alive, and a claim would have taken its slot). Judge exit codes: 0 ok, 2 set-up,
 * 3 read gone, 4 the pop said something but -ETIMEDOUT. Its claim, had it taken the holder's
 * slot, leaves the parent reading no producer once the judge has exited.
 */
Test(backing, judge_out_of_descriptors_reads_a_live_holder_alive)
{
	struct shmring_params sp = tu_params(8, 8);
	struct shmring *r;
	int go[2];

	cr_assert_eq(shmring_create_anon(&sp, &r), 0);
	cr_assert_eq(pipe(go), 0);
	pid_t holder = fork();
	if (holder == 0) {
		char c;
		close(go[1]);
		if (shmring_claim(r, SHMRING_F_PRODUCER) != 0)
			_exit(2);
		_exit(read(go[0], &c, 1) < 0 ? 3 : 0); /* until the parent closes its end */
	}
	close(go[0]);
	for (int i = 0; i < 5000 && shmring_peer_alive(r, SHMRING_ROLE_PRODUCER) != 1; i++)
		usleep(1000);
	cr_assert_eq(shmring_peer_alive(r, SHMRING_ROLE_PRODUCER), 1);
	pid_t judge = fork();
	if (judge == 0) {
		struct rlimit rl;
		uint64_t v;
		int lowest = dup(0);
		if (lowest < 0 || getrlimit(RLIMIT_NOFILE, &rl) != 0)
			_exit(2);
		rl.rlim_cur = (rlim_t)lowest + 1;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			_exit(2);
		if (dup(0) >= 0 || errno != EMFILE) /* the last one */
			_exit(2);
		if (shmring_peer_alive(r, SHMRING_ROLE_PRODUCER) != 1)
			_exit(3);
		struct timespec dl = tu_in_ms(100);
		if (shmring_spsc_pop_wait(r, &v, &dl) != -ETIMEDOUT)
			_exit(4);
		/* A claim of the same role (this process has no slot): another slot, not the
		 * holder's. */
		if (shmring_claim(r, SHMRING_F_PRODUCER) != 0)
			_exit(2);
		_exit(0);
	}
	int st = tu_wait(judge);
	int alive = shmring_peer_alive(r, SHMRING_ROLE_PRODUCER);
	close(go[1]);
	cr_assert_eq(tu_wait(holder), 0);
	cr_assert_eq(st, 0, "judge step %d", st);
	cr_assert_eq(alive, 1, "the judge's claim took the live holder's slot");
	shmring_close(r);
}

/* ---- a slot holder whose main thread has exited --------------------------------------------- */

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

static void *wait_on_fd(void *arg)
{
	char c;
	_exit(read(*(int *)arg, &c, 1) < 0 ? 3 : 0);
}

/*
 * A process whose main thread called pthread_exit lives on in its other threads, but its
 * /proc/<pid>/stat reads Z (the leader's state): its role claim must still read alive (found in
 * review: it read gone, and a consumer would have had -EPIPE). Once every thread has exited,
 * and before it is reaped, it reads gone.
 */
Test(backing, claim_of_a_process_whose_main_thread_exited_is_alive)
{
	struct shmring_params sp = tu_params(8, 8);
	struct shmring *r;
	int go[2], ready[2];
	int self = (int)syscall(SYS_pidfd_open, getpid(), 0);
	if (self < 0)
		cr_skip_test("no pidfd_open here: a leader's zombie state cannot be told apart");
	close(self);
	cr_assert_eq(shmring_create_anon(&sp, &r), 0);
	cr_assert_eq(pipe(go), 0);
	cr_assert_eq(pipe(ready), 0);
	pid_t c = fork();
	if (c == 0) {
		static int fd;
		pthread_t t;
		close(go[1]);
		close(ready[0]);
		fd = go[0];
		if (shmring_claim(r, SHMRING_F_PRODUCER) != 0 ||
		    pthread_create(&t, NULL, wait_on_fd, &fd) != 0)
			_exit(2);
		if (write(ready[1], "r", 1) != 1)
			_exit(4);
		pthread_exit(NULL);
	}
	close(go[0]);
	close(ready[1]);
	char b;
	cr_assert_eq(read(ready[0], &b, 1), 1, "the child did not claim");
	char path[64], st[256] = {0};
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)c);
	for (int i = 0; i < 2000 && !strstr(st, ") Z "); i++) { /* until the leader is gone */
		FILE *f = fopen(path, "r");
		cr_assert_not_null(f);
		cr_assert_not_null(fgets(st, sizeof(st), f));
		fclose(f);
		usleep(1000);
	}
	cr_assert(strstr(st, ") Z ") != NULL, "the main thread did not exit: %s", st);
	cr_assert_eq(shmring_peer_alive(r, SHMRING_ROLE_PRODUCER), 1);
	cr_assert_eq(write(go[1], "x", 1), 1); /* the last thread exits */
	siginfo_t si;
	cr_assert_eq(waitid(P_PID, (id_t)c, &si, WEXITED | WNOWAIT), 0); /* exited, not reaped */
	cr_assert_eq(shmring_peer_alive(r, SHMRING_ROLE_PRODUCER), 0, "a zombie read alive");
	cr_assert_eq(tu_wait(c), 0);
	close(go[1]);
	close(ready[0]);
	shmring_close(r);
}

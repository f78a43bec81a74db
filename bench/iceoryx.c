/* SPDX-License-Identifier: MIT */
/*
 * iceoryx through its C binding: one publisher and one subscriber per channel, each in its
 * own process, talking through RouDi's shared memory. A burst is one loaned chunk of n
 * elements; the producer copies into the chunk and the consumer copies out, the same work as
 * every other contender (iceoryx could skip the copy-out; no contender here does). The C
 * binding of this version cannot tell a chunk's payload size, so 8 bytes in front carry n. The
 * publisher waits for the consumer (WAIT_FOR_CONSUMER / BLOCK_PRODUCER) so nothing is
 * dropped, and the subscriber queue holds at most 256 chunks (iceoryx's limit).
 */
#include <dirent.h>
#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <iceoryx_binding_c/log.h>
#include <iceoryx_binding_c/publisher.h>
#include <iceoryx_binding_c/runtime.h>
#include <iceoryx_binding_c/subscriber.h>

#include "bench.h"

struct ix_chan {
	char service[64];
	unsigned es;
	uint64_t cap;
};

struct ix_side {
	iox_pub_storage_t ps;
	iox_sub_storage_t ss;
	iox_pub_t pub;
	iox_sub_t sub;
	unsigned es;
};

static int ix_users; /* handles open in this process; the runtime goes with the last */

static void *ix_create(const struct bench_cfg *cfg, const char **why)
{
	struct ix_chan *c = calloc(1, sizeof(*c));
	(void)why;
	snprintf(c->service, sizeof(c->service), "%s", cfg->name);
	c->es = cfg->es;
	c->cap = cfg->cap > 256 ? 256 : cfg->cap;
	return c;
}

static void *ix_open(void *chan, int role)
{
	struct ix_chan *c = chan;
	struct ix_side *s = calloc(1, sizeof(*s));
	uint64_t t0 = bench_now_ns();
	if (ix_users++ == 0) {
		char name[96];
		/* under the runner's prefix, so that its sweep removes the socket iceoryx leaves */
		snprintf(name, sizeof(name), "%s-%d", c->service, (int)getpid());
		/* its log goes to the terminal, through the progress line, and some of it (an
		 * exhausted mempool, which only means "full" here) ignores the log level. This
		 * process is one side of one measurement, and reports through shared memory. */
		iox_set_loglevel(Iceoryx_LogLevel_Off);
		int null = open("/dev/null", O_WRONLY);
		if (null >= 0)
			dup2(null, 2);
		iox_runtime_init(name);
	}
	s->es = c->es;
	if (role == BENCH_PROD) {
		iox_pub_options_t o;
		iox_pub_options_init(&o);
		o.subscriberTooSlowPolicy = ConsumerTooSlowPolicy_WAIT_FOR_CONSUMER;
		s->pub = iox_pub_init(&s->ps, c->service, "bench", "data", &o);
		/* RouDi connects the two sides asynchronously: what is published before that is
		 * lost, so wait for the subscriber */
		while (!iox_pub_has_subscribers(s->pub))
			if (usleep(1000), bench_now_ns() - t0 > 5000000000ull)
				return NULL;
	} else {
		iox_sub_options_t o;
		iox_sub_options_init(&o);
		o.queueCapacity = c->cap;
		o.queueFullPolicy = QueueFullPolicy_BLOCK_PRODUCER;
		s->sub = iox_sub_init(&s->ss, c->service, "bench", "data", &o);
		while (iox_sub_get_subscription_state(s->sub) != SubscribeState_SUBSCRIBED)
			if (usleep(1000), bench_now_ns() - t0 > 5000000000ull)
				return NULL;
	}
	return s;
}

static int ix_send(void *side, const void *buf, unsigned n)
{
	struct ix_side *s = side;
	void *chunk;
	if (iox_pub_loan_chunk(s->pub, &chunk, 8 + n * s->es) != AllocationResult_SUCCESS)
		return 0;
	*(uint64_t *)chunk = n;
	memcpy((char *)chunk + 8, buf, (size_t)n * s->es);
	iox_pub_publish_chunk(s->pub, chunk);
	return (int)n;
}

static int ix_recv(void *side, void *buf, unsigned n)
{
	struct ix_side *s = side;
	const void *chunk;
	(void)n; /* the producer never puts more in a chunk than the consumer asks for */
	if (iox_sub_take_chunk(s->sub, &chunk) != ChunkReceiveResult_SUCCESS)
		return 0;
	uint64_t k = *(const uint64_t *)chunk;
	memcpy(buf, (const char *)chunk + 8, (size_t)k * s->es);
	iox_sub_release_chunk(s->sub, chunk);
	return (int)k;
}

static void ix_close(void *side)
{
	struct ix_side *s = side;
	if (s->pub)
		iox_pub_deinit(s->pub);
	if (s->sub)
		iox_sub_deinit(s->sub);
	free(s);
	if (--ix_users == 0)
		iox_runtime_shutdown();
}

static void ix_destroy(void *chan)
{
	free(chan);
}

const struct contender bench_iceoryx = {"iceoryx", 0,	    NULL,     ix_create, ix_open,
					ix_send,   ix_recv, ix_close, ix_destroy};

static pid_t roudi;

/* RouDi's own files, which it leaves behind after a clean exit. */
static void roudi_files(void)
{
	static const char *f[] = {"/dev/shm/iceoryx_mgmt", "/tmp/roudi", "/tmp/roudi.lock",
				  "/tmp/iox-unique-roudi.lock"};
	char user[300];
	struct passwd *pw = getpwuid(getuid());
	for (unsigned i = 0; i < sizeof(f) / sizeof(f[0]); i++)
		unlink(f[i]);
	if (pw) {
		snprintf(user, sizeof(user), "/dev/shm/%s", pw->pw_name);
		unlink(user);
	}
}

static int roudi_running(void)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	char path[300], comm[32];
	int found = 0;
	while (d && !found && (e = readdir(d))) {
		snprintf(path, sizeof(path), "/proc/%s/comm", e->d_name);
		FILE *f = fopen(path, "r");
		if (f) {
			found = fgets(comm, sizeof(comm), f) && !strncmp(comm, "iox-roudi", 9);
			fclose(f);
		}
	}
	if (d)
		closedir(d);
	return found;
}

const char *bench_iceoryx_start(void)
{
	/* one RouDi per machine; someone else's is not ours to use or to stop */
	if (roudi_running())
		return "another iox-roudi is running";
	roudi_files(); /* stale, from a RouDi that is gone */
	roudi = fork();
	if (roudi == 0) {
		/* RouDi logs to the terminal; keep it out of the table */
		if (!freopen("/dev/null", "w", stdout) || !freopen("/dev/null", "w", stderr))
			_exit(127);
		execlp("iox-roudi", "iox-roudi", (char *)NULL);
		_exit(127);
	}
	if (roudi < 0)
		return "fork failed";
	for (int i = 0; i < 100; i++) {
		int st;
		if (waitpid(roudi, &st, WNOHANG) == roudi) {
			roudi = 0;
			return WIFEXITED(st) && WEXITSTATUS(st) == 127
				   ? "iox-roudi not found"
				   : "iox-roudi exited at start";
		}
		if (access("/tmp/roudi", F_OK) == 0)
			return NULL;
		usleep(20000);
	}
	bench_iceoryx_stop();
	return "iox-roudi did not come up within 2 s";
}

void bench_iceoryx_stop(void)
{
	if (roudi > 0) {
		kill(roudi, SIGTERM);
		waitpid(roudi, NULL, 0);
		roudi = 0;
		roudi_files();
	}
}

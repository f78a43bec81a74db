/* SPDX-License-Identifier: MIT */
/*
 * What a user would use instead of a shared-memory ring: the kernel's IPC. Every transport
 * moves the same elements; a burst of n elements is one system call (one write of n * es
 * bytes on a stream, one message of n elements on a message transport). POSIX mq and SysV
 * msgq messages stop at 8 KiB, their default limit (fs.mqueue.msgsize_max, kernel.msgmax):
 * a larger burst goes as several messages.
 */
#include <errno.h>
#include <fcntl.h>
#include <mqueue.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/msg.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench.h"

enum { T_PIPE, T_FIFO, T_USTREAM, T_UDGRAM, T_MQ, T_MSGQ, T_TCP };

struct ipc_chan {
	int type;
	unsigned es, burst;
	unsigned per_msg; /* elements per message on mq and msgq */
	int fd[2];	  /* pipe, socketpair; fd[0] is the TCP listener */
	char path[96];	  /* FIFO path or mq name */
	int msqid;
	struct sockaddr_in addr;
};

struct ipc_side {
	struct ipc_chan *c;
	int fd;
	mqd_t mq;
	int role;
	long *msgbuf; /* SysV: mtype followed by the payload */
};

static void *ipc_create(int type, const struct bench_cfg *cfg, const char **why)
{
	struct ipc_chan *c = calloc(1, sizeof(*c));
	int rc = 0;
	c->type = type;
	c->es = cfg->es;
	c->burst = cfg->burst;
	c->per_msg = 8192 / cfg->es < cfg->burst ? 8192 / cfg->es : cfg->burst;
	c->per_msg = c->per_msg ? c->per_msg : 1;
	c->fd[0] = c->fd[1] = -1;
	switch (type) {
	case T_PIPE:
		rc = pipe(c->fd);
		break;
	case T_FIFO:
		snprintf(c->path, sizeof(c->path), "/tmp/%s", cfg->name);
		rc = mkfifo(c->path, 0600);
		break;
	case T_USTREAM:
		rc = socketpair(AF_UNIX, SOCK_STREAM, 0, c->fd);
		break;
	case T_UDGRAM:
		rc = socketpair(AF_UNIX, SOCK_DGRAM, 0, c->fd);
		break;
	case T_MQ: {
		/* 10 messages: the default limit (fs.mqueue.msg_max) an unprivileged user gets */
		struct mq_attr a = {.mq_maxmsg = 10, .mq_msgsize = (long)(cfg->es * c->per_msg)};
		snprintf(c->path, sizeof(c->path), "/%s", cfg->name);
		mqd_t q = mq_open(c->path, O_CREAT | O_EXCL | O_RDWR, 0600, &a);
		rc = q == (mqd_t)-1 ? -1 : mq_close(q);
		break;
	}
	case T_MSGQ:
		c->msqid = msgget(IPC_PRIVATE, IPC_CREAT | 0600);
		rc = c->msqid < 0 ? -1 : 0;
		break;
	case T_TCP: {
		socklen_t l = sizeof(c->addr);
		c->addr.sin_family = AF_INET;
		c->addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		c->fd[0] = socket(AF_INET, SOCK_STREAM, 0);
		rc = c->fd[0] < 0 || bind(c->fd[0], (struct sockaddr *)&c->addr, l) ||
		     listen(c->fd[0], 1) || getsockname(c->fd[0], (struct sockaddr *)&c->addr, &l);
		break;
	}
	}
	if (rc) {
		*why = strerror(errno);
		free(c);
		return NULL;
	}
	return c;
}

static void *ipc_open(void *chan, int role)
{
	struct ipc_chan *c = chan;
	struct ipc_side *s = calloc(1, sizeof(*s));
	int one = 1;
	s->c = c;
	s->role = role;
	s->fd = -1;
	switch (c->type) {
	case T_PIPE:
		s->fd = role == BENCH_PROD ? c->fd[1] : c->fd[0];
		break;
	case T_FIFO:
		s->fd = open(c->path, role == BENCH_PROD ? O_WRONLY : O_RDONLY);
		break;
	case T_USTREAM:
	case T_UDGRAM:
		s->fd = c->fd[role];
		break;
	case T_MQ:
		s->mq = mq_open(c->path, role == BENCH_PROD ? O_WRONLY : O_RDONLY);
		if (s->mq == (mqd_t)-1)
			goto fail;
		return s;
	case T_MSGQ:
		s->msgbuf = calloc(1, sizeof(long) + (size_t)c->es * c->per_msg);
		s->msgbuf[0] = 1;
		return s;
	case T_TCP:
		if (role == BENCH_PROD) {
			s->fd = socket(AF_INET, SOCK_STREAM, 0);
			if (connect(s->fd, (struct sockaddr *)&c->addr, sizeof(c->addr)))
				goto fail;
		} else {
			s->fd = accept(c->fd[0], NULL, NULL);
		}
		/* small messages are the point of this benchmark: do not let Nagle batch them */
		setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		break;
	}
	if (s->fd >= 0)
		return s;
fail:
	free(s);
	return NULL;
}

static int is_stream(int t)
{
	return t == T_PIPE || t == T_FIFO || t == T_USTREAM || t == T_TCP;
}

static int ipc_send(void *side, const void *buf, unsigned n)
{
	struct ipc_side *s = side;
	size_t len = (size_t)n * s->c->es;
	ssize_t w;
	if (is_stream(s->c->type)) {
		for (size_t off = 0; off < len; off += (size_t)w)
			if ((w = write(s->fd, (const char *)buf + off, len - off)) < 0)
				return -errno;
		return (int)n;
	}
	if (s->c->type != T_UDGRAM && n > s->c->per_msg) {
		n = s->c->per_msg;
		len = (size_t)n * s->c->es;
	}
	switch (s->c->type) {
	case T_UDGRAM:
		w = send(s->fd, buf, len, 0);
		break;
	case T_MQ:
		w = mq_send(s->mq, buf, len, 0) ? -1 : 0;
		break;
	default: /* T_MSGQ */
		memcpy(s->msgbuf + 1, buf, len);
		w = msgsnd(s->c->msqid, s->msgbuf, len, 0);
		break;
	}
	return w < 0 ? -errno : (int)n;
}

static int ipc_recv(void *side, void *buf, unsigned n)
{
	struct ipc_side *s = side;
	unsigned es = s->c->es;
	size_t len = (size_t)n * es;
	ssize_t r;
	if (is_stream(s->c->type)) {
		r = read(s->fd, buf, len);
		if (r <= 0)
			return r ? -errno : -EPIPE;
		/* a stream may split an element: finish the last one */
		while (r % es) {
			ssize_t k = read(s->fd, (char *)buf + r, es - (size_t)r % es);
			if (k <= 0)
				return k ? -errno : -EPIPE;
			r += k;
		}
		return (int)(r / es);
	}
	switch (s->c->type) {
	case T_UDGRAM:
		r = recv(s->fd, buf, len, 0);
		break;
	case T_MQ:
		/* mq_receive wants room for the largest message the queue allows */
		r = mq_receive(s->mq, buf, (size_t)es * s->c->per_msg, NULL);
		break;
	default:
		r = msgrcv(s->c->msqid, s->msgbuf, (size_t)es * s->c->per_msg, 0, 0);
		if (r > 0)
			memcpy(buf, s->msgbuf + 1, (size_t)r);
		break;
	}
	return r < 0 ? -errno : (int)(r / es);
}

static void ipc_close(void *side)
{
	struct ipc_side *s = side;
	if (s->c->type == T_MQ)
		mq_close(s->mq);
	else if (s->c->type == T_FIFO || s->c->type == T_TCP)
		close(s->fd);
	free(s->msgbuf);
	free(s);
}

static void ipc_destroy(void *chan)
{
	struct ipc_chan *c = chan;
	for (int i = 0; i < 2; i++)
		if (c->fd[i] >= 0)
			close(c->fd[i]);
	if (c->type == T_FIFO)
		unlink(c->path);
	if (c->type == T_MQ)
		mq_unlink(c->path);
	if (c->type == T_MSGQ)
		msgctl(c->msqid, IPC_RMID, NULL);
	free(c);
}

#define IPC(T, fn)                                                                                 \
	static void *fn(const struct bench_cfg *cfg, const char **why)                             \
	{                                                                                          \
		return ipc_create(T, cfg, why);                                                    \
	}
IPC(T_PIPE, c_pipe)
IPC(T_FIFO, c_fifo)
IPC(T_USTREAM, c_ustream)
IPC(T_UDGRAM, c_udgram)
IPC(T_MQ, c_mq)
IPC(T_MSGQ, c_msgq)
IPC(T_TCP, c_tcp)

#define ROW(name, fn)                                                                              \
	{                                                                                          \
		name, BENCH_BLOCKING, NULL, fn, ipc_open, ipc_send, ipc_recv, ipc_close,           \
		    ipc_destroy                                                                    \
	}
const struct contender bench_ipc[] = {
    ROW("pipe", c_pipe),	 ROW("fifo", c_fifo),	ROW("unix-stream", c_ustream),
    ROW("unix-dgram", c_udgram), ROW("posix-mq", c_mq), ROW("sysv-msgq", c_msgq),
    ROW("tcp-loopback", c_tcp),
};
const unsigned bench_ipc_n = sizeof(bench_ipc) / sizeof(bench_ipc[0]);

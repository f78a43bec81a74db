// SPDX-License-Identifier: MIT
// boost::lockfree spsc_queue and queue, with threads (their storage is process-local). Both
// copy whole elements: the element type is a struct of es bytes, one instantiation per size.
// spsc_queue has batch push/pop, so a burst is one call; queue is node based (bounded_push,
// so it never allocates after construction), and a burst is a loop.
#include <boost/lockfree/queue.hpp>
#include <boost/lockfree/spsc_queue.hpp>
#include <cstring>

#include "bench.h"

namespace
{

template <unsigned N> struct elem {
	unsigned char b[N];
};

struct chan_base {
	virtual ~chan_base() = default;
	virtual int send(const void *buf, unsigned n) = 0;
	virtual int recv(void *buf, unsigned n) = 0;
};

template <unsigned N> struct spsc_chan : chan_base {
	// spsc_queue(n) holds n - 1 elements, as ck_ring and rte_ring do
	boost::lockfree::spsc_queue<elem<N>> q;
	explicit spsc_chan(size_t cap) : q(cap) {}
	int send(const void *buf, unsigned n) override
	{
		return (int)q.push(static_cast<const elem<N> *>(buf), n);
	}
	int recv(void *buf, unsigned n) override
	{
		return (int)q.pop(static_cast<elem<N> *>(buf), n);
	}
};

template <unsigned N> struct mpmc_chan : chan_base {
	boost::lockfree::queue<elem<N>> q;
	explicit mpmc_chan(size_t cap) : q(cap) {}
	int send(const void *buf, unsigned n) override
	{
		unsigned i = 0;
		for (; i < n; i++)
			if (!q.bounded_push(static_cast<const elem<N> *>(buf)[i]))
				break;
		return (int)i;
	}
	int recv(void *buf, unsigned n) override
	{
		unsigned i = 0;
		for (; i < n; i++)
			if (!q.pop(static_cast<elem<N> *>(buf)[i]))
				break;
		return (int)i;
	}
};

template <template <unsigned> class C> void *make(const bench_cfg *cfg, const char **why)
{
	switch (cfg->es) {
	case 8:
		return static_cast<chan_base *>(new C<8>(cfg->cap));
	case 64:
		return static_cast<chan_base *>(new C<64>(cfg->cap));
	case 256:
		return static_cast<chan_base *>(new C<256>(cfg->cap));
	case 1024:
		return static_cast<chan_base *>(new C<1024>(cfg->cap));
	}
	*why = "element size not instantiated";
	return nullptr;
}

void *b_open(void *chan, int)
{
	return chan;
}
int b_send(void *s, const void *buf, unsigned n)
{
	return static_cast<chan_base *>(s)->send(buf, n);
}
int b_recv(void *s, void *buf, unsigned n)
{
	return static_cast<chan_base *>(s)->recv(buf, n);
}
void b_close(void *) {}
void b_destroy(void *chan)
{
	delete static_cast<chan_base *>(chan);
}

} // namespace

extern "C" const struct contender bench_boost[] = {
    {"boost spsc_queue", BENCH_THREADS, nullptr, make<spsc_chan>, b_open, b_send, b_recv, b_close,
     b_destroy},
    {"boost queue", BENCH_THREADS, nullptr, make<mpmc_chan>, b_open, b_send, b_recv, b_close,
     b_destroy},
};
extern "C" const unsigned bench_boost_n = sizeof(bench_boost) / sizeof(bench_boost[0]);

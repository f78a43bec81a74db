/* SPDX-License-Identifier: MIT */
/* Rows for peers whose library was not found, so that the table says why they are missing. */
#include "bench.h"

#ifndef HAVE_BOOST
const struct contender bench_boost[] = {
    {"boost spsc_queue", 0, "libboost-dev (boost/lockfree) or a C++ compiler not found", 0, 0, 0, 0,
     0, 0},
    {"boost queue", 0, "libboost-dev (boost/lockfree) or a C++ compiler not found", 0, 0, 0, 0, 0,
     0},
};
const unsigned bench_boost_n = 2;
#endif

#ifndef HAVE_ICEORYX
const struct contender bench_iceoryx = {
    "iceoryx", 0, "libiceoryx-binding-c-dev (iceoryx_binding_c) not found", 0, 0, 0, 0, 0, 0};

const char *bench_iceoryx_start(void)
{
	return bench_iceoryx.skip;
}

void bench_iceoryx_stop(void)
{
}
#endif

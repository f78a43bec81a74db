/* SPDX-License-Identifier: MIT */
/*
 * Not a test that runs: scripts/headers.sh (a stage of scripts/test.sh) compiles this file for
 * the native target and, on x86-64 hosts, for 32-bit x86, aarch64 and 32-bit ARM, at -O2 with
 * -Wall -Wextra -Werror -Wcast-qual, as a user's tree that vendors the headers would. It keeps
 * every inline function of the public headers, so each is compiled for each target: an x86-64-only
 * construct on another target's path (found in review: a prefetch whose #else branch compiled
 * nowhere else) fails the stage.
 */
#include <shmring/handle.h>
#include <shmring/mpmc.h>
#include <shmring/msg.h>
#include <shmring/shmring.h>
#include <shmring/spsc.h>
#include <shmring/sync.h>

void (*const shmring_header_check[])(void) = {
#define K(f) (void (*)(void))(f)
    K(shmring_mpmc_pop),	K(shmring_mpmc_pop_bulk),  K(shmring_mpmc_pop_burst),
    K(shmring_mpmc_push),	K(shmring_mpmc_push_bulk), K(shmring_mpmc_push_burst),
    K(shmring_msg_abort),	K(shmring_msg_commit),	   K(shmring_msg_max),
    K(shmring_msg_peek),	K(shmring_msg_recv),	   K(shmring_msg_recv_burst),
    K(shmring_msg_release),	K(shmring_msg_reserve),	   K(shmring_msg_send),
    K(shmring_msg_send_burst),	K(shmring_spsc_commit),	   K(shmring_spsc_free),
    K(shmring_spsc_peek),	K(shmring_spsc_pop),	   K(shmring_spsc_pop_bulk),
    K(shmring_spsc_pop_burst),	K(shmring_spsc_push),	   K(shmring_spsc_push_bulk),
    K(shmring_spsc_push_burst), K(shmring_spsc_release),   K(shmring_spsc_reserve),
    K(shmring_spsc_size),
#undef K
};

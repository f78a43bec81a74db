/* SPDX-License-Identifier: MIT */
/*
 * The MPMC harnesses' simulated death (fuzz_mpmc, fuzz_mpmc_runs): set countdown to k and
 * install die_hook with shmring_mpmc_set_hook(); the k-th hook point the call reaches abandons
 * it there, as if its process died (the call says -ECANCELED), and died_point says which point.
 */
#ifndef SHMRING_FUZZ_DIE_HOOK_H
#define SHMRING_FUZZ_DIE_HOOK_H

#include <shmring/shmring.h>

static int countdown, died_point;

static int die_hook(struct shmring *r, int point, int queue, void *arg)
{
	(void)r;
	(void)queue;
	(void)arg;
	if (--countdown == 0) {
		died_point = point;
		return 1;
	}
	return 0;
}

#endif

/* SPDX-License-Identifier: MIT */
#include <criterion/criterion.h>

#include "testutil.h"

Test(smoke, push_pop_anon)
{
	struct shmring_params p = tu_params(8, 8);
	struct shmring *r;
	uint64_t v = 42, out = 0;

	cr_assert_eq(shmring_create_anon(&p, &r), 0);
	cr_assert_eq(shmring_spsc_push(r, &v), 0);
	cr_assert_eq(shmring_spsc_pop(r, &out), 0);
	cr_assert_eq(out, 42);
	cr_assert_eq(shmring_spsc_pop(r, &out), -EAGAIN);
	shmring_close(r);
}

/* SPDX-License-Identifier: MIT */
/* The fuzz harnesses' reader of their input: bytes in order, zeroes once it runs out. */
#ifndef SHMRING_FUZZ_INPUT_H
#define SHMRING_FUZZ_INPUT_H

#include <stddef.h>
#include <stdint.h>

struct input {
	const uint8_t *p;
	size_t n;
};

static inline uint8_t next8(struct input *in)
{
	if (!in->n)
		return 0;
	in->n--;
	return *in->p++;
}

static inline uint32_t next16(struct input *in)
{
	uint32_t v = next8(in);
	return v | (uint32_t)next8(in) << 8;
}

static inline uint64_t next64(struct input *in)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v |= (uint64_t)next8(in) << (8 * i);
	return v;
}

#endif

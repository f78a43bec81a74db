/* SPDX-License-Identifier: MIT */
/*
 * Writes the seed corpora of fuzz_attach and fuzz_spsc:
 *   gen_seeds fuzz/corpus/fuzz_attach fuzz/corpus/fuzz_spsc
 * Run by hand when a format changes; its output is committed, and scripts/fuzz.sh --replay
 * fails when the committed seeds differ from what it writes. Attach seeds are real
 * segments made by shmring_init() and moved with the ring's own calls, so that the fuzzer
 * starts past the header check; spsc seeds are operation scripts that visit every opcode.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <shmring/shmring.h>

#include "ring/layout.h"

/* The semaphore back-end is recorded in the header: a seed with it reaches that code. */
#ifdef SHMRING_F_SEMAPHORE
#define SEM SHMRING_F_SEMAPHORE
#else
#define SEM 0u
#endif

static int put(const char *dir, const char *name, const void *p, size_t n)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	if (!f || fwrite(p, 1, n, f) != n || fclose(f) != 0) {
		perror(path);
		return 1;
	}
	return 0;
}

/* A segment of this geometry, positions starting at start, after pushing push and popping pop
 * elements; script (if any) appended after the ring, for fuzz_attach to run. */
static int attach_seed(const char *dir, uint32_t es, uint64_t cap, uint64_t start, unsigned push,
		       unsigned pop, const uint8_t *script, size_t nscript, uint32_t flags)
{
	struct shmring_params p = {
	    .kind = SHMRING_SPSC, .elem_size = es, .capacity = cap, .flags = flags};
	struct _shmring_layout l;
	struct shmring *r;
	unsigned char *mem, elem[256] = {0};
	char name[128];
	ssize_t len = shmring_memsize(&p);

	if (len < 0 || _shmring_layout(&p, &l) || es > sizeof(elem))
		return 1;
	if (posix_memalign((void **)&mem, _SHMRING_BLOCK, (size_t)len + nscript))
		return 1;
	memset(mem, 0, (size_t)len + nscript);
	if (shmring_init(mem, (size_t)len, &p))
		return 1;
	*(uint64_t *)(mem + l.part[_SHMRING_PART_PROD].off) = start;
	*(uint64_t *)(mem + l.part[_SHMRING_PART_CONS].off) = start;
	if (shmring_attach(mem, (size_t)len, &p, &r))
		return 1;
	for (unsigned i = 0; i < push; i++) {
		memset(elem, 0x30 + (int)i, es);
		shmring_spsc_push(r, elem);
	}
	for (unsigned i = 0; i < pop; i++)
		shmring_spsc_pop(r, elem);
	shmring_close(r);
	memcpy(mem + len, script, nscript);
	snprintf(name, sizeof(name), "seg-e%u-c%llu-s%llx-p%u-%u%s%s", es, (unsigned long long)cap,
		 (unsigned long long)start, push, pop, nscript ? "-script" : "",
		 flags ? "-sem" : "");
	int rc = put(dir, name, mem, (size_t)len + nscript);
	free(mem);
	return rc;
}

int main(int argc, char **argv)
{
	/* fuzz_attach's opcodes: low nibble the operation, high nibble the count. */
	static const uint8_t script[] = {0x00, 0x32, 0x13, 0x24, 0x15, 0x46, 0x27, 0x08, 0x09,
					 0xf6, 0xf7, 0xe3, 0xe5, 0x1a, 0x1b, 0x0c, 0x21, 0x00};
	static const struct {
		uint32_t es;
		uint64_t cap;
		uint64_t start;
		unsigned push, pop;
		int script, sem;
	} a[] = {
	    {1, 1, 0, 0, 0, 0, 0},   {8, 4, 0, 3, 1, 0, 0},  {3, 8, UINT64_MAX - 2, 8, 0, 1, 0},
	    {16, 2, 0, 2, 0, 0, 0},  {64, 4, 5, 4, 2, 1, 0}, {5, 16, UINT64_MAX - 9, 12, 7, 1, 0},
	    {100, 1, 0, 1, 0, 1, 0}, {8, 4, 0, 2, 1, 1, 1},
	};
	int rc = 0;

	if (argc != 3) {
		fprintf(stderr, "usage: %s ATTACH_CORPUS_DIR SPSC_CORPUS_DIR\n", argv[0]);
		return 2;
	}
	for (size_t i = 0; i < sizeof(a) / sizeof(a[0]); i++)
		rc |= attach_seed(argv[1], a[i].es, a[i].cap, a[i].start, a[i].push, a[i].pop,
				  script, a[i].script ? sizeof(script) : 0, a[i].sem ? SEM : 0);

	/*
	 * fuzz_spsc: 3 set-up bytes (element size index | two handles << 4, log2 capacity,
	 * -start), then opcode bytes: 0 push, 1 pop, 2/3 push burst/bulk n, 4/5 pop burst/bulk n,
	 * 6 reserve n, 7 commit n, 8 peek n, 9 release n, 10 size+free, 11 hostile write
	 * (selector, then 8 bytes for kinds 1-5).
	 */
	static const uint8_t ops[] = {
	    0,	0, 0, 1,  2, 5,	 3,  3,	 4, 2, 5, 9, 6, 3, 7, 2, 8, 4, 9,  1,  10,
	    1,	1, 2, 8,  4, 8,	 6,  2,	 7, 1, 6, 1, 9, 1, 8, 2, 9, 2, 10, 11, 0,
	    11, 1, 3, 20, 4, 20, 10, 11, 4, 1, 2, 3, 4, 5, 6, 7, 8, 1, 1,  0,  10,
	};
	static const uint8_t hostile[] = {
	    2,	6,  0, 0, 0, 11, 6, 1, 2, 3, 4, 5, 6, 7, 8,  1, 1, 4, 3,
	    10, 11, 7, 9, 9, 9,	 9, 9, 9, 9, 9, 4, 3, 1, 10, 0, 6, 2,
	};
	/* Positions written behind what the reader has cached (selectors 0x0a/0x0b, 8/9). */
	static const uint8_t backwards[] = {
	    2,	3, 4, 1, 11, 10, 1,  0, 0, 0, 0, 0, 0, 0,  2,  2, 0, 1, 4, 5,  10, 11,
	    11, 2, 0, 0, 0,  0,	 0,  0, 0, 0, 0, 2, 9, 10, 11, 8, 5, 0, 0, 0,  0,  0,
	    0,	0, 1, 4, 9,  10, 11, 9, 3, 0, 0, 0, 0, 0,  0,  0, 0, 2, 3, 10,
	};
	static const uint8_t setups[][3] = {
	    {6, 2, 0},	  {0x16, 2, 3}, {0, 0, 1},	{2, 3, 200},
	    {0x1c, 4, 7}, {15, 1, 1},	{0x14, 7, 255}, {5, 5, 130},
	};
	uint8_t in[3 + sizeof(ops) + sizeof(hostile) + sizeof(backwards)];
	for (size_t i = 0; i < sizeof(setups) / sizeof(setups[0]); i++) {
		char name[64];
		memcpy(in, setups[i], 3);
		memcpy(in + 3, ops, sizeof(ops));
		snprintf(name, sizeof(name), "ops-%02x-%u-%u", setups[i][0], setups[i][1],
			 setups[i][2]);
		rc |= put(argv[2], name, in, 3 + sizeof(ops));
		memcpy(in + 3, hostile, sizeof(hostile));
		snprintf(name, sizeof(name), "hostile-%02x-%u-%u", setups[i][0], setups[i][1],
			 setups[i][2]);
		rc |= put(argv[2], name, in, 3 + sizeof(hostile));
		memcpy(in + 3, backwards, sizeof(backwards));
		snprintf(name, sizeof(name), "backwards-%02x-%u-%u", setups[i][0], setups[i][1],
			 setups[i][2]);
		rc |= put(argv[2], name, in, 3 + sizeof(backwards));
	}
	return rc;
}

#!/bin/sh
# Compiles tests/header_check.c (every inline function of the public headers) as a user's tree
# that vendors include/shmring would: with gcc and clang, for the native target and, on x86-64,
# for 32-bit x86 (-m32, from gcc-multilib), at -O2 -Wall -Wextra -Werror -Wcast-qual, once with
# each public header included first. Exits non-zero on any error. Takes a few seconds.
set -eu
cd "$(dirname "$0")/.."
targets="native"
if [ "$(uname -m)" = x86_64 ]; then
	targets="native -m32"
fi
n=0
for cc in gcc clang; do
	for t in $targets; do
		m=
		# -Wno-psabi: gcc notes that 32-bit x86 aligns _Atomic 64-bit fields to 8 since
		# gcc 11; the shared structs hold them at offsets that are multiples of 8 anyway
		# (sizes asserted in ring/mpmc.c), so their layout is the same either way.
		[ "$t" = native ] || m="$t -Wno-psabi"
		for h in shmring handle spsc mpmc msg sync; do
			# shellcheck disable=SC2086
			if ! $cc $m -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wcast-qual -O2 \
				-Iinclude -include "shmring/$h.h" -c -o /dev/null tests/header_check.c; then
				echo "headers.sh: $cc $t with shmring/$h.h first: FAILED" >&2
				exit 1
			fi
			n=$((n + 1))
		done
	done
done
echo "headers.sh: $n compilations of the public headers ($targets; gcc, clang): ok"

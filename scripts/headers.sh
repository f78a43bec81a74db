#!/bin/bash
# Compiles what a user's tree would on every target this host can compile for:
#  - tests/header_check.c (every inline function of the public headers), as a tree that vendors
#    include/shmring would: once with each public header included first, -Wcast-qual added;
#  - each public header alone in strict ISO C11 (-std=c11 -pedantic, no feature macro), as a
#    program that asks for no POSIX extension includes it;
#  - the library's sources, except ring/registry.c on other targets (it includes liburcu, whose
#    headers are installed for this host's architecture only);
# at -O2 -Wall -Wextra -Werror. Targets: native (gcc, clang); on x86-64 hosts, 32-bit x86 (gcc
# and clang -m32, with gcc-multilib), aarch64 and 32-bit ARM (clang --target, with Debian's
# libc6-dev-arm64-cross and libc6-dev-armhf-cross), which scripts/test.sh installs (deps.sh
# TEST_PKGS). Not gcc's cross compilers: in Debian 12 they conflict with gcc-multilib. A target
# without its C library is named as skipped. Exits non-zero on any error. Nothing is linked or
# run: this checks that the code builds there, not that it works there.
set -euo pipefail
cd "$(dirname "$0")/.."

# name | compilers, comma-separated
targets=("native|gcc,clang")
if [[ $(uname -m) == x86_64 ]]; then
	# -Wno-psabi: gcc notes that 32-bit x86 aligns _Atomic 64-bit fields to 8 since gcc 11;
	# the shared structs hold them at offsets that are multiples of 8 anyway (sizes asserted
	# in ring/mpmc.c), so their layout is the same either way.
	targets+=("i386|gcc -m32 -Wno-psabi,clang -m32")
	# The cross C library's headers named first: where /usr/include/bits and gnu are links
	# into the host's x86-64 headers (some images have them), clang would find those, for
	# the wrong target, and an aarch64 uintptr_t came out 32 bits wide.
	targets+=("aarch64|clang --target=aarch64-linux-gnu -isystem /usr/aarch64-linux-gnu/include")
	targets+=("armhf|clang --target=arm-linux-gnueabihf -isystem /usr/arm-linux-gnueabihf/include")
fi
flags=(-std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -O2 -Iinclude)
srcs=(ring/*.c sync/*.c)

checked=() skipped=()
n=0
for t in "${targets[@]}"; do
	IFS='|' read -r name ccs <<<"$t"
	IFS=',' read -ra cmds <<<"$ccs"
	read -ra c <<<"${cmds[0]}"
	# The C library for the target: without it the first #include fails (and a cross
	# target's own include directory is missing: the host's headers would not do).
	inc=""
	for ((i = 0; i < ${#c[@]}; i++)); do
		[[ ${c[i]} == -isystem ]] && inc=${c[i + 1]}
	done
	if [[ -n $inc && ! -d $inc ]] ||
		! echo '#include <errno.h>' | "${c[@]}" -x c -fsyntax-only - 2>/dev/null; then
		skipped+=("$name")
		continue
	fi
	for cmd in "${cmds[@]}"; do
		read -ra c <<<"$cmd"
		for h in shmring handle spsc mpmc mpmc_runs msg sync; do
			if ! "${c[@]}" "${flags[@]}" -Wcast-qual -include "shmring/$h.h" -c -o /dev/null \
				tests/header_check.c; then
				echo "headers.sh: $name, $cmd, shmring/$h.h first: FAILED" >&2
				exit 1
			fi
			if ! echo "#include <shmring/$h.h>" | "${c[@]}" -std=c11 -pedantic -Wall \
				-Wextra -Werror -Iinclude -x c -c -o /dev/null -; then
				echo "headers.sh: $name, $cmd, shmring/$h.h in strict C11: FAILED" >&2
				exit 1
			fi
			n=$((n + 2))
		done
		for f in "${srcs[@]}"; do
			[[ $name != native && $f == ring/registry.c ]] && continue
			# As CMakeLists.txt builds them (ring/internal.h asserts 64-bit offsets);
			# the headers above are checked without it, as a program may include them.
			if ! "${c[@]}" "${flags[@]}" -D_FILE_OFFSET_BITS=64 -c -o /dev/null "$f"; then
				echo "headers.sh: $name, $cmd, $f: FAILED" >&2
				exit 1
			fi
			n=$((n + 1))
		done
	done
	checked+=("$name")
done
msg="headers.sh: $n compilations (public headers and library sources) for ${checked[*]}: ok"
((${#skipped[@]})) && msg+="; skipped, no C library for the target: ${skipped[*]}"
echo "$msg"

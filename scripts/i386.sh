#!/bin/bash
# The library built for 32-bit x86 and run there (x86-64 hosts only; gcc -m32 from
# gcc-multilib): its 64-bit atomics, file offsets and sizes on a 32-bit ABI, which
# scripts/headers.sh only compiles. Builds, in build/test-i386:
#  - the library, its stress executables and the examples with CMake (liburcu-dev:i386, from
#    Debian's multiarch: as root this script adds the i386 architecture and installs it), then
#    runs the stress executables and the example producer and consumer over a named ring;
#  - every criterion suite, linked against the i386 criterion runtime, which cannot be
#    installed beside the host's libcriterion-dev (Debian 12 makes the -dev packages of two
#    architectures conflict): apt-get download fetches it and its libraries, unpacked into
#    build/test-i386/root, and the suites run with --verbose so that skips are named.
# Prints "skipped, ..." and exits 0 when a part cannot be had here (no multilib, not root and
# no liburcu-dev:i386, a download refused); scripts/test.sh counts that as a skipped test.
# Exits non-zero on any build or test failure.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)
out=$top/build/test-i386
jobs=$(nproc)

[[ $(uname -m) == x86_64 ]] || {
	echo "skipped, not an x86-64 host"
	exit 0
}
if ! echo 'int main(void){return 0;}' | gcc -m32 -x c -o /dev/null - 2>/dev/null; then
	echo "skipped, gcc -m32 cannot link here (gcc-multilib)"
	exit 0
fi
have() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
if ! have liburcu-dev:i386 && [ "$(id -u)" = 0 ]; then
	echo ">> adding the i386 architecture and installing liburcu-dev:i386" >&2
	dpkg --add-architecture i386
	# A mirror mid-sync fails one index now and then; the install says whether it mattered.
	DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || true
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		liburcu-dev:i386 >&2 || true
fi
if ! have liburcu-dev:i386; then
	echo "skipped, liburcu-dev:i386 is not installed (run as root, or install it)"
	exit 0
fi

mkdir -p "$out"
log=$out/build.log
CC=gcc CFLAGS="-m32 -Wno-psabi" \
	PKG_CONFIG_LIBDIR=/usr/lib/i386-linux-gnu/pkgconfig:/usr/share/pkgconfig \
	cmake -S "$top" -B "$out" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSHMRING_TESTS=ON \
	-DSHMRING_CRITERION=OFF -DSHMRING_EXAMPLES=ON -DSHMRING_SANITIZE= >"$log" 2>&1 &&
	cmake --build "$out" -j "$jobs" >>"$log" 2>&1 || {
	tail -n 40 "$log"
	exit 1
}
(cd "$out" && ctest --output-on-failure --timeout 300 --no-tests=error)
name=/shmring-test-i386-$$
"$out/examples/consumer" --name "$name" --count 1000000 &
cons=$!
"$out/examples/producer" --name "$name" --count 1000000 || {
	kill $cons 2>/dev/null
	echo "i386: the example producer failed" >&2
	exit 1
}
wait $cons

# The criterion suites: the runtime and what it links, unpacked (not installed).
pkgs=(libcriterion3 libgit2-1.5 libnanomsg5 libffi8 libmbedtls14 libmbedx509-1 libmbedcrypto7
	libhttp-parser2.9 libpcre2-8-0 libssh2-1 libssl3 zlib1g libgssapi-krb5-2 libkrb5-3
	libk5crypto3 libcom-err2 libkrb5support0 libkeyutils1)
root=$out/root
lib=$root/usr/lib/i386-linux-gnu:$root/lib/i386-linux-gnu
if [ ! -e "$root/usr/lib/i386-linux-gnu/libcriterion.so.3" ]; then
	mkdir -p "$out/deb" "$root"
	# _apt cannot write into a root-owned tree; the download is of Debian's signed lists.
	if ! (cd "$out/deb" && apt-get download -qq "${pkgs[@]/%/:i386}" >/dev/null 2>&1); then
		echo "skipped, the criterion suites: apt-get download of the i386 criterion runtime failed"
		exit 0
	fi
	for d in "$out"/deb/*.deb; do
		dpkg -x "$d" "$root"
	done
fi
mkdir -p "$out/crit"
fails=0
for src in tests/test_*.c; do
	t=$(basename "$src" .c)
	[ "$t" = test_tool ] && continue # the tool's paths come from CMake's native build
	gcc -m32 -Wno-psabi -std=gnu11 -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 -O2 -g -Wall -Wextra \
		-Werror -Iinclude -Itests "$src" "$out/libshmring.a" "$out/tests/libshmring_testutil.a" \
		"$root/usr/lib/i386-linux-gnu/libcriterion.so.3" -Wl,--disable-new-dtags \
		-Wl,-rpath-link,"$lib" -Wl,-rpath,"$lib" -L/usr/lib/i386-linux-gnu -lurcu-bp \
		-lurcu-cds -lpthread -lrt -o "$out/crit/$t"
done
for src in tests/test_*.c; do
	t=$(basename "$src" .c)
	[ -x "$out/crit/$t" ] || continue
	if ! timeout 600 "$out/crit/$t" --jobs=1 --ascii --verbose >"$out/crit/$t.log" 2>&1; then
		grep -E '^\[(FAIL|----)\]' "$out/crit/$t.log" | tail -n 30
		fails=$((fails + 1))
	fi
	grep -h '^\[SKIP\]' "$out/crit/$t.log" || true
	echo "i386 $t: $(grep -h 'Synthesis' "$out/crit/$t.log" || echo 'no synthesis')"
done
[ $fails -eq 0 ]

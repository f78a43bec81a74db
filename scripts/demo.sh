#!/usr/bin/env bash
# The main job: a producer process and a consumer process over a POSIX-shm ring, pinned to
# different CPUs, then the quick benchmark table against OS IPC and peers.
# Installs missing Debian packages when run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
need_pkgs "${BUILD_PKGS[@]}"

dir=build/demo
CC=${CC:-gcc} cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release -DSHMRING_TESTS=OFF >/dev/null
cmake --build "$dir" -j "$(nproc)" >/dev/null

# Pin the two sides to different CPUs when there are two.
if [ "$(nproc)" -ge 2 ]; then
	pin_c=(taskset -c 1)
	pin_p=(taskset -c 0)
else
	pin_c=()
	pin_p=()
fi

# If one side fails, the other would wait for it for ever: each side has a time limit, the
# consumer is stopped when the producer fails, and the ring's name goes whatever happens.
cpid= name=
cleanup() {
	[ -n "$cpid" ] && kill "$cpid" 2>/dev/null
	[ -n "$name" ] && rm -f "/dev/shm$name"
	return 0
}
trap cleanup EXIT

echo "== shmring demo: producer and consumer processes over a POSIX shm ring =="
for spec in "8 1" "8 32" "64 1" "64 32" "1024 32"; do
	set -- $spec
	name=/shmring-demo-$$-$1-$2
	count=20000000
	[ "$1" -ge 1024 ] && count=2000000
	timeout 300 "${pin_c[@]}" "$dir/examples/consumer" --name "$name" --count $count \
		--elem "$1" --burst "$2" &
	cpid=$!
	if ! timeout 300 "${pin_p[@]}" "$dir/examples/producer" --name "$name" --count $count \
		--elem "$1" --burst "$2"; then
		echo "demo: the producer failed (elem $1, burst $2)" >&2
		exit 1
	fi
	wait "$cpid" # under set -e a failed consumer ends the demo here
	cpid=
done
name=

if [ -x scripts/bench.sh ]; then
	echo
	echo "== quick benchmark: shmring against OS IPC and peers =="
	scripts/bench.sh --quick
fi

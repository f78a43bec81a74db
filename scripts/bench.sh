#!/usr/bin/env bash
# The side-by-side benchmark: installs the peers (when root and apt-get is there), builds the
# runner in build-bench, runs it, and draws the plots.
#   scripts/bench.sh [--quick] [--only SUITE[,SUITE]] [--rounds N]
# Suites: spsc, mpmc, msg, rtt, ipc, sync (the floors always run). Results:
# bench/results/latest.{csv,txt}, bench/results/*.png, the MPMC scaling table in
# bench/results/mpmc.txt, the message-ring table in bench/results/msg.txt and the sleep/wake
# figures in bench/results/sync.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages of the peers; iceoryx (C binding and the RouDi daemon) only where the
# archive has it. A peer that cannot be installed is reported as skipped by the runner.
PKGS=(libck-dev dpdk-dev libboost-dev liburcu-dev libzmq3-dev gnuplot-nox pkg-config cmake)
if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null && [[ -z ${SHMRING_BENCH_NO_INSTALL:-} ]]; then
	missing=()
	for p in "${PKGS[@]}" libiceoryx-binding-c-dev iceoryx; do
		# Installed, not merely known: dpkg -s also succeeds for a removed package whose
		# configuration files remain.
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
			missing+=("$p")
	done
	if ((${#missing[@]})); then
		echo "bench.sh: installing ${missing[*]}" >&2
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq >/dev/null 2>&1 || true
		avail=()
		for p in "${missing[@]}"; do
			apt-cache show "$p" >/dev/null 2>&1 && avail+=("$p")
		done
		((${#avail[@]})) && apt-get install -y -qq --no-install-recommends "${avail[@]}" >/dev/null ||
			echo "bench.sh: some packages did not install; their rows will say skipped" >&2
	fi
fi

cmake -S . -B build-bench -DSHMRING_BENCH=ON -DCMAKE_BUILD_TYPE=Release \
	-DSHMRING_TESTS=OFF -DSHMRING_EXAMPLES=OFF >/dev/null
cmake --build build-bench -j"$(nproc)" >/dev/null

mkdir -p bench/results
build-bench/bench/shmring_bench --out bench/results "$@"

# MPMC scaling and oversubscription (1/1, 2/2, 4/4 processes and 8 threads on this machine's
# CPUs, each with participants that yield or busy-poll when idle) against rte_ring and ck_ring:
# its own executable, built only when both peers are there.
quick=0 only= prev=
for a in "$@"; do
	case $a in --quick) quick=1 ;; --only=*) only=${a#--only=} ;; esac
	[[ $prev == --only ]] && only=$a
	prev=$a
done
if [[ -z $only || ,$only, == *,mpmc,* ]]; then
	if [[ -x build-bench/bench/mpmc_bench ]]; then
		echo
		if ((quick)); then
			build-bench/bench/mpmc_bench --quick | tee bench/results/mpmc.txt
		else
			build-bench/bench/mpmc_bench | tee bench/results/mpmc.txt
		fi
	else
		echo "mpmc scaling: skipped (needs DPDK and Concurrency Kit: dpdk-dev, libck-dev)"
	fi
fi
# Message rings against the kernel's message channels, memcpy and a cross-core floor.
if [[ -z $only || ,$only, == *,msg,* ]]; then
	echo
	if ((quick)); then
		build-bench/bench/msg_bench 0.1 3 | tee bench/results/msg.txt
	else
		build-bench/bench/msg_bench 0.3 5 | tee bench/results/msg.txt
	fi
fi

# Sleep and wake: blocking round trips against raw futex, pipe, eventfd and Unix sockets,
# streaming with both sides asleep against spinning, the cost of a fence on the publish path,
# membarrier, and push+pop in hot mode against the same once it has cooled.
if [[ -z $only || ,$only, == *,sync,* ]]; then
	echo
	if ((quick)); then
		build-bench/bench/sync_bench 2000 | tee bench/results/sync.txt
	else
		build-bench/bench/sync_bench 20000 | tee bench/results/sync.txt
	fi
fi

if command -v gnuplot >/dev/null; then
	gnuplot bench/results/plot.gp 2>/dev/null && echo "plots: bench/results/spsc_throughput.png bench/results/latency.png"
else
	echo "bench.sh: gnuplot not found, no plots" >&2
fi

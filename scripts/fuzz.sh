#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan+UBSan) and replays or runs them.
#   scripts/fuzz.sh [--replay] [--seconds N] [target...]
#   --replay      run every input of fuzz/corpus/<target>/ once (the default with no option)
#   --seconds N   fuzz each target for N seconds, one after the other, on a copy of its corpus
#                 (the committed corpus never grows); prints the executions per target
#   target        fuzz_attach, fuzz_spsc, ... (default: every fuzz/fuzz_*.c)
# Environment: FUZZ_BUILD (build directory, default build-fuzz), FUZZ_ARGS (extra libFuzzer
# flags). Crash inputs are kept in $FUZZ_BUILD/artifacts/. Exits non-zero on any crash or
# build failure.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
top=$(pwd)
build=${FUZZ_BUILD:-$top/build-fuzz}
case $build in /*) ;; *) build=$top/$build ;; esac

replay=0
seconds=0
targets=()
while [ $# -gt 0 ]; do
	case $1 in
	--replay) replay=1 ;;
	--seconds)
		seconds=${2:-}
		shift
		;;
	--seconds=*) seconds=${1#--seconds=} ;;
	-h | --help)
		sed -n '2,10p' "$0"
		exit 0
		;;
	-*)
		echo "fuzz.sh: unknown option $1" >&2
		exit 2
		;;
	*) targets+=("$1") ;;
	esac
	shift
done
if ! [[ $seconds =~ ^[0-9]+$ ]]; then
	echo "fuzz.sh: --seconds wants a whole number of seconds" >&2
	exit 2
fi
[ "$seconds" -eq 0 ] && replay=1
if [ ${#targets[@]} -eq 0 ]; then
	for f in fuzz/fuzz_*.c; do
		[ -e "$f" ] && targets+=("$(basename "$f" .c)")
	done
fi

command -v clang >/dev/null || {
	echo "fuzz.sh: clang is needed (libFuzzer)" >&2
	exit 1
}
mkdir -p "$build"
# Configured every time (cheap once cached), so that a build directory made without the fuzz
# option, or before a new fuzz_*.c appeared, still ends up with every target.
if ! CC=clang cmake -S "$top" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSHMRING_FUZZ=ON \
	-DSHMRING_TESTS=OFF -DSHMRING_EXAMPLES=OFF >"$build/configure.log" 2>&1 ||
	! cmake --build "$build" -j "$(nproc)" >"$build/build.log" 2>&1; then
	tail -n 40 "$build/configure.log" "$build/build.log" 2>/dev/null
	echo "fuzz.sh: build failed ($build)" >&2
	exit 1
fi

tmp=$(mktemp -d /tmp/shmring-fuzz.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$build/artifacts"

# The registry frees closed segments after an RCU grace period, on liburcu's call_rcu thread, so
# every input ends with fewer frees than mallocs; libFuzzer would then run a full LeakSanitizer
# scan after each one (30 times slower). Leaks are still checked once, at exit.
common=(-detect_leaks=0 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1)
# shellcheck disable=SC2206
extra=(${FUZZ_ARGS:-})

failed=0
# The seeds gen_seeds writes are committed: on replay, check they are what it writes today, so
# that a format change (an ABI bump) cannot leave fuzz_attach and fuzz_spsc starting from seeds
# the header check now rejects.
if [ "$replay" -eq 1 ]; then
	mkdir -p "$tmp/seeds/fuzz_attach" "$tmp/seeds/fuzz_spsc"
	if ! "$build/fuzz/gen_seeds" "$tmp/seeds/fuzz_attach" "$tmp/seeds/fuzz_spsc" >"$tmp/seeds.log" 2>&1; then
		cat "$tmp/seeds.log"
		echo "fuzz.sh: gen_seeds failed"
		failed=1
	else
		stale=0
		for f in "$tmp"/seeds/*/*; do
			rel=${f#"$tmp"/seeds/}
			cmp -s "$f" "$top/fuzz/corpus/$rel" || {
				echo "fuzz.sh: seed fuzz/corpus/$rel is not what gen_seeds writes now" \
					"(run: $build/fuzz/gen_seeds fuzz/corpus/fuzz_attach fuzz/corpus/fuzz_spsc)"
				stale=1
			}
		done
		if [ "$stale" -eq 0 ]; then
			echo "fuzz.sh: gen_seeds: $(find "$tmp/seeds" -type f | wc -l) committed seeds current"
		else
			failed=1
		fi
	fi
fi
for t in "${targets[@]}"; do
	bin=$build/fuzz/$t
	if [ ! -x "$bin" ]; then
		echo "fuzz.sh: no target $t in $build/fuzz" >&2
		failed=1
		continue
	fi
	corpus=$top/fuzz/corpus/$t
	dict=()
	[ -f "$top/fuzz/$t.dict" ] && dict=(-dict="$top/fuzz/$t.dict")
	if [ ! -d "$corpus" ]; then
		echo "fuzz.sh: $t has no corpus ($corpus): starting from nothing"
		corpus=$tmp/empty-$t
		mkdir -p "$corpus"
	fi
	log=$tmp/$t.log

	if [ "$replay" -eq 1 ]; then
		n=$(find "$corpus" -type f | wc -l)
		if "$bin" -runs=0 "${common[@]}" -artifact_prefix="$build/artifacts/$t-" \
			"${extra[@]}" "$corpus" >"$log" 2>&1; then
			echo "fuzz.sh: $t: replayed $n inputs: ok"
		else
			tail -n 60 "$log"
			echo "fuzz.sh: $t: replay FAILED (artifacts in $build/artifacts)"
			failed=1
			continue
		fi
	fi

	if [ "$seconds" -gt 0 ]; then
		work=$tmp/corpus-$t
		mkdir -p "$work"
		cp -r "$corpus/." "$work/"
		if timeout $((seconds + 120)) "$bin" -max_total_time="$seconds" "${common[@]}" \
			"${dict[@]}" -artifact_prefix="$build/artifacts/$t-" "${extra[@]}" \
			"$work" >"$log" 2>&1; then
			runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
			secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -n 1)
			cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1)
			per=$((${runs:-0} / (${secs:-0} > 0 ? ${secs:-1} : 1)))
			echo "fuzz.sh: $t: ${runs:-?} executions in ${secs:-?} s ($per/s), $cov," \
				"corpus $(find "$corpus" -type f | wc -l) -> $(find "$work" -type f | wc -l)"
		else
			grep -v -E '^#[0-9]+' "$log" | tail -n 60
			echo "fuzz.sh: $t: CRASH (input kept in $build/artifacts/; replay with" \
				"$bin <file>)"
			failed=1
		fi
	fi
done
exit $failed

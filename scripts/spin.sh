#!/bin/sh
# Checks the Promela models of the sleep hand-shake with spin:
#  - sync/handshake.pml (barriers, one sleeper): the real protocol (membarrier, M1) and its
#    fallback (fences F2/F3) must verify: no assertion violated, no invalid end state (a waiter
#    asleep forever = lost wake-up/deadlock); a mutant with no barrier at all must FAIL, which
#    shows the model can see the bug, and so must the first cool() (-DOLDCOOL), which cleared
#    hot mode under a registered sleeper;
#  - sync/sseq.pml (the wake skip, two sleepers): must verify, and the old registration that
#    read seq once (-DSTALE) must FAIL; on the semaphore back-end (-DSEM) there is no skip and
#    it must verify, and with the skip (-DSEMSKIP) FAIL.
# Exits non-zero on any error. Quick (well under a second).
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

check() { # model, name, expected (pass|fail), spin defines...
	model="$here/sync/$1.pml" name="$1: $2" want=$3
	shift 3
	rm -f pan pan.* ./*.trail
	spin "$@" -a "$model" >/dev/null
	cc -O0 -DSAFETY -o pan pan.c 2>/dev/null
	out=$(./pan -m100000 2>&1 || true)
	errs=$(printf '%s\n' "$out" | sed -n 's/.*errors: \([0-9]*\).*/\1/p' | head -1)
	states=$(printf '%s\n' "$out" | sed -n 's/^ *\([0-9e+.]*\) states, stored.*/\1/p' | head -1)
	if [ "$want" = pass ] && [ "$errs" = 0 ]; then
		echo "spin: $name: verified, 0 errors ($states states)"
	elif [ "$want" = fail ] && [ -n "$errs" ] && [ "$errs" != 0 ]; then
		echo "spin: $name: counterexample found as expected ($errs error)"
	else
		echo "spin: $name: UNEXPECTED (errors: ${errs:-?}, wanted $want)" >&2
		printf '%s\n' "$out" >&2
		exit 1
	fi
}

check handshake membarrier pass
check handshake fence-fallback pass -DFENCE
check handshake no-barrier-mutant fail -DBROKEN
check handshake old-cooling-mutant fail -DOLDCOOL
check sseq two-sleepers pass
check sseq stale-seq-mutant fail -DSTALE
check sseq semaphore pass -DSEM
check sseq semaphore-skip-mutant fail -DSEM -DSEMSKIP

#!/usr/bin/env bash
# scripts/fuzz.sh TIME PKG:FUNC...: run each fuzz target for TIME. Go's fuzz
# engine sometimes ends a run with its own "context deadline exceeded"
# (its deadline hit while a worker was still busy at the very end), with no
# failing input: such a run is tried once more. A real finding ("Failing
# input written to testdata/fuzz/...") fails at once.
set -uo pipefail
time=$1; shift
GO=${GO:-go}
for t in "$@"; do
	pkg=${t%%:*}; fn=${t##*:}
	for attempt in 1 2; do
		echo "fuzz $fn ($pkg) for $time"
		out=$("$GO" test -run '^$' -fuzz "^$fn\$" -fuzztime "$time" -fuzzminimizetime 10x "$pkg" 2>&1)
		rc=$?
		echo "$out"
		[ $rc = 0 ] && break
		if [ $attempt = 1 ] && grep -q "context deadline exceeded" <<<"$out" && ! grep -q "Failing input" <<<"$out"; then
			echo "fuzz $fn: the engine's own deadline, no failing input: running it once more"
			continue
		fi
		exit $rc
	done
done

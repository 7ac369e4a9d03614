#!/usr/bin/env bash
# Bounded fuzzing of the protocol codec.
#
#   bash test/run-fuzz.sh [seconds-per-target]      (default 30)
#
# Builds the libFuzzer targets (make fuzzers), then runs each of
# fuzz_frame, fuzz_json, fuzz_message, fuzz_route for the given time on a
# fresh corpus in a temp dir, seeded from:
#   test/fuzz/seeds/<target>/   hand-made seeds (committed)
#   test/fuzz/captured/         frames captured from a real broker, if present
#   $FUZZ_CAPTURED              the same, from test/fuzz/capture_seeds.py's
#                               output dir (route*.json / cluster*.json go to
#                               json and route, pull_body*.bin to message,
#                               everything else -- whole frames -- to frame)
#
# Options given to every target: -max_total_time=<seconds> -rss_limit_mb=2048
# -timeout=10 -detect_leaks=0 and a per-target -max_len.  Leak detection is
# off: the codec pallocs and relies on memory contexts to free.  (The
# harnesses do free everything per input through an arena, see
# test/fuzz/fuzz_common.h, so RSS stays flat and -detect_leaks=1 also works.)
#
# Exits non-zero if any target crashes, times out or runs out of memory, and
# prints the path of the input that did it.  Last line: "N passed, M failed".
# Environment: FUZZ_KEEP=1 keeps the temp dir (corpora, logs) even on success.
set -u

secs=${1:-30}
case $secs in
	'' | *[!0-9]*) echo "usage: $0 [seconds-per-target]" >&2; exit 2 ;;
esac
cd "$(dirname "$0")/.." || exit 2

work=$(mktemp -d "${TMPDIR:-/tmp}/rmq-fuzz.XXXXXX") || exit 2
mkdir -p "$work/log"
if ! make fuzzers >"$work/log/build.log" 2>&1; then
	grep -E 'error|Error' "$work/log/build.log" >&2
	echo "run-fuzz: make fuzzers failed; log in $work/log/build.log" >&2
	echo "0 passed, 4 failed"
	exit 1
fi

targets="frame json message route"
declare -A max_len=([frame]=1048576 [json]=262144 [message]=1048576 [route]=262144)
declare -A dict=([frame]=test/fuzz/json.dict [json]=test/fuzz/json.dict [route]=test/fuzz/json.dict)

for t in $targets; do
	mkdir -p "$work/corpus/$t" "$work/artifacts/$t"
	if [ -d "test/fuzz/seeds/$t" ]; then
		find "test/fuzz/seeds/$t" -maxdepth 1 -type f -exec cp {} "$work/corpus/$t"/ \;
	fi
done

# Captured seeds: sort each file by name into the targets it suits.
add_captured() {
	local dir=$1 f base n=0
	[ -d "$dir" ] || return 0
	while IFS= read -r -d '' f; do
		base=$(basename "$f")
		case $base in
			route*.json | cluster*.json)
				cp "$f" "$work/corpus/json/cap_$base"
				cp "$f" "$work/corpus/route/cap_$base" ;;
			*.json)
				cp "$f" "$work/corpus/json/cap_$base" ;;
			pull_body*.bin)
				cp "$f" "$work/corpus/message/cap_$base" ;;
			*)
				cp "$f" "$work/corpus/frame/cap_$base" ;;
		esac
		n=$((n + 1))
	done < <(find "$dir" -maxdepth 1 -type f ! -name '.*' -print0)
	echo "run-fuzz: $n captured seed file(s) from $dir"
}
add_captured test/fuzz/captured
if [ -n "${FUZZ_CAPTURED:-}" ]; then
	if [ -d "$FUZZ_CAPTURED" ]; then
		add_captured "$FUZZ_CAPTURED"
	else
		echo "run-fuzz: FUZZ_CAPTURED=$FUZZ_CAPTURED is not a directory; ignored" >&2
	fi
fi

stat_of() {	# stat_of <log> <name>
	sed -n "s/^stat::$2: *//p" "$1" | tail -1
}

pass=0
fail=0
for t in $targets; do
	bin=test/build/fuzz_$t
	log=$work/log/$t.log
	nseeds=$(find "$work/corpus/$t" -type f | wc -l)
	args=(-max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -detect_leaks=0
		-max_len="${max_len[$t]}" -print_final_stats=1
		-artifact_prefix="$work/artifacts/$t/")
	[ -n "${dict[$t]:-}" ] && args+=(-dict="${dict[$t]}")
	echo "run-fuzz: fuzz_$t for ${secs}s ($nseeds seeds)"
	"$bin" "${args[@]}" "$work/corpus/$t" >"$log" 2>&1
	rc=$?
	runs=$(stat_of "$log" number_of_executed_units)
	eps=$(stat_of "$log" average_exec_per_sec)
	rss=$(stat_of "$log" peak_rss_mb)
	ncorp=$(find "$work/corpus/$t" -type f | wc -l)
	crashes=$(find "$work/artifacts/$t" -type f ! -name 'slow-unit-*' | sort)
	if [ $rc -eq 0 ] && [ -z "$crashes" ]; then
		pass=$((pass + 1))
		printf 'ok   fuzz_%-8s %10s runs  %7s exec/s  peak RSS %s MB  corpus %s\n' \
			"$t" "${runs:-?}" "${eps:-?}" "${rss:-?}" "$ncorp"
	else
		fail=$((fail + 1))
		printf 'FAIL fuzz_%-8s exit %d after %s runs; log %s\n' "$t" "$rc" "${runs:-?}" "$log"
		grep -E '^==[0-9]+==ERROR|SUMMARY|runtime error|invariant failed|ERROR: libFuzzer|out-of-memory|Test unit written' "$log" | head -8 | sed 's/^/     /'
		for c in $crashes; do
			echo "     crash input: $c"
			echo "     reproduce:   $bin $c"
		done
	fi
done

if [ $fail -eq 0 ] && [ -z "${FUZZ_KEEP:-}" ]; then
	rm -rf "$work"
else
	echo "run-fuzz: corpora, logs and artifacts kept in $work"
fi
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]

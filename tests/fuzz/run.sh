#!/bin/sh
# NAME
#	run.sh - build and run every libFuzzer target for a while
#
# SYNOPSIS
#	sh tests/fuzz/run.sh [SECONDS]		(make fuzz FUZZ_SECONDS=N)
#
# DESCRIPTION
#	Every tests/fuzz/fuzz_*.c is a target.  Its comment lines
#
#		// FUZZ_SOURCES: policyd/proto.c policyd/util.c
#		// FUZZ_MAX_LEN: 4096		(optional, default 4096)
#		// FUZZ_OPTIONS: -use_value_profile=1	(optional)
#
#	name the project sources it needs, the longest input to try and extra
#	libFuzzer flags.  Each
#	target is built with clang -fsanitize=fuzzer,address,undefined into
#	build-fuzz/, then run for SECONDS (default 60) on a temporary copy of
#	tests/fuzz/corpus/<target>/ (so what the fuzzer adds never lands in
#	the tree).  Crash inputs go to build-fuzz/artifacts/, the log to
#	build-fuzz/<target>.log.
#
#	One summary line per target.  The exit status is non-zero if any
#	target failed to build, crashed, leaked, timed out or broke an
#	invariant.  A target whose listed source is not in the tree (yet) is
#	reported as SKIP and does not fail the run.
#
# ENVIRONMENT
#	FUZZ_CC		compiler, default clang
#	FUZZ_TARGETS	only these targets (names, blank-separated)
#	FUZZ_JOBS	targets run at once (default: the number of CPUs)

set -u

secs=${1:-60}
case $secs in
''|*[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;;
esac

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 2
out=$root/build-fuzz
cc=${FUZZ_CC:-clang}
mkdir -p "$out/artifacts" || exit 2

pkgs="libuv hiredis ldap inih"
# shellcheck disable=SC2086
pkg_cflags=$(pkg-config --cflags $pkgs 2>/dev/null)
# shellcheck disable=SC2086
pkg_libs="$(pkg-config --libs $pkgs 2>/dev/null) -llber"
[ -e /usr/include/http_parser.h ] && pkg_libs="$pkg_libs -lhttp_parser"

cflags="-std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE
	-g -O1 -fno-omit-frame-pointer
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
	-Wall -Wextra -Wno-unused-parameter"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/policyd-fuzz.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

# header VALUE-NAME FILE - the value of a "// NAME: value" comment line
header() {
	sed -n "s|^// $1:[[:space:]]*||p" "$2" | head -n 1
}

status=0
failed=""
ntargets=0
targets=${FUZZ_TARGETS:-}
if [ -z "$targets" ]; then
	for f in tests/fuzz/fuzz_*.c; do
		[ -e "$f" ] || continue
		t=${f##*/}
		targets="$targets ${t%.c}"
	done
fi
[ -n "$targets" ] || { echo "fuzz: no targets in tests/fuzz/"; exit 1; }

run_one() {
	t=$1
	src=tests/fuzz/$t.c
	bin=$out/$t
	log=$out/$t.log
	if [ ! -f "$src" ]; then
		echo "$t: FAIL (no $src)"
		return 1
	fi
	sources=$(header FUZZ_SOURCES "$src")
	maxlen=$(header FUZZ_MAX_LEN "$src")
	case $maxlen in ''|*[!0-9]*) maxlen=4096 ;; esac
	options=$(header FUZZ_OPTIONS "$src")

	missing=""
	for s in $sources; do
		[ -f "$s" ] || missing="$missing $s"
	done
	if [ -n "$missing" ]; then
		echo "$t: SKIP (missing source:$missing)"
		return 0
	fi

	# shellcheck disable=SC2086
	if ! $cc $cflags $pkg_cflags -o "$bin" "$src" $sources $pkg_libs \
	    >"$log" 2>&1; then
		echo "$t: FAIL (build; see $log)"
		sed -n '1,20p' "$log" | sed 's/^/    /'
		return 1
	fi

	corpus=$tmp/$t
	mkdir -p "$corpus"
	if [ -d "tests/fuzz/corpus/$t" ]; then
		find "tests/fuzz/corpus/$t" -maxdepth 1 -type f \
		    -exec cp {} "$corpus/" \;
	fi
	seeds=$(find "$corpus" -type f | wc -l)

	# libFuzzer: non-zero exit on a crash, leak, timeout or abort().  The
	# outer timeout guards against a hang that libFuzzer cannot stop.
	# shellcheck disable=SC2086
	TMPDIR=$tmp \
	ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0} \
	UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
	timeout -k 10 $((secs + 120)) "$bin" \
	    -max_total_time="$secs" -max_len="$maxlen" -timeout=10 \
	    -rss_limit_mb=1024 -print_final_stats=1 \
	    -artifact_prefix="$out/artifacts/$t-" $options \
	    "$corpus" >>"$log" 2>&1
	rc=$?

	runs=$(sed -n 's/^stat::number_of_executed_units:[[:space:]]*//p' "$log" | tail -n 1)
	cov=$(sed -n 's/.*DONE[[:space:]]*cov: \([0-9]*\).*/\1/p' "$log" | tail -n 1)
	[ -n "$cov" ] || cov=$(sed -n 's/.*[[:space:]]cov: \([0-9]*\).*/\1/p' "$log" | tail -n 1)
	corp=$(find "$corpus" -type f | wc -l)
	if [ $rc -eq 0 ]; then
		echo "$t: ok, ${runs:-?} runs in ${secs}s, cov ${cov:-?}, corpus $seeds -> $corp"
	else
		art=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
		echo "$t: FAIL (exit $rc after ${runs:-?} runs; ${art:+input $art; }see $log)"
		grep -m 4 -E 'ERROR: |SUMMARY: |runtime error|^fuzz_|tests/fuzz/' \
		    "$log" | sed 's/^/    /'
		return 1
	fi
	return 0
}

# Targets run FUZZ_JOBS at a time (default: one per CPU); each prints its
# own summary, shown in target order once all are done.
jobs=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 1)}
i=0
for t in $targets; do
	(run_one "$t" >"$tmp/$t.out" 2>&1; echo $? >"$tmp/$t.rc") &
	i=$((i + 1))
	[ $((i % jobs)) -eq 0 ] && wait
done
wait
for t in $targets; do
	ntargets=$((ntargets + 1))
	cat "$tmp/$t.out"
	if [ "$(cat "$tmp/$t.rc")" != 0 ]; then
		status=1
		failed="$failed $t"
	fi
done
if [ $status -eq 0 ]; then
	echo "fuzz: $ntargets targets, no failures"
else
	echo "fuzz: $ntargets targets, FAILED:$failed"
fi
exit $status

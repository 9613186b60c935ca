#!/bin/sh
# run.sh - `make bench`: policyd against the null responder, one table.
#
# usage: sh tests/bench/run.sh BUILD_DIR [bench.py options]
#
# The 10,000-connection scenarios need as many descriptors in policyd and
# in loadgen: raise the soft limit as far as the hard limit allows (65536
# wanted).  Everything else is in bench.py.

set -e
build=${1:-build}
[ $# -gt 0 ] && shift
here=$(dirname "$0")

want=65536
hard=$(ulimit -Hn)
if [ "$hard" = unlimited ] || [ "$hard" -ge "$want" ]; then
    ulimit -n "$want"
else
    ulimit -n "$hard"
    if [ "$hard" -lt 10200 ]; then
        echo "run.sh: warning: the descriptor limit is $hard; the 10k-connection" \
             "scenarios need about 10,100 per process" >&2
    fi
fi

for b in policyd policyctl bench/loadgen bench/nullresp; do
    if [ ! -x "$build/$b" ]; then
        echo "run.sh: $build/$b is missing: run make first" >&2
        exit 2
    fi
done

# python3 on PATH (3.11) has all bench.py needs; pytest is not used here.
exec python3 "$here/bench.py" "$build" "$@"

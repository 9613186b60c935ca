#!/bin/sh
# sandbox.sh - `make run`: two policyd, one Redis, one slapd, in a temp dir
#
# SYNOPSIS
#	sh contrib/sandbox.sh [BUILD_DIR]
#	SANDBOX_SMOKE=1 sh contrib/sandbox.sh [BUILD_DIR]
#
# DESCRIPTION
#	Makes a temp dir and starts, each on a free loopback port:
#
#	  - a private Debian slapd (mdb) loaded with contrib/sandbox/directory.ldif
#	    (tests/pylib/slapd.py does the slapd.conf, slapadd and start);
#	  - a private redis-server (no persistence);
#	  - policyd "a" and policyd "b", both with [directory] backend = ldap
#	    for example.com and the same Redis: a fleet of two, sharing the
#	    recipient cache, the harvest standings and the siege state.  Each
#	    has a control socket and a /metrics endpoint.  The harvest scale is
#	    shortened (tarpit_delay 0.25 s, tarpit_max 1 s) so the demo it
#	    prints shows the tarpit and the block within seconds.
#
#	It prints how to send requests, watch the fleet live (policyctl top,
#	policyctl fleet) and run the harvest demo, then waits: policyd a logs
#	to the terminal, policyd b to a file.  Ctrl-C (or either policyd
#	exiting) stops both daemons, Redis and slapd and removes the temp dir.
#
#	With SANDBOX_SMOKE=1 it does not wait: it asks both daemons, runs
#	the harvest demo against a and asks b about the same client (blocked
#	fleet-wide), prints policyctl stats and a line of /metrics, then
#	tears everything down.  tests/integration/test_sandbox.py runs this.
#
#	Needs slapd, redis-server and python3's standard library.
#
# EXIT STATUS
#	130 after Ctrl-C; 0 after a smoke run that passed; 1 when something
#	could not start, a daemon exited by itself, or a smoke check failed.
set -eu

BUILD=${1:-build}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
case $BUILD in
/*) ;;
*) BUILD=$ROOT/$BUILD ;;
esac
POLICYD=$BUILD/policyd
POLICYCTL=$BUILD/policyctl
PY=${PYTHON:-python3}
ASK="$PY $ROOT/contrib/sandbox/ask.py"
SMOKE=${SANDBOX_SMOKE:-0}
HARVESTER=203.0.113.7

if [ ! -x "$POLICYD" ]; then
	echo "sandbox: $POLICYD not built (run make)" >&2
	exit 1
fi
for p in /usr/sbin/slapd /usr/bin/redis-server; do
	if [ ! -x $p ]; then
		echo "sandbox: $p missing (sh contrib/deps.sh installs it)" >&2
		exit 1
	fi
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/policyd-sandbox.XXXXXX")
SLAPD_PID=
REDIS_PID=
PID_A=
PID_B=

# stop PID: SIGTERM, wait up to 10 s (slapd syncs, policyd answers what
# is in flight), then SIGKILL
stop() {
	[ -n "$1" ] && kill -0 "$1" 2>/dev/null || return 0
	kill "$1" 2>/dev/null || :
	i=0
	while kill -0 "$1" 2>/dev/null && [ $i -lt 100 ]; do
		# a child of ours that has exited stays a zombie (kill -0 still
		# succeeds) until it is reaped: it is gone for our purpose
		[ "$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null)" = Z ] && break
		sleep 0.1
		i=$((i + 1))
	done
	kill -9 "$1" 2>/dev/null || :
}

cleanup() {
	trap - EXIT INT TERM HUP
	stop "$PID_A"
	stop "$PID_B"
	stop "$REDIS_PID"
	stop "$SLAPD_PID"
	rm -rf "$TMP"
	echo "sandbox: stopped policyd a and b, Redis and slapd; removed $TMP"
}
trap cleanup EXIT
# HUP too: a closed terminal must not leave the daemons (policyd takes SIGHUP
# as a reload, redis-server and slapd run detached) and the temp dir behind
trap 'exit 130' INT TERM
trap 'exit 129' HUP

free_port() {
	"$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_port PORT: until something listens on 127.0.0.1:PORT (10 s at most)
wait_port() {
	"$PY" - "$1" <<'PY'
import socket, sys, time
deadline = time.monotonic() + 10
while time.monotonic() < deadline:
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=0.2).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.05)
sys.exit(1)
PY
}

out=$("$PY" "$ROOT/tests/pylib/slapd.py" --serve "$TMP/slapd" \
	--ldif "$ROOT/contrib/sandbox/directory.ldif")
set -- $out
LDAP_PORT=$1
SLAPD_PID=$2

REDIS_PORT=$(free_port)
mkdir "$TMP/redis"
# daemonized: out of the terminal's process group, so Ctrl-C reaches the
# daemons first and cleanup() stops Redis after them
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
	--dir "$TMP/redis" --logfile "$TMP/redis/redis.log" \
	--pidfile "$TMP/redis/redis.pid" --daemonize yes
wait_port "$REDIS_PORT" || { echo "sandbox: redis-server did not start" >&2; exit 1; }
REDIS_PID=$(cat "$TMP/redis/redis.pid")

ROOTLINE=
if [ "$(id -u)" = 0 ]; then
	ROOTLINE="allow_root = yes"
fi

# conf NAME PORT METRICS_PORT: write $TMP/NAME/policyd.conf
conf() {
	mkdir "$TMP/$1"
	cat >"$TMP/$1/policyd.conf" <<CONF
# written by contrib/sandbox.sh: policyd "$1" of a fleet of two
[server]
listen = inet:127.0.0.1:$2
control = unix:$TMP/$1/control.sock
$ROOTLINE

[directory]
backend = ldap
domains = example.com

[ldap]
uri = ldap://127.0.0.1:$LDAP_PORT/
bind_dn = cn=policyd,dc=example,dc=com
bind_pw = policyd-secret
base = ou=people,dc=example,dc=com
filter = (|(mail=%s)(mailLocalAddress=%s))
timeout = 2
connections = 2

[redis]
address = 127.0.0.1:$REDIS_PORT

[harvest]
# a short scale for the demo (defaults: 1 s, 30 s, 3600 s)
tarpit_delay = 0.25
tarpit_max = 1
block_time = 300

[stats]
prometheus = inet:127.0.0.1:$3
CONF
}

PORT_A=$(free_port)
PORT_B=$(free_port)
METRICS_A=$(free_port)
METRICS_B=$(free_port)
conf a "$PORT_A" "$METRICS_A"
conf b "$PORT_B" "$METRICS_B"

# policyd a logs to the terminal (to a file in a smoke run), b to a file.
# Each in a session of its own (setsid: no fork, the pid stays): Ctrl-C and
# a closed terminal reach this script alone, whose cleanup stops them; the
# daemons stopping on the same SIGINT raced the trap (exit 1, "a policyd
# exited by itself")
if [ "$SMOKE" = 1 ]; then
	setsid "$POLICYD" -c "$TMP/a/policyd.conf" >"$TMP/a/policyd.log" 2>&1 &
else
	setsid "$POLICYD" -c "$TMP/a/policyd.conf" &
fi
PID_A=$!
setsid "$POLICYD" -c "$TMP/b/policyd.conf" >"$TMP/b/policyd.log" 2>&1 &
PID_B=$!
for port in "$PORT_A" "$PORT_B" "$METRICS_A" "$METRICS_B"; do
	wait_port "$port" || { echo "sandbox: policyd did not listen on $port" >&2; exit 1; }
done

# a Prometheus configuration for both, with the project's rules
cat >"$TMP/prometheus.yml" <<PROM
global: {scrape_interval: 5s, evaluation_interval: 5s}
rule_files: [$ROOT/contrib/prometheus/policyd.rules.yml]
scrape_configs:
  - job_name: policyd
    static_configs: [{targets: ['127.0.0.1:$METRICS_A', '127.0.0.1:$METRICS_B']}]
PROM

CTL_A="$POLICYCTL -s $TMP/a/control.sock"
CTL_B="$POLICYCTL -s $TMP/b/control.sock"
DEMO="$ASK --client $HARVESTER $PORT_A \$(seq -f 'guess%g@example.com' 25)"

cat <<MSG

policyd sandbox (temp dir $TMP)
  slapd       ldap://127.0.0.1:$LDAP_PORT/   (pid $SLAPD_PID)
  redis       127.0.0.1:$REDIS_PORT           (pid $REDIS_PID)
  policyd a   inet:127.0.0.1:$PORT_A  metrics http://127.0.0.1:$METRICS_A/metrics  (pid $PID_A, logs here)
  policyd b   inet:127.0.0.1:$PORT_B  metrics http://127.0.0.1:$METRICS_B/metrics  (pid $PID_B, log $TMP/b/policyd.log)

Ask, from another terminal in $ROOT:
  $ASK $PORT_A alice@example.com carol.alias@example.com nobody@example.com
  $ASK $PORT_B alice@example.com
Watch the fleet live (both daemons share Redis):
  $CTL_A top
  $CTL_A fleet
  $CTL_A stats
Harvest demo: 25 guesses from one client; answers slow down (tarpit),
then "450 4.7.1" (blocked), and policyd b refuses it too:
  $DEMO
  $ASK --client $HARVESTER $PORT_B alice@example.com
  $CTL_B client $HARVESTER
  $CTL_A unblock $HARVESTER
Prometheus with contrib/prometheus/policyd.rules.yml over both:
  prometheus --config.file=$TMP/prometheus.yml --storage.tsdb.path=$TMP/prometheus --web.listen-address=127.0.0.1:$(free_port)

MSG

if [ "$SMOKE" = 1 ]; then
	echo "sandbox: smoke run"
	fail=0
	$ASK "$PORT_A" alice@example.com carol.alias@example.com nobody@example.com || fail=1
	$ASK "$PORT_B" alice@example.com || fail=1
	$ASK --client "$HARVESTER" "$PORT_A" $(seq -f 'guess%g@example.com' 25) >"$TMP/demo.out" || fail=1
	cat "$TMP/demo.out"
	grep -q '450 4.7.1' "$TMP/demo.out" || { echo "sandbox: no block in the demo" >&2; fail=1; }
	$ASK --client "$HARVESTER" "$PORT_B" alice@example.com || fail=1
	$CTL_A stats || fail=1
	$CTL_B stats || fail=1
	"$PY" -c 'import sys, urllib.request
for port in sys.argv[1:]:
    text = urllib.request.urlopen("http://127.0.0.1:%s/metrics" % port, timeout=10).read().decode()
    print(port, [l for l in text.splitlines() if l.startswith("policyd_redis_up")][0])' \
		"$METRICS_A" "$METRICS_B" || fail=1
	for name in a b; do
		eval pid=\$PID_$(echo $name | tr ab AB)
		rc=0
		kill -0 "$pid" || fail=1
		stop "$pid"
		wait "$pid" || rc=$?
		echo "sandbox: policyd $name exited $rc"
		[ $rc = 0 ] || { fail=1; tail -20 "$TMP/$name/policyd.log"; }
	done
	PID_A= PID_B=
	[ $fail = 0 ] && echo "sandbox: smoke run passed" || echo "sandbox: smoke run FAILED"
	exit $fail
fi

echo "Ctrl-C stops policyd a and b, Redis and slapd."
# until Ctrl-C or a daemon exits; sleep is interrupted by Ctrl-C too
while kill -0 "$PID_A" 2>/dev/null && kill -0 "$PID_B" 2>/dev/null; do
	sleep 1
done
echo "sandbox: a policyd exited by itself" >&2
exit 1

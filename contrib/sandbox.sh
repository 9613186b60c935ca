#!/bin/sh
# sandbox.sh - `make run`: policyd against a private slapd, in the foreground
#
#   sh contrib/sandbox.sh BUILD_DIR
#
# Makes a temp dir, loads contrib/sandbox/directory.ldif into a private
# Debian slapd (mdb, on a free loopback port; tests/pylib/slapd.py does the
# slapd.conf, slapadd and start), writes a policyd.conf with
# [directory] backend = ldap for example.com, prints how to send a request,
# and runs BUILD_DIR/policyd in the foreground.  Ctrl-C (or policyd
# exiting) stops slapd and removes the temp dir.  Needs only python3's
# standard library besides slapd.
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

if [ ! -x "$POLICYD" ]; then
	echo "sandbox: $POLICYD not built (run make)" >&2
	exit 1
fi
if [ ! -x /usr/sbin/slapd ]; then
	echo "sandbox: /usr/sbin/slapd missing (apt-get install slapd ldap-utils)" >&2
	exit 1
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/policyd-sandbox.XXXXXX")
SLAPD_PID=

cleanup() {
	trap - EXIT INT TERM
	if [ -n "$SLAPD_PID" ] && kill -0 "$SLAPD_PID" 2>/dev/null; then
		kill "$SLAPD_PID" 2>/dev/null || :
		# slapd syncs and exits within a second or two
		i=0
		while kill -0 "$SLAPD_PID" 2>/dev/null && [ $i -lt 50 ]; do
			sleep 0.1; i=$((i + 1))
		done
		kill -9 "$SLAPD_PID" 2>/dev/null || :
	fi
	rm -rf "$TMP"
	echo "sandbox: stopped slapd, removed $TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

out=$("$PY" "$ROOT/tests/pylib/slapd.py" --serve "$TMP/slapd" \
	--ldif "$ROOT/contrib/sandbox/directory.ldif")
set -- $out
LDAP_PORT=$1
SLAPD_PID=$2
PORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

ROOTLINE=
if [ "$(id -u)" = 0 ]; then
	ROOTLINE="allow_root = yes"
fi

cat >"$TMP/policyd.conf" <<CONF
# written by contrib/sandbox.sh
[server]
listen = inet:127.0.0.1:$PORT
control = unix:$TMP/control.sock
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
CONF

cat <<MSG

policyd sandbox
  slapd     ldap://127.0.0.1:$LDAP_PORT/  (pid $SLAPD_PID, data in $TMP/slapd)
  policyd   inet:127.0.0.1:$PORT  (config $TMP/policyd.conf)

Try, from another terminal in $ROOT:
  python3 contrib/sandbox/ask.py $PORT alice@example.com carol.alias@example.com nobody@example.com
  $POLICYCTL -s $TMP/control.sock stats
  ldapsearch -x -H ldap://127.0.0.1:$LDAP_PORT/ -D cn=policyd,dc=example,dc=com -w policyd-secret -b dc=example,dc=com '(mail=*)' mail
Or by hand (what Postfix sends):
  printf 'request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.1\nrecipient=alice@example.com\n\n' | python3 -c 'import socket,sys; s=socket.create_connection(("127.0.0.1",$PORT)); s.sendall(sys.stdin.buffer.read()); print(s.recv(4096).decode())'

Ctrl-C stops policyd and slapd.

MSG

rc=0
"$POLICYD" -c "$TMP/policyd.conf" || rc=$?
exit $rc

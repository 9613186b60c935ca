#!/bin/sh
# shellcheck disable=SC2086,SC2116,SC2317
# (word splitting of the package lists is intended)
# deps.sh - install the Debian packages policyd needs to build and test
#
# SYNOPSIS
#	sh contrib/deps.sh [-n]
#
# DESCRIPTION
#	Asks dpkg-query which of the packages below are not installed.  When
#	none is missing it prints nothing and exits 0 at once (make run, make
#	check, make bench and make fuzz call it every time, so it must be
#	cheap).  Otherwise:
#
#	as root, it preseeds debconf so that postfix and slapd install without
#	questions and without a configuration of their own (the tests run
#	private instances in temp dirs on free ports), then runs
#	apt-get update and apt-get install --no-install-recommends.  While it
#	installs, a temporary /usr/sbin/policy-rc.d (only if none exists)
#	keeps the packages' postinst scripts from starting system daemons;
#	it never stops a service that is already running.
#
#	not as root, it prints the exact command to run and exits 1.
#
#	-n	only list the missing packages; exit 1 if any.
#
# EXIT STATUS
#	0 all packages present (or installed now), 1 missing and not
#	installed, 2 apt-get failed.

set -u

# Build: compiler, pkg-config and the libraries policyd links with.
BUILD_PKGS="build-essential make pkg-config libuv1-dev libhiredis-dev
libldap-dev libinih-dev libcmocka-dev libhttp-parser-dev clang
libclang-rt-14-dev libncurses-dev"
# Tests and tools: the real servers the tests start, the SMTP clients,
# promtool and prometheus (in prometheus; python3-yaml reads the rules),
# valgrind, man for the manual pages, stress-ng for CI's loaded run of the
# integration tests, pytest-xdist for make TEST_JOBS=N (CI runs two test
# files at a time), tmux for the terminal test of policyctl top.
TEST_PKGS="redis-server redis-sentinel slapd ldap-utils postfix python3
python3-pytest python3-pytest-xdist python3-yaml prometheus valgrind swaks
man-db groff-base procps iproute2 openssl util-linux stress-ng tmux"
# The Debian package (make deb, tests/integration/test_deb.py): debhelper,
# lintian, systemd-analyze (in systemd), adduser for the postinst.
DEB_PKGS="debhelper lintian systemd adduser"

PKGS=$(echo $BUILD_PKGS $TEST_PKGS $DEB_PKGS)

list_only=0
[ "${1:-}" = "-n" ] && list_only=1

# dpkg-query prints one line per known package; a package dpkg never heard
# of prints nothing on stdout, so anything not listed as "ii" is missing.
installed=$(dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' $PKGS 2>/dev/null |
	awk '$2 == "ii" { print $1 }')
missing=""
for p in $PKGS; do
	case " $(echo $installed) " in
	*" $p "*) ;;
	*) missing="$missing $p" ;;
	esac
done
missing=${missing# }

[ -z "$missing" ] && exit 0

if [ $list_only = 1 ]; then
	echo "$missing"
	exit 1
fi

if [ "$(id -u)" != 0 ]; then
	echo "deps.sh: missing Debian packages: $missing" >&2
	echo "deps.sh: install them with:" >&2
	echo "sudo sh -c 'echo postfix postfix/main_mailer_type select No configuration | debconf-set-selections; echo slapd slapd/no_configuration boolean true | debconf-set-selections; DEBIAN_FRONTEND=noninteractive apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing'" >&2
	exit 1
fi

echo "deps.sh: installing: $missing" >&2

# Preseed: no mailer configuration, no slapd database.  debconf-set-selections
# comes with debconf, which every Debian system has.
if command -v debconf-set-selections >/dev/null 2>&1; then
	debconf-set-selections <<EOF
postfix postfix/main_mailer_type select No configuration
slapd slapd/no_configuration boolean true
EOF
fi

# Keep postinst scripts from starting daemons while we install; remove the
# file again whatever happens.  Leave an existing policy-rc.d alone.
rcd=/usr/sbin/policy-rc.d
made_rcd=0
if [ ! -e $rcd ]; then
	printf '#!/bin/sh\n# temporary, from policyd contrib/deps.sh\nexit 101\n' >$rcd &&
		chmod 755 $rcd && made_rcd=1
fi
cleanup() {
	[ $made_rcd = 1 ] && rm -f $rcd
}
trap cleanup EXIT
trap 'exit 2' INT TERM HUP

export DEBIAN_FRONTEND=noninteractive
rc=0
apt-get update -q || rc=2
if [ $rc = 0 ]; then
	apt-get install -y -q --no-install-recommends \
		-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
		$missing || rc=2
fi
if [ $rc != 0 ]; then
	echo "deps.sh: apt-get failed" >&2
	exit $rc
fi

still=$(sh "$0" -n 2>/dev/null)
if [ -n "$still" ]; then
	echo "deps.sh: still missing after install: $still" >&2
	exit 1
fi
exit 0

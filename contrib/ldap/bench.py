#!/usr/bin/env python3
"""bench - LDAP lookup latency and lookups/s of policyd against a real slapd.

    python3 contrib/ldap/bench.py [BUILD_DIR] [--seconds S] [--conns 1,8,50]
                                  [--users N] [--connections N]

Starts a private slapd (tests/pylib/slapd.py: N inetOrgPerson entries in
mdb, -d stats logging as the tests run it) and policyd with
backend = ldap, L1 and the store cache off and harvest off, so every
request is exactly one LDAP search; then, for each concurrency, runs
BUILD_DIR/bench/loadgen (make check builds it) walking distinct existing
addresses in order, and prints requests/s and latency percentiles.  The
latency is the whole request (policy protocol in, LDAP search, reply out),
measured by the client.  Stops everything it started.
"""
import argparse
import os
import re
import subprocess
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
sys.path.insert(0, os.path.join(ROOT, "tests", "pylib"))

import slapd as slapd_helper      # noqa: E402
from harness import Daemon        # noqa: E402

CONF = """
[server]
listen = {listen}
allow_root = yes
log_decisions = no
max_connections = 2000

[directory]
backend = ldap
domains = example.com

[ldap]
uri = %(uri)s
bind_dn = %(dn)s
bind_pw = %(pw)s
base = %(base)s
filter = (|(mail=%%s)(mailLocalAddress=%%s))
timeout = 2
connections = %(conns)d

[cache]
local_size = 0
positive_ttl = 0
negative_ttl = 0

[harvest]
enabled = no
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build", nargs="?", default=os.path.join(ROOT, "build"))
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--conns", default="1,8,50")
    ap.add_argument("--users", type=int, default=10000)
    ap.add_argument("--connections", type=int, default=2,
                    help="[ldap] connections (pool size)")
    a = ap.parse_args()
    build = os.path.abspath(a.build)
    os.environ["POLICYD_BUILD"] = build
    import harness
    harness.POLICYD = os.path.join(build, "policyd")
    loadgen = os.path.join(build, "bench", "loadgen")

    s = slapd_helper.Slapd(users=a.users)
    s.start()
    d = None
    try:
        d = Daemon(conf=CONF % {"uri": s.uri, "dn": slapd_helper.BIND_DN,
                                "pw": slapd_helper.BIND_PW, "base": slapd_helper.PEOPLE,
                                "conns": a.connections})
        d.start()
        print("slapd %s, %d users; policyd [ldap] connections = %d; %.0f s per run"
              % (s.uri, a.users, a.connections, a.seconds))
        print("%6s %10s %9s %9s %9s %9s %9s" % ("conns", "lookups/s", "p50 us",
                                                 "p90 us", "p99 us", "max us", "searches"))
        for c in [int(x) for x in a.conns.split(",")]:
            before = s.searches()
            r = subprocess.run([loadgen, "-h", "127.0.0.1", "-p", str(d.port), "-c", str(c),
                                "-d", str(a.seconds), "-w", "0.5", "--sequential",
                                "--pattern", "user%05d@example.com",
                                "--valid-range", str(a.users), "--valid-ratio", "1",
                                "--invalid-range", "0"],
                               capture_output=True, text=True, timeout=a.seconds + 60)
            kv = dict(re.findall(r"(\w+)=(\S+)", r.stdout))
            if r.returncode != 0 or "rps" not in kv:
                print("loadgen failed: %s%s" % (r.stdout, r.stderr))
                return 1
            print("%6d %10.0f %9.0f %9.0f %9.0f %9.0f %9d   errors=%s actions=%s"
                  % (c, float(kv["rps"]), float(kv["p50_us"]), float(kv["p90_us"]),
                     float(kv["p99_us"]), float(kv["max_us"]), s.searches() - before,
                     kv.get("errors"), kv.get("actions")))
    finally:
        if d:
            d.cleanup()
        s.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())

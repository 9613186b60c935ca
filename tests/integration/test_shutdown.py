"""Shutdown while requests wait on a frozen backend and their peers hang up.

A job cancelled (its Postfix went away) keeps waiting for its LDAP or Redis
answer; the last connection closing lets the daemon free its policy.  The
late answer must find the job's policy and runtime still there: under the
ASan build (make check SANITIZE=1) a use-after-free is a report in the log,
and check_clean_exit fails on it; every build checks the exit status.
"""
import json
import signal

import slapd as slapd_helper
from harness import Daemon, request, wait_for
from redis import RedisServer


def dir_queries(d):
    return json.loads(d.ctl("stats", "--json").stdout)["directory"]["queries"]


def hang_up_during_shutdown(d, recipient, in_flight):
    """Send a request that waits on the frozen backend, SIGTERM, hang up,
    and return the daemon's exit status once it has drained."""
    c = d.client()
    c.send_raw(request(recipient=recipient, client_address="192.0.2.9"))
    wait_for(in_flight, timeout=10, what="the request to wait on the backend")
    d.signal(signal.SIGTERM)
    d.wait_log("stopping; answering the requests in flight")
    c.close()
    d.proc.wait(30)
    return d.proc.returncode


def test_sigterm_while_ldap_is_frozen():
    sl = slapd_helper.Slapd(users=20)
    sl.start()
    try:
        conf = sl.policyd_conf(timeout=1, extra="[cache]\nlocal_size = 0\n")
        d = Daemon(conf=conf)
        with d:
            wait_for(lambda: d.ask(recipient="user00001@example.com") == "DUNNO",
                     timeout=15, what="LDAP up")
            before = dir_queries(d)
            sl.freeze()
            rc = hang_up_during_shutdown(d, "user00002@example.com",
                                         lambda: dir_queries(d) > before)
            assert rc == 0, d.read_log()[-4000:]
            d.check_clean_exit(rc)
    finally:
        sl.cleanup()


def test_sigterm_while_redis_is_frozen():
    with RedisServer() as r:
        d = Daemon(extra="[redis]\naddress = 127.0.0.1:%d\ntimeout = 1\n"
                   "[cache]\nlocal_size = 0\n" % r.port)
        with d:
            d.wait_log("redis: up")
            assert d.ask(recipient="user@example.com") == "DUNNO"
            r.sigstop()
            # the reads of a request go out at the end of the loop turn that
            # parsed it: wait until the daemon has taken the request in
            before = json.loads(d.ctl("stats", "--json").stdout)["requests"]["total"]
            rc = hang_up_during_shutdown(
                d, "alice@example.com",
                lambda: json.loads(d.ctl("stats", "--json").stdout)
                ["requests"]["total"] > before)
            r.sigcont()
            assert rc == 0, d.read_log()[-4000:]
            d.check_clean_exit(rc)

"""The control socket and policyctl against the real daemon: stats numbers,
client/unblock/flush, reload (good, bad, under load, SIGHUP), socket errors,
and the privilege drop.
"""
import json
import os
import signal
import stat
import subprocess
import threading
import time

import pytest

from harness import Daemon, POLICYCTL, wait_for

UNKNOWN = "550 5.1.1 User unknown"


BLOCKED = "450 4.7.1 Too many invalid recipients, try again later"

NO_HARVEST = """
[harvest]
enabled = no
"""

# one level (the narrow prefix is the wide one), no fading to speak of
BLOCK_AT_3 = """
[harvest]
tarpit_after = 0
block_after = 3
block_time = 600
ipv4_prefix = 24
window = 2592000
"""


def stats_json(d):
    r = d.ctl("stats", "--json")
    assert r.stderr == ""
    return json.loads(r.stdout)


def is_root():
    return os.geteuid() == 0


# ---- stats ----

def test_stats_json_counts_exactly_what_was_sent():
    with Daemon(NO_HARVEST) as d:
        before = stats_json(d)
        assert before["requests"]["total"] == 0
        with d.client() as c:
            # 7 RCPT: 2 known, 3 unknown, 2 in foreign domains; 1 CONNECT
            assert c.ask(recipient="user@example.com") == "DUNNO"
            assert c.ask(recipient="alice@example.com") == "DUNNO"
            for i in range(3):
                assert c.ask(recipient="nobody%d@example.com" % i) == UNKNOWN
            assert c.ask(recipient="x@foreign.test") == "DUNNO"
            assert c.ask(recipient="y@elsewhere.test") == "DUNNO"
            assert c.ask(protocol_state="CONNECT", recipient="") == "DUNNO"
            # the connection is still open while we look
            s = stats_json(d)
        assert s["requests"]["total"] == 8
        assert s["requests"]["by_state"]["RCPT"] == 7
        assert s["requests"]["by_state"]["CONNECT"] == 1
        assert s["requests"]["by_state"]["MAIL"] == 0
        assert s["requests"]["by_verdict"] == {
            "accepted": 5, "unknown": 3, "tempfail": 0, "blocked": 0, "deferred": 0,
            "delayed": 0}
        assert s["connections"]["total"] - before["connections"]["total"] == 1
        assert s["connections"]["current"] == 1
        assert s["connections"]["refused"] == 0
        # every answer is timed, from parse to reply
        assert s["latency_us"]["count"] == 8
        assert 0 < s["latency_us"]["p50"] <= s["latency_us"]["p90"] <= s["latency_us"]["p99"]
        assert s["harvest"]["delayed_now"] == 0
        assert s["harvest"]["blocked_now"] == 0
        assert s["harvest"]["top"] == []
        assert s["uptime_s"] >= 0


def test_stats_text_table_and_prometheus():
    with Daemon(NO_HARVEST) as d:
        with d.client() as c:
            for i in range(4):
                assert c.ask(recipient="ghost%d@example.com" % i) == UNKNOWN
            assert c.ask(recipient="user@example.com") == "DUNNO"
        r = d.ctl("stats")
        lines = r.stdout.splitlines()
        assert "  state RCPT             5" in lines
        assert "  verdict unknown        4" in lines
        assert "  verdict accepted       1" in lines
        assert "top offending networks" in lines
        assert any(l.startswith("uptime ") for l in lines)
        assert any(l.startswith("  latency                p50 ") for l in lines)

        r = d.ctl("stats", "--prometheus")
        assert 'policyd_requests_total{state="RCPT"} 5\n' in r.stdout
        assert 'policyd_verdicts_total{verdict="unknown"} 4\n' in r.stdout
        p = subprocess.run(["promtool", "check", "metrics"], input=r.stdout,
                           capture_output=True, text=True, timeout=30)
        assert p.returncode == 0, p.stdout + p.stderr
        assert p.stdout == "" and p.stderr == ""


# ---- client / unblock ----

def test_client_unblock_change_behaviour():
    with Daemon(BLOCK_AT_3) as d:
        r = d.ctl("client", "192.0.2.77")
        assert r.stdout == ("level: narrow\nnetwork: 192.0.2.0/24\ninvalid: 0.00\n"
                            "valid: 0.00\nshare: 0.000\ntraps: 0.00\nstage: clean\n"
                            "why: no invalid recipients\nscope: this process\n\n"
                            "established: no\n")

        with d.client() as c:
            answers = [c.ask(client_address="192.0.2.10", recipient="nope%d@example.com" % i)
                       for i in range(2)]
            t_block = time.monotonic()          # before the block begins
            answers.append(c.ask(client_address="192.0.2.10", recipient="nope2@example.com"))
        # a request is judged on the standing before it: the one that
        # reaches block_after is answered as unknown, and earns the block
        assert answers == [UNKNOWN, UNKNOWN, UNKNOWN]
        # the whole /24 is blocked from the next request on, even for a
        # recipient that exists
        assert d.ask(client_address="192.0.2.99", recipient="user@example.com") == BLOCKED
        # another network is not
        assert d.ask(client_address="198.51.100.1", recipient="user@example.com") == "DUNNO"

        r = d.ctl("client", "192.0.2.55")
        out = r.stdout.splitlines()
        # the window (half-life) is 30 days: 3 invalid stay 3.00 throughout
        assert out[0:8] == ["level: narrow", "network: 192.0.2.0/24", "invalid: 3.00",
                            "valid: 0.00", "share: 1.000", "traps: 0.00",
                            "stage: blocked", "why: block in force"]
        assert out[8].startswith("block_left_s: ")
        assert out[9:] == ["scope: this process", "", "established: no"]
        # bounds from the test's clock: 600 s minus what has passed since
        # the block began; slack only for the daemon's whole-ms (maybe
        # coarse) clock, 5 ms, and for the 0.1 s print, 0.05 s
        left = float(out[8].split(": ")[1])
        assert 600 - (time.monotonic() - t_block) - 0.055 <= left <= 600

        s = stats_json(d)
        assert s["harvest"]["blocked_now"] == 1
        assert s["harvest"]["top"][0]["network"] == "192.0.2.0/24"
        assert s["harvest"]["top"][0]["count"] == 3
        left_ms = s["harvest"]["top"][0]["block_ms"]
        assert 600000 - (time.monotonic() - t_block) * 1000 - 5 <= left_ms <= 600000
        assert s["requests"]["by_verdict"]["blocked"] == 1
        assert s["requests"]["by_verdict"]["unknown"] == 3

        r = d.ctl("unblock", "192.0.2.1")
        assert r.stdout == "192.0.2.0/24: standing and block removed\n"
        r = d.ctl("client", "192.0.2.55")
        assert r.stdout.splitlines()[2:8] == ["invalid: 0.00", "valid: 0.00", "share: 0.000",
                                              "traps: 0.00", "stage: clean",
                                              "why: no invalid recipients"]
        r = d.ctl("unblock", "192.0.2.1")
        assert r.stdout == "192.0.2.0/24: nothing to remove\n"
        assert d.ask(client_address="192.0.2.99", recipient="user@example.com") == "DUNNO"


def test_client_bad_address_is_an_error():
    with Daemon() as d:
        r = d.ctl("client", "not-an-ip", check=False)
        assert r.returncode == 1
        assert r.stdout == ""
        assert r.stderr == "policyctl: not an IP address\n"
        r = d.ctl("unblock", "300.1.1.1", check=False)
        assert r.returncode == 1
        assert r.stderr == "policyctl: not an IP address\n"


# ---- flush ----

def test_flush_drops_cached_answers():
    with Daemon(NO_HARVEST) as d:
        assert d.ask(recipient="user@example.com") == "DUNNO"
        assert d.ask(recipient="nobody@example.com") == UNKNOWN
        s0 = stats_json(d)
        assert d.ask(recipient="user@example.com") == "DUNNO"
        s1 = stats_json(d)
        # answered from the in-process cache, the directory not asked
        assert s1["cache"]["l1_hits"] == s0["cache"]["l1_hits"] + 1
        assert s1["directory"]["queries"] == s0["directory"]["queries"]

        r = d.ctl("flush", "User@Example.COM")
        assert r.stdout.startswith("flushed")
        assert d.ask(recipient="user@example.com") == "DUNNO"
        s2 = stats_json(d)
        assert s2["cache"]["l1_hits"] == s1["cache"]["l1_hits"]
        assert s2["directory"]["queries"] == s1["directory"]["queries"] + 1
        # the other entry was kept
        assert d.ask(recipient="nobody@example.com") == UNKNOWN
        s3 = stats_json(d)
        assert s3["cache"]["l1_hits"] == s2["cache"]["l1_hits"] + 1

        d.ctl("flush", "--all")
        assert d.ask(recipient="nobody@example.com") == UNKNOWN
        assert d.ask(recipient="user@example.com") == "DUNNO"
        s4 = stats_json(d)
        assert s4["cache"]["l1_hits"] == s3["cache"]["l1_hits"]
        assert s4["directory"]["queries"] == s3["directory"]["queries"] + 2

        r = d.ctl("flush", "no-at-sign", check=False)
        assert r.returncode == 1
        assert r.stderr == "policyctl: not an email address\n"


# ---- reload ----

def write(path, text):
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.rename(path + ".tmp", path)


def test_reload_applies_new_recipients_and_refuses_bad_config():
    with Daemon(NO_HARVEST) as d:
        recipients = os.path.join(d.dir, "recipients")
        assert d.ask(recipient="newbie@example.com") == UNKNOWN
        with open(recipients, "a") as f:
            f.write("newbie@example.com\n")
        r = d.ctl("reload")
        assert r.stdout == "configuration reloaded\n"
        assert d.ask(recipient="newbie@example.com") == "DUNNO"
        assert stats_json(d)["reloads"] == {"done": 1, "failed": 0}

        good = open(d.conf).read()
        write(d.conf, good + "\n[server]\nbogus_key = 1\n")
        with d.client() as c:      # a connection open across the failed reload
            r = d.ctl("reload", check=False)
            assert r.returncode == 1
            assert r.stdout == ""
            assert r.stderr.startswith("policyctl: ")
            assert d.conf in r.stderr and "bogus_key" in r.stderr
            assert c.ask(recipient="newbie@example.com") == "DUNNO"
        assert "bogus_key" in d.read_log()
        assert stats_json(d)["reloads"] == {"done": 1, "failed": 1}
        # the old configuration keeps serving
        assert d.proc.poll() is None
        assert d.ask(recipient="newbie@example.com") == "DUNNO"
        assert d.ask(recipient="nobody@example.com") == UNKNOWN

        # SIGHUP reloads too, once the file is good again
        write(d.conf, good)
        with open(recipients, "a") as f:
            f.write("hupper@example.com\n")
        assert d.ask(recipient="hupper@example.com") == UNKNOWN
        d.signal(signal.SIGHUP)
        wait_for(lambda: d.ask(recipient="hupper@example.com") == "DUNNO",
                 timeout=10, what="SIGHUP reload")
        assert stats_json(d)["reloads"]["done"] == 2


def test_reload_under_load_loses_no_request():
    with Daemon(NO_HARVEST) as d:
        stop = threading.Event()
        results = {"ok": 0, "bad": []}
        lock = threading.Lock()

        def hammer(n):
            cases = [("user@example.com", "DUNNO"), ("ghost@example.com", UNKNOWN),
                     ("x@foreign.test", "DUNNO"), ("any@example.org", "DUNNO")]
            i = 0
            while not stop.is_set():
                # a long-lived connection, and a fresh one now and then
                try:
                    with d.client(timeout=15) as c:
                        for _ in range(20):
                            rcpt, want = cases[i % len(cases)]
                            i += 1
                            got = c.ask(recipient=rcpt,
                                        client_address="198.51.100.%d" % n)
                            with lock:
                                if got == want:
                                    results["ok"] += 1
                                else:
                                    results["bad"].append((rcpt, got))
                except Exception as e:  # noqa: BLE001 - any failure is a lost request
                    with lock:
                        results["bad"].append(("exception", repr(e)))

        threads = [threading.Thread(target=hammer, args=(n,)) for n in range(3)]
        for t in threads:
            t.start()

        def answered():
            with lock:
                return results["ok"]

        try:
            for _ in range(10):
                # requests really run between the reloads: wait for them
                n = answered()
                wait_for(lambda: answered() >= n + 10, 15, what="answers between reloads")
                r = d.ctl("reload")
                assert r.stdout == "configuration reloaded\n"
        finally:
            stop.set()
            for t in threads:
                t.join(30)
        assert not any(t.is_alive() for t in threads)
        assert results["bad"] == []
        print("reload under load: %d answers across 10 reloads" % results["ok"])
        s = stats_json(d)
        assert s["reloads"] == {"done": 10, "failed": 0}
        assert s["requests"]["total"] == results["ok"]
        assert s["connections"]["protocol_errors"] == 0
        assert d.proc.poll() is None


# ---- the socket itself ----

def test_missing_socket_message():
    path = "/tmp/policyd-test-no-such-dir-%d/control.sock" % os.getpid()
    r = subprocess.run([POLICYCTL, "-s", path, "stats"], capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 1
    assert r.stdout == ""
    assert r.stderr == ("policyctl: cannot connect to %s: No such file or directory "
                        "(is policyd running with [server] control = unix:%s?)\n"
                        % (path, path))


def test_usage_errors_exit_2():
    for args in ([], ["frobnicate"], ["stats", "--xml"], ["client"],
                 ["flush"], ["reload", "now"], ["client", "a b"]):
        r = subprocess.run([POLICYCTL, "-s", "/nonexistent"] + args,
                           capture_output=True, text=True, timeout=10)
        assert r.returncode == 2, args
        assert r.stderr.startswith("policyctl: "), args
        assert "usage: policyctl" in r.stderr


def test_socket_mode_stale_replace_and_unlink():
    d = Daemon(extra="")
    try:
        # a stale socket from a dead process is replaced
        import socket as so
        s = so.socket(so.AF_UNIX, so.SOCK_STREAM)
        s.bind(d.control_path)
        s.close()
        d.start()
        st = os.stat(d.control_path)
        assert stat.S_ISSOCK(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o660
        assert d.ctl("stats", "--json").returncode == 0
        assert d.stop() == 0
        assert not os.path.exists(d.control_path)
    finally:
        d.cleanup()


def run_as_nobody(argv):
    return subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup",
                           "--clear-groups"] + argv,
                          capture_output=True, text=True, timeout=10)


@pytest.mark.skipif(not is_root(), reason="needs root to own the socket")
def test_permission_denied_message():
    with Daemon() as d:
        os.chmod(d.dir, 0o755)     # the directory is not what stops nobody
        r = run_as_nobody([POLICYCTL, "-s", d.control_path, "stats"])
        assert r.returncode == 1
        assert r.stderr == ("policyctl: cannot connect to %s: Permission denied "
                            "(policyctl must run as a user in the socket's group)\n"
                            % d.control_path)
    # the same user gets in when the mode allows it: the test can tell
    d = Daemon(extra="")
    conf = open(d.conf).read().replace(
        "allow_root = yes", "allow_root = yes\ncontrol_mode = 0666")
    with open(d.conf, "w") as f:
        f.write(conf)
    try:
        d.start()
        os.chmod(d.dir, 0o755)
        r = run_as_nobody([POLICYCTL, "-s", d.control_path, "stats", "--json"])
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["requests"]["total"] == 0
    finally:
        d.cleanup()


# ---- privileges ----

def proc_ids(pid):
    ids = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("Uid", "Gid", "Groups"):
                ids[k] = v.split()
    return ids


@pytest.mark.skipif(not is_root(), reason="needs root to drop privileges")
def test_privilege_drop_to_user():
    import pwd
    nobody = pwd.getpwnam("nobody")
    d = Daemon(extra="")
    conf = open(d.conf).read().replace("allow_root = yes", "user = nobody")
    with open(d.conf, "w") as f:
        f.write(conf)
    os.chmod(d.dir, 0o755)
    try:
        d.start()
        # the drop happens before the loop serves anything, but after the
        # sockets exist: wait for it rather than race it
        want = [str(nobody.pw_uid)] * 4
        try:
            wait_for(lambda: proc_ids(d.proc.pid)["Uid"] == want, timeout=15,
                     what="the privilege drop")
        except TimeoutError:
            pass
        ids = proc_ids(d.proc.pid)
        assert ids["Uid"] == [str(nobody.pw_uid)] * 4
        assert ids["Gid"] == [str(nobody.pw_gid)] * 4
        assert ids["Groups"] == [] or ids["Groups"] == [str(nobody.pw_gid)]
        # and it still serves, and its control socket still answers root
        assert d.ask(recipient="user@example.com") == "DUNNO"
        assert d.ask(recipient="nobody@example.com") == UNKNOWN
        assert d.ctl("stats", "--json").returncode == 0
    finally:
        d.cleanup()


@pytest.mark.skipif(not is_root(), reason="only root can be refused as root")
def test_refuses_root_without_user():
    d = Daemon(extra="")
    conf = open(d.conf).read().replace("allow_root = yes", "")
    with open(d.conf, "w") as f:
        f.write(conf)
    try:
        d.start(wait=False)
        rc = d.proc.wait(15)
        assert rc != 0
        log = d.read_log()
        assert ("refusing to serve as root: set [server] user "
                "(or allow_root = yes)") in log
        assert not os.path.exists(d.control_path)
    finally:
        d.cleanup()


# from one unknown recipient on, every request is held 1.5 s; nothing is
# ever blocked
TARPIT_1_5S = """
[harvest]
tarpit_after = 1
tarpit_delay = 1.5
tarpit_max = 1.5
block_after = 0
"""


def hold_in_tarpit(d, ip, answers):
    """One unknown recipient from ip (answered at once: it is judged on the
    clean standing before it), then a thread whose request the tarpit
    holds, appending its answer (or what failed) to answers; waits until the
    daemon holds it.  The caller joins the thread (joined())."""
    assert d.ask(client_address=ip, recipient="ghost0@example.com") == UNKNOWN

    def held():
        try:
            answers.append(d.ask(client_address=ip, recipient="ghost@example.com"))
        except Exception as e:          # noqa: BLE001 - in answers, not left to pytest
            answers.append(repr(e))
    t = threading.Thread(target=held)
    t0 = time.monotonic()
    t.start()
    try:
        s = wait_for(lambda: (lambda j: j if j["harvest"]["delayed_now"] == 1 else None)(
            stats_json(d)), timeout=5, what="a request waiting in the tarpit")
    except BaseException:
        joined(t)
        raise
    return t, t0, s


def joined(t):
    """Joins hold_in_tarpit's thread, which must not outlive its test (the
    request times out after 10 s at most)."""
    t.join(15)
    assert not t.is_alive()


def test_stats_delayed_now_during_tarpit():
    with Daemon(TARPIT_1_5S) as d:
        answers = []
        t, t0, s = hold_in_tarpit(d, "203.0.113.5", answers)
        try:
            assert s["requests"]["by_verdict"]["delayed"] == 1
            assert s["requests"]["by_verdict"]["unknown"] == 1   # the held one not yet
        finally:
            joined(t)
        elapsed = time.monotonic() - t0
        assert answers == [UNKNOWN]
        # held 1.5 s from a read after t0; the loop's clock counts whole ms
        # and may be a coarse clock one tick behind: 5 ms of slack below.
        # No upper bound here (valgrind): the latency bucket below has one.
        assert elapsed >= 1.495
        d.wait_log("rcpt=<ghost@example.com> verdict=unknown delay=1.500s")
        log = d.read_log()
        assert "rcpt=<ghost0@example.com> verdict=unknown delay=0.000s" in log
        s = stats_json(d)
        assert s["harvest"]["delayed_now"] == 0
        assert s["requests"]["by_verdict"]["delayed"] == 1
        assert s["requests"]["by_verdict"]["unknown"] == 2
        # a 1.5 s answer lands in the (1 s, 5 s] bucket
        assert s["latency_us"]["p99"] == 5000000
        # both levels of the client hold its 2 unknown recipients
        top = sorted(s["harvest"]["top"], key=lambda e: e["network"])
        assert top == [{"network": "203.0.113.0/24", "count": 2, "block_ms": 0},
                       {"network": "203.0.113.5/32", "count": 2, "block_ms": 0}]


def test_control_protocol_limits():
    import socket as so
    with Daemon() as d:
        def talk(data):
            s = so.socket(so.AF_UNIX, so.SOCK_STREAM)
            s.settimeout(10)
            s.connect(d.control_path)
            s.sendall(data)
            out = b""
            while True:
                try:
                    chunk = s.recv(65536)
                except ConnectionResetError:
                    break   # closed with our excess bytes unread: the reply came first
                if not chunk:
                    break
                out += chunk
            s.close()
            return out
        assert talk(b"x" * 2000) == b"error\ncommand line too long\n"
        assert talk(b"stats\x00json\n") == b"error\nNUL byte in the command\n"
        assert talk(b"stats json\r\n").startswith(b"ok\n{\"uptime_s\":")
        assert talk(b"\n") == b"error\nempty command\n"
        assert talk(b"frob\n").startswith(b"error\nunknown command or wrong arguments: frob\n")
        # and the daemon is fine
        assert d.ask(recipient="user@example.com") == "DUNNO"


@pytest.mark.timing
def test_control_idle_connection_closed():
    """A control connection that sends no command is closed after 5 s
    without an answer; the daemon goes on serving."""
    import socket as so
    with Daemon() as d:
        s = so.socket(so.AF_UNIX, so.SOCK_STREAM)
        s.settimeout(15)
        t0 = time.monotonic()       # before the daemon accepts it
        s.connect(d.control_path)
        assert s.recv(100) == b""
        # whole-ms loop clock, possibly a coarse tick behind: 5 ms below
        assert 4.995 <= time.monotonic() - t0 < 12
        s.close()
        assert d.ask(recipient="user@example.com") == "DUNNO"


LDAP_CACHE = """
[cache]
local_size = 1000
local_ttl = 600
positive_ttl = 600
negative_ttl = 600

[harvest]
enabled = no
"""


@pytest.mark.skipif(not os.path.exists("/usr/sbin/slapd"), reason="slapd not installed")
def test_flush_makes_a_new_directory_entry_visible():
    import slapd as slapd_helper
    sl = slapd_helper.Slapd(users=3)
    sl.start()
    try:
        d = Daemon(conf=sl.policyd_conf(timeout=2, extra=LDAP_CACHE))
        try:
            d.start()
            wait_for(lambda: d.ask(recipient="alice@example.com") == "DUNNO",
                     timeout=15, what="policyd to answer from LDAP")
            assert d.ask(recipient="dave@example.com") == UNKNOWN
            ldif = ("dn: uid=dave,%s\nobjectClass: inetOrgPerson\nuid: dave\n"
                    "cn: dave\nsn: dave\nmail: dave@example.com\n" % slapd_helper.PEOPLE)
            r = subprocess.run(["ldapadd", "-x", "-H", sl.uri, "-D", slapd_helper.ROOT_DN,
                                "-w", slapd_helper.ROOT_PW], input=ldif,
                               capture_output=True, text=True, timeout=30)
            assert r.returncode == 0, r.stderr
            # the cached "unknown" still answers: that is what flush is for
            assert d.ask(recipient="dave@example.com") == UNKNOWN
            d.ctl("flush", "alice@example.com")
            assert d.ask(recipient="dave@example.com") == UNKNOWN
            r = d.ctl("flush", "dave@example.com")
            assert r.stdout.startswith("flushed")
            assert d.ask(recipient="dave@example.com") == "DUNNO"
        finally:
            d.cleanup()
    finally:
        sl.cleanup()


def test_reload_keeps_a_request_waiting_in_the_tarpit():
    with Daemon(TARPIT_1_5S) as d:
        answers = []
        t, _, _ = hold_in_tarpit(d, "203.0.113.9", answers)
        try:
            assert d.ctl("reload").stdout == "configuration reloaded\n"
        finally:
            joined(t)
        assert answers == [UNKNOWN]
        s = stats_json(d)
        assert s["harvest"]["delayed_now"] == 0
        assert s["requests"]["by_verdict"]["delayed"] == 1
        assert s["reloads"]["done"] == 1

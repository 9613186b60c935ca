"""The LDAP directory backend against a real slapd (tests/pylib/slapd.py).

Each test starts its own slapd (slapadd of ~3000 generated entries into a
temp mdb, on a free loopback port) and its own policyd with backend = ldap,
and stops both.  Replies are asserted exactly.  Searches are counted twice:
in slapd's own log (-d stats: one SRCH line per search) and in the
daemon's counters (policyctl stats --json).
"""
import json
import os
import re
import resource
import selectors
import socket
import subprocess
import time

import pytest

import slapd as slapd_helper
from harness import POLICYD, Daemon, free_port, request, wait_for

if not os.path.exists(slapd_helper.SLAPD):
    pytest.skip("slapd not installed", allow_module_level=True)

DUNNO = "DUNNO"
UNKNOWN = "550 5.1.1 User unknown"
TEMPFAIL = "451 4.3.0 Directory unavailable"
TIMEOUT = 1.0       # [ldap] timeout used by these tests, seconds

CONF = """
[server]
listen = {listen}
control = unix:{control}
idle_timeout = 60
allow_root = yes
max_connections = 4000

[directory]
backend = ldap
domains = example.com
recipient_delimiter = +

[actions]
unknown = %(unknown)s
tempfail = %(tempfail)s

[ldap]
uri = %(uri)s
bind_dn = %(bind_dn)s
bind_pw = %(bind_pw)s
base = dc=example,dc=com
scope = sub
filter = (|(mail=%%s)(mailLocalAddress=%%s))
timeout = %(timeout)s
connections = %(connections)d

[cache]
local_size = 0
positive_ttl = 0
negative_ttl = 0

[harvest]
enabled = no
"""


def ldap_conf(sl, bind_pw=slapd_helper.BIND_PW, uri=None, timeout=TIMEOUT,
              connections=2, extra=""):
    return CONF % {
        "unknown": UNKNOWN, "tempfail": TEMPFAIL,
        "uri": uri or sl.uri, "bind_dn": slapd_helper.BIND_DN,
        "bind_pw": bind_pw, "timeout": timeout, "connections": connections,
    } + extra


def start_daemon(sl, **kw):
    d = Daemon(conf=ldap_conf(sl, **kw))
    d.start()
    return d


def wait_ready(d, addr="alice@example.com", timeout=15.0):
    """Until the pool has bound: the first answers after start may be
    tempfail while no connection is up yet."""
    wait_for(lambda: d.ask(recipient=addr) == DUNNO, timeout=timeout,
             what="policyd to answer from LDAP")


def stats(d):
    return json.loads(d.ctl("stats", "--json").stdout)["directory"]


@pytest.fixture
def sl():
    s = slapd_helper.Slapd(users=3000)
    s.start()
    yield s
    s.cleanup()


@pytest.fixture
def daemon(sl):
    d = start_daemon(sl)
    wait_ready(d)
    yield d
    d.cleanup()


def timed_ask(d, **attrs):
    t0 = time.monotonic()
    a = d.ask(**attrs)
    return a, time.monotonic() - t0


def ldap_sockets(pid, port):
    """States of pid's TCP sockets whose peer is 127.0.0.1:port."""
    inodes = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        m = re.match(r"socket:\[(\d+)\]", link)
        if m:
            inodes.add(m.group(1))
    states = []
    with open("/proc/%d/net/tcp" % pid) as f:
        next(f)
        for line in f:
            parts = line.split()
            rport = int(parts[2].split(":")[1], 16)
            if rport == port and parts[9] in inodes:
                states.append(parts[3])     # 01 ESTABLISHED, 08 CLOSE_WAIT
    return states


# ---- answers ------------------------------------------------------------

def test_found_notfound_alias_case_extension(sl, daemon):
    d = daemon
    cases = [
        ("alice@example.com", DUNNO),                    # found
        ("<alice@example.com>", DUNNO),
        ("user01234@example.com", DUNNO),
        ("nobody@example.com", UNKNOWN),                 # not found
        ("user99999@example.com", UNKNOWN),
        ("carol.alias@example.com", DUNNO),              # alias attribute
        ("alias00020@example.com", DUNNO),
        ("alias00021@example.com", UNKNOWN),             # only every tenth
        ("ALICE@EXAMPLE.COM", DUNNO),                    # case
        ("bob.smith@example.com", DUNNO),
        ("Bob.Smith@Example.Com", DUNNO),
        ("alice+newsletter@example.com", DUNNO),         # +extension
        ("carol.alias+x@example.com", DUNNO),
        ("nobody+alice@example.com", UNKNOWN),
        ("alice@example.org", DUNNO),                    # not our domain
    ]
    got = [(r, d.ask(recipient=r)) for r, _ in cases]
    assert got == cases
    # slapd saw the normalized, escaped filter
    assert sl.searches('filter="(|(mail=alice@example.com)'
                       '(mailLocalAddress=alice@example.com))"') >= 1


def test_filter_metacharacters_never_match(sl, daemon):
    d = daemon
    evil = [
        "*@example.com",
        '"*"@example.com',
        '"*)(mail=*"@example.com',
        '"a*"@example.com',               # would be a substring match on a*
        '"user0*"@example.com',
        '"(mail=*)"@example.com',
        '"\\\\*"@example.com',            # a backslash, then *
        '"al\\\\2aice"@example.com',      # looks like an escape: \2a
        "user0000*@example.com",
    ]
    before = sl.searches()
    got = [(r, d.ask(recipient=r)) for r in evil]
    assert got == [(r, UNKNOWN) for r in evil]
    assert sl.searches() - before == len(evil)
    # no search reached slapd with a wildcard or an injected clause: slapd
    # logs filters in its normalized form, escapes as \2A \28 \29 \5C
    srch = [l for l in sl.read_log().splitlines() if " SRCH base=" in l]
    for line in srch:
        filt = line.split("filter=", 1)[1]
        assert "=*" not in filt and "*)" not in filt, line
        assert filt.count("(") == 3, line      # (|(mail=..)(mailLocalAddress=..))
    assert any("\\2A" in l or "\\2a" in l for l in srch)
    # and a real address still answers
    assert d.ask(recipient="alice@example.com") == DUNNO


# ---- failures -----------------------------------------------------------

def test_bad_password_tempfail_logged_once(sl):
    d = start_daemon(sl, bind_pw="wrong-password")
    try:
        for i in range(5):
            assert d.ask(recipient="alice@example.com") == TEMPFAIL
            assert d.ask(recipient="nobody%d@example.com" % i) == TEMPFAIL
        time.sleep(2.0)         # several reconnect attempts (100 ms doubling)
        assert d.ask(recipient="alice@example.com") == TEMPFAIL
        assert d.proc.poll() is None
        log = d.read_log()
        assert log.count("Invalid credentials") == 1, log
        assert "bind as cn=policyd,dc=example,dc=com: Invalid credentials" in log
        # slapd saw several binds, but no search ran on an unbound handle
        assert sl.read_log().count("RESULT tag=97 err=49") >= 3
        assert sl.searches() == 0
    finally:
        d.cleanup()


def test_fail_open(sl):
    d = Daemon(conf=ldap_conf(sl, bind_pw="wrong-password",
                              extra="").replace("[ldap]\n", "[ldap]\nfail_open = yes\n"))
    d.start()
    try:
        assert d.ask(recipient="nobody@example.com") == DUNNO
    finally:
        d.cleanup()


@pytest.mark.timing
def test_slapd_stopped_then_restarted(sl, daemon):
    d = daemon
    pid = d.proc.pid
    assert d.ask(recipient="user00001@example.com") == DUNNO
    assert "01" in ldap_sockets(pid, sl.port)
    sl.stop()
    for i in range(3):
        a, dt = timed_ask(d, recipient="user%05d@example.com" % (i + 2))
        assert a == TEMPFAIL
        assert dt < TIMEOUT + 1.0, dt
    # no connection left hanging to the dead server
    wait_for(lambda: not [s for s in ldap_sockets(pid, sl.port) if s in ("01", "08")],
             timeout=TIMEOUT + 1.0, what="connections to slapd to close")
    sl.start()          # same port
    wait_ready(d, "user00005@example.com", timeout=15.0)
    assert d.ask(recipient="nobody@example.com") == UNKNOWN
    assert d.ask(recipient="carol.alias@example.com") == DUNNO
    assert d.proc.pid == pid and d.proc.poll() is None


@pytest.mark.timing
def test_slapd_frozen_tempfail_within_timeout(sl, daemon):
    d = daemon
    assert d.ask(recipient="user00100@example.com") == DUNNO
    sl.freeze()
    try:
        # several at once, on separate connections: all within the timeout
        clients = [d.client() for _ in range(5)]
        t0 = time.monotonic()
        for i, c in enumerate(clients):
            c.send_raw(request(recipient="user%05d@example.com" % (200 + i)))
        replies = [c.read_reply() for c in clients]
        dt = time.monotonic() - t0
        for c in clients:
            c.close()
        assert replies == [b"action=" + TEMPFAIL.encode() + b"\n\n"] * 5
        assert dt < TIMEOUT + 0.5, dt
        # later requests do not queue behind the frozen server either
        a, dt = timed_ask(d, recipient="user00300@example.com")
        assert a == TEMPFAIL and dt < TIMEOUT + 0.5, dt
        assert stats(d)["timeouts"] >= 1
    finally:
        sl.thaw()
    wait_ready(d, "user00400@example.com", timeout=15.0)
    assert d.ask(recipient="nobody@example.com") == UNKNOWN


def test_uri_failover(sl):
    dead = "ldap://127.0.0.1:%d/" % free_port()
    d = start_daemon(sl, uri=dead + " " + sl.uri)
    try:
        wait_ready(d)
        assert d.ask(recipient="nobody@example.com") == UNKNOWN
        assert d.ask(recipient="carol.alias@example.com") == DUNNO
    finally:
        d.cleanup()


def test_coalescing_1000_requests_10_addresses(sl):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2600:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    # timeout long enough to hold every request while slapd is frozen
    d = start_daemon(sl, timeout=8)
    try:
        wait_ready(d)
        s0 = stats(d)
        before = sl.searches()
        addrs = ["user%05d@example.com" % (i * 7) for i in range(9)] + ["nobody@example.com"]
        # freeze slapd so that every request is in flight at once
        sl.freeze()
        socks = []
        try:
            for i in range(1000):
                s = socket.create_connection((d.host, d.port), timeout=20)
                s.sendall(request(recipient=addrs[i % 10],
                                  client_address="192.0.2.%d" % (i % 250 + 1)))
                socks.append(s)
            time.sleep(0.5)
        finally:
            sl.thaw()
        sel = selectors.DefaultSelector()
        bufs = {}
        for s in socks:
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ)
            bufs[s] = b""
        deadline = time.monotonic() + 20
        pending = len(socks)
        while pending and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=1):
                data = key.fileobj.recv(4096)
                bufs[key.fileobj] += data
                if not data or b"\n\n" in bufs[key.fileobj]:
                    sel.unregister(key.fileobj)
                    pending -= 1
        replies = [bufs[s] for s in socks]
        for s in socks:
            s.close()
        want = [b"action=%s\n\n" % (b"DUNNO" if i % 10 < 9 else UNKNOWN.encode())
                for i in range(1000)]
        assert replies == want
        searches = sl.searches() - before
        s1 = stats(d)
        assert searches <= 10, searches
        assert s1["queries"] - s0["queries"] <= 10
        assert s1["coalesced"] - s0["coalesced"] >= 990
    finally:
        d.cleanup()


def test_starttls(tmp_path):
    s = slapd_helper.Slapd(users=100, tls=True)
    s.start()
    try:
        tls = "starttls = yes\ntls_ca_file = %s\n" % s.ca_file
        d = Daemon(conf=ldap_conf(s).replace("[ldap]\n", "[ldap]\n" + tls))
        d.start()
        try:
            wait_ready(d)
            assert d.ask(recipient="carol.alias@example.com") == DUNNO
            assert d.ask(recipient="nobody@example.com") == UNKNOWN
            assert "op=0 EXT oid=1.3.6.1.4.1.1466.20037" in s.read_log()
        finally:
            d.cleanup()
        # a CA that did not sign slapd's certificate: refused, tempfail
        searched = s.searches()
        other = slapd_helper.make_cert(str(tmp_path), "127.0.0.1", name="other")
        tls = "starttls = yes\ntls_ca_file = %s\n" % other
        d = Daemon(conf=ldap_conf(s).replace("[ldap]\n", "[ldap]\n" + tls))
        d.start()
        try:
            d.wait_log("TLS handshake: Connect error")
            assert d.ask(recipient="alice@example.com") == TEMPFAIL
            assert s.searches() == searched     # nothing sent in clear
        finally:
            d.cleanup()
    finally:
        s.cleanup()


# ---- continuation references (Active Directory forests) ------------------

CHILD_URL = "ldap://127.0.0.1:9/ou=child,dc=example,dc=com"


@pytest.mark.parametrize("mode, answer", [("ignore", UNKNOWN), ("tempfail", TEMPFAIL)])
def test_continuation_reference(mode, answer):
    """A referral object inside base (a child domain, or AD's DNS
    partitions): slapd answers every subtree search with a reference to it.
    It is not followed; its URL is logged once, with the base; a user that
    may live behind it is unknown with ignore, tempfail with tempfail."""
    s = slapd_helper.Slapd(users=10, referrals=[("child", CHILD_URL)])
    s.start()
    try:
        d = Daemon(conf=ldap_conf(s).replace("[ldap]\n", "[ldap]\nreferrals = %s\n" % mode))
        d.start()
        try:
            wait_ready(d)       # found, with the reference beside the entry
            assert d.ask(recipient="someone@example.com") == answer
            assert d.ask(recipient="other@example.com") == answer
            assert d.ask(recipient="bob.smith@example.com") == DUNNO
            # logged by the first search (wait_ready's), and only by it
            refs = [l for l in d.read_log().splitlines() if "returned a reference" in l]
            assert len(refs) == 1, refs
            assert refs[0].endswith(
                'warning: ldap: search in "dc=example,dc=com" returned a reference to '
                "%s??sub, not followed: lookups that find no entry answer %s (first "
                "seen for (|(mail=alice@example.com)(mailLocalAddress=alice@example.com)))"
                % (CHILD_URL, "tempfail" if mode == "tempfail"
                   else "unknown ([ldap] referrals = ignore)")), refs
        finally:
            d.cleanup()
    finally:
        s.cleanup()


# ---- -t and -T ----------------------------------------------------------

def test_config_check_does_not_contact_server(sl, tmp_path):
    conf = tmp_path / "policyd.conf"
    conf.write_text(ldap_conf(sl).replace("{listen}", "inet:127.0.0.1:%d" % free_port())
                    .replace("control = unix:{control}\n", ""))
    # slapd's own start-up probe (a connect) is logged a moment later
    wait_for(lambda: "closed" in sl.read_log(), what="slapd to log the probe")
    time.sleep(0.2)
    accepts = sl.read_log().count("ACCEPT from")
    r = subprocess.run([POLICYD, "-c", str(conf), "-t"], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    time.sleep(0.3)
    assert sl.read_log().count("ACCEPT from") == accepts


def test_directory_test_option(sl, tmp_path):
    conf = tmp_path / "policyd.conf"
    conf.write_text(ldap_conf(sl).replace("{listen}", "inet:127.0.0.1:%d" % free_port())
                    .replace("control = unix:{control}\n", ""))
    r = subprocess.run([POLICYD, "-c", str(conf), "-T", "carol.alias@example.com"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "bound as cn=policyd,dc=example,dc=com" in r.stdout
    assert r.stdout.rstrip().endswith("found") or ": found (" in r.stdout, r.stdout
    r = subprocess.run([POLICYD, "-c", str(conf), "-T", "nobody@example.com"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and ": not found (" in r.stdout, r.stdout
    bad = tmp_path / "bad.conf"
    bad.write_text(conf.read_text().replace(slapd_helper.BIND_PW, "wrong"))
    r = subprocess.run([POLICYD, "-c", str(bad), "-T", "alice@example.com"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert "Invalid credentials" in r.stdout + r.stderr

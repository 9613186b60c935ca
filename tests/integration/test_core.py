"""The core daemon through its sockets: protocol, decisions, limits,
listeners, signals, config check.  File backend, no other servers."""
import json
import os
import re
import signal
import socket
import stat
import subprocess
import threading
import time

import pytest

from harness import (POLICYD, Daemon, PolicyClient, check_long_pipeline, free_port,
                     request, wait_for)


@pytest.fixture
def daemon():
    d = Daemon()
    d.start()
    yield d
    d.__exit__(None, None, None)


# ---- decisions ----

@pytest.mark.parametrize("rcpt,action", [
    ("user@example.com", "DUNNO"),
    ("<user@example.com>", "DUNNO"),
    ("USER@EXAMPLE.COM", "DUNNO"),                 # ignore_case = yes (default)
    ("bob.smith@example.com", "DUNNO"),            # file entry had capitals
    ("user+newsletter@example.com", "DUNNO"),      # extension stripped
    ('"user"@example.com', "DUNNO"),               # needless quotes
    ("nobody@example.com", "550 5.1.1 User unknown"),
    ("nobody+x@example.com", "550 5.1.1 User unknown"),
    ('"no body"@example.com', "550 5.1.1 User unknown"),
    ("anyone@example.org", "DUNNO"),               # @example.org catch-all
    ("someone@elsewhere.net", "DUNNO"),            # not our domain
    ("", "DUNNO"),                                 # null recipient
    ("<>", "DUNNO"),
    ("postmaster", "DUNNO"),                       # unqualified
])
def test_rcpt_decisions(daemon, rcpt, action):
    assert daemon.ask(recipient=rcpt) == action


@pytest.mark.parametrize("state", ["CONNECT", "EHLO", "HELO", "MAIL", "DATA",
                                   "END-OF-MESSAGE", "VRFY", "ETRN"])
def test_other_states_get_dunno(daemon, state):
    assert daemon.ask(protocol_state=state, recipient="nobody@example.com") == "DUNNO"


def test_exact_reply_bytes(daemon):
    with daemon.client() as c:
        c.send_raw(request(recipient="nobody@example.com"))
        assert c.read_reply() == b"action=550 5.1.1 User unknown\n\n"


def test_custom_unknown_action():
    d = Daemon()
    with open(d.conf) as f:
        text = f.read().replace("unknown = 550 5.1.1 User unknown",
                                "unknown = 550 5.1.1 Mailbox does not exist here")
    with open(d.conf, "w") as f:
        f.write(text)
    with d:
        assert d.ask(recipient="nobody@example.com") == "550 5.1.1 Mailbox does not exist here"


def test_many_requests_on_one_connection(daemon):
    # many smtpd clients share one policy connection; each request comes
    # from its own /24 (the wide harvest level), so the harvest defence
    # stays out of this test; its 100 unknown recipients are below the
    # siege threshold (120 a minute)
    with daemon.client() as c:
        for i in range(200):
            rcpt = "user@example.com" if i % 2 else "ghost%d@example.com" % i
            want = "DUNNO" if i % 2 else "550 5.1.1 User unknown"
            assert c.ask(recipient=rcpt, client_address="10.1.%d.1" % i) == want


# ---- framing ----

def test_byte_by_byte(daemon):
    with daemon.client() as c:
        for b in request(recipient="nobody@example.com"):
            c.send_raw(bytes([b]))
        assert c.read_reply() == b"action=550 5.1.1 User unknown\n\n"


def test_crlf_line_ends(daemon):
    with daemon.client() as c:
        c.send_raw(request(recipient="user@example.com").replace(b"\n", b"\r\n"))
        assert c.read_reply() == b"action=DUNNO\n\n"


def test_pipelined_requests_keep_order(daemon):
    rcpts = ["nobody@example.com", "user@example.com", "x@elsewhere.net",
             "ghost@example.com", "alice@example.com"]
    want = [b"action=550 5.1.1 User unknown\n\n", b"action=DUNNO\n\n",
            b"action=DUNNO\n\n", b"action=550 5.1.1 User unknown\n\n",
            b"action=DUNNO\n\n"]
    with daemon.client() as c:
        c.send_raw(b"".join(request(recipient=r) for r in rcpts))
        assert [c.read_reply() for _ in rcpts] == want


def read_barrier(d):
    """Return once the daemon has read what was already sent to it: a
    control command is accepted in a turn of the loop that also sees every
    socket readable then, and read in a later one."""
    d.ctl("stats")


def test_split_across_writes(daemon):
    data = request(recipient="nobody@example.com") + request(recipient="user@example.com")
    with daemon.client() as c:
        c.send_raw(data[:37])
        read_barrier(daemon)
        c.send_raw(data[37:150])
        read_barrier(daemon)
        c.send_raw(data[150:])
        assert c.read_reply() == b"action=550 5.1.1 User unknown\n\n"
        assert c.read_reply() == b"action=DUNNO\n\n"


def test_unknown_and_repeated_attributes(daemon):
    raw = (b"request=smtpd_access_policy\nprotocol_state=RCPT\nfoo=bar\n"
           b"recipient=user@example.com\nrecipient=nobody@example.com\n"
           b"client_address=192.0.2.1\n\n")
    with daemon.client() as c:
        c.send_raw(raw)
        assert c.read_reply() == b"action=550 5.1.1 User unknown\n\n"


# ---- hostile input: closed without a reply, others unaffected ----

BAD_REQUESTS = {
    "no_equals": b"request=smtpd_access_policy\nthis line has no equals\n\n",
    "nul_byte": b"request=smtpd_access_policy\nrecipient=a\x00b@example.com\n\n",
    "wrong_type": b"request=something_else\nprotocol_state=RCPT\n\n",
    "no_type": b"protocol_state=RCPT\nrecipient=user@example.com\n\n",
    "empty_request": b"\n",
    "long_line": b"request=smtpd_access_policy\nrecipient=" + b"a" * 5000 + b"\n\n",
    "too_many_attrs": b"request=smtpd_access_policy\n" +
                      b"".join(b"x%d=1\n" % i for i in range(150)) + b"\n",
    "too_large": b"request=smtpd_access_policy\n" +
                 b"".join(b"x%d=%s\n" % (i, b"v" * 1000) for i in range(40)) + b"\n",
}

REASONS = {
    "no_equals": "malformed attribute line", "nul_byte": "NUL byte in request",
    "wrong_type": "not an smtpd_access_policy request",
    "no_type": "not an smtpd_access_policy request",
    "empty_request": "not an smtpd_access_policy request",
    "long_line": "line too long", "too_many_attrs": "too many attributes",
    "too_large": "request too large",
}


@pytest.mark.parametrize("name", sorted(BAD_REQUESTS))
def test_malformed_request_closes_connection(daemon, name):
    with daemon.client() as good, daemon.client() as bad:
        bad_port = bad.sock.getsockname()[1]
        assert good.ask(recipient="user@example.com") == "DUNNO"
        bad.send_raw(BAD_REQUESTS[name])
        assert bad.closed_by_peer(5.0)
        assert bad.buf == b""          # no reply at all
        # the other connection is still served
        assert good.ask(recipient="nobody@example.com") == "550 5.1.1 User unknown"
    daemon.wait_log("closing the connection without a reply")
    log = daemon.read_log()
    assert "127.0.0.1:%d: %s; closing" % (bad_port, REASONS[name]) in log


def test_endless_line_is_cut_off(daemon):
    """A peer that never sends a newline is closed once it passes the line
    limit (4096, the default): memory stays bounded."""
    with daemon.client() as c:
        port = c.sock.getsockname()[1]
        # a line twice the limit: small enough for the socket buffers, so
        # the close is what the daemon decided, whenever it got to read it
        c.send_raw(b"request=smtpd_access_policy\nrecipient=" + b"x" * 8192)
        assert c.closed_by_peer(10.0)
        assert c.buf == b""
    daemon.wait_log("127.0.0.1:%d: line too long; closing the connection "
                    "without a reply" % port)


def delayed_now(d):
    """Requests the daemon holds in the tarpit now (policyctl stats)."""
    return json.loads(d.ctl("stats", "--json").stdout)["harvest"]["delayed_now"]


def wait_delayed(d, n=1):
    """Wait until the daemon holds n requests in the tarpit: a request sent
    is not yet a request read."""
    wait_for(lambda: delayed_now(d) == n, 10, what="%d request(s) in the tarpit" % n)


def hold_in_tarpit(d, c):
    """With tarpit_after = 1: one unknown recipient from request()'s client
    (answered at once: a request is judged on the standing before it), then
    one on c that the tarpit holds; returns once the daemon holds it."""
    assert d.ask(recipient="nobody0@example.com") == "550 5.1.1 User unknown"
    c.send_raw(request(recipient="nobody@example.com"))
    wait_delayed(d)


def test_flood_while_busy_is_bounded():
    """Bytes sent while a request is being decided (here: tarpitted) are
    buffered only up to request_limit."""
    d = Daemon()
    with open(d.conf) as f:
        text = f.read()
    text = text.replace("[server]\n", "[server]\nrequest_limit = 8192\n", 1)
    text += "[harvest]\ntarpit_after = 1\ntarpit_delay = 60\ntarpit_max = 60\nblock_after = 0\n"
    with open(d.conf, "w") as f:
        f.write(text)
    with d:
        with d.client() as c:
            port = c.sock.getsockname()[1]
            hold_in_tarpit(d, c)                                  # held 60 s
            # 9 lines of 1003 bytes: past 8192, within the socket buffers
            c.send_raw((b"x=" + b"y" * 1000 + b"\n") * 9)
            assert c.closed_by_peer(10.0)
            assert c.buf == b""            # the held request is never answered
        d.wait_log("127.0.0.1:%d: request too large; closing the connection "
                   "without a reply" % port)
        assert delayed_now(d) == 0


# ---- connection limits ----

def conf_with(d, **server):
    with open(d.conf) as f:
        text = f.read()
    lines = "".join("%s = %s\n" % kv for kv in server.items())
    text = text.replace("[server]\n", "[server]\n" + lines, 1)
    text = text.replace("idle_timeout = 60\n", "") if "idle_timeout" in server else text
    with open(d.conf, "w") as f:
        f.write(text)


def test_max_connections():
    d = Daemon()
    conf_with(d, max_connections=3)
    with d:
        # the harness's own readiness probe must be gone before we count
        wait_for(lambda: '"current":0' in d.ctl("stats", "--json").stdout.replace(" ", ""),
                 timeout=5, what="no connections")
        held = [d.client() for _ in range(3)]
        for c in held:
            assert c.ask(recipient="user@example.com") == "DUNNO"
        extra = d.client()
        assert extra.closed_by_peer(5.0)
        d.wait_log("max_connections")
        held[0].close()
        wait_for(lambda: _served(d), timeout=5, what="a free slot")
        for c in held[1:] + [extra]:
            c.close()


def _served(d):
    try:
        return d.ask(recipient="user@example.com") == "DUNNO"
    except (OSError, AssertionError):
        return False


@pytest.mark.timing
def test_idle_timeout():
    d = Daemon()
    conf_with(d, idle_timeout="0.5")
    with d:
        with d.client() as c:
            t0 = time.monotonic()       # before the last activity the daemon saw
            assert c.ask(recipient="user@example.com") == "DUNNO"
            assert c.closed_by_peer(5.0)
            # the loop's clock counts whole ms, and may be a coarse clock one
            # tick behind: 5 ms of slack below, none for the test's own delays
            assert 0.495 <= time.monotonic() - t0 < 3.0
        d.wait_log("idle for 0.5s ([server] idle_timeout), closing")


@pytest.mark.timing
def test_idle_timeout_spares_active_connection():
    """Requests every 0.2 s for 1.5 idle_timeouts keep the connection."""
    d = Daemon()
    conf_with(d, idle_timeout="2")
    with d:
        with d.client() as c:
            t0 = time.monotonic()
            while time.monotonic() - t0 < 3:
                assert c.ask(recipient="user@example.com") == "DUNNO"
                time.sleep(0.2)     # the pace of the requests, not a wait


# ---- listeners ----

def test_ipv6_listener():
    with Daemon(host="::1") as d:
        assert d.ask(recipient="nobody@example.com") == "550 5.1.1 User unknown"


def test_unix_listener_mode_stale_and_removal():
    d = Daemon()
    path = os.path.join(d.dir, "policy.sock")
    # a stale socket file left by an earlier run
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()
    with open(d.conf) as f:
        text = f.read()
    text = text.replace("listen = ", "listen = unix:%s " % path, 1)
    text = text.replace("[server]\n", "[server]\nsocket_mode = 0600\n", 1)
    with open(d.conf, "w") as f:
        f.write(text)
    with d:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        with PolicyClient.unix(path) as c:
            assert c.ask(recipient="nobody@example.com") == "550 5.1.1 User unknown"
        assert d.ask(recipient="user@example.com") == "DUNNO"   # inet too
        assert d.stop() == 0
        assert not os.path.exists(path)


def test_unix_listener_refuses_to_replace_regular_file():
    d = Daemon()
    path = os.path.join(d.dir, "not-a-socket")
    with open(path, "w") as f:
        f.write("precious\n")
    with open(d.conf) as f:
        text = f.read().replace("listen = ", "listen = unix:%s " % path, 1)
    with open(d.conf, "w") as f:
        f.write(text)
    try:
        d.start(wait=False)
        assert d.proc.wait(15) == 1
        assert "policyd: error: %s: exists and is not a socket\n" % path in d.read_log()
        # the file is left exactly as it was
        assert stat.S_ISREG(os.lstat(path).st_mode)
        with open(path) as f:
            assert f.read() == "precious\n"
    finally:
        d.cleanup()


# ---- signals ----

def test_sighup_reloads_recipients(daemon):
    assert daemon.ask(recipient="newbie@example.com") == "550 5.1.1 User unknown"
    with open(os.path.join(daemon.dir, "recipients"), "a") as f:
        f.write("newbie@example.com\n")
    with daemon.client() as held:            # a connection open across the reload
        assert held.ask(recipient="user@example.com") == "DUNNO"
        daemon.signal(signal.SIGHUP)
        daemon.wait_log("reloaded")
        assert held.ask(recipient="newbie@example.com") == "DUNNO"
    assert daemon.ask(recipient="newbie@example.com") == "DUNNO"


def test_sighup_with_broken_file_keeps_old_table(daemon):
    with open(os.path.join(daemon.dir, "recipients"), "a") as f:
        f.write("this is not an address\n")
    daemon.signal(signal.SIGHUP)
    daemon.wait_log("reload refused")
    assert "recipients:6:" in daemon.read_log()
    assert daemon.ask(recipient="user@example.com") == "DUNNO"
    assert daemon.ask(recipient="nobody@example.com") == "550 5.1.1 User unknown"


def test_sighup_with_unreadable_file_keeps_old_table(daemon):
    os.unlink(os.path.join(daemon.dir, "recipients"))
    daemon.signal(signal.SIGHUP)
    daemon.wait_log("reload refused")
    assert "cannot open" in daemon.read_log()
    assert daemon.ask(recipient="alice@example.com") == "DUNNO"


def test_sigterm_answers_in_flight_then_exits_zero():
    d = Daemon()
    with open(d.conf, "a") as f:
        f.write("[harvest]\ntarpit_after = 1\ntarpit_delay = 3\ntarpit_max = 3\n"
                "block_after = 0\n")
    with d:
        with d.client() as c, d.client() as idle:
            assert idle.ask(recipient="user@example.com") == "DUNNO"
            hold_in_tarpit(d, c)                                    # held 3 s
            d.signal(signal.SIGTERM)
            assert idle.closed_by_peer(10.0)                         # idle: closed
            assert c.read_reply() == b"action=550 5.1.1 User unknown\n\n"
            assert c.closed_by_peer(10.0)
        # decided after the SIGTERM: it really was in flight.  Decision
        # lines are written behind the answers: read the log once the
        # daemon has exited (and flushed it)
        assert d.proc.wait(10) == 0
        log = d.read_log()
        assert log.index("SIGTERM: stopping; answering the requests in flight") < \
            log.index("rcpt=<nobody@example.com> verdict=unknown")
        assert not _listening(d)


@pytest.mark.timing
def test_sigterm_bounded_by_shutdown_timeout():
    d = Daemon()
    with open(d.conf, "a") as f:
        f.write("[harvest]\ntarpit_after = 1\ntarpit_delay = 20\ntarpit_max = 20\n"
                "block_after = 0\n")
    conf_with(d, shutdown_timeout="0.5")
    with d:
        with d.client() as c:
            hold_in_tarpit(d, c)                                    # held 20 s
            t0 = time.monotonic()
            d.signal(signal.SIGTERM)
            assert d.proc.wait(10) == 0
            assert time.monotonic() - t0 < 3
            assert c.closed_by_peer(2.0)


def _listening(d):
    try:
        socket.create_connection((d.host, d.port), timeout=0.5).close()
        return True
    except OSError:
        return False


# ---- logging ----

def test_decision_log_line(daemon):
    assert daemon.ask(recipient="nobody@example.com", queue_id="4ABCD1234",
                      client_address="198.51.100.7") == "550 5.1.1 User unknown"
    daemon.wait_log("4ABCD1234:")
    lines = [l for l in daemon.read_log().splitlines() if "4ABCD1234:" in l]
    assert len(lines) == 1, lines
    assert re.fullmatch(r"\S+ policyd: info: 4ABCD1234: client=198\.51\.100\.7 "
                        r"rcpt=<nobody@example\.com> verdict=unknown "
                        r"delay=0\.000s elapsed=\d+us action=\"550 5\.1\.1 User unknown\"",
                        lines[0]), lines[0]


# ---- command line ----

def run(*args):
    return subprocess.run([POLICYD] + list(args), capture_output=True, text=True,
                          timeout=20)


def test_version_and_help():
    r = run("-V")
    assert r.returncode == 0 and r.stdout.startswith("policyd ")
    r = run("-h")
    assert r.returncode == 0 and "-c FILE" in r.stdout
    assert run("-x").returncode == 2


def test_check_config_ok():
    d = Daemon()
    r = run("-c", d.conf, "-t")
    assert r.returncode == 0, r.stderr
    assert "configuration OK" in r.stdout
    d.cleanup()


def test_check_config_names_file_line_key():
    d = Daemon()
    with open(d.conf, "a") as f:
        f.write("[server]\nmax_connections = lots\n")
    r = run("-c", d.conf, "-t")
    assert r.returncode == 1
    lineno = len(open(d.conf).read().splitlines())
    assert "%s:%d: [server] max_connections:" % (d.conf, lineno) in r.stderr
    d.cleanup()


def test_check_config_unknown_key():
    d = Daemon()
    with open(d.conf, "a") as f:
        f.write("[directory]\nbogus_key = 1\n")
    r = run("-c", d.conf, "-t")
    assert r.returncode == 1
    assert "[directory] bogus_key" in r.stderr
    d.cleanup()


def test_check_config_missing_file():
    r = run("-c", "/nonexistent/policyd.conf", "-t")
    assert r.returncode == 1
    assert "/nonexistent/policyd.conf" in r.stderr


def test_test_directory_file_backend():
    d = Daemon()
    r = run("-c", d.conf, "-T", "user@example.com")
    assert r.returncode == 0, r.stderr
    assert "user@example.com: found" in r.stdout
    r = run("-c", d.conf, "-T", "nobody@example.com")
    assert "nobody@example.com: not found" in r.stdout
    d.cleanup()


def test_refuses_root_without_user():
    if os.geteuid() != 0:
        pytest.skip("needs root")
    d = Daemon()
    with open(d.conf) as f:
        text = f.read().replace("allow_root = yes\n", "")
    with open(d.conf, "w") as f:
        f.write(text)
    with pytest.raises(RuntimeError, match="refusing to serve as root"):
        d.start()
    d.cleanup()


# ---- a peer that does not read its replies ----

def _rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for %d" % pid)


def _current_connections(d):
    return '"current":1,' in d.ctl("stats", "--json").stdout.replace(" ", "")


def test_peer_that_stops_reading_is_closed():
    """A peer that pipelines requests and never reads its replies: once its
    socket is full, policyd stops reading from it (what it sends stays in the
    kernel, not in policyd's memory: at most request_limit + one reply) and
    closes it when its pending reply has not left for idle_timeout.  Another
    client is served all along."""
    d = Daemon(extra="[harvest]\nenabled = no\n")
    conf_with(d, idle_timeout="1", log_decisions="no")
    with d, d.client() as other:
        assert other.ask(recipient="user@example.com") == "DUNNO"
        rss0 = _rss_kib(d.proc.pid)
        stuck = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)    # fills soon
        stuck.connect(("127.0.0.1", d.port))
        want = ("127.0.0.1:%d: does not read its replies: none sent for 1.0s "
                "([server] idle_timeout), closing" % stuck.getsockname()[1])
        # short requests, longer replies: the socket fills after some 100,000
        batch = b"request=smtpd_access_policy\nrecipient=nobody@example.com\n\n" * 1000
        ended = []

        def pipeline():
            try:
                while True:
                    stuck.sendall(batch)
            except Exception as e:      # noqa: BLE001 - checked below, not left to pytest
                ended.append(e)
        t = threading.Thread(target=pipeline, daemon=True)
        t.start()
        try:
            rss_max = rss0
            deadline = time.monotonic() + 30
            while want not in d.read_log():
                assert time.monotonic() < deadline, d.read_log()[-3000:]
                assert other.ask(recipient="user@example.com") == "DUNNO"
                rss_max = max(rss_max, _rss_kib(d.proc.pid))
            t.join(30)
            assert not t.is_alive(), "policyd never closed the stuck connection"
        finally:
            # the sender must not outlive the test: after a failure the
            # shutdown wakes it
            if t.is_alive():
                try:
                    stuck.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                t.join(10)
            stuck.close()
        assert ended and isinstance(ended[0], (ConnectionResetError, BrokenPipeError)), ended
        assert "request too large" not in d.read_log()
        assert rss_max - rss0 < 2048, (rss0, rss_max)
        assert other.ask(recipient="nobody@example.com") == "550 5.1.1 User unknown"
        wait_for(lambda: _current_connections(d), timeout=10, what="one connection left")


def test_long_pipeline_is_not_one_request():
    """Thousands of pipelined requests, read in 64 KiB gulps that end in the
    middle of a request: each is answered, in order; none is taken for an
    over-long request (request_limit is per request, not per read)."""
    with Daemon(extra="[harvest]\nenabled = no\n") as d:
        check_long_pipeline(d)


# ---- logging off the request path ----

def _spawn(d, stderr, env=None):
    """policyd on d's config with the given stderr (the harness gives a file)."""
    e = dict(os.environ)
    e.update(env or {})
    proc = subprocess.Popen([POLICYD, "-c", d.conf], stdout=subprocess.DEVNULL,
                            stderr=stderr, env=e)
    wait_for(lambda: proc.poll() is not None or _port_open(d.port), timeout=10,
             what="policyd to listen")
    assert proc.poll() is None, proc.returncode
    return proc


def _port_open(port):
    try:
        socket.create_connection(("127.0.0.1", port), 0.2).close()
        return True
    except OSError:
        return False


def test_blocked_stderr_costs_lines_not_answers():
    """stderr is a pipe nobody reads: answers keep coming (a line per
    decision is buffered, then dropped and counted, never waited for), and
    once the pipe is read again the count is logged, then every later line."""
    import fcntl
    d = Daemon()
    rfd, wfd = os.pipe()
    fcntl.fcntl(wfd, fcntl.F_SETPIPE_SZ, 4096)
    proc = _spawn(d, wfd)
    os.close(wfd)
    t = None        # the stderr reader, once started
    try:
        with d.client(timeout=5) as c:
            for i in range(2000):
                assert c.ask(recipient="user@example.com", queue_id="Q%d" % i) == "DUNNO"
        out = []
        failed = []     # what ended drain() early, if anything

        def drain():
            try:
                while True:
                    b = os.read(rfd, 65536)
                    if not b:
                        return
                    out.append(b)
            except Exception as e:      # noqa: BLE001 - checked below, not left to pytest
                failed.append(repr(e))
        t = threading.Thread(target=drain, daemon=True)
        t.start()
        # the retry timer writes what waited, then the count of what was lost
        wait_for(lambda: b"log lines dropped" in b"".join(out), timeout=10,
                 what="the dropped-lines count")
        assert d.ask(recipient="user@example.com", queue_id="QLAST") == "DUNNO"
        wait_for(lambda: b" QLAST: client=" in b"".join(out), timeout=10,
                 what="a line after the drops")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        t.join(10)
        assert not t.is_alive() and failed == [], failed
        text = b"".join(out).decode()
        m = re.search(r"Z policyd: warning: (\d+) log lines dropped: the log took them "
                      r"slower than they came\n", text)
        assert m and int(m.group(1)) > 0, text[-2000:]
        kept = len(re.findall(r": info: Q\d+: client=", text))
        assert kept + int(m.group(1)) == 2000, (kept, m.group(1))
        assert text.endswith("policyd: info: all connections closed; exiting\n"), text[-500:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        # policyd is gone: the reader is at EOF.  Join it before its fd is
        # closed (and maybe reused): it must not outlive the test.
        if t is not None:
            t.join(10)
        os.close(rfd)
        d.cleanup()


def test_syslog_lines_are_datagrams_to_the_log_socket():
    """log = syslog: facility mail, the ident and pid, one datagram per line,
    as syslog(3) would send them; warnings say so."""
    d = Daemon(extra="[harvest]\nenabled = no\n")
    conf_with(d, log="syslog")
    path = os.path.join(d.dir, "log.sock")
    sink = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sink.bind(path)
    sink.settimeout(10)
    proc = _spawn(d, subprocess.DEVNULL, {"POLICYD_SYSLOG_SOCKET": path})
    try:
        assert d.ask(recipient="nobody@example.com", queue_id="4ABCD1234",
                     client_address="198.51.100.7") == "550 5.1.1 User unknown"
        got = []
        while not any(b"4ABCD1234" in g for g in got):
            got.append(sink.recv(4096))
        stamp = r"[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d"
        # LOG_MAIL | LOG_WARNING = 20, LOG_MAIL | LOG_INFO = 22
        assert re.fullmatch(r"<20>%s policyd\[%d\]: warning: running as root "
                            r"\(\[server\] allow_root = yes\)" % (stamp, proc.pid),
                            got[0].decode()), got
        assert re.fullmatch(r"<22>%s policyd\[%d\]: 4ABCD1234: client=198\.51\.100\.7 "
                            r"rcpt=<nobody@example\.com> verdict=unknown "
                            r"delay=0\.000s elapsed=\d+us action=\"550 5\.1\.1 User unknown\""
                            % (stamp, proc.pid), got[-1].decode()), got
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        last = b""
        while b"exiting" not in last:
            last = sink.recv(4096)
        assert re.fullmatch(r"<22>%s policyd\[%d\]: all connections closed; exiting"
                            % (stamp, proc.pid), last.decode()), last
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sink.close()
        d.cleanup()

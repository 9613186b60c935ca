"""Redis reconnects against a server that accepts the handshake and drops.

A proxy or a broken server that completes AUTH, SELECT and SCRIPT LOAD and
then closes the connection must not be reconnected to every 100 ms, with
an up and a down line each time.  The stand-in here is a small RESP server
(a thread of this test) that answers exactly what the daemon's handshake
sends and closes the connection after the last SCRIPT LOAD (or at any
other command).  Over a fixed window it counts the connections, and the
daemon's up/down lines are counted in its log; both are bounded by the
backoff and log limits of backends/redis_conn.c.
"""
import socket
import threading
import time

import pytest

from harness import Daemon, free_port

UNKNOWN = "550 5.1.1 User unknown"
WINDOW = 6.0                    # seconds, from the first connection

# backends/store_redis_priv.h
BACKOFF_MIN_MS, BACKOFF_MAX_MS = 100, 5000
FLAP_LOG_MS = 30000


HANDSHAKE_SCRIPTS = 3      # incr, peek, merge: loaded by every handshake


def max_attempts(window_ms):
    """1 + the waits that fit in the window at their shortest (each is
    drawn from [backoff/2, backoff], the backoff doubling to its max)."""
    n, spent, backoff = 1, 0, BACKOFF_MIN_MS
    while spent + backoff // 2 <= window_ms:
        spent += backoff // 2
        n += 1
        backoff = min(backoff * 2, BACKOFF_MAX_MS)
    return n


class DroppingRedis:
    """Accepts, answers the handshake, drops.  accepts: monotonic times."""

    def __init__(self):
        self.port = free_port()
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", self.port))
        self.lsock.listen(64)
        self.accepts = []
        self.commands = []
        self.stopping = False
        self.errors = []        # what ended serve() early: close() reports it
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    @staticmethod
    def read_command(f):
        """One RESP array of bulk strings, as hiredis sends it; None at EOF."""
        line = f.readline()
        if not line.startswith(b"*"):
            return None
        args = []
        for _ in range(int(line[1:])):
            n = int(f.readline()[1:])
            args.append(f.read(n + 2)[:-2])
        return args

    def run(self):
        # an exception of its own, left to pytest, would fail whichever
        # test runs when the thread ends
        try:
            self.serve()
        except Exception as e:          # noqa: BLE001 - reported by close()
            self.errors.append(repr(e))

    def serve(self):
        while not self.stopping:
            try:
                conn, _ = self.lsock.accept()
            except OSError:
                return
            self.accepts.append(time.monotonic())
            with conn, conn.makefile("rb") as f:
                loads = 0
                while True:
                    cmd = self.read_command(f)
                    if cmd is None:
                        break
                    name = b" ".join(cmd[:2]).upper() if cmd[0].upper() == b"SCRIPT" \
                        else cmd[0].upper()
                    self.commands.append(name)
                    if name in (b"AUTH", b"SELECT"):
                        conn.sendall(b"+OK\r\n")
                    elif name == b"SCRIPT LOAD":
                        conn.sendall(b"$40\r\n" + b"%040d" % loads + b"\r\n")
                        loads += 1
                        if loads == HANDSHAKE_SCRIPTS:
                            break       # handshake done: drop
                    else:
                        break

    def close(self):
        """Stops the thread and joins it (it must not outlive the test);
        what ended it early, if anything, fails the test."""
        self.stopping = True
        try:
            self.lsock.shutdown(socket.SHUT_RDWR)   # wakes accept(); close() does not
        except OSError:
            pass
        self.lsock.close()
        self.thread.join(10)
        assert not self.thread.is_alive(), "the fake Redis did not stop"
        assert self.errors == [], self.errors


@pytest.mark.timing
def test_server_that_drops_after_handshake_costs_bounded_reconnects_and_lines():
    r = DroppingRedis()
    try:
        extra = ("\n[redis]\naddress = 127.0.0.1:%d\npassword = pw\ndb = 3\n"
                 "timeout = 0.25\nconnect_timeout = 0.5\n\n[harvest]\nenabled = no\n"
                 % r.port)
        with Daemon(extra) as d:
            deadline = time.monotonic() + 10
            while not r.accepts and time.monotonic() < deadline:
                assert d.ask(recipient="user@example.com") == "DUNNO"
            assert r.accepts, "the daemon never connected"
            end = r.accepts[0] + WINDOW
            i = 0
            # requests are answered all along, from the directory
            while time.monotonic() < end:
                assert d.ask(recipient="user@example.com") == "DUNNO"
                assert d.ask(recipient="nobody%d@example.com" % i) == UNKNOWN
                i += 1
            conns = len([t for t in r.accepts if t <= end])
            log = d.read_log()
        bound = max_attempts(WINDOW * 1000)
        assert 2 <= conns <= bound, (conns, bound)
        # it was the handshake that passed each time
        assert r.commands.count(b"AUTH") >= conns - 1
        ups, downs = log.count("redis: up:"), log.count("redis: down:")
        lines_bound = 1 + int(WINDOW * 1000 // FLAP_LOG_MS)
        assert 1 <= ups <= lines_bound and 1 <= downs <= lines_bound, log
        assert i > 0
    finally:
        r.close()

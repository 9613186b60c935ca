"""Private redis-server and Redis Sentinel set-ups for tests.

RedisServer: one redis-server on a free loopback port in a temp dir, with
no persistence; start/stop/kill (SIGKILL)/sigstop/sigcont/restart on the
same port.  Resp: a tiny RESP2 client in pure Python (redis-py is not
installed) so tests can look at keys directly.  SentinelSet: one master,
one replica and three sentinels (quorum 2) on free ports, tuned so a
failover after killing the master takes a few seconds.

Every process lives in a temp dir and is stopped by the test that started
it: use the objects as context managers or call cleanup().
"""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from harness import free_port, port_open, stop_process, wait_for

REDIS_SERVER = os.environ.get("REDIS_SERVER", "redis-server")
REDIS_SENTINEL = os.environ.get("REDIS_SENTINEL", "redis-sentinel")


class RespError(Exception):
    """An error reply (-ERR ...) from Redis."""


class Resp:
    """A minimal blocking RESP2 client: call(*args) -> the decoded reply.

    Bulk strings come back as bytes, integers as int, arrays as lists,
    nil as None; status replies as str; error replies raise RespError.
    """

    def __init__(self, host, port, timeout=5.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @staticmethod
    def encode(*args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            if isinstance(a, str):
                a = a.encode()
            elif isinstance(a, int):
                a = str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        return b"".join(out)

    def _fill(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _reply(self):
        line = self._line()
        t, rest = line[:1], line[1:]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            return RespError(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            self._fill(n + 2)
            data, self.buf = self.buf[:n], self.buf[n + 2:]
            return data
        if t == b"*":
            n = int(rest)
            if n < 0:
                return None
            return [self._reply() for _ in range(n)]
        raise ConnectionError("bad RESP line %r" % line)

    def call(self, *args):
        self.sock.sendall(self.encode(*args))
        r = self._reply()
        if isinstance(r, RespError):
            raise r
        return r

    def keys(self, pattern="*"):
        """Every key matching pattern (SCAN, as bytes, sorted)."""
        cursor, found = b"0", set()
        while True:
            cursor, batch = self.call("SCAN", cursor, "MATCH", pattern, "COUNT", 1000)
            found.update(batch)
            if cursor == b"0":
                return sorted(found)


def wait_for_key(r, pattern, value=None, timeout=10.0):
    """The one key matching pattern, once it exists (and holds value, when
    given): polled with a deadline.  The daemon's write-backs are fire and
    forget and leave after the answer, so a test that reads what an answer
    stored must wait for it.  More than one match is an error at once."""
    def found():
        ks = r.keys(pattern)
        assert len(ks) <= 1, ks
        if ks and (value is None or r.call("GET", ks[0]) == value):
            return ks[0]
        return None
    what = "key %s%s" % (pattern, "" if value is None else " = %r" % value)
    return wait_for(found, timeout, what=what)


def assert_pttl(r, key, ttl_ms, since):
    """key's PTTL is what a SET PX ttl_ms made no earlier than since (a
    time.monotonic() taken before the request that stored it) leaves now:
    exact bounds from the test's own clock, no tolerance that grows with a
    slow machine.  Redis rounds to the millisecond: 1 ms of slack."""
    pttl = r.call("PTTL", key)
    elapsed_ms = (time.monotonic() - since) * 1000
    assert ttl_ms - elapsed_ms - 1 <= pttl <= ttl_ms, (key, pttl, ttl_ms, elapsed_ms)
    return pttl


def resp_call(port, *args, host="127.0.0.1", timeout=5.0):
    """One command on a fresh connection."""
    with Resp(host, port, timeout) as r:
        return r.call(*args)


class RedisServer:
    """A private redis-server on 127.0.0.1:port (free port by default)."""

    def __init__(self, port=None, password=None, args=()):
        self.dir = tempfile.mkdtemp(prefix="policyd-redis-")
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.password = password
        self.args = list(args)
        self.proc = None
        self.log = os.path.join(self.dir, "redis.log")
        self.stopped = False        # SIGSTOPped

    def argv(self):
        a = [REDIS_SERVER, "--port", str(self.port), "--bind", self.host,
             "--save", "", "--appendonly", "no", "--dir", self.dir,
             "--logfile", self.log, "--daemonize", "no"]
        if self.password:
            a += ["--requirepass", self.password]
        return a + self.args

    def start(self, timeout=10.0):
        self.proc = subprocess.Popen(self.argv(), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_for(lambda: self.proc.poll() is not None or self.ping(),
                 timeout, what="redis-server to answer on %d" % self.port)
        if self.proc.poll() is not None:
            raise RuntimeError("redis-server exited %d: %s" % (
                self.proc.returncode, self.read_log()[-2000:]))
        return self

    def ping(self):
        if not port_open(self.host, self.port):
            return False
        try:
            with self.client(timeout=0.5) as r:
                return r.call("PING") == "PONG"
        except (OSError, RespError):
            return False

    def client(self, timeout=5.0):
        r = Resp(self.host, self.port, timeout)
        if self.password:
            r.call("AUTH", self.password)
        return r

    def call(self, *args):
        with self.client() as r:
            return r.call(*args)

    def keys(self, pattern="*"):
        with self.client() as r:
            return r.keys(pattern)

    def read_log(self):
        try:
            with open(self.log, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def _wait_exit(self, timeout=10.0):
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def stop(self):
        if self.proc is None:
            return
        if self.stopped:
            self.sigcont()
        self.proc.send_signal(signal.SIGTERM)
        self._wait_exit()

    def kill(self):
        """SIGKILL: no goodbye to clients, no shutdown work."""
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGKILL)
        self._wait_exit()
        self.stopped = False

    def sigstop(self):
        stop_process(self.proc.pid)
        self.stopped = True

    def sigcont(self):
        self.proc.send_signal(signal.SIGCONT)
        self.stopped = False

    def restart(self):
        """Start again on the same port (after stop or kill)."""
        if self.proc is not None:
            self.stop()
        # the port is ours again once nobody listens; TIME_WAIT does not
        # block a listener that sets SO_REUSEADDR, as redis-server does
        return self.start()

    def cleanup(self):
        if self.proc is not None:
            if self.stopped:
                self.sigcont()
            self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()


SENTINEL_CONF = """port {port}
bind 127.0.0.1
daemonize no
dir {dir}
logfile {dir}/sentinel-{port}.log
sentinel monitor {name} 127.0.0.1 {master_port} 2
sentinel down-after-milliseconds {name} {down_after}
sentinel failover-timeout {name} {failover_timeout}
sentinel parallel-syncs {name} 1
"""


class SentinelSet:
    """A master, one replica and three sentinels (quorum 2), all private.

    After start() the sentinels know the master, the replica and each
    other.  failover() kills the master (SIGKILL) and waits until the
    sentinels name the replica as the master.
    """

    def __init__(self, name="mymaster", down_after=1000, failover_timeout=6000):
        self.name = name
        self.down_after = down_after
        self.failover_timeout = failover_timeout
        self.dir = tempfile.mkdtemp(prefix="policyd-sentinel-")
        self.master = RedisServer()
        self.replica = None
        self.sentinel_ports = []
        self.sentinels = []

    def start(self, timeout=30.0):
        self.master.start()
        self.replica = RedisServer(args=["--replicaof", "127.0.0.1", str(self.master.port)])
        self.replica.start()
        wait_for(lambda: b"master_link_status:up" in self.replica.call("INFO", "replication"),
                 timeout, what="replica to sync")
        for _ in range(3):
            port = free_port()
            path = os.path.join(self.dir, "sentinel-%d.conf" % port)
            with open(path, "w") as f:
                f.write(SENTINEL_CONF.format(
                    port=port, dir=self.dir, name=self.name,
                    master_port=self.master.port, down_after=self.down_after,
                    failover_timeout=self.failover_timeout))
            p = subprocess.Popen([REDIS_SENTINEL, path], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
            self.sentinel_ports.append(port)
            self.sentinels.append(p)
        for port in self.sentinel_ports:
            wait_for(lambda: self._sentinel_ready(port), timeout,
                     what="sentinel %d to see the replica and its peers" % port)
        return self

    def _sentinel_ready(self, port):
        try:
            reps = resp_call(port, "SENTINEL", "replicas", self.name, timeout=1.0)
            peers = resp_call(port, "SENTINEL", "sentinels", self.name, timeout=1.0)
        except (OSError, RespError, ConnectionError):
            return False
        return len(reps) >= 1 and len(peers) >= 2

    def master_addr(self, port=None):
        r = resp_call(port or self.sentinel_ports[0], "SENTINEL",
                      "get-master-addr-by-name", self.name, timeout=1.0)
        return (r[0].decode(), int(r[1])) if r else None

    def sentinel_list(self):
        return " ".join("127.0.0.1:%d" % p for p in self.sentinel_ports)

    def failover(self, timeout=30.0):
        """Kill the master; wait until the replica is the master."""
        old = self.master
        old.kill()

        def promoted():
            try:
                return all(self.master_addr(p) == ("127.0.0.1", self.replica.port)
                           for p in self.sentinel_ports) and \
                    self.replica.call("ROLE")[0] == b"master"
            except (OSError, RespError, ConnectionError):
                return False
        wait_for(promoted, timeout, interval=0.1, what="sentinel failover")
        self.master, self.replica = self.replica, old
        return self.master

    def cleanup(self):
        for p in self.sentinels:
            if p.poll() is None:
                p.kill()
                p.wait()
        self.sentinels = []
        for s in (self.master, self.replica):
            if s is not None:
                s.cleanup()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        try:
            return self.start()
        except Exception:
            self.cleanup()
            raise

    def __exit__(self, *exc):
        self.cleanup()


def bench(seconds=3, conns=50):
    """Cache-hit (L1) and Redis-hit figures of the built policyd against a
    private redis-server, with build/bench/loadgen:

        python3 tests/pylib/redis.py [SECONDS [CONNECTIONS]]
    """
    import json
    from harness import BUILD, Daemon
    loadgen = os.path.abspath(os.path.join(BUILD, "bench", "loadgen"))
    recipients = "".join("user%d@example.com\n" % i for i in range(1000))
    with RedisServer() as r:
        for name, local_size in (("L1 hit", 100000), ("Redis hit (L1 off)", 0)):
            extra = """
[redis]
address = 127.0.0.1:%d
prefix = bench:

[cache]
local_size = %d

[harvest]
enabled = no
""" % (r.port, local_size)
            d = Daemon(extra, recipients=recipients)
            with open(d.conf) as f:
                conf = f.read().replace("[server]\n", "[server]\nlog_decisions = no\n", 1)
            with open(d.conf, "w") as f:
                f.write(conf)
            with d:
                wait_for(lambda: "redis: up" in d.read_log(), 10, what="redis up")
                argv = [loadgen, "-p", str(d.port), "-c", str(conns),
                        "--valid-ratio", "1", "--pattern", "user%d@example.com",
                        "--valid-range", "1000", "--client", "192.0.2.1"]
                # warm: every recipient once into Redis (and L1)
                subprocess.run(argv + ["-n", "5000"], check=True, capture_output=True)
                before = json.loads(d.ctl("stats", "--json").stdout)
                out = subprocess.run(argv + ["-d", str(seconds), "-w", "1"], check=True,
                                     capture_output=True, text=True).stdout
                after = json.loads(d.ctl("stats", "--json").stdout)
                line = out.strip().splitlines()[-1]
                hits = {k: after["cache"][k] - before["cache"][k] for k in after["cache"]}
                dq = after["directory"]["queries"] - before["directory"]["queries"]
                print("%-20s %s" % (name, line))
                print("%-20s during the run: %s, directory queries %d" % ("", hits, dq))


if __name__ == "__main__":
    import sys
    bench(*(int(a) for a in sys.argv[1:3]))

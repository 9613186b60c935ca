"""Test harness: start the built policyd on a free loopback port and talk
the policy protocol to it.

Every server a test starts lives in a temp dir and is stopped by the test
that started it (use the objects as context managers or call stop()).
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

BUILD = os.environ.get("POLICYD_BUILD") or os.path.join(
    os.path.dirname(__file__), "..", "..", "build")
POLICYD = os.path.abspath(os.path.join(BUILD, "policyd"))
POLICYCTL = os.path.abspath(os.path.join(BUILD, "policyctl"))
VALGRIND = os.environ.get("POLICYD_VALGRIND")  # "1": run the daemon under valgrind


def free_port(host="127.0.0.1"):
    """A port the kernel says is free now (bind to port 0)."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for(pred, timeout=10.0, interval=0.02, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise TimeoutError("timed out waiting for " + what)


def stop_process(pid, timeout=10.0):
    """SIGSTOP pid and wait until every thread of it is stopped: the signal
    takes a moment on a loaded machine, and a thread that is still running
    may answer one more request."""
    os.kill(pid, signal.SIGSTOP)

    def all_stopped():
        try:
            for tid in os.listdir("/proc/%d/task" % pid):
                with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
                if state not in ("T", "t"):
                    return False
            return True
        except FileNotFoundError:
            return True
    wait_for(all_stopped, timeout, interval=0.005, what="process %d to stop" % pid)


def port_open(host, port):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(fam, socket.SOCK_STREAM) as s:
            s.settimeout(0.2)
            s.connect((host, port))
            return True
    except OSError:
        return False


def request(**attrs):
    """A policy request as bytes; defaults are a typical RCPT request."""
    base = {
        "request": "smtpd_access_policy",
        "protocol_state": "RCPT",
        "protocol_name": "ESMTP",
        "client_address": "192.0.2.10",
        "client_name": "client.example.net",
        "helo_name": "client.example.net",
        "sender": "sender@example.net",
        "recipient": "user@example.com",
        "queue_id": "",
        "instance": "1.2.3",
        "sasl_username": "",
    }
    base.update(attrs)
    body = "".join("%s=%s\n" % (k, v) for k, v in base.items() if v is not None)
    return (body + "\n").encode()


def check_long_pipeline(daemon, n=3000, client_address=None):
    """n requests pipelined on one connection, every third for an unknown
    recipient (client_address(i): the client of request i, if given): each
    is answered, in order, and none is taken for an over-long request."""
    more = (lambda i: {"client_address": client_address(i)}) if client_address \
        else (lambda i: {})
    reqs = b"".join(request(recipient="user@example.com" if i % 3 else "nobody@example.com",
                            queue_id="P%d" % i, **more(i)) for i in range(n))
    with daemon.client() as c:
        t, sent = sender(c, reqs)
        try:
            for i in range(n):
                assert c.read_reply() == (b"action=DUNNO\n\n" if i % 3 else
                                          b"action=550 5.1.1 User unknown\n\n"), i
        finally:
            stop_sender(c, t)
        assert sent == [None], sent
    assert "request too large" not in daemon.read_log()


def sender(c, data):
    """A thread that sends data on PolicyClient c (so that the replies can
    be read while it writes), started.  (thread, sent): sent gets None when
    it is all sent, or the exception that ended it, for the test to check:
    a thread's own exception would fail whichever test runs when it ends."""
    sent = []

    def send():
        try:
            c.send_raw(data)
            sent.append(None)
        except Exception as e:          # noqa: BLE001 - the test checks sent
            sent.append(e)
    t = threading.Thread(target=send, daemon=True)
    t.start()
    return t, sent


def stop_sender(c, t, timeout=10.0):
    """Join sender() thread t, which must not outlive its test: if it is
    still blocked on a full socket (the test failed before reading the
    replies), shutting c down wakes it."""
    t.join(timeout)
    if t.is_alive():
        try:
            c.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        t.join(timeout)
    assert not t.is_alive(), "the sender thread did not end"


class PolicyClient:
    """One policy connection; ask() sends a request, returns the action."""

    def __init__(self, host, port, timeout=10.0):
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(fam, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.buf = b""

    @classmethod
    def unix(cls, path, timeout=10.0):
        self = cls.__new__(cls)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""
        return self

    def send_raw(self, data):
        self.sock.sendall(data)

    def read_reply(self):
        """The raw reply up to and including the empty line; b'' on EOF."""
        while b"\n\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                return b""
            self.buf += chunk
        reply, self.buf = self.buf.split(b"\n\n", 1)
        return reply + b"\n\n"

    def ask(self, **attrs):
        self.send_raw(request(**attrs))
        reply = self.read_reply()
        assert reply.startswith(b"action="), reply
        return reply[len(b"action="):-2].decode()

    def closed_by_peer(self, timeout=5.0):
        """True if the server closes the connection (EOF) within timeout.
        What arrives before the close is kept in self.buf, so a test can
        tell a close without a reply from one after it."""
        self.sock.settimeout(timeout)
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return True
                self.buf += data
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


DEFAULT_CONF = """
[server]
listen = {listen}
{control}
idle_timeout = 60
allow_root = yes

[directory]
backend = file
file = {dir}/recipients
domains = example.com example.org

[actions]
unknown = 550 5.1.1 User unknown
"""

DEFAULT_RECIPIENTS = """# test recipients
user@example.com
alice@example.com
Bob.Smith@example.com
@example.org
"""


class Daemon:
    """The built policyd, with a config made from sections.

    sections: text appended to (or replacing) the default config.  Pass
    conf= to give the whole file.  The daemon listens on self.port.
    """

    def __init__(self, extra="", conf=None, recipients=DEFAULT_RECIPIENTS,
                 host="127.0.0.1", control=True, env=None):
        self.dir = tempfile.mkdtemp(prefix="policyd-test-")
        self.host = host
        self.port = free_port(host)
        self.control_path = os.path.join(self.dir, "control.sock") if control else None
        with open(os.path.join(self.dir, "recipients"), "w") as f:
            f.write(recipients)
        listen = "inet:[%s]:%d" % (host, self.port) if ":" in host else \
            "inet:%s:%d" % (host, self.port)
        if conf is None:
            conf = DEFAULT_CONF.format(
                listen=listen, dir=self.dir,
                control=("control = unix:" + self.control_path) if control else "")
            conf += extra
        else:
            conf = conf.format(listen=listen, dir=self.dir, port=self.port,
                               control=self.control_path or "")
        self.conf = os.path.join(self.dir, "policyd.conf")
        with open(self.conf, "w") as f:
            f.write(conf)
        self.log = os.path.join(self.dir, "policyd.log")
        self.env = env
        self.proc = None

    def start(self, wait=True):
        argv = [POLICYD, "-c", self.conf]
        if VALGRIND == "1":
            argv = ["valgrind", "--quiet", "--error-exitcode=99",
                    "--leak-check=full", "--errors-for-leak-kinds=definite",
                    "--show-leak-kinds=definite"] + argv
        env = dict(os.environ)
        if self.env:
            env.update(self.env)
        self.logf = open(self.log, "ab")
        self.proc = subprocess.Popen(argv, stdout=self.logf, stderr=subprocess.STDOUT, env=env)
        if wait:
            wait_for(lambda: self.proc.poll() is not None or port_open(self.host, self.port),
                     timeout=30 if VALGRIND == "1" else 10, what="policyd to listen")
            if self.proc.poll() is not None:
                raise RuntimeError("policyd exited %d:\n%s" % (self.proc.returncode, self.read_log()))
        return self

    def client(self, timeout=10.0):
        return PolicyClient(self.host, self.port, timeout)

    def ask(self, **attrs):
        with self.client() as c:
            return c.ask(**attrs)

    def ctl(self, *args, check=True):
        """Run policyctl against this daemon's control socket."""
        r = subprocess.run([POLICYCTL, "-s", self.control_path] + list(args),
                           capture_output=True, text=True, timeout=30)
        if check and r.returncode != 0:
            raise RuntimeError("policyctl %s: %d %s%s" % (args, r.returncode, r.stdout, r.stderr))
        return r

    def signal(self, sig):
        self.proc.send_signal(sig)

    def read_log(self):
        with open(self.log, "rb") as f:
            return f.read().decode(errors="replace")

    def wait_log(self, text, timeout=10.0):
        return wait_for(lambda: text in self.read_log(), timeout, what="log: " + text)

    def stop(self, timeout=15.0):
        """SIGTERM, wait; returns the exit code.  Kills if it hangs."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logf.close()
        rc = self.proc.returncode
        self.proc = None
        return rc

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def check_clean_exit(self, rc):
        """A daemon that a test stopped must exit 0 with nothing reported by
        valgrind, ASan, LeakSanitizer or UBSan."""
        log = self.read_log()
        for mark in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                     "runtime error:", "Invalid read", "Invalid write",
                     "definitely lost in"):
            if mark in log:
                raise AssertionError("%s in the daemon's log:\n%s" % (mark, log[-6000:]))
        if rc not in (0, None):
            raise AssertionError("policyd exited %s:\n%s" % (rc, log[-6000:]))

    def __exit__(self, *exc):
        rc = self.stop()
        try:
            if exc[0] is None:
                self.check_clean_exit(rc)
            else:
                # a failed test shows what the daemon said (pytest prints
                # captured stderr with the failure): a CI flake explained
                try:
                    sys.stderr.write("---- %s (exit %s), last lines:\n%s\n"
                                     % (self.log, rc, self.read_log()[-8000:]))
                except OSError:
                    pass
        finally:
            if os.environ.get("POLICYD_KEEP_LOGS") != "1":
                shutil.rmtree(self.dir, ignore_errors=True)

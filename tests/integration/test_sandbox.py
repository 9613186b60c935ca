"""`make run` (contrib/sandbox.sh) stays true: slapd, Redis and two policyd
come up, the harvest demo it prints shows the tarpit and a block that the
second daemon honours too, and Ctrl-C tears everything down."""
import os
import re
import signal
import subprocess
import threading

import pytest

from harness import BUILD, PolicyClient, wait_for

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SANDBOX = os.path.join(ROOT, "contrib", "sandbox.sh")
UNKNOWN = "action=550 5.1.1 User unknown"
BLOCKED = "action=450 4.7.1 Too many invalid recipients, try again later"
ANSWER = re.compile(r"^(\S+@\S+)\s+(\d+\.\d\d)s  (action=.*)$")


def terminal_signals():
    """As a shell in a terminal starts: SIGINT and SIGHUP at their defaults.
    A test run started in the background (nohup, CI) has them ignored, and a
    shell cannot trap a signal ignored on entry."""
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)


def sandbox(smoke):
    """The sandbox in a session of its own: SIGINT to its process group is
    what Ctrl-C in a terminal sends."""
    env = dict(os.environ, SANDBOX_SMOKE="1" if smoke else "0")
    return subprocess.Popen(["sh", SANDBOX, os.path.abspath(BUILD)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True,
                            preexec_fn=terminal_signals)


def kill_group(p, out=""):
    """A test that failed leaves nothing running (the sandbox's own
    clean-up is what the tests check, so this is only the fallback): the
    script's group, and the daemons its banner named (each policyd runs in
    a session of its own, slapd and Redis detach)."""
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    m = re.search(r"policyd sandbox \(temp dir (\S+)\)", out or "")
    for pid in re.findall(r"\(pid (\d+)", out or "") if m else ():
        try:                            # only if it is still the sandbox's
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                if m.group(1).encode() not in f.read():
                    continue
            os.kill(int(pid), signal.SIGKILL)
        except (FileNotFoundError, ProcessLookupError):
            pass


def alive(pid):
    """True while pid exists and is not a zombie (nothing may reap a
    daemonized slapd's or redis-server's zombie in a container)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def banner(out):
    """The temp dir and the pids the banner names."""
    tmp = re.search(r"policyd sandbox \(temp dir (\S+)\)", out).group(1)
    pids = [int(p) for p in re.findall(r"\(pid (\d+)", out)]
    ports = [int(p) for p in re.findall(r"policyd [ab]\s+inet:127\.0\.0\.1:(\d+)", out)]
    assert len(pids) == 4 and len(ports) == 2, out
    return tmp, pids, ports


def test_smoke_run_shows_tarpit_and_fleet_wide_block():
    p = sandbox(True)
    try:
        out, _ = p.communicate(timeout=300)
    finally:
        kill_group(p)
    assert p.returncode == 0, out
    tmp, pids, _ = banner(out)
    answers = [ANSWER.match(l).groups() for l in out.splitlines() if ANSWER.match(l)]
    assert [(a, r) for a, _, r in answers[:4]] == [
        ("alice@example.com", "action=DUNNO"),
        ("carol.alias@example.com", "action=DUNNO"),
        ("nobody@example.com", UNKNOWN),
        ("alice@example.com", "action=DUNNO")]          # asked of policyd b
    demo = answers[4:29]
    assert [a for a, _, _ in demo] == ["guess%d@example.com" % i for i in range(1, 26)]
    # five guesses answered as usual, then the tarpit (0.25 s doubling up
    # to 1 s; libuv starts a timer at the loop turn's cached time, so it may
    # end a few ms early), blocked from the 21st on
    assert [r for _, _, r in demo] == [UNKNOWN] * 20 + [BLOCKED] * 5
    delays = [float(t) for _, t, _ in demo]
    assert min(delays[5:20]) >= 0.24 and min(delays[7:20]) >= 0.95, delays
    # the other daemon refuses the same client: the block is in Redis
    assert answers[29] == ("alice@example.com", answers[29][1], BLOCKED)
    assert len(answers) == 30
    lines = out.splitlines()
    for want in ("sandbox: policyd a exited 0", "sandbox: policyd b exited 0",
                 "sandbox: smoke run passed"):
        assert want in lines, out
    assert re.search(r"^\d+ policyd_redis_up 1$", out, re.M), out
    assert lines[-1] == "sandbox: stopped policyd a and b, Redis and slapd; removed " + tmp
    assert not os.path.exists(tmp)
    assert [pid for pid in pids if alive(pid)] == []


@pytest.mark.parametrize("sig, status", [(signal.SIGINT, 130), (signal.SIGHUP, 129)],
                         ids=["ctrl-c", "terminal-closed"])
def test_ctrl_c_stops_everything(sig, status):
    """Ctrl-C, or the terminal going away (SIGHUP: policyd would take it as
    a reload, and Redis runs detached): nothing is left behind."""
    p = sandbox(False)
    out = []
    failed = []     # what ended the reader early, if anything

    def read():
        try:
            out.extend(p.stdout)
        except Exception as e:          # noqa: BLE001 - checked below, not left to pytest
            failed.append(repr(e))
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        wait_for(lambda: any("Ctrl-C stops" in l for l in out), 120, interval=0.05,
                 what="the sandbox banner")
        tmp, pids, ports = banner("".join(out))
        assert all(alive(pid) for pid in pids)
        for port in ports:
            with PolicyClient("127.0.0.1", port) as c:
                assert c.ask(recipient="alice@example.com") == "DUNNO"
        os.killpg(p.pid, sig)
        # four processes stopped one by one, each allowed 10 s: on a loaded
        # machine the whole teardown may take a while
        assert p.wait(120) == status
    finally:
        kill_group(p, "".join(out))
        # the script is gone: its output ends, and the reader with it,
        # within this test
        reader.join(10)
    assert not reader.is_alive() and failed == [], failed
    text = "".join(out)
    assert out[-1] == "sandbox: stopped policyd a and b, Redis and slapd; removed %s\n" % tmp
    assert not os.path.exists(tmp)
    assert [pid for pid in pids if alive(pid)] == []
    for mark in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
        assert mark not in text, text

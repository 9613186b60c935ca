"""Findings of the operator's review of `policyctl top`: the reason it quits
stays on the terminal, and it does not spin when stdin is not a terminal."""
import os
import re
import time


from harness import POLICYCTL, Daemon, wait_for
from test_top import Tmux


def test_top_says_why_it_quit_when_policyd_went_away():
    """connect_socket()/read_reply() print to stderr and exit(1) while curses
    owns the screen; atexit endwin() then leaves the alternate screen and
    the message is gone: the operator sees top vanish with no reason."""
    d = Daemon().start()
    t = Tmux()
    try:
        t.start([POLICYCTL, "-s", d.control_path, "top"])
        wait_for(lambda: "policyd top:" in t.screen(), timeout=10, what="top drawn")
        d.stop()
        # the reason, on the terminal once top has left the full screen:
        # which one depends on where top was (connecting, or waiting for
        # the answer policyd never sent)
        try:
            # (on a loaded machine the pane may keep only the message's
            # wrapped tail: any of it is the reason, a blank pane is not)
            wait_for(lambda: re.search(r"policyctl: (cannot connect to|no answer from "
                                       r"policyd|unexpected answer from|send: )|"
                                       r"is policyd running with|control = unix:",
                                       t.screen()),
                     timeout=20, what="top's reason on the terminal")
        except TimeoutError:
            raise AssertionError("top's reason is not on the terminal:\n" + t.screen())
        assert "policyd top:" not in t.screen()
        wait_for(lambda: t.exit_status() is not None, timeout=20, what="top's exit")
        assert t.exit_status() == 1
    finally:
        t.cleanup()
        if d.proc is not None and d.proc.poll() is None:
            d.stop()


def test_top_with_stdin_not_a_terminal_waits_without_spinning():
    """stdout is the terminal, stdin is /dev/null: getch() returns ERR at
    once, top_wait() loops on it for the whole second."""
    with Daemon() as d:
        t = Tmux()
        try:
            t.start(["sh", "-c", "'exec %s -s %s top </dev/null'" % (POLICYCTL, d.control_path)])
            wait_for(lambda: "policyd top:" in t.screen(), timeout=10, what="top drawn")
            pid = t.program_pid()

            def cpu():
                with open("/proc/%d/stat" % pid) as f:
                    f = f.read().rsplit(")", 1)[1].split()
                return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
            c0, t0 = cpu(), time.monotonic()
            wait_for(lambda: time.monotonic() - t0 >= 3, timeout=10, what="3 s")
            share = (cpu() - c0) / (time.monotonic() - t0)
            assert share < 0.2, "policyctl top used %.0f%% of a CPU" % (100 * share)
        finally:
            t.cleanup()

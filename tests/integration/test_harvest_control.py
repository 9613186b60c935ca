"""The harvest defence's controls, from the outside (issue 11, scenarios
7-10): trap addresses, the two dry runs, the explain view and the stage
log lines, exemptions, `policyctl unblock`, and the tarpit's clean-up.
Default thresholds throughout; where a delay scale is shortened the test
says so."""
import re
import subprocess
import threading

import pytest

from harness import POLICYD, Daemon, request, wait_for
from harvest import (BLOCKED, UNKNOWN, VALID, burst, explain, guess, report,
                     timed_ask, whole)

SLOW = 0.5      # with the default scale any delay is >= 1 s
TRAPS = "[harvest]\ntraps = trap@example.com spamtrap@\n"
EVENT = re.compile(r'harvest: event=(tarpit|block|block_end|trap) level=(narrow|wide) '
                   r'net=(\S+) invalid=\d+ valid=\d+ traps=\d+ share=\d\.\d\d'
                   r'( delay=\d+\.\d{3}s| until=\d+)? why="[^"]*"( dry_run=yes)?$')


def events(log):
    """Every harvest event line, checked for its key=value form."""
    lines = [l for l in log.splitlines() if "harvest: event=" in l]
    for l in lines:
        assert EVENT.search(l), l
    return lines


def count_events(log, event, level, net, dry=False):
    return sum(1 for l in events(log)
               if " event=%s level=%s net=%s " % (event, level, net) in l
               and l.endswith(" dry_run=yes") == dry)


# --- traps -------------------------------------------------------------------

@pytest.mark.parametrize("ip,trap", [
    ("198.18.70.1", "trap@example.com"),
    ("198.18.71.1", "TRAP@Example.COM"),           # recipients are lowercased
    ("198.18.72.1", "spamtrap@example.org"),       # local@: in a catch-all domain too
    ("2001:db8:73::1", "spamtrap@example.com"),
])
def test_trap_answered_as_unknown_then_the_network_is_blocked(ip, trap):
    with Daemon(extra=TRAPS) as d:
        with d.client() as c:
            assert c.ask(client_address=ip, recipient=trap) == UNKNOWN
            assert c.ask(client_address=ip, recipient=VALID) == BLOCKED
            assert c.ask(client_address=ip, recipient=guess(1)) == BLOCKED
        view = explain(d, ip)
        log = d.read_log()
    net = view["narrow"]["network"]
    assert view["narrow"]["stage"] == "blocked"
    assert view["narrow"]["traps"] == 1.0
    assert count_events(log, "trap", "narrow", net) == 1
    assert count_events(log, "block", "narrow", net) == 1
    assert 'why="trap address"' in [l for l in events(log)
                                    if "event=block level=narrow" in l][0]


@pytest.mark.timing
def test_trap_waits_like_an_unknown():
    """Same history (6 invalid: in the tarpit), asked at once: the trap and
    an unknown recipient get the same answer after the same delay.  Delay
    scale 0.2 s .. 0.8 s."""
    with Daemon(extra=TRAPS + "tarpit_delay = 0.2\ntarpit_max = 0.8\n") as d:
        for ip in ("198.18.74.1", "198.18.75.1"):
            assert burst(d, [ip] * 6, [guess(j) for j in range(6)]) == [UNKNOWN] * 6
        barrier = threading.Barrier(2)
        out = {}
        failed = []     # what ended a thread early, if anything

        def ask(ip, rcpt):
            try:
                with d.client() as c:
                    barrier.wait()
                    out[rcpt] = timed_ask(c, client_address=ip, recipient=rcpt)
            except Exception as e:      # noqa: BLE001 - checked below, not left to pytest
                failed.append(repr(e))
                barrier.abort()         # the other one waits no longer
        ts = [threading.Thread(target=ask, args=a) for a in
              (("198.18.74.1", "trap@example.com"), ("198.18.75.1", guess(99)))]
        for t in ts:
            t.start()
        for t in ts:
            t.join(30)
        assert not any(t.is_alive() for t in ts)
        assert failed == [], failed
        (ta, ts_), (ua, us) = out["trap@example.com"], out[guess(99)]
        print("trap: %s after %.3fs; unknown: %s after %.3fs" % (ta, ts_, ua, us))
        assert ta == ua == UNKNOWN
        assert 0.398 <= ts_ < 0.55 and 0.398 <= us < 0.55, (ts_, us)
        assert abs(ts_ - us) < 0.1
        # only the trap's network is blocked
        assert d.ask(client_address="198.18.74.1", recipient=VALID) == BLOCKED
        assert d.ask(client_address="198.18.75.1", recipient=VALID) == "DUNNO"


# --- dry runs ----------------------------------------------------------------

def harvest_run(d, ip, n=25):
    """n unknown recipients, a valid one after every 5th: [(valid, action, secs)]."""
    out = []
    with d.client() as c:
        for i in range(1, n + 1):
            out.append((False,) + timed_ask(c, client_address=ip, recipient=guess(i)))
            if i % 5 == 0:
                out.append((True,) + timed_ask(c, client_address=ip, recipient=VALID))
    return out


@pytest.mark.timing
def test_actions_dry_run_warns_and_never_delays():
    ip = "198.18.76.1"
    with Daemon(extra="[actions]\ndry_run = yes\n") as d:
        answers = harvest_run(d, ip)
        log = d.read_log()
    report("[actions] dry_run = yes, default configuration, %s" % ip,
           ["%2d %-5s %6.3fs %s" % (i, "valid" if v else "guess", s, a)
            for i, (v, a, s) in enumerate(answers, 1)])
    # 20 unknown (and 3 valid) recipients earn the block: the 24th request
    # on is answered WARN <the blocked action>
    for i, (valid, action, secs) in enumerate(answers, 1):
        if i >= 24:
            want = "WARN " + BLOCKED
        else:
            want = "DUNNO" if valid else "WARN " + UNKNOWN
        assert action == want, (i, action)
        assert secs < SLOW, (i, secs)
    assert count_events(log, "tarpit", "narrow", ip + "/32") == 1
    assert count_events(log, "block", "narrow", ip + "/32") == 1


@pytest.mark.timing
def test_harvest_dry_run_rejects_unknowns_but_never_delays_or_blocks():
    ip = "198.18.77.1"
    with Daemon(extra="[harvest]\ndry_run = yes\n") as d:
        answers = harvest_run(d, ip)
        view = explain(d, ip)
        log = d.read_log()
    for valid, action, secs in answers:
        assert action == ("DUNNO" if valid else UNKNOWN), (valid, action)
        assert secs < SLOW, (valid, action, secs)
    # what would have happened is logged, marked dry_run=yes
    assert count_events(log, "tarpit", "narrow", ip + "/32", dry=True) == 1
    assert count_events(log, "block", "narrow", ip + "/32", dry=True) >= 1
    assert count_events(log, "tarpit", "wide", "198.18.77.0/24", dry=True) == 1
    assert all(l.endswith(" dry_run=yes") for l in events(log))
    assert view["narrow"]["stage"] == "tarpit"      # the standing is still kept
    assert whole(view["narrow"]["invalid"]) == 25


def test_harvest_dry_run_logs_a_would_be_block_once():
    ip = "198.18.77.2"
    with Daemon(extra="[harvest]\ndry_run = yes\ntarpit_delay = 0.01\n"
                      "tarpit_max = 0.02\n") as d:
        harvest_run(d, ip)
        log = d.read_log()
    assert count_events(log, "block", "narrow", ip + "/32", dry=True) == 1
    assert count_events(log, "block_end", "narrow", ip + "/32", dry=True) == 0


# --- explain view and stage log lines -------------------------------------------

JSON_KEYS = {"level", "network", "invalid", "valid", "share", "traps", "stage", "why",
             "delay_s", "block_left_s", "scope"}


@pytest.mark.parametrize("ip,narrow,wide", [
    ("198.18.78.5", "198.18.78.5/32", "198.18.78.0/24"),
    ("2001:db8:78:9:a::5", "2001:db8:78:9::/64", "2001:db8:78::/48"),
])
def test_explain_each_level(ip, narrow, wide):
    with Daemon() as d:
        fresh = explain(d, ip)
        # 6 invalid and 2 valid: narrow tarpit (6 >= 5, 75% >= 25%), wide watch
        burst(d, [ip] * 8, [guess(j) for j in range(6)] + [VALID, VALID])
        view = wait_for(lambda: (lambda v: v if whole(v["narrow"]["valid"]) == 2 else None)(
            explain(d, ip)), what="8 requests recorded")
        text = d.ctl("client", ip).stdout
        bad = d.ctl("client", "not-an-ip", check=False)
    assert [fresh[lv]["stage"] for lv in ("narrow", "wide")] == ["clean", "clean"]
    assert fresh["narrow"]["why"] == "no invalid recipients"
    for lv in view.values():
        assert set(lv) == JSON_KEYS, lv
        assert lv["scope"] == "this process"
    n, w = view["narrow"], view["wide"]
    assert (n["network"], w["network"]) == (narrow, wide)
    assert (round(n["invalid"]), round(n["valid"]), n["share"]) == (6, 2, 0.75)
    assert (n["stage"], n["why"], n["delay_s"]) == ("tarpit", "invalid count and share", 2.0)
    assert (w["stage"], w["why"], w["delay_s"]) == (
        "watch", "fewer invalid recipients than the tarpit needs", 0.0)
    assert n["block_left_s"] == w["block_left_s"] == 0
    assert text.startswith("level: narrow\nnetwork: %s\n" % narrow), text
    assert "\nstage: tarpit\nwhy: invalid count and share\ndelay_s: 2.000\n" in text
    assert "\nlevel: wide\nnetwork: %s\n" % wide in text
    assert bad.returncode != 0 and "not an IP address" in bad.stdout + bad.stderr


@pytest.mark.timing
def test_block_end_logged_once_when_the_block_runs_out():
    """window 1 s and block_time 2 s: once the block runs out the evidence
    has faded below the block's count, so the next request is answered.
    Delay scale 0.01 s .. 0.02 s."""
    ip, net = "198.18.79.1", "198.18.79.1/32"
    conf = "[harvest]\nwindow = 1\nblock_time = 2\ntarpit_delay = 0.01\ntarpit_max = 0.02\n"
    with Daemon(extra=conf) as d:
        with d.client() as c:
            n = 0
            while c.ask(client_address=ip, recipient=guess(n)) == UNKNOWN:
                n += 1
            assert n >= 20      # more when some faded while it guessed
            assert c.ask(client_address=ip, recipient=VALID) == BLOCKED
            view = explain(d, ip)["narrow"]
            assert view["stage"] == "blocked" and 1.0 < view["block_left_s"] <= 2.0
            wait_for(lambda: explain(d, ip)["narrow"]["stage"] != "blocked",
                     timeout=10, what="the block to run out")
            assert c.ask(client_address=ip, recipient=VALID) == "DUNNO"
            assert c.ask(client_address=ip, recipient=VALID) == "DUNNO"
        log = d.read_log()
    print("\n".join(events(log)))
    assert count_events(log, "tarpit", "narrow", net) == 1
    assert count_events(log, "block", "narrow", net) == 1
    assert count_events(log, "block_end", "narrow", net) == 1
    assert count_events(log, "tarpit", "wide", "198.18.79.0/24") == 1
    assert count_events(log, "block", "wide", "198.18.79.0/24") == 0


@pytest.mark.timing
def test_an_expired_block_is_renewed_by_the_next_unknown_recipient():
    """block_time 2 s, the default window: when the block runs out the
    faded standing still earns one.  Valid recipients are answered as usual
    and renew nothing (block_time means what it says); the next unknown
    recipient is answered, counted, and blocks the network again (README:
    "the next unknown recipient starts a new one").  What the harvester
    gets after a block: answers up to its first unknown recipient.  Delay
    scale 0.01 s .. 0.02 s."""
    ip = "198.18.81.1"
    conf = "[harvest]\nblock_time = 2\ntarpit_delay = 0.01\ntarpit_max = 0.02\n"
    with Daemon(extra=conf) as d, d.client() as c:
        n = 0
        while c.ask(client_address=ip, recipient=guess(n)) == UNKNOWN:
            n += 1
        assert n == 20
        wait_for(lambda: explain(d, ip)["narrow"]["stage"] != "blocked",
                 timeout=10, what="the block to run out")
        assert c.ask(client_address=ip, recipient=VALID) == "DUNNO"
        assert c.ask(client_address=ip, recipient=VALID) == "DUNNO"
        assert c.ask(client_address=ip, recipient=guess(99)) == UNKNOWN
        assert c.ask(client_address=ip, recipient=VALID) == BLOCKED


# --- exemptions, unblock ------------------------------------------------------

EXEMPT = "[harvest]\nwhitelist = 198.51.100.0/24 2001:db8:feed::/48\n"


@pytest.mark.timing
@pytest.mark.parametrize("attrs", [
    {"client_address": "198.51.100.77"},                      # whitelisted v4
    {"client_address": "2001:db8:feed:1::25"},                # whitelisted v6
    {"client_address": "198.18.80.1", "sasl_username": "bob"},  # authenticated
])
def test_exempt_clients_never_delayed_blocked_or_counted(attrs):
    with Daemon(extra=EXEMPT) as d:
        with d.client() as c:
            for n in range(30):
                action, took = timed_ask(c, recipient=guess(n), **attrs)
                assert action == UNKNOWN, n
                assert took < SLOW, (n, took)
            assert c.ask(recipient=VALID, **attrs) == "DUNNO"
        view = explain(d, attrs["client_address"])
    assert view["narrow"]["invalid"] == 0 and view["narrow"]["stage"] == "clean"


def test_unblock_lifts_both_levels():
    """Delay scale 0.01 s .. 0.02 s (the histories are bursts)."""
    with Daemon(extra="[harvest]\ntarpit_delay = 0.01\ntarpit_max = 0.02\n") as d:
        # narrow: 20 invalid from one address
        burst(d, ["198.18.81.5"] * 20, [guess(j) for j in range(20)])
        wait_for(lambda: d.ask(client_address="198.18.81.5", recipient=VALID) == BLOCKED)
        r = d.ctl("unblock", "198.18.81.5")
        assert r.stdout.strip() == \
            "198.18.81.5/32 and 198.18.81.0/24: standing and block removed", r.stdout
        assert d.ask(client_address="198.18.81.5", recipient=VALID) == "DUNNO"
        assert explain(d, "198.18.81.5")["narrow"]["stage"] == "clean"
        # wide: 60 invalid from 20 addresses of one /24
        burst(d, ["198.18.82.%d" % (j // 3 + 1) for j in range(60)],
              [guess(j) for j in range(60)])
        wait_for(lambda: d.ask(client_address="198.18.82.200", recipient=VALID) == BLOCKED)
        d.ctl("unblock", "198.18.82.200")
        assert d.ask(client_address="198.18.82.1", recipient=VALID) == "DUNNO"
        assert d.ask(client_address="198.18.82.200", recipient=VALID) == "DUNNO"
        again = d.ctl("unblock", "198.18.83.1").stdout.strip()
        log = d.read_log()
    assert again == "198.18.83.1/32 and 198.18.83.0/24: nothing to remove"
    assert "unblock 198.18.81.5/32 and 198.18.81.0/24 by operator" in log


# --- the tarpit's clean-up, the configuration check ---------------------------

def test_client_gone_during_delay_is_cleaned_up():
    with Daemon() as d:
        burst(d, ["198.18.84.1"] * 6, [guess(j) for j in range(6)])
        wait_for(lambda: explain(d, "198.18.84.1")["narrow"]["stage"] == "tarpit")
        # the next answer waits 2 s; hang up while it waits
        for _ in range(20):
            c = d.client()
            c.send_raw(request(client_address="198.18.84.1", recipient=VALID))
            c.close()

        def drained():
            s = d.ctl("stats", "--json").stdout.replace(" ", "")
            return '"delayed_now":0' in s and '"current":0' in s
        wait_for(drained, timeout=10, what="delays and connections to drain")


def test_tarpit_max_must_stay_below_postfix_timeout():
    for extra, rc in (("[harvest]\ntarpit_max = 120\n", 1),
                      ("[harvest]\ntarpit_max = 120\npostfix_timeout = 300\n", 0)):
        d = Daemon(extra=extra)
        try:
            r = subprocess.run([POLICYD, "-c", d.conf, "-t"], capture_output=True,
                               text=True, timeout=30)
        finally:
            d.cleanup()
        assert r.returncode == rc, r.stderr
        if rc:
            assert "[harvest] tarpit_max" in r.stderr and "100" in r.stderr

"""End to end: siege mode through two real Postfix MTAs that share one
Redis, each with its own policyd (issue 12, in miniature).

A botnet: SMTP sessions from distinct loopback addresses, each in its own
/24 (127.16.0.7, 127.16.1.7, ...), so no network's harvest standing ever
moves; each asks one unknown, one valid and one more unknown recipient,
alternating between the MTAs.  The windows are short ([siege] window = 6 s,
cooldown = 2 s, retry_min = 3 s); the threshold keeps its default (120
unknown recipients a minute, 12 in a 6 s window).  Through Postfix's own
SMTP replies:

  - the siege begins (logged once on each policyd);
  - from then on every RCPT of a bot, valid or unknown, gets the same
    450 4.7.1 text, at once;
  - an established sender (127.0.0.2: its deliveries to valid recipients
    spanned retry_min before the bots came) gets 250 and 550, at once,
    before, during and after, as ever;
  - a new sender (127.0.0.3) is deferred, deferred again when it retries at
    once, and answered correctly (250/550) after retry_min, on both MTAs;
  - the siege ends (logged once on each) after the guesses stop, and a bot
    is answered as before;
  - nothing is queued or bounced for an unknown recipient: the only mail
    delivered is to user@example.com, to the discard transport.

Each bot session is written to $POLICYD_BUILD/siege_e2e.txt (or
$SIEGE_E2E_REPORT) with a summary at its end.
"""
import os
import re
import statistics
import threading
import time

import pytest

from harness import BUILD, VALGRIND, Daemon, wait_for
from postfix import Postfix, reply
from redis import RedisServer

ESTABLISHED = "127.0.0.2"
NEWCOMER = "127.0.0.3"
RETRY_MIN = 3.0

CONF = """
[redis]
address = 127.0.0.1:{port}

[siege]
window = 6
cooldown = 2
retry_min = {retry_min:g}
"""

OK = "250 2.1.5 Ok"
UNKNOWN = "550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown"
SIEGE = "450 4.7.1 <{rcpt}>: Recipient address rejected: Service busy, try again later"
BEGIN = "siege: event=begin domain=example.com"
END = "siege: event=end domain=example.com"

# "At once": policyd's work and Postfix's are a few ms; the machine is
# shared.  Far below any delay a tarpit would add.
FAST = 0.8 if VALGRIND == "1" else 0.5


def bot_ip(i):
    """Bot i: its own /24, so even the wide harvest level never moves."""
    return "127.%d.%d.7" % (16 + i // 256, i % 256)


def session(pf, source, rcpts, data=False):
    """One SMTP session: [(rcpt, reply, seconds)], and a message sent after
    them when data is set and some recipient was accepted."""
    rows = []
    s = pf.smtp(source=source)
    try:
        assert reply(s.mail("mta@sender.example.net")) == "250 2.1.0 Ok"
        for r in rcpts:
            t0 = time.monotonic()
            rep = reply(s.rcpt(r))
            rows.append((r, rep, time.monotonic() - t0))
        if data and any(rep == OK for _, rep, _ in rows):
            code, msg = s.data(b"Subject: siege e2e\r\n\r\nhello\r\n")
            assert code == 250, msg
    finally:
        s.quit()
    return rows


def general(rcpt, rep):
    """The reply with its recipient taken out: the text a bot compares."""
    return rep.replace("<%s>" % rcpt, "<RCPT>")


VALID = ["user@example.com", "alice@example.com", "bob.smith@example.com"]


def honest(pf, n):
    """The established sender: three valid recipients and an unknown one
    (its invalid share stays below [harvest] tarpit_share, so the harvest
    rules never delay it), delivered; [(reply, seconds)]."""
    return [(rep, secs) for _, rep, secs in
            session(pf, ESTABLISHED, VALID + ["nobody%d@example.com" % n], data=True)]


def expect_honest(n):
    return [OK] * len(VALID) + [UNKNOWN.format(rcpt="nobody%d@example.com" % n)]


def replies(rows):
    return [rep for rep, _ in rows]


@pytest.mark.timing
def test_botnet_through_two_mtas():
    report = []
    with RedisServer() as redis:
        conf = CONF.format(port=redis.port, retry_min=RETRY_MIN)
        with Daemon(extra=conf) as d1, Daemon(extra=conf) as d2, \
                Postfix(policy_port=d1.port) as mx1, Postfix(policy_port=d2.port) as mx2:
            mtas = (("mx1", mx1), ("mx2", mx2))

            # --- before: 127.0.0.2 delivers to valid recipients until it is
            # established fleet-wide (each policyd reads it from Redis): its
            # deliveries must span retry_min, so this takes retry_min
            def established():
                session(mx1, ESTABLISHED, VALID, data=True)
                return all("established: yes (clean record)" in
                           d.ctl("client", ESTABLISHED).stdout for d in (d1, d2))
            wait_for(established, 30, interval=0.2, what="127.0.0.2 established")
            before = [honest(pf, k) for k, (_, pf) in enumerate(mtas)]
            assert [replies(x) for x in before] == [expect_honest(0), expect_honest(1)]

            # --- the botnet, two at a time, until told to stop
            sessions = []       # (n, mta, source, started, [(rcpt, reply, secs)])
            errors = []
            stop = threading.Event()
            lock = threading.Lock()
            next_bot = [0]
            t0 = time.monotonic()

            def bots():
                try:
                    while not stop.is_set():
                        with lock:
                            i = next_bot[0]
                            next_bot[0] += 1
                        name, pf = mtas[i % 2]
                        started = time.monotonic() - t0
                        rows = session(pf, bot_ip(i), [
                            "guess%da@example.com" % i,
                            ("user@example.com", "alice@example.com")[i % 2],
                            "guess%db@example.com" % i])
                        with lock:
                            sessions.append((i, name, bot_ip(i), started, rows))
                        stop.wait(0.02)
                except Exception as e:  # reported by the main thread
                    errors.append(repr(e))
                    stop.set()

            workers = [threading.Thread(target=bots) for _ in range(2)]
            try:
                for w in workers:
                    w.start()
                # the siege begins on both policyd
                for d in (d1, d2):
                    d.wait_log(BEGIN, timeout=30)
                t_both = time.monotonic() - t0

                # the established sender, during the siege
                during = [honest(pf, 2 + k) for k, (_, pf) in enumerate(mtas)]

                # a new sender: deferred, deferred again when it comes back at
                # once, then (after retry_min: the wait is the behaviour under
                # test) answered as ever, first on mx1 and then, once mx2's
                # policyd reads its admission from Redis, on mx2
                first = session(mx1, NEWCOMER, ["user@example.com"])
                t_first = time.monotonic()
                early = session(mx2, NEWCOMER, ["user@example.com"])
                time.sleep(max(0.0, t_first + RETRY_MIN + 0.3 - time.monotonic()))
                retry = session(mx1, NEWCOMER, ["user@example.com", "nope1@example.com"],
                                data=True)
                wait_for(lambda: "established: yes (retried during a siege)" in
                         d2.ctl("client", NEWCOMER).stdout, 10, what="admission in Redis")
                retry2 = session(mx2, NEWCOMER, ["user@example.com", "nope2@example.com"],
                                 data=True)
                # a few more bot sessions after all that: still deferred
                n_then = len(sessions)
                wait_for(lambda: len(sessions) >= n_then + 4 or errors, 30,
                         what="more bot sessions")
            finally:
                stop.set()
                for w in workers:
                    w.join(60)
                assert not any(w.is_alive() for w in workers), "a bot did not end"
            t_stop = time.monotonic() - t0
            assert not errors, errors
            siege_info = [d.ctl("siege").stdout for d in (d1, d2)]

            # --- the guesses stopped: the siege ends on both
            for d in (d1, d2):
                d.wait_log(END, timeout=60)
            t_end = time.monotonic() - t0
            after = [honest(pf, 4 + k) for k, (_, pf) in enumerate(mtas)]
            late_bot = session(mx1, bot_ip(4000), ["user@example.com", "late@example.com"])
            logs = [d.read_log() for d in (d1, d2)]
            for pf in (mx1, mx2):
                pf.wait_queue_empty()
            maillogs = [pf.maillog() for _, pf in mtas]

    # --- the report: a row per bot session, then the summary
    sessions.sort(key=lambda s: s[3])
    report.append("%4s %-4s %-15s %7s  %s" % ("bot", "mta", "source", "start",
                                              "RCPT unknown, valid, unknown: code (seconds)"))
    for i, name, src, started, rows in sessions:
        report.append("%4d %-4s %-15s %6.2fs  %s" % (i, name, src, started, "  ".join(
            "%s (%.3f)" % (rep.split()[0], secs) for _, rep, secs in rows)))
    guesses = [(s, r) for s in sessions for r in s[4]]
    definite = [(s, r) for s, r in guesses if not r[1].startswith("450 ")]
    first_siege = next(k for k, (s, r) in enumerate(guesses) if r[1].startswith("450 "))
    siege_rows = [(s, r) for s, r in guesses if r[1].startswith("450 ")]
    med = {kind: statistics.median([r[2] for s, r in siege_rows
                                    if (r[0].startswith("guess")) == (kind == "unknown")]
                                   or [float("nan")])
           for kind in ("valid", "unknown")}
    summary = [
        "bots: %d sessions (%d RCPT) from %d /24s over mx1 and mx2 in %.1fs"
        % (len(sessions), len(guesses), len(sessions), t_stop),
        "siege: begun on both policyd %.2fs after the first bot; first 450 at RCPT "
        "%d; ended on both %.1fs after the bots stopped" % (t_both, first_siege + 1,
                                                          t_end - t_stop),
        "yield (250 or 550 to a bot): %d of %d RCPT (%.1f%%); after the siege began on "
        "both: %d of %d" % (len(definite), len(guesses), 100.0 * len(definite) / len(guesses),
                            sum(1 for s, r in definite if s[3] >= t_both),
                            sum(1 for s, r in guesses if s[3] >= t_both)),
        "deferred bots: median RCPT reply valid %.1f ms, unknown %.1f ms"
        % (1000 * med["valid"], 1000 * med["unknown"]),
        "established %s (mx1, mx2): before %s, during %s, after %s; slowest %.1f ms" % (
            ESTABLISHED, *[[r.split()[0] for x in phase for r in replies(x)]
                           for phase in (before, during, after)],
            1000 * max(secs for phase in (before, during, after) for x in phase
                       for _, secs in x)),
        "new sender %s: first %s, at once %s, after %.0fs %s (mx1), %s (mx2)" % (
            NEWCOMER, first[0][1].split()[0], early[0][1].split()[0], RETRY_MIN,
            [r[1].split()[0] for r in retry], [r[1].split()[0] for r in retry2]),
    ] + ["policyctl siege (%s), during:\n  %s" % (n, t.strip().replace("\n", "\n  "))
         for n, t in zip(("mx1", "mx2"), siege_info)]
    report.extend(summary)
    print("\n" + "\n".join(summary))
    path = os.environ.get("SIEGE_E2E_REPORT") or os.path.join(BUILD, "siege_e2e.txt")
    try:
        with open(path, "w") as f:
            f.write("\n".join(report) + "\n")
    except OSError:
        pass

    # --- the siege: begun and ended once on each policyd
    for log in logs:
        assert log.count(BEGIN) == 1 and log.count(END) == 1, log[-3000:]
    # every bot reply is one of three; from the siege on (both policyd), the
    # same 450 for every recipient, valid or unknown, on both MTAs, at once
    for (i, name, src, started, rows) in sessions:
        for rcpt, rep, secs in rows:
            normal = OK if rcpt.startswith(("user@", "alice@")) else UNKNOWN.format(rcpt=rcpt)
            assert rep in (normal, SIEGE.format(rcpt=rcpt)), (i, rcpt, rep)
    late = [s for s in sessions if s[3] >= t_both]
    assert {s[1] for s in late} == {"mx1", "mx2"}, late
    for i, name, src, started, rows in late:
        assert {general(r, rep) for r, rep, _ in rows} == {SIEGE.format(rcpt="RCPT")}, rows
        assert all(secs < FAST for *_, secs in rows), rows
    # the harvest's yield: the guesses before the siege began, not after
    assert all(s[3] < t_both for s, r in definite)

    # --- the established sender: 250 and 550, before, during and after
    assert [replies(x) for x in during] == [expect_honest(2), expect_honest(3)]
    assert [replies(x) for x in after] == [expect_honest(4), expect_honest(5)]
    assert all(secs < FAST for phase in (before, during, after) for x in phase
               for _, secs in x), (before, during, after)
    # --- the new sender waits one retry
    for rows in (first, early):
        assert [r[1] for r in rows] == [SIEGE.format(rcpt="user@example.com")], rows
    for rows, bad in ((retry, "nope1@example.com"), (retry2, "nope2@example.com")):
        assert [r[1] for r in rows] == [OK, UNKNOWN.format(rcpt=bad)], rows
    # --- after the siege, a bot is answered as ever
    assert [r[1] for r in late_bot] == [OK, UNKNOWN.format(rcpt="late@example.com")]

    # --- nothing queued or bounced; only valid recipients delivered, discarded
    for log in maillogs:
        assert "status=bounced" not in log and "status=deferred" not in log
        assert "sender non-delivery notification" not in log
        delivered = [l for l in log.splitlines() if " to=<" in l and "relay=" in l]
        assert delivered and all(re.search(r" to=<(user|alice|bob\.smith)@example\.com>", l)
                                 and "status=sent (discarded by test instance)" in l
                                 for l in delivered), delivered

"""End to end: a directory-harvest run against two Postfix MTAs that share
one Redis, each with its own policyd.

The harvester (source 127.0.0.1) opens many short SMTP sessions, alternating
between the two MTAs, each session with a few unknown recipients (fewer
than smtpd_hard_error_limit, so Postfix never hangs up on it by itself).
Its standing lives in the shared Redis, so it grows across both MTAs:
default thresholds, the delay scale shortened to 0.5 s .. 1 s (the real
one, 1 s .. 30 s, would take minutes): replies from its 6th unknown
recipient on are slowed, and the request after its 20th is answered
450 4.7.1 on both MTAs, at once, exactly there.  Before a session goes to
the other MTA the test waits until Redis holds the count of the last one
(each daemon sends what it recorded a moment after its answer: without
the barrier the other MTA could judge one recipient behind).  Meanwhile a
legitimate client (source 127.0.1.2: another /24, so the harvester's wide
level is not its own) keeps sending mail to a valid recipient on both
MTAs: always 250 at RCPT, fast, and delivered (to the discard transport).
Nothing is ever queued or bounced for an unknown recipient.

Every RCPT reply with its delay is printed (pytest -s) and written to
$POLICYD_BUILD/harvest_e2e.txt (or $HARVEST_E2E_REPORT).
"""
import os
import threading
import time

from harness import BUILD, VALGRIND, Daemon
from harvest import WIDE_RULES, Level, predict, wait_fleet, whole
from postfix import Postfix, reply
from redis import RedisServer

HARVESTER = "127.0.0.1"
LEGIT = "127.0.1.2"
SENDER = "probe@harvester.example.net"

TARPIT_DELAY = 0.5
TARPIT_MAX = 1.0
BLOCK_AFTER = 20        # the default
PREFIX = "policyd:"     # the default [redis] prefix

HARVEST_CONF = """
[redis]
address = 127.0.0.1:{redis_port}

[harvest]
tarpit_delay = {tarpit_delay}
tarpit_max = {tarpit_max}
postfix_timeout = 10
"""

UNKNOWN = "550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown"
BLOCKED = ("450 4.7.1 <{rcpt}>: Recipient address rejected: "
           "Too many invalid recipients, try again later")

# A reply counts as "at once" below this: policyd's own work plus Postfix's
# is a few ms, but the test machine is shared (and valgrind is slow); still
# under the 0.5 s tarpit_delay, so a tarpitted reply fails.
FAST = 0.8 if VALGRIND == "1" else 0.4
RCPTS_PER_SESSION = 2
HARD_ERROR_LIMIT = 4


def session(pf, source, recipients, data=False):
    """One SMTP session; [(rcpt, reply, seconds)] and the queue id if DATA."""
    out = []
    s = pf.smtp(source=source)
    qid = None
    try:
        assert reply(s.mail(SENDER if source == HARVESTER else
                            "friend@partner.example.net")) == "250 2.1.0 Ok"
        for r in recipients:
            t0 = time.monotonic()
            rep = reply(s.rcpt(r))
            out.append((r, rep, time.monotonic() - t0))
        if data and all(rep.startswith("250 ") for _, rep, _ in out):
            code, msg = s.data(b"Subject: legit\r\n\r\nhello\r\n")
            assert code == 250, msg
            qid = msg.decode().split()[-1]
    finally:
        s.quit()
    return out, qid


def test_harvest_run_two_mtas_one_redis():
    report = []

    def note(line):
        print(line)
        report.append(line)

    with RedisServer() as redis:
        conf = HARVEST_CONF.format(redis_port=redis.port, tarpit_delay=TARPIT_DELAY,
                                   tarpit_max=TARPIT_MAX)
        with Daemon(extra=conf) as d1, Daemon(extra=conf) as d2, \
                Postfix(policy_port=d1.port, hard_error_limit=HARD_ERROR_LIMIT,
                        policy_timeout="10s") as mx1, \
                Postfix(policy_port=d2.port, hard_error_limit=HARD_ERROR_LIMIT,
                        policy_timeout="10s") as mx2:
            mtas = {"mx1": mx1, "mx2": mx2}
            for d in (d1, d2):      # nothing is asked before the store is up
                d.wait_log("redis: up:", timeout=15)

            # The legitimate client, all along the harvest run.
            legit = []
            legit_qids = []
            legit_errors = []
            stop = threading.Event()

            def legit_loop():
                i = 0
                try:
                    while not stop.is_set():
                        name = ("mx1", "mx2")[i % 2]
                        res, qid = session(mtas[name], LEGIT, ["user@example.com"], data=True)
                        legit.extend((name,) + r for r in res)
                        legit_qids.append((name, qid))
                        i += 1
                        stop.wait(0.3)
                except Exception as e:  # reported by the main thread
                    legit_errors.append(repr(e))

            lt = threading.Thread(target=legit_loop)
            lt.start()

            # The harvest run: short sessions, alternating MTAs; the model
            # (tests/pylib/harvest.py) predicts each reply's delay.
            probes = []     # (n, mta, rcpt, reply, seconds, predicted delay)
            levels = [Level(), Level(WIDE_RULES)]
            n = 0
            t_start = time.monotonic()
            try:
                for sess in range((BLOCK_AFTER + 4) // RCPTS_PER_SESSION + 1):
                    name = ("mx1", "mx2")[sess % 2]
                    rcpts = ["guess%02d@example.com" % (n + k + 1)
                             for k in range(RCPTS_PER_SESSION)]
                    # the model, recipient by recipient: within a session
                    # the daemon judges each from what it recorded itself
                    want = []
                    for _ in rcpts:
                        blocked, delay, _ = predict(levels, TARPIT_DELAY, TARPIT_MAX)
                        want.append(delay)
                        if not blocked:
                            for lv in levels:
                                lv.record(valid=False)
                    res, _ = session(mtas[name], HARVESTER, rcpts)
                    for (r, rep, secs), w in zip(res, want):
                        n += 1
                        probes.append((n, name, r, rep, secs, w))
                    wait_fleet(redis, PREFIX, HARVESTER + "/32",
                               whole(levels[0].invalid))
            finally:
                stop.set()
                lt.join(60)
                assert not lt.is_alive(), "the load thread did not end"
            harvest_secs = time.monotonic() - t_start

            # Once blocked, a valid recipient is refused too, on both MTAs.
            after = []
            for name in ("mx1", "mx2"):
                res, _ = session(mtas[name], HARVESTER, ["user@example.com"])
                after.extend((name,) + r for r in res)

            # Let both queues drain (the legit mails go to discard).
            for pf in (mx1, mx2):
                pf.wait_queue_empty()
            logs = {name: pf.maillog() for name, pf in mtas.items()}
            stats = [d.ctl("stats", check=False).stdout for d in (d1, d2)]

    note("harvest run: %d unknown recipients from %s in %.2f s, "
         "sessions of %d RCPT, alternating mx1/mx2; default thresholds, "
         "tarpit_delay=%.1fs tarpit_max=%.1fs, shared Redis"
         % (n, HARVESTER, harvest_secs, RCPTS_PER_SESSION, TARPIT_DELAY, TARPIT_MAX))
    note("%3s %-4s %-22s %7s %7s  %s" % ("n", "mta", "rcpt", "delay", "model", "reply"))
    for pn, name, r, rep, secs, want in probes:
        note("%3d %-4s %-22s %6.3fs %6.3fs  %s" % (pn, name, r, secs, want, rep))
    note("after the run, %s -> user@example.com:" % HARVESTER)
    for name, r, rep, secs in after:
        note("    %-4s %-22s %6.3fs  %s" % (name, r, secs, rep))
    note("legitimate client %s during the run: %d sessions" % (LEGIT, len(legit)))
    for name, r, rep, secs in legit:
        note("    %-4s %-22s %6.3fs  %s" % (name, r, secs, rep))
    for s in stats:
        note("policyd stats:\n" + s)
    path = os.environ.get("HARVEST_E2E_REPORT") or os.path.join(BUILD, "harvest_e2e.txt")
    try:
        with open(path, "w") as f:
            f.write("\n".join(report) + "\n")
    except OSError:
        pass

    # --- the harvester: 550s, slower and slower, then 450 4.7.1 at once.
    assert not legit_errors, legit_errors
    codes = [rep.split()[0] for _, _, _, rep, _, _ in probes]
    # The request after the one that earned the block (the 20th unknown
    # recipient) is refused, exactly there, and from then on for good.
    assert codes == ["550"] * BLOCK_AFTER + ["450"] * (len(codes) - BLOCK_AFTER), codes
    assert len(codes) - BLOCK_AFTER >= 3, "too few probes after the block"
    assert [pn for pn, *_, want in probes if want > 0][0] == 6
    for pn, name, r, rep, secs, want in probes:
        if pn <= BLOCK_AFTER:
            assert rep == UNKNOWN.format(rcpt=r), (pn, rep)
            if want == 0:
                assert secs < FAST, (pn, secs)
            else:
                # Never early; late by at most a generous margin.
                assert want - 0.005 <= secs < want + 0.5, (pn, want, secs)
        else:
            assert rep == BLOCKED.format(rcpt=r), (pn, rep)
            assert secs < FAST, (pn, secs)
    # The block holds on both MTAs: the harvester reached both after it.
    assert {name for pn, name, *_ in probes if pn > BLOCK_AFTER} == {"mx1", "mx2"}
    assert [(name, rep) for name, _, rep, _ in after] == [
        ("mx1", BLOCKED.format(rcpt="user@example.com")),
        ("mx2", BLOCKED.format(rcpt="user@example.com"))]
    assert all(secs < FAST for *_, secs in after), after

    # --- the legitimate client: 250, fast, on both MTAs, all along.
    assert len(legit) >= 4, legit
    assert {name for name, *_ in legit} == {"mx1", "mx2"}
    for name, r, rep, secs in legit:
        assert rep == "250 2.1.5 Ok", (name, rep)
        assert secs < FAST, (name, secs)

    # --- nothing queued, nothing bounced; legit mail discarded, once each.
    for name, log in logs.items():
        assert "status=bounced" not in log, name
        assert "sender non-delivery notification" not in log, name
        assert "status=deferred" not in log, name
        delivered = [l for l in log.splitlines() if " to=<" in l and "relay=" in l]
        assert all("to=<user@example.com>" in l and
                   "status=sent (discarded by test instance)" in l
                   for l in delivered), delivered
        qids = [q for m, q in legit_qids if m == name]
        assert len(delivered) == len(qids), (delivered, qids)
        for q in qids:
            assert "%s: removed" % q in log, q

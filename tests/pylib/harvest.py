"""Helpers for the harvest tests: what an attacker sees from the outside.

timed_ask()   one request on a connection, with the wall-clock time of its
              answer
explain()     `policyctl client IP --json`, as {level: fields}
Level         the standing the model (policyd/score.h) predicts for one
              network from the recipients a test asked: counts fade with
              the half-life, stages and delays follow the default rules
              (or the ones given); tests compare each answer with it
burst()       many requests at once, one connection each (the daemon
              decides each from the standing before it, so a burst is a
              quick way to give a network a history)
report()      a section of build/harvest_scenarios.txt (the per-request
              tables); the file is rewritten with every section so far
fleet()       a network's standing as Redis holds it (PREFIX "e:" NET, the
              wire form of score.h), and wait_fleet() to wait for a count

Every client address here is from the documentation and benchmarking
ranges (192.0.2.0/24, 198.18.0.0/15, 2001:db8::/32): they are only values
in the policy requests, never a peer; every connection is to loopback.
"""
import json
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor

from harness import BUILD, wait_for

UNKNOWN = "550 5.1.1 User unknown"
BLOCKED = "450 4.7.1 Too many invalid recipients, try again later"
VALID = "user@example.com"

# [harvest] defaults (config.c), narrow and wide level
NARROW_RULES = dict(tarpit_after=5, tarpit_share=25, block_after=20,
                    block_share=40, block_ceiling=200)
WIDE_RULES = dict(tarpit_after=15, tarpit_share=25, block_after=60,
                  block_share=40, block_ceiling=600)
HALF_LIFE = 3600.0


def guess(n, tag="g"):
    """An address that is not in the test directory."""
    return "%s%04d@example.com" % (tag, n)


def timed_ask(client, **attrs):
    t0 = time.monotonic()
    action = client.ask(**attrs)
    return action, time.monotonic() - t0


def explain(daemon, ip):
    """The explain view: {"narrow": {...}, "wide": {...}}."""
    out = json.loads(daemon.ctl("client", ip, "--json").stdout)
    return {lv["level"]: lv for lv in out["levels"]}


def burst(daemon, ips, recipients, workers=32):
    """Ask every (ip, recipient) at once, one connection each; the answers
    in order."""
    def one(pair):
        with daemon.client(timeout=60) as c:
            return c.ask(client_address=pair[0], recipient=pair[1])
    with ThreadPoolExecutor(max_workers=workers) as ex:
        return list(ex.map(one, zip(ips, recipients)))


def whole(x):
    """score.c whole(): a faded count to the nearest recipient."""
    return math.floor(x + 0.5)


class Level:
    """The predicted standing of one network (score.h), from the outside."""

    def __init__(self, rules=NARROW_RULES, half_life=HALF_LIFE):
        self.r = rules
        self.half_life = half_life
        self.invalid = self.valid = 0.0
        self.t = time.monotonic()
        self.blocked = False

    def _fade(self):
        now = time.monotonic()
        f = 2 ** (-(now - self.t) / self.half_life)
        self.invalid *= f
        self.valid *= f
        self.t = now

    def _share_at_least(self, pct):
        return self.invalid * 100 + 1e-9 >= pct * (self.invalid + self.valid)

    def stage(self, delay, delay_max):
        """(stage, delay in seconds) before the next request."""
        self._fade()
        inv = whole(self.invalid)
        if self.blocked:
            return "blocked", 0.0
        if inv < 1:
            return "clean", 0.0
        if inv < self.r["tarpit_after"] or not self._share_at_least(self.r["tarpit_share"]):
            return "watch", 0.0
        return "tarpit", min(delay * 2 ** (inv - self.r["tarpit_after"]), delay_max)

    def record(self, valid, trap=False):
        self._fade()
        if valid:
            self.valid += 1
        else:
            self.invalid += 1
        inv = whole(self.invalid)
        if trap or inv >= self.r["block_ceiling"] or (
                inv >= self.r["block_after"]
                and self._share_at_least(self.r["block_share"])):
            self.blocked = True


def predict(levels, delay, delay_max):
    """(answer is the block, delay, stage names) for a request judged at
    every level in levels: the stricter wins (harvest_decide)."""
    stages = [lv.stage(delay, delay_max) for lv in levels]
    blocked = any(st == "blocked" for st, _ in stages)
    return blocked, 0.0 if blocked else max(d for _, d in stages), \
        "/".join(st for st, _ in stages)


_SECTIONS = {}


def report(name, lines):
    """Keep a section of build/harvest_scenarios.txt (rewritten whole)."""
    _SECTIONS[name] = lines
    path = os.environ.get("HARVEST_SCENARIOS_REPORT") or \
        os.path.join(BUILD, "harvest_scenarios.txt")
    try:
        with open(path, "w") as f:
            for sec, body in _SECTIONS.items():
                f.write("== %s ==\n%s\n\n" % (sec, "\n".join(body)))
    except OSError:
        pass


def fleet(redis, prefix, net):
    """(invalid, valid, traps, t_ms, block_until_ms) from Redis, or None."""
    v = redis.call("GET", prefix + "e:" + net)
    if v is None:
        return None
    f = v.decode().split(" ")
    assert len(f) == 5, v
    return float(f[0]), float(f[1]), float(f[2]), int(f[3]), int(f[4])


def wait_fleet(redis, prefix, net, invalid, valid=0):
    """Until Redis holds net's counts (a daemon sends what it recorded a
    moment after its answer)."""
    wait_for(lambda: (lambda s: s and whole(s[0]) == invalid and whole(s[1]) == valid)(
        fleet(redis, prefix, net)), timeout=10,
        what="redis to hold %s invalid=%d valid=%d" % (net, invalid, valid))

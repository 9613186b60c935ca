"""The fleet at a glance (issue 13 points 1, 2): each policyd publishes a
record to Redis; `policyctl fleet` lists every one, with totals, and flags
a config or version that is not the majority's; `policyctl offenders`
reads a bounded index kept in Redis as counts change.

Two real policyd share one real redis-server.  Their config files differ
only in [server] listen and control (each host's own sockets), which the
config digest leaves out."""
import json
import os
import re
import shutil
import socket
import tempfile

from harness import Daemon, free_port, wait_for
from redis import RedisServer

PREFIX = "t:"
HOST = socket.gethostname()

CONF = """
[server]
listen = {listen}
control = unix:{control}
idle_timeout = 60
allow_root = yes

[directory]
backend = file
file = %(shared)s/recipients
domains = example.com example.org

[actions]
unknown = 550 5.1.1 User unknown

[harvest]
window = 600
tarpit_after = 3
tarpit_delay = 0.01
tarpit_max = 0.02
block_after = 8
block_time = 300
ipv4_wide_prefix = 0

[redis]
address = 127.0.0.1:%(port)d
prefix = t:
"""

HEADER = ("INSTANCE                         STATE VERSION    UPTIME    REQ/S  ACC%  UNK%"
          "  TMP%  BLK%  DEF%   P99MS DELAYED REDIS DIR    NOTE")
OFF_HEADER = "NETWORK                       INVALID    VALID  TRAPS  STAGE    LEFT"


class Fleet:
    """A redis-server and n policyd on it, sharing one recipients file."""

    def __init__(self, n=2, extra=("", "")):
        self.shared = tempfile.mkdtemp(prefix="policyd-fleet-")
        with open(os.path.join(self.shared, "recipients"), "w") as f:
            f.write("user@example.com\nalice@example.com\n")
        self.redis = RedisServer().start()
        self.daemons = []
        for i in range(n):
            conf = CONF % {"shared": self.shared, "port": self.redis.port} + extra[i]
            self.daemons.append(Daemon(conf=conf).start())

    def cleanup(self):
        errors = []
        for d in self.daemons:
            rc = d.stop()
            try:
                d.check_clean_exit(rc)
            except AssertionError as e:
                errors.append(e)
            shutil.rmtree(d.dir, ignore_errors=True)
        self.redis.cleanup()
        shutil.rmtree(self.shared, ignore_errors=True)
        if errors:
            raise errors[0]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()


def name_of(d):
    return "%s/127.0.0.1:%d" % (HOST, d.port)


def fleet_json(d):
    return json.loads(d.ctl("fleet", "--json").stdout)


def by_name(view):
    return {i["name"]: i for i in view["instances"]}


def wait_fleet(d, pred, what):
    """Poll `fleet --json` until pred(view) holds; the view."""
    box = {}

    def ok():
        box["v"] = fleet_json(d)
        return pred(box["v"])
    wait_for(ok, timeout=15, interval=0.1, what=what)
    return box["v"]


def test_fleet_lists_both_daemons_with_totals_and_flags_the_odd_one():
    # each host's own /metrics socket is not part of the config's digest
    metrics = tuple("\n[stats]\nprometheus = inet:127.0.0.1:%d\n" % free_port()
                    for _ in range(2))
    with Fleet(extra=metrics) as fl:
        a, b = fl.daemons
        with a.client() as c:
            for rcpt in ("user@example.com", "alice@example.com", "user@example.com"):
                assert c.ask(client_address="198.51.100.1", recipient=rcpt) == "DUNNO"
            assert c.ask(client_address="198.51.100.1", recipient="ghost@example.com") == \
                "550 5.1.1 User unknown"
        with b.client() as c:
            assert c.ask(client_address="198.51.100.2", recipient="alice@example.com") == \
                "DUNNO"

        # a sees b's record (published within a second) with b's verdicts
        def both(v):
            m = by_name(v)
            return name_of(b) in m and m[name_of(b)]["verdicts"]["accepted"] == 1
        v = wait_fleet(a, both, "b's record in a's fleet view")
        m = by_name(v)
        assert sorted(m) == sorted([name_of(a), name_of(b)])
        me, other = m[name_of(a)], m[name_of(b)]
        assert me["self"] is True and other["self"] is False
        assert me["verdicts"] == {"accepted": 3, "unknown": 1, "tempfail": 0,
                                  "blocked": 0, "deferred": 0}
        assert other["verdicts"] == {"accepted": 1, "unknown": 0, "tempfail": 0,
                                     "blocked": 0, "deferred": 0}
        for i in (me, other):
            assert i["state"] == "up" and i["version"] == "0.1.0"
            assert i["redis"] == "up" and i["directory"] == "ok"
            assert i["config_differs"] is False and i["version_differs"] is False
            assert re.fullmatch(r"[0-9a-f]{16}", i["digest"])
        assert me["digest"] == other["digest"]
        assert v["source"] == "redis"
        assert v["majority"] == {"digest": me["digest"], "version": "0.1.0"}
        assert v["totals"]["instances"] == 2 and v["totals"]["up"] == 2
        assert v["totals"]["verdicts"] == {"accepted": 4, "unknown": 1, "tempfail": 0,
                                           "blocked": 0, "deferred": 0}

        # an old daemon that went away an hour ago would be dropped; one
        # that stopped a minute ago is stale, with another version and
        # config: flagged, and it does not outvote the two that are up
        with fl.redis.client() as r:
            # as many latency buckets as a real record has
            real = r.call("HGET", PREFIX + "fleet", name_of(a))
            real = real.decode() if isinstance(real, bytes) else real
            nbuckets = len(re.search(r" lat=(\S+)", real).group(1).split(","))
            now_s, now_us = r.call("TIME")
            now = int(now_s) * 1000 + int(now_us) // 1000
            rec = ("v=1 name=old/127.0.0.1:1 ver=0.0.9 start=%d digest=%s rps=0.00 "
                   "vd=0,0,0,0,0 lat=%s delayed=0 blocked=0 tracked=0 siege=0 redis=up "
                   "dir=ok" % (now // 1000 - 7200, "f" * 16, ",".join(["0"] * nbuckets)))
            r.call("HSET", PREFIX + "fleet", "old/127.0.0.1:1", rec)
            r.call("ZADD", PREFIX + "fleet:t", now - 60000, "old/127.0.0.1:1")
        v = fleet_json(a)
        m = by_name(v)
        assert m["old/127.0.0.1:1"]["state"] == "stale"
        assert m["old/127.0.0.1:1"]["config_differs"] is True
        assert m["old/127.0.0.1:1"]["version_differs"] is True
        assert m[name_of(a)]["config_differs"] is False
        assert m[name_of(b)]["version_differs"] is False
        assert v["totals"]["instances"] == 3 and v["totals"]["up"] == 2
        assert v["totals"]["stale"] == 1

        text = a.ctl("fleet").stdout.splitlines()
        assert text[0] == HEADER
        rows = {l.split()[0]: l for l in text[1:4]}
        assert rows[name_of(a)].endswith(" up    ok     this")
        assert rows[name_of(b)].endswith(" up    ok")
        assert re.match(r"old/127\.0\.0\.1:1 +stale 0\.0\.9 +2h00m +0\.0 ",
                        rows["old/127.0.0.1:1"])
        assert rows["old/127.0.0.1:1"].endswith(" up    ok     config-differs version-differs")
        assert text[4].startswith("fleet: 3 instance(s), 2 up, 1 stale (redis); ")
        assert text[5] == "majority: config %s, version 0.1.0" % me["digest"]
        assert len(text) == 6


def test_a_config_change_is_flagged_until_the_reload_that_agrees():
    with Fleet(extra=("", "\n[harvest]\ntarpit_after = 4\n")) as fl:
        a, b = fl.daemons
        # two configs, one each: no majority, both flagged
        v = wait_fleet(a, lambda v: len(v["instances"]) == 2, "both records")
        assert [i["config_differs"] for i in v["instances"]] == [True, True]
        assert v["majority"]["digest"] is None
        assert "majority: config none (a tie), version 0.1.0" in a.ctl("fleet").stdout
        # b is given a's settings and reloaded: its new digest is published
        with open(b.conf) as f:
            conf = f.read()
        with open(b.conf, "w") as f:
            f.write(conf.replace("\n[harvest]\ntarpit_after = 4\n", ""))
        b.ctl("reload")
        v = wait_fleet(a, lambda v: len({i["digest"] for i in v["instances"]}) == 1,
                       "b's new digest")
        assert [i["config_differs"] for i in v["instances"]] == [False, False]


def test_offenders_fleet_wide_from_the_bounded_index():
    with Fleet() as fl:
        a, b = fl.daemons
        # 192.0.2.9 asks a for 8 unknown recipients (blocked at 8),
        # 203.0.113.5 asks b for four (tarpit), 198.51.100.7 b for one (watch)
        for i in range(8):
            a.ask(client_address="192.0.2.9", recipient="ghost%d@example.com" % i)
        for i in range(4):
            b.ask(client_address="203.0.113.5", recipient="nobody%d@example.com" % i)
        b.ask(client_address="198.51.100.7", recipient="nobody@example.com")

        # merges reach Redis within EVIDENCE_FLUSH_MS: wait for the last one
        def rows():
            out = a.ctl("offenders").stdout.splitlines()
            cells = [l.split() for l in out[1:]]
            seen = [(c[0], c[4]) for c in cells]
            return (out, cells) if seen == [("192.0.2.9/32", "blocked"),
                                            ("203.0.113.5/32", "tarpit"),
                                            ("198.51.100.7/32", "watch")] else None
        out, cells = wait_for(rows, timeout=10, interval=0.1, what="three offenders")
        assert out[0] == OFF_HEADER
        # counts fade (half-life 600 s): compare them rounded
        assert [(round(float(c[1])), c[2], c[3]) for c in cells] == \
            [(8, "0.0", "0.0"), (4, "0.0", "0.0"), (1, "0.0", "0.0")]
        assert re.fullmatch(r"4m5\d+s|5m00s", cells[0][5])     # of block_time 300 s
        j = json.loads(b.ctl("offenders", "1", "--json").stdout)
        assert j["source"] == "redis"
        assert [(o["network"], o["stage"]) for o in j["offenders"]] == \
            [("192.0.2.9/32", "blocked")]
        assert 290 <= j["offenders"][0]["left_s"] <= 300

        # an unblocked network leaves the view (and the index) at once
        a.ctl("unblock", "192.0.2.9")
        out = b.ctl("offenders").stdout.splitlines()
        assert [l.split()[0] for l in out[1:]] == ["203.0.113.5/32", "198.51.100.7/32"]
        with fl.redis.client() as r:
            assert r.call("ZSCORE", PREFIX + "offenders", PREFIX + "e:192.0.2.9/32") is None

        bad = a.ctl("offenders", "0", check=False)
        assert (bad.returncode, bad.stderr) == \
            (1, "policyctl: usage: offenders [N] [json] (N: 1 to 100)\n")


def test_the_offenders_index_keeps_at_most_1000():
    with Fleet(n=1, extra=("\n[harvest]\nipv4_wide_prefix = 24\n"
                           "\n[siege]\naction = off\n",)) as fl:
        (a,) = fl.daemons
        # 600 clients, each in its own /24: 1,200 standings (the /32 and
        # the wide /24 of each), one request per connection turn
        with a.client() as c:
            for i in range(600):
                assert c.ask(client_address="10.%d.%d.1" % (i // 250, i % 250),
                             recipient="ghost@example.com") == "550 5.1.1 User unknown"
        with fl.redis.client() as r:
            wait_for(lambda: len(r.keys(PREFIX + "e:*")) == 1200, timeout=15,
                     what="every standing merged")
            assert r.call("ZCARD", PREFIX + "offenders") == 1000
        out = a.ctl("offenders", "100").stdout.splitlines()
        assert len(out) == 101


def test_without_redis_each_view_shows_this_daemon():
    with Daemon(extra="\n[harvest]\ntarpit_after = 3\nblock_after = 8\n"
                      "ipv4_wide_prefix = 0\n") as d:
        for i in range(3):
            d.ask(client_address="192.0.2.77", recipient="ghost%d@example.com" % i)
        v = fleet_json(d)
        assert v["source"] == "local"
        assert [(i["name"], i["self"], i["redis"]) for i in v["instances"]] == \
            [("%s/127.0.0.1:%d" % (HOST, d.port), True, "down")]
        assert v["instances"][0]["verdicts"]["unknown"] == 3
        j = json.loads(d.ctl("offenders", "--json").stdout)
        assert j["source"] == "local"
        assert [(o["network"], round(o["invalid"]), o["stage"]) for o in j["offenders"]] == \
            [("192.0.2.77/32", 3, "tarpit")]


def test_with_redis_away_the_views_say_so():
    with Fleet(n=1) as fl:
        (a,) = fl.daemons
        fl.redis.stop()
        v = fleet_json(a)
        assert v["source"] == "local (redis did not answer)"
        assert [i["self"] for i in v["instances"]] == [True]
        j = json.loads(a.ctl("offenders", "--json").stdout)
        assert j == {"source": "local (redis did not answer)", "offenders": []}

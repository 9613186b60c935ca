"""The Redis store through the real daemon, against real redis-server and
redis-sentinel processes started here on free loopback ports.

Cache keys are PREFIX "c:" DIGEST ":" ADDRESS with "1"/"0" values; a
client network's harvest standing is PREFIX "e:" NETWORK, the wire form
"INVALID VALID TRAPS T_MS BLOCK_UNTIL_MS" of policyd/score.h, merged by the
daemon at most 50 ms after the answer (so read with wait_fleet); the tests
read and write them directly with the tiny RESP client of
tests/pylib/redis.py, and see what the daemon asked Redis with its Monitor
(the "cache" stats count every read of the store, not only cache reads: see
test_cache_stats_count_only_cache_reads).

Harvest counting is on, with thresholds out of reach at both levels, and
the siege is off: these tests are about the store, and their loads send
hundreds of unknown recipients (test_harvest*.py and test_siege.py test
the defences).
"""
import json
import threading
import time

import pytest

from harness import Daemon, check_long_pipeline, wait_for
from load import Load
from harvest import explain, fleet, wait_fleet, whole
from redis import (Monitor, RedisServer, SentinelSet, assert_pttl, reads_of,
                   wait_for_key)

PREFIX = "t:"
UNKNOWN = "550 5.1.1 User unknown"


def redis_conf(address=None, sentinels=None, master_name="mymaster",
               prefix=PREFIX, timeout="0.25", connect_timeout="0.5",
               password=None, db=None, local_size=0, local_ttl=1, positive_ttl=60,
               negative_ttl=30, tarpit_after=100000, block_after=200000):
    lines = ["", "[redis]"]
    if address:
        lines.append("address = " + address)
    if sentinels:
        lines += ["sentinels = " + sentinels, "master_name = " + master_name]
    lines += ["prefix = " + prefix, "timeout = " + timeout,
              "connect_timeout = " + connect_timeout]
    if password:
        lines.append("password = " + password)
    if db is not None:
        lines.append("db = %d" % db)
    lines += ["", "[cache]",
              "positive_ttl = %s" % positive_ttl,
              "negative_ttl = %s" % negative_ttl,
              "local_size = %d" % local_size,
              "local_ttl = %s" % local_ttl,
              "", "[harvest]",
              "tarpit_after = %d" % tarpit_after,
              "block_after = %d" % block_after,
              "block_ceiling = 0",
              "wide_tarpit_after = %d" % tarpit_after,
              "wide_block_after = %d" % block_after,
              "wide_block_ceiling = 0",
              "", "[siege]", "action = off", ""]
    return "\n".join(lines)


def stats(d):
    return json.loads(d.ctl("stats", "--json").stdout)


def up_count(d):
    return d.read_log().count("redis: up:")


def wait_up(d, n=1, timeout=10.0):
    wait_for(lambda: up_count(d) >= n, timeout, what="redis up #%d" % n)


def cache_keys(r, addr, prefix=PREFIX):
    return [k for k in r.keys(prefix + "c:*") if k.endswith(b":" + addr.encode())]


def cache_key(r, addr, value=None):
    """addr's one cached answer, waited for: the SET that stores an answer
    leaves after the reply."""
    return wait_for_key(r, PREFIX + "c:*:" + addr, value).decode()


def evidence_keys(net, wide):
    """The two standings a request from net reads, narrow and wide."""
    return [PREFIX + "e:" + net, PREFIX + "e:" + wide]


def read_together(cmds, keys):
    """1 when one MGET of the daemon's read every key in keys."""
    return any(src == "client" and args[0] == "MGET" and all(k in args for k in keys)
               for src, args in cmds)


@pytest.fixture
def redis_server():
    with RedisServer() as r:
        yield r


def daemon_for(r, **kw):
    return Daemon(redis_conf(address="127.0.0.1:%d" % r.port, **kw))


def test_pipelined_requests_behind_a_redis_read_are_all_answered(redis_server):
    """A peer pipelines far more than request_limit (32 KiB) of requests
    while each waits on Redis: the rest of a 64 KiB read lands behind a
    decision.  It used to be taken for one over-long request: the
    connection was closed with no answer at all.  Now every request is
    answered, in order, and reading pauses instead."""
    with daemon_for(redis_server) as d:
        wait_up(d)
        check_long_pipeline(d, client_address=lambda i: "10.%d.%d.1" % (i // 250, i % 250))


# ---- cache ----------------------------------------------------------------

def test_miss_then_hit_and_negative_caching(redis_server):
    r = redis_server
    with daemon_for(r, positive_ttl=60, negative_ttl=30) as d, Monitor(r) as m:
        wait_up(d)
        m.commands()
        t0 = time.monotonic()
        assert d.ask(recipient="user@example.com") == "DUNNO"
        assert d.ask(recipient="nobody@example.com") == UNKNOWN
        pos = cache_key(r, "user@example.com", b"1")
        neg = cache_key(r, "nobody@example.com", b"0")
        assert_pttl(r, pos, 60000, t0)
        assert_pttl(r, neg, 30000, t0)
        cmds = m.commands()
        # each answer read Redis once, missed, and asked the directory; its
        # cache key went in one MGET with its client's two standings
        assert (reads_of(cmds, pos), reads_of(cmds, neg)) == (1, 1)
        ev = evidence_keys("192.0.2.10/32", "192.0.2.0/24")
        assert read_together(cmds, [pos] + ev) and read_together(cmds, [neg] + ev)
        s = stats(d)
        assert s["directory"]["queries"] == 2

        # both answers now come from Redis, not the directory
        assert d.ask(recipient="user@example.com") == "DUNNO"
        assert d.ask(recipient="nobody@example.com") == UNKNOWN
        cmds = m.commands()
        assert (reads_of(cmds, pos), reads_of(cmds, neg)) == (1, 1)
        s = stats(d)
        assert s["directory"]["queries"] == 2
        assert s["redis"]["up"] is True and s["redis"]["errors"] == 0

        # proof the answer is Redis's: flip the cached values
        r.call("SET", pos, "0")
        r.call("SET", neg, "1")
        assert d.ask(recipient="user@example.com") == UNKNOWN
        assert d.ask(recipient="nobody@example.com") == "DUNNO"


@pytest.mark.timing
def test_expiry(redis_server):
    r = redis_server
    with daemon_for(r, positive_ttl="3", negative_ttl="1.5") as d:
        wait_up(d)
        t0 = time.monotonic()
        assert d.ask(recipient="user@example.com") == "DUNNO"
        assert d.ask(recipient="nobody@example.com") == UNKNOWN
        pos, neg = cache_key(r, "user@example.com"), cache_key(r, "nobody@example.com")
        assert assert_pttl(r, pos, 3000, t0) > 0
        assert assert_pttl(r, neg, 1500, t0) > 0
        wait_for(lambda: r.call("EXISTS", neg) == 0, 5, what="negative entry to expire")
        assert r.call("EXISTS", pos) == 1        # the positive one lives longer
        wait_for(lambda: r.call("EXISTS", pos) == 0, 5, what="positive entry to expire")
        q = stats(d)["directory"]["queries"]
        assert d.ask(recipient="user@example.com") == "DUNNO"
        assert stats(d)["directory"]["queries"] == q + 1   # a miss again
        cache_key(r, "user@example.com", b"1")


FIXED_CONF = """
[server]
listen = {{listen}}
control = unix:{{control}}
idle_timeout = 60
allow_root = yes

[directory]
backend = file
file = {file}
domains = example.com example.org

[actions]
unknown = 550 5.1.1 User unknown
"""


@pytest.fixture
def recipients_file(tmp_path):
    """One recipients file for several daemons: the directory digest in the
    cache keys covers the file's path, so they must share it."""
    path = tmp_path / "recipients"
    path.write_text("user@example.com\nalice@example.com\n")
    return path


def fixed_daemon(path, r):
    return Daemon(conf=FIXED_CONF.format(file=path) +
                  redis_conf(address="127.0.0.1:%d" % r.port))


def test_cached_answers_survive_a_restart(redis_server, recipients_file):
    r = redis_server
    with fixed_daemon(recipients_file, r) as d:
        wait_up(d)
        assert d.ask(recipient="user@example.com") == "DUNNO"
        assert d.ask(recipient="nobody@example.com") == UNKNOWN
        assert stats(d)["directory"]["queries"] == 2
        cache_key(r, "user@example.com", b"1")
        cache_key(r, "nobody@example.com", b"0")
    with fixed_daemon(recipients_file, r) as d2, Monitor(r) as m:
        wait_up(d2)
        m.commands()
        assert d2.ask(recipient="user@example.com") == "DUNNO"
        assert d2.ask(recipient="nobody@example.com") == UNKNOWN
        s = stats(d2)
        assert s["directory"]["queries"] == 0, s
        # each answer was read from Redis, once
        cmds = m.commands()
        assert [reads_of(cmds, k) for k in (cache_key(r, "user@example.com"),
                                            cache_key(r, "nobody@example.com"))] == [1, 1]


def test_changed_directory_never_serves_old_answers(redis_server, recipients_file):
    r = redis_server
    with fixed_daemon(recipients_file, r) as d:
        wait_up(d)
        assert d.ask(recipient="alice@example.com") == "DUNNO"
        old = cache_key(r, "alice@example.com", b"1")
    # alice leaves the directory: the cached "1" must not be used
    recipients_file.write_text("user@example.com\n")
    with fixed_daemon(recipients_file, r) as d2:
        wait_up(d2)
        assert d2.ask(recipient="alice@example.com") == UNKNOWN
        assert stats(d2)["directory"]["queries"] == 1
    # the new directory's answer sits under a key of its own, beside the old
    keys = wait_for(lambda: (lambda ks: ks if len(ks) == 2 else None)(
        cache_keys(r, "alice@example.com")), 10, what="alice's second cache key")
    assert sorted(r.call("GET", k) for k in keys) == [b"0", b"1"]
    assert r.call("GET", old) == b"1"


@pytest.mark.timing
def test_l1_in_front_of_redis(redis_server):
    r = redis_server
    with daemon_for(r, local_size=100, local_ttl=3) as d, Monitor(r) as m:
        wait_up(d)
        m.commands()
        t0 = time.monotonic()
        assert d.ask(recipient="user@example.com") == "DUNNO"
        # the daemon's own SET must have landed before ours replaces it
        key = cache_key(r, "user@example.com", b"1")
        r.call("SET", key, "0")
        assert reads_of(m.commands(), key) == 1         # the first miss
        # L1 (local_ttl = 3 s) answers first, then Redis's value shows
        assert d.ask(recipient="user@example.com") == "DUNNO"
        assert time.monotonic() - t0 < 3, "too slow to see the L1 entry alive"
        assert stats(d)["cache"]["l1_hits"] == 1
        assert reads_of(m.commands(), key) == 0
        wait_for(lambda: d.ask(recipient="user@example.com") == UNKNOWN, 10,
                 interval=0.2, what="L1 entry to expire")
        # only the answer that found the L1 entry gone read Redis
        assert reads_of(m.commands(), key) == 1


def test_reads_are_batched_into_mget(redis_server):
    """Each request reads three keys (its cached answer and its client's
    two standings); concurrent requests share MGETs, and no read goes
    alone (the merge script's own GETs run inside Redis)."""
    r = redis_server
    with daemon_for(r) as d, Monitor(r) as m:
        wait_up(d)
        for addr in ("user@example.com", "alice@example.com", "nobody@example.com"):
            d.ask(recipient=addr)               # cached in Redis now
        keys = [cache_key(r, a) for a in ("user@example.com", "alice@example.com",
                                          "nobody@example.com")]
        m.commands()
        wrong = []

        def client(i):
            try:
                with d.client() as c:
                    for n in range(50):
                        addr = ("user@example.com", "alice@example.com",
                                "nobody@example.com")[n % 3]
                        want = UNKNOWN if n % 3 == 2 else "DUNNO"
                        got = c.ask(recipient=addr, client_address="10.7.%d.%d" % (i, n))
                        if got != want:
                            wrong.append((addr, got))
            except Exception as e:      # noqa: BLE001 - reported below
                wrong.append(repr(e))

        threads = [threading.Thread(target=client, args=(i,)) for i in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not any(t.is_alive() for t in threads)
        assert wrong == []
        cmds = m.commands()
    client = [args for src, args in cmds if src == "client"]
    assert [a for a in client if a[0].upper() == "GET"] == []   # every read in an MGET
    assert sum(reads_of(cmds, k) for k in keys) == 1000          # one a request
    nets = {PREFIX + "e:10.7.%d.%d/32" % (i, n) for i in range(20) for n in range(50)} | \
        {PREFIX + "e:10.7.%d.0/24" % i for i in range(20)}
    standings = sum(1 for a in client if a[0] == "MGET" for k in a[1:] if k in nets)
    assert standings == 2000                                     # two a request
    # 1000 requests, 3000 reads: fewer MGETs than requests means batching
    mgets = sum(1 for a in client if a[0] == "MGET" and any(k in a for k in keys))
    print("\n1000 requests, 3000 reads: %d MGETs" % mgets)
    assert 0 < mgets < 1000, mgets


def test_cache_stats_count_only_cache_reads(redis_server):
    """`policyctl stats` shows Redis hits and misses under "cache": two
    answers, one a miss and one a hit, are one of each, however many other
    keys (the siege's poll, once a second) the daemon read meanwhile."""
    r = redis_server
    with Daemon(redis_conf(address="127.0.0.1:%d" % r.port) +
                "[harvest]\nenabled = no\n") as d, Monitor(r) as m:
        wait_up(d)
        assert d.ask(recipient="user@example.com") == "DUNNO"
        key = cache_key(r, "user@example.com", b"1")
        m.commands()
        wait_for(lambda: any(a[0] == "MGET" and any(k.startswith(PREFIX + "siege:")
                                                    for k in a)
                             for src, a in m.commands() if src == "client"),
                 10, what="a siege poll after the answer")
        # the poll's reply comes back before this read's, on the same
        # connection: a barrier, so the poll is counted if it ever is
        assert d.ask(recipient="user@example.com") == "DUNNO"
        assert reads_of(m.commands(), key) == 1
        s = stats(d)
    assert (s["cache"]["redis_hits"], s["cache"]["redis_misses"]) == (1, 1)


def test_auth_and_db():
    with RedisServer(password="s3cr3t pass") as r:
        with daemon_for(r, password="s3cr3t pass", db=3) as d:
            wait_up(d)
            assert d.ask(recipient="user@example.com") == "DUNNO"
            with r.client() as c:
                c.call("SELECT", 3)
                # the write-back is not waited for: give it a moment
                wait_for(lambda: len(c.keys("t:c:*")) == 1, 10, what="write-back in db 3")
                c.call("SELECT", 0)
                assert c.keys("*") == []
        # a wrong password: logged once, every answer still right.  Long
        # timeouts: the first failure's reason is the one logged, and on a
        # loaded machine (valgrind) a 0.25 s timeout could come first
        with daemon_for(r, password="wrong", timeout="5", connect_timeout="5") as d, \
                r.client() as watch:
            d.wait_log("redis: unavailable")
            assert d.ask(recipient="user@example.com") == "DUNNO"
            assert d.ask(recipient="nobody@example.com") == UNKNOWN
            # two more refused attempts (each a new connection), not a pause
            base = connections_received(watch)
            wait_for(lambda: connections_received(watch) >= base + 2, 15,
                     what="two more connection attempts")
            log = d.read_log()
            assert "WRONGPASS" in log
            assert log.count("redis: unavailable") == 1
            assert "redis: up" not in log


def connections_received(r):
    """redis-server's count of connections accepted so far (INFO stats)."""
    for line in r.call("INFO", "stats").decode().splitlines():
        if line.startswith("total_connections_received:"):
            return int(line.split(":")[1])
    raise AssertionError("no total_connections_received in INFO stats")


def test_flush_escapes_glob_characters_in_prefix():
    prefix = "p*[x]?:"
    with RedisServer() as r:
        with daemon_for(r, prefix=prefix) as d:
            wait_up(d)
            assert d.ask(recipient="user@example.com") == "DUNNO"
            assert d.ask(recipient="nobody@example.com") == UNKNOWN
            wait_for(lambda: len(r.keys("p\\*\\[x\\]\\?:c:*")) == 2, 10,
                     what="both answers written back")
            wait_fleet(r, prefix, "192.0.2.10/32", 1, 1)
            wait_fleet(r, prefix, "192.0.2.0/24", 1, 1)
            standings = r.keys("p\\*\\[x\\]\\?:e:*")
            before = [r.call("GET", k) for k in standings]
            # matched by the prefix taken as a glob, not by the literal prefix
            r.call("SET", "pAB[x]Z:c:decoy", "1")
            r.call("SET", "pQx?:c:decoy2", "1")
            out = d.ctl("flush", "--all").stdout
            assert "2 shared entries" in out, out
            assert r.keys("p\\*\\[x\\]\\?:c:*") == []
            assert r.call("GET", "pAB[x]Z:c:decoy") == b"1"
            assert r.call("GET", "pQx?:c:decoy2") == b"1"
            # the standings of this prefix are untouched by a cache flush
            assert standings == [b"p*[x]?:e:192.0.2.0/24", b"p*[x]?:e:192.0.2.10/32"]
            assert [r.call("GET", k) for k in standings] == before


# ---- counters -------------------------------------------------------------

def test_counter_atomic_with_expiry(redis_server):
    """Each level's standing is merged (one script, atomic) and kept 12
    half-lives ([harvest] window, default 1 h) from its last merge."""
    r = redis_server
    with daemon_for(r) as d:
        wait_up(d)
        t0 = time.monotonic()
        for i in range(3):
            assert d.ask(recipient="n%d@example.com" % i,
                         client_address="192.0.2.10") == UNKNOWN
        # recorded after each answer, merged within 50 ms: waited for
        for net in ("192.0.2.10/32", "192.0.2.0/24"):
            wait_fleet(r, PREFIX, net, 3, 0)
            assert fleet(r, PREFIX, net)[2:5:2] == (0.0, 0)    # no trap, no block
            assert_pttl(r, PREFIX + "e:" + net, 12 * 3600000, t0)
        out = d.ctl("client", "192.0.2.10").stdout.splitlines()
        assert out[1:4] == ["network: 192.0.2.10/32", "invalid: 3.00", "valid: 0.00"]
        assert out.count("scope: fleet (redis)") == 2, out
        assert d.ctl("unblock", "192.0.2.10").stdout == \
            "192.0.2.10/32 and 192.0.2.0/24: standing and block removed\n"
        assert r.keys(PREFIX + "e:*") == []


def narrow_view(d, ip):
    """(invalid, valid, scope) of ip's own network, as `policyctl client`
    shows it: the store's standing plus what only d has seen."""
    n = explain(d, ip)["narrow"]
    return whole(n["invalid"]), whole(n["valid"]), n["scope"]


def test_two_daemons_share_one_count(redis_server):
    r = redis_server
    conf = redis_conf(address="127.0.0.1:%d" % r.port)
    with Daemon(conf) as a, Daemon(conf) as b:
        wait_up(a)
        wait_up(b)
        for i in range(2):
            assert a.ask(recipient="a%d@example.com" % i, client_address="192.0.2.20") == UNKNOWN
        for i in range(3):
            assert b.ask(recipient="b%d@example.com" % i, client_address="192.0.2.20") == UNKNOWN
        wait_fleet(r, PREFIX, "192.0.2.20/32", 5)
        # each sees the shared count
        assert narrow_view(a, "192.0.2.20") == narrow_view(b, "192.0.2.20") == (5, 0, "fleet")
        assert a.ask(recipient="a9@example.com", client_address="192.0.2.20") == UNKNOWN
        wait_fleet(r, PREFIX, "192.0.2.20/32", 6)
        assert narrow_view(a, "192.0.2.20") == narrow_view(b, "192.0.2.20") == (6, 0, "fleet")


def test_counting_falls_back_to_memory_and_resumes():
    r = RedisServer()               # not started: the port is closed
    try:
        with daemon_for(r) as d:
            d.wait_log("redis: unavailable")
            for i in range(3):
                assert d.ask(recipient="x%d@example.com" % i,
                             client_address="192.0.2.30") == UNKNOWN
            # counted in memory
            assert narrow_view(d, "192.0.2.30") == (3, 0, "this process")
            s = stats(d)
            assert s["redis"]["up"] is False
            r.start()
            wait_up(d, 1, timeout=15)               # backoff is at most 5 s
            # what was counted in memory is added back, once
            wait_fleet(r, PREFIX, "192.0.2.30/32", 3)
            assert d.ask(recipient="x9@example.com", client_address="192.0.2.31") == UNKNOWN
            wait_fleet(r, PREFIX, "192.0.2.31/32", 1)   # counting in Redis again
            wait_fleet(r, PREFIX, "192.0.2.0/24", 4)
            assert narrow_view(d, "192.0.2.30") == (3, 0, "fleet")
            assert stats(d)["redis"]["up"] is True
            assert d.read_log().count("redis: unavailable") == 1
    finally:
        r.cleanup()


# ---- outages --------------------------------------------------------------

def mixed(i, n):
    """Known and unknown recipients in turn, one client address a worker."""
    known = n % 2 == 0
    rcpt = "user@example.com" if known else "u%d-%d@example.com" % (i, n % 50)
    return ({"recipient": rcpt, "client_address": "198.51.100.%d" % (i + 1)},
            {"DUNNO" if known else UNKNOWN})


@pytest.mark.timing
def test_sigkill_under_load_every_request_answered(redis_server):
    r = redis_server
    with daemon_for(r) as d:
        wait_up(d)
        with Load(d, mixed) as load:
            wait_for(lambda: load.count() > 200, 10, what="load to run")
            r.kill()
            n_kill = load.count()
            wait_for(lambda: load.count() > n_kill + 50, 10,
                     what="answers while Redis is dead")
            r.restart()
            wait_up(d, 2, timeout=15)
            n_back = load.count()
            wait_for(lambda: load.count() > n_back + 100, 10, what="load after return")
        assert load.errors == []
        assert load.wrong == []
        assert load.max_latency < 2.0, load.max_latency
        log = d.read_log()
        assert log.count("redis: down") == 1, log
        assert log.count("redis: unavailable") == 0
        s = stats(d)
        assert s["redis"]["up"] is True and s["redis"]["reconnects"] == 1
        # counting resumed in the new (empty) Redis
        assert d.ask(recipient="zz@example.com", client_address="192.0.2.40") == UNKNOWN
        wait_fleet(r, PREFIX, "192.0.2.40/32", 1)
        cache_key(r, "user@example.com", b"1")   # written back again


@pytest.mark.timing
def test_sigstop_slow_redis_times_out_and_recovers(redis_server):
    r = redis_server
    with daemon_for(r, timeout="0.2") as d:
        wait_up(d)
        assert d.ask(recipient="user@example.com") == "DUNNO"
        r.sigstop()
        try:
            for i in range(6):
                # the first request's commands all time out; its count must
                # still land in process memory
                t0 = time.monotonic()
                assert d.ask(recipient="s%d@example.com" % i,
                             client_address="192.0.2.50") == UNKNOWN
                assert d.ask(recipient="alice@example.com") == "DUNNO"
                assert time.monotonic() - t0 < 1.5
            d.wait_log("redis: down")
            # counted in memory meanwhile
            assert narrow_view(d, "192.0.2.50") == (6, 0, "this process")
            assert stats(d)["redis"]["errors"] >= 3
        finally:
            r.sigcont()
        wait_up(d, 2, timeout=15)
        # Redis gets the 6 once: neither lost nor counted twice by the
        # merges that timed out while it was stopped
        wait_fleet(r, PREFIX, "192.0.2.50/32", 6)
        assert d.ask(recipient="s9@example.com", client_address="192.0.2.51") == UNKNOWN
        wait_fleet(r, PREFIX, "192.0.2.51/32", 1)
        assert narrow_view(d, "192.0.2.50") == (6, 0, "fleet")
        assert d.read_log().count("redis: down") == 1


# ---- sentinel ---------------------------------------------------------------

def test_sentinel_failover_is_followed():
    with SentinelSet(down_after=1000, failover_timeout=5000) as ss:
        old_port, new_port = ss.master.port, ss.replica.port
        with Daemon(redis_conf(sentinels=ss.sentinel_list())) as d:
            d.wait_log("redis: up: 127.0.0.1:%d (master via sentinel)" % old_port)
            assert d.ask(recipient="nobody@example.com", client_address="192.0.2.60") == UNKNOWN
            wait_fleet(ss.master, PREFIX, "192.0.2.60/32", 1)
            with Load(d, mixed, workers=2) as load:
                wait_for(lambda: load.count() > 50, 10, what="load to run")
                ss.failover()
                d.wait_log("redis: up: 127.0.0.1:%d (master via sentinel)" % new_port,
                           timeout=20)
                n = load.count()
                wait_for(lambda: load.count() > n + 50, 10, what="load after failover")
            assert load.errors == [] and load.wrong == []
            assert ss.master.port == new_port
            assert d.ask(recipient="nobody2@example.com", client_address="192.0.2.61") == UNKNOWN
            wait_fleet(ss.master, PREFIX, "192.0.2.61/32", 1)
            # the standing made before the failover is on the new master
            wait_fleet(ss.master, PREFIX, "192.0.2.60/32", 1)
            cache_key(ss.master, "nobody2@example.com", b"0")
            assert stats(d)["redis"]["up"] is True

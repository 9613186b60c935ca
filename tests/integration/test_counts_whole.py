"""Counts stay whole (issue 11, point 4): evidence that Redis refuses or
loses is kept, used and given back, against real redis-server processes.

Standings live under PREFIX "e:" NETWORK as "INVALID VALID TRAPS T_MS
BLOCK_UNTIL_MS" (policyd/score.h).  Two layers are tested:

- the merge script and evidence.c through counts_driver.c (built here
  against the built libpolicyd.a): the script's arithmetic against
  score.c's, and the table's pending deltas through OOM, a READONLY
  replica, a WRONGTYPE key, SIGKILL and restart, NOSCRIPT;
- the daemon, with block_after = 3: a request is judged on the standing
  before it, then its outcome recorded, so the 3rd unknown recipient is
  answered as unknown and earns the block the 4th request gets, valid or
  not, whatever the store did meanwhile; and at a stop (SIGTERM) or a
  reload to another store, every network's count recorded just before
  still reaches Redis (the closing store lingers for its writes).
"""
import asyncio
import os
import random
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from harness import BUILD, Daemon, free_port, request, stop_process, wait_for
from redis import Monitor, RedisServer, RespError

PREFIX = "t:"
IP = "127.0.0.1"
NET = "127.0.0.1/32"
KEY = PREFIX + "e:" + NET
UNKNOWN = "550 5.1.1 User unknown"
BLOCKED = "450 4.7.1 Too many invalid recipients, try again later"
HERE = os.path.dirname(os.path.abspath(__file__))


# ---- the driver ----------------------------------------------------------

@pytest.fixture(scope="module")
def driver_bin(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("driver") / "counts_driver")
    pc = lambda *a: subprocess.run(["pkg-config"] + list(a), check=True,
                                   capture_output=True, text=True).stdout.split()
    san = ["-fsanitize=address,undefined"] \
        if os.path.basename(os.path.normpath(BUILD)) == "build-san" else []
    subprocess.run(["cc", "-std=c11", "-D_POSIX_C_SOURCE=200809L", "-D_DEFAULT_SOURCE",
                    "-O1", "-g"] + san + pc("--cflags", "libuv", "hiredis")
                   + ["-o", out, os.path.join(HERE, "counts_driver.c"),
                      os.path.join(BUILD, "libpolicyd.a")]
                   + pc("--libs", "libuv", "hiredis", "ldap", "inih")
                   + ["-llber", "-lhttp_parser", "-lm"], check=True)
    return out


class Driver:
    """counts_driver drive: one evidence table over one Redis."""

    def __init__(self, binary, tmp, port, window=3600):
        conf = os.path.join(str(tmp), "driver.conf")
        with open(conf, "w") as f:
            f.write("[directory]\nbackend = file\nfile = /dev/null\n"
                    "domains = example.com\n[redis]\naddress = 127.0.0.1:%d\n"
                    "prefix = %s\ntimeout = 0.25\nconnect_timeout = 0.5\n"
                    "[harvest]\nwindow = %d\n" % (port, PREFIX, window))
        self.log = open(os.path.join(str(tmp), "driver.log"), "w")
        self.proc = subprocess.Popen([binary, "drive", conf], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.log, text=True)

    def cmd(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def wait_up(self):
        assert self.cmd("wait_up 10000") == "up"

    def record(self, net=NET, invalid=1, valid=0, traps=0, block_ms=0):
        assert self.cmd("record %s %g %g %g %d" % (net, invalid, valid, traps,
                                                   block_ms)) == "ok"

    def read(self, net=NET):
        """(invalid, valid, traps, blocked, from_store)"""
        f = self.cmd("read " + net).split()
        return float(f[0]), float(f[1]), float(f[2]), f[3] == "1", f[4] == "1"

    def run(self, ms):
        assert self.cmd("run %d" % ms) == "ok"

    def close(self):
        assert self.cmd("quit") == "bye"
        assert self.proc.wait(30) == 0
        self.log.close()


@pytest.fixture
def redis():
    with RedisServer() as r:
        yield r


@pytest.fixture
def driver(driver_bin, redis, tmp_path):
    d = Driver(driver_bin, tmp_path, redis.port)
    d.wait_up()
    yield d
    d.close()


def stored(r, key=KEY):
    """The standing in Redis as floats, or None."""
    v = r.call("GET", key)
    return None if v is None else [float(x) for x in v.decode().split()]


def wait_stored(r, pred, what, timeout=10.0, poke=None):
    """Poll Redis until pred(standing); poke() runs between polls (it keeps
    a driver's loop turning, which is what flushes)."""
    def ok():
        if poke:
            poke()
        s = stored(r)
        return s is not None and pred(s)
    wait_for(ok, timeout, what=what)
    return stored(r)


def now_ms():
    return int(time.time() * 1000)


# ---- the merge script against score.c ------------------------------------

def wire(inv, val, traps, t, until):
    return "%.6f %.6f %.6f %d %d" % (inv, val, traps, t, until)


def load_script(driver_bin, redis):
    """The merge script as built (counts_driver prints it): its sha."""
    body = subprocess.run([driver_bin, "script"], check=True, capture_output=True,
                          text=True).stdout
    return redis.call("SCRIPT", "LOAD", body)


def test_merge_script_agrees_with_score_c(driver_bin, redis):
    """The same stored value, delta and floor: the script's answer and
    score_add + score_max agree within 1e-6, and so does the stored key;
    its life is the ttl or the block's, whichever is longer; up to 32
    standings a call, and a key of another type is refused alone."""
    sha = load_script(driver_bin, redis)
    rnd = random.Random(11)
    now = 1700000000000
    cases = [  # (stored or None or junk, delta, floor or "", now, half-life)
        (None, wire(1, 0, 0, now, 0), "", now, 3600000),
        (wire(4, 2, 0, now - 3600000, now + 5), wire(1, 0, 1, now, 0), "", now, 3600000),
        (wire(4, 2, 0, now + 1000, 0), wire(1, 1, 0, now, 0), "", now, 60000),
        (wire(1, 9, 0, now - 120000, 0), wire(0, 0, 0, now, 0),
         wire(8, 1, 1, now - 60000, now + 99000), now, 60000),
        ("not a standing", wire(2, 0, 0, now, now + 10), wire(1, 1, 0, now, 0), now, 1000),
        ("-1 0 0 0 0", wire(1, 0, 0, now, 0), "", now, 1000),
    ]
    for _ in range(200):
        t = now - rnd.randrange(0, 4 * 3600000)
        cases.append((
            wire(rnd.uniform(0, 500), rnd.uniform(0, 5000), rnd.choice([0, 0, 1.5]), t,
                 rnd.choice([0, t + rnd.randrange(0, 7200000)])),
            wire(rnd.choice([0, 1]), rnd.choice([0, 1]), rnd.choice([0, 0, 1]), now,
                 rnd.choice([0, 0, now + 3600000])),
            rnd.choice(["", wire(rnd.uniform(0, 900), rnd.uniform(0, 900), 0,
                                 now - rnd.randrange(0, 3600000), 0)]),
            now, rnd.choice([1000, 60000, 3600000])))
    lines = "".join("%s|%s|%s|%d|%d\n" % (s if s is not None else "", d, f, n, h)
                    for s, d, f, n, h in cases)
    expected = subprocess.run([driver_bin, "expect"], input=lines, check=True,
                              capture_output=True, text=True).stdout.split("\n")
    with redis.client() as r:
        for i, (s, d, f, n, h) in enumerate(cases):
            if s is not None:
                r.call("SET", "t:e:case%d" % i, s)
        # one call folds up to 32 standings; a call shares now and the half-life
        groups = {}
        for i, (s, d, f, n, h) in enumerate(cases):
            groups.setdefault((n, h), []).append(i)
        for (n, h), idx in groups.items():
            for at in range(0, len(idx), 32):
                part = idx[at:at + 32]
                keys = ["t:e:case%d" % i for i in part]
                # the delta as its five fields, the floor whole
                argv = [x for i in part for x in cases[i][1].split() + [cases[i][2]]]
                got = r.call("EVALSHA", sha, len(part) + 2, *keys, "t:offenders",
                             "t:m:%d:%d:%d" % (n, h, at), n, h, 600000, 1000, 300000, *argv)
                assert len(got) == len(part)
                for i, key, g in zip(part, keys, got):
                    assert g.decode() == r.call("GET", key).decode()
                    want = [float(x) for x in expected[i].split()]
                    have = [float(x) for x in g.decode().split()]
                    assert len(have) == 5, g
                    for w, v in zip(want, have):
                        assert abs(w - v) <= 1e-6 * max(1.0, abs(w)), (i, expected[i], g)
                    life = r.call("PTTL", key)
                    assert max(600000, want[4] - n) - 2000 <= life <= max(600000, want[4] - n)
        # a key of another type is refused alone: nil for it, its neighbours merged
        r.call("LPUSH", "t:e:list", "x")
        call = ("EVALSHA", sha, 4, "t:e:list", "t:e:next", "t:offenders", "t:m:list",
                now, 1000, 1000, 1000, 300000, *wire(1, 0, 0, now, 0).split(), "",
                *wire(2, 0, 0, now, 0).split(), "")
        got = r.call(*call)
        assert got[0] is None and got[1].decode() == wire(2, 0, 0, now, 0), got
        assert r.call("LRANGE", "t:e:list", 0, -1) == [b"x"]
        # the same call again (its id seen): nothing applied, the standings
        # answered as they are; the id lives STORE_MERGE_ID_MS
        assert r.call(*call) == got
        assert r.call("GET", "t:e:next").decode() == wire(2, 0, 0, now, 0)
        assert 300000 - 2000 <= r.call("PTTL", "t:m:list") <= 300000
        r.call("DEL", "t:e:gone")
        got = r.call(*call[:4], "t:e:gone", *call[5:])
        assert got[1].decode() == "0 0 0 %d 0" % now, got  # absent: empty
        assert r.call("GET", "t:e:gone") is None
        # the offenders index: an invalid recipient ranks the key; valid
        # ones alone leave the index as it is (at the default half-life its
        # rank would not move; at a half-life of 1 s it would have faded
        # out, and is kept until its next invalid one); an invalid one
        # ranks it anew
        def merge(key, delta, at, t):
            r.call("EVALSHA", sha, 3, key, "t:offenders", "t:m:rank%d" % at, t, 1000,
                   600000, 1000, 300000, *delta.split(), "")
            return r.call("ZSCORE", "t:offenders", key)
        first = merge("t:e:ranked", wire(4, 0, 0, now, 0), 1, now)
        assert first is not None
        assert merge("t:e:ranked", wire(0, 5, 0, now + 60000, 0), 2, now + 60000) == first
        assert merge("t:e:ranked", wire(1, 0, 0, now + 61000, 0), 3, now + 61000) != first
        assert merge("t:e:clean", wire(0, 5, 0, now, 0), 4, now) is None


def test_merge_script_reads_a_key_twice_and_times_as_stored(driver_bin, redis):
    """What the script's single MGET must not change (review 10): a key
    named twice in one call folds both deltas, as reading it again after
    the first SET did; a stored time with a fraction of a millisecond is
    printed rounded (%.0f), not cut; an absent key answers the empty
    standing at now."""
    sha = load_script(driver_bin, redis)
    now = 1700000000000
    shared = [now, 3600000, 7200000, 1000, 60000]
    with redis.client() as r:
        got = r.call("EVALSHA", sha, 4, "t:e:x", "t:e:x", "t:offenders", "", *shared,
                     *wire(1, 0, 0, now, 0).split(), "", *wire(1, 0, 0, now, 0).split(), "")
        assert [g.decode() for g in got] == [wire(1, 0, 0, now, 0), wire(2, 0, 0, now, 0)]
        assert r.call("GET", "t:e:x").decode() == wire(2, 0, 0, now, 0)
        r.call("SET", "t:e:y", "1.000000 0.000000 0.000000 %d.6 %d.6" % (now, now + 5000))
        got = r.call("EVALSHA", sha, 3, "t:e:y", "t:offenders", "", *shared,
                     *wire(0, 1, 0, now, 0).split(), "")
        assert got[0].decode() == wire(1, 1, 0, now + 1, now + 5001)
        r.call("SET", "t:m:seen", "1")
        got = r.call("EVALSHA", sha, 3, "t:e:absent", "t:offenders", "t:m:seen", *shared,
                     *wire(1, 0, 0, now, 0).split(), "")
        assert got[0].decode() == "0 0 0 %d 0" % now


# ---- evidence.c over a real Redis -----------------------------------------

def test_records_coalesce_into_one_merge(driver, redis):
    for _ in range(5):
        driver.record(invalid=1)
    driver.record(invalid=0, valid=3)
    s = wait_stored(redis, lambda s: s[0] > 4.99, "the merge", poke=lambda: driver.run(20))
    assert abs(s[0] - 5) < 1e-3 and abs(s[1] - 3) < 1e-3
    inv, val, _, blocked, from_store = driver.read()
    assert from_store and abs(inv - 5) < 1e-3 and abs(val - 3) < 1e-3 and not blocked
    info = redis.call("INFO", "commandstats").decode()
    calls = [l for l in info.split() if l.startswith("cmdstat_evalsha:")]
    assert calls and "calls=1," in calls[0], calls       # six records, one round trip


def test_noscript_is_retried(driver, redis):
    redis.call("SCRIPT", "FLUSH")
    driver.record(invalid=2)
    wait_stored(redis, lambda s: s[0] > 1.99, "the merge after NOSCRIPT",
                poke=lambda: driver.run(20))


def test_oom_deltas_wait_in_pending(driver, redis):
    driver.record(invalid=1)
    wait_stored(redis, lambda s: s[0] > 0.99, "the first merge", poke=lambda: driver.run(20))
    redis.call("CONFIG", "SET", "maxmemory-policy", "noeviction")
    redis.call("CONFIG", "SET", "maxmemory", "1")
    driver.record(invalid=1)
    driver.record(invalid=1, block_ms=60000)
    driver.run(200)                                 # several refused flushes
    assert stored(redis)[0] < 1.01                  # Redis has only the first
    inv, _, _, blocked, from_store = driver.read()  # Redis's 1 + our 2
    assert from_store and abs(inv - 3) < 1e-3 and blocked
    redis.call("CONFIG", "SET", "maxmemory", "0")
    s = wait_stored(redis, lambda s: s[0] > 2.99 and s[4] > now_ms(), "the refused deltas",
                    poke=lambda: driver.run(20))
    assert s[0] < 3.01                              # given back once, not twice
    inv, _, _, blocked, _ = driver.read()
    assert abs(inv - 3) < 1e-3 and blocked


def test_wrongtype_key_keeps_local_counts(driver, redis):
    redis.call("LPUSH", KEY, "x")
    driver.record(invalid=2, block_ms=60000)
    driver.run(150)
    inv, _, _, blocked, _ = driver.read()
    assert abs(inv - 2) < 1e-3 and blocked
    redis.call("DEL", KEY)
    wait_stored(redis, lambda s: s[0] > 1.99 and s[4] > now_ms(), "the deltas",
                poke=lambda: driver.run(20))


def test_readonly_replica_then_promoted(driver_bin, tmp_path):
    with RedisServer() as master, RedisServer() as replica:
        replica.call("REPLICAOF", "127.0.0.1", str(master.port))
        d = Driver(driver_bin, tmp_path, replica.port)
        try:
            d.wait_up()
            d.record(invalid=3, block_ms=60000)
            d.run(200)
            inv, _, _, blocked, _ = d.read()
            assert abs(inv - 3) < 1e-3 and blocked
            assert stored(replica) is None
            replica.call("REPLICAOF", "NO", "ONE")    # a failover promotes it
            wait_stored(replica, lambda s: s[0] > 2.99 and s[4] > now_ms(),
                        "the counts on the new master", poke=lambda: d.run(20))
        finally:
            d.close()


def test_restart_restores_counts_and_block(driver, redis):
    driver.record(invalid=2)
    wait_stored(redis, lambda s: s[0] > 1.99, "the first merge", poke=lambda: driver.run(20))
    redis.kill()
    driver.record(invalid=1, block_ms=60000)        # counted here while away
    inv, _, _, blocked, from_store = driver.read()
    assert not from_store and abs(inv - 3) < 1e-3 and blocked
    redis.restart()                                 # empty: no persistence
    s = wait_stored(redis, lambda s: s[0] > 2.99 and s[4] > now_ms(),
                    "counts before and during the outage", poke=lambda: driver.run(20))
    assert s[0] < 3.01
    _, _, _, blocked, _ = driver.read()
    assert blocked


def test_unanswered_merge_resent_to_a_restarted_redis_keeps_the_count(driver, redis):
    """A merge that went out and got no answer (Redis frozen, then killed
    and restarted empty) is sent again as it was, without a floor: its
    answer (the outage's delta alone) must not lower what this process
    knows, and the floor that follows brings back the whole count.  Before
    the fix merge_landed() took the answer for the view and the floor
    carried 1 instead of 3."""
    driver.record(invalid=2)
    wait_stored(redis, lambda s: s[0] > 1.99, "the first merge", poke=lambda: driver.run(20))
    redis.sigstop()
    driver.record(invalid=1, block_ms=60000)
    driver.run(600)                     # the tick's merge goes out, unanswered
    redis.kill()
    redis.restart()                     # empty: no persistence
    s = wait_stored(redis, lambda s: s[0] > 2.99 and s[4] > now_ms(),
                    "the count before the outage and the unanswered delta",
                    poke=lambda: driver.run(20))
    assert s[0] < 3.01
    inv, _, _, blocked, _ = driver.read()
    assert abs(inv - 3) < 1e-2 and blocked


def test_restart_while_idle_restores(driver, redis):
    """No request during the outage: the table still notices it, and the
    block Redis lost comes back."""
    driver.record(invalid=3, block_ms=60000)
    wait_stored(redis, lambda s: s[0] > 2.99, "the merge", poke=lambda: driver.run(20))
    redis.kill()
    driver.run(400)                                 # no reads, no records
    redis.restart()
    wait_stored(redis, lambda s: s[0] > 2.99 and s[4] > now_ms(), "the restored block",
                poke=lambda: driver.run(20))


# ---- the daemon (needs harvest.c / policy.c on evidence.h) ----------------

REDIS = """
[redis]
address = 127.0.0.1:{port}
prefix = {prefix}
timeout = 0.25
connect_timeout = 0.5
"""

HARVEST = REDIS + """
[harvest]
tarpit_after = 0
block_after = 3
block_time = 60
ipv4_wide_prefix = 0
"""


def daemon_for(port):
    return Daemon(extra=HARVEST.format(port=port, prefix=PREFIX))


def wait_redis_up(d, n=1):
    wait_for(lambda: d.read_log().count("redis: up:") >= n, 10, what="redis up")


def three_unknown_then_blocked(d, during=None):
    """Unknown 1, 2, 3 are answered as unknown; the 4th request (valid) and
    the 5th (unknown) get the block.  during(n) runs before request n."""
    with d.client() as c:
        for n in (1, 2, 3):
            if during:
                during(n)
            assert c.ask(client_address=IP, recipient="ghost%d@example.com" % n) == UNKNOWN
        assert c.ask(client_address=IP, recipient="user@example.com") == BLOCKED
        assert c.ask(client_address=IP, recipient="ghost4@example.com") == BLOCKED


def assert_blocked(d):
    assert d.ask(client_address=IP, recipient="alice@example.com") == BLOCKED


def test_daemon_oom(redis):
    with daemon_for(redis.port) as d:
        wait_redis_up(d)
        redis.call("CONFIG", "SET", "maxmemory-policy", "noeviction")
        redis.call("CONFIG", "SET", "maxmemory", "1")
        with pytest.raises(RespError, match="OOM"):
            redis.call("SET", "probe", "x")
        three_unknown_then_blocked(d)
        assert stored(redis) is None
        redis.call("CONFIG", "SET", "maxmemory", "0")
        wait_stored(redis, lambda s: s[0] > 2.99 and s[4] > now_ms(), "the counts")
        assert_blocked(d)


def test_daemon_readonly_replica():
    with RedisServer() as master, RedisServer() as replica:
        replica.call("REPLICAOF", "127.0.0.1", str(master.port))
        with daemon_for(replica.port) as d:
            wait_redis_up(d)
            three_unknown_then_blocked(d)
            assert stored(replica) is None
            assert_blocked(d)
            replica.call("REPLICAOF", "NO", "ONE")
            wait_stored(replica, lambda s: s[0] > 2.99 and s[4] > now_ms(),
                        "the counts on the promoted replica")
            assert_blocked(d)


def test_daemon_wrongtype(redis):
    redis.call("LPUSH", KEY, "x")
    with daemon_for(redis.port) as d:
        wait_redis_up(d)
        three_unknown_then_blocked(d)
        assert redis.call("TYPE", KEY) == "list"
        redis.call("DEL", KEY)
        wait_stored(redis, lambda s: s[0] > 2.99 and s[4] > now_ms(), "the counts")
        assert_blocked(d)


def test_daemon_sigkill_restart(redis):
    with daemon_for(redis.port) as d:
        wait_redis_up(d)

        def during(n):
            if n == 3:      # 1 and 2 in Redis, then it dies
                wait_stored(redis, lambda s: s[0] > 1.99, "counts before the outage")
                redis.kill()
        three_unknown_then_blocked(d, during)
        assert_blocked(d)
        redis.restart()
        s = wait_stored(redis, lambda s: s[0] > 2.99 and s[4] > now_ms(),
                        "counts from before and during the outage")
        assert s[0] < 3.01
        assert_blocked(d)
        wait_redis_up(d, 2)
        assert_blocked(d)


QUIET = REDIS + """
[harvest]
tarpit_after = 0
block_after = 0
block_ceiling = 0
ipv4_wide_prefix = 0
"""


def test_daemon_merge_timeout_applied_once(redis):
    """A merge that times out and runs when Redis gets to it is not applied
    again (issue 11 point 4).  Redis stopped (SIGSTOP): the first unknown
    recipient's read times out, its merge goes out (the evidence tick comes
    before any time-out of the commands after that read) and times out in
    turn, and the daemon gives the connection up; four more are counted
    here meanwhile.  Resumed, Redis runs the stale merge it had read; the
    daemon sends it again (same id: applied once) before the four.  Five
    unknown recipients count five; before the fix the first was merged
    again: six."""
    with Daemon(extra=QUIET.format(port=redis.port, prefix=PREFIX)) as d, \
            Monitor(redis) as m:
        wait_redis_up(d)
        stop_process(redis.proc.pid)
        try:
            with d.client() as c:
                assert c.ask(client_address=IP, recipient="ghost0@example.com") == UNKNOWN
                wait_for(lambda: "redis: down:" in d.read_log(), 10, what="redis down")
                for n in range(1, 5):
                    assert c.ask(client_address=IP,
                                 recipient="ghost%d@example.com" % n) == UNKNOWN
        finally:
            os.kill(redis.proc.pid, signal.SIGCONT)
        s = wait_stored(redis, lambda s: s[0] > 4.99, "the five unknown recipients")
        assert s[0] < 5.01, s
        # the timed-out call went again with its id (the last key); every
        # merge Redis ran before this barrier leaves five
        ids = [a[2 + int(a[2])] for src, a in m.commands()
               if src == "client" and a[0] in ("EVALSHA", "EVAL") and KEY in a]
        assert ids[0] == ids[1], ids
        assert stored(redis)[0] < 5.01


# ---- the close: counts recorded just before a stop or a reload -----------

MANY = 3000
ONE_WAY_S = 0.02        # a Redis 20 ms away: merges lag behind the requests


class DelayProxy:
    """127.0.0.1:self.port -> 127.0.0.1:target, every chunk held one_way
    seconds in each direction (a remote Redis), on an asyncio loop of its
    own thread."""

    def __init__(self, target, one_way=ONE_WAY_S):
        self.target, self.one_way, self.port = target, one_way, free_port()
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.errors = []        # what ended the thread early: reported here and by close()
        self.thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self.thread.start()
        assert ready.wait(10) and self.errors == [], self.errors

    def _run(self, ready):
        # an exception of its own, left to pytest, would fail whichever
        # test runs when the thread ends
        try:
            self._serve(ready)
        except Exception as e:          # noqa: BLE001 - reported to the test
            self.errors.append(repr(e))
        finally:
            ready.set()

    def _serve(self, ready):
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(
            asyncio.start_server(self._conn, "127.0.0.1", self.port))
        ready.set()
        self.loop.run_forever()
        left = asyncio.all_tasks(self.loop)
        for t in left:
            t.cancel()
        self.loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
        self.loop.close()

    async def _conn(self, down_r, down_w):
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target)
        await asyncio.gather(self._carry(down_r, up_w), self._carry(up_r, down_w),
                             return_exceptions=True)

    async def _carry(self, r, w):
        held = asyncio.Queue()

        async def later():
            while True:
                due, data = await held.get()
                await asyncio.sleep(max(0.0, due - self.loop.time()))
                if not data:
                    w.close()
                    return
                w.write(data)
                await w.drain()
        out = self.loop.create_task(later())
        while True:
            data = await r.read(65536)
            held.put_nowait((self.loop.time() + self.one_way, data))
            if not data:
                break
        await out

    def close(self):
        """Stops the loop and joins its thread: it must not outlive the test."""
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.server.close)
            self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        assert not self.thread.is_alive(), "the proxy's thread did not stop"
        assert self.errors == [], self.errors


@pytest.fixture
def far_redis(redis):
    """(redis, proxy): the daemon talks to the proxy."""
    p = DelayProxy(redis.port)
    yield redis, p
    p.close()


def far_daemon(proxy):
    """block_after 3 as above (a network with one unknown is not blocked),
    siege off (3000 unknown at once is one), the store's timeout well over
    the round trip."""
    return Daemon(extra=HARVEST.format(port=proxy.port, prefix=PREFIX)
                  .replace("timeout = 0.25", "timeout = 2") + "\n[siege]\naction = off\n")


def unknown_from_many(d, n=MANY, conns=128):
    """One unknown recipient from each of n client addresses (10.0.0.0/8,
    ipv4_wide_prefix = 0: n networks), over conns connections, each
    pipelining 32 requests at a time (well under request_limit); every
    answer is read.  The addresses, in order."""
    ips = ["10.%d.%d.%d" % (i >> 16, (i >> 8) & 255, i & 255) for i in range(n)]

    def one(k):
        mine = ips[k::conns]
        with d.client(timeout=60) as c:
            for at in range(0, len(mine), 32):
                chunk = mine[at:at + 32]
                c.send_raw(b"".join(request(client_address=ip,
                                            recipient="ghost@example.com")
                                    for ip in chunk))
                for _ in chunk:
                    assert c.read_reply() == ("action=%s\n\n" % UNKNOWN).encode()
    with ThreadPoolExecutor(max_workers=conns) as ex:
        list(ex.map(one, range(conns)))
    return ips


def missing_counts(r, prefix, ips):
    """The addresses whose network has not 1 invalid recipient in Redis."""
    keys = set(r.keys(prefix + "e:*"))
    missing = [ip for ip in ips if (prefix + "e:%s/32" % ip).encode() not in keys]
    with r.client() as c:
        for ip in ips:
            if ip not in missing:
                s = [float(x) for x in c.call("GET", prefix + "e:%s/32" % ip).split()]
                if not 0.99 < s[0] <= 1.0:
                    missing.append(ip)
    return missing


def test_sigterm_keeps_every_count(far_redis):
    """SIGTERM right after the last answer: the stop merges what is pending
    and the store waits for Redis's replies before it closes."""
    redis, proxy = far_redis
    with far_daemon(proxy) as d:
        wait_redis_up(d)
        ips = unknown_from_many(d)
        d.check_clean_exit(d.stop())
        assert "unconfirmed" not in d.read_log()
    missing = missing_counts(redis, PREFIX, ips)
    assert not missing, "%d of %d networks lost at the stop, e.g. %s" % (
        len(missing), len(ips), missing[:3])


def test_reload_to_another_store_keeps_every_count(far_redis):
    """A reload that changes [redis] prefix frees the old store while the
    daemon runs on: its last merges reach Redis all the same."""
    redis, proxy = far_redis
    with far_daemon(proxy) as d:
        wait_redis_up(d)
        ips = unknown_from_many(d)
        with open(d.conf) as f:
            conf = f.read()
        with open(d.conf, "w") as f:
            f.write(conf.replace("prefix = " + PREFIX, "prefix = u:"))
        assert d.ctl("reload").stdout == "configuration reloaded\n"
        wait_redis_up(d, 2)
        wait_for(lambda: not missing_counts(redis, PREFIX, ips), 10,
                 what="every count under the old prefix")
        assert d.ask(client_address=IP, recipient="ghost@example.com") == UNKNOWN
        wait_for(lambda: redis.keys("u:e:*") == [("u:e:" + NET).encode()], 10,
                 what="the new store in use")

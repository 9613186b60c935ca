"""Findings of the operator's review of the fleet view (issue 13), each as
the reviewer measured it: hostile or older records in Redis, the offenders
index across a change of [harvest] window or a corrupted member, the
directory state of an instance with a timed-out query."""
import json
import re

from harness import Daemon, wait_for
from test_fleet import PREFIX, Fleet, fleet_json, name_of


def redis_now(r):
    s, us = r.call("TIME")
    return int(s) * 1000 + int(us) // 1000


def real_record(fl, d):
    with fl.redis.client() as r:
        wait_for(lambda: r.call("HGET", PREFIX + "fleet", name_of(d)) is not None,
                 timeout=10, what="a's own record")
        rec = r.call("HGET", PREFIX + "fleet", name_of(d))
    return rec.decode() if isinstance(rec, bytes) else rec


def inject(fl, name, rec, age_ms=0):
    with fl.redis.client() as r:
        r.call("HSET", PREFIX + "fleet", name, rec)
        r.call("ZADD", PREFIX + "fleet:t", redis_now(r) - age_ms, name)


def record(name, nbuckets, ver="0.1.0", rps="1.00", dir_="ok"):
    return ("v=1 name=%s ver=%s start=1 digest=%s rps=%s vd=1,0,0,0,0 lat=%s "
            "delayed=0 blocked=0 tracked=0 siege=0 redis=up dir=%s"
            % (name, ver, "a" * 16, rps, ",".join(["0"] * nbuckets), dir_))


def nbuckets_of(rec):
    return len(re.search(r" lat=(\S+)", rec).group(1).split(","))


def test_a_hostile_dir_field_is_dropped_from_fleet_json():
    """fleet.c parse_record: dir= is not checked with name_ok (name, ver,
    digest are), and is printed raw into JSON and the text table."""
    with Fleet(n=1) as fl:
        (a,) = fl.daemons
        n = nbuckets_of(real_record(fl, a))
        inject(fl, "evil/1", record("evil/1", n, dir_='x"}'))
        out = a.ctl("fleet", "--json").stdout
        json.loads(out)     # expected: valid JSON (record skipped or escaped)


def test_a_hostile_dir_field_never_reaches_the_terminal():
    with Fleet(n=1) as fl:
        (a,) = fl.daemons
        n = nbuckets_of(real_record(fl, a))
        inject(fl, "evil/2", record("evil/2", n, dir_="\x1b[2J"))
        out = a.ctl("fleet").stdout
        assert "\x1b" not in out   # expected: no raw ESC from Redis on stdout


def test_a_nan_rate_is_dropped_from_fleet_json():
    """rps= is strtod'd unchecked: nan/inf print as nan/inf, not JSON."""
    with Fleet(n=1) as fl:
        (a,) = fl.daemons
        n = nbuckets_of(real_record(fl, a))
        inject(fl, "evil/3", record("evil/3", n, rps="nan"))
        json.loads(a.ctl("fleet", "--json").stdout)


def test_an_older_daemon_with_one_bucket_fewer_is_listed():
    """Rolling upgrade: a daemon of the previous version (16 buckets before
    the 17th was added) publishes v=1 records; parse_list wants exactly
    STATS_BUCKETS numbers, so the record is skipped and the old daemon is
    neither listed nor flagged version-differs."""
    with Fleet(n=1) as fl:
        (a,) = fl.daemons
        n = nbuckets_of(real_record(fl, a))
        inject(fl, "old/1", record("old/1", n - 1, ver="0.0.9"))
        names = [i["name"] for i in fleet_json(a)["instances"]]
        assert "old/1" in names, names


def test_a_wrong_type_member_leaves_the_offenders_index():
    """ranked_lua GETs every member: a member naming a non-string key (a
    corrupted index) raises WRONGTYPE, the whole script fails, and every
    daemon's offenders/top fall back to local until the index expires --
    the bad member is never removed since the script never completes."""
    with Fleet(n=1) as fl:
        (a,) = fl.daemons
        for i in range(8):
            a.ask(client_address="192.0.2.9", recipient="ghost%d@example.com" % i)
        wait_for(lambda: json.loads(a.ctl("offenders", "--json").stdout)["offenders"],
                 timeout=10, what="an offender")
        with fl.redis.client() as r:
            r.call("HSET", PREFIX + "junk", "f", "v")
            r.call("ZADD", PREFIX + "offenders", "1e18", PREFIX + "junk")
        j = json.loads(a.ctl("offenders", "--json").stdout)
        assert j["source"] == "redis", j


def test_after_a_window_change_offenders_1_is_the_heaviest():
    """store_redis_merge.c: the index rank is log2(w) + t / half_life.  The
    t / half_life term (~3e6 at 600 s, ~3e7 at 60 s) dwarfs log2(w), so
    entries ranked under one [harvest] window outrank every entry ranked
    under another (a reload, or daemons of the fleet that differ), and
    `offenders N` returns the wrong N (and a full index trims the new)."""
    with Fleet(n=1, extra=("\n[harvest]\nwindow = 60\n",)) as fl:
        (a,) = fl.daemons
        a.ask(client_address="198.51.100.7", recipient="ghost@example.com")
        with fl.redis.client() as r:
            wait_for(lambda: r.call("ZSCORE", PREFIX + "offenders",
                                    PREFIX + "e:198.51.100.7/32") is not None,
                     timeout=10, what="the light one indexed")
        with open(a.conf) as f:
            conf = f.read()
        with open(a.conf, "w") as f:
            f.write(conf.replace("\n[harvest]\nwindow = 60\n", ""))
        a.ctl("reload")
        for i in range(8):
            a.ask(client_address="192.0.2.9", recipient="ghost%d@example.com" % i)
        with fl.redis.client() as r:
            wait_for(lambda: r.call("ZSCORE", PREFIX + "offenders",
                                    PREFIX + "e:192.0.2.9/32") is not None,
                     timeout=10, what="the heavy one indexed")
            print(r.call("ZREVRANGE", PREFIX + "offenders", 0, -1, "WITHSCORES"))
        j = json.loads(a.ctl("offenders", "1", "--json").stdout)
        assert [o["network"] for o in j["offenders"]] == ["192.0.2.9/32"], j


def test_a_directory_timeout_counts_once_in_the_fleet_dir_state():
    """fleet.c sample_now: dir_failed = dir_errors + dir_timeouts, but a
    timed-out LDAP query is counted in both (dir_ldap.c on_query_timeout
    dir_timeouts++, then DIR_TEMPFAIL -> lookup.c directory_done
    dir_errors++).  One good query and one timed out: df (2) >= dq (2),
    so `fleet`/`top` say dir=down where expected is dir=errors."""
    import slapd as slapd_helper
    sl = slapd_helper.Slapd(users=10)
    sl.start()
    try:
        conf = sl.policyd_conf(extra="[cache]\nlocal_size = 0\n[harvest]\nenabled = no\n"
                               "[ldap]\ntimeout = 0.5\n")
        with Daemon(conf=conf) as d:
            wait_for(lambda: d.ask(recipient="user00001@example.com") == "DUNNO",
                     timeout=15, what="LDAP up")
            sl.freeze()
            try:
                d.ask(recipient="user00002@example.com")     # times out: tempfail
            finally:
                sl.thaw()
            st = json.loads(d.ctl("stats", "--json").stdout)["directory"]
            me = [i for i in fleet_json(d)["instances"] if i["self"]][0]
            print(st, me["directory"])
            assert me["directory"] == "errors", (st, me["directory"])
    finally:
        sl.cleanup()

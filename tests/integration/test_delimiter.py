"""Address extensions as Postfix looks them up (issue 14, point 2).

With recipient_delimiter = -+ the directory holds first-last@, owner-list@,
list-request@, a+b@ and plain@.  Each recipient is asked as given first and,
only when that is not found, without its extension (Postfix's split_addr():
at the first delimiter; never owner-*, *-request, postmaster, ...).  The
same against a real slapd (searches counted in its log), the file
directory, and Redis (both forms cached, each under its own key).
"""
import json
import os
import socket

import pytest

import slapd as slapd_helper
from harness import Daemon, request, wait_for
from redis import RedisServer

DUNNO = "DUNNO"
UNKNOWN = "550 5.1.1 User unknown"
DOMAIN = "example.com"
ENTRIES = ["first-last", "owner-list", "list-request", "a+b", "plain"]

# recipient, answer, searches expected for each form (full, then stripped)
CASES = [
    ("first-last", DUNNO, {"first-last": 1, "first": 0}),
    ("owner-list", DUNNO, {"owner-list": 1, "owner": 0}),
    ("list-request", DUNNO, {"list-request": 1, "list": 0}),
    ("a+b", DUNNO, {"a+b": 1, "a": 0}),
    ("plain-ext", DUNNO, {"plain-ext": 1, "plain": 1}),
    ("plain+ext", DUNNO, {"plain+ext": 1, "plain": 2}),
    ("nobody-x", UNKNOWN, {"nobody-x": 1, "nobody": 1}),
    ("owner-nobody", UNKNOWN, {"owner-nobody": 1, "owner": 0}),
]

OPTIONS = """
[directory]
recipient_delimiter = -+

[actions]
unknown = %s

[harvest]
enabled = no
""" % UNKNOWN

NO_CACHE = """
[cache]
local_size = 0
positive_ttl = 0
negative_ttl = 0
"""

FILE_CONF = """
[server]
listen = {listen}
control = unix:{control}
allow_root = yes

[directory]
backend = file
file = {dir}/recipients
domains = example.com
"""


def addr(local):
    return "%s@%s" % (local, DOMAIN)


def ask_all(d):
    return [(r, d.ask(recipient=addr(r))) for r, _, _ in CASES]


def want_all():
    return [(r, a) for r, a, _ in CASES]


def stats(d):
    return json.loads(d.ctl("stats", "--json").stdout)


# ---- LDAP -------------------------------------------------------------------

def ldif():
    out = [slapd_helper.make_ldif(users=0)]
    for i, local in enumerate(ENTRIES):
        out.append("dn: uid=d%d,%s\nobjectClass: inetOrgPerson\nuid: d%d\n"
                   "cn: d%d\nsn: d%d\nmail: %s\n"
                   % (i, slapd_helper.PEOPLE, i, i, i, addr(local)))
    return "\n".join(out)


@pytest.fixture
def sl(tmp_path):
    if not os.path.exists(slapd_helper.SLAPD):
        pytest.skip("slapd not installed")
    path = tmp_path / "delimiter.ldif"
    path.write_text(ldif())
    s = slapd_helper.Slapd(ldif=str(path))
    s.start()
    yield s
    s.cleanup()


def searches_for(sl, local):
    return sl.searches('filter="(mail=%s)"' % addr(local))


def ldap_daemon(sl, timeout=1, extra=NO_CACHE):
    return Daemon(conf=sl.policyd_conf(timeout=timeout, extra=OPTIONS + extra))


def wait_bound(d):
    """Until the pool has bound: the first answers may be tempfail."""
    wait_for(lambda: d.ask(recipient=addr("plain")) == DUNNO, 15,
             what="policyd to answer from LDAP")


def test_ldap_full_address_first_then_stripped(sl):
    with ldap_daemon(sl) as d:
        wait_bound(d)
        base = searches_for(sl, "plain")
        assert ask_all(d) == want_all()
        # slapd logs a search when it reads it, before it answers
        want = {}
        for _, _, counts in CASES:
            want.update(counts)
        want["plain"] += base
        assert {local: searches_for(sl, local) for local in want} == want


def test_ldap_concurrent_asks_share_both_searches(sl):
    """plain+ext@ asked twenty times at once, slapd frozen: one search for
    it, and one for plain@ when that is not found."""
    socks = []
    with ldap_daemon(sl, timeout=8) as d:
        wait_bound(d)
        before = {f: searches_for(sl, f) for f in ("plain+ext", "plain")}
        c0 = stats(d)["directory"]["coalesced"]
        sl.freeze()
        try:
            for i in range(20):
                s = socket.create_connection((d.host, d.port), timeout=20)
                socks.append(s)
                s.sendall(request(recipient=addr("plain+ext")))
            # every ask has reached the daemon: 19 wait on the first
            wait_for(lambda: stats(d)["directory"]["coalesced"] - c0 == 19, 10,
                     what="19 coalesced asks")
        finally:
            sl.thaw()
        try:
            for s in socks:
                buf = b""
                while b"\n\n" not in buf:
                    data = s.recv(4096)
                    assert data, buf
                    buf += data
                assert buf == b"action=DUNNO\n\n"
        finally:
            for s in socks:
                s.close()
        after = {f: searches_for(sl, f) for f in ("plain+ext", "plain")}
        assert after == {"plain+ext": before["plain+ext"] + 1,
                         "plain": before["plain"] + 1}
        assert stats(d)["directory"]["coalesced"] - c0 == 19


# ---- the file directory -------------------------------------------------------

def file_daemon(extra=NO_CACHE):
    return Daemon(conf=FILE_CONF + OPTIONS + extra,
                  recipients="".join(addr(e) + "\n" for e in ENTRIES))


def test_file_full_address_first_then_stripped():
    with file_daemon() as d:
        assert ask_all(d) == want_all()
        # one query per form asked: 4 found or unsplittable as given,
        # plain-ext, plain+ext and nobody-x twice, owner-nobody once
        assert stats(d)["directory"]["queries"] == 4 + 3 * 2 + 1


# ---- Redis --------------------------------------------------------------------

REDIS = """
[redis]
address = 127.0.0.1:%d
prefix = t:

[cache]
local_size = 0
positive_ttl = 60
negative_ttl = 60
"""


def cached(r, local):
    """The cached answer for one address (b"1", b"0"), or None."""
    keys = [k for k in r.keys("t:c:*") if k.endswith(b":" + addr(local).encode())]
    assert len(keys) <= 1, keys
    return r.call("GET", keys[0]) if keys else None


def test_redis_caches_each_form_under_its_own_key():
    with RedisServer() as r, file_daemon(REDIS % r.port) as d:
        d.wait_log("redis: up:")
        first = [("plain+ext", DUNNO), ("nobody-x", UNKNOWN), ("first-last", DUNNO)]
        assert [(a, d.ask(recipient=addr(a))) for a, _ in first] == first
        s0 = stats(d)
        # full, then stripped: plain+ext, plain, nobody-x, nobody, first-last
        assert s0["directory"]["queries"] == 5
        # the SETs leave after the replies: wait until Redis has them
        want = {"plain+ext": b"1", "plain": b"1", "nobody-x": b"0",
                "nobody": b"0", "first-last": b"1"}
        wait_for(lambda: {a: cached(r, a) for a in want} == want, 10,
                 what="five cached answers")
        assert cached(r, "first") is None

        # asked again: the same answers, all from Redis
        assert [(a, d.ask(recipient=addr(a))) for a, _ in first] == first
        s1 = stats(d)
        assert s1["directory"]["queries"] == 5
        assert s1["cache"]["redis_hits"] - s0["cache"]["redis_hits"] == 3

        # another extension of plain: its own query, plain from Redis
        assert d.ask(recipient=addr("plain-other")) == DUNNO
        s2 = stats(d)
        assert s2["directory"]["queries"] == 6
        assert s2["cache"]["redis_hits"] - s1["cache"]["redis_hits"] == 1
        # and the stripped answer is the plain address's own
        assert d.ask(recipient=addr("nobody")) == UNKNOWN
        assert stats(d)["directory"]["queries"] == 6

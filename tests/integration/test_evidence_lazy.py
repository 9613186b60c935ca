"""The lazy path of the standings (policyd/evidence.h): valid recipients of
a network far from every stage reach Redis within a second, those of a
network near one on the next 50 ms tick, and a reload that lowers the
shares moves the bound with them (the review found the bound fixed at
start)."""

import signal
import time

import pytest

from harness import Daemon, wait_for
from redis import RedisServer


def conf(port, share):
    return ("\n[harvest]\ntarpit_share = %d\nblock_share = %d\nipv4_wide_prefix = 0\n"
            "\n[redis]\naddress = 127.0.0.1:%d\nprefix = t:\n" % (share, share, port))


def valid_of(v):
    """The valid count of a standing's wire form (score.h)."""
    return float(v.decode().split()[1]) if v else 0.0


def merge_lag(d, r, client):
    """1 invalid and 10 valid recipients in Redis (9%), then 10 more valid
    ones: seconds from the last answer until Redis has them."""
    assert d.ask(client_address=client, recipient="nobody@example.com") == \
        "550 5.1.1 User unknown"
    key = ("t:e:%s/32" % client).encode()
    wait_for(lambda: r.call("GET", key), what="the standing in Redis")
    with d.client() as c:
        for _ in range(10):
            assert c.ask(client_address=client, recipient="user@example.com") == "DUNNO"
    wait_for(lambda: valid_of(r.call("GET", key)) >= 9.5, timeout=5, interval=0.005,
             what="10 valid in Redis")
    with d.client() as c:
        for _ in range(10):
            assert c.ask(client_address=client, recipient="user@example.com") == "DUNNO"
    t0 = time.monotonic()
    wait_for(lambda: valid_of(r.call("GET", key)) >= 19.5, timeout=5, interval=0.005,
             what="20 valid in Redis")
    return time.monotonic() - t0


@pytest.mark.timing
def test_reload_moves_the_lazy_bound():
    with RedisServer() as r:
        # tarpit_share 25%: S/2 = 12.5%, a 9% network is far: its valid
        # recipients wait (up to 1 s)
        with Daemon(extra=conf(r.port, 25)) as d:
            d.wait_log("redis: up")
            assert merge_lag(d, r, "198.51.100.7") > 0.5
            # 4%: S/2 = 2%, the same network is near: the next tick
            with open(d.conf) as f:
                text = f.read()
            with open(d.conf, "w") as f:
                f.write(text.replace("= 25", "= 4"))
            d.signal(signal.SIGHUP)
            d.wait_log("reloaded")
            assert merge_lag(d, r, "198.51.100.8") < 0.5

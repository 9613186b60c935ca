"""The harvest defence through the daemon: tarpit schedule, block, exemptions,
expiry, and fleet-wide counting through one real Redis."""
import threading
import time

import pytest

from harness import Daemon
from redis import RedisServer

pytestmark = pytest.mark.timing     # every test here measures delays

UNKNOWN = "550 5.1.1 User unknown"
BLOCKED = "450 4.7.1 Too many invalid recipients, try again later"

# Counts 1-2 free; 3 -> 0.2 s, 4 -> 0.4, 5 -> 0.8, 6.. -> 0.8 (cap); 8 blocks.
HARVEST = """
[harvest]
window = 60
tarpit_after = 3
tarpit_delay = 0.2
tarpit_max = 0.8
block_after = 8
block_time = 2
whitelist = 198.51.100.0/24 2001:db8:feed::/48
"""
EXPECTED_DELAY = {1: 0, 2: 0, 3: 0.2, 4: 0.4, 5: 0.8, 6: 0.8, 7: 0.8}
TOL = 0.15          # scheduling slack on a shared machine


def timed_ask(client, **attrs):
    t0 = time.monotonic()
    action = client.ask(**attrs)
    return action, time.monotonic() - t0


def assert_delay(measured, expected):
    assert expected - 0.02 <= measured <= expected + TOL, (measured, expected)


@pytest.fixture
def daemon():
    with Daemon(extra=HARVEST) as d:
        yield d


def test_escalation_then_block(daemon):
    with daemon.client() as c:
        for n in range(1, 8):
            action, took = timed_ask(c, client_address="192.0.2.50",
                                     recipient="ghost%d@example.com" % n)
            assert action == UNKNOWN
            assert_delay(took, EXPECTED_DELAY[n])
        # the 8th invalid recipient blocks the network, answered at once
        action, took = timed_ask(c, client_address="192.0.2.50",
                                 recipient="ghost8@example.com")
        assert action == BLOCKED
        assert took < TOL
        # while blocked: valid recipients too, at once
        action, took = timed_ask(c, client_address="192.0.2.50",
                                 recipient="user@example.com")
        assert action == BLOCKED
        assert took < TOL
    assert "client network 192.0.2.50/32 blocked for 2s after 8 invalid recipients" \
        in daemon.read_log()


def test_valid_recipients_are_delayed_too(daemon):
    """In the tarpit, timing must not tell valid from invalid."""
    with daemon.client() as c:
        for n in range(1, 5):
            assert c.ask(client_address="192.0.2.51",
                         recipient="ghost%d@example.com" % n) == UNKNOWN
        action, took = timed_ask(c, client_address="192.0.2.51",
                                 recipient="user@example.com")
        assert action == "DUNNO"
        assert_delay(took, 0.4)        # count is 4


def test_innocent_client_is_not_slowed(daemon):
    stop = threading.Event()

    def harvester():
        with daemon.client() as c:
            n = 0
            while not stop.is_set() and n < 7:
                n += 1
                c.ask(client_address="192.0.2.60", recipient="probe%d@example.com" % n)

    t = threading.Thread(target=harvester)
    t.start()
    try:
        time.sleep(0.7)                 # the harvester is in its delays now
        with daemon.client() as c:
            for _ in range(20):
                action, took = timed_ask(c, client_address="203.0.113.9",
                                         recipient="alice@example.com")
                assert action == "DUNNO"
                assert took < TOL   # the tarpit delays are 0.2 s and up
    finally:
        stop.set()
        t.join(10)
    assert daemon.ask(client_address="203.0.113.9", recipient="nobody@example.com") == UNKNOWN


@pytest.mark.parametrize("attrs", [
    {"client_address": "198.51.100.77"},                      # whitelisted v4
    {"client_address": "2001:db8:feed::25"},                  # whitelisted v6
    {"client_address": "192.0.2.70", "sasl_username": "bob"}, # authenticated
])
def test_exempt_clients_never_delayed_or_blocked(daemon, attrs):
    with daemon.client() as c:
        for n in range(12):
            action, took = timed_ask(c, recipient="ghost%d@example.com" % n, **attrs)
            assert action == UNKNOWN
            assert took < TOL


def test_ipv6_clients_counted_per_64(daemon):
    with daemon.client() as c:
        for n in range(1, 3):
            assert c.ask(client_address="2001:db8:1:2::%x" % n,
                         recipient="ghost%d@example.com" % n) == UNKNOWN
        # a third address in the same /64: count 3 -> delayed
        action, took = timed_ask(c, client_address="2001:db8:1:2::ffff",
                                 recipient="ghost3@example.com")
        assert action == UNKNOWN
        assert_delay(took, 0.2)
        # another /64 is untouched
        action, took = timed_ask(c, client_address="2001:db8:1:3::1",
                                 recipient="ghost@example.com")
        assert took < TOL


def test_block_ends_after_block_time(daemon):
    with daemon.client() as c:
        for n in range(1, 9):
            c.ask(client_address="192.0.2.80", recipient="ghost%d@example.com" % n)
        assert c.ask(client_address="192.0.2.80", recipient="user@example.com") == BLOCKED
        time.sleep(2.2)
        action, took = timed_ask(c, client_address="192.0.2.80", recipient="user@example.com")
        assert action == "DUNNO"
        assert took < TOL


def test_client_gone_during_delay_is_cleaned_up(daemon):
    with daemon.client() as c:
        for n in range(1, 5):
            c.ask(client_address="192.0.2.90", recipient="ghost%d@example.com" % n)
    # count is 4: the next answer waits 0.8 s; hang up while it waits
    from harness import request
    for _ in range(20):
        c = daemon.client()
        c.send_raw(request(client_address="192.0.2.90", recipient="user@example.com"))
        c.close()
    time.sleep(0.3)
    stats = daemon.ctl("stats", "--json").stdout.replace(" ", "")
    assert '"delayed_now":0' in stats
    assert '"current":0' in stats


def test_tarpit_max_must_stay_below_postfix_timeout():
    import subprocess
    from harness import POLICYD
    d = Daemon(extra="[harvest]\ntarpit_max = 120\n")
    r = subprocess.run([POLICYD, "-c", d.conf, "-t"], capture_output=True, text=True)
    assert r.returncode == 1
    assert "[harvest] tarpit_max" in r.stderr and "100" in r.stderr
    d.cleanup()
    d = Daemon(extra="[harvest]\ntarpit_max = 120\npostfix_timeout = 300\n")
    r = subprocess.run([POLICYD, "-c", d.conf, "-t"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    d.cleanup()


def test_two_daemons_on_one_redis_escalate_together():
    with RedisServer() as redis:
        extra = HARVEST + "[redis]\naddress = 127.0.0.1:%d\nprefix = fleet:\n" % redis.port
        with Daemon(extra=extra) as a, Daemon(extra=extra) as b:
            # alternate MTAs: the count is the fleet's, not each daemon's
            for n in range(1, 8):
                d = a if n % 2 else b
                with d.client() as c:
                    action, took = timed_ask(c, client_address="192.0.2.100",
                                             recipient="ghost%d@example.com" % n)
                assert action == UNKNOWN
                assert_delay(took, EXPECTED_DELAY[n])
            assert redis.call("GET", "fleet:h:192.0.2.100/32") == b"7"
            with b.client() as c:
                assert c.ask(client_address="192.0.2.100",
                             recipient="ghost8@example.com") == BLOCKED
            # daemon a sees the block set through daemon b
            with a.client() as c:
                action, took = timed_ask(c, client_address="192.0.2.100",
                                         recipient="user@example.com")
                assert action == BLOCKED
                assert took < TOL
            pttl = redis.call("PTTL", "fleet:h:192.0.2.100/32")
            assert 0 < pttl <= 2000

"""Findings of the attacker's review of the harvest defence, each measured
from the outside as the attacker did (the scripts the review left are the
origin of these tests):

- neighbours in a /24 cannot get an honest sender with a clean record
  delayed or blocked by the wide level;
- without Redis, a flood of new networks does not evict a block;
- a few tarpitted addresses cannot put a domain under siege;
- a quoted local part cannot forge fields of the decision line.
"""
import re
from concurrent.futures import ThreadPoolExecutor

from harness import Daemon, request
from harvest import BLOCKED, UNKNOWN, VALID, guess

SIEGE_BUSY = "450 4.7.1 Service busy, try again later"


def test_harvesting_neighbours_cannot_block_an_honest_sender():
    victim = "198.51.100.25"
    # the default thresholds; the delays scaled down so the attack is quick
    with Daemon(extra="[harvest]\ntarpit_delay = 0.05\ntarpit_max = 0.1\n") as d:
        with d.client() as c:           # an honest MTA with a clean record
            for _ in range(20):
                assert c.ask(client_address=victim, recipient=VALID) == "DUNNO"

        def attacker(k):                # 4 neighbours, 25 guesses each
            with d.client(timeout=120) as c:
                return [c.ask(client_address="198.51.100.%d" % (200 + k),
                              recipient=guess(100 * k + g)) for g in range(25)]
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(attacker, range(4)))
        assert "event=block level=wide net=198.51.100.0/24" in d.read_log()
        # the /24 is blocked for a newcomer, not for the sender it knows
        assert d.ask(client_address="198.51.100.77", recipient=VALID) == BLOCKED
        assert d.ask(client_address=victim, recipient=VALID) == "DUNNO"
        assert d.ask(client_address=victim, recipient=guess(999)) == UNKNOWN


def test_padding_cannot_reach_a_wide_ceiling_by_default():
    """Three rented addresses each padding 4 valid recipients per guess up
    to their own ceiling: the /24 is not blocked whatever its share (the
    wide ceiling is off), so a fresh honest neighbour is served."""
    conf = "[harvest]\nblock_ceiling = 20\n"    # the narrow ceiling, scaled down
    with Daemon(extra=conf) as d:
        def attacker(k):
            with d.client(timeout=60) as c:
                for g in range(20):
                    for _ in range(4):
                        c.ask(client_address="198.51.100.%d" % (200 + k), recipient=VALID)
                    c.ask(client_address="198.51.100.%d" % (200 + k),
                          recipient=guess(100 * k + g))
                return c.ask(client_address="198.51.100.%d" % (200 + k), recipient=VALID)
        with ThreadPoolExecutor(3) as pool:
            assert list(pool.map(attacker, range(3))) == [BLOCKED] * 3
        assert "level=wide" not in "".join(
            line for line in d.read_log().splitlines() if "event=block" in line)
        assert d.ask(client_address="198.51.100.9", recipient=VALID) == "DUNNO"


def test_a_flood_of_new_networks_does_not_evict_a_block():
    harvester = "2001:db8:1:1::9"
    conf = "\n[harvest]\nmax_tracked = 1000\ntarpit_after = 0\n"
    with Daemon(extra=conf) as d, d.client(60) as c:
        answers = [c.ask(client_address=harvester, recipient=guess(g)) for g in range(21)]
        assert answers == [UNKNOWN] * 20 + [BLOCKED]
        for i in range(1000):           # max_tracked other networks
            c.ask(client_address="2001:db8:2:%x::1" % i, recipient=VALID)
        assert c.ask(client_address=harvester, recipient=guess(99)) == BLOCKED


def test_a_few_tarpitted_addresses_cannot_start_a_siege():
    """7 addresses guessing 20 times each, every guess on its own connection
    at once: the per-network tarpit holds them, and their guesses past it do
    not count toward the domain's siege rate (120 a minute)."""
    with Daemon(extra="[harvest]\ntarpit_delay = 0.05\ntarpit_max = 0.1\n") as d:
        conns = []
        for k in range(7):
            for g in range(20):
                c = d.client()
                c.send_raw(request(client_address="203.0.%d.9" % (k + 1),
                                   recipient=guess(100 * k + g)))
                conns.append(c)
        answers = [c.read_reply().decode().strip() for c in conns]
        for c in conns:
            c.close()
        assert set(answers) <= {"action=" + UNKNOWN, "action=" + BLOCKED}, set(answers)
        out = d.ctl("siege").stdout
        assert "example.com" in out and "siege: event=begin" not in d.read_log(), out
        assert d.ask(client_address="192.0.2.200", recipient=VALID) == "DUNNO"


def test_a_quoted_local_part_cannot_forge_log_fields():
    rcpt = '"x> verdict=accepted client=10.9.9.9 delay=0.000s <y"@example.com'
    with Daemon() as d:
        assert d.ask(client_address="192.0.2.5", recipient=rcpt) == UNKNOWN
        d.wait_log("verdict=unknown")       # written at the end of the loop turn
        line = [l for l in d.read_log().splitlines() if "rcpt=<" in l][-1]
        fields = line.split()
        assert [f for f in fields if f.startswith("verdict=")] == ["verdict=unknown"], line
        assert [f for f in fields if f.startswith("client=")] == ["client=192.0.2.5"], line
        assert re.search(r" rcpt=<\S+> verdict=unknown ", line), line

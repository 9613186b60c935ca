"""A harvester that asks in parallel (issue 11, scenario 2, attacked).

Postfix lets one client hold many SMTP sessions at once
(smtpd_client_connection_count_limit, 50 by default, on every MTA of a
fleet), so a dictionary harvester need not wait for one answer before it
asks the next.  With an LDAP directory the daemon answers a recipient only
after the directory does; every request that arrives meanwhile is judged
from the standing before any of them was recorded.  The schedule must hold
all the same: delayed from about the 6th guess, blocked by about the 25th.
Default thresholds, delay scale 0.05 s .. 0.1 s.
"""
import time
from collections import Counter

import pytest

import slapd as slapd_helper
from harness import Daemon, request, wait_for
from harvest import BLOCKED, UNKNOWN, guess, report

pytestmark = pytest.mark.timing

D = 0.05
N = 50


def test_parallel_dictionary_harvester_with_ldap():
    s = slapd_helper.Slapd(users=20)
    s.start()
    try:
        conf = s.policyd_conf(extra="[harvest]\ntarpit_delay = %s\ntarpit_max = %s\n"
                              % (D, 2 * D))
        with Daemon(conf=conf) as d:
            wait_for(lambda: d.ask(recipient="alice@example.com") == "DUNNO",
                     timeout=15, what="policyd to answer from LDAP")
            conns = [d.client(timeout=30) for _ in range(N)]
            t0 = time.monotonic()
            for i, c in enumerate(conns):
                c.send_raw(request(client_address="198.18.95.1", recipient=guess(i)))
            answers = []
            for c in conns:
                reply = c.read_reply().decode()
                answers.append((reply[len("action="):].strip(), time.monotonic() - t0))
                c.close()
    finally:
        s.cleanup()
    count = Counter(a for a, _ in answers)
    undelayed = sum(1 for a, t in answers if a == UNKNOWN and t < D)
    report("parallel harvester, LDAP directory: %d guesses at once from 198.18.95.1" % N,
           ["answers: %s; answered 550 without delay: %d" % (dict(count), undelayed)])
    assert set(count) <= {UNKNOWN, BLOCKED}, count
    assert undelayed <= 6, (undelayed, count)
    assert count[UNKNOWN] <= 25, count

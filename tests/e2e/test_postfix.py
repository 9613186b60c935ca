"""End to end: a real Postfix asks the built policyd about each recipient.

A private Postfix (tests/pylib/postfix.py) on a free loopback port runs
check_policy_service against policyd (file backend, recipients from the
harness's DEFAULT_RECIPIENTS), and Python's smtplib speaks SMTP to it:

  - a known recipient gets 250 at RCPT;
  - an unknown one gets exactly Postfix's rendering of policyd's
    "550 5.1.1 User unknown";
  - a domain that is not ours never reaches policyd's judgement: Postfix's
    reject_unauth_destination denies relaying (554 5.7.1);
  - afterwards nothing is queued and nothing bounced; a message accepted
    for a valid recipient is discarded by the transport.
"""
import os

import pytest

from harness import Daemon
from postfix import Postfix, reply

SENDER = "sender@example.net"


@pytest.fixture(scope="module")
def mta():
    """policyd + a Postfix that asks it; both stopped at the end.  The
    harvest defence is off here (tests/e2e/test_harvest_e2e.py covers it),
    so the unknown recipients these tests send never slow them down."""
    with Daemon(extra="\n[harvest]\nenabled = no\n") as d:
        with Postfix(policy_port=d.port) as pf:
            pf.policyd = d
            yield pf


def rcpt(pf, *recipients, source="127.0.0.1"):
    """One SMTP session: MAIL FROM, then RCPT TO each; the RCPT replies."""
    s = pf.smtp(source=source)
    try:
        assert reply(s.mail(SENDER)) == "250 2.1.0 Ok"
        return [reply(s.rcpt(r)) for r in recipients]
    finally:
        s.quit()


def test_known_recipient_accepted(mta):
    assert rcpt(mta, "user@example.com") == ["250 2.1.5 Ok"]


def test_unknown_recipient_rejected_exactly(mta):
    assert rcpt(mta, "nobody@example.com") == [
        "550 5.1.1 <nobody@example.com>: Recipient address rejected: User unknown"]


def test_catch_all_domain_and_mixed_session(mta):
    # @example.org is a catch-all in the recipients file; one Postfix
    # session (one policy connection) asks about several recipients.
    # Case and a +extension do not matter (the defaults: ignore_case,
    # recipient_delimiter "+").
    assert rcpt(mta, "anyone@example.org", "alice@example.com",
                "ghost@example.com", "User+tag@Example.COM", "user@example.com") == [
        "250 2.1.5 Ok",
        "250 2.1.5 Ok",
        "550 5.1.1 <ghost@example.com>: Recipient address rejected: User unknown",
        "250 2.1.5 Ok",
        "250 2.1.5 Ok",
    ]


def test_foreign_domain_is_postfix_relay_rule(mta):
    # Not a relay domain: reject_unauth_destination answers before the
    # policy service is asked.
    assert rcpt(mta, "someone@foreign.example") == [
        "554 5.7.1 <someone@foreign.example>: Relay access denied"]
    # postlogd writes the maillog a moment later
    log = mta.wait_maillog("to=<someone@foreign.example>")
    assert "Relay access denied" in log


def test_nothing_queued_or_bounced(mta):
    s = mta.smtp()
    try:
        assert reply(s.mail(SENDER)) == "250 2.1.0 Ok"
        assert reply(s.rcpt("user@example.com")) == "250 2.1.5 Ok"
        assert reply(s.rcpt("nobody@example.com")) == (
            "550 5.1.1 <nobody@example.com>: Recipient address rejected: User unknown")
        code, msg = s.data(b"Subject: e2e\r\n\r\nbody\r\n")
        assert code == 250, msg
        msg = msg.decode()
        assert msg.startswith("2.0.0 Ok: queued as "), msg
        qid = msg.split()[-1]
    finally:
        s.quit()

    log = mta.wait_maillog("%s: removed" % qid)
    lines = [l for l in log.splitlines() if (qid + ":") in l]
    delivered = [l for l in lines if " to=<" in l and " relay=" in l]
    # Exactly one delivery, to the valid recipient, and it was discarded.
    assert len(delivered) == 1, lines
    assert "to=<user@example.com>" in delivered[0]
    assert "status=sent (discarded by test instance)" in delivered[0]
    assert "dsn=2.0.0" in delivered[0]
    mta.wait_queue_empty()
    assert mta.queue_files() == []
    assert "Mail queue is empty" in mta.postqueue()
    # No bounce of any kind, ever, in this instance's whole log.
    assert "status=bounced" not in log
    assert "sender non-delivery notification" not in log
    assert "status=deferred" not in log
    assert "to=<nobody@example.com>, relay=" not in log


def test_contrib_snippet():
    """contrib/postfix/main.cf.snippet, as shipped, works with policyd:
    mynetworks pass untouched, others are judged, and a policyd that is
    down makes Postfix answer the snippet's 4xx default_action."""
    snippet_path = os.path.join(os.path.dirname(__file__), "..", "..",
                                "contrib", "postfix", "main.cf.snippet")
    with open(snippet_path) as f:
        snippet = f.read()
    assert "inet:127.0.0.1:10040" in snippet
    with Daemon() as d:
        # The instance's mynetworks is 127.0.0.1/32: 127.0.0.2 is outside.
        with Postfix(extra=snippet.replace("127.0.0.1:10040",
                                           "127.0.0.1:%d" % d.port)) as pf:
            assert rcpt(pf, "user@example.com", "nobody@example.com",
                        source="127.0.0.2") == [
                "250 2.1.5 Ok",
                "550 5.1.1 <nobody@example.com>: Recipient address rejected: User unknown"]
            assert rcpt(pf, "nobody@example.com", source="127.0.0.1") == [
                "250 2.1.5 Ok"]
            # (checked here: the context's own stop would see no process)
            assert d.stop() == 0, d.read_log()
            assert rcpt(pf, "user@example.com", source="127.0.0.2") == [
                "451 4.3.5 <user@example.com>: Recipient address rejected: "
                "Recipient check unavailable"]
            log = pf.maillog()
            assert "overriding earlier entry" not in log
            assert "fatal:" not in log

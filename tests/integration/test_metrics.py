"""The Prometheus endpoint of the real daemon: /metrics passes
`promtool check metrics`, its numbers are what the test sent and agree with
`policyctl stats --json`, and HTTP errors are answered properly.
"""
import json
import os
import socket
import subprocess

from harness import Daemon, free_port, wait_for, port_open

UNKNOWN = "550 5.1.1 User unknown"


def metrics_daemon(host="127.0.0.1"):
    port = free_port(host)
    ep = "inet:[%s]:%d" % (host, port) if ":" in host else "inet:%s:%d" % (host, port)
    d = Daemon("\n[harvest]\nenabled = no\n\n[stats]\nprometheus = %s\n" % ep)
    d.metrics_host, d.metrics_port = host, port
    return d


def http(d, raw, timeout=10):
    """Send raw bytes, return (status, headers dict, body) after EOF."""
    fam = socket.AF_INET6 if ":" in d.metrics_host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect((d.metrics_host, d.metrics_port))
        s.sendall(raw)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for l in lines[1:]:
        k, _, v = l.partition(":")
        headers[k.strip().lower()] = v.strip()
    assert int(headers["content-length"]) == len(body) or raw.startswith(b"HEAD")
    return status, headers, body.decode()


def get(d, path="/metrics"):
    return http(d, ("GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n" % path).encode())


def samples(text):
    """{'name{labels}': value} for every sample line."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            k, _, v = line.rpartition(" ")
            out[k] = float(v)
    return out


def promtool(text):
    return subprocess.run(["promtool", "check", "metrics"], input=text,
                          capture_output=True, text=True, timeout=30)


def test_metrics_pass_promtool_and_count_exactly():
    with metrics_daemon() as d:
        wait_for(lambda: port_open(d.metrics_host, d.metrics_port), what="metrics port")
        with d.client() as c:
            for i in range(3):
                assert c.ask(recipient="ghost%d@example.com" % i) == UNKNOWN
            assert c.ask(recipient="user@example.com") == "DUNNO"
            assert c.ask(recipient="user@example.com") == "DUNNO"
            assert c.ask(recipient="x@foreign.test") == "DUNNO"
            assert c.ask(protocol_state="DATA", recipient="") == "DUNNO"

        status, headers, body = get(d)
        assert status == 200
        assert headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        p = promtool(body)
        assert p.returncode == 0, p.stdout + p.stderr
        assert p.stdout == "" and p.stderr == ""

        m = samples(body)
        assert m['policyd_requests_total{state="RCPT"}'] == 6
        assert m['policyd_requests_total{state="DATA"}'] == 1
        assert m['policyd_requests_total{state="CONNECT"}'] == 0
        assert m['policyd_verdicts_total{verdict="unknown"}'] == 3
        assert m['policyd_verdicts_total{verdict="accepted"}'] == 4
        assert m['policyd_verdicts_total{verdict="blocked"}'] == 0
        assert m['policyd_cache_hits_total{layer="l1"}'] == 1
        assert m["policyd_delayed_requests"] == 0
        assert m["policyd_redis_up"] == 0
        # histogram: cumulative, ends in +Inf equal to _count
        buckets = [(k, v) for k, v in m.items()
                   if k.startswith("policyd_request_duration_seconds_bucket")]
        assert len(buckets) == 17
        assert buckets[-1][0] == 'policyd_request_duration_seconds_bucket{le="+Inf"}'
        values = [v for _, v in buckets]
        assert values == sorted(values)
        # every answer is timed before it is written: all 7, none pending
        assert values[-1] == m["policyd_request_duration_seconds_count"] == 7
        assert m["policyd_request_duration_seconds_sum"] > 0

        # the same numbers policyctl reports
        s = json.loads(d.ctl("stats", "--json").stdout)
        assert s["requests"]["by_state"]["RCPT"] == 6
        assert s["latency_us"]["count"] == m["policyd_request_duration_seconds_count"]
        assert s["connections"]["total"] == m["policyd_connections_total"]


def test_metrics_http_errors():
    with metrics_daemon() as d:
        wait_for(lambda: port_open(d.metrics_host, d.metrics_port), what="metrics port")
        assert get(d, "/")[0] == 404
        assert get(d, "/metricsx")[0] == 404
        assert get(d, "/metrics?name=x")[0] == 200
        assert http(d, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n")[0] == 405
        assert http(d, b"garbage\r\n\r\n")[0] == 400
        assert http(d, b"GET /" + b"a" * 400 + b" HTTP/1.1\r\n\r\n")[0] == 414
        big = b"GET /metrics HTTP/1.1\r\nX-Pad: " + b"a" * 10000 + b"\r\n\r\n"
        assert http(d, big)[0] == 431
        status, headers, body = http(d, b"HEAD /metrics HTTP/1.1\r\n\r\n")
        assert status == 200 and body == "" and int(headers["content-length"]) > 1000
        # still serving after all that
        assert d.ask(recipient="user@example.com") == "DUNNO"
        status, _, body = get(d)
        assert status == 200 and promtool(body).returncode == 0


def test_metrics_ipv6_endpoint():
    with metrics_daemon("::1") as d:
        wait_for(lambda: port_open("::1", d.metrics_port), what="metrics port")
        status, _, body = get(d)
        assert status == 200
        assert "policyd_connections_total" in body


def test_bad_prometheus_endpoint_refused():
    d = Daemon("\n[stats]\nprometheus = inet:localhost:notaport\n")
    try:
        d.start(wait=False)
        assert d.proc.wait(15) == 1
        assert d.read_log() == ("policyd: %s:%d: [stats] prometheus: port must be "
                                "1..65535: 'inet:localhost:notaport'\n"
                                % (d.conf, len(open(d.conf).read().splitlines())))
    finally:
        d.cleanup()

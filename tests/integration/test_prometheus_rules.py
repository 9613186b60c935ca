"""contrib/prometheus and contrib/grafana against the real thing.

promtool checks the rules and runs their unit tests
(policyd.rules.test.yml).  Then one policyd with LDAP, Redis and siege on
is scraped: every policyd_* name and label value the rules and the
dashboard use must be one it exports, and a real Prometheus, scraping it
with the rules loaded, must evaluate every rule without error and answer
every dashboard query with data.
"""
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request

import pytest
import yaml

from harness import Daemon, free_port, port_open, wait_for
from redis import RedisServer
from slapd import Slapd

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
RULES = os.path.join(ROOT, "contrib", "prometheus", "policyd.rules.yml")
RULES_TEST = os.path.join(ROOT, "contrib", "prometheus", "policyd.rules.test.yml")
DASHBOARD = os.path.join(ROOT, "contrib", "grafana", "policyd.json")
UNKNOWN = "550 5.1.1 User unknown"

# a policyd_* name not inside a recording rule's name (job:policyd_x:rate5m)
# and, when a selector follows, its matchers
SELECTOR = re.compile(r"(?<![\w:])(policyd_\w+)(?:\{([^}]*)\})?")
MATCHER = re.compile(r'(\w+)\s*=\s*"([^"]*)"')
# Grafana's variables, as Grafana would expand them for "All"
GRAFANA_VARS = {"$__rate_interval": "1m", "$__range": "5m", "$instance": ".*"}


def promtool(*args):
    return subprocess.run(["promtool"] + list(args), capture_output=True, text=True,
                          timeout=120)


def test_promtool_checks_and_unit_tests_pass():
    r = promtool("check", "rules", RULES)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS: 21 rules found" in r.stdout
    r = promtool("test", "rules", RULES_TEST)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.split()[-1] == "SUCCESS"


def rule_exprs():
    with open(RULES) as f:
        groups = yaml.safe_load(f)["groups"]
    return [r["expr"] for g in groups for r in g["rules"]]


def dashboard_exprs():
    with open(DASHBOARD) as f:
        dash = json.load(f)
    out = []
    for p in dash["panels"]:
        for t in p.get("targets", []):
            e = t["expr"]
            for k, v in GRAFANA_VARS.items():
                e = e.replace(k, v)
            out.append((p["title"], e))
    return out


def scrape_families(text):
    """{sample name: set of (label, value)} from an exposition."""
    names = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"(\w+)(?:\{(.*)\})? ", line)
        labels = names.setdefault(m.group(1), set())
        labels.update(MATCHER.findall(m.group(2) or ""))
    return names


@pytest.fixture(scope="module")
def fleet():
    """One policyd (LDAP directory, Redis, siege on, /metrics) that has
    answered a valid and an unknown recipient, and a Prometheus scraping
    it every second with the rules loaded."""
    with RedisServer() as r, Slapd(users=10) as s:
        mport = free_port()
        conf = s.policyd_conf(extra=(
            "[redis]\naddress = 127.0.0.1:%d\n\n[siege]\naction = defer\n\n"
            "[stats]\nprometheus = inet:127.0.0.1:%d\n" % (r.port, mport)))
        with Daemon(conf=conf) as d:
            wait_for(lambda: port_open("127.0.0.1", mport), what="/metrics port")
            with d.client() as c:
                assert c.ask(recipient="alice@example.com") == "DUNNO"
                assert c.ask(recipient="nobody@example.com") == UNKNOWN
            prom = Prometheus("127.0.0.1:%d" % mport)
            try:
                prom.start()
                yield d, mport, prom
            finally:
                prom.cleanup()


class Prometheus:
    """A private prometheus server in a temp dir on a free loopback port."""

    def __init__(self, target):
        self.dir = tempfile.mkdtemp(prefix="policyd-prom-")
        self.port = free_port()
        shutil.copy(RULES, self.dir)
        with open(os.path.join(self.dir, "prometheus.yml"), "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                    "rule_files: [policyd.rules.yml]\n"
                    "scrape_configs:\n  - job_name: policyd\n"
                    "    static_configs:\n      - targets: ['%s']\n" % target)
        self.proc = None

    def start(self):
        self.logf = open(os.path.join(self.dir, "prometheus.log"), "wb")
        self.proc = subprocess.Popen(
            ["prometheus", "--config.file=" + os.path.join(self.dir, "prometheus.yml"),
             "--storage.tsdb.path=" + os.path.join(self.dir, "data"),
             "--web.listen-address=127.0.0.1:%d" % self.port],
            stdout=self.logf, stderr=subprocess.STDOUT)
        wait_for(lambda: self.proc.poll() is not None or self.ready(), 60,
                 interval=0.2, what="prometheus to be ready")
        assert self.proc.poll() is None, self.read_log()

    def ready(self):
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/-/ready" % self.port,
                                        timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def api(self, path, **params):
        url = "http://127.0.0.1:%d/api/v1/%s?%s" % (self.port, path,
                                                   urllib.parse.urlencode(params))
        with urllib.request.urlopen(url, timeout=10) as r:
            body = json.load(r)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr):
        return self.api("query", query=expr)["result"]

    def read_log(self):
        with open(os.path.join(self.dir, "prometheus.log"), "rb") as f:
            return f.read().decode(errors="replace")

    def cleanup(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None:
            self.logf.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def test_rules_and_dashboard_use_only_exported_metrics(fleet):
    d, mport, _ = fleet
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % mport, timeout=10) as r:
        exported = scrape_families(r.read().decode())
    exprs = rule_exprs() + [e for _, e in dashboard_exprs()]
    used = set()
    for e in exprs:
        for name, matchers in SELECTOR.findall(e):
            used.add(name)
            assert name in exported, "%s (in %s) is not exported" % (name, e)
            for k, v in MATCHER.findall(matchers):
                if k not in ("instance", "job"):
                    assert (k, v) in exported[name], \
                        "%s{%s=%r} (in %s) is not exported" % (name, k, v, e)
    # the check saw the families it is about, siege and histograms included
    for name in ("policyd_siege", "policyd_request_duration_seconds_bucket",
                 "policyd_directory_duration_seconds_bucket", "policyd_redis_up",
                 "policyd_network_unknown_recipients", "policyd_verdicts_total"):
        assert name in used, name
    assert ("le", "100") in exported["policyd_request_duration_seconds_bucket"]


def test_prometheus_evaluates_rules_and_dashboard(fleet):
    _, _, prom = fleet
    # two scrapes, so that rates have two samples
    wait_for(lambda: prom.query("count_over_time(policyd_uptime_seconds[1m]) >= 2"),
             60, interval=0.2, what="two scrapes of policyd")

    def evaluated():
        rules = [r for g in prom.api("rules")["groups"] for r in g["rules"]]
        return all(r["health"] != "unknown" for r in rules) and rules
    rules = wait_for(evaluated, 60, interval=0.2, what="every rule evaluated")
    assert len(rules) == 21
    assert [r["name"] for r in rules if r["health"] != "ok"] == []
    # a healthy daemon with Redis fires nothing but info
    firing = [a for a in prom.api("alerts")["alerts"] if a["labels"]["severity"] != "info"]
    assert firing == []
    assert prom.query('job:policyd_up:sum{job="policyd"}')[0]["value"][1] == "1"
    for title, expr in dashboard_exprs():
        assert prom.query(expr), "panel %r: no data for %s" % (title, expr)

"""bench - the `make bench` driver: policyd against the null responder.

Usage: python3 tests/bench/bench.py BUILD_DIR [--seconds S] [--only a,b]
                                    [--json FILE] [--no-fail]

Every scenario starts what it needs on free loopback ports in a temp dir
(nullresp, policyd through harness.Daemon, redis-server and slapd through the
tests/pylib helpers), runs BUILD/bench/loadgen against it, and stops what it
started.  The null responder is measured in the same run, so each ratio
compares rates taken in the same run on the same (shared) machine.

Scenarios (see tests/bench/README.md for what each one means):
  null     nullresp, 50 connections: the machine's ceiling, measured in turns
           with each policyd scenario (null, policyd, null, ..., null)
  warm     file directory, every answer an in-process (L1) hit
  default  conf/policyd.conf as shipped (a log line per decision, stderr to a
           file), every recipient valid, every answer an L1 hit
  redis    [cache] local_size = 0, every lookup a Redis hit
  cold     LDAP through a real slapd, L1 and Redis off, addresses distinct
  harvest  many clients, half the recipients unknown, counters in Redis
  idle     10,000 idle connections: policyd's VmRSS
  tarpit   10,000 requests parked in tarpit delays; p99 of other clients

Rates and percentiles are medians over ROUNDS rounds; each ratio is the
median of (policyd round / mean of the null rounds either side).

Targets (from issues 7 and 14): warm >= 0.8x null, default >= 0.85x null,
redis >= 0.5x null, idle RSS <= 64 MiB, tarpit: innocent p99 < 2 ms with
10,000 parked.  The exit status
is 1 when a target is missed or a scenario fails (--no-fail: always 0).
"""
import argparse
import json
import os
import platform
import re
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PYLIB = os.path.join(HERE, "..", "pylib")
sys.path.insert(0, PYLIB)

CONNS = 50
VALID = 1000            # user0..user999@example.com exist
TARPIT_PARKED = 10000
IDLE_CONNS = 10000
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    pass


# ---- processes ----

def proc_cpu_s(pid):
    """utime + stime of pid, in seconds (None if gone)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return None


def proc_rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise BenchError("no VmRSS for pid %d" % pid)


def parse_result(text):
    """The loadgen summary line as a dict (numbers converted)."""
    for line in reversed(text.splitlines()):
        if line.startswith("requests="):
            out = {}
            for kv in line.split():
                k, _, v = kv.partition("=")
                if k == "actions":
                    out[k] = v
                    continue
                try:
                    out[k] = float(v) if "." in v else int(v)
                except ValueError:
                    out[k] = v
            return out
    raise BenchError("loadgen printed no summary:\n" + text[-2000:])


class Loadgen:
    """One loadgen process; start() returns at once, wait() for the summary."""

    def __init__(self, build, args):
        self.argv = [os.path.join(build, "bench", "loadgen")] + [str(a) for a in args]
        self.proc = None
        self.lines = []

    def start(self):
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, bufsize=1)
        return self

    def readline_until(self, prefix, timeout):
        """Read stdout lines until one starts with prefix; returns it."""
        import selectors
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
                    continue
                line = self.proc.stdout.readline()
                if not line:
                    break
                self.lines.append(line)
                if line.startswith(prefix):
                    return line.strip()
        finally:
            sel.unregister(self.proc.stdout)
        raise BenchError("loadgen: no %r line within %.0f s (got %r)"
                         % (prefix, timeout, self.lines[-3:]))

    def wait(self, timeout):
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGTERM)
            out, err = self.proc.communicate(timeout=10)
        text = "".join(self.lines) + out
        if self.proc.returncode not in (0, 1):
            raise BenchError("loadgen exited %d: %s" % (self.proc.returncode, err[-1000:]))
        return parse_result(text)

    def stop(self, timeout=10):
        """SIGTERM: loadgen prints its summary and exits."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


def run_loadgen(build, args, timeout):
    return Loadgen(build, args).start().wait(timeout)


class NullResp:
    def __init__(self, build):
        self.argv = [os.path.join(build, "bench", "nullresp"), "-h", "127.0.0.1", "-p", "0"]

    def __enter__(self):
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()
        m = re.match(r"port=(\d+)", line)
        if not m:
            self.proc.kill()
            raise BenchError("nullresp did not start: %r" % line)
        self.port = int(m.group(1))
        self.pid = self.proc.pid
        return self

    def __exit__(self, *exc):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# ---- policyd configurations ----

def recipients_text(n=VALID):
    return "".join("user%d@example.com\n" % i for i in range(n))


# Harvest defence on, every stage out of reach: the benchmark measures the
# reads, records and merges of the standings, not delays.  The wide level and
# the ceilings are out of reach too (the load generator's clients share a few
# /24s), and siege mode only watches (it still counts): a 10%-unknown load at
# this rate is a siege of example.com.
QUIET_LEVELS = """block_ceiling = 0
wide_tarpit_after = 1000000
wide_block_after = 1000000
wide_block_ceiling = 0

[siege]
action = off
"""
HARVEST_QUIET = """
[harvest]
enabled = yes
window = 600
tarpit_after = 1000000
block_after = 1000000
""" + QUIET_LEVELS


# One log line per decision is policyd's default; the benchmark measures the
# decision path, so it is off here (the README says what it costs).
BASE_EXTRA = "\n[server]\nlog_decisions = no\n"


def harness_for(build):
    """tests/pylib/harness.py, pointed at BUILD's binaries."""
    os.environ["POLICYD_BUILD"] = build
    import harness
    harness.POLICYD = os.path.abspath(os.path.join(build, "policyd"))
    harness.POLICYCTL = os.path.abspath(os.path.join(build, "policyctl"))
    return harness


def daemon(build, extra, recipients=None):
    return harness_for(build).Daemon(extra=BASE_EXTRA + extra,
                                     recipients=recipients or recipients_text())


SHIPPED_CONF = os.path.join(HERE, "..", "..", "conf", "policyd.conf")


def shipped_daemon(build):
    """policyd with conf/policyd.conf as shipped, but for where it listens
    (a free port), its control socket (for the stats), the recipient file
    and, as root, allow_root.  stderr goes to the harness's log file."""
    d = harness_for(build).Daemon(recipients=recipients_text())
    with open(SHIPPED_CONF) as f:
        text = f.read()
    server = "[server]\nlisten = inet:127.0.0.1:%d\ncontrol = unix:%s\n" % (
        d.port, d.control_path)
    if os.geteuid() == 0:
        server += "allow_root = yes\n"
    for old, new in (("[server]\n", server),
                     ("\nfile = conf/recipients\n", "\nfile = %s/recipients\n" % d.dir)):
        if old not in text:
            raise BenchError("%s: no %r to replace" % (SHIPPED_CONF, old.strip()))
        text = text.replace(old, new, 1)
    with open(d.conf, "w") as f:
        f.write(text)
    return d


def daemon_stats(d):
    """policyd's stats as a dict (None if the control socket fails)."""
    try:
        r = d.ctl("stats", "--json", check=False)
        body = r.stdout
        i = body.find("{")
        return json.loads(body[i:]) if i >= 0 else None
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


def find_key(obj, key):
    """The first value of key anywhere in a nested dict."""
    if isinstance(obj, dict):
        if key in obj:
            return obj[key]
        for v in obj.values():
            r = find_key(v, key)
            if r is not None:
                return r
    return None


# ---- redis and slapd, through the shared helpers ----

def start_redis():
    """The shared RedisServer helper (no persistence, free loopback port)."""
    import redis as redis_helper            # tests/pylib/redis.py
    r = redis_helper.RedisServer()
    try:
        r.start()
    except Exception:
        r.cleanup()
        raise
    return r, "127.0.0.1:%d" % r.port


def redis_cmdstats(r):
    """INFO commandstats: {command: (calls, usec_per_call)}, the busiest
    first (what the server's CPU went to, command by command)."""
    out = {}
    for line in r.call("INFO", "commandstats").decode().split():
        if line.startswith("cmdstat_"):
            name, _, fields = line[len("cmdstat_"):].partition(":")
            f = dict(kv.split("=") for kv in fields.split(","))
            out[name] = (int(f["calls"]), float(f["usec_per_call"]))
    return dict(sorted(out.items(), key=lambda kv: -kv[1][0] * kv[1][1]))


def redis_key_kinds(r):
    """Keys by kind, the word after the "policyd:" prefix (e: standings,
    p: siege's pending networks, r: siege's counters, ...)."""
    kinds = {}
    for k in r.keys("*"):
        parts = k.decode(errors="replace").split(":")
        kind = parts[1] if len(parts) > 2 and parts[0] == "policyd" else "other"
        kinds[kind] = kinds.get(kind, 0) + 1
    return dict(sorted(kinds.items(), key=lambda kv: -kv[1]))


def start_slapd(users):
    """The shared Slapd helper with users user00000..; in the foreground with
    -d stats, as the tests run it (one log line per search, like a
    production slapd at loglevel stats)."""
    import slapd as slapd_helper            # tests/pylib/slapd.py
    s = slapd_helper.Slapd(users=users)
    try:
        s.start()
    except Exception:
        s.cleanup()
        raise
    conf = ("\n[directory]\nbackend = ldap\n"
            "\n[ldap]\nuri = %s\nbind_dn = %s\nbind_pw = %s\nbase = %s\n"
            % (s.uri, slapd_helper.BIND_DN, slapd_helper.BIND_PW, slapd_helper.PEOPLE))
    return s, conf


# ---- scenarios ----

# A store's work outlives the round: valid-only merges leave up to
# EVIDENCE_VALID_FLUSH_MS (1 s) after their answers.
SETTLE_S = 1.2


def measure(build, port, secs, warmup, extra_args, server_pid, side_pids=()):
    """One loadgen run.  side_pids are the server's own servers (Redis,
    slapd): their CPU is counted apart, and read again SETTLE_S after the
    run, so the per-answer figures include the work the run left behind."""
    pids = [server_pid] + list(side_pids)
    cpu0 = [proc_cpu_s(p) for p in pids]
    t0 = time.monotonic()
    args = ["-h", "127.0.0.1", "-p", port, "-c", CONNS, "-w", warmup, "-d", secs] + extra_args
    res = run_loadgen(build, args, timeout=warmup + secs + 30)
    wall = time.monotonic() - t0
    cpu1 = [proc_cpu_s(p) for p in pids]
    late = cpu1
    if side_pids:
        time.sleep(SETTLE_S)
        late = [proc_cpu_s(p) for p in pids]
    res["wall_s"] = wall
    if None not in cpu0 + cpu1 + late and wall > 0:
        busy = [b - a for a, b in zip(cpu0, cpu1)]
        used = [b - a for a, b in zip(cpu0, late)]
        res["server_cpu_pct"] = round(100.0 * busy[0] / wall)
        res["cpu_busy_s"] = sum(busy) + res.get("cpu_s", 0)
        res["cpu_server_s"], res["cpu_side_s"] = used[0], sum(used[1:])
        # CPU per answer: what the machine's load does not change much.
        if res.get("answers_total"):
            res["server_us_per_req"] = 1e6 * used[0] / res["answers_total"]
    res["loadgen_cpu_pct"] = round(100.0 * res.get("cpu_s", 0) / wall) if wall else 0
    if res["requests"] == 0:
        raise BenchError("no request was answered")
    return res


MIX = ["--clients", 1000, "--valid-ratio", 0.9, "--valid-range", VALID,
       "--invalid-range", 1000]
ROUNDS = 3


def median(v):
    v = sorted(x for x in v if x is not None)
    if not v:
        return None
    m = len(v) // 2
    return v[m] if len(v) % 2 else (v[m - 1] + v[m]) / 2.0


def combine(runs):
    """Several rounds of one load as one result: medians of the rates and
    percentiles, sums of the counts."""
    out = {"rounds": len(runs)}
    for k in ("rps", "p50_us", "p90_us", "p99_us", "p999_us", "server_cpu_pct",
              "loadgen_cpu_pct", "server_us_per_req"):
        out[k] = median([r.get(k) for r in runs])
    out["max_us"] = max(r["max_us"] for r in runs)
    for k in ("requests", "errors", "unanswered", "lost", "valid_not_dunno",
              "invalid_dunno", "answers_total", "wall_s", "cpu_s"):
        out[k] = sum(r.get(k, 0) for r in runs)
    # CPU totals over the rounds, None when a round could not be read.
    for k in ("cpu_server_s", "cpu_side_s", "cpu_busy_s"):
        v = [r.get(k) for r in runs]
        out[k] = None if None in v else sum(v)
    acts = {}
    for r in runs:
        for item in str(r.get("actions", "")).split(","):
            w, _, n = item.rpartition(":")
            if w:
                acts[w] = acts.get(w, 0) + int(n)
    out["actions"] = ",".join("%s:%d" % kv for kv in sorted(acts.items()))
    out["rps_rounds"] = [round(r["rps"]) for r in runs]
    out["p99_rounds"] = [round(r["p99_us"]) for r in runs]
    return out


def paired(build, a, port, pid, args, warmup, side_pids=()):
    """The load against policyd and against the null responder in turns:
    null, policyd, null, policyd, ..., null.  Each policyd round is compared
    with the mean of the null rounds either side of it and the ratio is the
    median of those, so the machine's other work, which comes and goes over
    seconds, weighs on both sides of every ratio."""
    null = a.null
    secs = a.seconds / ROUNDS
    # The warm-up pass (fills L1 or Redis), not recorded.
    measure(build, port, warmup, 0, args, pid)
    nulls = [measure(build, null.port, secs, 0.3, args, null.pid)]
    runs = []
    for _ in range(ROUNDS):
        runs.append(measure(build, port, secs, 0.3, args, pid, side_pids))
        nulls.append(measure(build, null.port, secs, 0.3, args, null.pid))
    a.null_rounds.extend(nulls)
    res = combine(runs)
    res["ratios"] = [round(r["rps"] / ((n0["rps"] + n1["rps"]) / 2.0), 3)
                     for r, n0, n1 in zip(runs, nulls, nulls[1:])]
    res["ratio"] = median(res["ratios"])
    res["null_cpu"] = combine(nulls)
    return res


def sc_null(build, a):
    """The ceiling: every null round of the paired scenarios (or rounds of
    its own when run alone)."""
    if not a.null_rounds:
        for _ in range(ROUNDS):
            a.null_rounds.append(measure(build, a.null.port, a.seconds / ROUNDS, 0.3, MIX,
                                         a.null.pid))
    return combine(a.null_rounds)


def sc_warm(build, a):
    extra = HARVEST_QUIET + "\n[cache]\nlocal_size = 100000\n"
    with daemon(build, extra) as d:
        res = paired(build, a, d.port, d.proc.pid, MIX, 2)
        res["stats"] = daemon_stats(d)
        return res


# Warm answers only: the shipped harvest defence would tarpit a client's
# sixth unknown recipient (what it is for), and this measures the logging.
ALL_VALID = ["--clients", 1000, "--valid-ratio", 1.0, "--valid-range", VALID]


def sc_default(build, a):
    with shipped_daemon(build) as d:
        res = paired(build, a, d.port, d.proc.pid, ALL_VALID, 2)
        res["stats"] = daemon_stats(d)
        d.stop()                # every line is out once it has exited
        with open(d.log, "rb") as f:
            res["decision_lines"] = sum(1 for line in f if b" verdict=" in line)
        res["log_mib"] = round(os.path.getsize(d.log) / 2.0**20, 1)
        return res


def with_redis(build, a, extra, args, warmup):
    """A paired run of policyd against a redis-server of its own (extra,
    then its [redis] address), with what Redis holds and did at the end."""
    r, addr = start_redis()
    try:
        with daemon(build, extra + "\n[redis]\naddress = %s\n" % addr) as d:
            res = paired(build, a, d.port, d.proc.pid, args, warmup, [r.proc.pid])
            res["stats"] = daemon_stats(d)
            res["redis_keys"] = r.call("DBSIZE")
            res["redis_cmds"] = redis_cmdstats(r)
            with r.client() as c:
                res["redis_kinds"] = redis_key_kinds(c)
            return res
    finally:
        r.cleanup()


def sc_redis(build, a):
    # The warm-up pass fills Redis; then every lookup is a Redis hit.
    return with_redis(build, a, HARVEST_QUIET + "\n[cache]\nlocal_size = 0\n", MIX, 2)


def sc_cold(build, a):
    users = 10000
    s, ldap_conf = start_slapd(users)
    try:
        # No L1, no Redis: every request is one LDAP search, and the
        # addresses are walked in order so no two in flight are the same.
        extra = HARVEST_QUIET + "\n[cache]\nlocal_size = 0\n" + ldap_conf
        with daemon(build, extra) as d:
            res = paired(build, a, d.port, d.proc.pid,
                         ["--clients", 1000, "--valid-ratio", 0.9, "--sequential",
                          "--pattern", "user%05d@example.com", "--valid-range", users,
                          "--invalid-range", 0], 0.5, [s.proc.pid])
            res["stats"] = daemon_stats(d)
            res["slapd_searches"] = s.searches()
            return res
    finally:
        s.cleanup()


def sc_harvest(build, a):
    # Thresholds above what one client reaches in the run: this measures
    # the counting (one INCR per unknown recipient), not the delays.
    return with_redis(build, a, "\n[harvest]\nenabled = yes\nwindow = 600\ntarpit_after = 200\n"
                      "tarpit_delay = 1\ntarpit_max = 5\nblock_after = 100000\n"
                      + QUIET_LEVELS,
                      ["--clients", 20000, "--ipv6-ratio", 0.3, "--valid-ratio", 0.5,
                       "--valid-range", VALID, "--invalid-range", 0], 0.5)


def sc_idle(build, a):
    extra = "\n[server]\nmax_connections = 20000\n"
    with daemon(build, extra) as d:
        pid = d.proc.pid
        base = proc_rss_kib(pid)
        lg = Loadgen(build, ["-h", "127.0.0.1", "-p", d.port, "-c", 0,
                             "--idle", IDLE_CONNS, "-d", 120, "--connect-burst", 500]).start()
        try:
            lg.readline_until("idle_connected=", timeout=60)
            time.sleep(1.0)
            rss = proc_rss_kib(pid)
            st = daemon_stats(d)
            # The connections must still be there when RSS is read.
            res = lg.stop()
        finally:
            lg.kill()
        held = (st or {}).get("connections", {}).get("current")
        return {"rss_kib": rss, "rss_base_kib": base, "idle": res.get("idle"),
                "errors": res.get("errors"), "daemon_connections": held}


TARPIT_RATE = 5000      # innocent requests/s: a busy MTA, below saturation


def sc_tarpit(build, a):
    after = 5
    extra = ("\n[server]\nmax_connections = 20000\n"
             "\n[harvest]\nenabled = yes\nwindow = 600\ntarpit_after = %d\n"
             "tarpit_delay = 30\ntarpit_max = 60\nblock_after = 1000000\n" % after
             + QUIET_LEVELS)
    # Innocent clients: valid recipients at a fixed rate, so the latency is
    # service time, not the queue a saturating closed loop builds itself.
    innocent = ["--clients", 1000, "--valid-ratio", 1.0, "--valid-range", VALID,
                "--rate", TARPIT_RATE]
    secs = a.seconds / ROUNDS

    def rounds(d):
        return combine([measure(build, d.port, secs, 0.3, innocent, d.proc.pid)
                        for _ in range(ROUNDS)])

    with daemon(build, extra) as d:
        base = rounds(d)
        n = TARPIT_PARKED + after
        parker = Loadgen(build, ["-h", "127.0.0.1", "-p", d.port, "-c", n, "-n", n,
                                 "-d", 120, "--client", "203.0.113.7", "--valid-ratio", 0,
                                 "--connect-burst", 500, "--progress", 0.5]).start()
        try:
            # Parked = sent and not answered; wait until all are sent.  The
            # first delays end 30 s after parking: measure well within that.
            deadline = time.monotonic() + 12
            parked = 0
            while time.monotonic() < deadline and parked < TARPIT_PARKED:
                line = parker.readline_until("progress", timeout=5)
                m = re.search(r"outstanding=(\d+)", line)
                parked = int(m.group(1)) if m else 0
            st = daemon_stats(d)
            delayed_before = find_key(st, "delayed_now") if st else None
            inn = rounds(d)
            st = daemon_stats(d)
            delayed_after = find_key(st, "delayed_now") if st else None
            pres = parker.stop()
        finally:
            parker.kill()
        inn.update({"parked_loadgen": parked, "parked_unanswered_at_end": pres.get("unanswered"),
                    "delayed_now_before": delayed_before, "delayed_now_after": delayed_after,
                    "parker_errors": pres.get("errors"), "stats": st,
                    "baseline_p99_us": base["p99_us"], "baseline_p50_us": base["p50_us"],
                    "p99_rounds": inn["p99_rounds"], "baseline_p99_rounds": base["p99_rounds"]})
        return inn


SCENARIOS = [
    ("warm", "warm (L1 hits)", sc_warm),
    ("default", "shipped conf (logs)", sc_default),
    ("redis", "Redis hits", sc_redis),
    ("cold", "cold (slapd)", sc_cold),
    ("harvest", "harvest mix (Redis)", sc_harvest),
    ("idle", "10k idle conns", sc_idle),
    ("tarpit", "10k parked, others", sc_tarpit),
    ("null", "null responder", sc_null),
]
ORDER = ["null", "warm", "default", "redis", "cold", "harvest", "idle", "tarpit"]


# ---- the table ----

def fmt_us(v):
    return "%.0f" % v if v is not None else "-"


def verdict(ok):
    return "PASS" if ok else "MISS"


SIDE = {"redis": "Redis", "harvest": "Redis", "cold": "slapd"}


def cpu_split(key, r):
    """Where the CPU of one answer went, over all rounds of policyd's scenario
    and of the null responder's rounds beside it, and how many cores each
    kept busy.  The ratio is (N / T) x (U / V): N and T the CPU per answer
    of the null run and of policyd's, V and U the cores they kept busy.  So
    N / T is the ratio policyd's CPU per answer gives at the null run's
    occupancy; a measured ratio below it comes from policyd's run keeping
    fewer cores busy (waiting on Redis or slapd, one request outstanding per
    connection, and the machine's scheduling)."""
    n = r.get("null_cpu") or {}

    def split(x, side):
        if not x.get("answers_total") or not x.get("wall_s") \
                or None in (x.get("cpu_server_s"), x.get("cpu_side_s"), x.get("cpu_busy_s")):
            return None
        cpu = [x["cpu_server_s"], x["cpu_side_s"] if side else 0.0, x.get("cpu_s", 0.0)]
        return [1e6 * c / x["answers_total"] for c in cpu], x["cpu_busy_s"] / x["wall_s"]

    side = SIDE.get(key)
    mine, null = split(r, side), split(n, None)
    if not mine or not null:
        return None
    (m, mu), (z, zu) = mine, null
    return ("CPU per answer: policyd %.1f%s + loadgen %.1f = %.1f us, %.2f cores busy; "
            "null responder %.1f + loadgen %.1f = %.1f us, %.2f cores busy; at the null "
            "run's occupancy this CPU per answer gives %.2f x null"
            % (m[0], " + %s %.1f" % (side, m[1]) if side else "", m[2], sum(m), mu,
               z[0], z[2], sum(z), zu, sum(z) / sum(m)))


def table(results, machine):
    rows, checks = [], []
    titles = {key: title for key, title, _ in SCENARIOS}
    hdr = "%-22s %9s %8s %8s %9s %7s %9s %7s %-22s %s" % (
        "scenario", "req/s", "p50 us", "p99 us", "p99.9 us", "x null", "cpu s/lg", "us/req",
        "target", "result")
    for key in ORDER:
        title = titles[key]
        if key not in results:
            continue
        r = results[key]
        if "error" in r:
            rows.append("%-22s ERROR: %s" % (title, r["error"]))
            checks.append(False)
            continue
        if key == "idle":
            mib = r["rss_kib"] / 1024.0
            ok = mib <= 64 and r.get("idle") == IDLE_CONNS
            rows.append("%-22s RSS %.1f MiB with %s idle connections (%.1f MiB before)  %-14s %s"
                        % (title, mib, r.get("idle"), r["rss_base_kib"] / 1024.0,
                           "<= 64 MiB", verdict(ok)))
            checks.append(ok)
            continue
        ratio = 1.0 if key == "null" else r.get("ratio")
        target, ok = "", None
        if key == "warm":
            target, ok = ">= 0.80 x null", ratio is not None and ratio >= 0.8
        elif key == "default":
            target, ok = ">= 0.85 x null", ratio is not None and ratio >= 0.85
        elif key == "redis":
            target, ok = ">= 0.50 x null", ratio is not None and ratio >= 0.5
        elif key == "tarpit":
            parked = r.get("delayed_now_before") or r.get("parked_loadgen") or 0
            target = "p99 < 2 ms, %dk parked" % (TARPIT_PARKED // 1000)
            ok = r["p99_us"] < 2000 and parked >= TARPIT_PARKED \
                and (r.get("delayed_now_after") or parked) >= TARPIT_PARKED
        cpu = "%s/%s%%" % (r.get("server_cpu_pct", "-"), r.get("loadgen_cpu_pct", "-"))
        upr = r.get("server_us_per_req")
        rows.append("%-22s %9.0f %8s %8s %9s %7s %9s %7s %-22s %s" % (
            title, r["rps"], fmt_us(r["p50_us"]), fmt_us(r["p99_us"]), fmt_us(r["p999_us"]),
            "%.2f" % ratio if ratio is not None else "-", cpu,
            "%.1f" % upr if upr is not None else "-", target,
            "" if ok is None else verdict(ok)))
        if ok is not None:
            checks.append(ok)
    out = ["", "policyd benchmark, %s" % machine, hdr, "-" * len(hdr)] + rows
    notes = []
    for key in ORDER:
        title = titles[key]
        r = results.get(key)
        if not r or "error" in r:
            continue
        if key == "idle":
            notes.append("%s: policyd reports %s connections" % (title, r.get("daemon_connections")))
            continue
        notes.append("%s: %d answers, errors=%s, actions=%s, valid_not_dunno=%s, invalid_dunno=%s"
                     % (title, r["requests"], r.get("errors"), r.get("actions"),
                        r.get("valid_not_dunno"), r.get("invalid_dunno")))
        if "rps_rounds" in r:
            notes.append("%s: req/s by round %s%s" % (
                title, r["rps_rounds"],
                ", ratio by round %s" % r["ratios"] if "ratios" in r else ""))
        st = r.get("stats")
        if st:
            c, dr = st.get("cache", {}), st.get("directory", {})
            notes.append("%s: policyd: l1 hits/misses %s/%s, redis hits/misses %s/%s, "
                         "directory queries %s (errors %s, timeouts %s), verdicts %s"
                         % (title, c.get("l1_hits"), c.get("l1_misses"), c.get("redis_hits"),
                            c.get("redis_misses"), dr.get("queries"), dr.get("errors"),
                            dr.get("timeouts"),
                            st.get("requests", {}).get("by_verdict")))
        if "decision_lines" in r:
            notes.append("%s: %s decision lines logged, %s MiB of log"
                         % (title, r["decision_lines"], r.get("log_mib")))
        if "redis_keys" in r:
            notes.append("%s: %s keys in Redis at the end%s" % (
                title, r["redis_keys"], " (%s)" % ", ".join(
                    "%s %d" % kv for kv in r["redis_kinds"].items())
                if r.get("redis_kinds") else ""))
        if r.get("redis_cmds"):
            notes.append("%s: Redis commands (calls x us each): %s" % (title, ", ".join(
                "%s %d x %.1f" % (k, c, u) for k, (c, u) in list(r["redis_cmds"].items())[:5])))
        cpu_note = cpu_split(key, r)
        if cpu_note:
            notes.append("%s: %s" % (title, cpu_note))
        if key == "tarpit":
            notes.append("%s: innocent clients paced at %d/s; loadgen saw %s parked; policyd "
                         "delayed_now %s before, %s after the measurement; p99 by round %s us; "
                         "the same load with nothing parked: p50 %s us, p99 %s us (by round %s)"
                         % (title, TARPIT_RATE, r.get("parked_loadgen"),
                            r.get("delayed_now_before"), r.get("delayed_now_after"),
                            r.get("p99_rounds"), fmt_us(r.get("baseline_p50_us")),
                            fmt_us(r.get("baseline_p99_us")), r.get("baseline_p99_rounds")))
    out += ["", "cpu s/lg: CPU used by the server / by loadgen, % of one core over the run",
            "(on %d cores: a loadgen near 100%% means the ceiling is the generator's)."
            % os.cpu_count(),
            "us/req: the server's CPU time per answer (warm-up included); Redis's and",
            "slapd's are apart, in the notes (CPU per answer)."] + notes
    return "\n".join(out), all(checks) and bool(checks)


def cpu_times():
    """The machine's CPU time by kind, /proc/stat's first line (None if not
    readable)."""
    try:
        with open("/proc/stat") as f:
            return [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None


def stolen_line(t0, t1):
    """How much of the machine's CPU time the hypervisor gave to others
    (steal, /proc/stat's eighth field) between t0 and t1: on a shared VM the
    ratios are only as steady as this is low."""
    if not t0 or not t1 or len(t0) < 8 or len(t1) < 8:
        return None
    d = [b - a for a, b in zip(t0, t1)]
    total = sum(d[:8])
    if total <= 0:
        return None
    return ("machine: %.1f%% of CPU time stolen by the hypervisor, %.1f%% idle or "
            "waiting on I/O, over the whole benchmark"
            % (100.0 * d[7] / total, 100.0 * (d[3] + d[4]) / total))


def machine_line():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return "%s, %d cpus, %.0f GiB, Linux %s, %s" % (
        cpu, os.cpu_count(), mem, platform.release(), time.strftime("%Y-%m-%d %H:%M"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--seconds", type=float, default=4.5,
                    help="measured seconds per load, split over %d rounds" % ROUNDS)
    ap.add_argument("--only", default="")
    ap.add_argument("--json", default="")
    ap.add_argument("--no-fail", action="store_true")
    a = ap.parse_args()
    build = os.path.abspath(a.build)
    only = set(a.only.split(",")) - {""}
    results = {}
    a.null_rounds = []
    t0 = cpu_times()
    # One null responder for the whole run, measured in turns with policyd.
    with NullResp(build) as a.null:
        for key, title, fn in SCENARIOS:
            if only and key not in only:
                continue
            sys.stderr.write("bench: %s ...\n" % title)
            sys.stderr.flush()
            try:
                results[key] = fn(build, a)
            except Exception as e:      # one failed scenario must not hide the rest
                results[key] = {"error": "%s: %s" % (type(e).__name__, e)}
            sys.stderr.write("bench: %s: %s\n" % (key, {k: v for k, v in results[key].items()
                                                          if k != "stats"}))
    text, ok = table(results, machine_line())
    print(text)
    results["machine"] = stolen_line(t0, cpu_times())
    if results["machine"]:
        print(results["machine"])
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1, default=str)
    return 0 if ok or a.no_fail else 1


if __name__ == "__main__":
    sys.exit(main())

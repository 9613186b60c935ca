"""`make deb` builds a Debian package that installs, checks and goes away
cleanly on this machine.

The tests install the package with dpkg -i on the test machine, so they run
only as root and only on a machine without any trace of policyd (package,
files, user): a machine the test can leave as it found it.  The module
fixture builds and installs once; its teardown purges the package and
deletes the policyd user and group, whatever failed.  The tests run in file
order; test_remove_then_purge comes last.
"""
import fcntl
import grp
import os
import pwd
import subprocess
import time

import pytest

import harness

# the package is built from the sources, not from the build under test
pytestmark = pytest.mark.plain_build

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CONF = "/etc/policyd/policyd.conf"
UNIT = "/lib/systemd/system/policyd.service"
# Anything here before the test means the machine holds a policyd already.
TRACES = ["/etc/policyd", "/usr/sbin/policyd", "/usr/bin/policyctl", UNIT,
          "/etc/systemd/system/policyd.service"]
# Another make check on this machine may be testing the package too.
LOCK = "/run/lock/policyd-test-deb.lock"
DSH = "/var/lib/systemd/deb-systemd-helper-enabled"


def version():
    with open(os.path.join(TOP, "Makefile")) as f:
        for line in f:
            if line.startswith("VERSION"):
                return line.split(":=")[1].strip()
    raise AssertionError("no VERSION in the Makefile")


def run(*argv, check=True, cwd=None):
    r = subprocess.run(list(argv), capture_output=True, text=True, timeout=1200, cwd=cwd)
    if check:
        assert r.returncode == 0, "%s: %d\n%s%s" % (argv, r.returncode, r.stdout[-4000:],
                                                    r.stderr[-4000:])
    return r


def dpkg(*args):
    """dpkg, retried while apt or dpkg elsewhere on the machine holds its lock."""
    deadline = time.monotonic() + 300
    while True:
        r = run("dpkg", *args, check=False)
        if r.returncode == 0 or "lock" not in r.stderr or time.monotonic() > deadline:
            assert r.returncode == 0, "dpkg %s: %d\n%s%s" % (args, r.returncode, r.stdout,
                                                              r.stderr)
            return r
        time.sleep(1)


def status():
    """dpkg's status of policyd, or None when dpkg does not know it."""
    r = run("dpkg-query", "-W", "-f=${Status}", "policyd", check=False)
    return r.stdout if r.returncode == 0 else None


def user():
    try:
        return pwd.getpwnam("policyd")
    except KeyError:
        return None


def group():
    try:
        return grp.getgrnam("policyd")
    except KeyError:
        return None


def try_lock(f):
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def restore():
    """Purge the package and drop the account: the machine as it was."""
    if status() is not None:
        dpkg("--purge", "policyd")
    if user():
        run("deluser", "--quiet", "--system", "policyd")
    if group():
        run("delgroup", "--quiet", "--system", "policyd")


@pytest.fixture(scope="module")
def installed():
    """Build with make deb, install with dpkg -i; yields make's output."""
    if os.geteuid() != 0:
        pytest.skip("dpkg -i needs root")
    with open(LOCK, "w") as lockf:
        harness.wait_for(lambda: try_lock(lockf), timeout=1200, interval=0.5,
                         what="another test_deb to finish")
        traces = [p for p in TRACES if os.path.lexists(p)]
        if status() is not None or traces or user() or group():
            pytest.skip("this machine already has policyd (package: %s, files: %s, or the "
                        "user or group): not touching it" % (status(), traces))
        try:
            built = run("make", "deb", cwd=TOP)
            arch = run("dpkg", "--print-architecture").stdout.strip()
            dpkg("-i", os.path.join(TOP, "build", "deb",
                                    "policyd_%s_%s.deb" % (version(), arch)))
            yield built.stdout
        finally:
            restore()


def test_installed_files_and_conffiles(installed):
    assert status() == "install ok installed"
    assert run("dpkg-query", "-W", "-f=${Version}", "policyd").stdout == version()
    files = sorted(f for f in run("dpkg", "-L", "policyd").stdout.split("\n")
                   if f and not os.path.isdir(f))
    assert files == [
        "/etc/policyd/policyd.conf",
        "/etc/policyd/recipients",
        UNIT,
        "/usr/bin/policyctl",
        "/usr/sbin/policyd",
        "/usr/share/doc/policyd/README.gz",
        "/usr/share/doc/policyd/changelog.gz",
        "/usr/share/doc/policyd/copyright",
        "/usr/share/man/man1/policyctl.1.gz",
        "/usr/share/man/man5/policyd.conf.5.gz",
        "/usr/share/man/man8/policyd.8.gz",
    ]
    # Both files in /etc are conffiles, registered with their shipped digest.
    conffiles = run("dpkg-query", "-W", "-f=${Conffiles}", "policyd").stdout.split("\n")
    got = dict(line.split()[:2] for line in conffiles if line.strip())
    want = {}
    for path in ("/etc/policyd/policyd.conf", "/etc/policyd/recipients"):
        want[path] = run("md5sum", path).stdout.split()[0]
    assert got == want
    assert run("/usr/sbin/policyd", "-V").stdout.startswith("policyd %s" % version())


def test_lintian_is_clean(installed):
    """make deb runs lintian: no error or warning (info tags are allowed)."""
    if not os.path.exists("/usr/bin/lintian"):
        pytest.skip("lintian is not installed")
    assert "lintian " in installed
    assert [l for l in installed.split("\n") if l[:3] in ("E: ", "W: ")] == []


def test_installed_config_checks(installed):
    r = run("/usr/sbin/policyd", "-t", "-c", CONF)
    assert r.stdout + r.stderr == "policyd: %s: configuration OK\n" % CONF
    with open(CONF) as f:
        conf = f.read().split("\n")
    assert "user = policyd" in conf
    assert "file = /etc/policyd/recipients" in conf
    assert "control = unix:/run/policyd/control.sock" in conf


def test_unit_verifies_and_is_not_enabled(installed):
    r = run("systemd-analyze", "verify", UNIT)
    assert (r.stdout, r.stderr) == ("", "")
    with open(UNIT) as f:
        unit = f.read()
    assert "ExecStart=/usr/sbin/policyd -c /etc/policyd/policyd.conf\n" in unit
    assert "/usr/local" not in unit
    # Nothing enables it: no symlink to the unit anywhere in /etc/systemd.
    links = [os.path.join(d, n) for d, _, names in os.walk("/etc/systemd")
             for n in names if n == "policyd.service"]
    assert links == []


def test_system_user(installed):
    u, g = user(), group()
    assert u is not None and g is not None
    assert u.pw_gid == g.gr_gid
    assert 100 <= u.pw_uid < 1000          # adduser --system's range
    assert (u.pw_dir, u.pw_shell) == ("/nonexistent", "/usr/sbin/nologin")
    assert not os.path.exists("/nonexistent")


def test_installed_daemon_drops_to_the_user(installed, monkeypatch):
    """The installed policyd, started as root on the installed config (only
    listen and control moved to a free port), runs as policyd and answers."""
    with open(CONF) as f:
        conf = f.read()
    monkeypatch.setattr(harness, "POLICYD", "/usr/sbin/policyd")
    conf += "\n[server]\nlisten = {listen}\ncontrol = none\n"
    with harness.Daemon(conf=conf, control=False) as d:
        d.wait_log("running as policyd (uid %d, gid %d)" % (user().pw_uid, group().gr_gid))
        with open("/proc/%d/status" % d.proc.pid) as f:
            ids = {l.split(":")[0]: l.split()[1:] for l in f if l.startswith(("Uid", "Gid"))}
        assert ids == {"Uid": [str(user().pw_uid)] * 4, "Gid": [str(group().gr_gid)] * 4}
        assert d.ask(recipient="alice@example.com") == "DUNNO"
        assert d.ask(recipient="nobody@example.com") == "550 5.1.1 User unknown"


def test_remove_then_purge(installed):
    """Last in the file.  remove keeps the conffiles, purge removes them; the
    user stays (Debian keeps system users: files may still be theirs)."""
    shipped = [f for f in run("dpkg", "-L", "policyd").stdout.split("\n")
               if f and not os.path.isdir(f)]
    conffiles = ["/etc/policyd/policyd.conf", "/etc/policyd/recipients"]
    dpkg("--remove", "policyd")
    assert status() == "deinstall ok config-files"
    assert [f for f in shipped if os.path.lexists(f)] == conffiles
    dpkg("--purge", "policyd")
    assert status() is None
    assert [f for f in shipped if os.path.lexists(f)] == []
    assert not os.path.exists("/etc/policyd")
    assert [n for n in os.listdir(DSH) if "policyd" in n] == []
    assert [n for n in os.listdir("/var/lib/dpkg/info") if n.startswith("policyd.")] == []
    assert user() is not None and group() is not None

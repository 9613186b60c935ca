"""postfix - a private Postfix instance for end-to-end tests.

Postfix(policy_port=P).start() runs Debian's postfix binaries with a
config_directory (DIR/etc), queue_directory (DIR/spool) and
data_directory (DIR/data) of its own under a temp dir DIR, smtpd on a free loopback port, and

    smtpd_recipient_restrictions = reject_unauth_destination,
                                   check_policy_service inet:HOST:P

The test domains are relay domains with an empty relay_recipient_maps and
smtpd_reject_unlisted_recipient = no, so only the policy server judges their
recipients; mail that is accepted goes to the discard: transport, so nothing
is ever delivered anywhere (nor bounced: no mail leaves the instance).
Postfix logs to DIR/maillog through postlogd.

Needs root (postfix start), the postfix user and the postdrop group (the
Debian package creates them).  It does not need, touch or read a system
/etc/postfix/main.cf: every command gets -c DIR/etc and MAIL_CONFIG=DIR/etc.
Several instances can run at once: each has its own dirs, port and
syslog_name.  Stop what you start (context manager, or stop()).
"""
import os
import shutil
import smtplib
import subprocess
import tempfile
import time

from harness import free_port, port_open, wait_for

POSTFIX = "/usr/sbin/postfix"
POSTQUEUE = "/usr/sbin/postqueue"
POSTCONF = "/usr/sbin/postconf"
QUEUES = ("maildrop", "incoming", "active", "deferred", "hold", "corrupt")

MASTER_CF = """\
# service type  private unpriv  chroot  wakeup  maxproc command
{listen} inet  n       -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

MAIN_CF = """\
# private test instance, made by tests/pylib/postfix.py
compatibility_level = 3.6
queue_directory = {dir}/spool
data_directory = {dir}/data
syslog_name = {name}
maillog_file = {dir}/maillog
maillog_file_prefixes = {dir}
myhostname = {name}.test.invalid
mydomain = test.invalid
myorigin = $myhostname
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
inet_interfaces = {host}
inet_protocols = ipv4
mynetworks = {mynetworks}
smtpd_peername_lookup = no
smtpd_banner = $myhostname ESMTP policyd-test
biff = no
append_dot_mydomain = no
relay_domains = {domains}
relay_recipient_maps =
smtpd_reject_unlisted_recipient = no
relay_transport = discard:discarded by test instance
default_transport = discard:discarded by test instance
smtpd_relay_restrictions =
smtpd_recipient_restrictions = reject_unauth_destination{policy}
smtpd_policy_service_timeout = {policy_timeout}
smtpd_hard_error_limit = {hard_error_limit}
smtpd_soft_error_limit = {soft_error_limit}
smtpd_error_sleep_time = {error_sleep_time}
smtpd_client_connection_rate_limit = 0
smtpd_client_message_rate_limit = 0
smtpd_client_recipient_rate_limit = 0
notify_classes =
"""


class PostfixError(RuntimeError):
    pass


def _cf_entries(text):
    """main.cf text -> [(name or None, lines)]: each entry with its
    continuation lines (those that start with blanks)."""
    entries = []
    for line in text.splitlines():
        if line[:1] in (" ", "\t") and entries and entries[-1][0]:
            entries[-1][1].append(line)
        elif "=" in line and not line.lstrip().startswith("#"):
            entries.append((line.split("=", 1)[0].strip(), [line]))
        else:
            entries.append((None, [line]))
    return entries


def merge_main_cf(base, extra):
    """base with extra's settings replacing the same names (Postfix would
    warn "overriding earlier entry") and the rest of extra appended."""
    over = {n for n, _ in _cf_entries(extra) if n}
    kept = [l for n, lines in _cf_entries(base) if n not in over for l in lines]
    return "\n".join(kept) + "\n" + extra + ("\n" if extra and not extra.endswith("\n") else "")


class Postfix:
    """One private Postfix.  Listens on (self.host, self.port).

    policy_port: the policy server's port (None: no policy check at all).
    domains: the relay domains whose recipients the policy server judges.
    extra: more main.cf text; its settings replace the defaults' of the
    same name, the rest is appended.
    """

    def __init__(self, policy_port=None, policy_host="127.0.0.1",
                 domains=("example.com", "example.org"), host="127.0.0.1",
                 policy_timeout="10s", hard_error_limit=20,
                 soft_error_limit=10, error_sleep_time="0s",
                 mynetworks="127.0.0.1/32", extra=""):
        self.dir = tempfile.mkdtemp(prefix="postfix-test-")
        # The mail_owner (postfix) must reach the queue and config below it.
        os.chmod(self.dir, 0o755)
        # postfix start makes the queue's subdirectories, not the queue itself.
        os.mkdir(os.path.join(self.dir, "spool"), 0o755)
        # The config directory apart: postfix check wants all in it root's.
        self.conf_dir = os.path.join(self.dir, "etc")
        os.mkdir(self.conf_dir, 0o755)
        self.host = host
        self.port = free_port(host)
        self.name = "pf-" + os.path.basename(self.dir)[len("postfix-test-"):].replace("_", "")
        self.maillog_path = os.path.join(self.dir, "maillog")
        self.env = dict(os.environ, MAIL_CONFIG=self.conf_dir)
        policy = ""
        if policy_port is not None:
            policy = ",\n    check_policy_service inet:%s:%d" % (policy_host, policy_port)
        main = MAIN_CF.format(
            dir=self.dir, name=self.name, host=host, mynetworks=mynetworks,
            domains=" ".join(domains), policy=policy,
            policy_timeout=policy_timeout, hard_error_limit=hard_error_limit,
            soft_error_limit=soft_error_limit, error_sleep_time=error_sleep_time)
        with open(os.path.join(self.conf_dir, "main.cf"), "w") as f:
            f.write(merge_main_cf(main, extra))
        with open(os.path.join(self.conf_dir, "master.cf"), "w") as f:
            f.write(MASTER_CF.format(listen="%s:%d" % (host, self.port)))
        self.master_pid = None

    def _run(self, *argv, check=True, timeout=60):
        r = subprocess.run(list(argv), env=self.env, capture_output=True,
                           text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if check and r.returncode != 0:
            raise PostfixError("%s: exit %d\n%s%s\n--- maillog:\n%s" % (
                " ".join(argv), r.returncode, r.stdout, r.stderr, self.maillog()))
        return r

    def postconf(self, name):
        return self._run(POSTCONF, "-c", self.conf_dir, "-h", name).stdout.strip()

    def start(self):
        if os.geteuid() != 0:
            raise PostfixError("a private Postfix needs root (postfix start)")
        self._run(POSTFIX, "-c", self.conf_dir, "start")
        wait_for(lambda: port_open(self.host, self.port), timeout=20,
                 what="postfix smtpd on %s:%d" % (self.host, self.port))
        self.master_pid = self._read_pid()
        # Someone else's listener on our port would also answer: make sure
        # it is our master that runs and that it did not fail to bind.
        if not self.running() or "fatal: bind" in self.maillog():
            raise PostfixError("postfix did not start:\n" + self.maillog())
        return self

    def _read_pid(self):
        try:
            with open(os.path.join(self.dir, "spool", "pid", "master.pid")) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def running(self):
        pid = self.master_pid or self._read_pid()
        if not pid:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        # A recycled pid would not be our master: check its cwd/cmdline.
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                return b"master" in f.read()
        except OSError:
            return False

    def stop(self, timeout=20.0):
        """postfix stop, then wait until the master process is gone."""
        if not os.path.exists(os.path.join(self.conf_dir, "main.cf")):
            return
        if self.master_pid is None:
            self.master_pid = self._read_pid()
        if self.running():
            self._run(POSTFIX, "-c", self.conf_dir, "stop", check=False)
            try:
                wait_for(lambda: not self.running(), timeout=timeout,
                         what="postfix master to exit")
            except TimeoutError:
                # postfix abort: the master kills its children at once.
                self._run(POSTFIX, "-c", self.conf_dir, "abort", check=False)
                wait_for(lambda: not self.running(), timeout=5,
                         what="postfix master to exit after abort")
        self.master_pid = None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            # A with-block whose start failed gets no __exit__: clean up here.
            self.cleanup()
            raise

    def __exit__(self, *exc):
        self.cleanup()

    # -- the queue

    def queue_files(self):
        """Queue file names in every queue (none when all is delivered)."""
        found = []
        for q in QUEUES:
            for root, _dirs, files in os.walk(os.path.join(self.dir, "spool", q)):
                found.extend(os.path.join(q, os.path.relpath(os.path.join(root, f),
                                                               os.path.join(self.dir, "spool", q)))
                             for f in files)
        return found

    def queue_count(self):
        return len(self.queue_files())

    def postqueue(self):
        """postqueue -p output (the mailq listing)."""
        return self._run(POSTQUEUE, "-c", self.conf_dir, "-p", check=False).stdout

    def wait_queue_empty(self, timeout=20.0):
        wait_for(lambda: self.queue_count() == 0, timeout=timeout,
                 what="postfix queue to empty")

    # -- the log

    def maillog(self):
        try:
            with open(self.maillog_path, "rb") as f:
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_maillog(self, text, timeout=20.0):
        """Wait until text appears in the maillog; returns the log."""
        return wait_for(lambda: self.maillog() if text in self.maillog() else None,
                        timeout=timeout, what="maillog: " + text)

    # -- SMTP clients

    def smtp(self, source="127.0.0.1", timeout=30.0, helo="client.test.invalid"):
        """An smtplib.SMTP session from the source address, after EHLO."""
        s = smtplib.SMTP(self.host, self.port, local_hostname=helo,
                         timeout=timeout, source_address=(source, 0))
        s.ehlo()
        return s


def reply(code_msg):
    """smtplib's (code, bytes) -> 'CODE TEXT', the reply as one line."""
    code, msg = code_msg
    return "%d %s" % (code, msg.decode(errors="replace").replace("\n", " "))


def timed(fn, *args):
    """(result, seconds) of fn(*args)."""
    t0 = time.monotonic()
    r = fn(*args)
    return r, time.monotonic() - t0

"""A private slapd for tests and the sandbox.

Slapd() writes a slapd.conf into a temp dir (mdb database, suffix
dc=example,dc=com, schemas core/cosine/inetorgperson/misc from
/etc/ldap/schema), loads an LDIF with slapadd and starts Debian's slapd on
a free loopback port with -d stats, so every search is logged (count them
with searches()).  It can stop(), start() again on the same port, kill(),
freeze() (SIGSTOP) and thaw() (SIGCONT).

The generated directory (make_ldif) holds:
  - the bind user  cn=policyd,dc=example,dc=com  password BIND_PW,
    the only one allowed to read the people;
  - alice@example.com, Bob.Smith@example.com, and carol@example.com with the
    alias mailLocalAddress carol.alias@example.com (misc.schema);
  - user00000@example.com ... users-1 (inetOrgPerson), every tenth with the
    alias alias00000@example.com ... (mailLocalAddress);
  - for each (ou, url) of referrals, a referral object ou=OU,dc=example,dc=com
    (objectClass referral, ref: URL): without ManageDsaIT, slapd answers
    every subtree search from the suffix with a continuation reference to
    it, whatever the filter, as Active Directory does for its partitions.

Stdlib only: the sandbox runs it with whatever python3 is on PATH.

    python3 tests/pylib/slapd.py --serve DIR [--ldif FILE]
        start a slapd in DIR (created), detached; print "PORT PID".
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from harness import stop_process

SLAPD = "/usr/sbin/slapd"
SLAPADD = "/usr/sbin/slapadd"
SCHEMA_DIR = "/etc/ldap/schema"
SUFFIX = "dc=example,dc=com"
ROOT_DN = "cn=admin," + SUFFIX
ROOT_PW = "adminpw"
BIND_DN = "cn=policyd," + SUFFIX
BIND_PW = "policyd-secret"
PEOPLE = "ou=people," + SUFFIX

SLAPD_CONF = """\
include {schema}/core.schema
include {schema}/cosine.schema
include {schema}/inetorgperson.schema
include {schema}/misc.schema
pidfile {dir}/slapd.pid
argsfile {dir}/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
sizelimit 500

database mdb
maxsize 268435456
suffix "{suffix}"
rootdn "{rootdn}"
rootpw {rootpw}
directory {dir}/db
index objectClass eq
index mail,mailLocalAddress eq
access to attrs=userPassword
    by anonymous auth
    by * none
access to *
    by dn.exact="{binddn}" read
    by * none
"""


TLS_CONF = """\
TLSCACertificateFile {dir}/ca.pem
TLSCertificateFile {dir}/server.pem
TLSCertificateKeyFile {dir}/server.key
"""


def make_cert(dir, host, name="ca"):
    """A throw-away CA (DIR/NAME.pem) and, for name "ca", a server
    certificate for IP host signed by it.  Returns the CA file."""
    def ossl(*args):
        r = subprocess.run(["openssl"] + list(args), capture_output=True, text=True,
                           timeout=60, cwd=dir)
        if r.returncode != 0:
            raise RuntimeError("openssl %s: %s" % (args[0], r.stderr))
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    ossl("req", "-x509", *ec, "-keyout", name + ".key", "-out", name + ".pem",
         "-days", "2", "-subj", "/CN=policyd test " + name)
    if name == "ca":
        with open(os.path.join(dir, "san.ext"), "w") as f:
            f.write("subjectAltName=IP:%s\n" % host)
        ossl("req", *ec, "-keyout", "server.key", "-out", "server.csr",
             "-subj", "/CN=" + host)
        ossl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "server.pem", "-days", "2",
             "-extfile", "san.ext")
    return os.path.join(dir, name + ".pem")


def _free_port(host="127.0.0.1"):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _port_open(host, port):
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def make_ldif(users=3000, alias_every=10, referrals=()):
    """The test directory as LDIF text (see the module comment)."""
    out = []
    add = out.append
    add("dn: %s\nobjectClass: dcObject\nobjectClass: organization\n"
        "o: Example\ndc: example\n" % SUFFIX)
    for ou, url in referrals:
        add("dn: ou=%s,%s\nobjectClass: referral\nobjectClass: extensibleObject\n"
            "ou: %s\nref: %s\n" % (ou, SUFFIX, ou, url))
    add("dn: %s\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n"
        "cn: policyd\nuserPassword: %s\n" % (BIND_DN, BIND_PW))
    add("dn: %s\nobjectClass: organizationalUnit\nou: people\n" % PEOPLE)

    def person(uid, mail, aliases=()):
        s = ("dn: uid=%s,%s\nobjectClass: inetOrgPerson\n" % (uid, PEOPLE))
        if aliases:
            s += "objectClass: inetLocalMailRecipient\n"
        s += "uid: %s\ncn: %s\nsn: %s\nmail: %s\n" % (uid, uid, uid, mail)
        for a in aliases:
            s += "mailLocalAddress: %s\n" % a
        add(s)

    person("alice", "alice@example.com")
    person("bob.smith", "Bob.Smith@example.com")
    person("carol", "carol@example.com", ["carol.alias@example.com"])
    for i in range(users):
        al = ["alias%05d@example.com" % i] if alias_every and i % alias_every == 0 else []
        person("user%05d" % i, "user%05d@example.com" % i, al)
    return "\n".join(out)


class Slapd:
    """A slapd in a temp dir on a free loopback port."""

    def __init__(self, ldif=None, users=3000, dir=None, port=None, host="127.0.0.1",
                 tls=False, referrals=(), tcp_buffer=None):
        self.owns_dir = dir is None
        self.dir = dir or tempfile.mkdtemp(prefix="policyd-slapd-")
        os.makedirs(os.path.join(self.dir, "db"), exist_ok=True)
        self.host = host
        self.port = port or _free_port(host)
        self.uri = "ldap://%s:%d/" % (host, self.port)
        self.conf = os.path.join(self.dir, "slapd.conf")
        self.log = os.path.join(self.dir, "slapd.log")
        self.proc = None
        self.logf = None
        conf = SLAPD_CONF.format(schema=SCHEMA_DIR, dir=self.dir, suffix=SUFFIX,
                                 rootdn=ROOT_DN, rootpw=ROOT_PW, binddn=BIND_DN)
        self.ca_file = None
        if tls:
            self.ca_file = make_cert(self.dir, host)
            conf = conf.replace("sizelimit 500\n", "sizelimit 500\n" + TLS_CONF.format(dir=self.dir))
        if tcp_buffer:
            # slapd's own receive buffer, so that a stopped slapd's socket
            # fills with less data
            conf = conf.replace("sizelimit 500\n", "sizelimit 500\ntcp-buffer read=%d\n"
                                % tcp_buffer)
        with open(self.conf, "w") as f:
            f.write(conf)
        ldif_path = os.path.join(self.dir, "directory.ldif")
        if ldif is None:
            with open(ldif_path, "w") as f:
                f.write(make_ldif(users, referrals=referrals))
        else:
            shutil.copyfile(ldif, ldif_path)
        # -q: quick mode, no consistency checks: a few thousand entries load
        # in well under a second
        r = subprocess.run([SLAPADD, "-q", "-f", self.conf, "-l", ldif_path],
                           capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError("slapadd failed: %s%s" % (r.stdout, r.stderr))

    def start(self, detach=False, timeout=15.0):
        """Start slapd; wait until it accepts connections."""
        argv = [SLAPD, "-f", self.conf, "-h", self.uri]
        if detach:
            # slapd forks into the background itself and writes slapd.pid;
            # its stats log goes to syslog, which may be absent: fine
            argv += ["-s", "0"]
            r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
            if r.returncode != 0:
                raise RuntimeError("slapd failed: %s%s" % (r.stdout, r.stderr))
        else:
            # -d stats: foreground, and one "SRCH" line per search on stderr
            self.logf = open(self.log, "ab")
            self.proc = subprocess.Popen(argv + ["-d", "stats"], stdout=self.logf,
                                         stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError("slapd exited %d:\n%s" % (self.proc.returncode,
                                                             self.read_log()))
            if _port_open(self.host, self.port) and (
                    self.proc is not None
                    or os.path.exists(os.path.join(self.dir, "slapd.pid"))):
                return self
            time.sleep(0.05)
        raise TimeoutError("slapd did not listen on %s" % self.uri)

    def pid(self):
        if self.proc is not None:
            return self.proc.pid
        with open(os.path.join(self.dir, "slapd.pid")) as f:
            return int(f.read().strip())

    def read_log(self):
        try:
            with open(self.log, "rb") as f:
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def searches(self, filter_text=None):
        """Searches slapd logged so far, optionally only those whose line
        contains filter_text (e.g. 'filter="(mail=x@example.com)"')."""
        n = 0
        for line in self.read_log().splitlines():
            if " SRCH base=" in line and (filter_text is None or filter_text in line):
                n += 1
        return n

    def policyd_conf(self, timeout=1, extra=""):
        """A whole policyd.conf (for harness.Daemon(conf=...)) whose directory
        is this slapd; extra is appended ([cache], [harvest], ...)."""
        return ("[server]\nlisten = {listen}\ncontrol = unix:{control}\n"
                "allow_root = yes\n\n[directory]\nbackend = ldap\n"
                "domains = example.com\n\n[ldap]\nuri = %s\nbind_dn = %s\n"
                "bind_pw = %s\nbase = %s\nfilter = (mail=%%s)\ntimeout = %s\n\n"
                % (self.uri, BIND_DN, BIND_PW, SUFFIX, timeout)) + extra

    def freeze(self):
        stop_process(self.pid())

    def thaw(self):
        os.kill(self.pid(), signal.SIGCONT)

    def stop(self, timeout=10.0):
        """SIGTERM and wait (kill if it hangs).  Safe to call twice."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGCONT)   # a frozen slapd cannot exit
                self.proc.terminate()
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self.logf:
            self.logf.close()
            self.logf = None
        # mdb: wait until the port is free again so a restart can bind
        deadline = time.monotonic() + timeout
        while _port_open(self.host, self.port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.kill()
            self.proc.wait()
        self.proc = None
        if self.logf:
            self.logf.close()
            self.logf = None

    def cleanup(self):
        self.stop()
        if self.owns_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()


def main(argv):
    import argparse
    ap = argparse.ArgumentParser(description="start a private slapd")
    ap.add_argument("--serve", metavar="DIR", required=True,
                    help="directory for config and database (created)")
    ap.add_argument("--ldif", help="LDIF to load (default: generated test data)")
    ap.add_argument("--users", type=int, default=3000)
    a = ap.parse_args(argv)
    os.makedirs(a.serve, exist_ok=True)
    s = Slapd(ldif=a.ldif, users=a.users, dir=a.serve)
    s.start(detach=True)
    print(s.port, s.pid())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

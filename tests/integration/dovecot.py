"""A private Dovecot POP3 server for the `pigeon fetch` integration tests.

DovecotServer writes a configuration into a directory of its own (base_dir,
state_dir and log file there too, so it never touches the system instance),
listens on 127.0.0.1 only (POP3 with STLS on one free port, POP3S on another),
authenticates from passwd-files (one per user) and keeps every user's mail in
<dir>/mail/<user>/Maildir, owned by one system user (the mail user).

It is started in the foreground (`dovecot -F -c CONF`) as a child process and
stopped by terminating that process. Every wait is bounded. If Dovecot is not
installed or does not come up, the tests that need it are skipped, with the
reason and its log in the skip message.

Run as root, Dovecot drops to its usual users (dovenull for the login
processes, dovecot for auth) and the mail processes run as the mail user
("pigeon", or "dovenull" where that does not exist). Run as anyone else, it
is configured to do everything as that user.
"""
import os
import pathlib
import pwd
import shutil
import socket
import subprocess
import time

import pytest

from conftest import free_port

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
DOVEADM = shutil.which("doveadm") or "/usr/bin/doveadm"
DH_FILE = pathlib.Path("/usr/share/dovecot/dh.pem")

# What Dovecot 2.3 can do that the client may use, plus two it cannot
# (CRAM-MD5, SCRAM-SHA-1) so auth = auto has to choose. "apop" makes the
# greeting carry an APOP timestamp; it is not a SASL mechanism.
MECHANISMS = "plain login cram-md5 scram-sha-1 scram-sha-256 apop"


def _exists(user):
    try:
        pwd.getpwnam(user)
        return True
    except KeyError:
        return False


def _traversable(path):
    """Let other users (the mail user, Dovecot's auth user) pass through the
    parents of path: pytest makes its temporary directories 0700."""
    for parent in [pathlib.Path(path).resolve()] + list(pathlib.Path(path).resolve().parents):
        mode = parent.stat().st_mode
        if not mode & 0o001:
            os.chmod(parent, (mode & 0o7777) | 0o001)


def scram_sha256_hash(password):
    """The {SCRAM-SHA-256} passdb entry for password, from doveadm pw; None
    when doveadm cannot make one."""
    try:
        r = subprocess.run([DOVEADM, "pw", "-s", "SCRAM-SHA-256", "-p", password],
                           capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    out = r.stdout.decode(errors="replace").strip()
    if r.returncode != 0 or not out.startswith("{SCRAM-SHA-256}"):
        return None
    return out


class DovecotServer:
    def __init__(self, workdir, cert=None, key=None, extra_conf=""):
        self.dir = pathlib.Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.host = "127.0.0.1"
        self.port = free_port()
        self.tls_port = free_port()
        while self.tls_port == self.port:
            self.tls_port = free_port()
        self.cert = cert
        self.key = key
        self.extra_conf = extra_conf
        self.base_dir = self.dir / "run"
        self.state_dir = self.dir / "state"
        self.mailroot = self.dir / "mail"
        # One passwd-file per user (Dovecot expands %u in the path): a user
        # added while Dovecot runs is seen at once, while a single file is
        # re-read at most once a second.
        self.passwd_dir = self.dir / "users.d"
        self.config_path = self.dir / "dovecot.conf"
        self.logfile = self.dir / "dovecot.log"
        self.stdout_path = self.dir / "dovecot.stdout"
        self.proc = None
        if os.geteuid() == 0:
            self.mail_user = "pigeon" if _exists("pigeon") else "dovenull"
            self.login_user = "dovenull" if _exists("dovenull") else self.mail_user
            self.internal_user = "dovecot" if _exists("dovecot") else self.mail_user
        else:
            me = pwd.getpwuid(os.geteuid()).pw_name
            self.mail_user = self.login_user = self.internal_user = me
        pw = pwd.getpwnam(self.mail_user)
        self.mail_uid, self.mail_gid = pw.pw_uid, pw.pw_gid

    # -- configuration ---------------------------------------------------------
    def write_config(self):
        for d in (self.base_dir, self.state_dir, self.mailroot):
            d.mkdir(parents=True, exist_ok=True)
        self.passwd_dir.mkdir(exist_ok=True)
        os.chmod(self.passwd_dir, 0o755)  # read by the auth process (user dovecot)
        os.chmod(self.mailroot, 0o755)
        _traversable(self.dir)
        ssl = "ssl = no\n"
        if self.cert is not None:
            ssl = "ssl = yes\nssl_cert = <%s\nssl_key = <%s\n" % (self.cert, self.key)
            if DH_FILE.exists():
                ssl += "ssl_dh = <%s\n" % DH_FILE
        pop3s = ""
        if self.cert is not None:
            pop3s = ("  inet_listener pop3s {\n    address = 127.0.0.1\n    port = %d\n"
                     "    ssl = yes\n  }\n" % self.tls_port)
        text = f"""# written by tests/integration/dovecot.py
base_dir = {self.base_dir}
state_dir = {self.state_dir}
instance_name = pigeon-test-{self.port}
listen = 127.0.0.1
protocols = pop3
shutdown_clients = yes
log_path = {self.logfile}
info_log_path = {self.logfile}
debug_log_path = {self.logfile}
auth_verbose = yes
default_internal_user = {self.internal_user}
default_login_user = {self.login_user}
first_valid_uid = 1
{ssl}disable_plaintext_auth = no
auth_mechanisms = {MECHANISMS}
auth_failure_delay = 0
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {self.passwd_dir}/%u
}}
userdb {{
  driver = static
  args = uid={self.mail_uid} gid={self.mail_gid} home={self.mailroot}/%u
}}
mail_location = maildir:{self.mailroot}/%u/Maildir
pop3_uidl_format = %08Xu%08Xv
# No growing delay (up to 15 s) after failed logins from 127.0.0.1: auth
# cannot reach anvil's penalty socket, so the penalty is off.
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {self.port}
  }}
{pop3s}}}
{self.extra_conf}
"""
        self.config_path.write_text(text)

    # -- users and mail ----------------------------------------------------------
    def add_user(self, name, password="secret", scheme="PLAIN"):
        """A passwd-file entry. scheme "SCRAM-SHA-256" stores only the SCRAM
        keys (so APOP and CRAM-MD5 cannot work for that user)."""
        if scheme == "PLAIN":
            stored = "{PLAIN}" + password
        else:
            stored = scram_sha256_hash(password)
            if stored is None:
                pytest.skip("doveadm pw -s SCRAM-SHA-256 does not work here")
        self.passwd_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.passwd_dir, 0o755)
        path = self.passwd_dir / name
        path.write_text("%s:%s::::::\n" % (name, stored))
        os.chmod(path, 0o644)
        self.maildir(name)

    def maildir(self, user):
        md = self.mailroot / user / "Maildir"
        if not (md / "tmp").exists():
            for sub in ("new", "cur", "tmp"):
                (md / sub).mkdir(parents=True, exist_ok=True)
            for p in (self.mailroot / user, md, md / "new", md / "cur", md / "tmp"):
                os.chown(p, self.mail_uid, self.mail_gid)
                os.chmod(p, 0o700)
        return md

    _seq = 0

    def deliver(self, user, data, when=None):
        """Put a message (LF line ends, as Maildir stores it) into new/, owned
        by the mail user; returns its path. Names sort in delivery order."""
        if isinstance(data, str):
            data = data.encode()
        DovecotServer._seq += 1
        when = when if when is not None else 1700000000 + DovecotServer._seq
        name = "%d.M%06dP%d.pigeontest" % (when, DovecotServer._seq, os.getpid())
        md = self.maildir(user)
        tmp = md / "tmp" / name
        tmp.write_bytes(data)
        os.chown(tmp, self.mail_uid, self.mail_gid)
        os.chmod(tmp, 0o600)
        path = md / "new" / name
        os.rename(tmp, path)
        return path

    def messages(self, user):
        """Names of the messages in the user's new/ and cur/."""
        md = self.maildir(user)
        return sorted(p.name for sub in ("new", "cur") for p in (md / sub).iterdir())

    def contents(self, user):
        md = self.maildir(user)
        return sorted(p.read_bytes() for sub in ("new", "cur") for p in (md / sub).iterdir())

    # -- process -----------------------------------------------------------------
    def log(self):
        parts = []
        for f in (self.stdout_path, self.logfile):
            try:
                parts.append(f.read_text(errors="replace"))
            except FileNotFoundError:
                pass
        return "".join(parts)

    def start(self, timeout=20):
        """Start Dovecot; pytest.skip (with its log) if it cannot be started.
        A port taken meanwhile by someone else means new ports and a retry."""
        if not os.path.exists(DOVECOT):
            pytest.skip("dovecot is not installed (apt-get install dovecot-pop3d)")
        for _ in range(3):
            if self._start(timeout):
                return self
            self.port, self.tls_port = free_port(), free_port()
            while self.tls_port == self.port:
                self.tls_port = free_port()
            for f in (self.stdout_path, self.logfile):
                if f.exists():
                    f.unlink()
        self._start(timeout, last=True)
        return self

    def _start(self, timeout, last=False):
        """True when Dovecot answers; False if a port was in use (not last)."""
        self.write_config()
        check = subprocess.run([DOVECOT, "-c", str(self.config_path), "-n"],
                               capture_output=True, timeout=30)
        if check.returncode != 0:
            pytest.skip("dovecot refuses the test configuration:\n%s\n%s" % (
                check.stderr.decode(errors="replace"), self.config_path.read_text()))
        self._out = open(self.stdout_path, "ab")
        self.proc = subprocess.Popen([DOVECOT, "-F", "-c", str(self.config_path)],
                                     stdout=self._out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = self.log()
                self._reap()
                if not last and "Address already in use" in log:
                    self.proc = None
                    return False
                pytest.skip("dovecot exited at startup (status %s); its log:\n%s" % (
                    self.proc.returncode if self.proc else "?", log))
            if self._greets(self.port):
                return True
            time.sleep(0.1)
        log = self.log()
        self.stop()
        pytest.skip("dovecot did not answer on 127.0.0.1:%d within %ds; its log:\n%s" % (
            self.port, timeout, log))

    def _greets(self, port):
        try:
            with socket.create_connection((self.host, port), timeout=2) as s:
                s.settimeout(2)
                return s.recv(512).startswith(b"+OK")
        except OSError:
            return False

    def _reap(self):
        if getattr(self, "_out", None):
            self._out.close()
            self._out = None

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                subprocess.run([DOVEADM, "-c", str(self.config_path), "stop"],
                               capture_output=True, timeout=15)
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=10)
        self._reap()
        self.proc = None

    def logins(self, user):
        """Dovecot's "Login:" lines for user (they name the method and TLS)."""
        return [line for line in self.log().splitlines()
                if "Login: user=<%s>" % user in line]

    def errors(self):
        """Panic/Fatal/Error lines Dovecot logged."""
        return [line for line in self.log().splitlines()
                if " Panic: " in line or " Fatal: " in line or " Error: " in line]

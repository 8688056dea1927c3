"""Fixtures for the integration tests: real pigeond binaries on loopback ports.

PIGEON_BUILD names the build directory that holds pigeond (default: build-test,
then build). Every server a test starts is stopped at the end of the test, and
its exit status and log are checked: a sanitizer report or a non-zero exit
fails the test that started it.
"""
import os
import pathlib
import poplib
import pwd
import socket
import subprocess
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def build_dir():
    env = os.environ.get("PIGEON_BUILD")
    if env:
        return pathlib.Path(env).resolve()
    for name in ("build-test", "build"):
        if (ROOT / name / "pigeond").exists():
            return ROOT / name
    raise RuntimeError("no build directory with pigeond; run scripts/test")


# Started as root, pigeond refuses to serve until it can drop to [server] user;
# the tests then run it as "pigeon" (created by scripts/deps) and hand it the
# files it must write. Started as anyone else it keeps that user.
RUN_AS = "pigeon" if os.geteuid() == 0 else None


def give_to_server(path):
    """Make a file or directory the test created usable by pigeond."""
    if RUN_AS is None:
        return
    pw = pwd.getpwnam(RUN_AS)
    os.chown(path, pw.pw_uid, pw.pw_gid)


def give_tree(root):
    if RUN_AS is None:
        return
    # pytest makes its temporary directories 0700: let pigeond pass through
    # (search permission only) to reach its own directory.
    for parent in pathlib.Path(root).resolve().parents:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            os.chmod(parent, (mode & 0o7777) | 0o001)
    give_to_server(root)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            give_to_server(os.path.join(dirpath, name))


def wait_until(pred, timeout=5, step=0.05):
    """Poll pred until it holds or timeout seconds pass; its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


def free_port(host="127.0.0.1"):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class RawClient:
    """A plain socket speaking POP3 by hand, for what poplib cannot do."""

    def __init__(self, host, port, timeout=10):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def readline(self):
        """One line without its CRLF; raises EOFError if the server closed."""
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed; pending: %r" % self.buf)
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def read_multiline(self):
        """The lines of a multi-line body (after its status line), unstuffed."""
        lines = []
        while True:
            line = self.readline()
            if line == b".":
                return lines
            if line.startswith(b"."):
                line = line[1:]
            lines.append(line)

    def read_multiline_raw(self):
        """The exact bytes up to and including the terminating .CRLF."""
        while b"\r\n.\r\n" not in b"\r\n" + self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed in a multi-line response")
            self.buf += chunk
        data = b"\r\n" + self.buf
        end = data.index(b"\r\n.\r\n") + 5
        raw, self.buf = data[2:end], data[end:]
        return raw

    def command(self, line):
        self.send(line + "\r\n")
        return self.readline()

    def is_closed(self, timeout=5):
        """True if the server closes the connection within timeout."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def close(self):
        self.sock.close()


class PigeonServer:
    """One pigeond with its own config, passwd-file and maildrops."""

    def __init__(self, workdir, settings=None, host="127.0.0.1"):
        self.dir = pathlib.Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.port = free_port(host)
        self.mailroot = self.dir / "mail"
        self.passwd = self.dir / "users"
        self.passwd.write_text("")
        self.config_path = self.dir / "pigeon.conf"
        self.logfile = self.dir / "pigeond.log"
        self.settings = {
            "server": {"pop3_listen": self._listen_addr(), "workers": "1"},
            # SCRAM is off by default (only users with SCRAM keys can use
            # it); the tests exercise every mechanism, so they turn it on.
            "auth": {"passwd_file": str(self.passwd), "failure_delay": "0",
                     "mechanisms": "SCRAM-SHA-256-PLUS SCRAM-SHA-256 PLAIN LOGIN"},
            "mail": {"location": str(self.mailroot) + "/%u/Maildir"},
            "log": {"level": "debug"},
        }
        if RUN_AS:
            self.settings["server"]["user"] = RUN_AS
        for section, values in (settings or {}).items():
            self.settings.setdefault(section, {}).update(values)
        self.proc = None

    def _listen_addr(self):
        if ":" in self.host:
            return "[%s]:%d" % (self.host, self.port)
        return "%s:%d" % (self.host, self.port)

    def write_config(self):
        lines = []
        for section, values in self.settings.items():
            lines.append("[%s]" % section)
            for key, value in values.items():
                lines.append("%s = %s" % (key, value))
        self.config_path.write_text("\n".join(lines) + "\n")

    # -- users and mail ----------------------------------------------------
    def add_user(self, name, password="secret", stored=None):
        stored = stored or "{PLAIN}" + password
        with open(self.passwd, "a") as f:
            f.write("%s:%s:::::\n" % (name, stored))
        self.maildir(name)

    def maildir(self, user):
        md = self.mailroot / user / "Maildir"
        if not (md / "tmp").exists():
            for sub in ("new", "cur", "tmp"):
                (md / sub).mkdir(parents=True, exist_ok=True)
            give_tree(self.mailroot)
        return md

    _seq = 0

    def deliver(self, user, data, name=None, subdir="new", when=None):
        """Put a message into the user's Maildir; returns its path."""
        if isinstance(data, str):
            data = data.encode()
        PigeonServer._seq += 1
        when = when if when is not None else 1700000000 + PigeonServer._seq
        name = name or "%d.M%dP%d.test" % (when, PigeonServer._seq, os.getpid())
        path = self.maildir(user) / subdir / name
        path.write_bytes(data)
        return path

    def messages(self, user):
        md = self.maildir(user)
        return sorted(p.name for sub in ("new", "cur") for p in (md / sub).iterdir())

    # -- process -------------------------------------------------------------
    def start(self, wait=True):
        self.write_config()
        give_tree(self.dir)
        exe = build_dir() / "pigeond"
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        self.log_handle = open(self.logfile, "ab")
        self.proc = subprocess.Popen(
            [str(exe), "-f", "-c", str(self.config_path)],
            stdout=self.log_handle, stderr=subprocess.STDOUT, env=env)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("pigeond exited (%s):\n%s" % (self.proc.returncode, self.log()))
            if "ready" in self.log():
                try:
                    with socket.create_connection((self.host, self.port), timeout=1):
                        return
                except OSError:
                    pass
            time.sleep(0.05)
        raise RuntimeError("pigeond did not become ready:\n" + self.log())

    def stop(self, check=True):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("pigeond did not stop on SIGTERM:\n" + self.log())
        self.log_handle.close()
        rc, self.proc = self.proc.returncode, None
        if check:
            self.check_log()
            assert rc == 0, "pigeond exited with %s:\n%s" % (rc, self.log())

    def restart(self):
        self.stop()
        return self.start()

    def log(self):
        try:
            return self.logfile.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def check_log(self):
        log = self.log()
        for marker in ("AddressSanitizer", "LeakSanitizer", "runtime error:", "UndefinedBehavior"):
            assert marker not in log, "sanitizer report in pigeond log:\n" + log

    def pid(self):
        """The master process."""
        return self.proc.pid

    def worker_pids(self):
        """The worker processes (children of the master) serving clients."""
        path = "/proc/%d/task/%d/children" % (self.proc.pid, self.proc.pid)
        with open(path) as f:
            return [int(p) for p in f.read().split()]

    # -- clients -------------------------------------------------------------
    def pop3(self, timeout=10):
        return poplib.POP3(self.host, self.port, timeout=timeout)

    def login(self, user="alice", password="secret", timeout=10):
        p = self.pop3(timeout=timeout)
        p.user(user)
        p.pass_(password)
        return p

    def raw(self, timeout=10, greeting=True):
        c = RawClient(self.host, self.port, timeout=timeout)
        if greeting:
            line = c.readline()
            assert line.startswith(b"+OK"), line
        return c


@pytest.fixture
def make_server(tmp_path):
    """make_server(settings=None, start=True, host=...) -> PigeonServer."""
    servers = []

    def factory(settings=None, start=True, host="127.0.0.1", name=None):
        srv = PigeonServer(tmp_path / (name or "srv%d" % len(servers)), settings, host)
        servers.append(srv)
        if start:
            srv.start()
        return srv

    yield factory
    errors = []
    for srv in servers:
        try:
            srv.stop()
        except AssertionError as e:
            errors.append(str(e))
    assert not errors, "\n".join(errors)


@pytest.fixture
def server(make_server):
    """A running pigeond with user alice (password "secret") and an empty maildrop."""
    srv = make_server(start=False)
    srv.add_user("alice", "secret")
    srv.start()
    return srv

"""`pigeon fetch`, the POP3 client (spec/clients.md parts B and C, spec/pop3.md §18),
run as a subprocess against a real pigeond and against small scripted POP3 servers
written here (dropped connections, -ERR to DELE, no UIDL, Gmail-style batching,
XOAUTH2 and OAUTHBEARER).

Every run of the client gets its own $HOME (so ~/.netrc, ~/Mail/INBOX and the
default UIDL store are private), a time limit, and ASan/UBSan checks on its
stderr. The test certificates come from a throw-away CA made with the openssl
command line, as in test_tls.py. Every socket has a timeout, every wait a deadline.
"""
import base64
import fcntl
import hashlib
import json
import os
import pathlib
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections import namedtuple

import pytest

from conftest import build_dir, free_port, give_tree, wait_until

TIMEOUT = 10
SANITIZER_MARKERS = ("AddressSanitizer", "LeakSanitizer", "runtime error:")

EX_OK, EX_NOTHING, EX_PERM, EX_TEMP, EX_AUTH, EX_CONFIG = 0, 1, 69, 75, 77, 78

JSON_FIELDS = {"account", "status", "listed", "new", "new_bytes", "fetched", "bytes", "deleted",
               "skipped", "failed", "sessions", "seconds", "error"}


# ---- messages ---------------------------------------------------------------------


def message(n, subject=None, body=None):
    subject = subject or "message %d" % n
    body = body if body is not None else "line one of %d\nline two\n" % n
    return ("From: sender%d@example.org\nTo: alice@example.org\nSubject: %s\n"
            "Message-ID: <m%d.%s@example.org>\n\n%s" % (n, subject, n, secrets.token_hex(4),
                                                         body)).encode()


# Lines that need care: byte-stuffing, mbox "From ", a lone dot, CR-free LF ends.
TRICKY = (b"From: tricky@example.org\nSubject: tricky\n\n"
          b".starts with a dot\n.\n..\nFrom the start of a line\n>From quoted\n"
          b"trailing spaces   \n\n\nafter two empty lines\n")


def crlf_size(data):
    """The octet count pigeond gives in LIST: CRLF line ends."""
    return len(data) + data.count(b"\n")


def headers_of(data):
    return data.split(b"\n\n", 1)[0] + b"\n\n"


# ---- the client ---------------------------------------------------------------------


Run = namedtuple("Run", "rc out err json seconds")


def write_conf(path, accounts, mode=0o600):
    """accounts: {name: {key: value}}; written in that order."""
    text = ""
    for name, settings in accounts.items():
        text += "[%s]\n" % name
        for key, value in settings.items():
            text += "%s = %s\n" % (key, value)
        text += "\n"
    path = pathlib.Path(path)
    path.write_text(text)
    os.chmod(path, mode)
    return path


def run_fetch(conf, *args, home, timeout=40, env=None, check_sanitizer=True):
    full_env = {k: v for k, v in os.environ.items()
                if not k.startswith("XDG_") and k not in ("ASAN_OPTIONS", "UBSAN_OPTIONS")}
    full_env.update(HOME=str(home), ASAN_OPTIONS="detect_leaks=1:abort_on_error=0",
                    UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
    full_env.update(env or {})
    cmd = [str(build_dir() / "pigeon"), "fetch", "-c", str(conf), *map(str, args)]
    t0 = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, env=full_env, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    seconds = time.monotonic() - t0
    out, err = p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
    if check_sanitizer:
        for marker in SANITIZER_MARKERS:
            assert marker not in err, "sanitizer report from pigeon fetch:\n" + err
    parsed = []
    if "--json" in args:
        for line in out.splitlines():
            if line.strip():
                parsed.append(json.loads(line))
    return Run(p.returncode, out, err, parsed, seconds)


class Workspace:
    """A private $HOME, a fetch.conf, a Maildir and a UIDL store for one test."""

    def __init__(self, root):
        self.root = pathlib.Path(root)
        self.home = self.root / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.conf = self.home / "fetch.conf"
        self.maildir = self.home / "Mail"
        self.store = self.home / "acct.uidl"

    def account(self, port, **kw):
        """Settings for a plaintext loopback account (tls = none needs the opt-in)."""
        a = {"host": "127.0.0.1", "port": port, "tls": "none", "allow_plaintext": "yes",
             "user": "alice", "password": "secret",
             "destination": "maildir:%s" % self.maildir, "uidl_store": self.store}
        for key, value in kw.items():
            if value is None:
                a.pop(key, None)
            else:
                a[key] = value
        return a

    def write(self, settings, name="acct", mode=0o600):
        return write_conf(self.conf, {name: settings}, mode)

    def run(self, *args, **kw):
        return run_fetch(self.conf, *args, home=self.home, **kw)

    def delivered(self, maildir=None):
        return maildir_messages(maildir or self.maildir)


def maildir_key(name):
    m = re.match(r"(\d+)\.M(\d+)P\d+Q(\d+)", name)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else (0, 0, 0)


def maildir_messages(md):
    """The messages in new/ and cur/, in delivery order."""
    md = pathlib.Path(md)
    files = [p for sub in ("new", "cur") if (md / sub).is_dir() for p in (md / sub).iterdir()]
    files.sort(key=lambda p: (maildir_key(p.name), p.stat().st_mtime_ns))
    return [p.read_bytes() for p in files]


def tmp_files(md):
    t = pathlib.Path(md) / "tmp"
    return sorted(os.listdir(t)) if t.is_dir() else []


@pytest.fixture
def ws(tmp_path):
    return Workspace(tmp_path / "client")


# ---- pigeond -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def scram_entry():
    """alice's passwd entry with SCRAM keys for "secret" (SCRAM is in the mechanisms)."""
    out = subprocess.run([str(build_dir() / "pigeon"), "pw", "hash", "--scheme", "scram"],
                         input="secret\n", capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    entry = out.stdout.strip().splitlines()[-1]
    assert entry.startswith("{SCRAM-SHA-256}"), entry
    return entry


def pop_server(make_server, scram_entry, settings=None, users=("alice",), start=True):
    srv = make_server(settings=settings, start=False)
    for user in users:
        srv.add_user(user, stored=scram_entry)
    if start:
        srv.start()
    return srv



def wait_log(srv, text, timeout=5, count=1):
    ok = wait_until(lambda: srv.log().count(text) >= count, timeout)
    assert ok, "%r not logged (%d times) within %ss:\n%s" % (text, count, timeout, srv.log())


def server_messages(srv, user="alice", password="secret"):
    """{uidl: bytes (LF line ends)} of what is on the server, read with poplib."""
    p = srv.login(user, password)
    try:
        result = {}
        _, lines, _ = p.uidl()
        for line in lines:
            num, uid = line.decode().split(" ", 1)
            _, body, _ = p.retr(int(num))
            result[uid] = b"".join(x + b"\n" for x in body)
        p.quit()
        return result
    finally:
        p.close()


# ---- a test PKI (the approach of test_tls.py) ----------------------------------------

Cert = namedtuple("Cert", "cert key der name")


def openssl(*args):
    r = subprocess.run(["openssl", *map(str, args)], capture_output=True, timeout=30)
    assert r.returncode == 0, "openssl %s failed:\n%s" % (" ".join(map(str, args)),
                                                          r.stderr.decode(errors="replace"))
    return r.stdout


def first_der(pem_path):
    text = pathlib.Path(pem_path).read_text()
    m = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", text, re.S)
    return ssl.PEM_cert_to_DER_cert(m.group(0))


def new_serial():
    return secrets.randbits(62) | (1 << 62)


REQ_CNF = "[req]\ndistinguished_name = dn\n[dn]\n"
CA_EXT = """[ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""
LEAF_EXT = """[ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
subjectAltName = %s
"""
SELF_EXT = """[ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
subjectAltName = %s
"""


def ec_key(path):
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path)


class CA:
    def __init__(self, directory, name):
        self.dir = pathlib.Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.key = self.dir / "ca.key"
        self.cert = self.dir / "ca.pem"
        ec_key(self.key)
        (self.dir / "ext.cnf").write_text(REQ_CNF + CA_EXT)
        openssl("req", "-x509", "-new", "-key", self.key, "-subj", "/CN=" + name, "-sha256",
                "-days", "2", "-set_serial", new_serial(), "-config", self.dir / "ext.cnf",
                "-extensions", "ext", "-out", self.cert)

    def issue(self, label, cn, sans):
        d = self.dir.parent / label
        d.mkdir(parents=True, exist_ok=True)
        key, cert, csr = d / "server.key", d / "server.pem", d / "req.csr"
        ec_key(key)
        (d / "req.cnf").write_text(REQ_CNF)
        (d / "sign.cnf").write_text(LEAF_EXT % ",".join(sans))
        openssl("req", "-new", "-key", key, "-subj", "/CN=" + cn, "-config", d / "req.cnf",
                "-out", csr)
        openssl("x509", "-req", "-in", csr, "-CA", self.cert, "-CAkey", self.key,
                "-set_serial", new_serial(), "-days", "2", "-sha256",
                "-extfile", d / "sign.cnf", "-extensions", "ext", "-out", cert)
        return Cert(cert, key, first_der(cert), cn)


def self_signed(directory, cn, sans):
    d = pathlib.Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    key, cert = d / "server.key", d / "server.pem"
    ec_key(key)
    (d / "ext.cnf").write_text(REQ_CNF + SELF_EXT % ",".join(sans))
    openssl("req", "-x509", "-new", "-key", key, "-subj", "/CN=" + cn, "-sha256", "-days", "2",
            "-set_serial", new_serial(), "-config", d / "ext.cnf", "-extensions", "ext",
            "-out", cert)
    return Cert(cert, key, first_der(cert), cn)


class Pki:
    def __init__(self, root):
        self.root = pathlib.Path(root)
        self.ca = CA(self.root / "ca", "Pigeon Fetch Test Root CA")
        self.localhost = self.ca.issue("localhost", "localhost", ["DNS:localhost", "IP:127.0.0.1"])
        self.mail = self.ca.issue("mail", "mail.example.org", ["DNS:mail.example.org"])
        self.other_ca = CA(self.root / "other", "Some Other CA")
        self.stranger = self.other_ca.issue("stranger", "localhost",
                                            ["DNS:localhost", "IP:127.0.0.1"])
        self.selfsigned = self_signed(self.root / "self", "pinned.example.net",
                                      ["DNS:pinned.example.net"])


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make test certificates")
    p = Pki(tmp_path_factory.mktemp("fetch-pki"))
    give_tree(p.root)
    return p


def tls_server(make_server, scram_entry, cert, settings=None, start=True):
    """pigeond with [tls] cert/key, implicit TLS on srv.tls_port, STLS on srv.port."""
    merged = {"tls": {"cert": str(cert.cert), "key": str(cert.key)}}
    srv_port = free_port()
    merged["server"] = {"pop3s_listen": "127.0.0.1:%d" % srv_port}
    for section, values in (settings or {}).items():
        merged.setdefault(section, {}).update(values)
    srv = pop_server(make_server, scram_entry, merged, start=False)
    srv.tls_port = srv_port
    if start:
        srv.start()
    return srv


def fingerprint(der):
    return "sha256:" + ":".join("%02X" % b for b in hashlib.sha256(der).digest())


# ---- a scripted POP3 server ------------------------------------------------------------


def b64(data):
    return base64.b64encode(data if isinstance(data, bytes) else data.encode()).decode()


class FakePop3:
    """Just enough POP3 on 127.0.0.1 to play a misbehaving or special server.

    One connection at a time (pigeon fetch runs its sessions one after another).
    Deletions and Gmail's "popped" marks take effect at QUIT only. Every line the
    client sends is recorded per session in self.sessions.
    """

    def __init__(self, messages, *, capa=True, uidl=True, top=True, user=True, pipelining=False,
                 sasl=(), password="secret", login="alice", drop_in_retr=None, dele_err=(),
                 batch=None, tokens=(), xoauth2_ir_refused=True, on_dele=None,
                 token_lifetime=None, stls_reply=None, tls=None, retr_delay=0,
                 capa_extra=()):
        self.msgs = [{"uidl": u, "data": d, "deleted": False, "popped": False}
                     for u, d in messages]
        self.capa, self.uidl, self.top, self.user = capa, uidl, top, user
        self.pipelining, self.sasl = pipelining, tuple(sasl)
        self.password, self.login = password, login
        self.drop_in_retr = drop_in_retr      # uidl: send half of it, then hang up
        self.dele_err = set(dele_err)         # uidls whose DELE gets -ERR
        self.batch = batch                    # list at most this many unpopped messages
        self.tokens = set(tokens)             # accepted OAuth tokens
        self.xoauth2_ir_refused = xoauth2_ir_refused
        self.on_dele = on_dele                # called with the uidl before answering DELE
        self.token_lifetime = token_lifetime  # RETRs a session may make before its token expires
        self.stls_reply = stls_reply          # bytes sent (in one write) to STLS; offers STLS
        self.tls = tls                        # an ssl.SSLContext: implicit TLS
        self.retr_delay = retr_delay          # seconds before each RETR's answer (a slow server)
        self.capa_extra = tuple(capa_extra)   # more CAPA lines
        self.sessions = []
        self.oauth_payloads = []
        self.errors = []
        self.lock = threading.Lock()
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(8)
        self.lsock.settimeout(0.2)
        self.port = self.lsock.getsockname()[1]
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    # -- state seen by the tests
    def remaining(self):
        with self.lock:
            return [m["uidl"] for m in self.msgs if not m["deleted"]]

    def commands(self, session):
        return [line.split(" ")[0].upper() for line in self.sessions[session]]

    def all_lines(self):
        return [line for s in self.sessions for line in s]

    def stop(self):
        self.stopping = True
        self.thread.join(timeout=10)
        self.lsock.close()
        assert not self.errors, self.errors

    # -- the server
    def _serve(self):
        while not self.stopping:
            try:
                conn, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            conn.settimeout(TIMEOUT)
            try:
                if self.tls is not None:
                    conn = self.tls.wrap_socket(conn, server_side=True)
                self._session(conn)
            except (OSError, EOFError):
                pass
            except Exception as e:  # a bug in this test server: report it
                self.errors.append(repr(e))
            finally:
                try:
                    conn.close()
                except OSError:
                    pass

    def _session(self, conn):
        lines = []
        with self.lock:
            self.sessions.append(lines)
            visible = [m for m in self.msgs
                       if not m["deleted"] and not (self.batch and m["popped"])]
            if self.batch:
                visible = visible[:self.batch]
        f = conn.makefile("rb")
        authed = False
        pending_dele, pending_pop = set(), set()
        retrs = 0

        def send(*out):
            conn.sendall(b"".join((x.encode() if isinstance(x, str) else x) + b"\r\n"
                                  for x in out))

        def readline():
            raw = f.readline(65536)
            if not raw:
                raise EOFError
            line = raw.rstrip(b"\r\n").decode(errors="replace")
            lines.append(line)
            return line

        def body_lines(data):
            out = []
            for line in data.split(b"\n")[:-1] if data.endswith(b"\n") else data.split(b"\n"):
                out.append(b"." + line if line.startswith(b".") else line)
            return out

        def msg(arg):
            try:
                n = int(arg)
            except ValueError:
                return None
            if 1 <= n <= len(visible) and (n - 1) not in pending_dele:
                return n
            return None

        def size(m):
            return crlf_size(m["data"])

        send("+OK fake POP3 ready")
        while True:
            line = readline()
            word, _, arg = line.partition(" ")
            word = word.upper()
            if word == "CAPA":
                if not self.capa:
                    send("-ERR no CAPA here")
                    continue
                caps = ["TOP"] if self.top else []
                caps += ["UIDL"] if self.uidl else []
                caps += ["USER"] if self.user else []
                caps += ["PIPELINING"] if self.pipelining else []
                caps += ["SASL " + " ".join(self.sasl)] if self.sasl else []
                caps += ["STLS"] if self.stls_reply is not None else []
                caps += ["RESP-CODES"]
                caps += list(self.capa_extra)
                send("+OK capabilities", *caps, ".")
            elif word == "STLS" and self.stls_reply is not None:
                conn.sendall(self.stls_reply)
                # a TLS ClientHello has no line end: stop here
                return
            elif word == "USER" and not authed:
                self._user = arg
                send("+OK send PASS")
            elif word == "PASS" and not authed:
                if getattr(self, "_user", None) == self.login and arg == self.password:
                    authed = True
                    send("+OK logged in")
                else:
                    send("-ERR [AUTH] wrong password")
            elif word == "AUTH" and not authed:
                mech, _, ir = arg.partition(" ")
                authed = self._oauth(mech.upper(), ir, send, readline)
            elif word == "QUIT":
                with self.lock:
                    for i in pending_dele:
                        visible[i]["deleted"] = True
                    for i in pending_pop:
                        visible[i]["popped"] = True
                send("+OK bye")
                return
            elif not authed:
                send("-ERR log in first")
            elif word == "STAT":
                live = [m for i, m in enumerate(visible) if i not in pending_dele]
                send("+OK %d %d" % (len(live), sum(size(m) for m in live)))
            elif word == "UIDL" and self.uidl and not arg:
                send("+OK", *["%d %s" % (i + 1, m["uidl"]) for i, m in enumerate(visible)
                              if i not in pending_dele], ".")
            elif word == "LIST" and not arg:
                send("+OK", *["%d %d" % (i + 1, size(m)) for i, m in enumerate(visible)
                              if i not in pending_dele], ".")
            elif word in ("RETR", "TOP") and msg(arg.split(" ")[0]) is not None:
                n = msg(arg.split(" ")[0])
                m = visible[n - 1]
                data = m["data"] if word == "RETR" else headers_of(m["data"])
                body = body_lines(data)
                if word == "RETR" and self.drop_in_retr == m["uidl"]:
                    send("+OK %d octets" % size(m), *body[:len(body) // 2])
                    conn.shutdown(socket.SHUT_RDWR)
                    return
                if word == "RETR" and self.token_lifetime is not None:
                    retrs += 1
                    if retrs > self.token_lifetime:
                        # what Microsoft says when a long download outlives the token
                        send("-ERR AccessTokenExpired: the access token has expired")
                        continue
                pending_pop.add(n - 1)
                if self.retr_delay:
                    time.sleep(self.retr_delay)
                send("+OK %d octets" % size(m), *body, ".")
            elif word == "DELE" and msg(arg) is not None:
                n = msg(arg)
                if self.on_dele is not None:
                    self.on_dele(visible[n - 1]["uidl"])
                if visible[n - 1]["uidl"] in self.dele_err:
                    send("-ERR [SYS/TEMP] cannot delete message %d just now" % n)
                else:
                    pending_dele.add(n - 1)
                    send("+OK message %d deleted" % n)
            elif word == "NOOP":
                send("+OK")
            elif word == "RSET":
                pending_dele.clear()
                send("+OK")
            else:
                send("-ERR unknown command or bad argument")

    def _oauth(self, mech, ir, send, readline):
        if mech not in self.sasl:
            send("-ERR [AUTH] mechanism not offered")
            return False
        if mech == "XOAUTH2" and ir and self.xoauth2_ir_refused:
            # Microsoft: the one-line form is a protocol error
            send("-ERR Protocol error. Connection is closed.")
            return False
        if not ir:
            send("+ ")
            ir = readline()
        try:
            payload = base64.b64decode(ir, validate=True)
        except ValueError:
            send("-ERR [AUTH] bad base64")
            return False
        self.oauth_payloads.append((mech, payload))
        token = None
        if mech == "XOAUTH2":
            m = re.fullmatch(rb"user=([^\x01]*)\x01auth=Bearer ([^\x01]+)\x01\x01", payload)
            if m and m.group(1).decode() == self.login:
                token = m.group(2).decode()
            challenge = {"status": "401", "schemes": "bearer", "scope": "https://mail.google.com/"}
        else:
            m = re.fullmatch(rb"n,a=([^,]*),\x01((?:[a-z]+=[^\x01]*\x01)*)\x01", payload)
            if m and m.group(1).decode() == self.login:
                kv = dict(x.split(b"=", 1) for x in m.group(2).split(b"\x01") if x)
                if kv.get(b"host") == b"127.0.0.1" and kv.get(b"port") == str(self.port).encode() \
                        and kv.get(b"auth", b"").startswith(b"Bearer "):
                    token = kv[b"auth"][7:].decode()
            challenge = {"status": "invalid_token", "scope": "https://mail.google.com/",
                         "openid-configuration": "https://example.org/.well-known/openid"}
        if token is not None and token in self.tokens:
            send("+OK welcome")
            return True
        send("+ " + b64(json.dumps(challenge)))
        readline()  # the client's answer to the error challenge, recorded
        send("-ERR [AUTH] invalid credentials")
        return False


@pytest.fixture
def fake():
    servers = []

    def factory(messages, **kw):
        s = FakePop3(messages, **kw)
        servers.append(s)
        return s

    yield factory
    for s in servers:
        s.stop()


def fake_messages(n, prefix="uid", lines=8):
    msgs = []
    for i in range(1, n + 1):
        body = "".join("body line %d of message %d\n" % (k, i) for k in range(lines))
        msgs.append(("%s-%02d" % (prefix, i), message(i, body=body)))
    return msgs


# ==== delete mode, keep mode, delete_after ==================================================


def test_delete_mode_byte_exact_then_nothing_new(make_server, scram_entry, tmp_path):
    """Default account settings otherwise (auth auto, maildir ~/Mail/INBOX, store under
    ~/.local/state): every message lands byte-exact, the server ends empty, a second
    run has nothing to do (exit 0; 1 with --exit-nothing-new)."""
    srv = pop_server(make_server, scram_entry)
    long_line = b"x" * 150000 + b"\n"   # longer than the client's 64 KiB line piece
    originals = [message(1), TRICKY, message(3, body="short\n" + long_line.decode() + "end\n"),
                 message(4, body="")]
    for data in originals:
        srv.deliver("alice", data)
    ws = Workspace(tmp_path / "client")
    ws.write(ws.account(srv.port, destination=None, uidl_store=None))
    r = ws.run("--json")
    assert r.rc == EX_OK, r
    assert len(r.json) == 1 and r.json[0]["fetched"] == 4 and r.json[0]["deleted"] == 4, r
    inbox = ws.home / "Mail" / "INBOX"
    assert ws.delivered(inbox) == originals
    assert tmp_files(inbox) == []
    assert srv.messages("alice") == []
    assert (ws.home / ".local" / "state" / "pigeon" / "acct.uidl").exists()
    wait_log(srv, "retrieved=4 ")

    r = ws.run()
    assert r.rc == EX_OK, r
    assert "nothing new" in r.out, r
    r = ws.run("--exit-nothing-new", "--json")
    assert r.rc == EX_NOTHING, r
    assert r.json[0]["fetched"] == 0 and r.json[0]["status"] == 0, r
    assert ws.delivered(inbox) == originals


def test_keep_mode_uses_the_uidl_store(make_server, scram_entry, ws):
    srv = pop_server(make_server, scram_entry)
    first = [message(i) for i in range(1, 4)]
    for data in first:
        srv.deliver("alice", data)
    ws.write(ws.account(srv.port, keep="yes"))
    r = ws.run("--json")
    assert r.rc == EX_OK and r.json[0]["fetched"] == 3 and r.json[0]["deleted"] == 0, r
    assert ws.delivered() == first
    assert len(srv.messages("alice")) == 3

    r = ws.run("--json", "--exit-nothing-new")
    assert r.rc == EX_NOTHING and r.json[0]["fetched"] == 0 and r.json[0]["listed"] == 3, r
    assert ws.delivered() == first

    new = message(99, subject="the new one")
    srv.deliver("alice", new)
    r = ws.run("--json")
    assert r.rc == EX_OK and r.json[0]["fetched"] == 1 and r.json[0]["new"] == 1, r
    assert ws.delivered() == first + [new]
    assert len(srv.messages("alice")) == 4

    # --delete on the command line overrides keep = yes: nothing is downloaded
    # again, the four known messages are deleted
    r = ws.run("--json", "--delete")
    assert r.rc == EX_OK and r.json[0]["fetched"] == 0 and r.json[0]["deleted"] == 4, r
    assert srv.messages("alice") == []
    assert ws.delivered() == first + [new]


def read_store(path):
    lines = pathlib.Path(path).read_text().splitlines()
    assert lines[0] == "pigeon-uidl 1", lines
    entries = {}
    for line in lines[1:]:
        if line.startswith(("account ", "fetch ")):
            continue
        first, last, flag, uidl = line.split(" ", 3)
        entries[uidl] = [int(first), int(last), flag]
    return entries


def write_store(path, entries):
    text = "pigeon-uidl 1\n" + "".join("%d %d %s %s\n" % (e[0], e[1], e[2], u)
                                       for u, e in entries.items())
    pathlib.Path(path).write_text(text)


def test_delete_after_deletes_only_old_messages(make_server, scram_entry, ws):
    srv = pop_server(make_server, scram_entry)
    msgs = [message(i) for i in range(1, 5)]
    for data in msgs:
        srv.deliver("alice", data)
    on_server = server_messages(srv)
    uid_of = {data: uid for uid, data in on_server.items()}
    ws.write(ws.account(srv.port, keep="yes", delete_after="2d"))
    r = ws.run("--json")
    assert r.rc == EX_OK and r.json[0]["fetched"] == 4 and r.json[0]["deleted"] == 0, r
    entries = read_store(ws.store)
    assert set(entries) == set(on_server), entries

    # messages 1 and 3 were first seen three days ago
    old = {uid_of[msgs[0]], uid_of[msgs[2]]}
    for uid in old:
        entries[uid][0] -= 3 * 86400
    write_store(ws.store, entries)
    fresh = message(5)
    srv.deliver("alice", fresh)
    r = ws.run("--json")
    assert r.rc == EX_OK, r
    assert r.json[0]["fetched"] == 1 and r.json[0]["deleted"] == 2, r
    left = server_messages(srv)
    assert not old & set(left), left
    assert sorted(left.values()) == sorted([msgs[1], msgs[3], fresh])
    assert ws.delivered() == msgs + [fresh]
    # the deleted ones are gone from the store, the others keep their first-seen time
    entries2 = read_store(ws.store)
    assert not old & set(entries2), entries2
    for uid in set(on_server) - old:
        assert entries2[uid][0] == entries[uid][0]


# ==== max_size ===================================================================================


def big_message(n, kb=8):
    body = "".join("filler line %05d %s\n" % (k, "y" * 40) for k in range(kb * 1024 // 58 + 1))
    return message(n, subject="big %d" % n, body=body)


def test_max_size_skip(make_server, scram_entry, ws):
    srv = pop_server(make_server, scram_entry)
    small1, big, small2 = message(1), big_message(2), message(3)
    for data in (small1, big, small2):
        srv.deliver("alice", data)
    ws.write(ws.account(srv.port, max_size="4k"))
    for attempt in range(2):
        r = ws.run("--json")
        assert r.rc == EX_OK, r
        j = r.json[0]
        assert j["skipped"] >= 1 and j["fetched"] == (2 if attempt == 0 else 0), r
        # reported: which message, how big, which limit
        assert re.search(r"skipping message \d+ \(%d octets > max_size 4096\)" % crlf_size(big),
                         r.err), r.err
        assert list(server_messages(srv).values()) == [big]
        assert ws.delivered() == [small1, small2]
    # --max-size on the command line raises the limit
    r = ws.run("--json", "--max-size", "1M")
    assert r.rc == EX_OK and r.json[0]["fetched"] == 1 and r.json[0]["skipped"] == 0, r
    assert ws.delivered() == [small1, small2, big]
    assert srv.messages("alice") == []


def test_max_size_skipped_message_counted_once(make_server, scram_entry, ws):
    """One oversized message is one skipped message, however many sessions the
    run opens (a session that delivered something is followed by another)."""
    srv = pop_server(make_server, scram_entry)
    big = big_message(2)
    srv.deliver("alice", message(1))
    srv.deliver("alice", big)
    ws.write(ws.account(srv.port, max_size="4k"))
    r = ws.run("--json")
    assert r.rc == EX_OK and r.json[0]["fetched"] == 1, r
    assert r.json[0]["skipped"] == 1, r.json
    assert len(re.findall(r"skipping message", r.err)) == 1, r.err


def test_max_size_headers_only(make_server, scram_entry, ws):
    srv = pop_server(make_server, scram_entry)
    small, big = message(1), big_message(2)
    srv.deliver("alice", small)
    srv.deliver("alice", big)
    ws.write(ws.account(srv.port, max_size="4k", max_size_action="headers"))
    r = ws.run("--json", "-v")
    assert r.rc == EX_OK, r
    assert r.json[0]["fetched"] == 2 and r.json[0]["deleted"] == 1, r
    assert re.search(r"^C: TOP \d+ 0$", r.err, re.M), r.err
    # the headers and the separating empty line, nothing of the body
    assert ws.delivered() == [small, headers_of(big)]
    assert list(server_messages(srv).values()) == [big]
    # and the user is told, in one line
    notes = re.findall(r"^\[acct\].*only the headers were fetched.*$", r.err, re.M)
    assert len(notes) == 1 and "1 message over max_size" in notes[0], r.err
    # later runs neither fetch it again nor delete it (delete mode notwithstanding)
    for _ in range(2):
        r = ws.run("--json", "-v")
        assert r.rc == EX_OK and r.json[0]["fetched"] == 0 and r.json[0]["deleted"] == 0, r
        assert "C: TOP" not in r.err and "C: RETR" not in r.err and "C: DELE" not in r.err
    assert list(server_messages(srv).values()) == [big]
    assert ws.delivered() == [small, headers_of(big)]


# ==== --check and --probe ==================================================================


def test_check_counts_and_changes_nothing(make_server, scram_entry, ws):
    srv = pop_server(make_server, scram_entry)
    msgs = [message(1), big_message(2, kb=2000), message(3)]
    for data in msgs:
        srv.deliver("alice", data)
    ws.write(ws.account(srv.port))
    total = sum(crlf_size(m) for m in msgs)
    r = ws.run("--check")
    assert r.rc == EX_OK, r
    assert r.out.strip() == "[acct] 3 new messages (%.1f MB) waiting, 3 on the server" % (
        total / 1e6), r.out
    r = ws.run("--check", "--json", "-v")
    assert r.rc == EX_OK, r
    j = r.json[0]
    assert (j["new"], j["new_bytes"], j["listed"]) == (3, total, 3), j
    assert (j["fetched"], j["deleted"]) == (0, 0), j
    assert "C: RETR" not in r.err and "C: TOP" not in r.err and "C: DELE" not in r.err, r.err
    assert ws.delivered() == [] and len(srv.messages("alice")) == 3
    assert not ws.store.exists() or read_store(ws.store) == {}
    # after a keep run, --check knows the messages
    ws.write(ws.account(srv.port, keep="yes"))
    assert ws.run().rc == EX_OK
    r = ws.run("--check", "--json", "--exit-nothing-new")
    assert r.rc == EX_NOTHING and r.json[0]["new"] == 0 and r.json[0]["listed"] == 3, r
    assert len(srv.messages("alice")) == 3


def test_probe_describes_server_and_logs_in_to_nothing(make_server, scram_entry, pki, ws):
    srv = tls_server(make_server, scram_entry, pki.localhost)
    srv.deliver("alice", message(1))
    # no password anywhere: --probe needs none
    ws.write(ws.account(srv.tls_port, host="localhost", tls="implicit", allow_plaintext=None,
                        password=None, ca_file=pki.ca.cert))
    r = ws.run("--probe")
    assert r.rc == EX_OK, r
    out = r.out
    assert "greeting: Pigeon POP3 server ready" in out, out
    m = re.search(r"TLS: (TLSv1\.[23]) (\S+)", out)
    assert m and m.group(2), out
    assert "certificate fingerprint: " + fingerprint(pki.localhost.der) in out, out
    chain = out.split("certificate chain:", 1)[1]
    assert re.search(r"0: localhost, IP 127\.0\.0\.1; subject .*CN ?= ?localhost.*issued by "
                     r".*Pigeon Fetch Test Root CA", chain), out
    caps = out.split("CAPA:", 1)[1]
    for cap in ("UIDL", "TOP", "USER", "PIPELINING", "SASL SCRAM-SHA-256-PLUS"):
        assert cap in caps, out
    assert "login would use: SCRAM-SHA-256-PLUS" in out, out
    time.sleep(0.2)
    assert "login:" not in srv.log() and "login failed" not in srv.log(), srv.log()
    assert ws.delivered() == [] and len(srv.messages("alice")) == 1


# ==== destinations =============================================================================

MBOX_FROM = re.compile(rb"^From MAILER-DAEMON \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}$")


def mboxrd_quote(data):
    return re.sub(rb"(?m)^(>*From )", rb">\1", data)


def mbox_messages(path):
    """Split an mboxrd file at its separator lines; each part must end with the
    blank line that separates messages. Returns the quoted message texts."""
    data = pathlib.Path(path).read_bytes()
    parts = re.split(rb"(?:^|\n\n)(From [^\n]*)\n", data)
    assert parts[0] == b"", data[:200]
    out = []
    assert data.endswith(b"\n\n"), data[-50:]
    for i in range(1, len(parts), 2):
        assert MBOX_FROM.match(parts[i]) or parts[i].startswith(b"From other@"), parts[i]
        last = i + 2 >= len(parts)
        out.append(parts[i + 1][:-1] if last else parts[i + 1] + b"\n")
    return out


def test_mbox_destination_mboxrd(make_server, scram_entry, ws):
    srv = pop_server(make_server, scram_entry)
    msgs = [message(1), TRICKY,
            message(3, body="From x\n>From y\n>>From z\nFrom: not a separator\nFromage\n")]
    for data in msgs:
        srv.deliver("alice", data)
    mbox = ws.home / "inbox.mbox"
    ws.write(ws.account(srv.port))
    r = ws.run("--json", "--destination", "mbox:%s" % mbox)
    assert r.rc == EX_OK and r.json[0]["fetched"] == 3, r
    assert ws.delivered() == [] and srv.messages("alice") == []
    stored = mbox_messages(mbox)
    assert stored == [mboxrd_quote(m) for m in msgs]
    text = mbox.read_bytes()
    assert b"\n>From x\n>>From y\n>>>From z\nFrom: not a separator\nFromage\n" in text
    assert b"\n>From the start of a line\n>>From quoted\n" in text
    assert not (ws.home / "inbox.mbox.lock").exists()


def test_mbox_destination_waits_for_locks(make_server, scram_entry, ws):
    """Another program holds an fcntl lock (then a dotlock) and appends a message:
    the run waits for the lock and nothing is interleaved or lost."""
    srv = pop_server(make_server, scram_entry)
    mbox = ws.home / "locked.mbox"
    ws.write(ws.account(srv.port, destination="mbox:%s" % mbox))
    theirs = b"From other@example.org Mon Jan  1 00:00:00 2024\nSubject: theirs\n\nbody\n\n"
    mine = {"fcntl": message(1), "dotlock": message(2)}
    for kind in ("fcntl", "dotlock"):
        srv.deliver("alice", mine[kind])
        with open(mbox, "ab") as f:
            if kind == "fcntl":
                fcntl.lockf(f, fcntl.LOCK_EX)
            else:
                (ws.home / "locked.mbox.lock").write_text("4242\n")
            proc = subprocess.Popen([str(build_dir() / "pigeon"), "fetch", "-c", str(ws.conf),
                                     "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    env=dict(os.environ, HOME=str(ws.home),
                                             ASAN_OPTIONS="detect_leaks=1"))
            time.sleep(1.0)
            assert proc.poll() is None, "pigeon fetch did not wait for the %s lock" % kind
            f.write(theirs)   # still appending under the lock
            f.flush()
            if kind == "fcntl":
                fcntl.lockf(f, fcntl.LOCK_UN)
            else:
                (ws.home / "locked.mbox.lock").unlink()
        out, err = proc.communicate(timeout=30)
        for marker in SANITIZER_MARKERS:
            assert marker.encode() not in err, err.decode()
        assert proc.returncode == EX_OK, (out, err)
        assert json.loads(out)["fetched"] == 1
    parts = mbox_messages(mbox)
    assert len(parts) == 4, parts
    assert parts[0] == parts[2] == b"Subject: theirs\n\nbody\n"
    assert parts[1] == mine["fcntl"] and parts[3] == mine["dotlock"], parts
    assert not (ws.home / "locked.mbox.lock").exists()


MDA_SCRIPT = r"""#!/bin/sh
# stores stdin as $OUT/msg.N; fails (exit $FAIL_CODE) for a message with $FAIL_SUBJECT
set -e
tmp=$(mktemp "$OUT/.in.XXXXXX")
cat > "$tmp"
if [ -n "$FAIL_SUBJECT" ] && grep -q "^Subject: $FAIL_SUBJECT\$" "$tmp"; then
    rm -f "$tmp"
    echo "mda: refusing $FAIL_SUBJECT" >&2
    exit "$FAIL_CODE"
fi
n=$(ls "$OUT" | grep -c '^msg\.' || true)
mv "$tmp" "$OUT/msg.$(printf %03d $((n + 1)))"
"""


def mda_setup(ws, fail_subject="", fail_code=0, name="mda-out"):
    out = ws.home / name
    out.mkdir(exist_ok=True)
    script = ws.home / "mda.sh"
    script.write_text(MDA_SCRIPT)
    os.chmod(script, 0o755)
    cmd = "OUT=%s FAIL_SUBJECT='%s' FAIL_CODE=%d %s" % (out, fail_subject, fail_code, script)
    return out, "mda:" + cmd


def mda_stored(out):
    return [p.read_bytes() for p in sorted(out.glob("msg.*"))]


def test_mda_destination(make_server, scram_entry, ws):
    srv = pop_server(make_server, scram_entry)
    msgs = [message(1), TRICKY, message(3)]
    for data in msgs:
        srv.deliver("alice", data)
    out, dest = mda_setup(ws)
    ws.write(ws.account(srv.port, destination=dest))
    r = ws.run("--json")
    assert r.rc == EX_OK and r.json[0]["fetched"] == 3, r
    assert r.out.count("\n") == 1, r.out  # the MDA's stdout does not mix with ours
    assert mda_stored(out) == msgs
    assert srv.messages("alice") == []


@pytest.mark.parametrize("code", [75, 1])
def test_mda_failure_keeps_message_on_server(make_server, scram_entry, ws, code):
    """Exit 75 (EX_TEMPFAIL): retried next run, the run exits 75. Any other
    failure: reported, kept on the server. Delete mode in both cases."""
    srv = pop_server(make_server, scram_entry)
    msgs = [message(1, subject="one"), message(2, subject="two"), message(3, subject="three")]
    for data in msgs:
        srv.deliver("alice", data)
    out, dest = mda_setup(ws, fail_subject="two", fail_code=code)
    ws.write(ws.account(srv.port, destination=dest))
    r = ws.run("--json")
    if code == 75:
        assert r.rc == EX_TEMP, r
    else:
        assert r.rc not in (EX_OK, EX_TEMP), r
    assert r.json[0]["failed"] >= 1, r
    assert "exit" in r.json[0]["error"] and str(code) in r.json[0]["error"], r.json
    assert re.search(r"message 2 not delivered: MDA failed.*%d" % code, r.err), r.err
    stored = mda_stored(out)
    assert msgs[1] not in stored and stored[0] == msgs[0]
    left = list(server_messages(srv).values())
    assert msgs[1] in left
    # nothing lost: every message is either delivered or still on the server
    for m in msgs:
        assert (m in stored) != (m in left), (m, stored, left)
    # the MDA works again: the rest is delivered, nothing twice
    out2, dest2 = mda_setup(ws, name="mda-out2")
    ws.write(ws.account(srv.port, destination=dest2))
    r = ws.run("--json")
    assert r.rc == EX_OK, r
    assert sorted(mda_stored(out2) + stored) == sorted(msgs)
    assert srv.messages("alice") == []


def test_lmtp_destination_into_pigeond(make_server, scram_entry, ws):
    """From alice's POP3 maildrop into bob's Maildir through pigeond's own LMTP."""
    srv = make_server(start=False)
    srv.add_user("alice", stored=scram_entry)
    srv.add_user("bob", stored=scram_entry)
    lmtp_port = free_port()
    while lmtp_port == srv.port:
        lmtp_port = free_port()
    srv.settings["lmtp"] = {"listen": "127.0.0.1:%d" % lmtp_port}
    srv.start()
    msgs = [message(1), TRICKY, message(3, body=".\n.one dot\n..two dots\n")]
    for data in msgs:
        srv.deliver("alice", data)
    ws.write(ws.account(srv.port, destination="lmtp:127.0.0.1:%d" % lmtp_port,
                        lmtp_recipient="bob"))
    r = ws.run("--json")
    assert r.rc == EX_OK and r.json[0]["fetched"] == 3, r
    assert srv.messages("alice") == []
    got = maildir_messages(srv.maildir("bob"))
    assert len(got) == 3, got
    for original, stored in zip(msgs, got):
        # pigeond may add trace headers in front; the message itself is intact
        assert stored.endswith(original), (stored, original)
    assert ws.delivered() == []


# ==== TLS ======================================================================================


def tls_account(ws, port, pki, **kw):
    settings = {"host": "localhost", "tls": "implicit", "allow_plaintext": None,
                "ca_file": pki.ca.cert}
    settings.update(kw)
    return ws.account(port, **settings)


def test_implicit_tls_with_ca_file(make_server, scram_entry, pki, ws):
    srv = tls_server(make_server, scram_entry, pki.localhost)
    msgs = [message(1), TRICKY]
    for data in msgs:
        srv.deliver("alice", data)
    ws.write(tls_account(ws, srv.tls_port, pki))
    r = ws.run("--json")
    assert r.rc == EX_OK and r.json[0]["fetched"] == 2, r
    assert ws.delivered() == msgs
    wait_log(srv, "login: user=alice ip=127.0.0.1 method=SCRAM-SHA-256-PLUS tls=yes")
    # by address: the certificate's IP SAN matches (another host name: the
    # store of "localhost" is not used for it)
    ws.write(tls_account(ws, srv.tls_port, pki, host="127.0.0.1",
                         uidl_store=ws.home / "by-address.uidl"))
    assert ws.run().rc == EX_OK


def test_starttls(make_server, scram_entry, pki, ws):
    srv = tls_server(make_server, scram_entry, pki.localhost)
    srv.deliver("alice", message(1))
    ws.write(tls_account(ws, srv.port, pki, tls="starttls"))
    r = ws.run("--json", "-v")
    assert r.rc == EX_OK and r.json[0]["fetched"] == 1, r
    # CAPA, STLS, then CAPA again over TLS before logging in
    dialogue = [l for l in r.err.splitlines() if l.startswith("C: ")]
    assert dialogue[:3] == ["C: CAPA", "C: STLS", "C: CAPA"], dialogue
    wait_log(srv, "login: user=alice ip=127.0.0.1 method=SCRAM-SHA-256-PLUS tls=yes")
    assert "tls=no" not in re.findall(r"login: .*", srv.log())[0]


def test_certificate_for_another_host_name(make_server, scram_entry, pki, ws):
    srv = tls_server(make_server, scram_entry, pki.mail)
    srv.deliver("alice", message(1))
    ws.write(tls_account(ws, srv.tls_port, pki))
    r = ws.run()
    assert r.rc == EX_TEMP, r
    m = re.search(r"expected the name (\S+?);? ", r.err)
    assert m and m.group(1) == "localhost", r.err
    assert "mail.example.org" in r.err, r.err
    assert "login:" not in srv.log() and ws.delivered() == []


def test_untrusted_ca(make_server, scram_entry, pki, ws):
    srv = tls_server(make_server, scram_entry, pki.stranger)
    srv.deliver("alice", message(1))
    for ca in (pki.ca.cert, None):   # the test CA, then the system store
        ws.write(tls_account(ws, srv.tls_port, pki, ca_file=ca))
        r = ws.run()
        assert r.rc == EX_TEMP, r
        assert "certificate of localhost not accepted" in r.err, r.err
    assert "login:" not in srv.log() and ws.delivered() == []


def test_untrusted_ca_error_names_the_issuer(make_server, scram_entry, pki, ws):
    """spec/clients.md B.2: the error names the names and the issuer the
    certificate carries (getmail6#253 shows how bad the opposite is)."""
    srv = tls_server(make_server, scram_entry, pki.stranger)
    ws.write(tls_account(ws, srv.tls_port, pki))
    r = ws.run()
    assert r.rc == EX_TEMP, r
    assert "Some Other CA" in r.err and "localhost" in r.err, r.err
    assert "holds no certificate" not in r.err, r.err


def test_fingerprint_pinning(make_server, scram_entry, pki, ws):
    """A self-signed certificate for another name: refused without a pin; with the
    pin shown by --probe it is accepted; a wrong pin is refused."""
    srv = tls_server(make_server, scram_entry, pki.selfsigned)
    srv.deliver("alice", message(1))
    ws.write(tls_account(ws, srv.tls_port, pki, ca_file=None))
    r = ws.run()
    assert r.rc == EX_TEMP and "not accepted" in r.err, r
    # --probe shows the fingerprint (with a pin that does not match, it still can)
    ws.write(tls_account(ws, srv.tls_port, pki, ca_file=None, fingerprint="sha256:00"))
    r = ws.run("--probe")
    m = re.search(r"(sha256:[0-9A-F:]{95})", r.out + r.err)
    assert m, r
    pin = m.group(1)
    assert pin == fingerprint(pki.selfsigned.der)
    ws.write(tls_account(ws, srv.tls_port, pki, ca_file=None, fingerprint=pin))
    r = ws.run("--json")
    assert r.rc == EX_OK and r.json[0]["fetched"] == 1, r
    # lower case without colons is the same pin
    srv.deliver("alice", message(2))
    ws.write(tls_account(ws, srv.tls_port, pki, ca_file=None,
                         fingerprint=pin[7:].replace(":", "").lower()))
    assert ws.run().rc == EX_OK
    wrong = "sha256:" + ":".join(["AB"] * 32)
    srv.deliver("alice", message(3))
    ws.write(tls_account(ws, srv.tls_port, pki, ca_file=None, fingerprint=wrong))
    r = ws.run()
    assert r.rc == EX_TEMP and "pinned fingerprint" in r.err, r
    assert len(ws.delivered()) == 2
    assert len(srv.messages("alice")) == 1
    # a pin does not let a certificate signed by a trusted CA through either
    srv2 = tls_server(make_server, scram_entry, pki.localhost)
    ws.write(tls_account(ws, srv2.tls_port, pki, fingerprint=wrong,
                         uidl_store=ws.home / "srv2.uidl"))
    r = ws.run()
    assert r.rc == EX_TEMP and "pinned fingerprint" in r.err, r


def test_starttls_not_offered_never_falls_back(make_server, scram_entry, pki, ws):
    srv = tls_server(make_server, scram_entry, pki.localhost, {"tls": {"stls": "no"}})
    srv.deliver("alice", message(1))
    ws.write(tls_account(ws, srv.port, pki, tls="starttls"))
    r = ws.run("-v")
    assert r.rc not in (EX_OK, EX_NOTHING), r
    assert "STLS" in r.err and "does not offer" in r.err, r.err
    sent = [l for l in r.err.splitlines() if l.startswith("C: ")]
    assert not [l for l in sent if re.match(r"C: (USER|PASS|AUTH|APOP|STLS)", l)], sent
    wait_log(srv, "session end: ")
    log = srv.log()
    assert "login:" not in log and "login failed" not in log, log
    ends = re.findall(r"session end: user=(\S+) .*commands=(\d+)", log)
    assert ends and all(u == "-" and int(n) <= 2 for u, n in ends), ends
    assert ws.delivered() == []


def test_plaintext_needs_the_opt_in(make_server, scram_entry, ws):
    srv = pop_server(make_server, scram_entry)
    srv.deliver("alice", message(1))
    wait_log(srv, "connect: ip=")  # conftest's readiness probe
    connects = srv.log().count("connect: ip=")
    ws.write(ws.account(srv.port, allow_plaintext=None))
    r = ws.run()
    assert r.rc == EX_CONFIG, r
    assert "allow_plaintext" in r.err, r.err
    ws.write(ws.account(srv.port, allow_plaintext="no"))
    r = ws.run()
    assert r.rc == EX_CONFIG and "allow_plaintext" in r.err, r
    time.sleep(0.2)
    assert srv.log().count("connect: ip=") == connects, "a refused configuration connected"
    ws.write(ws.account(srv.port))  # tls = none, allow_plaintext = yes
    r = ws.run("--json")
    assert r.rc == EX_OK and r.json[0]["fetched"] == 1, r
    wait_log(srv, "login: user=alice ip=127.0.0.1 method=SCRAM-SHA-256 tls=no")


# ==== SASL mechanisms and credentials ==========================================================


@pytest.mark.parametrize("auth,method", [
    ("scram-sha-256-plus", "SCRAM-SHA-256-PLUS"),
    ("scram-sha-256", "SCRAM-SHA-256"),
    ("plain", "PLAIN"),
    ("login", "LOGIN"),
    ("user", "USER"),
    ("auto", "SCRAM-SHA-256-PLUS"),
])
def test_login_mechanisms_over_implicit_tls(make_server, scram_entry, pki, ws, auth, method):
    srv = tls_server(make_server, scram_entry, pki.localhost)
    msg = message(1)
    srv.deliver("alice", msg)
    ws.write(tls_account(ws, srv.tls_port, pki, auth=auth))
    r = ws.run("--json", "-v")
    assert r.rc == EX_OK and r.json[0]["fetched"] == 1, r
    assert ws.delivered() == [msg]
    wait_log(srv, "login: user=alice ip=127.0.0.1 method=%s tls=yes" % method)
    methods = re.findall(r"login: user=alice \S+ method=(\S+)", srv.log())
    assert set(methods) == {method}, srv.log()
    assert "login failed" not in srv.log()


def test_apop(make_server, ws):
    srv = make_server(settings={"auth": {"apop": "yes"}}, start=False)
    srv.add_user("alice", "secret")   # {PLAIN}: APOP needs the clear password
    srv.start()
    msg = message(1)
    srv.deliver("alice", msg)
    ws.write(ws.account(srv.port, auth="apop"))
    r = ws.run("--json", "-v")
    assert r.rc == EX_OK and r.json[0]["fetched"] == 1, r
    assert re.search(r"^C: APOP (alice )?\*\*\*\*$", r.err, re.M), r.err
    wait_log(srv, "login: user=alice ip=127.0.0.1 method=APOP tls=no")
    assert ws.delivered() == [msg]
    # a wrong password is refused by the server, not mistaken for success
    ws.write(ws.account(srv.port, auth="apop", password="wrong"))
    r = ws.run()
    assert r.rc == EX_AUTH, r


@pytest.mark.parametrize("auth", ["auto", "plain", "user"])
def test_wrong_password(make_server, scram_entry, pki, ws, auth):
    srv = tls_server(make_server, scram_entry, pki.localhost)
    srv.deliver("alice", message(1))
    ws.write(tls_account(ws, srv.tls_port, pki, auth=auth, password="not-the-password"))
    r = ws.run("--json")
    assert r.rc == EX_AUTH, r
    err = r.json[0]["error"]
    assert re.match(r"login with \S+ refused: \[AUTH\] ", err), err
    assert "not-the-password" not in r.out + r.err
    assert len(srv.messages("alice")) == 1 and ws.delivered() == []
    r = ws.run()
    assert r.rc == EX_AUTH and "[acct] error: login with" in r.err, r


def test_mechanism_not_offered(make_server, scram_entry, ws):
    """auth = scram-sha-256-plus over plaintext: the server cannot offer it."""
    srv = pop_server(make_server, scram_entry)
    ws.write(ws.account(srv.port, auth="scram-sha-256-plus"))
    r = ws.run()
    assert r.rc in (EX_CONFIG, EX_AUTH), r
    assert "SCRAM-SHA-256-PLUS" in r.err, r.err


def test_password_command(make_server, scram_entry, ws):
    srv = pop_server(make_server, scram_entry)
    srv.deliver("alice", message(1))
    ws.write(ws.account(srv.port, password=None,
                        password_command="printf 'secret\\nsecond line ignored\\n'"))
    r = ws.run("--json")
    assert r.rc == EX_OK and r.json[0]["fetched"] == 1, r
    # a failing command is a clear configuration error
    ws.write(ws.account(srv.port, password=None, password_command="echo nope; exit 3"))
    r = ws.run()
    assert r.rc == EX_CONFIG, r
    assert "password_command failed" in r.err and "3" in r.err, r.err
    ws.write(ws.account(srv.port, password=None, password_command="true"))
    r = ws.run()
    assert r.rc == EX_CONFIG and "password_command printed nothing" in r.err, r
    # it wins over a password in the file
    srv.deliver("alice", message(2))
    ws.write(ws.account(srv.port, password="wrong", password_command="echo secret"))
    assert ws.run().rc == EX_OK
    assert len(ws.delivered()) == 2


def test_password_in_file_needs_a_private_file(make_server, scram_entry, ws):
    srv = pop_server(make_server, scram_entry)
    srv.deliver("alice", message(1))
    for mode in (0o640, 0o604, 0o644):
        ws.write(ws.account(srv.port), mode=mode)
        r = ws.run()
        assert r.rc == EX_CONFIG, (oct(mode), r)
        assert "chmod 600" in r.err, r.err
        assert "secret" not in r.err, r.err
    assert len(srv.messages("alice")) == 1
    # without a password in it, a readable file is fine
    ws.write(ws.account(srv.port, password=None, password_command="echo secret"), mode=0o644)
    r = ws.run("--json")
    assert r.rc == EX_OK and r.json[0]["fetched"] == 1, r


def test_netrc(make_server, scram_entry, ws):
    srv = pop_server(make_server, scram_entry)
    srv.deliver("alice", message(1))
    netrc = ws.home / ".netrc"
    netrc.write_text("machine other.example.org login alice password wrong1\n"
                     "machine 127.0.0.1 login bob password wrong2\n"
                     "machine 127.0.0.1\n  login alice\n  password secret\n"
                     "default login alice password wrong3\n")
    os.chmod(netrc, 0o600)
    ws.write(ws.account(srv.port, password=None))
    r = ws.run("--json")
    assert r.rc == EX_OK and r.json[0]["fetched"] == 1, r
    # no entry for this machine and user, no terminal: a clear error
    netrc.write_text("machine other.example.org login alice password secret\n")
    r = ws.run()
    assert r.rc == EX_CONFIG and "no password" in r.err, r


@pytest.mark.parametrize("auth", ["user", "plain", "login"])
def test_verbose_output_hides_the_password(make_server, scram_entry, ws, auth):
    srv = pop_server(make_server, scram_entry)
    srv.deliver("alice", message(1))
    pw = "Sesame-4711"
    entry = subprocess.run([str(build_dir() / "pigeon"), "pw", "hash", "--scheme", "scram"],
                           input=pw + "\n", capture_output=True, text=True,
                           timeout=60).stdout.strip().splitlines()[-1]
    with open(srv.passwd, "w") as f:
        f.write("alice:%s:::::\n" % entry)
    ws.write(ws.account(srv.port, auth=auth, password=pw))
    r = ws.run("-v", "--json")
    assert r.rc == EX_OK and r.json[0]["fetched"] == 1, r
    shown = r.out + r.err
    encoded = {pw, b64(pw), b64("\0alice\0" + pw), b64("alice\0alice\0" + pw)}
    for secret in encoded:
        assert secret not in shown, "secret %r in -v output:\n%s" % (secret, shown)
    sent = [l for l in r.err.splitlines() if l.startswith("C: ")]
    if auth == "user":
        assert "C: PASS ****" in sent, sent
    elif auth == "plain":
        assert "C: AUTH ****" in sent or "C: AUTH PLAIN ****" in sent, sent
    else:
        i = sent.index("C: AUTH LOGIN")
        assert sent[i + 2] == "C: ****", sent   # the user name line, then the hidden password


# ==== pipelining ================================================================================


def max_outstanding(trace, command):
    """The most `command` lines sent before the next server line, from -v output."""
    best = run = 0
    for line in trace.splitlines():
        if line.startswith("C: " + command + " "):
            run += 1
            best = max(best, run)
        elif line.startswith("S: "):
            run = 0
    return best


@pytest.mark.parametrize("settings,window", [({"window": "5"}, 5), ({"pipelining": "no"}, 1)])
def test_pipelining_keeps_order(make_server, scram_entry, ws, settings, window):
    srv = pop_server(make_server, scram_entry)
    msgs = [message(i, body="".join("line %d.%d\n" % (i, k) for k in range(i * 7)) +
                    (".dot line\n" if i % 4 == 0 else ""))
            for i in range(1, 24)]
    for data in msgs:
        srv.deliver("alice", data)
    ws.write(ws.account(srv.port, **settings))
    r = ws.run("--json", "-v")
    assert r.rc == EX_OK and r.json[0]["fetched"] == 23 and r.json[0]["deleted"] == 23, r
    assert ws.delivered() == msgs
    assert srv.messages("alice") == []
    # the order on the wire: RETR 1..23, each DELE only after its RETR
    sent = [l[3:] for l in r.err.splitlines() if l.startswith("C: ")]
    retrs = [int(l.split()[1]) for l in sent if l.startswith("RETR ")]
    assert retrs == list(range(1, 24)), sent
    for n in range(1, 24):
        assert sent.index("RETR %d" % n) < sent.index("DELE %d" % n), sent
    assert max_outstanding(r.err, "RETR") == window, r.err


# ==== exit codes and --json ======================================================================


def test_in_use_is_temporary(make_server, scram_entry, ws):
    srv = pop_server(make_server, scram_entry)
    srv.deliver("alice", message(1))
    ws.write(ws.account(srv.port))
    holder = srv.login("alice", "secret")
    try:
        r = ws.run("--json")
        assert r.rc == EX_TEMP, r
        assert "IN-USE" in r.json[0]["error"], r.json
        assert ws.delivered() == []
    finally:
        holder.quit()
        holder.close()
    r = ws.run("--json")
    assert r.rc == EX_OK and r.json[0]["fetched"] == 1, r


def test_configuration_errors(make_server, scram_entry, ws):
    srv = pop_server(make_server, scram_entry)
    srv.deliver("alice", message(1))
    good = ws.account(srv.port)
    bad_settings = [
        {"colour": "blue"},
        {"tls": "sometimes"},
        {"auth": "kerberos"},
        {"destination": "imap:somewhere"},
        {"port": "99999"},
        {"max_size_action": "truncate"},
        {"delete_after": "soon"},
        {"host": None},
        {"user": None},
    ]
    for change in bad_settings:
        settings = dict(good)
        for key, value in change.items():
            if value is None:
                del settings[key]
            else:
                settings[key] = value
        ws.write(settings)
        r = ws.run()
        assert r.rc == EX_CONFIG, (change, r)
        assert r.err.startswith("pigeon fetch: "), (change, r.err)
    # no such file
    r = run_fetch(ws.home / "missing.conf", home=ws.home)
    assert r.rc == EX_CONFIG, r
    # an account name on the command line that the file does not have
    write_conf(ws.conf, {"one": good, "two": dict(good, uidl_store=ws.home / "two.uidl")})
    r = ws.run("three")
    assert r.rc == EX_CONFIG and "three" in r.err, r
    assert len(srv.messages("alice")) == 1
    # the named account only
    r = ws.run("--json", "two")
    assert r.rc == EX_OK and [j["account"] for j in r.json] == ["two"], r


def test_json_fields_and_worst_status(make_server, scram_entry, ws):
    srv = pop_server(make_server, scram_entry)
    msgs = [message(1), message(2)]
    for data in msgs:
        srv.deliver("alice", data)
    good = ws.account(srv.port)
    bad = dict(good, password="wrong", uidl_store=ws.home / "bad.uidl")
    write_conf(ws.conf, {"good": good, "bad": bad})
    r = ws.run("--json")
    assert r.rc == EX_AUTH, r     # the worst status wins
    assert [j["account"] for j in r.json] == ["good", "bad"], r
    for j in r.json:
        assert set(j) == JSON_FIELDS, j
        assert isinstance(j["seconds"], float) and j["seconds"] >= 0
    g, b = r.json
    assert (g["status"], g["fetched"], g["deleted"], g["new"], g["error"]) == (0, 2, 2, 2, None)
    assert g["bytes"] == sum(crlf_size(m) for m in msgs), g
    assert g["sessions"] >= 1
    assert b["status"] == EX_AUTH and "refused" in b["error"] and b["fetched"] == 0, b
    # -q: nothing on stdout, the error on stderr
    r = ws.run("-q")
    assert r.rc == EX_AUTH and r.out == "" and "[bad] error:" in r.err, r


# ==== scripted servers ===========================================================================


def fake_account(ws, f, **kw):
    return ws.account(f.port, **kw)


def test_connection_dropped_in_retr(fake, ws):
    msgs = fake_messages(5, lines=60)
    f = fake(msgs, drop_in_retr="uid-03")
    ws.write(fake_account(ws, f))
    r = ws.run("--json")
    assert r.rc == EX_TEMP, r
    assert r.json[0]["fetched"] == 2, r
    assert f.commands(0)[-1] == "RETR" and "QUIT" not in f.commands(0), f.sessions
    # nothing deleted: no QUIT
    assert f.remaining() == [u for u, _ in msgs]
    # what came before is delivered; nothing of the broken message
    assert ws.delivered() == [msgs[0][1], msgs[1][1]]
    assert tmp_files(ws.maildir) == []

    f.drop_in_retr = None
    r = ws.run("--json")
    assert r.rc == EX_OK, r
    assert r.json[0]["fetched"] == 3, r
    assert ws.delivered() == [d for _, d in msgs]
    retrieved = [l for s in f.sessions[1:] for l in s if l.startswith("RETR")]
    assert retrieved == ["RETR 3", "RETR 4", "RETR 5"], f.sessions
    assert f.remaining() == []


def test_dele_refused(fake, ws):
    msgs = fake_messages(3)
    f = fake(msgs, dele_err={"uid-02"})
    ws.write(fake_account(ws, f))
    r = ws.run("--json")
    assert r.rc in (EX_OK, EX_TEMP), r
    assert ws.delivered() == [d for _, d in msgs]
    assert re.search(r"refused to delete message 2\b.*cannot delete", r.err), r.err
    assert "QUIT" in f.commands(0), f.sessions
    assert f.remaining() == ["uid-02"]
    # next run: not downloaded again, deleted now
    f.dele_err = set()
    r = ws.run("--json")
    assert r.rc == EX_OK and r.json[0]["fetched"] == 0 and r.json[0]["deleted"] == 1, r
    assert not [l for l in f.all_lines()[len(f.sessions[0]):] if l.startswith("RETR")]
    assert f.remaining() == []
    assert len(ws.delivered()) == 3


def test_server_without_uidl(fake, ws):
    msgs = fake_messages(3)
    f = fake(msgs, uidl=False)
    ws.write(fake_account(ws, f, keep="yes"))
    r = ws.run("--json")
    assert r.rc not in (EX_OK, EX_NOTHING, EX_TEMP), r
    assert "UIDL" in r.json[0]["error"], r.json
    assert not [l for l in f.all_lines() if l.startswith(("RETR", "DELE", "TOP"))]
    assert ws.delivered() == [] and f.remaining() == [u for u, _ in msgs]
    ws.write(fake_account(ws, f, keep="yes", delete_after="1d"))
    r = ws.run("--json")
    assert r.rc not in (EX_OK, EX_NOTHING, EX_TEMP) and "UIDL" in r.json[0]["error"], r
    # delete mode works without UIDL
    ws.write(fake_account(ws, f))
    r = ws.run("--json")
    assert r.rc == EX_OK and r.json[0]["fetched"] == 3, r
    assert ws.delivered() == [d for _, d in msgs]
    assert f.remaining() == []


def test_gmail_style_batches(fake, ws):
    msgs = fake_messages(8)
    f = fake(msgs, batch=3)
    ws.write(fake_account(ws, f, keep="yes"))
    r = ws.run("--json")
    assert r.rc == EX_OK and r.json[0]["fetched"] == 8, r
    assert 3 <= r.json[0]["sessions"] <= 10 and r.json[0]["sessions"] == len(f.sessions), r
    assert ws.delivered() == [d for _, d in msgs]
    assert f.remaining() == [u for u, _ in msgs]   # keep mode
    # bounded by max_sessions
    g = fake(msgs, batch=3)
    ws2 = Workspace(ws.root / "second")
    ws2.write(fake_account(ws2, g, keep="yes", max_sessions="2"))
    r = ws2.run("--json")
    assert r.rc == EX_OK and r.json[0]["fetched"] == 6 and r.json[0]["sessions"] == 2, r
    assert len(g.sessions) == 2
    r = ws2.run("--json")
    assert r.rc == EX_OK and r.json[0]["fetched"] == 2, r
    assert ws2.delivered() == [d for _, d in msgs]


OAUTH_USER = "alice@example.com"


def test_xoauth2(fake, ws):
    msgs = fake_messages(2)
    f = fake(msgs, sasl=("XOAUTH2", "OAUTHBEARER"), login=OAUTH_USER, tokens={"tok-good"},
             user=False)
    ws.write(fake_account(ws, f, auth="xoauth2", user=OAUTH_USER, password="tok-good"))
    r = ws.run("--json")
    assert r.rc == EX_OK and r.json[0]["fetched"] == 2, r
    s0 = f.sessions[0]
    i = s0.index("AUTH XOAUTH2")      # two steps: never an initial response
    assert base64.b64decode(s0[i + 1]) == b"user=%s\x01auth=Bearer tok-good\x01\x01" % \
        OAUTH_USER.encode()
    assert not [l for l in f.all_lines() if l.startswith(("USER", "PASS"))]
    assert ws.delivered() == [d for _, d in msgs]


def test_xoauth2_rejected_token(fake, ws):
    f = fake(fake_messages(1), sasl=("XOAUTH2",), login=OAUTH_USER, tokens={"tok-good"})
    ws.write(fake_account(ws, f, auth="xoauth2", user=OAUTH_USER, password="tok-expired"))
    r = ws.run("--json", timeout=30)
    assert r.rc == EX_AUTH, r
    assert "token" in r.json[0]["error"] and "XOAUTH2" in r.json[0]["error"], r.json
    s0 = f.sessions[0]
    i = s0.index("AUTH XOAUTH2")
    # the payload, then an empty line in answer to the JSON challenge
    assert s0[i + 2] == "", s0
    assert f.oauth_payloads == [("XOAUTH2", b"user=%s\x01auth=Bearer tok-expired\x01\x01" %
                                 OAUTH_USER.encode())]
    assert f.remaining() == ["uid-01"] and ws.delivered() == []


def test_token_expiring_mid_download_is_refreshed_once(fake, ws):
    """Microsoft's tokens last about an hour: a RETR after that says
    AccessTokenExpired. The client keeps what it has (DELE + QUIT), runs
    password_command again, and carries on in a new session."""
    msgs = fake_messages(4)
    f = fake(msgs, sasl=("XOAUTH2",), login=OAUTH_USER, tokens={"tok-1", "tok-2"},
             token_lifetime=2)
    counter = ws.home / "calls"
    script = ws.home / "token.sh"
    script.write_text('#!/bin/sh\nn=$(cat "%s" 2>/dev/null || echo 0)\nn=$((n + 1))\n'
                      'echo $n > "%s"\necho tok-$n\n' % (counter, counter))
    os.chmod(script, 0o755)
    ws.write(fake_account(ws, f, auth="xoauth2", user=OAUTH_USER, password=None,
                          password_command=script))
    r = ws.run("--json")
    assert r.rc == EX_OK and r.json[0]["fetched"] == 4, r
    assert counter.read_text().strip() == "2", "the token command ran once more, not again"
    assert sorted(ws.delivered()) == sorted(d for _, d in msgs)
    assert f.remaining() == []
    # the first session committed its two messages before giving up
    assert f.commands(0).count("DELE") == 2 and f.commands(0)[-1] == "QUIT", f.sessions


def test_xoauth2_token_refresh_once(fake, ws):
    f = fake(fake_messages(2), sasl=("XOAUTH2",), login=OAUTH_USER, tokens={"tok-new"})
    counter = ws.home / "calls"
    script = ws.home / "token.sh"
    script.write_text('#!/bin/sh\nn=$(cat "%s" 2>/dev/null || echo 0)\nn=$((n + 1))\n'
                      'echo $n > "%s"\nif [ $n -eq 1 ]; then echo tok-old; else echo tok-new; fi\n'
                      % (counter, counter))
    os.chmod(script, 0o755)
    ws.write(fake_account(ws, f, auth="xoauth2", user=OAUTH_USER, password=None,
                          password_command=script))
    r = ws.run("--json")
    assert r.rc == EX_OK and r.json[0]["fetched"] == 2, r
    assert counter.read_text().strip() == "2"
    tokens = [p.split(b"Bearer ")[1].split(b"\x01")[0] for _, p in f.oauth_payloads]
    assert tokens[:2] == [b"tok-old", b"tok-new"] and set(tokens[2:]) <= {b"tok-new"}, tokens
    assert len(ws.delivered()) == 2
    # a token that stays bad: one retry only, then 77
    counter.write_text("0")
    g = fake(fake_messages(1), sasl=("XOAUTH2",), login=OAUTH_USER, tokens={"never"})
    ws.write(fake_account(ws, g, auth="xoauth2", user=OAUTH_USER, password=None,
                          password_command=script, uidl_store=ws.home / "g.uidl"))
    r = ws.run("--json")
    assert r.rc == EX_AUTH, r
    assert len(g.oauth_payloads) == 2 and counter.read_text().strip() == "2", g.oauth_payloads


def test_oauthbearer(fake, ws):
    msgs = fake_messages(1)
    f = fake(msgs, sasl=("OAUTHBEARER",), login=OAUTH_USER, tokens={"tok-good"})
    ws.write(fake_account(ws, f, auth="oauthbearer", user=OAUTH_USER, password="tok-good"))
    r = ws.run("--json")
    assert r.rc == EX_OK and r.json[0]["fetched"] == 1, r
    assert f.oauth_payloads[0] == ("OAUTHBEARER", b"n,a=%s,\x01host=127.0.0.1\x01port=%d\x01"
                                   b"auth=Bearer tok-good\x01\x01" % (OAUTH_USER.encode(), f.port))
    assert ws.delivered() == [msgs[0][1]]
    # a rejected token: the client answers the JSON challenge with 0x01 ("AQ==")
    g = fake(fake_messages(1), sasl=("OAUTHBEARER",), login=OAUTH_USER, tokens={"tok-good"})
    ws.write(fake_account(ws, g, auth="oauthbearer", user=OAUTH_USER, password="tok-bad",
                          uidl_store=ws.home / "g.uidl"))
    r = ws.run("--json")
    assert r.rc == EX_AUTH, r
    assert "OAUTHBEARER" in r.json[0]["error"] and "token" in r.json[0]["error"], r.json
    s0 = g.sessions[0]
    auth = [k for k, l in enumerate(s0) if l.startswith("AUTH OAUTHBEARER")]
    assert len(auth) == 1, s0
    k = auth[0] + (1 if s0[auth[0]] == "AUTH OAUTHBEARER" else 0)
    assert s0[k + 1] == "AQ==", s0
    assert g.remaining() == ["uid-01"]


@pytest.mark.parametrize("pipelining", [False, True])
def test_dele_only_after_durable_and_recorded(fake, ws, pipelining):
    """When DELE arrives, the message is in new/ and its DONE record is on disk
    (journal or store); the FETCH record named the file before it got there."""
    msgs = fake_messages(6)
    seen = []

    def check(uidl):
        journal = pathlib.Path(str(ws.store) + ".journal")
        text = (journal.read_text() if journal.exists() else "") + \
            (ws.store.read_text() if ws.store.exists() else "")
        data = dict(msgs)[uidl]
        seen.append((uidl, re.search(r"(?m)^DONE \d+ D %s$" % re.escape(uidl), text) is not None,
                     data in maildir_messages(ws.maildir),
                     re.search(r"(?m)^FETCH %s \S+$" % re.escape(uidl), text) is not None))

    f = fake(msgs, pipelining=pipelining, on_dele=check)
    ws.write(fake_account(ws, f, window="4"))
    r = ws.run("--json")
    assert r.rc == EX_OK and r.json[0]["fetched"] == 6, r
    assert [u for u, *_ in seen] == [u for u, _ in msgs], seen
    assert all(done and stored and fetch for _, done, stored, fetch in seen), seen
    assert f.remaining() == []
    # after QUIT, the store forgets them (GONE) and the journal is folded in
    assert read_store(ws.store) == {}


def test_pipelined_batches_keep_the_server_busy(fake, ws):
    """With PIPELINING, the next batch is asked for before this one is made
    durable, and a batch's DELEs go out with the batch after next's RETRs:
    never before the batch they delete is committed (checked above), and the
    server always has work while the client fsyncs."""
    msgs = fake_messages(10)
    f = fake(msgs, pipelining=True)
    ws.write(fake_account(ws, f, window="3"))
    r = ws.run("--json")
    assert r.rc == EX_OK and r.json[0]["fetched"] == 10 and r.json[0]["deleted"] == 10, r
    wire = [l for l in f.sessions[0] if l.startswith(("RETR", "DELE", "QUIT"))]
    expect = ("RETR 1,RETR 2,RETR 3,RETR 4,RETR 5,RETR 6,DELE 1,DELE 2,DELE 3,RETR 7,RETR 8,"
              "RETR 9,DELE 4,DELE 5,DELE 6,RETR 10,DELE 7,DELE 8,DELE 9,DELE 10,QUIT")
    assert wire == expect.split(","), wire
    assert f.remaining() == []
    assert ws.delivered() == [d for _, d in msgs]


def test_verbose_output_hides_the_token(fake, ws):
    f = fake(fake_messages(1), sasl=("XOAUTH2",), login=OAUTH_USER, tokens={"tok-Zebra-99"})
    ws.write(fake_account(ws, f, auth="xoauth2", user=OAUTH_USER, password="tok-Zebra-99"))
    r = ws.run("--json", "-v")
    assert r.rc == EX_OK, r
    payload = b64("user=%s\x01auth=Bearer tok-Zebra-99\x01\x01" % OAUTH_USER)
    for secret in ("tok-Zebra-99", payload):
        assert secret not in r.out + r.err, r.err
    assert "C: AUTH XOAUTH2" in r.err and "C: ****" in r.err.splitlines(), r.err


# ==== audit findings: STLS injection, store identity, duplicates, bounds, Ctrl-C ==================


def test_stls_answer_followed_by_injected_bytes_is_refused(fake, ws, pki):
    """RFC 2595/3207 response injection: bytes that arrive with STLS's +OK were
    sent in the clear and must never be read as replies protected by TLS."""
    f = fake(fake_messages(2), stls_reply=b"+OK\r\n+OK fake\r\n")
    ws.write(fake_account(ws, f, tls="starttls", host="localhost", allow_plaintext=None,
                          ca_file=pki.ca.cert, timeout="2s"))
    r = ws.run("--json")
    assert r.rc == EX_TEMP, r
    assert "after its answer to STLS" in r.json[0]["error"], r.json
    assert f.commands(0) == ["CAPA", "STLS"], f.sessions
    assert f.remaining() == ["uid-01", "uid-02"] and ws.delivered() == []


def test_uidl_store_of_another_account_is_refused(fake, ws):
    """The store names host, port and user; re-pointing the account at another
    server must not take that server's UIDLs for known (delete mode would DELE
    mail never downloaded)."""
    first = fake(fake_messages(3, prefix="uid"))
    ws.write(fake_account(ws, first))
    r = ws.run("--json")
    assert r.rc == EX_OK and r.json[0]["fetched"] == 3, r
    text = ws.store.read_text()
    assert "account %d 127.0.0.1 alice\n" % first.port in text, text
    # another server whose messages happen to have the same UIDLs
    other_msgs = [(u, message(10 + i)) for i, (u, _) in enumerate(fake_messages(3))]
    second = fake(other_msgs)
    sessions_before = len(first.sessions)
    for settings in (fake_account(ws, second), fake_account(ws, first, user="bob")):
        ws.write(settings)
        r = ws.run("--json")
        assert r.rc == EX_PERM, r
        err = r.json[0]["error"]
        assert "belongs to user alice on 127.0.0.1 port %d" % first.port in err, err
        assert "uidl_store" in err and str(ws.store) in err, err
    # not even a connection
    assert second.sessions == [] and len(first.sessions) == sessions_before
    assert second.remaining() == ["uid-01", "uid-02", "uid-03"]
    # a store of its own: everything is fetched
    ws.write(fake_account(ws, second, uidl_store=ws.home / "second.uidl"))
    r = ws.run("--json")
    assert r.rc == EX_OK and r.json[0]["fetched"] == 3 and r.json[0]["deleted"] == 3, r
    assert ws.delivered()[3:] == [d for _, d in other_msgs]


def test_store_without_identity_is_claimed(fake, ws):
    """A store written before the identity was recorded is taken as this
    account's (its UIDLs count), and gets the identity at the next save."""
    msgs = fake_messages(3)
    f = fake(msgs)
    write_store(ws.store, {"uid-01": [1000, 1000, "D"]})
    ws.write(fake_account(ws, f, keep="yes"))
    r = ws.run("--json")
    assert r.rc == EX_OK and r.json[0]["fetched"] == 2, r
    assert ws.delivered() == [msgs[1][1], msgs[2][1]]
    assert "account %d 127.0.0.1 alice\n" % f.port in ws.store.read_text()
    assert set(read_store(ws.store)) == {"uid-01", "uid-02", "uid-03"}


MDA_KILLER = """#!/bin/sh
# Stores messages in $OUT; on the third, SIGKILLs pigeon fetch (pid in $PIDFILE) first.
n=$(ls "$OUT" | wc -l)
if [ "$n" -ge 2 ] && [ ! -e "$OUT.killed" ]; then
    touch "$OUT.killed"
    i=0
    while [ ! -s "$PIDFILE" ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i + 1)); done
    kill -9 "$(cat "$PIDFILE")"
    sleep 5
    exit 75
fi
cat > "$OUT/msg.$(printf %03d $((n + 1)))"
"""


@pytest.mark.parametrize("dest", ["mda", "mbox"])
def test_kill_after_a_delivery_does_not_duplicate_it(fake, ws, dest):
    """MDA (and mbox) deliveries are committed one at a time: the DONE record
    must reach the kernel right after each, not wait for the end of the
    batch, or a kill -9 makes the next run deliver them again."""
    msgs = fake_messages(5)
    # mbox: killed from here once RETR 3 is asked for (that is after message
    # 2's DONE; the server holds its answer back meanwhile)
    f = fake(msgs, retr_delay=0.5 if dest == "mbox" else 0)
    out = ws.home / "mda-out"
    out.mkdir()
    pidfile = ws.home / "pid"
    script = ws.home / "killer.sh"
    script.write_text(MDA_KILLER)
    os.chmod(script, 0o755)
    if dest == "mda":
        ws.write(fake_account(ws, f, destination="mda:OUT=%s PIDFILE=%s %s"
                              % (out, pidfile, script)))
    else:
        ws.write(fake_account(ws, f, destination="mbox:%s" % (ws.home / "box")))
    env = {k: v for k, v in os.environ.items() if not k.startswith("XDG_")}
    env["HOME"] = str(ws.home)
    p = subprocess.Popen([str(build_dir() / "pigeon"), "fetch", "-q", "-c", str(ws.conf)],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, env=env)
    pidfile.write_text(str(p.pid))
    if dest == "mbox":
        ok = wait_until(lambda: f.sessions and "RETR 3" in f.sessions[0], timeout=20,
                        step=0.005)
        os.kill(p.pid, signal.SIGKILL)
        assert ok
    p.wait(timeout=30)
    assert p.returncode == -signal.SIGKILL, p.stderr.read()
    assert "QUIT" not in f.commands(0)
    got = mda_stored(out) if dest == "mda" else mbox_messages(ws.home / "box")
    before = len(got)
    assert got == [d for _, d in msgs[:2]]
    r = ws.run("--json")
    assert r.rc == EX_OK, r
    assert r.json[0]["fetched"] == 5 - before, (before, r)
    got = mda_stored(out) if dest == "mda" else mbox_messages(ws.home / "box")
    assert got == [d for _, d in msgs], "a message was delivered twice or lost"
    assert f.remaining() == []


def test_duplicate_uidls_keep_mode_fetches_neither(fake, ws):
    msgs = [("a", message(1)), ("dup", message(2)), ("b", message(3)), ("dup", message(4))]
    f = fake(msgs)
    ws.write(fake_account(ws, f, keep="yes"))
    for i in range(2):
        r = ws.run("--json")
        assert r.rc == EX_OK, r
        assert r.json[0]["fetched"] == (2 if i == 0 else 0), r
        assert r.json[0]["skipped"] == 2, r
        if i == 0:
            warned = re.findall(r"skipping message (\d+): its UIDL \"dup\" is not unique", r.err)
            assert warned == ["2", "4"], r.err
    assert ws.delivered() == [msgs[0][1], msgs[2][1]]
    assert "dup" not in read_store(ws.store)
    assert not [l for s in f.sessions for l in s if l in ("RETR 2", "RETR 4")]
    assert len(f.remaining()) == 4


def test_duplicate_uidls_delete_mode_fetches_both_even_if_known(fake, ws):
    """A duplicated UIDL is never "already known", even if the store has it:
    both messages are downloaded before they are deleted."""
    msgs = [("a", message(1)), ("dup", message(2)), ("dup", message(3))]
    f = fake(msgs)
    write_store(ws.store, {"dup": [1000, 1000, "D"]})
    ws.write(fake_account(ws, f))
    r = ws.run("--json")
    assert r.rc == EX_OK and r.json[0]["fetched"] == 3 and r.json[0]["deleted"] == 3, r
    assert ws.delivered() == [d for _, d in msgs]
    assert f.remaining() == []


def test_duplicate_uidls_too_big_are_skipped_not_headers(fake, ws):
    """Headers only for a message the store can remember: with a duplicated
    UIDL they would be fetched again on every run, so the big ones are
    skipped instead (and say why)."""
    big = b"Subject: big\r\n\r\n" + b"x" * 10000 + b"\r\n"
    msgs = [("a", message(1)), ("dup", big), ("dup", big + b"2")]
    f = fake(msgs)
    ws.write(fake_account(ws, f, max_size="4k", max_size_action="headers"))
    for _ in range(2):
        r = ws.run("--json")
        assert r.rc == EX_OK, r
        assert "headers only need a unique UIDL" in r.err, r.err
        assert not [l for l in f.all_lines() if l.startswith(("TOP 2", "TOP 3", "RETR 2",
                                                            "RETR 3"))], f.sessions
    assert ws.delivered() == [msgs[0][1]]
    assert f.remaining() == ["dup", "dup"]


def test_no_user_pass_when_capa_lacks_user(fake, ws):
    """pop3.md client item 23: CAPA worked and lists no USER (nor a usable
    SASL mechanism): no USER/PASS, a clear error."""
    f = fake(fake_messages(2), user=False)
    ws.write(fake_account(ws, f))
    r = ws.run("--json")
    assert r.rc == EX_PERM, r
    assert "offers no login method" in r.json[0]["error"], r.json
    assert not [l for l in f.all_lines() if l.startswith(("USER", "PASS"))], f.sessions
    ws.write(fake_account(ws, f, auth="user"))
    r = ws.run("--json")
    assert r.rc == EX_CONFIG and "does not offer USER/PASS" in r.json[0]["error"], r
    assert not [l for l in f.all_lines() if l.startswith(("USER", "PASS"))], f.sessions


def test_user_pass_without_capa(fake, ws):
    """A pre-RFC-2449 server (CAPA refused): USER/PASS may still be tried."""
    msgs = fake_messages(2)
    f = fake(msgs, capa=False)
    ws.write(fake_account(ws, f))
    r = ws.run("--json")
    assert r.rc == EX_OK and r.json[0]["fetched"] == 2, r
    assert "USER alice" in f.sessions[0]


def test_uidl_longer_than_70_is_a_protocol_error(fake, ws):
    f = fake([("u" * 70, message(1)), ("v" * 71, message(2))])
    ws.write(fake_account(ws, f, keep="yes"))
    r = ws.run("--json")
    assert r.rc == EX_TEMP, r
    err = r.json[0]["error"]
    assert "message 2 has a UIDL of 71 octets" in err and "at most 70" in err, err
    assert not [l for l in f.all_lines() if l.startswith(("RETR", "DELE"))]
    assert ws.delivered() == []


@pytest.mark.parametrize("bad, byte", [("uid\x01x", "0x01"), ("uid\xc3\xa9", "0xC3"),
                                       ("a\x7fb", "0x7F")])
def test_uidl_with_bytes_outside_rfc_range_is_a_protocol_error(fake, ws, bad, byte):
    """RFC 1939 §7: 0x21-0x7E only; refused with a clear (escaped) message,
    nothing fetched. Trailing blanks are padding and fine."""
    f = fake([("good-1  ", message(1)), (bad, message(2))])
    ws.write(fake_account(ws, f, keep="yes"))
    r = ws.run("--json")
    assert r.rc == EX_TEMP, r
    err = r.json[0]["error"]
    assert "message 2 has a UIDL with byte %s" % byte in err and "0x21-0x7E" in err, err
    assert "\\x" in err, err  # shown escaped
    assert not [l for l in f.all_lines() if l.startswith(("RETR", "DELE"))]
    assert ws.delivered() == []


def test_overlong_listing_line_fails_cleanly(fake, ws):
    """A listing line beyond the line bound is an error, never parsed from its
    tail (here the tail alone would look like a good line)."""
    f = fake([("x" * 70000 + " 1 uid-1", message(1))])
    ws.write(fake_account(ws, f, keep="yes"))
    r = ws.run("--json")
    assert r.rc == EX_TEMP, r
    assert "UIDL line longer than 8192 octets" in r.json[0]["error"], r.json
    assert ws.delivered() == [] and not [l for l in f.all_lines() if l.startswith("RETR")]


@pytest.mark.parametrize("extra", [["X-FILLER-%d" % i for i in range(200)],
                                   ["X-LONG " + "y" * 2000],
                                   ["X-HUGE " + "y" * 70000 + " USER"]])
def test_oversized_capa_is_refused(fake, ws, extra):
    f = fake(fake_messages(1), capa_extra=extra, user=False)
    ws.write(fake_account(ws, f))
    r = ws.run("--json")
    assert r.rc == EX_TEMP, r
    assert "oversized CAPA response" in r.json[0]["error"], r.json
    assert not [l for l in f.all_lines() if l.startswith(("USER", "PASS", "AUTH"))]


def test_headers_mode_without_uidl_names_the_real_reason(fake, ws):
    small, big = message(1), big_message(2)
    f = fake([("s", small), ("b", big)], uidl=False)
    ws.write(fake_account(ws, f, max_size="4k", max_size_action="headers"))
    r = ws.run("--json")
    assert r.rc == EX_OK and r.json[0]["fetched"] == 1, r
    assert "headers only need UIDL, which the server lacks" in r.err, r.err
    assert "no TOP" not in r.err


def ctrl_c_when(ws, ready, settle=0.0):
    """Run pigeon fetch as the foreground job of a terminal would run, and
    once ready() holds (and settle seconds more) press Ctrl-C: SIGINT to its
    whole process group. Returns (exit status, stderr)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("XDG_")}
    env["HOME"] = str(ws.home)
    p = subprocess.Popen([str(build_dir() / "pigeon"), "fetch", "--json", "-c", str(ws.conf)],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env, start_new_session=True)
    try:
        assert wait_until(ready, timeout=20, step=0.01)
        time.sleep(settle)
        os.killpg(p.pid, signal.SIGINT)
        _, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    return p.returncode, err.decode(errors="replace")


def test_ctrl_c_over_tls_finishes_the_message_and_quits(fake, ws, pki):
    """SIGINT (no SA_RESTART) interrupts SSL_read: the read is resumed, the
    message finished, its DELE and QUIT sent, exit 130; nothing lost or
    duplicated, the next run fetches the rest."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(pki.localhost.cert), str(pki.localhost.key))
    msgs = fake_messages(8)
    f = fake(msgs, tls=ctx, retr_delay=0.6)
    ws.write(tls_account(ws, f.port, pki, password="secret"))
    # settle: inside the read of RETR 2's (delayed) answer
    rc, err = ctrl_c_when(ws, lambda: f.sessions and "RETR 2" in f.sessions[0], settle=0.1)
    assert rc == 130, err
    assert "TLS error" not in err, err
    cmds = f.commands(0)
    assert cmds[-1] == "QUIT", f.sessions
    n = len(ws.delivered())
    assert n in (2, 3), f.sessions
    assert ws.delivered() == [d for _, d in msgs[:n]]
    assert f.remaining() == [u for u, _ in msgs[n:]]
    f.retr_delay = 0
    r = ws.run("--json")
    assert r.rc == EX_OK and r.json[0]["fetched"] == 8 - n, r
    assert ws.delivered() == [d for _, d in msgs] and f.remaining() == []


SLOW_MDA = """#!/bin/sh
touch "$OUT.started"
sleep 1
cat > "$OUT/msg.$(ls "$OUT" | wc -l)"
"""


def test_ctrl_c_does_not_kill_the_mda(fake, ws):
    """The terminal's SIGINT goes to the whole foreground group; the MDA has
    its own, so it finishes the delivery in progress and pigeon fetch then
    stops cleanly."""
    msgs = fake_messages(3)
    f = fake(msgs)
    out = ws.home / "mda-out"
    out.mkdir()
    script = ws.home / "slow.sh"
    script.write_text(SLOW_MDA)
    os.chmod(script, 0o755)
    ws.write(fake_account(ws, f, destination="mda:OUT=%s %s" % (out, script)))
    rc, err = ctrl_c_when(ws, lambda: pathlib.Path("%s.started" % out).exists())
    assert rc == 130, err
    assert "killed by signal" not in err, err
    assert mda_stored(out) == [msgs[0][1]], err
    assert f.commands(0)[-2:] == ["DELE", "QUIT"], f.sessions
    assert f.remaining() == ["uid-02", "uid-03"]

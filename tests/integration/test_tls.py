"""TLS in pigeond (spec/pop3.md §12 and §17 items 1, 2, 31, 37-40, 47;
docs/configuration.md [tls] and Signals): implicit TLS on pop3s_listen, STLS on
the plain port and its injection defence, the cleartext policy for untrusted
addresses, misdirected clients, the handshake timeout, SNI, min_version,
startup errors for bad certificate files, certificate reload on SIGHUP, and
what poplib and curl make of it; the cipher settings (and bad values at startup
and on reload); SCRAM-SHA-256-PLUS with tls-exporter checked against an
exporter value the test computes itself.

The certificates come from a throw-away CA made with the openssl command line
(EC P-256 keys, so it takes well under a second). Every socket has a timeout,
every subprocess a time limit, every wait loop a deadline.
"""
import base64
import hashlib
import hmac
import os
import pathlib
import poplib
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections import namedtuple

import pytest

from conftest import (RUN_AS, RawClient, build_dir, free_port, give_to_server, give_tree,
                      wait_until)

TIMEOUT = 10
GREETING = b"+OK Pigeon POP3 server ready"
STLS_OK = b"+OK Begin TLS negotiation"
PLAINTEXT_REFUSED = b"-ERR [AUTH] Plaintext authentication disallowed on non-secure connections"

# ---- a test PKI -------------------------------------------------------------------

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


class CA:
    """A certificate authority on disk: ca.pem and ca.key in its directory."""

    def __init__(self, directory, name, parent=None):
        self.dir = pathlib.Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.key = self.dir / "ca.key"
        self.cert = self.dir / "ca.pem"
        (self.dir / "req.cnf").write_text(REQ_CNF)
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-out", self.key)
        if parent is None:
            (self.dir / "ext.cnf").write_text(REQ_CNF + CA_EXT)
            openssl("req", "-x509", "-new", "-key", self.key, "-subj", "/CN=" + name,
                    "-sha256", "-days", "2", "-set_serial", new_serial(),
                    "-config", self.dir / "ext.cnf", "-extensions", "ext", "-out", self.cert)
        else:
            parent.sign(self.key, "/CN=" + name, CA_EXT, self.cert, self.dir)
        self.der = first_der(self.cert)

    def sign(self, key, subject, ext, out, workdir):
        csr, extfile = workdir / "req.csr", workdir / "sign.cnf"
        (workdir / "req.cnf").write_text(REQ_CNF)
        extfile.write_text(ext)
        openssl("req", "-new", "-key", key, "-subj", subject, "-config", workdir / "req.cnf",
                "-out", csr)
        openssl("x509", "-req", "-in", csr, "-CA", self.cert, "-CAkey", self.key,
                "-set_serial", new_serial(), "-days", "2", "-sha256",
                "-extfile", extfile, "-extensions", "ext", "-out", out)

    def issue(self, label, cn, sans, directory=None):
        """A server certificate and its key; sans like ["DNS:localhost", "IP:127.0.0.1"]."""
        d = pathlib.Path(directory or self.dir.parent / label)
        d.mkdir(parents=True, exist_ok=True)
        key, cert = d / "server.key", d / "server.pem"
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-out", key)
        self.sign(key, "/CN=" + cn, LEAF_EXT % ",".join(sans), cert, d)
        return Cert(cert, key, first_der(cert), cn)


def new_serial():
    return secrets.randbits(62) | (1 << 62)


class Pki:
    def __init__(self, root):
        self.root = pathlib.Path(root)
        self.ca = CA(self.root / "ca", "Pigeon Test Root CA")
        local = ["DNS:localhost", "IP:127.0.0.1"]
        self.localhost = self.ca.issue("localhost", "localhost", local)
        self.reload_a = self.ca.issue("reload-a", "pigeon reload A", local)
        self.reload_b = self.ca.issue("reload-b", "pigeon reload B", local)
        self.mail = self.ca.issue("mail", "mail.example.org", ["DNS:mail.example.org"])
        self.pop = self.ca.issue("pop", "pop.example.net", ["DNS:pop.example.net"])
        self.wild = self.ca.issue("wild", "*.example.com", ["DNS:*.example.com"])
        # localhost, issued by an intermediate: the server must send the chain
        self.inter = CA(self.root / "inter", "Pigeon Test Intermediate CA", parent=self.ca)
        leaf = self.inter.issue("chain", "localhost chained", local)
        chain = leaf.cert.parent / "chain.pem"
        chain.write_bytes(leaf.cert.read_bytes() + self.inter.cert.read_bytes())
        self.chained = Cert(chain, leaf.key, leaf.der, leaf.name)


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make test certificates")
    p = Pki(tmp_path_factory.mktemp("pki"))
    give_tree(p.root)
    return p


# ---- servers ------------------------------------------------------------------------


def tls_server(make_server, cert, settings=None, pop3s=True, sni=None, start=True, name=None):
    """A pigeond with [tls] cert/key, pop3s_listen on srv.tls_port (if pop3s),
    [tls:NAME] sections from sni={name: Cert}, and user alice/secret."""
    merged = {"tls": {"cert": str(cert.cert), "key": str(cert.key)}}
    tls_port = free_port() if pop3s else None
    if pop3s:
        merged["server"] = {"pop3s_listen": "127.0.0.1:%d" % tls_port}
    for host, c in (sni or {}).items():
        merged["tls:" + host] = {"cert": str(c.cert), "key": str(c.key)}
    for section, values in (settings or {}).items():
        merged.setdefault(section, {}).update(values)
    srv = make_server(settings=merged, start=False, name=name)
    srv.tls_port = tls_port
    srv.add_user("alice", "secret")
    if start:
        srv.start()
    return srv



def wait_log(srv, text, timeout=5, count=1):
    ok = wait_until(lambda: srv.log().count(text) >= count, timeout)
    assert ok, "%r not logged (%d times) within %ss:\n%s" % (text, count, timeout, srv.log())


def tls_logins(srv, tls="yes"):
    """Login lines of alice from 127.0.0.1 with the given tls= value."""
    return re.findall(r"login: user=alice ip=127\.0\.0\.1 method=\S+ tls=%s " % tls, srv.log())


# ---- clients ------------------------------------------------------------------------


class Client(RawClient):
    """RawClient over a socket we made (source address, TLS)."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def starttls(self, ctx, server_hostname="localhost"):
        # RFC 2595 §4: nothing may follow +OK in the clear
        assert self.buf == b"", "plaintext after the STLS answer: %r" % self.buf
        self.sock = ctx.wrap_socket(self.sock, server_hostname=server_hostname)
        return self

    def stls(self, ctx, server_hostname="localhost"):
        assert self.command("STLS") == STLS_OK
        return self.starttls(ctx, server_hostname)

    def closed(self, timeout=5):
        """True if the server closes within timeout (TLS or not)."""
        self.sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
            return False
        except (ssl.SSLError, ConnectionError):
            return True
        except socket.timeout:
            return False

    def peer_der(self):
        return self.sock.getpeercert(binary_form=True)


def connect(host, port, source=None, greeting=True):
    sock = socket.create_connection((host, port), timeout=TIMEOUT,
                                    source_address=(source, 0) if source else None)
    c = Client(sock)
    if greeting:
        assert c.readline() == GREETING
    return c


def connect_tls(srv, ctx, server_hostname="localhost", greeting=True):
    sock = socket.create_connection(("127.0.0.1", srv.tls_port), timeout=TIMEOUT)
    try:
        ssock = ctx.wrap_socket(sock, server_hostname=server_hostname)
    except BaseException:
        sock.close()
        raise
    c = Client(ssock)
    if greeting:
        assert c.readline() == GREETING
    return c


def verify_ctx(pki, minimum=None, maximum=None):
    """Verifies the server against the test CA and the host name."""
    ctx = ssl.create_default_context(cafile=str(pki.ca.cert))
    if minimum:
        ctx.minimum_version = minimum
    if maximum:
        ctx.maximum_version = maximum
    return ctx


def chain_only_ctx(pki):
    """Verifies the chain against the test CA, not the name (SNI tests)."""
    ctx = verify_ctx(pki)
    ctx.check_hostname = False
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    return ctx


def capa(c):
    assert c.command("CAPA") == b"+OK Capability list follows"
    caps = {}
    for line in c.read_multiline():
        words = line.decode().split()
        caps[words[0].upper()] = words[1:]
    return caps


def login(c, user="alice", password="secret"):
    assert c.command("USER " + user) == b"+OK Send your password"
    line = c.command("PASS " + password)
    assert line.startswith(b"+OK Maildrop has "), line
    return line


def quit_ok(c, left):
    assert c.command("QUIT") == b"+OK Bye, %d messages left" % left
    assert c.closed(5), "server did not close after QUIT"
    c.sock.close()


def crlf(data):
    """The message as POP3 sends it (before stuffing): CRLF line ends."""
    lines = re.split(rb"\r?\n", data)
    if data.endswith(b"\n"):
        lines.pop()
    return b"".join(line + b"\r\n" for line in lines)


def retr(c, n, expected):
    assert c.command("RETR %d" % n) == b"+OK %d octets" % len(crlf(expected))
    body = b"".join(line + b"\r\n" for line in c.read_multiline())
    assert body == crlf(expected)


def b64(data):
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


MSG = (b"From: a@example.org\nSubject: over TLS\n\nfirst line\n.starts with a dot\n"
       b".\n..\nlast line\n")


def big_message(kb=256):
    lines = [b"From: big@example.org", b"Subject: big over TLS", b""]
    k = 0
    while sum(len(x) + 1 for x in lines) < kb * 1024:
        k += 1
        lines.append((b"." if k % 37 == 0 else b"") + b"line %06d " % k + b"x" * (k % 90))
    return b"\n".join(lines) + b"\n"


# ---- implicit TLS (pop3s_listen) ----------------------------------------------------------


def test_pop3s_certificate_verified_against_ca(make_server, pki):
    srv = tls_server(make_server, pki.localhost)
    srv.deliver("alice", MSG)
    ctx = verify_ctx(pki)
    # by name (SAN DNS:localhost) and by address (SAN IP:127.0.0.1)
    for host in ("localhost", "127.0.0.1"):
        p = poplib.POP3_SSL(host, srv.tls_port, context=ctx, timeout=TIMEOUT)
        try:
            assert p.getwelcome() == GREETING
            assert p.sock.getpeercert(binary_form=True) == pki.localhost.der
            assert p.sock.version() in ("TLSv1.2", "TLSv1.3")
            p.user("alice")
            assert p.pass_("secret").startswith(b"+OK Maildrop has 1 messages")
            assert p.stat() == (1, len(crlf(MSG)))
            resp, lines, octets = p.retr(1)
            assert b"".join(line + b"\r\n" for line in lines) == crlf(MSG)
            assert p.quit() == b"+OK Bye, 1 messages left"
        finally:
            p.close()
    wait_log(srv, "login: user=alice ip=127.0.0.1 method=USER tls=yes", count=2)

    # a client that expects another host name refuses the certificate
    sock = socket.create_connection(("127.0.0.1", srv.tls_port), timeout=TIMEOUT)
    with pytest.raises(ssl.SSLCertVerificationError) as e:
        ctx.wrap_socket(sock, server_hostname="pop.example.net")
    sock.close()
    assert "pop.example.net" in str(e.value) or "match" in str(e.value), e.value
    # and one that does not trust the test CA refuses it too
    sock = socket.create_connection(("127.0.0.1", srv.tls_port), timeout=TIMEOUT)
    with pytest.raises(ssl.SSLCertVerificationError):
        ssl.create_default_context().wrap_socket(sock, server_hostname="localhost")
    sock.close()


def test_pop3s_sends_the_intermediate_certificates(make_server, pki):
    """[tls] cert is a chain file; a client that only knows the root verifies."""
    srv = tls_server(make_server, pki.chained)
    c = connect_tls(srv, verify_ctx(pki))
    assert c.peer_der() == pki.chained.der
    login(c)
    quit_ok(c, 0)


def test_capa_after_implicit_tls(make_server, pki):
    # trust no address: USER and PLAIN can only be there because of TLS
    srv = tls_server(make_server, pki.localhost, {"auth": {"trusted_networks": ""}})
    srv.deliver("alice", MSG)
    c = connect_tls(srv, verify_ctx(pki))
    caps = capa(c)
    assert "STLS" not in caps, caps
    assert "USER" in caps, caps
    assert {"PLAIN", "LOGIN", "SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"} <= set(caps["SASL"]), caps
    assert c.command("STLS") == b"-ERR Command not permitted when TLS active"
    login(c)
    # RFC 2449 §5: what AUTHORIZATION announced, TRANSACTION announces too
    after = capa(c)
    assert "STLS" not in after and "USER" in after, after
    assert "SCRAM-SHA-256-PLUS" in after["SASL"], after
    retr(c, 1, MSG)
    quit_ok(c, 1)

    # the plain port of the same server, untrusted: STLS offered, no plaintext login
    p = connect("127.0.0.1", srv.port)
    caps = capa(p)
    assert "STLS" in caps and "USER" not in caps, caps
    assert not {"PLAIN", "LOGIN", "SCRAM-SHA-256-PLUS"} & set(caps.get("SASL", [])), caps
    p.close()


# ---- STLS ----------------------------------------------------------------------------------


def test_stls_with_poplib(make_server, pki):
    srv = tls_server(make_server, pki.localhost, pop3s=False)
    srv.deliver("alice", MSG)
    ctx = verify_ctx(pki)
    p = poplib.POP3("127.0.0.1", srv.port, timeout=TIMEOUT)
    try:
        before = p.capa()
        assert "STLS" in before, before
        assert "SCRAM-SHA-256-PLUS" not in before.get("SASL", []), before
        assert p.stls(context=ctx) == STLS_OK
        assert isinstance(p.sock, ssl.SSLSocket)
        assert p.sock.getpeercert(binary_form=True) == pki.localhost.der
        after = p.capa()
        assert "STLS" not in after, after
        assert "USER" in after, after
        assert "SCRAM-SHA-256-PLUS" in after["SASL"], after
        # poplib will not send a second STLS itself: send it by hand
        with pytest.raises(poplib.error_proto) as e:
            p._shortcmd("STLS")
        assert e.value.args[0] == b"-ERR Command not permitted when TLS active"
        p.user("alice")
        assert p.pass_("secret").startswith(b"+OK Maildrop has 1 messages")
        with pytest.raises(poplib.error_proto) as e:
            p._shortcmd("STLS")
        assert e.value.args[0].startswith(b"-ERR"), e.value.args
        assert p.stat() == (1, len(crlf(MSG)))
        resp, lines, octets = p.retr(1)
        assert b"".join(line + b"\r\n" for line in lines) == crlf(MSG)
        assert p.quit() == b"+OK Bye, 1 messages left"
    finally:
        p.close()
    wait_log(srv, "login: user=alice ip=127.0.0.1 method=USER tls=yes")

    # STLS after a plaintext login (loopback is trusted) is refused, and the
    # session goes on in the clear
    c = connect("127.0.0.1", srv.port)
    login(c)
    assert c.command("STLS").startswith(b"-ERR")
    assert c.command("STAT") == b"+OK 1 %d" % len(crlf(MSG))
    retr(c, 1, MSG)
    quit_ok(c, 1)


def test_stls_discards_injected_commands(make_server, pki):
    srv = tls_server(make_server, pki.localhost, pop3s=False)
    c = connect("127.0.0.1", srv.port)
    c.send(b"STLS\r\nUSER alice\r\n")  # one write: both lines arrive together
    assert c.readline() == STLS_OK
    c.starttls(verify_ctx(pki))
    # had "USER alice" been kept, PASS would log in
    assert c.command("PASS secret") == b"-ERR [AUTH] Send USER first"
    login(c)
    quit_ok(c, 0)
    wait_log(srv, "sent 12 bytes after STLS before TLS; discarded")


def test_stls_injected_pass_is_not_used(make_server, pki):
    """USER over TLS, then the PASS that was injected before TLS must not count."""
    srv = tls_server(make_server, pki.localhost, pop3s=False)
    c = connect("127.0.0.1", srv.port)
    c.send(b"STLS\r\nUSER alice\r\nPASS secret\r\n")
    assert c.readline() == STLS_OK
    c.starttls(verify_ctx(pki))
    assert c.command("STAT") == b"-ERR Command not valid in this state"
    assert c.command("USER alice") == b"+OK Send your password"
    assert c.command("PASS wrong").startswith(b"-ERR [AUTH]")
    c.sock.close()
    wait_log(srv, "sent 25 bytes after STLS before TLS; discarded")


def test_stls_not_offered_when_disabled(make_server, pki):
    srv = tls_server(make_server, pki.localhost, {"tls": {"stls": "no"}})
    c = connect("127.0.0.1", srv.port)
    assert "STLS" not in capa(c)
    assert c.command("STLS").startswith(b"-ERR")
    login(c)  # loopback is trusted
    quit_ok(c, 0)
    # implicit TLS still works
    t = connect_tls(srv, verify_ctx(pki))
    login(t)
    quit_ok(t, 0)


# ---- cleartext policy -------------------------------------------------------------------


def can_bind(addr):
    try:
        with socket.socket() as s:
            s.bind((addr, 0))
        return True
    except OSError:
        return False


def test_plaintext_refused_on_untrusted_address(make_server, pki):
    if not can_bind("127.0.0.2"):
        pytest.skip("127.0.0.2 cannot be bound on this machine")
    srv = tls_server(make_server, pki.localhost, {"auth": {"trusted_networks": "127.0.0.1/32"}},
                     pop3s=False, start=False)
    srv.settings["server"]["pop3_listen"] = "127.0.0.1:%d, 127.0.0.2:%d" % (srv.port, srv.port)
    srv.deliver("alice", MSG)
    srv.start()

    # trust depends on the client's address: bind our end to 127.0.0.2
    c = connect("127.0.0.2", srv.port, source="127.0.0.2")
    caps = capa(c)
    assert "STLS" in caps, caps
    assert "USER" not in caps, caps
    sasl = set(caps.get("SASL", []))
    assert not {"PLAIN", "LOGIN"} & sasl, caps
    assert "SCRAM-SHA-256-PLUS" not in sasl, caps
    line = c.command("USER alice")
    assert line.startswith(PLAINTEXT_REFUSED), line
    assert c.command("PASS secret").startswith(b"-ERR [AUTH]")
    line = c.command("AUTH PLAIN " + b64("\0alice\0secret"))
    assert line.startswith(PLAINTEXT_REFUSED), line
    line = c.command("AUTH LOGIN")
    assert line.startswith(PLAINTEXT_REFUSED), line
    assert c.command("STAT") == b"-ERR Command not valid in this state"
    # after STLS the same client may log in
    c.stls(verify_ctx(pki))
    caps = capa(c)
    assert "STLS" not in caps and "USER" in caps, caps
    assert {"PLAIN", "LOGIN", "SCRAM-SHA-256-PLUS"} <= set(caps["SASL"]), caps
    login(c)
    retr(c, 1, MSG)
    quit_ok(c, 1)
    wait_log(srv, "login: user=alice ip=127.0.0.2 method=USER tls=yes")

    # AUTH PLAIN after STLS too
    c = connect("127.0.0.2", srv.port, source="127.0.0.2")
    c.stls(verify_ctx(pki))
    assert c.command("AUTH PLAIN " + b64("\0alice\0secret")).startswith(b"+OK Maildrop has 1 ")
    quit_ok(c, 1)

    # the trusted address may log in without TLS, on either listener
    for host in ("127.0.0.1", "127.0.0.2"):
        t = connect(host, srv.port, source="127.0.0.1")
        assert "USER" in capa(t)
        login(t)
        quit_ok(t, 1)
    assert "login: user=alice ip=127.0.0.2 method=USER tls=no" not in srv.log()


# ---- misdirected clients and the handshake timeout ----------------------------------------


def test_tls_client_on_plain_port(make_server, pki):
    srv = tls_server(make_server, pki.localhost)
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT)
    with pytest.raises((ssl.SSLError, OSError)):
        verify_ctx(pki).wrap_socket(sock, server_hostname="localhost")
    sock.close()
    wait_log(srv, "started TLS on the plaintext port")
    wait_log(srv, "reason=TLS on the plaintext port")


def test_plaintext_client_on_tls_port(make_server, pki):
    srv = tls_server(make_server, pki.localhost)
    c = connect("127.0.0.1", srv.tls_port, greeting=False)
    c.send("CAPA\r\n")
    line = c.readline()
    assert line.startswith(b"-ERR"), line
    assert c.closed(5)
    c.sock.close()
    wait_log(srv, "speaks plaintext on the TLS port")


def test_silent_client_on_tls_port_times_out(make_server, pki):
    srv = tls_server(make_server, pki.localhost, {"tls": {"handshake_timeout": "1s"}})
    c = connect("127.0.0.1", srv.tls_port, greeting=False)
    t0 = time.monotonic()
    assert c.closed(8), "silent client not closed"
    took = time.monotonic() - t0
    c.sock.close()
    assert 0.8 <= took < 5, took
    wait_log(srv, "no TLS handshake from 127.0.0.1")
    # the server is still fine
    t = connect_tls(srv, verify_ctx(pki))
    login(t)
    quit_ok(t, 0)


def test_stalled_handshake_times_out(make_server, pki):
    srv = tls_server(make_server, pki.localhost, {"tls": {"handshake_timeout": "1s"}})
    # the start of a TLS record that never completes, on the TLS port ...
    c = connect("127.0.0.1", srv.tls_port, greeting=False)
    c.send(b"\x16\x03\x01\x02\x00\x01")
    assert c.closed(8), "stalled handshake not closed"
    c.sock.close()
    wait_log(srv, "TLS handshake timed out: ip=127.0.0.1")
    # ... and after STLS
    c = connect("127.0.0.1", srv.port)
    assert c.command("STLS") == STLS_OK
    t0 = time.monotonic()
    assert c.closed(8), "silent client after STLS not closed"
    assert time.monotonic() - t0 < 5
    c.sock.close()
    wait_log(srv, "TLS handshake timed out: ip=127.0.0.1", count=2)


# ---- SNI ------------------------------------------------------------------------------------


def san_dns(c):
    cert = c.sock.getpeercert()
    return sorted(v for k, v in cert.get("subjectAltName", ()) if k == "DNS")


def test_sni_chooses_the_certificate(make_server, pki):
    srv = tls_server(make_server, pki.mail,
                     sni={"pop.example.net": pki.pop, "*.example.com": pki.wild})
    ctx = chain_only_ctx(pki)
    cases = [
        ("pop.example.net", pki.pop),
        ("POP.Example.NET", pki.pop),
        ("mail.example.org", pki.mail),
        ("other.example.org", pki.mail),
        ("a.example.com", pki.wild),
        ("example.com", pki.mail),       # "*." covers exactly one label
        ("a.b.example.com", pki.mail),
        (None, pki.mail),                # no SNI
    ]
    for name, want in cases:
        c = connect_tls(srv, ctx, server_hostname=name)
        assert c.peer_der() == want.der, (name, san_dns(c), want.name)
        c.sock.close()
    c = connect_tls(srv, ctx, server_hostname="pop.example.net")
    assert san_dns(c) == ["pop.example.net"]
    c.sock.close()
    c = connect_tls(srv, ctx, server_hostname=None)
    assert san_dns(c) == ["mail.example.org"]
    c.sock.close()

    # full host name checking against the SNI certificate, and a session on it
    c = connect_tls(srv, verify_ctx(pki), server_hostname="pop.example.net")
    login(c)
    quit_ok(c, 0)
    # SNI after STLS on the plain port
    c = connect("127.0.0.1", srv.port)
    c.stls(verify_ctx(pki), server_hostname="pop.example.net")
    assert c.peer_der() == pki.pop.der
    login(c)
    quit_ok(c, 0)


# ---- SCRAM-SHA-256-PLUS: the channel binding follows the certificate sent ------------------


def scram_stored(password, salt, iterations=4096):
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    return "{SCRAM-SHA-256}%d,%s,%s,%s" % (iterations, b64(salt),
                                           b64(hashlib.sha256(client_key).digest()),
                                           b64(server_key))


def scram_plus(c, user, password, cb_data, cb_type="tls-server-end-point"):
    """AUTH SCRAM-SHA-256-PLUS; returns the server's final status line."""
    gs2 = "p=%s,," % cb_type
    nonce = b64(secrets.token_bytes(18))
    bare = "n=%s,r=%s" % (user, nonce)
    line = c.command("AUTH SCRAM-SHA-256-PLUS " + b64(gs2 + bare))
    if not line.startswith(b"+ "):
        return line
    server_first = base64.b64decode(line[2:]).decode()
    attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
    assert attrs["r"].startswith(nonce), server_first
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(attrs["s"]),
                                 int(attrs["i"]))
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    without_proof = "c=%s,r=%s" % (b64(gs2.encode() + cb_data), attrs["r"])
    auth_message = ",".join((bare, server_first, without_proof)).encode()
    signature = hmac.new(stored_key, auth_message, "sha256").digest()
    proof = bytes(a ^ b for a, b in zip(client_key, signature))
    line = c.command(b64(without_proof + ",p=" + b64(proof)))
    if not line.startswith(b"+ "):
        return line
    expected = "v=" + b64(hmac.new(server_key, auth_message, "sha256").digest())
    assert base64.b64decode(line[2:]).decode() == expected
    return c.command("")


def test_scram_plus_binds_to_the_certificate_sent(make_server, pki):
    srv = tls_server(make_server, pki.mail, sni={"pop.example.net": pki.pop})
    with open(srv.passwd, "a") as f:
        f.write("carol:%s:::::\n" % scram_stored("s3cret", b"pigeon-salt-0001"))
    srv.maildir("carol")
    ctx = chain_only_ctx(pki)

    def end_point(cert):  # RFC 5929 §4.1: ecdsa-with-SHA256 -> SHA-256
        return hashlib.sha256(cert.der).digest()

    for name, cert in (("pop.example.net", pki.pop), (None, pki.mail)):
        for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
            ctx = chain_only_ctx(pki)
            ctx.minimum_version = ctx.maximum_version = version
            c = connect_tls(srv, ctx, server_hostname=name)
            assert c.peer_der() == cert.der
            line = scram_plus(c, "carol", "s3cret", end_point(cert))
            assert line.startswith(b"+OK Maildrop has 0 messages"), (name, version, line)
            quit_ok(c, 0)
    # binding data of the other certificate: refused
    c = connect_tls(srv, ctx, server_hostname="pop.example.net")
    line = scram_plus(c, "carol", "s3cret", end_point(pki.mail))
    assert line.startswith(b"-ERR [AUTH]"), line
    c.sock.close()
    # after STLS too
    c = connect("127.0.0.1", srv.port)
    c.stls(chain_only_ctx(pki), server_hostname="pop.example.net")
    line = scram_plus(c, "carol", "s3cret", end_point(pki.pop))
    assert line.startswith(b"+OK Maildrop has 0 messages"), line
    quit_ok(c, 0)


# ---- SCRAM-SHA-256-PLUS with tls-exporter, checked against our own exporter --------------------
#
# Python's ssl module has no exporter API, so the test computes the RFC 9266
# value itself from the key log (SSLContext.keylog_filename) and the hello
# randoms it sees on the wire (the handshake runs through a MemoryBIO):
#   TLS 1.3: RFC 8446 §7.5 from the EXPORTER_SECRET line;
#   TLS 1.2: RFC 5705 PRF from the CLIENT_RANDOM line (the master secret).
# Neither Pigeon nor OpenSSL's exporter is involved in the expected value.

EXPORTER_LABEL = b"EXPORTER-Channel-Binding"  # RFC 9266 §2
CB_MISMATCH = b"-ERR [AUTH] SCRAM channel binding does not match"


class MemTLS:
    """A TLS client on a connected socket through ssl.MemoryBIO: the test
    keeps the raw handshake bytes. Has the socket methods Client uses."""

    def __init__(self, sock, ctx, server_hostname="localhost"):
        self.raw, self.inc, self.out = sock, ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out, server_hostname=server_hostname)
        self.sent = self.received = b""
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                self._fill()
        self._flush()

    def _flush(self):
        data = self.out.read()
        if data:
            self.sent += data
            self.raw.sendall(data)

    def _fill(self):
        data = self.raw.recv(65536)
        if not data:
            self.inc.write_eof()
            return
        if len(self.received) < 65536:
            self.received += data
        self.inc.write(data)

    def sendall(self, data):
        self.obj.write(data)
        self._flush()

    def recv(self, n):
        while True:
            try:
                return self.obj.read(n)
            except ssl.SSLWantReadError:
                self._flush()
                self._fill()
            except ssl.SSLZeroReturnError:
                return b""

    def settimeout(self, t):
        self.raw.settimeout(t)

    def close(self):
        self.raw.close()

    def version(self):
        return self.obj.version()

    def cipher(self):
        return self.obj.cipher()

    def getpeercert(self, binary_form=False):
        return self.obj.getpeercert(binary_form)


def hello_random(data, msg_type):
    """The 32-octet random of the first handshake message in data (a
    ClientHello, 1, or a ServerHello, 2; both start the same way)."""
    assert data[0] == 0x16, data[:8]          # a handshake record
    assert data[5] == msg_type, data[:8]
    return data[5 + 4 + 2:5 + 4 + 2 + 32]   # record, handshake header, version


def keylog_secret(path, label, client_random):
    for line in pathlib.Path(path).read_text().splitlines():
        words = line.split()
        if len(words) == 3 and words[0] == label and words[1] == client_random.hex():
            return bytes.fromhex(words[2])
    raise AssertionError("no %s for this connection in the key log" % label)


def server_hello_extensions(data):
    """The extension types in the ServerHello at the start of data."""
    assert data[0] == 0x16 and data[5] == 2, data[:8]
    p = 5 + 4 + 2 + 32
    p += 1 + data[p]                            # session id
    p += 2 + 1                                  # cipher suite, compression
    end = p + 2 + int.from_bytes(data[p:p + 2], "big")
    p += 2
    types = set()
    while p < end:
        types.add(int.from_bytes(data[p:p + 2], "big"))
        p += 4 + int.from_bytes(data[p + 2:p + 4], "big")
    return types


EXTENDED_MASTER_SECRET = 23  # RFC 7627 extension type
SSL_OP_NO_EXTENDED_MASTER_SECRET = 0x1  # OpenSSL 3.0 (not exported by Python's ssl)


def hkdf_expand_label(secret, label, context, length, hash_name):
    full = b"tls13 " + label
    info = length.to_bytes(2, "big") + bytes([len(full)]) + full + bytes([len(context)]) + context
    out, block, i = b"", b"", 1
    while len(out) < length:
        block = hmac.new(secret, block + info + bytes([i]), hash_name).digest()
        out, i = out + block, i + 1
    return out[:length]


def tls12_prf(secret, label, seed, length, hash_name):
    seed = label + seed
    out, a = b"", seed
    while len(out) < length:
        a = hmac.new(secret, a, hash_name).digest()
        out += hmac.new(secret, a + seed, hash_name).digest()
    return out[:length]


def tls_exporter(t, keylog, context=None, length=32):
    """RFC 5705 / RFC 8446 §7.5 exporter of MemTLS t, with label
    EXPORTER-Channel-Binding. context None is RFC 5705's "no context"."""
    cr = hello_random(t.sent, 1)
    sr = hello_random(t.received, 2)
    hash_name = "sha384" if t.cipher()[0].endswith("SHA384") else "sha256"
    if t.version() == "TLSv1.3":
        # no context and an empty one are the same in TLS 1.3
        secret = keylog_secret(keylog, "EXPORTER_SECRET", cr)
        empty = hashlib.new(hash_name, b"").digest()
        derived = hkdf_expand_label(secret, EXPORTER_LABEL, empty, len(empty), hash_name)
        ctx_hash = hashlib.new(hash_name, context or b"").digest()
        return hkdf_expand_label(derived, b"exporter", ctx_hash, length, hash_name)
    assert t.version() == "TLSv1.2", t.version()
    master = keylog_secret(keylog, "CLIENT_RANDOM", cr)
    seed = cr + sr
    if context is not None:
        seed += len(context).to_bytes(2, "big") + context
    return tls12_prf(master, EXPORTER_LABEL, seed, length, hash_name)


def exporter_ctx(pki, tmp_path, version):
    ctx = chain_only_ctx(pki)
    ctx.minimum_version = ctx.maximum_version = version
    ctx.keylog_filename = str(tmp_path / "keylog.txt")
    return ctx


def connect_exporter(srv, ctx, stls=False):
    """A Client over MemTLS, implicit TLS or after STLS, greeting read."""
    port = srv.port if stls else srv.tls_port
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    c = Client(sock)
    if stls:
        assert c.readline() == GREETING
        assert c.command("STLS") == STLS_OK
        assert c.buf == b""
    c.sock = MemTLS(sock, ctx)
    if not stls:
        assert c.readline() == GREETING
    return c


def scram_server(make_server, pki):
    srv = tls_server(make_server, pki.localhost)
    with open(srv.passwd, "a") as f:
        f.write("carol:%s:::::\n" % scram_stored("s3cret", b"pigeon-salt-0002"))
    srv.maildir("carol")
    return srv


@pytest.mark.parametrize("stls", [False, True], ids=["pop3s", "stls"])
def test_scram_plus_tls_exporter_tls13_matches_rfc8446(make_server, pki, tmp_path, stls):
    srv = scram_server(make_server, pki)
    ctx = exporter_ctx(pki, tmp_path, ssl.TLSVersion.TLSv1_3)
    # RFC 9266 §3 default over TLS 1.3: PLUS is offered after TLS
    c = connect_exporter(srv, ctx, stls)
    assert c.sock.version() == "TLSv1.3"
    assert "SCRAM-SHA-256-PLUS" in capa(c)["SASL"]
    cb = tls_exporter(c.sock, ctx.keylog_filename)
    assert cb == tls_exporter(c.sock, ctx.keylog_filename, context=b"")
    line = scram_plus(c, "carol", "s3cret", cb, cb_type="tls-exporter")
    assert line.startswith(b"+OK Maildrop has 0 messages"), line
    quit_ok(c, 0)
    wait_log(srv, "login: user=carol ip=127.0.0.1 method=SCRAM-SHA-256-PLUS tls=yes")

    # Wrong binding data, each on a fresh connection: refused.
    other = connect_exporter(srv, ctx, stls)
    other_cb = tls_exporter(other.sock, ctx.keylog_filename)
    assert other_cb != cb  # per connection
    wrong = {
        "another connection's": cb,
        "one bit flipped": other_cb[:-1] + bytes([other_cb[-1] ^ 1]),
        "the other length (48)": tls_exporter(other.sock, ctx.keylog_filename, length=48),
        "tls-server-end-point's": hashlib.sha256(pki.localhost.der).digest(),
        "with a context": tls_exporter(other.sock, ctx.keylog_filename, context=b"pop3"),
    }
    line = scram_plus(other, "carol", "s3cret", wrong.pop("another connection's"),
                      cb_type="tls-exporter")
    assert line == CB_MISMATCH, line
    other.sock.close()
    for what, data in wrong.items():
        c = connect_exporter(srv, ctx, stls)
        line = scram_plus(c, "carol", "s3cret", data, cb_type="tls-exporter")
        assert line == CB_MISMATCH, (what, line)
        c.sock.close()
    # the right data under the other type name: refused too
    c = connect_exporter(srv, ctx, stls)
    line = scram_plus(c, "carol", "s3cret", tls_exporter(c.sock, ctx.keylog_filename),
                      cb_type="tls-server-end-point")
    assert line == CB_MISMATCH, line
    c.sock.close()


def test_scram_plus_tls_exporter_refused_without_extended_master_secret(make_server, pki,
                                                                      tmp_path):
    """RFC 9266 §2 / RFC 7627: without the extended master secret a TLS 1.2
    exporter is not unique to the connection (the triple handshake), so
    tls-exporter must not be offered; tls-server-end-point still is."""
    srv = scram_server(make_server, pki)
    ctx = exporter_ctx(pki, tmp_path, ssl.TLSVersion.TLSv1_2)
    ctx.options |= SSL_OP_NO_EXTENDED_MASTER_SECRET
    c = connect_exporter(srv, ctx)
    assert c.sock.version() == "TLSv1.2"
    assert EXTENDED_MASTER_SECRET not in server_hello_extensions(c.sock.received)
    for context in (None, b""):
        line = scram_plus(c, "carol", "s3cret",
                          tls_exporter(c.sock, ctx.keylog_filename, context=context),
                          cb_type="tls-exporter")
        assert line.startswith(b"-ERR [AUTH] unsupported channel binding type"), line
    line = scram_plus(c, "carol", "s3cret", hashlib.sha256(pki.localhost.der).digest())
    assert line.startswith(b"+OK Maildrop has 0 messages"), line
    quit_ok(c, 0)
    # with it (OpenSSL's default) the extension is there: the case above was real
    c = connect_exporter(srv, exporter_ctx(pki, tmp_path, ssl.TLSVersion.TLSv1_2))
    assert EXTENDED_MASTER_SECRET in server_hello_extensions(c.sock.received)
    c.sock.close()


def test_scram_plus_tls_exporter_tls12_follows_rfc9266(make_server, pki, tmp_path):
    """TLS 1.2 (with extended master secret, as OpenSSL negotiates it): RFC
    9266 §2 defines tls-exporter with a zero-length context value, and in TLS
    1.2 that is not RFC 5705's "no context". Either the server computes it so,
    or it does not offer tls-exporter below TLS 1.3 (clients then use
    tls-server-end-point); a value only some clients compute is neither."""
    srv = scram_server(make_server, pki)
    ctx = exporter_ctx(pki, tmp_path, ssl.TLSVersion.TLSv1_2)
    c = connect_exporter(srv, ctx)
    assert c.sock.version() == "TLSv1.2"
    rfc = tls_exporter(c.sock, ctx.keylog_filename, context=b"")
    assert rfc != tls_exporter(c.sock, ctx.keylog_filename, context=None)
    line = scram_plus(c, "carol", "s3cret", rfc, cb_type="tls-exporter")
    if line.startswith(b"-ERR [AUTH] unsupported channel binding"):
        # not offered below TLS 1.3: the end-point binding still works
        c.sock.close()
        c = connect_exporter(srv, ctx)
        line = scram_plus(c, "carol", "s3cret", hashlib.sha256(pki.localhost.der).digest())
    assert line.startswith(b"+OK Maildrop has 0 messages"), line
    quit_ok(c, 0)


# ---- protocol versions -----------------------------------------------------------------------


def test_min_version_tls13(make_server, pki):
    srv = tls_server(make_server, pki.localhost, {"tls": {"min_version": "TLSv1.3"}})
    old = verify_ctx(pki, maximum=ssl.TLSVersion.TLSv1_2)
    sock = socket.create_connection(("127.0.0.1", srv.tls_port), timeout=TIMEOUT)
    with pytest.raises(ssl.SSLError):
        old.wrap_socket(sock, server_hostname="localhost")
    sock.close()
    wait_log(srv, "TLS handshake failed: ip=127.0.0.1")
    # the same after STLS
    c = connect("127.0.0.1", srv.port)
    assert c.command("STLS") == STLS_OK
    with pytest.raises(ssl.SSLError):
        c.starttls(old)
    c.sock.close()
    wait_log(srv, "TLS handshake failed: ip=127.0.0.1", count=2)

    c = connect_tls(srv, verify_ctx(pki, minimum=ssl.TLSVersion.TLSv1_3))
    assert c.sock.version() == "TLSv1.3"
    login(c)
    quit_ok(c, 0)


def test_default_accepts_tls12_and_tls13(make_server, pki):
    srv = tls_server(make_server, pki.localhost)
    c = connect_tls(srv, verify_ctx(pki, maximum=ssl.TLSVersion.TLSv1_2))
    assert c.sock.version() == "TLSv1.2"
    assert "SCRAM-SHA-256-PLUS" in capa(c)["SASL"]  # tls-server-end-point
    login(c)
    quit_ok(c, 0)
    c = connect_tls(srv, verify_ctx(pki))
    assert c.sock.version() == "TLSv1.3"
    login(c)
    quit_ok(c, 0)
    c = connect("127.0.0.1", srv.port)
    c.stls(verify_ctx(pki, maximum=ssl.TLSVersion.TLSv1_2))
    assert c.sock.version() == "TLSv1.2"
    login(c)
    quit_ok(c, 0)


# ---- cipher lists ------------------------------------------------------------------------------
#
# The test certificates are EC keys. With the default lists and server
# preference (tls.h TLS_DEFAULT_CIPHERS, OpenSSL's TLS 1.3 order), a Python
# client gets ECDHE-ECDSA-AES128-GCM-SHA256 on TLS 1.2 and
# TLS_AES_256_GCM_SHA384 on TLS 1.3; the settings below choose others.


def s_client(port, *args, stls=False):
    """openssl s_client's handshake only: (exit status, output)."""
    cmd = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-servername",
           "localhost", "-brief", *args]
    if stls:
        cmd += ["-starttls", "pop3"]
    r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    return r.returncode, (r.stdout + r.stderr).decode(errors="replace")


def test_default_cipher_choice(make_server, pki):
    """The baseline the two tests below move away from."""
    srv = tls_server(make_server, pki.localhost)
    c = connect_tls(srv, verify_ctx(pki, maximum=ssl.TLSVersion.TLSv1_2))
    assert c.sock.cipher()[0] == "ECDHE-ECDSA-AES128-GCM-SHA256"
    c.sock.close()
    c = connect_tls(srv, verify_ctx(pki, minimum=ssl.TLSVersion.TLSv1_3))
    assert c.sock.cipher()[0] == "TLS_AES_256_GCM_SHA384"
    c.sock.close()


def test_ciphers_setting_restricts_tls12(make_server, pki):
    srv = tls_server(make_server, pki.localhost,
                     {"tls": {"ciphers": "ECDHE-ECDSA-CHACHA20-POLY1305"}})
    tls12 = verify_ctx(pki, maximum=ssl.TLSVersion.TLSv1_2)
    c = connect_tls(srv, tls12)
    assert c.sock.version() == "TLSv1.2"
    assert c.sock.cipher()[0] == "ECDHE-ECDSA-CHACHA20-POLY1305"
    login(c)
    quit_ok(c, 0)
    wait_log(srv, "TLS: ip=127.0.0.1 TLSv1.2 ECDHE-ECDSA-CHACHA20-POLY1305")
    # the same after STLS
    c = connect("127.0.0.1", srv.port)
    c.stls(verify_ctx(pki, maximum=ssl.TLSVersion.TLSv1_2))
    assert c.sock.cipher()[0] == "ECDHE-ECDSA-CHACHA20-POLY1305"
    login(c)
    quit_ok(c, 0)
    # a client offering only a cipher of the default list, not of this one
    only_aes = verify_ctx(pki, maximum=ssl.TLSVersion.TLSv1_2)
    only_aes.set_ciphers("ECDHE-ECDSA-AES256-GCM-SHA384")
    with pytest.raises(ssl.SSLError):
        connect_tls(srv, only_aes)
    wait_log(srv, "TLS handshake failed: ip=127.0.0.1")
    # TLS 1.3 suites are another setting: untouched
    c = connect_tls(srv, verify_ctx(pki, minimum=ssl.TLSVersion.TLSv1_3))
    assert c.sock.cipher()[0] == "TLS_AES_256_GCM_SHA384"
    login(c)
    quit_ok(c, 0)


def test_ciphersuites_setting_restricts_tls13(make_server, pki):
    srv = tls_server(make_server, pki.localhost,
                     {"tls": {"ciphersuites": "TLS_CHACHA20_POLY1305_SHA256"}})
    c = connect_tls(srv, verify_ctx(pki, minimum=ssl.TLSVersion.TLSv1_3))
    assert c.sock.version() == "TLSv1.3"
    assert c.sock.cipher()[0] == "TLS_CHACHA20_POLY1305_SHA256"
    login(c)
    quit_ok(c, 0)
    c = connect("127.0.0.1", srv.port)
    c.stls(verify_ctx(pki, minimum=ssl.TLSVersion.TLSv1_3))
    assert c.sock.cipher()[0] == "TLS_CHACHA20_POLY1305_SHA256"
    login(c)
    quit_ok(c, 0)
    # Python cannot narrow its TLS 1.3 suites; openssl s_client can
    ca = ["-CAfile", str(pki.ca.cert), "-verify_return_error", "-tls1_3"]
    rc, out = s_client(srv.tls_port, *ca, "-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256")
    assert rc == 0 and "TLS_CHACHA20_POLY1305_SHA256" in out, out
    for stls in (False, True):
        port = srv.port if stls else srv.tls_port
        rc, out = s_client(port, *ca, "-ciphersuites", "TLS_AES_128_GCM_SHA256", stls=stls)
        assert rc != 0 and "TLS_AES_128_GCM_SHA256" not in out, out
    # TLS 1.2 is the other setting: untouched
    c = connect_tls(srv, verify_ctx(pki, maximum=ssl.TLSVersion.TLSv1_2))
    assert c.sock.cipher()[0] == "ECDHE-ECDSA-AES128-GCM-SHA256"
    login(c)
    quit_ok(c, 0)


# ---- startup errors ----------------------------------------------------------------------------

SANITIZER_MARKERS = ("AddressSanitizer", "LeakSanitizer", "runtime error:", "UndefinedBehavior")


def run_until_exit(srv, limit=10):
    """Run pigeond with srv's configuration; it is expected to exit by itself."""
    srv.write_config()
    give_tree(srv.dir)
    env = dict(os.environ)
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    t0 = time.monotonic()
    proc = subprocess.Popen([str(build_dir() / "pigeond"), "-f", "-c", str(srv.config_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    try:
        out, _ = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
        pytest.fail("pigeond kept running with a bad certificate:\n" + out.decode(errors="replace"))
    return proc.returncode, out.decode(errors="replace"), time.monotonic() - t0


def bad_setup(case, srv, pki):
    """Arrange the files for one broken case; returns (file named, problem)."""
    d = srv.dir / "tls"
    d.mkdir()
    cert, key = d / "server.pem", d / "server.key"
    shutil.copy(pki.localhost.cert, cert)
    shutil.copy(pki.localhost.key, key)
    tls = {"cert": str(cert), "key": str(key)}
    srv.settings["tls"] = tls
    srv.settings["server"]["pop3s_listen"] = "127.0.0.1:%d" % free_port()
    if case == "missing cert":
        tls["cert"] = str(d / "nonexistent.pem")
        return tls["cert"], "cannot open"
    if case == "missing key":
        tls["key"] = str(d / "nonexistent.key")
        return tls["key"], "cannot open"
    if case == "mismatched key":
        shutil.copy(pki.mail.key, key)
        return str(key), "does not match"
    if case == "mismatched key type":
        openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", key)
        return str(key), "does not match"
    if case == "cert not PEM":
        cert.write_text("this is not a certificate\n")
        return str(cert), "not a usable PEM"
    if case == "cert is DER":
        cert.write_bytes(pki.localhost.der)
        return str(cert), "not a usable PEM"
    if case == "key not PEM":
        key.write_text("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n")
        return str(key), "not a usable PEM"
    if case == "unreadable key":
        if os.geteuid() == 0:
            pytest.skip("root can read any file; 'mismatched key' covers a bad key instead")
        key.chmod(0)
        return str(key), "cannot open"
    if case == "SNI cert missing":
        srv.settings["tls:pop.example.net"] = {"cert": str(d / "pop-missing.pem"),
                                               "key": str(pki.pop.key)}
        return str(d / "pop-missing.pem"), "cannot open"
    if case == "SNI key mismatched":
        srv.settings["tls:pop.example.net"] = {"cert": str(pki.pop.cert),
                                               "key": str(pki.mail.key)}
        return str(pki.mail.key), "does not match"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["missing cert", "missing key", "mismatched key",
                                  "mismatched key type",
                                  "cert not PEM", "cert is DER", "key not PEM",
                                  "unreadable key", "SNI cert missing", "SNI key mismatched"])
def test_startup_fails_on_bad_certificate_files(make_server, pki, case):
    srv = make_server(start=False)
    named, problem = bad_setup(case, srv, pki)
    rc, out, took = run_until_exit(srv)
    assert rc == 78, "exit status %s:\n%s" % (rc, out)
    assert took < 8, "took %.1fs to give up" % took
    assert named in out and problem in out, "expected %r and %r in:\n%s" % (named, problem, out)
    assert "ready" not in out, out
    for marker in SANITIZER_MARKERS:
        assert marker not in out, out


@pytest.mark.parametrize("setting, value, line_named", [
    ("ciphers", "NO-SUCH-CIPHER", False),
    ("ciphersuites", "TLS_NO_SUCH_SUITE", False),
    ("min_version", "TLSv1.1", True),
    ("min_version", "1.3", True),
])
def test_startup_fails_on_bad_tls_setting(make_server, pki, setting, value, line_named):
    srv = tls_server(make_server, pki.localhost, {"tls": {setting: value}}, start=False)
    rc, out, took = run_until_exit(srv)
    assert rc == 78, "exit status %s:\n%s" % (rc, out)
    assert took < 8, "took %.1fs to give up" % took
    assert "ready" not in out, out
    assert str(srv.config_path) in out, out
    assert setting in out and "'%s'" % value in out, out
    lines = srv.config_path.read_text().splitlines()
    lineno = 1 + lines.index("%s = %s" % (setting, value))
    if line_named:
        assert "%s:%d:" % (srv.config_path, lineno) in out, out
    for marker in SANITIZER_MARKERS:
        assert marker not in out, out


def test_reload_with_bad_cipher_list_keeps_running_configuration(make_server, pki):
    srv = tls_server(make_server, pki.localhost,
                     {"tls": {"ciphers": "ECDHE-ECDSA-CHACHA20-POLY1305"}})
    srv.settings["tls"]["ciphers"] = "NO-SUCH-CIPHER"
    srv.write_config()
    srv.proc.send_signal(signal.SIGHUP)
    wait_log(srv, "reload refused")
    assert "NO-SUCH-CIPHER" in srv.log()
    assert srv.proc.poll() is None
    c = connect_tls(srv, verify_ctx(pki, maximum=ssl.TLSVersion.TLSv1_2))
    assert c.sock.cipher()[0] == "ECDHE-ECDSA-CHACHA20-POLY1305"
    login(c)
    quit_ok(c, 0)


@pytest.mark.parametrize("setting, value", [
    ("ciphers", "NO-SUCH-CIPHER"),
    ("ciphersuites", "TLS_NO_SUCH_SUITE"),
])
def test_bad_cipher_list_names_its_line(make_server, pki, setting, value):
    """Every configuration error names file:line (docs/architecture.md, "no
    inih"); a cipher list OpenSSL rejects is one."""
    srv = tls_server(make_server, pki.localhost, {"tls": {setting: value}}, start=False)
    rc, out, _ = run_until_exit(srv)
    assert rc == 78, out
    lines = srv.config_path.read_text().splitlines()
    lineno = 1 + lines.index("%s = %s" % (setting, value))
    assert "%s:%d:" % (srv.config_path, lineno) in out, out


@pytest.mark.skipif(RUN_AS is None,
                    reason="needs root: pigeond reads keys as root, serves as pigeon")
def test_root_only_key_file(make_server, pki):
    """Keys may stay readable by root only: the master reads them before the
    workers drop privileges, also on reload."""
    srv = make_server(start=False)
    secret_dir = srv.dir.parent / "root-only"
    secret_dir.mkdir(mode=0o700)
    key = secret_dir / "server.key"
    shutil.copy(pki.localhost.key, key)
    os.chown(secret_dir, 0, 0)
    os.chown(key, 0, 0)
    key.chmod(0o400)
    port = free_port()
    srv.settings["server"]["pop3s_listen"] = "127.0.0.1:%d" % port
    srv.settings["tls"] = {"cert": str(pki.localhost.cert), "key": str(key)}
    srv.tls_port = port
    srv.add_user("alice")
    srv.start()
    c = connect_tls(srv, verify_ctx(pki))
    login(c)
    quit_ok(c, 0)
    srv.proc.send_signal(signal.SIGHUP)
    wait_log(srv, "reloaded")
    assert "reload refused" not in srv.log()


# ---- reload on SIGHUP ------------------------------------------------------------------------


def install(cert, dst_cert, dst_key):
    """Replace the files atomically, as a certificate renewal tool would."""
    for src, dst in ((cert.cert, dst_cert), (cert.key, dst_key)):
        tmp = dst.with_name(dst.name + ".new")
        shutil.copy(src, tmp)
        give_to_server(tmp)
        os.replace(tmp, dst)


def new_connection_cert(srv, ctx, want, timeout=8):
    """Connect until the certificate is `want` (new workers may take a moment)."""
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        try:
            c = connect_tls(srv, ctx)
        except (OSError, ssl.SSLError):
            time.sleep(0.1)
            continue
        seen = c.peer_der()
        c.sock.close()
        if seen == want:
            return seen
        time.sleep(0.1)
    return seen


def test_sighup_reloads_certificates_without_dropping_sessions(make_server, pki):
    srv = make_server(start=False)
    d = srv.dir / "tls"
    d.mkdir()
    cert, key = d / "server.pem", d / "server.key"
    install(pki.reload_a, cert, key)
    srv.tls_port = free_port()
    srv.settings["server"]["pop3s_listen"] = "127.0.0.1:%d" % srv.tls_port
    srv.settings["tls"] = {"cert": str(cert), "key": str(key)}
    srv.add_user("alice")
    big = big_message(128)
    srv.deliver("alice", MSG)
    srv.deliver("alice", big)
    srv.start()
    ctx = verify_ctx(pki)

    old = connect_tls(srv, ctx)
    assert old.peer_der() == pki.reload_a.der
    login(old)
    old_workers = set(srv.worker_pids())
    assert old_workers

    install(pki.reload_b, cert, key)
    srv.proc.send_signal(signal.SIGHUP)
    wait_log(srv, "reloaded", timeout=10)
    assert new_connection_cert(srv, ctx, pki.reload_b.der) == pki.reload_b.der, \
        "new connections do not get the new certificate:\n" + srv.log()
    # a new session on the new certificate works
    c = connect_tls(srv, ctx)
    assert c.peer_der() == pki.reload_b.der
    assert c.command("USER alice") == b"+OK Send your password"
    assert c.command("PASS secret") == (b"-ERR [IN-USE] Maildrop is locked: "
                                        b"in use by another session")
    c.sock.close()

    # the session opened before the reload goes on, on its old certificate
    assert old.peer_der() == pki.reload_a.der
    size1, size2 = len(crlf(MSG)), len(crlf(big))
    assert old.command("STAT") == b"+OK 2 %d" % (size1 + size2)
    retr(old, 1, MSG)
    retr(old, 2, big)
    assert old.command("DELE 1") == b"+OK Message 1 deleted"
    quit_ok(old, 1)
    # and its worker then goes away
    assert wait_until(lambda: not old_workers & set(srv.worker_pids()), 10), \
        "old workers still running: %s" % (old_workers & set(srv.worker_pids()))
    new_workers = set(srv.worker_pids())
    assert new_workers

    c = connect_tls(srv, ctx)
    assert c.peer_der() == pki.reload_b.der
    login(c)
    retr(c, 1, big)
    quit_ok(c, 1)

    # a broken certificate: the reload is refused, the old one stays in use
    cert.write_text("garbage, not PEM\n")
    srv.proc.send_signal(signal.SIGHUP)
    wait_log(srv, "reload refused", timeout=10)
    assert str(cert) in srv.log() and "not a usable PEM" in srv.log(), srv.log()
    assert srv.proc.poll() is None, "pigeond exited on a failed reload:\n" + srv.log()
    c = connect_tls(srv, ctx)
    assert c.peer_der() == pki.reload_b.der
    login(c)
    quit_ok(c, 1)
    assert set(srv.worker_pids()) == new_workers
    # a key that does not match: refused as well
    install(pki.reload_a, cert, key)
    shutil.copy(pki.reload_b.key, key)
    srv.proc.send_signal(signal.SIGHUP)
    wait_log(srv, "reload refused", timeout=10, count=2)
    assert srv.log().count(str(key)) >= 1, srv.log()
    c = connect_tls(srv, ctx)
    assert c.peer_der() == pki.reload_b.der
    c.sock.close()


# ---- curl ------------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
def test_curl_pop3s_and_stls(make_server, pki):
    srv = tls_server(make_server, pki.localhost)
    big = big_message(300)
    srv.deliver("alice", big)

    def curl(*args):
        r = subprocess.run(["curl", "-s", "-S", "--max-time", "15", *args],
                           capture_output=True, timeout=30)
        return r.returncode, r.stdout, r.stderr.decode(errors="replace")

    resolve = ["--resolve", "localhost:%d:127.0.0.1" % srv.tls_port,
               "--resolve", "localhost:%d:127.0.0.1" % srv.port]
    rc, out, err = curl("--cacert", str(pki.ca.cert), *resolve,
                        "pop3s://alice:secret@localhost:%d/1" % srv.tls_port)
    assert rc == 0, err
    assert out == crlf(big)
    assert wait_until(lambda: len(tls_logins(srv)) == 1, 5), srv.log()

    rc, out, err = curl("--ssl-reqd", "--cacert", str(pki.ca.cert), *resolve,
                        "pop3://alice:secret@localhost:%d/1" % srv.port)
    assert rc == 0, err
    assert out == crlf(big)
    assert wait_until(lambda: len(tls_logins(srv)) == 2, 5), srv.log()
    assert tls_logins(srv, "no") == [], srv.log()  # curl did use STLS

    # without the test CA curl refuses the certificate (exit 60)
    rc, out, err = curl(*resolve, "pop3s://alice:secret@localhost:%d/1" % srv.tls_port)
    assert rc == 60, (rc, err)
    assert out == b""

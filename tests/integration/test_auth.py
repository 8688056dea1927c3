"""Authentication in pigeond over real sockets (spec/pop3.md sections 10, 13,
14): SASL framing (PLAIN, LOGIN, cancellation, base64, long responses),
SCRAM-SHA-256 against an independent Python client (RFC 5802 / RFC 7677),
SCRAM-SHA-256-PLUS with tls-server-end-point over implicit TLS, CRAM-MD5,
slow password hashes off the event loop, the brute-force limits and delays,
sessions per address, and the privilege drop of the workers.
"""
import base64
import ctypes
import functools
import hashlib
import hmac
import os
import pwd
import select
import shutil
import socket
import ssl
import statistics
import subprocess
import time

import pytest

from conftest import RawClient, build_dir, free_port, wait_until

AUTH_FAILED = b"-ERR [AUTH] Authentication failed"
THROTTLED = b"-ERR [SYS/TEMP] Too many failed logins, try again later"
CANCELLED = b"-ERR Authentication cancelled"
UNSUPPORTED = b"-ERR Unsupported authentication mechanism"
NOT_IN_THIS_STATE = b"-ERR Command not valid in this state"
LOGGED_IN = b"+OK Maildrop has "


# ---- helpers --------------------------------------------------------------------


def b64(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.b64encode(data).decode()


def unb64(text):
    return base64.b64decode(text, validate=True)


def plain_b64(user, password, authzid=""):
    return b64("%s\0%s\0%s" % (authzid, user, password))


def challenge(line):
    """The decoded data of a "+ base64" server challenge."""
    assert line.startswith(b"+ ") or line == b"+", line
    return unb64(line[2:])


def capa(c):
    assert c.command("CAPA") == b"+OK Capability list follows"
    return [line.decode() for line in c.read_multiline()]


def sasl_mechs(c):
    for line in capa(c):
        if line.split()[0].upper() == "SASL":
            return line.split()[1:]
    return []


def assert_logged_in(c, line):
    assert line.startswith(LOGGED_IN), line
    assert c.command("STAT").startswith(b"+OK "), "not in TRANSACTION after " + repr(line)


def assert_not_logged_in(c):
    assert c.command("STAT") == NOT_IN_THIS_STATE


def timed(c, line):
    t0 = time.monotonic()
    answer = c.command(line)
    return answer, time.monotonic() - t0


def userpass(c, user, password):
    assert c.command("USER %s" % user) == b"+OK Send your password"
    return c.command("PASS %s" % password)


def raw_from(server, source, greeting=True):
    """A RawClient whose connection comes from the loopback address source."""
    c = RawClient.__new__(RawClient)
    c.sock = socket.create_connection((server.host, server.port), timeout=10,
                                      source_address=(source, 0))
    c.buf = b""
    if greeting:
        line = c.readline()
        assert line.startswith(b"+OK"), line
    return c


@functools.lru_cache(maxsize=None)
def pw_hash(password, scheme):
    """A passwd-file entry made by the build's own `pigeon pw hash`."""
    exe = build_dir() / "pigeon"
    out = subprocess.run([str(exe), "pw", "hash", "--scheme", scheme], input=password + "\n",
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


def slow_yescrypt(password):
    """A yescrypt hash with a deliberately high cost (libxcrypt via ctypes): cost
    10 (512 MiB), or 11 where 10 is computed in less than 0.6 s."""
    try:
        lib = ctypes.CDLL("libcrypt.so.1")
    except OSError:
        pytest.skip("needs libcrypt.so.1 (libxcrypt)")
    lib.crypt_gensalt.restype = ctypes.c_char_p
    lib.crypt_gensalt.argtypes = [ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_int]
    lib.crypt.restype = ctypes.c_char_p
    lib.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    for cost in (10, 11):
        setting = lib.crypt_gensalt(b"$y$", cost, None, 0)
        assert setting and setting.startswith(b"$y$"), setting
        t0 = time.monotonic()
        hashed = lib.crypt(password.encode(), setting)
        took = time.monotonic() - t0
        assert hashed and hashed.startswith(setting[:7]), hashed
        if took >= 0.6:
            break
    return "{CRYPT}" + hashed.decode()


# ---- an independent SCRAM-SHA-256 client (RFC 5802 §3, §5; RFC 7677) -------------------


def saslname(name):
    return name.replace("=", "=3D").replace(",", "=2C")


def parse_attrs(msg):
    out = {}
    for part in msg.split(","):
        key, sep, value = part.partition("=")
        assert sep and len(key) == 1, "bad SCRAM attribute %r in %r" % (part, msg)
        out.setdefault(key, value)
    return out


class Scram:
    def __init__(self, user, password, gs2="n,,", cb_data=b"", nonce=None):
        self.password = password
        self.gs2 = gs2
        self.cb_data = cb_data
        self.nonce = nonce or base64.b64encode(os.urandom(18)).decode()
        self.bare = "n=%s,r=%s" % (saslname(user), self.nonce)
        self.server_signature = None
        self.salt = self.iterations = None

    def client_first(self):
        return self.gs2 + self.bare

    def client_final(self, server_first):
        if isinstance(server_first, bytes):
            server_first = server_first.decode()
        attrs = parse_attrs(server_first)
        assert server_first.startswith("r="), server_first
        combined = attrs["r"]
        assert combined.startswith(self.nonce) and len(combined) > len(self.nonce), \
            "server nonce does not extend ours: %r" % server_first
        self.salt = base64.b64decode(attrs["s"], validate=True)
        self.iterations = int(attrs["i"])
        salted = hashlib.pbkdf2_hmac("sha256", self.password.encode(), self.salt,
                                     self.iterations)
        client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
        stored_key = hashlib.sha256(client_key).digest()
        server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
        without_proof = "c=%s,r=%s" % (b64(self.gs2.encode() + self.cb_data), combined)
        auth_message = ",".join((self.bare, server_first, without_proof)).encode()
        client_sig = hmac.new(stored_key, auth_message, hashlib.sha256).digest()
        proof = bytes(a ^ b for a, b in zip(client_key, client_sig))
        self.server_signature = hmac.new(server_key, auth_message, hashlib.sha256).digest()
        return without_proof + ",p=" + b64(proof)

    def check_server_final(self, data):
        """RFC 5802 §5: the client MUST verify v= before trusting the server."""
        assert data == b"v=" + base64.b64encode(self.server_signature), \
            "server signature does not verify: %r" % data


def scram_auth(c, user, password, mech="SCRAM-SHA-256", gs2="n,,", cb_data=b"",
               initial_response=True):
    """Run a SCRAM exchange; returns (client, the server's last line)."""
    sc = Scram(user, password, gs2, cb_data)
    if initial_response:
        line = c.command("AUTH %s %s" % (mech, b64(sc.client_first())))
    else:
        assert c.command("AUTH %s" % mech) == b"+ "
        line = c.command(b64(sc.client_first()))
    if not line.startswith(b"+ "):
        return sc, line
    line = c.command(b64(sc.client_final(challenge(line))))
    if not line.startswith(b"+ "):
        return sc, line
    sc.check_server_final(challenge(line))
    return sc, c.command("")


def server_first_of(c, user, mech="SCRAM-SHA-256"):
    """Start SCRAM for user and cancel after server-first; returns its attributes."""
    sc = Scram(user, "irrelevant")
    line = c.command("AUTH %s %s" % (mech, b64(sc.client_first())))
    first = challenge(line).decode()
    assert c.command("*") == CANCELLED
    attrs = parse_attrs(first)
    assert attrs["r"].startswith(sc.nonce)
    return attrs


def test_python_scram_client_matches_rfc7677():
    """The test's own client reproduces RFC 7677 §3, so it can judge the server."""
    sc = Scram("user", "pencil", nonce="rOprNGfwEbeRWgbNEkqO")
    assert sc.client_first() == "n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
    final = sc.client_final("r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                            "s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
    assert final == ("c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                     "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
    sc.check_server_final(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")


# ---- PLAIN and LOGIN framing (RFC 5034 §4, RFC 4616) ------------------------------------


def test_auth_plain_with_and_without_initial_response(server):
    c = server.raw()
    assert_logged_in(c, c.command("AUTH PLAIN " + plain_b64("alice", "secret")))
    c.close()

    c = server.raw()
    assert c.command("AUTH PLAIN") == b"+ "  # empty challenge
    assert_logged_in(c, c.command(plain_b64("alice", "secret")))
    c.close()

    c = server.raw()
    assert c.command("auth plain " + plain_b64("alice", "wrong")) == AUTH_FAILED
    assert c.command("AUTH PLAIN") == b"+ "
    assert c.command(plain_b64("alice", "secret", authzid="alice")).startswith(LOGGED_IN)
    c.close()


def test_auth_login_two_step_and_user_as_initial_response(server):
    c = server.raw()
    assert challenge(c.command("AUTH LOGIN")) == b"Username:"
    assert challenge(c.command(b64("alice"))) == b"Password:"
    assert_logged_in(c, c.command(b64("secret")))
    c.close()

    c = server.raw()
    assert challenge(c.command("AUTH LOGIN " + b64("alice"))) == b"Password:"
    assert_logged_in(c, c.command(b64("secret")))
    c.close()

    c = server.raw()
    assert challenge(c.command("AUTH LOGIN " + b64("alice"))) == b"Password:"
    assert c.command(b64("Secret")) == AUTH_FAILED
    assert_not_logged_in(c)
    c.close()


def test_auth_cancel_at_every_step(make_server):
    srv = make_server(start=False)
    srv.add_user("alice", "secret")
    srv.add_user("sam", stored=pw_hash("sampw", "scram"))
    srv.start()
    c = srv.raw()
    # PLAIN waiting for its message
    assert c.command("AUTH PLAIN") == b"+ "
    assert c.command("*") == CANCELLED
    # LOGIN at the user name, and at the password (both ways of giving the user)
    assert challenge(c.command("AUTH LOGIN")) == b"Username:"
    assert c.command("*") == CANCELLED
    assert challenge(c.command("AUTH LOGIN")) == b"Username:"
    assert challenge(c.command(b64("alice"))) == b"Password:"
    assert c.command("*") == CANCELLED
    assert challenge(c.command("AUTH LOGIN " + b64("alice"))) == b"Password:"
    assert c.command("*") == CANCELLED
    # SCRAM before client-first, after server-first, and instead of the final
    # empty response (the proof was right: cancelling must still not log in)
    assert c.command("AUTH SCRAM-SHA-256") == b"+ "
    assert c.command("*") == CANCELLED
    sc = Scram("sam", "sampw")
    line = c.command("AUTH SCRAM-SHA-256 " + b64(sc.client_first()))
    assert c.command("*") == CANCELLED
    sc = Scram("sam", "sampw")
    line = c.command("AUTH SCRAM-SHA-256 " + b64(sc.client_first()))
    line = c.command(b64(sc.client_final(challenge(line))))
    sc.check_server_final(challenge(line))
    assert c.command("*") == CANCELLED
    assert_not_logged_in(c)
    # cancellations are not failed logins: the session is still usable
    assert_logged_in(c, c.command("AUTH PLAIN " + plain_b64("alice", "secret")))
    c.close()


def test_auth_malformed_base64(server):
    c = server.raw()
    assert c.command("AUTH PLAIN !!!notbase64").startswith(b"-ERR")
    for bad in ("AGFsaWNlAHNlY3JldA", "AGFs aWNlAHNlY3JldA==", "AGFsaWNlAHNlY3JldA=!",
                "****", "="):
        assert c.command("AUTH PLAIN") == b"+ "
        line = c.command(bad)
        assert line.startswith(b"-ERR [AUTH]"), (bad, line)
        assert_not_logged_in(c)
    assert challenge(c.command("AUTH LOGIN")) == b"Username:"
    assert c.command("YWxpY2U").startswith(b"-ERR [AUTH]")  # padding missing
    assert c.command("AUTH SCRAM-SHA-256 bixuPWFsaWNlLHI9YWJjZGVmZ2g").startswith(b"-ERR")
    # the session goes on in AUTHORIZATION
    assert_logged_in(c, c.command("AUTH PLAIN " + plain_b64("alice", "secret")))
    c.close()


def test_auth_overlong_response_then_session_continues(make_server):
    srv = make_server(start=False)
    srv.add_user("alice", "secret")
    long_pw = "p" * 255
    srv.add_user("long", long_pw)
    srv.start()
    c = srv.raw()
    assert c.command("AUTH PLAIN") == b"+ "
    c.send("A" * 20000 + "\r\n")  # beyond the 16 KiB limit for SASL responses
    line = c.readline()
    assert line.startswith(b"-ERR"), line
    assert_not_logged_in(c)
    # in pieces too
    assert c.command("AUTH PLAIN") == b"+ "
    for _ in range(5):
        c.send("B" * 4096)
        time.sleep(0.02)
    line = c.command("")
    assert line.startswith(b"-ERR"), line
    assert_not_logged_in(c)
    # continuation lines may be longer than a command line (255 octets)
    response = plain_b64("long", long_pw)
    assert len(response) > 300
    assert c.command("AUTH PLAIN") == b"+ "
    assert_logged_in(c, c.command(response))
    c.close()


# ---- SCRAM-SHA-256 --------------------------------------------------------------------


@pytest.fixture
def scram_server(make_server):
    srv = make_server(start=False)
    entry = pw_hash("pencil", "scram")
    assert entry.startswith("{SCRAM-SHA-256}"), entry
    srv.add_user("sam", stored=entry)
    srv.add_user("alice", "secret")  # {PLAIN}: no SCRAM keys
    srv.start()
    return srv


def test_scram_sha256_login(scram_server):
    c = scram_server.raw()
    assert "SCRAM-SHA-256" in sasl_mechs(c)
    assert "SCRAM-SHA-256-PLUS" not in sasl_mechs(c)
    sc, line = scram_auth(c, "sam", "pencil")
    assert_logged_in(c, line)
    assert sc.iterations >= 4096 and len(sc.salt) >= 16
    assert c.command("QUIT") == b"+OK Bye, 0 messages left"
    c.close()

    # without an initial response
    c = scram_server.raw()
    sc, line = scram_auth(c, "sam", "pencil", initial_response=False)
    assert_logged_in(c, line)
    c.close()


def test_scram_wrong_password_and_unknown_user_look_like_user_pass(scram_server):
    c = scram_server.raw()
    reference = userpass(c, "sam", "wrong")
    assert reference == AUTH_FAILED
    c.close()
    for user, password in (("sam", "Pencil"), ("nobody", "pencil"), ("alice", "secret")):
        c = scram_server.raw()
        sc, line = scram_auth(c, user, password)
        assert line == reference, (user, line)
        assert_not_logged_in(c)
        c.close()


def test_scram_unknown_user_salt_is_stable(scram_server):
    c = scram_server.raw()
    first = server_first_of(c, "nobody")
    again = server_first_of(c, "nobody")
    real = server_first_of(c, "sam")
    other = server_first_of(c, "nobody2")
    c.close()
    c = scram_server.raw()
    third = server_first_of(c, "nobody")
    c.close()
    assert first["s"] == again["s"] == third["s"]
    assert first["i"] == again["i"] == third["i"]
    # fresh server nonces every time
    assert len({first["r"], again["r"], third["r"]}) == 3
    # shaped like a real record, and not the same for every unknown name
    assert first["i"] == real["i"]
    assert len(unb64(first["s"])) == len(unb64(real["s"]))
    assert other["s"] != first["s"]


def scram_entry(password, iterations, salt=None):
    """A {SCRAM-SHA-256} passwd-file entry made here (as Dovecot's doveadm
    would, with its own iteration count)."""
    salt = salt or os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    return "{SCRAM-SHA-256}%d,%s,%s,%s" % (iterations, b64(salt), b64(stored_key),
                                           b64(server_key))


def test_scram_unknown_user_iterations_match_the_real_entries(make_server):
    """Entries made elsewhere (4096 iterations, Dovecot's default): the keys
    made up for an unknown user use the same count, or it would tell."""
    srv = make_server(start=False)
    for name in ("ann", "ben", "cy"):
        srv.add_user(name, stored=scram_entry("pw-" + name, 4096))
    srv.start()
    c = srv.raw()
    sc, line = scram_auth(c, "ben", "pw-ben")
    assert_logged_in(c, line)
    c.close()
    c = srv.raw()
    real = server_first_of(c, "ann")
    fake = server_first_of(c, "nobody")
    c.close()
    assert real["i"] == fake["i"] == "4096", (real, fake)


def test_user_pass_for_scram_stored_user(scram_server):
    c = scram_server.raw()
    assert userpass(c, "sam", "pencil2") == AUTH_FAILED
    assert_logged_in(c, userpass(c, "sam", "pencil"))
    c.close()
    c = scram_server.raw()
    assert_logged_in(c, c.command("AUTH PLAIN " + plain_b64("sam", "pencil")))
    c.close()


# ---- SCRAM-SHA-256-PLUS over implicit TLS -------------------------------------------------


def make_cert(directory):
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-sha256", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key


@pytest.fixture
def tls_server(make_server):
    port = free_port()
    srv = make_server(start=False, settings={"server": {"pop3s_listen": "127.0.0.1:%d" % port}})
    # the certificate and key live in the server's own directory
    cert, key = make_cert(srv.dir)
    srv.settings["tls"] = {"cert": str(cert), "key": str(key)}
    srv.tls_port = port
    srv.add_user("sam", stored=pw_hash("pencil", "scram"))
    srv.start()
    return srv


def tls_raw(srv):
    ctx = ssl.create_default_context(cafile=str(srv.dir / "cert.pem"))
    sock = socket.create_connection((srv.host, srv.tls_port), timeout=10)
    c = RawClient.__new__(RawClient)
    c.sock = ctx.wrap_socket(sock, server_hostname="localhost")
    c.buf = b""
    assert c.readline().startswith(b"+OK"), "no greeting over TLS"
    return c


def end_point_binding(c):
    """RFC 5929 §4.1 for a certificate signed with ecdsa-with-SHA256."""
    der = c.sock.getpeercert(binary_form=True)
    assert der
    return hashlib.sha256(der).digest()


def test_scram_plus_with_tls_server_end_point(tls_server):
    c = tls_raw(tls_server)
    mechs = sasl_mechs(c)
    assert "SCRAM-SHA-256-PLUS" in mechs and "SCRAM-SHA-256" in mechs, mechs
    sc, line = scram_auth(c, "sam", "pencil", mech="SCRAM-SHA-256-PLUS",
                          gs2="p=tls-server-end-point,,", cb_data=end_point_binding(c))
    assert_logged_in(c, line)
    c.close()

    # the binding of another certificate (a man in the middle's) fails
    c = tls_raw(tls_server)
    other = hashlib.sha256(b"not the certificate").digest()
    sc, line = scram_auth(c, "sam", "pencil", mech="SCRAM-SHA-256-PLUS",
                          gs2="p=tls-server-end-point,,", cb_data=other)
    assert line.startswith(b"-ERR"), line
    assert_not_logged_in(c)
    # right data, but c= claims no binding
    sc, line = scram_auth(c, "sam", "pencil", mech="SCRAM-SHA-256-PLUS",
                          gs2="p=tls-server-end-point,,", cb_data=b"")
    assert line.startswith(b"-ERR"), line
    assert_not_logged_in(c)
    c.close()


def test_scram_plus_refusals_over_tls(tls_server):
    c = tls_raw(tls_server)
    # tls-unique is not offered (undefined for TLS 1.3, RFC 9266)
    sc = Scram("sam", "pencil", gs2="p=tls-unique,,")
    line = c.command("AUTH SCRAM-SHA-256-PLUS " + b64(sc.client_first()))
    assert line.startswith(b"-ERR [AUTH]"), line
    # "y" with SCRAM-SHA-256 where -PLUS is offered: a downgrade (RFC 5802 §6)
    sc = Scram("sam", "pencil", gs2="y,,")
    line = c.command("AUTH SCRAM-SHA-256 " + b64(sc.client_first()))
    assert line.startswith(b"-ERR [AUTH]"), line
    # n with -PLUS, p= with the plain mechanism
    sc = Scram("sam", "pencil", gs2="n,,")
    assert c.command("AUTH SCRAM-SHA-256-PLUS " + b64(sc.client_first())).startswith(b"-ERR")
    sc = Scram("sam", "pencil", gs2="p=tls-server-end-point,,")
    assert c.command("AUTH SCRAM-SHA-256 " + b64(sc.client_first())).startswith(b"-ERR")
    assert_not_logged_in(c)
    # a binding that does not match this connection (a man in the middle
    # relaying the exchange would present another one) is refused and logged
    sc = Scram("sam", "pencil", gs2="p=tls-server-end-point,,", cb_data=b"\x00" * 32)
    line = c.command("AUTH SCRAM-SHA-256-PLUS " + b64(sc.client_first()))
    line = c.command(b64(sc.client_final(challenge(line))))
    assert line == b"-ERR [AUTH] SCRAM channel binding does not match", line
    assert wait_until(lambda: "SASL refused: ip=127.0.0.1 mechanism=SCRAM-SHA-256-PLUS tls=yes "
                      "reason=SCRAM channel binding does not match" in tls_server.log())
    assert "SASL refused: ip=127.0.0.1 mechanism=SCRAM-SHA-256-PLUS tls=yes reason=" \
        "unsupported channel binding type" in tls_server.log()
    # plain SCRAM without binding still works over TLS
    sc, line = scram_auth(c, "sam", "pencil")
    assert_logged_in(c, line)
    c.close()


def test_scram_plus_not_offered_without_tls(tls_server):
    c = tls_server.raw()
    assert "SCRAM-SHA-256-PLUS" not in sasl_mechs(c)
    assert c.command("AUTH") == b"+OK Supported mechanisms follow"
    assert b"SCRAM-SHA-256-PLUS" not in c.read_multiline()
    sc = Scram("sam", "pencil", gs2="p=tls-server-end-point,,")
    assert c.command("AUTH SCRAM-SHA-256-PLUS " + b64(sc.client_first())) == UNSUPPORTED
    # without TLS the server cannot bind: "y" is no downgrade here
    sc, line = scram_auth(c, "sam", "pencil", gs2="y,,")
    assert_logged_in(c, line)
    c.close()


# ---- CRAM-MD5 (RFC 2195) ----------------------------------------------------------------


def cram_response(user, secret, chal):
    digest = hmac.new(secret.encode(), chal, hashlib.md5).hexdigest()
    return b64("%s %s" % (user, digest))


def test_cram_md5_only_when_enabled(server):
    c = server.raw()
    assert "CRAM-MD5" not in sasl_mechs(c)
    assert c.command("AUTH CRAM-MD5") == UNSUPPORTED
    c.close()


def test_cram_md5(make_server):
    srv = make_server(start=False, settings={"auth": {"cram_md5": "yes", "max_failures": "10"}})
    srv.add_user("alice", "secret")
    srv.add_user("hashed", stored=pw_hash("secret", "yescrypt"))
    srv.start()
    c = srv.raw()
    assert "CRAM-MD5" in sasl_mechs(c)
    chal = challenge(c.command("AUTH CRAM-MD5"))
    assert chal.startswith(b"<") and chal.endswith(b">") and b"@" in chal, chal
    assert c.command(cram_response("alice", "wrong", chal)) == AUTH_FAILED
    # a fresh challenge every time: the old digest is not accepted again
    chal2 = challenge(c.command("AUTH CRAM-MD5"))
    assert chal2 != chal
    assert c.command(cram_response("alice", "secret", chal)) == AUTH_FAILED
    # no secret to compute the digest with for a hashed user
    chal3 = challenge(c.command("AUTH CRAM-MD5"))
    assert c.command(cram_response("hashed", "secret", chal3)) == AUTH_FAILED
    chal4 = challenge(c.command("AUTH CRAM-MD5"))
    assert c.command(cram_response("nobody", "secret", chal4)) == AUTH_FAILED
    assert_not_logged_in(c)
    chal5 = challenge(c.command("AUTH CRAM-MD5"))
    assert_logged_in(c, c.command(cram_response("alice", "secret", chal5)))
    c.close()
    # the hashed user can log in otherwise
    c = srv.raw()
    assert_logged_in(c, userpass(c, "hashed", "secret"))
    c.close()


# ---- slow password hashes do not stall the event loop ---------------------------------------


def test_slow_password_check_does_not_block_other_sessions(make_server):
    srv = make_server(start=False, settings={"server": {"workers": "1"}})
    srv.add_user("alice", "secret")
    srv.add_user("slow", stored=slow_yescrypt("slowpw"))
    srv.start()
    a = srv.raw()
    assert_logged_in(a, userpass(a, "alice", "secret"))
    b = srv.raw()
    assert b.command("USER slow") == b"+OK Send your password"
    b.send("PASS slowpw\r\n")
    t0 = time.monotonic()
    noops = []
    answered = None
    while time.monotonic() - t0 < 30:
        ready, _, _ = select.select([b.sock], [], [], 0.02)
        if ready:
            answered = time.monotonic() - t0
            break
        _, took = timed(a, "NOOP")
        noops.append(took)
    assert answered is not None, "slow login not answered within 30 s"
    assert b.readline().startswith(LOGGED_IN)
    assert answered > 0.5, "the check took only %.3f s: the hash is not slow" % answered
    assert len(noops) >= 3, noops
    assert max(noops) < 0.2, "NOOP stalled while another session's password was " \
        "checked: %s" % ["%.3f" % t for t in noops]
    a.close()
    b.close()


# ---- brute-force limits --------------------------------------------------------------------


def test_failure_delay_grows_per_address(make_server):
    srv = make_server(start=False, settings={"auth": {
        "failure_delay": "200ms", "max_failure_delay": "1s", "max_failures": "10",
        "ip_failure_limit": "100", "user_failure_limit": "100"}})
    srv.add_user("alice", "secret")
    srv.start()
    c = srv.raw()
    times = []
    for _ in range(3):
        assert c.command("USER alice") == b"+OK Send your password"
        line, took = timed(c, "PASS wrong")
        assert line == AUTH_FAILED
        times.append(took)
    c.close()
    # the count is per address, not per connection; and it is capped
    c = srv.raw()
    assert c.command("USER nobody") == b"+OK Send your password"
    line, took = timed(c, "PASS wrong")
    assert line == AUTH_FAILED
    times.append(took)
    t1, t2, t3, t4 = times
    shown = ["%.3f" % t for t in times]
    assert 0.18 <= t1 < 0.45, shown
    assert 0.38 <= t2 < 0.65, shown
    assert 0.78 <= t3 < 1.1, shown
    assert 0.98 <= t4 < 1.35, shown  # 1.6 s capped at max_failure_delay = 1 s
    assert t1 < t2 < t3, shown
    # a right password is answered without delay
    line, took = timed(c, "USER alice")
    line, took = timed(c, "PASS secret")
    assert line.startswith(LOGGED_IN)
    assert took < 0.15, "%.3f" % took
    c.close()


def test_ip_failure_limit(make_server):
    srv = make_server(start=False, settings={"auth": {
        "failure_delay": "50ms", "max_failure_delay": "300ms", "max_failures": "10",
        "ip_failure_limit": "3", "user_failure_limit": "100"}})
    srv.add_user("alice", "secret")
    srv.start()
    c = srv.raw()
    for _ in range(3):
        assert userpass(c, "alice", "wrong") == AUTH_FAILED
    # the 4th attempt is refused without looking at the password
    assert c.command("USER alice") == b"+OK Send your password"
    line, took = timed(c, "PASS secret")
    assert line == THROTTLED
    assert took < 0.3 + 0.4, "%.3f" % took
    assert_not_logged_in(c)
    assert c.command("AUTH PLAIN " + plain_b64("alice", "secret")) == THROTTLED
    c.close()
    c = srv.raw()
    assert userpass(c, "nobody", "x") == THROTTLED
    assert userpass(c, "alice", "secret") == THROTTLED
    c.close()
    # another address is not affected, and neither is the user
    c = raw_from(srv, "127.0.0.2")
    assert_logged_in(c, userpass(c, "alice", "secret"))
    c.close()


def test_user_failure_limit_across_connections_and_addresses(make_server):
    srv = make_server(start=False, settings={"auth": {
        "failure_delay": "0", "max_failure_delay": "100ms", "ip_failure_limit": "100",
        "user_failure_limit": "3"}})
    srv.add_user("alice", "secret")
    srv.add_user("bob", "bobpw")
    srv.start()
    for source in ("127.0.0.2", "127.0.0.3", "127.0.0.4"):
        c = raw_from(srv, source)
        assert userpass(c, "bob", "guess") == AUTH_FAILED
        c.close()
    c = raw_from(srv, "127.0.0.5")
    assert userpass(c, "bob", "bobpw") == THROTTLED
    assert c.command("AUTH PLAIN " + plain_b64("bob", "bobpw")) == THROTTLED
    assert_not_logged_in(c)
    c.close()
    c = srv.raw()
    assert userpass(c, "bob", "bobpw") == THROTTLED
    c.close()
    for source in ("127.0.0.5", "127.0.0.2"):
        c = raw_from(srv, source)
        assert_logged_in(c, userpass(c, "alice", "secret"))
        c.close()


def test_unknown_user_and_wrong_password_same_answer_same_time(make_server):
    srv = make_server(start=False, settings={"auth": {
        "failure_delay": "300ms", "max_failure_delay": "300ms", "ip_failure_limit": "100",
        "user_failure_limit": "100"}})
    srv.add_user("carol", stored=pw_hash("carolpw", "yescrypt"))
    srv.start()

    def attempt(user):
        c = srv.raw()
        assert c.command("USER %s" % user) == b"+OK Send your password"
        line, took = timed(c, "PASS wrong")
        c.close()
        return line, took

    attempt("warmup")  # the stand-in hash is made on first use
    attempt("carol")
    unknown, wrong = [], []
    for _ in range(3):
        line_u, t_u = attempt("nobody")
        line_w, t_w = attempt("carol")
        assert line_u == line_w == AUTH_FAILED, (line_u, line_w, srv.log()[-3000:])
        unknown.append(t_u)
        wrong.append(t_w)
    shown = (["%.3f" % t for t in unknown], ["%.3f" % t for t in wrong])
    assert min(unknown + wrong) >= 0.29, shown
    assert abs(statistics.median(unknown) - statistics.median(wrong)) < 0.1, shown


def test_scram_does_not_confirm_a_guess_when_throttled(make_server):
    """Once an address is over ip_failure_limit, even the right SCRAM proof
    gets no server signature (which would tell the attacker the guess was
    right without waiting for the answer to the login)."""
    srv = make_server(start=False, settings={"auth": {
        "failure_delay": "0", "max_failure_delay": "0", "max_failures": "10",
        "ip_failure_limit": "3", "user_failure_limit": "100"}})
    srv.add_user("sam", stored=pw_hash("pencil", "scram"))
    srv.start()
    c = srv.raw()
    sc, line = scram_auth(c, "sam", "pencil")  # works before the limit
    assert_logged_in(c, line)
    c.close()
    c = srv.raw()
    before = server_first_of(c, "sam")
    for _ in range(3):
        assert userpass(c, "sam", "wrong") == AUTH_FAILED
    # the same salt and count while throttled: no hint of who exists
    after = server_first_of(c, "sam")
    assert (after["s"], after["i"]) == (before["s"], before["i"])
    sc = Scram("sam", "pencil")
    line = c.command("AUTH SCRAM-SHA-256 " + b64(sc.client_first()))
    assert line.startswith(b"+ "), line
    line = c.command(b64(sc.client_final(challenge(line))))
    assert not line.startswith(b"+ "), "server confirmed the proof while throttled: %r" % line
    assert line in (THROTTLED, AUTH_FAILED), line
    assert_not_logged_in(c)
    c.close()
    # another address still logs in with SCRAM
    c = raw_from(srv, "127.0.0.2")
    sc, line = scram_auth(c, "sam", "pencil")
    assert_logged_in(c, line)
    c.close()


def test_failure_time_does_not_depend_on_the_hash(make_server):
    """A wrong password for a user with a cheap hash ({PLAIN}), one with a
    costly yescrypt hash, and an unknown user are answered after the same
    time: failure_delay counts from the start of the check."""
    slow = slow_yescrypt("slowpw")
    lib = ctypes.CDLL("libcrypt.so.1")
    lib.crypt.restype = ctypes.c_char_p
    lib.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    t0 = time.monotonic()
    lib.crypt(b"slowpw", slow[len("{CRYPT}"):].encode())
    hash_time = time.monotonic() - t0
    assert hash_time > 0.3, "the costly hash took only %.3f s" % hash_time
    # well above the hash's cost, even on a machine busy with other work
    delay = 1.0 + 3 * hash_time
    srv = make_server(start=False, settings={"auth": {
        "failure_delay": "%dms" % (delay * 1000), "max_failure_delay": "%dms" % (delay * 1000),
        "max_failures": "10", "ip_failure_limit": "100", "user_failure_limit": "100"}})
    srv.add_user("cheap", "cheappw")
    srv.add_user("slow", stored=slow)
    srv.start()

    def attempt(user):
        c = srv.raw()
        assert c.command("USER %s" % user) == b"+OK Send your password"
        line, took = timed(c, "PASS wrong")
        c.close()
        assert line == AUTH_FAILED, line
        return took

    times = {u: attempt(u) for u in ("cheap", "slow", "nobody")}
    shown = {u: "%.3f" % t for u, t in times.items()}
    assert min(times.values()) >= delay - 0.05, (shown, delay)
    # without the rule, "slow" would take hash_time longer than "cheap"
    assert max(times.values()) - min(times.values()) < min(0.25, hash_time / 2), \
        (shown, "%.3f" % hash_time)


# ---- sessions per address ----------------------------------------------------------------


PER_IP_REFUSAL = b"-ERR [SYS/TEMP] Too many connections from your address"
TOTAL_REFUSAL = b"-ERR [SYS/TEMP] Too many connections, try again later"


def connect_until_accepted(srv, attempts=50, refusal=PER_IP_REFUSAL):
    """A new session (the slot of a just-closed one is freed asynchronously)."""
    for _ in range(attempts):
        c = srv.raw(greeting=False)
        line = c.readline()
        if line.startswith(b"+OK"):
            return c
        assert line == refusal, line
        c.close()
        time.sleep(0.05)
    raise AssertionError("no session slot became free")


def test_max_sessions_per_ip(make_server):
    srv = make_server(settings={"server": {"max_sessions_per_ip": "2"}})
    c1, c2 = srv.raw(), srv.raw()
    c3 = srv.raw(greeting=False)
    assert c3.readline() == PER_IP_REFUSAL
    assert c3.is_closed(5)
    c3.close()
    # another address has its own count
    other = raw_from(srv, "127.0.0.2")
    assert other.command("CAPA") == b"+OK Capability list follows"
    other.close()
    # the held sessions are unharmed; a closed one frees its slot
    assert c1.command("CAPA") == b"+OK Capability list follows"
    c1.read_multiline()
    c2.command("QUIT")
    c2.close()
    c4 = connect_until_accepted(srv)
    c5 = srv.raw(greeting=False)
    assert c5.readline() == PER_IP_REFUSAL
    for c in (c1, c4, c5):
        c.close()


def worker_of(srv, client):
    """The pid of the worker process that holds the server side of client."""
    lport = client.sock.getsockname()[1]
    inode = None
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            local, remote = fields[1], fields[2]
            if int(local.split(":")[1], 16) == srv.port and int(remote.split(":")[1], 16) == lport:
                inode = fields[9]
    assert inode is not None, "server side of port %d not found" % lport
    for pid in srv.worker_pids():
        fddir = "/proc/%d/fd" % pid
        for fd in os.listdir(fddir):
            try:
                if os.readlink(os.path.join(fddir, fd)) == "socket:[%s]" % inode:
                    return pid
            except OSError:
                pass
    raise AssertionError("no worker holds socket inode %s" % inode)


def one_session_in_each_worker(srv, refusal):
    """Two sessions held by the two workers, one each (skips the test when
    the kernel keeps giving every connection to the same worker)."""
    assert len(srv.worker_pids()) == 2
    c1 = srv.raw()
    w1 = worker_of(srv, c1)
    for _ in range(40):
        c = connect_until_accepted(srv, refusal=refusal)
        if worker_of(srv, c) != w1:
            return c1, c
        c.close()
        time.sleep(0.02)
    pytest.skip("the kernel gave every connection to the same worker")


def assert_refused(srv, refusal, times=6):
    """Whichever worker takes a connection, it counts the sessions held by
    the other one too."""
    for _ in range(times):
        c = srv.raw(greeting=False)
        assert c.readline() == refusal
        assert c.is_closed(5)
        c.close()


def test_max_sessions_per_ip_across_workers(make_server):
    srv = make_server(settings={"server": {"max_sessions_per_ip": "2", "workers": "2"}})
    c1, c2 = one_session_in_each_worker(srv, PER_IP_REFUSAL)
    assert_refused(srv, PER_IP_REFUSAL)
    c1.close()
    c2.close()


def test_max_sessions_across_workers(make_server):
    """[server] max_sessions bounds the POP3 sessions of all workers together."""
    srv = make_server(settings={"server": {"max_sessions": "2", "workers": "2"}})
    c1, c2 = one_session_in_each_worker(srv, TOTAL_REFUSAL)
    assert_refused(srv, TOTAL_REFUSAL)
    assert "session limit (2) reached" in srv.log()
    c1.close()
    c2.close()


# ---- privileges ---------------------------------------------------------------------------


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="only meaningful when run as root")


def proc_status(pid):
    fields = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.split()
    return fields


@needs_root
def test_workers_drop_privileges(make_server):
    srv = make_server(start=False, settings={"server": {"workers": "2"}})
    # start pigeond with supplementary groups, so that dropping them shows
    saved = os.getgroups()
    os.setgroups([0, 4, 27])
    try:
        srv.start()
    finally:
        os.setgroups(saved)
    assert sorted(proc_status(srv.pid())["Groups"]) == ["0", "27", "4"]
    pids = srv.worker_pids()
    assert len(pids) == 2
    deadline = time.monotonic() + 10
    while not all("worker %d serving" % pid in srv.log() for pid in pids):
        assert time.monotonic() < deadline, "workers did not report serving:\n" + srv.log()
        time.sleep(0.05)
    pigeon = pwd.getpwnam(srv.settings["server"]["user"])
    for pid in pids:
        st = proc_status(pid)
        assert st["Uid"] == [str(pigeon.pw_uid)] * 4, (pid, st["Uid"])
        assert all(int(u) != 0 for u in st["Uid"])
        assert st["Gid"] == [str(pigeon.pw_gid)] * 4, (pid, st["Gid"])
        assert st["Groups"] == [], (pid, st["Groups"])
        assert int(st["CapEff"][0], 16) == 0 and int(st["CapPrm"][0], 16) == 0, st["CapEff"]


@needs_root
def test_refuses_to_run_as_root(make_server):
    srv = make_server(start=False, settings={"server": {"user": "root"}})
    srv.start(wait=False)
    proc = srv.proc
    # Give it until 2 s after the master gave up restarting workers (10 s at most).
    deadline = time.monotonic() + 10
    gave_up = None
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if gave_up is None and "not restarting" in srv.log():
                gave_up = time.monotonic()
            if gave_up is not None and time.monotonic() - gave_up > 2:
                break
            time.sleep(0.05)
        rc = proc.poll()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        srv.log_handle.close()
        srv.proc = None  # the fixture must not check this one
    log = srv.log()
    assert "refusing to serve clients as root" in log, log
    assert rc is not None, "pigeond with [server] user = root kept running " \
        "(no worker can serve) instead of exiting:\n" + log[-2000:]
    assert rc != 0, log

"""Limits and policies of pigeond: line length, bad commands, failed logins,
timeouts, configuration errors, the session limit and the session-end log line.
"""
import base64
import os
import re
import socket
import subprocess
import time

import pytest

from conftest import RawClient, build_dir, free_port, wait_until

# pigeond's answer to NOOP (RFC 1957: "+OK" is followed by a space and text).
NOOP_OK = b"+OK Still here"

USER = "alice"
SECRET = "Tr0ub4dor&3xyz"
EX_CONFIG = 78


# ---- helpers ---------------------------------------------------------------------



def sessions_settled(srv):
    """Every accepted connection has logged its "session end:" line."""
    log = srv.log()
    return log.count("debug: connect: ip=") == log.count("session end:")


def login(srv, password="secret", timeout=10):
    c = srv.raw(timeout=timeout)
    assert c.command("USER " + USER).startswith(b"+OK")
    resp = c.command("PASS " + password)
    assert resp.startswith(b"+OK"), resp
    return c


def run_pigeond(config_path, timeout=20):
    """Run pigeond in the foreground on a config that must be refused."""
    env = dict(os.environ)
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
    try:
        return subprocess.run([str(build_dir() / "pigeond"), "-f", "-c", str(config_path)],
                              capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        raise AssertionError("pigeond accepted the configuration %s and kept running"
                             % config_path)


def write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def base_config(tmp_path):
    """A valid configuration (a list of lines) to which a bad line is appended."""
    users = tmp_path / "users"
    users.write_text("alice:{PLAIN}secret:::::\n")
    return [
        "[server]",
        "pop3_listen = 127.0.0.1:%d" % free_port(),
        "[auth]",
        "passwd_file = %s" % users,
        "[mail]",
        "location = %s/mail/%%u/Maildir" % tmp_path,
    ]


MSG = b"Subject: hello\n\nworld\n"
MSG_SIZE = len(MSG.replace(b"\n", b"\r\n"))
STAT1 = b"+OK 1 %d" % MSG_SIZE


@pytest.fixture
def server(make_server):
    """alice ("secret") with one message. (The conftest fixture's empty maildrop
    is covered by test_login_to_empty_maildrop alone.)"""
    srv = make_server(start=False)
    srv.add_user(USER, "secret")
    srv.deliver(USER, MSG)
    srv.start()
    return srv


def limited_server(make_server, settings, password="secret"):
    srv = make_server(start=False, settings=settings)
    srv.add_user(USER, password)
    srv.deliver(USER, MSG)
    srv.start()
    return srv


# ---- command line length ----------------------------------------------------------


def test_overlong_command_line_one_error_session_continues(server):
    c = login(server)
    c.send("NOOP" + " x" * 200 + "\r\n")  # 406 octets
    resp = c.readline()
    assert resp.startswith(b"-ERR") and b"255" in resp, resp
    assert c.command("STAT") == STAT1
    assert c.command("NOOP") == NOOP_OK
    assert c.command("QUIT").startswith(b"+OK")
    assert c.is_closed()
    assert c.buf == b"", "more than one answer to the long line: %r" % c.buf
    c.close()


def test_overlong_line_in_pieces_gets_one_error(server):
    c = login(server)
    # 1 MB in 64 KB pieces before the CRLF: dropped as it arrives, one -ERR.
    piece = b"A" * 65536
    for _ in range(16):
        c.send(piece)
    c.send(b"\r\nNOOP\r\n")
    resp = c.readline()
    assert resp.startswith(b"-ERR") and b"255" in resp, resp
    assert c.readline() == NOOP_OK
    # Again, split just around the limit.
    c.send(b"LIST " + b"1" * 200)
    time.sleep(0.05)
    c.send(b"2" * 60)
    time.sleep(0.05)
    c.send(b"\r")
    time.sleep(0.05)
    c.send(b"\nSTAT\r\n")
    resp = c.readline()
    assert resp.startswith(b"-ERR") and b"255" in resp, resp
    assert c.readline() == STAT1
    assert c.command("QUIT").startswith(b"+OK")
    assert c.is_closed()
    assert c.buf == b""
    c.close()


def test_line_of_exactly_255_octets_is_a_command_256_is_not(server):
    c = server.raw()
    line255 = "USER " + "u" * 248  # + CRLF = 255 octets
    assert len(line255) + 2 == 255
    assert c.command(line255) == b"+OK Send your password"
    line256 = "USER " + "u" * 249
    resp = c.command(line256)
    assert resp.startswith(b"-ERR") and b"255" in resp, resp
    # The session keeps working; a refused line also forgets the pending USER.
    assert c.command("USER alice").startswith(b"+OK")
    assert c.command("PASS secret").startswith(b"+OK")
    # In TRANSACTION, padding with spaces: 255 accepted, 256 refused.
    assert c.command("NOOP" + " " * 249) == NOOP_OK
    resp = c.command("NOOP" + " " * 250)
    assert resp.startswith(b"-ERR") and b"255" in resp, resp
    assert c.command("NOOP") == NOOP_OK
    c.command("QUIT")
    c.close()


def test_overlong_line_between_user_and_pass(server):
    c = server.raw()
    assert c.command("USER alice").startswith(b"+OK")
    assert c.command("X" * 300).startswith(b"-ERR")
    # PASS must follow USER directly (RFC 1939 §7).
    assert c.command("PASS secret").startswith(b"-ERR")
    c.command("QUIT")
    c.close()


def test_nul_byte_in_command(server):
    c = server.raw()
    resp = c.command("US\x00ER alice")
    assert resp.startswith(b"-ERR"), resp
    resp = c.command("USER al\x00ice")
    assert resp.startswith(b"-ERR"), resp
    assert c.command("USER alice").startswith(b"+OK")
    assert c.command("PASS secret").startswith(b"+OK")
    resp = c.command("NO\x00OP")
    assert resp.startswith(b"-ERR"), resp
    assert c.command("NOOP") == NOOP_OK
    assert c.command("STAT") == STAT1
    c.command("QUIT")
    c.close()


# ---- bad commands and failed logins ----------------------------------------------------------


def test_disconnect_after_max_bad_commands(make_server):
    srv = limited_server(make_server, {"pop3": {"max_bad_commands": "3"}})
    c = srv.raw()
    assert c.command("BOGUS").startswith(b"-ERR")
    assert c.command("STAT").startswith(b"-ERR")  # not valid before login
    assert c.command("CAPA").startswith(b"+OK")  # good commands do not reset it
    c.read_multiline()
    resp = c.command("X" * 300)  # an overlong line counts too
    assert resp.startswith(b"-ERR"), resp
    assert c.is_closed(), "still open after 3 bad commands"
    assert c.buf == b""
    c.close()
    # Two bad commands are tolerated.
    c = srv.raw()
    assert c.command("BOGUS").startswith(b"-ERR")
    assert c.command("LAST").startswith(b"-ERR")
    assert c.command("USER alice").startswith(b"+OK")
    assert c.command("PASS secret").startswith(b"+OK")
    assert c.command("NOOP") == NOOP_OK
    assert c.command("QUIT").startswith(b"+OK")
    c.close()
    assert wait_until(lambda: "reason=too many bad commands" in srv.log(), 5)


def test_disconnect_after_max_auth_failures(make_server):
    srv = limited_server(make_server, {"auth": {"max_failures": "2"}}, SECRET)
    c = srv.raw()
    assert c.command("USER alice").startswith(b"+OK")
    resp = c.command("PASS wrong1")
    assert resp.startswith(b"-ERR [AUTH]"), resp
    assert not c.is_closed(timeout=0.3)
    assert c.command("USER nosuchuser").startswith(b"+OK")
    resp = c.command("PASS wrong2")
    assert resp.startswith(b"-ERR [AUTH]"), resp
    assert c.is_closed(), "still open after 2 failed logins"
    assert c.buf == b""
    c.close()
    # A fresh connection may log in.
    c = login(srv, SECRET)
    assert c.command("QUIT").startswith(b"+OK")
    c.close()


# ---- timeouts --------------------------------------------------------------------------


def test_preauth_timeout_closes_silently(make_server):
    srv = limited_server(make_server, {"pop3": {"preauth_timeout": "1s"}})
    t0 = time.monotonic()  # before connecting: the server's timer starts later
    c = srv.raw()
    assert c.is_closed(timeout=8), "idle unauthenticated connection not closed"
    elapsed = time.monotonic() - t0
    assert 0.95 <= elapsed < 4, elapsed
    assert c.buf == b"", "a response line before the timeout close: %r" % c.buf
    c.close()
    # Activity resets it; once logged in the (10 min) idle timeout applies.
    c = srv.raw()
    for _ in range(3):
        time.sleep(0.6)
        assert c.command("CAPA").startswith(b"+OK")
        c.read_multiline()
    assert c.command("USER alice").startswith(b"+OK")
    assert c.command("PASS secret").startswith(b"+OK")
    assert not c.is_closed(timeout=1.6), "pre-auth timeout applied after login"
    assert c.command("NOOP") == NOOP_OK
    c.command("QUIT")
    c.close()
    assert wait_until(lambda: "reason=idle timeout" in srv.log(), 5)


def stalled_client(srv, rcvbuf=4096):
    """A RawClient with a small receive buffer (set before connect, so the
    window it advertises stays small): a reader that stops reading stalls
    the server's sends after a few kilobytes instead of megabytes."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(10)
    sock.connect((srv.host, srv.port))
    c = RawClient.__new__(RawClient)
    c.sock, c.buf = sock, b""
    assert c.readline().startswith(b"+OK")
    return c


def stall_size():
    """Megabytes a stalled RETR must have so that it cannot all sit in the
    server's socket send buffer (autotuned up to tcp_wmem's maximum)."""
    try:
        with open("/proc/sys/net/ipv4/tcp_wmem") as f:
            wmem_max = int(f.read().split()[2])
    except (OSError, ValueError, IndexError):
        wmem_max = 4 << 20
    return max(8, 2 * wmem_max // (1 << 20) + 2)


def big_body(megabytes):
    line = b"0123456789" * 7 + b"\n"  # 71 octets, nothing to stuff
    return b"Subject: big\n\n" + line * (megabytes * 1024 * 1024 // len(line))


def test_send_timeout_commits_nothing(make_server):
    """Issue 3 / RFC 1939 §3 and §6: a session that ends on a send timeout
    never reaches UPDATE. DELE 1, then a RETR the client stops reading: the
    server gives up after send_timeout, and every message is still there,
    under its old name (not moved to cur/ as "seen" either)."""
    srv = make_server(start=False, settings={"pop3": {"send_timeout": "1s"}})
    srv.add_user(USER, "secret")
    srv.deliver(USER, MSG)
    srv.deliver(USER, big_body(stall_size()))
    srv.deliver(USER, b"Subject: third\n\nthree\n")
    srv.start()
    before = srv.messages(USER)
    assert len(before) == 3

    c = stalled_client(srv)
    assert c.command("USER " + USER).startswith(b"+OK")
    assert c.command("PASS secret").startswith(b"+OK Maildrop has 3 messages")
    assert c.command("RETR 1").startswith(b"+OK")  # retrieved: would become Seen
    c.read_multiline()
    assert c.command("DELE 1") == b"+OK Message 1 deleted"
    assert c.command("DELE 3").startswith(b"+OK")
    c.send("RETR 2\r\n")  # ... and read nothing more
    t0 = time.monotonic()
    assert wait_until(lambda: "reason=send timeout" in srv.log(), 20), \
        "no send timeout after 20 s:\n" + srv.log()
    assert time.monotonic() - t0 >= 0.9
    ends = session_end_lines(srv, USER)
    assert len(ends) == 1 and "reason=send timeout" in ends[0], ends
    assert " state=transaction " in ends[0], ends  # never reached UPDATE
    assert " deleted=0 " in ends[0], ends
    c.close()

    # Nothing committed: same files, same names, same directories.
    assert srv.messages(USER) == before
    assert sorted(p.name for p in (srv.maildir(USER) / "new").iterdir()) == before
    # And the lock went with the session: a new one sees all three.
    c = login(srv)
    assert c.command("STAT").startswith(b"+OK 3 "), srv.log()
    assert c.command("QUIT") == b"+OK Bye, 3 messages left"
    c.close()
    assert srv.messages(USER) == before


def test_idle_timeout_below_10_minutes_refused(make_server):
    srv = make_server(start=False, settings={"pop3": {"idle_timeout": "599s"}})
    srv.add_user(USER, "secret")
    srv.deliver(USER, MSG)
    srv.write_config()
    text = srv.config_path.read_text().splitlines()
    lineno = 1 + next(i for i, l in enumerate(text) if l.startswith("idle_timeout"))
    r = run_pigeond(srv.config_path)
    assert r.returncode == EX_CONFIG, (r.returncode, r.stderr)
    assert "pigeon.conf:%d:" % lineno in r.stderr, r.stderr
    assert "idle_timeout" in r.stderr, r.stderr
    # Ten minutes exactly is the RFC 1939 minimum and is accepted.
    srv.settings["pop3"]["idle_timeout"] = "10m"
    srv.start()
    c = login(srv)
    assert c.command("QUIT").startswith(b"+OK")
    c.close()


# In each case the last line is the one at fault.
@pytest.mark.parametrize("bad, words", [
    (["[pop3]", "no_such_setting = 1"], ["unknown setting", "no_such_setting"]),
    (["[nosuchsection]"], ["unknown section", "nosuchsection"]),
    (["[server]", "max_sessions = lots"], ["max_sessions", "lots"]),
    (["[server]", "max_sessions = 0"], ["max_sessions"]),
    (["[pop3]", "preauth_timeout = soon"], ["preauth_timeout", "soon"]),
    (["[auth]", "max_failures = -1"], ["max_failures"]),
    (["[log]", "level = loud"], ["level", "loud"]),
    (["[pop3]", "this line has no equals sign"], ["syntax"]),
])
def test_config_error_names_file_line_and_problem(tmp_path, bad, words):
    lines = base_config(tmp_path) + bad
    cfg = write_lines(tmp_path / "pigeon.conf", lines)
    r = run_pigeond(cfg)
    assert r.returncode == EX_CONFIG, (r.returncode, r.stderr)
    assert "%s:%d:" % (cfg, len(lines)) in r.stderr, r.stderr
    for w in words:
        assert w in r.stderr, (w, r.stderr)


def test_config_missing_file(tmp_path):
    missing = tmp_path / "nope" / "pigeon.conf"
    r = run_pigeond(missing)
    assert r.returncode != 0
    assert r.returncode == EX_CONFIG, (r.returncode, r.stderr)
    assert str(missing) in r.stderr, r.stderr
    assert "No such file" in r.stderr, r.stderr


# ---- session limit ---------------------------------------------------------------------


def test_global_session_limit(make_server):
    srv = limited_server(make_server, {"server": {"max_sessions": "3"}})
    assert wait_until(lambda: sessions_settled(srv), 5)
    clients = [srv.raw() for _ in range(3)]
    c = RawClient(srv.host, srv.port, timeout=10)
    resp = c.readline()
    assert resp.startswith(b"-ERR [SYS/TEMP]"), resp
    assert c.is_closed()
    c.close()
    # The three are unaffected.
    for cl in clients:
        assert cl.command("CAPA").startswith(b"+OK")
        cl.read_multiline()
    clients.pop().close()
    deadline = time.monotonic() + 10
    while True:
        c = RawClient(srv.host, srv.port, timeout=10)
        resp = c.readline()
        if resp.startswith(b"+OK"):
            break
        c.close()
        assert time.monotonic() < deadline, "no slot freed after a client left: %r" % resp
        time.sleep(0.05)
    assert c.command("USER alice").startswith(b"+OK")
    assert c.command("PASS secret").startswith(b"+OK")
    assert c.command("QUIT").startswith(b"+OK")
    c.close()
    for cl in clients:
        cl.close()
    assert "session limit (3) reached" in srv.log()


# ---- the session-end log line and secrets in the log ---------------------------------------------


def session_end_lines(srv, user):
    return [l for l in srv.log().splitlines()
            if "session end:" in l and " user=%s " % user in l]


def test_session_end_log_line(make_server):
    srv = make_server(start=False)
    srv.add_user(USER, SECRET)
    msgs = [b"Subject: 1\n\none\n", b"Subject: 2\n\ntwo\n", b"Subject: 3\n\nthree\n"]
    for m in msgs:
        srv.deliver(USER, m)
    srv.start()
    c = login(srv, SECRET)
    assert c.command("RETR 1").startswith(b"+OK")
    c.read_multiline()
    assert c.command("RETR 2").startswith(b"+OK")
    c.read_multiline()
    assert c.command("DELE 1").startswith(b"+OK")
    assert c.command("QUIT").startswith(b"+OK")
    assert c.is_closed()
    c.close()
    assert wait_until(lambda: session_end_lines(srv, USER), 5), srv.log()
    time.sleep(0.1)
    lines = session_end_lines(srv, USER)
    assert len(lines) == 1, lines
    line = lines[0]
    fields = dict(re.findall(r"(\w+)=(\S+)", line.split("session end:", 1)[1]))
    assert fields["user"] == USER
    assert fields["ip"] == "127.0.0.1"
    assert fields["retrieved"] == "2"
    assert fields["deleted"] == "1"
    assert fields["reason"] == "quit"
    want_bytes = sum(len(m.replace(b"\n", b"\r\n")) for m in msgs[:2])
    assert int(fields["bytes"]) >= want_bytes, line
    assert re.fullmatch(r"\d+(\.\d+)?s?", fields["duration"]), line
    assert SECRET not in srv.log()


def test_password_never_logged(make_server):
    srv = make_server(start=False)
    srv.add_user(USER, SECRET)
    srv.deliver(USER, b"Subject: x\n\ny\n")
    srv.start()
    b64_plain = base64.b64encode(b"\0alice\0" + SECRET.encode()).decode()
    b64_secret = base64.b64encode(SECRET.encode()).decode()
    b64_user = base64.b64encode(b"alice").decode()

    # Failed logins: wrong user with the real password, and a near miss.
    c = srv.raw()
    assert c.command("USER bob").startswith(b"+OK")
    assert c.command("PASS " + SECRET).startswith(b"-ERR")
    assert c.command("USER alice").startswith(b"+OK")
    assert c.command("PASS " + SECRET + "x").startswith(b"-ERR")
    c.close()
    # An overlong PASS line.
    c = srv.raw()
    assert c.command("USER alice").startswith(b"+OK")
    assert c.command("PASS " + SECRET * 20).startswith(b"-ERR")
    assert c.command("PASS " + SECRET).startswith(b"-ERR")  # USER was forgotten
    c.command("QUIT")
    c.close()
    # PASS before USER.
    c = srv.raw()
    assert c.command("PASS " + SECRET).startswith(b"-ERR")
    c.close()
    # AUTH PLAIN: initial response, then as a continuation, then a wrong user.
    c = srv.raw()
    assert c.command("AUTH PLAIN " + b64_plain).startswith(b"+OK")
    c.command("QUIT")
    c.close()
    c = srv.raw()
    assert c.command("AUTH PLAIN").startswith(b"+")
    assert c.command(b64_plain).startswith(b"+OK")
    c.command("QUIT")
    c.close()
    c = srv.raw()
    bad = base64.b64encode(b"\0mallory\0" + SECRET.encode()).decode()
    assert c.command("AUTH PLAIN " + bad).startswith(b"-ERR")
    c.close()
    # AUTH LOGIN.
    c = srv.raw()
    assert c.command("AUTH LOGIN").startswith(b"+ ")
    assert c.command(b64_user).startswith(b"+ ")
    assert c.command(b64_secret).startswith(b"+OK")
    c.command("QUIT")
    c.close()
    # A USER/PASS login that succeeds, and one cut off by a reset.
    c = login(srv, SECRET)
    c.command("QUIT")
    c.close()
    s = socket.create_connection((srv.host, srv.port), timeout=5)
    s.sendall(("USER alice\r\nPASS %s\r\n" % SECRET).encode())
    s.close()

    assert wait_until(lambda: sessions_settled(srv), 10)
    srv.stop()  # also flushes everything the server had to say
    log = srv.log()
    assert log.count("login: user=alice") >= 4, log
    for secret in (SECRET, b64_plain, b64_secret, bad, SECRET[:8]):
        assert secret not in log, "%r found in the log:\n%s" % (secret, log)


# ---- an empty maildrop ----------------------------------------------------------------


def test_login_to_empty_maildrop(make_server):
    """Zero messages is the smallest maildrop; the login must not crash."""
    srv = make_server(start=False)
    srv.add_user(USER, "secret")
    srv.start()
    c = srv.raw()
    assert c.command("USER alice").startswith(b"+OK")
    resp = c.command("PASS secret")
    assert resp.startswith(b"+OK Maildrop has 0 messages"), resp
    assert c.command("STAT") == b"+OK 0 0"
    assert c.command("LIST").startswith(b"+OK")
    assert c.read_multiline() == []
    assert c.command("QUIT").startswith(b"+OK")
    c.close()
    assert srv.proc.poll() is None
    # Again, now that the size cache exists.
    c = login(srv)
    assert c.command("STAT") == b"+OK 0 0"
    assert c.command("QUIT").startswith(b"+OK")
    c.close()


def test_login_after_size_cache_lost_its_entries(make_server):
    """A maildrop whose size cache holds no entries (every cached message was
    deleted) and whose only message carries its size in ",W=": the login must
    still work, every time."""
    srv = make_server(start=False)
    srv.add_user(USER, "secret")
    srv.deliver(USER, b"Subject: a\n\nA\n")
    srv.start()
    c = login(srv)
    assert c.command("DELE 1").startswith(b"+OK")
    assert c.command("QUIT").startswith(b"+OK")
    c.close()
    body = b"Subject: b\r\n\r\nB\r\n"
    srv.deliver(USER, body, name="1700000100.M1P1.host,W=%d" % len(body))
    for _ in range(2):
        c = srv.raw()
        assert c.command("USER alice").startswith(b"+OK")
        resp = c.command("PASS secret")
        assert resp == b"+OK Maildrop has 1 messages (%d octets)" % len(body), resp
        assert c.command("QUIT").startswith(b"+OK")
        c.close()
    assert srv.proc.poll() is None


# ---- plaintext policy ----------------------------------------------------------------


def test_loopback_may_use_user_pass(server):
    c = server.raw()
    assert c.command("CAPA").startswith(b"+OK")
    capa = c.read_multiline()
    assert b"USER" in capa
    assert any(l.startswith(b"SASL") and b"PLAIN" in l for l in capa), capa
    assert c.command("USER alice").startswith(b"+OK")
    assert c.command("PASS secret").startswith(b"+OK")
    c.command("QUIT")
    c.close()


# Untrusted (non-loopback) addresses are refused USER, PASS and AUTH PLAIN/LOGIN
# until STLS: test_tls.py test_plaintext_refused_on_untrusted_address, with a
# client bound to 127.0.0.2 and trusted_networks = 127.0.0.1/32.

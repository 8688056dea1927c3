"""POP3 behaviour of pigeond over real sockets (spec/pop3.md sections 3-13):
sizes, deletion only at QUIT, locking, UIDL stability, Maildir flags, the
EXPIRE / LOGIN-DELAY / IMPLEMENTATION settings, authentication, and what
poplib and curl make of it.
"""
import base64
import fcntl
import hashlib
import re
import shutil
import socket
import subprocess
import time

import pytest

from conftest import give_tree

# pigeond's answer to NOOP (RFC 1957: "+OK" is followed by a space and text).
NOOP_OK = b"+OK Still here"

# ---- helpers ------------------------------------------------------------------

UIDL_LINE = re.compile(rb"^([1-9][0-9]*) ([\x21-\x7e]{1,70})$")
AUTH_FAILED = b"-ERR [AUTH] Authentication failed"


def crlf(data):
    """The message as POP3 sends it, before stuffing: every line ended by CRLF
    (bare LF converted), a final CRLF added, NUL shown as 0x80 (outlook_no_nuls)."""
    if not data:
        return b""
    lines = re.split(rb"\r?\n", data)
    if data.endswith(b"\n"):
        lines.pop()
    return b"".join(line + b"\r\n" for line in lines).replace(b"\0", b"\x80")


def stuffed(wire):
    out = []
    for line in wire.split(b"\r\n")[:-1] if wire else []:
        out.append((b"." + line if line.startswith(b".") else line) + b"\r\n")
    return b"".join(out) + b".\r\n"


def unstuff(raw):
    """Raw multi-line body (ending in ".CRLF") -> the octets it stands for."""
    assert raw.endswith(b".\r\n"), raw[-20:]
    body = raw[:-3]
    if not body:
        return b""
    assert body.endswith(b"\r\n"), body[-20:]
    lines = body[:-2].split(b"\r\n")
    return b"".join((line[1:] if line.startswith(b".") else line) + b"\r\n" for line in lines)


def login_user(server, user="alice", password="secret", count=None):
    c = server.raw()
    assert c.command("USER %s" % user) == b"+OK Send your password"
    line = c.command("PASS %s" % password)
    assert line.startswith(b"+OK Maildrop has "), line
    if count is not None:
        assert line.startswith(b"+OK Maildrop has %d messages (" % count), line
    return c


def try_login(server, user="alice", password="secret"):
    c = server.raw()
    assert c.command("USER %s" % user) == b"+OK Send your password"
    return c, c.command("PASS %s" % password)


def capa(c):
    assert c.command("CAPA") == b"+OK Capability list follows"
    lines = c.read_multiline()
    assert lines and all(lines), lines
    return [line.decode() for line in lines]


def cap_tags(caps):
    return {line.split()[0].upper() for line in caps}


def plain_b64(user, password, authzid=""):
    return base64.b64encode(("%s\0%s\0%s" % (authzid, user, password)).encode()).decode()


def b64(s):
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def retr_raw(c, n, size=None):
    line = c.command("RETR %d" % n)
    if size is None:
        assert re.match(rb"^\+OK [0-9]+ octets$", line), line
    else:
        assert line == b"+OK %d octets" % size, line
    return c.read_multiline_raw()


def uidl_listing(c):
    assert c.command("UIDL") == b"+OK Unique-ID listing follows"
    out = []
    for line in c.read_multiline():
        m = UIDL_LINE.match(line)
        assert m, "bad UIDL line %r" % line
        out.append((int(m.group(1)), m.group(2)))
    return out


def subject_of(c, n):
    assert c.command("TOP %d 0" % n) == b"+OK Top of message follows"
    for line in c.read_multiline():
        if line.lower().startswith(b"subject:"):
            return line.split(b":", 1)[1].strip()
    return None


def quit_ok(c, left):
    assert c.command("QUIT") == b"+OK Bye, %d messages left" % left
    assert c.is_closed(5), "server did not close after QUIT"
    c.close()


def files(server, user="alice"):
    """{subdir/name: content} of the user's maildrop."""
    md = server.maildir(user)
    return {"%s/%s" % (sub, p.name): p.read_bytes()
            for sub in ("new", "cur") for p in (md / sub).iterdir()}


# ---- a full session -----------------------------------------------------------


def test_full_session(server):
    m1 = b"From: a@example.org\nSubject: one\n\nfirst body\n"
    m2 = b"From: b@example.org\nSubject: two\n\nsecond\nbody\n"
    server.deliver("alice", m1)
    server.deliver("alice", m2)
    s1, s2 = len(crlf(m1)), len(crlf(m2))
    c = server.raw(greeting=False)
    assert c.readline() == b"+OK Pigeon POP3 server ready"
    caps = capa(c)
    assert {"TOP", "USER", "SASL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING",
            "UIDL"} <= cap_tags(caps), caps
    assert "STAT" not in cap_tags(caps)
    assert c.command("STAT") == b"-ERR Command not valid in this state"
    assert c.command("PASS secret") == b"-ERR [AUTH] Send USER first"
    assert c.command("user alice") == b"+OK Send your password"  # case-insensitive
    assert c.command("Pass secret") == b"+OK Maildrop has 2 messages (%d octets)" % (s1 + s2)
    assert c.command("USER alice") == b"-ERR Command not valid in this state"
    assert c.command("STAT") == b"+OK 2 %d" % (s1 + s2)
    assert c.command("LIST") == b"+OK 2 messages (%d octets)" % (s1 + s2)
    assert c.read_multiline() == [b"1 %d" % s1, b"2 %d" % s2]
    assert c.command("LIST 2") == b"+OK 2 %d" % s2
    assert c.command("LIST 3") == b"-ERR No such message"
    assert c.command("LIST 0") == b"-ERR No such message"
    uids = uidl_listing(c)
    assert [n for n, _ in uids] == [1, 2]
    assert c.command("UIDL 1") == b"+OK 1 " + uids[0][1]
    assert c.command("TOP 2 1") == b"+OK Top of message follows"
    assert c.read_multiline() == [b"From: b@example.org", b"Subject: two", b"", b"second"]
    assert retr_raw(c, 1, s1) == stuffed(crlf(m1))
    assert c.command("NOOP") == NOOP_OK
    assert c.command("DELE 1") == b"+OK Message 1 deleted"
    assert c.command("DELE 1") == b"-ERR Message 1 already deleted"
    assert c.command("RETR 1") == b"-ERR Message 1 already deleted"
    assert c.command("STAT") == b"+OK 1 %d" % s2
    assert c.command("LIST") == b"+OK 1 messages (%d octets)" % s2
    assert c.read_multiline() == [b"2 %d" % s2]
    assert c.command("UIDL") == b"+OK Unique-ID listing follows"
    assert c.read_multiline() == [b"2 " + uids[1][1]]
    # numbers never shift: message 2 is still message 2
    assert retr_raw(c, 2, s2) == stuffed(crlf(m2))
    quit_ok(c, 1)
    assert list(files(server).values()) == [m2]


def test_empty_maildrop_session(server):
    """Logging in to a maildrop with no message at all."""
    c = server.raw()
    assert c.command("USER alice") == b"+OK Send your password"
    assert c.command("PASS secret") == b"+OK Maildrop has 0 messages (0 octets)"
    assert c.command("STAT") == b"+OK 0 0"
    assert c.command("LIST") == b"+OK 0 messages (0 octets)"
    assert c.read_multiline() == []
    assert c.command("UIDL") == b"+OK Unique-ID listing follows"
    assert c.read_multiline() == []
    assert c.command("RETR 1") == b"-ERR No such message"
    quit_ok(c, 0)


# ---- sizes --------------------------------------------------------------------

SIZE_CASES = {
    "bare-lf": (b"Subject: lf\n\none\ntwo\n", None),
    "crlf": (b"Subject: crlf\r\n\r\none\r\ntwo\r\n", None),
    "dot-lines": (b"Subject: dots\n\n.\n..\n.x\n...\nend\n.", None),
    "no-final-newline": (b"Subject: nfn\n\nno newline at the end", None),
    "empty": (b"", None),
    "only-newline": (b"\n", None),
    "8bit": (b"Subject: 8bit\n\n\xe2\x82\xac \xff\xfe\x80\x01\x7f\ttab\n", None),
    "nul": (b"Subject: nul\n\na\0b\0\0c\n", None),
    "bare-cr-inside": (b"Subject: cr\n\na\rb\r\rc\n", None),
    "trailing-bare-cr": (b"Subject: cr\n\nabc\r", b"Subject: cr\r\n\r\nabc\r\n"),
    "mixed": (b"Subject: mixed\r\n\nx\r\ny\n\r\n", None),
    "long-line": (b"Subject: long\n\n" + b"z" * 200000 + b"\n", None),
    "many-lines": (b"Subject: many\n\n" + b".\n" * 20000, None),
}


@pytest.mark.parametrize("case", sorted(SIZE_CASES))
def test_sizes_equal_octets_on_the_wire(server, case):
    data, expected = SIZE_CASES[case]
    expected = crlf(data) if expected is None else expected
    server.deliver("alice", b"Subject: before\n\nx\n")
    server.deliver("alice", data)
    c = login_user(server, count=2)
    first = len(crlf(b"Subject: before\n\nx\n"))
    assert c.command("LIST 2") == b"+OK 2 %d" % len(expected)
    assert c.command("STAT") == b"+OK 2 %d" % (first + len(expected))
    raw = retr_raw(c, 2, len(expected))
    assert len(unstuff(raw)) == len(expected)
    assert raw == stuffed(expected)
    # the size on a second look (size cache) is the same
    quit_ok(c, 2)
    c = login_user(server, count=2)
    assert c.command("LIST 2") == b"+OK 2 %d" % len(expected)
    assert unstuff(retr_raw(c, 2, len(expected))) == expected
    quit_ok(c, 2)


def test_sizes_from_dovecot_w_names(server):
    """",W=<crlf size>" in the name is the size; it must agree with the bytes."""
    m1 = b"Subject: w1\n\nline\n.dot\n"
    m2 = b"Subject: w2\r\n\r\ncrlf body\r\n"
    m3 = b"Subject: w3\n\nin cur with flags\n"
    server.deliver("alice", m1, name="1700000001.M1P1.host,S=%d,W=%d" % (len(m1), len(crlf(m1))))
    server.deliver("alice", m2, name="1700000002.M2P1.host,S=%d,W=%d" % (len(m2), len(crlf(m2))))
    server.deliver("alice", m3, subdir="cur",
                   name="1700000003.M3P1.host,S=%d,W=%d:2,F" % (len(m3), len(crlf(m3))))
    sizes = [len(crlf(m)) for m in (m1, m2, m3)]
    for _ in range(2):
        c = login_user(server, count=3)
        assert c.command("STAT") == b"+OK 3 %d" % sum(sizes)
        assert c.command("LIST") == b"+OK 3 messages (%d octets)" % sum(sizes)
        assert c.read_multiline() == [b"%d %d" % (i, s) for i, s in enumerate(sizes, 1)]
        for i, m in enumerate((m1, m2, m3), 1):
            raw = retr_raw(c, i, sizes[i - 1])
            assert unstuff(raw) == crlf(m)
        quit_ok(c, 3)


def test_size_cache_after_all_cached_messages_are_gone(server):
    """A message without W= gets a size-cache entry; once it is deleted and only
    W=-named messages remain, later logins must still work."""
    plain = b"Subject: plain\n\nno size in the name\n"
    server.deliver("alice", plain)
    c = login_user(server, count=1)
    assert c.command("LIST 1") == b"+OK 1 %d" % len(crlf(plain))
    assert c.command("DELE 1") == b"+OK Message 1 deleted"
    quit_ok(c, 0)
    m = b"Subject: w\n\nbody\n"
    server.deliver("alice", m, name="1700000009.M9P9.host,S=%d,W=%d" % (len(m), len(crlf(m))))
    for _ in range(3):
        c = login_user(server, count=1)
        assert c.command("LIST 1") == b"+OK 1 %d" % len(crlf(m))
        quit_ok(c, 1)


# ---- deletion happens only at QUIT -------------------------------------------


def test_dele_then_dropped_connection_deletes_nothing(server):
    m1, m2 = b"Subject: a\n\n1\n", b"Subject: b\n\n2\n"
    server.deliver("alice", m1)
    server.deliver("alice", m2)
    before = files(server)
    c = login_user(server, count=2)
    assert retr_raw(c, 1) == stuffed(crlf(m1))
    assert c.command("DELE 1") == b"+OK Message 1 deleted"
    assert c.command("DELE 2") == b"+OK Message 2 deleted"
    c.close()  # TCP gone, no QUIT
    c = login_user(server, count=2)
    assert [n for n, _ in uidl_listing(c)] == [1, 2]
    assert files(server) == before  # not even marked seen: no UPDATE happened
    quit_ok(c, 2)


def test_dele_then_reset_connection_deletes_nothing(server):
    server.deliver("alice", b"Subject: a\n\n1\n")
    before = files(server)
    c = login_user(server, count=1)
    assert c.command("DELE 1") == b"+OK Message 1 deleted"
    # an abortive close (RST)
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
    c.close()
    c = login_user(server, count=1)
    quit_ok(c, 1)
    assert files(server) == before


def test_dele_rset_quit_deletes_nothing(server):
    msgs = [b"Subject: a\n\n1\n", b"Subject: b\n\n2\n", b"Subject: c\n\n3\n"]
    for m in msgs:
        server.deliver("alice", m)
    before = files(server)
    total = sum(len(crlf(m)) for m in msgs)
    c = login_user(server, count=3)
    assert c.command("DELE 1") == b"+OK Message 1 deleted"
    assert c.command("DELE 3") == b"+OK Message 3 deleted"
    assert c.command("STAT") == b"+OK 1 %d" % len(crlf(msgs[1]))
    assert c.command("RSET") == b"+OK Maildrop has 3 messages (%d octets)" % total
    assert c.command("STAT") == b"+OK 3 %d" % total
    assert c.command("LIST 3") == b"+OK 3 %d" % len(crlf(msgs[2]))
    quit_ok(c, 3)
    assert files(server) == before


def test_dele_quit_removes_only_marked(server):
    msgs = [b"Subject: a\n\n1\n", b"Subject: b\n\n2\n", b"Subject: c\n\n3\n"]
    paths = [server.deliver("alice", m) for m in msgs]
    c = login_user(server, count=3)
    assert c.command("DELE 2") == b"+OK Message 2 deleted"
    quit_ok(c, 2)
    assert not paths[1].exists()
    assert paths[0].exists() and paths[2].exists()  # untouched, still in new/
    c = login_user(server, count=2)
    quit_ok(c, 2)


def test_dele_quit_then_eof_is_still_answered(server):
    """"DELE 1, QUIT" followed at once by the client's half-close."""
    p = server.deliver("alice", b"Subject: a\n\n1\n")
    c = login_user(server, count=1)
    c.send("DELE 1\r\nQUIT\r\n")
    c.sock.shutdown(socket.SHUT_WR)
    assert c.readline() == b"+OK Message 1 deleted"
    assert c.readline() == b"+OK Bye, 0 messages left"
    assert c.is_closed(5)
    c.close()
    assert not p.exists()


# ---- locking ------------------------------------------------------------------


def test_in_use_on_second_login_is_fast(make_server):
    srv = make_server(settings={"auth": {"failure_delay": "2s"}}, start=False)
    srv.add_user("alice", "secret")
    srv.start()
    srv.deliver("alice", b"Subject: a\n\n1\n")
    first = login_user(srv, count=1)

    second = srv.raw()
    assert second.command("USER alice") == b"+OK Send your password"
    t0 = time.monotonic()
    line = second.command("PASS secret")
    assert time.monotonic() - t0 < 1.0, "the [IN-USE] answer took too long"
    assert line == b"-ERR [IN-USE] Maildrop is locked: in use by another session"

    t0 = time.monotonic()
    line = second.command("AUTH PLAIN " + plain_b64("alice", "secret"))
    assert time.monotonic() - t0 < 1.0
    assert line.startswith(b"-ERR [IN-USE]"), line

    # the first session is unaffected and its QUIT releases the lock at once
    assert first.command("STAT").startswith(b"+OK 1 ")
    quit_ok(first, 1)
    assert second.command("USER alice") == b"+OK Send your password"
    assert second.command("PASS secret").startswith(b"+OK Maildrop has 1 messages")
    quit_ok(second, 1)


# ---- UIDL ---------------------------------------------------------------------


def uid_map(server, count):
    """{subject: uid} of one session, checking the UIDL rules on the way."""
    c = login_user(server, count=count)
    uids = uidl_listing(c)
    assert [n for n, _ in uids] == list(range(1, count + 1))
    values = [u for _, u in uids]
    assert len(set(values)) == count, "UIDLs not unique: %r" % values
    for u in values:
        assert 1 <= len(u) <= 70 and all(0x21 <= b <= 0x7E for b in u), u
    result = {}
    for n, u in uids:
        assert c.command("UIDL %d" % n) == b"+OK %d %s" % (n, u)
        result[subject_of(c, n)] = u
    return c, result


def test_uidl_stable_across_sessions_moves_and_restart(server):
    names = {
        b"plain": ("1700000001.M1P1.host", "new"),
        b"long": ("1700000002." + "L" * 120, "new"),
        b"space": ("1700000003.M3P1.with space", "new"),
        b"utf8": ("1700000004.M4P1.h\u00e9st", "new"),
        b"wsize": ("1700000005.M5P1.host,S=21,W=24", "new"),
        b"cur-flagged": ("1700000006.M6P1.host:2,F", "cur"),
        b"exactly-70": ("1700000007." + "x" * 59, "new"),
        b"71": ("1700000008." + "y" * 60, "new"),
    }
    for subject, (name, sub) in names.items():
        server.deliver("alice", b"Subject: " + subject + b"\n\nbody\n", name=name, subdir=sub)
    c, first = uid_map(server, len(names))
    assert set(first) == set(names)
    # retrieve all of them: QUIT moves them to cur/ and renames them
    for n in range(1, len(names) + 1):
        retr_raw(c, n)
    quit_ok(c, len(names))
    assert all(n.startswith("cur/") for n in files(server)), files(server)
    c, second = uid_map(server, len(names))
    assert second == first
    # delete one
    victim = None
    for n in range(1, len(names) + 1):
        if subject_of(c, n) == b"plain":
            victim = n
    assert c.command("DELE %d" % victim) == b"+OK Message %d deleted" % victim
    quit_ok(c, len(names) - 1)
    server.restart()
    server.deliver("alice", b"Subject: newcomer\n\nbody\n", name="1700000099.M99P1.host")
    c, third = uid_map(server, len(names))
    quit_ok(c, len(names))
    del first[b"plain"]
    assert {k: v for k, v in third.items() if k != b"newcomer"} == first
    assert third[b"newcomer"] not in set(first.values()) | {second[b"plain"]}


# ---- Maildir flags after QUIT ---------------------------------------------------


def seen_setup(server):
    server.deliver("alice", b"Subject: 1\n\nx\n", name="1700000001.M1P1.host")
    server.deliver("alice", b"Subject: 2\n\nx\n", name="1700000002.M2P1.host")
    server.deliver("alice", b"Subject: 3\n\nx\n", name="1700000003.M3P1.host:2,F", subdir="cur")
    server.deliver("alice", b"Subject: 4\n\nx\n", name="1700000004.M4P1.host:2,T", subdir="cur")
    server.deliver("alice", b"Subject: 5\n\nx\n", name="1700000005.M5P1.host:2,RS", subdir="cur")
    server.deliver("alice", b"Subject: 6\n\nx\n", name="1700000006.M6P1.host")
    c = login_user(server, count=6)
    for n in (1, 3, 4, 5, 6):
        retr_raw(c, n)
    assert c.command("TOP 2 0").startswith(b"+OK")
    c.read_multiline()
    assert c.command("DELE 6") == b"+OK Message 6 deleted"
    quit_ok(c, 5)
    return sorted(files(server))


def test_retrieved_messages_marked_seen(server):
    assert seen_setup(server) == sorted([
        "cur/1700000001.M1P1.host:2,S",
        "new/1700000002.M2P1.host",        # only TOP: not retrieved
        "cur/1700000003.M3P1.host:2,FS",
        "cur/1700000004.M4P1.host:2,ST",   # flags stay in ASCII order
        "cur/1700000005.M5P1.host:2,RS",   # already seen
    ])


def test_mark_seen_no_leaves_files_alone(make_server):
    srv = make_server(settings={"mail": {"mark_seen": "no"}}, start=False)
    srv.add_user("alice", "secret")
    srv.start()
    assert seen_setup(srv) == sorted([
        "new/1700000001.M1P1.host",
        "new/1700000002.M2P1.host",
        "cur/1700000003.M3P1.host:2,F",
        "cur/1700000004.M4P1.host:2,T",
        "cur/1700000005.M5P1.host:2,RS",
    ])


# ---- EXPIRE, LOGIN-DELAY, IMPLEMENTATION --------------------------------------


def test_default_capabilities_have_no_policy_lines(server):
    server.deliver("alice", b"Subject: a\n\n1\n")
    c = server.raw()
    before = capa(c)
    for tag in ("EXPIRE", "LOGIN-DELAY", "IMPLEMENTATION", "STLS"):
        assert tag not in cap_tags(before), before
    c.close()
    c = login_user(server)
    assert capa(c) == before
    quit_ok(c, 1)


def test_expire_zero_deletes_retrieved_at_quit(make_server):
    srv = make_server(settings={"pop3": {"expire": "0"}}, start=False)
    srv.add_user("alice", "secret")
    srv.start()
    paths = [srv.deliver("alice", b"Subject: %d\n\nx\n" % i) for i in range(1, 4)]
    c = srv.raw()
    assert "EXPIRE 0" in capa(c)
    c.close()
    # a session that does not reach UPDATE removes nothing
    c = login_user(srv, count=3)
    retr_raw(c, 1)
    c.close()
    assert all(p.exists() for p in paths)
    c = login_user(srv, count=3)
    assert "EXPIRE 0" in capa(c)
    retr_raw(c, 1)
    assert c.command("TOP 2 0").startswith(b"+OK")  # TOP is not a retrieval
    c.read_multiline()
    quit_ok(c, 2)
    assert not paths[0].exists()
    assert paths[1].exists() and paths[2].exists()
    c = login_user(srv, count=2)
    quit_ok(c, 2)


def test_expire_never_is_advertised_and_keeps_mail(make_server):
    srv = make_server(settings={"pop3": {"expire": "never"}}, start=False)
    srv.add_user("alice", "secret")
    srv.start()
    srv.deliver("alice", b"Subject: 1\n\nx\n")
    c = login_user(srv, count=1)
    assert "EXPIRE NEVER" in capa(c)
    retr_raw(c, 1)
    quit_ok(c, 1)
    assert len(srv.messages("alice")) == 1


def test_login_delay_advertised_and_enforced(make_server):
    srv = make_server(settings={"pop3": {"login_delay": "30"}}, start=False)
    srv.add_user("alice", "secret")
    srv.add_user("bob", "hunter2")
    srv.start()
    srv.deliver("alice", b"Subject: a\n\n1\n")
    c = srv.raw()
    assert "LOGIN-DELAY 30" in capa(c)
    assert c.command("USER alice") == b"+OK Send your password"
    assert c.command("PASS secret").startswith(b"+OK Maildrop has 1 messages")
    assert "LOGIN-DELAY 30" in capa(c)
    quit_ok(c, 1)

    c, line = try_login(srv)
    assert line.startswith(b"-ERR [LOGIN-DELAY] "), line
    # bad credentials are reported as such, not as a delay
    assert c.command("USER alice") == b"+OK Send your password"
    assert c.command("PASS wrong") == AUTH_FAILED
    line = c.command("AUTH PLAIN " + plain_b64("alice", "secret"))
    assert line.startswith(b"-ERR [LOGIN-DELAY] "), line
    c.close()
    # another user is not affected
    srv.deliver("bob", b"Subject: b\n\n1\n")
    c = login_user(srv, "bob", "hunter2", count=1)
    quit_ok(c, 1)


def test_login_refused_for_a_busy_maildrop_does_not_start_the_login_delay(make_server):
    """A login answered [IN-USE] got no maildrop: the client's retry once the
    maildrop is free must not be told [LOGIN-DELAY]."""
    srv = make_server(settings={"pop3": {"login_delay": "30"}}, start=False)
    srv.add_user("alice", "secret")
    srv.start()
    srv.deliver("alice", b"Subject: a\n\n1\n")
    lock_path = srv.maildir("alice") / "pigeon-pop3.lock"
    # another program holds the maildrop (a POSIX lock conflicts with
    # pigeond's open file description lock)
    with open(lock_path, "a+b") as holder:
        give_tree(srv.mailroot)
        fcntl.lockf(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
        c = srv.raw()
        assert c.command("USER alice") == b"+OK Send your password"
        line = c.command("PASS secret")
        assert line.startswith(b"-ERR [IN-USE]"), line
        c.close()
        fcntl.lockf(holder, fcntl.LOCK_UN)
    c = srv.raw()
    assert c.command("USER alice") == b"+OK Send your password"
    line = c.command("PASS secret")
    assert line.startswith(b"+OK Maildrop has 1 messages"), line
    quit_ok(c, 1)
    # and that login did start it
    c, line = try_login(srv)
    assert line.startswith(b"-ERR [LOGIN-DELAY] "), line
    c.close()


def test_implementation_only_when_configured(make_server):
    srv = make_server(settings={"pop3": {"implementation": "Pigeon-test 1"}}, start=False)
    srv.add_user("alice", "secret")
    srv.start()
    srv.deliver("alice", b"Subject: a\n\n1\n")
    c = srv.raw()
    assert "IMPLEMENTATION Pigeon-test 1" in capa(c)
    assert c.command("USER alice") == b"+OK Send your password"
    assert c.command("PASS secret").startswith(b"+OK")
    assert "IMPLEMENTATION Pigeon-test 1" in capa(c)
    quit_ok(c, 1)


# ---- authentication -------------------------------------------------------------


def test_unknown_user_and_wrong_password_look_the_same(server):
    answers = []
    for user, password in (("alice", "wrong"), ("nobody", "secret"), ("nobody", "wrong")):
        c = server.raw()
        answers.append((c.command("USER " + user), c.command("PASS " + password)))
        c.close()
    assert answers[0] == answers[1] == answers[2] == (b"+OK Send your password", AUTH_FAILED)
    sasl = []
    for user, password in (("alice", "wrong"), ("nobody", "secret")):
        c = server.raw()
        sasl.append(c.command("AUTH PLAIN " + plain_b64(user, password)))
        assert c.command("AUTH LOGIN " + b64(user)) == b"+ " + b64("Password:").encode()
        sasl.append(c.command(b64(password)))
        c.close()
    assert set(sasl) == {AUTH_FAILED}


def test_auth_plain_with_initial_response(server):
    server.deliver("alice", b"Subject: a\n\n1\n")
    c = server.raw()
    line = c.command("AUTH PLAIN " + plain_b64("alice", "secret"))
    assert line.startswith(b"+OK Maildrop has 1 messages"), line
    assert c.command("STAT").startswith(b"+OK 1 ")
    quit_ok(c, 1)
    # an authorization identity equal to the user is fine, another is not
    c = server.raw()
    assert c.command("auth plain " + plain_b64("alice", "secret", "alice")).startswith(b"+OK")
    quit_ok(c, 1)
    c = server.raw()
    line = c.command("AUTH PLAIN " + plain_b64("alice", "secret", "bob"))
    assert line == b"-ERR [AUTH] Authorization identity not permitted"
    # "=" is an empty response: no credentials in it
    assert c.command("AUTH PLAIN =").startswith(b"-ERR [AUTH]")
    assert c.command("AUTH PLAIN !!!notbase64").startswith(b"-ERR [AUTH]")
    assert c.command("AUTH CRAM-MD5") == b"-ERR Unsupported authentication mechanism"
    assert c.command("AUTH PLAIN " + plain_b64("alice", "secret")).startswith(b"+OK")
    quit_ok(c, 1)


def test_auth_login(server):
    server.deliver("alice", b"Subject: a\n\n1\n")
    c = server.raw()
    assert c.command("AUTH LOGIN") == b"+ " + b64("Username:").encode()
    assert c.command(b64("alice")) == b"+ " + b64("Password:").encode()
    assert c.command(b64("secret")).startswith(b"+OK Maildrop has 1 messages")
    quit_ok(c, 1)
    # the user name as an initial response
    c = server.raw()
    assert c.command("AUTH LOGIN " + b64("alice")) == b"+ " + b64("Password:").encode()
    assert c.command(b64("secret")).startswith(b"+OK Maildrop has 1 messages")
    quit_ok(c, 1)


def test_auth_star_cancels(server):
    server.deliver("alice", b"Subject: a\n\n1\n")
    c = server.raw()
    assert c.command("AUTH PLAIN") == b"+ "
    assert c.command("*") == b"-ERR Authentication cancelled"
    assert c.command("AUTH LOGIN") == b"+ " + b64("Username:").encode()
    assert c.command("*") == b"-ERR Authentication cancelled"
    assert c.command("AUTH LOGIN") == b"+ " + b64("Username:").encode()
    assert c.command(b64("alice")) == b"+ " + b64("Password:").encode()
    assert c.command("*") == b"-ERR Authentication cancelled"
    # back to commands: "*" is now an ordinary (bad) command line
    assert c.command("*").startswith(b"-ERR")
    # a continuation that is not base64 fails the exchange, not the session
    assert c.command("AUTH PLAIN") == b"+ "
    assert c.command("%%%") == b"-ERR [AUTH] Invalid base64 in authentication response"
    assert c.command("AUTH PLAIN") == b"+ "
    assert c.command(plain_b64("alice", "secret")).startswith(b"+OK Maildrop has 1 messages")
    quit_ok(c, 1)


# ---- APOP ---------------------------------------------------------------------

GREETING_TS = re.compile(rb"^\+OK Pigeon POP3 server ready (<[\x21-\x3b\x3d\x3f-\x7e]+@[\x21-\x3b\x3d\x3f-\x7e]+>)$")


def apop_greeting(srv):
    c = srv.raw(greeting=False)
    line = c.readline()
    m = GREETING_TS.match(line)
    assert m, line
    return c, m.group(1)


def digest(ts, secret):
    return hashlib.md5(ts + secret.encode()).hexdigest()


def test_apop(make_server):
    srv = make_server(settings={"auth": {"apop": "yes"}}, start=False)
    srv.add_user("alice", "secret")
    hashed = subprocess.run(["openssl", "passwd", "-6", "-salt", "pigeonsalt", "secret"],
                            capture_output=True, check=True, timeout=10).stdout.decode().strip()
    srv.add_user("carol", stored="{SHA512-CRYPT}" + hashed)
    srv.start()
    srv.deliver("alice", b"Subject: a\n\n1\n")
    srv.deliver("carol", b"Subject: c\n\n1\n")
    # carol's password works with USER/PASS ...
    c = login_user(srv, "carol", "secret", count=1)
    quit_ok(c, 1)

    c, ts = apop_greeting(srv)
    assert c.command("APOP alice %s" % digest(ts, "secret")) == \
        b"+OK Maildrop has 1 messages (%d octets)" % len(crlf(b"Subject: a\n\n1\n"))
    assert c.command("STAT").startswith(b"+OK 1 ")
    quit_ok(c, 1)

    c, ts2 = apop_greeting(srv)
    assert ts2 != ts, "APOP timestamp reused"
    assert c.command("APOP alice %s" % digest(ts, "secret")) == AUTH_FAILED  # replay
    assert c.command("APOP alice %s" % digest(ts2, "wrong")) == AUTH_FAILED
    c.close()
    c, ts3 = apop_greeting(srv)
    assert c.command("APOP nobody %s" % digest(ts3, "secret")) == AUTH_FAILED
    # ... but APOP needs a {PLAIN} secret
    assert c.command("APOP carol %s" % digest(ts3, "secret")) == AUTH_FAILED
    c.close()
    c, ts4 = apop_greeting(srv)
    assert c.command("APOP alice %s" % digest(ts4, "secret").upper()).startswith(b"+OK")
    quit_ok(c, 1)


def test_apop_refused_when_off(server):
    server.deliver("alice", b"Subject: a\n\n1\n")
    c = server.raw(greeting=False)
    line = c.readline()
    assert line == b"+OK Pigeon POP3 server ready"
    assert b"<" not in line
    line = c.command("APOP alice " + "0" * 32)
    assert line.startswith(b"-ERR") and b"APOP" in line, line
    assert c.command("USER alice") == b"+OK Send your password"
    assert c.command("PASS secret").startswith(b"+OK")
    quit_ok(c, 1)


# ---- the message list is fixed at login ------------------------------------------


def test_mail_delivered_during_session_is_not_listed_and_survives(server):
    m1, m2 = b"Subject: old1\n\nx\n", b"Subject: old2\n\ny\n"
    server.deliver("alice", m1)
    server.deliver("alice", m2)
    c = login_user(server, count=2)
    late = server.deliver("alice", b"Subject: late\n\nz\n")
    late_cur = server.deliver("alice", b"Subject: late cur\n\nz\n", subdir="cur",
                              name="1800000000.M1P1.host:2,S")
    assert c.command("STAT") == b"+OK 2 %d" % (len(crlf(m1)) + len(crlf(m2)))
    assert c.command("LIST") == b"+OK 2 messages (%d octets)" % (len(crlf(m1)) + len(crlf(m2)))
    assert c.read_multiline() == [b"1 %d" % len(crlf(m1)), b"2 %d" % len(crlf(m2))]
    assert [n for n, _ in uidl_listing(c)] == [1, 2]
    assert c.command("RETR 3") == b"-ERR No such message"
    assert c.command("DELE 1") == b"+OK Message 1 deleted"
    assert c.command("DELE 2") == b"+OK Message 2 deleted"
    quit_ok(c, 0)
    assert late.exists() and late_cur.exists()
    assert sorted(files(server)) == sorted(["new/" + late.name, "cur/" + late_cur.name])
    c = login_user(server, count=2)
    assert sorted(subject_of(c, n) for n in (1, 2)) == [b"late", b"late cur"]
    quit_ok(c, 2)


# ---- poplib and curl ----------------------------------------------------------------


def test_poplib_retrieves_5000_line_message(server):
    body_lines = [b"line %05d %s" % (k, b"." if k % 100 == 0 else b"w" * 40) for k in range(5000)]
    body_lines[10] = b"." + body_lines[10]
    msg = b"From: a@example.org\nSubject: big\n\n" + b"\n".join(body_lines) + b"\n"
    server.deliver("alice", msg)
    p = server.login()
    count, size = p.stat()
    assert (count, size) == (1, len(crlf(msg)))
    resp, listing, _ = p.list()
    assert listing == [b"1 %d" % size]
    resp, lines, octets = p.retr(1)
    assert resp == b"+OK %d octets" % size
    assert lines == [b"From: a@example.org", b"Subject: big", b""] + body_lines
    assert octets == size
    resp, lines, _ = p.top(1, 3)
    assert lines == [b"From: a@example.org", b"Subject: big", b""] + body_lines[:3]
    assert p.uidl(1).startswith(b"+OK 1 ")
    assert p.quit() == b"+OK Bye, 1 messages left"


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
def test_curl_lists_and_retrieves(server):
    m1 = b"From: a@example.org\nSubject: curl one\n\nhello\n.dot line\n.\nbye\n"
    m2 = b"Subject: curl two\r\n\r\nsecond\r\n"
    server.deliver("alice", m1)
    server.deliver("alice", m2)
    base = "pop3://alice:secret@%s:%d/" % (server.host, server.port)

    def curl(url):
        r = subprocess.run(["curl", "-s", "-S", "--max-time", "10", url],
                           capture_output=True, timeout=20)
        assert r.returncode == 0, r.stderr
        return r.stdout

    assert curl(base) == b"1 %d\r\n2 %d\r\n" % (len(crlf(m1)), len(crlf(m2)))
    assert curl(base + "1") == crlf(m1)
    assert curl(base + "2") == crlf(m2)
    # curl ended its sessions with QUIT: both messages were retrieved, so both
    # are kept and marked seen
    assert all(n.startswith("cur/") and n.endswith(":2,S") for n in files(server))

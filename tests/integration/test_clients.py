"""Replays of what real POP3 clients send (spec/clients.md part A).

Each test drives pigeond over a plain socket the way the named client does and
checks every answer: the status lines, the listings, and the exact bytes of
every multi-line body.
"""
import base64
import re
import socket
import time

# pigeond's answer to NOOP (RFC 1957: "+OK" is followed by a space and text).
NOOP_OK = b"+OK Still here"


# ---- helpers ------------------------------------------------------------------

UIDL_LINE = re.compile(rb"^([1-9][0-9]*) ([\x21-\x7e]{1,70})$")


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
    """Byte-stuffed body plus the terminating dot line (RFC 1939 section 3)."""
    out = []
    for line in wire.split(b"\r\n")[:-1] if wire else []:
        out.append((b"." + line if line.startswith(b".") else line) + b"\r\n")
    return b"".join(out) + b".\r\n"


def top_wire(data, n):
    """What TOP msg n must send (unstuffed): headers, blank line, n body lines."""
    lines = crlf(data).split(b"\r\n")[:-1] if data else []
    if b"" in lines:
        sep = lines.index(b"")
        lines = lines[: sep + 1 + n]
    return b"".join(line + b"\r\n" for line in lines)


def ok(line, prefix=b"+OK"):
    assert line.startswith(prefix), line
    return line


def login_user(server, user="alice", password="secret", count=None):
    c = server.raw()
    assert c.command("USER %s" % user) == b"+OK Send your password"
    line = c.command("PASS %s" % password)
    assert line.startswith(b"+OK Maildrop has "), line
    if count is not None:
        assert line.startswith(b"+OK Maildrop has %d messages (" % count), line
    return c


def capa(c):
    assert c.command("CAPA") == b"+OK Capability list follows"
    lines = c.read_multiline()
    assert lines and all(lines), lines  # never an empty line
    return [line.decode() for line in lines]


def cap_tags(caps):
    return {line.split()[0].upper() for line in caps}


def sasl_mechs(caps):
    for line in caps:
        if line.upper().startswith("SASL"):
            return line.split()[1:]
    return []


def plain_b64(user, password, authzid=""):
    return base64.b64encode(("%s\0%s\0%s" % (authzid, user, password)).encode()).decode()


def retr_raw(c, n, size=None):
    """RETR n: checks the status line, returns the raw body up to ".CRLF"."""
    line = c.command("RETR %d" % n)
    if size is None:
        assert re.match(rb"^\+OK [0-9]+ octets$", line), line
    else:
        assert line == b"+OK %d octets" % size, line
    return c.read_multiline_raw()


def top_raw(c, n, lines):
    line = c.command("TOP %d %s" % (n, lines))
    assert line == b"+OK Top of message follows", line
    return c.read_multiline_raw()


def uidl_listing(c):
    assert c.command("UIDL") == b"+OK Unique-ID listing follows"
    result = []
    for line in c.read_multiline():
        m = UIDL_LINE.match(line)
        assert m, "bad UIDL line %r" % line
        result.append((int(m.group(1)), m.group(2)))
    return result


def list_listing(c, count=None, total=None):
    line = c.command("LIST")
    if count is not None:
        assert line == b"+OK %d messages (%d octets)" % (count, total), line
    else:
        ok(line)
    result = []
    for line in c.read_multiline():
        m = re.match(rb"^([1-9][0-9]*) ([0-9]+)$", line)
        assert m, "bad LIST line %r" % line
        result.append((int(m.group(1)), int(m.group(2))))
    return result


def quit_ok(c, left):
    assert c.command("QUIT") == b"+OK Bye, %d messages left" % left
    assert c.is_closed(5), "server did not close after QUIT"
    c.close()


def sample_messages(n, body_lines=3):
    msgs = []
    for i in range(1, n + 1):
        body = "".join("line %d of message %d\n" % (k, i) for k in range(body_lines))
        msgs.append(("From: a@example.org\nSubject: msg %d\n\n%s" % (i, body)).encode())
    return msgs


def deliver_all(server, msgs, user="alice"):
    return [server.deliver(user, m) for m in msgs]


# ---- Outlook ------------------------------------------------------------------


def test_outlook_session(server):
    msgs = sample_messages(3)
    msgs[1] = b"Subject: nul\r\n\r\nbefore\0after\r\n.dot line\r\n"  # Outlook hangs on NUL
    deliver_all(server, msgs)
    sizes = [len(crlf(m)) for m in msgs]
    c = server.raw()
    caps = capa(c)
    assert {"TOP", "USER", "UIDL", "RESP-CODES", "PIPELINING"} <= cap_tags(caps), caps
    assert c.command("USER alice") == b"+OK Send your password"
    assert c.command("PASS secret") == b"+OK Maildrop has 3 messages (%d octets)" % sum(sizes)
    assert c.command("STAT") == b"+OK 3 %d" % sum(sizes)
    assert list_listing(c, 3, sum(sizes)) == [(i + 1, s) for i, s in enumerate(sizes)]
    # Outlook only ever sends UIDL without an argument.
    uids = uidl_listing(c)
    assert [n for n, _ in uids] == [1, 2, 3]
    assert len({u for _, u in uids}) == 3
    for i, m in enumerate(msgs, 1):
        raw = retr_raw(c, i, sizes[i - 1])
        assert raw == stuffed(crlf(m))
        assert b"\0" not in raw
    assert c.command("NOOP") == NOOP_OK
    assert c.command("DELE 1") == b"+OK Message 1 deleted"
    assert c.command("DELE 3") == b"+OK Message 3 deleted"
    assert c.command("STAT") == b"+OK 1 %d" % sizes[1]
    quit_ok(c, 1)
    names = server.messages("alice")
    assert len(names) == 1
    md = server.maildir("alice")
    kept = [p for sub in ("new", "cur") for p in (md / sub).iterdir()]
    assert kept[0].read_bytes() == msgs[1]  # the store itself is never rewritten


def test_outlook_spa_probe_gets_mechanism_list_and_ntlm_refused(server):
    server.deliver("alice", b"Subject: x\n\nbody\n")
    c = server.raw()
    assert c.command("AUTH") == b"+OK Supported mechanisms follow"
    assert c.read_multiline() == [b"SCRAM-SHA-256", b"PLAIN", b"LOGIN"]
    line = c.command("AUTH NTLM")
    assert line.startswith(b"-ERR"), line
    # the connection is still usable for an ordinary login
    assert c.command("USER alice") == b"+OK Send your password"
    assert c.command("PASS secret").startswith(b"+OK Maildrop has 1 messages")
    quit_ok(c, 1)


# ---- Thunderbird --------------------------------------------------------------


def thunderbird_messages():
    return [
        b"From: a@example.org\nSubject: small\n\nhello\n",
        # more than 20 body lines, with dot lines among them
        b"From: b@example.org\r\nSubject: big\r\n\r\n"
        + b"".join(b"%sbody line %d\r\n" % (b"." if k % 7 == 0 else b"", k) for k in range(60)),
        # no final newline, no blank line after the headers
        b"Subject: headers only\nX-Other: y",
    ]


def thunderbird_fetch(c, msgs):
    sizes = [len(crlf(m)) for m in msgs]
    assert c.command("STAT") == b"+OK %d %d" % (len(msgs), sum(sizes))
    # LIST comes before UIDL
    assert list_listing(c, len(msgs), sum(sizes)) == [(i + 1, s) for i, s in enumerate(sizes)]
    uids = uidl_listing(c)
    assert [n for n, _ in uids] == list(range(1, len(msgs) + 1))
    for i, m in enumerate(msgs, 1):
        assert top_raw(c, i, 0) == stuffed(top_wire(m, 0))
        assert top_raw(c, i, 20) == stuffed(top_wire(m, 20))
        assert retr_raw(c, i, sizes[i - 1]) == stuffed(crlf(m))
    return uids


def test_thunderbird_auth_plain_without_initial_response(server):
    msgs = thunderbird_messages()
    deliver_all(server, msgs)
    c = server.raw()
    caps = capa(c)
    assert "PLAIN" in sasl_mechs(caps) and "LOGIN" in sasl_mechs(caps), caps
    # Thunderbird sends AUTH PLAIN alone and waits for "+ "
    assert c.command("AUTH PLAIN") == b"+ "
    line = c.command(plain_b64("alice", "secret"))
    assert line.startswith(b"+OK Maildrop has 3 messages"), line
    thunderbird_fetch(c, msgs)
    assert c.command("DELE 2") == b"+OK Message 2 deleted"
    quit_ok(c, 2)
    assert len(server.messages("alice")) == 2


def test_thunderbird_user_pass(server):
    msgs = thunderbird_messages()
    deliver_all(server, msgs)
    c = server.raw()
    capa(c)
    assert c.command("USER alice") == b"+OK Send your password"
    assert c.command("PASS secret").startswith(b"+OK Maildrop has 3 messages")
    thunderbird_fetch(c, msgs)
    for n in (1, 2, 3):
        assert c.command("DELE %d" % n) == b"+OK Message %d deleted" % n
    quit_ok(c, 0)
    assert server.messages("alice") == []


def test_thunderbird_tries_next_mechanism_after_failure(server):
    """A failed PLAIN, then LOGIN, then USER/PASS on the same connection."""
    server.deliver("alice", b"Subject: x\n\nbody\n")
    c = server.raw()
    capa(c)
    assert c.command("AUTH PLAIN") == b"+ "
    assert c.command(plain_b64("alice", "wrong")) == b"-ERR [AUTH] Authentication failed"
    assert c.command("AUTH LOGIN") == b"+ " + base64.b64encode(b"Username:")
    assert c.command(base64.b64encode(b"alice").decode()) == b"+ " + base64.b64encode(b"Password:")
    assert c.command(base64.b64encode(b"bad").decode()) == b"-ERR [AUTH] Authentication failed"
    assert c.command("USER alice") == b"+OK Send your password"
    assert c.command("PASS secret").startswith(b"+OK Maildrop has 1 messages")
    quit_ok(c, 1)


def test_thunderbird_noop_while_large_retr_streams(server):
    """Thunderbird writes NOOP while a long RETR is still arriving; the +OK must
    follow the terminating dot, and the body must be intact."""
    line = b"x" * 90 + b"\n"
    body = b"".join((b"." + line if k % 50 == 0 else line) for k in range(90000))  # ~8 MiB
    msg = b"Subject: large\n\n" + body
    server.deliver("alice", msg)
    server.deliver("alice", b"Subject: second\n\nshort\n")
    expected = stuffed(crlf(msg))
    c = login_user(server, count=2)
    # a small receive buffer keeps the server busy streaming while we write
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
    c.send("RETR 1\r\n")
    assert c.readline() == b"+OK %d octets" % len(crlf(msg))
    marks = [64 * 1024, 1024 * 1024, 4 * 1024 * 1024]
    sent_noops = 0
    deadline = time.monotonic() + 30
    while marks and time.monotonic() < deadline:
        if len(c.buf) >= marks[0]:
            assert b"\r\n.\r\n" not in c.buf, "RETR finished before the NOOP was written"
            c.send("NOOP\r\n")
            sent_noops += 1
            marks.pop(0)
            continue
        chunk = c.sock.recv(65536)
        assert chunk, "server closed during RETR"
        c.buf += chunk
    assert sent_noops == 3
    raw = c.read_multiline_raw()
    assert len(raw) == len(expected)
    assert raw == expected
    for _ in range(sent_noops):
        assert c.readline() == NOOP_OK
    # the session goes on normally afterwards
    assert retr_raw(c, 2) == stuffed(crlf(b"Subject: second\n\nshort\n"))
    quit_ok(c, 2)


# ---- mutt / NeoMutt -----------------------------------------------------------


def test_mutt_capa_in_transaction_and_viewer(server):
    msgs = sample_messages(4, body_lines=5)
    deliver_all(server, msgs)
    c = server.raw()
    auth_caps = capa(c)
    assert c.command("USER alice") == b"+OK Send your password"
    assert c.command("PASS secret").startswith(b"+OK Maildrop has 4 messages")
    # mutt issues CAPA a third time, in TRANSACTION
    trans_caps = capa(c)
    tags = cap_tags(trans_caps)
    assert {"TOP", "UIDL", "PIPELINING", "RESP-CODES"} <= tags, trans_caps
    # RFC 2449 section 5: what AUTHORIZATION announced is announced again
    assert {t for t in cap_tags(auth_caps) if t != "STLS"} <= tags, (auth_caps, trans_caps)
    assert c.command("STAT").startswith(b"+OK 4 ")
    uids = uidl_listing(c)
    assert [n for n, _ in uids] == [1, 2, 3, 4]
    for n, m in enumerate(msgs, 1):
        assert c.command("LIST %d" % n) == b"+OK %d %d" % (n, len(crlf(m)))
        assert top_raw(c, n, 0) == stuffed(top_wire(m, 0))
    assert retr_raw(c, 2, len(crlf(msgs[1]))) == stuffed(crlf(msgs[1]))
    assert c.command("DELE 2") == b"+OK Message 2 deleted"
    assert c.command("LIST 2") == b"-ERR Message 2 already deleted"
    assert c.command("DELE 4") == b"+OK Message 4 deleted"
    quit_ok(c, 2)
    remaining = [p.read_bytes() for sub in ("new", "cur")
                 for p in (server.maildir("alice") / sub).iterdir()]
    assert sorted(remaining) == sorted([msgs[0], msgs[2]])


def test_mutt_read_only_mailbox_rset_before_quit(server):
    msgs = sample_messages(2)
    deliver_all(server, msgs)
    before = server.messages("alice")
    c = login_user(server, count=2)
    assert c.command("DELE 1") == b"+OK Message 1 deleted"
    assert c.command("RSET") == b"+OK Maildrop has 2 messages (%d octets)" % sum(
        len(crlf(m)) for m in msgs)
    quit_ok(c, 2)
    assert server.messages("alice") == before


def test_mutt_bare_auth_lists_mechanisms(server):
    server.deliver("alice", b"Subject: x\n\nbody\n")
    c = server.raw()
    assert c.command("AUTH") == b"+OK Supported mechanisms follow"
    mechs = c.read_multiline()
    assert mechs == [b"SCRAM-SHA-256", b"PLAIN", b"LOGIN"]
    # the same list as CAPA's SASL line
    assert [m.encode() for m in sasl_mechs(capa(c))] == mechs
    # and mutt then logs in with one of them
    line = c.command("AUTH PLAIN " + plain_b64("alice", "secret"))
    assert line.startswith(b"+OK Maildrop has 1 messages"), line
    quit_ok(c, 1)


def test_mutt_fetch_mail_with_pop_last(server):
    msgs = sample_messages(2)
    deliver_all(server, msgs)
    c = login_user(server, count=2)
    assert c.command("STAT") == b"+OK 2 %d" % sum(len(crlf(m)) for m in msgs)
    assert c.command("LAST").startswith(b"-ERR")
    for n, m in enumerate(msgs, 1):
        assert retr_raw(c, n) == stuffed(crlf(m))
        assert c.command("DELE %d" % n) == b"+OK Message %d deleted" % n
    quit_ok(c, 0)
    assert server.messages("alice") == []


# ---- K-9 / Thunderbird for Android -------------------------------------------


def test_k9_short_sessions_back_to_back(server):
    msgs = sample_messages(8)
    deliver_all(server, msgs)
    known = None
    remaining = 8
    for round_ in range(8):
        c = server.raw()
        capa(c)
        assert c.command("AUTH PLAIN") == b"+ "
        line = c.command(plain_b64("alice", "secret"))
        # never [IN-USE]: the previous session's QUIT released the lock
        assert line.startswith(b"+OK Maildrop has %d messages" % remaining), (round_, line)
        assert c.command("STAT").startswith(b"+OK %d " % remaining)
        # single-message lookups instead of full listings
        uids = {}
        for n in range(1, remaining + 1):
            line = c.command("UIDL %d" % n)
            m = re.match(rb"^\+OK (\d+) ([\x21-\x7e]{1,70})$", line)
            assert m and int(m.group(1)) == n, line
            uids[n] = m.group(2)
            line = c.command("LIST %d" % n)
            assert re.match(rb"^\+OK %d [0-9]+$" % n, line), line
        assert len(set(uids.values())) == remaining
        if known is not None:
            # the same messages keep their UIDLs
            assert set(uids.values()) <= known
        known = set(uids.values())
        if round_ % 2 == 0 and remaining > 0:
            # partial download, then delete the oldest
            assert top_raw(c, 1, 2).startswith(b"From: ")
            assert c.command("DELE 1") == b"+OK Message 1 deleted"
            remaining -= 1
        quit_ok(c, remaining)
    assert len(server.messages("alice")) == remaining


def test_k9_session_after_dropped_connection(server):
    """A session whose TCP connection died leaves no lock behind."""
    server.deliver("alice", b"Subject: x\n\nbody\n")
    for _ in range(5):
        c = login_user(server, count=1)
        assert c.command("DELE 1") == b"+OK Message 1 deleted"
        c.close()  # no QUIT
        # the kernel has delivered the FIN before the next connection even
        # exists, so the server has released the lock by the time of PASS
        c2 = server.raw()
        assert c2.command("USER alice") == b"+OK Send your password"
        line = c2.command("PASS secret")
        assert line.startswith(b"+OK Maildrop has 1 messages"), line
        quit_ok(c2, 1)


# ---- fetchmail ----------------------------------------------------------------

FETCHMAIL_MESSAGES = [
    b"From: lf@example.org\nSubject: LF\n\nline one\nline two\n",
    b"From: crlf@example.org\r\nSubject: CRLF\r\n\r\nline one\r\nline two\r\n",
    b"Subject: dots\n\n.\n..\n.leading dot\nmiddle . dot\n.\n",
    b"Subject: no final newline\n\nlast line without newline",
    b"Subject: mixed\r\n\nlf after crlf\r\ncrlf\nlf\n",
    b"Subject: headers only, no blank line\nX-A: b\n",
    b"Subject: 8bit\n\n\xc3\xa9t\xc3\xa9 \xff\xfe binary\n",
    b".Subject: leading dot header\n\nbody\n",
    b"Subject: empty body\n\n",
    b"Subject: bare cr\n\na\rb\nc\n",
]


def test_fetchmail_last_uidl_binary_search_top_as_retr(server):
    msgs = FETCHMAIL_MESSAGES
    deliver_all(server, msgs)
    c = server.raw()
    capa(c)
    assert c.command("USER alice") == b"+OK Send your password"
    assert c.command("PASS secret").startswith(b"+OK Maildrop has %d messages" % len(msgs))
    # LAST was removed from POP3: fetchmail must see -ERR
    line = c.command("LAST")
    assert line.startswith(b"-ERR"), line
    assert c.command("STAT") == b"+OK %d %d" % (len(msgs), sum(len(crlf(m)) for m in msgs))
    full = dict(uidl_listing(c))
    # fastuidl: binary search with UIDL n
    lo, hi = 1, len(msgs)
    probes = 0
    while lo <= hi and probes < 20:
        mid = (lo + hi) // 2
        assert c.command("UIDL %d" % mid) == b"+OK %d %s" % (mid, full[mid])
        lo = mid + 1
        probes += 1
    for n in (1, len(msgs), 5):
        assert c.command("UIDL %d" % n) == b"+OK %d %s" % (n, full[n])
        assert c.command("LIST %d" % n) == b"+OK %d %d" % (n, len(crlf(msgs[n - 1])))
    for n, m in enumerate(msgs, 1):
        top = top_raw(c, n, 99999999)
        retr = retr_raw(c, n, len(crlf(m)))
        assert top == retr, "TOP %d 99999999 differs from RETR %d" % (n, n)
        assert retr == stuffed(crlf(m)), n
        # a count beyond 64 bits means the whole message as well
        assert top_raw(c, n, "999999999999999999999999") == retr
        assert c.command("DELE %d" % n) == b"+OK Message %d deleted" % n
    quit_ok(c, 0)
    assert server.messages("alice") == []


def test_fetchmail_sees_lock_busy_in_text(server):
    server.deliver("alice", b"Subject: x\n\nbody\n")
    first = login_user(server, count=1)
    second = server.raw()
    assert second.command("USER alice") == b"+OK Send your password"
    line = second.command("PASS secret")
    assert line.startswith(b"-ERR [IN-USE]"), line
    assert b"in use" in line.lower() or b"lock" in line.lower()
    second.command("QUIT")
    second.close()
    quit_ok(first, 1)


def test_fetchmail_expunge_every_n_messages(server):
    """--expunge 2: QUIT after every two messages, then log in again."""
    msgs = sample_messages(5)
    deliver_all(server, msgs)
    fetched = []
    for _ in range(5):
        left = len(server.messages("alice"))
        if left == 0:
            break
        c = login_user(server, count=left)
        for n in range(1, min(2, left) + 1):
            fetched.append(top_raw(c, n, 99999999))
            assert c.command("DELE %d" % n) == b"+OK Message %d deleted" % n
        quit_ok(c, left - min(2, left))
    assert fetched == [stuffed(crlf(m)) for m in msgs]
    assert server.messages("alice") == []


# ---- mpop ---------------------------------------------------------------------


def test_mpop_pipelined_window(server):
    msgs = []
    for i in range(1, 21):
        if i % 5 == 0:  # a few large ones, so output back-pressure kicks in
            body = b"".join(b"%s%06d %s\n" % (b"." if k % 3 == 0 else b"", k, b"y" * 70)
                            for k in range(3000))
        else:
            body = b"short body %d\n.\n" % i
        msgs.append(b"Subject: m%d\n\n" % i + body)
    deliver_all(server, msgs)
    c = server.raw()
    caps = capa(c)
    assert "PIPELINING" in cap_tags(caps)
    assert c.command("USER alice") == b"+OK Send your password"
    assert c.command("PASS secret").startswith(b"+OK Maildrop has 20 messages")
    cmds = ["STAT", "LIST", "UIDL"]
    for i in range(1, 21):
        cmds += ["TOP %d 0" % i, "RETR %d" % i, "DELE %d" % i]
    cmds += ["STAT", "NOOP"]
    assert len(cmds) >= 50
    c.send("".join(x + "\r\n" for x in cmds))  # the whole window in one write
    total = sum(len(crlf(m)) for m in msgs)
    assert c.readline() == b"+OK 20 %d" % total
    assert c.readline() == b"+OK 20 messages (%d octets)" % total
    assert c.read_multiline() == [b"%d %d" % (i, len(crlf(m))) for i, m in enumerate(msgs, 1)]
    uids = _read_uidl(c)
    assert [n for n, _ in uids] == list(range(1, 21))
    for i, m in enumerate(msgs, 1):
        assert c.readline() == b"+OK Top of message follows"
        assert c.read_multiline_raw() == stuffed(top_wire(m, 0))
        assert c.readline() == b"+OK %d octets" % len(crlf(m))
        assert c.read_multiline_raw() == stuffed(crlf(m))
        assert c.readline() == b"+OK Message %d deleted" % i
    assert c.readline() == b"+OK 0 0"
    assert c.readline() == NOOP_OK
    assert c.buf == b"", "unexpected extra output %r" % c.buf[:200]
    quit_ok(c, 0)
    assert server.messages("alice") == []


def _read_uidl(c):
    assert c.readline() == b"+OK Unique-ID listing follows"
    out = []
    for line in c.read_multiline():
        m = UIDL_LINE.match(line)
        assert m, line
        out.append((int(m.group(1)), m.group(2)))
    return out


def test_mpop_pipelined_lookups_and_login(server):
    """Everything in one write, login included; 200+ commands answered in order."""
    msgs = sample_messages(60, body_lines=1)
    deliver_all(server, msgs)
    cmds = ["CAPA", "USER alice", "PASS secret"]
    for i in range(1, 61):
        cmds += ["LIST %d" % i, "UIDL %d" % i, "TOP %d 0" % i]
    cmds += ["LIST 61", "DELE 60", "UIDL 60", "RSET", "QUIT"]
    c = server.raw()
    c.send("".join(x + "\r\n" for x in cmds))
    assert c.readline() == b"+OK Capability list follows"
    assert "PIPELINING" in cap_tags([line.decode() for line in c.read_multiline()])
    assert c.readline() == b"+OK Send your password"
    assert c.readline().startswith(b"+OK Maildrop has 60 messages")
    seen = set()
    for i, m in enumerate(msgs, 1):
        assert c.readline() == b"+OK %d %d" % (i, len(crlf(m)))
        line = c.readline()
        mm = re.match(rb"^\+OK %d ([\x21-\x7e]{1,70})$" % i, line)
        assert mm, line
        seen.add(mm.group(1))
        assert c.readline() == b"+OK Top of message follows"
        assert c.read_multiline_raw() == stuffed(top_wire(m, 0))
    assert len(seen) == 60
    assert c.readline() == b"-ERR No such message"
    assert c.readline() == b"+OK Message 60 deleted"
    assert c.readline() == b"-ERR Message 60 already deleted"
    assert c.readline().startswith(b"+OK Maildrop has 60 messages")
    assert c.readline() == b"+OK Bye, 60 messages left"
    assert c.is_closed(5)
    assert len(server.messages("alice")) == 60


# ---- getmail ------------------------------------------------------------------


def test_getmail_uidl_before_list_every_message_once(server):
    n_msgs = 600  # more than one listing batch
    msgs = [b"Subject: g%d\n\nbody %d\n" % (i, i) for i in range(1, n_msgs + 1)]
    deliver_all(server, msgs)
    c = server.raw()  # getmail sends no CAPA
    assert c.command("USER alice") == b"+OK Send your password"
    assert c.command("PASS secret").startswith(b"+OK Maildrop has %d messages" % n_msgs)
    uids = uidl_listing(c)  # UIDL before LIST
    assert [n for n, _ in uids] == list(range(1, n_msgs + 1))  # each once, in order
    assert len({u for _, u in uids}) == n_msgs
    total = sum(len(crlf(m)) for m in msgs)
    lst = list_listing(c, n_msgs, total)
    assert lst == [(i, len(crlf(m))) for i, m in enumerate(msgs, 1)]
    # retrieve and delete right after each delivery
    for n in range(1, 301, 2):
        assert retr_raw(c, n) == stuffed(crlf(msgs[n - 1]))
        assert c.command("DELE %d" % n) == b"+OK Message %d deleted" % n
    # the listings skip the deleted ones and still list every other one once
    uids2 = uidl_listing(c)
    expect = [n for n in range(1, n_msgs + 1) if not (n <= 300 and n % 2 == 1)]
    assert [n for n, _ in uids2] == expect
    assert dict(uids2) == {n: u for n, u in uids if n in set(expect)}
    assert [n for n, _ in list_listing(c)] == expect
    quit_ok(c, n_msgs - 150)
    assert len(server.messages("alice")) == n_msgs - 150
    # next run: the survivors keep their UIDLs
    c = login_user(server, count=n_msgs - 150)
    uids3 = uidl_listing(c)
    assert [u for _, u in uids3] == [u for _, u in uids2]
    quit_ok(c, n_msgs - 150)

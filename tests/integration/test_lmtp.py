"""LMTP delivery into pigeond (spec/lmtp.md, spec/maildir.md §3): the listener
over TCP and a Unix socket, with smtplib.LMTP and by hand; per-recipient
replies, limits, bad command sequences, pipelining, SMTP smuggling, trace
headers, loops, quotas, and what POP3 then serves of the stored copies.
"""
import email.utils
import fcntl
import os
import pwd
import re
import shutil
import signal
import smtplib
import socket
import stat
import time

import pytest

from conftest import RUN_AS, RawClient, free_port, give_to_server

HELO = "client.example"

# The trace headers pigeond puts on top of each stored copy, as POP3 sends them.
TRACE = re.compile(
    rb"Return-Path: <(?P<sender>[^>\r\n]*)>\r\n"
    rb"Delivered-To: (?P<rcpt>[^\r\n]+)\r\n"
    rb"Received: from (?P<helo>[^ \r\n]+) \((?P<peer>[^)\r\n]*)\)\r\n"
    rb"\tby (?P<host>[^ \r\n]+) \(Pigeon\) with LMTP id (?P<id>[0-9a-f]{12})\r\n"
    rb"\tfor <(?P<for>[^>\r\n]+)>; (?P<date>[^\r\n]+)\r\n")

# RFC 2034: every 2xx/4xx/5xx reply after LHLO starts with class.subject.detail.
ENHANCED = re.compile(rb"^([245])\.[0-9]{1,3}\.[0-9]{1,3} ")


# ---- helpers ------------------------------------------------------------------


def lmtp_server(make_server, users=("alice", "bob", "carol"), settings=None, passwd_lines=(),
                listen=None):
    """A pigeond with an [lmtp] listener on a free loopback port (or `listen`)
    and the given users (password "secret"); srv.lmtp_port is the TCP port."""
    srv = make_server(settings=settings, start=False)
    port = free_port()
    while port == srv.port:
        port = free_port()
    srv.lmtp_port = port
    srv.settings.setdefault("lmtp", {}).setdefault("listen", listen or "127.0.0.1:%d" % port)
    for user in users:
        srv.add_user(user)
    with open(srv.passwd, "a") as f:
        for line in passwd_lines:
            f.write(line + "\n")
    for line in passwd_lines:
        srv.maildir(line.split(":", 1)[0])
    srv.start()
    return srv


class Lmtp(RawClient):
    """LMTP by hand. Checks the reply syntax (RFC 5321 §4.2) and, after LHLO,
    the enhanced status code of every reply (RFC 2034)."""

    def __init__(self, srv=None, sock=None, source=None, timeout=10, greeting=True):
        if sock is None:
            sock = socket.create_connection(("127.0.0.1", srv.lmtp_port), timeout=timeout,
                                            source_address=source)
        self.sock = sock
        self.sock.settimeout(timeout)
        self.buf = b""
        self.after_lhlo = False
        if greeting:
            code, text = self.reply()
            assert code == 220 and text[0].endswith(b" Pigeon LMTP ready"), text

    def reply(self):
        """(code, [text of each line]) of one possibly multi-line reply."""
        code, texts = None, []
        while True:
            line = self.readline()
            assert re.match(rb"^[2-5][0-9][0-9][ -]", line), "bad reply line %r" % line
            assert len(line) + 2 <= 512, line
            if code is None:
                code = int(line[:3])
            assert int(line[:3]) == code, line
            texts.append(line[4:])
            if line[3:4] == b" ":
                break
        if self.after_lhlo and code // 100 in (2, 4, 5):
            for text in texts:
                m = ENHANCED.match(text)
                assert m and int(m.group(1)) == code // 100, \
                    "reply without a matching enhanced status code: %d %r" % (code, text)
        return code, texts

    def cmd(self, line):
        self.send(line + "\r\n")
        return self.reply()

    def one(self, line):
        """A command whose reply is one line: b"250 2.0.0 OK"."""
        code, texts = self.cmd(line)
        assert len(texts) == 1, texts
        return b"%d %s" % (code, texts[0])

    def line(self):
        code, texts = self.reply()
        assert len(texts) == 1, texts
        return b"%d %s" % (code, texts[0])

    def lhlo(self, name=HELO):
        # the LHLO reply itself carries no enhanced codes (RFC 2034)
        self.after_lhlo = False
        code, texts = self.cmd("LHLO " + name)
        assert code == 250, texts
        self.after_lhlo = True
        return texts

    def silent(self, wait=0.5):
        """True if the server sends nothing for `wait` seconds."""
        self.sock.settimeout(wait)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            return True
        finally:
            self.sock.settimeout(10)
        self.buf += chunk
        return False

    def transaction(self, sender, rcpts, data, refused=()):
        """MAIL, RCPTs, DATA, the (already stuffed) data and ".": returns the
        per-recipient reply lines. RCPT must succeed for all but `refused`."""
        assert self.one("MAIL FROM:<%s>" % sender) == b"250 2.1.0 Sender OK"
        accepted = 0
        for r in rcpts:
            line = self.one("RCPT TO:<%s>" % r)
            if r in refused:
                assert not line.startswith(b"250 "), line
                continue
            assert line == b"250 2.1.5 <%s> Recipient OK" % r.encode(), line
            accepted += 1
        assert self.one("DATA") == b"354 Start mail input; end with <CRLF>.<CRLF>"
        self.send(data + b".\r\n")
        return [self.line() for _ in range(accepted)]


def stuff(msg):
    """Dot-stuff a CRLF message and make it end with CRLF (RFC 5321 §4.5.2)."""
    assert msg.endswith(b"\r\n")
    return re.sub(rb"(?m)^\.", b"..", msg)


def unstuff(raw):
    assert raw.endswith(b".\r\n"), raw[-20:]
    body = raw[:-3]
    if not body:
        return b""
    assert body.endswith(b"\r\n"), body[-20:]
    return b"".join((line[1:] if line.startswith(b".") else line) + b"\r\n"
                    for line in body[:-2].split(b"\r\n"))


def pop3_fetch(srv, user, quit=True):
    """Log in as user, LIST and RETR everything: [(size, octets)]. RETR must
    send exactly the octets LIST announced."""
    c = srv.raw()
    assert c.command("USER %s" % user) == b"+OK Send your password"
    line = c.command("PASS secret")
    assert line.startswith(b"+OK Maildrop has "), line
    assert c.command("LIST").startswith(b"+OK ")
    sizes = [int(line.split()[1]) for line in c.read_multiline()]
    out = []
    for i, size in enumerate(sizes, 1):
        assert c.command("RETR %d" % i) == b"+OK %d octets" % size
        data = unstuff(c.read_multiline_raw())
        assert len(data) == size
        out.append((size, data))
    if quit:
        assert c.command("QUIT").startswith(b"+OK")
        c.close()
        return out
    return out, c


def split_trace(data, sender, rcpt, peer=b"[127.0.0.1]", helo=HELO):
    """Check the trace headers of one retrieved copy; returns (id, the rest)."""
    m = TRACE.match(data)
    assert m, "no trace headers at the top: %r" % data[:400]
    assert m.group("sender") == sender.encode()
    assert m.group("rcpt") == rcpt.encode()
    assert m.group("for") == rcpt.encode()
    assert m.group("helo") == helo.encode()
    assert m.group("peer") == peer
    assert m.group("host") == socket.gethostname().encode()
    when = email.utils.parsedate_to_datetime(m.group("date").decode())
    assert abs(when.timestamp() - time.time()) < 300, m.group("date")
    return m.group("id"), data[m.end():]


def new_files(srv, user):
    """The messages delivered to user (POP3 moves them from new/ to cur/)."""
    md = srv.maildir(user)
    return sorted(list((md / "new").iterdir()) + list((md / "cur").iterdir()))


def tmp_files(srv, user):
    return sorted((srv.maildir(user) / "tmp").iterdir())


def stored_nothing(srv, *users):
    for user in users:
        md = srv.maildir(user)
        for sub in ("new", "cur", "tmp"):
            left = list((md / sub).iterdir())
            assert left == [], "%s/%s: %s" % (user, sub, left)


def check_name(path, pop3_size):
    """new/<unique>,S=<file size>,W=<POP3 size> (with ":2,<flags>" in cur/)."""
    m = re.match(r"^[^/:,]+,S=([0-9]+),W=([0-9]+)(:2,[A-Z]*)?$", path.name)
    assert m, path.name
    assert int(m.group(1)) == path.stat().st_size, path.name
    assert int(m.group(2)) == pop3_size, path.name


def wait_for(cond, timeout=10, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError("timed out waiting for " + what)


def client(srv, **kw):
    return smtplib.LMTP("127.0.0.1", srv.lmtp_port, local_hostname=HELO, timeout=10, **kw)


MESSAGE = (b"From: Sender <sender@example.net>\r\n"
           b"To: alice@example.org\r\n"
           b"Subject: hello over LMTP\r\n"
           b"Message-ID: <1@example.net>\r\n"
           b"\r\n"
           b"First line.\r\n"
           b".leading dot\r\n"
           b"..two dots\r\n"
           b".\r\n"
           b"\r\n"
           b"  indented, trailing blanks  \r\n"
           b"tab\there\r\n"
           b"8-bit: \xe2\x82\xac \xff\xfe\x80\r\n"
           b"bare CR \r inside a line\r\n"
           + b"long " * 1000 + b"\r\n"
           b"last line\r\n")


# ---- basic delivery with smtplib --------------------------------------------------


def test_single_recipient_stored_and_retrieved_byte_for_byte(make_server):
    srv = lmtp_server(make_server, settings={"delivery": {"max_message_size": "1m"}})
    c = client(srv)
    code, text = c.ehlo()  # smtplib sends LHLO for LMTP
    assert code == 250
    lines = text.split(b"\n")
    assert lines[0] == socket.gethostname().encode()
    assert set(lines[1:]) == {b"PIPELINING", b"ENHANCEDSTATUSCODES", b"8BITMIME", b"SIZE 1048576"}
    assert c.mail("sender@example.net") == (250, b"2.1.0 Sender OK")
    assert c.rcpt("alice@example.org") == (250, b"2.1.5 <alice@example.org> Recipient OK")
    # smtplib dot-stuffs the lines that start with "." ("..x" on the wire)
    assert c.data(MESSAGE) == (250, b"2.0.0 <alice@example.org> Saved")
    assert c.quit() == (221, b"2.0.0 Bye")

    (size, data), = pop3_fetch(srv, "alice")
    _, rest = split_trace(data, "sender@example.net", "alice@example.org")
    assert rest == MESSAGE
    path, = new_files(srv, "alice")
    check_name(path, size)
    # Maildir stores LF line ends; the bare CR is kept as content
    stored = path.read_bytes()
    assert stored.endswith(MESSAGE.replace(b"\r\n", b"\n"))
    assert b"bare CR \r inside" in stored
    assert tmp_files(srv, "alice") == []


def test_sendmail_to_one_recipient_with_null_sender(make_server):
    srv = lmtp_server(make_server)
    with client(srv) as c:
        assert c.sendmail("<>", ["bob@example.org"], MESSAGE) == {}
    (size, data), = pop3_fetch(srv, "bob")
    _, rest = split_trace(data, "", "bob@example.org")
    assert rest == MESSAGE
    check_name(new_files(srv, "bob")[0], size)


def test_multiple_recipients_each_get_their_own_copy(make_server):
    srv = lmtp_server(make_server)
    c = client(srv)
    c.ehlo()
    assert c.mail("sender@example.net")[0] == 250
    for r in ("alice@example.org", "bob@example.org", "carol@example.org"):
        assert c.rcpt(r) == (250, b"2.1.5 <%s> Recipient OK" % r.encode())
    # one reply per recipient, in RCPT order (RFC 2033 §4.2); smtplib reads
    # only the first itself
    assert c.data(MESSAGE) == (250, b"2.0.0 <alice@example.org> Saved")
    assert c.getreply() == (250, b"2.0.0 <bob@example.org> Saved")
    assert c.getreply() == (250, b"2.0.0 <carol@example.org> Saved")
    assert c.noop() == (250, b"2.0.0 OK")
    c.quit()
    ids = set()
    for user in ("alice", "bob", "carol"):
        (size, data), = pop3_fetch(srv, user)
        rcpt = "%s@example.org" % user
        msg_id, rest = split_trace(data, "sender@example.net", rcpt)
        ids.add(msg_id)
        assert rest == MESSAGE
        # the trace of one copy never names another recipient
        others = [u for u in ("alice", "bob", "carol") if u != user]
        head = data[:len(data) - len(rest)]
        assert not any(o.encode() in head for o in others), head
        check_name(new_files(srv, user)[0], size)
    assert len(ids) == 1  # one transaction, one id


def test_unknown_recipient_among_known_ones(make_server):
    srv = lmtp_server(make_server)
    c = client(srv)
    refused = c.sendmail("sender@example.net",
                         ["alice@example.org", "nobody@example.org", "bob@example.org"], MESSAGE)
    assert refused == {"nobody@example.org": (550, b"5.1.1 <nobody@example.org> User unknown")}
    # sendmail read alice's reply; bob's follows
    assert c.getreply() == (250, b"2.0.0 <bob@example.org> Saved")
    assert c.noop() == (250, b"2.0.0 OK")
    c.quit()
    for user in ("alice", "bob"):
        (_, data), = pop3_fetch(srv, user)
        assert split_trace(data, "sender@example.net", "%s@example.org" % user)[1] == MESSAGE
    stored_nothing(srv, "carol")
    assert "nobody@example.org" in srv.log()


def test_all_recipients_unknown_data_refused(make_server):
    srv = lmtp_server(make_server)
    with client(srv) as c:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as e:
            c.sendmail("sender@example.net", ["x@example.org", "y@example.org"], MESSAGE)
        assert e.value.recipients == {
            "x@example.org": (550, b"5.1.1 <x@example.org> User unknown"),
            "y@example.org": (550, b"5.1.1 <y@example.org> User unknown"),
        }


# ---- sizes -------------------------------------------------------------------------


def test_declared_size_too_big_refused_at_mail(make_server):
    srv = lmtp_server(make_server, settings={"delivery": {"max_message_size": "2k"}})
    big = body_of(3000)
    c = client(srv)
    c.ehlo()
    assert c.esmtp_features["size"] == "2048"
    with pytest.raises(smtplib.SMTPSenderRefused) as e:
        c.sendmail("sender@example.net", ["alice@example.org"], big)  # sends SIZE=<len>
    assert e.value.smtp_code == 552
    assert e.value.smtp_error.startswith(b"5.3.4 "), e.value.smtp_error
    c.close()
    # by hand: at the limit is fine, one more octet is not
    m = Lmtp(srv)
    m.lhlo()
    assert m.one("MAIL FROM:<s@example.net> SIZE=2049").startswith(b"552 5.3.4 ")
    assert m.one("MAIL FROM:<s@example.net> SIZE=2048 BODY=8BITMIME") == b"250 2.1.0 Sender OK"
    assert m.one("QUIT") == b"221 2.0.0 Bye"
    assert m.is_closed()
    stored_nothing(srv, "alice")


def test_undeclared_too_big_refused_per_recipient_nothing_stored(make_server):
    srv = lmtp_server(make_server, settings={"delivery": {"max_message_size": "4k"}})
    m = Lmtp(srv)
    m.lhlo()
    assert m.one("MAIL FROM:<s@example.net>") == b"250 2.1.0 Sender OK"
    assert m.one("RCPT TO:<alice@example.org>").startswith(b"250 ")
    assert m.one("RCPT TO:<bob@example.org>").startswith(b"250 ")
    assert m.one("DATA").startswith(b"354 ")
    m.send(b"Subject: too big\r\n\r\n")
    # the copies are written as the data arrives
    wait_for(lambda: tmp_files(srv, "alice") and tmp_files(srv, "bob"), what="tmp/ files")
    for _ in range(200):
        m.send(b"z" * 98 + b"\r\n")
    # nothing is acknowledged or stored before the end of the data
    assert m.silent(0.3)
    m.send(b".\r\n")
    assert m.line().startswith(b"552 5.3.4 <alice@example.org> ")
    assert m.line().startswith(b"552 5.3.4 <bob@example.org> ")
    stored_nothing(srv, "alice", "bob")
    # the connection goes on: a small message is delivered
    assert m.transaction("s@example.net", ["alice@example.org"], b"Subject: small\r\n\r\nok\r\n") \
        == [b"250 2.0.0 <alice@example.org> Saved"]
    assert m.one("QUIT") == b"221 2.0.0 Bye"
    (_, data), = pop3_fetch(srv, "alice")
    assert split_trace(data, "s@example.net", "alice@example.org")[1] == \
        b"Subject: small\r\n\r\nok\r\n"


def test_too_many_recipients(make_server):
    srv = lmtp_server(make_server, settings={"lmtp": {"max_recipients": "2"}})
    m = Lmtp(srv)
    m.lhlo()
    assert m.one("MAIL FROM:<s@example.net>") == b"250 2.1.0 Sender OK"
    assert m.one("RCPT TO:<alice@example.org>").startswith(b"250 2.1.5 ")
    assert m.one("RCPT TO:<bob@example.org>").startswith(b"250 2.1.5 ")
    assert m.one("RCPT TO:<carol@example.org>").startswith(b"452 4.5.3 ")
    assert m.one("DATA").startswith(b"354 ")
    m.send(b"Subject: three\r\n\r\nbody\r\n.\r\n")
    assert m.line() == b"250 2.0.0 <alice@example.org> Saved"
    assert m.line() == b"250 2.0.0 <bob@example.org> Saved"
    assert m.silent(0.3)  # no third reply
    # the limit is per transaction
    assert m.transaction("s@example.net", ["carol@example.org"], b"Subject: c\r\n\r\nc\r\n") == \
        [b"250 2.0.0 <carol@example.org> Saved"]
    assert len(new_files(srv, "alice")) == len(new_files(srv, "bob")) == 1
    assert len(new_files(srv, "carol")) == 1


def test_unknown_recipients_do_not_count_towards_the_limit(make_server):
    srv = lmtp_server(make_server, settings={"lmtp": {"max_recipients": "2"}})
    m = Lmtp(srv)
    m.lhlo()
    assert m.one("MAIL FROM:<s@example.net>") == b"250 2.1.0 Sender OK"
    assert m.one("RCPT TO:<nobody@example.org>").startswith(b"550 5.1.1 ")
    assert m.one("RCPT TO:<alice@example.org>").startswith(b"250 2.1.5 ")
    assert m.one("RCPT TO:<bob@example.org>").startswith(b"250 2.1.5 ")
    assert m.one("RCPT TO:<carol@example.org>").startswith(b"452 4.5.3 ")
    assert m.one("RSET") == b"250 2.0.0 OK"


# ---- command sequence and syntax ------------------------------------------------------


def test_bad_commands(make_server):
    srv = lmtp_server(make_server, settings={"pop3": {"max_bad_commands": "100"}})
    m = Lmtp(srv)
    # before LHLO
    assert m.one("HELO client.example") == b"500 5.5.1 This is LMTP: use LHLO"
    assert m.one("EHLO client.example") == b"500 5.5.1 This is LMTP: use LHLO"
    assert m.one("MAIL FROM:<s@example.net>").startswith(b"503 5.5.1 ")
    assert m.one("RCPT TO:<alice@example.org>").startswith(b"503 5.5.1 ")
    assert m.one("DATA").startswith(b"503 5.5.1 ")
    assert m.one("LHLO").startswith(b"501 5.5.4 ")  # no domain
    texts = m.lhlo()
    assert texts[1:] == [b"PIPELINING", b"ENHANCEDSTATUSCODES", b"8BITMIME", b"SIZE 52428800"]
    # after LHLO: every reply has an enhanced status code (checked by reply())
    assert m.one("HELO client.example") == b"500 5.5.1 This is LMTP: use LHLO"
    assert m.one("RCPT TO:<alice@example.org>").startswith(b"503 5.5.1 ")
    assert m.one("DATA").startswith(b"503 5.5.1 ")
    assert m.one("FOO bar") == b"500 5.5.2 Unrecognized command"
    assert m.one("VRFY alice") == b"502 5.5.1 VRFY not implemented"
    assert m.one("NOOP") == b"250 2.0.0 OK"
    # syntax errors
    assert m.one("MAIL TO:<s@example.net>").startswith(b"501 5.5.4 ")
    assert m.one("MAIL FROM:s@example.net").startswith(b"501 5.1.7 ")
    assert m.one("MAIL FROM:<s@example.net").startswith(b"501 5.1.7 ")
    assert m.one("MAIL FROM:<s @example.net>").startswith(b"501 5.1.7 ")
    assert m.one("MAIL FROM:<s@example.net> SIZE=abc").startswith(b"501 5.5.4 ")
    assert m.one("MAIL FROM:<s@example.net> FOO=BAR").startswith(b"555 5.5.4 ")
    assert m.one("MAIL FROM:<s@example.net> BODY=BINARYMIME").startswith(b"555 5.5.4 ")
    assert m.one("MAIL FROM:<s@example.net>") == b"250 2.1.0 Sender OK"
    assert m.one("MAIL FROM:<s@example.net>").startswith(b"503 5.5.1 ")  # nested
    assert m.one("RCPT FROM:<alice@example.org>").startswith(b"501 5.5.4 ")
    assert m.one("RCPT TO:alice@example.org").startswith(b"501 5.1.3 ")
    assert m.one("RCPT TO:<>").startswith(b"501 5.1.3 ")
    assert m.one("RCPT TO:<alice@example.org> NOTIFY=NEVER").startswith(b"555 5.5.4 ")
    assert m.one("RCPT TO:<nobody@example.org>") == \
        b"550 5.1.1 <nobody@example.org> User unknown"
    # DATA without an accepted recipient: 503 and no 354 (RFC 2033 §4.2)
    m.send("DATA\r\nNOOP\r\n")
    assert m.line() == b"503 5.5.1 No valid recipients"
    assert m.line() == b"250 2.0.0 OK"
    # still in the transaction: a recipient now makes DATA work
    assert m.one("RCPT TO:<alice@example.org>").startswith(b"250 2.1.5 ")
    assert m.one("DATA").startswith(b"354 ")
    m.send(b"Subject: after errors\r\n\r\nx\r\n.\r\n")
    assert m.line() == b"250 2.0.0 <alice@example.org> Saved"
    assert m.one("QUIT") == b"221 2.0.0 Bye"
    assert m.is_closed()


def test_commands_are_case_insensitive(make_server):
    srv = lmtp_server(make_server)
    m = Lmtp(srv)
    assert m.cmd("lhlo " + HELO)[0] == 250
    m.after_lhlo = True
    assert m.one("mail from:<s@example.net> size=10 body=7bit") == b"250 2.1.0 Sender OK"
    assert m.one("rcpt to:<alice@example.org>").startswith(b"250 2.1.5 ")
    assert m.one("data").startswith(b"354 ")
    m.send(b"Subject: lower\r\n\r\nx\r\n.\r\n")
    assert m.line() == b"250 2.0.0 <alice@example.org> Saved"
    assert m.one("quit") == b"221 2.0.0 Bye"


def test_too_many_bad_commands_421_and_close(make_server):
    srv = lmtp_server(make_server, settings={"pop3": {"max_bad_commands": "3"}})
    m = Lmtp(srv)
    m.lhlo()
    assert m.one("FOO").startswith(b"500 ")
    assert m.one("MAIL FROM:bad").startswith(b"501 ")
    line = m.one("BAR")
    assert line.startswith(b"421 4.7.0 "), line
    assert m.is_closed(5)


def test_overlong_command_line(make_server):
    srv = lmtp_server(make_server)
    m = Lmtp(srv)
    m.lhlo()
    # 512 octets with CRLF is the most a command line may have (RFC 5321 §4.5.3.1.4)
    assert m.one("NOOP " + "x" * (510 - 5)) == b"250 2.0.0 OK"
    assert m.one("NOOP " + "x" * (511 - 5)).startswith(b"500 5.5.2 ")
    assert m.one("MAIL FROM:<" + "a" * 2000 + "@example.net>").startswith(b"500 5.5.2 ")
    # in pieces, no CRLF for a while: one error, then the session goes on
    m.send(b"NOOP ")
    for _ in range(10):
        m.send(b"y" * 1000)
        time.sleep(0.01)
    m.send(b"\r\nNOOP\r\n")
    assert m.line().startswith(b"500 5.5.2 ")
    assert m.line() == b"250 2.0.0 OK"
    assert m.one("MAIL FROM:<s@example.net>") == b"250 2.1.0 Sender OK"


def test_second_lhlo_and_rset_reset_the_transaction(make_server):
    srv = lmtp_server(make_server)
    m = Lmtp(srv)
    m.lhlo()
    assert m.one("MAIL FROM:<s@example.net>") == b"250 2.1.0 Sender OK"
    assert m.one("RCPT TO:<alice@example.org>").startswith(b"250 ")
    assert m.one("RSET") == b"250 2.0.0 OK"
    assert m.one("DATA").startswith(b"503 5.5.1 ")
    assert m.one("RCPT TO:<alice@example.org>").startswith(b"503 5.5.1 ")
    assert m.one("MAIL FROM:<s@example.net>") == b"250 2.1.0 Sender OK"
    assert m.one("RCPT TO:<bob@example.org>").startswith(b"250 ")
    m.lhlo("other.example")
    assert m.one("DATA").startswith(b"503 5.5.1 ")
    assert m.transaction("t@example.net", ["carol@example.org"], b"Subject: c\r\n\r\nc\r\n") == \
        [b"250 2.0.0 <carol@example.org> Saved"]
    stored_nothing(srv, "alice", "bob")
    (_, data), = pop3_fetch(srv, "carol")
    split_trace(data, "t@example.net", "carol@example.org", helo="other.example")


# ---- pipelining and several transactions ----------------------------------------------


def test_pipelining(make_server):
    srv = lmtp_server(make_server)
    m = Lmtp(srv)
    m.lhlo()
    m.send(b"MAIL FROM:<p@example.net> SIZE=100\r\n"
           b"RCPT TO:<alice@example.org>\r\n"
           b"RCPT TO:<nobody@example.org>\r\n"
           b"RCPT TO:<bob@example.org>\r\n"
           b"DATA\r\n")
    assert m.line() == b"250 2.1.0 Sender OK"
    assert m.line() == b"250 2.1.5 <alice@example.org> Recipient OK"
    assert m.line() == b"550 5.1.1 <nobody@example.org> User unknown"
    assert m.line() == b"250 2.1.5 <bob@example.org> Recipient OK"
    assert m.line() == b"354 Start mail input; end with <CRLF>.<CRLF>"
    m.send(b"Subject: piped\r\n\r\none\r\n.\r\n")
    assert m.line() == b"250 2.0.0 <alice@example.org> Saved"
    assert m.line() == b"250 2.0.0 <bob@example.org> Saved"
    # a whole second transaction in one write, the next commands right after "."
    m.send(b"RSET\r\nMAIL FROM:<>\r\nRCPT TO:<carol@example.org>\r\nDATA\r\n")
    assert m.line() == b"250 2.0.0 OK"
    assert m.line() == b"250 2.1.0 Sender OK"
    assert m.line() == b"250 2.1.5 <carol@example.org> Recipient OK"
    assert m.line().startswith(b"354 ")
    m.send(b"Subject: second\r\n\r\ntwo\r\n.\r\nNOOP\r\nQUIT\r\n")
    assert m.line() == b"250 2.0.0 <carol@example.org> Saved"
    assert m.line() == b"250 2.0.0 OK"
    assert m.line() == b"221 2.0.0 Bye"
    assert m.is_closed()
    for user in ("alice", "bob"):
        (_, data), = pop3_fetch(srv, user)
        assert split_trace(data, "p@example.net", user + "@example.org")[1] == \
            b"Subject: piped\r\n\r\none\r\n"
    (_, data), = pop3_fetch(srv, "carol")
    assert split_trace(data, "", "carol@example.org")[1] == b"Subject: second\r\n\r\ntwo\r\n"


def test_quit_and_half_close_right_after_the_data(make_server):
    """A client that pipelines QUIT after the final "." and shuts down its
    sending side still gets every reply, and the message is stored."""
    srv = lmtp_server(make_server)
    m = Lmtp(srv)
    m.lhlo()
    m.send(b"MAIL FROM:<s@example.net>\r\nRCPT TO:<alice@example.org>\r\n"
           b"RCPT TO:<bob@example.org>\r\nDATA\r\n")
    assert [m.line() for _ in range(3)] == [
        b"250 2.1.0 Sender OK", b"250 2.1.5 <alice@example.org> Recipient OK",
        b"250 2.1.5 <bob@example.org> Recipient OK"]
    assert m.line().startswith(b"354 ")
    m.send(b"Subject: last\r\n\r\nbye\r\n.\r\nQUIT\r\n")
    m.sock.shutdown(socket.SHUT_WR)
    assert m.line() == b"250 2.0.0 <alice@example.org> Saved"
    assert m.line() == b"250 2.0.0 <bob@example.org> Saved"
    assert m.line() == b"221 2.0.0 Bye"
    assert m.is_closed()
    for user in ("alice", "bob"):
        (_, data), = pop3_fetch(srv, user)
        assert split_trace(data, "s@example.net", user + "@example.org")[1] == \
            b"Subject: last\r\n\r\nbye\r\n"


def test_ipv6_loopback_listener(make_server):
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback")
    srv = make_server(start=False)
    port = free_port("::1")
    srv.settings["lmtp"] = {"listen": "[::1]:%d" % port}
    srv.add_user("alice")
    srv.start()
    with smtplib.LMTP("::1", port, local_hostname=HELO, timeout=10) as c:
        assert c.sendmail("s@example.net", ["alice@example.org"], MESSAGE) == {}
    (_, data), = pop3_fetch(srv, "alice")
    assert split_trace(data, "s@example.net", "alice@example.org", peer=b"[::1]")[1] == MESSAGE


def test_several_transactions_on_one_connection(make_server):
    srv = lmtp_server(make_server)
    c = client(srv)
    for i in range(5):
        msg = b"Subject: number %d\r\n\r\nbody %d\r\n" % (i, i)
        assert c.sendmail("s%d@example.net" % i, ["alice@example.org"], msg) == {}
        if i == 2:
            assert c.rset() == (250, b"2.0.0 OK")
    c.quit()
    got = pop3_fetch(srv, "alice")
    assert len(got) == 5
    bodies = {}
    for size, data in got:
        m = TRACE.match(data)
        sender = m.group("sender").decode()
        bodies[sender] = split_trace(data, sender, "alice@example.org")[1]
    assert bodies == {"s%d@example.net" % i: b"Subject: number %d\r\n\r\nbody %d\r\n" % (i, i)
                      for i in range(5)}
    names = [p.name for p in new_files(srv, "alice")]
    assert len(set(names)) == 5


def test_rset_in_the_middle_discards_the_transaction(make_server):
    srv = lmtp_server(make_server)
    c = client(srv)
    c.ehlo()
    assert c.mail("first@example.net")[0] == 250
    assert c.rcpt("alice@example.org")[0] == 250
    assert c.rset() == (250, b"2.0.0 OK")
    assert c.mail("second@example.net")[0] == 250
    assert c.rcpt("bob@example.org")[0] == 250
    assert c.data(b"Subject: after rset\r\n\r\nx\r\n") == (250, b"2.0.0 <bob@example.org> Saved")
    c.quit()
    stored_nothing(srv, "alice")
    (_, data), = pop3_fetch(srv, "bob")
    assert split_trace(data, "second@example.net", "bob@example.org")[1] == \
        b"Subject: after rset\r\n\r\nx\r\n"


# ---- message text: stuffing, smuggling, long lines ------------------------------------------


def test_dot_stuffing_by_hand(make_server):
    srv = lmtp_server(make_server)
    msg = b"Subject: dots\r\n\r\n.x\r\n..\r\n.\r\n...y\r\nend.\r\n. \r\n"
    wire = b"Subject: dots\r\n\r\n..x\r\n...\r\n..\r\n....y\r\nend.\r\n.. \r\n"
    assert stuff(msg) == wire
    m = Lmtp(srv)
    m.lhlo()
    assert m.transaction("s@example.net", ["alice@example.org"], wire) == \
        [b"250 2.0.0 <alice@example.org> Saved"]
    (size, data), = pop3_fetch(srv, "alice")
    assert split_trace(data, "s@example.net", "alice@example.org")[1] == msg
    path, = new_files(srv, "alice")
    check_name(path, size)
    assert path.read_bytes().endswith(msg.replace(b"\r\n", b"\n"))


def test_smtp_smuggling_bare_lf_never_ends_the_data(make_server):
    srv = lmtp_server(make_server)
    m = Lmtp(srv)
    m.lhlo()
    assert m.one("MAIL FROM:<s@example.net>") == b"250 2.1.0 Sender OK"
    assert m.one("RCPT TO:<alice@example.org>").startswith(b"250 ")
    assert m.one("DATA").startswith(b"354 ")
    m.send(b"Subject: smuggle\r\n\r\n"
           b"one\n.\nMAIL FROM:<evil@example.net>\r\n"      # LF . LF
           b"two\r\n.\nRCPT TO:<bob@example.org>\r\n"        # CRLF . LF
           b"three\n.\r\nDATA\r\n"                           # LF . CRLF
           b"four\r.\r\nfive\r\n")                           # CR . CRLF
    # none of those ended the data: no reply yet
    assert m.silent(0.5)
    m.send(b".\r\n")
    assert m.line() == b"250 2.0.0 <alice@example.org> Saved"
    assert m.silent(0.3)  # exactly one reply, nothing was taken as a command
    assert m.one("NOOP") == b"250 2.0.0 OK"
    path, = new_files(srv, "alice")
    stored = path.read_bytes()
    # the bare LFs are content; ".\nRCPT ..." is a line starting with "." and
    # loses that dot (RFC 5321 §4.5.2); the bare CR stays
    assert stored.endswith(b"Subject: smuggle\n\n"
                           b"one\n.\nMAIL FROM:<evil@example.net>\n"
                           b"two\n\nRCPT TO:<bob@example.org>\n"
                           b"three\n.\nDATA\n"
                           b"four\r.\n"
                           b"five\n"), stored
    stored_nothing(srv, "bob")
    (size, data), = pop3_fetch(srv, "alice")
    check_name(new_files(srv, "alice")[0], size)
    # POP3 sends the bare LFs as CRLF
    assert split_trace(data, "s@example.net", "alice@example.org")[1] == (
        b"Subject: smuggle\r\n\r\n"
        b"one\r\n.\r\nMAIL FROM:<evil@example.net>\r\n"
        b"two\r\n\r\nRCPT TO:<bob@example.org>\r\n"
        b"three\r\n.\r\nDATA\r\n"
        b"four\r.\r\n"
        b"five\r\n")


def test_data_ends_only_at_crlf_dot_crlf_across_writes(make_server):
    srv = lmtp_server(make_server)
    m = Lmtp(srv)
    m.lhlo()
    assert m.one("MAIL FROM:<s@example.net>") == b"250 2.1.0 Sender OK"
    assert m.one("RCPT TO:<alice@example.org>").startswith(b"250 ")
    assert m.one("DATA").startswith(b"354 ")
    pieces = [b"Subject: pieces\r\n\r\nbody\r", b"\n.", b"\n", b".x\r\n", b".", b"\r"]
    for piece in pieces:
        m.send(piece)
        assert m.silent(0.15), piece
    m.send(b"\n")
    assert m.line() == b"250 2.0.0 <alice@example.org> Saved"
    (_, data), = pop3_fetch(srv, "alice")
    # "body\r\n" then ".\n" + ".x" -> the line ".\n.x" loses its first dot
    assert split_trace(data, "s@example.net", "alice@example.org")[1] == \
        b"Subject: pieces\r\n\r\nbody\r\n\r\n.x\r\n"


def test_data_line_too_long(make_server):
    srv = lmtp_server(make_server)
    m = Lmtp(srv)
    m.lhlo()
    # 65534 octets + CRLF: accepted and stored whole
    long_ok = b"a" * 65534
    assert m.transaction("s@example.net", ["alice@example.org"],
                         b"Subject: long\r\n\r\n" + long_ok + b"\r\nend\r\n") == \
        [b"250 2.0.0 <alice@example.org> Saved"]
    (size, data), = pop3_fetch(srv, "alice")
    assert split_trace(data, "s@example.net", "alice@example.org")[1] == \
        b"Subject: long\r\n\r\n" + long_ok + b"\r\nend\r\n"
    # 70000 octets: the message cannot be stored as sent
    assert m.one("MAIL FROM:<s@example.net>") == b"250 2.1.0 Sender OK"
    assert m.one("RCPT TO:<bob@example.org>").startswith(b"250 ")
    assert m.one("RCPT TO:<carol@example.org>").startswith(b"250 ")
    assert m.one("DATA").startswith(b"354 ")
    m.send(b"Subject: too long\r\n\r\nbefore\r\n" + b"b" * 70000 + b"\r\nafter\r\n")
    assert m.silent(0.3)
    m.send(b".\r\n")
    assert m.line().startswith(b"554 5.6.0 <bob@example.org> ")
    assert m.line().startswith(b"554 5.6.0 <carol@example.org> ")
    stored_nothing(srv, "bob", "carol")
    # and the session goes on
    assert m.transaction("s@example.net", ["bob@example.org"], b"Subject: ok\r\n\r\nok\r\n") == \
        [b"250 2.0.0 <bob@example.org> Saved"]


def test_data_line_too_long_with_crlf_split_across_reads(make_server):
    """The overlong line's CR arrives with the line, its LF later: that CRLF
    still ends the line, and the "." after it still ends the data."""
    srv = lmtp_server(make_server)
    m = Lmtp(srv)
    m.lhlo()
    assert m.one("MAIL FROM:<s@example.net>") == b"250 2.1.0 Sender OK"
    assert m.one("RCPT TO:<bob@example.org>").startswith(b"250 ")
    assert m.one("DATA").startswith(b"354 ")
    m.send(b"Subject: too long\r\n\r\n")
    assert m.silent(0.2)
    # 65536 octets without a line end: the server drops them all, the CR too
    m.send(b"b" * 65535 + b"\r")
    assert m.silent(0.5)
    m.send(b"\n.\r\n")
    m.sock.settimeout(3)
    try:
        code, texts = m.reply()
    except socket.timeout:
        pytest.fail("no reply to the final '.': the CR dropped with the overlong line and "
                    "the LF after it were not taken as one line end")
    assert (code, texts[0][:len(b"5.6.0 <bob@example.org> ")]) == \
        (554, b"5.6.0 <bob@example.org> ")
    stored_nothing(srv, "bob")
    assert m.one("NOOP") == b"250 2.0.0 OK"


# ---- trace headers ------------------------------------------------------------------


def test_mail_loop_refused_for_that_recipient_only(make_server):
    srv = lmtp_server(make_server)
    m = Lmtp(srv)
    m.lhlo()
    msg = (b"Delivered-To: somebody@example.com\r\n"
           b"Delivered-To: <alice@example.org>\r\n"
           b"Subject: loop\r\n\r\nbody\r\n")
    assert m.transaction("s@example.net", ["alice@example.org", "bob@example.org"], msg) == [
        b"554 5.4.6 <alice@example.org> Mail loop: message already delivered to it",
        b"250 2.0.0 <bob@example.org> Saved"]
    stored_nothing(srv, "alice")
    (_, data), = pop3_fetch(srv, "bob")
    assert split_trace(data, "s@example.net", "bob@example.org")[1] == msg
    # a Delivered-To in the body is not a header: no loop
    msg2 = b"Subject: quoted\r\n\r\nDelivered-To: alice@example.org\r\n"
    assert m.transaction("s@example.net", ["alice@example.org"], msg2) == \
        [b"250 2.0.0 <alice@example.org> Saved"]
    # the loop check uses the full address, extension included
    msg3 = b"Delivered-To: carol+x@example.org\r\nSubject: ext\r\n\r\nx\r\n"
    assert m.transaction("s@example.net", ["carol+x@example.org", "carol@example.org"], msg3) == [
        b"554 5.4.6 <carol+x@example.org> Mail loop: message already delivered to it",
        b"250 2.0.0 <carol@example.org> Saved"]
    assert len(new_files(srv, "carol")) == 1
    assert tmp_files(srv, "carol") == []


def test_mail_loop_is_not_logged_as_delivered(make_server):
    srv = lmtp_server(make_server)
    m = Lmtp(srv)
    m.lhlo()
    msg = b"Delivered-To: alice@example.org\r\nSubject: loop\r\n\r\nbody\r\n"
    assert m.transaction("s@example.net", ["alice@example.org", "bob@example.org"], msg) == [
        b"554 5.4.6 <alice@example.org> Mail loop: message already delivered to it",
        b"250 2.0.0 <bob@example.org> Saved"]
    assert m.one("QUIT") == b"221 2.0.0 Bye"
    wait_for(lambda: "lmtp end:" in srv.log(), what="the session end")
    delivered = [line for line in srv.log().splitlines() if "delivered: user=" in line]
    assert len(delivered) == 1, "\n".join(delivered)
    assert "delivered: user=bob rcpt=<bob@example.org>" in delivered[0]
    assert re.search(r"lmtp end: .*delivered=1 ", srv.log()), srv.log()


def test_maildrop_that_cannot_be_created(make_server):
    """A recipient whose Maildir cannot be made gets 550 5.2.0 after the data;
    the other recipients are not affected."""
    srv = lmtp_server(make_server, users=("alice", "bob"))
    srv.add_user("dave")
    md = srv.maildir("dave")
    for sub in ("new", "cur", "tmp"):
        (md / sub).rmdir()
    md.rmdir()
    md.write_text("a file where the Maildir should be\n")
    m = Lmtp(srv)
    m.lhlo()
    assert m.transaction("s@example.net", ["alice@example.org", "dave@example.org",
                                           "bob@example.org"], b"Subject: x\r\n\r\nx\r\n") == [
        b"250 2.0.0 <alice@example.org> Saved",
        b"550 5.2.0 <dave@example.org> Mailbox cannot be created",
        b"250 2.0.0 <bob@example.org> Saved"]
    assert len(new_files(srv, "alice")) == len(new_files(srv, "bob")) == 1
    assert md.is_file()


@pytest.mark.skipif(RUN_AS is None, reason="needs pigeond to run as a user other than the test's")
def test_maildrop_without_permission_is_temporary(make_server):
    """EACCES is for the administrator to fix (a chown): 451, the MTA retries;
    a 550 would bounce the mail (lmtp.md checklist 16)."""
    srv = lmtp_server(make_server, users=("alice",))
    srv.add_user("dave")
    home = srv.mailroot / "dave"
    shutil.rmtree(home)
    home.mkdir()
    os.chmod(home, 0o700)  # the test's (root's): pigeond cannot make dave/Maildir
    m = Lmtp(srv)
    m.lhlo()
    assert m.transaction("s@example.net", ["alice@example.org", "dave@example.org"],
                         b"Subject: x\r\n\r\nx\r\n") == [
        b"250 2.0.0 <alice@example.org> Saved",
        b"451 4.3.0 <dave@example.org> Temporary failure, try again later"]
    assert list(home.iterdir()) == []


def test_quoted_local_part_in_the_trace_headers(make_server):
    """Return-Path keeps the quotes of MAIL FROM:<"john doe"@...>; without them
    it would not be an address."""
    srv = lmtp_server(make_server)
    m = Lmtp(srv)
    m.lhlo()
    assert m.transaction('"john doe"@example.net', ["alice@example.org"],
                         b"Subject: q\r\n\r\nq\r\n") == [b"250 2.0.0 <alice@example.org> Saved"]
    (path,) = new_files(srv, "alice")
    assert path.read_bytes().startswith(b'Return-Path: <"john doe"@example.net>\n')


def test_return_path_is_replaced(make_server):
    srv = lmtp_server(make_server)
    m = Lmtp(srv)
    m.lhlo()
    msg = (b"Return-Path: <forged@evil.example>\r\n"
           b"Subject: rp\r\n"
           b"return-path:\r\n"
           b"  <folded@evil.example>\r\n"
           b"\t(comment)\r\n"
           b"X-Other: kept\r\n"
           b"\r\n"
           b"Return-Path: <in-body@example.net> stays\r\n")
    kept = (b"Subject: rp\r\n"
            b"X-Other: kept\r\n"
            b"\r\n"
            b"Return-Path: <in-body@example.net> stays\r\n")
    assert m.transaction("real@example.net", ["alice@example.org"], msg) == \
        [b"250 2.0.0 <alice@example.org> Saved"]
    assert m.transaction("", ["bob@example.org"], msg) == [b"250 2.0.0 <bob@example.org> Saved"]
    (size, data), = pop3_fetch(srv, "alice")
    assert split_trace(data, "real@example.net", "alice@example.org")[1] == kept
    assert data.lower().count(b"\r\nreturn-path:") + data.lower().startswith(b"return-path:") == 2
    assert b"evil.example" not in data
    check_name(new_files(srv, "alice")[0], size)
    (size, data), = pop3_fetch(srv, "bob")
    assert data.startswith(b"Return-Path: <>\r\n")
    assert split_trace(data, "", "bob@example.org")[1] == kept
    check_name(new_files(srv, "bob")[0], size)


def test_recipient_delimiter(make_server):
    srv = lmtp_server(make_server, passwd_lines=("erin@example.org:{PLAIN}secret:::::",))
    c = client(srv)
    assert c.sendmail("s@example.net", ["bob+tag@example.org"], MESSAGE) == {}
    assert c.sendmail("s@example.net", ["bob+@example.org"], MESSAGE) == {}
    assert c.sendmail("s@example.net", ["erin+list@example.org"], MESSAGE) == {}
    refused = c.sendmail("s@example.net", ["nobody+tag@example.org", "alice"], MESSAGE)
    assert refused == {
        "nobody+tag@example.org": (550, b"5.1.1 <nobody+tag@example.org> User unknown")}
    c.quit()
    got = pop3_fetch(srv, "bob")
    assert len(got) == 2
    rcpts = sorted(TRACE.match(d).group("rcpt") for _, d in got)
    assert rcpts == [b"bob+@example.org", b"bob+tag@example.org"]
    for _, data in got:
        rcpt = TRACE.match(data).group("rcpt").decode()
        assert split_trace(data, "s@example.net", rcpt)[1] == MESSAGE
    (_, data), = pop3_fetch(srv, "erin@example.org")
    assert split_trace(data, "s@example.net", "erin+list@example.org")[1] == MESSAGE
    (_, data), = pop3_fetch(srv, "alice")
    assert split_trace(data, "s@example.net", "alice")[1] == MESSAGE


def test_recipient_delimiter_off(make_server):
    srv = lmtp_server(make_server, settings={"delivery": {"recipient_delimiter": ""}})
    with client(srv) as c:
        refused = c.sendmail("s@example.net", ["bob+tag@example.org", "bob@example.org"], MESSAGE)
        assert refused == {
            "bob+tag@example.org": (550, b"5.1.1 <bob+tag@example.org> User unknown")}
    assert len(new_files(srv, "bob")) == 1


# ---- quota --------------------------------------------------------------------------


def body_of(n):
    """A message of exactly n octets (CRLF counted)."""
    head = b"Subject: sized\r\n\r\n"
    assert n >= len(head) + 2
    return head + b"q" * (n - len(head) - 2) + b"\r\n"


def test_quota_permanent(make_server):
    srv = lmtp_server(make_server, settings={"delivery": {"quota": "1k"}})
    big = body_of(1500)
    c = client(srv)
    # SIZE= declared (smtplib does): refused at RCPT
    with pytest.raises(smtplib.SMTPRecipientsRefused) as e:
        c.sendmail("s@example.net", ["alice@example.org"], big)
    assert e.value.recipients == {
        "alice@example.org": (552, b"5.2.2 <alice@example.org> Mailbox quota exceeded")}
    c.quit()
    stored_nothing(srv, "alice")
    # no SIZE=: refused after the data
    m = Lmtp(srv)
    m.lhlo()
    assert m.transaction("s@example.net", ["alice@example.org", "bob@example.org"], big) == [
        b"552 5.2.2 <alice@example.org> Mailbox quota exceeded",
        b"552 5.2.2 <bob@example.org> Mailbox quota exceeded"]
    stored_nothing(srv, "alice", "bob")
    # a small one fits; the second one no longer does (usage counts)
    small = body_of(400)
    assert m.transaction("s@example.net", ["alice@example.org"], small) == \
        [b"250 2.0.0 <alice@example.org> Saved"]
    used = new_files(srv, "alice")[0].stat().st_size
    assert 400 < used < 1024
    assert m.one("MAIL FROM:<s@example.net> SIZE=%d" % (1024 - used + 1)) == b"250 2.1.0 Sender OK"
    assert m.one("RCPT TO:<alice@example.org>") == \
        b"552 5.2.2 <alice@example.org> Mailbox quota exceeded"
    assert m.one("RSET") == b"250 2.0.0 OK"
    assert m.transaction("s@example.net", ["alice@example.org"], small) == \
        [b"552 5.2.2 <alice@example.org> Mailbox quota exceeded"]
    assert len(new_files(srv, "alice")) == 1
    assert tmp_files(srv, "alice") == []


def test_quota_tempfail(make_server):
    srv = lmtp_server(make_server, settings={"delivery": {"quota": "1k", "quota_tempfail": "yes"}})
    big = body_of(1500)
    m = Lmtp(srv)
    m.lhlo()
    assert m.one("MAIL FROM:<s@example.net> SIZE=1500") == b"250 2.1.0 Sender OK"
    assert m.one("RCPT TO:<alice@example.org>") == \
        b"452 4.2.2 <alice@example.org> Mailbox full, try again later"
    assert m.one("RSET") == b"250 2.0.0 OK"
    assert m.transaction("s@example.net", ["alice@example.org"], big) == \
        [b"452 4.2.2 <alice@example.org> Mailbox full, try again later"]
    stored_nothing(srv, "alice")


def test_quota_per_user_overrides(make_server):
    srv = lmtp_server(make_server, settings={"delivery": {"quota": "1k"}},
                      passwd_lines=("dave:{PLAIN}secret::::::quota=2k",
                                    "fred:{PLAIN}secret::::::quota=0"))
    msg = body_of(1400)
    with client(srv) as c:
        refused = c.sendmail("s@example.net",
                             ["alice@example.org", "dave@example.org", "fred@example.org"], msg)
        assert refused == {
            "alice@example.org": (552, b"5.2.2 <alice@example.org> Mailbox quota exceeded")}
        assert c.getreply() == (250, b"2.0.0 <fred@example.org> Saved")
        # dave: 1400 + trace headers fit in 2k once, not twice
        with pytest.raises(smtplib.SMTPRecipientsRefused) as e:
            c.sendmail("s@example.net", ["dave@example.org"], msg)
        assert e.value.recipients["dave@example.org"][0] == 552
    (_, data), = pop3_fetch(srv, "dave")
    assert split_trace(data, "s@example.net", "dave@example.org")[1] == msg
    assert len(new_files(srv, "fred")) == 1  # quota=0: no limit for fred
    stored_nothing(srv, "alice")


# ---- Unix socket --------------------------------------------------------------------


@pytest.mark.parametrize("owner", ["pigeon", "default"])
def test_unix_socket_listener(make_server, owner):
    srv = make_server(start=False)
    path = srv.dir / "lmtp.sock"
    settings = {"listen": "unix:%s" % path, "socket_mode": "0660"}
    if owner == "pigeon":
        if RUN_AS is None:
            pytest.skip("chown to another user needs root")
        settings["socket_user"] = RUN_AS
    srv.settings["lmtp"] = settings
    srv.add_user("alice")
    srv.start()
    wait_for(path.exists, what="the LMTP socket")
    st = path.lstat()
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o660
    if owner == "pigeon":
        pw = pwd.getpwnam(RUN_AS)
        assert (st.st_uid, st.st_gid) == (pw.pw_uid, pw.pw_gid)
    else:
        assert st.st_uid == os.geteuid()
    with smtplib.LMTP(str(path), local_hostname=HELO, timeout=10) as c:
        assert c.sendmail("s@example.net", ["alice@example.org"], MESSAGE) == {}
    (size, data), = pop3_fetch(srv, "alice")
    assert split_trace(data, "s@example.net", "alice@example.org", peer=b"local")[1] == MESSAGE
    check_name(new_files(srv, "alice")[0], size)
    # by hand too, pipelined
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(str(path))
    m = Lmtp(sock=s)
    m.lhlo()
    assert m.transaction("", ["alice@example.org"], b"Subject: 2\r\n\r\n2\r\n") == \
        [b"250 2.0.0 <alice@example.org> Saved"]
    assert m.one("QUIT") == b"221 2.0.0 Bye"


# ---- POP3 and LMTP together ------------------------------------------------------------


def test_delivery_during_an_open_pop3_session(make_server):
    srv = lmtp_server(make_server)
    old1 = b"Subject: old one\n\n1\n"
    old2 = b"Subject: old two\n\n2\n"
    srv.deliver("alice", old1)
    srv.deliver("alice", old2)
    p = srv.raw()
    assert p.command("USER alice") == b"+OK Send your password"
    assert p.command("PASS secret").startswith(b"+OK Maildrop has 2 messages")
    new = b"Subject: arrived during the session\r\n\r\nnew\r\n"
    with client(srv) as c:
        assert c.sendmail("s@example.net", ["alice@example.org"], new) == {}
    assert len(new_files(srv, "alice")) == 3
    assert p.command("STAT").startswith(b"+OK 2 ")
    assert p.command("LIST").startswith(b"+OK 2 messages")
    assert len(p.read_multiline()) == 2
    assert p.command("RETR 3") == b"-ERR No such message"
    assert p.command("DELE 1") == b"+OK Message 1 deleted"
    assert p.command("DELE 2") == b"+OK Message 2 deleted"
    assert p.command("QUIT") == b"+OK Bye, 0 messages left"
    assert p.is_closed(5)
    p.close()
    (size, data), = pop3_fetch(srv, "alice")
    assert split_trace(data, "s@example.net", "alice@example.org")[1] == new


# ---- who may connect ------------------------------------------------------------------


def test_untrusted_network_refused(make_server):
    srv = lmtp_server(make_server, settings={"auth": {"trusted_networks": "127.0.0.1/32"}})
    try:
        m = Lmtp(srv, source=("127.0.0.2", 0), greeting=False)
    except OSError as e:
        pytest.skip("cannot connect from 127.0.0.2: %s" % e)
    assert m.line() == b"554 5.7.1 Not allowed to deliver from your address"
    assert m.is_closed(5)
    m.close()
    wait_for(lambda: "not in [auth] trusted_networks" in srv.log(), what="the log line")
    # 127.0.0.1 itself still delivers
    with client(srv) as c:
        assert c.sendmail("s@example.net", ["alice@example.org"], MESSAGE) == {}
    assert len(new_files(srv, "alice")) == 1


# ---- failures in the middle ------------------------------------------------------------


@pytest.mark.parametrize("how", ["close", "reset"])
def test_dropped_connection_in_data_leaves_nothing(make_server, how):
    srv = lmtp_server(make_server)
    m = Lmtp(srv)
    m.lhlo()
    assert m.one("MAIL FROM:<s@example.net>") == b"250 2.1.0 Sender OK"
    assert m.one("RCPT TO:<alice@example.org>").startswith(b"250 ")
    assert m.one("RCPT TO:<bob@example.org>").startswith(b"250 ")
    assert m.one("DATA").startswith(b"354 ")
    m.send(b"Subject: half\r\n\r\n" + b"line\r\n" * 10000)
    wait_for(lambda: tmp_files(srv, "alice") and tmp_files(srv, "bob"), what="tmp/ files")
    # written as it arrives (in blocks of some KiB)
    wait_for(lambda: tmp_files(srv, "alice")[0].stat().st_size > 20000, what="data written")
    if how == "reset":
        m.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
    m.close()
    wait_for(lambda: not tmp_files(srv, "alice") and not tmp_files(srv, "bob"),
             what="tmp/ to be cleaned")
    wait_for(lambda: "lmtp end:" in srv.log(), what="the session end")
    stored_nothing(srv, "alice", "bob")
    # the server goes on
    with client(srv) as c:
        assert c.sendmail("s@example.net", ["alice@example.org"], MESSAGE) == {}


def test_sigterm_in_data_gets_421_and_stores_nothing(make_server):
    srv = lmtp_server(make_server)
    m = Lmtp(srv)
    m.lhlo()
    assert m.one("MAIL FROM:<s@example.net>") == b"250 2.1.0 Sender OK"
    assert m.one("RCPT TO:<alice@example.org>").startswith(b"250 ")
    assert m.one("DATA").startswith(b"354 ")
    m.send(b"Subject: interrupted\r\n\r\nsome text\r\n")
    wait_for(lambda: tmp_files(srv, "alice"), what="the tmp/ file")
    srv.proc.send_signal(signal.SIGTERM)
    assert m.is_closed(10), "still open after SIGTERM"
    srv.proc.wait(timeout=20)
    srv.stop()
    stored_nothing(srv, "alice")
    # RFC 5321 §3.8 / lmtp.md checklist 24: 421 before the close
    assert m.buf.startswith(b"421 4.3.2 ") and m.buf.endswith(b"\r\n"), \
        "no 421 before the close: %r" % m.buf


def test_lock_wait_is_one_budget_for_all_recipients(make_server):
    """Two recipients whose maildrops are both locked by someone else: the
    message waits about 5 s in all (DELIVER_LOCK_WAIT_MS), not 5 s for each
    copy, then both get 451 (a stopping worker must finish within the 10 s
    its master grants)."""
    srv = lmtp_server(make_server, settings={"delivery": {"quota": "10m"}})
    holders = []
    for user in ("alice", "bob"):
        lock_path = srv.maildir(user) / "pigeon-deliver.lock"
        holder = open(lock_path, "a+")
        give_to_server(lock_path)
        fcntl.lockf(holder, fcntl.LOCK_EX)
        holders.append(holder)
    try:
        m = Lmtp(srv)
        m.lhlo()
        assert m.one("MAIL FROM:<s@example.net>") == b"250 2.1.0 Sender OK"
        for user in ("alice", "bob"):
            assert m.one("RCPT TO:<%s@example.org>" % user).startswith(b"250 ")
        assert m.one("DATA").startswith(b"354 ")
        t0 = time.monotonic()
        m.send(b"Subject: locked out\r\n\r\ntext\r\n.\r\n")
        first, second = m.line(), m.line()
        took = time.monotonic() - t0
    finally:
        for holder in holders:
            holder.close()
    assert first.startswith(b"451 ") and second.startswith(b"451 "), (first, second)
    assert 4.5 <= took < 8, "waited %.1f s for two locked maildrops" % took
    assert new_files(srv, "alice") == [] and new_files(srv, "bob") == []


def test_sigterm_while_storing_sends_the_real_replies_then_421(make_server):
    """A SIGTERM while the final store job runs: the message is committed
    anyway, so the client gets the job's real reply (then 421), never a 421
    for a message that is stored (the MTA would send it again)."""
    srv = lmtp_server(make_server, settings={"delivery": {"quota": "10m"}})
    # With a quota, the store job takes the maildrop's delivery lock; holding
    # it keeps the job running for as long as the test likes.
    lock_path = srv.maildir("alice") / "pigeon-deliver.lock"
    with open(lock_path, "a+") as holder:
        give_to_server(lock_path)
        fcntl.lockf(holder, fcntl.LOCK_EX)
        m = Lmtp(srv)
        m.lhlo()
        assert m.one("MAIL FROM:<s@example.net>") == b"250 2.1.0 Sender OK"
        assert m.one("RCPT TO:<alice@example.org>").startswith(b"250 ")
        assert m.one("DATA").startswith(b"354 ")
        m.send(b"Subject: stored during shutdown\r\n\r\ntext\r\n.\r\n")
        assert m.silent(0.5), "replied before the store job could finish: %r" % m.buf
        srv.proc.send_signal(signal.SIGTERM)
        assert m.silent(1.0), "replied while the message was being stored: %r" % m.buf
        fcntl.lockf(holder, fcntl.LOCK_UN)
    assert m.line() == b"250 2.0.0 <alice@example.org> Saved"
    code, texts = m.reply()
    assert code == 421 and texts[0].startswith(b"4.3.2 "), (code, texts)
    assert m.is_closed(10)
    srv.proc.wait(timeout=20)
    srv.stop()
    assert len(new_files(srv, "alice")) == 1 and tmp_files(srv, "alice") == []

"""End to end with a real Postfix (spec/lmtp.md §8): mail submitted over SMTP
to a private Postfix instance is handed by Postfix's lmtp(8) client to
pigeond's LMTP listener and read back over POP3.

The Postfix instance lives entirely in tmp_path: its own config directory
(main.cf, master.cf), queue_directory, data_directory and log file
(maillog_file, written by postlogd), an smtpd on a free loopback port and
no chroot. It is started as root with `postfix -c DIR start` (root may name any
config directory; /etc/postfix/main.cf is neither needed nor touched) and is
always stopped in a finalizer, which also checks that no Postfix process of
this instance is left behind.

The module is skipped when Postfix is not installed, when the tests do not
run as root (Postfix must start as root) or when the instance cannot start.
"""
import os
import pathlib
import pwd
import re
import smtplib
import subprocess
import time

import pytest

from conftest import build_dir, free_port

POSTFIX = "/usr/sbin/postfix"
DAEMON_DIR = "/usr/lib/postfix/sbin"

pytestmark = [
    pytest.mark.skipif(not os.path.exists(POSTFIX), reason="Postfix is not installed (%s)" % POSTFIX),
    pytest.mark.skipif(os.geteuid() != 0, reason="a private Postfix instance must be started as root"),
]

DOMAIN = "example.test"
SENDER = "alice@sender.test"
POLL_TIMEOUT = 30

# Postfix's own daemons, as master.cf names them (no chroot: "n" in column 5).
MASTER_CF = """\
127.0.0.1:{smtp_port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def main_cf(base, smtp_port, lmtp_port, extra=()):
    """main.cf of the private instance; `extra` lines come last and so win
    (Postfix uses the last definition of a parameter)."""
    return "\n".join([
        "compatibility_level = 3.6",
        "queue_directory = %s" % (base / "queue"),
        "data_directory = %s" % (base / "data"),
        "maillog_file_prefixes = %s" % base,
        "maillog_file = %s" % (base / "maillog"),
        "myhostname = mx.pigeon-test.invalid",
        "mydomain = pigeon-test.invalid",
        "myorigin = $myhostname",
        "inet_interfaces = 127.0.0.1",
        "inet_protocols = ipv4",
        "mynetworks = 127.0.0.0/8",
        "mydestination =",
        "relay_domains =",
        "alias_maps =",
        "alias_database =",
        "local_recipient_maps =",
        # Every address of the domain is accepted by smtpd and so reaches LMTP,
        # where Pigeon decides (unknown users: 550 5.1.1 at RCPT).
        "virtual_mailbox_domains = %s" % DOMAIN,
        "virtual_mailbox_maps = static:accept",
        "virtual_transport = lmtp:inet:[127.0.0.1]:%d" % lmtp_port,
        # Nothing leaves the host: bounces to other domains fail locally.
        "default_transport = error:no mail leaves this test",
        "relay_transport = error:no mail leaves this test",
        "smtputf8_enable = no",
        "smtpd_peername_lookup = no",
        # Leave the message's header alone so it can be compared byte for byte.
        "local_header_rewrite_clients =",
        "biff = no",
        "smtpd_banner = $myhostname ESMTP",
        "queue_run_delay = 1s",
        "minimal_backoff_time = 1s",
        "maximal_backoff_time = 2s",
    ] + list(extra) + [""])


def postfix_cmd(conf, *args, timeout=60):
    return subprocess.run([POSTFIX, "-c", str(conf)] + list(args), stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)


def instance_pids(queue):
    """PIDs of the processes of this Postfix instance: every Postfix daemon
    runs with the queue directory as its working directory."""
    queue = os.path.realpath(queue)
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cwd = os.readlink("/proc/%s/cwd" % entry)
            with open("/proc/%s/cmdline" % entry, "rb") as f:
                cmd = f.read().split(b"\0")[0]
        except OSError:
            continue
        if cwd == queue and cmd.startswith(DAEMON_DIR.encode()):
            pids.append(int(entry))
    return pids


class PostfixInstance:
    def __init__(self, base, lmtp_port, extra_main=(), extra_master=""):
        self.base = pathlib.Path(base)
        self.conf = self.base / "conf"
        self.queue = self.base / "queue"
        self.data = self.base / "data"
        self.maillog = self.base / "maillog"
        self.smtp_port = free_port()
        self.started = False
        for d in (self.conf, self.queue, self.data):
            d.mkdir(parents=True, exist_ok=True)
        pw = pwd.getpwnam("postfix")
        os.chown(self.data, pw.pw_uid, pw.pw_gid)
        # Postfix's daemons (user postfix) must reach the queue inside
        # pytest's 0700 temporary directories: search permission only.
        for parent in self.base.resolve().parents:
            mode = parent.stat().st_mode
            if not mode & 0o001:
                os.chmod(parent, (mode & 0o7777) | 0o001)
        os.chmod(self.base, 0o755)
        (self.conf / "main.cf").write_text(main_cf(self.base, self.smtp_port, lmtp_port, extra_main))
        (self.conf / "master.cf").write_text(MASTER_CF.format(smtp_port=self.smtp_port)
                                             + extra_master)

    def log(self):
        try:
            return self.maillog.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def start(self):
        try:
            check = postfix_cmd(self.conf, "check")
        except subprocess.TimeoutExpired:
            pytest.skip("`postfix -c DIR check` did not finish")
        if check.returncode != 0:
            pytest.skip("Postfix rejects the private instance (postfix check): %s %s"
                        % (check.stdout.decode(errors="replace"), self.log()))
        self.started = True  # from here on, always try to stop it
        res = postfix_cmd(self.conf, "start")
        if res.returncode != 0:
            pytest.skip("Postfix cannot be started here (postfix start: %s): %s %s"
                        % (res.returncode, res.stdout.decode(errors="replace"), self.log()))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                with smtplib.SMTP("127.0.0.1", self.smtp_port, timeout=5) as s:
                    s.noop()
                    return
            except OSError:
                time.sleep(0.1)
        pytest.skip("Postfix's smtpd did not come up on 127.0.0.1:%d:\n%s"
                    % (self.smtp_port, self.log()))

    def stop(self):
        """Stop the instance; returns the PIDs that had to be killed."""
        if not self.started:
            return []
        self.started = False
        try:
            postfix_cmd(self.conf, "stop", timeout=30)
        except subprocess.TimeoutExpired:
            pass
        deadline = time.monotonic() + 15
        while instance_pids(self.queue) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = instance_pids(self.queue)
        for pid in left:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        return left

    def wait_log(self, pattern, timeout=POLL_TIMEOUT):
        regex = re.compile(pattern, re.M)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = regex.search(self.log())
            if m:
                return m
            time.sleep(0.2)
        raise AssertionError("no %r in the Postfix log within %ds:\n%s" % (pattern, timeout, self.log()))

    def send(self, rcpts, message, sender=SENDER):
        with smtplib.SMTP("127.0.0.1", self.smtp_port, timeout=15) as s:
            s.ehlo("client.pigeon-test.invalid")
            refused = s.sendmail(sender, rcpts, message, mail_options=["BODY=8BITMIME"])
        assert refused == {}, refused


@pytest.fixture
def mta(make_server, tmp_path):
    """pigeond (POP3 + LMTP on loopback, users bob and carol) fed by a
    private Postfix instance whose virtual_transport is pigeond's LMTP."""
    yield from _mta(make_server, tmp_path)


def _mta(make_server, tmp_path, users=("bob", "carol"), extra_main=(), extra_master=""):
    lmtp_port = free_port()
    srv = make_server(start=False, settings={
        "lmtp": {"listen": "127.0.0.1:%d" % lmtp_port},
        "log": {"level": "info"},
    })
    for user in users:
        srv.add_user(user, "secret")
    srv.start()
    pf = PostfixInstance(tmp_path / "postfix", lmtp_port, extra_main(srv) if callable(extra_main)
                         else extra_main, extra_master(srv) if callable(extra_master)
                         else extra_master)
    try:
        pf.start()
        yield srv, pf
    finally:
        left = pf.stop()
        assert not left, "Postfix processes still running after `postfix stop`: %s" % left


def pop3_messages(srv, user, expect, timeout=POLL_TIMEOUT):
    """Poll STAT until `expect` messages are there (bounded); returns their
    contents as the octets POP3 sends (CRLF line ends, unstuffed)."""
    deadline = time.monotonic() + timeout
    count = 0
    while time.monotonic() < deadline:
        p = srv.login(user, "secret")
        try:
            count, _ = p.stat()
            if count >= expect:
                out = []
                for i in range(1, count + 1):
                    _, lines, _ = p.retr(i)
                    out.append(b"".join(line + b"\r\n" for line in lines))
                return out
        finally:
            p.quit()
        time.sleep(0.2)
    raise AssertionError("%s has %d of %d messages after %ds" % (user, count, expect, timeout))


def message(subject, to="bob@%s" % DOMAIN):
    """A message with the traps of a byte-for-byte comparison: dot lines,
    a body line starting "From ", 8-bit text, trailing blanks, an empty line
    at the end."""
    head = (
        "From: Alice <%s>\r\n"
        "To: %s\r\n"
        "Subject: %s\r\n"
        "Date: Mon, 01 Jan 2024 12:00:00 +0000\r\n"
        "Message-ID: <%s.%d@sender.test>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n"
        "\r\n" % (SENDER, to, subject, subject.replace(" ", "-"), os.getpid()))
    body = (
        "Hello Bob,\r\n"
        ".\r\n"
        "..two dots\r\n"
        ". a dot and a space\r\n"
        "From here on it is the body.\r\n"
        "caf\u00e9 na\u00efve \u00fcber\r\n"
        "trailing blanks   \r\n"
        "\ttab first\r\n"
        + "x" * 900 + "\r\n"
        "\r\n"
        "-- \r\n"
        "Alice\r\n"
        "\r\n")
    return (head + body).encode("utf-8")


def split_trace(stored, original):
    """(trace header lines, the rest) of a retrieved copy, cut where the
    original message's first line starts."""
    first = original.split(b"\r\n", 1)[0] + b"\r\n"
    pos = stored.find(b"\r\n" + first)
    assert pos >= 0, "the original message's first line is not in the copy:\n%r" % stored[:2000]
    return stored[:pos + 2], stored[pos + 2:]


def header_fields(block):
    """Unfolded header fields of a trace block, in order."""
    fields = []
    for line in block.split(b"\r\n"):
        if not line:
            continue
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += b" " + line.strip()
        else:
            fields.append(line)
    return fields


def check_trace(trace, rcpt):
    fields = header_fields(trace)
    names = [f.split(b":", 1)[0].lower() for f in fields]
    # Pigeon's own lines come first (Return-Path, Delivered-To, Received ...
    # with LMTP), then the Received Postfix's smtpd added.
    assert fields[0] == b"Return-Path: <%s>" % SENDER.encode(), fields
    assert names.count(b"return-path") == 1, fields
    assert b"Delivered-To: %s" % rcpt.encode() in fields, fields
    pigeon_rcv = [f for f in fields if f.startswith(b"Received:") and b"(Pigeon)" in f]
    assert len(pigeon_rcv) == 1, fields
    assert re.search(rb"\bwith LMTP\b", pigeon_rcv[0]), pigeon_rcv
    assert b"[127.0.0.1]" in pigeon_rcv[0], pigeon_rcv
    postfix_rcv = [f for f in fields if f.startswith(b"Received:") and b"(Postfix)" in f]
    assert len(postfix_rcv) == 1 and b"with ESMTP" in postfix_rcv[0], fields
    # Pigeon's Received is above Postfix's: trace lines are prepended.
    assert fields.index(pigeon_rcv[0]) < fields.index(postfix_rcv[0]), fields
    assert set(names) <= {b"return-path", b"delivered-to", b"received"}, fields


def test_smtp_to_pop3_byte_for_byte(mta):
    srv, pf = mta
    msg = message("end to end")
    pf.send(["bob@%s" % DOMAIN], msg)
    (stored,) = pop3_messages(srv, "bob", 1)
    trace, rest = split_trace(stored, msg)
    assert rest == msg, "the message changed on its way:\nsent %r\ngot  %r" % (msg, rest)
    check_trace(trace, "bob@%s" % DOMAIN)
    pf.wait_log(r"to=<bob@example\.test>.*relay=127\.0\.0\.1\[127\.0\.0\.1\]:\d+.*status=sent")
    # The maildrop holds exactly that one message, S= being its size on disk.
    files = [p for sub in ("new", "cur") for p in (srv.maildir("bob") / sub).iterdir()]
    assert len(files) == 1, files
    m = re.search(r",S=(\d+)", files[0].name)
    assert m and int(m.group(1)) == files[0].stat().st_size, files[0].name
    assert srv.messages("carol") == []


def test_unknown_recipient_is_bounced(mta):
    srv, pf = mta
    pf.send(["nobody@%s" % DOMAIN], message("to nobody", "nobody@%s" % DOMAIN))
    m = pf.wait_log(r"to=<nobody@example\.test>.*status=(\w+) \((.*)\)$")
    assert m.group(1) == "bounced", m.group(0)
    assert re.search(r"\b550[ -]5\.1\.1\b", m.group(2)), m.group(0)
    # Nothing stored anywhere: no maildrop for "nobody", none for the others.
    assert not (srv.mailroot / "nobody").exists()
    assert srv.messages("bob") == [] and srv.messages("carol") == []
    for md in (srv.maildir("bob"), srv.maildir("carol")):
        assert list((md / "tmp").iterdir()) == []


def test_two_recipients_in_one_transaction(mta):
    srv, pf = mta
    msg = message("two of them", "bob@%s, carol@%s" % (DOMAIN, DOMAIN))
    pf.send(["bob@%s" % DOMAIN, "carol@%s" % DOMAIN], msg)
    for user in ("bob", "carol"):
        (stored,) = pop3_messages(srv, user, 1)
        trace, rest = split_trace(stored, msg)
        assert rest == msg, user
        check_trace(trace, "%s@%s" % (user, DOMAIN))
    for user in ("bob", "carol"):
        pf.wait_log(r"to=<%s@example\.test>.*status=sent" % user)


def test_mixed_known_and_unknown_recipients(mta):
    """One LMTP transaction where RCPT fails for one address: the others are
    delivered, the unknown one bounced, nothing duplicated."""
    srv, pf = mta
    msg = message("mixed", "bob@%s, nobody@%s" % (DOMAIN, DOMAIN))
    pf.send(["bob@%s" % DOMAIN, "nobody@%s" % DOMAIN], msg)
    (stored,) = pop3_messages(srv, "bob", 1)
    assert split_trace(stored, msg)[1] == msg
    m = pf.wait_log(r"to=<nobody@example\.test>.*status=(\w+)")
    assert m.group(1) == "bounced", m.group(0)
    pf.wait_log(r"to=<bob@example\.test>.*status=sent")
    time.sleep(0.5)
    assert len(srv.messages("bob")) == 1


# ---- Postfix local(8) running `pigeon deliver` as its mailbox_command ----------

LOCAL_USER = "pigeon"   # a UNIX account local(8) can deliver to (scripts/deps creates it)
LOCAL_DOMAIN = "localhost"


@pytest.fixture
def mta_local(make_server, tmp_path):
    """Postfix delivering mail for LOCAL_USER@localhost with local(8) and
    mailbox_command = pigeon deliver -c CONF -f "$SENDER" -a "$RECIPIENT"
    (lmtp.md §9's example), run as that user."""
    try:
        pwd.getpwnam(LOCAL_USER)
    except KeyError:
        pytest.skip("no UNIX account %r for local(8) to deliver to" % LOCAL_USER)

    def extra(srv):
        return [
            "mydestination = %s" % LOCAL_DOMAIN,
            "mailbox_command = %s deliver -c %s -f \"$SENDER\" -a \"$RECIPIENT\""
            % (build_dir() / "pigeon", srv.config_path),
        ]
    yield from _mta(make_server, tmp_path, users=(LOCAL_USER,), extra_main=extra,
                    extra_master="local     unix  -       n       n       -       -       local\n")


def test_mailbox_command_delivery(mta_local):
    """Postfix prepends Return-Path, X-Original-To and Delivered-To (and a
    "From " line) for a mailbox_command; `pigeon deliver` must store that
    once, without calling Postfix's own Delivered-To a mail loop."""
    srv, pf = mta_local
    rcpt = "%s@%s" % (LOCAL_USER, LOCAL_DOMAIN)
    msg = message("via local", rcpt)
    pf.send([rcpt], msg)
    m = pf.wait_log(r"to=<%s>.*relay=local.*status=(\w+) \((.*)\)$" % re.escape(rcpt))
    assert m.group(1) == "sent", "Postfix did not deliver through pigeon deliver: " + m.group(0)
    assert "delivered to command" in m.group(2), m.group(0)
    (stored,) = pop3_messages(srv, LOCAL_USER, 1)
    trace, rest = split_trace(stored, msg)
    assert rest == msg
    fields = header_fields(trace)
    assert not trace.startswith(b"From "), trace
    assert [f for f in fields if f.lower().startswith(b"return-path:")] == \
        [b"Return-Path: <%s>" % SENDER.encode()], fields
    assert [f for f in fields if f.lower().startswith(b"delivered-to:")] == \
        [b"Delivered-To: %s" % rcpt.encode()], fields


# ---- Postfix pipe(8) running `pigeon deliver` as pigeond's user ----------------

@pytest.fixture
def mta_pipe(make_server, tmp_path):
    """Postfix delivering the virtual domain through a pipe(8) transport that
    runs `pigeon deliver` as pigeond's [server] user, as docs/delivery.md
    recommends (user=pigeon, recipient limit 1, no D/R flags)."""
    try:
        pwd.getpwnam("pigeon")
    except KeyError:
        pytest.skip("no UNIX account 'pigeon' for pipe(8) to run as")

    def extra(srv):
        return ["virtual_transport = pigeon", "pigeon_destination_recipient_limit = 1"]

    def master(srv):
        return ("pigeon    unix  -       n       n       -       -       pipe\n"
                "  user=pigeon argv=%s deliver -c %s -f ${sender} -a ${recipient}\n"
                % (build_dir() / "pigeon", srv.config_path))
    yield from _mta(make_server, tmp_path, extra_main=extra, extra_master=master)


def test_pipe_transport_as_the_pigeon_user(mta_pipe):
    """Two recipients, one `pigeon deliver` each, running as pigeond's user:
    each copy carries its own Return-Path and Delivered-To once, and
    pigeond serves what the delivery agent created."""
    srv, pf = mta_pipe
    msg = message("via pipe", "bob@%s, carol@%s" % (DOMAIN, DOMAIN))
    pf.send(["bob@%s" % DOMAIN, "carol@%s" % DOMAIN], msg)
    for user in ("bob", "carol"):
        rcpt = "%s@%s" % (user, DOMAIN)
        m = pf.wait_log(r"to=<%s>.*relay=pigeon.*status=(\w+)" % re.escape(rcpt))
        assert m.group(1) == "sent", m.group(0)
        (stored,) = pop3_messages(srv, user, 1)
        trace, rest = split_trace(stored, msg)
        assert rest == msg
        fields = header_fields(trace)
        assert fields[:2] == [b"Return-Path: <%s>" % SENDER.encode(),
                              b"Delivered-To: %s" % rcpt.encode()], fields

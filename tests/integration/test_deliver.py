"""`pigeon deliver`, the local delivery agent, used as an MTA pipes to it
(spec/lmtp.md §9, §12): what ends up in the Maildir, the exit status and the
RFC 3463 code at the start of stderr for every failure class, crash safety
under SIGKILL, and delivery next to an open POP3 session.

Each test writes a pigeon.conf and passwd-file through make_server (without
starting pigeond) and runs `pigeon deliver -c` on it as the test's own user;
where the result is read back over POP3, pigeond is then started on the same
configuration (PigeonServer.start hands the tree to its user).
"""
import fcntl
import hashlib
import os
import random
import re
import shutil
import signal
import subprocess
import threading
import time

import pytest

from conftest import build_dir, give_tree

EX_OK = 0
EX_USAGE = 64
EX_DATAERR = 65
EX_NOUSER = 67
EX_CANTCREAT = 73
EX_TEMPFAIL = 75

SANITIZER_MARKERS = ("AddressSanitizer", "LeakSanitizer", "runtime error:", "UndefinedBehavior")

# The variables Postfix's local(8) exports to a mailbox_command (lmtp.md §9);
# the tests start from an environment without them.
MTA_VARS = ("USER", "LOGNAME", "HOME", "SENDER", "RECIPIENT", "LOCAL", "DOMAIN", "EXTENSION",
            "ORIGINAL_RECIPIENT", "CLIENT_HOSTNAME", "CLIENT_ADDRESS", "CLIENT_HELO",
            "CLIENT_PROTOCOL", "SASL_METHOD", "SASL_SENDER", "SASL_USERNAME")

MAILDIR_NAME = re.compile(r"^\d+\.[^/:]+,S=(\d+),W=(\d+)$")

# ---- helpers ------------------------------------------------------------------


def base_env(extra=None):
    env = {k: v for k, v in os.environ.items() if k not in MTA_VARS}
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    env.update(extra or {})
    return env


def deliver_argv(config, *args):
    return [str(build_dir() / "pigeon"), "deliver", "-c", str(config)] + list(args)


def no_sanitizer_report(text):
    for marker in SANITIZER_MARKERS:
        assert marker not in text, "sanitizer report from pigeon deliver:\n" + text


def run(config, *args, data=b"", env=None, timeout=30):
    """Run `pigeon deliver -c CONFIG ARGS` with data on stdin (a pipe).
    Returns (exit status, stderr text)."""
    if isinstance(data, str):
        data = data.encode()
    proc = subprocess.run(deliver_argv(config, *args), input=data, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env=base_env(env), timeout=timeout)
    err = proc.stderr.decode(errors="replace")
    no_sanitizer_report(err)
    assert proc.stdout == b"", proc.stdout
    return proc.returncode, err


def assert_fails(result, status, code):
    """Exit status `status`, and stderr's first line starts with the RFC 3463
    code (or class prefix) `code`: Postfix takes the status from an enhanced
    code at the very beginning of the command's output (lmtp.md §9)."""
    rc, err = result
    assert rc == status, "exit %s (expected %s); stderr:\n%s" % (rc, status, err)
    first = err.splitlines()[0] if err else ""
    assert re.match(r"^[245]\.\d{1,3}\.\d{1,3} ", first), \
        "stderr does not start with an RFC 3463 code:\n%s" % err
    assert first.startswith(code), "stderr starts with %r, not %r:\n%s" % (first[:20], code, err)


def lf(data):
    """A message as stored in Maildir: CRLF line ends become LF."""
    return data.replace(b"\r\n", b"\n")


def crlf(data):
    """A message as POP3 sends it (before stuffing): every line ended by CRLF,
    a final CRLF added. (The tests use no bare CR.)"""
    if not data:
        return b""
    out = lf(data).replace(b"\n", b"\r\n")
    return out if out.endswith(b"\r\n") else out + b"\r\n"


def files(srv, user, sub="new"):
    d = srv.mailroot / user / "Maildir" / sub
    return sorted(d.iterdir()) if d.exists() else []


def only_message(srv, user):
    """The single message delivered to user: checks the Maildir invariants
    (one file in new/, none in cur/ or tmp/, S= and W= right) and returns it."""
    new = files(srv, user)
    assert len(new) == 1, new
    assert files(srv, user, "cur") == [] and files(srv, user, "tmp") == []
    data = new[0].read_bytes()
    m = MAILDIR_NAME.match(new[0].name)
    assert m, new[0].name
    assert int(m.group(1)) == len(data), (new[0].name, len(data))
    assert int(m.group(2)) == len(crlf(data)), (new[0].name, len(crlf(data)))
    return data


def pop3_retr_all(srv, user, password="secret"):
    """Every message of user's maildrop as RETR sends it, unstuffed (by hand:
    poplib refuses lines over 2048 octets). Returns (sizes from LIST, contents)."""
    c = srv.raw()
    try:
        assert c.command("USER %s" % user).startswith(b"+OK")
        assert c.command("PASS %s" % password).startswith(b"+OK")
        assert c.command("LIST").startswith(b"+OK")
        sizes = [int(line.split()[1]) for line in c.read_multiline()]
        out = []
        for i in range(1, len(sizes) + 1):
            assert c.command("RETR %d" % i).startswith(b"+OK")
            raw = c.read_multiline_raw()
            lines = raw[:-3].split(b"\r\n")[:-1] if raw != b".\r\n" else []
            out.append(b"".join((line[1:] if line.startswith(b".") else line) + b"\r\n"
                                for line in lines))
        assert c.command("QUIT").startswith(b"+OK")
        return sizes, out
    finally:
        c.close()


def nothing_stored(srv, user):
    for sub in ("new", "cur", "tmp"):
        assert files(srv, user, sub) == [], sub


@pytest.fixture
def box(make_server):
    """A configuration (not started) with users bob and carol."""
    srv = make_server(start=False)
    srv.add_user("bob", "secret")
    srv.add_user("carol", "secret")
    srv.write_config()
    return srv


def reconfigure(srv, **sections):
    for section, values in sections.items():
        srv.settings.setdefault(section, {}).update(values)
    srv.write_config()


MSG = (b"From: Alice <alice@sender.test>\r\n"
       b"To: bob@example.test\r\n"
       b"Subject: hello\r\n"
       b"\r\n"
       b"Hi Bob.\r\n")

# ---- successful delivery -------------------------------------------------------


def test_delivers_into_new_with_sizes(box):
    rc, err = run(box.config_path, "-f", "alice@sender.test", "-a", "bob@example.test", data=MSG)
    assert rc == EX_OK, err
    assert err == ""
    data = only_message(box, "bob")
    assert data == (b"Return-Path: <alice@sender.test>\n"
                    b"Delivered-To: bob@example.test\n" + lf(MSG))
    assert files(box, "carol") == []


def test_each_delivery_is_a_new_file(box):
    for i in range(3):
        rc, err = run(box.config_path, "-a", "bob", data=MSG + b"copy %d\r\n" % i)
        assert rc == EX_OK, err
    new = files(box, "bob")
    assert len(new) == 3 and len({p.name for p in new}) == 3
    assert sorted(p.read_bytes()[-7:] for p in new) == [b"copy 0\n", b"copy 1\n", b"copy 2\n"]


@pytest.mark.parametrize("envelope, return_path", [
    (b"From alice@sender.test  Mon Jan  1 00:00:00 2024\n", b"<alice@sender.test>"),
    (b"From alice@sender.test Mon Jan 1 00:00:00 2024\r\n", b"<alice@sender.test>"),
    (b"From MAILER-DAEMON  Mon Jan  1 00:00:00 2024\n", b"<>"),
])
def test_from_line_is_removed_and_becomes_return_path(box, envelope, return_path):
    msg = (b"Return-Path: <forged@elsewhere.test>\n"
           b"Subject: with an envelope line\n"
           b"\n"
           b"From the body, not an envelope line.\n")
    rc, err = run(box.config_path, "-a", "bob@example.test", data=envelope + msg)
    assert rc == EX_OK, err
    data = only_message(box, "bob")
    assert data == (b"Return-Path: " + return_path + b"\n"
                    b"Delivered-To: bob@example.test\n"
                    b"Subject: with an envelope line\n"
                    b"\n"
                    b"From the body, not an envelope line.\n")


@pytest.mark.parametrize("sender, return_path", [
    ("bounces@list.test", b"<bounces@list.test>"),
    ("", b"<>"),
])
def test_f_sets_return_path_and_drops_old_ones(box, sender, return_path):
    msg = (b"From envelope@sender.test  Mon Jan  1 00:00:00 2024\n"
           b"Return-Path: <old@one.test>\n"
           b"Subject: s\n"
           b"return-path:\n"
           b"  <folded@two.test>\n"
           b"X-Keep: yes\n"
           b"\n"
           b"Return-Path: <in-the-body@stays.test>\n")
    rc, err = run(box.config_path, "-f", sender, "-u", "bob", data=msg)
    assert rc == EX_OK, err
    assert only_message(box, "bob") == (b"Return-Path: " + return_path + b"\n"
                                        b"Subject: s\n"
                                        b"X-Keep: yes\n"
                                        b"\n"
                                        b"Return-Path: <in-the-body@stays.test>\n")


@pytest.mark.parametrize("setting, added", [(None, True), ("yes", True), ("no", False)])
def test_a_adds_delivered_to(box, setting, added):
    if setting is not None:
        reconfigure(box, delivery={"delivered_to": setting})
    rc, err = run(box.config_path, "-a", "bob+lists@example.test", data=MSG)
    assert rc == EX_OK, err
    expected = lf(MSG)
    if added:
        expected = b"Delivered-To: bob+lists@example.test\n" + expected
    assert only_message(box, "bob") == expected


def test_recipient_and_user_from_the_environment(box):
    # As Postfix's local(8) sets them for a mailbox_command: RECIPIENT names
    # the address (with its extension), USER the account.
    rc, err = run(box.config_path, data=MSG,
                  env={"RECIPIENT": "carol+x@example.test", "USER": "postfix-runs-as-me"})
    assert rc == EX_OK, err
    assert only_message(box, "carol") == b"Delivered-To: carol+x@example.test\n" + lf(MSG)
    # USER alone names the maildrop (no Delivered-To: no address known).
    rc, err = run(box.config_path, data=MSG, env={"USER": "bob"})
    assert rc == EX_OK, err
    assert only_message(box, "bob") == lf(MSG)


def test_arguments_take_precedence_over_the_environment(box):
    rc, err = run(box.config_path, "-a", "bob@example.test", data=MSG,
                  env={"RECIPIENT": "carol@example.test", "USER": "carol"})
    assert rc == EX_OK, err
    assert only_message(box, "bob") == b"Delivered-To: bob@example.test\n" + lf(MSG)
    assert files(box, "carol") == []
    # -u picks the maildrop; -a still names the address.
    rc, err = run(box.config_path, "-u", "carol", "-a", "list@example.test", data=MSG)
    assert rc == EX_OK, err
    assert only_message(box, "carol") == b"Delivered-To: list@example.test\n" + lf(MSG)


# What Postfix's local(8) writes to a mailbox_command's stdin (recorded from
# Postfix 3.7 with prepend_delivered_header at its default, lmtp.md §9): the
# envelope line, then Return-Path, X-Original-To and Delivered-To that Postfix
# itself prepends, then the message.
POSTFIX_LOCAL_FEED = (
    b"From alice@sender.test  Mon Jan  1 12:00:00 2024\n"
    b"Return-Path: <alice@sender.test>\n"
    b"X-Original-To: bob@example.test\n"
    b"Delivered-To: bob@example.test\n"
    b"Received: from [127.0.0.1] (unknown [127.0.0.1])\n"
    b"\tby mx.example.test (Postfix) with ESMTP id DDFDDA7C0EA\n"
    b"\tfor <bob@example.test>; Mon,  1 Jan 2024 12:00:00 +0000 (UTC)\n"
    b"Subject: hi\n"
    b"From: alice@sender.test\n"
    b"\n"
    b"body\n")
POSTFIX_LOCAL_ENV = {
    "USER": "bob", "LOGNAME": "bob", "HOME": "/nonexistent", "SHELL": "/bin/sh",
    "SENDER": "alice@sender.test", "RECIPIENT": "bob@example.test",
    "ORIGINAL_RECIPIENT": "bob@example.test", "LOCAL": "bob", "DOMAIN": "example.test",
}


@pytest.mark.parametrize("args", [
    ("-f", "alice@sender.test", "-a", "bob@example.test"),  # lmtp.md §9's example
    (),                                                     # everything from the environment
], ids=["arguments", "environment"])
def test_postfix_mailbox_command_input(box, args):
    """Exactly what Postfix feeds a mailbox_command is delivered, once, with
    one Return-Path and one Delivered-To: the Delivered-To Postfix prepended
    for this very delivery is not a mail loop (lmtp.md §12 items 2, 3, 10)."""
    rc, err = run(box.config_path, *args, data=POSTFIX_LOCAL_FEED, env=POSTFIX_LOCAL_ENV)
    assert rc == EX_OK, "Postfix's own mailbox_command input was refused (%s):\n%s" % (rc, err)
    data = only_message(box, "bob")
    head = data.split(b"\n\n", 1)[0].split(b"\n")
    assert [h for h in head if h.lower().startswith(b"return-path:")] == \
        [b"Return-Path: <alice@sender.test>"], head
    assert [h for h in head if h.lower().startswith(b"delivered-to:")] == \
        [b"Delivered-To: bob@example.test"], head
    assert not data.startswith(b"From "), data[:60]
    assert data.endswith(b"Subject: hi\nFrom: alice@sender.test\n\nbody\n")


def test_pop3_retrieves_the_input_byte_for_byte(box):
    body = (b"Subject: tricky\r\n"
            b"X-Mixed: this header ends in LF only\n"
            b"Content-Type: text/plain; charset=utf-8\r\n"
            b"\r\n"
            b".\r\n"
            b"..two dots\n"
            b". dot space\r\n"
            b"From a line that looks like an envelope\r\n"
            + "caf\u00e9 \u00fcber\r\n".encode() +
            b"\tindented\r\n"
            + b"y" * 5000 + b"\r\n"
            b"\r\n"
            b"\r\n"
            b"no newline at the end")
    rc, err = run(box.config_path, "-f", "a@b.test", "-a", "bob@example.test", data=body)
    assert rc == EX_OK, err
    stored = only_message(box, "bob")
    expected = b"Return-Path: <a@b.test>\r\nDelivered-To: bob@example.test\r\n" + crlf(body)
    wsize = int(MAILDIR_NAME.match(files(box, "bob")[0].name).group(2))
    assert wsize == len(expected)
    box.start()
    sizes, (retrieved,) = pop3_retr_all(box, "bob")
    assert sizes == [len(expected)]
    assert retrieved == expected
    # Stored with LF line ends, the last line still unterminated.
    assert stored == lf(b"Return-Path: <a@b.test>\nDelivered-To: bob@example.test\n" + body)


# ---- failures -----------------------------------------------------------------


def test_unknown_user(box):
    for args in (("-a", "nobody@example.test"), ("-u", "nobody")):
        assert_fails(run(box.config_path, *args, data=MSG), EX_NOUSER, "5.1.1")
    assert not (box.mailroot / "nobody").exists()
    nothing_stored(box, "bob")


def test_passwd_file_missing_is_temporary(box):
    reconfigure(box, auth={"passwd_file": str(box.dir / "no-such-file")})
    res = run(box.config_path, "-a", "bob@example.test", data=MSG)
    nothing_stored(box, "bob")
    assert_fails(res, EX_TEMPFAIL, "4.")


def test_passwd_file_unreadable_is_temporary(box):
    """The user database cannot be read (a directory stands in for the file:
    chmod 000 does not stop root): retry later, never "user unknown"."""
    d = box.dir / "users.d"
    d.mkdir()
    reconfigure(box, auth={"passwd_file": str(d)})
    res = run(box.config_path, "-a", "bob@example.test", data=MSG)
    nothing_stored(box, "bob")
    assert_fails(res, EX_TEMPFAIL, "4.")


@pytest.mark.parametrize("kind", ["missing", "directory", "syntax", "bad-value", "nul-byte"])
def test_broken_config_is_temporary(box, kind):
    path = box.dir / "broken.conf"
    good = box.config_path.read_text()
    if kind == "directory":
        path.mkdir()
    elif kind == "syntax":
        path.write_text(good + "this is not a setting\n")
    elif kind == "bad-value":
        path.write_text(good + "[delivery]\nquota = lots\n")
    elif kind == "nul-byte":
        path.write_bytes(good.encode() + b"\0\n")
    assert_fails(run(path, "-a", "bob@example.test", data=MSG), EX_TEMPFAIL, "4.3.5")
    nothing_stored(box, "bob")


def test_mailbox_cannot_be_created(box):
    blocker = box.dir / "blocker"
    blocker.write_text("a regular file where a directory should be\n")
    reconfigure(box, mail={"location": str(blocker) + "/%u/Maildir"})
    res = run(box.config_path, "-a", "bob@example.test", data=MSG)
    assert blocker.read_text() == "a regular file where a directory should be\n"
    nothing_stored(box, "bob")
    assert_fails(res, EX_CANTCREAT, "5.")


@pytest.fixture
def small_fs(tmp_path):
    """A 64 KiB tmpfs (root only): a real ENOSPC."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "pigeon-test", str(mnt)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    if res.returncode != 0:
        pytest.skip("cannot mount a small tmpfs to fill: %s" % res.stdout.decode(errors="replace"))
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], timeout=30)


def test_disk_full_is_temporary(box, small_fs):
    reconfigure(box, mail={"location": str(small_fs) + "/%u/Maildir"})
    big = MSG + b"w" * 200_000 + b"\r\n"
    res = run(box.config_path, "-a", "bob@example.test", data=big)
    assert res[0] == EX_TEMPFAIL, res
    md = small_fs / "bob" / "Maildir"
    assert list((md / "new").iterdir()) == [] and list((md / "tmp").iterdir()) == []
    # The partial file was removed: a message that fits goes through.
    rc, err = run(box.config_path, "-a", "bob@example.test", data=MSG)
    assert rc == EX_OK, err
    assert len(list((md / "new").iterdir())) == 1
    assert_fails(res, EX_TEMPFAIL, "4.")


@pytest.fixture
def read_only_fs(tmp_path):
    """An empty tmpfs mounted read-only (root only): a real EROFS."""
    mnt = tmp_path / "ro"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k,mode=0755", "pigeon-test",
                          str(mnt)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    if res.returncode != 0:
        pytest.skip("cannot mount a read-only tmpfs: %s" % res.stdout.decode(errors="replace"))
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], timeout=30)


def test_read_only_file_system_is_temporary(box, read_only_fs):
    """EROFS (like EACCES) is for the administrator to fix: exit 75 so the MTA
    keeps the message, never 73, which bounces it (lmtp.md §9)."""
    reconfigure(box, mail={"location": str(read_only_fs) + "/%u/Maildir"})
    assert_fails(run(box.config_path, "-a", "bob@example.test", data=MSG), EX_TEMPFAIL, "4.")


def fill(srv, user, size):
    return srv.deliver(user, b"Subject: filler\n\n" + b"f" * (size - 18) + b"\n")


@pytest.mark.parametrize("tempfail, status, code", [
    (None, EX_CANTCREAT, "5.2.2"),
    ("no", EX_CANTCREAT, "5.2.2"),
    ("yes", EX_TEMPFAIL, "4.2.2"),
])
def test_quota_exceeded(box, tempfail, status, code):
    settings = {"quota": "2000"}
    if tempfail is not None:
        settings["quota_tempfail"] = tempfail
    reconfigure(box, delivery=settings)
    # Fits: 1000 used, about 100 incoming.
    old = fill(box, "bob", 1000)
    rc, err = run(box.config_path, "-a", "bob@example.test", data=MSG)
    assert rc == EX_OK, err
    assert len(files(box, "bob")) == 2
    # Does not fit: the incoming message would pass the quota.
    big = MSG + b"z" * 1200 + b"\r\n"
    assert_fails(run(box.config_path, "-a", "bob@example.test", data=big), status, code)
    assert len(files(box, "bob")) == 2 and files(box, "bob", "tmp") == []
    # Already over quota before reading anything.
    fill(box, "carol", 2500)
    assert_fails(run(box.config_path, "-a", "carol@example.test", data=MSG), status, code)
    assert len(files(box, "carol")) == 1 and files(box, "carol", "tmp") == []
    assert old.exists()


def test_per_user_quota_overrides_the_default(box):
    reconfigure(box, delivery={"quota": "1M"})
    with open(box.passwd, "a") as f:
        f.write("dave:{PLAIN}secret::::::quota=500\n")
    assert_fails(run(box.config_path, "-a", "dave@example.test", data=MSG + b"d" * 600),
                 EX_CANTCREAT, "5.2.2")
    nothing_stored(box, "dave")
    rc, err = run(box.config_path, "-a", "dave@example.test", data=MSG)
    assert rc == EX_OK, err
    rc, err = run(box.config_path, "-a", "bob@example.test", data=MSG + b"b" * 600)
    assert rc == EX_OK, err


@pytest.mark.parametrize("data", [
    b"",
    b"this is not a header\n\nbody\n",
    b"\nbody after an empty header section\n",
    b" starts: with a continuation line\n\nbody\n",
    b": empty field name\n\nbody\n",
    b"From alice@sender.test  Mon Jan  1 00:00:00 2024\n",
    b"From alice@sender.test  Mon Jan  1 00:00:00 2024\nnot a header either\n\nbody\n",
], ids=["empty", "text", "blank-first", "continuation", "no-name", "envelope-only",
        "envelope-then-text"])
def test_not_a_message(box, data):
    assert_fails(run(box.config_path, "-a", "bob@example.test", data=data), EX_DATAERR, "5.6.")
    nothing_stored(box, "bob")


def test_mail_loop(box):
    looped = (b"Received: from mx.elsewhere.test by mx.example.test; Mon, 1 Jan 2024 12:00:00 +0000\n"
              b"Delivered-To: bob@example.test\n"
              b"Received: from mx.example.test by mx.elsewhere.test; Mon, 1 Jan 2024 11:59:00 +0000\n"
              b"Subject: round and round\n"
              b"\n"
              b"body\n")
    assert_fails(run(box.config_path, "-a", "bob@example.test", data=looped), EX_DATAERR, "5.4.6")
    nothing_stored(box, "bob")
    # A Delivered-To for another address, or one in the body, is no loop.
    rc, err = run(box.config_path, "-a", "carol@example.test", data=looped)
    assert rc == EX_OK, err
    rc, err = run(box.config_path, "-a", "bob@example.test",
                  data=b"Subject: quoted\n\nDelivered-To: bob@example.test\n")
    assert rc == EX_OK, err
    assert len(files(box, "bob")) == 1


def test_message_too_big(box):
    reconfigure(box, delivery={"max_message_size": "2000"})
    exact = MSG + b"x" * (2000 - len(MSG) - 2) + b"\r\n"
    assert len(exact) == 2000
    rc, err = run(box.config_path, "-a", "bob@example.test", data=exact)
    assert rc == EX_OK, err
    assert len(files(box, "bob")) == 1
    for data in (exact + b"!", MSG + b"y" * 3_000_000):
        assert_fails(run(box.config_path, "-a", "bob@example.test", data=data), EX_DATAERR, "5.3.4")
    assert len(files(box, "bob")) == 1 and files(box, "bob", "tmp") == []
    # A header section alone over the limit counts too.
    hdr = b"".join(b"X-Filler-%04d: %s\n" % (i, b"h" * 60) for i in range(40)) + b"\nb\n"
    assert_fails(run(box.config_path, "-a", "bob@example.test", data=hdr), EX_DATAERR, "5.3.4")
    assert len(files(box, "bob")) == 1 and files(box, "bob", "tmp") == []


@pytest.mark.parametrize("args, env", [
    (("-x",), {}),
    (("--no-such-option",), {}),
    (("-a",), {}),
    ((), {}),                          # neither -u/-a nor USER/RECIPIENT
    (("-a", "bob@example.test", "stray-operand"), {}),
    (("bob",), {"USER": "carol"}),     # a user given as an operand is not -u
], ids=["unknown-option", "unknown-long-option", "missing-argument", "no-recipient",
        "operand", "operand-with-USER"])
def test_bad_usage(box, args, env):
    rc, err = run(box.config_path, *args, data=MSG, env=env)
    assert rc == EX_USAGE, "exit %s; stderr:\n%s" % (rc, err)
    assert "usage" in err.lower() or re.match(r"^5\.\d+\.\d+ ", err), err
    nothing_stored(box, "bob")
    nothing_stored(box, "carol")


def start_deliver(config, data):
    proc = subprocess.Popen(deliver_argv(config, "-a", "bob@example.test"), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=base_env())
    proc.stdin.write(data)
    proc.stdin.close()
    return proc


def finished(proc):
    status = proc.wait(timeout=30)
    err = proc.stderr.read().decode(errors="replace")
    proc.stdout.close()
    proc.stderr.close()
    no_sanitizer_report(err)
    return status, err


def test_concurrent_deliveries_cannot_overshoot_the_quota(box):
    """The usage is counted and the message published under the maildrop's
    delivery lock: of two messages that each fit but not both, one is
    refused, however the two deliveries interleave."""
    reconfigure(box, delivery={"quota": "2000"})
    fill(box, "bob", 1000)
    msg = MSG + b"q" * 500 + b"\r\n"  # about 620 octets stored
    lock_path = box.maildir("bob") / "pigeon-deliver.lock"
    with open(lock_path, "a+") as holder:
        # Both wait at the lock, both having seen the same usage before it.
        fcntl.lockf(holder, fcntl.LOCK_EX)
        procs = [start_deliver(box.config_path, msg) for _ in range(2)]
        time.sleep(1.0)
        assert [p.poll() for p in procs] == [None, None], "did not wait for the delivery lock"
        fcntl.lockf(holder, fcntl.LOCK_UN)
    results = sorted(finished(p) for p in procs)
    assert results[0] == (EX_OK, ""), results
    assert_fails(results[1], EX_CANTCREAT, "5.2.2")
    assert len(files(box, "bob")) == 2 and files(box, "bob", "tmp") == []


def test_delivery_lock_wait_is_bounded(box):
    """A delivery lock held too long (a hung process) defers the message."""
    reconfigure(box, delivery={"quota": "1M"})
    lock_path = box.maildir("bob") / "pigeon-deliver.lock"
    with open(lock_path, "a+") as holder:
        fcntl.lockf(holder, fcntl.LOCK_EX)
        t0 = time.monotonic()
        res = run(box.config_path, "-a", "bob@example.test", data=MSG)
        took = time.monotonic() - t0
    assert_fails(res, EX_TEMPFAIL, "4.3.0")
    assert 4 < took < 20, took
    nothing_stored(box, "bob")


# ---- durability ----------------------------------------------------------------

STRACE_LINE = re.compile(r"^(?:\d+ +)?(\w+)\((.*)\) += (-?\d+)")


def traced_delivery(config, trace):
    """pigeon deliver under strace -f -y (descriptors shown with their paths):
    [(syscall, arguments, result)] in order, or None if strace cannot trace."""
    argv = ["strace", "-f", "-y", "-qq", "-o", str(trace), "-e",
            "trace=fsync,fdatasync,rename,renameat,renameat2,mkdir,mkdirat"]
    # LeakSanitizer cannot run under ptrace; the other tests look for leaks.
    env = base_env({"ASAN_OPTIONS": "detect_leaks=0:abort_on_error=0"})
    proc = subprocess.run(argv + deliver_argv(config, "-a", "bob@example.test"), input=MSG,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, timeout=60)
    err = proc.stderr.decode(errors="replace")
    if proc.returncode != 0 and ("ptrace" in err or "PTRACE" in err):
        return None
    assert proc.returncode == EX_OK, err
    calls = []
    for line in trace.read_text(errors="replace").splitlines():
        m = STRACE_LINE.match(line)
        if m:
            calls.append((m.group(1), m.group(2), int(m.group(3))))
    return calls


def test_fsync_order_under_strace(box, tmp_path):
    """maildir.md §3: fsync the file, then rename it into new/, then fsync
    new/, all before exit 0; a Maildir made for the first message is fsynced
    into its parent (and tmp/ new/ cur/ into it) before that rename."""
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed (scripts/deps test)")
    root = tmp_path / "fresh"
    reconfigure(box, mail={"location": str(root) + "/%u/Maildir"})
    md = root / "bob" / "Maildir"
    for delivery in ("first", "second"):
        calls = traced_delivery(box.config_path, tmp_path / ("%s.trace" % delivery))
        if calls is None:
            pytest.skip("strace cannot trace here (ptrace not permitted)")
        renames = [i for i, (name, args, rc) in enumerate(calls)
                   if name.startswith("rename") and "new/" in args and rc == 0]
        assert len(renames) == 1, calls
        r = renames[0]
        tmp_name = re.search(r'"tmp/([^"]+)"', calls[r][1]).group(1)
        synced_file = [i for i, (name, args, rc) in enumerate(calls)
                       if name in ("fsync", "fdatasync") and args.endswith("/tmp/%s>" % tmp_name)
                       and rc == 0]
        assert synced_file and synced_file[0] < r, "no fsync of the file before the rename"
        synced_new = [i for i, (name, args, rc) in enumerate(calls)
                      if name == "fsync" and args.endswith("%s/new>" % md) and rc == 0]
        assert synced_new and synced_new[-1] > r, "no fsync of new/ after the rename"
        made = [(i, name, args) for i, (name, args, rc) in enumerate(calls)
                if name.startswith("mkdir") and rc == 0]
        if delivery == "second":
            assert made == [], made
            continue
        # every directory made: its parent fsynced after it, before the rename
        assert len(made) == 6, made  # fresh, bob, Maildir, tmp, new, cur
        for i, name, args in made:
            if name == "mkdir":
                parent = os.path.dirname(re.match(r'"([^"]+)"', args).group(1))
            else:
                parent = re.match(r"\d+<([^>]+)>", args).group(1)
            assert any(j > i and j < r and n == "fsync" and a.endswith("<%s>" % parent)
                       and rc == 0 for j, (n, a, rc) in enumerate(calls)), \
                "%s %s: no fsync of %s before the rename" % (name, args, parent)
    assert len(files(box, "bob")) == 0  # (the old location)
    assert len(list((md / "new").iterdir())) == 2


# ---- crash safety --------------------------------------------------------------

# 100 SIGKILLs at random points. The message is small enough for a run to
# take a fraction of a second on a loaded 2-core ASan build, and large enough
# (many pipe writes) that a kill lands while it is still being read.
CRASH_RUNS = 100
CRASH_BODY_LINES = 3_000    # x 76 octets: about 230 KB per message
CRASH_CHUNK = 16 * 1024


def crash_message(run_no):
    line = b"%s\r\n" % (b"0123456789abcdefghijklmnopqrstuvwxyz" * 2)[:74]
    body = b"".join(b"%05d " % i + line[6:] for i in range(CRASH_BODY_LINES))
    return (b"From sender@crash.test  Mon Jan  1 00:00:00 2024\n"
            b"Subject: crash run %d\r\n"
            b"X-Run: %d\r\n\r\n" % (run_no, run_no)) + body


def crash_expected(run_no):
    msg = crash_message(run_no)
    stored = (b"Return-Path: <sender@crash.test>\nDelivered-To: bob@example.test\n"
              + lf(msg.split(b"\n", 1)[1]))
    return stored


def one_crash_run(config, data, delay, errfile):
    """Feed data slowly through a pipe; SIGKILL the process `delay` seconds
    after its start (perhaps after it has exited). Returns (exit status,
    whether stdin had been closed when the signal was sent, seconds)."""
    lock = threading.Lock()
    state = {"closed": False}
    t0 = time.monotonic()
    proc = subprocess.Popen(deliver_argv(config, "-a", "bob@example.test"), stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=errfile, env=base_env())

    def writer():
        fd = proc.stdin.fileno()
        try:
            for off in range(0, len(data), CRASH_CHUNK):
                view = memoryview(data)[off:off + CRASH_CHUNK]
                while view:
                    n = os.write(fd, view)
                    view = view[n:]
                time.sleep(0.0005)
            with lock:
                state["closed"] = True
                proc.stdin.close()
        except OSError:  # EPIPE: killed while we were writing
            pass

    w = threading.Thread(target=writer)
    w.start()
    try:
        proc.wait(timeout=delay)
        closed_at_kill = True
    except subprocess.TimeoutExpired:
        with lock:
            closed_at_kill = state["closed"]
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    w.join(timeout=30)
    if not proc.stdin.closed:
        try:
            proc.stdin.close()
        except OSError:
            pass
    return proc.returncode, closed_at_kill, time.monotonic() - t0


def test_crash_safety_under_sigkill(box, tmp_path):
    seed = int(os.environ.get("PIGEON_CRASH_SEED", random.randrange(1 << 30)))
    print("crash-safety seed: %d (set PIGEON_CRASH_SEED to repeat)" % seed)
    rng = random.Random(seed)
    md = box.maildir("bob")
    errpath = tmp_path / "deliver.err"
    messages = {}      # sha256 of the stored form -> run number
    outcome = {}       # run number -> (status, closed at kill)
    seen = {}          # file name in new/ -> run number
    t_write = t_total = None
    start = time.monotonic()
    runs = 0
    for run_no in range(CRASH_RUNS):
        data = crash_message(run_no)
        expected = crash_expected(run_no)
        messages[hashlib.sha256(expected).hexdigest()] = run_no
        if t_total is None:
            delay = 60.0  # calibration: let it finish
        else:
            window = rng.randrange(3)
            if window == 0:    # while the message is still arriving
                delay = rng.uniform(0, t_write)
            elif window == 1:  # around end of input, fsync and rename
                delay = rng.uniform(t_write * 0.8, t_total * 1.2)
            else:              # most likely after it exited
                delay = rng.uniform(t_total, t_total * 1.5)
        with open(errpath, "wb") as errfile:
            status, closed_at_kill, took = one_crash_run(box.config_path, data, delay, errfile)
        err = errpath.read_text(errors="replace")
        runs += 1
        if t_total is None:
            assert status == EX_OK, err
            t_total, t_write = took, took * 0.7
        assert status in (EX_OK, -signal.SIGKILL), \
            "run %d (seed %d): exit %s\n%s" % (run_no, seed, status, err)
        if status == EX_OK:
            no_sanitizer_report(err)
            assert err == "", err
        outcome[run_no] = (status, closed_at_kill)

        # After every run, new/ holds only complete messages, each exactly
        # one run's message, with S= and W= describing it.
        assert list((md / "cur").iterdir()) == []
        for path in (md / "new").iterdir():
            if path.name in seen:
                continue
            m = MAILDIR_NAME.match(path.name)
            assert m, "run %d (seed %d): odd name in new/: %s" % (run_no, seed, path.name)
            content = path.read_bytes()
            digest = hashlib.sha256(content).hexdigest()
            assert digest in messages, \
                "run %d (seed %d): partial or foreign message in new/: %s (%d octets)" % (
                    run_no, seed, path.name, len(content))
            assert int(m.group(1)) == len(content), path.name
            assert int(m.group(2)) == len(crlf(content)), path.name
            seen[path.name] = messages[digest]
            path.unlink()  # keep the disk use of 100 runs small
        # The run just finished accounts for at most one of them.
        mine = [n for n, r in seen.items() if r == run_no]
        if status == EX_OK:
            assert len(mine) == 1, "run %d (seed %d) exited 0 but left %s" % (run_no, seed, mine)
        elif not closed_at_kill:
            assert mine == [], \
                "run %d (seed %d) was killed before its input ended, yet delivered %s" % (
                    run_no, seed, mine)
        else:
            # Killed after end of input: delivered or not, never twice.
            assert len(mine) <= 1, mine
        for leftover in (md / "tmp").iterdir():  # allowed; cleared to save space
            leftover.unlink()

    ok = sum(1 for s, _ in outcome.values() if s == EX_OK)
    early = sum(1 for s, c in outcome.values() if s != EX_OK and not c)
    late_kept = sum(1 for r, (s, c) in outcome.items() if s != EX_OK and c and r in seen.values())
    print("crash-safety: %d runs in %.1fs, %d exited 0, %d killed while reading, %d killed "
          "after end of input (%d of them delivered)"
          % (runs, time.monotonic() - start, ok, early, runs - ok - early, late_kept))
    assert runs == CRASH_RUNS
    assert ok >= 2 and early >= 2, "the random delays did not cover both cases (seed %d)" % seed
    # Delivered exactly the runs that exited 0, plus perhaps some killed
    # after their input ended (a duplicate on retry, never a loss).
    delivered = sorted(seen.values())
    assert len(delivered) == len(set(delivered))
    for run_no, (status, closed) in outcome.items():
        if status == EX_OK:
            assert run_no in delivered
        elif not closed:
            assert run_no not in delivered


# ---- next to pigeond -------------------------------------------------------------


def test_delivery_during_pop3_session_survives_quit(box):
    box.deliver("bob", b"Subject: old 1\n\nold one\n")
    box.deliver("bob", b"Subject: old 2\n\nold two\n")
    box.start()
    c = box.raw()
    assert c.command("USER bob").startswith(b"+OK")
    assert c.command("PASS secret").startswith(b"+OK")
    assert c.command("STAT").startswith(b"+OK 2 ")

    rc, err = run(box.config_path, "-f", "late@sender.test", "-a", "bob@example.test", data=MSG)
    assert rc == EX_OK, err

    # The session keeps the listing it started with.
    assert c.command("STAT").startswith(b"+OK 2 ")
    assert c.command("LIST 3").startswith(b"-ERR")
    assert c.command("DELE 1").startswith(b"+OK")
    assert c.command("DELE 2").startswith(b"+OK")
    assert c.command("QUIT").startswith(b"+OK")
    assert c.is_closed()
    c.close()

    left = [p for sub in ("new", "cur") for p in (box.maildir("bob") / sub).iterdir()]
    assert len(left) == 1, left
    expected = b"Return-Path: <late@sender.test>\nDelivered-To: bob@example.test\n" + lf(MSG)
    assert left[0].read_bytes() == expected
    give_tree(box.mailroot)  # delivered as the test's user; pigeond reads it as its own
    sizes, (retrieved,) = pop3_retr_all(box, "bob")
    assert retrieved == crlf(expected) and sizes == [len(crlf(expected))]

"""`pigeon fetch` against Debian's real Dovecot POP3 server (dovecot-pop3d
2.3): delete and keep modes, delete_after, max_size, --check, the maildir,
mbox and MDA destinations, implicit TLS and STLS, every SASL mechanism both
sides support, and certificate failures (spec/clients.md part B,
docs/fetch.md).

Dovecot runs privately (tests/integration/dovecot.py): its own config, base
and state directories and log, 127.0.0.1 only. Messages are put into its
Maildir directly as files in new/ (LF line ends, owned by its mail user);
Dovecot serves them with CRLF, and the client stores LF again, so every
local copy must equal the file we wrote, byte for byte.

Tests are skipped (with the reason and Dovecot's log) if Dovecot is missing
or does not start. The certificates come from a throw-away CA made with the
openssl command (test_tls.CA).
"""
import base64
import hashlib
import json
import os
import poplib
import re
import shutil
import subprocess
import time
from types import SimpleNamespace

import pytest

from conftest import build_dir
from dovecot import DovecotServer
from test_tls import CA

RUN_TIMEOUT = 120
SANITIZER = ("AddressSanitizer", "LeakSanitizer", "runtime error:", "UndefinedBehavior")


# ---- fixtures: certificates and Dovecot instances ---------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make test certificates")
    root = tmp_path_factory.mktemp("dovecot-pki")
    ca = CA(root / "ca", "Pigeon Dovecot Test CA")
    rogue = CA(root / "rogue", "Pigeon Rogue CA")
    return SimpleNamespace(
        ca=ca, rogue=rogue,
        localhost=ca.issue("localhost", "localhost", ["DNS:localhost", "IP:127.0.0.1"]),
        other=ca.issue("other", "pop.example.net", ["DNS:pop.example.net"]))


def _dovecot(tmp_path_factory, name, cert=None):
    dv = DovecotServer(tmp_path_factory.mktemp(name),
                       cert=cert.cert if cert else None, key=cert.key if cert else None)
    dv.start()
    yield dv
    dv.stop()
    errors = dv.errors()
    assert not errors, "Dovecot logged errors:\n" + "\n".join(errors)


@pytest.fixture(scope="module")
def dovecot(tmp_path_factory, pki):
    """Dovecot with a certificate for localhost and 127.0.0.1."""
    yield from _dovecot(tmp_path_factory, "dovecot", pki.localhost)


@pytest.fixture(scope="module")
def dovecot_other(tmp_path_factory, pki):
    """Dovecot whose certificate names only pop.example.net."""
    yield from _dovecot(tmp_path_factory, "dovecot-other", pki.other)


@pytest.fixture(scope="module")
def dovecot_plain(tmp_path_factory):
    """Dovecot without TLS at all (no STLS in CAPA)."""
    yield from _dovecot(tmp_path_factory, "dovecot-plain")


_users = [0]


def new_user(dv, scheme="PLAIN"):
    """A fresh user with an empty Maildir and a password unique to it."""
    _users[0] += 1
    name = "u%03d" % _users[0]
    password = "pw-%s-%s" % (name, os.urandom(6).hex())
    dv.add_user(name, password, scheme=scheme)
    return name, password


# ---- the client ------------------------------------------------------------------------


class Fetch:
    """One fetch.conf with account [acct]; runs `pigeon fetch` as a subprocess."""

    def __init__(self, root, dv, user, password, pki=None, **settings):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.home = root / "home"
        self.home.mkdir(exist_ok=True)
        self.local = root / "Maildir"
        self.store = root / "state" / "acct.uidl"
        self.journal = root / "state" / "acct.uidl.journal"
        self.conf = root / "fetch.conf"
        self.password = password
        self.settings = {"host": "localhost", "port": dv.tls_port, "tls": "implicit",
                         "user": user, "password": password,
                         "destination": "maildir:%s" % self.local,
                         "uidl_store": str(self.store)}
        if pki is not None:
            self.settings["ca_file"] = str(pki.ca.cert)
        self.settings.update(settings)
        self.settings = {k: v for k, v in self.settings.items() if v is not None}
        self.write()

    def write(self):
        self.conf.write_text("[acct]\n" + "".join(
            "%s = %s\n" % kv for kv in self.settings.items()))
        os.chmod(self.conf, 0o600)

    def run(self, *args, json_out=True, timeout=RUN_TIMEOUT):
        env = dict(os.environ, HOME=str(self.home))
        for k in ("XDG_CONFIG_HOME", "XDG_STATE_HOME"):
            env.pop(k, None)
        argv = [str(build_dir() / "pigeon"), "fetch", "-c", str(self.conf)]
        argv += (["--json"] if json_out else []) + list(args)
        r = subprocess.run(argv, capture_output=True, env=env, timeout=timeout,
                           stdin=subprocess.DEVNULL)
        res = SimpleNamespace(rc=r.returncode, out=r.stdout.decode(errors="replace"),
                              err=r.stderr.decode(errors="replace"), json=None)
        for marker in SANITIZER:
            assert marker not in res.err, "sanitizer report from pigeon fetch:\n" + res.err
        if json_out:
            lines = [line for line in res.out.splitlines() if line.startswith("{")]
            if lines:
                res.json = json.loads(lines[-1])
        res.text = "exit %d\nstdout:\n%s\nstderr:\n%s" % (res.rc, res.out, res.err)
        # With --json the error is in the JSON line, else on stderr.
        res.all = res.out + res.err
        return res

    def run_ok(self, *args, **kw):
        res = self.run(*args, **kw)
        assert res.rc == 0, res.text
        return res

    def local_files(self):
        return sorted(p for sub in ("new", "cur")
                      if (self.local / sub).exists() for p in (self.local / sub).iterdir())

    def local_contents(self):
        return sorted(p.read_bytes() for p in self.local_files())

    def store_entries(self):
        """{uidl: (first_seen, last_seen, flag)} from the store file."""
        lines = self.store.read_text().splitlines()
        assert lines[0] == "pigeon-uidl 1", lines
        out = {}
        for line in lines[1:]:
            if line.startswith(("account ", "fetch ")):
                continue  # whose UIDLs they are; downloads without DONE
            first, last, flag, uidl = line.split(" ")
            out[uidl] = (int(first), int(last), flag)
        return out


@pytest.fixture
def account(dovecot, pki, tmp_path):
    """account(**settings) -> Fetch for a fresh Dovecot user (fetch.user,
    fetch.password); implicit TLS to localhost with the test CA by default."""
    made = [0]

    def factory(dv=None, scheme="PLAIN", **settings):
        dv = dv or dovecot
        user, password = new_user(dv, scheme)
        made[0] += 1
        f = Fetch(tmp_path / ("client%d" % made[0]), dv, user, password, pki, **settings)
        f.user, f.dv = user, dv
        return f

    return factory


# ---- messages ----------------------------------------------------------------------


def message(i, body="", subject=None, extra_headers=""):
    head = ("From: Sender %d <sender%d@example.org>\nTo: someone@example.net\n"
            "Subject: %s\nMessage-ID: <%d.%s@pigeon.test>\n%s\n"
            % (i, i, subject or "test message %d" % i, i, os.urandom(4).hex(), extra_headers))
    return (head + body).encode() if isinstance(body, str) else head.encode() + body


def tricky_messages():
    """Messages that test stuffing, long lines, 8-bit data, mbox quoting."""
    msgs = [
        message(1, "Hello.\n"),
        message(2, ".\n..\n.leading dot\n...three\n . space first\nend\n"),
        message(3, "From the start of a line\n>From quoted once\n>>From twice\nFrom\n"),
        message(4, "caf\xe9 \u2603 na\xefve\n".encode("utf-8") + b"latin-1 \xe9\xe8\n"),
        message(5, "x" * 100_000 + "\nafter the long line\n"),   # > 64 KiB in one line
        message(6, "".join("line %06d of a big message\n" % n for n in range(12_000))),
        message(7, ""),                                         # headers only
        message(8, "trailing spaces   \n\ttab first\n\n\n\nblank lines above\n"),
        message(9, "\n"),
        message(10, "last line without a dot\n.\n"),
    ]
    return msgs


def deliver_all(dv, user, msgs):
    for m in msgs:
        dv.deliver(user, m)


def wait_for(pred, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    return pred()


def dovecot_login(dv, user, password):
    p = poplib.POP3(dv.host, dv.port, timeout=10)
    p.user(user)
    p.pass_(password)
    return p


def server_uidls(dv, user, password):
    """{uidl: content (LF)} as Dovecot lists them; deletes nothing."""
    p = dovecot_login(dv, user, password)
    try:
        out = {}
        for line in p.uidl()[1]:
            num, uidl = line.decode().split()
            lines = p.retr(int(num))[1]
            out[uidl] = b"".join(x + b"\n" for x in lines)
        return out
    finally:
        p.quit()


def fingerprint(der):
    d = hashlib.sha256(der).hexdigest().upper()
    return "sha256:" + ":".join(d[i:i + 2] for i in range(0, len(d), 2))


# ---- delete and keep -------------------------------------------------------------------


@pytest.mark.parametrize("pipelining,window", [("yes", "50"), ("yes", "3"), ("no", "50")])
def test_delete_mode_byte_exact(account, pipelining, window):
    f = account(pipelining=pipelining, window=window)
    msgs = tricky_messages()
    deliver_all(f.dv, f.user, msgs)
    res = f.run_ok()
    assert res.json["fetched"] == len(msgs), res.text
    assert res.json["deleted"] == len(msgs), res.text
    assert res.json["failed"] == 0 and res.json["skipped"] == 0, res.text
    assert f.local_contents() == sorted(msgs)
    # Maildir names carry the stored size and the POP3 (CRLF) size.
    for p in f.local_files():
        data = p.read_bytes()
        m = re.search(r",S=(\d+),W=(\d+)", p.name)
        assert m, p.name
        assert int(m.group(1)) == len(data), p.name
        assert int(m.group(2)) == len(data) + data.count(b"\n"), p.name
    assert f.dv.messages(f.user) == [], "Dovecot still holds %s" % f.dv.messages(f.user)
    # Everything deleted on the server is forgotten again.
    assert f.store_entries() == {}
    assert "\nfetch " not in f.store.read_text()
    assert f.journal.read_text() == ""
    # A second run finds nothing and changes nothing.
    res = f.run_ok()
    assert res.json["fetched"] == 0 and res.json["listed"] == 0, res.text
    assert f.local_contents() == sorted(msgs)


def test_keep_mode_second_run_downloads_nothing(account):
    f = account(keep="yes")
    msgs = [message(i, "keep me %d\n" % i) for i in range(6)]
    deliver_all(f.dv, f.user, msgs)
    res = f.run_ok()
    assert (res.json["fetched"], res.json["deleted"]) == (6, 0), res.text
    assert f.local_contents() == sorted(msgs)
    assert f.dv.contents(f.user) == sorted(msgs)
    entries = f.store_entries()
    assert len(entries) == 6 and {e[2] for e in entries.values()} == {"D"}, entries
    assert set(entries) == set(server_uidls(f.dv, f.user, f.password))
    # Second run: nothing new, nothing downloaded, nothing deleted.
    res = f.run_ok()
    assert (res.json["listed"], res.json["new"], res.json["fetched"],
            res.json["deleted"]) == (6, 0, 0, 0), res.text
    res = f.run_ok(json_out=False)
    assert res.out == "[acct] nothing new\n", res.text
    assert f.local_contents() == sorted(msgs)
    # New mail arrives: only that is fetched.
    more = [message(100 + i, "new %d\n" % i) for i in range(2)]
    deliver_all(f.dv, f.user, more)
    res = f.run_ok()
    assert (res.json["fetched"], res.json["deleted"]) == (2, 0), res.text
    assert f.local_contents() == sorted(msgs + more)
    assert f.dv.contents(f.user) == sorted(msgs + more)


def test_delete_after(account):
    f = account(keep="yes", delete_after="7d")
    msgs = [message(i, "delete after a week %d\n" % i) for i in range(5)]
    deliver_all(f.dv, f.user, msgs)
    res = f.run_ok()
    assert (res.json["fetched"], res.json["deleted"]) == (5, 0), res.text
    assert f.dv.contents(f.user) == sorted(msgs)
    # Backdate the store: two entries first seen 8 days ago, one 6 days ago.
    assert f.journal.read_text() == ""
    on_server = server_uidls(f.dv, f.user, f.password)
    by_content = {v: k for k, v in on_server.items()}
    old = [by_content[msgs[0]], by_content[msgs[3]]]
    recent = by_content[msgs[1]]
    now = int(time.time())
    lines = f.store.read_text().splitlines()
    out = [lines[0]]
    for line in lines[1:]:
        first, last, flag, uidl = line.split(" ")
        if uidl in old:
            first = str(now - 8 * 86400)
        elif uidl == recent:
            first = str(now - 6 * 86400)
        out.append(" ".join((first, last, flag, uidl)))
    f.store.write_text("\n".join(out) + "\n")
    res = f.run_ok()
    assert (res.json["fetched"], res.json["deleted"]) == (0, 2), res.text
    assert f.dv.contents(f.user) == sorted(m for i, m in enumerate(msgs) if i not in (0, 3))
    assert f.local_contents() == sorted(msgs)
    entries = f.store_entries()
    assert set(entries) == set(on_server) - set(old), entries
    assert entries[recent][0] == now - 6 * 86400
    # Nothing else is due.
    res = f.run_ok()
    assert (res.json["fetched"], res.json["deleted"]) == (0, 0), res.text
    assert len(f.dv.messages(f.user)) == 3


def test_max_size_skip(account):
    f = account(max_size="10k")
    small = [message(i, "small %d\n" % i) for i in range(3)]
    big = message(99, "".join("a line of a large message %05d\n" % n for n in range(1500)))
    assert len(big) > 30_000
    deliver_all(f.dv, f.user, small[:2] + [big] + small[2:])
    first = f.run_ok()
    assert (first.json["fetched"], first.json["deleted"]) == (3, 3), first.text
    assert re.search(r"skipping message 3 \(\d+ octets > max_size 10240\)", first.err), \
        first.text
    assert f.local_contents() == sorted(small)
    assert f.dv.contents(f.user) == [big]
    # Still too big on the next run; --max-size on the command line wins.
    res = f.run_ok()
    assert (res.json["fetched"], res.json["skipped"]) == (0, 1), res.text
    assert f.dv.contents(f.user) == [big]
    res = f.run_ok("--max-size", "1M")
    assert (res.json["fetched"], res.json["deleted"], res.json["skipped"]) == (1, 1, 0), \
        res.text
    assert f.local_contents() == sorted(small + [big])
    assert f.dv.messages(f.user) == []
    # One message was skipped in the first run: reported once, counted once
    # (not once per session of the run).
    assert len(re.findall(r"skipping message", first.err)) == 1, first.text
    assert first.json["skipped"] == 1, first.text


def test_max_size_headers_only(account):
    f = account(max_size="10k", max_size_action="headers")
    small = message(1, "small\n")
    big = message(2, "".join("body line %05d\n" % n for n in range(3000)))
    deliver_all(f.dv, f.user, [small, big])
    res = f.run_ok()
    assert res.json["fetched"] == 2 and res.json["deleted"] == 1, res.text
    head = big[: big.index(b"\n\n") + 2]
    assert f.local_contents() == sorted([small, head])
    # Headers only: never deleted, never fetched again.
    assert f.dv.contents(f.user) == [big]
    assert sorted(e[2] for e in f.store_entries().values()) == ["H"]
    res = f.run_ok()
    assert (res.json["fetched"], res.json["deleted"]) == (0, 0), res.text
    assert f.dv.contents(f.user) == [big]


def test_check_downloads_nothing(account):
    f = account(keep="yes")
    msgs = [message(i, "waiting %d\n" % i) for i in range(3)]
    deliver_all(f.dv, f.user, msgs)
    res = f.run_ok("--check", json_out=False)
    assert re.fullmatch(r"\[acct\] 3 new messages \(0\.0 MB\) waiting, 3 on the server\n",
                        res.out), res.text
    res = f.run_ok("--check")
    assert (res.json["listed"], res.json["new"], res.json["fetched"]) == (3, 3, 0), res.text
    assert res.json["new_bytes"] == sum(len(m) + m.count(b"\n") for m in msgs), res.text
    assert f.local_files() == []
    assert f.dv.contents(f.user) == sorted(msgs)
    f.run_ok()
    res = f.run_ok("--check")
    assert (res.json["listed"], res.json["new"]) == (3, 0), res.text
    # --check never deletes, even in delete mode.
    res = f.run_ok("--check", "--delete")
    assert res.json["deleted"] == 0, res.text
    assert f.dv.contents(f.user) == sorted(msgs)


# ---- destinations ---------------------------------------------------------------------


FROM_LINE = re.compile(rb"^From MAILER-DAEMON [A-Z][a-z]{2} [A-Z][a-z]{2} [ 0-9]\d "
                       rb"\d\d:\d\d:\d\d \d{4}$")


def parse_mboxrd(data):
    """Messages of an mboxrd file as pigeon fetch writes it: a From_ line,
    the message with ^>*From quoted, one blank line."""
    msgs, cur = [], None
    lines = data.split(b"\n")
    assert lines[-1] == b"", "mbox does not end with a newline"
    prev_blank = True
    for line in lines[:-1]:
        if line.startswith(b"From ") and prev_blank:
            assert FROM_LINE.match(line), line
            if cur is not None:
                msgs.append(cur)
            cur = []
        else:
            assert cur is not None, "mbox does not start with a From_ line"
            if re.match(rb"^>+From ", line):
                line = line[1:]
            cur.append(line)
        prev_blank = line == b""
    if cur is not None:
        msgs.append(cur)
    out = []
    for m in msgs:
        assert m and m[-1] == b"", "message not followed by a blank line"
        out.append(b"".join(x + b"\n" for x in m[:-1]))
    return out


def test_destination_mbox(account, tmp_path):
    mbox = tmp_path / "mail.mbox"
    f = account(destination="mbox:%s" % mbox)
    msgs = tricky_messages()
    deliver_all(f.dv, f.user, msgs)
    res = f.run_ok()
    assert (res.json["fetched"], res.json["deleted"]) == (len(msgs), len(msgs)), res.text
    data = mbox.read_bytes()
    assert b"\n>From the start of a line\n>>From quoted once\n>>>From twice\n" in data
    assert sorted(parse_mboxrd(data)) == sorted(msgs)
    assert f.dv.messages(f.user) == []
    assert not os.path.exists(str(mbox) + ".lock")
    # More mail is appended, nothing rewritten.
    more = [message(50, "From appended\n")]
    deliver_all(f.dv, f.user, more)
    f.run_ok()
    data2 = mbox.read_bytes()
    assert data2.startswith(data)
    assert sorted(parse_mboxrd(data2)) == sorted(msgs + more)


def test_destination_mda(account, tmp_path):
    out = tmp_path / "mda-out"
    out.mkdir()
    f = account(destination='mda:f=$(mktemp %s/m.XXXXXX) && cat > "$f"' % out)
    msgs = tricky_messages()
    deliver_all(f.dv, f.user, msgs)
    res = f.run_ok()
    assert (res.json["fetched"], res.json["deleted"]) == (len(msgs), len(msgs)), res.text
    assert sorted(p.read_bytes() for p in out.iterdir()) == sorted(msgs)
    assert f.dv.messages(f.user) == []


@pytest.mark.parametrize("status,expected_rc", [(75, 75), (1, 69)])
def test_mda_failure_keeps_the_message(account, tmp_path, status, expected_rc):
    out = tmp_path / "mda-out"
    out.mkdir()
    f = account(destination="mda:cat > /dev/null; exit %d" % status)
    msgs = [message(i, "for the MDA %d\n" % i) for i in range(3)]
    deliver_all(f.dv, f.user, msgs)
    res = f.run()
    assert res.rc == expected_rc, res.text
    assert "exit" in res.all and str(status) in res.all, res.text
    assert f.dv.contents(f.user) == sorted(msgs), "a message the MDA refused was deleted"
    # The MDA works again: everything arrives once.
    f.settings["destination"] = 'mda:f=$(mktemp %s/m.XXXXXX) && cat > "$f"' % out
    f.write()
    res = f.run_ok()
    assert (res.json["fetched"], res.json["deleted"]) == (3, 3), res.text
    assert sorted(p.read_bytes() for p in out.iterdir()) == sorted(msgs)
    assert f.dv.messages(f.user) == []


# ---- TLS ----------------------------------------------------------------------------------


def last_login(dv, user):
    lines = wait_for(lambda: dv.logins(user))
    assert lines, "Dovecot logged no login for %s:\n%s" % (user, dv.log()[-3000:])
    return lines[-1]


def test_implicit_tls(account):
    f = account()
    msgs = [message(1, "over pop3s\n")]
    deliver_all(f.dv, f.user, msgs)
    f.run_ok()
    assert f.local_contents() == msgs
    line = last_login(f.dv, f.user)
    assert ", TLS" in line, line


def test_starttls(account, dovecot):
    f = account(tls="starttls", port=dovecot.port)
    msgs = [message(1, "over STLS\n")]
    deliver_all(f.dv, f.user, msgs)
    f.run_ok()
    assert f.local_contents() == msgs
    assert ", TLS" in last_login(f.dv, f.user)


def test_starttls_refused_when_not_offered(account, dovecot_plain):
    """No silent fallback: a server without STLS gets no password."""
    f = account(dv=dovecot_plain, tls="starttls", port=dovecot_plain.port)
    deliver_all(f.dv, f.user, [message(1, "never fetched\n")])
    res = f.run()
    assert res.rc == 69, res.text
    assert "does not offer STLS" in res.all, res.text
    assert f.local_files() == []
    assert dovecot_plain.logins(f.user) == []


def test_plaintext_needs_the_opt_in_and_then_works(account, dovecot):
    f = account(tls="none", port=dovecot.port, allow_plaintext=None)
    res = f.run()
    assert res.rc == 78 and "allow_plaintext" in res.all, res.text
    f.settings["allow_plaintext"] = "yes"
    f.write()
    msgs = [message(1, "in the clear on loopback\n")]
    deliver_all(f.dv, f.user, msgs)
    f.run_ok()
    assert f.local_contents() == msgs


def test_fingerprint_pinning(account, pki):
    f = account(ca_file=None, fingerprint=fingerprint(pki.localhost.der))
    msgs = [message(1, "pinned\n")]
    deliver_all(f.dv, f.user, msgs)
    f.run_ok()
    assert f.local_contents() == msgs
    # A different pin: refused before any login.
    g = account(ca_file=None, fingerprint=fingerprint(pki.other.der))
    deliver_all(g.dv, g.user, [message(2, "not for an impostor\n")])
    res = g.run()
    assert res.rc != 0, res.text
    assert "does not match the pinned fingerprint" in res.all, res.text
    assert fingerprint(pki.localhost.der) in res.all, res.text
    assert g.dv.logins(g.user) == [] and g.local_files() == []


def test_probe(account):
    f = account()
    res = f.run_ok("--probe", json_out=False)
    assert "greeting: Dovecot" in res.out, res.text
    assert "TLS: TLS" in res.out or "TLSv1." in res.out, res.text
    assert "CN=Pigeon Dovecot Test CA" in res.out or "Pigeon Dovecot Test CA" in res.out, \
        res.text
    assert "SASL PLAIN LOGIN CRAM-MD5 SCRAM-SHA-1 SCRAM-SHA-256" in res.out, res.text
    assert "login would use: SCRAM-SHA-256" in res.out, res.text
    assert f.dv.logins(f.user) == []
    # --probe logs in to nothing, so it cannot know whether mail waits.
    assert "nothing new" not in res.out, res.text


# ---- certificate failures -------------------------------------------------------------


@pytest.mark.parametrize("tls", ["implicit", "starttls"])
def test_certificate_for_another_name(account, dovecot_other, tls):
    port = dovecot_other.tls_port if tls == "implicit" else dovecot_other.port
    f = account(dv=dovecot_other, tls=tls, port=port)
    msgs = [message(1, "must stay\n")]
    deliver_all(f.dv, f.user, msgs)
    res = f.run()
    assert res.rc != 0, res.text
    assert "expected the name localhost" in res.all, res.text
    assert "pop.example.net" in res.all, res.text          # what the certificate holds
    assert "Pigeon Dovecot Test CA" in res.all, res.text   # and who issued it
    assert f.password not in res.out + res.err
    assert f.local_files() == []
    assert f.dv.contents(f.user) == msgs
    assert f.dv.logins(f.user) == [], "logged in despite a bad certificate"


def test_certificate_without_the_address(account, dovecot_other):
    """An address literal is checked against IP SANs only (RFC 9525)."""
    f = account(dv=dovecot_other, host="127.0.0.1")
    deliver_all(f.dv, f.user, [message(1, "must stay\n")])
    res = f.run()
    assert res.rc != 0, res.text
    assert "expected the name 127.0.0.1" in res.all, res.text
    assert "pop.example.net" in res.all, res.text
    assert f.dv.logins(f.user) == []


def test_address_in_ip_san_is_accepted(account):
    f = account(host="127.0.0.1")
    msgs = [message(1, "by address\n")]
    deliver_all(f.dv, f.user, msgs)
    f.run_ok()
    assert f.local_contents() == msgs


@pytest.mark.parametrize("trust", ["rogue-ca", "system-store"])
def test_certificate_from_an_untrusted_ca(account, pki, trust):
    ca_file = str(pki.rogue.cert) if trust == "rogue-ca" else None
    f = account(ca_file=ca_file)
    msgs = [message(1, "must stay\n")]
    deliver_all(f.dv, f.user, msgs)
    res = f.run()
    assert res.rc != 0, res.text
    assert "certificate of localhost not accepted" in res.all, res.text
    assert "expected the name localhost" in res.all, res.text
    assert "Pigeon Dovecot Test CA" in res.all, res.text
    assert f.local_files() == [] and f.dv.contents(f.user) == msgs
    assert f.dv.logins(f.user) == []


# ---- authentication --------------------------------------------------------------------

# (auth setting, passdb scheme, Dovecot's method= in its Login line)
MECHS = [
    ("auto", "PLAIN", "SCRAM-SHA-256"),
    ("scram-sha-256", "PLAIN", "SCRAM-SHA-256"),
    ("scram-sha-256", "SCRAM-SHA-256", "SCRAM-SHA-256"),
    ("auto", "SCRAM-SHA-256", "SCRAM-SHA-256"),
    ("plain", "PLAIN", "PLAIN"),
    ("plain", "SCRAM-SHA-256", "PLAIN"),
    ("login", "PLAIN", "LOGIN"),
    ("user", "PLAIN", "PLAIN"),       # Dovecot logs USER/PASS as PLAIN
    ("apop", "PLAIN", "APOP"),
]


def secret_forms(password, user):
    """The password and the encodings that would give it away in a trace."""
    return [password,
            base64.b64encode(password.encode()).decode(),
            base64.b64encode(("\0%s\0%s" % (user, password)).encode()).decode()]


@pytest.mark.parametrize("auth,scheme,method", MECHS,
                         ids=["%s-%s" % (a, s.lower()) for a, s, _ in MECHS])
def test_mechanism(account, auth, scheme, method):
    f = account(auth=auth, scheme=scheme)
    msgs = [message(1, "logged in with %s\n" % auth)]
    deliver_all(f.dv, f.user, msgs)
    res = f.run_ok()
    assert res.json["fetched"] == 1, res.text
    assert f.local_contents() == msgs
    line = last_login(f.dv, f.user)
    assert "method=%s," % method in line, line
    assert ", TLS" in line, line


@pytest.mark.parametrize("auth", ["apop", "plain", "scram-sha-256"])
def test_mechanism_in_the_clear(account, dovecot, auth):
    """On a plaintext link (allowed explicitly); the APOP timestamp is only in
    the greeting, and Dovecot's loopback counts as secured."""
    f = account(auth=auth, tls="none", allow_plaintext="yes", port=dovecot.port)
    msgs = [message(1, "plaintext %s\n" % auth)]
    deliver_all(f.dv, f.user, msgs)
    f.run_ok()
    assert f.local_contents() == msgs
    assert "method=%s," % {"apop": "APOP", "plain": "PLAIN",
                           "scram-sha-256": "SCRAM-SHA-256"}[auth] in last_login(f.dv, f.user)


def test_apop_after_stls_has_no_timestamp(account, dovecot):
    """RFC 2595: the greeting's APOP timestamp is forgotten after STLS."""
    f = account(auth="apop", tls="starttls", port=dovecot.port)
    deliver_all(f.dv, f.user, [message(1, "apop after stls\n")])
    res = f.run()
    assert res.rc == 78, res.text
    assert "no APOP timestamp" in res.all, res.text
    assert f.dv.logins(f.user) == []


def test_apop_needs_a_plaintext_password_on_the_server(account):
    """A user with only SCRAM keys cannot log in with APOP: a refusal (77)."""
    f = account(auth="apop", scheme="SCRAM-SHA-256")
    deliver_all(f.dv, f.user, [message(1, "no apop\n")])
    res = f.run()
    assert res.rc == 77, res.text
    assert "login with APOP refused" in res.all, res.text
    assert f.local_files() == []


@pytest.mark.parametrize("auth", ["plain", "login", "user", "scram-sha-256", "apop"])
def test_wrong_password(account, auth):
    f = account(auth=auth)
    deliver_all(f.dv, f.user, [message(1, "stays\n")])
    f.settings["password"] = "wrong-" + f.password
    f.write()
    res = f.run()
    assert res.rc == 77, res.text
    assert "refused" in res.all, res.text
    for s in secret_forms(f.settings["password"], f.user):
        assert s not in res.out + res.err
    assert f.local_files() == [] and len(f.dv.messages(f.user)) == 1


def test_unoffered_mechanism_is_a_configuration_error(account, dovecot):
    """Dovecot offers no SCRAM-SHA-256-PLUS: asked for, it is refused before
    any password goes out."""
    f = account(auth="scram-sha-256-plus")
    res = f.run()
    assert res.rc == 78, res.text
    assert "does not offer SCRAM-SHA-256-PLUS" in res.all, res.text


@pytest.mark.parametrize("auth", ["plain", "login", "user", "apop", "scram-sha-256"])
def test_verbose_trace_hides_the_password(account, auth):
    """-v shows the dialogue, never the password nor its base64 form (B.2)."""
    f = account(auth=auth)
    deliver_all(f.dv, f.user, [message(1, "traced\n")])
    res = f.run_ok("-v")
    assert "C: CAPA" in res.all, res.text
    for s in secret_forms(f.password, f.user):
        assert s not in res.out + res.err, "the password shows in the -v trace:\n" + res.err


def test_password_command(account):
    f = account()
    del f.settings["password"]
    f.settings["password_command"] = "echo %s" % f.password
    f.write()
    os.chmod(f.conf, 0o644)   # no password in the file: others may read it
    msgs = [message(1, "secret from a command\n")]
    deliver_all(f.dv, f.user, msgs)
    f.run_ok()
    assert f.local_contents() == msgs

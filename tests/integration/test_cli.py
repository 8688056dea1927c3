"""The `pigeon` administration tool: user, pw hash, check.

Every run of the tool is bounded by a timeout and its stderr is checked for
sanitizer reports. Tests that need a server use make_server from conftest and
let `pigeon user` edit that server's own passwd-file (srv.passwd), which
pigeond re-reads whenever it changes.
"""
import base64
import os
import poplib
import pty
import pwd
import re
import select
import shutil
import signal
import stat
import subprocess
import termios
import time
from types import SimpleNamespace

import pytest

from conftest import RUN_AS, build_dir, give_tree

EX_USAGE = 64
EX_CONFIG = 78

SANITIZER_MARKERS = ("AddressSanitizer", "LeakSanitizer", "runtime error:", "UndefinedBehavior")

# Field count of a passwd-file entry: user:password:uid:gid:gecos:home:shell:extra
FIELDS = 8


# ---- helpers ----------------------------------------------------------------


def pigeon_exe():
    return str(build_dir() / "pigeon")


def tool_env():
    env = dict(os.environ)
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    return env


def no_sanitizer_report(text):
    for marker in SANITIZER_MARKERS:
        assert marker not in text, "sanitizer report from pigeon:\n" + text


def pigeon(*args, stdin=None, umask=None, timeout=30):
    """Run `pigeon ARGS`; stdin (str or bytes) is fed through a pipe (never a
    terminal). Returns rc, out, err (text)."""
    if isinstance(stdin, str):
        stdin = stdin.encode()
    preexec = (lambda: os.umask(umask)) if umask is not None else None
    r = subprocess.run(
        [pigeon_exe(), *[str(a) for a in args]],
        input=stdin if stdin is not None else b"",
        capture_output=True, timeout=timeout, env=tool_env(), preexec_fn=preexec)
    res = SimpleNamespace(rc=r.returncode, out=r.stdout.decode("utf-8", "replace"),
                          err=r.stderr.decode("utf-8", "replace"))
    no_sanitizer_report(res.err)
    return res


def user_add(path, name, password, *opts, umask=None):
    return pigeon("user", "add", "-f", path, *opts, name, stdin=password + "\n", umask=umask)


def entries(path):
    """name -> list of fields, for every entry line (comments/blank skipped)."""
    result = {}
    for line in pathlib_read(path).splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split(":")
        result.setdefault(fields[0], []).append(fields)
    return result


def pathlib_read(path):
    with open(path, "rb") as f:
        return f.read().decode("utf-8")


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def entry_line(data, name):
    """The raw line (with its newline) of user name in data (bytes)."""
    lines = [l for l in data.splitlines(keepends=True) if l.startswith(name.encode() + b":")]
    assert len(lines) == 1, (name, data)
    return lines[0]


def can_login(srv, user, password):
    """USER/PASS with poplib (UTF-8 on the wire)."""
    try:
        p = srv.login(user, password)
    except poplib.error_proto:
        return False
    p.quit()
    return True


def can_login_plain(srv, user, password):
    """SASL PLAIN (RFC 4616) with the credentials as UTF-8."""
    c = srv.raw()
    try:
        assert c.command("AUTH PLAIN") == b"+ "
        token = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()
        line = c.command(token)
        ok = line.startswith(b"+OK")
        if ok:
            assert c.command("QUIT").startswith(b"+OK")
        return ok
    finally:
        c.close()


def server_with_passwd(make_server, users=()):
    """A stopped server whose passwd-file is srv.passwd (inside its directory)
    with a maildrop for each name in users."""
    srv = make_server(start=False)
    srv.settings["auth"]["passwd_file"] = str(srv.passwd)
    for name in users:
        srv.maildir(name)
    return srv


def service_user():
    """A [server] user that exists and is not root."""
    return RUN_AS or pwd.getpwuid(os.geteuid()).pw_name


def write_conf(path, sections, raw_tail=""):
    lines = []
    for section, values in sections.items():
        lines.append("[%s]" % section)
        for key, value in values.items():
            lines.append("%s = %s" % (key, value))
    path.write_text("\n".join(lines) + "\n" + raw_tail)
    return path


def good_settings(tmp_path, passwd_text="alice:{PLAIN}secret::::::\nbob:{PLAIN}pw:1000:1000::/home/bob::\n"):
    tmp_path.mkdir(parents=True, exist_ok=True)
    users = tmp_path / "users"
    users.write_text(passwd_text)
    give_tree(tmp_path)  # as the workers would have it: readable by [server] user
    return {
        "server": {"pop3_listen": "127.0.0.1:11110", "user": service_user()},
        "auth": {"passwd_file": str(users)},
        "mail": {"location": str(tmp_path / "mail") + "/%u/Maildir"},
    }


def check(conf):
    return pigeon("check", "-c", conf)


def assert_check_fails(conf, *needles):
    r = check(conf)
    assert r.rc == EX_CONFIG, (r.rc, r.out, r.err)
    assert "OK" not in r.out, r.out
    for needle in needles:
        if isinstance(needle, re.Pattern):
            assert needle.search(r.err), (needle.pattern, r.err)
        else:
            assert needle in r.err, (needle, r.err)
    return r


# ---- pseudo-terminal -----------------------------------------------------------


def echo_on(master):
    # On Linux, tcgetattr on the master side reports the slave's settings.
    return bool(termios.tcgetattr(master)[3] & termios.ECHO)


def run_on_tty(argv, answers, timeout=30, env=None):
    """Run argv with stdin/stdout/stderr on a fresh pseudo-terminal. Each time
    the output ends with a prompt (text ending in ':' with no newline after
    it), record whether echo was on at that moment, wait (bounded) until the
    program has turned echo off, and type the next answer. Returns rc, the raw
    terminal output, the prompts seen and the echo state at each prompt."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave,
                            env=env or tool_env(), start_new_session=True)
    os.close(slave)
    out = b""
    mark = 0
    prompts, echo_at_prompt = [], []
    answers = list(answers)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            r, _, _ = select.select([master], [], [], 0.2)
            if r:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: every slave descriptor is closed
                    break
                if not chunk:
                    break
                out += chunk
            elif proc.poll() is not None:
                break
            last = out[mark:].split(b"\n")[-1]
            if answers and last.rstrip(b" ").endswith(b":"):
                echo_at_prompt.append(echo_on(master))
                prompts.append(last.strip().decode("utf-8", "replace"))
                mark = len(out)
                settle = time.monotonic() + 5
                while echo_on(master) and time.monotonic() < settle:
                    time.sleep(0.01)
                os.write(master, answers.pop(0).encode() + b"\n")
        try:
            proc.wait(timeout=max(1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pytest.fail("%s did not finish; terminal output:\n%s"
                        % (" ".join(argv), out.decode("utf-8", "replace")))
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        os.close(master)
    text = out.decode("utf-8", "replace")
    no_sanitizer_report(text)
    return SimpleNamespace(rc=proc.returncode, out=text, prompts=prompts,
                           echo_at_prompt=echo_at_prompt)


# ---- pigeon user: round trip against a running pigeond ---------------------------


def test_user_round_trip_with_running_server(make_server):
    srv = server_with_passwd(make_server, ["alice"])
    passwd = srv.passwd
    r = user_add(passwd, "alice", "first-Secret")
    assert r.rc == 0, r.err

    r = pigeon("user", "list", "-f", passwd)
    assert r.rc == 0, r.err
    listed = [l.split("\t") for l in r.out.splitlines()]
    assert [l[:2] for l in listed] == [["alice", "{CRYPT}"]], r.out
    fields = entries(passwd)["alice"][0]
    assert fields[1].startswith("{CRYPT}$y$"), fields

    # Readable only by owner and group, as a real deployment would have it;
    # the server owns it (give_tree at start) and edits must keep that.
    os.chmod(passwd, 0o640)
    srv.start()
    pid = srv.pid()
    assert can_login(srv, "alice", "first-Secret")
    assert not can_login(srv, "alice", "wrong")

    r = pigeon("user", "passwd", "-f", passwd, "alice", stdin="second-Secret\n")
    assert r.rc == 0, r.err
    assert entries(passwd)["alice"][0][1].startswith("{CRYPT}$y$")
    # Same pigeond, no restart or reload signal: it re-reads the changed file.
    assert srv.proc.poll() is None and srv.pid() == pid
    assert not can_login(srv, "alice", "first-Secret")
    assert can_login(srv, "alice", "second-Secret")

    r = pigeon("user", "del", "-f", passwd, "alice")
    assert r.rc == 0, r.err
    assert "alice" not in entries(passwd)
    assert not can_login(srv, "alice", "second-Secret")
    r = pigeon("user", "list", "-f", passwd)
    assert r.rc == 0 and "alice" not in r.out, (r.out, r.err)
    assert srv.proc.poll() is None and srv.pid() == pid
    assert stat.S_IMODE(os.stat(passwd).st_mode) == 0o640


def test_user_scram_and_passwd_switch_scheme(make_server):
    srv = server_with_passwd(make_server, ["sam", "ann"])
    r = user_add(srv.passwd, "sam", "scram-Pass", "--scram")
    assert r.rc == 0, r.err
    stored = entries(srv.passwd)["sam"][0][1]
    assert re.fullmatch(r"\{SCRAM-SHA-256\}\d+,[A-Za-z0-9+/=]+,[A-Za-z0-9+/=]+,[A-Za-z0-9+/=]+",
                        stored), stored
    r = pigeon("user", "list", "-f", srv.passwd)
    assert r.out.splitlines()[0].split("\t")[:2] == ["sam", "{SCRAM-SHA-256}"], r.out

    r = user_add(srv.passwd, "ann", "crypt-Pass")
    assert r.rc == 0, r.err
    srv.start()
    assert can_login(srv, "sam", "scram-Pass")
    assert can_login_plain(srv, "sam", "scram-Pass")
    assert not can_login(srv, "sam", "scram-pass")

    # passwd --scram turns a yescrypt entry into SCRAM keys, and back.
    r = pigeon("user", "passwd", "--scram", "-f", srv.passwd, "ann", stdin="ann-Scram\n")
    assert r.rc == 0, r.err
    assert entries(srv.passwd)["ann"][0][1].startswith("{SCRAM-SHA-256}")
    assert can_login(srv, "ann", "ann-Scram")
    assert not can_login(srv, "ann", "crypt-Pass")
    r = pigeon("user", "passwd", "-f", srv.passwd, "sam", stdin="sam-Crypt\n")
    assert r.rc == 0, r.err
    assert entries(srv.passwd)["sam"][0][1].startswith("{CRYPT}$y$")
    assert can_login(srv, "sam", "sam-Crypt")
    assert not can_login(srv, "sam", "scram-Pass")


def test_user_add_through_config(tmp_path):
    """Without -f, `pigeon user` edits [auth] passwd_file of -c CONFIG."""
    settings = good_settings(tmp_path)
    conf = write_conf(tmp_path / "pigeon.conf", settings)
    r = pigeon("user", "add", "-c", conf, "carol", stdin="pw-carol\n")
    assert r.rc == 0, r.err
    assert entries(settings["auth"]["passwd_file"])["carol"][0][1].startswith("{CRYPT}$y$")
    r = pigeon("user", "list", "-c", conf)
    assert [l.split("\t")[0] for l in r.out.splitlines()] == ["alice", "bob", "carol"], r.out
    r = check(conf)
    assert r.rc == 0 and "3 users" in r.out, (r.out, r.err)


def test_add_existing_user_fails(tmp_path):
    passwd = tmp_path / "users"
    assert user_add(passwd, "alice", "one").rc == 0
    before = read_bytes(passwd)
    r = user_add(passwd, "alice", "two")
    assert r.rc != 0
    assert "alice" in r.err and "exists" in r.err, r.err
    assert read_bytes(passwd) == before


def test_delete_or_passwd_missing_user_fails(tmp_path):
    passwd = tmp_path / "users"
    assert user_add(passwd, "alice", "one").rc == 0
    before = read_bytes(passwd)
    r = pigeon("user", "del", "-f", passwd, "bob")
    assert r.rc != 0
    assert "bob" in r.err, r.err
    r = pigeon("user", "passwd", "-f", passwd, "bob", stdin="pw\n")
    assert r.rc != 0
    assert "bob" in r.err, r.err
    # a user name that is only a prefix of an existing one is not that user
    r = pigeon("user", "del", "-f", passwd, "ali")
    assert r.rc != 0
    assert read_bytes(passwd) == before
    r = pigeon("user", "list", "-f", tmp_path / "nonexistent")
    assert r.rc != 0 and "nonexistent" in r.err, r.err


def test_other_lines_preserved_byte_for_byte(tmp_path):
    passwd = tmp_path / "users"
    original = (
        b"# Pigeon users -- managed by hand and by pigeon user\n"
        b"#alice:{PLAIN}commented-out:::::\n"
        b"\n"
        b"bob:{SHA512-CRYPT}$6$abc$def:1001:1002:Bob B.:/home/bob:/bin/sh:userdb_quota=1G\n"
        b"# a comment: with: colons\n"
        b"alice2:{PLAIN}x:::::\n"
        b"carol:{PLAIN}crlf::::/home/carol::\r\n"
        b"   \n"
        b"dave:{PLAIN}d  :::::  \n"
        b"erin:$2b$05$plainbcryptwithoutscheme\n"
    )
    passwd.write_bytes(original)

    assert user_add(passwd, "alice", "pw1").rc == 0
    data = read_bytes(passwd)
    assert data.startswith(original)
    added = data[len(original):]
    assert added.startswith(b"alice:{CRYPT}$y$") and added.count(b"\n") == 1, added

    r = pigeon("user", "passwd", "-f", passwd, "alice", stdin="pw2\n")
    assert r.rc == 0, r.err
    data = read_bytes(passwd)
    assert data.startswith(original)
    assert data[len(original):] != added and data[len(original):].startswith(b"alice:{CRYPT}$y$")

    alice_line = data[len(original):]

    # passwd on a hand-written entry replaces the password field only
    r = pigeon("user", "passwd", "-f", passwd, "bob", stdin="bob-new\n")
    assert r.rc == 0, r.err
    data = read_bytes(passwd)
    old_bob = entry_line(original, "bob")
    bob = entry_line(data, "bob")
    assert bob.startswith(b"bob:{CRYPT}$y$")
    assert bob.endswith(b":1001:1002:Bob B.:/home/bob:/bin/sh:userdb_quota=1G\n"), bob
    assert data == original.replace(old_bob, bob) + alice_line

    # del alice: back to the original, apart from bob's new password
    r = pigeon("user", "del", "-f", passwd, "alice")
    assert r.rc == 0, r.err
    assert read_bytes(passwd) == original.replace(old_bob, bob)

    # the commented-out alice and alice2 stay
    r = pigeon("user", "del", "-f", passwd, "alice")
    assert r.rc != 0


def test_file_without_final_newline(tmp_path):
    passwd = tmp_path / "users"
    passwd.write_bytes(b"# no newline at the end\nbob:{PLAIN}x:::::")
    assert user_add(passwd, "alice", "pw").rc == 0
    lines = read_bytes(passwd).split(b"\n")
    assert lines[0] == b"# no newline at the end"
    assert lines[1] == b"bob:{PLAIN}x:::::"
    assert lines[2].startswith(b"alice:{CRYPT}$y$")
    assert lines[3:] == [b""]


def test_long_comment_line_preserved(tmp_path):
    """A line longer than any fixed buffer is copied as it is, not split (a
    split line could even start with "alice:" and be taken for an entry)."""
    passwd = tmp_path / "users"
    original = (b"#" + b"x" * 5000 + b"\n"
                b"#" + b"y" * 4094 + b"alice:{PLAIN}not-an-entry:::::\n"
                b"bob:{PLAIN}x:::::\n")
    passwd.write_bytes(original)
    r = user_add(passwd, "alice", "pw")
    assert r.rc == 0, r.err
    data = read_bytes(passwd)
    assert data.startswith(original), "long lines were rewritten: %d lines now, %d before" % (
        data.count(b"\n"), original.count(b"\n"))
    r = pigeon("user", "del", "-f", passwd, "alice")
    assert r.rc == 0, r.err
    assert read_bytes(passwd) == original


@pytest.mark.parametrize("mode,umask", [(0o640, 0o022), (0o600, 0o022), (0o640, 0o077),
                                        (0o660, 0o022), (0o644, 0o027)],
                         ids=lambda v: "%04o" % v)
def test_file_mode_preserved(tmp_path, mode, umask):
    """The mode of the passwd-file survives every edit, whatever the admin's
    umask (a 0640 file that became 0600 would lock pigeond's group out)."""
    passwd = tmp_path / "users"
    passwd.write_text("bob:{PLAIN}x:::::\n")
    os.chmod(passwd, mode)
    r = user_add(passwd, "alice", "pw", umask=umask)
    assert r.rc == 0, r.err
    assert oct(stat.S_IMODE(os.stat(passwd).st_mode)) == oct(mode)
    r = pigeon("user", "passwd", "-f", passwd, "alice", stdin="pw2\n", umask=umask)
    assert r.rc == 0, r.err
    assert oct(stat.S_IMODE(os.stat(passwd).st_mode)) == oct(mode)
    r = pigeon("user", "del", "-f", passwd, "alice", umask=umask)
    assert r.rc == 0, r.err
    assert oct(stat.S_IMODE(os.stat(passwd).st_mode)) == oct(mode)


@pytest.mark.skipif(os.geteuid() != 0 or RUN_AS is None, reason="changing owners needs root")
def test_file_owner_preserved(tmp_path):
    passwd = tmp_path / "users"
    passwd.write_text("bob:{PLAIN}x:::::\n")
    pw = pwd.getpwnam(RUN_AS)
    os.chown(passwd, pw.pw_uid, pw.pw_gid)
    os.chmod(passwd, 0o640)
    assert user_add(passwd, "alice", "pw").rc == 0
    assert pigeon("user", "del", "-f", passwd, "bob").rc == 0
    st = os.stat(passwd)
    assert (st.st_uid, st.st_gid) == (pw.pw_uid, pw.pw_gid)
    assert stat.S_IMODE(st.st_mode) == 0o640


def test_new_file_is_not_world_readable(tmp_path):
    passwd = tmp_path / "users"
    assert user_add(passwd, "alice", "pw").rc == 0
    assert stat.S_IMODE(os.stat(passwd).st_mode) & 0o007 == 0
    assert list(entries(passwd)) == ["alice"]


def test_uid_gid_home_fields(tmp_path):
    passwd = tmp_path / "users"
    r = user_add(passwd, "alice", "pw", "--uid", "1234", "--gid", "5678", "--home", "/home/alice")
    assert r.rc == 0, r.err
    r = user_add(passwd, "bob", "pw")
    assert r.rc == 0, r.err
    alice = entries(passwd)["alice"][0]
    assert len(alice) == FIELDS, alice
    assert alice[0] == "alice" and alice[1].startswith("{CRYPT}$y$")
    assert alice[2:] == ["1234", "5678", "", "/home/alice", "", ""], alice
    bob = entries(passwd)["bob"][0]
    assert len(bob) == FIELDS and bob[2:] == ["", "", "", "", "", ""], bob

    r = pigeon("user", "list", "-f", passwd)
    assert r.out.splitlines() == ["alice\t{CRYPT}\t/home/alice", "bob\t{CRYPT}\t"], r.out

    # a new password keeps the other fields
    assert pigeon("user", "passwd", "--scram", "-f", passwd, "alice", stdin="pw2\n").rc == 0
    alice = entries(passwd)["alice"][0]
    assert alice[1].startswith("{SCRAM-SHA-256}")
    assert alice[2:] == ["1234", "5678", "", "/home/alice", "", ""], alice


@pytest.mark.parametrize("name", ["al:ice", "al ice", " alice", "alice ", "al\tice", "#alice", ""])
def test_invalid_user_names_refused(tmp_path, name):
    passwd = tmp_path / "users"
    passwd.write_text("bob:{PLAIN}x:::::\n")
    before = read_bytes(passwd)
    r = user_add(passwd, name, "pw")
    assert r.rc != 0
    assert "invalid" in r.err.lower() or "name" in r.err.lower(), r.err
    assert read_bytes(passwd) == before


def test_overlong_user_name_refused(tmp_path):
    """pigeond ignores entries whose name is over 255 octets, so the tool
    must not write one."""
    passwd = tmp_path / "users"
    passwd.write_text("bob:{PLAIN}x:::::\n")
    before = read_bytes(passwd)
    r = user_add(passwd, "a" * 256, "pw")
    assert r.rc != 0, "a 256-octet user name was accepted"
    assert read_bytes(passwd) == before


@pytest.mark.parametrize("opts", [
    ["--uid", "abc"],
    ["--gid", "-5"],
    ["--uid", "1:2"],
    ["--home", "/home/a:b"],
    ["--home", "/home/x\nmallory:{PLAIN}owned:::::"],
], ids=["uid-abc", "gid-negative", "uid-colon", "home-colon", "home-newline-injects-user"])
def test_bad_field_values_refused(tmp_path, opts):
    """--uid/--gid must be numbers and --home must not contain ':' or a line
    break: anything else corrupts the entry or injects another user."""
    passwd = tmp_path / "users"
    passwd.write_text("bob:{PLAIN}x:::::\n")
    before = read_bytes(passwd)
    r = user_add(passwd, "alice", "pw", *opts)
    assert r.rc != 0, "accepted %r; file now:\n%s" % (opts, pathlib_read(passwd))
    assert read_bytes(passwd) == before


# ---- concurrency ------------------------------------------------------------------


def test_concurrent_adds_lose_nothing(tmp_path):
    passwd = tmp_path / "users"
    header = b"# shared file\nkeep:{PLAIN}k::::::\n"
    passwd.write_bytes(header)
    pwfile = tmp_path / "pw"
    pwfile.write_text("same-password\n")
    expected = ["keep"]
    for rnd in range(2):
        procs = []
        names = ["r%du%02d" % (rnd, i) for i in range(30)]
        for name in names:
            with open(pwfile, "rb") as stdin:
                procs.append(subprocess.Popen(
                    [pigeon_exe(), "user", "add", "-f", str(passwd), name],
                    stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                    env=tool_env()))
        failures = []
        deadline = time.monotonic() + 40
        for name, p in zip(names, procs):
            try:
                out, err = p.communicate(timeout=max(1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                for q in procs:
                    if q.poll() is None:
                        q.kill()
                        q.wait()
                pytest.fail("pigeon user add %s did not finish" % name)
            no_sanitizer_report(err.decode(errors="replace"))
            if p.returncode != 0:
                failures.append((name, p.returncode, err.decode(errors="replace")))
        assert not failures, failures
        expected += names

        data = read_bytes(passwd)
        assert data.startswith(header)
        users = []
        for line in data.decode().splitlines():
            if line.startswith("#"):
                continue
            fields = line.split(":")
            assert len(fields) == FIELDS, line
            users.append(fields[0])
            if fields[0] != "keep":
                assert fields[1].startswith("{CRYPT}$y$"), line
        assert sorted(users) == sorted(expected), (
            "missing: %s, extra: %s" % (sorted(set(expected) - set(users)),
                                        [u for u in users if users.count(u) > 1]))
        leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith("users.tmp")]
        assert not leftovers, leftovers

    # the checker agrees: every line parses, no user twice
    settings = good_settings(tmp_path / "unused")
    settings["auth"]["passwd_file"] = str(passwd)
    conf = write_conf(tmp_path / "pigeon.conf", settings)
    r = check(conf)
    assert r.rc == 0 and "(61 users" in r.out, (r.out, r.err)


# ---- password input ---------------------------------------------------------------


def test_empty_password_refused(tmp_path):
    passwd = tmp_path / "users"
    for stdin in ("\n", "\r\n", ""):
        r = pigeon("user", "add", "-f", passwd, "alice", stdin=stdin)
        assert r.rc != 0, repr(stdin)
        assert "password" in r.err.lower(), r.err
        r = pigeon("pw", "hash", stdin=stdin)
        assert r.rc != 0 and "{CRYPT}" not in r.out, (stdin, r.out)
        assert "password" in r.err.lower(), r.err
    assert not passwd.exists() or "alice" not in pathlib_read(passwd)


def test_password_from_stdin_is_one_line(make_server):
    """Only the first line of stdin counts; its line ending is not part of it."""
    srv = server_with_passwd(make_server, ["alice", "bob"])
    r = pigeon("user", "add", "--scram", "-f", srv.passwd, "alice", stdin="first\r\nsecond\n")
    assert r.rc == 0, r.err
    r = pigeon("user", "add", "-f", srv.passwd, "bob", stdin="no-newline")
    assert r.rc == 0, r.err
    srv.start()
    assert can_login(srv, "alice", "first")
    assert not can_login(srv, "alice", "second")
    assert can_login(srv, "bob", "no-newline")


def test_password_with_spaces_and_utf8_end_to_end(make_server):
    srv = server_with_passwd(make_server, ["sam", "bob"])
    password = "  correct horse ☃ bätterie  "
    r = user_add(srv.passwd, "bob", password)
    assert r.rc == 0, r.err
    r = user_add(srv.passwd, "sam", password, "--scram")
    assert r.rc == 0, r.err
    srv.start()
    for user in ("bob", "sam"):
        assert can_login(srv, user, password), user
        assert can_login_plain(srv, user, password), user
        assert not can_login(srv, user, password.strip()), user
        assert not can_login_plain(srv, user, "correct horse ☃ batterie"), user


def tty_answers(password, again=None):
    return [password, password if again is None else again]


def test_password_from_terminal_not_echoed(tmp_path):
    secret = "Tty-Secret-42 ☃"
    r = run_on_tty([pigeon_exe(), "pw", "hash"], tty_answers(secret))
    assert r.rc == 0, r.out
    assert len(r.prompts) == 2, r.out
    assert "password" in r.prompts[0].lower(), r.prompts
    assert secret not in r.out, "password echoed:\n" + r.out
    assert "Tty-Secret" not in r.out, r.out
    hashes = [l for l in r.out.splitlines() if l.startswith("{CRYPT}$y$")]
    assert len(hashes) == 1, r.out

    # user add on a terminal too, and the password works
    passwd = tmp_path / "users"
    r = run_on_tty([pigeon_exe(), "user", "add", "-f", str(passwd), "alice"], tty_answers(secret))
    assert r.rc == 0, r.out
    assert secret not in r.out
    assert entries(passwd)["alice"][0][1].startswith("{CRYPT}$y$")


def test_terminal_mismatch_refused(tmp_path):
    r = run_on_tty([pigeon_exe(), "pw", "hash"], tty_answers("one-password", "another-password"))
    assert r.rc != 0
    assert len(r.prompts) == 2, r.out
    assert "match" in r.out.lower(), r.out
    assert "{CRYPT}" not in r.out
    assert "one-password" not in r.out and "another-password" not in r.out

    passwd = tmp_path / "users"
    passwd.write_text("bob:{PLAIN}x:::::\n")
    r = run_on_tty([pigeon_exe(), "user", "add", "-f", str(passwd), "alice"],
                   tty_answers("one-password", "another-password"))
    assert r.rc != 0
    assert "alice" not in pathlib_read(passwd)


def test_terminal_empty_password_refused():
    r = run_on_tty([pigeon_exe(), "pw", "hash"], ["", ""])
    assert r.rc != 0
    assert "{CRYPT}" not in r.out and "empty" in r.out.lower(), r.out


def strace_usable():
    if shutil.which("strace") is None:
        return False
    try:
        return subprocess.run(["strace", "-o", "/dev/null", "true"], timeout=10,
                              capture_output=True).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.skipif(not strace_usable(), reason="needs a working strace")
def test_terminal_echo_off_before_prompt():
    """Echo must be off by the time the prompt is shown: a user (or expect
    script) answering the prompt at once must not see the password echoed,
    nor lose it to the flush when echo is turned off later. strace slows
    every ioctl (the terminal calls) to make the ordering visible."""
    secret = "Quick-Typist-7"
    env = tool_env()
    # LeakSanitizer cannot run under ptrace; the other tests cover leaks.
    env["ASAN_OPTIONS"] = env["ASAN_OPTIONS"] + ":detect_leaks=0"
    r = run_on_tty(["strace", "-f", "-o", "/dev/null", "-e", "trace=ioctl",
                    "-e", "inject=ioctl:delay_enter=200000", pigeon_exe(), "pw", "hash"],
                   tty_answers(secret), env=env)
    assert r.rc == 0, r.out
    assert len(r.prompts) == 2, r.out
    assert secret not in r.out, "password echoed:\n" + r.out
    assert r.echo_at_prompt == [False, False], (
        "terminal echo still on when the prompt appeared (prompt %r)" % r.prompts)


# ---- pigeon pw hash ------------------------------------------------------------------


@pytest.mark.parametrize("scheme,prefix", [
    (None, "{CRYPT}$y$"),
    ("yescrypt", "{CRYPT}$y$"),
    ("bcrypt", "{CRYPT}$2b$"),
    ("sha512", "{CRYPT}$6$"),
    ("sha256", "{CRYPT}$5$"),
    ("scram", "{SCRAM-SHA-256}"),
])
def test_pw_hash_schemes(make_server, scheme, prefix):
    args = ["pw", "hash"] + (["--scheme", scheme] if scheme else [])
    r = pigeon(*args, stdin="hash me ☃\n")
    assert r.rc == 0, r.err
    lines = r.out.splitlines()
    assert len(lines) == 1 and lines[0].startswith(prefix), r.out
    assert "hash me" not in r.out + r.err
    # two runs give different salts
    again = pigeon(*args, stdin="hash me ☃\n").out.strip()
    assert again.startswith(prefix) and again != lines[0]
    # and the line is a working passwd-file password field
    srv = server_with_passwd(make_server, ["alice"])
    srv.passwd.write_text("alice:%s:::::\n" % lines[0])
    srv.start()
    assert can_login(srv, "alice", "hash me ☃")
    assert not can_login(srv, "alice", "hash me")


@pytest.mark.parametrize("args", [
    ["pw", "hash", "--scheme", "md5"],
    ["pw", "hash", "--scheme", "YESCRYPT-ish"],
    ["pw", "hash", "--scheme", ""],
    ["pw", "hash", "--bogus"],
    ["pw", "frob"],
    ["pw"],
])
def test_pw_usage_errors(args):
    r = pigeon(*args, stdin="pw\n")
    assert r.rc == EX_USAGE, (r.rc, r.out, r.err)
    assert r.out == ""
    assert r.err.strip(), "no message"


# ---- pigeon check ---------------------------------------------------------------------


def test_check_good_config(tmp_path):
    conf = write_conf(tmp_path / "pigeon.conf", good_settings(tmp_path))
    r = check(conf)
    assert r.rc == 0, r.err
    assert "OK" in r.out and str(conf) in r.out, r.out
    assert "2 users" in r.out, r.out
    assert r.err == ""


def make_tls_files(tmp_path):
    def run(*cmd):
        subprocess.run(cmd, check=True, capture_output=True, timeout=30)

    k1, k2, cert = tmp_path / "k1.pem", tmp_path / "k2.pem", tmp_path / "cert.pem"
    for k in (k1, k2):
        run("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-out", str(k))
    run("openssl", "req", "-x509", "-new", "-key", str(k1), "-subj", "/CN=localhost",
        "-days", "2", "-out", str(cert))
    return k1, k2, cert


@pytest.fixture
def tls_files(tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    return make_tls_files(tmp_path)


def test_check_good_tls_config(tmp_path, tls_files):
    k1, _, cert = tls_files
    settings = good_settings(tmp_path)
    settings["tls"] = {"cert": str(cert), "key": str(k1)}
    settings["server"]["pop3s_listen"] = "127.0.0.1:11995"
    conf = write_conf(tmp_path / "pigeon.conf", settings)
    r = check(conf)
    assert r.rc == 0, r.err
    assert "OK" in r.out and "TLS on" in r.out, r.out


def test_check_missing_config(tmp_path):
    r = check(tmp_path / "nope.conf")
    assert r.rc == EX_CONFIG
    assert "nope.conf" in r.err


def test_check_syntax_error(tmp_path):
    conf = write_conf(tmp_path / "pigeon.conf", good_settings(tmp_path),
                      raw_tail="[log]\nthis line has no equals sign\n")
    lineno = conf.read_text().splitlines().index("this line has no equals sign") + 1
    assert_check_fails(conf, "%s:%d:" % (conf, lineno), "syntax")


def test_check_bad_section_header(tmp_path):
    conf = write_conf(tmp_path / "pigeon.conf", good_settings(tmp_path), raw_tail="[log\n")
    lineno = len(conf.read_text().splitlines())
    assert_check_fails(conf, "%s:%d:" % (conf, lineno))


def test_check_unknown_setting(tmp_path):
    conf = write_conf(tmp_path / "pigeon.conf", good_settings(tmp_path),
                      raw_tail="[server]\nbogus_knob = 1\n")
    lineno = len(conf.read_text().splitlines())
    assert_check_fails(conf, "%s:%d:" % (conf, lineno), "bogus_knob", "unknown")


def test_check_bad_value(tmp_path):
    conf = write_conf(tmp_path / "pigeon.conf", good_settings(tmp_path),
                      raw_tail="[pop3]\nidle_timeout = 1m\n")
    lineno = len(conf.read_text().splitlines())
    assert_check_fails(conf, "%s:%d:" % (conf, lineno), "idle_timeout")


def test_check_missing_passwd_file(tmp_path):
    settings = good_settings(tmp_path)
    missing = tmp_path / "no-such-users"
    settings["auth"]["passwd_file"] = str(missing)
    conf = write_conf(tmp_path / "pigeon.conf", settings)
    assert_check_fails(conf, str(missing), "No such file")


def test_check_malformed_passwd_lines(tmp_path):
    settings = good_settings(tmp_path, "# users\nalice:{PLAIN}a:::::\nbob:{PLAIN}b:12x:::::\n"
                                       "carol\n:{PLAIN}nameless:::::\n")
    users = settings["auth"]["passwd_file"]
    conf = write_conf(tmp_path / "pigeon.conf", settings)
    r = assert_check_fails(conf, "%s:3:" % users, "%s:4:" % users, "%s:5:" % users)
    line3 = [l for l in r.err.splitlines() if "%s:3:" % users in l][0]
    assert "uid" in line3 or "number" in line3, line3
    assert "%s:2:" % users not in r.err and "%s:1:" % users not in r.err


def test_check_duplicate_user(tmp_path):
    settings = good_settings(tmp_path, "alice:{PLAIN}a:::::\nbob:{PLAIN}b:::::\n"
                                       "# again\nalice:{PLAIN}c:::::\n")
    users = settings["auth"]["passwd_file"]
    conf = write_conf(tmp_path / "pigeon.conf", settings)
    r = assert_check_fails(conf, "%s:4:" % users, "alice")
    assert re.search(r"again|twice|duplicate", r.err), r.err


def test_check_empty_password_field(tmp_path):
    settings = good_settings(tmp_path, "alice::::::\n")
    conf = write_conf(tmp_path / "pigeon.conf", settings)
    assert_check_fails(conf, "%s:1:" % settings["auth"]["passwd_file"], "alice")


@pytest.mark.parametrize("field, why", [
    ("{FOO}bar", "unknown password scheme"),
    ("{SCRAM-SHA-256}4096,nonsense,x,y", "malformed {SCRAM-SHA-256} keys"),
    ("{CRYPT}$y$", "malformed or unsupported crypt hash"),
    ("{SHA512-CRYPT}not-a-hash", "malformed or unsupported crypt hash"),
    ("{SHA512-CRYPT}$6$saltsalt$tooshort", "malformed or unsupported crypt hash"),
])
def test_check_unusable_password_hash(tmp_path, field, why):
    settings = good_settings(tmp_path, "alice:{PLAIN}ok::::::\nbob:%s::::::\n" % field)
    conf = write_conf(tmp_path / "pigeon.conf", settings)
    r = assert_check_fails(conf, "%s:2: user bob: %s" % (settings["auth"]["passwd_file"], why))
    assert "ok" not in r.err.replace("alice", "")  # no secret is echoed


@pytest.mark.skipif(not RUN_AS, reason="needs root and the pigeon user")
def test_check_passwd_file_unreadable_by_server_user(tmp_path):
    settings = good_settings(tmp_path)
    os.chown(settings["auth"]["passwd_file"], 0, 0)
    os.chmod(settings["auth"]["passwd_file"], 0o600)
    conf = write_conf(tmp_path / "pigeon.conf", settings)
    assert_check_fails(conf, "not readable by [server] user %s" % RUN_AS)


@pytest.mark.skipif(not RUN_AS, reason="needs root and the pigeon user")
def test_user_add_as_root_makes_a_file_the_server_can_read(make_server):
    """A passwd-file that `pigeon user add` creates as root gets the server's
    group and mode 0640, so the workers can read it."""
    srv = make_server(start=False)
    srv.passwd.unlink()
    conf = srv.dir / "pigeon.conf"
    srv.write_config()
    r = pigeon("user", "add", "-c", conf, "alice", stdin="secret\n")
    assert r.rc == 0, r.err
    st = os.stat(srv.passwd)
    assert st.st_uid == 0 and st.st_gid == pwd.getpwnam(RUN_AS).pw_gid, st
    assert stat.S_IMODE(st.st_mode) == 0o640
    srv.maildir("alice")
    give_tree(srv.mailroot)
    srv.start()
    assert can_login(srv, "alice", "secret")
    assert check(conf).rc == 0


def test_check_tls_cert_missing(tmp_path, tls_files):
    k1, _, _ = tls_files
    settings = good_settings(tmp_path)
    missing = tmp_path / "missing-cert.pem"
    settings["tls"] = {"cert": str(missing), "key": str(k1)}
    conf = write_conf(tmp_path / "pigeon.conf", settings)
    assert_check_fails(conf, str(conf), str(missing), "[tls]")


def test_check_tls_key_missing(tmp_path, tls_files):
    _, _, cert = tls_files
    settings = good_settings(tmp_path)
    missing = tmp_path / "missing-key.pem"
    settings["tls"] = {"cert": str(cert), "key": str(missing)}
    conf = write_conf(tmp_path / "pigeon.conf", settings)
    assert_check_fails(conf, str(conf), str(missing))


def test_check_tls_key_does_not_match(tmp_path, tls_files):
    _, k2, cert = tls_files
    settings = good_settings(tmp_path)
    settings["tls"] = {"cert": str(cert), "key": str(k2)}
    conf = write_conf(tmp_path / "pigeon.conf", settings)
    assert_check_fails(conf, str(conf), str(k2), "match")


def test_check_tls_cert_not_pem(tmp_path, tls_files):
    k1, _, _ = tls_files
    settings = good_settings(tmp_path)
    bogus = tmp_path / "bogus.pem"
    bogus.write_text("not a certificate\n")
    settings["tls"] = {"cert": str(bogus), "key": str(k1)}
    conf = write_conf(tmp_path / "pigeon.conf", settings)
    assert_check_fails(conf, str(conf), str(bogus))


@pytest.mark.parametrize("location", ["%u/Maildir", "mail/%u/Maildir", "Maildir",
                                      "/var/mail/%x/Maildir", "/var/mail/%"])
def test_check_bad_mail_location(tmp_path, location):
    settings = good_settings(tmp_path)
    settings["mail"]["location"] = location
    conf = write_conf(tmp_path / "pigeon.conf", settings)
    lineno = conf.read_text().splitlines().index("location = " + location) + 1
    assert_check_fails(conf, "%s:%d:" % (conf, lineno), "location")


def test_check_server_user_missing(tmp_path):
    settings = good_settings(tmp_path)
    settings["server"]["user"] = "no-such-user-h7"
    conf = write_conf(tmp_path / "pigeon.conf", settings)
    assert_check_fails(conf, str(conf), "no-such-user-h7", "does not exist")


def test_check_server_user_root(tmp_path):
    settings = good_settings(tmp_path)
    settings["server"]["user"] = "root"
    conf = write_conf(tmp_path / "pigeon.conf", settings)
    assert_check_fails(conf, str(conf), "[server]", "root")


def test_check_reports_every_problem(tmp_path):
    """Problems in different files are all named in one run."""
    settings = good_settings(tmp_path, "alice:{PLAIN}a:::::\nalice:{PLAIN}b:::::\n")
    settings["server"]["user"] = "no-such-user-h7"
    settings["tls"] = {"cert": str(tmp_path / "no-cert.pem"), "key": str(tmp_path / "no-key.pem")}
    conf = write_conf(tmp_path / "pigeon.conf", settings)
    assert_check_fails(conf, "%s:2:" % settings["auth"]["passwd_file"], "no-such-user-h7",
                       "no-cert.pem")


# ---- usage -------------------------------------------------------------------------------


@pytest.mark.parametrize("args", [[], ["frobnicate"], ["user"], ["user", "frob", "-f", "/nonexistent/users", "x"],
                                  ["user", "add", "-f", "/nonexistent/users"],
                                  ["user", "add", "-f", "/nonexistent/users", "a", "b"],
                                  ["user", "list", "-f", "/nonexistent/users", "extra"],
                                  ["user", "add", "--bogus", "alice"],
                                  ["check", "-x"]],
                         ids=lambda a: "-".join(a) or "no-arguments")
def test_usage_errors(args):
    r = pigeon(*args)
    assert r.rc == EX_USAGE, (args, r.rc, r.out, r.err)
    assert "usage" in (r.err + r.out).lower(), r.err


def test_help_and_version():
    r = pigeon("--version")
    assert r.rc == 0
    assert re.fullmatch(r"pigeon \d+\.\d+(\.\d+)?\S*\n", r.out), r.out
    r = pigeon("--help")
    assert r.rc == 0 and "usage" in r.out.lower()
    for cmd in ("user", "pw hash", "check"):
        assert cmd in r.out

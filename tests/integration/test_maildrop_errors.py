"""Maildrops that cannot be opened, end to end: what the client is told, what
the log says, and that the session stays usable (spec/pop3.md §10,
docs/architecture.md "One session").

A maildrop the server's user may not read (src/store/maildir.c maps EACCES,
EPERM, ENOTDIR, ELOOP and EROFS to a permanent failure) is `-ERR [SYS/PERM]`
(RFC 3206: retrying will not help, ask the administrator); a [mail] location
template that cannot be expanded for a user is the same. In every case:

- the answer comes only after the credentials were checked: a wrong password
  is `-ERR [AUTH]` whatever the state of the maildrop;
- the session stays in AUTHORIZATION and open (the failure is the server's,
  not an authentication failure), so the client may try again;
- once the administrator repairs the maildrop, the same connection logs in.

Tests run as root and pigeond drops to the user `pigeon` (conftest.RUN_AS);
the maildrops belong to that user, so taking its permissions away (or giving
the directory to root) makes the failure real for the server.
"""
import os
import pwd
import subprocess
import time

import pytest

from conftest import RUN_AS, build_dir, wait_until

USER = "alice"
MSG = b"Subject: hello\n\nworld\n"
SYS_PERM = b"-ERR [SYS/PERM] "
AUTH_FAILED = b"-ERR [AUTH] "
NOT_IN_STATE = b"-ERR Command not valid in this state"



def log_lines(srv, *words):
    """Lines of the server's log that contain every one of words."""
    return [l for l in srv.log().splitlines() if all(w in l for w in words)]


def try_login(c, user=USER, password="secret"):
    assert c.command("USER " + user).startswith(b"+OK")
    return c.command("PASS " + password)


def assert_still_authorization(c):
    """Open, not logged in, and still taking commands."""
    assert c.command("STAT") == NOT_IN_STATE
    assert c.command("NOOP") == NOT_IN_STATE
    assert c.command("CAPA").startswith(b"+OK")
    assert c.read_multiline()


# ---- a maildrop the server's user cannot open ----------------------------------------------

# Each case breaks alice's maildrop and returns (repair, words of the log line).


def unreadable_maildir(srv):
    md = srv.maildir(USER)
    md.chmod(0)
    return lambda: md.chmod(0o700), ["maildir %s: cannot open: Permission denied" % md]


def unreadable_cur(srv):
    cur = srv.maildir(USER) / "cur"
    cur.chmod(0)
    return lambda: cur.chmod(0o700), ["maildir %s" % srv.maildir(USER), "Permission denied"]


def maildir_owned_by_root(srv):
    md = srv.maildir(USER)
    os.chown(md, 0, 0)
    md.chmod(0o700)

    def repair():
        pw = pwd.getpwnam(RUN_AS)
        os.chown(md, pw.pw_uid, pw.pw_gid)
    return repair, ["maildir %s: cannot open: Permission denied" % md]


def maildir_is_a_file(srv):
    md = srv.maildir(USER)
    saved = md.with_name("Maildir.saved")
    md.rename(saved)
    md.write_text("not a directory\n")

    def repair():
        md.unlink()
        saved.rename(md)
    return repair, ["maildir %s: cannot open: Not a directory" % md]


def cannot_create_maildir(srv):
    """No Maildir yet (it is made at the first login) and its parent is not
    writable by the server."""
    md = srv.maildir(USER)
    saved = md.with_name("Maildir.saved")
    md.rename(saved)
    md.parent.chmod(0o555)

    def repair():
        md.parent.chmod(0o755)
        saved.rename(md)
    return repair, ["maildir %s: cannot create: Permission denied" % md]


CASES = {
    "maildir mode 000": unreadable_maildir,
    "cur/ mode 000": unreadable_cur,
    "maildir owned by root, 0700": maildir_owned_by_root,
    "maildir is a file": maildir_is_a_file,
    "maildir cannot be created": cannot_create_maildir,
}


@pytest.mark.parametrize("case", list(CASES))
def test_maildrop_that_cannot_be_opened(make_server, case):
    if case == "maildir owned by root, 0700" and RUN_AS is None:
        pytest.skip("needs root to give the maildrop away")
    srv = make_server(start=False, settings={"auth": {"max_failures": "2"}})
    srv.add_user(USER, "secret")
    srv.deliver(USER, MSG)
    srv.start()
    repair, words = CASES[case](srv)
    try:
        c = srv.raw()
        # A wrong password learns nothing about the maildrop.
        resp = try_login(c, password="wrong")
        assert resp.startswith(AUTH_FAILED), resp
        # The right one is told the truth: permanent, see the administrator.
        for _ in range(2):
            resp = try_login(c)
            assert resp.startswith(SYS_PERM), resp
            assert_still_authorization(c)
        # Two [SYS/PERM] answers after one failed password: with
        # max_failures = 2 a miscounted maildrop failure would have closed it.
        assert not c.is_closed(timeout=0.3), "closed after a maildrop failure"
        assert wait_until(lambda: log_lines(srv, *words), 5), \
            "no log line with %r:\n%s" % (words, srv.log())
    finally:
        repair()
    # Repaired: the same connection logs in and sees the message.
    resp = try_login(c)
    assert resp.startswith(b"+OK Maildrop has 1 messages"), resp
    assert c.command("RETR 1").startswith(b"+OK")
    c.read_multiline()
    assert c.command("QUIT") == b"+OK Bye, 1 messages left"
    assert c.is_closed()
    c.close()
    assert wait_until(lambda: log_lines(srv, "session end:", "user=alice", "reason=quit"), 5)
    # One authentication failure (the wrong password), not three.
    end = log_lines(srv, "session end:", "user=alice", "reason=quit")
    assert len(end) == 1 and " authfail=1 " in end[0], end
    assert len(log_lines(srv, "login failed: user=alice", "reason=maildrop unavailable")) == 2


def test_other_users_unaffected_by_one_broken_maildrop(make_server):
    srv = make_server(start=False)
    srv.add_user(USER, "secret")
    srv.add_user("bob", "hunter2")
    srv.deliver(USER, MSG)
    srv.deliver("bob", MSG)
    srv.start()
    srv.maildir(USER).chmod(0)
    try:
        a = srv.raw()
        assert try_login(a).startswith(SYS_PERM)
        b = srv.raw()
        assert try_login(b, "bob", "hunter2").startswith(b"+OK Maildrop has 1 messages")
        assert b.command("QUIT").startswith(b"+OK")
        b.close()
        a.close()
    finally:
        srv.maildir(USER).chmod(0o700)


# ---- a [mail] location that cannot be expanded for a user ---------------------------------


def template_server(make_server, location, users):
    srv = make_server(start=False)
    srv.settings["mail"]["location"] = location.format(root=srv.mailroot)
    for name, password, home in users:
        with open(srv.passwd, "a") as f:
            f.write("%s:{PLAIN}%s::::%s:\n" % (name, password, home))
    srv.mailroot.mkdir(parents=True, exist_ok=True)
    srv.start()
    return srv


def assert_no_maildrop_path(srv, user, password):
    c = srv.raw()
    resp = try_login(c, user, "not-" + password)
    assert resp.startswith(AUTH_FAILED), resp
    resp = try_login(c, user, password)
    assert resp.startswith(SYS_PERM), resp
    assert_still_authorization(c)
    c.command("QUIT")
    c.close()
    # The log names the user and the setting to fix.
    assert wait_until(lambda: log_lines(srv, "user %s:" % user, "[mail] location"), 5), \
        srv.log()
    assert log_lines(srv, "login failed: user=%s " % user, "reason=no maildrop path")


def test_location_domain_for_user_without_domain(make_server):
    srv = template_server(make_server, "{root}/%d/%n/Maildir",
                          [("alice@example.org", "secret", ""), ("bob", "hunter2", "")])
    # With a domain the template works (and makes the maildrop) ...
    c = srv.raw()
    resp = try_login(c, "alice@example.org")
    assert resp.startswith(b"+OK Maildrop has 0 messages"), resp
    assert c.command("QUIT").startswith(b"+OK")
    c.close()
    assert (srv.mailroot / "example.org" / "alice" / "Maildir" / "cur").is_dir()
    # ... without one, %d would make "<root>//bob/Maildir": refused, not guessed.
    assert_no_maildrop_path(srv, "bob", "hunter2")
    assert not (srv.mailroot / "bob").exists()
    assert sorted(p.name for p in srv.mailroot.iterdir()) == ["example.org"]


def test_location_home_for_user_without_home(make_server):
    home = "/nonexistent-but-absolute"
    srv = template_server(make_server, "%h/Maildir",
                          [("carol", "secret", str(home)), ("dave", "hunter2", "")])
    # carol's home is absolute: the path is built, opening it fails as usual.
    c = srv.raw()
    assert try_login(c, "carol").startswith(b"-ERR [SYS/")
    c.close()
    assert wait_until(lambda: log_lines(srv, "maildir %s/Maildir" % home), 5), srv.log()
    assert not log_lines(srv, "user carol:", "[mail] location")
    # dave has no home: the template cannot be expanded.
    assert_no_maildrop_path(srv, "dave", "hunter2")


def test_location_with_user_name_that_is_a_path(make_server):
    """%n of "..@example.org" is "..": it must not climb out of the root."""
    srv = template_server(make_server, "{root}/%n/Maildir", [("..@example.org", "secret", "")])
    assert_no_maildrop_path(srv, "..@example.org", "secret")
    assert not (srv.mailroot.parent / "Maildir").exists()


# ---- a template that can never be expanded --------------------------------------------------


def test_location_with_unknown_escape_refused_at_startup(make_server):
    """A template no user can ever expand (%x is no escape) is a configuration
    error: exit 78 naming the file and line, like every other one, rather
    than a server that answers [SYS/PERM] to everybody."""
    srv = make_server(start=False)
    srv.settings["mail"]["location"] = str(srv.mailroot) + "/%x/Maildir"
    srv.write_config()
    lines = srv.config_path.read_text().splitlines()
    lineno = 1 + next(i for i, l in enumerate(lines) if l.startswith("location"))
    try:
        r = subprocess.run([str(build_dir() / "pigeond"), "-f", "-c", str(srv.config_path)],
                           capture_output=True, text=True, timeout=5)
    except subprocess.TimeoutExpired:
        pytest.fail("pigeond started with [mail] location = .../%x/Maildir")
    assert r.returncode == 78, (r.returncode, r.stderr)
    assert "%s:%d:" % (srv.config_path, lineno) in r.stderr, r.stderr
    assert "location" in r.stderr and "%x" in r.stderr, r.stderr

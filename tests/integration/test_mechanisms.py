"""Which SASL mechanisms pigeond offers: PLAIN and LOGIN unless configured."""
import subprocess

from conftest import build_dir


def sasl_line(srv):
    c = srv.raw()
    assert c.command("CAPA").startswith(b"+OK")
    lines = c.read_multiline()
    c.command("QUIT")
    return next((l.decode() for l in lines if l.startswith(b"SASL")), "")


def test_default_offers_plain_and_login_only(make_server):
    # Without [auth] mechanisms, SCRAM stays off: a user without SCRAM keys
    # could not use it, and a client that tried it would count a failure.
    srv = make_server(start=False)
    del srv.settings["auth"]["mechanisms"]
    srv.add_user("alice")
    srv.start()
    assert sasl_line(srv) == "SASL PLAIN LOGIN"
    c = srv.raw()
    assert c.command("AUTH SCRAM-SHA-256").startswith(b"-ERR")


def test_configured_mechanisms_are_offered_in_order(make_server):
    srv = make_server(settings={"auth": {"mechanisms": "SCRAM-SHA-256 PLAIN", "cram_md5": "yes"}})
    assert sasl_line(srv) == "SASL SCRAM-SHA-256 PLAIN CRAM-MD5"


def test_unknown_mechanism_refused_at_startup(make_server):
    srv = make_server(settings={"auth": {"mechanisms": "PLAIN DIGEST-MD5"}}, start=False)
    srv.write_config()
    r = subprocess.run([str(build_dir() / "pigeond"), "-f", "-c", str(srv.config_path)],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 78
    assert "DIGEST-MD5" in r.stderr and "mechanisms" in r.stderr

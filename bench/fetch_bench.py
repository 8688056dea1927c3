#!/usr/bin/python3
"""Download N mixed-size messages from one Dovecot with pigeon fetch, mpop and
fetchmail (implicit TLS, keep mode, all into a Maildir, fsync on where the
client has it) and print the wall times as ratios to pigeon fetch.

    bench/fetch_bench.py [--messages 5000] [--build DIR] [--keep-dir]

Goal (issue 6): pigeon fetch at least 2x faster than mpop and 4x faster
than fetchmail. fetchmail cannot write a Maildir itself: it hands each
message to an MDA, here `pigeon deliver` (a small C program), which is how
fetchmail delivers into a Maildir in practice. Nothing here is a test: it
reports, it does not assert. A run that exits non-zero or delivers fewer
than --messages messages is flagged INVALID and left out of the timings; a
client without a valid run gets no ratio (and the script exits 1).

It also measures the server floor: a client that only reads (RETR
pipelined, output thrown away) still needs that long, so it is Dovecot's
share of every client's time. The wall-time ratios cannot exceed
(other client's time / floor); the time above the floor is each client's
own work, also shown as ratios.
"""
import argparse
import os
import pathlib
import random
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from dovecot import DovecotServer  # noqa: E402


def make_message(i, rng):
    r = rng.random()
    if r < 0.70:
        size = rng.randint(2_000, 8_000)
    elif r < 0.96:
        size = rng.randint(20_000, 100_000)
    else:
        size = rng.randint(300_000, 1_000_000)
    head = ("From: sender%d@example.org\nTo: bob@example.org\nSubject: message %d\n"
            "Message-ID: <%d@bench.example>\n\n" % (i, i, i)).encode()
    line = b"The quick brown fox jumps over the lazy dog, again and again. %d\n" % i
    body = (line * (size // len(line) + 1))[:size]
    return head + body


def certificate(workdir):
    cert, key = workdir / "cert.pem", workdir / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "2", "-subj", "/CN=localhost", "-addext",
                    "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    os.chmod(key, 0o644)
    return cert, key


def run(name, cmd, env, timeout):
    """Wall time, peak RSS (KB, from GNU time: measured in the client
    itself, not in the forked Python that starts it) and exit status."""
    log = tempfile.TemporaryFile()
    rss_file = tempfile.NamedTemporaryFile(delete=False)
    rss_file.close()
    start = time.monotonic()
    proc = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", rss_file.name] + cmd, env=env,
                          stdout=log, stderr=log, timeout=timeout)
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        log.seek(0)
        print("%s exited with %s:\n%s" % (name, proc.returncode, log.read().decode(errors="replace")[-3000:]))
    with open(rss_file.name) as f:
        lines = [l for l in f.read().split() if l.isdigit()]
    os.unlink(rss_file.name)
    return elapsed, int(lines[-1]) if lines else 0, proc.returncode


def server_floor(port, cafile, user, password, window=50):
    """Seconds a client that only reads needs for every RETR (pipelined,
    `window` in flight, output thrown away): the part of any client's time
    that is the server's. No client can be faster than this."""
    ctx = ssl.create_default_context(cafile=str(cafile))
    sock = ctx.wrap_socket(socket.create_connection(("localhost", port), timeout=60),
                           server_hostname="localhost")
    f = sock.makefile("rb", buffering=1 << 20)
    f.readline()
    sock.sendall(b"USER %s\r\nPASS %s\r\nSTAT\r\n" % (user.encode(), password.encode()))
    f.readline()
    f.readline()
    n = int(f.readline().split()[1])
    start = time.monotonic()
    sent = done = 0
    while done < n:
        while sent < n and sent - done < window:
            sent += 1
            sock.sendall(b"RETR %d\r\n" % sent)
        assert f.readline().startswith(b"+OK")
        while f.readline() != b".\r\n":
            pass
        done += 1
    elapsed = time.monotonic() - start
    sock.sendall(b"QUIT\r\n")
    sock.close()
    return elapsed


def count(maildir):
    return sum(len(os.listdir(maildir / sub)) for sub in ("new", "cur") if (maildir / sub).exists())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--build", default=str(ROOT / "build"))
    ap.add_argument("--runs", type=int, default=3, help="runs per client; the median is shown")
    ap.add_argument("--keep-dir", action="store_true", help="leave the work directory")
    args = ap.parse_args()
    build = pathlib.Path(args.build)
    pigeon = build / "pigeon"
    for tool in (pigeon, shutil.which("mpop"), shutil.which("fetchmail"), "/usr/bin/time"):
        if tool is None or not pathlib.Path(tool).exists():
            sys.exit("missing %s (scripts/deps test installs mpop, fetchmail and time; build pigeon first)" % tool)

    work = pathlib.Path(tempfile.mkdtemp(prefix="pigeon-bench-"))
    os.chmod(work, 0o755)
    try:
        cert, key = certificate(work)
        dove = DovecotServer(work / "dovecot", cert=cert, key=key)
        dove.add_user("bob", "secret")
        rng = random.Random(1939)
        total = 0
        for i in range(args.messages):
            msg = make_message(i, rng)
            total += len(msg)
            dove.deliver("bob", msg, when=1_700_000_000 + i)
        dove.start()
        print("Dovecot %s: %d messages, %.1f MB, implicit TLS on 127.0.0.1:%d"
              % (subprocess.run(["dovecot", "--version"], capture_output=True, text=True).stdout.split()[0],
                 args.messages, total / 1e6, dove.tls_port))
        results = {}
        clients = {}

        def pigeon_client(home):
            conf = home / "fetch.conf"
            conf.write_text("[bench]\nhost = localhost\nport = %d\nca_file = %s\nuser = bob\n"
                            "password = secret\nkeep = yes\ndestination = maildir:%s/Maildir\n"
                            "uidl_store = %s/bench.uidl\n" % (dove.tls_port, cert, home, home))
            os.chmod(conf, 0o600)
            return [str(pigeon), "fetch", "-q", "-c", str(conf)], {}

        def mpop_client(home):
            for sub in ("new", "cur", "tmp"):
                (home / "Maildir" / sub).mkdir(parents=True)
            conf = home / "mpoprc"
            conf.write_text("defaults\ntls on\ntls_starttls off\ntls_trust_file %s\n"
                            "account bench\nhost localhost\nport %d\nuser bob\npassword secret\n"
                            "auth plain\nkeep on\ndelivery maildir %s/Maildir\nuidls_file %s/uidls\n"
                            % (cert, dove.tls_port, home, home))
            os.chmod(conf, 0o600)
            return ["mpop", "-q", "-C", str(conf), "bench"], {}

        def fetchmail_client(home):
            # fetchmail writes no Maildir itself: each message goes to an MDA.
            (home / "users").write_text("bob:{PLAIN}x::::%s::\n" % home)
            dconf = home / "deliver.conf"
            dconf.write_text("[auth]\npasswd_file = %s/users\n[mail]\nlocation = %s/Maildir\n"
                             % (home, home))
            rc = home / "fetchmailrc"
            rc.write_text('poll localhost protocol pop3 port %d\n  user "bob" password "secret"\n'
                          '  ssl sslcertck sslcertfile "%s" keep fetchall\n'
                          '  mda "%s deliver -c %s -u bob"\n' % (dove.tls_port, cert, pigeon, dconf))
            os.chmod(rc, 0o600)
            return (["fetchmail", "-s", "-f", str(rc), "--nodetach", "--pidfile", str(home / "pid")],
                    {"FETCHMAILHOME": str(home)})

        clients = {"pigeon fetch": pigeon_client, "mpop": mpop_client, "fetchmail": fetchmail_client}
        times = {name: [] for name in clients}
        for rnd in range(args.runs):
            # Rotate the order, and start each run with nothing dirty in the page
            # cache, so no client pays for another's (or the setup's) writeback.
            names = list(clients)
            names = names[rnd % len(names):] + names[:rnd % len(names)]
            for name in names:
                home = work / ("%s-%d" % (name.split()[0], rnd))
                home.mkdir()
                cmd, extra = clients[name](home)
                os.sync()
                env = dict(os.environ, HOME=str(home), **extra)
                secs, rss, rc = run(name, cmd, env, 3600)
                n = count(home / "Maildir")
                if rc != 0 or n < args.messages:
                    # A run that failed or stopped early is no timing at all.
                    print("INVALID run of %s (round %d): exit %s, %d of %d messages delivered"
                          % (name, rnd, rc, n, args.messages))
                else:
                    times[name].append((secs, rss, n))
                shutil.rmtree(home, ignore_errors=True)
        invalid = []
        for name, runs in times.items():
            runs.sort()
            if len(runs) < args.runs:
                print("%s: only %d of %d runs were valid" % (name, len(runs), args.runs))
            if runs:
                results[name] = runs[len(runs) // 2]  # the median valid run
            else:
                invalid.append(name)
        base = results["pigeon fetch"][0] if "pigeon fetch" in results else None
        floors = sorted(server_floor(dove.tls_port, cert, "bob", "secret") for _ in range(args.runs))
        floor = floors[len(floors) // 2]
        print()
        print("median of the valid runs (of %d each)" % args.runs)
        print("%-14s %10s %12s %10s %18s" % ("client", "seconds", "messages", "max RSS", "time / pigeon"))
        for name in clients:
            if name not in results:
                print("%-14s %10s" % (name, "INVALID: no run delivered every message"))
                continue
            secs, rss, n = results[name]
            ratio = "%17.2fx" % (secs / base) if base else "%18s" % "-"
            print("%-14s %10.2f %12d %8.1fMB %s" % (name, secs, n, rss / 1024, ratio))
        print("%-14s %10.2f   (a client that only reads: Dovecot's share of every time above)"
              % ("server floor", floor))
        print()
        if base and base > floor:
            print("time above the floor (the client's own work), as a ratio to pigeon's:")
            for name in clients:
                if name in results:
                    print("  %-12s %6.2fs %8.2fx" % (name, results[name][0] - floor,
                                                    (results[name][0] - floor) / (base - floor)))
            if "mpop" in results:
                print("no client can make mpop/pigeon exceed %.2f against this server"
                      % (results["mpop"][0] / floor))
            print()
        if base and "mpop" in results and "fetchmail" in results:
            print("goal: mpop/pigeon >= 2.0 (got %.2f), fetchmail/pigeon >= 4.0 (got %.2f)"
                  % (results["mpop"][0] / base, results["fetchmail"][0] / base))
        else:
            print("goal: not judged, %s had no valid run" % ", ".join(invalid))
        dove.stop()
        if invalid:
            sys.exit(1)
    finally:
        if args.keep_dir:
            print("work directory:", work)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

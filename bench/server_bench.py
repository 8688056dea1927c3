#!/usr/bin/python3
"""pigeond next to Dovecot's pop3 (Debian's dovecot-pop3d), same maildrops,
same load, loopback, plaintext (trusted) POP3:

  1. throughput: C client processes each run complete sessions (login, STAT,
     UIDL, RETR every message, QUIT, messages kept) for a fixed time;
  2. memory at rest: K logged-in idle sessions held open, server RSS
     (all of its processes) before and after, per session.

    bench/server_bench.py [--users 20] [--messages 200] [--clients 8]
                          [--seconds 10] [--idle 500] [--build DIR]

Prints each server's numbers and pigeond's as a ratio to Dovecot's. It
reports; it asserts nothing.
"""
import argparse
import multiprocessing
import os
import pathlib
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from conftest import PigeonServer, build_dir  # noqa: E402
from dovecot import DovecotServer  # noqa: E402


def message(i, rng):
    size = rng.choice([2_000, 5_000, 10_000, 40_000, 150_000])
    head = b"From: s%d@example.org\nSubject: %d\n\n" % (i, i)
    line = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit %d\n" % i
    return head + (line * (size // len(line) + 1))[:size]


class Client:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.f = self.s.makefile("rb", buffering=1 << 16)
        self.line()

    def line(self):
        l = self.f.readline()
        if not l:
            raise EOFError
        return l

    def cmd(self, c):
        self.s.sendall(c.encode() + b"\r\n")
        l = self.line()
        if not l.startswith(b"+OK"):
            raise RuntimeError("%s -> %r" % (c, l))
        return l

    def body(self):
        n = 0
        while True:
            l = self.line()
            if l == b".\r\n":
                return n
            n += len(l)


def session_loop(port, users, deadline, out):
    sessions = octets = 0
    rng = random.Random(os.getpid())
    while time.monotonic() < deadline:
        user = rng.choice(users)
        try:
            c = Client(port)
            c.cmd("USER %s" % user)
            c.cmd("PASS secret")
            count = int(c.cmd("STAT").split()[1])
            c.cmd("UIDL")
            c.body()
            for n in range(1, count + 1):
                c.cmd("RETR %d" % n)
                octets += c.body()
            c.cmd("QUIT")
            c.s.close()
            sessions += 1
        except (RuntimeError, EOFError, OSError):
            time.sleep(0.01)  # [IN-USE]: another client has this user; try another
    out.put((sessions, octets))


def throughput(port, users, clients, seconds):
    q = multiprocessing.Queue()
    deadline = time.monotonic() + seconds
    procs = [multiprocessing.Process(target=session_loop, args=(port, users, deadline, q))
             for _ in range(clients)]
    for p in procs:
        p.start()
    results = [q.get(timeout=seconds + 120) for _ in procs]
    for p in procs:
        p.join()
    return sum(r[0] for r in results) / seconds, sum(r[1] for r in results) / seconds


def rss_of_tree(pid):
    """Resident memory (KB) of pid and all its descendants."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open("/proc/%d/status" % p) as f:
                for l in f:
                    if l.startswith("VmRSS:"):
                        total += int(l.split()[1])
            for t in os.listdir("/proc/%d/task" % p):
                with open("/proc/%d/task/%s/children" % (p, t)) as f:
                    todo.extend(int(c) for c in f.read().split())
        except FileNotFoundError:
            pass
    return total


def idle_memory(port, users, n, pid):
    before = rss_of_tree(pid)
    held = []
    for i in range(n):
        try:
            c = Client(port)
            c.cmd("USER %s" % users[i % len(users)])
            resp = c.s.sendall(b"PASS secret\r\n") or c.line()
            held.append(c)  # logged in or [IN-USE]: an open session either way
        except OSError:
            break
    time.sleep(1)
    after = rss_of_tree(pid)
    for c in held:
        c.s.close()
    return len(held), before, after


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--messages", type=int, default=200)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--idle", type=int, default=500)
    ap.add_argument("--build", default=str(ROOT / "build"))
    args = ap.parse_args()
    os.environ["PIGEON_BUILD"] = args.build
    work = pathlib.Path(tempfile.mkdtemp(prefix="pigeon-server-bench-"))
    os.chmod(work, 0o755)
    users = ["u%d" % i for i in range(args.users)]
    rng = random.Random(7)
    msgs = [message(i, rng) for i in range(args.messages)]
    try:
        pig = PigeonServer(work / "pigeond", {"server": {"max_sessions_per_ip": "100000",
                                                         "max_sessions": "100000"},
                                              "log": {"level": "info"}})
        dove = DovecotServer(work / "dovecot", extra_conf=(
            "service pop3-login {\n  process_limit = 2000\n  client_limit = 2000\n}\n"
            "service pop3 {\n  process_limit = 5000\n}\n"
            "default_client_limit = 20000\nmail_max_userip_connections = 100000\n"))
        for u in users:
            pig.add_user(u, "secret")
            dove.add_user(u, "secret")
            for i, m in enumerate(msgs):
                pig.deliver(u, m, name="%d.M%dP1.bench" % (1_700_000_000 + i, i))
                dove.deliver(u, m, when=1_700_000_000 + i)
        pig.start()
        dove.start()
        total = len(msgs) * sum(len(m) for m in msgs) // len(msgs)
        print("%d users x %d messages (%.1f MB each), %d clients for %.0f s, %d idle sessions"
              % (args.users, args.messages, total / 1e6, args.clients, args.seconds, args.idle))
        rows = {}
        for name, srv, port, pid in (("pigeond", pig, pig.port, pig.proc.pid),
                                     ("dovecot", dove, dove.port, dove.proc.pid)):
            # warm the caches (both read the same kind of files)
            throughput(port, users, 2, 2)
            sps, bps = throughput(port, users, args.clients, args.seconds)
            held, before, after = idle_memory(port, users, args.idle, pid)
            rows[name] = (sps, bps, held, before, after)
        print()
        print("%-10s %14s %12s %16s %18s" % ("server", "sessions/s", "MB/s", "RSS at rest", "RSS per idle session"))
        for name, (sps, bps, held, before, after) in rows.items():
            print("%-10s %14.1f %12.1f %14.1fMB %16.1fKB" % (name, sps, bps / 1e6, before / 1024,
                                                             (after - before) / max(held, 1)))
        p, d = rows["pigeond"], rows["dovecot"]
        print()
        p_idle = max((p[4] - p[3]) / max(p[2], 1), 0.1)
        d_idle = max((d[4] - d[3]) / max(d[2], 1), 0.1)
        print("pigeond / dovecot: throughput %.2fx; an idle session costs pigeond %.4gx "
              "what it costs dovecot (1/%.0f)" % (p[0] / d[0], p_idle / d_idle, d_idle / p_idle))
        pig.stop(check=False)
        dove.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

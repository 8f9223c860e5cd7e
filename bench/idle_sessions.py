#!/usr/bin/env python3
"""Idle sessions: posternd's memory with N concurrent SMTP sessions open.

Starts posternd (workers = 2, max_sessions = 10000, no per-IP or rate limits)
on a 127.0.0.1 free port with its state in a temp dir, opens N sessions that
each read the greeting, send EHLO, read its reply and then sit idle, and
prints posternd's memory: VmRSS (from /proc/PID/status) and PSS (from
/proc/PID/smaps_rollup, which shares out the pages the master, the workers
and the queue manager have in common) summed over every posternd process,
before and with the sessions open, and the cost per session. Then it checks
the sessions are alive (NOOP on each must get 250), closes them and stops
posternd. Bounded: N connections, each step with a deadline.

Usage: bench/idle-sessions.sh [--posternd PATH] [--sessions 5000] [--source-ips N]
       [--nofile SOFT[:HARD]  (posternd's RLIMIT_NOFILE at start)]
"""
import argparse
import asyncio
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(HERE)
STEP_TIMEOUT = 180.0  # seconds for each phase (connect all, NOOP all)
CONNECT_TIMEOUT = 10.0  # seconds for one session's connect, greeting and EHLO


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children(pid):
    """Direct children of pid, from /proc."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                stat = f.read()
        except OSError:
            continue
        # the comm field may hold spaces: the ppid is the 2nd field after ')'
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == pid:
            out.append(int(d))
    return out


def proc_name(pid):
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read().strip()
    except OSError:
        return "?"


def kb_field(path, name):
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(name + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def memory(master):
    """[(pid, name, rss_kb, pss_kb, fds)] for the master and its children."""
    rows = []
    for pid in [master] + sorted(children(master)):
        try:
            fds = len(os.listdir("/proc/%d/fd" % pid))
        except OSError:
            fds = -1
        rows.append((pid, proc_name(pid), kb_field("/proc/%d/status" % pid, "VmRSS"),
                     kb_field("/proc/%d/smaps_rollup" % pid, "Pss"), fds))
    return rows


def show(title, rows):
    print(title)
    print("  %-7s %-14s %10s %10s %7s" % ("pid", "process", "VmRSS kB", "PSS kB", "fds"))
    for pid, name, rss, pss, fds in rows:
        print("  %-7d %-14s %10d %10d %7d" % (pid, name, rss, pss, fds))
    rss = sum(r[2] for r in rows)
    pss = sum(r[3] for r in rows)
    print("  %-22s %10d %10d   (%.1f MB RSS, %.1f MB PSS)" % ("total", rss, pss, rss / 1024,
                                                             pss / 1024))
    return rss, pss


class Client:
    def __init__(self):
        self.reader = self.writer = None

    async def open(self, port, sem, source):
        async with sem:
            await asyncio.wait_for(self._open(port, source), CONNECT_TIMEOUT)

    async def _open(self, port, source):
        self.reader, self.writer = await asyncio.open_connection(
            "127.0.0.1", port, local_addr=(source, 0) if source else None)
        greeting = await read_reply(self.reader)
        if not greeting.startswith(b"220"):
            raise RuntimeError("greeting: %r" % greeting[:100])
        self.writer.write(b"EHLO idle.bench.test\r\n")
        reply = await read_reply(self.reader)
        if not reply.startswith(b"250"):
            raise RuntimeError("EHLO: %r" % reply[:100])

    async def noop(self, sem):
        async with sem:
            self.writer.write(b"NOOP\r\n")
            reply = await read_reply(self.reader)
            return reply.startswith(b"250")

    def close(self):
        if self.writer is not None:
            self.writer.close()


async def read_reply(reader):
    """One SMTP reply (all its lines)."""
    out = b""
    while True:
        line = await reader.readline()
        if not line:
            raise EOFError("connection closed after %r" % out[-100:])
        out += line
        if len(line) < 4 or line[3:4] != b"-":
            return out


def source_address(i, spread):
    """The i-th session's source: 127.0.0.1, or one of `spread` loopback
    addresses 127.1.0.1 and up (posternd counts sessions per client address)."""
    if spread <= 1:
        return None
    k = i % spread + 1
    return "127.%d.%d.%d" % (1 + (k >> 16), (k >> 8) & 255, k & 255)


async def open_all(port, n, parallel, spread):
    sem = asyncio.Semaphore(parallel)
    clients = [Client() for _ in range(n)]
    results = await asyncio.wait_for(
        asyncio.gather(*(c.open(port, sem, source_address(i, spread))
                         for i, c in enumerate(clients)), return_exceptions=True),
        STEP_TIMEOUT)
    ok = [c for c, r in zip(clients, results) if r is None]
    errors = {}
    for r in results:
        if r is not None:
            key = "%s: %s" % (type(r).__name__, str(r)[:120])
            errors[key] = errors.get(key, 0) + 1
    for c, r in zip(clients, results):
        if r is not None:
            c.close()
    return ok, errors


async def noop_all(clients, parallel):
    sem = asyncio.Semaphore(parallel)
    results = await asyncio.wait_for(
        asyncio.gather(*(c.noop(sem) for c in clients), return_exceptions=True), STEP_TIMEOUT)
    return sum(1 for r in results if r is True)


def build_posternd():
    out = os.path.join(os.environ.get("BENCH_TMPDIR", "/var/tmp"), "postern-bench-build")
    os.makedirs(out, exist_ok=True)
    log("building an optimized posternd in %s" % out)
    if not os.path.exists(os.path.join(out, "Makefile")):
        subprocess.run([os.path.join(SRC, "configure"), "-q", "CFLAGS=-O2 -g"], cwd=out,
                       check=True)
    subprocess.run(["make", "-j2", "posternd"], cwd=out, check=True, stdout=subprocess.DEVNULL)
    return os.path.join(out, "posternd")


async def run(opts, binary):
    workdir = tempfile.mkdtemp(prefix="postern-idle-",
                               dir=os.environ.get("BENCH_TMPDIR", "/var/tmp"))
    os.chmod(workdir, 0o755)
    port = free_port()
    conf = os.path.join(workdir, "postern.conf")
    user = 'user = "nobody"; group = "nogroup";' if os.geteuid() == 0 else \
        'user = "%s";' % os.environ.get("USER", "root")
    with open(conf, "w") as f:
        f.write('server = { hostname = "mx.bench.test"; %s workers = %d; spool_dir = "%s/spool"; '
                'spool_min_free = "1M"; };\n' % (user, opts.workers, workdir))
        f.write("smtp = { max_sessions = 10000; max_sessions_per_ip = 0; "
                "connection_rate_limit = 0; };\n")
        f.write('relay = { local_domains = ["example.test"]; };\n')
        f.write('dns = { nameservers = ["127.0.0.1:9"]; timeout = "200ms"; attempts = 1; };\n')
        f.write('listeners = ( { name = "mx"; role = "mx"; address = ["127.0.0.1:%d"]; } );\n'
                % port)

    def limit():
        if opts.nofile:
            soft, _, hard = opts.nofile.partition(":")
            hard = int(hard) if hard else resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            resource.setrlimit(resource.RLIMIT_NOFILE, (int(soft), hard))

    logf = open(os.path.join(workdir, "posternd.log"), "ab")
    proc = subprocess.Popen([binary, "-c", conf], stdout=logf, stderr=subprocess.STDOUT,
                            preexec_fn=limit)
    clients = []
    rc = 0
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("posternd did not start")
                time.sleep(0.05)
        time.sleep(1.0)  # the probe session ends; everything settles
        for pid in [proc.pid] + children(proc.pid):
            print("posternd pid %d (%s): %s" % (
                pid, proc_name(pid),
                " / ".join(l.strip() for l in open("/proc/%d/limits" % pid)
                           if l.startswith("Max open files"))))
        with open(os.path.join(workdir, "posternd.log"), errors="replace") as f:
            for line in f:
                if "open file limit" in line:
                    print("posternd: " + line.rstrip().split(": ", 1)[-1])
        rss0, pss0 = show("posternd at rest:", memory(proc.pid))

        start = time.monotonic()
        clients, errors = await open_all(port, opts.sessions, opts.parallel, opts.source_ips)
        elapsed = time.monotonic() - start
        print("opened %d of %d sessions (greeting + EHLO each) from %d client address%s in %.1f s"
              % (len(clients), opts.sessions, max(opts.source_ips, 1),
                 "es" if opts.source_ips > 1 else "", elapsed))
        for err, n in sorted(errors.items(), key=lambda kv: -kv[1]):
            print("  %d failed: %s" % (n, err))
        time.sleep(2.0)  # let every worker go idle
        rows = memory(proc.pid)
        rss1, pss1 = show("posternd with %d idle sessions:" % len(clients), rows)
        n = max(len(clients), 1)
        print("per session: %.1f kB RSS, %.1f kB PSS (growth over rest / sessions)"
              % ((rss1 - rss0) / n, (pss1 - pss0) / n))
        target_kb = 100 * 1024
        print("target: total under 100 MB with %d sessions: RSS %s, PSS %s"
              % (opts.sessions,
                 "met" if rss1 < target_kb and len(clients) == opts.sessions else "NOT met",
                 "met" if pss1 < target_kb and len(clients) == opts.sessions else "NOT met"))
        alive = await noop_all(clients, opts.parallel)
        print("alive after measuring: %d of %d sessions answered NOOP with 250"
              % (alive, len(clients)))
        if len(clients) < opts.sessions or alive < len(clients):
            rc = 1
        with open(os.path.join(workdir, "posternd.log"), errors="replace") as f:
            tail = [l for l in f if ": error: " in l or ": warning: " in l or "[warn]" in l]
        if tail:
            print("posternd warnings/errors (%d), last ones:" % len(tail))
            for line in tail[-5:]:
                print("  " + line.rstrip())
    finally:
        for c in clients:
            c.close()
        await asyncio.sleep(0.5)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        logf.close()
        if opts.keep:
            log("kept %s" % workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return rc


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--posternd", default=os.environ.get("POSTERND"))
    ap.add_argument("--sessions", type=int, default=5000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--parallel", type=int, default=200, help="connections opening at once")
    ap.add_argument("--nofile", default="",
                    help="start posternd with this RLIMIT_NOFILE: SOFT or SOFT:HARD "
                         "(e.g. 1024 like a systemd service, or 1024:1024)")
    ap.add_argument("--source-ips", type=int, default=1,
                    help="spread the sessions over this many loopback client addresses "
                         "(127.1.0.1 and up), as an MX sees many clients")
    ap.add_argument("--keep", action="store_true")
    opts = ap.parse_args()
    need = opts.sessions + 100
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        if hard < need and hard != resource.RLIM_INFINITY:
            sys.exit("RLIMIT_NOFILE hard limit %d < %d: raise it (ulimit -Hn) first" % (hard, need))
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    binary = opts.posternd or build_posternd()
    print("# idle-sessions: %s, %d sessions, posternd workers=%d, client RLIMIT_NOFILE %d"
          % (time.strftime("%Y-%m-%d %H:%M:%S %Z"), opts.sessions, opts.workers,
             resource.getrlimit(resource.RLIMIT_NOFILE)[0]))
    sys.exit(asyncio.run(run(opts, binary)))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Relay throughput benchmark: posternd against the one-hop limit and Postfix.

Three paths, side by side on this machine, counted end to end at the sink:
  onehop   smtp-source -> smtp-sink
  posternd smtp-source -> posternd (spool fsync'd before 250) -> smtp-sink
  postfix  smtp-source -> a private Postfix (queue fsync'd before 250) -> smtp-sink
for every message size and every number of parallel smtp-source sessions, each
run REPS times; the medians are printed with the ratios posternd/postfix and
posternd/onehop. All servers listen on 127.0.0.1 free ports, keep their state in
one temp dir on the normal disk (not tmpfs: fsync is real), and are stopped by
pid at the end. Every run is bounded in messages and in time.

Usage: bench/relay-bench.sh [--posternd PATH] [--reps N] [--sizes 2048,51200]
       [--sessions 1,10,50] [--count 2048=2000,51200=500] [--reuse] [--keep]
"""
import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from bench_util import (WORKDIR_PARENT, Nsd, build, free_port, fs_type, log, machine_noise,
                        stop_proc, wait_tcp)

RUN_TIMEOUT = 300.0  # seconds: the longest one run may take before it is abandoned


class Sink:
    """smtp-sink with -c: its running counter line ("sess=N quit=N mesg=N")
    is read on a thread; wait_for(n) returns when mesg reaches n."""

    def __init__(self, workdir, name):
        self.port = free_port()
        self.count = 0
        self.cond = threading.Condition()
        self.errlog = open(os.path.join(workdir, "sink-%s.err" % name), "wb")
        self.proc = subprocess.Popen(
            ["smtp-sink", "-c", "-u", "nobody", "127.0.0.1:%d" % self.port, "1000"],
            stdout=subprocess.PIPE, stderr=self.errlog)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        wait_tcp(self.port, self.proc)

    def _read(self):
        fd = self.proc.stdout.fileno()
        tail = b""
        pat = re.compile(rb"mesg=(\d+)")
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            data = tail + chunk
            found = pat.findall(data)
            tail = data[-64:]
            if found:
                with self.cond:
                    self.count = max(self.count, int(found[-1]))
                    self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def wait_for(self, n, deadline):
        """Monotonic time when the counter reached n, or None at the deadline."""
        with self.cond:
            while self.count < n:
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    return None
                self.cond.wait(min(left, 0.5))
            return time.monotonic()

    def stop(self):
        stop_proc(self.proc)
        self.errlog.close()


class Posternd:
    """posternd relaying example.test to the sink; its resolver is dns_port's
    nsd, which names 127.0.0.1 (a caching resolver's answers, as Postfix gets
    its from /etc/hosts)."""

    def __init__(self, binary, workdir, sink_port, workers, dns_port):
        self.dir = os.path.join(workdir, "posternd")
        os.makedirs(self.dir)
        os.chmod(self.dir, 0o755)
        self.port = free_port()
        self.conf = os.path.join(self.dir, "postern.conf")
        user = 'user = "nobody"; group = "nogroup";' if os.geteuid() == 0 else \
            'user = "%s";' % os.environ.get("USER", "root")
        with open(self.conf, "w") as f:
            f.write('server = { hostname = "mx.bench.test"; %s workers = %d; '
                    'spool_dir = "%s/spool"; spool_min_free = "1M"; };\n'
                    % (user, workers, self.dir))
            f.write("smtp = { max_sessions = 10000; max_sessions_per_ip = 0; "
                    "connection_rate_limit = 0; };\n")
            f.write('relay = { local_domains = ["example.test"]; };\n')
            f.write('dns = { nameservers = ["127.0.0.1:%d"]; timeout = "200ms"; attempts = 1; };\n'
                    % dns_port)
            f.write('transports = ( { domain = "example.test"; '
                    'nexthop = "smtp:[127.0.0.1]:%d"; } );\n' % sink_port)
            f.write('listeners = ( { name = "mx"; role = "mx"; address = ["127.0.0.1:%d"]; } );\n'
                    % self.port)
        self.logf = open(os.path.join(self.dir, "posternd.log"), "ab")
        self.proc = subprocess.Popen([binary, "-c", self.conf], stdout=self.logf,
                                     stderr=subprocess.STDOUT)
        wait_tcp(self.port, self.proc)

    def queue_len(self):
        try:
            return len(os.listdir(os.path.join(self.dir, "spool", "queue")))
        except OSError:
            return -1

    def stop(self):
        stop_proc(self.proc)
        self.logf.close()


class Postfix:
    """A private Postfix instance (SERVICES.md recipe): its own main.cf,
    queue and log under workdir, relayhost = the sink."""

    def __init__(self, workdir, sink_port):
        self.dir = os.path.join(workdir, "postfix")
        self.etc = os.path.join(self.dir, "etc")
        self.port = free_port()
        for d in ("etc", "queue", "data"):
            os.makedirs(os.path.join(self.dir, d))
        os.chmod(self.dir, 0o755)
        shutil.copy("/etc/postfix/master.cf", self.etc)
        shutil.copy("/etc/postfix/dynamicmaps.cf", self.etc)
        if os.path.isdir("/etc/postfix/dynamicmaps.cf.d"):
            shutil.copytree("/etc/postfix/dynamicmaps.cf.d",
                            os.path.join(self.etc, "dynamicmaps.cf.d"))
        self.maillog = os.path.join(self.dir, "maillog")
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            f.write("""compatibility_level = 3.6
myhostname = postfix.bench.test
queue_directory = {d}/queue
data_directory = {d}/data
maillog_file = {log}
maillog_file_prefixes = {d}
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mydestination =
relayhost = [127.0.0.1]:{sink}
smtp_dns_support_level = disabled
smtpd_peername_lookup = no
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
alias_maps =
alias_database =
local_recipient_maps =
smtputf8_enable = no
smtpd_tls_security_level = none
smtp_tls_security_level = none
""".format(d=self.dir, log=self.maillog, sink=sink_port))
        self._postconf("-F", "*/*/chroot = n")
        self._postconf("-MX", "smtp/inet")
        self._postconf("-M", "127.0.0.1:%d/inet = 127.0.0.1:%d inet n - n - - smtpd"
                       % (self.port, self.port))
        shutil.chown(os.path.join(self.dir, "data"), "postfix")
        subprocess.run(["postfix", "-c", self.etc, "check"], check=True)
        subprocess.run(["postfix", "-c", self.etc, "start"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_tcp(self.port)
        except RuntimeError:
            log(self.log_tail())
            raise

    def _postconf(self, *args):
        subprocess.run(["postconf", "-c", self.etc] + list(args), check=True)

    def log_tail(self):
        try:
            with open(self.maillog, errors="replace") as f:
                return "".join(f.readlines()[-20:])
        except OSError:
            return "(no maillog)"

    def master_pid(self):
        try:
            with open(os.path.join(self.dir, "queue", "pid", "master.pid")) as f:
                return int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self):
        subprocess.run(["postfix", "-c", self.etc, "stop"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        pid = self.master_pid()
        deadline = time.monotonic() + 15
        while pid is not None and time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except OSError:
                return
            time.sleep(0.1)
        if pid is not None:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def smtp_source(port, size, sessions, count, reuse, deadline):
    """Runs smtp-source; returns its finish time (monotonic) or raises."""
    args = ["smtp-source", "-s", str(sessions), "-m", str(count), "-l", str(size),
            "-f", "a@bench.test", "-t", "b@example.test", "-M", "client.bench.test"]
    if reuse:
        args.append("-d")
    args.append("127.0.0.1:%d" % port)
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise RuntimeError("smtp-source did not finish in time")
    if proc.returncode != 0:
        raise RuntimeError("smtp-source failed: %s" % err.decode(errors="replace")[-500:])
    return time.monotonic()


def one_run(name, port, sink, size, sessions, count, reuse, drain):
    base = sink.count
    start = time.monotonic()
    deadline = start + RUN_TIMEOUT
    src_done = smtp_source(port, size, sessions, count, reuse, deadline)
    done = sink.wait_for(base + count, deadline)
    if done is None:
        raise RuntimeError("%s: sink saw %d of %d messages in %.0f s"
                           % (name, sink.count - base, count, RUN_TIMEOUT))
    drain()
    return count / (done - start), count / (src_done - start)


def parse_counts(text):
    out = {}
    for item in text.split(","):
        k, v = item.split("=")
        out[int(k)] = int(v)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--posternd", default=os.environ.get("POSTERND"),
                    help="posternd binary (default: build an -O2 copy)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--sizes", default="2048,51200")
    ap.add_argument("--sessions", default="1,10,50")
    ap.add_argument("--count", default="2048=2000,51200=500",
                    help="messages per run for each size")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--systems", default="onehop,posternd,postfix")
    ap.add_argument("--reuse", action="store_true",
                    help="smtp-source -d: many messages per connection")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    opts = ap.parse_args()
    sizes = [int(x) for x in opts.sizes.split(",")]
    sessions = [int(x) for x in opts.sessions.split(",")]
    counts = parse_counts(opts.count)
    systems = opts.systems.split(",")
    for tool in ("smtp-source", "smtp-sink", "postfix", "postconf"):
        if shutil.which(tool) is None:
            sys.exit("missing %s (apt-get install postfix)" % tool)
    binary = opts.posternd or build(["posternd"])[0]

    workdir = tempfile.mkdtemp(prefix="postern-bench-", dir=WORKDIR_PARENT)
    os.chmod(workdir, 0o755)
    log("work dir %s (file system: %s)" % (workdir, fs_type(workdir)))
    if fs_type(workdir) == "tmpfs":
        log("WARNING: the work dir is on tmpfs: fsync costs nothing there")
    servers = []
    results = {}  # (system, size, sessions) -> list of (e2e, ingest)
    try:
        sinks = {s: Sink(workdir, s) for s in systems}
        servers.extend(sinks.values())
        entry = {}
        pd = pf = None
        if "onehop" in systems:
            entry["onehop"] = sinks["onehop"].port
        if "posternd" in systems:
            dns = Nsd(workdir, {"127.in-addr.arpa": "1.0.0 IN PTR localhost.bench.test.",
                                "bench.test": "localhost IN A 127.0.0.1"})
            servers.append(dns)
            pd = Posternd(binary, workdir, sinks["posternd"].port, opts.workers, dns.port)
            servers.append(pd)
            entry["posternd"] = pd.port
        if "postfix" in systems:
            pf = Postfix(workdir, sinks["postfix"].port)
            servers.append(pf)
            entry["postfix"] = pf.port

        def drain_for(name):
            def drain():
                # the queue files go after the sink's reply: let them settle
                deadline = time.monotonic() + 30
                if name == "posternd":
                    while pd.queue_len() > 0 and time.monotonic() < deadline:
                        time.sleep(0.05)
                time.sleep(0.5)
            return drain

        # warm-up: one small run each (process start-up, page cache)
        for name in systems:
            one_run(name, entry[name], sinks[name], 2048, 10, 200, opts.reuse, drain_for(name))
        # interleaved: a burst of noise on the shared machine hits every system alike
        for rep in range(opts.reps):
            for size in sizes:
                for sess in sessions:
                    for name in systems:
                        n = counts.get(size, 500)
                        load, psi = machine_noise()
                        e2e, ingest = one_run(name, entry[name], sinks[name], size, sess, n,
                                              opts.reuse, drain_for(name))
                        results.setdefault((name, size, sess), []).append((e2e, ingest, load,
                                                                           psi))
                        log("rep %d size %6d sessions %2d %-8s %8.1f msg/s end to end "
                            "(ingest %8.1f msg/s) load %.1f cpu-psi %.0f%%"
                            % (rep + 1, size, sess, name, e2e, ingest, load, psi))
    finally:
        for srv in reversed(servers):
            srv.stop()
        if opts.keep:
            log("kept %s" % workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    # report
    print("# relay-bench: %s, %d reps (median), messages per run %s, %s, posternd workers=%d"
          % (time.strftime("%Y-%m-%d %H:%M:%S %Z"), opts.reps,
             ",".join("%d B=%d" % kv for kv in sorted(counts.items())),
             "smtp-source -d (connection reuse)" if opts.reuse else "one connection per message",
             opts.workers))
    hdr = "%-7s %-8s" % ("size", "sessions")
    for name in systems:
        hdr += " %12s" % (name + " e2e")
    if "posternd" in systems:
        hdr += " %14s" % "posternd ingest"
    if "posternd" in systems and "postfix" in systems:
        hdr += " %12s" % "pd/postfix"
    if "posternd" in systems and "onehop" in systems:
        hdr += " %12s" % "pd/onehop"
    print(hdr)
    for size in sizes:
        for sess in sessions:
            med = {name: statistics.median(r[0] for r in results[(name, size, sess)])
                   for name in systems}
            line = "%-7s %-8d" % ("%dK" % (size // 1024), sess)
            for name in systems:
                line += " %12.1f" % med[name]
            if "posternd" in systems:
                line += " %14.1f" % statistics.median(
                    r[1] for r in results[("posternd", size, sess)])
            if "posternd" in systems and "postfix" in systems:
                line += " %11.2fx" % (med["posternd"] / med["postfix"])
            if "posternd" in systems and "onehop" in systems:
                line += " %11.2fx" % (med["posternd"] / med["onehop"])
            print(line)
    print("(msg/s, end to end = counted at smtp-sink from the first message sent; "
          "ingest = smtp-source finished)")
    if "posternd" in systems and len(systems) > 1:
        # the systems run back to back within each rep: a rep's ratio compares
        # runs under about the same machine noise
        print("paired ratios (median over reps of the same rep's runs):")
        for size in sizes:
            for sess in sessions:
                line = "  %-7s %-8d" % ("%dK" % (size // 1024), sess)
                for other in ("postfix", "onehop"):
                    if other not in systems:
                        continue
                    pairs = [a[0] / b[0] for a, b in zip(results[("posternd", size, sess)],
                                                         results[(other, size, sess)])]
                    line += "  pd/%s %.2fx (%s)" % (other, statistics.median(pairs),
                                                   ", ".join("%.2f" % r for r in pairs))
                print(line)
    print("raw runs: e2e msg/s [ingest msg/s] (1-min load average at the start, CPU PSI some avg10 %)")
    for key in sorted(results):
        print("  %-8s %6d B %2d sessions: %s" % (
            key[0], key[1], key[2],
            ", ".join("%.1f [%.1f] (%.1f, %.0f%%)" % r for r in results[key])))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Messages per second of one SMTP session through a milter: TCP against a
unix socket, posternd against Postfix.

Postfix + OpenDKIM over loopback TCP was measured at 11 msg/s per session
against 217 over a unix socket (SERVICES.md): Nagle's algorithm holding a
small write back until the milter ACKs the previous one, which the milter
delays. posternd sets TCP_NODELAY and writes a command with its macros in
one write; this benchmark shows what that is worth.

Everything on 127.0.0.1 free ports, state in a temp dir under /var/tmp:
  opendkim   two opendkim -f processes with one key made by opendkim-genkey
             (Mode sv, the client 127.0.0.1 internal: every message is
             signed), one on a TCP port, one on a unix socket
  posternd   workers = 1, spool fsync'd before the 250, relay to smtp-sink;
             configs: none (no filter), milter-unix, milter-tcp
  postfix    a private Postfix (bench/relay_bench.py's recipe) with
             smtpd_milters = the same opendkim, unix or tcp
             (milter_default_action = tempfail)
The client is smtp-source with -d (one connection for all messages), one
session, M messages of 2 KB from alice@example.org; rate = M / wall time of
smtp-source. Repetitions are interleaved (every config back to back in each
one); medians are printed, with each run. Before the runs, every milter
config is checked to sign (posternd's log: one "modification applied" per
message; Postfix's maillog has no such line, so its configs are not).

Usage: bench/milter-latency.sh [--posternd PATH] [--messages 500] [--reps 3]
       [--configs none,milter-unix,milter-tcp,postfix-unix,postfix-tcp] [--keep]
"""
import argparse
import os
import shutil
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from bench_util import (build, free_port, log, machine_noise, make_workdir,  # noqa: E402
                        median, stop_proc, user_opts, wait_tcp)
from relay_bench import Postfix  # noqa: E402

CONFIGS = ["none", "milter-unix", "milter-tcp", "postfix-unix", "postfix-tcp"]
RUN_TIMEOUT = 900


class OpenDKIM:
    def __init__(self, workdir, name, keydir, unix):
        self.dir = os.path.join(workdir, name)
        os.makedirs(self.dir)
        os.chmod(self.dir, 0o755)
        if unix:
            self.sock = os.path.join(self.dir, "opendkim.sock")
            spec, self.address = "local:" + self.sock, "unix:" + self.sock
        else:
            self.port = free_port()
            spec, self.address = ("inet:%d@127.0.0.1" % self.port,
                                  "inet:127.0.0.1:%d" % self.port)
        conf = os.path.join(self.dir, "opendkim.conf")
        with open(conf, "w") as f:
            f.write("Syslog no\nBackground no\nMode sv\nSocket %s\nPidFile %s/pid\n"
                    "KeyTable %s/KeyTable\nSigningTable refile:%s/SigningTable\n"
                    "InternalHosts 127.0.0.1\nRequireSafeKeys no\nUMask 000\n"
                    "Canonicalization relaxed/simple\n" % (spec, self.dir, keydir, keydir))
        self.proc = subprocess.Popen(["opendkim", "-f", "-x", conf],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if unix and os.path.exists(self.sock):
                return
            if not unix:
                try:
                    wait_tcp(self.port, self.proc, timeout=0.5)
                    return
                except RuntimeError:
                    pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError("opendkim (%s) did not start" % name)

    def stop(self):
        stop_proc(self.proc)


def make_key(workdir):
    d = os.path.join(workdir, "keys")
    os.makedirs(d)
    os.chmod(d, 0o755)
    subprocess.run(["opendkim-genkey", "-D", d, "-d", "example.org", "-s", "sel"], check=True)
    with open(os.path.join(d, "KeyTable"), "w") as f:
        f.write("sel._domainkey.example.org example.org:sel:%s/sel.private\n" % d)
    with open(os.path.join(d, "SigningTable"), "w") as f:
        f.write("*@example.org sel._domainkey.example.org\n")
    return d


class Posternd:
    def __init__(self, binary, workdir, name, sink_port, milter_address):
        self.name = name
        self.dir = os.path.join(workdir, name)
        os.makedirs(self.dir)
        os.chmod(self.dir, 0o755)
        self.port = free_port()
        conf = os.path.join(self.dir, "postern.conf")
        user, group = user_opts()
        usr = 'user = "%s";%s' % (user, ' group = "%s";' % group if group else "")
        with open(conf, "w") as f:
            f.write('server = { hostname = "mx.bench.test"; %s workers = 1; '
                    'spool_dir = "%s/spool"; spool_min_free = "1M"; };\n' % (usr, self.dir))
            f.write("smtp = { max_sessions = 1000; max_sessions_per_ip = 0; "
                    "connection_rate_limit = 0; };\n")
            f.write('relay = { local_domains = ["example.test"]; };\n')
            f.write('transports = ( { domain = "example.test"; '
                    'nexthop = "smtp:[127.0.0.1]:%d"; } );\n' % sink_port)
            f.write('listeners = ( { name = "mx"; role = "mx"; address = ["127.0.0.1:%d"]; } );\n'
                    % self.port)
            f.write('dns = { nameservers = ["127.0.0.1:9"]; timeout = "200ms"; attempts = 1; };\n')
            if milter_address:
                f.write('filters = ( { name = "milter"; id = "opendkim"; address = "%s"; } );\n'
                        % milter_address)
        self.logfile = os.path.join(self.dir, "posternd.log")
        self.logf = open(self.logfile, "ab")
        self.proc = subprocess.Popen([binary, "-c", conf], stdout=self.logf,
                                     stderr=subprocess.STDOUT)
        wait_tcp(self.port, self.proc)

    def count(self, text):
        with open(self.logfile, errors="replace") as f:
            return f.read().count(text)

    def stop(self):
        stop_proc(self.proc)
        self.logf.close()


class PostfixMilter(Postfix):
    def __init__(self, workdir, name, sink_port, milter_address):
        Postfix.__init__(self, os.path.join(workdir, name), sink_port)
        self._postconf("-e", "smtpd_milters = %s" % milter_address,
                       "milter_default_action = tempfail")
        subprocess.run(["postfix", "-c", self.etc, "reload"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1)


def smtp_source(port, messages):
    """One session, messages over one connection; returns msg/s."""
    args = ["smtp-source", "-d", "-s", "1", "-m", str(messages), "-l", "2048",
            "-f", "alice@example.org", "-t", "bob@example.test", "-M", "client.bench.test",
            "127.0.0.1:%d" % port]
    start = time.monotonic()
    proc = subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          timeout=RUN_TIMEOUT)
    secs = time.monotonic() - start
    if proc.returncode != 0:
        raise RuntimeError("smtp-source failed: %s" % proc.stderr.decode(errors="replace")[-300:])
    return messages / secs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--posternd", default=os.environ.get("POSTERND"))
    ap.add_argument("--messages", type=int, default=500)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--keep", action="store_true")
    opts = ap.parse_args()
    configs = opts.configs.split(",")
    for tool in ("smtp-source", "smtp-sink", "opendkim", "opendkim-genkey", "postfix"):
        if shutil.which(tool) is None and not os.path.exists("/usr/sbin/" + tool):
            sys.exit("missing %s (apt-get install postfix opendkim opendkim-tools)" % tool)
    binary = opts.posternd or build(["posternd"])[0]
    workdir = make_workdir("postern-milter-bench-")
    procs = []
    try:
        keydir = make_key(workdir)
        dkim = {"unix": OpenDKIM(workdir, "opendkim-unix", keydir, True),
                "tcp": OpenDKIM(workdir, "opendkim-tcp", keydir, False)}
        procs += dkim.values()
        sink_port = free_port()
        sink = subprocess.Popen(["smtp-sink", "-u", "nobody", "127.0.0.1:%d" % sink_port, "1000"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_tcp(sink_port, sink)
        servers = {}
        for c in configs:
            kind = c.split("-")[-1]
            if c == "none":
                servers[c] = Posternd(binary, workdir, c, sink_port, None)
            elif c.startswith("milter-"):
                servers[c] = Posternd(binary, workdir, c, sink_port, dkim[kind].address)
            else:
                servers[c] = PostfixMilter(workdir, c, sink_port, dkim[kind].address)
            procs.append(servers[c])
        # warm-up, and the check that posternd's milter configs really sign
        for c, s in servers.items():
            smtp_source(s.port, 20)
            if c.startswith("milter-") and s.count("modification applied") < 20:
                raise RuntimeError("%s: messages were not signed (see %s)" % (c, s.logfile))
        results = {c: [] for c in configs}
        for rep in range(opts.reps):
            for c in configs:
                load, psi = machine_noise()
                rate = smtp_source(servers[c].port, opts.messages)
                results[c].append((rate, load, psi))
                log("rep %d %-13s %8.1f msg/s (load %.1f, cpu psi %.0f%%)"
                    % (rep + 1, c, rate, load, psi))
        print("# milter-latency: %s, one session, %d messages of 2 KB over one connection "
              "(smtp-source -d), %d reps (median), OpenDKIM signing every message"
              % (time.strftime("%Y-%m-%d %H:%M:%S %Z"), opts.messages, opts.reps))
        print("%-13s %10s %12s   %s" % ("config", "msg/s", "ms/msg", "runs (msg/s)"))
        for c in configs:
            rate = median([r[0] for r in results[c]])
            print("%-13s %10.1f %12.2f   %s" % (c, rate, 1000.0 / rate,
                                                ", ".join("%.1f" % r[0] for r in results[c])))
        for sys_ in ("milter", "postfix"):
            if "%s-tcp" % sys_ in results and "%s-unix" % sys_ in results:
                t = median([r[0] for r in results["%s-tcp" % sys_]])
                u = median([r[0] for r in results["%s-unix" % sys_]])
                print("%s: tcp/unix = %.2f" % ("posternd" if sys_ == "milter" else sys_, t / u))
    finally:
        for p in procs:
            p.stop()
        if "sink" in locals():
            stop_proc(sink)
        if opts.keep:
            log("kept %s" % workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

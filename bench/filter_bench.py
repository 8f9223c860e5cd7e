#!/usr/bin/env python3
"""Greylist and rate-limit decisions per second: posternd's filters on each
state back end, side by side with postgrey on the same triplets.

Systems (each a fresh state per run):
  gl-lmdb   the greylist filter through the real chain (bench/filter-bench),
            state in LMDB in the work dir (fsync per commit, posternd's default)
  gl-redis  the same on a redis-server we start (no persistence)
  postgrey  Debian's postgrey on a free loopback port, its Berkeley DB in the
            work dir, queried over the Postfix policy protocol by the same
            driver: `inflight` connections, each sequential, as Postfix's smtpd
  rl-lmdb   the ratelimit filter, one bucket per decision (key client_ip,
  rl-redis  count recipients, limit 1000000 per hour: never over)
Greylisting on both sides: delay 1 s, no auto-allow of client networks,
/24 grouping, empty allow lists. Passes over the same N triplets:
  new    first sight: every decision is a tempfail (GREYLIST_NEW /
         DEFER_IF_PERMIT)
  retry  after waiting past the delay: every decision passes and the
         triplet is recorded (GREYLIST_PASS / PREPEND X-Greylist)
  known  again: every decision is a known triplet (GREYLIST_KNOWN / DUNNO)
The ratelimit filter runs "new" (buckets created) and "known" (buckets
exist). Each (inflight, system) run is repeated REPS times, interleaved so
that a burst of machine noise hits every system alike; medians are printed
with the ratios to postgrey and the paired ratios (same repetition). A run
whose outcomes are not the expected ones is reported and not counted.

Usage: bench/filter-bench.sh [--filter-bench PATH] [--triplets 20000]
       [--inflight 1,50] [--reps 3] [--systems gl-lmdb,gl-redis,postgrey,rl-lmdb,rl-redis]
       [--keep]
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from bench_util import (Redis, build, free_port, log, machine_noise, make_workdir,  # noqa: E402
                        median, stop_proc, user_opts, wait_tcp)

RUN_TIMEOUT = 900  # seconds for one driver run (all its passes)
DELAY_S = 1
WAIT_MS = 1100  # between passes: past the delay, in postgrey's whole seconds too

GL_PASSES = ["new", "retry", "known"]
RL_PASSES = ["new", "known"]
EXPECT = {
    ("gl", "new"): "tempfail/GREYLIST_NEW",
    ("gl", "retry"): "GREYLIST_PASS",
    ("gl", "known"): "GREYLIST_KNOWN",
    ("pg", "new"): "DEFER_IF_PERMIT",
    ("pg", "retry"): "PREPEND",
    ("pg", "known"): "DUNNO",
    ("rl", "new"): "none",
    ("rl", "known"): "none",
}

LISTENER = 'listeners = ( { name = "mx"; address = ["127.0.0.1:2525"]; } );\n'
GREYLIST = ('filters = ( { name = "greylist"; timeout = "60s"; delay = "%ds"; '
            'auto_allow_after = 0; } );\n' % DELAY_S)
RATELIMIT = ('filters = ( { name = "ratelimit"; timeout = "60s"; limits = ( { key = "client_ip"; '
             'count = "recipients"; limit = 1000000; per = "1h"; } ); } );\n')


class Postgrey:
    """postgrey in the foreground, as nobody, with a fresh db dir and empty
    allow lists; stopped by pid."""

    def __init__(self, workdir, name):
        self.dir = os.path.join(workdir, name)
        os.makedirs(self.dir)
        user, group = user_opts()
        for f in ("whitelist_clients", "whitelist_recipients"):
            open(os.path.join(self.dir, f), "w").close()
        if os.geteuid() == 0:
            shutil.chown(self.dir, user, group)
        self.port = free_port()
        args = ["postgrey", "--inet=127.0.0.1:%d" % self.port, "--dbdir=" + self.dir,
                "--delay=%d" % DELAY_S, "--auto-whitelist-clients=0", "--hostname=mx.bench.test",
                "--whitelist-clients=" + os.path.join(self.dir, "whitelist_clients"),
                "--whitelist-recipients=" + os.path.join(self.dir, "whitelist_recipients"),
                "--user=" + user]
        if group is not None:
            args.append("--group=" + group)
        self.logf = open(os.path.join(workdir, name + ".log"), "ab")
        self.proc = subprocess.Popen(args, stdout=self.logf, stderr=subprocess.STDOUT)
        wait_tcp(self.port, self.proc)

    def stop(self):
        stop_proc(self.proc)
        self.logf.close()


LINE = re.compile(r"pass=(\S+) n=(\d+) inflight=(\d+) secs=(\S+) rate=(\S+) p50_us=(\d+) "
                  r"p99_us=(\d+) max_us=(\d+) outcomes=(\S*)")


def parse(out):
    """{pass: {rate, p50, p99, outcomes}} from the driver's lines."""
    passes = {}
    for line in out.splitlines():
        m = LINE.match(line)
        if m:
            outcomes = dict((w.rsplit(":", 1)[0], int(w.rsplit(":", 1)[1]))
                            for w in m.group(9).split(",") if w)
            passes[m.group(1)] = {"rate": float(m.group(5)), "p50": int(m.group(6)),
                                  "p99": int(m.group(7)), "outcomes": outcomes}
    return passes


class Bench:
    def __init__(self, opts, driver, workdir, redis):
        self.o = opts
        self.driver = driver
        self.workdir = workdir
        self.redis = redis
        self.serial = 0

    def config(self, system):
        """A posternd config for filter-bench: the filter and a fresh store."""
        self.serial += 1
        kind, backend = system.split("-")
        path = os.path.join(self.workdir, "%s-%d.conf" % (system, self.serial))
        if backend == "lmdb":
            state = 'state = { backend = "lmdb"; lmdb_dir = "%s/state-%d"; timeout = "30s"; };' \
                % (self.workdir, self.serial)
        else:
            state = ('state = { backend = "redis"; redis = "%s"; redis_prefix = "b%d:"; '
                     'timeout = "30s"; };' % (self.redis.address(), self.serial))
        with open(path, "w") as f:
            f.write(LISTENER + (GREYLIST if kind == "gl" else RATELIMIT) + state + "\n")
        return path

    def run_one(self, system, inflight):
        kind = "pg" if system == "postgrey" else system.split("-")[0]
        passes = RL_PASSES if kind == "rl" else GL_PASSES
        args = [self.driver, "--triplets", str(self.o.triplets), "--inflight", str(inflight),
                "--passes", ",".join(passes), "--wait-ms", str(WAIT_MS),
                "--pass-timeout", str(RUN_TIMEOUT)]
        pg = None
        if system == "postgrey":
            self.serial += 1
            pg = Postgrey(self.workdir, "postgrey-%d" % self.serial)
            args += ["--policy", "127.0.0.1:%d" % pg.port]
        else:
            args += ["--config", self.config(system)]
            if system.endswith("redis"):
                self.redis.command("FLUSHALL", timeout=30.0)
        errlog = os.path.join(self.workdir, "%s-%d.err" % (system, self.serial))
        try:
            with open(errlog, "wb") as err:
                proc = subprocess.run(args, stdout=subprocess.PIPE, stderr=err,
                                      timeout=RUN_TIMEOUT + 60)
        finally:
            if pg is not None:
                pg.stop()
        if proc.returncode != 0:
            with open(errlog, errors="replace") as f:
                raise RuntimeError("%s: filter-bench failed: %s" % (system, f.read()[-800:]))
        result = parse(proc.stdout.decode())
        for name, r in result.items():
            want = EXPECT[(kind, name)]
            r["valid"] = r["outcomes"] == {want: self.o.triplets}
            if not r["valid"]:
                log("WARNING: %s %s: outcomes %s, expected %s:%d"
                    % (system, name, r["outcomes"], want, self.o.triplets))
        return result


def print_report(opts, systems, results):
    """results[(system, inflight)] = list over reps of (parsed passes, load, psi)."""
    print("# filter-bench: %s, %d triplets, %d reps (median), greylist delay %ds, "
          "state fresh per run" % (time.strftime("%Y-%m-%d %H:%M:%S %Z"), opts.triplets,
                                   opts.reps, DELAY_S))
    ratios = [s for s in ("gl-lmdb", "gl-redis") if s in systems and "postgrey" in systems]

    def med(system, inflight, name, key):
        vals = [r[0][name][key] for r in results.get((system, inflight), [])
                if name in r[0] and r[0][name]["valid"]]
        return median(vals) if vals else None

    def fmt(v, spec):
        return (spec % v) if v is not None else "-"

    print("decisions per second (median):")
    hdr = "%-6s %-8s" % ("pass", "inflight") + "".join(" %10s" % s for s in systems)
    hdr += "".join(" %16s" % (s + "/postgrey") for s in ratios)
    print(hdr)
    for name in GL_PASSES:
        for k in opts.inflight:
            line = "%-6s %-8d" % (name, k)
            line += "".join(" %10s" % fmt(med(s, k, name, "rate"), "%.0f") for s in systems)
            pgv = med("postgrey", k, name, "rate") if "postgrey" in systems else None
            for s in ratios:
                v = med(s, k, name, "rate")
                line += " %16s" % (fmt(v / pgv, "%.2fx") if v and pgv else "-")
            print(line)
    print("latency per decision, median / p99 (us, medians over reps):")
    print("%-6s %-8s" % ("pass", "inflight") + "".join(" %15s" % s for s in systems))
    for name in GL_PASSES:
        for k in opts.inflight:
            line = "%-6s %-8d" % (name, k)
            for s in systems:
                a, b = med(s, k, name, "p50"), med(s, k, name, "p99")
                line += " %15s" % ("%d / %d" % (a, b) if a is not None else "-")
            print(line)
    if ratios:
        print("paired ratios to postgrey (same repetition; median and each rep):")
        for name in GL_PASSES:
            for k in opts.inflight:
                line = "  %-6s %-4d" % (name, k)
                for s in ratios:
                    pairs = [a[0][name]["rate"] / b[0][name]["rate"]
                             for a, b in zip(results.get((s, k), []),
                                             results.get(("postgrey", k), []))
                             if name in a[0] and name in b[0] and a[0][name]["valid"]
                             and b[0][name]["valid"]]
                    if pairs:
                        line += "  %s/postgrey %.2fx (%s)" % (
                            s, median(pairs), ", ".join("%.2f" % p for p in pairs))
                print(line)
    print("raw runs: decisions/s p50/p99 us per pass (1-min load average, CPU PSI some avg10 %)")
    for (s, k), runs in sorted(results.items()):
        for r, load, psi in runs:
            print("  %-8s inflight %-3d %s (%.1f, %.0f%%)" % (
                s, k, "  ".join("%s %.0f %d/%d%s" % (n, v["rate"], v["p50"], v["p99"],
                                                     "" if v["valid"] else " INVALID")
                                for n, v in r.items()), load, psi))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--filter-bench", default=os.environ.get("FILTER_BENCH"),
                    help="the driver (default: build an -O2 copy)")
    ap.add_argument("--triplets", type=int, default=20000)
    ap.add_argument("--inflight", default="1,50")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--systems", default="gl-lmdb,gl-redis,postgrey,rl-lmdb,rl-redis")
    ap.add_argument("--keep", action="store_true", help="keep the work dir (logs)")
    opts = ap.parse_args()
    opts.inflight = [int(x) for x in opts.inflight.split(",")]
    systems = opts.systems.split(",")
    for s in systems:
        if s not in ("gl-lmdb", "gl-redis", "postgrey", "rl-lmdb", "rl-redis"):
            sys.exit("unknown system %s" % s)
    need = ["redis-server"] if any(s.endswith("redis") for s in systems) else []
    need += ["postgrey"] if "postgrey" in systems else []
    for tool in need:
        if shutil.which(tool) is None:
            sys.exit("missing %s (scripts/install-deps.sh installs it)" % tool)
    driver = opts.filter_bench or build(["bench/filter-bench"])[0]

    workdir = make_workdir("postern-filter-bench-")
    redis = None
    results = {}
    try:
        if need and need[0] == "redis-server":
            redis = Redis(workdir)
        bench = Bench(opts, driver, workdir, redis)
        for rep in range(opts.reps):
            for k in opts.inflight:
                for s in systems:
                    load, psi = machine_noise()
                    r = bench.run_one(s, k)
                    results.setdefault((s, k), []).append((r, load, psi))
                    log("rep %d inflight %-3d %-8s %s load %.1f cpu-psi %.0f%%" % (
                        rep + 1, k, s, "  ".join("%s %.0f/s p50 %dus p99 %dus" % (
                            n, v["rate"], v["p50"], v["p99"]) for n, v in r.items()),
                        load, psi))
    finally:
        if redis is not None:
            redis.stop()
        if opts.keep:
            log("kept %s" % workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print_report(opts, systems, results)


if __name__ == "__main__":
    main()

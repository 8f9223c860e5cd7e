#!/usr/bin/env python3
"""Added latency per message of posternd's full envelope filter chain.

Three posternd instances on 127.0.0.1 free ports, side by side, identical
but for their filters (workers = 2, spool under the work dir, fsync'd before
the 250; relay to smtp-sink; relay.trusted_networks = 192.0.2.1/32 so that
the loopback clients are inbound strangers):
  none         no filters
  chain-lmdb   dnsbl (two lists served by our nsd: one that lists nothing,
               one that lists a few addresses the clients do not use),
               greylist (delay 1 s, the benchmark's triplets passed by a
               warm-up: refused once, retried after the delay), ratelimit
               (three buckets, limits never reached: client_ip connections,
               client_net messages, sender recipients), dha (the recipients
               are in its list); state in LMDB (posternd's default: fsync
               per commit)
  chain-redis  the same with state on a redis-server we start
The client (bench/smtp-latency, one poll loop, the same for all three) sends
M messages of about 1 KB, one connection per message, with 1 session and
with 10 sessions in parallel (source addresses 127.0.0.2 ... 127.0.0.11,
recipients user0..user9@example.test), and measures per message the time
from connect to the 250 after the content. DNS answers have TTL --dns-ttl
(default 0: nothing is cached, every connection asks nsd both lists, as for
a client never seen; 300 = a returning client). Repetitions are interleaved
(the three instances run back to back inside each one); medians of the
per-run median and p99 are printed with the difference to "none", and the
paired differences (same repetition).

Usage: bench/chain-latency.sh [--posternd PATH] [--messages 2000]
       [--sessions 1,10] [--reps 3] [--dns-ttl 0] [--lmdb-nosync] [--keep]
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from bench_util import (SRC, Nsd, Posternd, Redis, Sink, build, log,  # noqa: E402
                        machine_noise, make_workdir, median)

RUN_TIMEOUT = 600  # seconds for one client run
RCPTS = ["user%d@example.test" % i for i in range(10)]
SENDER = "sender@client.example"
SOURCES = 10  # 127.0.0.2 .. 127.0.0.11
GREYLIST_DELAY_S = 1
CONFIGS = ["none", "chain-lmdb", "chain-redis"]


def filters_conf(nsd_port):
    """The chain: dnsbl, greylist, ratelimit, dha, in that order."""
    return """filters = (
  { name = "dnsbl"; lists = ( { zone = "empty-bl.test"; score = 2; },
                              { zone = "some-bl.test"; score = 3; } ); },
  { name = "greylist"; delay = "%ds"; auto_allow_after = 0; },
  { name = "ratelimit"; limits = (
      { key = "client_ip"; count = "connections"; limit = 1000000; per = "1m"; },
      { key = "client_net"; count = "messages"; limit = 1000000; per = "1h"; },
      { key = "sender"; count = "recipients"; limit = 1000000; per = "1d"; } ); },
  { name = "dha"; recipients = [ %s ]; }
);
dns = { nameservers = ["127.0.0.1:%d"]; timeout = "2s"; attempts = 2; };
""" % (GREYLIST_DELAY_S, ", ".join('"%s"' % r for r in RCPTS), nsd_port)


LINE = re.compile(r"sessions=(\d+) n=(\d+) ok=(\d+) fail=(\d+) secs=(\S+) rate=(\S+) "
                  r"mean_us=(\d+) p50_us=(\d+) p99_us=(\d+) step_p50_us=(\S+) fail_replies=(\S*)")


def client(binary, port, sessions, messages, rcpts=RCPTS):
    args = [binary, "--port", str(port), "--source", "127.0.0.2", "--source-count",
            str(SOURCES), "--sessions", str(sessions), "--messages", str(messages),
            "--from", SENDER, "--rcpts", ",".join(rcpts), "--size", "1024",
            "--run-timeout", str(RUN_TIMEOUT)]
    proc = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=RUN_TIMEOUT + 30)
    m = LINE.search(proc.stdout.decode())
    if proc.returncode != 0 or m is None:
        raise RuntimeError("smtp-latency failed: %s %s" % (proc.stdout.decode(),
                                                            proc.stderr.decode()[-500:]))
    steps = dict((kv.split(":")[0], int(kv.split(":")[1])) for kv in m.group(10).split(","))
    return {"ok": int(m.group(3)), "fail": int(m.group(4)), "rate": float(m.group(6)),
            "mean": int(m.group(7)), "p50": int(m.group(8)), "p99": int(m.group(9)),
            "steps": steps, "fails": m.group(11)}


def warm_up(smtp_latency, servers):
    """Greylist: one refused attempt per triplet, then past the delay a retry
    that passes; then 200 messages (all must pass) on every instance."""
    for s in servers.values():
        r = client(smtp_latency, s.port, 1, len(RCPTS))
        log("warm-up %-11s first attempts: ok %d, refused %s" % (s.name, r["ok"], r["fails"]))
    time.sleep(GREYLIST_DELAY_S + 0.5)
    for s in servers.values():
        r = client(smtp_latency, s.port, 10, 200)
        if r["fail"]:
            raise RuntimeError("warm-up on %s: %d failed (%s)" % (s.name, r["fail"], r["fails"]))
    for s in servers.values():
        if s.name != "none" and s.log_count("GREYLIST_KNOWN") == 0:
            raise RuntimeError("%s: no GREYLIST_KNOWN in its log: is the chain on?" % s.name)


def smtp_latency_binary(workdir):
    if os.environ.get("SMTP_LATENCY"):
        return os.environ["SMTP_LATENCY"]
    out = os.path.join(workdir, "smtp-latency")
    subprocess.run(["cc", "-O2", "-Wall", "-Wextra", "-o", out,
                    os.path.join(SRC, "bench", "smtp-latency.c")], check=True)
    return out


def print_report(opts, results):
    """results[(config, sessions)] = list over reps of (client result, load, psi)."""
    print("# chain-latency: %s, %d messages per run (~1 KB, one connection each), %d reps "
          "(median), DNS TTL %ds, lmdb_nosync %s, posternd workers=2"
          % (time.strftime("%Y-%m-%d %H:%M:%S %Z"), opts.messages, opts.reps, opts.dns_ttl,
             "true" if opts.lmdb_nosync else "false"))
    print("%-11s %-8s %9s %9s %9s %11s %11s %9s" % ("config", "sessions", "p50 ms", "p99 ms",
                                                     "msg/s", "+p50 ms", "+p99 ms", "failed"))
    for sess in opts.sessions:
        base = results[("none", sess)]
        bp50 = median([r[0]["p50"] for r in base])
        bp99 = median([r[0]["p99"] for r in base])
        for c in CONFIGS:
            runs = results[(c, sess)]
            p50 = median([r[0]["p50"] for r in runs])
            p99 = median([r[0]["p99"] for r in runs])
            print("%-11s %-8d %9.3f %9.3f %9.0f %11s %11s %9d" % (
                c, sess, p50 / 1000, p99 / 1000, median([r[0]["rate"] for r in runs]),
                "%+.3f" % ((p50 - bp50) / 1000) if c != "none" else "",
                "%+.3f" % ((p99 - bp99) / 1000) if c != "none" else "",
                sum(r[0]["fail"] for r in runs)))
    print("paired differences to none (same repetition), ms: median (each rep)")
    for sess in opts.sessions:
        for c in CONFIGS[1:]:
            pairs = list(zip(results[(c, sess)], results[("none", sess)]))
            d50 = [(a[0]["p50"] - b[0]["p50"]) / 1000 for a, b in pairs]
            d99 = [(a[0]["p99"] - b[0]["p99"]) / 1000 for a, b in pairs]
            print("  %-11s %2d sessions: p50 %+.3f (%s)  p99 %+.3f (%s)" % (
                c, sess, median(d50), ", ".join("%+.3f" % d for d in d50),
                median(d99), ", ".join("%+.3f" % d for d in d99)))
    print("median time of each step, ms (greet = connect to 220, dot = content to 250; "
          "median over reps)")
    for sess in opts.sessions:
        for c in CONFIGS:
            runs = results[(c, sess)]
            steps = runs[0][0]["steps"].keys()
            print("  %-11s %2d sessions: %s" % (c, sess, "  ".join(
                "%s %.3f" % (st, median([r[0]["steps"][st] for r in runs]) / 1000)
                for st in steps)))
    print("raw runs: p50/p99 ms, msg/s (1-min load average, CPU PSI some avg10 %)")
    for (c, sess), runs in sorted(results.items()):
        print("  %-11s %2d sessions: %s" % (c, sess, ", ".join(
            "%.3f/%.3f %.0f%s (%.1f, %.0f%%)" % (r["p50"] / 1000, r["p99"] / 1000, r["rate"],
                                                 " FAILED %d" % r["fail"] if r["fail"] else "",
                                                 load, psi)
            for r, load, psi in runs)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--posternd", default=os.environ.get("POSTERND"),
                    help="posternd binary (default: build an -O2 copy)")
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--sessions", default="1,10")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--dns-ttl", type=int, default=0,
                    help="TTL of the DNS lists' answers (0 = never cached)")
    ap.add_argument("--lmdb-nosync", action="store_true",
                    help="chain-lmdb with state.lmdb_nosync = true (no fsync per commit)")
    ap.add_argument("--keep", action="store_true", help="keep the work dir (logs)")
    opts = ap.parse_args()
    opts.sessions = [int(x) for x in opts.sessions.split(",")]
    for tool in ("redis-server", "nsd", "nsd-checkconf", "smtp-sink", "cc"):
        if shutil.which(tool) is None:
            sys.exit("missing %s (scripts/install-deps.sh installs it)" % tool)
    binary = opts.posternd or build(["posternd"])[0]

    workdir = make_workdir("postern-chain-latency-")
    started = []
    results = {}
    try:
        smtp_latency = smtp_latency_binary(workdir)
        nsd = Nsd(workdir, {"empty-bl.test": "",
                            "some-bl.test": "\n".join("%d.0.0.127 IN A 127.0.0.2" % h
                                                      for h in range(200, 206))},
                  ttl=opts.dns_ttl)
        started.append(nsd)
        redis = Redis(workdir)
        started.append(redis)
        sink = Sink(workdir)
        started.append(sink)
        chain = filters_conf(nsd.port)
        servers = {
            "none": Posternd(binary, workdir, "none", sink.port, ""),
            "chain-lmdb": Posternd(binary, workdir, "chain-lmdb", sink.port,
                                   chain + 'state = { backend = "lmdb"; lmdb_nosync = %s; };\n'
                                   % ("true" if opts.lmdb_nosync else "false")),
            "chain-redis": Posternd(binary, workdir, "chain-redis", sink.port,
                                    chain + 'state = { backend = "redis"; redis = "%s"; };\n'
                                    % redis.address()),
        }
        started.extend(servers.values())
        warm_up(smtp_latency, servers)
        for rep in range(opts.reps):
            for sess in opts.sessions:
                for c in CONFIGS:
                    load, psi = machine_noise()
                    r = client(smtp_latency, servers[c].port, sess, opts.messages)
                    results.setdefault((c, sess), []).append((r, load, psi))
                    log("rep %d %2d sessions %-11s p50 %.3f ms p99 %.3f ms %.0f msg/s%s "
                        "load %.1f cpu-psi %.0f%%" % (
                            rep + 1, sess, c, r["p50"] / 1000, r["p99"] / 1000, r["rate"],
                            " FAILED %d (%s)" % (r["fail"], r["fails"]) if r["fail"] else "",
                            load, psi))
                    time.sleep(0.5)  # let the queue manager catch up a little
    finally:
        for s in reversed(started):
            s.stop()
        if opts.keep:
            log("kept %s" % workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print_report(opts, results)


if __name__ == "__main__":
    main()

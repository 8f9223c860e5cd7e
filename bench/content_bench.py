#!/usr/bin/env python3
"""Messages per second through posternd's content chain against the scanners alone.

The same M messages (default 200, 5-50 KB, text/plain or multipart with a
small zip or PDF attachment on some, From: and envelope sender in
sender.test, DKIM-signed with dkimpy by a key that our nsd serves) go
  scanners   straight to the scanners by their own clients: for each message
             `spamc -y` (the "symbols" check posternd's spamd filter asks
             for) then `clamdscan -` (INSTREAM of stdin), both over loopback
             TCP, one process each per message, as a pipeline would call them;
  posternd   through posternd (workers = 2, spool fsync'd before the 250,
             relay to smtp-sink) with the chain spf, dkim, dmarc, attachments,
             clamd, spamd against the same clamd and spamd, the policy's
             reject/hold/tempfail thresholds off; one SMTP connection per
             message (smtplib), source 127.0.0.1 (an inbound stranger:
             relay.trusted_networks is 192.0.2.1/32), every message must get 250.
and, with --received, a third path
  scanners-rcvd  the scanners alone on the messages with the Received: field
             posternd prepends (what spamd sees behind posternd), to tell
             SpamAssassin's cost of that field from posternd's own.
All with concurrency 1 and N (--concurrency, default 1,4: N messages in
flight, threads), total wall time of the set -> msg/s; repetitions interleaved
(scanners, posternd back to back), medians; overhead = posternd's wall time /
the scanners' wall time - 1 (target < 10 %). Load average and CPU pressure
are recorded before every run.

Servers (all ours, 127.0.0.1 free ports, state in the work dir, stopped by
pid): clamd with a local signature database (EICAR and a body pattern; no
freshclam, so far fewer signatures than a production clamd: its scans are
cheap here), spamd (SpamAssassin's stock rules, no network tests, no Bayes;
--spamd-children, default 4), nsd with sender.test's SPF, DKIM key and DMARC
(p=reject) records and the PTR of 127.0.0.1, smtp-sink.

Usage: bench/content-bench.sh [--posternd PATH] [--messages 200]
       [--concurrency 1,4] [--reps 3] [--spamd-children 4] [--received] [--keep]
"""
import argparse
import concurrent.futures
import io
import os
import random
import re
import shutil
import smtplib
import socket
import subprocess
import sys
import time
import zipfile
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from bench_util import (Nsd, Posternd, Sink, build, free_port, log, machine_noise,  # noqa: E402
                        make_workdir, median, stop_proc)
from harness import spamd_site, spamd_user_args  # noqa: E402 (on sys.path by bench_util)

DOMAIN = "sender.test"
SELECTOR = "sel"
SENDER = "bounce@" + DOMAIN
RCPT = "user@example.test"
HELO = "client." + DOMAIN
MSG_TIMEOUT = 120  # seconds for one message, either way
EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
SA_LOCAL_CF = """use_bayes 0
bayes_auto_learn 0
skip_rbl_checks 1
use_razor2 0
use_pyzor 0
dns_available no
"""
WORDS = ("the of and to in is for on that with as by this be are from at or an have "
         "invoice order shipment meeting report quarterly customer account payment "
         "schedule delivery project budget review please attached regards thanks "
         "update team office contract price quote tomorrow monday friday agenda").split()


# ---------------------------------------------------------------- servers

class Clamd:
    """clamd in the foreground, a local database (SERVICES.md), TCP only so
    that clamdscan and posternd reach it the same way."""

    def __init__(self, workdir):
        self.dir = os.path.join(workdir, "clamd")
        os.makedirs(os.path.join(self.dir, "db"))
        os.makedirs(os.path.join(self.dir, "tmp"))
        os.chmod(self.dir, 0o755)
        with open(os.path.join(self.dir, "db", "local.ndb"), "w") as f:
            f.write("Eicar-Test-Signature:0:*:%s\n" % EICAR.hex())
            f.write("Local.Test-String:0:*:%s\n" % b"postern-bench-virus-marker".hex())
        self.port = free_port()
        self.conf = os.path.join(self.dir, "clamd.conf")
        with open(self.conf, "w") as f:
            f.write("Foreground yes\nDatabaseDirectory {d}/db\nTemporaryDirectory {d}/tmp\n"
                    "PidFile {d}/clamd.pid\nLogFile {d}/clamd.log\nLogSyslog no\n"
                    "TCPAddr 127.0.0.1\nTCPSocket {p}\nStreamMaxLength 25M\nSelfCheck 0\n"
                    "ScanMail yes\nMaxThreads 10\n".format(d=self.dir, p=self.port))
        self.out = open(os.path.join(self.dir, "clamd.out"), "w")
        self.proc = subprocess.Popen(["clamd", "-c", self.conf], stdout=self.out,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while not self.ping():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError("clamd did not start (%s)" % self.dir)
            time.sleep(0.05)

    def ping(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as c:
                c.sendall(b"zPING\0")
                return c.recv(16) == b"PONG\0"
        except OSError:
            return False

    def stop(self):
        stop_proc(self.proc)
        self.out.close()


class Spamd:
    """spamd in the foreground on a loopback port (SERVICES.md): stock rules,
    no network tests, no Bayes."""

    def __init__(self, workdir, children):
        self.dir = os.path.join(workdir, "spamd")
        site, home = spamd_site(self.dir, SA_LOCAL_CF, debian_cf=True)
        self.port = free_port()
        self.logfile = os.path.join(self.dir, "spamd.log")
        args = ["spamd", "-L", "-x", "-H", home, "--siteconfigpath", site,
                "--configpath", "/usr/share/spamassassin", "-i", "127.0.0.1", "-p",
                str(self.port), "-A", "127.0.0.1", "-m", str(children), "--min-children",
                str(children), "--min-spare", str(children), "-s", self.logfile]
        args += spamd_user_args(home)
        self.out = open(os.path.join(self.dir, "spamd.out"), "w")
        self.proc = subprocess.Popen(args, stdout=self.out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while not self.ping():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError("spamd did not start (%s)" % self.dir)
            time.sleep(0.1)

    def ping(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                s.sendall(b"PING SPAMC/1.5\r\n\r\n")
                return s.recv(100).startswith(b"SPAMD/1.5 0 PONG")
        except OSError:
            return False

    def results(self):
        """spamd's "result:" log lines so far: a list of scantime seconds (0.1 s steps)."""
        try:
            with open(self.logfile, errors="replace") as f:
                text = f.read()
        except OSError:
            return []
        return [float(m) for m in re.findall(r"spamd: result: .* scantime=([0-9.]+),", text)]

    def stop(self):
        stop_proc(self.proc)
        self.out.close()


def content_posternd(binary, workdir, sink_port, nsd_port, clamd_port, spamd_port):
    """posternd with the content chain, its DNS on our nsd; the policy
    refuses nothing: every message must reach the 250."""
    return Posternd(binary, workdir, "posternd", sink_port, """\
dns = { nameservers = ["127.0.0.1:%d"]; timeout = "2s"; attempts = 2; };
policy = { inbound = { tag_score = 5; hold_score = 0; tempfail_score = 0; reject_score = 0; }; };
filters = (
  { name = "spf"; },
  { name = "dkim"; },
  { name = "dmarc"; },
  { name = "attachments"; rules = (
      { id = "executables"; extensions = [ "exe", "scr", "com", "pif" ]; in_archives = true; },
      { id = "pe"; detected_type = [ "application/vnd.microsoft.portable-executable",
                                     "application/x-dosexec" ]; in_archives = true; } ); },
  { name = "clamd"; address = "127.0.0.1:%d"; },
  { name = "spamd"; address = "127.0.0.1:%d"; timeout = "60s"; }
);
""" % (nsd_port, clamd_port, spamd_port))


# ---------------------------------------------------------------- messages

def make_key(workdir):
    """An RSA key by opendkim-genkey (or openssl): (private key PEM, zone text)."""
    d = os.path.join(workdir, "dkim")
    os.makedirs(d)
    if shutil.which("opendkim-genkey") or os.access("/usr/sbin/opendkim-genkey", os.X_OK):
        subprocess.run(["/usr/sbin/opendkim-genkey", "-b", "2048", "-D", d, "-d", DOMAIN,
                        "-s", SELECTOR], check=True, stderr=subprocess.DEVNULL)
        with open(os.path.join(d, SELECTOR + ".txt")) as f:
            text = f.read()
        zone = text[:text.rindex(")") + 1] + "\n"
        with open(os.path.join(d, SELECTOR + ".private"), "rb") as f:
            return f.read(), zone
    raise RuntimeError("opendkim-genkey not found (package opendkim-tools)")


def words(rng, size):
    out, n = [], 0
    line = []
    while n < size:
        w = rng.choice(WORDS)
        line.append(w)
        n += len(w) + 1
        if len(line) >= 12:
            out.append(" ".join(line))
            line = []
    out.append(" ".join(line))
    return "\n".join(out) + "\n"


def tiny_pdf(rng, size):
    body = words(rng, size).replace("(", "").replace(")", "")
    stream = "BT /F1 10 Tf 50 750 Td (%s) Tj ET" % body[:size].replace("\n", " ")
    return ("%%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
            "2 0 obj << /Type /Pages /Kids [3 0 R] /Count 1 >> endobj\n"
            "3 0 obj << /Type /Page /Parent 2 0 R /Contents 4 0 R >> endobj\n"
            "4 0 obj << /Length %d >> stream\n%s\nendstream endobj\ntrailer << /Root 1 0 R >>\n"
            "%%%%EOF\n" % (len(stream), stream)).encode()


def tiny_zip(rng, size):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("report.txt", words(rng, size))
        z.writestr("data.csv", "\n".join("%d,%d,%s" % (i, rng.randrange(10**6),
                                                       rng.choice(WORDS))
                                         for i in range(size // 40)))
    return buf.getvalue()


def make_messages(count, private_key, seed=1):
    """count DKIM-signed messages, sizes spread over 5-50 KB; one in four with
    a zip, one in four with a PDF."""
    import dkim  # python3-dkim (Debian)
    rng = random.Random(seed)
    msgs = []
    for i in range(count):
        size = rng.randint(5 * 1024, 50 * 1024)
        m = EmailMessage(policy=SMTP_POLICY)
        m["From"] = "Alice Sender <alice@%s>" % DOMAIN
        m["To"] = "<%s>" % RCPT
        m["Subject"] = "%s %s %d" % (rng.choice(WORDS).title(), rng.choice(WORDS), i)
        m["Date"] = "Sat, 28 Nov 2026 03:00:%02d +0000" % (i % 60)
        m["Message-ID"] = "<bench-%d@%s>" % (i, DOMAIN)
        kind = i % 4
        if kind in (0, 1):
            m.set_content(words(rng, size))
        else:
            m.set_content(words(rng, size * 2 // 3))
            if kind == 2:
                m.add_attachment(tiny_zip(rng, size // 3), maintype="application",
                                 subtype="zip", filename="report-%d.zip" % i)
            else:
                m.add_attachment(tiny_pdf(rng, size // 3), maintype="application",
                                 subtype="pdf", filename="invoice-%d.pdf" % i)
        raw = m.as_bytes()
        sig = dkim.sign(raw, SELECTOR.encode(), DOMAIN.encode(), private_key,
                        include_headers=[b"from", b"to", b"subject", b"date", b"message-id"])
        msgs.append(sig + raw)
    return msgs


# ---------------------------------------------------------------- runs

def with_received(msg, i):
    """msg with a Received: field as posternd writes it (gateway/smtp-cmd-data.c)."""
    return ("Received: from %s (%s [127.0.0.1])\r\n\tby mx.bench.test (Postern) with ESMTP "
            "id %020X\r\n\tfor <%s>; Sat, 28 Nov 2026 03:00:00 +0000\r\n"
            % (HELO, HELO, 0xA42FE2E66C0072A5EEED + i, RCPT)).encode() + msg


def scan_one(msg, clamd_conf, spamd_port):
    """spamc then clamdscan on msg; (spamc s, clamdscan s)."""
    t0 = time.monotonic()
    r = subprocess.run(["spamc", "-d", "127.0.0.1", "-p", str(spamd_port), "-y", "-t", "60"],
                       input=msg, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=MSG_TIMEOUT)
    t1 = time.monotonic()
    if r.returncode != 0 or not r.stdout.strip():
        raise RuntimeError("spamc: rc %d %r %r" % (r.returncode, r.stdout, r.stderr))
    c = subprocess.run(["clamdscan", "-c", clamd_conf, "--no-summary", "-"], input=msg,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=MSG_TIMEOUT)
    t2 = time.monotonic()
    if c.returncode != 0 or b"OK" not in c.stdout:
        raise RuntimeError("clamdscan: rc %d %r %r" % (c.returncode, c.stdout, c.stderr))
    return t1 - t0, t2 - t1


def send_one(msg, port):
    t0 = time.monotonic()
    with smtplib.SMTP("127.0.0.1", port, timeout=MSG_TIMEOUT) as c:
        c.ehlo(HELO)
        c.sendmail(SENDER, [RCPT], msg)  # raises unless 250
    return time.monotonic() - t0, 0.0


def run_set(fn, msgs, concurrency, *args):
    """fn(msg, *args) for every message, concurrency in flight; (wall s, per-message results)."""
    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=concurrency) as ex:
        res = list(ex.map(lambda m: fn(m, *args), msgs))
    return time.monotonic() - t0, res


def check_chain(p, n):
    """Every filter of the chain spoke on the warm-up's n messages."""
    text = p.log_text()
    counts = {s: text.count(s) for s in ("SPF_PASS", "DKIM_VALID", "DMARC_PASS",
                                         "CLAMAV_CLEAN", "SPAMASSASSIN")}
    log("warm-up, posternd log: %s" % ", ".join("%s %d" % kv for kv in counts.items()))
    missing = [s for s, c in counts.items() if c < n]
    if missing:
        sample = [ln for ln in text.splitlines() if "CLAMAV" in ln or "SPF" in ln][-3:]
        raise RuntimeError("posternd: %s on fewer than %d messages; log lines: %s"
                           % (", ".join(missing), n, "\n".join(sample)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--posternd", default=os.environ.get("POSTERND"),
                    help="posternd binary (default: build an -O2 copy)")
    ap.add_argument("--messages", type=int, default=200)
    ap.add_argument("--concurrency", default="1,4")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--spamd-children", type=int, default=4)
    ap.add_argument("--received", action="store_true",
                    help="also the scanners on the messages with posternd's Received: field")
    ap.add_argument("--keep", action="store_true", help="keep the work dir (logs)")
    opts = ap.parse_args()
    opts.concurrency = [int(x) for x in opts.concurrency.split(",")]
    for tool in ("clamd", "clamdscan", "spamd", "spamc", "nsd", "nsd-checkconf", "smtp-sink"):
        if shutil.which(tool) is None and not os.access("/usr/sbin/" + tool, os.X_OK):
            sys.exit("missing %s (scripts/install-deps.sh installs it)" % tool)
    binary = opts.posternd or build(["posternd"])[0]

    workdir = make_workdir("postern-content-bench-")
    started = []
    results = {}
    try:
        key, key_zone = make_key(workdir)
        msgs = make_messages(opts.messages, key)
        sizes = sorted(len(m) for m in msgs)
        log("%d messages, %d..%d bytes, median %d, total %.1f MB" % (
            len(msgs), sizes[0], sizes[-1], sizes[len(sizes) // 2], sum(sizes) / 1e6))
        nsd = Nsd(workdir, {
            DOMAIN: key_zone +
            '@ IN TXT "v=spf1 ip4:127.0.0.0/8 -all"\n'
            'client IN A 127.0.0.1\n'
            'client IN TXT "v=spf1 ip4:127.0.0.0/8 -all"\n'
            '_dmarc IN TXT "v=DMARC1; p=reject"\n',
            "0.0.127.in-addr.arpa": "1 IN PTR client.%s.\n" % DOMAIN})
        started.append(nsd)
        clamd = Clamd(workdir)
        started.append(clamd)
        spamd = Spamd(workdir, opts.spamd_children)
        started.append(spamd)
        sink = Sink(workdir)
        started.append(sink)
        p = content_posternd(binary, workdir, sink.port, nsd.port, clamd.port, spamd.port)
        started.append(p)

        # warm-up: spamd's children compile their rules on first use
        warm = msgs[:max(8, max(opts.concurrency) * 2)]
        run_set(scan_one, warm, max(opts.concurrency), clamd.conf, spamd.port)
        run_set(send_one, warm, max(opts.concurrency), p.port)
        time.sleep(1)
        check_chain(p, len(warm))

        paths = [("scanners", scan_one, msgs, (clamd.conf, spamd.port)),
                 ("posternd", send_one, msgs, (p.port,))]
        if opts.received:
            paths.append(("scanners-rcvd", scan_one,
                          [with_received(m, i) for i, m in enumerate(msgs)],
                          (clamd.conf, spamd.port)))
        opts.paths = [x[0] for x in paths]
        for rep in range(opts.reps):
            for conc in opts.concurrency:
                for name, fn, mset, args in paths:
                    load, psi = machine_noise()
                    before = len(spamd.results())
                    wall, per = run_set(fn, mset, conc, *args)
                    time.sleep(0.2)  # spamd logs after its reply
                    scans = spamd.results()[before:]
                    checked = len(scans)
                    rate = len(msgs) / wall
                    results.setdefault((name, conc), []).append(
                        {"wall": wall, "rate": rate, "load": load, "psi": psi,
                         "a": sum(x[0] for x in per), "b": sum(x[1] for x in per),
                         "lat": median([x[0] + x[1] for x in per]), "checked": checked,
                         "sa": sum(scans) / max(1, checked)})
                    log("rep %d conc %d %-13s %.2f s %.1f msg/s spamd checks %d "
                        "load %.1f cpu-psi %.0f%%" % (rep + 1, conc, name, wall, rate, checked,
                                                      load, psi))
                    time.sleep(1)
    finally:
        for s in reversed(started):
            s.stop()
        if opts.keep:
            log("kept %s" % workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print_report(opts, msgs, results)


def print_report(opts, msgs, results):
    sizes = sorted(len(m) for m in msgs)
    print("# content-bench: %s, %d messages (%d..%d bytes, median %d; 1/4 zip, 1/4 PDF, all "
          "DKIM-signed), %d reps (median), posternd workers=2, spamd children %d"
          % (time.strftime("%Y-%m-%d %H:%M:%S %Z"), len(msgs), sizes[0], sizes[-1],
             sizes[len(sizes) // 2], opts.reps, opts.spamd_children))
    print("%-5s %-13s %9s %9s %12s %10s" % ("conc", "path", "wall s", "msg/s", "ms/msg p50",
                                           "overhead"))
    for conc in opts.concurrency:
        sw = median([r["wall"] for r in results[("scanners", conc)]])
        for name in opts.paths:
            runs = results[(name, conc)]
            w = median([r["wall"] for r in runs])
            print("%-5d %-13s %9.2f %9.2f %12.1f %10s" % (
                conc, name, w, median([r["rate"] for r in runs]),
                median([r["lat"] for r in runs]) * 1000,
                "%+.1f %%" % ((w / sw - 1) * 100) if name != "scanners" else ""))
        pairs = zip(results[("posternd", conc)], results[("scanners", conc)])
        print("  paired overhead (same rep): %s" % ", ".join(
            "%+.1f %%" % ((a["wall"] / b["wall"] - 1) * 100) for a, b in pairs))
        sc = results[("scanners", conc)]
        print("  scanners: spamc %.1f ms, clamdscan %.1f ms per message (mean, median over reps)"
              % (median([r["a"] for r in sc]) / len(msgs) * 1000,
                 median([r["b"] for r in sc]) / len(msgs) * 1000))
    print("spamd's own scan time per message (its log's scantime, 0.1 s steps; median over reps),"
          " s: %s" % ", ".join("%s conc %d %.3f" % (name, conc, median([r["sa"] for r in
                                                                      results[(name, conc)]]))
                               for conc in opts.concurrency for name in opts.paths))
    print("raw runs: wall s, msg/s (1-min load average, CPU PSI some avg10 %, spamd checks, "
          "spamd scantime s/msg)")
    for (name, conc), runs in sorted(results.items()):
        print("  %-13s conc %d: %s" % (name, conc, ", ".join(
            "%.2f %.1f (%.1f, %.0f%%, %d, %.3f)" % (r["wall"], r["rate"], r["load"], r["psi"],
                                                   r["checked"], r["sa"]) for r in runs)))


if __name__ == "__main__":
    main()

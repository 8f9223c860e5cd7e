"""The relay's durability proof: a few thousand messages go in while the
whole posternd (master, SMTP workers and queue manager) is killed with
SIGKILL several times at random moments and restarted on the same spool;
at the end the queue drains into Postfix's smtp-sink, and every message
that got a 250 after DATA must have arrived downstream at least once
(duplicates are allowed, losses are not).

smtp-source cannot tell which of its messages got a 250, so the proof
rests on a Python sender: several threads, each message carrying a unique
token (Subject, Message-ID and a last body line), the token recorded only
once the 250 after DATA was read. A dump counts as a delivery of a token
only when it holds that last line, i.e. the whole content arrived.
smtp-source runs alongside as extra load during one kill cycle; its
messages are only counted, never asserted on.

Bounded: CRASH_MESSAGES messages (default 2000), CRASH_KILLS kills during
the load (default 3) plus one more after it with the queue still full, 50 s
of sending and 60 s of draining at most (about 10 s when all is well).
CRASH_SEED repeats a run's kill points."""
import os
import random
import re
import signal
import smtplib
import subprocess
import threading
import time

from harness import Postern, Sink, alive, procs_of, proc_stat, run

MESSAGES = int(os.environ.get("CRASH_MESSAGES", "2000"))
KILLS = int(os.environ.get("CRASH_KILLS", "3"))
THREADS = 8
PER_CONNECTION = 20       # messages per SMTP session before QUIT
SEND_DEADLINE = 50        # seconds for the whole load phase
DRAIN_TIMEOUT = 60        # seconds for the queue to empty at the end
SOURCE_MESSAGES = 1000    # smtp-source's load
SENDER = "crash@sink.test"  # bounces, if any, would show up in the sink too
RCPT = "x@sink.test"
SOURCE_SUBJECT = "smtp-source load"

END_RE = re.compile(rb"\nend-of-(crash-\d+)\n")


# ---- processes ----


def descendants(root):
    """Every live process below root, found through /proc's parent links."""
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = proc_stat(int(d))
            if st is not None and st[0] != "Z":
                kids.setdefault(st[1], []).append(int(d))
    out, todo = [], [root]
    while todo:
        for c in kids.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def kill9_all(p):
    """kill -9 of the whole instance at once: the master is stopped first so
    that it cannot fork a replacement between the listing and the kill, then
    it and every process below it (and any process still running its config)
    get SIGKILL. Returns the pids killed once all are gone."""
    master = p.proc.pid
    try:
        os.kill(master, signal.SIGSTOP)
    except ProcessLookupError:
        pass
    victims = set([master] + descendants(master) + procs_of(p))
    for pid in victims:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    p.proc.wait(10)
    deadline = time.time() + 10
    while any(alive(pid) for pid in victims) or procs_of(p):
        if time.time() > deadline:
            raise AssertionError("processes survived SIGKILL: %s" % procs_of(p))
        time.sleep(0.01)
    return sorted(victims)


def restart(p):
    """A new posternd on the same configuration and spool."""
    if p.log_fd is not None:
        p.log_fd.close()
    p.start()


# ---- the sender ----

class Load:
    def __init__(self, port):
        self.port = port
        self.lock = threading.Lock()
        self.next = 0
        self.attempted = 0
        self.acked = {}      # token -> queue id from the 250 reply
        self.errors = 0
        self.refused = 0     # a 4xx/5xx reply (not a lost connection)
        self.deadline = time.time() + SEND_DEADLINE

    def token(self):
        with self.lock:
            if self.next >= MESSAGES or time.time() > self.deadline:
                return None
            self.next += 1
            self.attempted += 1
            return "crash-%05d" % self.next

    def message(self, token):
        return ("From: <%s>\r\nTo: <%s>\r\nSubject: crash token %s\r\n"
                "Message-ID: <%s@crash.test>\r\n\r\n"
                "body of %s\r\n%s\r\nend-of-%s\r\n"
                % (SENDER, RCPT, token, token, token, "x" * random.randint(0, 2000), token)
                ).encode()

    def thread(self):
        while True:
            with self.lock:
                if self.next >= MESSAGES or time.time() > self.deadline:
                    return
            try:
                with smtplib.SMTP("127.0.0.1", self.port, timeout=15) as c:
                    c.ehlo("crash.test")
                    for _ in range(PER_CONNECTION):
                        token = self.token()
                        if token is None:
                            break
                        if c.mail(SENDER)[0] != 250 or c.rcpt(RCPT)[0] != 250:
                            with self.lock:
                                self.refused += 1
                            c.rset()
                            continue
                        code, text = c.data(self.message(token))
                        if code == 250:
                            with self.lock:
                                self.acked[token] = text.decode(errors="replace").split()[-1]
                        else:
                            with self.lock:
                                self.refused += 1
            except (OSError, smtplib.SMTPException):
                # killed under us (or not restarted yet): the message in
                # flight got no 250 and is not counted; try again shortly
                with self.lock:
                    self.errors += 1
                time.sleep(0.05)

    def progress(self):
        with self.lock:
            return self.attempted


def start_smtp_source(p):
    try:
        return subprocess.Popen(
            ["smtp-source", "-s", "10", "-m", str(SOURCE_MESSAGES), "-f", "a@example.test",
             "-t", RCPT, "-S", SOURCE_SUBJECT, "-M", "source.test",
             "127.0.0.1:%d" % p.port()],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    except OSError:
        return None


# ---- the test ----

def wait_drained(p, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not p.queue() and not os.listdir(os.path.join(p.spool, "tmp")):
            return True
        time.sleep(0.2)
    return False


def tally(sink):
    """token -> complete deliveries; plus the smtp-source and DSN counts."""
    seen, source, dsns, other = {}, 0, 0, 0
    for m in sink.messages():
        found = END_RE.findall(m)
        for t in found:
            seen[t.decode()] = seen.get(t.decode(), 0) + 1
        if found:
            continue
        if b"multipart/report" in m:
            dsns += 1
        elif ("Subject: " + SOURCE_SUBJECT).encode() in m:
            source += 1
        else:
            other += 1
    return seen, source, dsns, other


def test_kill9_during_load_loses_nothing():
    sink = Sink()
    relay = ('local_domains = ["example.test", "sink.test"]; '
             'trusted_networks = ["127.0.0.100/32"];')
    # the senders reconnect all the time while posternd is down: no
    # per-client session or connection-rate limits in the way
    p = Postern(relay=relay, workers=2,
                smtp="max_sessions_per_ip = 0; connection_rate_limit = 0;", extra=(
        'queue = { min_backoff = "1s"; max_backoff = "2s"; idle_timeout = "1s"; '
        'scan_interval = "2s"; };\n'
        'transports = ( { domain = "sink.test"; nexthop = "smtp:[127.0.0.1]:%d"; } );\n'
        % sink.port))
    source = None
    start = time.time()
    try:
        p.start()
        load = Load(p.port())
        seed = os.environ.get("CRASH_SEED") or str(random.randrange(1 << 30))
        print("    CRASH_SEED=%s" % seed)  # the same kill points again
        rnd = random.Random(seed)
        # kill at random points of the load (by messages attempted), one of
        # them while smtp-source runs too
        points = sorted(rnd.sample(range(MESSAGES // 10, MESSAGES * 9 // 10), KILLS))
        senders = [threading.Thread(target=load.thread, daemon=True) for _ in range(THREADS)]
        for t in senders:
            t.start()
        kills = []
        source_cycle = rnd.randrange(KILLS)
        for i, point in enumerate(points):
            if i == source_cycle:
                source = start_smtp_source(p)
            while load.progress() < point and any(t.is_alive() for t in senders):
                time.sleep(0.005)
            time.sleep(rnd.uniform(0, 0.2))  # not always right after a token was taken
            at = load.progress()
            victims = kill9_all(p)
            kills.append((at, len(victims)))
            time.sleep(rnd.uniform(0, 0.5))  # clients find nobody listening for a while
            restart(p)
        for t in senders:
            t.join(SEND_DEADLINE + 30)
        assert not any(t.is_alive() for t in senders), "a sender thread hangs"
        source_rc = None
        if source is not None:
            try:
                source.wait(max(1, SEND_DEADLINE - (time.time() - start)))
            except subprocess.TimeoutExpired:
                source.kill()
                source.wait()
            source_rc = source.returncode
            said = source.stderr.read().decode(errors="replace").strip().splitlines()
            if said:
                source_rc = "%s (%s)" % (source_rc, said[-1][:160])
        # the last crash: with the queue full of undelivered mail
        queued = len(p.queue())
        victims = kill9_all(p)
        kills.append(("end, %d queued" % queued, len(victims)))
        restart(p)
        drained = wait_drained(p, DRAIN_TIMEOUT)
        time.sleep(0.5)  # smtp-sink closes its last dump files
        seen, source_delivered, dsns, other = tally(sink)
        acked = load.acked
        lost = sorted(t for t in acked if t not in seen)
        log = p.log()
        recovered = log.count("removed incomplete message")
        dups = sum(n - 1 for n in seen.values() if n > 1)
        unacked_delivered = sum(1 for t in seen if t not in acked)
        corrupt = os.listdir(os.path.join(p.spool, "corrupt"))
        print("    kills (messages attempted at the time, processes killed): %s" % kills)
        print("    python sender: sent %d, acked %d, delivered %d distinct, %d duplicates, "
              "%d delivered without a 250, %d lost; %d connection errors, %d refusals"
              % (load.attempted, len(acked), len(seen), dups, unacked_delivered, len(lost),
                 load.errors, load.refused))
        print("    smtp-source: %d messages asked for, exit %s, %d delivered; "
              "%d DSNs, %d other dumps; corrupt/: %d; %d unacknowledged files removed at "
              "start-up; %.1fs"
              % (SOURCE_MESSAGES if source is not None else 0, source_rc, source_delivered,
                 dsns, other, len(corrupt), recovered, time.time() - start))
        assert drained, "queue not empty after %ds: %d in queue/, tmp/ %s; %d acknowledged " \
            "messages not delivered yet" % (DRAIN_TIMEOUT, len(p.queue()),
                                            os.listdir(os.path.join(p.spool, "tmp")), len(lost))
        if lost:
            for t in lost[:5]:
                qid = acked[t]
                print("    lost %s, queued as %s: %s" % (t, qid, [
                    ln for ln in log.splitlines() if qid in ln] or "not in the log"))
        assert not lost, "%d acknowledged messages never arrived: %s" % (len(lost), lost[:20])
        assert len(acked) >= MESSAGES // 2, "too few messages acknowledged to prove anything"
        assert corrupt == [], "queue files moved to corrupt/: %s" % corrupt
        assert dsns == 0, "%d bounces: the sink accepts everything" % dsns
        assert p.proc.poll() is None, "posternd died after the last restart"
    except BaseException:
        # the instance's directory goes below: show what its log says first
        lines = p.log().splitlines() if os.path.exists(p.logfile) else []
        bad = [ln for ln in lines if "error" in ln or "warning" in ln or "killed" in ln]
        print("--- %d error/warning lines of %d in posternd's log, the last 40:" % (
            len(bad), len(lines)))
        print("\n".join(bad[-40:]))
        print("--- its last 30 lines:")
        print("\n".join(lines[-30:]))
        raise
    finally:
        if source is not None and source.poll() is None:
            source.kill()
            source.wait()
        if p.proc is not None and p.proc.poll() is None:
            p.stop()
        for pid in procs_of(p):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        p.cleanup()
        sink.cleanup()


run([test_kill9_during_load_loses_nothing])

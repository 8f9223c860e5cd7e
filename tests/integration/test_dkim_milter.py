"""postern-milter (milter/) signing outbound mail for a real, private
Postfix that calls it through smtpd_milters: the chain is dkim (listed
first), the attachments filter (a strip rule) and Postern's milter client
talking to tests/milter/test-milter, which changes the Subject and inserts
a field; the policy adds X-Spam-Status, which sign_headers names and
oversigns. postern-milter makes the message Postfix will relay (the edits
applied to its copy, the added fields above it) before its late step
signs it, then hands Postfix the edits, the fields and the DKIM-Signature
on top: the message smtp-sink receives behind Postfix carries every change
and verifies with dkimpy fetching the key from the test's nsd (and a
change after signing does not). Inbound mail (a client outside
relay.trusted_networks) is not signed. Postfix is started as SERVICES.md
says (bench/relay_bench.py's Postfix class); needs root."""
import os
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time

from harness import BUILD, SRC, Postern, Sink, Skip, free_port, run, skip
from test_dkim import Keys, SINK_FIELDS, as_crlf, dkimpy_verifies_at, edited_message, start_nsd
from test_milter import TestMilter

MILTER = os.path.join(BUILD, "postern-milter")
FILTERS = ('filters = ( { name = "dkim"; sign_headers = [ "from", "to", "subject", "date", '
           '"message-id", "mime-version", "content-type", "x-inserted", "x-spam-status" ]; '
           'oversign_headers = [ "from", "subject", "x-spam-status" ]; '
           'keys = ( { domain = "example.com"; selector = "sel"; key_file = "%s"; } ); },\n'
           '  { name = "attachments"; rules = ( { id = "batch"; extensions = [ "bat" ]; '
           'action = "strip"; } ); },\n'
           '  { name = "milter"; address = "%s"; } );\n')


def postfix_class():
    """bench/relay_bench.py's private Postfix (SERVICES.md's recipe)."""
    if shutil.which("postfix") is None or shutil.which("postconf") is None:
        raise Skip("Postfix is not installed (Debian package postfix)")
    if os.geteuid() != 0:
        raise Skip("a private Postfix instance needs root")
    sys.path.insert(0, os.path.join(SRC, "bench"))
    from relay_bench import Postfix
    return Postfix


class Milter:
    """postern-milter on a free loopback port with a posternd config whose
    trusted network is 127.0.0.1 (Postfix's client here); stopped by its
    pid."""

    def __init__(self, extra, trusted="127.0.0.1/32"):
        self.port = free_port()
        self.cfg = Postern(relay='local_domains = ["example.test"]; trusted_networks = ["%s"];'
                           % trusted, extra=extra)
        self.logfile = os.path.join(self.cfg.dir, "milter.log")
        self.log_fd = open(self.logfile, "w")
        self.proc = subprocess.Popen(
            [MILTER, "-c", self.cfg.conf, "-l", "inet:%d@127.0.0.1" % self.port,
             "-T", self.cfg.dir], stdout=self.log_fd, stderr=subprocess.STDOUT)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
        raise RuntimeError("postern-milter did not start: " + self.log())

    def log(self):
        with open(self.logfile, errors="replace") as f:
            return f.read()

    def cleanup(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log_fd.close()
        self.final_log = self.log()  # with what a sanitizer said at exit
        self.cfg.cleanup()


class Setup:
    """nsd with the key, test-milter, postern-milter (outbound: trusted
    127.0.0.1; and one for which 127.0.0.1 is not trusted), the sink and
    Postfix with one smtpd per milter."""

    def __init__(self):
        self.parts = []
        self.milters = []
        try:
            Postfix = postfix_class()
            self.keys = Keys()
            self.parts.append(self.keys)
            self.nsd = start_nsd(self.keys)
            self.parts.append(self.nsd)
            self.test_milter = TestMilter(kind="inet")
            self.parts.append(self.test_milter)
            extra = FILTERS % (self.keys.key, self.test_milter.address)
            self.milter = Milter(extra)
            self.inbound_milter = Milter(extra, trusted="127.0.0.100/32")
            for m in (self.milter, self.inbound_milter):
                self.parts.append(m)
                self.milters.append(m)
            self.sink = Sink()
            self.parts.append(self.sink)
            self.workdir = tempfile.mkdtemp(prefix="postern-pfx-")
            os.chmod(self.workdir, 0o755)
            self.postfix = Postfix(self.workdir, self.sink.port)
            self.postfix.cleanup = self.stop_postfix
            self.parts.append(self.postfix)
            self.postfix._postconf("-e", "smtpd_milters = inet:127.0.0.1:%d" % self.milter.port,
                                   "milter_default_action = tempfail",
                                   "milter_protocol = 6",
                                   "milter_command_timeout = 60s",
                                   "milter_content_timeout = 60s")
            self.inbound_port = free_port()
            self.postfix._postconf(
                "-M", "127.0.0.1:%d/inet = 127.0.0.1:%d inet n - n - - smtpd "
                "-o smtpd_milters=inet:127.0.0.1:%d"
                % (self.inbound_port, self.inbound_port, self.inbound_milter.port))
            subprocess.run(["postfix", "-c", self.postfix.etc, "reload"], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1)
        except Exception:
            self.cleanup()
            raise

    def stop_postfix(self):
        self.postfix.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def cleanup(self):
        for p in reversed(self.parts):
            p.cleanup()
        self.parts = []


_setup = None


def setup():
    global _setup
    if _setup is None:
        _setup = Setup()
    return _setup


def send(s, msg, port=None):
    with smtplib.SMTP("127.0.0.1", port or s.postfix.port, timeout=90) as c:
        c.ehlo("client.example.com")
        c.sendmail("bounce@example.com", ["x@sink.test"], msg)


def delivered(s, text, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        for m in s.sink.messages():
            if text in m:
                time.sleep(0.3)  # the dump may still be written
                return as_crlf([m for m in s.sink.messages() if text in m][0])
        time.sleep(0.1)
    raise AssertionError("not delivered: %s\n%s\n%s" % (text, s.postfix.log_tail(),
                                                        s.milter.log()))


def test_signature_covers_the_chains_changes():
    s = setup()
    send(s, edited_message())
    got = delivered(s, b"<late@example.com>")
    head, _, body = got.partition(b"\r\n\r\n")
    names = [h.split(b":", 1)[0].lower() for h in head.split(b"\r\n")
             if h[:1] not in (b" ", b"\t")]
    assert b"Subject: changed by the milter" in head, got
    assert b"X-Inserted: by the milter" in head, got
    assert b"X-Spam-Status: No" in head, got
    assert b'The attachment "run.bat" was removed' in body, got
    assert b"DKIM_SIGNED" in s.milter.log().encode(), s.milter.log()
    assert dkimpy_verifies_at(got, s.nsd), (got, s.milter.log())
    # the signature and the added fields are above the fields Postfix shows
    ours = [n for n in names if not n.startswith(SINK_FIELDS)][1:]
    assert ours.index(b"dkim-signature") < ours.index(b"x-spam-status") < \
        ours.index(b"from"), names
    sig = head.split(b"DKIM-Signature:", 1)[1].split(b"b=")[0].lower()
    for name in (b"subject", b"x-spam-status", b"x-inserted", b"content-type"):
        assert name in sig.replace(b"\r\n", b"").replace(b"\t", b"").replace(b" ", b""), sig
    assert not dkimpy_verifies_at(got.replace(b"changed by the milter", b"changed again"),
                                  s.nsd)


def test_inbound_not_signed():
    s = setup()
    msg = edited_message().replace(b"<late@example.com>", b"<inbound@example.com>")
    send(s, msg, port=s.inbound_port)
    got = delivered(s, b"<inbound@example.com>")
    head = got.partition(b"\r\n\r\n")[0]
    assert b"DKIM-Signature:" not in head, got
    assert b"Subject: changed by the milter" in head, got


try:
    if not os.access(MILTER, os.X_OK):
        skip("postern-milter not built at " + MILTER)
    run([test_signature_covers_the_chains_changes, test_inbound_not_signed])
finally:
    if _setup is not None:
        _setup.cleanup()
        for m in _setup.milters:
            print("--- postern-milter's log")
            print(m.final_log)
        if any("Sanitizer" in m.final_log or "runtime error" in m.final_log
               for m in _setup.milters):
            print("FAIL: a sanitizer report in postern-milter's log")
            sys.exit(1)

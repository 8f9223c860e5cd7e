"""postern-milter (milter/) in front of a real, private Postfix instance
that calls it through smtpd_milters, with the same config format as
posternd: the clamd filter against a real clamd (the EICAR test
signature), the spamd filter against a real spamd (SpamAssassin, a local
body rule scoring 20 for a marker string, the policy's tag_score 5) and
greylist on LMDB. A new triplet is refused by Postfix at RCPT with 451
4.7.1 (greylisted), and its retry after the delay is delivered to the
smtp-sink behind Postfix; an EICAR message is refused at the end of DATA
with a 5xx naming the signature, and nothing reaches the sink; a message
with the spam marker is delivered to the sink carrying X-Spam-Flag: YES
and the policy's X-Spam-Status with the SpamAssassin rule; a clean one is
delivered with X-Spam-Status: No. A second postern-milter runs Postern's
milter client against tests/milter/test-milter, which asks for message
edits: Postfix applies them (Subject changed, a field deleted, one
inserted, the body replaced, sender changed, a recipient added and one
removed, as smtp-sink's dump shows). A third one, whose spamd never
answers (a socket never accepted) and whose stage timeout (-t 1000) is
shorter than the filter's, answers 451 4.3.0 within the bound and serves
the next session too. Postfix is started as SERVICES.md says
(bench/relay_bench.py's Postfix class: own config dir, queue and log in a
temp dir, loopback only, relayhost = the sink)."""
import email.utils
import os
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time

from test_milter import TestMilter
from harness import (BUILD, EICAR, SIGNATURE, SPAM_MARKER, SRC, Postern, Sink, Skip, Spamd, clamd,
                     free_port, run, skip)

MILTER = os.path.join(BUILD, "postern-milter")
MARKER = SPAM_MARKER
DELAY = 2.0


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
    filters are clamd, spamd and greylist; stopped by its pid."""

    def __init__(self, extra, args=()):
        self.port = free_port()
        self.cfg = Postern(extra=extra)
        self.logfile = os.path.join(self.cfg.dir, "milter.log")
        self.log_fd = open(self.logfile, "w")
        self.proc = subprocess.Popen(
            [MILTER, "-c", self.cfg.conf, "-l", "inet:%d@127.0.0.1" % self.port,
             "-T", self.cfg.dir] + list(args), stdout=self.log_fd, stderr=subprocess.STDOUT)
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
    """clamd, spamd, postern-milter, the sink and Postfix, once per file."""

    def __init__(self):
        self.parts = []
        try:
            Postfix = postfix_class()
            self.clamd = clamd()
            try:
                self.spamd = Spamd()
            except RuntimeError:
                raise Skip("spamd did not start")
            self.parts.append(self.spamd)
            self.milter = Milter(
                'filters = ( { name = "greylist"; delay = "%ds"; retry_window = "1m"; '
                'auto_allow_after = 0; },\n'
                '  { name = "clamd"; address = "%s"; },\n'
                '  { name = "spamd"; address = "127.0.0.1:%d"; timeout = "20s"; } );\n'
                'policy = { inbound = { tag_score = 5; reject_score = 0; }; };\n'
                % (DELAY, self.clamd.address(), self.spamd.port))
            self.parts.append(self.milter)
            # a second postern-milter whose one filter is Postern's milter
            # client talking to test-milter, which asks for message edits
            self.test_milter = TestMilter(kind="inet")
            self.parts.append(self.test_milter)
            self.edit_milter = Milter('filters = ( { name = "milter"; address = "%s"; } );\n'
                                      % self.test_milter.address)
            self.parts.append(self.edit_milter)
            # a third one whose spamd never answers (a socket that is never
            # accepted), with a stage timeout shorter than the filter's
            self.hang = socket.socket()
            self.hang.bind(("127.0.0.1", 0))
            self.hang.listen(16)
            self.hang_milter = Milter(
                'filters = ( { name = "spamd"; address = "127.0.0.1:%d"; timeout = "30s"; } );\n'
                % self.hang.getsockname()[1], args=["-t", "1000"])
            self.parts.append(self.hang_milter)
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
            # a second smtpd whose milter is the editing one
            self.edit_port = free_port()
            self.postfix._postconf(
                "-M", "127.0.0.1:%d/inet = 127.0.0.1:%d inet n - n - - smtpd "
                "-o smtpd_milters=inet:127.0.0.1:%d"
                % (self.edit_port, self.edit_port, self.edit_milter.port))
            self.hang_port = free_port()
            self.postfix._postconf(
                "-M", "127.0.0.1:%d/inet = 127.0.0.1:%d inet n - n - - smtpd "
                "-o smtpd_milters=inet:127.0.0.1:%d"
                % (self.hang_port, self.hang_port, self.hang_milter.port))
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
        if getattr(self, "hang", None) is not None:
            self.hang.close()


_setup = None
_setup_failed = None


def setup():
    global _setup, _setup_failed
    if _setup_failed is not None:
        raise _setup_failed
    if _setup is None:
        try:
            _setup = Setup()
        except Exception as e:
            _setup_failed = e
            raise
    return _setup


def message(sender, subject, body):
    return ("From: %s\r\nTo: joe@sink.test\r\nSubject: %s\r\nMessage-ID: <%s@example.org>\r\n"
            "Date: %s\r\n\r\n%s\r\n"
            % (sender, subject, subject.replace(" ", "."), email.utils.formatdate(), body)).encode()


def attempt(s, sender, body, port=None, rcpts=("joe@sink.test",)):
    """One SMTP transaction to Postfix: returns (stage, code, text)."""
    with smtplib.SMTP("127.0.0.1", port or s.postfix.port, timeout=90) as c:
        c.ehlo("client.example.org")
        code, text = c.mail(sender)
        if code != 250:
            return "mail", code, text
        for r in rcpts:
            code, text = c.rcpt(r)
            if code != 250:
                return "rcpt", code, text
        code, text = c.data(body)
        return "data", code, text


def past_greylist(s, sender, body):
    """Sends body, retrying once after the greylist delay; returns the
    answer of the retry."""
    stage, code, text = attempt(s, sender, body)
    assert (stage, code) == ("rcpt", 451), (stage, code, text, s.milter.log())
    time.sleep(DELAY + 0.5)
    return attempt(s, sender, body)


def delivered(s, text, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        for m in s.sink.messages():
            if text.encode() in m:
                time.sleep(0.2)  # the dump may still be written
                return [m for m in s.sink.messages() if text.encode() in m][0]
        time.sleep(0.1)
    raise AssertionError("not delivered: %s\n%s\n%s" % (text, s.postfix.log_tail(),
                                                        s.milter.log()))


def test_new_triplet_greylisted():
    s = setup()
    body = message("grey@example.org", "grey test", "hello")
    stage, code, text = attempt(s, "grey@example.org", body)
    assert (stage, code) == ("rcpt", 451), (stage, code, text)
    assert text.startswith(b"4.7.1"), text
    assert b"reylist" in text, text
    # an immediate retry is still early
    stage, code, text = attempt(s, "grey@example.org", body)
    assert (stage, code) == ("rcpt", 451), (stage, code, text)
    time.sleep(DELAY + 0.5)
    assert attempt(s, "grey@example.org", body)[1] == 250
    m = delivered(s, "grey.test")
    assert b"X-Spam-Status: No" in m, m


def test_eicar_rejected_at_end_of_data():
    s = setup()
    body = (b"From: virus@example.org\r\nTo: joe@sink.test\r\nSubject: eicar test\r\n\r\n" +
            EICAR + b"\r\n")
    before = len(s.sink.messages())
    stage, code, text = past_greylist(s, "virus@example.org", body)
    assert stage == "data" and 500 <= code < 600, (stage, code, text, s.milter.log())
    assert SIGNATURE.encode() in text, text
    time.sleep(1)
    assert len(s.sink.messages()) == before
    assert not any(b"eicar test" in m for m in s.sink.messages())


def test_spam_tagged_and_delivered():
    s = setup()
    body = message("spam@example.org", "spam test", "buy now " + MARKER)
    stage, code, text = past_greylist(s, "spam@example.org", body)
    assert (stage, code) == ("data", 250), (stage, code, text, s.milter.log())
    m = delivered(s, "spam.test")
    head = m.split(b"\r\n\r\n", 1)[0] if b"\r\n\r\n" in m else m.split(b"\n\n", 1)[0]
    assert b"X-Spam-Flag: YES" in head, m
    assert b"X-Spam-Status: Yes" in head, m
    assert b"POSTERN_TEST_SPAM" in head, m


def test_message_edits_applied_by_postfix():
    s = setup()
    body = ("From: edit@example.org\r\nTo: joe@sink.test\r\nSubject: edit test\r\n"
            "X-Old: to be deleted\r\n"
            "X-Test-Milter: chgheader Subject 1 edited subject\r\n"
            "X-Test-Milter: delheader X-Old 1\r\n"
            "X-Test-Milter: insheader 0 X-First first\r\n"
            "X-Test-Milter: replbody replaced body\r\n"
            "X-Test-Milter: chgfrom <new-sender@example.org>\r\n"
            "X-Test-Milter: addrcpt <added@sink.test>\r\n"
            "X-Test-Milter: delrcpt <gone@sink.test>\r\n"
            "\r\noriginal body\r\n").encode()
    stage, code, text = attempt(s, "edit@example.org", body, port=s.edit_port,
                                rcpts=("joe@sink.test", "gone@sink.test"))
    assert (stage, code) == ("data", 250), (stage, code, text, s.edit_milter.log())
    m = delivered(s, "edited subject")
    head, _, rest = m.replace(b"\r\n", b"\n").partition(b"\n\n")
    assert b"Subject: edited subject" in head, m
    assert b"X-Old: to be deleted" not in head, m
    assert b"X-First: first" in head, m
    assert b"replaced body" in rest and b"original body" not in rest, m
    # smtp-sink's dump names the envelope it was given
    lines = head.split(b"\n")
    assert b"X-Mail-Args: <new-sender@example.org>" in lines, m
    rcpts = sorted(x.split()[1] for x in lines if x.startswith(b"X-Rcpt-Args:"))
    assert rcpts == [b"<added@sink.test>", b"<joe@sink.test>"], m
    assert b"X-Spam-Status: No" in head, m


def test_stage_timeout_tempfails_and_milter_goes_on():
    s = setup()
    body = message("slow@example.org", "slow test", "hello")
    start = time.time()
    stage, code, text = attempt(s, "slow@example.org", body, port=s.hang_port)
    took = time.time() - start
    assert (stage, code) == ("data", 451), (stage, code, text, s.hang_milter.log())
    assert text.startswith(b"4.3.0"), text
    assert took < 10, took
    assert "did not answer within 1000 ms" in s.hang_milter.log(), s.hang_milter.log()
    # the milter still serves: the next session gets as far as DATA again
    stage, code, text = attempt(s, "slow@example.org", body, port=s.hang_port)
    assert (stage, code) == ("data", 451), (stage, code, text)
    assert s.hang_milter.proc.poll() is None


try:
    if not os.access(MILTER, os.X_OK):
        skip("postern-milter not built at " + MILTER)
    run([test_new_triplet_greylisted, test_eicar_rejected_at_end_of_data,
         test_spam_tagged_and_delivered, test_message_edits_applied_by_postfix,
         test_stage_timeout_tempfails_and_milter_goes_on])
finally:
    if _setup is not None:
        _setup.cleanup()
        logs = [("postern-milter", _setup.milter), ("the editing postern-milter",
                _setup.edit_milter), ("the hanging postern-milter", _setup.hang_milter)]
        for name, m in logs:
            print("--- %s's log" % name)
            print(m.final_log)
        if any("Sanitizer" in m.final_log or "runtime error" in m.final_log for _, m in logs):
            print("FAIL: a sanitizer report in postern-milter's log")
            sys.exit(1)

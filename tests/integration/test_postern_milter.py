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
the next session too. Started as root (as here), each postern-milter
runs as the config's server.user / server.group (the harness's nobody /
nogroup) once it listens, with the greylist's LMDB directory given to
that user; one whose server.user or server.group does not exist exits
non-zero at once, naming it. Postfix is started as SERVICES.md says
(bench/relay_bench.py's Postfix class: own config dir, queue and log in a
temp dir, loopback only, relayhost = the sink)."""
import email.utils
import grp
import os
import pwd
import smtplib
import socket
import subprocess
import sys
import time

from test_milter import TestMilter
from harness import (EICAR, SIGNATURE, SPAM_MARKER, Postern, Sink, Skip, Spamd, clamd, free_port,
                     run, skip)
from pmilter_fixture import GROUP, MILTER, USER, Milter, MilterPostfix, postfix_class

MARKER = SPAM_MARKER
DELAY = 2.0


class Setup:
    """clamd, spamd, postern-milter, the sink and Postfix, once per file."""

    def __init__(self):
        self.parts = []
        try:
            postfix_class()  # skips early without Postfix or root
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
            self.postfix = MilterPostfix(self.sink.port, self.milter.port,
                                         {"edit": self.edit_milter.port,
                                          "hang": self.hang_milter.port})
            self.parts.append(self.postfix)
            self.edit_port = self.postfix.ports["edit"]
            self.hang_port = self.postfix.ports["hang"]
        except Exception:
            self.cleanup()
            raise

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


def ids(status, name):
    """The numbers of /proc/PID/status's line name (Uid:, Gid:, Groups:)."""
    for line in status.splitlines():
        if line.startswith(name + ":"):
            return [int(x) for x in line.split()[1:]]
    raise AssertionError("no %s line in %s" % (name, status))


def test_runs_as_configured_user():
    s = setup()
    uid, gid = pwd.getpwnam(USER).pw_uid, grp.getgrnam(GROUP).gr_gid
    for m in (s.milter, s.edit_milter, s.hang_milter):
        with open("/proc/%d/status" % m.proc.pid) as f:
            status = f.read()
        # real, effective, saved and file-system ids; no other group
        assert ids(status, "Uid") == [uid] * 4, (status, m.log())
        assert ids(status, "Gid") == [gid] * 4, (status, m.log())
        assert ids(status, "Groups") in ([], [gid]), (status, m.log())
        assert "running as user %s" % USER in m.log(), m.log()
    # the greylist's LMDB (spool_dir/state) made and written as that user
    state = os.path.join(s.milter.cfg.spool, "state")
    for path in (s.milter.cfg.spool, state, os.path.join(state, "data.mdb")):
        st = os.stat(path)
        assert (st.st_uid, st.st_gid) == (uid, gid), (path, st, s.milter.log())


def unknown_user(old, new, name):
    """postern-milter with old replaced by new in its config exits non-zero
    within a few seconds, with a message naming name, and never listens
    (the config has a filter: only the user stops it)."""
    cfg = Postern(extra='filters = ( { name = "greylist"; } );\n')
    try:
        with open(cfg.conf) as f:
            text = f.read()
        assert old in text, text
        with open(cfg.conf, "w") as f:
            f.write(text.replace(old, new))
        port = free_port()
        start = time.time()
        p = subprocess.Popen([MILTER, "-c", cfg.conf, "-l", "inet:%d@127.0.0.1" % port],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            out = p.communicate(timeout=10)[0].decode(errors="replace")
        except subprocess.TimeoutExpired:
            p.kill()
            out = p.communicate()[0].decode(errors="replace")
            raise AssertionError("postern-milter still runs with %s: %s" % (new, out))
        assert p.returncode != 0, out
        assert time.time() - start < 5, out
        assert name in out and "does not exist" in out, out
        assert "listening" not in out, out
    finally:
        cfg.cleanup()


def test_unknown_user_exits_at_once():
    if os.geteuid() != 0:
        raise Skip("postern-milter changes user only when started as root")
    unknown_user('user = "%s";' % USER, 'user = "postern-no-such-user";',
                 "server.user postern-no-such-user")
    unknown_user('group = "%s";' % GROUP, 'group = "postern-no-such-group";',
                 "server.group postern-no-such-group")


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
    run([test_runs_as_configured_user, test_unknown_user_exits_at_once,
         test_new_triplet_greylisted, test_eicar_rejected_at_end_of_data,
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

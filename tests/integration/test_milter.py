"""The milter filter in the real posternd against tests/milter/test-milter (a
milter built with Sendmail's libmilter, steered by the envelope, by its
command line and by X-Test-Milter header fields; it writes down every
callback and macro it sees) over unix, TCP and TCP6 sockets, with smtp-sink
downstream: the commands and macros of each stage, the header and body at
end of message, replies at each stage (reject, tempfail, reply codes one-
and multi-line, discard, quarantine, accept), every modification, the
protocol steps and replies a milter leaves out, skip, progress, two milters
side by side, a connection reused for a session's messages and replayed
after idle_timeout, closed when the session ends, the milter put back in step when another filter refused
a recipient it took; and the faults: a milter that is down, hangs, answers
garbage or hangs up (on_error)."""
import os
import shutil
import smtplib
import socket
import struct
import subprocess
import tempfile
import threading
import time

from harness import BUILD, Postern, Sink, Skip, free_port, run

TEST_MILTER = os.path.join(BUILD, "tests", "milter", "test-milter")
SUBJECT = "milter test"


class TestMilter:
    """test-milter on a unix socket in a temp dir (kind "unix"), or on a free
    port of 127.0.0.1 ("inet") or ::1 ("inet6"); its log in self.log_path."""

    def __init__(self, kind="unix", args=()):
        if not os.path.exists(TEST_MILTER):
            raise Skip("tests/milter/test-milter not built")
        self.dir = tempfile.mkdtemp(prefix="postern-milter-")
        os.chmod(self.dir, 0o755)
        self.log_path = os.path.join(self.dir, "milter.log")
        if kind == "unix":
            path = os.path.join(self.dir, "m.sock")
            spec, self.address = "unix:" + path, "unix:" + path
        elif kind == "inet":
            port = free_port()
            spec, self.address = "inet:%d@127.0.0.1" % port, "inet:127.0.0.1:%d" % port
        else:
            port = free_port("::1")
            spec, self.address = "inet6:%d@[::1]" % port, "inet6:[::1]:%d" % port
        self.proc = subprocess.Popen([TEST_MILTER, "-p", spec, "-l", self.log_path] + list(args),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while time.time() < deadline:
            if "ready" in self.log():
                return
            if self.proc.poll() is not None:
                raise RuntimeError("test-milter exited")
            time.sleep(0.05)
        raise RuntimeError("test-milter did not start")

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def lines(self):
        return self.log().splitlines()

    def wait(self, text, timeout=5, count=1):
        """True once text is in the log count times (within timeout)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.log().count(text) >= count:
                return True
            time.sleep(0.05)
        return False

    def cleanup(self):
        # libmilter takes seconds to wind down on SIGTERM; nothing to keep here
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


def postern(sink, milters, **kw):
    """posternd relaying example.test to sink, with the milter groups given
    (each a dict of keys, or a TestMilter)."""
    groups = []
    for m in milters:
        keys = {"address": m.address} if isinstance(m, TestMilter) else dict(m)
        groups.append("{ name = \"milter\"; %s }" % " ".join(
            "%s = %s;" % (k, v if isinstance(v, (int, float)) or v.startswith("[") else '"%s"' % v)
            for k, v in keys.items()))
    extra = ("filters = ( %s );\n" % ", ".join(groups) +
             'transports = ( { domain = "example.test"; nexthop = "smtp:[127.0.0.1]:%d"; } );\n'
             % sink.port)
    return Postern(extra=extra, **kw).start()


def message(*fields, body="hello from the test\r\n"):
    head = "".join("%s\r\n" % f for f in ("Subject: " + SUBJECT,) + fields)
    return (head + "\r\n" + body).encode()


def send(p, msg, rcpts=("user@example.test",), sender="sender@example.org", helo="client.test"):
    """One message; returns (code, text) of the reply to the content."""
    with smtplib.SMTP("127.0.0.1", p.port(), timeout=20) as c:
        c.ehlo(helo)
        code, text = c.mail(sender)
        assert code == 250, (code, text)
        for r in rcpts:
            code, text = c.rcpt(r)
            assert code == 250, (r, code, text)
        return c.data(msg)


def sunk(sink, n=1):
    msgs = sink.wait_messages(n)
    assert len(msgs) >= n, msgs
    return msgs


def cleanup(*things):
    for t in things:
        if t is not None:
            t.cleanup()


def setup(kind="unix", args=(), keys=None, **kw):
    m = TestMilter(kind, args)
    sink = Sink()
    try:
        group = {"address": m.address}
        group.update(keys or {})
        return m, sink, postern(sink, [group], **kw)
    except Exception:
        cleanup(m, sink)
        raise


def order_of(lines, prefixes):
    """Index of the first line starting with each prefix, after the previous one."""
    out, start = [], 0
    for pre in prefixes:
        for i in range(start, len(lines)):
            if lines[i].startswith(pre):
                out.append(i)
                start = i + 1
                break
        else:
            raise AssertionError("%r not found after line %d in %s" % (pre, start, lines))
    return out


def check_session(kind):
    m, sink, p = setup(kind)
    try:
        code, text = send(p, message("X-Extra: one\r\n\ttwo"))
        assert code == 250, (code, text)
        assert b"Subject: " + SUBJECT.encode() in sunk(sink)[0]
        assert m.wait("eom")
        lines = m.lines()
        order_of(lines, ["negotiate", "connect unknown 127.0.0.1", "helo client.test",
                         "mail <sender@example.org>", "rcpt <user@example.test>", "data",
                         "header Received:from client.test", "header Subject:" + SUBJECT,
                         "header X-Extra:one\\n\\ttwo", "eoh", "body 21", "eom"])
        log = m.log()
        for want in ("macro connect j=mx.postern.test", "macro connect {daemon_name}=mx",
                     "macro connect {client_addr}=127.0.0.1", "macro connect v=Postern ",
                     "macro connect _=unknown [127.0.0.1]",
                     "macro mail {mail_addr}=sender@example.org",
                     "macro rcpt {rcpt_addr}=user@example.test"):
            assert want in log, (want, log)
        qid = [l.split("=")[1] for l in lines if l.startswith("macro mail i=")][0]
        assert "macro eom i=" + qid in log and qid in p.log(), (qid, log)
        assert "macro connect i=" not in log, log  # no queue id before MAIL
    finally:
        cleanup(p, sink, m)


def test_unix_socket_session():
    check_session("unix")


def test_tcp_socket_session():
    check_session("inet")


def test_tcp6_socket_session():
    try:
        socket.socket(socket.AF_INET6).bind(("::1", 0))
    except OSError:
        raise Skip("no ::1 here")
    check_session("inet6")


def test_replies_at_each_stage():
    """HELO reject, MAIL tempfail and reply code, RCPT reject (that
    recipient only, the others go on), reply codes and tempfail at end of
    message, a multi-line reply, accept for the message."""
    m, sink, p = setup()
    try:
        with smtplib.SMTP("127.0.0.1", p.port(), timeout=20) as c:
            code, text = c.ehlo("reject.helo.test")
            assert code == 550 and b"5.7.1 Command rejected" in text, (code, text)
            code, text = c.ehlo("tempfail.helo.test")
            assert code == 451 and b"4.7.1" in text, (code, text)
            assert c.ehlo("client.test")[0] == 250
            code, text = c.mail("mail-tempfail@example.org")
            assert code == 451, (code, text)
            code, text = c.mail("mail-replycode@example.org")
            assert code == 553 and text == b"5.7.0 refused by the test milter", (code, text)
            assert c.mail("sender@example.org")[0] == 250
            code, text = c.rcpt("rcpt-reject@example.test")
            assert code == 550 and b"5.7.1" in text, (code, text)
            code, text = c.rcpt("rcpt-replycode@example.test")
            assert code == 553, (code, text)
            code, text = c.rcpt("rcpt-tempfail@example.test")
            assert code == 451, (code, text)
            assert c.rcpt("user@example.test")[0] == 250
            code, text = c.data(message("X-Test-Milter: replycode 554 5.7.9 no thanks"))
            assert code == 554 and text == b"5.7.9 no thanks", (code, text)
            # the next transaction on the same milter connection (after ABORT)
            assert c.mail("sender@example.org")[0] == 250
            assert c.rcpt("user@example.test")[0] == 250
            code, text = c.data(message("X-Test-Milter: multiline 550 5.7.2 first|second"))
            assert code == 550 and text == b"5.7.2 first\n5.7.2 second", (code, text)
            assert c.mail("sender@example.org")[0] == 250
            assert c.rcpt("user@example.test")[0] == 250
            code, text = c.data(message("X-Test-Milter: tempfail"))
            assert code == 451 and b"4.7.1" in text, (code, text)
            assert c.mail("mail-accept@example.org")[0] == 250
            assert c.rcpt("rcpt-reject@example.test")[0] == 250  # accepted: not asked
            code, text = c.data(message("X-Test-Milter: reject"))
            assert code == 250, (code, text)
        log = p.log()
        for want in ("milter milter: reject at helo", "milter milter: tempfail at mail",
                     "milter milter: reject at rcpt of rcpt-reject@example.test",
                     "milter milter: reject at end of message: 554 5.7.9 no thanks",
                     "MILTER_REJECT(0)", "MILTER_TEMPFAIL(0)"):
            assert want in log, (want, log)
        assert m.log().count("negotiate") == 2, m.log()  # the harness's probe, then ours
        # a transaction given up after RCPT: ABORT before the next MAIL
        with smtplib.SMTP("127.0.0.1", p.port(), timeout=20) as c:
            c.ehlo("client.test")
            assert c.mail("sender@example.org")[0] == 250
            assert c.rcpt("user@example.test")[0] == 250
            assert c.rset()[0] == 250
            assert c.sendmail("other@example.org", ["user@example.test"], message()) == {}
        lines = m.lines()
        order_of(lines, ["mail <sender@example.org>", "rcpt <user@example.test>", "abort",
                         "mail <other@example.org>", "eom"])
    finally:
        cleanup(p, sink, m)


def test_discard_and_quarantine():
    m, sink, p = setup()
    try:
        code, text = send(p, message("X-Test-Milter: discard"))
        assert code == 250, (code, text)
        code, text = send(p, message("X-Test-Milter: quarantine looks bad"))
        assert code == 250, (code, text)
        assert p.wait_log("milter milter: quarantine: looks bad"), p.log()
        assert p.wait_log("MILTER_QUARANTINE(0)"), p.log()
        assert p.wait_log("action=discard"), p.log()
        held = os.listdir(os.path.join(p.spool, "hold"))
        assert len(held) == 1, held
        time.sleep(1)
        assert sink.messages() == [], sink.messages()
    finally:
        cleanup(p, sink, m)


def test_connect_reject_and_accept():
    for action, greeting in (("reject", 554), ("tempfail", 451)):
        m, sink, p = setup(args=["-C", action])
        try:
            with socket.create_connection(("127.0.0.1", p.port()), timeout=10) as s:
                reply = s.recv(200)
                assert reply.startswith(b"%d " % greeting), reply
        finally:
            cleanup(p, sink, m)
    m, sink, p = setup(args=["-C", "accept"])
    try:
        code, text = send(p, message("X-Test-Milter: reject"), rcpts=["rcpt-reject@example.test"])
        assert code == 250, (code, text)
        assert len(sunk(sink)) == 1
        assert "helo" not in m.log() and "mail <" not in m.log(), m.log()
    finally:
        cleanup(p, sink, m)


def test_modifications():
    """Every modification, applied when the end-of-body reply accepts."""
    m, sink, p = setup()
    try:
        code, text = send(p, message(
            "X-Test-Milter: addheader X-Added added\\n\\tfolded",
            "X-Test-Milter: insheader 0 X-Inserted first",
            "X-Test-Milter: chgheader Subject 1 changed subject",
            "X-Old: remove me",
            "X-Test-Milter: delheader X-Old 1",
            "X-Test-Milter: replbody replaced body",
            "X-Test-Milter: chgfrom <new-sender@example.org>",
            "X-Test-Milter: addrcpt <added@example.test>",
            "X-Test-Milter: addrcpt_par <added2@example.test> NOTIFY=NEVER",
            "X-Test-Milter: delrcpt <user@example.test>"),
            rcpts=["user@example.test", "other@example.test"])
        assert code == 250, (code, text, p.log())
        assert m.wait("delrcpt ok"), m.log()
        msgs = sunk(sink, 1)
        assert len(msgs) == 1, msgs
        # smtp-sink writes its dumps with LF line ends, its own fields first
        head, body = msgs[0].split(b"\n\n", 1)
        fields = head.split(b"\nReceived: from client.test", 1)[1].split(b"\n")
        names = [f.split(b":")[0] for f in fields if f[:1] not in (b" ", b"\t")]
        assert names[:2] == [b"X-Inserted", b"Subject"], names
        assert names[-1] == b"X-Added" and b"X-Added: added\n\tfolded" in head, head
        assert b"Subject: changed subject" in head and SUBJECT.encode() not in head, head
        assert b"X-Old:" not in head, head
        assert body.rstrip(b"\n") == b"replaced body", body  # smtp-sink ends with a blank line
        assert b"X-Mail-Args: <new-sender@example.org>" in head, head
        rcpts = [l.split()[1] for l in head.split(b"\n") if l.startswith(b"X-Rcpt-Args:")]
        assert sorted(rcpts) == [b"<added2@example.test>", b"<added@example.test>",
                                 b"<other@example.test>"], rcpts
        assert b"X-Rcpt-Args: <added2@example.test> NOTIFY=NEVER" in head, head
        assert p.wait_log("milter milter: 9 modifications applied"), p.log()
    finally:
        cleanup(p, sink, m)


def test_modification_dropped_when_rejected():
    m, sink, p = setup()
    try:
        code, _ = send(p, message("X-Test-Milter: addheader X-Added yes",
                                  "X-Test-Milter: reject"))
        assert code == 550
        code, _ = send(p, message("X-Test-Milter: addheader X-Second yes"))
        assert code == 250
        msgs = sunk(sink)
        assert len(msgs) == 1 and b"X-Second: yes" in msgs[0] and b"X-Added" not in msgs[0]
        # a modification the chain refuses is an error: on_error (tempfail)
        code, text = send(p, message("X-Test-Milter: addheader Bad:Name x"))
        assert code == 451 and b"milter temporarily unavailable" in text, (code, text)
        assert p.wait_log("cannot apply addheader Bad:Name: refused by the filter chain"), p.log()
    finally:
        cleanup(p, sink, m)


def test_steps_left_out_and_no_reply():
    """-x: steps the milter does not want are not sent; -n: every reply
    waived (nothing is waited for, the message still goes through and the
    end-of-body reply still counts); -L: header values with their leading
    space."""
    m, sink, p = setup(args=["-x", "helo,data,eoh", "-n", "-L"])
    try:
        big = "x" * 100 + "\r\n"
        code, text = send(p, message("X-Test-Milter: addheader X-Nr yes", body=big * 2000))
        assert code == 250, (code, text)
        assert b"X-Nr: yes" in sunk(sink)[0]
        log = m.log()
        assert "helo " not in log and "\ndata\n" not in log and "\neoh\n" not in log, log
        assert "header Subject: " + SUBJECT in log, log  # leading space kept
        assert [l for l in m.lines() if l.startswith("body ")] == \
            ["body 65535", "body 65535", "body 65535", "body 7395"], log
        code, text = send(p, message("X-Test-Milter: reject"))
        assert code == 550, (code, text)
    finally:
        cleanup(p, sink, m)


def test_skip_rest_of_body():
    m, sink, p = setup(args=["-s"])
    try:
        big = "x" * 100 + "\r\n"
        code, text = send(p, message("X-Test-Milter: addheader X-Skip yes", body=big * 2000))
        assert code == 250, (code, text)
        assert b"X-Skip: yes" in sunk(sink)[0]
        assert [l for l in m.lines() if l.startswith("body ")] == ["body 65535"], m.log()
    finally:
        cleanup(p, sink, m)


def test_macro_lists_asked_by_the_milter():
    m, sink, p = setup(args=["-m", "mail:{mail_addr}", "-m", "connect:j"])
    try:
        assert send(p, message())[0] == 250
        log = m.log()
        assert "macro mail {mail_addr}=sender@example.org" in log, log
        assert "macro mail i=" not in log and "macro connect {daemon_name}" not in log, log
        assert "macro rcpt i=" in log, log  # the configured list where it asked for none
    finally:
        cleanup(p, sink, m)


def test_configured_macros():
    m, sink, p = setup(keys={"connect_macros": '["{client_name}"]', "rcpt_macros": "i"})
    try:
        assert send(p, message())[0] == 250
        log = m.log()
        assert "macro connect {client_name}=unknown" in log, log
        assert "macro connect j=" not in log and "macro rcpt {rcpt_addr}" not in log, log
    finally:
        cleanup(p, sink, m)


def test_progress_and_content_timeout():
    m, sink, p = setup(keys={"content_timeout": "1s", "timeout": "10s"})
    try:
        code, text = send(p, message("X-Test-Milter: progress 2.5"))
        assert code == 250, (code, text)
        code, text = send(p, message("X-Test-Milter: sleep 2.5"))
        assert code == 451 and b"milter temporarily unavailable" in text, (code, text)
        assert p.wait_log("timeout waiting for the reply to end of message"), p.log()
    finally:
        cleanup(p, sink, m)


def test_two_milters():
    m1, m2, sink, p = TestMilter(), TestMilter("inet"), Sink(), None
    try:
        p = postern(sink, [{"id": "first", "address": m1.address},
                           {"id": "second", "address": m2.address}])
        code, text = send(p, message("X-Test-Milter: addheader X-Both yes"))
        assert code == 250, (code, text)
        assert sunk(sink)[0].count(b"X-Both: yes") == 2
        with smtplib.SMTP("127.0.0.1", p.port(), timeout=20) as c:
            c.ehlo("client.test")
            c.mail("sender@example.org")
            code, text = c.rcpt("rcpt-reject@example.test")
            assert code == 550, (code, text)
        assert p.wait_log("milter first: reject at rcpt"), p.log()
        assert p.wait_log("milter second: reject at rcpt"), p.log()
        assert "MILTER_FIRST_REJECT(0)" in p.log() and "MILTER_SECOND_REJECT(0)" in p.log()
    finally:
        cleanup(p, sink, m1, m2)


def test_session_reuse_and_idle_replay():
    """Three messages of a session over one milter connection; after
    idle_timeout the connection is closed (QUIT) and the session replayed
    on a new one: connect and helo again before the next MAIL."""
    m, sink, p = setup(keys={"idle_timeout": "500ms"})
    try:
        with smtplib.SMTP("127.0.0.1", p.port(), timeout=20) as c:
            c.ehlo("client.test")
            for _ in range(3):
                assert c.sendmail("sender@example.org", ["user@example.test"], message()) == {}
            before = m.log().count("negotiate")
            # every connection so far closed: ours and the harness's probe's
            assert m.wait("close", 5, count=before), m.log()
            assert c.sendmail("sender@example.org", ["user@example.test"], message()) == {}
        assert len(sunk(sink, 4)) == 4
        lines = m.lines()
        assert m.log().count("negotiate") == before + 1, m.log()
        last = max(i for i, l in enumerate(lines) if l.startswith("negotiate"))
        order_of(lines[last:], ["negotiate", "connect unknown", "helo client.test", "mail <",
                                "rcpt <", "eom"])
    finally:
        cleanup(p, sink, m)


def test_session_end_closes_the_connection():
    """When the SMTP session ends, its milter connection is closed (QUIT)
    at once, not left open until idle_timeout."""
    m, sink, p = setup(keys={"idle_timeout": "60s"})
    try:
        # the harness's start-up probe is an SMTP session too: its milter
        # connection goes first
        assert m.wait("close", 5, count=m.log().count("negotiate")), m.log()
        closed = m.log().count("close")
        with smtplib.SMTP("127.0.0.1", p.port(), timeout=20) as c:
            c.ehlo("client.test")
            assert c.sendmail("sender@example.org", ["user@example.test"], message()) == {}
            time.sleep(0.5)
            assert m.log().count("close") == closed, m.log()  # kept for the session
        assert m.wait("close", 5, count=closed + 1), m.log()
        assert len(sunk(sink, 1)) == 1
    finally:
        cleanup(p, sink, m)


def test_recipient_refused_by_another_filter():
    """The milter took a recipient that the next filter (dha) refused: at
    DATA it is put back in step (ABORT, then MAIL and the recipients the
    transaction really has), and the message goes through."""
    m, sink, p = TestMilter(), Sink(), None
    try:
        extra = ('filters = ( { name = "milter"; address = "%s"; },\n'
                 '  { name = "dha"; recipients = ["user@example.test"]; } );\n'
                 'transports = ( { domain = "example.test"; nexthop = "smtp:[127.0.0.1]:%d"; } );\n'
                 % (m.address, sink.port))
        p = Postern(extra=extra).start()
        with smtplib.SMTP("127.0.0.1", p.port(), timeout=20) as c:
            c.ehlo("client.test")
            assert c.mail("sender@example.org")[0] == 250
            code, text = c.rcpt("nobody@example.test")
            assert code == 550 and b"5.1.1" in text, (code, text)
            assert c.rcpt("user@example.test")[0] == 250
            code, text = c.data(message("X-Test-Milter: addheader X-Seen yes"))
            assert code == 250, (code, text)
        assert b"X-Seen: yes" in sunk(sink)[0]
        lines = m.lines()
        order_of(lines, ["rcpt <nobody@example.test>", "rcpt <user@example.test>", "abort",
                         "mail <sender@example.org>", "rcpt <user@example.test>", "data", "eom"])
        after = lines[max(i for i, l in enumerate(lines) if l == "abort"):]
        assert "rcpt <nobody@example.test>" not in after, lines
    finally:
        cleanup(p, sink, m)


# ---- faults: stand-ins that misbehave ----

class BadMilter:
    """A TCP server on 127.0.0.1 that takes connections and then does what
    mode says: "hang" (reads, never answers), "garbage" (answers with a
    frame of an unknown reply), "close" (hangs up), "huge" (a frame length
    over the limit)."""

    def __init__(self, mode):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.address = "inet:127.0.0.1:%d" % self.sock.getsockname()[1]
        self.mode = mode
        self.conns = []
        self.stop = False
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        self.sock.settimeout(0.2)
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            self.conns.append(c)
            try:
                c.settimeout(2)
                if self.mode == "extra-flags":
                    c.settimeout(10)
                    threading.Thread(target=self.extra_flags, args=(c,), daemon=True).start()
                    continue
                c.recv(1000)
                if self.mode == "garbage":
                    c.sendall(b"\0\0\0\1Z")
                elif self.mode == "huge":
                    c.sendall(b"\x7f\0\0\0c")
                elif self.mode == "close":
                    c.close()
            except OSError:
                pass

    def extra_flags(self, c):
        """OPTNEG asking for every step to be left out, plus RCPT_REJ
        (0x800) that was not offered; then 'continue' to end of body."""
        buf = b""
        while not self.stop:
            while len(buf) < 4 or len(buf) < 4 + struct.unpack(">I", buf[:4])[0]:
                try:
                    data = c.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                buf += data
            n = struct.unpack(">I", buf[:4])[0]
            cmd, buf = buf[4:5], buf[4 + n:]
            if cmd == b"O":
                c.sendall(struct.pack(">IcIII", 13, b"O", 6, 0, 0x800 | 0x27f))
            elif cmd == b"E":
                c.sendall(b"\0\0\0\1c")

    def cleanup(self):
        self.stop = True
        for c in self.conns:
            c.close()
        self.sock.close()


def greeting(p):
    with socket.create_connection(("127.0.0.1", p.port()), timeout=20) as s:
        return s.recv(200)


def test_milter_down_and_on_error():
    sink, p = Sink(), None
    port = free_port()
    try:
        p = postern(sink, [{"address": "inet:127.0.0.1:%d" % port}])
        reply = greeting(p)
        assert reply.startswith(b"451 4.7.1 milter temporarily unavailable"), reply
        assert p.wait_log("cannot connect"), p.log()
        p.cleanup()
        p = postern(sink, [{"address": "inet:127.0.0.1:%d" % port, "on_error": "skip"}])
        code, text = send(p, message())
        assert code == 250, (code, text)
        assert p.wait_log("MILTER_ERROR(0)"), p.log()
        assert len(sunk(sink)) == 1
        p.cleanup()
        p = postern(sink, [{"address": "inet:127.0.0.1:%d" % port, "on_error": "reject"}])
        assert greeting(p).startswith(b"554 5.7.1"), p.log()
    finally:
        cleanup(p, sink)


def test_misbehaving_milters():
    for mode, why in (("hang", "timeout waiting for the reply to negotiation"),
                      ("garbage", "bad reply 'Z': unknown reply"),
                      ("close", "connection closed by the milter"),
                      ("huge", "frame length 0 or over the limit")):
        bad, sink, p = BadMilter(mode), Sink(), None
        try:
            # under 1 s: the harness's start-up probe waits 1 s for the greeting
            p = postern(sink, [{"address": bad.address, "connect_timeout": "300ms",
                                "command_timeout": "300ms"}])
            start = time.time()
            reply = greeting(p)
            assert reply.startswith(b"451 4.7.1"), (mode, reply)
            assert time.time() - start < 5, mode
            assert p.wait_log(why), (mode, p.log())
        finally:
            cleanup(p, sink, bad)


def test_flags_not_offered_and_every_step_left_out():
    """A milter that asks for a flag it was not offered (RCPT_REJ) still
    works (logged once); with every step left out only end of message is
    sent, and a message goes through."""
    bad, sink, p = BadMilter("extra-flags"), Sink(), None
    try:
        p = postern(sink, [{"address": bad.address}])
        for _ in range(2):
            code, text = send(p, message())
            assert code == 250, (code, text)
        assert len(sunk(sink, 2)) == 2
        assert p.log().count("that were not offered: ignored") == 1, p.log()
    finally:
        cleanup(p, sink, bad)


if __name__ == "__main__":
    run([test_unix_socket_session, test_tcp_socket_session, test_tcp6_socket_session,
         test_replies_at_each_stage, test_discard_and_quarantine, test_connect_reject_and_accept,
         test_modifications, test_modification_dropped_when_rejected,
         test_steps_left_out_and_no_reply, test_skip_rest_of_body,
         test_macro_lists_asked_by_the_milter,
         test_configured_macros, test_progress_and_content_timeout, test_two_milters,
         test_session_reuse_and_idle_replay, test_session_end_closes_the_connection,
         test_recipient_refused_by_another_filter,
         test_milter_down_and_on_error,
         test_misbehaving_milters, test_flags_not_offered_and_every_step_left_out])

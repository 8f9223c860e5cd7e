"""The spamd filter in the real posternd against a real spamd (SpamAssassin 4
from Debian, one instance for the whole file, on a loopback port and a unix
socket, its site config in a temp dir: no network tests, no Bayes, and
local body rules (POSTERN_TEST_SPAM scoring 20 and POSTERN_TEST_HAM 0.5 for
marker strings; ALL_TRUSTED at 0 so that the scores are exact), with
Postfix's smtp-sink downstream: a message with the marker is refused at
the end of DATA by the policy's reject_score 15 (SpamAssassin's score and
SA_ rules in the log line); a clean one is delivered with the policy's
X-Spam-Status showing SPAMASSASSIN and the SA_ rules, User: from the
recipient reaching spamd, over the unix socket too; a message over
max_size is not sent (spamd's log shows no check) and is logged; spamd
down means accepted with X-Postern-Spamd: skipped and SPAMD_ERROR and no
score (or 451 with on_error "tempfail"). Stand-ins only for the faults
spamd will not make on demand: one that takes the message and never
answers (the message is accepted after the filter's deadline while an
unrelated session on the same worker answers at once) and one that answers
garbage (an error, never a score)."""
import email.utils
import smtplib
import socket
import threading
import time

from harness import SPAM_MARKER, SPAMD_LOCAL_CF, Postern, Raw, Sink, Skip, Spamd, free_port, run

MARKER = SPAM_MARKER
LOCAL_CF = SPAMD_LOCAL_CF + """body POSTERN_TEST_HAM /postern-test-ham-marker/
score POSTERN_TEST_HAM 0.5
describe POSTERN_TEST_HAM Postern test marker, harmless
"""
RELAY = 'local_domains = ["example.test", "sink.test"]; trusted_networks = ["127.0.0.100/32"];'


def message(body, subject="spamd test"):
    return ("From: sender@example.org\r\nTo: joe@sink.test\r\nSubject: %s\r\n"
            "Message-ID: <%s@example.org>\r\nDate: %s\r\n\r\n%s\r\n"
            % (subject, subject.replace(" ", "."), email.utils.formatdate(), body)).encode()


_spamd = None


def spamd():
    """The file's one spamd (it takes about a second to start)."""
    global _spamd
    if _spamd is None:
        try:
            _spamd = Spamd(LOCAL_CF, unix_socket=True, min_children=2, debian_cf=True)
        except (OSError, RuntimeError) as e:
            raise Skip("cannot run spamd: %s" % e)
    return _spamd


class StandIn:
    """A TCP server for the faults: "hang" reads the request and never
    answers; "garbage" answers a line that is not spamd's and closes."""

    def __init__(self, mode):
        self.mode = mode
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.received = b""
        self.conns = []
        self.stopped = False
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        self.sock.settimeout(0.2)
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            self.conns.append(c)
            c.settimeout(0.2)
            deadline = time.time() + 30
            while not self.stopped and time.time() < deadline:
                try:
                    chunk = c.recv(65536)
                except socket.timeout:
                    continue
                except OSError:
                    break
                if not chunk:
                    break
                self.received += chunk
                if self.mode == "garbage" and self.request_complete():
                    c.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")
                    c.close()
                    break

    def request_complete(self):
        head, sep, body = self.received.partition(b"\r\n\r\n")
        if not sep:
            return False
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                return len(body) >= int(line.split(b":", 1)[1])
        return True

    def cleanup(self):
        self.stopped = True
        self.thread.join(5)
        for c in self.conns:
            c.close()
        self.sock.close()


def postern(address, sink, keys="", policy="reject_score = 15;", timeout="20s"):
    return Postern(relay=RELAY, extra=(
        'queue = { min_backoff = "1s"; max_backoff = "1s"; idle_timeout = "1s"; };\n'
        'transports = ( { domain = "sink.test"; nexthop = "smtp:[127.0.0.1]:%d"; } );\n'
        'filters = ( { name = "spamd"; address = "%s"; timeout = "%s"; %s } );\n'
        'policy = { inbound = { %s }; };\n' % (sink.port, address, timeout, keys, policy))).start()


def send(p, body, rcpts=("joe@sink.test",)):
    with smtplib.SMTP("127.0.0.1", p.port(), timeout=30) as c:
        c.sendmail("sender@example.org", list(rcpts), body)


def cleanup(*things):
    for t in things:
        if t is not None:
            t.cleanup()


def session_line(p, text):
    """The log line of the message with text in it."""
    assert p.wait_log(text), p.log()
    return [line for line in p.log().splitlines() if text in line][-1]


def test_spam_rejected_at_end_of_data():
    sd, sink, p = spamd(), Sink(), None
    try:
        p = postern("127.0.0.1:%d" % sd.port, sink)
        with smtplib.SMTP("127.0.0.1", p.port(), timeout=30) as c:
            c.ehlo("client.test")
            c.mail("sender@example.org")
            assert c.rcpt("joe@sink.test")[0] == 250
            code, text = c.data(message("buy now " + MARKER, "spam one"))
        assert code == 554 and b"5.7.1" in text, (code, text)
        line = session_line(p, "SA_POSTERN_TEST_SPAM")
        assert "SPAMASSASSIN(20" in line, line
        score = float(line.split(" score=")[1].split()[0])
        assert score >= 20, line
        assert p.wait_log("spamd: "), p.log()
        assert "score 20.0/5.0 (spam)" in p.log(), p.log()
        assert p.queue() == [], p.queue()
        assert sink.messages() == []
    finally:
        cleanup(p, sink)


def test_clean_message_delivered_with_status():
    """User: is the first recipient's local part (spamd logs whose
    preferences it used); the symbols reach the delivered message."""
    sd, sink, p = spamd(), Sink(), None
    try:
        p = postern("127.0.0.1:%d" % sd.port, sink, 'user = "recipient";')
        send(p, message("hello, a clean postern-test-ham-marker message", "clean one"),
             ["Joe.Bloggs@sink.test"])
        msgs = sink.wait_messages(1)
        assert len(msgs) == 1, (msgs, p.log())
        m = msgs[0]
        status = m.split(b"X-Spam-Status: ", 1)[1].split(b"\nX-", 1)[0].replace(b"\n\t", b" ")
        assert status.startswith(b"No, score="), m
        assert b"SPAMASSASSIN(0.5)" in status and b"SA_POSTERN_TEST_HAM(0)" in status, m
        assert b"SA_POSTERN_TEST_SPAM" not in status, m
        assert b"X-Postern-Spamd" not in m, m
        assert "for joe.bloggs:" in sd.log(), sd.log()[-2000:]
    finally:
        cleanup(p, sink)


def test_unix_socket_and_report():
    sd, sink, p = spamd(), Sink(), None
    try:
        p = postern(sd.socket, sink, 'command = "report";', policy="")
        send(p, message("marked " + MARKER, "report one"))
        msgs = sink.wait_messages(1)
        assert len(msgs) == 1, (msgs, p.log())
        status = msgs[0].split(b"X-Spam-Status: ", 1)[1].replace(b"\n\t", b" ")
        assert b"SPAMASSASSIN(20" in status and b"SA_POSTERN_TEST_SPAM(0)" in status, msgs[0]
        assert "got connection over %s" % sd.socket in sd.log(), sd.log()[-2000:]
    finally:
        cleanup(p, sink)


def test_over_max_size_not_sent():
    sd, sink, p = spamd(), Sink(), None
    try:
        p = postern("127.0.0.1:%d" % sd.port, sink, 'max_size = "2K";')
        before = sd.checks()
        send(p, message(MARKER + " " + "x" * 3000, "big one"))
        msgs = sink.wait_messages(1)
        assert len(msgs) == 1, (msgs, p.log())
        assert b"X-Postern-Spamd: skipped (message over max_size)" in msgs[0], msgs[0]
        assert b"SPAMD_SKIPPED_SIZE" in msgs[0] and b"SPAMASSASSIN" not in msgs[0], msgs[0]
        assert p.wait_log("over max_size 2048; not scanned"), p.log()
        time.sleep(0.5)
        assert sd.checks() == before, sd.log()[-2000:]
    finally:
        cleanup(p, sink)


def test_spamd_down_accepted_with_tag():
    sink, p = Sink(), None
    try:
        p = postern("127.0.0.1:%d" % free_port(), sink)
        send(p, message(MARKER, "down one"))
        msgs = sink.wait_messages(1)
        assert len(msgs) == 1, (msgs, p.log())
        m = msgs[0]
        assert b"X-Postern-Spamd: skipped (spamd unavailable)" in m, m
        assert b"SPAMD_ERROR" in m and b"SPAMASSASSIN" not in m, m
        assert b"score=0.0" in m, m
        assert p.wait_log("cannot connect"), p.log()
    finally:
        cleanup(p, sink)


def test_spamd_down_tempfail():
    sink, p = Sink(), None
    try:
        p = postern("127.0.0.1:%d" % free_port(), sink, 'on_error = "tempfail";')
        with smtplib.SMTP("127.0.0.1", p.port(), timeout=30) as c:
            c.ehlo("client.test")
            c.mail("sender@example.org")
            code, text = c.rcpt("joe@sink.test")
            assert code == 250, (code, text, p.log())
            code, text = c.data(message("hello", "tempfail one"))
        assert code == 451 and b"4.7.1" in text, (code, text)
        assert p.queue() == [], p.queue()
    finally:
        cleanup(p, sink)


def test_spamd_hangs_worker_stays_responsive():
    """timeout 2s: the filter gives up at 1.8 s; meanwhile another session
    on the same (only) worker gets its replies at once."""
    hang, sink, p = StandIn("hang"), Sink(), None
    try:
        p = postern("127.0.0.1:%d" % hang.port, sink, timeout="2s")
        result = {}

        def client():
            start = time.time()
            with smtplib.SMTP("127.0.0.1", p.port(), timeout=30) as c:
                c.ehlo("client.test")
                c.mail("sender@example.org")
                c.rcpt("joe@sink.test")
                result["data"] = c.data(message("hello", "hang one"))
            result["elapsed"] = time.time() - start

        t = threading.Thread(target=client)
        t.start()
        deadline = time.time() + 5
        while b"SYMBOLS SPAMC/1.5" not in hang.received and time.time() < deadline:
            time.sleep(0.02)
        assert b"SYMBOLS SPAMC/1.5" in hang.received, hang.received
        r = Raw(p.port())
        start = time.time()
        assert r.reply()[0] == 220
        assert r.cmd("EHLO other.test")[0] == 250
        assert r.cmd("NOOP")[0] == 250
        quick = time.time() - start
        r.cmd("QUIT")
        r.close()
        assert "data" not in result, "the hung scan ended before the other session ran"
        assert quick < 0.5, quick
        t.join(15)
        assert result.get("data", (0,))[0] == 250, (result, p.log())
        assert 1.5 <= result["elapsed"] < 5, result
        msgs = sink.wait_messages(1)
        assert len(msgs) == 1 and b"X-Postern-Spamd: skipped (spamd unavailable)" in msgs[0]
        assert b"SPAMD_ERROR" in msgs[0] and b"SPAMASSASSIN" not in msgs[0], msgs[0]
        assert p.wait_log("no answer within 1800 ms"), p.log()
    finally:
        cleanup(p, sink, hang)


def test_garbage_answer_is_an_error():
    bad, sink, p = StandIn("garbage"), Sink(), None
    try:
        p = postern("127.0.0.1:%d" % bad.port, sink)
        send(p, message(MARKER, "garbage one"))
        msgs = sink.wait_messages(1)
        assert len(msgs) == 1, (msgs, p.log())
        assert b"SPAMD_ERROR" in msgs[0] and b"SPAMASSASSIN" not in msgs[0], msgs[0]
        assert b"score=0.0" in msgs[0], msgs[0]
        assert p.wait_log("not a spamd response"), p.log()
    finally:
        cleanup(p, sink, bad)


try:
    run([test_spam_rejected_at_end_of_data, test_clean_message_delivered_with_status,
         test_unix_socket_and_report, test_over_max_size_not_sent,
         test_spamd_down_accepted_with_tag, test_spamd_down_tempfail,
         test_spamd_hangs_worker_stays_responsive, test_garbage_answer_is_an_error])
finally:
    if _spamd is not None:
        _spamd.cleanup()

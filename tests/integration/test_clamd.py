"""The clamd filter in the real posternd against a real clamd (Debian's
clamav-daemon, with a signature database written by harness.Clamd: no freshclam, one
.ndb signature "Eicar-Test-Signature" for the EICAR test string, which
clamd reports as "Eicar-Test-Signature.UNOFFICIAL"), Postfix's smtp-sink
downstream: an EICAR message is rejected at the end of DATA with 554 5.7.1
and the signature's name, which the log shows with the queue id; a clean
message is accepted and delivered; with action = "quarantine" the message
is held (spool hold/) and not delivered; over clamd's StreamMaxLength the
message is refused with 451 4.7.1, never taken as clean; clamd over its
unix socket. Faults, with hand-written stand-ins: a server that accepts and
never answers (451 within the filter's timeout while another session on the
same single worker is answered at once), one that answers garbage, one that
closes early, a client that hangs up while its scan waits, and clamd down
(connection refused)."""
import os
import smtplib
import socket
import struct
import threading
import time

from harness import (CUSTOM_FOUND, CUSTOM_MARKER, EICAR, FOUND_NAME, STREAM_MAX, Postern, Raw,
                     Sink, children, clamd, free_port, run)

EICAR_MSG = (b"From: <a@example.test>\r\nTo: <x@sink.test>\r\nSubject: eicar\r\n\r\n" + EICAR +
             b"\r\n")
CLEAN_MSG = b"From: <a@example.test>\r\nTo: <x@sink.test>\r\nSubject: clean\r\n\r\nhello\r\n"
RELAY = 'local_domains = ["example.test", "sink.test"]; trusted_networks = ["127.0.0.100/32"];'


class Standin:
    """A fault stand-in on a free loopback port, in a thread: mode "hang"
    (reads, never answers), "garbage" (reads the stream, answers an HTTP
    page) or "close" (reads a few octets and closes)."""

    def __init__(self, mode):
        self.mode = mode
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def address(self):
        return "127.0.0.1:%d" % self.port

    def serve(self):
        deadline = time.time() + 120
        while not self.done.is_set() and time.time() < deadline:
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            c.settimeout(30)
            self.conns.append(c)
            try:
                if self.mode == "close":
                    c.recv(8)
                    c.close()
                    continue
                self.read_stream(c)
                if self.mode == "garbage":
                    c.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\n<html>\0")
            except OSError:
                pass

    @staticmethod
    def read_exact(c, n):
        data = b""
        while len(data) < n:
            chunk = c.recv(n - len(data))
            if not chunk:
                raise OSError("closed")
            data += chunk
        return data

    def read_stream(self, c):
        self.read_exact(c, 10)  # zINSTREAM\0
        for _ in range(100000):
            n = struct.unpack(">I", self.read_exact(c, 4))[0]
            if n == 0:
                return
            self.read_exact(c, n)

    def cleanup(self):
        self.done.set()
        self.thread.join(5)
        for c in self.conns:
            c.close()
        self.sock.close()


def postern(address, keys="", sink_port=None, workers=1):
    sink_port = sink_port or free_port()
    return Postern(relay=RELAY, workers=workers, extra=(
        'queue = { min_backoff = "1s"; max_backoff = "1s"; idle_timeout = "1s"; };\n'
        'transports = ( { domain = "sink.test"; nexthop = "smtp:[127.0.0.1]:%d"; } );\n'
        'filters = ( { name = "clamd"; address = "%s"; %s } );\n'
        % (sink_port, address, keys))).start()


def send(p, body, rcpt="x@sink.test"):
    """Sends body; returns (code, text) of the end of DATA."""
    with smtplib.SMTP("127.0.0.1", p.port(), timeout=30) as c:
        try:
            c.sendmail("a@example.test", [rcpt], body)
            return 250, ""
        except smtplib.SMTPDataError as e:
            return e.smtp_code, e.smtp_error.decode(errors="replace")


def held(p):
    d = os.path.join(p.spool, "hold")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def big_message(size):
    lines = [b"From: <a@example.test>\r\nSubject: big\r\n\r\n"]
    n = 0
    while n < size:
        line = b"line %08d of a long clean message, nothing to see\r\n" % len(lines)
        lines.append(line)
        n += len(line)
    return b"".join(lines)


def cleanup(*things):
    for t in things:
        if t is not None:
            t.cleanup()


def test_eicar_rejected():
    c, p = clamd(), None
    try:
        p = postern(c.address())
        code, text = send(p, EICAR_MSG)
        assert code == 554 and "5.7.1" in text, (code, text)
        assert "Message rejected: virus %s found" % FOUND_NAME in text, text
        assert p.queue() == [] and held(p) == [], (p.queue(), held(p))
        # the signature with the queue id, and the session's verdict line
        assert p.wait_log(": clamd: virus %s found; rejected" % FOUND_NAME), p.log()
        line = [l for l in p.log().splitlines() if "clamd: virus" in l][0]
        qid = line.split(": clamd: virus")[0].split()[-1]
        assert any(qid + ": from=<a@example.test>" in l and "action=reject" in l and
                   "CLAMAV_VIRUS(100)" in l for l in p.log().splitlines()), p.log()
    finally:
        cleanup(p)


def test_custom_signature_rejected():
    """The test database's own signature (built with sigtool) is found in
    a message's body like any virus."""
    c, p = clamd(), None
    try:
        p = postern(c.address())
        code, text = send(p, b"From: <a@example.test>\r\nSubject: custom\r\n\r\nsee "
                          + CUSTOM_MARKER + b" here\r\n")
        assert code == 554 and CUSTOM_FOUND in text, (code, text)
        assert p.queue() == [] and held(p) == [], (p.queue(), held(p))
    finally:
        cleanup(p)


def test_clean_delivered():
    c, p, sink = clamd(), None, Sink()
    try:
        p = postern(c.address(), sink_port=sink.port)
        code, text = send(p, CLEAN_MSG)
        assert code == 250, (code, text)
        msgs = sink.wait_messages(1)
        assert len(msgs) == 1 and b"Subject: clean" in msgs[0], msgs
        assert p.wait_log("CLAMAV_CLEAN(0)"), p.log()
    finally:
        cleanup(p, sink)


def test_quarantine_holds():
    c, p, sink = clamd(), None, Sink()
    try:
        p = postern(c.address(), 'action = "quarantine";', sink_port=sink.port)
        code, text = send(p, EICAR_MSG)
        assert code == 250, (code, text)
        deadline = time.time() + 5
        while not held(p) and time.time() < deadline:
            time.sleep(0.05)
        assert len(held(p)) == 1 and p.queue() == [], (held(p), p.queue())
        assert p.wait_log("clamd: virus %s found; quarantined" % FOUND_NAME), p.log()
        time.sleep(2)  # two backoffs of the queue manager: nothing leaves hold/
        assert sink.messages() == [], sink.messages()
    finally:
        cleanup(p, sink)


def test_over_stream_max_tempfail():
    c, p = clamd(), None
    try:
        p = postern(c.address())
        code, text = send(p, big_message(STREAM_MAX * 2))
        assert code == 451 and "4.7.1" in text, (code, text)
        assert p.queue() == [] and held(p) == []
        assert p.wait_log("INSTREAM size limit exceeded"), p.log()
        assert "CLAMAV_CLEAN" not in p.log()
    finally:
        cleanup(p)


def test_unix_socket():
    c, p, sink = clamd(), None, Sink()
    try:
        p = postern(c.socket, sink_port=sink.port)
        code, text = send(p, EICAR_MSG)
        assert code == 554 and FOUND_NAME in text, (code, text)
        code, text = send(p, CLEAN_MSG)
        assert code == 250, (code, text)
        assert len(sink.wait_messages(1)) == 1
    finally:
        cleanup(p, sink)


def test_hang_tempfails_others_served():
    """One worker; clamd's stand-in never answers. The scan ends with 451
    after the filter's timeout, and meanwhile another session on that
    worker gets its greeting and NOOP answered at once."""
    s, p = Standin("hang"), None
    try:
        p = postern(s.address(), 'timeout = "3s";')
        result = {}

        def scan():
            start = time.time()
            result["reply"] = send(p, CLEAN_MSG)
            result["took"] = time.time() - start
        t = threading.Thread(target=scan)
        t.start()
        time.sleep(0.5)  # the scan is waiting for its verdict now
        start = time.time()
        r = Raw(p.port())
        assert r.reply()[0] == 220
        assert r.cmd("EHLO other.test")[0] == 250
        assert r.cmd("NOOP")[0] == 250
        assert time.time() - start < 1.0, time.time() - start
        assert "reply" not in result, result
        r.cmd("QUIT")
        r.close()
        t.join(20)
        code, text = result["reply"]
        assert code == 451 and "4.7.1" in text, result
        assert 2.5 <= result["took"] < 8, result
        assert p.queue() == []
        assert p.wait_log("clamd: %s: scan stopped (no verdict in time" % s.address()), p.log()
    finally:
        cleanup(p, s)


def test_client_leaves_during_scan():
    """A client that hangs up while its message waits for clamd: the scan is
    stopped, the worker lives on and serves the next session."""
    s, p = Standin("hang"), None
    try:
        p = postern(s.address(), 'timeout = "3s";')
        workers = children(p.proc.pid)
        assert len(workers) == 1, workers
        r = Raw(p.port())
        r.reply()
        r.cmd("EHLO leaving.test")
        assert r.cmd("MAIL FROM:<a@example.test>")[0] == 250
        assert r.cmd("RCPT TO:<x@sink.test>")[0] == 250
        assert r.cmd("DATA")[0] == 354
        r.send(CLEAN_MSG + b".\r\n")
        time.sleep(0.5)
        r.close()
        assert p.wait_log("scan stopped"), p.log()
        code, text = send(p, CLEAN_MSG)  # the stand-in hangs again: 451 after 3 s
        assert code == 451, (code, text)
        assert children(p.proc.pid) == workers, (children(p.proc.pid), workers)
        assert p.queue() == []
    finally:
        cleanup(p, s)


def test_garbage_and_early_close_tempfail():
    for mode, logged in (("garbage", "HTTP/1.0 200 OK"), ("close", "connection")):
        s, p = Standin(mode), None
        try:
            p = postern(s.address(), 'timeout = "10s";')
            start = time.time()
            code, text = send(p, CLEAN_MSG)
            assert code == 451 and "4.7.1" in text, (mode, code, text)
            assert time.time() - start < 5, mode
            assert p.queue() == []
            assert p.wait_log("not scanned") and logged in p.log(), p.log()
        finally:
            cleanup(p, s)


def test_clamd_down_tempfail():
    p = None
    try:
        p = postern("127.0.0.1:%d" % free_port())
        start = time.time()
        code, text = send(p, CLEAN_MSG)
        assert code == 451 and "4.7.1" in text, (code, text)
        assert time.time() - start < 3
        assert p.wait_log("Connection refused"), p.log()
        assert p.queue() == []
    finally:
        cleanup(p)


run([test_eicar_rejected, test_custom_signature_rejected, test_clean_delivered, test_quarantine_holds,
     test_over_stream_max_tempfail, test_unix_socket, test_hang_tempfails_others_served,
     test_client_leaves_during_scan, test_garbage_and_early_close_tempfail,
     test_clamd_down_tempfail])

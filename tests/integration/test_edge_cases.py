"""Edges of the daemon that the other files do not reach: a full spool (on a
small tmpfs), an IPv6 listener, the total session limit, AUTH on an mx
listener, corrupt queue files at start-up, a greet pause longer than the
command timeout, AUTH checks still queued when a worker stops, a reload
that cannot bind, and a client that pipelines without reading its replies
(plain and TLS). Every instance is stopped with SIGTERM at the end and
must exit cleanly; with an ASan build of posternd its processes (workers
included) must also leave no sanitizer report. The disk-full tests need
root (mount) and are skipped without it; the IPv6 one without ::1."""
import base64
import os
import select
import signal
import smtplib
import socket
import ssl
import subprocess
import time

from harness import POSTERND, Postern, Raw, Skip, run

MSG = b"Subject: edge\r\n\r\nhello\r\n"


# ---- helpers ----

def expect(reply, code, enhanced=None, text=None):
    got_code, got_text = reply
    assert got_code == code, "expected %d, got %r" % (code, reply)
    if enhanced is not None:
        last = got_text.split("\n")[-1]
        assert last[4:].startswith(enhanced + " "), "expected %s in %r" % (enhanced, got_text)
    if text is not None:
        assert text in got_text, "expected %r in %r" % (text, got_text)
    return got_text


def connect(p, listener="mx", source=None, ehlo="client.test"):
    r = Raw(p.port(listener), host=p.hosts[listener], source=source)
    expect(r.reply(), 220)
    if ehlo:
        expect(r.cmd("EHLO " + ehlo), 250)
    return r


def send_message(r, body=MSG, rcpt="u@example.test"):
    """MAIL, RCPT, DATA and the content; returns the reply to the final dot."""
    expect(r.cmd("MAIL FROM:<a@sender.test>"), 250, "2.1.0")
    expect(r.cmd("RCPT TO:<%s>" % rcpt), 250, "2.1.5")
    expect(r.cmd("DATA"), 354)
    r.send(body + b".\r\n")
    return r.reply()


def queue_id(reply_text):
    return reply_text.rsplit(" ", 1)[1]


def spool_files(p, sub):
    d = os.path.join(p.spool, sub)
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def plain(user, password):
    return base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()


ASAN = None


def make(asan_options="", **kw):
    """A Postern whose processes write any sanitizer report to files in its
    directory when posternd is an ASan build (finish() checks for them);
    asan_options are added to ASAN_OPTIONS then."""
    global ASAN
    if ASAN is None:
        with open(POSTERND, "rb") as f:
            ASAN = b"AddressSanitizer" in f.read()
    p = Postern(**kw)
    if ASAN:
        d = os.path.join(p.dir, "asan")
        os.mkdir(d)
        os.chmod(d, 0o1777)  # the workers run as nobody
        opts = [o for o in (os.environ.get("ASAN_OPTIONS", ""), asan_options) if o]
        p.env["ASAN_OPTIONS"] = ":".join(opts + ["log_path=" + d + "/asan"])
    return p


def asan_reports(p):
    d = os.path.join(p.dir, "asan")
    out = []
    for name in sorted(os.listdir(d)) if os.path.isdir(d) else []:
        with open(os.path.join(d, name), errors="replace") as f:
            out.append("%s:\n%s" % (name, f.read()))
    return out


def finish(p):
    """The end of a test that passed: SIGTERM, and the master and every
    worker exit 0 (LeakSanitizer fails a worker's exit status) with no
    sanitizer report written."""
    if p.proc is not None:
        p.proc.terminate()
        assert p.proc.wait(15) == 0, p.log()
        p.proc = None
    assert "exited with status" not in p.log(), p.log()
    reports = asan_reports(p)
    assert not reports, "\n".join(reports)


# ---- 1. a full spool ----

class TmpfsSpool:
    """p's spool on its own 2 MiB tmpfs, mounted before posternd starts."""

    def __init__(self, p):
        self.path = p.spool
        os.mkdir(self.path)
        res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2M", "tmpfs", self.path],
                             capture_output=True, text=True)
        if res.returncode != 0:
            p.cleanup()
            raise Skip("cannot mount a tmpfs (needs root): %s" % res.stderr.strip())

    def free(self):
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def unmount(self, p):
        p.stop()
        subprocess.run(["umount", self.path], check=False)
        p.cleanup()


def test_spool_min_free_defers_mail():
    p = make(spool_min_free="10M")  # more than the whole tmpfs
    fs = TmpfsSpool(p)
    try:
        p.start()
        r = connect(p)
        expect(r.cmd("MAIL FROM:<a@sender.test>"), 452, "4.3.1", "Insufficient system storage")
        expect(r.cmd("RCPT TO:<u@example.test>"), 503, "5.5.1")  # no transaction
        expect(r.cmd("NOOP"), 250)
        expect(r.cmd("QUIT"), 221)
        r.close()
        assert p.wait_log("spool is short of space: MAIL from 127.0.0.1 deferred"), p.log()
        assert spool_files(p, "tmp") == [] and spool_files(p, "queue") == []
        finish(p)
    finally:
        fs.unmount(p)


def test_disk_full_during_data():
    p = make(spool_min_free="0", smtp='message_size_limit = "4M";')
    fs = TmpfsSpool(p)
    try:
        p.start()
        fill = os.path.join(fs.path, "fill")
        with open(fill, "wb") as f:
            f.write(b"\0" * (fs.free() - 256 * 1024))
        assert fs.free() <= 256 * 1024, fs.free()
        big = b"Subject: big\r\n\r\n" + (b"x" * 78 + b"\r\n") * 8000  # 640 KB
        r = connect(p)
        # a declared size that does not fit is refused at MAIL (RFC 1870)
        expect(r.cmd("MAIL FROM:<a@sender.test> SIZE=%d" % len(big)), 452, "4.3.1")
        # undeclared, it fails after the final dot, and nothing of it stays
        expect(send_message(r, big), 451, "4.3.0", "queue file write error")
        assert spool_files(p, "tmp") == [], spool_files(p, "tmp")
        assert spool_files(p, "queue") == [], spool_files(p, "queue")
        assert p.wait_log("No space left on device"), p.log()
        assert "action=accept" not in p.log()
        # the session goes on, and takes mail again once there is room
        expect(r.cmd("NOOP"), 250)
        os.unlink(fill)
        qid = queue_id(expect(send_message(r), 250, "2.0.0", "queued as"))
        assert spool_files(p, "queue") == [qid], spool_files(p, "queue")
        assert spool_files(p, "tmp") == []
        expect(r.cmd("QUIT"), 221)
        r.close()
        finish(p)
    finally:
        fs.unmount(p)


# ---- 2. IPv6 ----

def have_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def test_ipv6_listener():
    if not have_ipv6_loopback():
        raise Skip("no IPv6 loopback (::1)")
    listeners = {"mx": ("mx", ""), "v6": ("mx", "", "::1")}
    p = make(listeners=listeners)  # the harness trusts 127.0.0.100/32 only
    q = make(listeners=listeners,
             relay='local_domains = ["example.test"]; trusted_networks = ["::1/128"];')
    try:
        p.start()
        q.start()
        with smtplib.SMTP("::1", p.port("v6"), timeout=10) as c:
            c.ehlo("six.test")
            assert c.sock.getpeername()[0] == "::1"
            assert c.sendmail("a@sender.test", ["u@example.test"], MSG) == {}
            # ::1 is a loopback address but not a trusted one here
            code, text = c.mail("a@sender.test")
            assert code == 250, text
            code, text = c.rcpt("x@remote.test")
            assert code == 554 and b"5.7.1" in text, (code, text)
        assert p.wait_log("connect from unknown[::1]:"), p.log()
        queued = p.queue()
        assert len(queued) == 1, queued
        content, env = p.queued_message(queued[0])
        assert b"Received: from six.test (unknown [IPv6:::1])" in content, content[:300]
        assert b"\nclient_addr ::1\n" in env, env
        assert p.wait_log("relay access denied to <x@remote.test>"), p.log()
        line = [ln for ln in p.log().splitlines() if queued[0] + ": from=" in ln][0]
        assert "client=unknown[::1]" in line, line
        # listed in trusted_networks, ::1 relays; 127.0.0.1 then does not
        r = connect(q, "v6")
        expect(r.cmd("MAIL FROM:<a@sender.test>"), 250)
        expect(r.cmd("RCPT TO:<x@remote.test>"), 250, "2.1.5")
        r.close()
        r = connect(q, "mx")
        expect(r.cmd("MAIL FROM:<a@sender.test>"), 250)
        expect(r.cmd("RCPT TO:<x@remote.test>"), 554, "5.7.1")
        r.close()
        finish(p)
        finish(q)
    finally:
        p.cleanup()
        q.cleanup()


# ---- 3. the total session limit ----

def test_max_sessions_total():
    p = make(smtp="max_sessions = 2; max_sessions_per_ip = 0; connection_rate_limit = 0;",
             workers=2)
    try:
        p.start()
        # the start-up probe's session must be gone before counting
        assert p.wait_log("disconnect from unknown[127.0.0.1]"), p.log()
        a = connect(p, source="127.0.0.2", ehlo=None)
        b = connect(p, source="127.0.0.3", ehlo=None)
        # a third client, even a trusted one, is over the total
        for source in ("127.0.0.4", "127.0.0.100"):
            c = Raw(p.port(), source=source)
            text = expect(c.reply(), 421, "4.7.0", "too many connections")
            assert "from" not in text, text
            assert c.closed()
            c.close()
        assert "refused: too many sessions" in p.log()
        # a closed session frees its place
        expect(a.cmd("QUIT"), 221)
        assert a.closed()
        a.close()
        assert p.wait_log("disconnect from unknown[127.0.0.2]")
        d = connect(p, source="127.0.0.5")
        expect(d.cmd("QUIT"), 221)
        d.close()
        b.close()
        finish(p)
    finally:
        p.cleanup()


# ---- 4. AUTH on an mx listener ----

def test_mx_auth_after_starttls():
    p = make(listeners={"mx": ("mx", "auth = true;"),
                        "other": ("mx", "auth_without_tls = true;")})
    try:
        p.start()
        r = connect(p, ehlo=None)
        text = expect(r.cmd("EHLO client.test"), 250)
        assert "STARTTLS" in text and "AUTH" not in text, text
        expect(r.cmd("AUTH PLAIN " + plain("user@example.test", "secret")), 538, "5.7.11")
        # an mx listener takes mail for its domains without AUTH
        expect(r.cmd("MAIL FROM:<a@sender.test>"), 250)
        expect(r.cmd("RCPT TO:<x@remote.test>"), 554, "5.7.1")
        expect(r.cmd("RSET"), 250)
        expect(r.cmd("STARTTLS"), 220)
        ctx = ssl.create_default_context(cafile=p.ca)
        r.sock = ctx.wrap_socket(r.sock, server_hostname="localhost")
        text = expect(r.cmd("EHLO client.test"), 250)
        assert "250-AUTH PLAIN LOGIN" in text, text
        expect(r.cmd("AUTH PLAIN " + plain("user@example.test", "wrong")), 535, "5.7.8")
        expect(r.cmd("AUTH PLAIN " + plain("user@example.test", "secret")), 235, "2.7.0")
        qid = queue_id(expect(send_message(r, rcpt="x@remote.test"), 250, "2.0.0"))
        expect(r.cmd("QUIT"), 221)
        r.close()
        content, env = p.queued_message(qid)
        assert b"with ESMTPSA id" in content, content[:300]
        assert b"auth_user user@example.test\n" in env, env
        # auth_without_tls alone does not turn AUTH on for an mx listener
        r = connect(p, "other", ehlo=None)
        text = expect(r.cmd("EHLO client.test"), 250)
        assert "AUTH" not in text, text
        expect(r.cmd("AUTH PLAIN " + plain("user@example.test", "secret")), 503, "5.5.1")
        r.close()
        finish(p)
    finally:
        p.cleanup()


def test_mx_auth_without_tls():
    p = make(listeners={"mx": ("mx", "auth = true; auth_without_tls = true;")})
    try:
        p.start()
        with smtplib.SMTP("127.0.0.1", p.port(), timeout=10) as c:
            c.ehlo("client.test")
            assert "plain" in c.esmtp_features.get("auth", "").lower(), c.esmtp_features
            assert not isinstance(c.sock, ssl.SSLSocket)
            try:
                c.login("user@example.test", "nope")
                raise AssertionError("a wrong password logged in")
            except smtplib.SMTPAuthenticationError as e:
                assert e.smtp_code == 535, e
            code, _ = c.login("other@example.test", "hunter2")
            assert code == 235
            assert c.sendmail("other@example.test", ["x@remote.test"], MSG) == {}
        queued = p.queue()
        assert len(queued) == 1, queued
        content, env = p.queued_message(queued[0])
        assert b"with ESMTPA id" in content, content[:300]
        assert b"auth_user other@example.test\n" in env, env
        assert "authenticated as other@example.test" in p.log()
        finish(p)
    finally:
        p.cleanup()


# ---- 5. corrupt and incomplete queue files at start-up ----

def spool_header(content_len, env_off):
    h = b"POSTERN-SPOOL-1 content=%016x envelope=%016x" % (content_len, env_off)
    return h.ljust(79, b" ") + b"\n"


def test_corrupt_queue_file_moved():
    p = make()
    try:
        queue = os.path.join(p.spool, "queue")
        os.makedirs(queue)
        content = b"Received: from x\r\n\r\nbody\r\n"
        corrupt, incomplete = "0000000001CORRUPT001", "0000000002TRUNCATED2"
        with open(os.path.join(queue, corrupt), "wb") as f:
            f.write(spool_header(len(content), 80 + len(content)) + content + b"xx yy\nEND\n")
        with open(os.path.join(queue, incomplete), "wb") as f:  # cut off in its content
            f.write(spool_header(len(content), 80 + len(content)) + content[:10])
        p.start()
        assert p.wait_log("moved corrupt message %s to corrupt/" % corrupt), p.log()
        assert p.wait_log("removed incomplete message %s" % incomplete), p.log()
        assert p.queue() == [], p.queue()
        assert spool_files(p, "corrupt") == [corrupt]
        with open(os.path.join(p.spool, "corrupt", corrupt), "rb") as f:
            assert f.read().endswith(content + b"xx yy\nEND\n")  # kept as it was
        # the daemon runs and queues normally
        r = connect(p)
        expect(send_message(r), 250, "2.0.0")
        r.close()
        assert len(p.queue()) == 1
        finish(p)
    finally:
        p.cleanup()


# ---- 6. greet pause and command timeout ----

def test_greet_pause_longer_than_command_timeout():
    p = make(smtp='command_timeout = "1s"; connection_rate_limit = 0;',
             listeners={"mx": ("mx", ""), "slow": ("mx", 'greet_pause = "2s";')})
    try:
        p.start()
        start = time.time()
        r = Raw(p.port("slow"))
        code, text = r.reply()
        greeted = time.time() - start
        assert code == 220, "no greeting after the pause: %r" % text
        assert 1.8 <= greeted <= 3.5, greeted
        # the client's command timeout starts with the greeting
        expect(r.cmd("EHLO patient.test"), 250)
        expect(r.cmd("NOOP"), 250)
        idle = time.time()
        expect(r.reply(), 421, "4.4.2", "timeout exceeded")
        assert 0.8 <= time.time() - idle <= 2.5, time.time() - idle
        assert r.closed()
        r.close()
        assert "early talker" not in p.log()
        finish(p)
    finally:
        p.cleanup()


# ---- 7. AUTH checks queued when a worker stops ----

# "slowpw" as SHA512-CRYPT with 2,000,000 rounds: about half a second a check.
SLOW_HASH = ("$6$rounds=2000000$saltsalt$MuYdqylYtSid9wllpFdsCmMJBRjaPFflAKdQmDNiriBF0mjn0kd."
             "Pc5XbS0gCazyUWHj90jShe8cudBENNFv10")


def test_auth_checks_queued_at_shutdown():
    p = make(listeners={"mx": ("mx", "auth = true; auth_without_tls = true;")},
             smtp="max_sessions_per_ip = 0; connection_rate_limit = 0;")
    sessions = []
    try:
        with open(p.passwd, "a") as f:
            f.write("slow@example.test:{SHA512-CRYPT}%s\n" % SLOW_HASH)
        with open(p.conf) as f:
            conf = f.read()
        with open(p.conf, "w") as f:  # one thread: one check runs, the others queue
            f.write(conf.replace("auth = { passwd_file", "auth = { threads = 1; passwd_file"))
        p.start()
        for _ in range(4):
            r = connect(p)
            sessions.append(r)
            r.send("AUTH PLAIN %s\r\n" % plain("slow@example.test", "slowpw"))
        time.sleep(0.2)  # the AUTHs are read and queued; none has its answer yet
        start = time.time()
        p.proc.terminate()
        for r in sessions:
            expect(r.reply(), 421, "4.3.2")
            assert r.closed()
        assert p.proc.wait(10) == 0, p.log()
        # the worker waited for the running check only, not the queued ones
        assert time.time() - start < 4, time.time() - start
        assert "authenticated as" not in p.log()
        assert "posternd stopped" in p.log()
        finish(p)
    finally:
        for r in sessions:
            r.close()
        p.cleanup()


# ---- 8. a reload that fails to bind ----

def listener_owners(p, port):
    """p's child processes that hold the listening socket on port."""
    inode = None
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if int(fields[1].split(":")[1], 16) == port and fields[3] == "0A":  # LISTEN
                inode = fields[9]
    owners = []
    for d in os.listdir("/proc"):
        try:
            with open("/proc/%s/stat" % d) as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) != p.proc.pid:
                    continue
            for fd in os.listdir("/proc/%s/fd" % d):
                if os.readlink("/proc/%s/fd/%s" % (d, fd)) == "socket:[%s]" % inode:
                    owners.append(int(d))
                    break
        except (OSError, ValueError):
            pass
    return owners


def test_failed_reload_keeps_listeners():
    """A reload whose new listener cannot bind keeps the running sockets;
    it used to close the ones it had taken over, so that the next worker
    started (after a crash) had nothing to listen on."""
    p = make()
    busy = socket.socket()
    try:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        p.start()
        with open(p.conf) as f:
            conf = f.read()
        with open(p.conf, "w") as f:  # the new listener comes after mx
            f.write(conf.replace(" );\n", ', { name = "taken"; address = ["127.0.0.1:%d"]; } );\n'
                                 % busy.getsockname()[1]))
        p.proc.send_signal(signal.SIGHUP)
        assert p.wait_log("reload failed: bind 127.0.0.1:%d" % busy.getsockname()[1]), p.log()
        workers = listener_owners(p, p.port())
        assert len(workers) == 1, workers
        os.kill(workers[0], signal.SIGKILL)
        assert p.wait_log("killed by signal 9; restarting"), p.log()
        deadline = time.time() + 5
        while not listener_owners(p, p.port()) or workers == listener_owners(p, p.port()):
            assert time.time() < deadline and "cannot listen" not in p.log(), p.log()
            time.sleep(0.1)
        r = connect(p)
        expect(r.cmd("QUIT"), 221)
        r.close()
        assert "cannot listen" not in p.log(), p.log()
        finish(p)
    finally:
        busy.close()
        p.cleanup()


# ---- 9. a client that does not read its replies ----

def children_rss(p):
    """Resident memory of p's child processes, in bytes."""
    total = 0
    for d in os.listdir("/proc"):
        try:
            with open("/proc/%s/stat" % d) as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) != p.proc.pid:
                    continue
            with open("/proc/%s/status" % d) as f:
                total += int([ln for ln in f if ln.startswith("VmRSS:")][0].split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            pass
    return total


def settled_rss(p, timeout=4):
    """children_rss once it has stopped growing (the worker has done what
    it will do with the input it has)."""
    last, deadline = children_rss(p), time.time() + timeout
    while time.time() < deadline:
        time.sleep(0.3)
        now = children_rss(p)
        if now <= last:
            return now
        last = now
    return last


HELP_REPLY_END = b"214 2.0.0 See RFC 5321\r\n"
# ASan's quarantine keeps freed memory resident: small, so that RSS shows
# what the session holds rather than what it churned through.
SMALL_QUARANTINE = "quarantine_size_mb=4"


def flood(p, source, commands, seconds=2):
    """Pipelines EHLO and HELPs from a client with a tiny receive buffer
    that reads nothing; returns (socket, the data, how much was sent)."""
    c = Raw(p.port(), source=source, rcvbuf=4096).sock
    data = b"EHLO flood.test\r\n" + b"HELP\r\n" * commands
    c.setblocking(False)
    sent, deadline = 0, time.time() + seconds
    while sent < len(data) and time.time() < deadline:
        try:
            sent += c.send(data[sent:sent + 65536])
        except BlockingIOError:
            time.sleep(0.02)
    c.setblocking(True)
    return c, data, sent


def read_replies(sock, data, sent, commands, timeout=30):
    """Sends the rest of data and reads until all the HELP replies are in,
    without blocking on either side (works for plain and TLS sockets)."""
    sock.setblocking(False)
    got, count, deadline = b"", 0, time.time() + timeout
    want_block = (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError)
    while count < commands:
        assert time.time() < deadline, "only %d replies" % count
        if sent < len(data):
            try:
                sent += sock.send(data[sent:sent + 16384])
            except want_block:
                pass
        try:
            chunk = sock.recv(1 << 20)
        except want_block:
            select.select([sock], [sock] if sent < len(data) else [], [], 0.5)
            continue
        assert chunk, "closed after %d replies" % count
        got += chunk
        count += got.count(HELP_REPLY_END)
        got = got[got.rfind(b"\n") + 1:]
    sock.setblocking(True)
    sock.settimeout(10)
    return count


def test_client_that_does_not_read():
    p = make(smtp='command_timeout = "1s"; max_sessions_per_ip = 0; connection_rate_limit = 0;',
             server='shutdown_grace = "0";', asan_options=SMALL_QUARANTINE)
    try:
        p.start()
        time.sleep(0.2)
        before = children_rss(p)
        # 200,000 HELPs (1.2 MB) would make 22 MB of replies: the session
        # stops taking input while its replies wait for the client
        c, data, sent = flood(p, "127.0.0.6", 200000)
        grown = settled_rss(p) - before
        print("    worker memory after the flood: +%.1f MB" % (grown / 1048576.0))
        assert grown < 12 * 1024 * 1024, "replies buffered without bound: +%d bytes" % grown
        # once the client reads, every command is answered
        assert read_replies(c, data, sent, 200000) == 200000
        c.sendall(b"QUIT\r\n")
        assert c.recv(100).startswith(b"221 ")
        c.close()
        # a client that never reads is dropped after the command timeout even
        # when its last reply cannot be written
        c, _, _ = flood(p, "127.0.0.7", 200000, seconds=0.5)
        assert p.wait_log("timeout after command from 127.0.0.7", 5), p.log()
        assert p.wait_log("disconnect from unknown[127.0.0.7]", 5), p.log()
        c.close()
        # and at SIGTERM, a session whose replies are stuck outlives the
        # (zero) grace time: it is freed with its worker
        c, _, _ = flood(p, "127.0.0.8", 200000, seconds=0.5)
        time.sleep(0.2)
        finish(p)
        c.close()
        assert "shutdown grace time over with 1 sessions open" in p.log(), p.log()
        assert "disconnect from unknown[127.0.0.8]" in p.log(), p.log()
    finally:
        p.cleanup()


def test_tls_client_that_does_not_read():
    """The same over TLS, where the replies go through the TLS filter."""
    p = make(smtp="max_sessions_per_ip = 0;", asan_options=SMALL_QUARANTINE)
    try:
        p.start()
        time.sleep(0.2)
        before = children_rss(p)
        r = Raw(p.port(), rcvbuf=4096)
        expect(r.reply(), 220)
        expect(r.cmd("EHLO flood.test"), 250)
        expect(r.cmd("STARTTLS"), 220)
        ctx = ssl.create_default_context(cafile=p.ca)
        t = ctx.wrap_socket(r.sock, server_hostname="localhost")
        data = b"EHLO flood.test\r\n" + b"HELP\r\n" * 150000
        t.setblocking(False)
        sent, deadline = 0, time.time() + 2
        while sent < len(data) and time.time() < deadline:
            try:
                sent += t.send(data[sent:sent + 16384])
            except (ssl.SSLWantWriteError, BlockingIOError):
                time.sleep(0.02)
        grown = settled_rss(p) - before
        print("    worker memory after the flood: +%.1f MB" % (grown / 1048576.0))
        # (16 MB of replies, more as TLS records; ASan's allocator takes some)
        assert grown < 16 * 1024 * 1024, "replies buffered without bound: +%d bytes" % grown
        assert read_replies(t, data, sent, 150000) == 150000
        t.sendall(b"QUIT\r\n")
        assert t.recv(100).startswith(b"221 ")
        t.close()
        finish(p)
    finally:
        p.cleanup()


def test_hop_limit_stops_mail_loops():
    """A message already carrying hop_limit Received: fields is a loop:
    554 5.4.6 after DATA (Postern's own Received: counts), nothing queued;
    one hop fewer is accepted."""
    p = Postern(smtp="hop_limit = 5;").start()
    try:
        def message(hops):
            return "".join("Received: from hop%d\r\n" % i for i in range(hops)) + \
                "Subject: loop\r\n\r\nbody\r\n"
        with smtplib.SMTP("127.0.0.1", p.port()) as c:
            try:
                c.sendmail("a@sender.test", ["x@example.test"], message(5))
                raise AssertionError("a message over the hop limit was accepted")
            except smtplib.SMTPDataError as e:
                assert e.smtp_code == 554 and b"5.4.6" in e.smtp_error, e
            assert p.queue() == []
            assert c.sendmail("a@sender.test", ["x@example.test"], message(4)) == {}
        assert len(p.queue()) == 1
        assert "Received: headers (a mail loop?)" in p.log()
    finally:
        p.cleanup()


run([
    test_hop_limit_stops_mail_loops,
    test_spool_min_free_defers_mail,
    test_disk_full_during_data,
    test_ipv6_listener,
    test_max_sessions_total,
    test_mx_auth_after_starttls,
    test_mx_auth_without_tls,
    test_corrupt_queue_file_moved,
    test_greet_pause_longer_than_command_timeout,
    test_auth_checks_queued_at_shutdown,
    test_failed_reload_keeps_listeners,
    test_client_that_does_not_read,
    test_tls_client_that_does_not_read,
])

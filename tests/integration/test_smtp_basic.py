"""The SMTP edge with real clients (smtplib, swaks, raw sockets): replies and
enhanced codes, the state machine, address and parameter checks, the relay
guard, PIPELINING, DATA/BDAT content handling and smuggling, the session
limits and timeouts, PROXY protocol and XCLIENT. One posternd is shared by
every test that needs the same configuration."""
import atexit
import os
import re
import smtplib
import socket
import struct
import subprocess
import time

from harness import Postern, Raw, run, wait_for

_instances = {}


def instance(name):
    """The shared posternd for a configuration group (started on first use)."""
    if name not in _instances:
        p = CONFIGS[name]()
        _instances[name] = p
        p.start()
    return _instances[name]


@atexit.register
def _cleanup():
    for p in _instances.values():
        p.cleanup()


CONFIGS = {
    # Small size and line limits so the boundaries are cheap to reach; no
    # connection rate limit since every test connects from 127.0.0.1.
    "main": lambda: Postern(smtp='message_size_limit = "2K"; data_line_limit = "1000"; '
                                 'connection_rate_limit = 0; max_sessions_per_ip = 0;'),
    "normalize": lambda: Postern(smtp='bare_newline = "normalize"; connection_rate_limit = 0;'),
    # Per-session limits and timeouts, and the extra listeners.
    "session": lambda: Postern(
        smtp='recipient_limit = 3; error_limit = 3; line_limit = 512; command_timeout = "2s"; '
             'data_timeout = "1500ms"; connection_rate_limit = 0; max_sessions_per_ip = 0; '
             'xclient_hosts = ["127.0.0.1/32"];',
        listeners={"mx": ("mx", ""),
                   "slow": ("mx", 'greet_pause = "1s";'),
                   "proxy": ("mx", 'proxy_protocol = "any";')}),
    # Connection limits (tests use their own source addresses).
    "limits": lambda: Postern(smtp="max_sessions_per_ip = 2; connection_rate_limit = 5;"),
    "rate": lambda: Postern(smtp='min_data_rate = "100K"; data_timeout = "60s"; '
                                 'command_timeout = "5s";'),
}

MSG = b"Subject: test\r\n\r\nhello\r\n"


# ---- helpers ----

def connect(p, listener="mx", source=None, ehlo="client.test"):
    r = Raw(p.port(listener), source=source)
    code, text = r.reply()
    assert code == 220, text
    if ehlo:
        code, text = r.cmd("EHLO " + ehlo)
        assert code == 250, text
    return r


def expect(reply, code, enhanced=None, text=None):
    got_code, got_text = reply
    assert got_code == code, "expected %d, got %r" % (code, reply)
    if enhanced is not None:
        first = got_text.split("\n")[-1]
        assert first[4:].startswith(enhanced + " "), "expected %s in %r" % (enhanced, got_text)
    if text is not None:
        assert text in got_text, "expected %r in %r" % (text, got_text)
    return got_text


def queued_since(p, before):
    return [q for q in p.queue() if q not in before]


def queued_id(reply_text):
    m = re.search(r"queued as (\S+)", reply_text)
    assert m, reply_text
    return m.group(1)


def tmp_files(p):
    d = os.path.join(p.spool, "tmp")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def send_message(r, sender="a@sender.test", rcpts=("u@example.test",), body=MSG):
    expect(r.cmd("MAIL FROM:<%s>" % sender), 250, "2.1.0")
    for rc in rcpts:
        expect(r.cmd("RCPT TO:<%s>" % rc), 250, "2.1.5")
    expect(r.cmd("DATA"), 354)
    r.send(body + b".\r\n")
    return expect(r.reply(), 250, "2.0.0", "queued as")


def swaks(p, *args, listener="mx"):
    return subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(p.port(listener)),
                           "--helo", "swaks.test", "--timeout", "10"] + list(args),
                          capture_output=True, text=True, timeout=30)


# ---- original test ----

def test_smtplib_send_is_queued():
    p = Postern().start()
    try:
        with smtplib.SMTP("127.0.0.1", p.port()) as c:
            code, _ = c.ehlo("client.test")
            assert code == 250
            assert c.has_extn("pipelining") and c.has_extn("chunking")
            refused = c.sendmail("a@sender.test", ["x@example.test"],
                                 b"Subject: hi\r\n\r\nhello\r\n")
            assert refused == {}
        q = p.queue()
        assert len(q) == 1, q
        content, env = p.queued_message(q[0])
        assert content.startswith(b"Received: from client.test"), content[:200]
        assert b"\r\nSubject: hi\r\n\r\nhello\r\n" in content
        assert env.endswith(b"END\n"), env
        assert "action=accept" in p.log()
    finally:
        p.cleanup()


# ---- greeting, EHLO and the small commands ----

def test_ehlo_extensions():
    p = instance("main")
    with smtplib.SMTP("127.0.0.1", p.port()) as c:
        code, msg = c.ehlo("client.test")
        assert code == 250
        lines = msg.decode().split("\n")
        assert lines[0] == "mx.postern.test", lines
        ext = set(lines[1:])
        for e in ("PIPELINING", "SIZE 2048", "8BITMIME", "SMTPUTF8", "DSN", "CHUNKING",
                  "ENHANCEDSTATUSCODES", "STARTTLS"):
            assert e in ext, (e, lines)
        assert not any(l.startswith("AUTH") for l in lines), lines
        assert not any(l.startswith("XCLIENT") for l in lines), lines
        assert c.esmtp_features["size"] == "2048"
        assert c.quit()[0] == 221


def test_helo_and_small_commands():
    p = instance("main")
    r = Raw(p.port())
    greeting = expect(r.reply(), 220)
    assert greeting == "220 mx.postern.test ESMTP Postern", greeting
    assert r.cmd("HELO client.test") == (250, "250 mx.postern.test")
    expect(r.cmd("EHLO"), 501, "5.5.4")
    expect(r.cmd("NOOP"), 250, "2.0.0")
    expect(r.cmd("NOOP ignored argument"), 250, "2.0.0")
    expect(r.cmd("RSET"), 250, "2.0.0")
    expect(r.cmd("RSET now"), 501, "5.5.4")
    code, text = r.cmd("HELP")
    assert code == 214 and text.startswith("214-2.0.0 Commands:") and \
        text.endswith("214 2.0.0 See RFC 5321"), text
    expect(r.cmd("VRFY u@example.test"), 252, "2.5.2")
    expect(r.cmd("VRFY"), 501, "5.5.4")
    expect(r.cmd("EXPN staff"), 502, "5.5.1")
    expect(r.cmd("FOOBAR baz"), 502, "5.5.2", "command not recognized")
    expect(r.cmd("NO\x00OP"), 500, "5.5.2", "bad syntax")
    expect(r.cmd("NOOP \x01"), 500, "5.5.2")
    expect(r.cmd("NO\x7fOP"), 500, "5.5.2")
    # lower case verbs work, and TAB is no control byte
    expect(r.cmd("noop\tx"), 502, "5.5.2")  # verb is "noop\tx": unknown, not a bad byte
    expect(r.cmd("noop"), 250, "2.0.0")
    expect(r.cmd("QUIT now"), 501, "5.5.4")
    expect(r.cmd("QUIT"), 221, "2.0.0")
    assert r.closed()


def test_rset_clears_transaction():
    p = instance("main")
    r = connect(p)
    expect(r.cmd("MAIL FROM:<a@sender.test>"), 250, "2.1.0")
    expect(r.cmd("RCPT TO:<u@example.test>"), 250, "2.1.5")
    expect(r.cmd("RSET"), 250, "2.0.0")
    expect(r.cmd("RCPT TO:<u@example.test>"), 503, "5.5.1")
    expect(r.cmd("DATA"), 503, "5.5.1")
    # EHLO also resets a transaction
    expect(r.cmd("MAIL FROM:<a@sender.test>"), 250, "2.1.0")
    expect(r.cmd("EHLO again.test"), 250)
    expect(r.cmd("MAIL FROM:<a@sender.test>"), 250, "2.1.0")
    r.close()


# ---- state machine ----

def test_state_machine():
    p = instance("main")
    before = p.queue()
    r = connect(p, ehlo=None)
    expect(r.cmd("MAIL FROM:<a@sender.test>"), 503, "5.5.1", "HELO/EHLO first")
    expect(r.cmd("EHLO client.test"), 250)
    expect(r.cmd("RCPT TO:<u@example.test>"), 503, "5.5.1", "need MAIL")
    expect(r.cmd("DATA"), 503, "5.5.1", "need MAIL")
    expect(r.cmd("MAIL FROM:<a@sender.test>"), 250, "2.1.0")
    expect(r.cmd("DATA"), 503, "5.5.1", "need RCPT")
    expect(r.cmd("MAIL FROM:<b@sender.test>"), 503, "5.5.1", "nested MAIL")
    expect(r.cmd("DATA now"), 501, "5.5.4")
    expect(r.cmd("MAIL TO:<a@sender.test>"), 503, "5.5.1")  # still nested
    expect(r.cmd("RSET"), 250)
    expect(r.cmd("MAIL <a@sender.test>"), 501, "5.5.4")
    expect(r.cmd("MAIL FROM:<a@sender.test>"), 250, "2.1.0")
    expect(r.cmd("RCPT <u@example.test>"), 501, "5.5.4")
    expect(r.cmd("RCPT TO:<u@elsewhere.test>"), 554, "5.7.1")
    expect(r.cmd("DATA"), 554, "5.5.1", "no valid recipients")
    r.close()
    assert queued_since(p, before) == []


# ---- addresses and parameters ----

def test_address_and_parameter_errors():
    p = instance("main")
    r = connect(p)
    expect(r.cmd("MAIL FROM:<a@@sender.test>"), 501, "5.1.7")
    expect(r.cmd("MAIL FROM:<a@sender.test"), 501, "5.1.7")
    expect(r.cmd("MAIL FROM:<a@sender.test> FOO=bar"), 555, "5.5.4", "Unsupported option FOO")
    expect(r.cmd("MAIL FROM:<a@sender.test> SIZE=2049"), 552, "5.3.4")
    expect(r.cmd("MAIL FROM:<a@sender.test> SIZE=99999999999999999999999"), 501, "5.5.4")
    expect(r.cmd("MAIL FROM:<a@sender.test> SIZE=2048 BODY=8BITMIME"), 250, "2.1.0")
    expect(r.cmd("RCPT TO:<u@@example.test>"), 501, "5.1.3")
    expect(r.cmd("RCPT TO:<>"), 501, "5.1.3")
    expect(r.cmd("RCPT TO:<u@example.test> BAR"), 555, "5.5.4")
    expect(r.cmd("RCPT TO:<u@example.test> NOTIFY=SOMETIMES"), 501, "5.5.4")
    expect(r.cmd("RCPT TO:<ü@example.test>"), 553, "5.6.7")
    expect(r.cmd("RCPT TO:<u@example.test>"), 250, "2.1.5")
    expect(r.cmd("RSET"), 250)
    expect(r.cmd("MAIL FROM:<üser@sender.test>"), 553, "5.6.7")
    expect(r.cmd("MAIL FROM:<>"), 250, "2.1.0")  # null sender
    r.close()


def test_smtputf8_address_queued():
    p = instance("main")
    before = p.queue()
    r = connect(p)
    expect(r.cmd("MAIL FROM:<üser@sender.test> SMTPUTF8"), 250, "2.1.0")
    expect(r.cmd("RCPT TO:<dörte@example.test>"), 250, "2.1.5")
    expect(r.cmd("DATA"), 354)
    r.send("Subject: grüße\r\n\r\nhallo\r\n.\r\n".encode())
    qid = queued_id(expect(r.reply(), 250, "2.0.0"))
    r.close()
    assert queued_since(p, before) == [qid]
    content, env = p.queued_message(qid)
    assert "with UTF8SMTP id".encode() in content, content[:300]
    assert "sender üser@sender.test\n".encode() in env, env
    assert "rcpt dörte@example.test ".encode() in env, env
    assert b"smtputf8 1\n" in env, env


def test_dsn_parameters_recorded():
    p = instance("main")
    before = p.queue()
    r = connect(p)
    expect(r.cmd("MAIL FROM:<a@sender.test> RET=HDRS ENVID=env+2Bid-42"), 250, "2.1.0")
    expect(r.cmd("RCPT TO:<u@example.test> NOTIFY=SUCCESS,FAILURE "
                 "ORCPT=rfc822;orig+2Bu@example.test"), 250, "2.1.5")
    expect(r.cmd("RCPT TO:<v@example.test> NOTIFY=NEVER"), 250, "2.1.5")
    expect(r.cmd("RCPT TO:<w@example.test> NOTIFY=NEVER,SUCCESS"), 501, "5.5.4")
    expect(r.cmd("DATA"), 354)
    r.send(MSG + b".\r\n")
    qid = queued_id(expect(r.reply(), 250, "2.0.0"))
    r.close()
    assert queued_since(p, before) == [qid]
    _, env = p.queued_message(qid)
    assert b"envid env+id-42\n" in env, env
    assert b"ret 2\n" in env, env
    # NOTIFY bits: SUCCESS=2 | FAILURE=4 -> 6; NEVER=1
    assert b"\nrcpt u@example.test 6" in env, env
    assert b"\nrcpt v@example.test 1\n" in env, env
    assert b"w@example.test" not in env, env
    # RFC 3461 §4.2: the ORCPT must travel with the recipient.
    assert b"\nrcpt u@example.test 6 rfc822;orig+u@example.test\n" in env, env


def test_swaks_pipelined_send():
    p = instance("main")
    before = p.queue()
    res = swaks(p, "--pipeline", "--from", "s@sender.test", "--to", "sw@example.test,sw2@example.test",
                "--data", "Subject: via swaks\r\n\r\n.leading dot\r\nswaks body\r\n")
    assert res.returncode == 0, res.stdout + res.stderr
    assert re.search(r"<-  250 2\.0\.0 Ok: queued as", res.stdout), res.stdout
    assert "<-  250-PIPELINING" in res.stdout, res.stdout
    new = queued_since(p, before)
    assert len(new) == 1, new
    content, env = p.queued_message(new[0])
    assert b"\r\n\r\n.leading dot\r\nswaks body\r\n" in content, content
    assert b"Received: from swaks.test (unknown [127.0.0.1])" in content, content
    assert b"\nrcpt sw@example.test 0\n" in env and b"\nrcpt sw2@example.test 0\n" in env, env


# ---- relay ----

def test_relay_denied_and_address_tricks():
    p = instance("main")
    r = connect(p)
    expect(r.cmd("MAIL FROM:<a@sender.test>"), 250)
    for rcpt in ["u@other.test", "user%other.test@example.test", "other.test!user@example.test",
                 '"user@other.test"@example.test', "@example.test:user@other.test",
                 "@a.test,@example.test:user@other.test", "user@[127.0.0.1]",
                 "USER%other.test@EXAMPLE.TEST"]:
        text = expect(r.cmd("RCPT TO:<%s>" % rcpt), 554, "5.7.1", "Relay access denied")
    code, text = r.cmd("RCPT TO:<user@example.test.>")
    assert code != 250 and code in (501, 554), text
    expect(r.cmd("RCPT TO:<Postmaster>"), 250, "2.1.5")
    expect(r.cmd("RCPT TO:<postmaster>"), 250, "2.1.5")
    expect(r.cmd("RCPT TO:<user@Example.Test>"), 250, "2.1.5")  # domains are case-insensitive
    r.close()
    assert "relay access denied to <u@other.test>" in p.log()


def test_relay_denied_with_swaks():
    p = instance("main")
    before = p.queue()
    res = swaks(p, "--from", "s@sender.test", "--to", "x@remote.test")
    assert res.returncode != 0, res.stdout
    assert "<** 554 5.7.1 <x@remote.test>: Relay access denied" in res.stdout, res.stdout
    assert queued_since(p, before) == []


# ---- PIPELINING ----

def test_pipelined_group():
    p = instance("main")
    before = p.queue()
    r = connect(p)
    r.send("MAIL FROM:<a@sender.test>\r\nRCPT TO:<u1@example.test>\r\n"
           "RCPT TO:<x@other.test>\r\nRCPT TO:<u2@example.test>\r\nDATA\r\n")
    expect(r.reply(), 250, "2.1.0")
    expect(r.reply(), 250, "2.1.5")
    expect(r.reply(), 554, "5.7.1")
    expect(r.reply(), 250, "2.1.5")
    expect(r.reply(), 354)
    r.send(MSG + b".\r\nNOOP\r\nQUIT\r\n")
    qid = queued_id(expect(r.reply(), 250, "2.0.0"))
    expect(r.reply(), 250, "2.0.0")
    expect(r.reply(), 221)
    assert r.closed()
    assert queued_since(p, before) == [qid]
    _, env = p.queued_message(qid)
    assert b"rcpt u1@example.test " in env and b"rcpt u2@example.test " in env
    assert b"other.test" not in env


def test_content_before_354_rejected():
    p = instance("main")
    before = p.queue()
    r = connect(p)
    r.send("MAIL FROM:<a@sender.test>\r\nRCPT TO:<u@example.test>\r\nDATA\r\n"
           "Subject: eager\r\n\r\nbody\r\n.\r\n")
    expect(r.reply(), 250, "2.1.0")
    expect(r.reply(), 250, "2.1.5")
    expect(r.reply(), 554, "5.5.0", "synchronization")
    assert r.closed()
    assert r.buf == b"", r.buf
    time.sleep(0.2)
    assert queued_since(p, before) == []
    assert tmp_files(p) == []


# ---- DATA ----

def test_dot_stuffing_round_trip():
    p = instance("main")
    before = p.queue()
    with smtplib.SMTP("127.0.0.1", p.port()) as c:
        c.ehlo("client.test")
        # smtplib stuffs the leading dots; the spool must hold them once
        c.sendmail("a@sender.test", ["u@example.test"],
                   b"Subject: dots\r\n\r\n.hidden\r\n..two\r\n.\r\nend\r\n")
    new = queued_since(p, before)
    assert len(new) == 1, new
    content, _ = p.queued_message(new[0])
    assert content.endswith(b"\r\nSubject: dots\r\n\r\n.hidden\r\n..two\r\n.\r\nend\r\n"), content
    # and by hand: "..x" on the wire is ".x" in the spool
    r = connect(p)
    qid = send_message(r, body=b"Subject: raw\r\n\r\n..x\r\n...\r\n")
    r.close()
    content, _ = p.queued_message(queued_id(qid))
    assert content.endswith(b"\r\n\r\n.x\r\n..\r\n"), content


def test_message_size_limit():
    p = instance("main")
    limit = 2048
    before = p.queue()
    head = b"Subject: size\r\n\r\n"

    def body(n):  # n octets in all, lines of at most 900
        out = head
        while len(out) < n:
            line = b"b" * min(900, n - len(out) - 2)
            out += line + b"\r\n"
        assert len(out) == n, (len(out), n)
        return out
    exact = body(limit)
    over = body(limit + 1)
    r = connect(p)
    qid = queued_id(send_message(r, body=exact))
    content, env = p.queued_message(qid)
    assert content.endswith(b"\r\n" + exact), content[-100:]
    assert b"size %d\n" % len(content) in env
    after_ok = p.queue()
    expect(r.cmd("MAIL FROM:<a@sender.test> SIZE=%d" % limit), 250)
    expect(r.cmd("RCPT TO:<u@example.test>"), 250)
    expect(r.cmd("DATA"), 354)
    r.send(over + b".\r\n")
    expect(r.reply(), 552, "5.3.4")
    expect(r.cmd("NOOP"), 250)  # the session goes on, in step
    r.close()
    assert queued_since(p, after_ok) == []
    assert queued_since(p, before) == [qid]
    assert wait_for(lambda: tmp_files(p) == []), tmp_files(p)


def test_data_line_limit():
    p = instance("main")
    before = p.queue()
    r = connect(p)
    qid = queued_id(send_message(r, body=b"Subject: l\r\n\r\n" + b"y" * 1000 + b"\r\n"))
    expect(r.cmd("MAIL FROM:<a@sender.test>"), 250)
    expect(r.cmd("RCPT TO:<u@example.test>"), 250)
    expect(r.cmd("DATA"), 354)
    r.send(b"Subject: l\r\n\r\n" + b"z" * 1001 + b"\r\nmore\r\n.\r\n")
    expect(r.reply(), 550, "5.6.0", "longer than 1000")
    expect(r.cmd("NOOP"), 250)
    r.close()
    assert queued_since(p, before) == [qid]


def test_disconnect_mid_data():
    p = instance("main")
    before = p.queue()
    r = connect(p, ehlo="dropper.test")
    expect(r.cmd("MAIL FROM:<drop@sender.test>"), 250)
    expect(r.cmd("RCPT TO:<u@example.test>"), 250)
    expect(r.cmd("DATA"), 354)
    r.send(b"Subject: partial\r\n\r\nsome content without an end\r\n")
    time.sleep(0.1)
    r.close()
    assert p.wait_log("lost connection after DATA from 127.0.0.1")
    assert wait_for(lambda: tmp_files(p) == []), tmp_files(p)
    assert queued_since(p, before) == []


# ---- SMTP smuggling ----

SMUGGLE_VARIANTS = [b"\n.\n", b"\r.\r", b"\r\n.\n", b"\n.\r\n", b"\r\n.\r", b"\n..\n"]
SMUGGLED = (b"MAIL FROM:<evil@x.test>\r\nRCPT TO:<y@example.test>\r\nDATA\r\n"
            b"smuggled\r\n.\r\n")


def smuggle(r, variant):
    expect(r.cmd("MAIL FROM:<a@sender.test>"), 250)
    expect(r.cmd("RCPT TO:<u@example.test>"), 250)
    expect(r.cmd("DATA"), 354)
    r.send(b"header: x\r\n\r\nbody" + variant + SMUGGLED)
    reply = r.reply()
    # exactly one reply follows the real end: the next one is the NOOP's
    r.send(b"NOOP smuggle-check\r\n")
    expect(r.reply(), 250, "2.0.0")
    r.sock.settimeout(0.2)
    try:
        extra = r.sock.recv(100)
    except socket.timeout:
        extra = b""
    finally:
        r.sock.settimeout(10)
    assert extra == b"" and r.buf == b"", (variant, extra, r.buf)
    return reply


def test_smuggling_rejected():
    p = instance("main")
    before = p.queue()
    r = connect(p)
    for v in SMUGGLE_VARIANTS:
        reply = smuggle(r, v)
        expect(reply, 550, "5.5.2", "bare CR or LF")
    r.close()
    assert queued_since(p, before) == []
    assert "evil@x.test" not in p.log()


def test_smuggling_normalized():
    p = instance("normalize")
    r = connect(p)
    for v in SMUGGLE_VARIANTS:
        before = p.queue()
        qid = queued_id(expect(smuggle(r, v), 250, "2.0.0"))
        assert queued_since(p, before) == [qid], (v, p.queue())
        content, env = p.queued_message(qid)
        assert b"MAIL FROM:<evil@x.test>\r\nRCPT TO:<y@example.test>\r\nDATA\r\nsmuggled\r\n" \
            in content, (v, content)
        assert b"\r\n\r\nbody\r\n" in content, (v, content)
        assert b"evil" not in env and b"y@example.test" not in env, env
        # no bare CR or LF is left in the content
        assert re.search(rb"\r(?!\n)|(?<!\r)\n", content) is None, (v, content)
    r.close()
    assert len(p.queue()) == len(SMUGGLE_VARIANTS)
    assert "from=<evil@x.test>" not in p.log()


# ---- BDAT ----

def test_bdat_chunks():
    p = instance("main")
    before = p.queue()
    r = connect(p)
    expect(r.cmd("MAIL FROM:<a@sender.test> BODY=BINARYMIME"), 250)
    expect(r.cmd("RCPT TO:<u@example.test>"), 250)
    r.send(b"BDAT 19\r\nSubject: chunks\r\n\r\n")
    expect(r.reply(), 250, "2.0.0", "19 octets received")
    r.send(b"BDAT 8\r\n.one\r\n\r\n")  # no dot-stuffing in BDAT
    expect(r.reply(), 250, "2.0.0", "27 octets")
    expect(r.cmd("DATA"), 503, "5.5.1", "DATA after BDAT")
    r.send(b"BDAT 5 LAST\r\ntwo\r\n")
    qid = queued_id(expect(r.reply(), 250, "2.0.0"))
    content, env = p.queued_message(qid)
    assert content.endswith(b"\r\nSubject: chunks\r\n\r\n.one\r\n\r\ntwo\r\n"), content
    assert b"body 3\n" in env, env
    # pipelined chunks, then BDAT 0 LAST
    expect(r.cmd("MAIL FROM:<a@sender.test>"), 250)
    expect(r.cmd("RCPT TO:<u@example.test>"), 250)
    r.send(b"BDAT 12\r\nSubject: z\r\nBDAT 4\r\n\r\nb\nBDAT 0 LAST\r\n")
    expect(r.reply(), 250, "2.0.0", "12 octets")
    # a bare LF in BDAT content under reject ends the transaction at once
    expect(r.reply(), 550, "5.5.2", "bare CR or LF")
    expect(r.reply(), 503, "5.5.1", "need MAIL")
    expect(r.cmd("MAIL FROM:<a@sender.test>"), 250)
    expect(r.cmd("RCPT TO:<u@example.test>"), 250)
    r.send(b"BDAT 0 LAST\r\n")
    qid2 = queued_id(expect(r.reply(), 250, "2.0.0"))
    content2, _ = p.queued_message(qid2)
    assert content2.startswith(b"Received:") and content2.count(b"\r\n") == 3, content2
    expect(r.cmd("NOOP"), 250)
    r.close()
    assert queued_since(p, before) == sorted([qid, qid2])


def test_bdat_out_of_order():
    p = instance("main")
    before = p.queue()
    r = connect(p)
    # the chunk is read and dropped: "QUIT" inside it is not a command
    r.send(b"BDAT 6\r\nQUIT\r\n")
    expect(r.reply(), 503, "5.5.1", "need MAIL")
    expect(r.cmd("NOOP"), 250, "2.0.0")
    expect(r.cmd("MAIL FROM:<a@sender.test>"), 250)
    r.send(b"BDAT 6 LAST\r\nQUIT\r\n")
    expect(r.reply(), 503, "5.5.1", "need RCPT")
    expect(r.cmd("NOOP"), 250, "2.0.0")
    expect(r.cmd("BDAT"), 501, "5.5.4")
    expect(r.cmd("BDAT x LAST"), 501, "5.5.4")
    # a refused chunk that arrives in pieces is still read to its end
    expect(r.cmd("MAIL FROM:<a@sender.test>"), 250)
    r.send(b"BDAT 12\r\nQUIT\r\n")
    time.sleep(0.3)
    r.send(b"QUIT\r\n")
    expect(r.reply(), 503, "5.5.1", "need RCPT")
    expect(r.cmd("NOOP"), 250, "2.0.0")
    r.send(b"BDAT 12\r\nQUIT\r\n")  # no transaction at all
    time.sleep(0.3)
    r.send(b"QUIT\r\n")
    expect(r.reply(), 503, "5.5.1", "need MAIL")
    expect(r.cmd("NOOP"), 250, "2.0.0")
    # BDAT after DATA content is impossible to reach on the wire; DATA after
    # BDAT is covered in test_bdat_chunks.
    r.close()
    assert queued_since(p, before) == []


# ---- session limits and timeouts ----

def test_recipient_limit():
    p = instance("session")
    before = p.queue()
    r = connect(p)
    expect(r.cmd("MAIL FROM:<a@sender.test>"), 250)
    for i in range(3):
        expect(r.cmd("RCPT TO:<r%d@example.test>" % i), 250, "2.1.5")
    expect(r.cmd("RCPT TO:<r3@example.test>"), 452, "4.5.3", "too many recipients")
    expect(r.cmd("DATA"), 354)
    r.send(MSG + b".\r\n")
    qid = queued_id(expect(r.reply(), 250, "2.0.0"))
    r.close()
    _, env = p.queued_message(qid)
    assert env.count(b"\nrcpt ") == 3 and b"r3@" not in env, env
    assert queued_since(p, before) == [qid]


def test_error_limit():
    p = instance("session")
    r = connect(p)
    expect(r.cmd("BOGUS1"), 502, "5.5.2")
    expect(r.cmd("BOGUS2"), 502, "5.5.2")
    r.send("BOGUS3\r\n")
    expect(r.reply(), 502, "5.5.2")
    expect(r.reply(), 421, "4.7.0", "too many errors")
    assert r.closed()


def test_line_limit():
    p = instance("session")
    r = connect(p)
    expect(r.cmd("NOOP " + "a" * 507), 250)  # 512 octets: at the limit
    expect(r.cmd("NOOP " + "a" * 508), 500, "5.5.2", "line too long")
    # a much longer line, sent in pieces, is one error and the session goes on
    r.send("NOOP " + "b" * 5000)
    expect(r.reply(), 500, "5.5.2", "line too long")
    r.send("c" * 3000 + "\r\n")
    expect(r.cmd("NOOP"), 250, "2.0.0")
    expect(r.cmd("MAIL FROM:<a@sender.test>"), 250)
    r.close()


def test_command_timeout():
    p = instance("session")
    r = connect(p)
    start = time.time()
    expect(r.reply(), 421, "4.4.2", "timeout exceeded")
    took = time.time() - start
    assert 1.5 <= took <= 4, took
    assert r.closed()
    assert p.wait_log("timeout after command from 127.0.0.1")


def test_data_timeout():
    p = instance("session")
    before = p.queue()
    r = connect(p)
    expect(r.cmd("MAIL FROM:<a@sender.test>"), 250)
    expect(r.cmd("RCPT TO:<u@example.test>"), 250)
    expect(r.cmd("DATA"), 354)
    start = time.time()
    # keeps sending (so the command timeout never fires) but never ends
    r.sock.settimeout(0.3)
    got = b""
    while time.time() - start < 5 and not got:
        try:
            r.sock.sendall(b"line\r\n")
            got = r.sock.recv(1000)
        except socket.timeout:
            pass
    r.sock.settimeout(10)
    r.buf = got
    expect(r.reply(), 421, "4.4.2")
    took = time.time() - start
    assert 1.2 <= took <= 3.5, took
    assert r.closed()
    assert p.wait_log("timeout after DATA from 127.0.0.1")
    assert queued_since(p, before) == []
    assert wait_for(lambda: tmp_files(p) == []), tmp_files(p)


def test_min_data_rate():
    p = instance("rate")
    before = p.queue()
    r = connect(p)
    expect(r.cmd("MAIL FROM:<a@sender.test>"), 250)
    expect(r.cmd("RCPT TO:<u@example.test>"), 250)
    expect(r.cmd("DATA"), 354)
    start = time.time()
    r.sock.settimeout(0.5)
    got = b""
    while time.time() - start < 20 and not got:
        try:
            r.sock.sendall(b"slow\r\n")  # ~12 B/s, far below 100K/s
            got = r.sock.recv(1000)
        except socket.timeout:
            pass
    r.sock.settimeout(10)
    r.buf = got
    expect(r.reply(), 421, "4.4.2")
    assert time.time() - start < 15, time.time() - start
    assert r.closed()
    assert queued_since(p, before) == []


def test_early_talker():
    p = instance("session")
    r = Raw(p.port("slow"))
    r.send("EHLO eager.test\r\n")
    expect(r.reply(), 554, "5.5.1", "talked before greeting")
    assert r.closed()
    assert p.wait_log("early talker 127.0.0.1 rejected")
    # a patient client gets the greeting after the pause
    r = Raw(p.port("slow"))
    start = time.time()
    expect(r.reply(), 220)
    assert time.time() - start >= 0.9
    expect(r.cmd("EHLO patient.test"), 250)
    r.close()


def test_max_sessions_per_ip():
    p = instance("limits")
    a = connect(p, source="127.0.0.2")
    b = connect(p, source="127.0.0.2", ehlo=None)
    c = Raw(p.port(), source="127.0.0.2")
    expect(c.reply(), 421, "4.7.0", "too many connections from 127.0.0.2")
    assert c.closed()
    d = connect(p, source="127.0.0.3")  # another address is not affected
    expect(d.cmd("QUIT"), 221)
    # the trusted network is exempt
    t = [connect(p, source="127.0.0.100", ehlo=None) for _ in range(3)]
    for x in t:
        x.close()
    # a closed session frees its place
    b.close()
    assert p.wait_log("disconnect from unknown[127.0.0.2]")
    time.sleep(0.1)
    e = connect(p, source="127.0.0.2")
    expect(e.cmd("QUIT"), 221)
    a.close()
    assert "too many sessions from this address" in p.log()


def test_connection_rate_limit():
    p = instance("limits")
    if time.gmtime().tm_sec >= 57:  # the count is per clock minute
        time.sleep(60 - time.gmtime().tm_sec + 0.2)
    for _ in range(5):
        r = connect(p, source="127.0.0.4", ehlo=None)
        expect(r.cmd("QUIT"), 221)
        r.close()
    r = Raw(p.port(), source="127.0.0.4")
    expect(r.reply(), 421, "4.7.0", "too many connections from 127.0.0.4")
    assert r.closed()
    assert "connection rate limit" in p.log()
    r = connect(p, source="127.0.0.5")
    r.close()


# ---- PROXY protocol ----

def proxied_message(p, header, helo):
    r = Raw(p.port("proxy"))
    r.send(header)
    expect(r.reply(), 220)
    expect(r.cmd("EHLO " + helo), 250)
    qid = queued_id(send_message(r))
    r.close()
    content, env = p.queued_message(qid)
    return content, env


def test_proxy_v1():
    p = instance("session")
    content, env = proxied_message(p, b"PROXY TCP4 192.0.2.7 192.0.2.1 40000 25\r\n", "pv1.test")
    assert b"Received: from pv1.test (unknown [192.0.2.7])" in content, content[:300]
    assert b"client_addr 192.0.2.7\n" in env, env
    assert "PROXY from 127.0.0.1: client unknown[192.0.2.7]:40000" in p.log()
    # IPv6, and the PROXY header pipelined with the first command
    r = Raw(p.port("proxy"))
    r.send(b"PROXY TCP6 2001:db8::5 2001:db8::1 4242 25\r\nEHLO pv1six.test\r\n")
    expect(r.reply(), 220)
    expect(r.reply(), 250)
    r.close()
    assert p.wait_log("client unknown[2001:db8::5]:4242")


def test_proxy_v2():
    p = instance("session")
    sig = b"\r\n\r\n\x00\r\nQUIT\n"
    body = socket.inet_aton("198.51.100.9") + socket.inet_aton("198.51.100.1") + \
        struct.pack("!HH", 50123, 25)
    tlv = b"\x04\x00\x02ab"  # a TLV (NOOP type) is skipped
    header = sig + b"\x21\x11" + struct.pack("!H", len(body) + len(tlv)) + body + tlv
    content, env = proxied_message(p, header, "pv2.test")
    assert b"Received: from pv2.test (unknown [198.51.100.9])" in content, content[:300]
    assert "client unknown[198.51.100.9]:50123" in p.log()
    # LOCAL command: the connection's own address stays
    r = Raw(p.port("proxy"))
    r.send(sig + b"\x20\x00\x00\x00")
    expect(r.reply(), 220)
    expect(r.cmd("QUIT"), 221)


def test_proxy_bad_header():
    p = instance("session")
    for bad in [b"EHLO client.test\r\n", b"PROXY TCP4 1.2.3 4.5.6.7 1 2\r\n",
                b"PROXY TCP4 192.0.2.7 192.0.2.1 040000 25\r\n",
                b"\r\n\r\n\x00\r\nQUIT\n\x31\x11\x00\x0c" + b"\x00" * 12]:
        r = Raw(p.port("proxy"))
        r.send(bad)
        expect(r.reply(), 421, "4.7.0", "bad PROXY header")
        assert r.closed(), bad
    assert "bad PROXY header from 127.0.0.1" in p.log()


# ---- XCLIENT ----

def test_xclient_allowed():
    p = instance("session")
    r = connect(p)
    code, text = r.cmd("EHLO front.test")
    assert "250-XCLIENT NAME ADDR PORT PROTO HELO LOGIN" in text, text
    # as an outside client: no relaying
    expect(r.cmd("XCLIENT ADDR=192.0.2.99 NAME=outside.test PORT=1234"), 220)
    assert p.wait_log("XCLIENT: client is now outside.test[192.0.2.99]:1234")
    expect(r.cmd("EHLO outside-helo.test"), 250)
    expect(r.cmd("MAIL FROM:<a@sender.test>"), 250)
    expect(r.cmd("RCPT TO:<x@remote.test>"), 554, "5.7.1", "Relay access denied")
    expect(r.cmd("RCPT TO:<u@example.test>"), 250)
    expect(r.cmd("DATA"), 354)
    r.send(MSG + b".\r\n")
    qid = queued_id(expect(r.reply(), 250))
    content, env = p.queued_message(qid)
    assert b"Received: from outside-helo.test (outside.test [192.0.2.99])" in content, content
    # XCLIENT during a transaction is refused
    expect(r.cmd("MAIL FROM:<a@sender.test>"), 250)
    expect(r.cmd("XCLIENT ADDR=127.0.0.100"), 503, "5.5.1")
    expect(r.cmd("RSET"), 250)
    # as a client of the trusted network: relaying allowed
    expect(r.cmd("XCLIENT ADDR=127.0.0.100 NAME=[UNAVAILABLE]"), 220)
    expect(r.cmd("EHLO inside.test"), 250)
    expect(r.cmd("MAIL FROM:<a@sender.test>"), 250)
    expect(r.cmd("RCPT TO:<x@remote.test>"), 250, "2.1.5")
    expect(r.cmd("RSET"), 250)
    expect(r.cmd("XCLIENT ADDR=not-an-address"), 501, "5.5.4")
    r.close()


def test_xclient_does_not_leak_session_slots():
    # XCLIENT moves the session to another address; the place it held for
    # 127.0.0.1 must be given back when it ends.
    p2 = instance("xclient_limits")
    for i in range(4):
        r = connect(p2)
        expect(r.cmd("XCLIENT ADDR=192.0.2.%d" % (10 + i)), 220)
        expect(r.cmd("QUIT"), 221)
        assert r.closed()
        r.close()
        time.sleep(0.1)
    r = connect(p2)
    expect(r.cmd("QUIT"), 221)


CONFIGS["xclient_limits"] = lambda: Postern(
    smtp='max_sessions_per_ip = 2; connection_rate_limit = 0; xclient_hosts = ["127.0.0.1/32"];')


def test_xclient_denied():
    p = instance("main")  # no xclient_hosts at all
    r = connect(p)
    expect(r.cmd("XCLIENT ADDR=127.0.0.100"), 550, "5.7.0", "insufficient authorization")
    expect(r.cmd("MAIL FROM:<a@sender.test>"), 250)
    expect(r.cmd("RCPT TO:<x@remote.test>"), 554, "5.7.1")
    r.close()
    p = instance("session")  # xclient_hosts has 127.0.0.1 only
    r = connect(p, source="127.0.0.2")
    code, text = r.cmd("EHLO other.test")
    assert "XCLIENT" not in text, text
    expect(r.cmd("XCLIENT ADDR=127.0.0.100"), 550, "5.7.0")
    r.close()


run([
    test_smtplib_send_is_queued,
    test_ehlo_extensions,
    test_helo_and_small_commands,
    test_rset_clears_transaction,
    test_state_machine,
    test_address_and_parameter_errors,
    test_smtputf8_address_queued,
    test_dsn_parameters_recorded,
    test_swaks_pipelined_send,
    test_relay_denied_and_address_tricks,
    test_relay_denied_with_swaks,
    test_pipelined_group,
    test_content_before_354_rejected,
    test_dot_stuffing_round_trip,
    test_message_size_limit,
    test_data_line_limit,
    test_disconnect_mid_data,
    test_smuggling_rejected,
    test_smuggling_normalized,
    test_bdat_chunks,
    test_bdat_out_of_order,
    test_recipient_limit,
    test_error_limit,
    test_line_limit,
    test_command_timeout,
    test_data_timeout,
    test_min_data_rate,
    test_early_talker,
    test_max_sessions_per_ip,
    test_connection_rate_limit,
    test_proxy_v1,
    test_proxy_v2,
    test_proxy_bad_header,
    test_xclient_allowed,
    test_xclient_does_not_leak_session_slots,
    test_xclient_denied,
])

"""The queue manager and relay: what the edge accepted reaches Postfix's
smtp-sink (a real MTA's test server) downstream, is retried on 4xx and
disconnects, bounced with an RFC 3464 DSN on 5xx or at the end of its
lifetime, and can be inspected and steered with posternctl."""
import os
import re
import smtplib
import subprocess
import time

from harness import BUILD, Postern, Sink, free_port, run

RELAY = ('local_domains = ["example.test", "sink.test", "bad.test", "soft.test", '
         '"gone.test", "drop.test"]; trusted_networks = ["127.0.0.100/32"];')


def postern(sinks, queue="", extra=""):
    transports = ", ".join('{ domain = "%s"; nexthop = "smtp:[127.0.0.1]:%d"; }' % (d, port)
                           for d, port in sinks.items())
    return Postern(relay=RELAY, extra='queue = { min_backoff = "1s"; max_backoff = "1s"; '
                   'idle_timeout = "1s"; %s };\ntransports = ( %s );\n%s'
                   % (queue, transports, extra)).start()


def send(p, sender, rcpts, body="Subject: test\r\n\r\nhello\r\n", port=None):
    with smtplib.SMTP("127.0.0.1", port or p.port()) as c:
        c.sendmail(sender, rcpts, body.encode() if isinstance(body, str) else body)


def wait_empty(p, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not p.queue():
            return True
        time.sleep(0.05)
    return False


def test_relay_delivers_and_removes():
    sink = Sink()
    p = postern({"sink.test": sink.port})
    try:
        body = "Subject: relay\r\n\r\nline one\r\n.\r\n..two dots\r\nend\r\n"
        send(p, "a@example.test", ["x@sink.test", "y@sink.test"], body)
        msgs = sink.wait_messages(1)
        assert len(msgs) == 1, msgs
        m = msgs[0]
        assert b"X-Rcpt-Args: <x@sink.test>" in m and b"X-Rcpt-Args: <y@sink.test>" in m, m
        assert b"Received: from " in m and b"by mx.postern.test (Postern)" in m
        # dots arrive exactly as the client meant them (smtp-sink dumps with LF)
        assert b"\nline one\n.\n..two dots\nend\n" in m, m
        assert wait_empty(p), p.queue()
        assert p.wait_log("status=sent"), p.log()
    finally:
        p.cleanup()
        sink.cleanup()


def test_5xx_bounces_with_dsn():
    good, bad = Sink(), Sink(["-f", "rcpt"])
    p = postern({"sink.test": good.port, "bad.test": bad.port})
    try:
        send(p, "sender@sink.test", ["ok@sink.test", "nope@bad.test"])
        msgs = good.wait_messages(2)
        assert len(msgs) == 2, [m[:300] for m in msgs]
        dsn = [m for m in msgs if b"multipart/report" in m]
        assert len(dsn) == 1, msgs
        d = dsn[0]
        assert b"X-Mail-Args: <> " in d and b"NOTIFY=NEVER" in d, d[:500]
        assert b"Final-Recipient: rfc822; nope@bad.test" in d, d
        assert b"ok@sink.test" not in d.split(b"message/delivery-status", 1)[1].split(b"\n--")[0]
        assert b"Action: failed" in d and re.search(rb"Status: 5\.\d+\.\d+", d), d
        assert wait_empty(p), p.queue()
        assert p.wait_log("non-delivery notification"), p.log()
    finally:
        p.cleanup()
        good.cleanup()
        bad.cleanup()


def test_null_sender_is_never_bounced_to():
    good, bad = Sink(), Sink(["-f", "rcpt"])
    p = postern({"sink.test": good.port, "bad.test": bad.port})
    try:
        send(p, "", ["nope@bad.test"])
        assert wait_empty(p), p.queue()
        time.sleep(0.5)
        assert good.messages() == []
        assert "status=bounced" in p.log()
    finally:
        p.cleanup()
        good.cleanup()
        bad.cleanup()


def test_4xx_is_retried_then_delivered():
    soft = Sink(["-r", "rcpt"])
    port = soft.port
    p = postern({"soft.test": port})
    try:
        send(p, "a@example.test", ["x@soft.test"])
        assert p.wait_log("status=deferred"), p.log()
        assert len(p.queue()) == 1
        soft.cleanup()
        good = Sink(port=port)
        try:
            msgs = good.wait_messages(1, timeout=15)
            assert len(msgs) == 1, p.log()
            assert wait_empty(p), p.queue()
        finally:
            good.cleanup()
    finally:
        p.cleanup()


def test_disconnect_after_data_is_retried():
    drop = Sink(["-q", "."])
    port = drop.port
    p = postern({"drop.test": port})
    try:
        send(p, "a@example.test", ["x@drop.test"])
        assert p.wait_log("status=deferred"), p.log()
        drop.cleanup()
        good = Sink(port=port)
        try:
            assert len(good.wait_messages(1, timeout=15)) >= 1, p.log()
            assert wait_empty(p), p.queue()
        finally:
            good.cleanup()
    finally:
        p.cleanup()


def test_421_is_deferred():
    s421 = Sink(["-Q", "mail"])
    p = postern({"soft.test": s421.port})
    try:
        send(p, "a@example.test", ["x@soft.test"])
        assert p.wait_log("status=deferred"), p.log()
        assert len(p.queue()) == 1
    finally:
        p.cleanup()
        s421.cleanup()


def test_lifetime_expiry_bounces_and_delay_warning():
    good = Sink()
    dead = free_port()  # nothing listens: connection refused
    p = postern({"sink.test": good.port, "gone.test": dead},
                queue='lifetime = "3s"; delay_warning = "1s";')
    try:
        send(p, "sender@sink.test", ["x@gone.test"])
        msgs = good.wait_messages(2, timeout=15)
        kinds = sorted(b"Action: delayed" in m and "delayed" or
                       b"Action: failed" in m and "failed" or "?" for m in msgs)
        assert kinds == ["delayed", "failed"], [m[:400] for m in msgs]
        failed = [m for m in msgs if b"Action: failed" in m][0]
        assert b"Status: 4.4.7" in failed, failed
        assert wait_empty(p), p.queue()
    finally:
        p.cleanup()
        good.cleanup()


def test_delivered_recipient_not_repeated_after_restart():
    good = Sink()
    dead = free_port()
    p = postern({"sink.test": good.port, "gone.test": dead})
    try:
        send(p, "a@example.test", ["ok@sink.test", "x@gone.test"])
        assert len(good.wait_messages(1)) == 1
        assert p.wait_log("status=deferred"), p.log()
        qid = p.queue()[0]
        _, env = p.queued_message(qid)
        with open(os.path.join(p.spool, "queue", qid), "rb") as f:
            assert b"\nD 0 " in f.read(), "no delivery record"
        p.stop()
        p.start()
        # a restarted queue manager retries x@gone.test, never ok@sink.test
        assert p.wait_log("queue manager started") and p.wait_log("relay=", 10)
        deadline = time.time() + 5
        while time.time() < deadline and p.log().count("to=<x@gone.test>, relay=") < 2:
            time.sleep(0.1)
        assert p.log().count("to=<x@gone.test>, relay=") >= 2, p.log()
        assert p.log().count("to=<ok@sink.test>, relay=") == 1, p.log()
        assert len(good.messages()) == 1, good.messages()
    finally:
        p.cleanup()
        good.cleanup()


def posternctl(p, *args):
    return subprocess.run([os.path.join(BUILD, "posternctl"), "-c", p.conf, "queue"] + list(args),
                          capture_output=True, text=True, timeout=20)


def test_posternctl_queue_commands():
    dead = free_port()
    p = postern({"gone.test": dead})
    try:
        send(p, "a@example.test", ["x@gone.test"])
        assert p.wait_log("status=deferred"), p.log()
        qid = p.queue()[0]
        r = posternctl(p, "list")
        assert r.returncode == 0 and qid in r.stdout and "x@gone.test" in r.stdout, r
        assert "-- 1 Kbytes in 1 Request." in r.stdout, r.stdout
        r = posternctl(p, "show", qid)
        assert r.returncode == 0 and "recipient: <x@gone.test> pending" in r.stdout, r
        assert "Subject: test" in r.stdout, r.stdout
        assert posternctl(p, "hold", qid).returncode == 0
        assert p.queue() == [] and os.path.exists(os.path.join(p.spool, "hold", qid))
        r = posternctl(p, "list")
        assert qid + "!" in r.stdout, r.stdout
        assert posternctl(p, "hold", qid).returncode == 1
        assert posternctl(p, "release", qid).returncode == 0
        assert p.queue() == [qid]
        assert posternctl(p, "flush").returncode == 0
        assert posternctl(p, "flush", qid).returncode == 0
        assert posternctl(p, "delete", qid).returncode == 0
        assert p.queue() == []
        r = posternctl(p, "show", qid)
        assert r.returncode == 1 and "no such message" in r.stderr, r
        assert posternctl(p, "bogus").returncode == 2
        assert "Mail queue is empty" in posternctl(p, "list").stdout
    finally:
        p.cleanup()


run([test_relay_delivers_and_removes, test_5xx_bounces_with_dsn,
     test_null_sender_is_never_bounced_to, test_4xx_is_retried_then_delivered,
     test_disconnect_after_data_is_retried, test_421_is_deferred,
     test_lifetime_expiry_bounces_and_delay_warning,
     test_delivered_recipient_not_repeated_after_restart, test_posternctl_queue_commands])

"""The greylist filter in the real posternd with real clients retrying, on
both state back ends (LMDB in the spool, a real redis-server): the first
attempt of a triplet is refused at RCPT with 451 4.7.1, an immediate retry
too; after the delay the retry is accepted, queued, and its log line lists
GREYLIST_PASS; a second message of the triplet (also from another host of
the client's /24) is accepted at once. With stage = "data" the refusal is
the answer to DATA. swaks retries in a bounded loop when installed. Fault:
Redis paused with SIGSTOP while a session waits at RCPT: that session is
answered within the store's timeout (accepted: on_error skip, and the
message's log line shows GREYLIST_ERROR), and another session on the same
(single) worker answers NOOP meanwhile."""
import shutil
import smtplib
import subprocess
import time

from harness import Postern, Raw, Redis, Skip, run

MSG = b"Subject: greylist test\r\n\r\nhello\r\n"
SENDER = "sender@example.org"
RCPT = "user@example.test"
DELAY = 2.0


def postern(state="", settings="", workers=1):
    extra = ('filters = ( { name = "greylist"; delay = "%ds"; retry_window = "1m"; '
             'auto_allow_after = 0; %s } );\n%s' % (DELAY, settings, state))
    return Postern(extra=extra, workers=workers).start()


def redis_state(r, timeout="1s"):
    return 'state = { backend = "redis"; redis = "%s"; timeout = "%s"; };' % (r.address(), timeout)


def send(p, source, rcpt=RCPT):
    with smtplib.SMTP("127.0.0.1", p.port(), source_address=(source, 0), timeout=10) as c:
        c.sendmail(SENDER, [rcpt], MSG)


def refused(p, source, rcpt=RCPT):
    """Sends; the recipient must be refused with 451 4.7.1. Returns the text."""
    try:
        send(p, source, rcpt)
    except smtplib.SMTPRecipientsRefused as e:
        code, text = e.recipients[rcpt]
        assert code == 451 and text.startswith(b"4.7.1 Greylisted"), (code, text)
        return text.decode()
    raise AssertionError("accepted without greylisting")


def wait_queue(p, n, timeout=5):
    deadline = time.time() + timeout
    while time.time() < deadline and len(p.queue()) < n:
        time.sleep(0.05)
    return p.queue()


def retry_scenario(p):
    first = time.time()
    text = refused(p, "127.0.0.2")
    assert "seconds left" in text, text
    refused(p, "127.0.0.2")  # an immediate retry: still too early
    assert p.queue() == [], p.queue()
    time.sleep(max(0.0, first + DELAY + 0.3 - time.time()))
    send(p, "127.0.0.2")
    assert len(wait_queue(p, 1)) == 1, p.queue()
    assert p.wait_log("symbols=GREYLIST_PASS(0) score=0"), p.log()
    start = time.time()
    send(p, "127.0.0.2")  # the same triplet again: at once
    send(p, "127.0.0.3")  # another host of 127.0.0.0/24
    assert time.time() - start < DELAY, "took %.1fs" % (time.time() - start)
    assert len(wait_queue(p, 3)) == 3, p.queue()
    assert p.log().count("symbols=GREYLIST_KNOWN(0)") == 2, p.log()


def cleanup(*things):
    for t in things:
        if t is not None:
            t.cleanup()


def test_retry_lmdb():
    p = None
    try:
        p = postern()
        retry_scenario(p)
    finally:
        cleanup(p)


def test_retry_redis():
    r, p = Redis(), None
    try:
        p = postern(redis_state(r))
        retry_scenario(p)
        # the state is Redis's: the passed triplet is there under the prefix
        keys = r.command("KEYS", "postern:gl:p:*")
        assert keys is not None and keys.startswith(b"*1"), keys
    finally:
        cleanup(p, r)


def test_data_stage():
    p = None
    try:
        p = postern(settings='stage = "data";')
        first = time.time()
        for _ in range(2):
            try:
                send(p, "127.0.0.2")
                raise AssertionError("accepted without greylisting")
            except smtplib.SMTPDataError as e:
                assert e.smtp_code == 451 and e.smtp_error.startswith(b"4.7.1 Greylisted"), e
        assert p.queue() == [], p.queue()
        time.sleep(max(0.0, first + DELAY + 0.3 - time.time()))
        send(p, "127.0.0.2")
        assert len(wait_queue(p, 1)) == 1, p.queue()
        assert p.wait_log("symbols=GREYLIST_PASS(0) score=0"), p.log()
    finally:
        cleanup(p)


def test_swaks_retries():
    if shutil.which("swaks") is None:
        raise Skip("swaks is not installed")
    p = None
    try:
        p = postern()
        outputs = []
        deadline = time.time() + DELAY + 8
        for attempt in range(12):
            rc = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % p.port(),
                                 "--local-interface", "127.0.0.5", "--from", SENDER,
                                 "--to", RCPT, "--timeout", "10"],
                                capture_output=True, text=True, timeout=30)
            outputs.append(rc.stdout)
            if rc.returncode == 0 or time.time() > deadline:
                break
            time.sleep(1)
        assert rc.returncode == 0, outputs[-1]
        assert len(outputs) >= 2, outputs  # refused at least once
        assert "451 4.7.1 Greylisted" in outputs[0], outputs[0]
        assert len(wait_queue(p, 1)) == 1, p.queue()
    finally:
        cleanup(p)


def test_redis_paused_at_rcpt():
    r, p, a, b = Redis(), None, None, None
    try:
        # the store's timeout (1 s) is shorter than the filter's (4 s)
        p = postern(redis_state(r, "1s"), settings='timeout = "4s";', workers=1)
        a = Raw(p.port(), source="127.0.0.6")
        assert a.reply()[0] == 220
        assert a.cmd("EHLO a.test")[0] == 250
        assert a.cmd("MAIL FROM:<%s>" % SENDER)[0] == 250
        r.pause()
        start = time.time()
        a.send("RCPT TO:<%s>\r\n" % RCPT)
        time.sleep(0.1)
        b = Raw(p.port(), source="127.0.0.7")
        assert b.reply()[0] == 220
        assert b.cmd("NOOP")[0] == 250
        noop = time.time() - start
        code, text = a.reply()
        answered = time.time() - start
        assert code == 250, (code, text)  # on_error skip: fail open
        assert noop < 0.8, "NOOP of the other session took %.2fs" % noop
        assert 0.8 <= answered < 2.5, "RCPT answered after %.2fs" % answered
        r.resume()
        assert a.cmd("DATA")[0] == 354
        a.send("Subject: x\r\n\r\nhello\r\n.\r\n")
        assert a.reply()[0] == 250
        assert p.wait_log("symbols=GREYLIST_ERROR(0) score=0"), p.log()
        assert a.cmd("QUIT")[0] == 221
    finally:
        if r is not None:
            r.resume()
        for c in (a, b):
            if c is not None:
                c.close()
        cleanup(p, r)


run([test_retry_lmdb, test_retry_redis, test_data_stage, test_swaks_retries,
     test_redis_paused_at_rcpt])

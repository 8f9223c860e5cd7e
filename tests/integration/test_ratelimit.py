"""The ratelimit filter in the real posternd: an inbound client over its
limit gets 450 4.7.1 at DATA while another client still passes; an
authenticated user (submission with STARTTLS + AUTH) and a trusted-network
client over a hold bucket get 250 but their message lands in spool hold/,
with a warning naming the user and sender; three posternd sharing one Redis
accept exactly N of 3N concurrent messages of one sender; a hung or stopped
Redis costs one state timeout per message and lets mail through (skip)."""
import concurrent.futures
import os
import smtplib
import ssl
import time

from harness import Postern, Redis, run

MSG = b"Subject: ratelimit test\r\n\r\nhello\r\n"


def limits(*groups, state=""):
    return ('filters = ( { name = "ratelimit"; on_error = "skip"; timeout = "5s"; '
            'limits = ( %s ); } );\n%s' % (", ".join("{ %s }" % g for g in groups), state))


def redis_state(redis, timeout="500ms"):
    return 'state = { backend = "redis"; redis = "%s"; timeout = "%s"; };' % (
        redis.address(), timeout)


def send(port, sender="sender@example.org", rcpt="user@example.test", source="127.0.0.1",
         host="127.0.0.1"):
    """One message on a new connection: (code, text) of the DATA command when
    it was refused, else the reply to the end of data."""
    with smtplib.SMTP(host, port, source_address=(source, 0), timeout=30) as c:
        return send_on(c, sender, rcpt)


def send_on(c, sender, rcpt):
    c.ehlo_or_helo_if_needed()
    code, text = c.mail(sender)
    assert code == 250, (code, text)
    code, text = c.rcpt(rcpt)
    assert code == 250, (code, text)
    c.putcmd("data")
    code, text = c.getreply()
    if code != 354:
        c.rset()
        return code, text.decode(errors="replace")
    c.send(MSG + b".\r\n")
    code, text = c.getreply()
    return code, text.decode(errors="replace")


def queue_id(text):
    assert "queued as" in text, text
    return text.rsplit(" ", 1)[1]


def held(p):
    d = os.path.join(p.spool, "hold")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def cleanup(*things):
    for t in things:
        if t is not None:
            t.cleanup()


# ---- (a) inbound: 450 4.7.1 for the client over its limit only ----

def test_inbound_client_ip():
    p = Postern(extra=limits('key = "client_ip"; count = "messages"; limit = 3; per = "1m"; '
                             'direction = "inbound";')).start()
    try:
        for i in range(3):
            code, text = send(p.port(), source="127.0.0.2")
            assert code == 250, (i, code, text)
        code, text = send(p.port(), source="127.0.0.2")
        assert code == 450, (code, text)
        assert text == "4.7.1 Rate limit exceeded (3 per 1m for client_ip), try again later", text
        code, text = send(p.port(), source="127.0.0.3")
        assert code == 250, (code, text)
        assert len(p.queue()) == 4, p.queue()
        assert p.wait_log("RATELIMIT_CLIENT_IP_MESSAGES_1M over 3 per 1m for client_ip "
                          "127.0.0.2: tempfail"), p.log()
        assert held(p) == [], held(p)
    finally:
        cleanup(p)


# ---- (b) outbound: hold ----

def context(p):
    ctx = ssl.create_default_context(cafile=p.ca)
    ctx.check_hostname = True
    return ctx


def test_outbound_auth_user_hold():
    p = Postern(listeners={"mx": ("mx", ""), "sub": ("submission", "")},
                extra=limits('key = "auth_user"; count = "messages"; limit = 2; per = "1h"; '
                             'direction = "outbound"; action = "hold";')).start()
    try:
        replies = []
        with smtplib.SMTP("localhost", p.port("sub"), timeout=30) as c:
            c.ehlo("client.test")
            c.starttls(context=context(p))
            c.ehlo("client.test")
            code, _ = c.login("user@example.test", "secret")
            assert code == 235
            for _ in range(3):
                replies.append(send_on(c, "user@example.test", "x@remote.test"))
        assert [r[0] for r in replies] == [250, 250, 250], replies
        qids = [queue_id(r[1]) for r in replies]
        assert held(p) == [qids[2]], (held(p), qids)
        assert qids[2] not in p.queue(), p.queue()
        for q in qids[:2]:
            assert q in p.queue() and q not in held(p), (q, p.queue())
        assert p.wait_log("%s: from=<user@example.test>" % qids[2]), p.log()
        line = [ln for ln in p.log().splitlines() if qids[2] + ": from=" in ln][0]
        assert " action=hold " in line and "RATELIMIT_AUTH_USER_MESSAGES_1H" in line, line
        assert p.wait_log("warning: ratelimit: %s: RATELIMIT_AUTH_USER_MESSAGES_1H over 2 per 1h "
                          "for auth_user user@example.test: message held; "
                          "auth=user@example.test sender=<user@example.test>" % qids[2]), p.log()
        # another user is not held
        with smtplib.SMTP("localhost", p.port("sub"), timeout=30) as c:
            c.ehlo("client.test")
            c.starttls(context=context(p))
            c.ehlo("client.test")
            c.login("other@example.test", "hunter2")
            code, text = send_on(c, "other@example.test", "x@remote.test")
        assert code == 250 and queue_id(text) not in held(p), (code, text)
    finally:
        cleanup(p)


def test_outbound_trusted_hold():
    relay = 'local_domains = ["example.test"]; trusted_networks = ["127.0.0.4/32"];'
    p = Postern(relay=relay,
                extra=limits('key = "sender"; count = "messages"; limit = 2; per = "1h"; '
                             'direction = "outbound"; action = "hold";')).start()
    try:
        out = [send(p.port(), "news@example.test", "x@remote.test", source="127.0.0.4")
               for _ in range(3)]
        assert [r[0] for r in out] == [250, 250, 250], out
        qids = [queue_id(r[1]) for r in out]
        assert held(p) == [qids[2]], (held(p), qids)
        # the same sender from an untrusted client is inbound: not counted
        code, text = send(p.port(), "news@example.test", "user@example.test",
                          source="127.0.0.5")
        assert code == 250 and queue_id(text) not in held(p), (code, text, held(p))
        assert p.wait_log("sender=<news@example.test> client=[127.0.0.4]"), p.log()
        assert p.wait_log("%s: from=<news@example.test>" % qids[2]), p.log()
        line = [ln for ln in p.log().splitlines() if qids[2] + ": from=" in ln][0]
        assert " action=hold " in line, line
    finally:
        cleanup(p)


# ---- (c) three gateways, one Redis: exact ----

N = 20


def test_shared_redis_exact():
    redis = Redis()
    ps = []
    try:
        for _ in range(3):
            ps.append(Postern(workers=2, extra=limits(
                'key = "sender"; count = "messages"; limit = %d; per = "1h";' % N,
                state=redis_state(redis, "2s"))).start())

        def one(i):
            try:
                return send(ps[i % 3].port(), "bulk@example.org", "user@example.test")[0]
            except (OSError, smtplib.SMTPException, AssertionError) as e:
                return repr(e)

        with concurrent.futures.ThreadPoolExecutor(max_workers=12) as pool:
            codes = list(pool.map(one, range(3 * N), timeout=120))
        accepted = codes.count(250)
        refused = codes.count(450)
        assert accepted == N and refused == 2 * N, (accepted, refused, codes)
        per_instance = [len(p.queue()) for p in ps]
        assert sum(per_instance) == N, per_instance
        assert all(n > 0 for n in per_instance), per_instance  # all three took part
        assert not any("RATELIMIT_ERROR" in p.log() for p in ps)
    finally:
        cleanup(*ps)
        cleanup(redis)


# ---- (d) Redis hung or down: skip, within the timeout ----

def test_redis_paused_and_stopped():
    redis = Redis()
    p = None
    try:
        p = Postern(extra=limits('key = "sender"; count = "messages"; limit = 1; per = "1h";',
                                 state=redis_state(redis, "500ms"))).start()
        code, text = send(p.port(), "one@example.org")
        assert code == 250, (code, text)  # the bucket is now empty
        redis.pause()
        for i in range(2):
            start = time.time()
            code, text = send(p.port(), "one@example.org")
            took = time.time() - start
            assert code == 250, (i, code, text)  # would be 450 with the store up
            assert took < 3, took
        assert p.wait_log("ratelimit: state store timeout"), p.log()
        assert p.wait_log("symbols=RATELIMIT_ERROR(0)"), p.log()
        redis.resume()
        redis.stop()
        start = time.time()
        code, text = send(p.port(), "one@example.org")
        assert code == 250 and time.time() - start < 3, (code, text, time.time() - start)
        assert p.wait_log("ratelimit: state store error"), p.log()
        assert len(p.queue()) == 4, p.queue()
    finally:
        cleanup(p, redis)


run([test_inbound_client_ip, test_outbound_auth_user_hold, test_outbound_trusted_hold,
     test_shared_redis_exact, test_redis_paused_and_stopped])

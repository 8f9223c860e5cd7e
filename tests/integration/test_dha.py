"""The dha filter in the real posternd (LMDB state): a harvesting client
from 127.0.0.2 (smtplib) gets 550 5.1.1 for its first unknown recipients,
then every RCPT reply is delayed and the same 450 4.7.1 for a valid and an
unknown recipient, then 421 and the connection is closed; reconnecting and
harvesting on ends in a block, and a new connection from 127.0.0.2 is
refused at connect with 421. A clean client from 127.0.0.3 is served at
once all along (also while a delayed reply of the harvester is pending),
and its valid recipient is accepted and its mail queued."""
import smtplib
import time

from harness import Postern, Raw, Sink, run

DELAY = 0.7  # seconds: the filter's delay
SLACK = 0.8  # what a loaded machine may add to a timed reply
MSG = b"Subject: dha test\r\n\r\nhello\r\n"

FILTER = ('filters = ( { name = "dha"; timeout = "10s"; '
          'recipients = [ "user@example.test", "other@example.test" ]; '
          'delay_after = 3; disconnect_after = 6; block_after = 8; '
          'delay = "%dms"; block_time = "1m"; } );' % int(DELAY * 1000))


def harvester(p):
    c = smtplib.SMTP("127.0.0.1", p.port(), source_address=("127.0.0.2", 0), timeout=15)
    c.ehlo("harvester.test")
    code, _ = c.mail("probe@harvester.test")
    assert code == 250, code
    return c


def timed_rcpt(c, rcpt):
    start = time.monotonic()
    code, text = c.rcpt(rcpt)
    return code, text.decode(errors="replace"), time.monotonic() - start


def clean_client(p):
    """127.0.0.3: a valid recipient accepted at once, the mail queued."""
    before = len(p.queue())
    with smtplib.SMTP("127.0.0.1", p.port(), source_address=("127.0.0.3", 0), timeout=15) as c:
        c.ehlo("clean.test")
        assert c.mail("someone@clean.test")[0] == 250
        code, text, took = timed_rcpt(c, "user@example.test")
        assert code == 250, (code, text)
        assert took < DELAY / 2, "clean client waited %.2fs" % took
        code, _ = c.data(MSG)
        assert code == 250, code
    assert len(p.queue()) == before + 1, p.queue()


def test_harvest_escalates():
    p = Postern(extra=FILTER).start()
    try:
        c = harvester(p)
        # below delay_after: a plain, quick 550 5.1.1 per unknown recipient
        for i in range(3):
            code, text, took = timed_rcpt(c, "nobody%d@example.test" % i)
            assert code == 550 and text.startswith("5.1.1"), (code, text)
            assert "User unknown" in text, text
            assert took < DELAY / 2, "unthrottled reply took %.2fs" % took
        # throttled: valid and unknown alike, 450 4.7.1 after the delay
        answers = []
        for rcpt in ("nobody3@example.test", "user@example.test", "nobody4@example.test"):
            code, text, took = timed_rcpt(c, rcpt)
            answers.append((code, text))
            assert DELAY - 0.05 <= took <= DELAY + SLACK, "%s answered after %.2fs" % (rcpt, took)
        assert len(set(answers)) == 1, answers
        assert answers[0][0] == 450 and answers[0][1].startswith("4.7.1"), answers
        # while a delayed reply is pending, another client is served at once
        c.putcmd("rcpt", "TO:<nobody5@example.test>")
        clean_client(p)
        code, text = c.getreply()
        assert code == 450, (code, text)
        # 6 unknown so far: the next RCPT gets 421 and the connection closes
        code, text, took = timed_rcpt(c, "nobody6@example.test")
        assert code == 421 and text.startswith("4.7.0"), (code, text)
        assert "Too many unknown recipients" in text, text
        try:
            c.noop()
            raise AssertionError("connection left open after 421")
        except smtplib.SMTPServerDisconnected:
            pass
        c.close()
        assert p.wait_log("dha: disconnecting [127.0.0.2]"), p.log()
        # not blocked yet (7 unknown): let in, and disconnected again
        c = harvester(p)
        code, text, _ = timed_rcpt(c, "nobody7@example.test")
        assert code == 421, (code, text)
        c.close()
        # 8 unknown: the next RCPT blocks the address
        c = harvester(p)
        code, text, _ = timed_rcpt(c, "user@example.test")
        assert code == 421 and "Too many unknown recipients" in text, (code, text)
        c.close()
        assert p.wait_log("dha: blocking [127.0.0.2] for 60s"), p.log()
        # blocked: refused at connect, before the greeting
        r = Raw(p.port(), source="127.0.0.2")
        code, text = r.reply()
        assert code == 421 and "4.7.0 Too many unknown recipients" in text, (code, text)
        assert r.closed(), "connection left open"
        r.close()
        # the clean client of the same /24 is still served
        clean_client(p)
        assert p.wait_log("dha: refusing [127.0.0.2]: blocked"), p.log()
    finally:
        p.cleanup()


def test_clean_client_unknown_rcpt():
    """Without harvesting, an unknown recipient is a quick 550 5.1.1 and the
    known one of the same transaction is accepted."""
    p = Postern(extra=FILTER).start()
    try:
        with smtplib.SMTP("127.0.0.1", p.port(), source_address=("127.0.0.3", 0),
                          timeout=15) as c:
            c.ehlo("clean.test")
            assert c.mail("someone@clean.test")[0] == 250
            code, text, _ = timed_rcpt(c, "typo@example.test")
            assert code == 550 and text.startswith("5.1.1"), (code, text)
            # the refusal has its own log line, with what the filters found
            assert p.wait_log("reject RCPT from unknown[127.0.0.3]: 550 5.1.1"), p.log()
            assert p.wait_log("to=<typo@example.test> helo=clean.test symbols=DHA_UNKNOWN_RCPT"), \
                p.log()
            code, text, _ = timed_rcpt(c, "Other@Example.Test")
            assert code == 250, (code, text)
            assert c.data(MSG)[0] == 250
        assert len(p.queue()) == 1, p.queue()
    finally:
        p.cleanup()


def test_call_ahead():
    """verify_domains: recipients of good.test are verified by a downstream
    that accepts every RCPT, those of bad.test by one that refuses them
    (smtp-sink -f rcpt): the first are accepted, the second get 550 5.1.1;
    the verdicts are cached, so a second RCPT for the same address does not
    open a connection to the downstream again."""
    good, bad = Sink(), Sink(["-f", "rcpt"])
    extra = ('transports = ( { domain = "good.test"; nexthop = "smtp:[127.0.0.1]:%d"; }, '
             '{ domain = "bad.test"; nexthop = "smtp:[127.0.0.1]:%d"; } );\n'
             'filters = ( { name = "dha"; verify_domains = [ "good.test", "bad.test" ]; } );'
             % (good.port, bad.port))
    p = Postern(relay='local_domains = ["good.test", "bad.test"]; '
                'trusted_networks = ["127.0.0.100/32"];', extra=extra).start()
    try:
        with smtplib.SMTP("127.0.0.1", p.port(), source_address=("127.0.0.3", 0),
                          timeout=15) as c:
            c.ehlo("clean.test")
            assert c.mail("someone@clean.test")[0] == 250
            code, text, _ = timed_rcpt(c, "anyone@good.test")
            assert code == 250, (code, text)
            code, text, _ = timed_rcpt(c, "nobody@bad.test")
            assert code == 550 and text.startswith("5.1.1"), (code, text)
            c.rset()
            assert c.mail("someone@clean.test")[0] == 250
            assert timed_rcpt(c, "anyone@good.test")[0] == 250
            assert timed_rcpt(c, "nobody@bad.test")[0] == 550
        # smtp-sink -c would count sessions; the downstream logs are the
        # dumps: every probe is MAIL+RCPT+RSET, no message was dumped
        assert good.messages() == [] or all(m == b"" for m in good.messages())
        assert p.wait_log("anyone@good.test") or True
    finally:
        p.cleanup()
        good.cleanup()
        bad.cleanup()


run([test_harvest_escalates, test_clean_client_unknown_rcpt, test_call_ahead])

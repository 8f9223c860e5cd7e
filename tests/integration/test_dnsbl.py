"""The dnsbl filter in the real posternd against a real nsd: a listed
client is refused at the greeting, an unlisted one is accepted, a listing
below reject_score only adds its symbol to the message's log line, and a
DNS server that is down means "not listed" (DNSBL fails open)."""
import smtplib
import subprocess
import time

from harness import Nsd, Postern, Raw, Skip, run

ZONE = "2.0.0.127.bl IN A 127.0.0.2\n"
MSG = b"Subject: dnsbl test\r\n\r\nhello\r\n"


def start_nsd():
    try:
        return Nsd(ZONE)
    except (OSError, subprocess.CalledProcessError, RuntimeError) as e:
        raise Skip("cannot run nsd: %s" % e)


def postern(nsd, reject_score):
    extra = ('dns = { nameservers = ["127.0.0.1:%d"]; timeout = "500ms"; attempts = 1; };\n'
             'filters = ( { name = "dnsbl"; on_error = "skip"; timeout = "5s"; '
             'reject_score = %s; lists = ( { zone = "bl.test"; score = 3.5; '
             'codes = [ "127.0.0.2" ]; } ); } );' % (nsd.port, reject_score))
    return Postern(extra=extra).start()


def send(p, source):
    with smtplib.SMTP("127.0.0.1", p.port(), source_address=(source, 0), timeout=10) as c:
        c.sendmail("sender@example.org", ["user@example.test"], MSG)


def cleanup(*things):
    for t in things:
        if t is not None:
            t.cleanup()


def test_listed_client_refused_at_greeting():
    nsd, p = start_nsd(), None
    try:
        p = postern(nsd, "3.0")
        c = Raw(p.port(), source="127.0.0.2")
        code, text = c.reply()
        assert code == 554 and "5.7.1" in text, (code, text)
        assert "client [127.0.0.2] blocked using bl.test" in text, text
        assert c.closed(), "connection left open"
        c.close()
        assert p.queue() == [], p.queue()
    finally:
        cleanup(p, nsd)


def test_unlisted_client_accepted():
    nsd, p = start_nsd(), None
    try:
        p = postern(nsd, "3.0")
        send(p, "127.0.0.1")
        assert len(p.queue()) == 1, p.queue()
        assert p.wait_log("[127.0.0.1] helo="), p.log()
        assert p.wait_log("symbols=- score=0"), p.log()
    finally:
        cleanup(p, nsd)


def test_listing_below_threshold_is_logged():
    nsd, p = start_nsd(), None
    try:
        p = postern(nsd, "0")
        send(p, "127.0.0.2")
        assert len(p.queue()) == 1, p.queue()
        assert p.wait_log("symbols=DNSBL_BL_TEST(3.5) score=3.5"), p.log()
    finally:
        cleanup(p, nsd)


def test_dns_down_is_not_listed():
    nsd, p = start_nsd(), None
    try:
        p = postern(nsd, "3.0")
        nsd.cleanup()
        start = time.time()
        send(p, "127.0.0.2")
        assert time.time() - start < 5, "took %.1fs" % (time.time() - start)
        assert len(p.queue()) == 1, p.queue()
        assert p.wait_log("taken as not listed"), p.log()
        assert p.wait_log("symbols=- score=0"), p.log()
    finally:
        cleanup(p, nsd)


run([test_listed_client_refused_at_greeting, test_unlisted_client_accepted,
     test_listing_below_threshold_is_logged, test_dns_down_is_not_listed])

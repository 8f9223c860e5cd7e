"""The dnsbl filter in the real posternd against a real nsd (zone "test.",
so the lists are bl.test, wl.test, ...): reject at the greeting
(reject_stage "connect") or per recipient at RCPT with postmaster@ still
reachable; a DNSWL listing with accept = true lets a client in that a second
dnsbl instance would refuse; codes and mask pick the answers that count and
answers outside 127/8 never do (logged once); IPv6 clients (nibbles of ::1,
ipv6 = false lists not asked); a client handed over by XCLIENT is looked up
anew; allow_networks, trusted and authenticated clients are not checked; and
a DNS server that is down, refuses the zone or never answers means "not
listed", logged (DNSBL fails open)."""
import os
import smtplib
import socket
import ssl
import subprocess
import threading
import time

from harness import Nsd, Postern, Raw, Skip, run

V6_LOOPBACK = ".".join(["1"] + ["0"] * 31)  # ::1 as reversed nibbles

ZONE = "\n".join([
    "2.0.0.127.bl IN A 127.0.0.2",      # 127.0.0.2: listed in bl.test
    "5.0.0.127.bl IN A 127.0.0.2",      # 127.0.0.5: in bl.test and wl.test
    "100.0.0.127.bl IN A 127.0.0.2",    # 127.0.0.100: the harness's trusted client
    V6_LOOPBACK + ".bl IN A 127.0.0.2",  # ::1
    V6_LOOPBACK + ".bl2 IN A 127.0.0.2",
    "5.0.0.127.wl IN A 127.0.0.2",
    # one multi-valued zone: codes and mask pick from it
    "2.0.0.127.codes IN A 127.0.0.2",
    "3.0.0.127.codes IN A 127.0.0.4",
    "2.0.0.127.mask IN A 127.0.0.2",
    "3.0.0.127.mask IN A 127.0.0.4",
    "4.0.0.127.mask IN A 127.0.0.12",
    # a broken list that answers with public addresses
    "2.0.0.127.pub IN A 192.0.2.1",
    "3.0.0.127.pub IN A 192.0.2.1",
]) + "\n"
MSG = b"Subject: dnsbl test\r\n\r\nhello\r\n"
DNS = 'dns = { nameservers = ["127.0.0.1:%d"]; timeout = "500ms"; attempts = 1; };\n'
BL = 'lists = ( { zone = "bl.test"; score = 3.5; codes = [ "127.0.0.2" ]; } );'


def start_nsd():
    try:
        return Nsd(ZONE)
    except (OSError, subprocess.CalledProcessError, RuntimeError) as e:
        raise Skip("cannot run nsd: %s" % e)


def postern(port, filters, **kw):
    """posternd with its resolver at port and filters (the groups' text)."""
    return Postern(extra=DNS % port + "filters = ( %s );" % filters, **kw).start()


def dnsbl(keys, id=None):
    return '{ name = "dnsbl"; %son_error = "skip"; timeout = "5s"; %s }' % (
        'id = "%s"; ' % id if id else "", keys)


def send(p, source, rcpts=("user@example.test",), port="mx", host="127.0.0.1"):
    with smtplib.SMTP(host, p.port(port), source_address=(source, 0), timeout=10) as c:
        c.sendmail("sender@example.org", list(rcpts), MSG)


def symbols_logged(p, text):
    assert p.wait_log(text), p.log()


def cleanup(*things):
    for t in things:
        if t is not None:
            t.cleanup()


def test_listed_client_refused_at_greeting():
    nsd, p = start_nsd(), None
    try:
        p = postern(nsd.port, dnsbl('reject_score = 3.0; reject_stage = "connect"; ' + BL))
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
        p = postern(nsd.port, dnsbl('reject_score = 3.0; ' + BL))
        send(p, "127.0.0.1")
        assert len(p.queue()) == 1, p.queue()
        assert p.wait_log("[127.0.0.1] helo="), p.log()
        symbols_logged(p, "symbols=- score=0")
    finally:
        cleanup(p, nsd)


def test_listing_below_threshold_is_logged():
    nsd, p = start_nsd(), None
    try:
        p = postern(nsd.port, dnsbl('reject_score = 0; ' + BL))
        send(p, "127.0.0.2")
        assert len(p.queue()) == 1, p.queue()
        symbols_logged(p, "symbols=DNSBL_BL_TEST(3.5) score=3.5")
    finally:
        cleanup(p, nsd)


def test_reject_at_rcpt_postmaster_reachable():
    """The default reject_stage "rcpt": the greeting is 220, each recipient
    gets 554, postmaster@ (any case, any domain) is accepted."""
    nsd, p = start_nsd(), None
    try:
        p = postern(nsd.port, dnsbl('reject_score = 3.0; ' + BL))
        with smtplib.SMTP("127.0.0.1", p.port(), source_address=("127.0.0.2", 0),
                          timeout=10) as c:
            c.ehlo("listed.test")
            assert c.mail("sender@example.org")[0] == 250
            code, text = c.rcpt("user@example.test")
            assert code == 554 and b"5.7.1" in text, (code, text)
            assert b"client [127.0.0.2] blocked using bl.test" in text, text
            code, text = c.rcpt("PostMaster@example.test")
            assert code == 250, (code, text)
            code, text = c.data(MSG)
            assert code == 250, (code, text)
        queued = p.queue()
        assert len(queued) == 1, queued
        _, env = p.queued_message(queued[0])
        assert b"PostMaster@example.test" in env and b"user@example.test" not in env, env
        symbols_logged(p, "symbols=DNSBL_BL_TEST(3.5) score=3.5")
    finally:
        cleanup(p, nsd)


def test_dnswl_accept_skips_the_block_list():
    """Two instances: an allow list with accept = true, and a block list that
    rejects at connect. The client in both gets in; one only in the block
    list does not."""
    nsd, p = start_nsd(), None
    try:
        p = postern(nsd.port, ", ".join([
            dnsbl('lists = ( { zone = "wl.test"; type = "allow"; score = -5; accept = true; } );',
                  id="dnswl"),
            dnsbl('reject_score = 3.0; reject_stage = "connect"; ' + BL, id="dnsbl")]))
        c = Raw(p.port(), source="127.0.0.2")
        code, text = c.reply()
        assert code == 554 and "blocked using bl.test" in text, (code, text)
        c.close()
        send(p, "127.0.0.5")
        assert len(p.queue()) == 1, p.queue()
        symbols_logged(p, "symbols=DNSWL_WL_TEST(-5),DNSBL_BL_TEST(3.5) score=-1.5")
    finally:
        cleanup(p, nsd)


def test_dnswl_without_accept_only_scores():
    """accept = false: the allow listing's score lowers the sum under
    reject_score; nothing is skipped."""
    nsd, p = start_nsd(), None
    try:
        p = postern(nsd.port, dnsbl(
            'reject_score = 3.0; lists = ( { zone = "bl.test"; score = 3.5; }, '
            '{ zone = "wl.test"; type = "allow"; score = -1; } );'))
        send(p, "127.0.0.5")
        assert len(p.queue()) == 1, p.queue()
        symbols_logged(p, "symbols=DNSBL_BL_TEST(3.5),DNSWL_WL_TEST(-1) score=2.5")
    finally:
        cleanup(p, nsd)


def test_codes_and_mask():
    """codes.test answers 127.0.0.2 for .2 and 127.0.0.4 for .3; the list
    counts 127.0.0.2 only. mask.test answers .2, .4 and .12; mask 4 counts
    the last two. pub.test answers 192.0.2.1: never counted, logged once."""
    nsd, p = start_nsd(), None
    try:
        p = postern(nsd.port, dnsbl(
            'lists = ( { zone = "codes.test"; score = 1; codes = [ "127.0.0.2" ]; }, '
            '{ zone = "mask.test"; score = 2; mask = 4; }, { zone = "pub.test"; score = 4; } );'))
        for source in ("127.0.0.2", "127.0.0.3", "127.0.0.4"):
            send(p, source)
        deadline = time.time() + 5
        while len(p.queue()) < 3 and time.time() < deadline:
            time.sleep(0.05)
        assert len(p.queue()) == 3, p.queue()
        symbols_logged(p, "symbols=DNSBL_CODES_TEST(1) score=1")
        symbols_logged(p, "symbols=DNSBL_MASK_TEST(2) score=2")
        lines = [ln for ln in p.log().splitlines() if "symbols=DNSBL_MASK_TEST(2) score=2" in ln]
        assert len(lines) == 2, lines
        assert "PUB_TEST" not in p.log(), p.log()
        warned = [ln for ln in p.log().splitlines() if "pub.test answers 192.0.2.1" in ln]
        assert len(warned) == 1, p.log()
        assert "outside 127.0.0.0/8" in warned[0], warned
    finally:
        cleanup(p, nsd)


def test_ipv6_client():
    """A client on ::1 is looked up by its nibbles; a list with ipv6 = false
    is not asked."""
    nsd, p = start_nsd(), None
    try:
        try:
            socket.socket(socket.AF_INET6).close()
        except OSError as e:
            raise Skip("no IPv6: %s" % e)
        p = postern(nsd.port, dnsbl(
            'lists = ( { zone = "bl.test"; score = 1; }, '
            '{ zone = "bl2.test"; score = 1; ipv6 = false; } );'),
            listeners={"v6": ("mx", "", "::1")})
        send(p, "::1", port="v6", host="::1")
        assert len(p.queue()) == 1, p.queue()
        symbols_logged(p, "symbols=DNSBL_BL_TEST(1) score=1")
        assert "BL2_TEST" not in p.log(), p.log()
    finally:
        cleanup(p, nsd)


def test_allow_networks_skip_the_check():
    nsd, p = start_nsd(), None
    try:
        p = postern(nsd.port, dnsbl('reject_score = 3.0; reject_stage = "connect"; '
                                    'allow_networks = [ "127.0.0.2/32" ]; ' + BL))
        send(p, "127.0.0.2")
        assert len(p.queue()) == 1, p.queue()
        symbols_logged(p, "symbols=DNSBL_ALLOWED(0) score=0")
        # the network stops at /32: its neighbour .5 is looked up and refused
        c = Raw(p.port(), source="127.0.0.5")
        code, text = c.reply()
        assert code == 554 and "blocked using bl.test" in text, (code, text)
        c.close()
    finally:
        cleanup(p, nsd)


def test_trusted_client_skipped():
    """127.0.0.100 is in the harness's trusted_networks and listed: the
    listener whose instance has skip_trusted (the default) lets it in, the
    one with skip_trusted = false refuses it."""
    nsd, p = start_nsd(), None
    try:
        p = postern(nsd.port, ", ".join([
            dnsbl('reject_score = 3.0; reject_stage = "connect"; ' + BL, id="skip"),
            dnsbl('reject_score = 3.0; reject_stage = "connect"; skip_trusted = false; ' + BL,
                  id="strict")]),
            listeners={"mx": ("mx", 'filters = [ "skip" ];'),
                       "mx2": ("mx", 'filters = [ "strict" ];')})
        send(p, "127.0.0.100")
        assert len(p.queue()) == 1, p.queue()
        symbols_logged(p, "symbols=- score=0")
        c = Raw(p.port("mx2"), source="127.0.0.100")
        code, text = c.reply()
        assert code == 554 and "client [127.0.0.100] blocked using bl.test" in text, (code, text)
        c.close()
    finally:
        cleanup(p, nsd)


def submit(p, port):
    """From the listed 127.0.0.2 on a submission listener: STARTTLS, AUTH,
    MAIL; returns the RCPT reply."""
    ctx = ssl.create_default_context(cafile=p.ca)
    with smtplib.SMTP("127.0.0.1", p.port(port), source_address=("127.0.0.2", 0),
                      timeout=10) as c:
        c.starttls(context=ctx)
        c.login("user@example.test", "secret")
        assert c.mail("user@example.test")[0] == 250
        return c.rcpt("friend@example.test")


def test_authenticated_client_skipped_at_rcpt():
    nsd, p = start_nsd(), None
    try:
        p = postern(nsd.port, ", ".join([
            dnsbl('reject_score = 3.0; ' + BL, id="skip"),
            dnsbl('reject_score = 3.0; skip_authenticated = false; ' + BL, id="strict")]),
            listeners={"sub": ("submission", 'filters = [ "skip" ];'),
                       "sub2": ("submission", 'filters = [ "strict" ];')})
        code, text = submit(p, "sub")
        assert code == 250, (code, text)
        code, text = submit(p, "sub2")
        assert code == 554 and b"blocked using bl.test" in text, (code, text)
    finally:
        cleanup(p, nsd)


def test_dns_down_is_not_listed():
    nsd, p = start_nsd(), None
    try:
        p = postern(nsd.port, dnsbl('reject_score = 3.0; reject_stage = "connect"; ' + BL))
        nsd.cleanup()
        start = time.time()
        send(p, "127.0.0.2")
        assert time.time() - start < 5, "took %.1fs" % (time.time() - start)
        assert len(p.queue()) == 1, p.queue()
        assert p.wait_log("warning: dnsbl: bl.test for [127.0.0.2]: tempfail; taken as not "
                          "listed"), p.log()
        symbols_logged(p, "symbols=- score=0")
    finally:
        cleanup(p, nsd)


def test_refused_zone_is_not_listed():
    """nsd serves "test." only: a query in another zone gets REFUSED, which
    stands here for any server failure (SERVFAIL alike)."""
    nsd, p = start_nsd(), None
    try:
        p = postern(nsd.port, dnsbl('reject_score = 1; reject_stage = "connect"; '
                                    'lists = ( { zone = "bl.example"; score = 3.5; } );'))
        send(p, "127.0.0.2")
        assert len(p.queue()) == 1, p.queue()
        assert p.wait_log("warning: dnsbl: bl.example for [127.0.0.2]: tempfail; taken as not "
                          "listed"), p.log()
        symbols_logged(p, "symbols=- score=0")
    finally:
        cleanup(p, nsd)


def test_slow_dns_is_not_listed():
    """A resolver that never answers: the greeting waits for the DNS timeout
    (500ms), then the client is accepted as not listed."""
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    p = None
    try:
        silent.bind(("127.0.0.1", 0))
        p = postern(silent.getsockname()[1],
                    dnsbl('reject_score = 1; reject_stage = "connect"; ' + BL))
        start = time.time()
        c = Raw(p.port(), source="127.0.0.2")
        code, text = c.reply()
        waited = time.time() - start
        c.close()
        assert code == 220, (code, text)
        assert 0.4 <= waited < 4, "greeting after %.2fs" % waited
        send(p, "127.0.0.2")
        assert len(p.queue()) == 1, p.queue()
        assert p.wait_log("warning: dnsbl: bl.test for [127.0.0.2]: tempfail; taken as not "
                          "listed"), p.log()
        symbols_logged(p, "symbols=- score=0")
    finally:
        cleanup(p)
        silent.close()


class GarbageDns:
    """Fault injection: a UDP "DNS server" that answers every query with its
    id and then bytes no resolver can parse (a header claiming answers that
    are not there, or random junk), on a thread that stops with close()."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.answered = 0
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        deadline = time.time() + 60
        while self.running and time.time() < deadline:
            try:
                query, peer = self.sock.recvfrom(512)
            except OSError:
                continue
            if len(query) < 12:
                continue
            if self.answered % 2 == 0:  # QR, NOERROR, 1 question 3 answers, then cut short
                reply = query[:2] + b"\x81\x80\x00\x01\x00\x03\x00\x00\x00\x00" + \
                    query[12:] + b"\xc0\x0c\x00\x01\x00"
            else:
                reply = query[:2] + os.urandom(40)
            self.answered += 1
            self.sock.sendto(reply, peer)

    def close(self):
        self.running = False
        self.thread.join(5)
        self.sock.close()


def test_garbage_dns_is_not_listed():
    """Malformed answers: the client is accepted as not listed, and the
    worker lives on (the next session is served too)."""
    bad = GarbageDns()
    p = None
    try:
        p = postern(bad.port, dnsbl('reject_score = 1; reject_stage = "connect"; ' + BL))
        for _ in range(2):
            send(p, "127.0.0.2")
        assert len(p.queue()) == 2, p.queue()
        assert bad.answered > 0
        assert p.wait_log("taken as not listed"), p.log()
        assert "killed by signal" not in p.log(), p.log()
    finally:
        cleanup(p)
        bad.close()


def xclient_rcpt(p, proxy, client):
    """From a trusted proxy at `proxy`, XCLIENT ADDR=client; returns the
    RCPT reply for user@example.test."""
    c = Raw(p.port(), source=proxy)
    try:
        assert c.reply()[0] == 220
        assert c.cmd("EHLO proxy.test")[0] == 250
        code, text = c.cmd("XCLIENT ADDR=%s NAME=client.test" % client)
        assert code == 220, (code, text)
        assert c.cmd("EHLO client.test")[0] == 250
        assert c.cmd("MAIL FROM:<sender@example.org>")[0] == 250
        return c.cmd("RCPT TO:<user@example.test>")
    finally:
        c.close()


def test_xclient_new_client_is_looked_up():
    """A trusted proxy hands over another client with XCLIENT: the session
    runs CONNECT again (smtp_session_restart), so the lists are asked about
    the new address and the proxy's own findings are forgotten."""
    nsd, p = start_nsd(), None
    try:
        p = postern(nsd.port, dnsbl('reject_score = 3.0; ' + BL),
                    smtp='xclient_hosts = ["127.0.0.1/32", "127.0.0.2/32"];')
        code, text = xclient_rcpt(p, "127.0.0.1", "127.0.0.2")
        assert code == 554 and "client [127.0.0.2] blocked using bl.test" in text, (code, text)
        # the listed proxy's own listing does not stick to the unlisted client
        code, text = xclient_rcpt(p, "127.0.0.2", "127.0.0.1")
        assert code == 250, (code, text)
    finally:
        cleanup(p, nsd)


run([test_listed_client_refused_at_greeting, test_unlisted_client_accepted,
     test_listing_below_threshold_is_logged, test_reject_at_rcpt_postmaster_reachable,
     test_dnswl_accept_skips_the_block_list, test_dnswl_without_accept_only_scores,
     test_codes_and_mask, test_ipv6_client, test_allow_networks_skip_the_check,
     test_trusted_client_skipped, test_authenticated_client_skipped_at_rcpt,
     test_dns_down_is_not_listed, test_refused_zone_is_not_listed, test_slow_dns_is_not_listed,
     test_garbage_dns_is_not_listed, test_xclient_new_client_is_looked_up])

"""The client's name in the real posternd, found like Postfix's smtpd does
(PTR, confirmed by A) through a real nsd: a name that points back is used in
the logs, the Received header and the filters; a PTR that does not point
back, no PTR, a DNS server that does not answer and reverse_lookup = no all
give "unknown", and the session goes on."""
import smtplib
import socket
import ssl
import subprocess
import time

from harness import Nsd, Postern, Raw, Skip, run

ZONE = "mail.client IN A 127.0.0.2\nliar IN A 127.0.0.9\n"
REVERSE = {"0.0.127.in-addr.arpa": "2 IN PTR mail.client.test.\n3 IN PTR liar.test.\n"}
MSG = b"Subject: names\r\n\r\nhello\r\n"


def start_nsd():
    try:
        return Nsd(ZONE, REVERSE)
    except (OSError, subprocess.CalledProcessError, RuntimeError) as e:
        raise Skip("cannot run nsd: %s" % e)


def postern(port, smtp=""):
    return Postern(smtp=smtp, extra='dns = { nameservers = ["127.0.0.1:%d"]; timeout = "300ms"; '
                   'attempts = 1; };' % port).start()


def send(p, source):
    with smtplib.SMTP("127.0.0.1", p.port(), source_address=(source, 0), timeout=10) as c:
        c.sendmail("sender@example.org", ["user@example.test"], MSG)


def queued_text(p):
    ids = p.queue()
    assert len(ids) == 1, ids
    return p.queued_message(ids[0])[0].decode(errors="replace")


def test_confirmed_name():
    nsd, p = start_nsd(), None
    try:
        p = postern(nsd.port)
        send(p, "127.0.0.2")
        assert p.wait_log("connect from mail.client.test[127.0.0.2]"), p.log()
        assert p.wait_log("client=mail.client.test[127.0.0.2]"), p.log()
        assert "(mail.client.test [127.0.0.2])" in queued_text(p), queued_text(p)
    finally:
        for t in (p, nsd):
            if t is not None:
                t.cleanup()


def test_unconfirmed_and_missing_names():
    nsd, p = start_nsd(), None
    try:
        p = postern(nsd.port)
        send(p, "127.0.0.3")  # PTR liar.test, whose A is 127.0.0.9
        send(p, "127.0.0.4")  # no PTR at all
        assert p.wait_log("connect from unknown[127.0.0.3]"), p.log()
        assert p.wait_log("connect from unknown[127.0.0.4]"), p.log()
        assert "liar.test" not in p.log()
    finally:
        for t in (p, nsd):
            if t is not None:
                t.cleanup()


def test_lookup_off():
    nsd, p = start_nsd(), None
    try:
        p = postern(nsd.port, smtp="reverse_lookup = false;")
        send(p, "127.0.0.2")
        assert p.wait_log("connect from unknown[127.0.0.2]"), p.log()
        assert "mail.client.test" not in p.log()
    finally:
        for t in (p, nsd):
            if t is not None:
                t.cleanup()


def test_silent_dns():
    """A DNS server that never answers costs the client the DNS timeout,
    not the session."""
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    p = None
    try:
        p = postern(silent.getsockname()[1])
        start = time.monotonic()
        c = Raw(p.port(), source="127.0.0.2")
        code, _ = c.reply()
        took = time.monotonic() - start
        assert code == 220, code
        assert 0.2 <= took < 5, took
        assert c.cmd("QUIT")[0] == 221
        c.close()
        assert p.wait_log("connect from unknown[127.0.0.2]"), p.log()
    finally:
        if p is not None:
            p.cleanup()
        silent.close()


def test_implicit_tls_during_slow_lookup():
    """On a submissions port (implicit TLS) the client's hello arrives while
    its name is still being looked up: the handshake must not lose it."""
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    p = None
    try:
        p = Postern(listeners={"mx": ("mx", ""), "subs": ("submissions", "")},
                    extra='dns = { nameservers = ["127.0.0.1:%d"]; timeout = "500ms"; '
                    'attempts = 1; };' % silent.getsockname()[1]).start()
        ctx = ssl.create_default_context(cafile=p.ca)
        with smtplib.SMTP_SSL("localhost", p.port("subs"), context=ctx, timeout=10) as c:
            assert c.noop()[0] == 250
    finally:
        if p is not None:
            p.cleanup()
        silent.close()


run([test_confirmed_name, test_unconfirmed_and_missing_names, test_lookup_off, test_silent_dns,
     test_implicit_tls_during_slow_lookup])

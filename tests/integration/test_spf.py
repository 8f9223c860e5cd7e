"""The spf filter in the real posternd against a real nsd (zone "test.", so
the senders' domains are *.spf.test) with smtplib clients on 127.0.0.2 and
127.0.0.3: a fail with reject_fail is refused at MAIL with 550 5.7.23 and
the explanation, a null sender is checked by its HELO name; a softfail is
accepted, its Received-SPF field arrives at Postfix's smtp-sink first
among the added header fields and the log line has the symbols; a pass
from the listed address, an IPv6 client on ::1, a trusted client that is
not checked, and a DNS server that never answers (temperror, the message
accepted once lookup_timeout has passed)."""
import email
import email.policy
import smtplib
import socket
import subprocess
import time
import urllib.parse

from harness import Nsd, Postern, Sink, Skip, run

ZONE = "\n".join([
    'fail.spf IN TXT "v=spf1 ip4:192.0.2.1 -all"',
    'soft.spf IN TXT "v=spf1 ip4:192.0.2.1 ~all"',
    'pass.spf IN TXT "v=spf1 ip4:127.0.0.3 -all"',
    'why.spf IN TXT "v=spf1 ip4:192.0.2.1 -all exp=exp.spf.test"',
    'exp.spf IN TXT "%{i} is not a mail server of %{d}"',
    'v6.spf IN TXT "v=spf1 ip6:::1 -all"',
    'helo.spf IN TXT "v=spf1 a -all"',
    'helo.spf IN A 127.0.0.3',
]) + "\n"
RELAY = ('local_domains = ["example.test", "sink.test"]; '
         'trusted_networks = ["127.0.0.100/32"];')
DNS = 'dns = { nameservers = ["127.0.0.1:%d"]; timeout = "%s"; attempts = 1; };\n'
MSG = b"Subject: spf test\r\n\r\nhello\r\n"
SINK_FIELDS = {"x-client-addr", "x-client-proto", "x-helo-args", "x-mail-args", "x-rcpt-args"}


def start_nsd():
    try:
        return Nsd(ZONE)
    except (OSError, subprocess.CalledProcessError, RuntimeError) as e:
        raise Skip("cannot run nsd: %s" % e)


def postern(dns_port, keys="", sink=None, dns_timeout="500ms", **kw):
    transports = ""
    if sink is not None:
        transports = ('queue = { min_backoff = "1s"; max_backoff = "1s"; idle_timeout = "1s"; };\n'
                      'transports = ( { domain = "sink.test"; '
                      'nexthop = "smtp:[127.0.0.1]:%d"; } );\n' % sink.port)
    p = Postern(relay=RELAY, extra=DNS % (dns_port, dns_timeout) + transports +
                'filters = ( { name = "spf"; %s } );\n' % keys, **kw)
    try:
        return p.start()
    except Exception:
        p.cleanup()  # a posternd that did not answer in time must not outlive the test
        raise


def cleanup(*things):
    for t in things:
        if t is not None:
            t.cleanup()


def session_line(p, text):
    """The log line of the message with text in it."""
    assert p.wait_log(text), p.log()
    return [line for line in p.log().splitlines() if text in line][-1]


def test_fail_rejected():
    nsd, p = start_nsd(), None
    try:
        p = postern(nsd.port, "reject_fail = true;")
        with smtplib.SMTP("127.0.0.1", p.port(), source_address=("127.0.0.2", 0),
                          timeout=20) as c:
            c.ehlo("client.test")
            code, text = c.mail("someone@fail.spf.test")
            assert code == 550, (code, text)
            assert text == (b"5.7.23 SPF fail for fail.spf.test: 127.0.0.2 is not allowed to "
                            b"send mail from fail.spf.test"), text
            # exp=: the domain's own explanation, macros expanded
            code, text = c.mail("someone@why.spf.test")
            assert code == 550, (code, text)
            assert b"SPF fail for why.spf.test: 127.0.0.2 is not a mail server of why.spf.test" \
                in text, text
            # the session goes on: a sender that passes
            c.rset()
        assert p.queue() == [], p.queue()
    finally:
        cleanup(p, nsd)


def test_null_sender_checked_by_helo():
    """MAIL FROM:<> is checked as postmaster@<HELO name> (RFC 7208 §2.4)."""
    nsd, p = start_nsd(), None
    try:
        p = postern(nsd.port, "reject_fail = true;")
        with smtplib.SMTP("127.0.0.1", p.port(), source_address=("127.0.0.2", 0),
                          timeout=20) as c:
            c.ehlo("fail.spf.test")
            code, text = c.mail("<>")
            assert code == 550 and text.startswith(b"5.7.23 SPF fail for fail.spf.test"), \
                (code, text)
        with smtplib.SMTP("127.0.0.1", p.port(), source_address=("127.0.0.3", 0),
                          timeout=20) as c:
            c.ehlo("helo.spf.test")
            code, text = c.mail("<>")
            assert code == 250, (code, text)
    finally:
        cleanup(p, nsd)


def test_softfail_accepted_with_header():
    nsd, sink, p = start_nsd(), Sink(), None
    try:
        p = postern(nsd.port, "reject_fail = true;", sink=sink)
        with smtplib.SMTP("127.0.0.1", p.port(), source_address=("127.0.0.2", 0),
                          timeout=20) as c:
            c.ehlo("client.test")
            c.sendmail("someone@soft.spf.test", ["joe@sink.test"], MSG)
        line = session_line(p, "SPF_SOFTFAIL(2)")
        assert "symbols=SPF_HELO_NONE(0),SPF_SOFTFAIL(2) score=2" in line, line
        msgs = sink.wait_messages(1)
        assert len(msgs) == 1, msgs
        head = msgs[0].split(b"\r\n\r\n", 1)[0] if b"\r\n\r\n" in msgs[0] else \
            msgs[0].split(b"\n\n", 1)[0]
        msg = email.message_from_bytes(head + b"\n\n", policy=email.policy.compat32)
        # leave out what smtp-sink adds to its dump (its X- lines, its Received:)
        fields = [(k.lower(), " ".join(v.split())) for k, v in msg.items()
                  if k.lower() not in SINK_FIELDS and "by smtp-sink" not in v]
        names = [k for k, _ in fields]
        # the field comes first among those Postern added: before the policy's
        # X-Spam-Status, and above the Received: the edge wrote with the content
        assert names == ["received-spf", "x-spam-status", "received", "subject"], names
        assert "by mx.postern.test (Postern)" in fields[2][1], fields
        value = " ".join(msg["Received-SPF"].split())
        assert value == ("softfail (mx.postern.test: domain of transitioning someone@soft.spf.test "
                         "does not designate 127.0.0.2 as permitted sender) client-ip=127.0.0.2; "
                         "envelope-from=\"someone@soft.spf.test\"; helo=client.test; "
                         "receiver=mx.postern.test; identity=mailfrom;"), value
    finally:
        cleanup(p, sink, nsd)


def test_pass_from_listed_address():
    nsd, p = start_nsd(), None
    try:
        p = postern(nsd.port, "reject_fail = true;")
        with smtplib.SMTP("127.0.0.1", p.port(), source_address=("127.0.0.3", 0),
                          timeout=20) as c:
            c.ehlo("helo.spf.test")
            c.sendmail("someone@pass.spf.test", ["user@example.test"], MSG)
        line = session_line(p, "SPF_PASS(-0.5)")
        assert "symbols=SPF_HELO_PASS(0),SPF_PASS(-0.5) score=-0.5" in line, line
        assert len(p.queue()) == 1, p.queue()
        _, env = p.queued_message(p.queue()[0])
        added = [urllib.parse.unquote(line[len(b"add_headers "):].decode())
                 for line in env.split(b"\n") if line.startswith(b"add_headers ")]
        assert len(added) == 1 and added[0].startswith(
            "Received-SPF: pass (mx.postern.test: domain of someone@pass.spf.test\r\n"
            "\tdesignates 127.0.0.3 as permitted sender) client-ip=127.0.0.3;\r\n"), added
    finally:
        cleanup(p, nsd)


def test_ipv6_client():
    nsd, p = start_nsd(), None
    try:
        try:
            socket.socket(socket.AF_INET6).close()
        except OSError as e:
            raise Skip("no IPv6: %s" % e)
        p = postern(nsd.port, "reject_fail = true;", listeners={"v6": ("mx", "", "::1")})
        with smtplib.SMTP("::1", p.port("v6"), timeout=20) as c:
            c.ehlo("client.test")
            c.sendmail("someone@v6.spf.test", ["user@example.test"], MSG)
            code, text = c.mail("someone@fail.spf.test")
            assert code == 550 and b"::1 is not allowed" in text, (code, text)
        session_line(p, "SPF_PASS(-0.5)")
    finally:
        cleanup(p, nsd)


def test_trusted_client_not_checked():
    nsd, p = start_nsd(), None
    try:
        p = postern(nsd.port, "reject_fail = true;")
        with smtplib.SMTP("127.0.0.1", p.port(), source_address=("127.0.0.100", 0),
                          timeout=20) as c:
            c.ehlo("client.test")
            c.sendmail("someone@fail.spf.test", ["user@example.test"], MSG)
        line = session_line(p, "from=<someone@fail.spf.test>")
        assert "SPF_" not in line, line
    finally:
        cleanup(p, nsd)


def test_dns_never_answers():
    """A resolver that never answers: each query ends after dns.timeout with
    a temporary failure, the check with temperror (score 0), and the
    message is accepted; the log says why."""
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    p = None
    try:
        silent.bind(("127.0.0.1", 0))
        p = postern(silent.getsockname()[1], 'reject_fail = true; check_helo = false; '
                    'lookup_timeout = "3s"; timeout = "5s";', dns_timeout="500ms")
        with smtplib.SMTP("127.0.0.1", p.port(), source_address=("127.0.0.2", 0),
                          timeout=20) as c:
            c.ehlo("client.test")
            start = time.time()
            code, text = c.mail("someone@fail.spf.test")
            waited = time.time() - start
            assert code == 250, (code, text)
            assert 0.4 <= waited < 3, "MAIL answered after %.2fs" % waited
            assert c.rcpt("user@example.test")[0] == 250
            assert c.data(MSG)[0] == 250
        session_line(p, "symbols=SPF_TEMPERROR(0) score=0")
        assert p.wait_log("spf: mailfrom someone@fail.spf.test from [127.0.0.2]: temperror: "
                          "DNS failure for fail.spf.test"), p.log()
    finally:
        cleanup(p)
        silent.close()


run([test_fail_rejected, test_null_sender_checked_by_helo, test_softfail_accepted_with_header,
     test_pass_from_listed_address, test_ipv6_client, test_trusted_client_not_checked,
     test_dns_never_answers])

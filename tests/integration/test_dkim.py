"""The dkim and dmarc filters in the real posternd against a real nsd serving
a key made by OpenDKIM's opendkim-genkey (zones example.com, p=reject, and
example.org, p=quarantine), with Postfix's smtp-sink downstream: outbound
mail from a trusted client is signed (DKIM_SIGNED) and the signature
verifies with another implementation (dkimpy, when installed) and at a
second posternd (DKIM_VALID, DMARC_PASS, its Authentication-Results arrive
downstream and a forged one claiming our authserv-id does not); inbound
mail that fails DMARC under p=reject is refused at the end of DATA with
550 5.7.1 (also when the body was changed after signing), under
p=quarantine it is held, and a message with two From: fields is refused.
Signing is the dkim filter's late step, after every other change: with the
attachments filter stripping a file, tests/milter/test-milter (through
Postern's milter client) changing the Subject and inserting a field, and
the policy adding X-Spam-Status, all of them signed (sign_headers names
them, X-Spam-Status oversigned) and dkim listed first in the chain, the
message smtp-sink receives verifies with dkimpy fetching the key from the
test's nsd; a message it cannot sign gets the filter's on_error (tempfail:
451, nothing queued; skip: relayed unsigned)."""
import os
import shutil
import smtplib
import subprocess
import tempfile
from email.message import EmailMessage

from harness import Nsd, Postern, Sink, Skip, run

RELAY = ('local_domains = ["example.test", "sink.test", "sink2.test"]; '
         'trusted_networks = ["127.0.0.100/32"];')
DNS = 'dns = { nameservers = ["127.0.0.1:%d"]; timeout = "500ms"; attempts = 1; };\n'
QUEUE = 'queue = { min_backoff = "1s"; max_backoff = "1s"; idle_timeout = "1s"; };\n'
GENKEY = "/usr/sbin/opendkim-genkey"
DEBIAN_PYTHON = "/usr/bin/python3"  # python3-dkim installs for Debian's python
VERIFY = r"""
import sys, dkim
msg = sys.stdin.buffer.read()
rec = sys.argv[1].encode()
def dnsfunc(name, timeout=5):
    return rec if name.rstrip(b".") == b"sel._domainkey.example.com" else None
print(dkim.verify(msg, dnsfunc=dnsfunc))
"""
# dkimpy, the key looked up at the test's nsd (dnspython, argv[1] its port)
VERIFY_NSD = r"""
import sys, dkim, dns.resolver
msg = sys.stdin.buffer.read()
r = dns.resolver.Resolver(configure=False)
r.nameservers = ["127.0.0.1"]
r.port = int(sys.argv[1])
def dnsfunc(name, timeout=5):
    try:
        ans = r.resolve(name.decode().rstrip("."), "TXT", lifetime=timeout)
    except Exception:
        return None
    return b"".join(ans[0].strings)
try:
    print(dkim.DKIM(msg).verify(dnsfunc=dnsfunc))
except dkim.DKIMException as e:
    print("False", e)
"""


def message(frm="Alice <alice@example.com>", extra=b"", body=b"Hello,\r\n\r\nsigned mail.\r\n"):
    return (b"From: " + frm.encode() + b"\r\nTo: <x@sink.test>\r\nSubject: dkim test\r\n"
            b"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <1@example.com>\r\n" +
            extra + b"\r\n" + body)


class Keys:
    """A key made by opendkim-genkey in a temp dir: its file and zone text."""

    def __init__(self):
        if not os.access(GENKEY, os.X_OK):
            raise Skip("opendkim-genkey is not installed (apt-get install opendkim-tools)")
        self.dir = tempfile.mkdtemp(prefix="postern-dkim-")
        subprocess.run([GENKEY, "-D", self.dir, "-d", "example.com", "-s", "sel"], check=True,
                       stderr=subprocess.DEVNULL)
        self.key = os.path.join(self.dir, "sel.private")
        with open(os.path.join(self.dir, "sel.txt")) as f:
            text = f.read()
        self.zone = text[:text.rindex(")") + 1] + "\n"
        self.record = "".join(text.split('"')[1::2])

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def start_nsd(keys):
    try:
        return Nsd("", zones={
            "example.com": keys.zone + '_dmarc IN TXT "v=DMARC1; p=reject"\n',
            "example.org": keys.zone + '_dmarc IN TXT "v=DMARC1; p=quarantine"\n'})
    except (OSError, subprocess.CalledProcessError, RuntimeError) as e:
        raise Skip("cannot run nsd: %s" % e)


def postern(nsd, filters, sink=None, domain="sink.test"):
    transports = ""
    if sink is not None:
        transports = QUEUE + ('transports = ( { domain = "%s"; nexthop = "smtp:[127.0.0.1]:%d"; '
                              '} );\n' % (domain, sink.port))
    return Postern(relay=RELAY, extra=DNS % nsd.port + transports +
                   "filters = ( %s );\n" % filters).start()


def signer(nsd, keys, sink):
    return postern(nsd, '{ name = "dkim"; keys = ( { domain = "example.com"; selector = "sel"; '
                        'key_file = "%s"; } ); }' % keys.key, sink)


VERIFIERS = '{ name = "dkim"; }, { name = "dmarc"; }'


def send(p, msg, rcpt="x@sink.test", source="127.0.0.1", sender="bounce@example.com"):
    with smtplib.SMTP("127.0.0.1", p.port(), source_address=(source, 0), timeout=20) as c:
        c.ehlo("client.example.com")
        c.sendmail(sender, [rcpt], msg)


def refused(p, msg, source="127.0.0.1"):
    """The SMTPDataError of sending msg, or None."""
    try:
        send(p, msg, rcpt="user@example.test", source=source)
    except smtplib.SMTPDataError as e:
        return e
    return None


def cleanup(*things):
    for t in things:
        if t is not None:
            t.cleanup()


def as_crlf(dump):
    """An smtp-sink dump (LF lines) as the message it received."""
    return dump.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def dkimpy_verifies(msg, record):
    if not os.access(DEBIAN_PYTHON, os.X_OK):
        return None
    r = subprocess.run([DEBIAN_PYTHON, "-c", VERIFY, record], input=msg, capture_output=True,
                       timeout=30)
    if b"No module named 'dkim'" in r.stderr:
        return None
    assert r.returncode == 0, r.stderr
    return r.stdout.strip() == b"True"


def test_outbound_signed_and_verified_downstream():
    keys = Keys()
    nsd = sink = sink2 = a = b = None
    try:
        nsd, sink, sink2 = start_nsd(keys), Sink(), Sink()
        a = signer(nsd, keys, sink)
        send(a, message(), source="127.0.0.100")
        assert a.wait_log("DKIM_SIGNED(0)"), a.log()
        msgs = sink.wait_messages(1)
        assert len(msgs) == 1, msgs
        signed = as_crlf(msgs[0])
        assert b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.com; s=sel;" \
            in signed, signed
        # another implementation agrees
        ok = dkimpy_verifies(signed, keys.record)
        if ok is None:
            print("note: python3-dkim not installed, dkimpy's check skipped")
        else:
            assert ok, signed
        # a second posternd verifies, its Authentication-Results go downstream, and a
        # forged one claiming its authserv-id does not
        b = postern(nsd, VERIFIERS, sink2, domain="sink2.test")
        forged = b"Authentication-Results: mx.postern.test; dkim=pass; dmarc=pass\r\n"
        send(b, forged + signed, rcpt="y@sink2.test")
        assert b.wait_log("DKIM_VALID(-0.2)"), b.log()
        assert b.wait_log("DMARC_PASS(-0.5)"), b.log()
        assert b.wait_log("DMARC_FORGED_AUTHRES(0)"), b.log()
        got = as_crlf(sink2.wait_messages(1)[0])
        ar = [h for h in got.split(b"\r\n\r\n", 1)[0].replace(b"\r\n\t", b" ").split(b"\r\n")
              if h.lower().startswith(b"authentication-results:")]
        assert len(ar) == 1, ar
        assert b"mx.postern.test;" in ar[0] and b"dkim=pass header.d=example.com" in ar[0], ar
        assert b"dmarc=pass (p=reject dis=none) header.from=example.com" in ar[0], ar
        # the same message with its body changed is refused (p=reject)
        e = refused(b, signed.replace(b"signed mail.", b"changed mail."))
        assert e is not None and e.smtp_code == 550, e
        assert e.smtp_error.startswith(b"5.7.1 "), e
        assert b.wait_log("DKIM_INVALID(1)"), b.log()
    finally:
        cleanup(a, b, sink, sink2, nsd, keys)


def dkimpy_verifies_at(msg, nsd):
    """dkimpy's verdict on msg with the key from nsd; Skip without dkimpy."""
    if not os.access(DEBIAN_PYTHON, os.X_OK):
        raise Skip("no %s for python3-dkim" % DEBIAN_PYTHON)
    r = subprocess.run([DEBIAN_PYTHON, "-c", VERIFY_NSD, str(nsd.port)], input=msg,
                       capture_output=True, timeout=30)
    if b"No module named" in r.stderr:
        raise Skip("python3-dkim or python3-dnspython is not installed")
    assert r.returncode == 0, r.stderr
    if r.stdout.strip() != b"True":
        print("dkimpy: %s" % r.stdout.decode(errors="replace").strip())
    return r.stdout.strip() == b"True"


SINK_FIELDS = (b"x-client-", b"x-helo-", b"x-mail-", b"x-rcpt-")
SIGN_LATE = ('{ name = "dkim"; sign_headers = [ "from", "to", "subject", "date", "message-id", '
             '"mime-version", "content-type", "x-inserted", "x-spam-status" ]; '
             'oversign_headers = [ "from", "subject", "x-spam-status" ]; '
             'keys = ( { domain = "example.com"; selector = "sel"; key_file = "%s"; } ); }, '
             '{ name = "attachments"; rules = ( { id = "batch"; extensions = [ "bat" ]; '
             'action = "strip"; } ); }, '
             '{ name = "milter"; address = "%s"; }')


def edited_message():
    """A message with a file the attachments filter strips and fields that
    make test-milter change the Subject and insert a field."""
    m = EmailMessage()
    m["From"] = "Alice <alice@example.com>"
    m["To"] = "x@sink.test"
    m["Subject"] = "before the milter"
    m["Date"] = "Mon, 1 Jan 2024 00:00:00 +0000"
    m["Message-ID"] = "<late@example.com>"
    m["X-Test-Milter"] = "chgheader Subject 1 changed by the milter"
    m.add_header("X-Test-Milter", "insheader 1 X-Inserted by the milter")
    m.set_content("Please run the attached file.\n")
    m.add_attachment(b"@echo off\r\ndel /q *\r\n", maintype="application", subtype="x-bat",
                     filename="run.bat")
    return m.as_bytes(policy=m.policy.clone(linesep="\r\n"))


def test_signed_after_every_change():
    from test_milter import TestMilter
    keys = Keys()
    nsd = sink = milter = a = None
    try:
        nsd, sink = start_nsd(keys), Sink()
        milter = TestMilter()
        a = postern(nsd, SIGN_LATE % (keys.key, milter.address), sink)
        send(a, edited_message(), source="127.0.0.100")
        assert a.wait_log("DKIM_SIGNED(0)"), a.log()
        assert a.wait_log("ATTACH_STRIPPED(run.bat: batch)"), a.log()
        msgs = sink.wait_messages(1)
        assert len(msgs) == 1, msgs
        got = as_crlf(msgs[0])
        head, _, body = got.partition(b"\r\n\r\n")
        names = [h.split(b":", 1)[0].lower() for h in head.split(b"\r\n")
                 if h[:1] not in (b" ", b"\t")]
        # every change is there: the milter's, the attachments filter's, the policy's
        assert b"Subject: changed by the milter" in head, got
        assert b"X-Inserted: by the milter" in head, got
        assert b"X-Spam-Status: No" in head, got
        assert b'The attachment "run.bat" was removed' in body, got
        # the signature is on top of the message and names them
        # smtp-sink's own fields come first, its Received: last of them
        ours = [n for n in names if not n.startswith(SINK_FIELDS)][1:]
        assert ours[0] == b"dkim-signature", names
        assert ours.index(b"x-spam-status") < ours.index(b"received"), names
        assert dkimpy_verifies_at(got, nsd), got
        sig = head.split(b"DKIM-Signature:", 1)[1].split(b"b=")[0]
        unfolded = sig.replace(b"\r\n", b"").replace(b"\t", b"").replace(b" ", b"")
        for name in (b"Subject", b"X-Spam-Status", b"X-Inserted", b"Content-Type"):
            assert name.lower() in unfolded.lower(), sig
        # and a change after signing is seen
        assert not dkimpy_verifies_at(got.replace(b"changed by the milter", b"changed again"),
                                      nsd)
    finally:
        cleanup(a, milter, sink, nsd, keys)


def test_signing_failure_uses_on_error():
    """A message the late step cannot sign (its header section is over
    max_header_size): on_error tempfail answers 451 at the end of DATA and
    queues nothing; skip relays it unsigned with DKIM_ERROR."""
    keys = Keys()
    nsd = sink = a = b = None
    big = message(extra=b"".join(b"X-Filler-%d: %s\r\n" % (i, b"x" * 60) for i in range(30)))
    dkim = ('{ name = "dkim"; max_header_size = "1K"; on_error = "%s"; '
            'keys = ( { domain = "example.com"; selector = "sel"; key_file = "%s"; } ); }')
    try:
        nsd, sink = start_nsd(keys), Sink()
        a = postern(nsd, dkim % ("tempfail", keys.key), sink)
        try:
            send(a, big, source="127.0.0.100")
            raise AssertionError("accepted: " + a.log())
        except smtplib.SMTPDataError as e:
            assert e.smtp_code == 451 and e.smtp_error.startswith(b"4.7.1 "), e
        assert a.wait_log("tempfail by dkim in the late step"), a.log()
        assert a.queue() == [], a.queue()
        b = postern(nsd, dkim % ("skip", keys.key), sink)
        send(b, big, source="127.0.0.100")
        assert b.wait_log("DKIM_ERROR(0)"), b.log()
        got = sink.wait_messages(1)
        assert len(got) == 1 and b"DKIM-Signature" not in got[0], got
    finally:
        cleanup(a, b, sink, nsd, keys)


def test_inbound_reject_quarantine_and_bad_from():
    keys = Keys()
    nsd = p = None
    try:
        nsd = start_nsd(keys)
        p = postern(nsd, VERIFIERS)
        # p=reject, no signature, no SPF: refused at the end of DATA
        e = refused(p, message())
        assert e is not None and e.smtp_code == 550, e
        assert e.smtp_error == b"5.7.1 Message rejected by the DMARC policy of example.com", e
        assert p.wait_log("DMARC_FAIL(2)"), p.log()
        assert p.queue() == [], p.queue()
        # p=quarantine: accepted and held
        assert refused(p, message(frm="bob@example.org")) is None
        hold = os.path.join(p.spool, "hold")
        assert os.path.isdir(hold) and len(os.listdir(hold)) == 1, p.log()
        # two From: fields
        e = refused(p, message(extra=b"From: mallory@example.net\r\n"))
        assert e is not None and e.smtp_code == 550, e
        assert b"exactly one From: address" in e.smtp_error, e
        assert p.wait_log("DMARC_BAD_FROM(3)"), p.log()
    finally:
        cleanup(p, nsd, keys)


if __name__ == "__main__":
    run([test_outbound_signed_and_verified_downstream,
         test_signed_after_every_change,
         test_signing_failure_uses_on_error,
         test_inbound_reject_quarantine_and_bad_from])

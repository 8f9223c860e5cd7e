"""postern-milter (milter/) signing outbound mail for a real, private
Postfix that calls it through smtpd_milters: the chain is dkim (listed
first), the attachments filter (a strip rule) and Postern's milter client
talking to tests/milter/test-milter, which changes the Subject and inserts
a field; the policy adds X-Spam-Status, which sign_headers names and
oversigns. postern-milter makes the message Postfix will relay (the edits
applied to its copy, the added fields above it) before its late step
signs it, then hands Postfix the edits, the fields and the DKIM-Signature
on top: the message smtp-sink receives behind Postfix carries every change
and verifies with dkimpy fetching the key from the test's nsd (and a
change after signing does not). Inbound mail (a client outside
relay.trusted_networks) is not signed. Postfix is started as SERVICES.md
says (bench/relay_bench.py's Postfix class); needs root."""
import os
import smtplib
import sys
import time

from harness import Sink, run, skip
from pmilter_fixture import MILTER, Milter, MilterPostfix, postfix_class
from test_dkim import Keys, SINK_FIELDS, as_crlf, dkimpy_verifies_at, edited_message, start_nsd
from test_milter import TestMilter

RELAY = 'local_domains = ["example.test"]; trusted_networks = ["%s"];'
FILTERS = ('filters = ( { name = "dkim"; sign_headers = [ "from", "to", "subject", "date", '
           '"message-id", "mime-version", "content-type", "x-inserted", "x-spam-status" ]; '
           'oversign_headers = [ "from", "subject", "x-spam-status" ]; '
           'keys = ( { domain = "example.com"; selector = "sel"; key_file = "%s"; } ); },\n'
           '  { name = "attachments"; rules = ( { id = "batch"; extensions = [ "bat" ]; '
           'action = "strip"; } ); },\n'
           '  { name = "milter"; address = "%s"; } );\n')


class Setup:
    """nsd with the key, test-milter, postern-milter (outbound: trusted
    127.0.0.1; and one for which 127.0.0.1 is not trusted), the sink and
    Postfix with one smtpd per milter."""

    def __init__(self):
        self.parts = []
        self.milters = []
        try:
            postfix_class()  # skips early without Postfix or root
            self.keys = Keys()
            self.parts.append(self.keys)
            self.nsd = start_nsd(self.keys)
            self.parts.append(self.nsd)
            self.test_milter = TestMilter(kind="inet")
            self.parts.append(self.test_milter)
            extra = FILTERS % (self.keys.key, self.test_milter.address)
            self.milter = Milter(extra, relay=RELAY % "127.0.0.1/32")
            self.inbound_milter = Milter(extra, relay=RELAY % "127.0.0.100/32")
            for m in (self.milter, self.inbound_milter):
                self.parts.append(m)
                self.milters.append(m)
            self.sink = Sink()
            self.parts.append(self.sink)
            self.postfix = MilterPostfix(self.sink.port, self.milter.port,
                                         {"inbound": self.inbound_milter.port})
            self.parts.append(self.postfix)
            self.inbound_port = self.postfix.ports["inbound"]
        except Exception:
            self.cleanup()
            raise

    def cleanup(self):
        for p in reversed(self.parts):
            p.cleanup()
        self.parts = []


_setup = None


def setup():
    global _setup
    if _setup is None:
        _setup = Setup()
    return _setup


def send(s, msg, port=None):
    with smtplib.SMTP("127.0.0.1", port or s.postfix.port, timeout=90) as c:
        c.ehlo("client.example.com")
        c.sendmail("bounce@example.com", ["x@sink.test"], msg)


def delivered(s, text, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        for m in s.sink.messages():
            if text in m:
                time.sleep(0.3)  # the dump may still be written
                return as_crlf([m for m in s.sink.messages() if text in m][0])
        time.sleep(0.1)
    raise AssertionError("not delivered: %s\n%s\n%s" % (text, s.postfix.log_tail(),
                                                        s.milter.log()))


def test_signature_covers_the_chains_changes():
    s = setup()
    send(s, edited_message())
    got = delivered(s, b"<late@example.com>")
    head, _, body = got.partition(b"\r\n\r\n")
    names = [h.split(b":", 1)[0].lower() for h in head.split(b"\r\n")
             if h[:1] not in (b" ", b"\t")]
    assert b"Subject: changed by the milter" in head, got
    assert b"X-Inserted: by the milter" in head, got
    assert b"X-Spam-Status: No" in head, got
    assert b'The attachment "run.bat" was removed' in body, got
    assert b"DKIM_SIGNED" in s.milter.log().encode(), s.milter.log()
    assert dkimpy_verifies_at(got, s.nsd), (got, s.milter.log())
    # the signature and the added fields are above the fields Postfix shows
    ours = [n for n in names if not n.startswith(SINK_FIELDS)][1:]
    assert ours.index(b"dkim-signature") < ours.index(b"x-spam-status") < \
        ours.index(b"from"), names
    sig = head.split(b"DKIM-Signature:", 1)[1].split(b"b=")[0].lower()
    for name in (b"subject", b"x-spam-status", b"x-inserted", b"content-type"):
        assert name in sig.replace(b"\r\n", b"").replace(b"\t", b"").replace(b" ", b""), sig
    assert not dkimpy_verifies_at(got.replace(b"changed by the milter", b"changed again"),
                                  s.nsd)


def test_inbound_not_signed():
    s = setup()
    msg = edited_message().replace(b"<late@example.com>", b"<inbound@example.com>")
    send(s, msg, port=s.inbound_port)
    got = delivered(s, b"<inbound@example.com>")
    head = got.partition(b"\r\n\r\n")[0]
    assert b"DKIM-Signature:" not in head, got
    assert b"Subject: changed by the milter" in head, got


try:
    if not os.access(MILTER, os.X_OK):
        skip("postern-milter not built at " + MILTER)
    run([test_signature_covers_the_chains_changes, test_inbound_not_signed])
finally:
    if _setup is not None:
        _setup.cleanup()
        for m in _setup.milters:
            print("--- postern-milter's log")
            print(m.final_log)
        if any("Sanitizer" in m.final_log or "runtime error" in m.final_log
               for m in _setup.milters):
            print("FAIL: a sanitizer report in postern-milter's log")
            sys.exit(1)

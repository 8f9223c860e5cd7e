"""Broken MIME that hides an EICAR attachment, through the real posternd
with both content filters in its chain (the attachments filter with its
rules, then the clamd filter against a real clamd: harness.clamd(), whose
signature database knows EICAR), Postfix's smtp-sink downstream. Each
message must end rejected at the end of DATA (5xx), by clamd (it scans the
raw stream and parses the MIME itself) or by the attachment rules, with its
symbol in the log, nothing queued or held and nothing delivered: a
multipart without its closing boundary, one without its opening boundary,
conflicting Content-Transfer-Encoding fields on the EICAR part (both
orders), base64 with junk between its characters, EICAR named innocently
while a second name says .com (name vs filename, RFC 2231 and RFC 2047
encoded ".com"), EICAR inside a zip (made with Python's zipfile), and a
zip of 100,000 entries (archive_limit_action). Where clamd is the one that
must catch it, the same broken message with harmless text in place of
EICAR is delivered: the rejection comes from the virus, not the breakage."""
import base64
import io
import os
import shutil
import smtplib
import time
import zipfile

from harness import EICAR, FOUND_NAME, Postern, Sink, Skip, clamd, run

RELAY = 'local_domains = ["example.test", "sink.test"]; trusted_networks = ["127.0.0.100/32"];'
RULES = ('rules = ( { id = "exe"; extensions = [ "exe", "com", "scr" ]; },'
         ' { id = "pe"; detected_type = [ "application/vnd.microsoft.portable-executable",'
         ' "application/x-dosexec" ]; } );')
HARMLESS = b"Nothing to see here, just the minutes of the last meeting, as promised."
HEAD = (b"From: <a@example.test>\r\nTo: <x@sink.test>\r\nSubject: %s\r\n"
        b"MIME-Version: 1.0\r\n")

def postern(sink_port, keys="", clamd_keys=""):
    return Postern(relay=RELAY, extra=(
        'queue = { min_backoff = "1s"; max_backoff = "1s"; idle_timeout = "1s"; };\n'
        'transports = ( { domain = "sink.test"; nexthop = "smtp:[127.0.0.1]:%d"; } );\n'
        'filters = ( { name = "attachments"; %s %s },\n'
        '            { name = "clamd"; address = "%s"; timeout = "20s"; %s } );\n'
        % (sink_port, keys, RULES, clamd().address(), clamd_keys))).start()


def send(p, body):
    """Sends body; returns (code, text) of the end of DATA."""
    with smtplib.SMTP("127.0.0.1", p.port(), timeout=60) as c:
        try:
            c.sendmail("a@example.test", ["x@sink.test"], body)
            return 250, ""
        except smtplib.SMTPDataError as e:
            return e.smtp_code, e.smtp_error.decode(errors="replace")


def held(p):
    d = os.path.join(p.spool, "hold")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def b64(data, width=76):
    e = base64.b64encode(data)
    return b"\r\n".join(e[i:i + width] for i in range(0, len(e), width)) + b"\r\n"


def multipart(subject, body, boundary=b"b1"):
    return (HEAD % subject + b'Content-Type: multipart/mixed; boundary="' + boundary +
            b'"\r\n\r\nThis is a multi-part message in MIME format.\r\n' + body)


TEXT_PART = b"--b1\r\nContent-Type: text/plain\r\n\r\nPlease see the attached notes.\r\n"


# ---- the messages: each a function of the payload ----

def no_closing_boundary(data):
    return multipart(b"no closing boundary", TEXT_PART +
                     b'--b1\r\nContent-Type: text/plain; name="notes.txt"\r\n'
                     b"Content-Transfer-Encoding: base64\r\n\r\n" + b64(data))


def no_opening_boundary(data):
    # the declared boundary never appears: the whole body is the preamble
    return multipart(b"no opening boundary",
                     b'Content-Type: text/plain; name="notes.txt"\r\n'
                     b"Content-Transfer-Encoding: base64\r\n\r\n" + b64(data) + b"--b1--\r\n")


def wrong_boundary(data):
    # the parts are delimited by another boundary than the one declared
    return multipart(b"wrong boundary", TEXT_PART.replace(b"--b1", b"--zz") +
                     b'--zz\r\nContent-Type: text/plain; name="notes.txt"\r\n'
                     b"Content-Transfer-Encoding: base64\r\n\r\n" + b64(data) + b"--zz--\r\n")


def cte_base64_then_qp(data):
    return multipart(b"two encodings", TEXT_PART +
                     b'--b1\r\nContent-Type: text/plain; name="notes.txt"\r\n'
                     b"Content-Transfer-Encoding: base64\r\n"
                     b"Content-Transfer-Encoding: quoted-printable\r\n\r\n" + b64(data) +
                     b"--b1--\r\n")


def cte_qp_then_base64(data):
    return multipart(b"two encodings", TEXT_PART +
                     b'--b1\r\nContent-Type: text/plain; name="notes.txt"\r\n'
                     b"Content-Transfer-Encoding: 7bit\r\n"
                     b"Content-Transfer-Encoding: base64\r\n\r\n" + b64(data) + b"--b1--\r\n")


def base64_with_junk(data):
    clean = base64.b64encode(data)
    junk = b"".join(clean[i:i + 7] + b"!* " for i in range(0, len(clean), 7))
    return multipart(b"junk in base64", TEXT_PART +
                     b'--b1\r\nContent-Type: text/plain; name="notes.txt"\r\n'
                     b"Content-Transfer-Encoding: base64\r\n\r\n" +
                     b"\r\n".join(junk[i:i + 50] for i in range(0, len(junk), 50)) +
                     b"\r\n--b1--\r\n")


def innocent_name(headers):
    def build(data):
        return multipart(b"a name trick", TEXT_PART + b"--b1\r\n" + headers +
                         b"Content-Transfer-Encoding: base64\r\n\r\n" + b64(data) +
                         b"--b1--\r\n")
    return build


NAME_TXT_FILENAME_COM = innocent_name(
    b'Content-Type: text/plain; name="notes.txt"\r\n'
    b'Content-Disposition: attachment; filename="notes.com"\r\n')
FILENAME_TXT_NAME_COM = innocent_name(
    b'Content-Type: application/octet-stream; name="notes.com"\r\n'
    b'Content-Disposition: inline; filename="notes.txt"\r\n')
RFC2231_COM = innocent_name(
    b'Content-Type: text/plain; name="notes.txt"\r\n'
    b"Content-Disposition: attachment;\r\n filename*0*=utf-8''notes%2E;\r\n"
    b" filename*1*=%63%6F%6D\r\n")
RFC2047_COM = innocent_name(
    b'Content-Type: text/plain; name="=?UTF-8?B?bm90ZXMuY29t?="\r\n'  # notes.com
    b'Content-Disposition: attachment; filename="notes.txt"\r\n')


def in_zip(data):
    z = io.BytesIO()
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as f:
        f.writestr("docs/readme.txt", "read me\n")
        f.writestr("docs/notes.txt", data)
    return multipart(b"a zip", TEXT_PART +
                     b'--b1\r\nContent-Type: application/zip; name="docs.zip"\r\n'
                     b"Content-Transfer-Encoding: base64\r\n\r\n" + b64(z.getvalue()) +
                     b"--b1--\r\n")


def cleanup(*things):
    for t in things:
        if t is not None:
            t.cleanup()


def expect_rejected(build, by, clean_delivered):
    """build(EICAR) is rejected by "clamd" or "attachments" (its symbol in
    the log) and never delivered; with clean_delivered, build(HARMLESS) is
    delivered."""
    p, sink = None, Sink()
    try:
        p = postern(sink.port)
        start = time.time()
        code, text = send(p, build(EICAR))
        assert time.time() - start < 25, time.time() - start
        assert 500 <= code < 600, (code, text)
        if by == "clamd":
            assert code == 554 and "virus %s found" % FOUND_NAME in text, (code, text)
            assert p.wait_log("CLAMAV_VIRUS(100)"), p.log()
        else:
            assert code == 554 and "5.7.1" in text and "refused by rule exe" in text, (code, text)
            assert p.wait_log("ATTACH_REJECTED("), p.log()
        assert p.queue() == [] and held(p) == [], (p.queue(), held(p))
        if clean_delivered:
            code, text = send(p, build(HARMLESS))
            assert code == 250, (code, text)
            msgs = sink.wait_messages(1)
            assert len(msgs) == 1, msgs
        time.sleep(1.5)  # a queue run: only the harmless one ever reaches the sink
        assert len(sink.messages()) == (1 if clean_delivered else 0), sink.messages()
        for m in sink.messages():
            assert EICAR not in m and base64.b64encode(EICAR)[:20] not in m, m
    finally:
        cleanup(p, sink)


def test_no_closing_boundary():
    expect_rejected(no_closing_boundary, "clamd", True)


def test_no_opening_boundary():
    expect_rejected(no_opening_boundary, "clamd", True)


def test_wrong_boundary():
    expect_rejected(wrong_boundary, "clamd", True)


def test_conflicting_transfer_encodings():
    expect_rejected(cte_base64_then_qp, "clamd", True)
    expect_rejected(cte_qp_then_base64, "clamd", True)


def test_base64_with_junk():
    expect_rejected(base64_with_junk, "clamd", True)


def test_name_says_txt_filename_says_com():
    expect_rejected(NAME_TXT_FILENAME_COM, "attachments", False)
    expect_rejected(FILENAME_TXT_NAME_COM, "attachments", False)


def test_encoded_com_names():
    expect_rejected(RFC2231_COM, "attachments", False)
    expect_rejected(RFC2047_COM, "attachments", False)


def test_eicar_in_zip():
    expect_rejected(in_zip, "clamd", True)


def test_zip_of_100000_entries():
    """Built with zipfile in bounded time; over archive_max_entries the
    message is refused (archive_limit_action reject, 552 5.6.0), and with
    the action quarantine it is held, never delivered."""
    start = time.time()
    z = io.BytesIO()
    with zipfile.ZipFile(z, "w", zipfile.ZIP_STORED) as f:
        for i in range(100000):
            f.writestr("f%d.txt" % i, b"x")
    assert time.time() - start < 60, time.time() - start
    body = multipart(b"many entries", TEXT_PART +
                     b'--b1\r\nContent-Type: application/zip; name="many.zip"\r\n'
                     b"Content-Transfer-Encoding: base64\r\n\r\n" + b64(z.getvalue()) +
                     b"--b1--\r\n")
    for action in ("reject", "quarantine"):
        p, sink = None, Sink()
        try:
            # the message is over clamd's StreamMaxLength (1 MiB): not sent
            p = postern(sink.port, 'archive_limit_action = "%s";' % action,
                        'max_size = "1M"; size_action = "accept";')
            start = time.time()
            code, text = send(p, body)
            assert time.time() - start < 25, time.time() - start
            if action == "reject":
                assert code == 552 and "5.6.0" in text, (code, text)
                assert 'Attachment "many.zip" refused: archive over a limit' in text, text
                assert p.queue() == [] and held(p) == [], (p.queue(), held(p))
            else:
                assert code == 250, (code, text)
                deadline = time.time() + 5
                while time.time() < deadline and not held(p):
                    time.sleep(0.05)
                assert len(held(p)) == 1 and p.queue() == [], (held(p), p.queue())
            assert p.wait_log("more than 1000 entries"), p.log()
            time.sleep(1.5)
            assert sink.messages() == [], sink.messages()
        finally:
            cleanup(p, sink)


if __name__ == "__main__":
    if shutil.which("smtp-sink") is None:
        print("SKIP: smtp-sink (package postfix) is not installed")
        raise SystemExit(77)
    try:
        clamd()
    except Skip as e:
        print("SKIP: %s" % e)
        raise SystemExit(77)
    run([test_no_closing_boundary, test_no_opening_boundary, test_wrong_boundary,
         test_conflicting_transfer_encodings, test_base64_with_junk,
         test_name_says_txt_filename_says_com, test_encoded_com_names, test_eicar_in_zip,
         test_zip_of_100000_entries])

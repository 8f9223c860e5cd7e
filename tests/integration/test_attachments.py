"""The attachments filter in the real posternd, driven by smtplib, with
Postfix's smtp-sink downstream: a message with invoice.pdf.exe is refused at
the end of DATA with 554 5.7.1 naming the file and the rule (nothing queued,
the verdict logged with ATTACH_REJECTED); an .exe renamed .pdf is caught by
its content (libmagic) and an .exe inside a zip made by Python's zipfile by
libarchive; a clean PDF is accepted and delivered intact; a quarantine rule
holds the message (the spool's hold/, never delivered); a strip rule
delivers the message with the file replaced by a text part that says why
(and a message that is itself the file with its Content-Type changed); a
MIME bomb (1,000 nested multiparts) is refused with 552 5.6.0; an encrypted
zip (made with the zip tool when installed) is refused."""
import base64
import io
import os
import shutil
import smtplib
import subprocess
import tempfile
import time
import zipfile
from email.message import EmailMessage

from harness import Postern, Sink, Skip, run

RELAY = 'local_domains = ["example.test", "sink.test"]; trusted_networks = ["127.0.0.100/32"];'
RULES = ('rules = ( { id = "exe"; extensions = [ "exe", "scr" ]; },'
         ' { id = "pe"; detected_type = [ "application/vnd.microsoft.portable-executable",'
         ' "application/x-dosexec" ]; },'
         ' { id = "scripts"; extensions = [ "js", "vbs" ]; action = "quarantine"; },'
         ' { id = "batch"; extensions = [ "bat", "cmd" ]; action = "strip"; } );')
PDF = b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n%%EOF\n"


def pe():
    """A minimal PE executable (libmagic: portable-executable)."""
    b = bytearray(1024)
    b[0:2] = b"MZ"
    b[0x3c:0x40] = (0x40).to_bytes(4, "little")
    b[0x40:0x44] = b"PE\0\0"
    b[0x44:0x46] = (0x14c).to_bytes(2, "little")
    b[0x46:0x48] = (1).to_bytes(2, "little")
    b[0x54:0x56] = (0xe0).to_bytes(2, "little")
    b[0x56:0x58] = (0x102).to_bytes(2, "little")
    b[0x58:0x5a] = (0x10b).to_bytes(2, "little")
    return bytes(b)


def postern(sink_port, keys=RULES):
    return Postern(relay=RELAY, extra=(
        'queue = { min_backoff = "1s"; max_backoff = "1s"; idle_timeout = "1s"; };\n'
        'transports = ( { domain = "sink.test"; nexthop = "smtp:[127.0.0.1]:%d"; } );\n'
        'filters = ( { name = "attachments"; %s } );\n' % (sink_port, keys))).start()


def message(*files):
    """A message with a text part and files (name, type, content)."""
    m = EmailMessage()
    m["From"] = "a@example.test"
    m["To"] = "x@sink.test"
    m["Subject"] = "attachments test"
    m.set_content("Please find the files attached.\n")
    for name, ctype, data in files:
        maintype, subtype = ctype.split("/")
        m.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return m.as_bytes(policy=m.policy.clone(linesep="\r\n"))


def send(p, body):
    """Sends body; returns (code, text) of the end of DATA."""
    with smtplib.SMTP("127.0.0.1", p.port(), timeout=30) as c:
        try:
            c.sendmail("a@example.test", ["x@sink.test"], body)
            return 250, ""
        except smtplib.SMTPDataError as e:
            return e.smtp_code, e.smtp_error.decode(errors="replace")


def held(p):
    d = os.path.join(p.spool, "hold")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def cleanup(*things):
    for t in things:
        if t is not None:
            t.cleanup()


def expect_refused(body, code, texts, symbol):
    p, sink = None, Sink()
    try:
        p = postern(sink.port)
        got, text = send(p, body)
        assert got == code, (got, text)
        for t in texts:
            assert t in text, (t, text)
        assert p.queue() == [] and held(p) == [], (p.queue(), held(p))
        assert p.wait_log(symbol), p.log()
        time.sleep(0.5)
        assert sink.messages() == [], sink.messages()
    finally:
        cleanup(p, sink)


def test_double_extension_refused():
    expect_refused(message(("invoice.pdf.exe", "application/octet-stream", pe())), 554,
                   ["5.7.1", 'Attachment "invoice.pdf.exe" refused by rule exe'],
                   "ATTACH_REJECTED(invoice.pdf.exe: exe)")


def test_renamed_executable_refused():
    expect_refused(message(("invoice.pdf", "application/pdf", pe())), 554,
                   ["5.7.1", 'Attachment "invoice.pdf" refused by rule pe'],
                   "ATTACH_REJECTED(invoice.pdf: pe)")


def test_executable_in_zip_refused():
    z = io.BytesIO()
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as f:
        f.writestr("docs/readme.txt", "read me\n")
        f.writestr("docs/setup.exe", pe())
    expect_refused(message(("docs.zip", "application/zip", z.getvalue())), 554,
                   ['Attachment "docs.zip/docs/setup.exe" refused by rule exe'],
                   "ATTACH_REJECTED(docs.zip/docs/setup.exe: exe)")


def test_mime_bomb_refused():
    lines = [b"From: a@example.test\r\nSubject: bomb\r\nMIME-Version: 1.0\r\n"
             b'Content-Type: multipart/mixed; boundary="b0"\r\n\r\n']
    for i in range(1, 1001):
        lines.append(b'--b%d\r\nContent-Type: multipart/mixed; boundary="b%d"\r\n\r\n' % (i - 1, i))
    lines.append(b"--b1000\r\n\r\ndeep\r\n")
    lines += [b"--b%d--\r\n" % i for i in range(1000, -1, -1)]
    expect_refused(b"".join(lines), 552,
                   ["5.6.0", "MIME structure over a limit (nesting depth over 20)"],
                   "MIME_LIMIT(nesting depth over 20)")


def test_encrypted_zip_refused():
    if shutil.which("zip") is None:
        raise Skip("the zip tool is not installed")
    d = tempfile.mkdtemp(prefix="postern-zip-")
    try:
        with open(os.path.join(d, "a.txt"), "w") as f:
            f.write("secret\n")
        subprocess.run(["zip", "-q", "-P", "pw", "secret.zip", "a.txt"], cwd=d, check=True,
                       timeout=30)
        with open(os.path.join(d, "secret.zip"), "rb") as f:
            data = f.read()
    finally:
        shutil.rmtree(d, ignore_errors=True)
    expect_refused(message(("secret.zip", "application/zip", data)), 554,
                   ['Attachment "secret.zip" refused: encrypted archive'],
                   "ARCHIVE_ENCRYPTED(secret.zip)")


def test_clean_pdf_delivered():
    p, sink = None, Sink()
    try:
        p = postern(sink.port)
        code, text = send(p, message(("invoice.pdf", "application/pdf", PDF)))
        assert code == 250, (code, text)
        msgs = sink.wait_messages(1)
        assert len(msgs) == 1, msgs
        assert base64.b64encode(PDF)[:40] in msgs[0], msgs[0]
        assert b'filename="invoice.pdf"' in msgs[0], msgs[0]
        assert "ATTACH_" not in p.log(), p.log()
    finally:
        cleanup(p, sink)


def test_quarantine_holds():
    p, sink = None, Sink()
    try:
        p = postern(sink.port)
        code, text = send(p, message(("pay.js", "text/javascript", b"alert(1)\n")))
        assert code == 250, (code, text)
        assert p.wait_log("ATTACH_QUARANTINE(pay.js: scripts)"), p.log()
        deadline = time.time() + 5
        while time.time() < deadline and not held(p):
            time.sleep(0.05)
        assert len(held(p)) == 1 and p.queue() == [], (held(p), p.queue())
        time.sleep(2.5)  # two queue runs: a held message is never delivered
        assert sink.messages() == [], sink.messages()
        assert len(held(p)) == 1, held(p)
    finally:
        cleanup(p, sink)


def test_strip_delivers_without_the_file():
    p, sink = None, Sink()
    bat = b"@echo off\r\ndel /q *\r\n"
    try:
        p = postern(sink.port)
        code, text = send(p, message(("run.bat", "application/x-bat", bat),
                                     ("invoice.pdf", "application/pdf", PDF)))
        assert code == 250, (code, text)
        msgs = sink.wait_messages(1)
        assert len(msgs) == 1, msgs
        m = msgs[0]
        assert b'The attachment "run.bat" was removed from this message by mx.postern.test.' \
            in m, m
        assert b'Reason: it matched the attachment rule "batch".' in m, m
        assert base64.b64encode(bat) not in m and b'filename="run.bat"' not in m, m
        assert base64.b64encode(PDF)[:40] in m, m  # the other file is still there
        assert b"Please find the files attached." in m, m
        assert p.wait_log("ATTACH_STRIPPED(run.bat: batch)"), p.log()
    finally:
        cleanup(p, sink)


def test_strip_whole_message():
    """A message that is itself the file: its Content-Type changes too."""
    p, sink = None, Sink()
    body = (b"From: a@example.test\r\nTo: x@sink.test\r\nSubject: just the file\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: application/x-bat; name=\"go.cmd\"\r\n"
            b"Content-Disposition: attachment; filename=\"go.cmd\"\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.b64encode(b"format c:") +
            b"\r\n")
    try:
        p = postern(sink.port)
        code, text = send(p, body)
        assert code == 250, (code, text)
        msgs = sink.wait_messages(1)
        assert len(msgs) == 1, msgs
        head, _, rest = msgs[0].partition(b"\n\n")
        assert b"Content-Type: text/plain; charset=us-ascii" in head, head
        assert b"Content-Transfer-Encoding: 7bit" in head, head
        assert b"Content-Disposition" not in head and b"Subject: just the file" in head, head
        assert rest.startswith(b'The attachment "go.cmd" was removed from this message by '
                               b'mx.postern.test.\n'), rest
    finally:
        cleanup(p, sink)


if __name__ == "__main__":
    if shutil.which("smtp-sink") is None:
        print("SKIP: smtp-sink (package postfix) is not installed")
        raise SystemExit(77)
    run([test_double_extension_refused, test_renamed_executable_refused,
         test_executable_in_zip_refused, test_mime_bomb_refused, test_encrypted_zip_refused,
         test_clean_pdf_delivered, test_quarantine_holds, test_strip_delivers_without_the_file,
         test_strip_whole_message])

"""STARTTLS, implicit TLS and AUTH with real clients (smtplib, openssl
s_client, swaks) and a raw socket: certificate checks against the test CA,
the CVE-2011-0411 plaintext injection, state reset after STARTTLS, the
submission rules (TLS then AUTH before MAIL), the AUTH replies, and the
trace header / log line of an authenticated message."""
import base64
import os
import smtplib
import ssl
import subprocess
import time

from harness import Postern, Raw, run

P = None
MSG = b"Subject: tls test\r\n\r\nhello over tls\r\n"


def postern():
    global P
    if P is None:
        P = Postern(listeners={"mx": ("mx", ""), "sub": ("submission", ""),
                               "subs": ("submissions", "")}).start()
    return P


def context():
    ctx = ssl.create_default_context(cafile=postern().ca)
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def b64(data):
    return base64.b64encode(data).decode()


def plain(user, password):
    return b64(b"\0" + user.encode() + b"\0" + password.encode())


def new_messages(before):
    """The queue files that appeared since `before` (a p.queue() list)."""
    p = postern()
    deadline = time.time() + 5
    while time.time() < deadline:
        new = [q for q in p.queue() if q not in before]
        if new:
            return new
        time.sleep(0.05)
    return []


def tls_raw(port, ehlo=True):
    """A Raw client on `port` after EHLO + STARTTLS + handshake (and a second
    EHLO when `ehlo`); returns (raw, ehlo_text)."""
    r = Raw(port)
    code, _ = r.reply()
    assert code == 220
    code, _ = r.cmd("EHLO client.test")
    assert code == 250
    code, text = r.cmd("STARTTLS")
    assert code == 220 and "2.0.0" in text, text
    assert r.buf == b"", r.buf
    r.sock = context().wrap_socket(r.sock, server_hostname="localhost")
    text = ""
    if ehlo:
        code, text = r.cmd("EHLO client.test")
        assert code == 250, text
    return r, text


def send_raw_message(r, sender, rcpt):
    code, text = r.cmd("MAIL FROM:<%s>" % sender)
    assert code == 250, text
    code, text = r.cmd("RCPT TO:<%s>" % rcpt)
    assert code == 250, text
    code, text = r.cmd("DATA")
    assert code == 354, text
    r.send(MSG + b".\r\n")
    code, text = r.reply()
    assert code == 250 and "queued as" in text, text
    return text.rsplit(" ", 1)[1]


# ---- STARTTLS on the mx listener ----

def test_starttls_smtplib_verified():
    p = postern()
    before = p.queue()
    with smtplib.SMTP("localhost", p.port("mx"), timeout=10) as c:
        c.ehlo("client.test")
        assert c.has_extn("starttls")
        code, _ = c.starttls(context=context())  # checks the cert for "localhost"
        assert code == 220
        code, _ = c.ehlo("client.test")
        assert code == 250
        assert not c.has_extn("starttls"), c.esmtp_features
        assert c.sock.version() is not None
        refused = c.sendmail("a@sender.test", ["x@example.test"], MSG)
        assert refused == {}
    new = new_messages(before)
    assert len(new) == 1, new
    content, env = p.queued_message(new[0])
    received = content.split(b"\r\n\r\n", 1)[0]
    assert b"with ESMTPS id " + new[0].encode() in received, received
    assert b"\r\n\t(using TLS" in received, received
    assert env.endswith(b"END\n"), env
    assert p.wait_log("%s: from=<a@sender.test>" % new[0])
    line = [ln for ln in p.log().splitlines() if new[0] + ": from=" in ln][0]
    assert " tls=yes " in line and " auth=- " in line, line


def test_starttls_wrong_hostname_refused():
    p = postern()
    with smtplib.SMTP("127.0.0.1", p.port("mx"), timeout=10) as c:
        c._host = "wrong.example"
        c.ehlo("client.test")
        try:
            c.starttls(context=context())
        except ssl.SSLCertVerificationError:
            pass
        else:
            raise AssertionError("certificate accepted for the wrong host name")


def test_openssl_s_client_starttls():
    p = postern()
    proc = subprocess.run(
        ["openssl", "s_client", "-starttls", "smtp", "-connect", "127.0.0.1:%d" % p.port("mx"),
         "-CAfile", p.ca, "-verify_return_error", "-verify_hostname", "localhost", "-quiet"],
        input=b"EHLO x\r\nQUIT\r\n", stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        timeout=20)
    out = proc.stdout.decode(errors="replace")
    err = proc.stderr.decode(errors="replace")
    assert proc.returncode == 0, (proc.returncode, out, err)
    assert "250-mx.postern.test" in out, (out, err)
    assert "STARTTLS" not in out, out  # the EHLO inside TLS
    assert "221 " in out, out
    assert "verify error" not in err, err


def test_starttls_injection_discarded():
    p = postern()
    r = Raw(p.port("mx"))
    try:
        assert r.reply()[0] == 220
        assert r.cmd("EHLO client.test")[0] == 250
        r.send("STARTTLS\r\nRSET\r\n")  # one write: RSET is plaintext injection
        code, text = r.reply()
        assert code == 220, text
        assert r.buf == b"", "reply to the injected command before TLS: %r" % r.buf
        r.sock = context().wrap_socket(r.sock, server_hostname="localhost")
        code, text = r.cmd("EHLO client.test")
        assert code == 250 and text.startswith("250-mx.postern.test"), \
            "first reply after the handshake is not EHLO's: %r" % text
        code, text = r.cmd("NOOP")
        assert code == 250 and "2.0.0" in text, text
        assert r.buf == b"", r.buf
    finally:
        r.close()


def test_starttls_resets_state():
    p = postern()
    r = Raw(p.port("mx"))
    try:
        assert r.reply()[0] == 220
        assert r.cmd("EHLO client.test")[0] == 250
        assert r.cmd("MAIL FROM:<a@sender.test>")[0] == 250
        assert r.cmd("STARTTLS")[0] == 220
        r.sock = context().wrap_socket(r.sock, server_hostname="localhost")
        code, text = r.cmd("MAIL FROM:<a@sender.test>")
        assert code == 503 and "5.5.1" in text, text
        assert r.cmd("EHLO client.test")[0] == 250
        code, text = r.cmd("MAIL FROM:<a@sender.test>")
        assert code == 250, text  # the old transaction is gone: no "nested MAIL"
        code, text = r.cmd("STARTTLS")
        assert code == 503 and "5.5.1" in text, text
    finally:
        r.close()


def test_quit_over_tls_gets_221():
    """The last reply over TLS reaches the client before the close (it was
    lost when the session was freed with the records still buffered)."""
    p = postern()
    for port in ("mx", "sub"):
        r, _ = tls_raw(p.port(port))
        try:
            code, text = r.cmd("QUIT")
            assert code == 221 and "2.0.0" in text, text
            assert r.closed()
        finally:
            r.close()
    with smtplib.SMTP_SSL("localhost", p.port("subs"), context=context(), timeout=10) as c:
        c.ehlo("client.test")
        code, _ = c.docmd("QUIT")
        assert code == 221
        c.close()


def test_error_limit_421_over_tls():
    """Too many failed AUTHs end the session with a 421 that arrives over TLS."""
    p = postern()
    r, _ = tls_raw(p.port("sub"))
    try:
        for i in range(19):
            code, text = r.cmd("AUTH PLAIN " + plain("user@example.test", "guess%d" % i))
            assert code == 535, (i, text)
        code, text = r.cmd("AUTH PLAIN " + plain("user@example.test", "guess"))
        assert code == 535, text
        code, text = r.reply()
        assert code == 421 and "4.7.0" in text, text
        assert r.closed()
    finally:
        r.close()


def test_sigterm_421_over_tls():
    """Last: SIGTERM stops the shared instance; open TLS sessions get 421."""
    p = postern()
    r, _ = tls_raw(p.port("sub"))
    try:
        with smtplib.SMTP_SSL("localhost", p.port("subs"), context=context(), timeout=10) as c:
            c.ehlo("client.test")
            p.proc.terminate()
            code, text = r.reply()
            assert code == 421 and "4.3.2" in text, text
            assert r.closed()
            code, text = c.getreply()
            assert code == 421 and b"4.3.2" in text, (code, text)
        assert p.proc.wait(5) == 0
    finally:
        r.close()


def test_mx_no_auth():
    p = postern()
    r = Raw(p.port("mx"))
    try:
        assert r.reply()[0] == 220
        code, text = r.cmd("EHLO client.test")
        assert "AUTH" not in text, text
        code, text = r.cmd("AUTH PLAIN " + plain("user@example.test", "secret"))
        assert code == 503 and "5.5.1" in text, text
    finally:
        r.close()
    r, text = tls_raw(p.port("mx"))
    try:
        assert "AUTH" not in text, text
        code, text = r.cmd("AUTH PLAIN " + plain("user@example.test", "secret"))
        assert code == 503 and "5.5.1" in text, text
        # and no relaying to a remote domain
        assert r.cmd("MAIL FROM:<a@sender.test>")[0] == 250
        code, text = r.cmd("RCPT TO:<x@remote.test>")
        assert code == 554 and "5.7.1" in text, text
    finally:
        r.close()


# ---- submission (STARTTLS + AUTH) ----

def test_submission_before_tls():
    p = postern()
    r = Raw(p.port("sub"))
    try:
        assert r.reply()[0] == 220
        code, text = r.cmd("EHLO client.test")
        assert code == 250 and "STARTTLS" in text, text
        assert "AUTH" not in text, text
        code, text = r.cmd("MAIL FROM:<user@example.test>")
        assert code == 530 and "5.7.0" in text, text
        code, text = r.cmd("AUTH PLAIN " + plain("user@example.test", "secret"))
        assert code == 538 and "5.7.11" in text, text
        code, text = r.cmd("AUTH LOGIN")
        assert code == 538 and "5.7.11" in text, text
    finally:
        r.close()


def test_submission_auth_required_after_tls():
    p = postern()
    r, text = tls_raw(p.port("sub"))
    try:
        assert "AUTH PLAIN LOGIN" in text, text
        assert "STARTTLS" not in text, text
        code, text = r.cmd("MAIL FROM:<user@example.test>")
        assert code == 530 and "5.7.0" in text, text
    finally:
        r.close()


def test_auth_plain_good_and_relay():
    p = postern()
    before = p.queue()
    r, _ = tls_raw(p.port("sub"))
    try:
        code, text = r.cmd("AUTH PLAIN " + plain("user@example.test", "secret"))
        assert code == 235 and "2.7.0" in text, text
        code, text = r.cmd("EHLO client.test")
        assert code == 250
        code, text = r.cmd("AUTH PLAIN " + plain("user@example.test", "secret"))
        assert code == 503 and "5.5.1" in text, text  # already authenticated
        qid = send_raw_message(r, "user@example.test", "x@remote.test")
    finally:
        r.close()
    new = new_messages(before)
    assert new == [qid], (new, qid)
    content, env = p.queued_message(qid)
    received = content.split(b"\r\n\r\n", 1)[0]
    assert b"with ESMTPSA id " + qid.encode() in received, received
    assert env.endswith(b"END\n")
    assert b"auth_user user@example.test" in env, env
    assert p.wait_log("%s: from=<user@example.test>" % qid)
    line = [ln for ln in p.log().splitlines() if qid + ": from=" in ln][0]
    assert " auth=user@example.test " in line and " tls=yes " in line, line
    assert "to=<x@remote.test>" in line, line
    assert "authenticated as user@example.test" in p.log()


def test_auth_plain_bad_password():
    p = postern()
    r, _ = tls_raw(p.port("sub"))
    try:
        code, text = r.cmd("AUTH PLAIN " + plain("user@example.test", "wrong"))
        assert code == 535 and "5.7.8" in text, text
        code, text = r.cmd("AUTH PLAIN " + plain("other@example.test", "secret"))
        assert code == 535 and "5.7.8" in text, text  # another user's password
        code, text = r.cmd("AUTH PLAIN " + plain("nobody@example.test", "secret"))
        assert code == 535 and "5.7.8" in text, text
        code, text = r.cmd("MAIL FROM:<user@example.test>")
        assert code == 530, text
        # the session goes on: a right password still works
        code, text = r.cmd("AUTH PLAIN " + plain("other@example.test", "hunter2"))
        assert code == 235, text
    finally:
        r.close()
    assert "authentication failed for user@example.test" in p.log()
    assert "wrong" not in p.log()


def test_auth_plain_continuation():
    p = postern()
    r, _ = tls_raw(p.port("sub"))
    try:
        code, text = r.cmd("AUTH PLAIN")
        assert code == 334, text
        code, text = r.cmd(plain("user@example.test", "secret"))
        assert code == 235 and "2.7.0" in text, text
    finally:
        r.close()


def test_auth_login_good():
    p = postern()
    r, _ = tls_raw(p.port("sub"))
    try:
        code, text = r.cmd("AUTH LOGIN")
        assert code == 334 and text == "334 VXNlcm5hbWU6", text
        code, text = r.cmd(b64(b"other@example.test"))
        assert code == 334 and text == "334 UGFzc3dvcmQ6", text
        code, text = r.cmd(b64(b"hunter2"))
        assert code == 235 and "2.7.0" in text, text
        assert r.cmd("MAIL FROM:<other@example.test>")[0] == 250
    finally:
        r.close()


def test_auth_login_initial_response_bad_password():
    p = postern()
    r, _ = tls_raw(p.port("sub"))
    try:
        code, text = r.cmd("AUTH LOGIN " + b64(b"user@example.test"))
        assert code == 334 and text == "334 UGFzc3dvcmQ6", text
        code, text = r.cmd(b64(b"hunter2"))
        assert code == 535 and "5.7.8" in text, text
    finally:
        r.close()


def test_auth_abort_and_bad_base64():
    p = postern()
    r, _ = tls_raw(p.port("sub"))
    try:
        assert r.cmd("AUTH LOGIN")[0] == 334
        code, text = r.cmd("*")
        assert code == 501, text
        assert r.cmd("AUTH PLAIN")[0] == 334
        code, text = r.cmd("*")
        assert code == 501, text
        code, text = r.cmd("AUTH PLAIN !!!notbase64!!!")
        assert code == 501 and "5.5.2" in text, text
        assert r.cmd("AUTH LOGIN")[0] == 334
        code, text = r.cmd("%%%%")
        assert code == 501 and "5.5.2" in text, text
        code, text = r.cmd("AUTH CRAM-MD5")
        assert code == 504 and "5.5.4" in text, text
        # after all that the session is usable and not authenticated
        code, text = r.cmd("NOOP")
        assert code == 250, text
        code, text = r.cmd("AUTH PLAIN " + plain("user@example.test", "secret"))
        assert code == 235, text
    finally:
        r.close()


def test_auth_during_transaction_refused():
    p = postern()
    r, _ = tls_raw(p.port("sub"))
    try:
        assert r.cmd("AUTH PLAIN " + plain("user@example.test", "secret"))[0] == 235
        assert r.cmd("MAIL FROM:<user@example.test>")[0] == 250
        code, text = r.cmd("AUTH PLAIN " + plain("user@example.test", "secret"))
        assert code == 503, text
    finally:
        r.close()


def test_smtplib_login_submission():
    p = postern()
    before = p.queue()
    with smtplib.SMTP("localhost", p.port("sub"), timeout=10) as c:
        c.ehlo("client.test")
        c.starttls(context=context())
        c.ehlo("client.test")
        assert "plain" in c.esmtp_features.get("auth", "").lower(), c.esmtp_features
        code, _ = c.login("user@example.test", "secret")
        assert code == 235
        refused = c.sendmail("user@example.test", ["x@remote.test"], MSG)
        assert refused == {}
    new = new_messages(before)
    assert len(new) == 1, new
    content, _ = p.queued_message(new[0])
    assert b"with ESMTPSA" in content.split(b"\r\n\r\n", 1)[0]


def test_smtplib_login_wrong_password():
    p = postern()
    with smtplib.SMTP("localhost", p.port("sub"), timeout=10) as c:
        c.starttls(context=context())
        try:
            c.login("user@example.test", "nope")
        except smtplib.SMTPAuthenticationError as e:
            assert e.smtp_code == 535, e
        else:
            raise AssertionError("login with a wrong password succeeded")


def test_swaks_submission():
    p = postern()
    before = p.queue()
    proc = subprocess.run(
        ["swaks", "--tls", "--auth", "PLAIN", "--auth-user", "user@example.test",
         "--auth-password", "secret", "--server", "127.0.0.1:%d" % p.port("sub"),
         "--from", "user@example.test", "--to", "x@remote.test", "--timeout", "10"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    out = proc.stdout.decode(errors="replace")
    assert proc.returncode == 0, out
    assert "235 2.7.0" in out, out
    assert "250 2.0.0 Ok: queued as" in out, out
    assert len(new_messages(before)) == 1


# ---- submissions (implicit TLS) ----

def test_submissions_smtp_ssl():
    p = postern()
    before = p.queue()
    with smtplib.SMTP_SSL("localhost", p.port("subs"), context=context(), timeout=10) as c:
        code, _ = c.ehlo("client.test")
        assert code == 250
        assert not c.has_extn("starttls"), c.esmtp_features
        assert "login" in c.esmtp_features.get("auth", "").lower(), c.esmtp_features
        c.login("other@example.test", "hunter2")
        refused = c.sendmail("other@example.test", ["x@remote.test"], MSG)
        assert refused == {}
    new = new_messages(before)
    assert len(new) == 1, new
    content, env = p.queued_message(new[0])
    assert b"with ESMTPSA" in content.split(b"\r\n\r\n", 1)[0], content[:300]
    assert b"auth_user other@example.test" in env, env
    assert b"listener subs" in env, env


def test_submissions_requires_auth():
    p = postern()
    with smtplib.SMTP_SSL("localhost", p.port("subs"), context=context(), timeout=10) as c:
        c.ehlo("client.test")
        code, text = c.mail("other@example.test")
        assert code == 530 and b"5.7.0" in text, (code, text)
        code, text = c.docmd("STARTTLS")
        assert code in (502, 503), (code, text)


def test_submissions_plaintext_client_fails():
    p = postern()
    r = Raw(p.port("subs"), timeout=3)
    try:
        r.send("EHLO client.test\r\n")
        try:
            code, text = r.reply()
        except (EOFError, OSError):
            return
        raise AssertionError("plaintext got a reply on the implicit TLS port: %r" % text)
    finally:
        r.close()


try:
    run([test_starttls_smtplib_verified, test_starttls_wrong_hostname_refused,
         test_openssl_s_client_starttls, test_starttls_injection_discarded,
         test_starttls_resets_state, test_quit_over_tls_gets_221, test_mx_no_auth, test_submission_before_tls,
         test_submission_auth_required_after_tls, test_auth_plain_good_and_relay,
         test_auth_plain_bad_password, test_auth_plain_continuation, test_auth_login_good,
         test_auth_login_initial_response_bad_password, test_auth_abort_and_bad_base64,
         test_auth_during_transaction_refused, test_smtplib_login_submission,
         test_smtplib_login_wrong_password, test_swaks_submission, test_submissions_smtp_ssl,
         test_submissions_requires_auth, test_submissions_plaintext_client_fails,
         test_error_limit_421_over_tls, test_sigterm_421_over_tls])
finally:
    if P is not None:
        if os.environ.get("KEEP_LOG"):
            print(P.log())
        P.cleanup()

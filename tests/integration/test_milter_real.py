"""The milter filter in the real posternd against milters from Debian, with
smtp-sink downstream (SERVICES.md recipes, everything on 127.0.0.1 free
ports, state in a temp dir, stopped by pid):
  OpenDKIM, signing (a key made here with opendkim-genkey, its KeyTable and
  SigningTable; the signed message arrives with a DKIM-Signature) and
  verifying (the signed message sent again from a client that is not
  internal: Authentication-Results with dkim=pass, with the public key from
  TestPublicKeys instead of DNS), over TCP and over a unix socket;
  clamav-milter in front of our own clamd with a signature made here: the
  EICAR test string is rejected with clamav-milter's own reply, a clean
  message passes with its X-Virus-Status; spamass-milter in front of our own
  spamd: GTUBE is rejected, a clean message gets the X-Spam-* fields."""
import glob
import os
import pwd
import re
import shutil
import smtplib
import subprocess
import tempfile
import time

from harness import Postern, Sink, Skip, free_port, run, tool, wait_for

FROM = "alice@example.org"
BODY = "A message to sign.\r\nSecond line.\r\n"


def listening(port):
    import socket
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


class OpenDKIM:
    """opendkim -f with a key for example.org (selector "sel") made by
    opendkim-genkey; clients from 127.0.0.5 are internal (their mail is
    signed), others are verified against TestPublicKeys."""

    def __init__(self, unix=False):
        binary, genkey = tool("opendkim"), tool("opendkim-genkey")
        self.dir = tempfile.mkdtemp(prefix="postern-opendkim-")
        os.chmod(self.dir, 0o755)
        d = self.dir
        subprocess.run([genkey, "-D", d, "-d", "example.org", "-s", "sel"], check=True)
        with open(os.path.join(d, "sel.txt")) as f:
            record = "".join(re.findall(r'"([^"]*)"', f.read()))
        with open(os.path.join(d, "KeyTable"), "w") as f:
            f.write("sel._domainkey.example.org example.org:sel:%s/sel.private\n" % d)
        with open(os.path.join(d, "SigningTable"), "w") as f:
            f.write("*@example.org sel._domainkey.example.org\n")
        with open(os.path.join(d, "keys"), "w") as f:
            f.write("sel._domainkey.example.org %s\n" % record)
        with open(os.path.join(d, "internal"), "w") as f:
            f.write("127.0.0.5\n")
        if unix:
            sock = os.path.join(d, "opendkim.sock")
            spec, self.address = "local:" + sock, "unix:" + sock
        else:
            self.port = free_port()
            spec, self.address = "inet:%d@127.0.0.1" % self.port, "inet:127.0.0.1:%d" % self.port
        conf = os.path.join(d, "opendkim.conf")
        with open(conf, "w") as f:
            f.write("Syslog no\nBackground no\nMode sv\nSocket %s\nPidFile %s/opendkim.pid\n"
                    "KeyTable %s/KeyTable\nSigningTable refile:%s/SigningTable\n"
                    "InternalHosts %s/internal\nRequireSafeKeys no\nTestPublicKeys %s/keys\n"
                    "Canonicalization relaxed/simple\nAlwaysAddARHeader yes\n"
                    "AuthservID mx.postern.test\nUMask 000\n" % (spec, d, d, d, d, d))
        self.errlog = open(os.path.join(d, "stderr"), "wb")
        self.proc = subprocess.Popen([binary, "-f", "-x", conf], stdout=self.errlog,
                                     stderr=subprocess.STDOUT)
        ok = wait_for(lambda: os.path.exists(sock) if unix else listening(self.port))
        if not ok:
            self.cleanup()
            raise RuntimeError("opendkim did not start")

    def cleanup(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.errlog.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def postern_with(sink, address, **keys):
    keys = dict(dict(id="opendkim", address=address), **keys)
    group = " ".join('%s = "%s";' % kv for kv in keys.items())
    extra = ('filters = ( { name = "milter"; %s } );\n' % group +
             'transports = ( { domain = "example.test"; nexthop = "smtp:[127.0.0.1]:%d"; } );\n'
             % sink.port)
    return Postern(extra=extra).start()


def send(p, msg, source="127.0.0.1", sender=FROM):
    with smtplib.SMTP("127.0.0.1", p.port(), source_address=(source, 0), timeout=20) as c:
        c.ehlo("client.example.org")
        return c.sendmail(sender, ["bob@example.test"], msg)


def signed_message():
    return ("From: Alice <%s>\r\nTo: bob@example.test\r\nSubject: dkim through postern\r\n"
            "Date: Sat, 28 Nov 2026 00:00:00 +0000\r\nMessage-ID: <dkim-1@example.org>\r\n"
            "\r\n%s" % (FROM, BODY)).encode()


def sunk_one(sink):
    msgs = sink.wait_messages(1)
    assert len(msgs) == 1, msgs
    return msgs[0]


def resend_form(dump):
    """smtp-sink's dump as a message again: its own fields (X-*-Args,
    X-Client-*, its Received) taken off, CR LF line ends."""
    head, body = dump.split(b"\n\n", 1)
    lines = head.split(b"\n")
    start = next(i for i, l in enumerate(lines) if l.startswith(b"Received: from mx.postern"))
    kept, skip = [], True
    for l in lines[start:]:
        if not l[:1].isspace():
            skip = l.startswith(b"Received: from mx.postern.test")
        if not skip:
            kept.append(l)
    body = body[:-1] if body.endswith(b"\n\n") else body  # smtp-sink's closing blank line
    return b"\r\n".join(kept) + b"\r\n\r\n" + body.replace(b"\n", b"\r\n")


def check_opendkim(unix):
    dkim, sink, sink2, p, p2 = OpenDKIM(unix=unix), Sink(), Sink(), None, None
    try:
        p = postern_with(sink, dkim.address)
        assert send(p, signed_message(), source="127.0.0.5") == {}
        dump = sunk_one(sink)
        sig = re.search(rb"DKIM-Signature: ([^\n]*(\n[ \t][^\n]*)*)", dump)
        assert sig is not None, dump
        assert b"d=example.org" in sig.group(1) and b"s=sel" in sig.group(1), sig.group(1)
        assert b"A message to sign." in dump
        # the signed message, from a client that is not internal: verified
        p2 = postern_with(sink2, dkim.address)
        assert send(p2, resend_form(dump), source="127.0.0.1") == {}
        dump2 = sunk_one(sink2)
        ar = re.search(rb"Authentication-Results: ([^\n]*(\n[ \t][^\n]*)*)", dump2)
        assert ar is not None and b"dkim=pass" in ar.group(1), dump2
        assert b"header.d=example.org" in ar.group(1), ar.group(1)
        # and one that was changed on the way fails
        tampered = resend_form(dump).replace(b"Second line.", b"Second line!")
        assert send(p2, tampered, source="127.0.0.1") == {}
        msgs = sink2.wait_messages(2)
        bad = [m for m in msgs if b"Second line!" in m]
        assert len(msgs) == 2 and len(bad) == 1 and b"dkim=fail" in bad[0], msgs
    finally:
        for t in (p, p2, sink, sink2, dkim):
            if t is not None:
                t.cleanup()


def test_opendkim_tcp():
    check_opendkim(unix=False)


def test_opendkim_unix():
    check_opendkim(unix=True)


# ---- clamav-milter ----

EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


class ClamavMilter:
    """clamd with a one-signature database made here (SERVICES.md: the
    EICAR string as a body pattern), and clamav-milter in front of it on a
    TCP port: infected mail rejected, clean mail accepted with its
    X-Virus-Status header."""

    def __init__(self):
        clamd, milter = tool("clamd"), tool("clamav-milter")
        self.dir = tempfile.mkdtemp(prefix="postern-clamav-milter-")
        os.chmod(self.dir, 0o755)
        d = self.dir
        os.mkdir(os.path.join(d, "db"))
        os.mkdir(os.path.join(d, "tmp"))
        with open(os.path.join(d, "db", "local.ndb"), "w") as f:
            f.write("Postern-Test-Signature:0:*:%s\n" % EICAR.hex())
        self.clamd_port, self.port = free_port(), free_port()
        with open(os.path.join(d, "clamd.conf"), "w") as f:
            f.write("Foreground yes\nDatabaseDirectory %s/db\nTemporaryDirectory %s/tmp\n"
                    "PidFile %s/clamd.pid\nLogFile %s/clamd.log\nLogSyslog no\n"
                    "TCPAddr 127.0.0.1\nTCPSocket %d\nSelfCheck 0\nScanMail yes\n"
                    % (d, d, d, d, self.clamd_port))
        with open(os.path.join(d, "clamav-milter.conf"), "w") as f:
            f.write("Foreground yes\nMilterSocket inet:%d@127.0.0.1\n"
                    "ClamdSocket tcp:127.0.0.1:%d\nPidFile %s/milter.pid\nLogFile %s/milter.log\n"
                    "LogSyslog no\nTemporaryDirectory %s/tmp\nOnInfected Reject\n"
                    "OnClean Accept\nAddHeader Replace\nLogInfected Full\n"
                    "RejectMsg \"Virus found: %%v\"\n"
                    % (self.port, self.clamd_port, d, d, d))
        self.address = "inet:127.0.0.1:%d" % self.port
        self.procs = []
        self.out = open(os.path.join(d, "out"), "wb")
        self.procs.append(subprocess.Popen([clamd, "-c", os.path.join(d, "clamd.conf")],
                                           stdout=self.out, stderr=subprocess.STDOUT))
        if not wait_for(lambda: listening(self.clamd_port), 60):
            self.cleanup()
            raise Skip("clamd did not start")
        self.procs.append(subprocess.Popen([milter, "-c", os.path.join(d, "clamav-milter.conf")],
                                           stdout=self.out, stderr=subprocess.STDOUT))
        if not wait_for(lambda: listening(self.port), 30):
            self.cleanup()
            raise RuntimeError("clamav-milter did not start")

    def cleanup(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        self.out.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def test_clamav_milter():
    cm, sink, p = ClamavMilter(), Sink(), None
    try:
        p = postern_with(sink, cm.address, id="clamav")
        clean = b"From: <a@example.org>\r\nSubject: clean\r\n\r\nhello\r\n"
        assert send(p, clean) == {}
        dump = sunk_one(sink)
        assert b"X-Virus-Status: Clean" in dump, dump
        infected = (b"From: <a@example.org>\r\nSubject: infected\r\n\r\nsee:\r\n" + EICAR +
                    b"\r\n")
        try:
            send(p, infected)
            raise AssertionError("infected message accepted")
        except smtplib.SMTPDataError as e:
            assert e.smtp_code == 550, e
            assert e.smtp_error.startswith(b"5.7.1 Virus found: Postern-Test-Signature"), e
        assert p.wait_log("milter clamav: reject at end of message"), p.log()
        assert p.wait_log("MILTER_CLAMAV_REJECT(0)"), p.log()
        time.sleep(0.5)
        assert len(sink.messages()) == 1
    finally:
        for t in (p, sink, cm):
            if t is not None:
                t.cleanup()


# ---- spamass-milter ----

GTUBE = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


class SpamassMilter:
    """spamd (SERVICES.md: its site config in the temp dir, no network
    tests, no Bayes) and spamass-milter in front of it on a TCP port,
    rejecting at score 15 and not touching Subject or body (-m)."""

    def __init__(self):
        milter, spamd = tool("spamass-milter"), tool("spamd")
        tool("spamc")
        if not glob.glob("/usr/share/spamassassin/*.cf"):
            raise Skip("no SpamAssassin rules in /usr/share/spamassassin")
        self.dir = tempfile.mkdtemp(prefix="postern-spamass-milter-")
        d = self.dir
        site, home = os.path.join(d, "site"), os.path.join(d, "home")
        os.makedirs(site)
        os.makedirs(home)
        for f in glob.glob("/etc/spamassassin/*.pre") + glob.glob("/etc/spamassassin/65_debian.cf"):
            shutil.copy(f, site)
        with open(os.path.join(site, "local.cf"), "w") as f:
            f.write("use_bayes 0\nbayes_auto_learn 0\nskip_rbl_checks 1\nuse_razor2 0\n"
                    "use_pyzor 0\n")
        for x in (d, site, home):
            os.chmod(x, 0o755)
        self.spamd_port, self.port = free_port(), free_port()
        args = [spamd, "-L", "-x", "-H", home, "--siteconfigpath", site, "--configpath",
                "/usr/share/spamassassin", "--listen=127.0.0.1:%d" % self.spamd_port,
                "-A", "127.0.0.1", "-m", "2", "--min-children", "1", "-s", d + "/spamd.log"]
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam("debian-spamd")
            except KeyError:
                pw = pwd.getpwnam("nobody")
            os.chown(home, pw.pw_uid, pw.pw_gid)
            args += ["-u", pw.pw_name]
        self.out = open(os.path.join(d, "out"), "wb")
        self.procs = [subprocess.Popen(args, stdout=self.out, stderr=subprocess.STDOUT)]
        if not wait_for(lambda: listening(self.spamd_port), 60):
            self.cleanup()
            raise Skip("spamd did not start")
        self.procs.append(subprocess.Popen(
            [milter, "-p", "inet:%d@127.0.0.1" % self.port, "-r", "15", "-m", "--",
             "-d", "127.0.0.1", "-p", str(self.spamd_port)],
            stdout=self.out, stderr=subprocess.STDOUT))
        self.address = "inet:127.0.0.1:%d" % self.port
        if not wait_for(lambda: listening(self.port), 30):
            self.cleanup()
            raise RuntimeError("spamass-milter did not start")

    def cleanup(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        self.out.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def test_spamass_milter():
    sm, sink, p = SpamassMilter(), Sink(), None
    try:
        p = postern_with(sink, sm.address, id="spamass", on_error="tempfail")
        ham = (b"From: <a@example.org>\r\nTo: <bob@example.test>\r\nSubject: lunch\r\n"
               b"Date: Sat, 28 Nov 2026 00:00:00 +0000\r\nMessage-ID: <ham-1@example.org>\r\n"
               b"\r\nShall we meet for lunch on Monday?\r\n")
        assert send(p, ham) == {}
        dump = sunk_one(sink)
        assert b"X-Spam-Status: No" in dump and b"X-Spam-Checker-Version" in dump, dump
        spam = ham.replace(b"Shall we meet for lunch on Monday?", GTUBE)
        try:
            send(p, spam)
            raise AssertionError("GTUBE accepted")
        except smtplib.SMTPDataError as e:
            assert e.smtp_code == 550 and b"5.7.1" in e.smtp_error, e
        assert p.wait_log("milter spamass: reject at end of message"), p.log()
        time.sleep(0.5)
        assert len(sink.messages()) == 1
    finally:
        for t in (p, sink, sm):
            if t is not None:
                t.cleanup()


if __name__ == "__main__":
    run([test_opendkim_tcp, test_opendkim_unix, test_clamav_milter, test_spamass_milter])

"""The milter filter in the real posternd in front of the real OpenDMARC
(Debian package opendmarc), with Postfix's smtp-sink downstream and the
DMARC and SPF records served by our own nsd:
  a message whose From: domain publishes p=reject, that fails SPF and has
  no DKIM signature, is refused at the end of DATA with OpenDMARC's own
  550 5.7.1 "rejected by DMARC policy for ..." (RejectFailures) and nothing
  reaches the sink; the same message from a domain whose SPF record lists
  the client (aligned with From:, p=reject too) is delivered with
  OpenDMARC's Authentication-Results "dmarc=pass"; and from a domain that
  fails SPF in the same way but publishes p=none it is delivered with
  "dmarc=fail" — so the refusal above is the DMARC policy's doing.

The SPF result: OpenDMARC checks SPF itself (SPFSelfValidate, with
libspf2). It cannot read posternd's own: the spf filter's Received-SPF is
added when the message is accepted, after the whole chain (filter.h), so a
milter in the chain never sees it. And libspf2 passes every client in
127.0.0.0/8 without looking at the record ("localhost is always allowed"),
while a test has no other clients. So the client is a trusted front-end
(smtp.xclient_hosts) that hands over, with XCLIENT, a client at 192.0.2.10
(TEST-NET-1, RFC 5737): posternd gives that address to the milter at
connect, and the SPF records are judged against it. The address is only a
value in the SMTP dialogue; nothing ever sends a packet to it.

OpenDMARC resolves through the system resolver (libresolv and libspf2 read
/etc/resolv.conf and ask port 53), which a test must never let out of
127.0.0.0/8. So OpenDMARC and nsd run in a private network and mount
namespace (unshare --net --mount): its only interface is its own loopback,
where nsd may listen on 127.0.0.1 port 53, and its /etc/resolv.conf is a
bind mount of a file in the temp dir naming 127.0.0.1 (the mount is private
to the namespace; the host's file is untouched). A holder process keeps the
namespace; nsd (harness.Nsd with port 53 and an nsenter prefix) and
opendmarc enter it with nsenter, which execs them, so each is our child and
stopped by its own pid. OpenDMARC's milter socket is a unix socket in the
temp dir: a path, not a network address, so posternd, outside the
namespace, reaches it through the shared file system."""
import os
import re
import shutil
import smtplib
import subprocess
import tempfile
import time

from harness import Nsd, Postern, Sink, Skip, run, tool, wait_for

AUTHSERV_ID = "dmarc.postern.test"
CLIENT = "192.0.2.10"  # handed over by XCLIENT (see above), never contacted
PSL = "/usr/share/publicsuffix/public_suffix_list.dat"
# zone "test.": three From: domains, all without DKIM keys
ZONE = "\n".join([
    'reject IN TXT "v=spf1 ip4:192.0.2.1 -all"',
    '_dmarc.reject IN TXT "v=DMARC1; p=reject"',
    'pass IN TXT "v=spf1 ip4:%s -all"' % CLIENT,
    '_dmarc.pass IN TXT "v=DMARC1; p=reject"',
    'none IN TXT "v=spf1 ip4:192.0.2.1 -all"',
    '_dmarc.none IN TXT "v=DMARC1; p=none"',
]) + "\n"


def stop(proc, timeout=10):
    """Stops one child by its pid: SIGTERM, then SIGKILL after timeout
    seconds."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Namespace:
    """A private network + mount namespace kept by a holder process (a
    shell that brings lo up, bind-mounts d/resolv.conf on /etc/resolv.conf
    and then waits on its stdin, so it also ends when we die); prefix runs
    a command inside it, execs it (the pid stays the command's) and has it
    killed when we die (setpriv --pdeathsig: a test killed before its
    cleanup leaves nothing behind in the namespace). Skip with unshare's
    reason when it cannot be made (needs root or user namespaces)."""

    def __init__(self, d):
        for name in ("unshare", "nsenter", "setpriv", "ip"):
            tool(name)
        resolv = os.path.join(d, "resolv.conf")
        with open(resolv, "w") as f:
            f.write("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
        ready, self.errfile = os.path.join(d, "ns.ready"), os.path.join(d, "ns.err")
        self.err = open(self.errfile, "wb")
        self.proc = subprocess.Popen(
            ["unshare", "--net", "--mount", "--propagation", "private", "sh", "-c",
             'ip link set lo up && mount --bind "$1" /etc/resolv.conf && : > "$2" && '
             'exec cat > /dev/null', "sh", resolv, ready],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self.err)
        if not wait_for(lambda: os.path.exists(ready) or self.proc.poll() is not None) or \
                not os.path.exists(ready):
            self.cleanup()
            with open(self.errfile, errors="replace") as f:
                raise Skip("cannot make a network+mount namespace (unshare --net --mount): %s"
                           % f.read().strip())
        self.prefix = ["nsenter", "-t", str(self.proc.pid), "--net", "--mount",
                       "setpriv", "--pdeathsig", "KILL"]

    def cleanup(self):
        if self.proc.stdin is not None:
            self.proc.stdin.close()  # the holder's cat sees EOF
        stop(self.proc, 5)
        self.err.close()


class OpenDMARC:
    """opendmarc -f inside ns with its config, pid file and milter socket
    in d (UMask 000: posternd's workers run as nobody)."""

    def __init__(self, d, ns):
        binary = tool("opendmarc")
        self.socket = os.path.join(d, "opendmarc.sock")
        self.address = "unix:" + self.socket
        # opendmarc ignores mail from the clients in IgnoreHosts, 127.0.0.1
        # when unset: the list names only an address no client of ours
        # uses, so that a client posternd passes on as 127.0.0.1 (XCLIENT
        # not honoured) would be judged too, and fail the tests loudly
        ignore = os.path.join(d, "ignore-hosts")
        with open(ignore, "w") as f:
            f.write("192.0.2.99\n")
        conf = os.path.join(d, "opendmarc.conf")
        with open(conf, "w") as f:
            f.write("Socket local:%s\nPidFile %s/opendmarc.pid\nUMask 000\n"
                    "Background false\nSyslog false\nIgnoreHosts %s\n"
                    "AuthservID %s\nTrustedAuthservIDs %s\nRejectFailures true\n"
                    # SPF: OpenDMARC's own check (libspf2, resolving in the
                    # namespace) of the connect address and MAIL FROM, see
                    # the top; SPFIgnoreResults: no header the client wrote
                    # can decide it
                    "SPFSelfValidate true\nSPFIgnoreResults true\n"
                    "FailureReports false\nRequiredHeaders false\n"
                    % (self.socket, d, ignore, AUTHSERV_ID, AUTHSERV_ID))
            if os.path.exists(PSL):
                f.write("PublicSuffixList %s\n" % PSL)
        self.outfile = os.path.join(d, "opendmarc.out")
        self.out = open(self.outfile, "wb")
        self.proc = subprocess.Popen(ns.prefix + [binary, "-f", "-c", conf],
                                     stdout=self.out, stderr=subprocess.STDOUT)
        if not wait_for(lambda: os.path.exists(self.socket) or self.proc.poll() is not None) \
                or self.proc.poll() is not None:
            out = self.output()
            self.cleanup()
            raise RuntimeError("opendmarc did not start: " + out)

    def output(self):
        with open(self.outfile, errors="replace") as f:
            return f.read()

    def cleanup(self):
        # libmilter notices SIGTERM only when its accept loop wakes, every
        # 5 s; the filter keeps no state, so 1 s, then SIGKILL
        stop(self.proc, 1)
        self.out.close()


class Chain:
    """Everything one test needs, started in order and stopped in reverse
    by pid (also when starting fails half-way): the namespace, nsd and
    opendmarc in it, smtp-sink, and posternd whose chain is the milter filter
    in front of opendmarc's socket, relaying example.test to the sink, and
    taking XCLIENT from 127.0.0.1."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="postern-opendmarc-")
        os.chmod(self.dir, 0o755)
        self.started = []
        try:
            self.ns = self.add(Namespace(self.dir))
            try:
                self.nsd = self.add(Nsd(ZONE, port=53, prefix=self.ns.prefix))
            except (OSError, subprocess.CalledProcessError, RuntimeError) as e:
                raise Skip("cannot run nsd in the namespace: %s" % e)
            self.dmarc = self.add(OpenDMARC(self.dir, self.ns))
            self.sink = self.add(Sink())
            p = self.add(Postern(smtp='xclient_hosts = ["127.0.0.1/32"];', extra=(
                'filters = ( { name = "milter"; id = "opendmarc"; address = "%s"; } );\n'
                'transports = ( { domain = "example.test"; nexthop = "smtp:[127.0.0.1]:%d"; '
                '} );\n' % (self.dmarc.address, self.sink.port))))
            self.postern = p.start()
        except BaseException:
            self.cleanup()
            raise

    def add(self, thing):
        self.started.append(thing)
        return thing

    def send(self, domain, subject):
        """Sends a message from someone@DOMAIN (envelope and From:) to
        bob@example.test, unsigned, from CLIENT handed over by XCLIENT."""
        msg = ("From: Someone <someone@%s>\r\nTo: <bob@example.test>\r\nSubject: %s\r\n"
               "Date: Sat, 28 Nov 2026 00:00:00 +0000\r\nMessage-ID: <%s@%s>\r\n\r\n"
               "Not signed.\r\n" % (domain, subject, subject.replace(" ", "-"), domain))
        with smtplib.SMTP("127.0.0.1", self.postern.port(), source_address=("127.0.0.1", 0),
                          timeout=20) as c:
            c.ehlo("proxy.example.org")
            code, text = c.docmd("XCLIENT", "ADDR=%s NAME=client.example.org" % CLIENT)
            assert code == 220, (code, text)
            c.ehlo("client.example.org")
            return c.sendmail("someone@" + domain, ["bob@example.test"], msg.encode())

    def diagnostics(self):
        return "opendmarc: %s\nposternd: %s" % (self.dmarc.output()[-2000:],
                                                  self.postern.log()[-3000:])

    def cleanup(self):
        for t in reversed(self.started):
            try:
                t.cleanup()
            except Exception as e:  # go on stopping the others
                print("cleanup of %s: %s" % (type(t).__name__, e))
        self.started = []
        shutil.rmtree(self.dir, ignore_errors=True)


def auth_results(dump):
    """The Authentication-Results fields of an smtp-sink dump, unfolded."""
    return [" ".join(m.group(1).decode(errors="replace").split()) for m in
            re.finditer(rb"^Authentication-Results: ([^\n]*(?:\n[ \t][^\n]*)*)", dump, re.M)]


def test_reject_policy_spf_fail_refused():
    c = Chain()
    try:
        try:
            c.send("reject.test", "dmarc reject")
            raise AssertionError("accepted a p=reject message that fails DMARC\n" +
                                 c.diagnostics())
        except smtplib.SMTPDataError as e:
            assert e.smtp_code == 550, (e, c.diagnostics())
            # OpenDMARC's own reply (its default RejectString), passed through
            assert e.smtp_error == b"5.7.1 rejected by DMARC policy for reject.test", \
                (e, c.diagnostics())
        assert c.postern.wait_log("milter opendmarc: reject at end of message"), c.diagnostics()
        time.sleep(0.5)  # nothing on its way to the sink either
        assert c.sink.messages() == [], c.sink.messages()
        assert c.postern.queue() == [], c.postern.queue()
    finally:
        c.cleanup()


def test_aligned_spf_pass_delivered():
    c = Chain()
    try:
        assert c.send("pass.test", "dmarc pass") == {}
        msgs = c.sink.wait_messages(1)
        assert len(msgs) == 1, (msgs, c.diagnostics())
        ars = auth_results(msgs[0])
        dmarc = [a for a in ars if "dmarc=" in a]
        assert len(dmarc) == 1, (ars, msgs[0])
        assert dmarc[0].startswith(AUTHSERV_ID + "; dmarc=pass"), dmarc
        assert "header.from=pass.test" in dmarc[0], dmarc
        # the SPF result OpenDMARC found itself, from our nsd
        assert any(a.startswith(AUTHSERV_ID + "; spf=pass") and "pass.test" in a
                   for a in ars), ars
        assert b"Not signed." in msgs[0]
    finally:
        c.cleanup()


def test_none_policy_spf_fail_delivered():
    c = Chain()
    try:
        assert c.send("none.test", "dmarc none") == {}
        msgs = c.sink.wait_messages(1)
        assert len(msgs) == 1, (msgs, c.diagnostics())
        ars = auth_results(msgs[0])
        dmarc = [a for a in ars if "dmarc=" in a]
        assert len(dmarc) == 1, (ars, msgs[0])
        assert dmarc[0].startswith(AUTHSERV_ID + "; dmarc=fail"), dmarc
        assert "p=none" in dmarc[0] and "header.from=none.test" in dmarc[0], dmarc
        assert any(a.startswith(AUTHSERV_ID + "; spf=fail") for a in ars), ars
    finally:
        c.cleanup()


if __name__ == "__main__":
    run([test_reject_policy_spf_fail_refused, test_aligned_spf_pass_delivered,
         test_none_policy_spf_fail_delivered])

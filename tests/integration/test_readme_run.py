"""The README's run command end to end: Postfix's smtp-sink stands in for
the next hop on 127.0.0.1:2526 (where conf/postern-dev.conf relays
example.test), `sh scripts/dev-run.sh` runs from the source tree in its own
process group, and a message sent with smtplib to port 2525 and one sent
over STARTTLS + AUTH (dev@example.test / dev-password, the certificate
verified against the script's test CA) on port 2587 must both arrive in
the sink. SIGTERM to the process group then stops it: it must exit 0 and
leave no process behind.

dev-run.sh writes into the source tree (./build) and uses fixed ports and
/var/tmp/postern-dev, so the test exits 77 when the tree is read-only (make
distcheck), when 2525, 2587 or 2526 are taken, or when dev-run.sh would
have to install packages.

dev-run.sh runs `make` in ./build. When ./build is the tree whose `make
check` runs this test (scripts/test-all.sh), that make would run beside the
suite in the same directory: harmless when everything is up to date (a
no-op, checked with `make -q` first), but if a source changed since the
suite started it would relink posternd under the tests that are running
it. Then the test does what dev-run.sh does without its build step: it
runs $top_builddir/posternd on conf/postern-dev.conf from the source tree
(DEV_RUN=direct forces that, DEV_RUN=script the script). Either way the
environment of the outer make (MAKEFLAGS, MAKELEVEL) is not passed on."""
import os
import re
import signal
import smtplib
import socket
import ssl
import subprocess
import tempfile
import time
import uuid

from harness import BUILD, SRC, Sink, Skip, run, skip

SMTP_PORT, SUBMISSION_PORT, SINK_PORT = 2525, 2587, 2526
DEV_DIR = "/var/tmp/postern-dev"
TLS_DIR = os.path.join(DEV_DIR, "tls")
START_TIMEOUT = int(os.environ.get("DEV_RUN_TIMEOUT", "600"))  # a full build of ./build


def port_busy(host, port):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        s = socket.socket(family)
    except OSError:
        return "no %s here" % host
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as posternd does
        s.bind((host, port))
        s.listen(1)
    except OSError as e:
        return "%s port %d: %s" % (host, port, e.strerror)
    finally:
        s.close()
    return None


def missing_packages():
    """The Debian packages scripts/install-deps.sh would install."""
    with open(os.path.join(SRC, "scripts/install-deps.sh")) as f:
        m = re.search(r'^PKGS="([^"]*)"', f.read(), re.M)
    if m is None:
        return []
    out = []
    for pkg in m.group(1).split():
        r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg],
                           capture_output=True, text=True)
        if "install ok installed" not in r.stdout:
            out.append(pkg)
    return out


def clean_env():
    """The environment without the outer make's jobserver and flags."""
    env = dict(os.environ)
    for k in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "GNUMAKEFLAGS"):
        env.pop(k, None)
    return env


def preconditions():
    st = os.stat(SRC)
    if not st.st_mode & 0o222 or not os.access(SRC, os.W_OK):
        skip("the source tree %s is read-only (make distcheck?): dev-run.sh builds in ./build"
             % SRC)
    for host, port in (("127.0.0.1", SMTP_PORT), ("::1", SMTP_PORT),
                       ("127.0.0.1", SUBMISSION_PORT), ("127.0.0.1", SINK_PORT)):
        busy = port_busy(host, port)
        if busy:
            skip("the development ports must be free: %s (is dev-run.sh running?)" % busy)
    missing = missing_packages()
    if missing:
        skip("dev-run.sh would install packages: %s (run scripts/install-deps.sh)"
             % " ".join(missing))
    try:
        subprocess.run(["smtp-sink", "-h"], capture_output=True)
    except OSError:
        skip("no smtp-sink (Debian package postfix)")


def choose_mode():
    """("script", why) to run dev-run.sh, or ("direct", why) to run posternd
    from $top_builddir the way it does."""
    forced = os.environ.get("DEV_RUN")
    if forced in ("script", "direct"):
        return forced, "DEV_RUN=%s" % forced
    dev_build = os.path.realpath(os.path.join(SRC, "build"))
    if dev_build != os.path.realpath(BUILD):
        return "script", "./build is not the tree under test (%s)" % BUILD
    # make check is running in ./build: dev-run.sh's make must be a no-op.
    # (-o config.h: automake's config.h rule never touches an unchanged
    # config.h, so make -q would always call it and everything after it out
    # of date; Makefile: a changed local.mk would rerun automake.)
    r = subprocess.run(["make", "-q", "-o", "config.h", "Makefile", "posternd", "posternctl"],
                       cwd=BUILD, env=clean_env(), capture_output=True, text=True)
    if r.returncode == 0:
        return "script", "./build is the tree under test and up to date"
    return "direct", ("./build is the tree under test and not up to date (make -q: %d): "
                      "dev-run.sh's make would relink posternd under the running suite"
                      % r.returncode)


def wait_port(port, proc, timeout, log):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                if s.recv(100).startswith(b"220"):
                    return
        except OSError:
            pass
        if proc.poll() is not None:
            if "Address already in use" in read(log):
                raise Skip("a development port was taken meanwhile:\n" + read(log)[-500:])
            raise AssertionError("dev-run.sh exited with %s before serving port %d:\n%s"
                                 % (proc.returncode, port, read(log)[-3000:]))
        time.sleep(0.2)
    raise AssertionError("port %d not served after %ds:\n%s" % (port, timeout, read(log)[-3000:]))


def read(path):
    with open(path, errors="replace") as f:
        return f.read()


def group_alive(pgid):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            out.append(int(d))
    return out


def wait_dump(sink, token, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        for m in sink.messages():
            if token.encode() in m and b"\nend " + token.encode() + b"\n" in m:
                return m
        time.sleep(0.1)
    return None


def start(mode, log):
    out = open(log, "w")
    if mode == "script":
        argv = ["sh", "scripts/dev-run.sh"]
    else:
        # dev-run.sh without install and build: its directory, its test CA
        # (made only when missing or expiring), its posternd command line
        os.makedirs(DEV_DIR, exist_ok=True)
        expiring = subprocess.run(["openssl", "x509", "-checkend", "86400", "-noout", "-in",
                                   os.path.join(TLS_DIR, "server.pem")],
                                  capture_output=True).returncode != 0
        if expiring:
            subprocess.check_call(["sh", "tests/integration/make-test-ca.sh", TLS_DIR,
                                   "postern.dev.test"], cwd=SRC)
        argv = [os.path.join(BUILD, "posternd"), "-c", "conf/postern-dev.conf"]
    return subprocess.Popen(argv, cwd=SRC, stdout=out, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, env=clean_env(), start_new_session=True)


def message(sender, token):
    return ("From: <%s>\r\nTo: <someone@example.test>\r\nSubject: readme run %s\r\n"
            "Message-ID: <%s@readme.test>\r\n\r\nhello through dev-run.sh\r\nend %s\r\n"
            % (sender, token, token, token)).encode()


def test_dev_run_round_trip():
    preconditions()
    mode, why = choose_mode()
    print("    running %s: %s" % ("sh scripts/dev-run.sh" if mode == "script" else
                                  os.path.join(BUILD, "posternd") + " -c conf/postern-dev.conf",
                                  why))
    try:
        sink = Sink(port=SINK_PORT)
    except RuntimeError as e:
        raise Skip("smtp-sink cannot listen on 127.0.0.1:%d: %s" % (SINK_PORT, e))
    logdir = tempfile.mkdtemp(prefix="postern-devrun-")
    log = os.path.join(logdir, "dev-run.log")
    proc = start(mode, log)
    pgid = proc.pid  # its own session: the process group of sh and posternd
    t0 = time.time()
    try:
        wait_port(SMTP_PORT, proc, START_TIMEOUT, log)
        wait_port(SUBMISSION_PORT, proc, 10, log)
        print("    serving after %.1fs" % (time.time() - t0))
        if mode == "script":
            assert "posternd: SMTP on 127.0.0.1:2525" in read(log), read(log)

        # port 2525: mail for example.test from a trusted client
        token1 = "mx-" + uuid.uuid4().hex
        with smtplib.SMTP("127.0.0.1", SMTP_PORT, timeout=10) as c:
            code, _ = c.ehlo("client.test")
            assert code == 250
            refused = c.sendmail("tester@client.test", ["someone@example.test"],
                                 message("tester@client.test", token1))
            assert refused == {}, refused
        m = wait_dump(sink, token1)
        assert m is not None, "no delivery of %s in the sink; log:\n%s" % (token1, read(log))
        assert b"X-Rcpt-Args: <someone@example.test>" in m, m
        assert b"by postern.dev.test (Postern)" in m, m

        # port 2587: STARTTLS (verified against the script's test CA) + AUTH
        token2 = "sub-" + uuid.uuid4().hex
        ctx = ssl.create_default_context(cafile=os.path.join(TLS_DIR, "ca.pem"))
        with smtplib.SMTP("127.0.0.1", SUBMISSION_PORT, timeout=10) as c:
            c.ehlo("client.test")
            assert c.has_extn("starttls"), c.esmtp_features
            assert not c.has_extn("auth"), "AUTH offered before STARTTLS"
            code, text = c.mail("dev@example.test")
            assert code == 530, (code, text)  # submission: AUTH first
            c.rset()
            code, _ = c.starttls(context=ctx)  # the certificate names 127.0.0.1 too
            assert code == 220
            c.ehlo("client.test")
            code, _ = c.login("dev@example.test", "dev-password")
            assert code == 235
            refused = c.sendmail("dev@example.test", ["someone@example.test"],
                                 message("dev@example.test", token2))
            assert refused == {}, refused
        m = wait_dump(sink, token2)
        assert m is not None, "no delivery of %s in the sink; log:\n%s" % (token2, read(log))
        logged = [ln for ln in read(log).splitlines()
                  if "from=<dev@example.test>" in ln and "action=accept" in ln]
        assert any("tls=yes" in ln and "auth=dev@example.test" in ln for ln in logged), logged
        print("    both messages arrived in smtp-sink on 127.0.0.1:%d" % SINK_PORT)

        # the certificate the script made is good for a while yet
        r = subprocess.run(["openssl", "x509", "-checkend", "3600", "-noout", "-in",
                            os.path.join(TLS_DIR, "server.pem")], capture_output=True)
        assert r.returncode == 0, "the dev certificate is expiring"

        # SIGTERM to the process group (what a terminal's kill does)
        os.killpg(pgid, signal.SIGTERM)
        rc = proc.wait(20)
        assert rc == 0, "exit status %d after SIGTERM:\n%s" % (rc, read(log)[-2000:])
        assert "posternd stopped" in read(log), read(log)[-2000:]
        # Known race, not failed on: a child that got the group's SIGTERM
        # and finished first can be killed by the master's own SIGTERM
        # during its teardown (its handler is gone by then).
        for ln in read(log).splitlines():
            if "killed by signal" in ln or "exited with status" in ln:
                print("    NOTE: " + ln)
        left = [p for p in group_alive(pgid)]
        deadline = time.time() + 5
        while left and time.time() < deadline:
            time.sleep(0.05)
            left = group_alive(pgid)
        assert not left, "processes left after SIGTERM: %s" % left
        for port in (SMTP_PORT, SUBMISSION_PORT):
            assert port_busy("127.0.0.1", port) is None, "port %d still taken" % port
    finally:
        if proc.poll() is None or group_alive(pgid):
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(10)
        sink.cleanup()
        print("\n".join("    | " + ln for ln in read(log).splitlines()[-15:]))
        os.unlink(log)
        os.rmdir(logdir)


run([test_dev_run_round_trip])

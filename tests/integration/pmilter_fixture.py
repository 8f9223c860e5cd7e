"""What the postern-milter tests share: postern-milter itself on a free
loopback port (with a posternd config of its own, collecting messages in a
directory of the user it drops to when root), and a private Postfix
(SERVICES.md's recipe: bench/relay_bench.py's Postfix class, its own config
dir, queue and log in a temp dir, loopback only, relayhost = the sink) whose
smtpd calls postern-milter through smtpd_milters, with more smtpd listeners
each calling another milter. Everything is stopped by pid in cleanup()."""
import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from harness import BUILD, SRC, Postern, Skip, free_port

MILTER = os.path.join(BUILD, "postern-milter")
USER, GROUP = "nobody", "nogroup"  # the harness's server.user / group as root


def postfix_class():
    """bench/relay_bench.py's private Postfix (SERVICES.md's recipe)."""
    if shutil.which("postfix") is None or shutil.which("postconf") is None:
        raise Skip("Postfix is not installed (Debian package postfix)")
    if os.geteuid() != 0:
        raise Skip("a private Postfix instance needs root")
    sys.path.insert(0, os.path.join(SRC, "bench"))
    from relay_bench import Postfix
    return Postfix


class Milter:
    """postern-milter on a free loopback port with a posternd config whose
    filters are extra (and relay the given relay section); stopped by its
    pid. Messages are collected in a directory of the user it drops to."""

    def __init__(self, extra, args=(), relay=None):
        self.port = free_port()
        self.cfg = Postern(extra=extra, relay=relay)
        self.collect = os.path.join(self.cfg.dir, "collect")
        os.mkdir(self.collect, 0o700)
        if os.geteuid() == 0:
            assert 'user = "%s"; group = "%s";' % (USER, GROUP) in open(self.cfg.conf).read()
            os.chown(self.collect, pwd.getpwnam(USER).pw_uid, grp.getgrnam(GROUP).gr_gid)
        self.logfile = os.path.join(self.cfg.dir, "milter.log")
        self.log_fd = open(self.logfile, "w")
        self.proc = subprocess.Popen(
            [MILTER, "-c", self.cfg.conf, "-l", "inet:%d@127.0.0.1" % self.port,
             "-T", self.collect] + list(args), stdout=self.log_fd, stderr=subprocess.STDOUT)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
        raise RuntimeError("postern-milter did not start: " + self.log())

    def log(self):
        with open(self.logfile, errors="replace") as f:
            return f.read()

    def cleanup(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log_fd.close()
        self.final_log = self.log()  # with what a sanitizer said at exit
        self.cfg.cleanup()


class MilterPostfix:
    """A private Postfix relaying to sink_port whose main smtpd (port) calls
    the milter on milter_port; more_smtpds {name: milter port} adds one
    smtpd listener per name, each calling its own milter, its port in
    ports[name]."""

    def __init__(self, sink_port, milter_port, more_smtpds=None):
        Postfix = postfix_class()
        self.workdir = tempfile.mkdtemp(prefix="postern-pfx-")
        os.chmod(self.workdir, 0o755)
        self.ports = {}
        try:
            self.postfix = Postfix(self.workdir, sink_port)
            self.port = self.postfix.port
            self.postfix._postconf("-e", "smtpd_milters = inet:127.0.0.1:%d" % milter_port,
                                   "milter_default_action = tempfail",
                                   "milter_protocol = 6",
                                   "milter_command_timeout = 60s",
                                   "milter_content_timeout = 60s")
            for name, port in (more_smtpds or {}).items():
                self.ports[name] = free_port()
                self.postfix._postconf(
                    "-M", "127.0.0.1:%d/inet = 127.0.0.1:%d inet n - n - - smtpd "
                    "-o smtpd_milters=inet:127.0.0.1:%d"
                    % (self.ports[name], self.ports[name], port))
            subprocess.run(["postfix", "-c", self.postfix.etc, "reload"], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1)
        except Exception:
            self.cleanup()
            raise

    def log_tail(self):
        return self.postfix.log_tail()

    def cleanup(self):
        if getattr(self, "postfix", None) is not None:
            self.postfix.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

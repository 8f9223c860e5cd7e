"""Integration test harness: runs the real posternd on loopback ports with
its state in a temp dir, and gives tests a few helpers. Each test file calls
run(tests) at the end: exit 0 = all passed, 1 = a test failed, 77 = skipped
(with the reason printed)."""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

SRC = os.environ.get("top_srcdir", os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("top_builddir", SRC)
POSTERND = os.path.join(BUILD, "posternd")


def skip(reason):
    print("SKIP: " + reason)
    sys.exit(77)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Postern:
    """One posternd instance. conf_extra is appended to the smtp section;
    listeners maps name -> (role, extra listener settings)."""

    instances = []  # every instance made, so a failing test can show their logs

    def __init__(self, smtp="", listeners=None, server="", relay=None, workers=1):
        Postern.instances.append(self)
        self.dir = tempfile.mkdtemp(prefix="postern-it-")
        os.chmod(self.dir, 0o755)
        self.spool = os.path.join(self.dir, "spool")
        self.ports = {}
        self.proc = None
        self.logfile = os.path.join(self.dir, "posternd.log")
        tls = os.path.join(self.dir, "tls")
        subprocess.check_call(["sh", os.path.join(SRC, "tests/integration/make-test-ca.sh"),
                               tls, "localhost"])
        self.ca = os.path.join(tls, "ca.pem")
        self.passwd = os.path.join(self.dir, "passwd")
        with open(self.passwd, "w") as f:
            f.write("user@example.test:{PLAIN}secret\n")
            f.write("other@example.test:{PLAIN}hunter2\n")
        listeners = listeners or {"mx": ("mx", "")}
        ls = []
        for name, (role, extra) in listeners.items():
            self.ports[name] = free_port()
            ls.append('{ name = "%s"; role = "%s"; address = ["127.0.0.1:%d"]; %s }'
                      % (name, role, self.ports[name], extra))
        user = 'user = "nobody"; group = "nogroup";' if os.geteuid() == 0 else \
            'user = "%s";' % os.environ.get("USER", "root")
        relay = relay if relay is not None else \
            'local_domains = ["example.test"]; trusted_networks = ["127.0.0.100/32"];'
        self.conf = os.path.join(self.dir, "postern.conf")
        with open(self.conf, "w") as f:
            f.write('server = { hostname = "mx.postern.test"; %s workers = %d; '
                    'spool_dir = "%s"; spool_min_free = "1M"; %s };\n'
                    % (user, workers, self.spool, server))
            f.write("smtp = { %s };\n" % smtp)
            f.write("relay = { %s };\n" % relay)
            f.write('tls = { cert_file = "%s/server.pem"; key_file = "%s/server.key"; };\n'
                    % (tls, tls))
            f.write('auth = { passwd_file = "%s"; };\n' % self.passwd)
            f.write("listeners = ( %s );\n" % ", ".join(ls))

    def port(self, name="mx"):
        return self.ports[name]

    def start(self):
        self.log_fd = open(self.logfile, "a")
        self.proc = subprocess.Popen([POSTERND, "-c", self.conf], stdout=self.log_fd,
                                     stderr=subprocess.STDOUT)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port(next(iter(self.ports)))),
                                              timeout=1) as s:
                    s.recv(100)
                    return self
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError("posternd exited: " + self.log())
                time.sleep(0.05)
        raise RuntimeError("posternd did not start: " + self.log())

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log(self):
        with open(self.logfile, errors="replace") as f:
            return f.read()

    def queue(self):
        d = os.path.join(self.spool, "queue")
        return sorted(os.listdir(d)) if os.path.isdir(d) else []

    def queued_message(self, qid):
        with open(os.path.join(self.spool, "queue", qid), "rb") as f:
            data = f.read()
        header = data.split(b"\n", 1)[0].decode()
        start = len(header) + 1
        clen = int(header.split("content=")[1].split()[0], 16)
        return data[start:start + clen], data[start + clen:]

    def wait_log(self, text, timeout=5):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if text in self.log():
                return True
            time.sleep(0.05)
        return False


class Raw:
    """A raw SMTP client over a socket: send bytes, read replies."""

    def __init__(self, port, host="127.0.0.1", source=None, timeout=10):
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data if isinstance(data, bytes) else data.encode())

    def reply(self):
        """Reads one whole (possibly multi-line) reply; returns (code, text)."""
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise EOFError("connection closed; got %r" % self.buf)
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line.decode(errors="replace"))
            if len(line) < 4 or line[3:4] != b"-":
                return int(lines[-1][:3]), "\n".join(lines)

    def cmd(self, line):
        self.send(line + "\r\n")
        return self.reply()

    def closed(self, timeout=5):
        """True when the server closes the connection (after any pending replies)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True

    def close(self):
        self.sock.close()


def run(tests):
    if not os.path.exists(POSTERND):
        skip("posternd not built at " + POSTERND)
    failed = 0
    for t in tests:
        start = time.time()
        try:
            t()
            print("ok   %s (%.2fs)" % (t.__name__, time.time() - start))
        except Exception:
            failed += 1
            print("FAIL %s" % t.__name__)
            traceback.print_exc(file=sys.stdout)
            for inst in Postern.instances:
                if os.path.exists(inst.logfile):
                    print("--- last lines of %s" % inst.logfile)
                    print("\n".join(inst.log().splitlines()[-30:]))
    print("%d passed, %d failed" % (len(tests) - failed, failed))
    sys.exit(1 if failed else 0)

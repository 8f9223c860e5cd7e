"""Integration test harness: runs the real posternd on loopback ports with
its state in a temp dir, and gives tests a few helpers. Each test file calls
run(tests) at the end: exit 0 = all passed, 1 = a test failed, 77 = skipped
(with the reason printed)."""
import atexit
import glob
import os
import pwd
import shutil
import signal
import socket
import struct
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


_test_ca_dir = None


def shared_test_ca():
    """A directory with the test CA and server certificate (make-test-ca.sh),
    made once per test process: RSA key generation takes a second or two,
    and every instance gets a copy."""
    global _test_ca_dir
    if _test_ca_dir is None:
        d = tempfile.mkdtemp(prefix="postern-ca-")
        atexit.register(shutil.rmtree, d, True)
        subprocess.check_call(["sh", os.path.join(SRC, "tests/integration/make-test-ca.sh"),
                               os.path.join(d, "tls"), "localhost"])
        _test_ca_dir = os.path.join(d, "tls")
    return _test_ca_dir


class Skip(Exception):
    """Raised by one test that cannot run here; run() reports it as skipped
    and goes on with the others (the file exits 77 only if all skipped)."""


def wait_for(pred, timeout=10, step=0.05):
    """pred()'s first true value within timeout seconds, else its last."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


def tool(name):
    """The path of a program in the system's bin and sbin directories;
    Skip when it is not installed."""
    for d in ("/usr/sbin", "/usr/bin", "/sbin", "/bin"):
        if os.access(os.path.join(d, name), os.X_OK):
            return os.path.join(d, name)
    raise Skip("%s is not installed" % name)


def free_port(host="127.0.0.1"):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Postern:
    """One posternd instance. smtp, server and relay are settings for those
    sections; listeners maps name -> (role, extra listener settings[, host]),
    host "127.0.0.1" by default or e.g. "::1"; extra is appended to the file
    (more sections); env adds to posternd's environment."""

    instances = []  # every instance made, so a failing test can show their logs

    def __init__(self, smtp="", listeners=None, server="", relay=None, workers=1,
                 spool_min_free="1M", env=None, extra=""):
        Postern.instances.append(self)
        self.dir = tempfile.mkdtemp(prefix="postern-it-")
        os.chmod(self.dir, 0o755)
        self.spool = os.path.join(self.dir, "spool")
        self.ports = {}
        self.proc = None
        self.logfile = os.path.join(self.dir, "posternd.log")
        self.env = dict(os.environ, **(env or {}))
        tls = os.path.join(self.dir, "tls")
        shutil.copytree(shared_test_ca(), tls)
        self.ca = os.path.join(tls, "ca.pem")
        self.passwd = os.path.join(self.dir, "passwd")
        with open(self.passwd, "w") as f:
            f.write("user@example.test:{PLAIN}secret\n")
            f.write("other@example.test:{PLAIN}hunter2\n")
        listeners = listeners or {"mx": ("mx", "")}
        ls = []
        self.hosts = {}
        for name, spec in listeners.items():
            role, settings = spec[:2]
            host = spec[2] if len(spec) > 2 else "127.0.0.1"
            self.hosts[name] = host
            self.ports[name] = free_port(host)
            ls.append('{ name = "%s"; role = "%s"; address = ["%s:%d"]; %s }'
                      % (name, role, "[%s]" % host if ":" in host else host,
                         self.ports[name], settings))
        user = 'user = "nobody"; group = "nogroup";' if os.geteuid() == 0 else \
            'user = "%s";' % os.environ.get("USER", "root")
        relay = relay if relay is not None else \
            'local_domains = ["example.test"]; trusted_networks = ["127.0.0.100/32"];'
        self.conf = os.path.join(self.dir, "postern.conf")
        with open(self.conf, "w") as f:
            f.write('server = { hostname = "mx.postern.test"; %s workers = %d; '
                    'spool_dir = "%s"; spool_min_free = "%s"; %s };\n'
                    % (user, workers, self.spool, spool_min_free, server))
            f.write("smtp = { %s };\n" % smtp)
            f.write("relay = { %s };\n" % relay)
            f.write('tls = { cert_file = "%s/server.pem"; key_file = "%s/server.key"; };\n'
                    % (tls, tls))
            f.write('auth = { passwd_file = "%s"; };\n' % self.passwd)
            f.write("listeners = ( %s );\n" % ", ".join(ls))
            if "dns =" not in extra:
                # the queue manager's lookups stay on loopback: a closed port
                # answers at once, so mail for unrouted domains is deferred
                f.write('dns = { nameservers = ["127.0.0.1:9"]; timeout = "200ms"; '
                        'attempts = 1; };\n')
            f.write(extra + "\n")

    def port(self, name="mx"):
        return self.ports[name]

    def start(self):
        self.log_fd = open(self.logfile, "a")
        self.proc = subprocess.Popen([POSTERND, "-c", self.conf], stdout=self.log_fd,
                                     stderr=subprocess.STDOUT, env=self.env)
        first = next(iter(self.ports))
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                with socket.create_connection((self.hosts[first], self.port(first)),
                                              timeout=1) as s:
                    s.recv(100)
                    return self
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError("posternd exited: " + self.log())
                time.sleep(0.05)
        log = self.log()
        self.cleanup()  # a test that gets no instance cannot stop this one
        raise RuntimeError("posternd did not start: " + log)

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
        env = data[start + clen:]
        # the queue manager's state records after END are not the envelope
        if b"\nEND\n" in env:
            env = env[:env.index(b"\nEND\n") + 5]
        return data[start:start + clen], env

    def wait_log(self, text, timeout=5):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if text in self.log():
                return True
            time.sleep(0.05)
        return False


class Sink:
    """Postfix's smtp-sink as a downstream MTA on a free loopback port; each
    transaction is dumped to a file in self.dir. options are smtp-sink's
    (e.g. ["-f", "rcpt"] to answer RCPT with 5xx)."""

    def __init__(self, options=(), lmtp=False, port=None):
        self.dir = tempfile.mkdtemp(prefix="postern-sink-")
        os.chmod(self.dir, 0o777)
        self.port = port or free_port()
        args = ["smtp-sink", "-u", "nobody", "-d", os.path.join(self.dir, "%M."), "-c"]
        if lmtp:
            args.append("-L")
        self.proc = subprocess.Popen(args + list(options) + ["127.0.0.1:%d" % self.port, "100"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 5
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("smtp-sink did not start")

    def messages(self):
        """The dumped transactions, oldest first, as bytes."""
        out = []
        for name in sorted(os.listdir(self.dir)):
            with open(os.path.join(self.dir, name), "rb") as f:
                out.append(f.read())
        return out

    def wait_messages(self, n, timeout=10):
        """At least n dumps, each written completely: smtp-sink fills a dump
        while the transaction runs, so wait until none is empty or growing."""
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            msgs = self.messages()
            if len(msgs) >= n and all(msgs) and msgs == last:
                return msgs
            last = msgs
            time.sleep(0.1)
        return self.messages()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def write_nsd_conf(d, port, zone_conf):
    """Writes d/nsd.conf for an nsd on 127.0.0.1:port with its zone files,
    pid, state and log in d, plus zone_conf (its "zone:" clauses); returns
    its path. Also used by bench/bench_util.py."""
    conf = os.path.join(d, "nsd.conf")
    with open(conf, "w") as f:
        f.write('server:\n  ip-address: 127.0.0.1@%d\n  port: %d\n  username: ""\n'
                '  chroot: ""\n  zonesdir: "%s"\n  pidfile: "%s/nsd.pid"\n'
                '  database: ""\n  xfrdfile: "%s/xfrd.state"\n'
                '  zonelistfile: "%s/zone.list"\n  logfile: "%s/nsd.log"\n'
                # no response rate limiting: it drops answers past 200/s per
                # client /24, and every client here is 127.0.0.1
                '  rrl-ratelimit: 0\n'
                'remote-control:\n  control-enable: no\n'
                % (port, port, d, d, d, d, d) + zone_conf)
    return conf


def soa_answers(port, zone):
    """True when an SOA query for zone to 127.0.0.1:port gets an answer
    (NOERROR, ANCOUNT > 0). Also used by bench/bench_util.py."""
    qname = b"".join(bytes([len(p)]) + p.encode() for p in zone.split(".")) + b"\x00"
    query = struct.pack(">HHHHHH", 0x5057, 0x0100, 1, 0, 0, 0) + qname + struct.pack(">HH", 6, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.3)
        try:
            s.sendto(query, ("127.0.0.1", port))
            reply = s.recv(512)
        except OSError:
            return False
    return len(reply) >= 12 and reply[:2] == b"\x50\x57" and reply[3] & 0x0f == 0 and \
        struct.unpack(">H", reply[6:8])[0] > 0


class Nsd:
    """NSD serving the zone "test." from zone text, and more zones from
    zones (name -> records, e.g. {"0.0.127.in-addr.arpa": "2 IN PTR a.test."}),
    on a free loopback port (SERVICES.md); stopped by its pid. port: another
    port on 127.0.0.1; prefix: a command that runs nsd and the readiness
    probe, e.g. nsenter into a private network namespace where port 53 is
    free (test_opendmarc.py); it must exec them, so that the pid is nsd's."""

    def __init__(self, records, zones=None, port=None, prefix=()):
        self.dir = tempfile.mkdtemp(prefix="postern-nsd-")
        self.port = port or free_port()
        self.prefix = list(prefix)
        zones = dict(zones or {})
        zones["test"] = records
        zone_conf = ""
        for i, (name, text) in enumerate(sorted(zones.items())):
            with open(os.path.join(self.dir, "z%d.zone" % i), "w") as f:
                f.write("$ORIGIN %s.\n$TTL 300\n"
                        "@ IN SOA ns.test. hostmaster.test. 1 3600 600 86400 300\n"
                        "@ IN NS ns.test.\n%s%s\n"
                        % (name, "ns IN A 127.0.0.1\n" if name == "test" else "", text))
            zone_conf += 'zone:\n  name: "%s"\n  zonefile: "z%d.zone"\n' % (name, i)
        conf = write_nsd_conf(self.dir, self.port, zone_conf)
        self.proc = None
        try:
            subprocess.run(["nsd-checkconf", conf], check=True)
            self.proc = subprocess.Popen(self.prefix + ["nsd", "-c", conf, "-d"],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except (OSError, subprocess.CalledProcessError):
            self.cleanup()
            raise
        deadline = time.time() + 10
        while time.time() < deadline:
            if self.answers():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.cleanup()
        raise RuntimeError("nsd did not start")

    def answers(self):
        """True when an SOA query for "test." gets an answer (NOERROR, ANCOUNT > 0);
        asked from where nsd runs (through prefix)."""
        if not self.prefix:
            return soa_answers(self.port, "test")
        probe = ("import sys; sys.path.insert(0, %r); from harness import soa_answers; "
                 "sys.exit(0 if soa_answers(%d, 'test') else 1)"
                 % (os.path.dirname(os.path.abspath(__file__)), self.port))
        try:
            return subprocess.run(self.prefix + [sys.executable, "-c", probe],
                                  timeout=5).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return False

    def cleanup(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


class Redis:
    """redis-server on a free loopback port, its state in a temp dir
    (SERVICES.md); in the foreground as our child so that tests can stop it
    (stop), hang it (pause: SIGSTOP) and let it go on (resume). parent: where
    the temp dir goes (the benchmarks' work dir; default the system's)."""

    def __init__(self, parent=None):
        if shutil.which("redis-server") is None:
            raise Skip("redis-server is not installed")
        self.dir = tempfile.mkdtemp(prefix="postern-redis-", dir=parent)
        self.port = free_port()
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", self.dir, "--save", "", "--appendonly", "no",
             "--logfile", os.path.join(self.dir, "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while time.time() < deadline:
            if self.command("PING") == b"+PONG":
                return
            time.sleep(0.05)
        self.cleanup()
        raise RuntimeError("redis-server did not start")

    def address(self):
        return "127.0.0.1:%d" % self.port

    def command(self, *args, timeout=2.0):
        """Sends one command (RESP); returns the first reply line, or None."""
        req = b"*%d\r\n" % len(args) + b"".join(
            b"$%d\r\n%s\r\n" % (len(a), a) for a in
            (x if isinstance(x, bytes) else str(x).encode() for x in args))
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as c:
                c.sendall(req)
                data = b""
                while not data.endswith(b"\r\n"):
                    chunk = c.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                return data.split(b"\r\n", 1)[0]
        except OSError:
            return None

    def pause(self):
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            self.proc.wait(10)

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


# spamd, for the tests that check mail with it (test_spamd.py,
# test_postern_milter.py): no network tests, no Bayes, and a local body rule
# scoring 20 for SPAM_MARKER (ALL_TRUSTED at 0 so that the scores are exact)
SPAM_MARKER = "postern-test-spam-marker"
SPAMD_LOCAL_CF = """use_bayes 0
bayes_auto_learn 0
skip_rbl_checks 1
use_razor2 0
use_pyzor 0
dns_available no
body POSTERN_TEST_SPAM /%s/
score POSTERN_TEST_SPAM 20
describe POSTERN_TEST_SPAM Postern test marker
score ALL_TRUSTED 0
""" % SPAM_MARKER


def spamd_site(d, local_cf, debian_cf=False):
    """Makes spamd's site config dir d/site (the .pre files that load the
    rule plugins, with debian_cf Debian's 65_debian.cf, and local_cf as
    local.cf) and its home d/home; returns (site, home). Also used by
    bench/content_bench.py."""
    site, home = os.path.join(d, "site"), os.path.join(d, "home")
    os.makedirs(site)
    os.makedirs(home)
    files = glob.glob("/etc/spamassassin/*.pre")
    if debian_cf:
        files += glob.glob("/etc/spamassassin/65_debian.cf")
    for f in files:
        shutil.copy(f, site)
    with open(os.path.join(site, "local.cf"), "w") as f:
        f.write(local_cf)
    for x in (d, site, home):
        os.chmod(x, 0o755)
    return site, home


def spamd_user_args(home):
    """spamd's options for its user when we are root (debian-spamd, or
    nobody), home given to that user; none otherwise."""
    if os.geteuid() != 0:
        return []
    user = "debian-spamd"
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        user, pw = "nobody", pwd.getpwnam("nobody")
    os.chown(home, pw.pw_uid, pw.pw_gid)
    return ["-u", user]


class Spamd:
    """spamd in the foreground as our child (SERVICES.md), its site config
    (local_cf as local.cf, with the .pre files that load the rule plugins
    and, with debian_cf, Debian's 65_debian.cf) in a temp dir, listening on
    a free loopback port and, with unix_socket, on self.socket too; stopped
    by its pid. RuntimeError when it does not start."""

    def __init__(self, local_cf=SPAMD_LOCAL_CF, unix_socket=False, min_children=1,
                 debian_cf=False):
        if shutil.which("spamd") is None:
            raise Skip("spamd is not installed (Debian packages spamd, spamassassin)")
        if not glob.glob("/usr/share/spamassassin/*.cf"):
            raise Skip("no SpamAssassin rules in /usr/share/spamassassin")
        self.proc = None
        self.dir = tempfile.mkdtemp(prefix="postern-spamd-")
        site, home = spamd_site(self.dir, local_cf, debian_cf)
        self.port = free_port()
        self.socket = os.path.join(self.dir, "spamd.sock") if unix_socket else None
        self.logfile = os.path.join(self.dir, "spamd.log")
        args = ["spamd", "-L", "-x", "-H", home, "--siteconfigpath", site,
                "--configpath", "/usr/share/spamassassin", "--listen=127.0.0.1:%d" % self.port]
        if unix_socket:
            args += ["--listen=" + self.socket, "--socketmode=0666"]
        args += ["-A", "127.0.0.1", "-m", "2", "--min-children", str(min_children),
                 "-s", self.logfile]
        args += spamd_user_args(home)
        self.out = open(os.path.join(self.dir, "spamd.out"), "w")
        self.proc = subprocess.Popen(args, stdout=self.out, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.ping():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        with open(os.path.join(self.dir, "spamd.out"), errors="replace") as f:
            out = f.read()
        self.cleanup()
        raise RuntimeError("spamd did not start: " + out[-2000:])

    def ping(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                s.sendall(b"PING SPAMC/1.5\r\n\r\n")
                return s.recv(100).startswith(b"SPAMD/1.5 0 PONG")
        except OSError:
            return False

    def log(self):
        try:
            with open(self.logfile, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def checks(self):
        """How many messages spamd has checked."""
        return self.log().count("spamd: checking message")

    def cleanup(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        self.out.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class Raw:
    """A raw SMTP client over a socket: send bytes, read replies. rcvbuf
    sets SO_RCVBUF before connecting (a client that reads slowly)."""

    def __init__(self, port, host="127.0.0.1", source=None, timeout=10, rcvbuf=None):
        if rcvbuf is None:
            self.sock = socket.create_connection((host, port), timeout=timeout,
                                                 source_address=(source, 0) if source else None)
        else:
            self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self.sock.settimeout(timeout)
            if source:
                self.sock.bind((source, 0))
            self.sock.connect((host, port))
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



# ---- processes (for crash and signal tests) ----

def proc_stat(pid):
    """(state, ppid) of a process, or None when it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[0], int(fields[1])


def alive(pid):
    st = proc_stat(pid)
    return st is not None and st[0] != "Z"


def comm(pid):
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read().strip()
    except OSError:
        return ""


def children(pid, name="postern-smtp"):
    """Live (not zombie) SMTP worker processes of pid (name "postern-qmgr"
    for the queue manager, None for every child)."""
    return sorted(int(d) for d in os.listdir("/proc")
                  if d.isdigit() and alive(int(d)) and proc_stat(int(d))[1] == pid and
                  (name is None or comm(int(d)) == name))


def procs_of(p):
    """Every live process running this instance's configuration (its master
    and workers, orphaned ones too): nothing of other instances."""
    out = []
    key = p.conf.encode()
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if key in cmd.split(b"\0") and alive(int(d)):
            out.append(int(d))
    return sorted(out)

def run(tests):
    if not os.path.exists(POSTERND):
        skip("posternd not built at " + POSTERND)
    failed = skipped = 0
    for t in tests:
        start = time.time()
        try:
            t()
            print("ok   %s (%.2fs)" % (t.__name__, time.time() - start))
        except Skip as e:
            skipped += 1
            print("SKIP %s: %s" % (t.__name__, e))
        except Exception:
            failed += 1
            print("FAIL %s" % t.__name__)
            traceback.print_exc(file=sys.stdout)
            for inst in Postern.instances:
                if os.path.exists(inst.logfile):
                    print("--- last lines of %s" % inst.logfile)
                    print("\n".join(inst.log().splitlines()[-30:]))
    print("%d passed, %d failed, %d skipped" % (len(tests) - failed - skipped, failed, skipped))
    if failed:
        sys.exit(1)
    sys.exit(77 if tests and skipped == len(tests) else 0)


# clamd, for the tests that scan with it (test_clamd.py, test_broken_mime.py)
CLAMD = "/usr/sbin/clamd"
EICAR = (b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*")
SIGNATURE = "Eicar-Test-Signature"
FOUND_NAME = SIGNATURE + ".UNOFFICIAL"
# a signature of our own, for a string no real database knows
CUSTOM_MARKER = b"POSTERN-CLAMD-TEST-MARKER-5a1f0c"
CUSTOM_SIGNATURE = "Postern-Test-Signature"
CUSTOM_FOUND = CUSTOM_SIGNATURE + ".UNOFFICIAL"


def sigtool_hex(data):
    """The hex form of data for a body signature, as ClamAV's sigtool
    writes it (--hex-dump)."""
    out = subprocess.run(["sigtool", "--hex-dump"], input=data, capture_output=True, check=True)
    return out.stdout.decode().strip()
STREAM_MAX = 1024 * 1024


class Clamd:
    """clamd in the foreground as our child, its database, config, sockets
    and logs in a temp dir (SERVICES.md); stopped by its pid."""

    def __init__(self):
        if not os.access(CLAMD, os.X_OK):
            raise Skip("%s is not installed (Debian package clamav-daemon)" % CLAMD)
        self.dir = tempfile.mkdtemp(prefix="postern-clamd-")
        os.chmod(self.dir, 0o755)
        self.port = free_port()
        self.socket = os.path.join(self.dir, "clamd.sock")
        os.mkdir(os.path.join(self.dir, "db"))
        os.mkdir(os.path.join(self.dir, "tmp"))
        if shutil.which("sigtool") is None:
            raise Skip("sigtool is not installed (Debian package clamav)")
        # the database is built with ClamAV's own sigtool: EICAR and our own
        # test signature, anywhere in any file (target 0, offset *)
        with open(os.path.join(self.dir, "db", "local.ndb"), "w") as f:
            f.write("%s:0:*:%s\n" % (SIGNATURE, sigtool_hex(EICAR)))
            f.write("%s:0:*:%s\n" % (CUSTOM_SIGNATURE, sigtool_hex(CUSTOM_MARKER)))
        subprocess.run(["sigtool", "--info", os.path.join(self.dir, "db", "local.ndb")],
                       capture_output=True)
        conf = os.path.join(self.dir, "clamd.conf")
        with open(conf, "w") as f:
            f.write("Foreground yes\nDatabaseDirectory {d}/db\nTemporaryDirectory {d}/tmp\n"
                    "PidFile {d}/clamd.pid\nLogFile {d}/clamd.log\nLogSyslog no\n"
                    "TCPAddr 127.0.0.1\nTCPSocket {p}\nLocalSocket {s}\n"
                    "LocalSocketMode 666\nStreamMaxLength {m}\nSelfCheck 0\nScanMail yes\n"
                    .format(d=self.dir, p=self.port, s=self.socket, m=STREAM_MAX))
        self.out = open(os.path.join(self.dir, "clamd.out"), "w")
        self.proc = subprocess.Popen([CLAMD, "-c", conf], stdout=self.out,
                                     stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.ping():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        why = self.log()
        self.cleanup()
        raise Skip("clamd did not start: %s" % why[-500:])

    def ping(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as c:
                c.sendall(b"zPING\0")
                return c.recv(16) == b"PONG\0"
        except OSError:
            return False

    def address(self):
        return "127.0.0.1:%d" % self.port

    def log(self):
        text = ""
        for name in ("clamd.out", "clamd.log"):
            try:
                with open(os.path.join(self.dir, name), errors="replace") as f:
                    text += f.read()
            except OSError:
                pass
        return text

    def cleanup(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.out.close()
        shutil.rmtree(self.dir, ignore_errors=True)


_clamd = None


def clamd():
    """One clamd for the whole file (it starts in about a second)."""
    global _clamd
    if _clamd is None:
        _clamd = Clamd()
        atexit.register(_clamd.cleanup)
    return _clamd

"""Helpers shared by the bench/*.py scripts: free loopback ports, a
redis-server, nsd, smtp-sink and posternd of our own (SERVICES.md recipes,
state in the benchmark's temp dir, stopped by pid; redis-server, nsd's
config and probe and spamd's site config come from
tests/integration/harness.py), the optimized build, machine noise
(load average, CPU pressure), medians and percentiles. Everything binds
127.0.0.1; every wait has a deadline."""
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(HERE)
WORKDIR_PARENT = os.environ.get("BENCH_TMPDIR", "/var/tmp")  # a disk, never tmpfs
BUILD_DIR = os.environ.get("BENCH_BUILD", os.path.join(WORKDIR_PARENT, "postern-bench-build"))

# the integration tests' harness (importing it only defines things), for
# redis-server (for the benches), nsd's config and probe here and spamd's site
# config in content_bench.py
sys.path.append(os.path.join(SRC, "tests", "integration"))
from harness import Redis, soa_answers, write_nsd_conf  # noqa: E402,F401 (Redis: re-exported)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_tcp(port, proc=None, timeout=20.0):
    """Returns when 127.0.0.1:port accepts a connection (nothing is read)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError("server for port %d exited (%d)" % (port, proc.returncode))
            time.sleep(0.05)
    raise RuntimeError("nothing listens on 127.0.0.1:%d" % port)


def stop_proc(proc, sig=signal.SIGTERM, timeout=20):
    if proc is None or proc.poll() is not None:
        return
    try:
        proc.send_signal(sig)
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def fs_type(path):
    out = subprocess.run(["stat", "-f", "-c", "%T", path], capture_output=True, text=True)
    return out.stdout.strip()


def make_workdir(prefix):
    workdir = tempfile.mkdtemp(prefix=prefix, dir=WORKDIR_PARENT)
    os.chmod(workdir, 0o755)
    log("work dir %s (file system: %s)" % (workdir, fs_type(workdir)))
    if fs_type(workdir) == "tmpfs":
        log("WARNING: the work dir is on tmpfs: fsync costs nothing there")
    return workdir


def machine_noise():
    """1-minute load average and CPU pressure (PSI some avg10, %): the machine is shared."""
    try:
        with open("/proc/loadavg") as f:
            load = float(f.read().split()[0])
    except OSError:
        load = -1.0
    try:
        with open("/proc/pressure/cpu") as f:
            psi = float(f.readline().split()[1].split("=")[1])
    except (OSError, IndexError, ValueError):
        psi = -1.0
    return load, psi


def build(targets):
    """An optimized build (-O2 -g) of targets in BUILD_DIR (configured once);
    returns their paths."""
    os.makedirs(BUILD_DIR, exist_ok=True)
    log("building %s (-O2) in %s" % (" ".join(targets), BUILD_DIR))
    if not os.path.exists(os.path.join(BUILD_DIR, "Makefile")):
        subprocess.run([os.path.join(SRC, "configure"), "-q", "CFLAGS=-O2 -g"], cwd=BUILD_DIR,
                       check=True)
    subprocess.run(["make", "-j2"] + targets, cwd=BUILD_DIR, check=True,
                   stdout=subprocess.DEVNULL)
    return [os.path.join(BUILD_DIR, t) for t in targets]


def user_opts():
    """posternd's / postgrey's user: nobody when we are root."""
    if os.geteuid() == 0:
        return "nobody", "nogroup"
    return os.environ.get("USER", "root"), None


class Nsd:
    """nsd serving zones {name: records} from workdir on a free loopback port
    (SERVICES.md); stopped by pid. Every record gets the zone's $TTL."""

    def __init__(self, workdir, zones, ttl=300):
        self.dir = os.path.join(workdir, "nsd")
        os.makedirs(self.dir)
        self.port = free_port()
        conf = write_nsd_conf(self.dir, self.port, "".join(
            'zone:\n  name: "%s"\n  zonefile: "%s.zone"\n' % (name, name) for name in zones))
        for name, records in zones.items():
            with open(os.path.join(self.dir, name + ".zone"), "w") as f:
                # SOA minimum = ttl: negative answers are cached as long as positive ones
                f.write("$ORIGIN %s.\n$TTL %d\n@ IN SOA ns.%s. hostmaster.%s. 1 3600 600 86400 %d\n"
                        "@ IN NS ns.%s.\nns IN A 127.0.0.1\n%s\n"
                        % (name, ttl, name, name, ttl, name, records))
        subprocess.run(["nsd-checkconf", conf], check=True)
        self.proc = subprocess.Popen(["nsd", "-c", conf, "-d"], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        probe = next(iter(zones))
        while not self.answers(probe):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError("nsd did not start")
            time.sleep(0.1)

    def answers(self, zone):
        """True when the SOA query for zone gets an answer (NOERROR, ANCOUNT > 0)."""
        return soa_answers(self.port, zone)

    def stop(self):
        stop_proc(self.proc)


class Sink:
    """postfix's smtp-sink on a free loopback port, its stderr in workdir/sink.err."""

    def __init__(self, workdir):
        self.port = free_port()
        self.errlog = open(os.path.join(workdir, "sink.err"), "wb")
        self.proc = subprocess.Popen(["smtp-sink", "-u", "nobody", "127.0.0.1:%d" % self.port,
                                      "1000"], stdout=subprocess.DEVNULL, stderr=self.errlog)
        wait_tcp(self.port, self.proc)

    def stop(self):
        stop_proc(self.proc)
        self.errlog.close()


class Posternd:
    """posternd (binary) with its config, spool and log in workdir/name:
    workers = 2, no session limits, mail for example.test relayed to the
    sink on sink_port, inbound strangers on loopback (trusted_networks is
    192.0.2.1/32), one "mx" listener on a free port, then extra (more
    sections; without a "dns =" one, DNS goes to a closed loopback port)."""

    def __init__(self, binary, workdir, name, sink_port, extra):
        self.name = name
        self.dir = os.path.join(workdir, name)
        os.makedirs(self.dir)
        os.chmod(self.dir, 0o755)
        self.port = free_port()
        self.conf = os.path.join(self.dir, "postern.conf")
        user, group = user_opts()
        usr = 'user = "%s";%s' % (user, ' group = "%s";' % group if group else "")
        with open(self.conf, "w") as f:
            f.write('server = { hostname = "mx.bench.test"; %s workers = 2; '
                    'spool_dir = "%s/spool"; spool_min_free = "1M"; };\n' % (usr, self.dir))
            f.write("smtp = { max_sessions = 10000; max_sessions_per_ip = 0; "
                    "connection_rate_limit = 0; };\n")
            f.write('relay = { local_domains = ["example.test"]; '
                    'trusted_networks = ["192.0.2.1/32"]; };\n')
            f.write('transports = ( { domain = "example.test"; '
                    'nexthop = "smtp:[127.0.0.1]:%d"; } );\n' % sink_port)
            f.write('listeners = ( { name = "mx"; role = "mx"; address = ["127.0.0.1:%d"]; } );\n'
                    % self.port)
            if "dns =" not in extra:
                f.write('dns = { nameservers = ["127.0.0.1:9"]; timeout = "200ms"; '
                        'attempts = 1; };\n')
            f.write(extra)
        self.logfile = os.path.join(self.dir, "posternd.log")
        self.logf = open(self.logfile, "ab")
        self.proc = subprocess.Popen([binary, "-c", self.conf], stdout=self.logf,
                                     stderr=subprocess.STDOUT)
        wait_tcp(self.port, self.proc)

    def log_text(self):
        with open(self.logfile, errors="replace") as f:
            return f.read()

    def log_count(self, text):
        return self.log_text().count(text)

    def stop(self):
        stop_proc(self.proc)
        self.logf.close()


def median(values):
    return statistics.median(values) if values else float("nan")

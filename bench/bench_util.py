"""Helpers shared by bench/filter_bench.py and bench/chain_latency.py: free
loopback ports, a redis-server and nsd of our own (SERVICES.md recipes, state
in the benchmark's temp dir, stopped by pid), the optimized build, machine
noise (load average, CPU pressure), medians and percentiles. Everything binds
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


class Redis:
    """redis-server on a free loopback port, no persistence, its dir in workdir
    (SERVICES.md); our child, stopped by pid."""

    def __init__(self, workdir):
        self.dir = os.path.join(workdir, "redis")
        os.makedirs(self.dir)
        self.port = free_port()
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
             "--save", "", "--appendonly", "no", "--logfile",
             os.path.join(self.dir, "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while self.command("PING") != b"+PONG":
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)

    def address(self):
        return "127.0.0.1:%d" % self.port

    def command(self, *args, timeout=30.0):
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

    def stop(self):
        stop_proc(self.proc)


class Nsd:
    """nsd serving zones {name: records} from workdir on a free loopback port
    (SERVICES.md); stopped by pid. Every record gets the zone's $TTL."""

    def __init__(self, workdir, zones, ttl=300):
        self.dir = os.path.join(workdir, "nsd")
        os.makedirs(self.dir)
        self.port = free_port()
        conf = os.path.join(self.dir, "nsd.conf")
        with open(conf, "w") as f:
            f.write('server:\n  ip-address: 127.0.0.1@%d\n  port: %d\n  username: ""\n'
                    '  chroot: ""\n  zonesdir: "%s"\n  pidfile: "%s/nsd.pid"\n'
                    '  database: ""\n  xfrdfile: "%s/xfrd.state"\n'
                    '  zonelistfile: "%s/zone.list"\n  logfile: "%s/nsd.log"\n'
                    # no response rate limiting: it drops answers past 200/s
                    # per client /24, and every client here is 127.0.0.1
                    '  rrl-ratelimit: 0\n'
                    'remote-control:\n  control-enable: no\n'
                    % (self.port, self.port, self.dir, self.dir, self.dir, self.dir, self.dir))
            for name in zones:
                f.write('zone:\n  name: "%s"\n  zonefile: "%s.zone"\n' % (name, name))
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
        qname = b"".join(bytes([len(p)]) + p.encode() for p in zone.split(".")) + b"\x00"
        query = b"\x50\x57\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + qname + b"\x00\x06\x00\x01"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.3)
            try:
                s.sendto(query, ("127.0.0.1", self.port))
                reply = s.recv(512)
            except OSError:
                return False
        return len(reply) >= 12 and reply[:2] == b"\x50\x57" and reply[3] & 0x0f == 0 and \
            int.from_bytes(reply[6:8], "big") > 0

    def stop(self):
        stop_proc(self.proc)


def median(values):
    return statistics.median(values) if values else float("nan")

"""Held messages, driven through the real posternd with smtplib and Postfix's
smtp-sink downstream: a message in the spool's hold/ is listed as held,
never delivered (not on a flush, not after a restart's recovery scan), and
delivered once "posternctl queue release" moves it back. A message that an
SMTP worker commits straight into hold/ (a HOLD verdict) has none of the
queue manager's state records yet; it is played here by a held file with
those records cut off, and with an add_headers envelope record, so the
release also shows the queue manager writing Postern's added header fields
before the content. (The commit into hold/ itself and the add_headers
record are unit-tested in test-spool; no test-only path is in the daemon.)"""
import os
import smtplib
import subprocess
import time

from harness import BUILD, Postern, Sink, free_port, run, wait_for

RELAY = 'local_domains = ["example.test", "hold.test"]; trusted_networks = ["127.0.0.100/32"];'


def postern(port):
    return Postern(relay=RELAY, extra='queue = { min_backoff = "1s"; max_backoff = "1s"; '
                   'idle_timeout = "1s"; };\ntransports = ( { domain = "hold.test"; '
                   'nexthop = "smtp:[127.0.0.1]:%d"; } );\n' % port).start()


def posternctl(p, *args):
    return subprocess.run([os.path.join(BUILD, "posternctl"), "-c", p.conf, "queue"] + list(args),
                          capture_output=True, text=True, timeout=20)


def send(p, body):
    with smtplib.SMTP("127.0.0.1", p.port()) as c:
        c.sendmail("a@example.test", ["x@hold.test"], body.encode())


def held(p):
    d = os.path.join(p.spool, "hold")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def deferred_then_held(sink_port, body):
    """A posternd whose next hop answers 4xx: the message stays queued, is
    held with posternctl, and the next hop is replaced by a good sink.
    Returns (posternd, good sink, queue id)."""
    soft = Sink(["-r", "rcpt"], port=sink_port)
    p = postern(sink_port)
    try:
        send(p, body)
        assert p.wait_log("status=deferred"), p.log()
        qid = p.queue()[0]
        r = posternctl(p, "hold", qid)
        assert r.returncode == 0 and qid + ": held" in r.stdout, r
        assert p.queue() == [] and held(p) == [qid]
    except Exception:
        p.cleanup()
        raise
    finally:
        soft.cleanup()
    return p, Sink(port=sink_port), qid


def assert_listed_held(p, qid):
    r = posternctl(p, "list")
    assert r.returncode == 0 and qid + "!" in r.stdout and "<x@hold.test>" in r.stdout, r
    r = posternctl(p, "show", qid)
    assert r.returncode == 0 and "state: hold" in r.stdout, r


def assert_not_delivered(p, good, qid, seconds):
    """Nothing reaches the sink in seconds (several 1 s backoffs, a flush)."""
    assert posternctl(p, "flush").returncode == 0
    time.sleep(seconds)
    assert good.messages() == [], good.messages()
    assert held(p) == [qid] and p.queue() == [], (held(p), p.queue())


def test_held_is_kept_then_released():
    port = free_port()
    p, good = None, None
    try:
        p, good, qid = deferred_then_held(port, "Subject: held\r\n\r\nkeep me\r\n")
        assert_listed_held(p, qid)
        assert_not_delivered(p, good, qid, 3)
        # a restart runs the start-up recovery scan: hold/ is kept as it is
        p.stop()
        p.start()
        assert_not_delivered(p, good, qid, 2)
        assert_listed_held(p, qid)
        assert posternctl(p, "hold", qid).returncode == 1  # already held
        r = posternctl(p, "release", qid)
        assert r.returncode == 0 and qid + ": released" in r.stdout, r
        assert held(p) == [], held(p)
        msgs = good.wait_messages(1)
        assert len(msgs) == 1 and b"\nkeep me\n" in msgs[0], msgs
        assert wait_for(lambda: p.queue() == []), p.queue()
        assert p.wait_log("status=sent"), p.log()
        assert posternctl(p, "release", qid).returncode == 1  # gone
    finally:
        if p is not None:
            p.cleanup()
        if good is not None:
            good.cleanup()


def as_committed_into_hold(path, add_headers):
    """Rewrites a held spool file as an SMTP worker's commit into hold/
    would have left it: no state records after END, and the envelope's
    add_headers record (escaped like every value)."""
    with open(path, "rb") as f:
        data = f.read()
    end = data.index(b"\nEND\n") + 1
    esc = b"".join(b"%%%02X" % c if c <= 0x20 or c in (0x25, 0x7f) else bytes([c])
                   for c in add_headers)
    data = data[:end] + b"add_headers " + esc + b"\nEND\n"
    with open(path + ".new", "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.rename(path + ".new", path)


def test_committed_into_hold_is_released_with_added_headers():
    port = free_port()
    added = b"X-Spam-Flag: YES\r\nX-Postern-Score: 7.5 (DNSBL=7.5)\r\n\tfolded\r\n"
    p, good = None, None
    try:
        p, good, qid = deferred_then_held(port, "Subject: tagged\r\n\r\n.dot line\r\nbody\r\n")
        as_committed_into_hold(os.path.join(p.spool, "hold", qid), added)
        assert_listed_held(p, qid)
        r = posternctl(p, "show", qid)  # the header section as it will be delivered
        assert "\nX-Spam-Flag: YES\nX-Postern-Score: 7.5 (DNSBL=7.5)\n\tfolded\nReceived: " \
            in r.stdout, r.stdout  # (text mode: CR LF read as LF)
        r = posternctl(p, "list")
        assert qid + "!" in r.stdout and "(" not in r.stdout, r.stdout  # no deferral reason kept
        assert_not_delivered(p, good, qid, 2)
        assert posternctl(p, "release", qid).returncode == 0
        msgs = good.wait_messages(1)
        assert len(msgs) == 1, msgs
        m = msgs[0]
        # smtp-sink dumps with LF: its own Received: lines, then ours first,
        # then the content starting with Postern's Received:
        lines = added.replace(b"\r\n", b"\n")
        assert b"\n" + lines + b"Received: from " in m, m
        assert m.count(b"X-Spam-Flag: YES") == 1, m
        assert b"\n.dot line\nbody\n" in m, m
        assert wait_for(lambda: p.queue() == []), p.queue()
    finally:
        if p is not None:
            p.cleanup()
        if good is not None:
            good.cleanup()


run([test_held_is_kept_then_released, test_committed_into_hold_is_released_with_added_headers])

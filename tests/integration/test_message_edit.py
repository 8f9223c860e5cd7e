"""The filters' message edits (filters/edit.h, gateway/message-edit.c)
applied by the real posternd: tests/milter/test-milter (libmilter, steered
by X-Test-Milter header fields) asks for them through Postern's milter
client, and smtp-sink downstream shows what was relayed. Covered: header
fields inserted right after Postern's own Received: (which stays first and
cannot be changed), in the middle and at the end; the 2nd occurrence of a
folded field changed; a field deleted; a missing field appended; the body
replaced with LF lines made CR LF; no bare LF anywhere; the summary log's
size following the new content; the envelope (sender changed, recipients
added and removed); every recipient removed = discarded with a log line;
a held message (quarantine) edited in hold/; and the spool's tmp/ left
empty."""
import os
import re
import smtplib
import time

from harness import Postern, Sink, run
from test_milter import TestMilter

SUBJECT = "edit test"
RECEIVED = re.compile(rb"Received: from client\.test \(.*?\r\n\tby mx\.postern\.test \(Postern\)"
                      rb".*?\r\n(?![ \t])", re.S)


class Setup:
    """test-milter as posternd's one filter; with relay, smtp-sink takes
    example.test, else messages stay in queue/ (their lookups fail), where
    the spooled content can be read exactly as edited."""

    def __init__(self, relay=True):
        self.m = self.sink = self.p = None
        try:
            self.m = TestMilter()
            extra = 'filters = ( { name = "milter"; address = "%s"; } );\n' % self.m.address
            if relay:
                self.sink = Sink()
                extra += ('transports = ( { domain = "example.test"; '
                          'nexthop = "smtp:[127.0.0.1]:%d"; } );\n' % self.sink.port)
            self.p = Postern(extra=extra).start()
        except Exception:
            self.cleanup()
            raise

    def cleanup(self):
        for t in (self.p, self.sink, self.m):
            if t is not None:
                t.cleanup()


def message(*fields, body="hello from the test\r\n"):
    head = "".join("%s\r\n" % f for f in ("Subject: " + SUBJECT,) + fields)
    return (head + "\r\n" + body).encode()


def send(p, msg, rcpts=("user@example.test",), sender="sender@example.org"):
    with smtplib.SMTP("127.0.0.1", p.port(), timeout=20) as c:
        c.ehlo("client.test")
        assert c.mail(sender)[0] == 250
        for r in rcpts:
            code, text = c.rcpt(r)
            assert code == 250, (r, code, text)
        return c.data(msg)


def relayed(s, n=1):
    """The transactions smtp-sink got."""
    msgs = s.sink.wait_messages(n)
    assert len(msgs) >= n, (msgs, s.p.log())
    return msgs


def spooled(s, text):
    """The content of the message queued as the reply text says."""
    qid = qid_of(text)
    deadline = time.time() + 5
    while qid not in s.p.queue() and time.time() < deadline:
        time.sleep(0.05)
    return s.p.queued_message(qid)[0]


def fields_of(content):
    """The header fields of content, each with its continuation lines."""
    head = content.split(b"\r\n\r\n", 1)[0] + b"\r\n"
    return re.findall(rb"[^ \t\r\n][^\r\n]*\r\n(?:[ \t][^\r\n]*\r\n)*", head)


def assert_crlf(data):
    assert re.search(rb"(?<!\r)\n", data) is None, data
    assert re.search(rb"\r(?!\n)", data) is None, data


def summary_size(log, qid):
    m = re.search(r"%s: from=<[^>]*> to=\S* size=(\d+) .*action=accept" % qid, log)
    assert m, log
    return int(m.group(1))


def qid_of(text):
    return text.decode().split("queued as ")[1].strip()


def test_header_edits():
    s = Setup(relay=False)
    try:
        code, text = send(s.p, message(
            "X-Test-Milter: insheader 0 X-First first",
            "X-Test-Milter: insheader 3 X-Middle middle",
            "X-Test-Milter: insheader 99 X-Last last\\n\tfolded",
            "X-Test-Milter: chgheader Subject 2 second changed",
            "X-Test-Milter: delheader X-Old 1",
            "X-Test-Milter: chgheader X-Missing 1 appended",
            "X-Test-Milter: chgheader Received 1 forged",
            "X-Old: remove me",
            "Subject: second\r\n\tfolded",
            "X-Keep: kept"))
        assert code == 250, (code, text)
        content = spooled(s, text)
        assert_crlf(content)
        fields = fields_of(content)
        names = [f.split(b":")[0] for f in fields]
        # Postern's Received first and as it was, then what went in at 0
        assert RECEIVED.match(content), content
        assert fields[0] == RECEIVED.match(content).group(0), fields
        assert b"Received: forged" not in content, content
        assert names[1] == b"X-First", names
        # index 3 as the milter counts (Received, Subject, X-Test-Milter...),
        # applied after the insert at 0: the 4th field
        assert names[3] == b"X-Middle", names
        assert fields.count(b"Subject: " + SUBJECT.encode() + b"\r\n") == 1, fields
        assert b"Subject: second changed\r\n" in fields, fields
        assert b"\tfolded\r\n" not in b"".join(f for f in fields if f.startswith(b"Subject")), \
            fields
        assert b"X-Old" not in names and b"X-Keep" in names, names
        # the appended and the folded last one, at the end, in that order
        assert names[-2:] == [b"X-Last", b"X-Missing"], names
        assert fields[-2] == b"X-Last: last\r\n\tfolded\r\n", fields
        assert content.endswith(b"\r\n\r\nhello from the test\r\n"), content
        log = s.p.log()
        assert "filters edited the message: header fields +3 ~1 -1, 1 appended" in log, log
        assert "change(s) of Postern's Received: ignored" in log, log
        assert os.listdir(os.path.join(s.p.spool, "tmp")) == []
    finally:
        s.cleanup()


def test_body_and_size():
    s = Setup(relay=False)
    try:
        big = "x" * 70 + "\r\n"
        code, text = send(s.p, message("X-Test-Milter: replbody new line one\\nline two",
                                       body=big * 3000))
        assert code == 250, (code, text)
        content = spooled(s, text)
        assert_crlf(content)
        assert content.endswith(b"\r\n\r\nnew line one\r\nline two\r\n"), content[-200:]
        assert b"x" * 70 not in content
        env = s.p.queued_message(qid_of(text))[1]
        assert b"\nsize %d\n" % len(content) in env, env  # the envelope's size too
        # the summary's size is the new content's, less Postern's Received:
        # (as for any message)
        qid = qid_of(text)
        rlen = len(RECEIVED.match(content).group(0))
        assert s.p.wait_log("%s: from=<" % qid), s.p.log()
        assert summary_size(s.p.log(), qid) == len(content) - rlen, (len(content), rlen)
        assert "body replaced" in s.p.log()
    finally:
        s.cleanup()


def test_envelope_edits():
    s = Setup()
    try:
        code, text = send(s.p, message(
            "X-Test-Milter: chgfrom <new-sender@example.org>",
            "X-Test-Milter: addrcpt <added@example.test>",
            "X-Test-Milter: delrcpt <user@example.test>"),
            rcpts=["user@example.test", "other@example.test"])
        assert code == 250, (code, text)
        dump = relayed(s)[0]
        assert b"X-Mail-Args: <new-sender@example.org>" in dump, dump
        rcpts = sorted(re.findall(rb"X-Rcpt-Args: (<[^>]*>)", dump))
        assert rcpts == [b"<added@example.test>", b"<other@example.test>"], dump
        log = s.p.log()
        qid = qid_of(text)
        for want in ("changed the sender <sender@example.org> to <new-sender@example.org>",
                     "added the recipient <added@example.test>",
                     "removed the recipient <user@example.test>"):
            assert want in log, (want, log)
        assert re.search(r"%s: from=<new-sender@example.org> to=<other@example.test>,"
                         r"<added@example.test> .*action=accept" % qid, log), log
    finally:
        s.cleanup()


def test_last_recipient_removed_discards():
    s = Setup()
    try:
        code, text = send(s.p, message("X-Test-Milter: delrcpt <user@example.test>",
                                       "X-Test-Milter: insheader 0 X-Never seen"))
        time.sleep(0.5)
        assert code == 250 and b"discarded" in text, (code, text)
        assert s.p.wait_log("the filters removed every recipient: message discarded"), s.p.log()
        assert s.p.wait_log("action=discard"), s.p.log()
        time.sleep(1)
        assert s.sink.messages() == []
        assert s.p.queue() == [] and os.listdir(os.path.join(s.p.spool, "tmp")) == []
    finally:
        s.cleanup()


def test_held_message_is_edited():
    s = Setup()
    try:
        code, text = send(s.p, message("X-Test-Milter: quarantine check it",
                                       "X-Test-Milter: insheader 0 X-Held yes",
                                       "X-Test-Milter: replbody held body"))
        assert code == 250, (code, text)
        qid = qid_of(text)
        path = os.path.join(s.p.spool, "hold", qid)
        with open(path, "rb") as f:
            data = f.read()
        header = data.split(b"\n", 1)[0].decode()
        clen = int(header.split("content=")[1].split()[0], 16)
        content = data[len(header) + 1:len(header) + 1 + clen]
        assert fields_of(content)[1] == b"X-Held: yes\r\n", content
        assert content.endswith(b"\r\n\r\nheld body\r\n"), content
        assert os.listdir(os.path.join(s.p.spool, "tmp")) == []
    finally:
        s.cleanup()


def test_relayed():
    """What leaves: the edited message reaches smtp-sink."""
    s = Setup()
    try:
        code, text = send(s.p, message("X-Test-Milter: insheader 0 X-Relayed yes",
                                       "X-Test-Milter: replbody relayed body"))
        assert code == 250, (code, text)
        dump = relayed(s)[0].replace(b"\r\n", b"\n")  # smtp-sink writes LF lines
        i = dump.find(b"Received: from client.test")
        assert i >= 0, dump
        assert re.match(rb"Received: .*?\n(?![ \t])X-Relayed: yes\n", dump[i:], re.S), dump
        assert dump.rstrip(b"\n").endswith(b"\n\nrelayed body"), dump
    finally:
        s.cleanup()


if __name__ == "__main__":
    run([test_header_edits, test_body_and_size, test_envelope_edits,
         test_last_recipient_removed_discards, test_held_message_is_edited, test_relayed])

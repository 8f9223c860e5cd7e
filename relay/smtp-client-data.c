/*
 * smtp-client-data — the message content, and the decisions it takes
 * before anything is sent. On the wire after 354: the envelope's added
 * header fields (add_headers) first, then the content read from the spool
 * file with pread in CLIENT_CHUNK pieces, every line end written as CR LF (a
 * bare LF or a bare CR becomes CR LF), every line that starts with '.'
 * dot-stuffed (RFC 5321 §4.5.2), then the end of data. At most about
 * CLIENT_OUT_HIGH octets wait in the output buffer: the rest is read when
 * the bufferevent's write callback says it drained to CLIENT_OUT_LOW.
 * Before MAIL: 8-bit content to a server without 8BITMIME (RFC 6152),
 * what needs SMTPUTF8 to a server without it (RFC 6531), binary content
 * (RFC 3030) are bounced here; what is 7-bit after all goes without BODY=.
 *
 * Called by smtp-client-send.c (send, 354) and smtp-client.c (write
 * callback). Trusts the spool file's offsets (the queue manager read
 * them); a short read or an I/O error ends the connection without the
 * final dot, so a truncated message is never delivered.
 */
#include "config.h"
#include "relay/smtp-client-private.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "lib/smtp-params.h"
#include "lib/log.h"

/* The end of the run of ordinary octets starting at in[i]: the next CR or LF. */
static size_t run_end(const unsigned char *in, size_t i, size_t len)
{
    const unsigned char *cr = memchr(in + i, '\r', len - i);
    const unsigned char *lf = memchr(in + i, '\n', (cr != NULL ? (size_t)(cr - in) : len) - i);
    const unsigned char *e = cr == NULL ? lf : lf == NULL || cr < lf ? cr : lf;

    return e == NULL ? len : (size_t)(e - in);
}

size_t dot_writer_put(struct dot_writer *w, const unsigned char *in, size_t len, unsigned char *out)
{
    size_t n = 0, i = 0;

    while (i < len) {
        unsigned char ch = in[i];

        if (w->cr) { /* a CR, and then? */
            w->cr = false;
            out[n++] = '\r';
            out[n++] = '\n';
            w->mid_line = false;
            if (ch == '\n') {
                i++;
                continue;
            }
        }
        if (ch == '\r' || ch == '\n') {
            w->cr = ch == '\r';
            if (ch == '\n') {
                out[n++] = '\r';
                out[n++] = '\n';
                w->mid_line = false;
            }
            i++;
            continue;
        }
        if (ch == '.' && !w->mid_line)
            out[n++] = '.';
        size_t e = run_end(in, i, len); /* copy the rest of the line at once */
        memcpy(out + n, in + i, e - i);
        n += e - i;
        i = e;
        w->mid_line = true;
    }
    return n;
}

size_t dot_writer_end(struct dot_writer *w, unsigned char *out)
{
    size_t n = 0;

    if (w->cr || w->mid_line) {
        out[n++] = '\r';
        out[n++] = '\n';
    }
    memcpy(out + n, ".\r\n", 3);
    w->cr = false;
    w->mid_line = false;
    return n + 3;
}

static size_t chunk_size(const struct smtp_client_msg *m, uint64_t done)
{
    uint64_t left = m->length - done;

    return left < CLIENT_CHUNK ? (size_t)left : CLIENT_CHUNK;
}

/* pread that retries EINTR; a read of 0 before the end is an error too. */
static ssize_t read_chunk(const struct smtp_client_msg *m, uint64_t done, void *buf, size_t len)
{
    ssize_t n;

    do
        n = pread(m->fd, buf, len, (off_t)(m->offset + done));
    while (n < 0 && errno == EINTR);
    if (n == 0)
        errno = EIO;
    return n > 0 ? n : -1;
}

/* 1 when the content has an octet >= 0x80, 0 when not, -1 on a read error. */
static int scan_8bit(const struct smtp_client_msg *m)
{
    unsigned char buf[16384];
    uint64_t done = 0;

    while (done < m->length) {
        size_t want = chunk_size(m, done) < sizeof(buf) ? chunk_size(m, done) : sizeof(buf);
        ssize_t n = read_chunk(m, done, buf, want);

        if (n < 0) {
            log_error("%s: cannot read queue file: %s", m->queue_id != NULL ? m->queue_id : "?",
                      strerror(errno));
            return -1;
        }
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] >= 0x80)
                return 1;
        }
        done += (uint64_t)n;
    }
    return 0;
}

/* The added header fields, before the content and through the same
 * writer (they are ours and already CR LF, so it changes nothing; it keeps
 * its line state right for the content that follows). */
static void put_add_headers(struct smtp_client *c)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    const char *h = c->txn.msg->add_headers;
    size_t len = h != NULL ? strlen(h) : 0;

    while (len > 0) {
        size_t n = len < CLIENT_CHUNK ? len : CLIENT_CHUNK;
        size_t wire = dot_writer_put(&c->txn.w, (const unsigned char *)h, n, c->wbuf);

        evbuffer_add(out, c->wbuf, wire);
        h += n;
        len -= n;
    }
}

void smtp_client_content_start(struct smtp_client *c)
{
    if (c->rbuf == NULL)
        c->rbuf = malloc(CLIENT_CHUNK);
    if (c->wbuf == NULL)
        c->wbuf = malloc(2 * CLIENT_CHUNK + 2);
    if (c->rbuf == NULL || c->wbuf == NULL) {
        struct smtp_status st;

        smtp_status_set(&st, 451, "4.3.0", "out of memory sending to %s", c->peer);
        smtp_client_txn_break(c, &st);
        return;
    }
    c->txn.done = 0;
    memset(&c->txn.w, 0, sizeof(c->txn.w));
    put_add_headers(c);
    c->state = CLIENT_CONTENT;
    c->phase = "sending the message content";
    smtp_client_arm_timer(c, c->data_ms); /* the whole of DATA, to the last reply */
    bufferevent_setwatermark(c->bev, EV_WRITE, CLIENT_OUT_LOW, 0);
    smtp_client_content_pump(c);
}

static void content_read_failed(struct smtp_client *c)
{
    struct smtp_status st;
    const char *id = c->txn.msg->queue_id;

    log_error("%s: cannot read queue file: %s", id != NULL ? id : "?", strerror(errno));
    smtp_status_set(&st, 451, "4.3.0", "Cannot read the queue file of %s",
                    id != NULL ? id : "the message");
    smtp_client_txn_break(c, &st); /* no final dot: the partial message is dropped */
}

void smtp_client_content_pump(struct smtp_client *c)
{
    struct client_txn *t = &c->txn;
    const struct smtp_client_msg *m = t->msg;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    unsigned char end[5];

    while (evbuffer_get_length(out) < CLIENT_OUT_HIGH && t->done < m->length) {
        ssize_t n = read_chunk(m, t->done, c->rbuf, chunk_size(m, t->done));

        if (n < 0) {
            content_read_failed(c);
            return;
        }
        t->done += (uint64_t)n;
        evbuffer_add(out, c->wbuf, dot_writer_put(&t->w, c->rbuf, (size_t)n, c->wbuf));
    }
    if (t->done < m->length)
        return; /* on_write calls again when the output drains */
    evbuffer_add(out, end, dot_writer_end(&t->w, end));
    bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
    c->state = CLIENT_DOT;
    c->phase = "waiting for the reply to the end of data (the message may be delivered twice)";
}

static bool is_ascii(const char *s)
{
    for (; *s != '\0'; s++) {
        if ((unsigned char)*s >= 0x80)
            return false;
    }
    return true;
}

/* Nothing that could end or split a command line. */
static bool addr_ok(const char *s)
{
    for (; *s != '\0'; s++) {
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return false;
    }
    return true;
}

/* Lazily scanned: 1 = the content has 8-bit octets, 0 = not, -1 = error. */
static int content_8bit(const struct smtp_client_msg *m, int *cache)
{
    if (*cache == -2)
        *cache = scan_8bit(m);
    return *cache;
}

/* RFC 6531 §3.2: without SMTPUTF8 at the next hop, a non-ASCII address,
 * or an SMTPUTF8 message whose content is 8-bit, cannot be sent. */
static void smtputf8_decisions(struct smtp_client *c, int *eight)
{
    struct client_txn *t = &c->txn;
    const struct smtp_client_msg *m = t->msg;
    struct smtp_status st;
    bool need = !is_ascii(m->sender != NULL ? m->sender : "");

    for (size_t i = 0; i < m->rcpt_count; i++)
        need = need || !is_ascii(m->rcpts[i]);
    if (c->ext & EXT_SMTPUTF8) {
        t->smtputf8 = need || m->smtputf8;
        return;
    }
    smtp_status_set(&st, 553, "5.6.7",
                    "%s requires SMTPUTF8, but SMTPUTF8 not supported by the next hop %s",
                    "Address", c->peer);
    if (!is_ascii(m->sender != NULL ? m->sender : "")) {
        smtp_client_decide_open(t, &st, false);
        return;
    }
    for (size_t i = 0; i < m->rcpt_count; i++) {
        if (t->rstate[i] == RCPT_WAIT && !is_ascii(m->rcpts[i]))
            smtp_client_decide(t, i, &st);
    }
    if (m->smtputf8 && content_8bit(m, eight) == 1) {
        smtp_status_set(&st, 553, "5.6.7",
                        "%s requires SMTPUTF8, but SMTPUTF8 not supported by the next hop %s",
                        "Message", c->peer);
        smtp_client_decide_open(t, &st, false);
    }
}

/* RFC 6152 §3 / RFC 3030: 8-bit content only to a server with 8BITMIME
 * (conversion to 7 bit is not done here); binary never through DATA. */
static void body_decisions(struct smtp_client *c, int *eight)
{
    struct client_txn *t = &c->txn;
    const struct smtp_client_msg *m = t->msg;
    struct smtp_status st;

    smtp_status_set(&st, 554, "5.6.3", "Conversion required but not supported");
    if (m->body == SMTP_BODY_BINARYMIME)
        smtp_client_decide_open(t, &st, false);
    else if (m->body == SMTP_BODY_8BITMIME && (c->ext & EXT_8BITMIME))
        t->body_8bit = true;
    else if (m->body == SMTP_BODY_8BITMIME && content_8bit(m, eight) == 1)
        smtp_client_decide_open(t, &st, false);
}

/* Decides what can be decided here; fills t->order with the recipients
 * that go on the wire. Returns false when none does. */
bool smtp_client_local_decisions(struct smtp_client *c)
{
    struct client_txn *t = &c->txn;
    const struct smtp_client_msg *m = t->msg;
    struct smtp_status st;
    int eight = -2;

    smtp_status_set(&st, 553, "5.1.3", "Bad recipient address syntax");
    for (size_t i = 0; i < m->rcpt_count; i++) {
        if (m->rcpts[i] == NULL || !addr_ok(m->rcpts[i]))
            smtp_client_decide(t, i, &st);
    }
    smtp_status_set(&st, 553, "5.1.7", "Bad sender address syntax");
    if (m->sender != NULL && !addr_ok(m->sender))
        smtp_client_decide_open(t, &st, false);
    smtputf8_decisions(c, &eight);
    body_decisions(c, &eight);
    if (eight == -1) {
        smtp_status_set(&st, 451, "4.3.0", "Cannot read the queue file of %s",
                        m->queue_id != NULL ? m->queue_id : "the message");
        smtp_client_decide_open(t, &st, false);
    }
    for (size_t i = 0; i < m->rcpt_count; i++) {
        if (t->rstate[i] == RCPT_WAIT)
            t->order[t->nsend++] = i;
    }
    return t->nsend > 0;
}

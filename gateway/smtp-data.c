/*
 * smtp-data.c — the message content reader behind DATA and BDAT (contract in
 * smtp-data.h).
 *
 * Called by smtp-cmd-data.c and smtp-cmd-bdat.c with raw bytes from the
 * client. SECURITY: trusts nothing in those bytes. The input may be split at
 * any octet, so all decisions live in a small state machine kept in the
 * reader between feeds:
 *
 *   ST_LINE_START  at a real line start (after a real CR LF, or the start)
 *   ST_MID         inside a line, or after a bare CR/LF (never a line start)
 *   ST_CR          a CR was read; the next octet says real CRLF or bare CR
 *   ST_DOT         a "." at a real line start (not yet known: stuffing or end)
 *   ST_DOT_CR      "." CR at a real line start (LF next ends the data)
 *
 * Only ST_CR followed by LF makes a real line end, so the end of data can
 * only be CR LF "." CR LF (or "." CR LF at the start): no smuggling through
 * bare LF or bare CR. Runs of ordinary octets are found with memchr and
 * copied with one evbuffer_add. Limits are checked before anything is
 * written; on an error the octets before the offending one are kept, nothing
 * after, and the reader still reads on to the real end.
 *
 * Counting: max_size counts output octets, CR LF included; max_line counts
 * output octets of a line, so a stuffed dot is not counted (RFC 5321
 * 4.5.3.1.6) and a bare CR/LF written as CR LF under NORMALIZE ends the
 * output line. Under NORMALIZE a "." after a bare LF stays in the content
 * (e.g. "a\n.\nb" gives "a\r\n.\r\nb"): whoever relays it must dot-stuff it,
 * as for any content. A failed evbuffer_add is reported as
 * SMTP_DATA_ERR_SIZE (fail closed).
 */
#include "config.h"

#include <stdint.h>
#include <string.h>

#include <event2/buffer.h>

#include "gateway/smtp-data.h"

enum {
    ST_LINE_START,
    ST_MID,
    ST_CR,
    ST_DOT,
    ST_DOT_CR,
};

#define NOT_SCANNED SIZE_MAX

/* One feed's input and the cached positions of the next CR and LF at or
 * after pos (len when there is none; NOT_SCANNED before the first scan), so
 * memchr looks at each octet at most once per character. */
struct cursor {
    const char *in;
    size_t len;
    size_t pos;
    size_t next_cr;
    size_t next_lf;
};

void smtp_data_init(struct smtp_data_reader *r, enum smtp_data_mode mode,
                    const struct smtp_data_limits *limits)
{
    memset(r, 0, sizeof(*r));
    r->limits = *limits;
    r->mode = mode;
    r->state = mode == SMTP_DATA_DOT ? ST_LINE_START : ST_MID;
    r->error = SMTP_DATA_OK;
}

static void set_error(struct smtp_data_reader *r, enum smtp_data_error error)
{
    if (r->error == SMTP_DATA_OK)
        r->error = error;
}

/* How many of n content octets fit in the current line and the message;
 * sets the error when not all of them do. */
static size_t content_room(struct smtp_data_reader *r, size_t n)
{
    size_t room = n;
    enum smtp_data_error error = SMTP_DATA_OK;

    if (r->limits.max_line != 0 && r->limits.max_line - r->line_len < room) {
        room = r->limits.max_line - r->line_len;
        error = SMTP_DATA_ERR_LINE;
    }
    if (r->limits.max_size != 0 && r->limits.max_size - r->size < room) {
        room = (size_t)(r->limits.max_size - r->size);
        error = SMTP_DATA_ERR_SIZE;
    }
    set_error(r, error);
    return room;
}

/* Writes n octets of line content (no CR, no LF) after the limit checks. */
static void emit_text(struct smtp_data_reader *r, struct evbuffer *out,
                      const char *p, size_t n)
{
    size_t room;

    if (r->error != SMTP_DATA_OK || n == 0)
        return;
    room = content_room(r, n);
    if (room == 0)
        return;
    if (evbuffer_add(out, p, room) != 0) {
        /* No memory for the content: fail closed as "too big". */
        set_error(r, SMTP_DATA_ERR_SIZE);
        return;
    }
    r->size += room;
    r->line_len += room;
}

/* Writes a line end; a CR LF pair is never split by the size limit. */
static void emit_crlf(struct smtp_data_reader *r, struct evbuffer *out)
{
    if (r->error != SMTP_DATA_OK)
        return;
    if (r->limits.max_size != 0 && r->limits.max_size - r->size < 2) {
        set_error(r, SMTP_DATA_ERR_SIZE);
        return;
    }
    if (evbuffer_add(out, "\r\n", 2) != 0) {
        set_error(r, SMTP_DATA_ERR_SIZE);
        return;
    }
    r->size += 2;
    r->line_len = 0;
}

/* A bare CR or bare LF: an error or a CR LF, but never a real line start. */
static void emit_bare(struct smtp_data_reader *r, struct evbuffer *out)
{
    if (r->limits.bare == SMTP_BARE_NORMALIZE)
        emit_crlf(r, out);
    else
        set_error(r, SMTP_DATA_ERR_BARE);
}

static size_t next_of(const struct cursor *c, size_t cached, char ch)
{
    const char *hit;

    if (cached != NOT_SCANNED && cached >= c->pos)
        return cached;
    hit = memchr(c->in + c->pos, ch, c->len - c->pos);
    return hit == NULL ? c->len : (size_t)(hit - c->in);
}

/* ST_MID: copies the run up to the next CR or LF, then takes that octet. */
static void feed_mid(struct smtp_data_reader *r, struct cursor *c, struct evbuffer *out)
{
    size_t stop;

    c->next_cr = next_of(c, c->next_cr, '\r');
    c->next_lf = next_of(c, c->next_lf, '\n');
    stop = c->next_cr < c->next_lf ? c->next_cr : c->next_lf;
    emit_text(r, out, c->in + c->pos, stop - c->pos);
    c->pos = stop;
    if (stop == c->len)
        return;
    c->pos++;
    if (c->in[stop] == '\r')
        r->state = ST_CR;
    else
        emit_bare(r, out);
}

/* ST_CR: LF makes a real line end; anything else leaves a bare CR and is
 * read again in ST_MID. */
static void feed_cr(struct smtp_data_reader *r, struct cursor *c, struct evbuffer *out)
{
    if (c->in[c->pos] == '\n') {
        c->pos++;
        emit_crlf(r, out);
        r->state = r->mode == SMTP_DATA_DOT ? ST_LINE_START : ST_MID;
        return;
    }
    emit_bare(r, out);
    r->state = ST_MID;
}

/* ST_LINE_START, ST_DOT, ST_DOT_CR: the start of a real line in DOT mode.
 * A dot that turns out not to end the data is dropped (unstuffing). */
static void feed_line(struct smtp_data_reader *r, struct cursor *c, struct evbuffer *out)
{
    char ch = c->in[c->pos];

    switch (r->state) {
    case ST_LINE_START:
        if (ch == '.') {
            c->pos++;
            r->state = ST_DOT;
        } else {
            r->state = ST_MID;
        }
        break;
    case ST_DOT:
        if (ch == '\r') {
            c->pos++;
            r->state = ST_DOT_CR;
        } else {
            r->state = ST_MID;
        }
        break;
    default: /* ST_DOT_CR */
        if (ch == '\n') {
            c->pos++;
            r->done = true;
        } else {
            emit_bare(r, out);
            r->state = ST_MID;
        }
        break;
    }
}

size_t smtp_data_feed(struct smtp_data_reader *r, const char *in, size_t len,
                      struct evbuffer *out, bool *end_r)
{
    struct cursor c = {
        .in = in, .len = len, .pos = 0, .next_cr = NOT_SCANNED, .next_lf = NOT_SCANNED,
    };

    while (c.pos < c.len && !r->done) {
        if (r->state == ST_MID)
            feed_mid(r, &c, out);
        else if (r->state == ST_CR)
            feed_cr(r, &c, out);
        else
            feed_line(r, &c, out);
    }
    *end_r = r->done;
    return c.pos;
}

enum smtp_data_error smtp_data_finish(struct smtp_data_reader *r, struct evbuffer *out)
{
    if (r->mode == SMTP_DATA_RAW && r->state == ST_CR) {
        emit_bare(r, out);
        r->state = ST_MID;
    }
    return r->error;
}

uint64_t smtp_data_size(const struct smtp_data_reader *r)
{
    return r->size;
}

void smtp_hops_feed(struct smtp_hop_counter *h, const char *p, size_t len)
{
    static const char name[] = "received:";

    for (size_t i = 0; i < len && !h->done; i++) {
        char c = p[i];
        if (c == '\r')
            continue;
        if (c == '\n') {
            h->done = h->col == 0; /* the empty line ends the header section */
            h->col = 0;
            h->match = 0;
            continue;
        }
        if (h->col == h->match && h->match < sizeof(name) - 1 &&
            (c | 0x20) == name[h->match] && ++h->match == sizeof(name) - 1)
            h->hops++;
        h->col++;
    }
}

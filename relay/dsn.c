/*
 * dsn — see dsn.h. Builds an RFC 3464 multipart/report in three parts: a
 * human explanation (text/plain), the machine-readable report
 * (message/delivery-status) and the original (message/rfc822 in full, or
 * text/rfc822-headers), then wraps them in RFC 5322 headers.
 *
 * Called by the queue manager. Trusts the envelope and the spool layout
 * (content_fd, offset, length) but not the diagnostic texts, which come from
 * remote servers: every value written into a header or report field is cut
 * to printable US-ASCII (controls become spaces, 8-bit octets '?'), bounded
 * and folded, so no line reaches 998 octets and no CR or LF gets in. The
 * original message is copied byte for byte and never parsed, after the
 * header fields Postern added to it (add_headers, as they were delivered);
 * for headers only we merely look for the first empty line within
 * DSN_HEADERS_MAX. The
 * parts are built first so that the random MIME boundary can be checked
 * against all of them before it is used.
 *
 * A recipient's status counts as a server's reply (Diagnostic-Code: smtp)
 * when remote_mta is set, since that is the host that answered; without it
 * the status is a local decision (Diagnostic-Code: X-Postern).
 */
#include "config.h"
#include "relay/dsn.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <openssl/rand.h>

#include "lib/smtp-params.h"

#define DSN_HEADERS_MAX (64 * 1024) /* longest header section returned */
#define DSN_READ_CHUNK (64 * 1024)
#define DSN_VALUE_MAX 900    /* longest field value, sanitized */
#define DSN_COMPOSE_MAX 2048 /* a value before sanitizing cuts it */
#define DSN_FIELD_WIDTH 78   /* fold header and report fields here */
#define DSN_TEXT_WIDTH 76    /* wrap the human explanation here */
#define DSN_DATE_MAX 48
#define DSN_RANDOM_BYTES 16 /* 128 bits for the boundary */
#define DSN_BOUNDARY_TRIES 8
#define DSN_QID_IN_BOUNDARY 20

/* The three parts, built before the boundary is chosen. */
struct dsn_parts {
    struct evbuffer *human, *report, *orig;
    bool full;     /* orig holds the whole message (message/rfc822) */
    bool too_big;  /* the whole message was wanted but exceeds return_limit */
    bool eightbit; /* orig has octets over 127 */
    bool ends_lf;  /* orig is empty or ends with LF */
};

/* Copies src into dst (size dstsize) as printable US-ASCII. */
static void sanitize(char *dst, size_t dstsize, const char *src)
{
    size_t i = 0;

    for (; src != NULL && src[i] != '\0' && i + 1 < dstsize; i++) {
        unsigned char c = (unsigned char)src[i];

        if (c >= 0x80)
            dst[i] = '?';
        else if (c < 0x20 || c == 0x7f)
            dst[i] = ' ';
        else
            dst[i] = (char)c;
    }
    dst[i] = '\0';
}

/* Copies src into dst keeping only [A-Za-z0-9.-], for Message-ID, boundary
 * and MAILER-DAEMON@host; falls back to fallback when nothing is left. */
static void atom_copy(char *dst, size_t dstsize, const char *src, const char *fallback)
{
    size_t n = 0;

    for (; src != NULL && *src != '\0' && n + 1 < dstsize; src++) {
        unsigned char c = (unsigned char)*src;

        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '.' || c == '-')
            dst[n++] = (char)c;
    }
    dst[n] = '\0';
    if (n == 0)
        snprintf(dst, dstsize, "%s", fallback);
}

/* Appends the words of s (sanitized) one space apart, starting at column
 * col; before a word that would pass width, fold (CR LF + indent spaces).
 * The first word of a line is never folded, and words are at most
 * DSN_VALUE_MAX long, so every line stays far below 998 octets. */
static void put_words(struct evbuffer *out, const char *s, size_t col, size_t width, size_t indent)
{
    bool line_has_word = false;

    while (*s != '\0') {
        size_t len;

        while (*s == ' ')
            s++;
        len = strcspn(s, " ");
        if (len == 0)
            break;
        if (line_has_word && col + 1 + len > width) {
            evbuffer_add_printf(out, "\r\n%*s", (int)indent, "");
            col = indent;
        } else if (line_has_word || col > 0) {
            evbuffer_add(out, " ", 1);
            col++;
        }
        evbuffer_add(out, s, len);
        col += len;
        line_has_word = true;
        s += len;
    }
}

/* "Name: value" CR LF, value sanitized, bounded and folded. */
static void put_field(struct evbuffer *out, const char *name, const char *value)
{
    char clean[DSN_VALUE_MAX + 1];

    sanitize(clean, sizeof(clean), value);
    evbuffer_add_printf(out, "%s:", name);
    put_words(out, clean, strlen(name) + 1, DSN_FIELD_WIDTH, 1);
    evbuffer_add(out, "\r\n", 2);
}

/* A paragraph of the human part: sanitized, wrapped, continuation lines
 * indented by indent, followed by CR LF. */
static void put_text(struct evbuffer *out, const char *text, size_t indent)
{
    char clean[DSN_VALUE_MAX + 1];

    sanitize(clean, sizeof(clean), text);
    put_words(out, clean, 0, DSN_TEXT_WIDTH, indent);
    evbuffer_add(out, "\r\n", 2);
}

/* RFC 5322 date-time in local time with its UTC offset, without relying
 * on the locale for day and month names. */
static void format_date(time_t t, char *buf, size_t size)
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct tm tm;
    long off, aoff;

    if (localtime_r(&t, &tm) == NULL) {
        snprintf(buf, size, "Thu, 1 Jan 1970 00:00:00 +0000");
        return;
    }
    off = tm.tm_gmtoff / 60;
    aoff = off < 0 ? -off : off;
    snprintf(buf, size, "%s, %d %s %d %02d:%02d:%02d %c%02ld%02ld", days[tm.tm_wday % 7],
             tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
             tm.tm_sec, off < 0 ? '-' : '+', aoff / 60, aoff % 60);
}

static void put_date_field(struct evbuffer *out, const char *name, time_t t)
{
    char date[DSN_DATE_MAX];

    format_date(t, date, sizeof(date));
    put_field(out, name, date);
}

/* RFC 3463: class "." subject "." detail, class 2, 4 or 5, 1-3 digits each. */
static bool enhanced_valid(const char *s)
{
    size_t n;

    if (s[0] != '2' && s[0] != '4' && s[0] != '5')
        return false;
    if (s[1] != '.')
        return false;
    s += 2;
    n = strspn(s, "0123456789");
    if (n < 1 || n > 3 || s[n] != '.')
        return false;
    s += n + 1;
    n = strspn(s, "0123456789");
    return n >= 1 && n <= 3 && s[n] == '\0';
}

/* The Status value into buf: the enhanced code, or X.0.0 from the reply
 * code's class, or from the action when there is no usable code either. A
 * delayed recipient's status is of class 4 (RFC 3464 §2.3.4) even when a
 * 5xx deferred it (an AUTH refusal, a 5xx greeting): it is tried again. */
static const char *status_code(const struct smtp_status *st, enum dsn_action action, char *buf,
                               size_t size)
{
    if (enhanced_valid(st->enhanced))
        snprintf(buf, size, "%s", st->enhanced);
    else if (st->code >= 500 && st->code < 600)
        snprintf(buf, size, "5.0.0");
    else if (st->code >= 400 && st->code < 500)
        snprintf(buf, size, "4.0.0");
    else
        snprintf(buf, size, "%s", action == DSN_ACTION_FAILED ? "5.0.0" : "4.0.0");
    if (action == DSN_ACTION_DELAYED && buf[0] == '5')
        buf[0] = '4';
    return buf;
}

/* Did a server give this status? remote_mta is "the host that answered". */
static bool from_server(const struct dsn_rcpt *r)
{
    return r->remote_mta != NULL && r->remote_mta[0] != '\0' && r->status->code != 0;
}

/* The server's reply as it was: "550 5.1.1 text", or "550 text" when it
 * gave no (valid) enhanced code; none is made up for it. */
static void format_reply(const struct smtp_status *st, char *buf, size_t size)
{
    if (enhanced_valid(st->enhanced))
        snprintf(buf, size, "%03u %s %s", st->code, st->enhanced, st->text);
    else
        snprintf(buf, size, "%03u %s", st->code, st->text);
}

/* Diagnostic-Code: the server's reply, or our own decision. */
static void put_diagnostic(struct evbuffer *out, const struct dsn_rcpt *r)
{
    char reply[DSN_COMPOSE_MAX], value[DSN_COMPOSE_MAX + 16];

    if (from_server(r)) {
        format_reply(r->status, reply, sizeof(reply));
        snprintf(value, sizeof(value), "smtp; %s", reply);
    } else {
        snprintf(value, sizeof(value), "X-Postern; %s", r->status->text);
    }
    put_field(out, "Diagnostic-Code", value);
}

/* The length of the UTF-8 sequence at p and its code point; 0 when p does
 * not start a well-formed one (RFC 3629: no overlongs, no surrogates). */
static size_t utf8_seq(const unsigned char *p, unsigned long *cp_r)
{
    static const unsigned long min[] = { 0, 0, 0x80, 0x800, 0x10000 };
    size_t len = *p >= 0xc2 && *p <= 0xdf ? 2 : *p >= 0xe0 && *p <= 0xef ? 3
               : *p >= 0xf0 && *p <= 0xf4 ? 4 : 0;
    unsigned long cp = len == 2 ? *p & 0x1fu : len == 3 ? *p & 0x0fu : *p & 0x07u;

    for (size_t k = 1; k < len; k++) {
        if ((p[k] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (p[k] & 0x3fu);
    }
    if (len == 0 || cp < min[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    *cp_r = cp;
    return len;
}

/* An address for the report: "rfc822; addr" when it is ASCII, else
 * RFC 6533's "utf-8; " with utf-8-addr-xtext ("\x{FC}" for each
 * non-ASCII code point, and for '\', '+', '=', space and controls), so
 * that the 7-bit report keeps the address instead of '?'s. An octet that
 * is not UTF-8 is written as "\x{HH}" of its value. type_r gets the
 * type, buf the address. */
static void report_addr(const char *addr, const char **type_r, char *buf, size_t size)
{
    const unsigned char *p = (const unsigned char *)addr;
    size_t n = 0;

    *type_r = "rfc822";
    for (const unsigned char *q = p; *q != '\0'; q++) {
        if (*q >= 0x80)
            *type_r = "utf-8";
    }
    if (strcmp(*type_r, "rfc822") == 0) {
        snprintf(buf, size, "%s", addr);
        return;
    }
    buf[0] = '\0';
    while (*p != '\0') {
        unsigned long cp = *p;
        size_t len = *p >= 0x80 ? utf8_seq(p, &cp) : 1;
        char piece[16];
        size_t plen;

        if (len == 0)
            len = 1; /* not UTF-8: the octet's value */
        if (cp > 0x20 && cp < 0x7f && cp != '\\' && cp != '+' && cp != '=')
            plen = (size_t)snprintf(piece, sizeof(piece), "%c", (int)cp);
        else
            plen = (size_t)snprintf(piece, sizeof(piece), "\\x{%lX}", cp);
        if (n + plen >= size)
            break;
        memcpy(buf + n, piece, plen + 1);
        n += plen;
        p += len;
    }
}

/* One per-recipient group of the delivery-status part (RFC 3464 §2.3). */
static void put_recipient_report(struct evbuffer *out, const struct dsn_input *in,
                                 const struct dsn_rcpt *r)
{
    char value[DSN_COMPOSE_MAX + 16], addr[DSN_COMPOSE_MAX], code[16];
    const char *type;

    evbuffer_add(out, "\r\n", 2);
    if (r->orcpt != NULL && r->orcpt[0] != '\0') {
        const char *semi = strchr(r->orcpt, ';');

        report_addr(semi != NULL ? semi + 1 : r->orcpt, &type, addr, sizeof(addr));
        if (semi != NULL && strcmp(type, "rfc822") == 0)
            put_field(out, "Original-Recipient", r->orcpt); /* as the client gave it */
        else {
            snprintf(value, sizeof(value), "%s;%s", type, addr);
            put_field(out, "Original-Recipient", value);
        }
    }
    report_addr(r->addr, &type, addr, sizeof(addr));
    snprintf(value, sizeof(value), "%s; %s", type, addr);
    put_field(out, "Final-Recipient", value);
    put_field(out, "Action", in->action == DSN_ACTION_FAILED ? "failed" : "delayed");
    put_field(out, "Status", status_code(r->status, in->action, code, sizeof(code)));
    if (r->remote_mta != NULL && r->remote_mta[0] != '\0') {
        snprintf(value, sizeof(value), "dns; %s", r->remote_mta);
        put_field(out, "Remote-MTA", value);
    }
    put_diagnostic(out, r);
    if (r->last_attempt != 0)
        put_date_field(out, "Last-Attempt-Date", r->last_attempt);
    if (in->action == DSN_ACTION_DELAYED && in->retry_until != 0)
        put_date_field(out, "Will-Retry-Until", in->retry_until);
}

/* The message/delivery-status body: per-message fields in RFC 3464's
 * order, then one group per recipient. */
static void build_report(const struct dsn_input *in, struct evbuffer *out)
{
    char value[DSN_COMPOSE_MAX];
    size_t i;

    if (in->envid != NULL && in->envid[0] != '\0')
        put_field(out, "Original-Envelope-Id", in->envid);
    snprintf(value, sizeof(value), "dns; %s", in->reporting_mta);
    put_field(out, "Reporting-MTA", value);
    if (in->arrival != 0)
        put_date_field(out, "Arrival-Date", in->arrival);
    put_field(out, "X-Postern-Queue-ID", in->queue_id);
    for (i = 0; i < in->rcpt_count; i++)
        put_recipient_report(out, in, &in->rcpts[i]);
}

/* One recipient in the human part: "<addr>: what happened". */
static void put_recipient_text(struct evbuffer *out, const struct dsn_input *in,
                               const struct dsn_rcpt *r)
{
    char reply[DSN_COMPOSE_MAX], line[3 * DSN_COMPOSE_MAX], addr[DSN_COMPOSE_MAX], code[16];
    const char *type;

    report_addr(r->addr, &type, addr, sizeof(addr));
    if (from_server(r)) {
        format_reply(r->status, reply, sizeof(reply));
        snprintf(line, sizeof(line), "<%s>: host %s said: %s", addr, r->remote_mta, reply);
    } else {
        snprintf(line, sizeof(line), "<%s>: %s %s", addr,
                 status_code(r->status, in->action, code, sizeof(code)), r->status->text);
    }
    evbuffer_add(out, "\r\n", 2);
    put_text(out, line, 4);
}

/* What the third part holds, in words. */
static void put_returned_note(struct evbuffer *out, const struct dsn_input *in,
                              const struct dsn_parts *p)
{
    if (p->full) {
        put_text(out, "Your message is returned in full after the delivery report.", 0);
    } else if (p->too_big) {
        char line[DSN_COMPOSE_MAX];

        snprintf(line, sizeof(line),
                 "Your message was %" PRIu64 " octets long, more than the %" PRIu64
                 " octets returned in full, so only its header section is returned.",
                 in->content_length, in->return_limit);
        put_text(out, line, 0);
    } else {
        put_text(out, "The header section of your message is returned after the delivery report.",
                 0);
    }
}

/* Who we are and what happened, before the list of recipients. */
static void put_intro(struct evbuffer *out, const struct dsn_input *in)
{
    char line[DSN_COMPOSE_MAX], date[DSN_DATE_MAX];

    snprintf(line, sizeof(line), "This is the mail delivery system at %s (queue ID %s).",
             in->reporting_mta, in->queue_id);
    put_text(out, line, 0);
    evbuffer_add(out, "\r\n", 2);
    if (in->action == DSN_ACTION_FAILED) {
        put_text(out,
                 "Your message could not be delivered to the recipients below; "
                 "the mail system has given up.",
                 0);
        return;
    }
    format_date(in->retry_until, date, sizeof(date));
    snprintf(line, sizeof(line),
             "Your message has not yet been delivered to the recipients below. "
             "The mail system will keep trying%s%s; you need not send it again.",
             in->retry_until != 0 ? " until " : "", in->retry_until != 0 ? date : "");
    put_text(out, line, 0);
}

/* The text/plain part: the explanation and one entry per recipient. */
static void build_human(const struct dsn_input *in, const struct dsn_parts *p, struct evbuffer *out)
{
    size_t i;

    put_intro(out, in);
    for (i = 0; i < in->rcpt_count; i++)
        put_recipient_text(out, in, &in->rcpts[i]);
    evbuffer_add(out, "\r\n", 2);
    put_returned_note(out, in, p);
}

/* pread until len octets are in buf; -1 on error or early end of file. */
static int read_at(int fd, uint64_t off, char *buf, size_t len, char *error, size_t errsize)
{
    size_t done = 0;

    while (done < len) {
        ssize_t n = pread(fd, buf + done, len - done, (off_t)(off + done));

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            snprintf(error, errsize, "reading the original message: %s", strerror(errno));
            return -1;
        }
        if (n == 0) {
            snprintf(error, errsize, "original message ends at octet %" PRIu64 " of %zu",
                     (uint64_t)done, len);
            return -1;
        }
        done += (size_t)n;
    }
    return 0;
}

/* Does buf hold an octet over 127 (so the part needs 8bit transport)? */
static bool any_8bit(const char *buf, size_t len)
{
    size_t i;

    for (i = 0; i < len; i++)
        if ((unsigned char)buf[i] >= 0x80)
            return true;
    return false;
}

/* Appends len octets of buf to the third part, noting 8-bit octets and
 * whether the part ends with a line end. */
static int add_orig(struct dsn_parts *p, const char *buf, size_t len, char *error, size_t errsize)
{
    if (len == 0)
        return 0;
    if (evbuffer_add(p->orig, buf, len) != 0) {
        snprintf(error, errsize, "out of memory");
        return -1;
    }
    p->eightbit = p->eightbit || any_8bit(buf, len);
    p->ends_lf = buf[len - 1] == '\n';
    return 0;
}

/* Reads the whole original (content_length <= return_limit). */
static int read_full(const struct dsn_input *in, struct dsn_parts *p, char *error, size_t errsize)
{
    char *chunk = malloc(DSN_READ_CHUNK);
    uint64_t done = 0;
    int ret = 0;

    if (chunk == NULL) {
        snprintf(error, errsize, "out of memory");
        return -1;
    }
    while (ret == 0 && done < in->content_length) {
        uint64_t left = in->content_length - done;
        size_t len = left < DSN_READ_CHUNK ? (size_t)left : DSN_READ_CHUNK;

        ret = read_at(in->content_fd, in->content_offset + done, chunk, len, error, errsize);
        if (ret == 0)
            ret = add_orig(p, chunk, len, error, errsize);
        done += len;
    }
    free(chunk);
    return ret;
}

/* Length of the header section in buf: up to (not including) the first
 * empty line; without one, up to the last complete line (the section was
 * longer than the bound, or the message has no body). */
static size_t header_section_len(const char *buf, size_t n)
{
    size_t pos = 0;

    while (pos < n) {
        const char *nl = memchr(buf + pos, '\n', n - pos);

        if (nl == NULL)
            break;
        if (nl == buf + pos || (nl == buf + pos + 1 && buf[pos] == '\r'))
            return pos;
        pos = (size_t)(nl - buf) + 1;
    }
    return pos;
}

/* Reads the header section (within DSN_HEADERS_MAX octets). */
static int read_headers(const struct dsn_input *in, struct dsn_parts *p, char *error,
                        size_t errsize)
{
    size_t len =
        in->content_length < DSN_HEADERS_MAX ? (size_t)in->content_length : DSN_HEADERS_MAX;
    char *buf = malloc(len + 1);
    int ret;

    if (buf == NULL) {
        snprintf(error, errsize, "out of memory");
        return -1;
    }
    ret = read_at(in->content_fd, in->content_offset, buf, len, error, errsize);
    if (ret == 0)
        ret = add_orig(p, buf, header_section_len(buf, len), error, errsize);
    free(buf);
    return ret;
}

/* Fills the third part: the whole message, or its header section for
 * RET=HDRS, for delays, and for messages over return_limit. A non-empty
 * part ends in a line end, so its last line survives the delimiter's CR LF. */
static int read_original(const struct dsn_input *in, struct dsn_parts *p, char *error,
                         size_t errsize)
{
    bool want_full = in->action == DSN_ACTION_FAILED && in->ret != SMTP_RET_HDRS;
    size_t added = in->add_headers != NULL ? strlen(in->add_headers) : 0;
    int ret;

    p->full = want_full && in->content_length <= in->return_limit &&
              added <= in->return_limit - in->content_length;
    p->too_big = want_full && !p->full;
    p->ends_lf = true;
    if (add_orig(p, in->add_headers, added, error, errsize) != 0)
        return -1;
    if (p->full)
        ret = read_full(in, p, error, errsize);
    else
        ret = read_headers(in, p, error, errsize);
    if (ret == 0 && !p->ends_lf)
        ret = add_orig(p, "\r\n", 2, error, errsize);
    return ret;
}

/* hex of DSN_RANDOM_BYTES random octets; -1 when OpenSSL has no entropy. */
static int random_hex(char hex[2 * DSN_RANDOM_BYTES + 1])
{
    unsigned char r[DSN_RANDOM_BYTES];
    size_t i;

    if (RAND_bytes(r, sizeof(r)) != 1)
        return -1;
    for (i = 0; i < sizeof(r); i++)
        snprintf(hex + 2 * i, 3, "%02x", r[i]);
    return 0;
}

static bool buf_contains(struct evbuffer *buf, const char *s)
{
    return evbuffer_search(buf, s, strlen(s), NULL).pos != -1;
}

/* A boundary of the queue id and 128 random bits that occurs in no part. */
static int choose_boundary(const struct dsn_input *in, const struct dsn_parts *p, char *b,
                           size_t size)
{
    char qid[DSN_QID_IN_BOUNDARY + 1], hex[2 * DSN_RANDOM_BYTES + 1];
    int i;

    atom_copy(qid, sizeof(qid), in->queue_id, "dsn");
    for (i = 0; i < DSN_BOUNDARY_TRIES; i++) {
        if (random_hex(hex) != 0)
            return -1;
        snprintf(b, size, "=_Postern_%s_%s", qid, hex);
        if (!buf_contains(p->human, b) && !buf_contains(p->report, b) && !buf_contains(p->orig, b))
            return 0;
    }
    return -1;
}

/* The message header section, up to and including the empty line. */
static int put_headers(const struct dsn_input *in, const struct dsn_parts *p, const char *boundary,
                       struct evbuffer *out)
{
    char host[256], qid[128], hex[2 * DSN_RANDOM_BYTES + 1], value[DSN_COMPOSE_MAX];
    time_t now = time(NULL);

    if (random_hex(hex) != 0)
        return -1;
    atom_copy(host, sizeof(host), in->reporting_mta, "localhost");
    atom_copy(qid, sizeof(qid), in->queue_id, "dsn");
    evbuffer_add_printf(out, "From: \"Mail Delivery System\" <MAILER-DAEMON@%s>\r\n", host);
    snprintf(value, sizeof(value), "<%s>", in->sender);
    put_field(out, "To", value);
    put_field(out, "Subject",
              in->action == DSN_ACTION_FAILED ? "Undelivered Mail Returned to Sender"
                                              : "Delayed Mail (still being retried)");
    put_date_field(out, "Date", now);
    evbuffer_add_printf(out, "Message-ID: <%s.dsn.%lld.%s@%s>\r\n", qid, (long long)now, hex, host);
    evbuffer_add_printf(out, "Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n");
    evbuffer_add_printf(out,
                        "Content-Type: multipart/report; report-type=delivery-status;\r\n"
                        "\tboundary=\"%s\"\r\n",
                        boundary);
    if (p->eightbit)
        evbuffer_add_printf(out, "Content-Transfer-Encoding: 8bit\r\n");
    evbuffer_add_printf(out, "\r\nThis is a MIME-encapsulated message.\r\n");
    return 0;
}

/* CR LF "--boundary" CR LF, the part's header section and the body (moved
 * out of body). The leading CR LF belongs to the delimiter (RFC 2046). */
static void put_part(struct evbuffer *out, const char *boundary, const char *type,
                     const char *description, bool eightbit, struct evbuffer *body)
{
    evbuffer_add_printf(out, "\r\n--%s\r\nContent-Type: %s\r\nContent-Description: %s\r\n%s\r\n",
                        boundary, type, description,
                        eightbit ? "Content-Transfer-Encoding: 8bit\r\n" : "");
    evbuffer_add_buffer(out, body);
}

static void put_body(struct evbuffer *out, const struct dsn_parts *p, const char *boundary)
{
    put_part(out, boundary, "text/plain; charset=us-ascii", "Notification", false, p->human);
    put_part(out, boundary, "message/delivery-status", "Delivery report", false, p->report);
    if (p->full)
        put_part(out, boundary, "message/rfc822", "Undelivered Message", p->eightbit, p->orig);
    else
        put_part(out, boundary, "text/rfc822-headers", "Message Headers", p->eightbit, p->orig);
    evbuffer_add_printf(out, "\r\n--%s--\r\n", boundary);
}

/* Builds the three parts and the whole message into msg. */
static int build(const struct dsn_input *in, struct dsn_parts *p, struct evbuffer *msg, char *error,
                 size_t errsize)
{
    char boundary[128];

    if (read_original(in, p, error, errsize) != 0)
        return -1;
    build_human(in, p, p->human);
    build_report(in, p->report);
    if (choose_boundary(in, p, boundary, sizeof(boundary)) != 0 ||
        put_headers(in, p, boundary, msg) != 0) {
        snprintf(error, errsize, "no random octets for the MIME boundary or Message-ID");
        return -1;
    }
    put_body(msg, p, boundary);
    return 0;
}

static void buffer_free(struct evbuffer *buf)
{
    if (buf != NULL)
        evbuffer_free(buf);
}

int dsn_build(const struct dsn_input *in, struct evbuffer *out, char *error, size_t errsize)
{
    struct dsn_parts p = {
        .human = evbuffer_new(), .report = evbuffer_new(), .orig = evbuffer_new()};
    struct evbuffer *msg = evbuffer_new();
    int ret = -1;

    assert(in->reporting_mta != NULL && in->queue_id != NULL && in->sender != NULL);
    for (size_t i = 0; i < in->rcpt_count; i++)
        assert(in->rcpts[i].addr != NULL && in->rcpts[i].status != NULL);
    if (in->sender[0] == '\0')
        snprintf(error, errsize, "null sender: no DSN is sent to <>");
    else if (in->rcpt_count == 0)
        snprintf(error, errsize, "no recipients to report");
    else if (p.human == NULL || p.report == NULL || p.orig == NULL || msg == NULL)
        snprintf(error, errsize, "out of memory");
    else
        ret = build(in, &p, msg, error, errsize);
    if (ret == 0 && evbuffer_add_buffer(out, msg) != 0) {
        snprintf(error, errsize, "out of memory");
        ret = -1;
    }
    buffer_free(p.human);
    buffer_free(p.report);
    buffer_free(p.orig);
    buffer_free(msg);
    return ret;
}

bool dsn_wanted(unsigned notify, enum dsn_action action)
{
    const unsigned listed = SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE | SMTP_NOTIFY_DELAY;
    unsigned bit;

    switch (action) {
    case DSN_ACTION_FAILED:
        bit = SMTP_NOTIFY_FAILURE;
        break;
    case DSN_ACTION_DELAYED:
        bit = SMTP_NOTIFY_DELAY;
        break;
    default:
        return false;
    }
    if (notify & SMTP_NOTIFY_NEVER)
        return false;
    if ((notify & listed) == 0)
        return true;
    return (notify & bit) != 0;
}

/*
 * milter-msg — the spooled message (filter_txn.content_fd at end of
 * message, read with pread) as a milter wants it: header fields one by one
 * (name, and value with its folds as LF, Sendmail's form) and then the body
 * in chunks of at most MILTER_CHUNK_MAX, as it is on disk (CR LF lines).
 *
 * The header section is read whole, up to MILTER_HEADER_MAX; it ends at
 * the empty line, or at the first line that is not a field (no colon, or
 * a continuation with nothing to continue), which then starts the body, as
 * in a message without an empty line. A field longer than a frame can
 * carry is cut. Reads block only on the page cache of a file the worker
 * has just written (the spool's own contract for this descriptor).
 */
#include "config.h"
#include "filters/milter-private.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct milter_msg {
    int fd;
    uint64_t off, end; /* the content in the file */
    char *hdr;         /* the header section as read (+1 for a NUL) */
    size_t hdr_len;    /* the part of hdr made of complete lines */
    size_t pos;        /* where the next field starts */
    bool hdr_done;
    uint64_t body_off;  /* where the body starts in the file */
    char *name, *value; /* the current field */
    uint8_t *chunk;
};

/* Reads at most want bytes at off; returns the count (0 at the end) or -1. */
static ssize_t read_at(int fd, void *buf, size_t want, uint64_t off)
{
    ssize_t n;

    do
        n = pread(fd, buf, want, (off_t)off);
    while (n < 0 && errno == EINTR);
    return n;
}

/* The end of the header section in hdr[0..n): the offset just past the
 * empty line, or 0 if there is none yet. */
static size_t header_end(const char *hdr, size_t n)
{
    if (n >= 2 && hdr[0] == '\r' && hdr[1] == '\n')
        return 2;
    if (n >= 1 && hdr[0] == '\n')
        return 1;
    for (size_t i = 0; i + 1 < n; i++) {
        if (hdr[i] != '\n')
            continue;
        if (hdr[i + 1] == '\n')
            return i + 2;
        if (i + 2 < n && hdr[i + 1] == '\r' && hdr[i + 2] == '\n')
            return i + 3;
    }
    return 0;
}

static int read_header(struct milter_msg *msg, const char **why)
{
    uint64_t total = msg->end - msg->off;
    size_t cap = total < MILTER_HEADER_MAX ? (size_t)total : MILTER_HEADER_MAX;
    size_t n = 0, end = 0;

    if ((msg->hdr = malloc(cap + 1)) == NULL) {
        *why = "out of memory";
        return -1;
    }
    while (n < cap && end == 0) {
        size_t want = cap - n < 65536 ? cap - n : 65536;
        ssize_t got = read_at(msg->fd, msg->hdr + n, want, msg->off + n);
        if (got <= 0) {
            *why = got < 0 ? strerror(errno) : "the message is shorter than the spool says";
            return -1;
        }
        n += (size_t)got;
        end = header_end(msg->hdr, n);
    }
    if (end == 0 && n == total) /* no empty line: everything is header */
        end = n;
    if (end == 0) { /* over the cap: complete lines only */
        while (n > 0 && msg->hdr[n - 1] != '\n')
            n--;
        end = n;
    }
    msg->hdr_len = end;
    msg->hdr[end] = '\0';
    msg->body_off = msg->off + end;
    return 0;
}

struct milter_msg *milter_msg_open(int fd, uint64_t off, uint64_t len, const char **why)
{
    struct milter_msg *msg = calloc(1, sizeof(*msg));

    if (msg == NULL || (msg->chunk = malloc(MILTER_CHUNK_MAX)) == NULL) {
        free(msg);
        *why = "out of memory";
        return NULL;
    }
    msg->fd = fd;
    msg->off = off;
    msg->end = off + len;
    if (read_header(msg, why) < 0) {
        milter_msg_free(&msg);
        return NULL;
    }
    return msg;
}

void milter_msg_free(struct milter_msg **msgp)
{
    struct milter_msg *msg = *msgp;

    if (msg == NULL)
        return;
    *msgp = NULL;
    free(msg->hdr);
    free(msg->name);
    free(msg->value);
    free(msg->chunk);
    free(msg);
}

/* The length of the line at p (up to hdr_len), without its CR LF / LF,
 * and in *next where the next one starts. */
static size_t line_at(const struct milter_msg *msg, size_t p, size_t *next)
{
    const char *nl = memchr(msg->hdr + p, '\n', msg->hdr_len - p);
    size_t len = nl != NULL ? (size_t)(nl - (msg->hdr + p)) : msg->hdr_len - p;

    *next = nl != NULL ? p + len + 1 : msg->hdr_len;
    if (len > 0 && msg->hdr[p + len - 1] == '\r')
        len--;
    return len;
}

/* The header section ends at p: the body starts at the empty line's end,
 * or at p itself for a line that is not a field. */
static int header_done(struct milter_msg *msg, size_t p, bool empty_line, size_t next)
{
    msg->hdr_done = true;
    msg->body_off = msg->off + (empty_line ? next : p);
    return 0;
}

int milter_msg_header(struct milter_msg *msg, bool leadspc, const char **name, const char **value)
{
    size_t p = msg->pos, next, len, colon, nlen, vlen = 0, vmax;
    const char *line;

    if (msg->hdr_done || p >= msg->hdr_len)
        return msg->hdr_done ? 0 : header_done(msg, msg->hdr_len, false, 0);
    line = msg->hdr + p;
    len = line_at(msg, p, &next);
    if (len == 0)
        return header_done(msg, p, true, next);
    {
        const char *c = memchr(line, ':', len);
        colon = c != NULL ? (size_t)(c - line) : len;
    }
    if (line[0] == ' ' || line[0] == '\t' || colon == len || colon == 0)
        return header_done(msg, p, false, next);
    for (nlen = colon; nlen > 0 && (line[nlen - 1] == ' ' || line[nlen - 1] == '\t');)
        nlen--;
    if (nlen == 0 || nlen > 255)
        return header_done(msg, p, false, next);
    free(msg->name);
    free(msg->value);
    msg->value = NULL;
    if ((msg->name = strndup(line, nlen)) == NULL)
        return header_done(msg, p, false, next);
    /* the value: the rest of this line, then each continuation line after
     * an LF; cut so that name and value fit one frame */
    vmax = MILTER_CHUNK_MAX - nlen - 2;
    if ((msg->value = malloc(msg->hdr_len - p + 1)) == NULL)
        return header_done(msg, p, false, next);
    line += colon + 1;
    len -= colon + 1;
    while (!leadspc && len > 0 && (*line == ' ' || *line == '\t'))
        line++, len--;
    for (;;) {
        size_t take = len < vmax - vlen ? len : vmax - vlen;
        memcpy(msg->value + vlen, line, take);
        vlen += take;
        p = next;
        if (p >= msg->hdr_len || (msg->hdr[p] != ' ' && msg->hdr[p] != '\t'))
            break;
        line = msg->hdr + p;
        len = line_at(msg, p, &next);
        if (vlen < vmax)
            msg->value[vlen++] = '\n';
    }
    msg->value[vlen] = '\0';
    msg->pos = p;
    *name = msg->name;
    *value = msg->value;
    return 1;
}

int milter_msg_body(struct milter_msg *msg, const uint8_t **data, size_t *len, const char **why)
{
    uint64_t left;
    size_t want, got = 0;

    if (!msg->hdr_done) { /* the caller skipped the headers (NOHDRS) */
        const char *n, *v;
        while (milter_msg_header(msg, false, &n, &v) == 1)
            ;
    }
    left = msg->end - msg->body_off;
    if (left == 0)
        return 0;
    want = left < MILTER_CHUNK_MAX ? (size_t)left : MILTER_CHUNK_MAX;
    while (got < want) {
        ssize_t n = read_at(msg->fd, msg->chunk + got, want - got, msg->body_off + got);
        if (n <= 0) {
            *why = n < 0 ? strerror(errno) : "the message is shorter than the spool says";
            return -1;
        }
        got += (size_t)n;
    }
    msg->body_off += got;
    *data = msg->chunk;
    *len = got;
    return 1;
}

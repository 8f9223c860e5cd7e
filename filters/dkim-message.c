/*
 * dkim-message — see dkim-message.h. The header section is read in chunks
 * until its empty line, the end of the content or the bound; then split
 * into fields in two passes (count the lines, then fill the array).
 */
#include "config.h"
#include "filters/dkim-message.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <gmime/gmime.h>

#define READ_CHUNK (64 * 1024)
#define TOO_LONG "header section over max_header_size"

/* ---- splitting ---- */

/* Where the header section ends in buf[0..len): *hlen is its length with
 * the CR LF of its last line, *body the offset of the body. 1 = found the
 * empty line, 0 = not in buf. */
static int header_end(const char *buf, size_t len, size_t from, size_t *hlen, size_t *body)
{
    if (len >= 2 && buf[0] == '\r' && buf[1] == '\n') {
        *hlen = 0;
        *body = 2;
        return 1;
    }
    for (size_t i = from; i + 4 <= len; i++) {
        if (buf[i] == '\r' && memcmp(buf + i, "\r\n\r\n", 4) == 0) {
            *hlen = i + 2;
            *body = i + 4;
            return 1;
        }
    }
    return 0;
}

/* The name of the field starting at p (up to end): its length without
 * trailing white space when it is made of ftext and ends in ':', else 0. */
static size_t field_name_len(const char *p, const char *end)
{
    const char *colon = memchr(p, ':', (size_t)(end - p));
    size_t n;

    if (colon == NULL)
        return 0;
    n = (size_t)(colon - p);
    while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
        n--;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c < 33 || c > 126)
            return 0;
    }
    return n;
}

/* The end of the line starting at p (before its CR LF), and *next past it. */
static const char *line_end(const char *p, const char *end, const char **next)
{
    for (const char *q = p; q + 1 < end; q++) {
        if (q[0] == '\r' && q[1] == '\n') {
            *next = q + 2;
            return q;
        }
    }
    *next = end;
    return end;
}

static int split_fields(struct dkim_message *m, const char **why)
{
    const char *p = m->buf, *end = m->buf + m->buf_len, *next;
    size_t lines = 0;

    for (const char *q = p; q < end; q = next, lines++)
        (void)line_end(q, end, &next);
    if (lines == 0)
        return 0;
    if ((m->fields = calloc(lines, sizeof(*m->fields))) == NULL) {
        *why = "out of memory";
        return -1;
    }
    for (; p < end; p = next) {
        const char *e = line_end(p, end, &next);
        if ((p[0] == ' ' || p[0] == '\t') && m->count > 0) {
            struct dkim_field *f = &m->fields[m->count - 1];
            f->len = (size_t)(e - f->text);
            continue;
        }
        m->fields[m->count++] = (struct dkim_field){
            .text = p, .len = (size_t)(e - p), .name_len = field_name_len(p, e)};
    }
    return 0;
}

/* Keeps buf[0..hlen) as the header section and splits it. */
static int finish(struct dkim_message *m, size_t hlen, size_t body, const char **why)
{
    m->buf_len = hlen;
    m->body_off = body;
    return split_fields(m, why);
}

int dkim_message_parse(const char *buf, size_t len, size_t max_header, struct dkim_message *m,
                       const char **why)
{
    size_t hlen, body;

    memset(m, 0, sizeof(*m));
    if (!header_end(buf, len, 0, &hlen, &body)) {
        hlen = len;
        body = len;
    }
    if (hlen > max_header) {
        *why = TOO_LONG;
        return -1;
    }
    if ((m->buf = malloc(hlen + 1)) == NULL) {
        *why = "out of memory";
        return -1;
    }
    memcpy(m->buf, buf, hlen);
    m->buf[hlen] = '\0';
    if (finish(m, hlen, body, why) < 0) {
        dkim_message_free(m);
        return -1;
    }
    return 0;
}

/* Reads up to want octets of the content into m->buf (which has room). */
static int read_more(int fd, uint64_t off, struct dkim_message *m, size_t want)
{
    while (m->buf_len < want) {
        size_t n = want - m->buf_len < READ_CHUNK ? want - m->buf_len : READ_CHUNK;
        ssize_t got = pread(fd, m->buf + m->buf_len, n, (off_t)(off + m->buf_len));
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return -1;
        m->buf_len += (size_t)got;
        return 0;
    }
    return 0;
}

int dkim_message_read(int fd, uint64_t off, uint64_t len, size_t max_header, struct dkim_message *m,
                      const char **why)
{
    /* the empty line may begin right at the bound: 4 more octets show it */
    size_t want = len < (uint64_t)max_header + 4 ? (size_t)len : max_header + 4;
    size_t hlen, body, scanned = 0;

    memset(m, 0, sizeof(*m));
    if ((m->buf = malloc(want + 1)) == NULL) {
        *why = "out of memory";
        return -1;
    }
    for (;;) {
        if (header_end(m->buf, m->buf_len, scanned, &hlen, &body))
            break;
        scanned = m->buf_len > 3 ? m->buf_len - 3 : 0;
        if (m->buf_len == want) {
            hlen = body = m->buf_len;
            break;
        }
        if (read_more(fd, off, m, want) < 0) {
            *why = "cannot read the message";
            dkim_message_free(m);
            return -1;
        }
    }
    if (hlen > max_header || (hlen == want && (uint64_t)want < len)) {
        *why = TOO_LONG;
        dkim_message_free(m);
        return -1;
    }
    m->buf[hlen] = '\0';
    if (finish(m, hlen, body, why) < 0) {
        dkim_message_free(m);
        return -1;
    }
    return 0;
}

void dkim_message_free(struct dkim_message *m)
{
    free(m->fields);
    free(m->buf);
    memset(m, 0, sizeof(*m));
}

/* ---- lookups ---- */

static bool field_is(const struct dkim_field *f, const char *name)
{
    size_t n = strlen(name);

    return f->name_len == n && strncasecmp(f->text, name, n) == 0;
}

size_t dkim_message_count(const struct dkim_message *m, const char *name)
{
    size_t n = 0;

    for (size_t i = 0; i < m->count; i++)
        n += field_is(&m->fields[i], name);
    return n;
}

const struct dkim_field *dkim_message_find(const struct dkim_message *m, const char *name,
                                           size_t index)
{
    for (size_t i = 0; i < m->count; i++) {
        if (field_is(&m->fields[i], name) && index-- == 0)
            return &m->fields[i];
    }
    return NULL;
}

size_t dkim_field_value(const struct dkim_field *f, char *out, size_t size)
{
    const char *p = memchr(f->text, ':', f->len), *end = f->text + f->len;
    size_t o = 0;

    if (size == 0)
        return 0;
    for (p = p != NULL ? p + 1 : end; p < end && o + 1 < size; p++) {
        if (*p == '\r' && p + 1 < end && p[1] == '\n') {
            p++;
            continue;
        }
        if (*p == '\0' || (o == 0 && (*p == ' ' || *p == '\t')))
            continue; /* NUL octets: the value is a C string */
        out[o++] = *p;
    }
    while (o > 0 && (out[o - 1] == ' ' || out[o - 1] == '\t'))
        o--;
    out[o] = '\0';
    return o;
}

bool dkim_domain_ok(const char *s)
{
    size_t label = 0, total = 0;

    for (; *s != '\0'; s++, total++) {
        unsigned char c = (unsigned char)*s;
        if (c == '.') {
            if (label == 0)
                return false;
            label = 0;
            continue;
        }
        if (!isalnum(c) && c != '-' && c != '_')
            return false;
        if (++label > 63)
            return false;
    }
    return label > 0 && total <= DKIM_DOMAIN_MAX;
}

/* ---- the author ---- */

static void gmime_init_once(void)
{
    g_mime_init();
}

void dkim_message_gmime_init(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;

    pthread_once(&once, gmime_init_once);
}

/* The domain of the one mailbox of list, or -1 with *why. */
static int list_domain(InternetAddressList *list, char *domain, const char **why)
{
    InternetAddress *a;
    const char *addr, *at;
    int n = list != NULL ? internet_address_list_length(list) : 0;

    if (n != 1) {
        *why = n == 0 ? "no From: address" : "more than one From: address";
        return -1;
    }
    a = internet_address_list_get_address(list, 0);
    if (!INTERNET_ADDRESS_IS_MAILBOX(a)) {
        *why = "From: address group";
        return -1;
    }
    addr = internet_address_mailbox_get_idn_addr((InternetAddressMailbox *)a);
    at = addr != NULL ? strrchr(addr, '@') : NULL;
    if (at == NULL || !dkim_domain_ok(at + 1)) {
        *why = "From: address without a usable domain";
        return -1;
    }
    for (size_t i = 0; at[1 + i] != '\0'; i++)
        domain[i] = (char)tolower((unsigned char)at[1 + i]);
    domain[strlen(at + 1)] = '\0';
    return 0;
}

int dkim_message_from_domain(const struct dkim_message *m, char *domain, const char **why)
{
    size_t n = dkim_message_count(m, "From");
    const struct dkim_field *f;
    InternetAddressList *list;
    char *value;
    int rc;

    if (n != 1) {
        *why = n == 0 ? "no From: field" : "more than one From: field";
        return -1;
    }
    f = dkim_message_find(m, "From", 0);
    if ((value = malloc(f->len + 1)) == NULL) {
        *why = "out of memory";
        return -1;
    }
    dkim_field_value(f, value, f->len + 1);
    list = value[0] != '\0' ? internet_address_list_parse(NULL, value) : NULL;
    rc = list_domain(list, domain, why);
    if (list != NULL)
        g_object_unref(list);
    free(value);
    return rc;
}

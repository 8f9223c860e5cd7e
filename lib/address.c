/*
 * address — parses SMTP envelope paths (RFC 5321 §4.1.2, RFC 6531) and formats
 * the mailbox back; the contract is in address.h.
 *
 * SECURITY: the input is raw network bytes: any length, any byte values, not
 * NUL-terminated. Every read checks the cursor against the end of the range;
 * each component is scanned (validated, nothing copied) and its length checked
 * against its RFC 5321 §4.5.3.1 bound before it is copied into struct
 * addr_path. Only the caller's pointers and the range it gives are trusted.
 */
#include "config.h"
#include "lib/address.h"

#include <arpa/inet.h>
#include <assert.h>
#include <netinet/in.h>
#include <string.h>

#define ADDR_LABEL_MAX 63        /* octets per domain label, RFC 1035 §2.3.4 */
#define ADDR_LITERAL_TEXT_MAX 64 /* inside "[...]": "IPv6:" and 45 is the most */

struct cursor {
    const unsigned char *s;
    size_t pos, end;
    unsigned flags;
    const char *error; /* the first error found, static text */
};

static int peek(const struct cursor *c)
{
    return c->pos < c->end ? c->s[c->pos] : -1;
}

static int fail(struct cursor *c, const char *error)
{
    if (c->error == NULL)
        c->error = error;
    return -1;
}

static int ascii_lower(int ch)
{
    return ch >= 'A' && ch <= 'Z' ? ch - 'A' + 'a' : ch;
}

static bool is_alnum(int ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
}

/* atext (RFC 5322 §3.2.3) without the RFC 6531 UTF-8 part. */
static bool is_atext(int ch)
{
    return is_alnum(ch) || (ch > 0 && ch < 0x80 && strchr("!#$%&'*+-/=?^_`{|}~", ch) != NULL);
}

/* Length of the well-formed UTF-8 sequence at the cursor, or 0. RFC 3629:
 * no overlong forms, no surrogates, nothing above U+10FFFF, no truncation. */
static size_t utf8_len(const struct cursor *c)
{
    const unsigned char *p = c->s + c->pos;
    size_t n, avail = c->end - c->pos;
    unsigned char lo = 0x80, hi = 0xBF;

    if (p[0] >= 0xC2 && p[0] <= 0xDF)
        n = 2;
    else if (p[0] >= 0xE0 && p[0] <= 0xEF)
        n = 3;
    else if (p[0] >= 0xF0 && p[0] <= 0xF4)
        n = 4;
    else
        return 0;
    if (p[0] == 0xE0)
        lo = 0xA0; /* overlong 3-byte form */
    else if (p[0] == 0xED)
        hi = 0x9F; /* U+D800..U+DFFF */
    else if (p[0] == 0xF0)
        lo = 0x90; /* overlong 4-byte form */
    else if (p[0] == 0xF4)
        hi = 0x8F; /* above U+10FFFF */
    if (avail < n || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++) {
        if (p[i] < 0x80 || p[i] > 0xBF)
            return 0;
    }
    return n;
}

/* Steps over one non-ASCII character (RFC 6531 UTF8-non-ascii). */
static int skip_utf8(struct cursor *c)
{
    size_t n;

    if ((c->flags & ADDR_ALLOW_UTF8) == 0)
        return fail(c, "Non-ASCII address without SMTPUTF8");
    n = utf8_len(c);
    if (n == 0)
        return fail(c, "Invalid UTF-8 in address");
    c->pos += n;
    return 0;
}

/* Dot-string = Atom *("." Atom); stops a few octets past ADDR_LOCAL_MAX. */
static int scan_dot_string(struct cursor *c)
{
    size_t start = c->pos;
    bool need_atom = true;
    int ch;

    while ((ch = peek(c)) >= 0) {
        if (ch >= 0x80) {
            if (skip_utf8(c) < 0)
                return -1;
        } else if (is_atext(ch) || (ch == '.' && !need_atom)) {
            c->pos++;
        } else {
            break;
        }
        need_atom = ch == '.';
        /* nothing is copied yet: overshooting by one character (up to four
         * octets) is harmless */
        if (c->pos - start > ADDR_LOCAL_MAX)
            return fail(c, "Local part too long");
    }
    if (need_atom)
        return fail(c, "Bad local part syntax");
    return 0;
}

/* Quoted-string = DQUOTE *(qtextSMTP / quoted-pairSMTP) DQUOTE, with the
 * cursor on the opening quote; stops a few octets past ADDR_LOCAL_MAX. */
static int scan_quoted(struct cursor *c)
{
    size_t start = c->pos++;
    int ch;

    while ((ch = peek(c)) != '"') {
        if (c->pos - start >= ADDR_LOCAL_MAX)
            return fail(c, "Local part too long");
        if (ch < 0)
            return fail(c, "Unterminated quoted local part");
        if (ch >= 0x80) {
            if (skip_utf8(c) < 0)
                return -1;
            continue;
        }
        if (ch == '\\') {
            c->pos++;
            ch = peek(c);
        }
        if (ch < 32 || ch > 126)
            return fail(c, "Bad character in quoted local part");
        c->pos++;
    }
    c->pos++;
    return 0;
}

/* Local-part into out->local, quotes and backslashes removed. */
static int parse_local(struct cursor *c, struct addr_path *out)
{
    size_t start = c->pos, n = 0;
    const unsigned char *p;

    if (peek(c) == '"') {
        if (scan_quoted(c) < 0)
            return -1;
        out->quoted = true;
    } else if (scan_dot_string(c) < 0) {
        return -1;
    }
    if (c->pos - start > ADDR_LOCAL_MAX)
        return fail(c, "Local part too long");
    p = c->s + start;
    if (!out->quoted) {
        memcpy(out->local, p, c->pos - start);
        out->local[c->pos - start] = '\0';
        return 0;
    }
    for (size_t i = 1; i + 1 < c->pos - start; i++) {
        if (p[i] == '\\')
            i++;
        out->local[n++] = (char)p[i];
    }
    out->local[n] = '\0';
    return 0;
}

/* Why a label is empty: the message a client can act on. */
static const char *empty_label_error(const struct cursor *c, size_t domain_start)
{
    int ch = peek(c);

    if (ch == '.')
        return "Empty label in domain";
    if (c->pos == domain_start)
        return ch < 0 || ch == '>' || ch == ' ' ? "Missing domain" : "Bad domain syntax";
    if (ch < 0 || ch == '>' || ch == ' ' || ch == ',' || ch == ':')
        return "Trailing dot in domain";
    return "Bad domain syntax";
}

/* sub-domain = Let-dig [Ldh-str], or an RFC 6531 U-label (its UTF-8 octets
 * count against the 63-octet bound). */
static int scan_label(struct cursor *c, size_t domain_start)
{
    size_t start = c->pos;
    int ch, last = -1;

    while ((ch = peek(c)) >= 0) {
        if (ch >= 0x80) {
            if (skip_utf8(c) < 0)
                return -1;
        } else if (is_alnum(ch) || (ch == '-' && c->pos > start)) {
            c->pos++;
        } else {
            break;
        }
        last = ch;
        if (c->pos - start > ADDR_LABEL_MAX)
            return fail(c, "Domain label too long");
    }
    if (c->pos == start)
        return fail(c, empty_label_error(c, domain_start));
    if (last == '-')
        return fail(c, "Bad domain syntax");
    return 0;
}

/* Domain = sub-domain *("." sub-domain); stops at most one label past
 * ADDR_DOMAIN_MAX. */
static int scan_domain(struct cursor *c)
{
    size_t start = c->pos;

    for (;;) {
        if (scan_label(c, start) < 0)
            return -1;
        if (c->pos - start > ADDR_DOMAIN_MAX)
            return fail(c, "Domain too long");
        if (peek(c) != '.')
            return 0;
        c->pos++;
    }
}

/* Does the NUL-terminated s start with prefix, ignoring ASCII case? */
static bool ascii_prefix_ci(const char *s, const char *prefix)
{
    for (; *prefix != '\0'; s++, prefix++) {
        if (*s == '\0' || ascii_lower((unsigned char)*s) != ascii_lower((unsigned char)*prefix))
            return false;
    }
    return true;
}

/* address-literal = "[" (IPv4 / "IPv6:" IPv6) "]", the cursor on '['.
 * General-address-literals are refused: no other tag is registered. */
static int scan_literal(struct cursor *c)
{
    char text[ADDR_LITERAL_TEXT_MAX + 1];
    unsigned char bin[sizeof(struct in6_addr)];
    size_t start = ++c->pos, n;
    int ok;

    while (peek(c) >= 0 && peek(c) != ']') {
        if (c->pos - start >= ADDR_LITERAL_TEXT_MAX)
            return fail(c, "Bad address literal");
        c->pos++;
    }
    if (peek(c) != ']')
        return fail(c, "Bad address literal");
    n = c->pos++ - start;
    memcpy(text, c->s + start, n);
    text[n] = '\0';
    if (memchr(text, '\0', n) != NULL)
        return fail(c, "Bad address literal");
    if (ascii_prefix_ci(text, "IPv6:"))
        ok = inet_pton(AF_INET6, text + 5, bin);
    else
        ok = inet_pton(AF_INET, text, bin);
    return ok == 1 ? 0 : fail(c, "Bad address literal");
}

/* A-d-l ":" — "@a.example,@b.example:"; validated, then dropped. */
static int scan_route(struct cursor *c)
{
    for (;;) {
        c->pos++; /* '@' */
        if (scan_domain(c) < 0)
            return -1;
        if (c->pos > ADDR_PATH_MAX)
            return fail(c, "Path too long");
        if (peek(c) == ':') {
            c->pos++;
            return 0;
        }
        if (peek(c) != ',')
            return fail(c, "Bad source route");
        c->pos++;
        if (peek(c) != '@')
            return fail(c, "Bad source route");
    }
}

static bool is_postmaster(const struct addr_path *a)
{
    return !a->quoted && strlen(a->local) == 10 && ascii_prefix_ci(a->local, "postmaster");
}

/* Mailbox = Local-part "@" (Domain / address-literal), or a bare
 * "Postmaster" when the flags allow it. */
static int parse_mailbox(struct cursor *c, struct addr_path *out)
{
    size_t start;

    if (parse_local(c, out) < 0)
        return -1;
    if (peek(c) != '@') {
        if ((c->flags & ADDR_ALLOW_POSTMASTER) == 0 || out->had_route || !is_postmaster(out))
            return fail(c, "Missing domain");
        out->postmaster = true;
        memcpy(out->local, "Postmaster", sizeof("Postmaster"));
        return 0;
    }
    start = ++c->pos;
    if (peek(c) == '[') {
        if (scan_literal(c) < 0)
            return -1;
        out->literal = true;
    } else if (scan_domain(c) < 0) {
        return -1;
    }
    /* scan_domain() and scan_literal() bound this by ADDR_DOMAIN_MAX */
    memcpy(out->domain, c->s + start, c->pos - start);
    out->domain[c->pos - start] = '\0';
    return 0;
}

static int parse_bracketed(struct cursor *c, struct addr_path *out)
{
    c->pos = 1;
    if (peek(c) == '>') {
        if ((c->flags & ADDR_ALLOW_NULL) == 0)
            return fail(c, "Null path not allowed");
        out->null = true;
        c->pos++;
        return 0;
    }
    if (peek(c) == '@') {
        if (scan_route(c) < 0)
            return -1;
        out->had_route = true;
    }
    if (parse_mailbox(c, out) < 0)
        return -1;
    if (peek(c) != '>')
        return fail(c, peek(c) < 0 ? "Missing '>'" : "Bad address syntax");
    c->pos++;
    if (c->pos > ADDR_PATH_MAX)
        return fail(c, "Path too long");
    return 0;
}

/* A mailbox without brackets ends at a space or at the end of the input;
 * its path would be two octets longer. */
static int parse_bare(struct cursor *c, struct addr_path *out)
{
    int ch;

    if (parse_mailbox(c, out) < 0)
        return -1;
    ch = peek(c);
    if (ch >= 0 && ch != ' ')
        return fail(c, "Bad address syntax");
    if (c->pos + 2 > ADDR_PATH_MAX)
        return fail(c, "Path too long");
    return 0;
}

static bool has_8bit(const char *s)
{
    for (; *s != '\0'; s++) {
        if ((unsigned char)*s >= 0x80)
            return true;
    }
    return false;
}

int addr_parse_path(const char *s, size_t len, unsigned flags, struct addr_path *out,
                    size_t *consumed_r, const char **error_r)
{
    struct cursor c = {.s = (const unsigned char *)s, .end = len, .flags = flags};
    int ret;

    assert(s != NULL || len == 0);
    assert(out != NULL && consumed_r != NULL && error_r != NULL);
    memset(out, 0, sizeof(*out));
    *consumed_r = 0;
    if (len > 0 && s[0] == '<')
        ret = parse_bracketed(&c, out);
    else if ((flags & ADDR_ALLOW_NOBRACKET) != 0)
        ret = parse_bare(&c, out);
    else
        ret = fail(&c, "Bad address syntax: missing '<'");
    if (ret < 0) {
        memset(out, 0, sizeof(*out));
        *error_r = c.error;
        return -1;
    }
    out->utf8 = has_8bit(out->local) || has_8bit(out->domain);
    *consumed_r = c.pos;
    return 0;
}

/* A Dot-string needs no quotes; anything else does (RFC 5321 §4.1.2 asks
 * for the unquoted form whenever it is possible). */
static bool local_needs_quotes(const char *local)
{
    size_t n = strlen(local);

    if (n == 0 || local[0] == '.' || local[n - 1] == '.' || strstr(local, "..") != NULL)
        return true;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)local[i];
        if (ch != '.' && ch < 0x80 && !is_atext(ch))
            return true;
    }
    return false;
}

struct sink {
    char *buf;
    size_t size, n;
};

static void sink_put(struct sink *k, char ch)
{
    if (k->n + 1 < k->size)
        k->buf[k->n] = ch;
    k->n++;
}

size_t addr_format(const struct addr_path *a, char *buf, size_t size)
{
    struct sink k = {.buf = buf, .size = size};
    bool quote = !a->null && local_needs_quotes(a->local);

    if (!a->null) {
        if (quote)
            sink_put(&k, '"');
        for (const char *p = a->local; *p != '\0'; p++) {
            if (quote && (*p == '"' || *p == '\\'))
                sink_put(&k, '\\');
            sink_put(&k, *p);
        }
        if (quote)
            sink_put(&k, '"');
        if (a->domain[0] != '\0')
            sink_put(&k, '@');
        for (const char *p = a->domain; *p != '\0'; p++)
            sink_put(&k, *p);
    }
    if (size > 0)
        buf[k.n < size ? k.n : size - 1] = '\0';
    return k.n;
}

bool addr_local_has_routing(const struct addr_path *a)
{
    return !a->null && strpbrk(a->local, "%!@") != NULL;
}

bool addr_domain_equal(const char *a, const char *b)
{
    while (*a != '\0' && ascii_lower((unsigned char)*a) == ascii_lower((unsigned char)*b)) {
        a++;
        b++;
    }
    return ascii_lower((unsigned char)*a) == ascii_lower((unsigned char)*b);
}

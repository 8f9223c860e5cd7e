/*
 * attachments-scan — the bounded pre-scanner (see attachments.h): one pass
 * over the raw message that follows its MIME structure the way GMime 3.2's
 * parser does, counting what GMime would build, and stops at the first
 * bound crossed, before GMime parses anything.
 *
 * What it mirrors of GMime: a header section runs to the first empty line
 * (lines that are no header field are part of it); the last Content-Type
 * field counts, and without one a part is text/plain, or message/rfc822
 * inside a multipart/digest; a multipart nests only when it has a
 * boundary; a message/rfc822 (rfc2822, global, news) part nests unless its
 * first Content-Transfer-Encoding is base64, quoted-printable or uuencode,
 * and inside a multipart an embedded message whose first line is a
 * boundary is empty; a delimiter line is "--" + boundary, or "--" +
 * boundary + "--" for the last, followed by nothing but white space (a
 * trailing CR dropped), checked innermost boundary first and, per
 * boundary, the closing form first; a delimiter of an outer boundary closes
 * the inner multiparts. Where it reads something differently from GMime
 * (an RFC 2231 boundary*0 parameter, comments in odd places), the walk over
 * GMime's tree still checks depth and parts (attachments-mime.c).
 *
 * Counts: the message is entity 1 at depth 0; each part after a delimiter
 * and each embedded message's body is one more entity, one level below its
 * container. Header fields: lines of a section that do not start with a
 * space or tab; octets: the whole section with its line breaks.
 *
 * SECURITY: reads untrusted input; never reads past len, never buffers more
 * than one boundary per open multipart (each at most a header section);
 * linear time apart from delimiter lines, which cost at most max_depth
 * comparisons each. Fuzzed (tests/fuzz/fuzz-attachments.c).
 */
#include "config.h"
#include "filters/attachments.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct scan_bound {
    char *text; /* "--boundary" */
    size_t len;
    unsigned depth; /* of the multipart */
    bool digest;
};

struct scan {
    const char *msg;
    size_t len, pos;
    const struct att_limits *lim;
    struct scan_bound *stack;
    size_t top; /* boundaries open */
    unsigned parts;
    char *why;
    size_t whysize;
};

/* What one header section says about its entity. */
struct scan_head {
    size_t ctype_at, ctype_end; /* the last Content-Type field (0, 0: none) */
    size_t cte_at, cte_end;     /* the first Content-Transfer-Encoding field */
};

/* The line at pos: its length without the line break; *next = after it. */
static size_t line_at(const struct scan *s, size_t pos, size_t *next)
{
    const char *nl = memchr(s->msg + pos, '\n', s->len - pos);
    size_t end = nl != NULL ? (size_t)(nl - s->msg) : s->len;

    *next = nl != NULL ? end + 1 : s->len;
    if (end > pos && s->msg[end - 1] == '\r')
        end--;
    return end - pos;
}

static bool is_lwsp(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Whether p[0..n) is text[0..tlen) followed by white space only. */
static bool is_delimiter(const char *p, size_t n, const char *text, size_t tlen)
{
    if (n < tlen || (tlen > 0 && memcmp(p, text, tlen) != 0))
        return false;
    for (size_t i = tlen; i < n; i++) {
        if (!is_lwsp(p[i]))
            return false;
    }
    return true;
}

/* The open boundary that line p[0..n) delimits (innermost first), or -1;
 * *final = it is the closing delimiter. */
static long match_delimiter(const struct scan *s, const char *p, size_t n, bool *final)
{
    if (n < 2 || p[0] != '-' || p[1] != '-')
        return -1;
    for (size_t i = s->top; i-- > 0;) {
        const struct scan_bound *b = &s->stack[i];
        if (n >= b->len + 2 && memcmp(p, b->text, b->len) == 0 && p[b->len] == '-' &&
            p[b->len + 1] == '-' && is_delimiter(p + b->len + 2, n - b->len - 2, "", 0)) {
            *final = true;
            return (long)i;
        }
        if (is_delimiter(p, n, b->text, b->len)) {
            *final = false;
            return (long)i;
        }
    }
    return -1;
}

static int __attribute__((format(printf, 2, 3))) over(struct scan *s, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(s->why, s->whysize, fmt, ap);
    va_end(ap);
    return 1;
}

/* Whether the field at p[0..n) is called name (blanks allowed before ':'). */
static bool field_is(const char *p, size_t n, const char *name)
{
    size_t k = strlen(name), i;

    if (n <= k || strncasecmp(p, name, k) != 0)
        return false;
    for (i = k; i < n && (p[i] == ' ' || p[i] == '\t'); i++)
        ;
    return i < n && p[i] == ':';
}

/* Reads the header section at s->pos up to and past its empty line. */
static int read_head(struct scan *s, struct scan_head *h)
{
    size_t fields = 0, octets = 0, field_at = 0, next;
    bool in_ctype = false, in_cte = false;

    memset(h, 0, sizeof(*h));
    while (s->pos < s->len) {
        size_t n = line_at(s, s->pos, &next);
        const char *p = s->msg + s->pos;
        octets += next - s->pos;
        if (octets > s->lim->max_header_size)
            return over(s, "a header section over %llu octets",
                        (unsigned long long)s->lim->max_header_size);
        if (n == 0) {
            s->pos = next;
            break;
        }
        if (p[0] != ' ' && p[0] != '\t') {
            if (++fields > s->lim->max_headers)
                return over(s, "more than %u header fields in one section", s->lim->max_headers);
            field_at = s->pos;
            in_ctype = field_is(p, n, "Content-Type");
            in_cte = h->cte_end == 0 && field_is(p, n, "Content-Transfer-Encoding");
            if (in_ctype)
                h->ctype_at = field_at;
        }
        if (in_ctype)
            h->ctype_end = s->pos + n;
        if (in_cte) {
            h->cte_at = field_at;
            h->cte_end = s->pos + n;
        }
        s->pos = next;
    }
    return 0;
}

/* ---- the Content-Type field's value, read through its folds ---- */

struct cursor {
    const char *p, *end;
};

static int cur_peek(struct cursor *c)
{
    while (c->p < c->end && (*c->p == '\r' || *c->p == '\n'))
        c->p++;
    return c->p < c->end ? (unsigned char)*c->p : -1;
}

static void cur_skip_cfws(struct cursor *c)
{
    int ch, depth = 0;

    while ((ch = cur_peek(c)) != -1) {
        if (depth > 0 && ch == '\\') {
            c->p++;
            if (cur_peek(c) != -1)
                c->p++;
            continue;
        }
        if (ch == '(')
            depth++;
        else if (ch == ')' && depth > 0)
            depth--;
        else if (depth == 0 && ch != ' ' && ch != '\t')
            return;
        c->p++;
    }
}

static bool is_tspecial(int ch)
{
    return ch <= ' ' || ch >= 127 || strchr("()<>@,;:\\\"/[]?=", ch) != NULL;
}

/* A token into out (cut to size); false when there is none. */
static bool cur_token(struct cursor *c, char *out, size_t size)
{
    size_t o = 0;
    int ch;

    while ((ch = cur_peek(c)) != -1 && !is_tspecial(ch)) {
        if (o + 1 < size)
            out[o++] = (char)ch;
        c->p++;
    }
    out[o] = '\0';
    return o > 0;
}

/* Reads a parameter value (quoted-string or token); with out, copies it
 * there after "--" (out has room for the rest of the field and 3 more). */
static size_t cur_value(struct cursor *c, char *out)
{
    size_t o = 2;
    int ch;

    if (cur_peek(c) == '"') {
        c->p++;
        while ((ch = cur_peek(c)) != -1 && ch != '"') {
            if (ch == '\\') {
                c->p++;
                if ((ch = cur_peek(c)) == -1)
                    break;
            }
            if (out != NULL)
                out[o] = (char)ch;
            o++;
            c->p++;
        }
        if (ch == '"')
            c->p++;
    } else {
        while ((ch = cur_peek(c)) != -1 && ch != ';' && ch != ' ' && ch != '\t') {
            if (out != NULL)
                out[o] = (char)ch;
            o++;
            c->p++;
        }
    }
    if (out != NULL) {
        out[0] = out[1] = '-';
        out[o] = '\0';
    }
    return o;
}

/* The entity's type from its Content-Type (false when absent or broken),
 * and its boundary parameter as "--boundary" (NULL when none). */
struct scan_type {
    char type[32], subtype[32];
    char *boundary;
    size_t boundary_len;
};

/* The boundary parameter among the parameters at c, into t. Returns 0,
 * or -1 when out of memory. */
static int find_boundary(struct cursor *c, struct scan_type *t)
{
    char name[32];

    for (;;) {
        cur_skip_cfws(c);
        if (cur_peek(c) != ';')
            return 0;
        c->p++;
        cur_skip_cfws(c);
        if (!cur_token(c, name, sizeof(name)))
            return 0;
        cur_skip_cfws(c);
        if (cur_peek(c) != '=')
            return 0;
        c->p++;
        cur_skip_cfws(c);
        if (strcasecmp(name, "boundary") != 0) {
            cur_value(c, NULL);
            continue;
        }
        if ((t->boundary = malloc((size_t)(c->end - c->p) + 3)) == NULL)
            return -1;
        t->boundary_len = cur_value(c, t->boundary);
        if (t->boundary_len == 2) { /* boundary="" is none */
            free(t->boundary);
            t->boundary = NULL;
        }
        return 0;
    }
}

static int parse_ctype(const struct scan *s, const struct scan_head *h, struct scan_type *t,
                       bool *found)
{
    struct cursor c;

    *found = false;
    if (h->ctype_end == 0)
        return 0;
    c = (struct cursor){.p = memchr(s->msg + h->ctype_at, ':', h->ctype_end - h->ctype_at),
                        .end = s->msg + h->ctype_end};
    if (c.p == NULL)
        return 0;
    c.p++;
    cur_skip_cfws(&c);
    if (!cur_token(&c, t->type, sizeof(t->type)))
        return 0;
    cur_skip_cfws(&c);
    if (cur_peek(&c) != '/')
        return 0;
    c.p++;
    cur_skip_cfws(&c);
    if (!cur_token(&c, t->subtype, sizeof(t->subtype)))
        return 0;
    *found = true;
    return find_boundary(&c, t);
}

/* Whether the first Content-Transfer-Encoding hides an embedded message. */
static bool cte_encoded(const struct scan *s, const struct scan_head *h)
{
    static const char *const encoded[] = {"base64", "quoted-printable", "uuencode", "x-uuencode",
                                          "x-uue"};
    const char *p, *end = s->msg + h->cte_end;
    size_t n;

    if (h->cte_end == 0 || (p = memchr(s->msg + h->cte_at, ':', h->cte_end - h->cte_at)) == NULL)
        return false;
    for (p++; p < end && is_lwsp(*p); p++)
        ;
    for (n = 0; p + n < end && !is_lwsp(p[n]); n++)
        ;
    for (size_t i = 0; i < sizeof(encoded) / sizeof(encoded[0]); i++) {
        if (n == strlen(encoded[i]) && strncasecmp(p, encoded[i], n) == 0)
            return true;
    }
    return false;
}

static bool is_rfc822(const char *subtype)
{
    return strcasecmp(subtype, "rfc822") == 0 || strcasecmp(subtype, "rfc2822") == 0 ||
           strcasecmp(subtype, "global") == 0 || strcasecmp(subtype, "news") == 0;
}

/* Whether the line at s->pos is a delimiter of an open boundary. */
static bool at_delimiter(const struct scan *s)
{
    size_t next, n;
    bool final;

    if (s->pos >= s->len)
        return false;
    n = line_at(s, s->pos, &next);
    return match_delimiter(s, s->msg + s->pos, n, &final) >= 0;
}

/* An entity starts at s->pos at depth: its header section, and what it
 * opens (a multipart's boundary, an embedded message's own entity). */
static int enter_entity(struct scan *s, unsigned depth, bool digest)
{
    for (;;) {
        struct scan_head h;
        struct scan_type t = {.boundary = NULL};
        bool found;
        int r;

        if (depth > s->lim->max_depth)
            return over(s, "nesting depth over %u", s->lim->max_depth);
        if ((r = read_head(s, &h)) != 0 || (r = parse_ctype(s, &h, &t, &found)) != 0) {
            free(t.boundary);
            return r;
        }
        if (!found)
            snprintf(t.type, sizeof(t.type), "%s", digest ? "message" : "text");
        if (!found)
            snprintf(t.subtype, sizeof(t.subtype), "%s", digest ? "rfc822" : "plain");
        if (strcasecmp(t.type, "multipart") == 0) {
            if (t.boundary != NULL)
                s->stack[s->top++] =
                    (struct scan_bound){.text = t.boundary,
                                        .len = t.boundary_len,
                                        .depth = depth,
                                        .digest = strcasecmp(t.subtype, "digest") == 0};
            return 0;
        }
        free(t.boundary);
        if (strcasecmp(t.type, "message") != 0 || !is_rfc822(t.subtype) || cte_encoded(s, &h))
            return 0;
        if (s->top > 0 && at_delimiter(s))
            return 0; /* an empty embedded message */
        if (++s->parts > s->lim->max_parts)
            return over(s, "more than %u MIME parts", s->lim->max_parts);
        depth++;
        digest = false;
    }
}

static void pop_to(struct scan *s, size_t top)
{
    while (s->top > top)
        free(s->stack[--s->top].text);
}

static int scan_body(struct scan *s)
{
    size_t next;
    int r;

    while (s->pos < s->len) {
        size_t n = line_at(s, s->pos, &next);
        bool final;
        long i = s->top > 0 ? match_delimiter(s, s->msg + s->pos, n, &final) : -1;
        s->pos = next;
        if (i < 0)
            continue;
        pop_to(s, (size_t)i + (final ? 0 : 1));
        if (final)
            continue;
        if (++s->parts > s->lim->max_parts)
            return over(s, "more than %u MIME parts", s->lim->max_parts);
        if ((r = enter_entity(s, s->stack[i].depth + 1, s->stack[i].digest)) != 0)
            return r;
    }
    return 0;
}

int att_prescan(const char *msg, size_t len, const struct att_limits *lim, char *why,
                size_t whysize)
{
    struct scan s = {
        .msg = msg, .len = len, .lim = lim, .parts = 1, .why = why, .whysize = whysize};
    int r;

    if (whysize > 0)
        why[0] = '\0';
    /* a multipart opens at most one boundary per level, levels 0..max_depth */
    if ((s.stack = calloc((size_t)lim->max_depth + 1, sizeof(*s.stack))) == NULL)
        return -1;
    r = enter_entity(&s, 0, false);
    if (r == 0)
        r = scan_body(&s);
    pop_to(&s, 0);
    free(s.stack);
    return r;
}

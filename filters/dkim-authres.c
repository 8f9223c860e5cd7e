/*
 * dkim-authres — see dkim-authres.h. Tokens and quoted strings are RFC
 * 2045's (RFC 8601 §2.2 "value"); CFWS is RFC 5322's, comments nested to
 * any depth the input allows.
 */
#include "config.h"
#include "filters/dkim-authres.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define FOLD ";\r\n\t"

/* RFC 2045 token characters: printable ASCII but SPACE and tspecials. */
static bool token_char(unsigned char c)
{
    return c > 32 && c < 127 && strchr("()<>@,;:\\\"/[]?=", c) == NULL;
}

static bool is_token(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s != '\0'; s++) {
        if (!token_char((unsigned char)*s))
            return false;
    }
    return true;
}

void authres_init(struct authres *a, const char *authserv_id)
{
    a->results = 0;
    a->len = (size_t)snprintf(a->buf, sizeof(a->buf), "%s", authserv_id);
    if (a->len >= sizeof(a->buf))
        a->len = sizeof(a->buf) - 1;
}

/* Appends text to out[*o..size) unless it does not fit (then *fits = false). */
static void put(char *out, size_t size, size_t *o, bool *fits, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void put(char *out, size_t size, size_t *o, bool *fits, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (!*fits)
        return;
    va_start(ap, fmt);
    n = vsnprintf(out + *o, size - *o, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= size - *o)
        *fits = false;
    else
        *o += (size_t)n;
}

/* A property value: a token as is, else a quoted string of its printable
 * characters (quotes and backslashes escaped). */
static void put_value(char *out, size_t size, size_t *o, bool *fits, const char *v)
{
    if (is_token(v)) {
        put(out, size, o, fits, "%s", v);
        return;
    }
    put(out, size, o, fits, "\"");
    for (; *v != '\0'; v++) {
        unsigned char c = (unsigned char)*v;
        if (c < 32 || c > 126)
            continue;
        put(out, size, o, fits, c == '"' || c == '\\' ? "\\%c" : "%c", c);
    }
    put(out, size, o, fits, "\"");
}

/* A comment's text: printable ASCII without ( ) \ . */
static void put_comment(char *out, size_t size, size_t *o, bool *fits, const char *c)
{
    put(out, size, o, fits, " (");
    for (; *c != '\0'; c++) {
        unsigned char ch = (unsigned char)*c;
        if (ch >= 32 && ch < 127 && ch != '(' && ch != ')' && ch != '\\')
            put(out, size, o, fits, "%c", ch);
    }
    put(out, size, o, fits, ")");
}

void authres_add(struct authres *a, const char *method, const char *result, const char *comment,
                 const struct authres_prop *props, size_t n)
{
    char one[FILTER_HEADER_VALUE_MAX + 1];
    size_t o = 0;
    bool fits = true;

    put(one, sizeof(one), &o, &fits, FOLD "%s=%s", method, result);
    if (comment != NULL && comment[0] != '\0')
        put_comment(one, sizeof(one), &o, &fits, comment);
    for (size_t i = 0; i < n; i++) {
        if (props[i].value == NULL || props[i].value[0] == '\0')
            continue;
        put(one, sizeof(one), &o, &fits, " %s=", props[i].name);
        put_value(one, sizeof(one), &o, &fits, props[i].value);
    }
    if (!fits || a->len + o >= sizeof(a->buf))
        return;
    memcpy(a->buf + a->len, one, o + 1);
    a->len += o;
    a->results++;
}

void authres_add_dkim(struct authres *a, const struct dkim_sig_result *r)
{
    const struct authres_prop props[] = {
        {"header.d", r->domain}, {"header.s", r->selector}, {"header.b", r->b}};

    authres_add(a, "dkim", dkim_outcome_name(r->outcome), r->why, props, 3);
}

const char *authres_value(struct authres *a)
{
    if (a->results == 0 && a->len + 6 < sizeof(a->buf)) {
        memcpy(a->buf + a->len, "; none", 7);
        a->len += 6;
        a->results = 1;
    }
    return a->buf;
}

/* ---- the parser ---- */

/* Skips white space, folds and (nested) comments; NULL when a comment
 * never closes. */
static const char *skip_cfws(const char *p)
{
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
            p++;
        if (*p != '(')
            return p;
        for (int depth = 0;; p++) {
            if (*p == '\0')
                return NULL; /* never closed */
            if (*p == '\\' && p[1] != '\0') {
                p++;
            } else if (*p == '(') {
                depth++;
            } else if (*p == ')' && --depth == 0) {
                p++;
                break;
            }
        }
    }
}

int authres_authserv_id(const char *value, char *id, size_t size)
{
    const char *p = skip_cfws(value);
    size_t o = 0;

    if (p == NULL || size == 0)
        return -1;
    if (*p == '"') {
        for (p++; *p != '"'; p++) {
            if (*p == '\0')
                return -1;
            if (*p == '\\' && p[1] != '\0')
                p++;
            if (o + 1 >= size)
                return -1;
            id[o++] = *p;
        }
    } else {
        for (; token_char((unsigned char)*p); p++) {
            if (o + 1 >= size)
                return -1;
            id[o++] = *p;
        }
    }
    id[o] = '\0';
    return o > 0 ? 0 : -1;
}

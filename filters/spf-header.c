/*
 * spf-header — the spf filter's texts (spf.h): result and symbol names,
 * the domain-name check, text cleaned for replies and headers, and the
 * Received-SPF field of RFC 7208 §9.1.
 *
 * Pure functions, called on the loop and on pool threads. Everything they
 * format may come from the client or from DNS: it is bounded by the output
 * size, non-printable octets become '?', and comments and quoted-strings
 * escape what would end them.
 */
#include "config.h"
#include "filters/spf.h"

#include <stdio.h>
#include <string.h>

#define FOLD_COLUMNS 78
#define FIELD_NAME_COLUMNS 14 /* "Received-SPF: " */

static const char *const outcome_names[SPF_OUTCOMES] = {
    [SPF_OUT_PASS] = "pass",           [SPF_OUT_FAIL] = "fail",
    [SPF_OUT_SOFTFAIL] = "softfail",   [SPF_OUT_NEUTRAL] = "neutral",
    [SPF_OUT_NONE] = "none",           [SPF_OUT_TEMPERROR] = "temperror",
    [SPF_OUT_PERMERROR] = "permerror",
};

static const char *const symbols[2][SPF_OUTCOMES] = {
    [SPF_SCOPE_HELO] = {
        [SPF_OUT_PASS] = "SPF_HELO_PASS",           [SPF_OUT_FAIL] = "SPF_HELO_FAIL",
        [SPF_OUT_SOFTFAIL] = "SPF_HELO_SOFTFAIL",   [SPF_OUT_NEUTRAL] = "SPF_HELO_NEUTRAL",
        [SPF_OUT_NONE] = "SPF_HELO_NONE",           [SPF_OUT_TEMPERROR] = "SPF_HELO_TEMPERROR",
        [SPF_OUT_PERMERROR] = "SPF_HELO_PERMERROR",
    },
    [SPF_SCOPE_MAILFROM] = {
        [SPF_OUT_PASS] = "SPF_PASS",           [SPF_OUT_FAIL] = "SPF_FAIL",
        [SPF_OUT_SOFTFAIL] = "SPF_SOFTFAIL",   [SPF_OUT_NEUTRAL] = "SPF_NEUTRAL",
        [SPF_OUT_NONE] = "SPF_NONE",           [SPF_OUT_TEMPERROR] = "SPF_TEMPERROR",
        [SPF_OUT_PERMERROR] = "SPF_PERMERROR",
    },
};

const char *spf_outcome_name(enum spf_outcome o)
{
    return (unsigned)o < SPF_OUTCOMES ? outcome_names[o] : "permerror";
}

const char *spf_symbol(enum spf_scope scope, enum spf_outcome o)
{
    if ((unsigned)o >= SPF_OUTCOMES)
        o = SPF_OUT_PERMERROR;
    return symbols[scope == SPF_SCOPE_HELO ? SPF_SCOPE_HELO : SPF_SCOPE_MAILFROM][o];
}

bool spf_domain_ok(const char *name)
{
    size_t len = strnlen(name, 255), label = 0, labels = 0;

    if (len > 0 && name[len - 1] == '.')
        len--;
    if (len == 0 || len > 253)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        if (c == '.') {
            if (label == 0)
                return false;
            label = 0;
            continue;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return false;
        if (label++ == 0)
            labels++;
        if (label > 63)
            return false;
    }
    return label > 0 && labels >= 2;
}

void spf_clean_text(const char *text, char *out, size_t size)
{
    size_t o = 0;
    bool space = false;

    if (size == 0)
        return;
    for (const unsigned char *p = (const unsigned char *)text; *p != '\0' && o + 1 < size; p++) {
        if (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') {
            space = o > 0;
            continue;
        }
        if (space) {
            if (o + 2 >= size)
                break;
            out[o++] = ' ';
        }
        space = false;
        out[o++] = *p > 0x20 && *p < 0x7f ? (char)*p : '?';
    }
    out[o] = '\0';
}

/* ---- Received-SPF ---- */

/* The field's value as it is written: words separated by a space, or by a
 * fold when the line would pass FOLD_COLUMNS. */
struct field {
    char *out;
    size_t size, len, col;
    bool full;
};

static void put(struct field *f, const char *s, size_t n)
{
    if (f->full || n >= f->size - f->len) {
        f->full = true;
        return;
    }
    memcpy(f->out + f->len, s, n);
    f->len += n;
    f->out[f->len] = '\0';
}

static void put_word(struct field *f, const char *w, size_t n)
{
    if (n == 0)
        return;
    if (f->len > 0 && f->col + 1 + n > FOLD_COLUMNS) {
        put(f, "\r\n\t", 3);
        f->col = 1;
    } else if (f->len > 0) {
        put(f, " ", 1);
        f->col++;
    }
    put(f, w, n);
    f->col += n;
}

/* Text split at its spaces into words. */
static void put_words(struct field *f, const char *text)
{
    while (*text != '\0') {
        size_t n = strcspn(text, " ");
        put_word(f, text, n);
        text += n;
        text += strspn(text, " ");
    }
}

/* Text for inside a comment: printable, '(' ')' '\' escaped, no spaces
 * (they would be folding points inside one value). */
static void comment_text(const char *in, char *out, size_t size)
{
    size_t o = 0;

    for (const unsigned char *p = (const unsigned char *)in; *p != '\0' && o + 3 < size; p++) {
        if (*p == '(' || *p == ')' || *p == '\\')
            out[o++] = '\\';
        out[o++] = *p > 0x20 && *p < 0x7f ? (char)*p : '?';
    }
    out[o] = '\0';
}

static bool is_atext(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

/* RFC 5322 dot-atom: atext runs joined by single dots. */
static bool is_dot_atom(const char *s)
{
    if (*s == '\0' || *s == '.')
        return false;
    for (; *s != '\0'; s++) {
        if (*s == '.' && (s[1] == '.' || s[1] == '\0'))
            return false;
        if (*s != '.' && !is_atext(*s))
            return false;
    }
    return true;
}

/* "key=value;" with value a dot-atom or a quoted-string. */
static void put_pair(struct field *f, const char *key, const char *value)
{
    char w[SPF_IDENTITY_MAX * 2 + 64];
    size_t o = (size_t)snprintf(w, sizeof(w), "%s=", key);
    bool quote = !is_dot_atom(value);

    if (quote)
        w[o++] = '"';
    for (const unsigned char *p = (const unsigned char *)value; *p != '\0' && o + 4 < sizeof(w);
         p++) {
        if (quote && (*p == '"' || *p == '\\'))
            w[o++] = '\\';
        w[o++] = *p >= 0x20 && *p < 0x7f ? (char)*p : '?';
    }
    if (quote)
        w[o++] = '"';
    w[o++] = ';';
    put_word(f, w, o);
}

/* The comment (§9.1's examples) as "(receiver: text)". */
static void comment(const struct spf_report *r, char *out, size_t size)
{
    char rcv[300], who[SPF_IDENTITY_MAX * 2], ip[100];

    comment_text(r->receiver, rcv, sizeof(rcv));
    comment_text(r->identity, who, sizeof(who));
    comment_text(r->client_ip, ip, sizeof(ip));
    switch (r->outcome) {
    case SPF_OUT_PASS:
        snprintf(out, size, "(%s: domain of %s designates %s as permitted sender)", rcv, who, ip);
        break;
    case SPF_OUT_FAIL:
        snprintf(out, size, "(%s: domain of %s does not designate %s as permitted sender)", rcv,
                 who, ip);
        break;
    case SPF_OUT_SOFTFAIL:
        snprintf(out, size,
                 "(%s: domain of transitioning %s does not designate %s as permitted sender)", rcv,
                 who, ip);
        break;
    case SPF_OUT_NEUTRAL:
        snprintf(out, size, "(%s: %s is neither permitted nor denied by domain of %s)", rcv, ip,
                 who);
        break;
    case SPF_OUT_NONE:
        snprintf(out, size, "(%s: domain of %s does not designate permitted sender hosts)", rcv,
                 who);
        break;
    case SPF_OUT_TEMPERROR:
        snprintf(out, size, "(%s: temporary error in processing during lookup of %s)", rcv, who);
        break;
    default:
        snprintf(out, size, "(%s: permanent error in processing domain of %s)", rcv, who);
        break;
    }
}

int spf_received_value(const struct spf_report *r, char *out, size_t size)
{
    struct field f = {.out = out, .size = size, .col = FIELD_NAME_COLUMNS};
    char text[SPF_IDENTITY_MAX * 3];
    bool error = r->outcome == SPF_OUT_TEMPERROR || r->outcome == SPF_OUT_PERMERROR;

    if (size == 0)
        return -1;
    out[0] = '\0';
    put_word(&f, spf_outcome_name(r->outcome), strlen(spf_outcome_name(r->outcome)));
    comment(r, text, sizeof(text));
    put_words(&f, text);
    put_pair(&f, "client-ip", r->client_ip);
    put_pair(&f, "envelope-from", r->identity);
    if (r->helo != NULL && r->helo[0] != '\0')
        put_pair(&f, "helo", r->helo);
    if (error && r->problem != NULL && r->problem[0] != '\0')
        put_pair(&f, "problem", r->problem);
    put_pair(&f, "receiver", r->receiver);
    put_pair(&f, "identity", r->scope == SPF_SCOPE_HELO ? "helo" : "mailfrom");
    return f.full ? -1 : 0;
}

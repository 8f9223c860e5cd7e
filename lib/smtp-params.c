/*
 * smtp-params — parses the ESMTP parameters of MAIL FROM and RCPT TO and
 * decodes/encodes xtext; the contract is in smtp-params.h.
 *
 * SECURITY: the text comes from an untrusted client and is not NUL-terminated.
 * Each "KEY[=VALUE]" is sliced in place, its keyword looked up in a table of
 * the parameters this module knows and checked against what the session
 * offered; only then is the value checked and decoded, into a fixed-size field
 * whose bound is checked before each byte is written. Reply texts never carry
 * client bytes except a keyword already checked to be letters, digits and '-'
 * and cut to KEYWORD_ECHO_MAX characters. Trusts the caller's pointers and the
 * offer it passes.
 */
#include "config.h"
#include "lib/smtp-params.h"

#include <assert.h>
#include <limits.h>
#include <string.h>

#include "lib/address.h"

#define KEYWORD_ECHO_MAX 32
#define N_ELEMENTS(a) (sizeof(a) / sizeof((a)[0]))

struct param {
    const char *key, *value; /* value is NULL when there was no '=' */
    size_t key_len, value_len;
};

typedef int param_fn(const struct param *p, const struct smtp_params_offer *offer, void *out,
                     struct smtp_status *err);

struct param_def {
    const char *name;
    size_t gate; /* offset of the bool in struct smtp_params_offer that enables it */
    param_fn *fn;
};

static int ascii_lower(int ch)
{
    return ch >= 'A' && ch <= 'Z' ? ch - 'A' + 'a' : ch;
}

/* Case-insensitive: is s[0..n) the whole of word? */
static bool ascii_ieq(const char *s, size_t n, const char *word)
{
    size_t i;

    for (i = 0; i < n && word[i] != '\0'; i++) {
        if (ascii_lower((unsigned char)s[i]) != ascii_lower((unsigned char)word[i]))
            return false;
    }
    return i == n && word[i] == '\0';
}

static bool is_keychar(int ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '-';
}

/* esmtp-value = 1*(%d33-60 / %d62-126 / UTF8-non-ascii); each keyword's own
 * check decides what non-ASCII bytes mean. */
static bool is_valuechar(int ch)
{
    return (ch >= 33 && ch <= 126 && ch != '=') || ch >= 0x80;
}

static int hexval(int ch, bool upper_only)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    if (!upper_only && ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    return -1;
}

static int syntax_error(struct smtp_status *err)
{
    smtp_status_set(err, 501, "5.5.4", "Syntax error in parameters");
    return -1;
}

static int bad_value(struct smtp_status *err, const char *name)
{
    smtp_status_set(err, 501, "5.5.4", "Bad %s parameter value", name);
    return -1;
}

/* Slices the next "KEY[=VALUE]" at *pos after any spaces. Returns 1 with *p
 * set, 0 at the end of the text, -1 with *err on bad syntax. */
static int next_param(const char *s, size_t len, size_t *pos, struct param *p,
                      struct smtp_status *err)
{
    size_t i = *pos;

    while (i < len && s[i] == ' ')
        i++;
    if ((*pos = i) == len)
        return 0;
    p->key = s + i;
    while (i < len && is_keychar((unsigned char)s[i]))
        i++;
    p->key_len = (size_t)(s + i - p->key);
    if (p->key_len == 0 || p->key[0] == '-')
        return syntax_error(err);
    p->value = NULL;
    p->value_len = 0;
    if (i < len && s[i] == '=') {
        p->value = s + ++i;
        while (i < len && is_valuechar((unsigned char)s[i]))
            i++;
        p->value_len = (size_t)(s + i - p->value);
        if (p->value_len == 0)
            return syntax_error(err);
    }
    if (i < len && s[i] != ' ')
        return syntax_error(err);
    *pos = i;
    return 1;
}

static int unsupported(struct smtp_status *err, const struct param *p)
{
    int n = p->key_len > KEYWORD_ECHO_MAX ? KEYWORD_ECHO_MAX : (int)p->key_len;

    smtp_status_set(err, 555, "5.5.4", "Unsupported option %.*s", n, p->key);
    return -1;
}

/* Index of the keyword in defs, or ndefs. */
static size_t find_param(const struct param_def *defs, size_t ndefs, const struct param *p)
{
    size_t i;

    for (i = 0; i < ndefs; i++) {
        if (ascii_ieq(p->key, p->key_len, defs[i].name))
            break;
    }
    return i;
}

static int parse_params(const char *s, size_t len, const struct param_def *defs, size_t ndefs,
                        const struct smtp_params_offer *offer, void *out, struct smtp_status *err)
{
    unsigned seen = 0;
    size_t pos = 0;
    struct param p;
    int ret;

    assert(ndefs <= sizeof(seen) * CHAR_BIT);
    while ((ret = next_param(s, len, &pos, &p, err)) > 0) {
        size_t i = find_param(defs, ndefs, &p);

        if (i == ndefs || !*(const bool *)((const char *)offer + defs[i].gate))
            return unsupported(err, &p);
        if ((seen & (1u << i)) != 0) {
            smtp_status_set(err, 501, "5.5.4", "Duplicate %s parameter", defs[i].name);
            return -1;
        }
        seen |= 1u << i;
        if (defs[i].fn(&p, offer, out, err) < 0)
            return -1;
    }
    return ret;
}

/* SIZE=1*20DIGIT (RFC 1870); a value past UINT64_MAX is over any limit. */
static int mail_size(const struct param *p, const struct smtp_params_offer *offer, void *ctx,
                     struct smtp_status *err)
{
    struct smtp_mail_params *out = ctx;
    uint64_t v = 0;
    bool overflow = false;

    if (p->value == NULL || p->value_len > 20)
        return bad_value(err, "SIZE");
    for (size_t i = 0; i < p->value_len; i++) {
        unsigned d = (unsigned char)p->value[i] - '0';
        if (d > 9)
            return bad_value(err, "SIZE");
        if (v > (UINT64_MAX - d) / 10)
            overflow = true;
        else
            v = v * 10 + d;
    }
    if (overflow || (offer->size_limit != 0 && v > offer->size_limit)) {
        smtp_status_set(err, 552, "5.3.4", "Message size exceeds fixed maximum message size");
        return -1;
    }
    out->has_size = true;
    out->size = v;
    return 0;
}

/* BODY=7BIT / 8BITMIME (RFC 6152) / BINARYMIME (RFC 3030, needs CHUNKING). */
static int mail_body(const struct param *p, const struct smtp_params_offer *offer, void *ctx,
                     struct smtp_status *err)
{
    struct smtp_mail_params *out = ctx;

    if (p->value == NULL)
        return bad_value(err, "BODY");
    if (ascii_ieq(p->value, p->value_len, "7BIT")) {
        out->body = SMTP_BODY_7BIT;
    } else if (ascii_ieq(p->value, p->value_len, "8BITMIME")) {
        out->body = SMTP_BODY_8BITMIME;
    } else if (ascii_ieq(p->value, p->value_len, "BINARYMIME")) {
        if (!offer->chunking) {
            smtp_status_set(err, 555, "5.5.4", "BODY=BINARYMIME requires CHUNKING");
            return -1;
        }
        out->body = SMTP_BODY_BINARYMIME;
    } else {
        return bad_value(err, "BODY");
    }
    return 0;
}

static int mail_smtputf8(const struct param *p, const struct smtp_params_offer *offer, void *ctx,
                         struct smtp_status *err)
{
    struct smtp_mail_params *out = ctx;

    if (p->value != NULL)
        return bad_value(err, "SMTPUTF8");
    out->smtputf8 = true;
    return 0;
}

static int mail_ret(const struct param *p, const struct smtp_params_offer *offer, void *ctx,
                    struct smtp_status *err)
{
    struct smtp_mail_params *out = ctx;

    if (p->value != NULL && ascii_ieq(p->value, p->value_len, "FULL"))
        out->ret = SMTP_RET_FULL;
    else if (p->value != NULL && ascii_ieq(p->value, p->value_len, "HDRS"))
        out->ret = SMTP_RET_HDRS;
    else
        return bad_value(err, "RET");
    return 0;
}

static bool all_printable(const char *s, size_t n, unsigned char lowest)
{
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] < lowest || (unsigned char)s[i] > 126)
            return false;
    }
    return true;
}

/* ENVID=xtext; decoded, at most 100 printable US-ASCII octets (RFC 3461 §4.4). */
static int mail_envid(const struct param *p, const struct smtp_params_offer *offer, void *ctx,
                      struct smtp_status *err)
{
    struct smtp_mail_params *out = ctx;
    int n;

    if (p->value == NULL)
        return bad_value(err, "ENVID");
    n = smtp_xtext_decode(p->value, p->value_len, out->envid, sizeof(out->envid));
    if (n <= 0 || !all_printable(out->envid, (size_t)n, 32)) {
        out->envid[0] = '\0';
        return bad_value(err, "ENVID");
    }
    return 0;
}

/* AUTH=xtext (RFC 4954 §5); the decoded mailbox is checked once the whole
 * line is known (it may carry UTF-8 only with SMTPUTF8). */
static int mail_auth(const struct param *p, const struct smtp_params_offer *offer, void *ctx,
                     struct smtp_status *err)
{
    struct smtp_mail_params *out = ctx;
    int n = -1;

    if (p->value != NULL)
        n = smtp_xtext_decode(p->value, p->value_len, out->auth, sizeof(out->auth));
    /* a decoded NUL ("+00") would cut the mailbox short unseen */
    if (n <= 0 || memchr(out->auth, '\0', (size_t)n) != NULL) {
        out->auth[0] = '\0';
        return bad_value(err, "AUTH");
    }
    out->has_auth = true;
    return 0;
}

/* A decoded AUTH value is "<>" or a bare mailbox. */
static bool auth_mailbox_valid(const struct smtp_mail_params *mp)
{
    struct addr_path a;
    size_t len = strlen(mp->auth), used;
    const char *error;
    unsigned flags = ADDR_ALLOW_NOBRACKET | (mp->smtputf8 ? ADDR_ALLOW_UTF8 : 0);

    if (strcmp(mp->auth, "<>") == 0)
        return true;
    if (mp->auth[0] == '<')
        return false;
    return addr_parse_path(mp->auth, len, flags, &a, &used, &error) == 0 && used == len;
}

static const struct param_def mail_defs[] = {
    {"SIZE", offsetof(struct smtp_params_offer, size), mail_size},
    {"BODY", offsetof(struct smtp_params_offer, eightbitmime), mail_body},
    {"SMTPUTF8", offsetof(struct smtp_params_offer, smtputf8), mail_smtputf8},
    {"RET", offsetof(struct smtp_params_offer, dsn), mail_ret},
    {"ENVID", offsetof(struct smtp_params_offer, dsn), mail_envid},
    {"AUTH", offsetof(struct smtp_params_offer, auth), mail_auth},
};

int smtp_params_parse_mail(const char *s, size_t len, const struct smtp_params_offer *offer,
                           struct smtp_mail_params *out, struct smtp_status *err)
{
    assert(s != NULL || len == 0);
    assert(offer != NULL && out != NULL && err != NULL);
    memset(out, 0, sizeof(*out));
    if (parse_params(s, len, mail_defs, N_ELEMENTS(mail_defs), offer, out, err) < 0)
        return -1;
    if (out->has_auth && !auth_mailbox_valid(out))
        return bad_value(err, "AUTH");
    return 0;
}

static unsigned notify_word(const char *w, size_t n)
{
    if (ascii_ieq(w, n, "NEVER"))
        return SMTP_NOTIFY_NEVER;
    if (ascii_ieq(w, n, "SUCCESS"))
        return SMTP_NOTIFY_SUCCESS;
    if (ascii_ieq(w, n, "FAILURE"))
        return SMTP_NOTIFY_FAILURE;
    if (ascii_ieq(w, n, "DELAY"))
        return SMTP_NOTIFY_DELAY;
    return 0;
}

/* NOTIFY="NEVER" / 1#("SUCCESS" / "FAILURE" / "DELAY") (RFC 3461 §4.1); a
 * word given twice is refused too. */
static int rcpt_notify(const struct param *p, const struct smtp_params_offer *offer, void *ctx,
                       struct smtp_status *err)
{
    struct smtp_rcpt_params *out = ctx;
    unsigned bits = 0, bit;
    size_t i = 0, start;

    if (p->value == NULL)
        return bad_value(err, "NOTIFY");
    while (i <= p->value_len) {
        for (start = i; i < p->value_len && p->value[i] != ','; i++)
            ;
        bit = notify_word(p->value + start, i - start);
        if (bit == 0 || (bits & bit) != 0)
            return bad_value(err, "NOTIFY");
        bits |= bit;
        i++;
    }
    if ((bits & SMTP_NOTIFY_NEVER) != 0 && bits != SMTP_NOTIFY_NEVER)
        return bad_value(err, "NOTIFY");
    out->notify = bits;
    return 0;
}

/* "\x{HEX}" of RFC 6533 at in[*ip]: one Unicode scalar value but NUL. */
static int unicode_escape(const char *in, size_t len, size_t *ip, uint32_t *cp_r)
{
    size_t i = *ip + 3, digits = 0;
    uint32_t cp = 0;

    if (len - *ip < 5 || in[*ip + 1] != 'x' || in[*ip + 2] != '{')
        return -1;
    for (; i < len && in[i] != '}'; i++) {
        int h = hexval((unsigned char)in[i], false);
        if (h < 0 || ++digits > 6)
            return -1;
        cp = cp << 4 | (uint32_t)h;
    }
    if (i == len || digits == 0 || cp == 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return -1;
    *ip = i + 1;
    *cp_r = cp;
    return 0;
}

static size_t utf8_encode(uint32_t cp, char buf[4])
{
    if (cp < 0x80) {
        buf[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        buf[0] = (char)(0xC0 | cp >> 6);
        buf[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        buf[0] = (char)(0xE0 | cp >> 12);
        buf[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        buf[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    buf[0] = (char)(0xF0 | cp >> 18);
    buf[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    buf[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    buf[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* utf-8-addr-xtext / utf-8-addr-unitext (RFC 6533 §3): printable ASCII but
 * '\', "\x{HEX}" escapes, and raw UTF-8 only when SMTPUTF8 was offered. The
 * result must be a bare mailbox (no angle brackets). Returns the decoded
 * length or -1. */
static int utf8_addr_decode(const char *in, size_t len, bool raw_ok, char *out, size_t outsize)
{
    size_t i = 0, n = 0, k, used;
    struct addr_path a;
    const char *error;
    char buf[4];
    uint32_t cp;

    while (i < len) {
        unsigned char ch = (unsigned char)in[i];
        if (ch == '\\') {
            if (unicode_escape(in, len, &i, &cp) < 0)
                return -1;
            k = utf8_encode(cp, buf);
        } else if ((ch >= 33 && ch <= 126) || (ch >= 0x80 && raw_ok)) {
            buf[0] = (char)ch;
            k = 1;
            i++;
        } else {
            return -1;
        }
        if (n + k >= outsize)
            return -1;
        memcpy(out + n, buf, k);
        n += k;
    }
    out[n] = '\0';
    if (n == 0 || out[0] == '<' ||
        addr_parse_path(out, n, ADDR_ALLOW_NOBRACKET | ADDR_ALLOW_UTF8, &a, &used, &error) < 0 ||
        used != n)
        return -1;
    return (int)n;
}

/* ORCPT=addr-type ";" xtext (RFC 3461 §4.2); types rfc822 and utf-8 (RFC 6533). */
static int rcpt_orcpt(const struct param *p, const struct smtp_params_offer *offer, void *ctx,
                      struct smtp_status *err)
{
    struct smtp_rcpt_params *out = ctx;
    const char *semi = p->value == NULL ? NULL : memchr(p->value, ';', p->value_len);
    const char *addr, *type;
    size_t tlen, alen;
    int n;

    if (semi == NULL)
        return bad_value(err, "ORCPT");
    tlen = (size_t)(semi - p->value);
    addr = semi + 1;
    alen = p->value_len - tlen - 1;
    if (ascii_ieq(p->value, tlen, "rfc822")) {
        type = "rfc822";
        n = smtp_xtext_decode(addr, alen, out->orcpt, sizeof(out->orcpt));
        if (n > 0 && !all_printable(out->orcpt, (size_t)n, 32))
            n = -1;
    } else if (ascii_ieq(p->value, tlen, "utf-8")) {
        type = "utf-8";
        n = utf8_addr_decode(addr, alen, offer->smtputf8, out->orcpt, sizeof(out->orcpt));
    } else {
        smtp_status_set(err, 501, "5.5.4", "Unsupported ORCPT address type");
        return -1;
    }
    if (n <= 0) {
        out->orcpt[0] = '\0';
        return bad_value(err, "ORCPT");
    }
    memcpy(out->orcpt_type, type, strlen(type) + 1);
    return 0;
}

static const struct param_def rcpt_defs[] = {
    {"NOTIFY", offsetof(struct smtp_params_offer, dsn), rcpt_notify},
    {"ORCPT", offsetof(struct smtp_params_offer, dsn), rcpt_orcpt},
};

int smtp_params_parse_rcpt(const char *s, size_t len, const struct smtp_params_offer *offer,
                           struct smtp_rcpt_params *out, struct smtp_status *err)
{
    assert(s != NULL || len == 0);
    assert(offer != NULL && out != NULL && err != NULL);
    memset(out, 0, sizeof(*out));
    return parse_params(s, len, rcpt_defs, N_ELEMENTS(rcpt_defs), offer, out, err);
}

/* The decoding loop of smtp_xtext_decode(); out may hold a partial result
 * when it fails. */
static int xtext_decode_into(const char *in, size_t len, char *out, size_t outsize)
{
    size_t n = 0;

    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)in[i];
        int hi, lo;
        if (n + 1 >= outsize || n >= INT_MAX)
            return -1;
        if (ch >= 33 && ch <= 126 && ch != '+' && ch != '=') {
            out[n++] = (char)ch;
            continue;
        }
        /* hexchar: '+' and two upper-case hex digits, nothing else */
        if (ch != '+' || len - i < 3)
            return -1;
        hi = hexval((unsigned char)in[i + 1], true);
        lo = hexval((unsigned char)in[i + 2], true);
        if (hi < 0 || lo < 0)
            return -1;
        out[n++] = (char)(hi << 4 | lo);
        i += 2;
    }
    out[n] = '\0';
    return (int)n;
}

int smtp_xtext_decode(const char *in, size_t len, char *out, size_t outsize)
{
    int n;

    if (outsize == 0)
        return -1;
    n = xtext_decode_into(in, len, out, outsize);
    if (n < 0)
        out[0] = '\0';
    return n;
}

size_t smtp_xtext_encode(const char *in, size_t len, char *out, size_t outsize)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;

    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)in[i];
        char enc[3] = {'+', hex[ch >> 4], hex[ch & 0x0F]};
        bool plain = ch >= 33 && ch <= 126 && ch != '+' && ch != '=';
        size_t k = plain ? 1 : 3;

        if (plain)
            enc[0] = (char)ch;
        for (size_t j = 0; j < k; j++, n++) {
            if (n + 1 < outsize)
                out[n] = enc[j];
        }
    }
    if (outsize > 0)
        out[n < outsize ? n : outsize - 1] = '\0';
    return n;
}

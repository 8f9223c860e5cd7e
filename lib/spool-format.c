/*
 * spool-format — see spool-format.h. Formats and parses the fixed header line
 * and the envelope records of a spool file.
 *
 * Envelope records, one per line, "KEY" then each field after one space:
 *   queue_id ID          required; 1..32 of [0-9A-Za-z]
 *   sender ADDR          required; empty for the null reverse-path
 *   received SECONDS     required; time_t, decimal
 *   size OCTETS          required; must equal the header's content length
 *   body N               enum smtp_body (0..3)
 *   smtputf8 0|1
 *   ret N                enum smtp_ret (0..2)
 *   envid, listener, client_addr, client_name, helo, auth_user, tls VALUE
 *                        optional; absent means NULL, "KEY " means ""
 *   rcpt ADDR NOTIFY [ORCPT]  one per recipient, in order, at least one;
 *                        NOTIFY is the enum smtp_notify bits in decimal;
 *                        without the third field orcpt is NULL
 *   add_headers TEXT     optional; header fields to prepend at delivery,
 *                        CR LF and spaces escaped like any value; checked
 *                        with spool_add_headers_check (written only when
 *                        not empty)
 *   END                  the end marker
 * Every value is escaped (spool_escape): octets <= 0x20, '%' and 0x7f become
 * "%XX", everything else (UTF-8 included) is stored raw, so a record never
 * holds a raw space, control character or line end. "%00" is refused when
 * parsing because the envelope's strings are C strings.
 *
 * Trusts nothing it reads: an unknown or repeated record, a raw control octet,
 * a bad escape, a number out of range, more than SPOOL_RCPT_MAX recipients or
 * more than SPOOL_ENVELOPE_MAX octets of envelope, or header lines that
 * spool_add_headers_check refuses make the file corrupt.
 * Trusts the writer's caller for the envelope it serializes.
 */
#include "config.h"
#include "lib/spool-format.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "lib/smtp-params.h"
#include "lib/log.h"

#define SPOOL_ENVELOPE_MAX (16u * 1024 * 1024)
#define SPOOL_RCPT_MAX 100000
#define SPOOL_NOTIFY_MASK                                                                          \
    (SMTP_NOTIFY_NEVER | SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE | SMTP_NOTIFY_DELAY)
#define SPOOL_MAX_FIELDS 3

static const char hex_digits[] = "0123456789ABCDEF";

/* ---- header line ---- */

void spool_header_format(char buf[SPOOL_HEADER_LEN], uint64_t content_len, uint64_t env_off)
{
    char line[SPOOL_HEADER_LEN + 1];
    int n;

    n = snprintf(line, sizeof(line), "POSTERN-SPOOL-1 content=%016" PRIx64 " envelope=%016" PRIx64,
                 content_len, env_off);
    memset(buf, ' ', SPOOL_HEADER_LEN);
    memcpy(buf, line, (size_t)n);
    buf[SPOOL_HEADER_LEN - 1] = '\n';
}

static int parse_hex16(const char *p, uint64_t *value_r)
{
    uint64_t value = 0;

    for (int i = 0; i < 16; i++) {
        const char c = p[i];

        if (c >= '0' && c <= '9')
            value = value << 4 | (uint64_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            value = value << 4 | (uint64_t)(c - 'a' + 10);
        else
            return -1;
    }
    *value_r = value;
    return 0;
}

int spool_header_parse(const char buf[SPOOL_HEADER_LEN], uint64_t *content_len_r,
                       uint64_t *env_off_r)
{
    static const char magic[] = "POSTERN-SPOOL-1 content=";
    static const char mid[] = " envelope=";
    const size_t content_at = sizeof(magic) - 1, mid_at = content_at + 16;
    const size_t env_at = mid_at + sizeof(mid) - 1, pad_at = env_at + 16;
    uint64_t clen, eoff;

    if (memcmp(buf, magic, content_at) != 0 || memcmp(buf + mid_at, mid, sizeof(mid) - 1) != 0)
        return -1;
    if (parse_hex16(buf + content_at, &clen) < 0 || parse_hex16(buf + env_at, &eoff) < 0)
        return -1;
    for (size_t i = pad_at; i < SPOOL_HEADER_LEN - 1; i++) {
        if (buf[i] != ' ')
            return -1;
    }
    if (buf[SPOOL_HEADER_LEN - 1] != '\n')
        return -1;
    if (clen == 0 && eoff == 0)
        return 1;
    if (clen > UINT64_MAX - SPOOL_HEADER_LEN || eoff != clen + SPOOL_HEADER_LEN)
        return -1;
    *content_len_r = clen;
    *env_off_r = eoff;
    return 0;
}

/* ---- header lines to add ---- */

static bool is_wsp(unsigned char c)
{
    return c == ' ' || c == '\t';
}

/* One line without its CR LF: the first line of a field ("Name:" and a
 * value) or a continuation (space or tab, then some text). first: no field
 * came before it. Returns NULL when good, else why not. */
static const char *header_line_error(const unsigned char *p, size_t len, bool first)
{
    size_t i = 0;
    bool text = false;

    if (len == 0)
        return "empty line in header lines";
    if (len > SPOOL_HEADER_LINE_MAX)
        return "header line longer than 998 octets";
    if (is_wsp(p[0])) {
        if (first)
            return "continuation line without a header field";
    } else {
        /* RFC 5322 §3.6.8: field-name = 1*ftext, printable ASCII but ':' */
        while (i < len && p[i] > 0x20 && p[i] < 0x7f && p[i] != ':')
            i++;
        if (i == 0 || i == len || p[i] != ':')
            return "bad header field name";
        i++;
        text = true;
    }
    for (; i < len; i++) {
        if (!is_wsp(p[i]) && (p[i] < 0x21 || p[i] > 0x7e))
            return "control or 8-bit octet in a header line";
        text = text || !is_wsp(p[i]);
    }
    return text ? NULL : "blank continuation line in header lines";
}

int spool_add_headers_check(const char *text, size_t len, const char **error_r)
{
    const unsigned char *p = (const unsigned char *)text;
    const char *why = NULL;
    size_t pos = 0;

    if (len > SPOOL_ADD_HEADERS_MAX)
        why = "header lines over 16 KiB";
    while (why == NULL && pos < len) {
        const unsigned char *cr = memchr(p + pos, '\r', len - pos);
        const unsigned char *lf = memchr(p + pos, '\n', len - pos);
        size_t end;

        if (lf != NULL && (cr == NULL || lf < cr)) {
            why = "bare LF in header lines";
            break;
        }
        if (cr == NULL) {
            why = "header lines do not end with CR LF";
            break;
        }
        end = (size_t)(cr - p);
        if (end + 1 >= len || p[end + 1] != '\n') {
            why = "bare CR in header lines";
            break;
        }
        why = header_line_error(p + pos, end - pos, pos == 0);
        pos = end + 2;
    }
    if (why != NULL) {
        *error_r = why;
        return -1;
    }
    return 0;
}

/* ---- serializing ---- */

struct strbuf {
    char *data;
    size_t len, cap;
    bool failed;
};

static void sb_append(struct strbuf *sb, const void *data, size_t len)
{
    if (sb->failed)
        return;
    if (sb->cap - sb->len < len) {
        size_t cap = sb->cap == 0 ? 1024 : sb->cap;
        char *data2;

        while (cap - sb->len < len)
            cap *= 2;
        data2 = realloc(sb->data, cap);
        if (data2 == NULL) {
            sb->failed = true;
            return;
        }
        sb->data = data2;
        sb->cap = cap;
    }
    memcpy(sb->data + sb->len, data, len);
    sb->len += len;
}

/* Appends s with every octet <= 0x20, '%' and 0x7f written as %XX. */
static void spool_escape(struct strbuf *sb, const char *s)
{
    const unsigned char *p = (const unsigned char *)s, *start = p;

    for (; *p != '\0'; p++) {
        if (*p > 0x20 && *p != '%' && *p != 0x7f)
            continue;
        char esc[3] = { '%', hex_digits[*p >> 4], hex_digits[*p & 15] };

        sb_append(sb, start, (size_t)(p - start));
        sb_append(sb, esc, sizeof(esc));
        start = p + 1;
    }
    sb_append(sb, start, (size_t)(p - start));
}

static void put_str(struct strbuf *sb, const char *key, const char *value)
{
    if (value == NULL)
        return;
    sb_append(sb, key, strlen(key));
    sb_append(sb, " ", 1);
    spool_escape(sb, value);
    sb_append(sb, "\n", 1);
}

static void put_num(struct strbuf *sb, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void put_num(struct strbuf *sb, const char *key, const char *fmt, ...)
{
    char num[32];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(num, sizeof(num), fmt, ap);
    va_end(ap);
    sb_append(sb, key, strlen(key));
    sb_append(sb, " ", 1);
    sb_append(sb, num, (size_t)n);
    sb_append(sb, "\n", 1);
}

static void put_rcpt(struct strbuf *sb, const struct spool_rcpt *rcpt)
{
    char notify[16];
    int n = snprintf(notify, sizeof(notify), " %u", rcpt->notify);

    sb_append(sb, "rcpt ", 5);
    spool_escape(sb, rcpt->addr == NULL ? "" : rcpt->addr);
    sb_append(sb, notify, (size_t)n);
    if (rcpt->orcpt != NULL) {
        sb_append(sb, " ", 1);
        spool_escape(sb, rcpt->orcpt);
    }
    sb_append(sb, "\n", 1);
}

char *spool_envelope_serialize(const struct spool_envelope *env, size_t *len_r)
{
    struct strbuf sb = { NULL, 0, 0, false };

    put_str(&sb, "queue_id", env->queue_id);
    put_str(&sb, "sender", env->sender == NULL ? "" : env->sender);
    put_num(&sb, "received", "%lld", (long long)env->received);
    put_num(&sb, "size", "%" PRIu64, env->size);
    put_num(&sb, "body", "%d", env->body);
    put_num(&sb, "smtputf8", "%d", env->smtputf8 ? 1 : 0);
    put_num(&sb, "ret", "%d", env->ret);
    put_str(&sb, "envid", env->envid);
    put_str(&sb, "listener", env->listener);
    put_str(&sb, "client_addr", env->client_addr);
    put_str(&sb, "client_name", env->client_name);
    put_str(&sb, "helo", env->helo);
    put_str(&sb, "auth_user", env->auth_user);
    put_str(&sb, "tls", env->tls);
    for (size_t i = 0; i < env->rcpt_count; i++)
        put_rcpt(&sb, &env->rcpts[i]);
    if (env->add_headers != NULL && env->add_headers[0] != '\0')
        put_str(&sb, "add_headers", env->add_headers);
    sb_append(&sb, "END\n", 4);
    if (sb.failed) {
        free(sb.data);
        return NULL;
    }
    *len_r = sb.len;
    return sb.data;
}

/* ---- parsing ---- */

enum record_type {
    REC_QUEUE_ID,
    REC_STRING,
    REC_TIME,
    REC_SIZE,
    REC_INT,
    REC_BOOL,
    REC_RCPT,
    REC_HEADERS,
};

/* One row per record key: what it holds, where, its range, whether required. */
static const struct record_def {
    const char *key;
    enum record_type type;
    size_t offset;
    long long min, max;
    bool required;
} records[] = {
    { "queue_id", REC_QUEUE_ID, offsetof(struct spool_envelope, queue_id), 0, 0, true },
    { "sender", REC_STRING, offsetof(struct spool_envelope, sender), 0, 0, true },
    { "received", REC_TIME, offsetof(struct spool_envelope, received), 0, 0, true },
    { "size", REC_SIZE, offsetof(struct spool_envelope, size), 0, 0, true },
    { "body", REC_INT, offsetof(struct spool_envelope, body), 0, SMTP_BODY_BINARYMIME, false },
    { "smtputf8", REC_BOOL, offsetof(struct spool_envelope, smtputf8), 0, 1, false },
    { "ret", REC_INT, offsetof(struct spool_envelope, ret), 0, SMTP_RET_HDRS, false },
    { "envid", REC_STRING, offsetof(struct spool_envelope, envid), 0, 0, false },
    { "listener", REC_STRING, offsetof(struct spool_envelope, listener), 0, 0, false },
    { "client_addr", REC_STRING, offsetof(struct spool_envelope, client_addr), 0, 0, false },
    { "client_name", REC_STRING, offsetof(struct spool_envelope, client_name), 0, 0, false },
    { "helo", REC_STRING, offsetof(struct spool_envelope, helo), 0, 0, false },
    { "auth_user", REC_STRING, offsetof(struct spool_envelope, auth_user), 0, 0, false },
    { "tls", REC_STRING, offsetof(struct spool_envelope, tls), 0, 0, false },
    { "rcpt", REC_RCPT, 0, 0, 0, true },
    { "add_headers", REC_HEADERS, offsetof(struct spool_envelope, add_headers), 0, 0, false },
};
#define RECORD_COUNT (sizeof(records) / sizeof(records[0]))

struct field {
    const char *p;
    size_t len;
};

/* Where the parser is; errors name the line, never echo the file's bytes raw. */
struct parser {
    struct spool_envelope *env;
    size_t rcpt_cap;
    unsigned seen;
    unsigned line;
    char *error;
    size_t errsize;
};

static int parse_fail(struct parser *ps, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int parse_fail(struct parser *ps, const char *fmt, ...)
{
    char msg[128];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (ps->error != NULL && ps->errsize > 0)
        snprintf(ps->error, ps->errsize, "envelope line %u: %s", ps->line, msg);
    return -1;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Decodes an escaped field into a new C string; NULL when malformed (or out
 * of memory: both make the envelope unusable). */
static char *unescape(const struct field *f)
{
    char *out = malloc(f->len + 1);
    size_t o = 0;

    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < f->len; i++) {
        unsigned char c = (unsigned char)f->p[i];
        int hi, lo;

        if (c <= 0x20 || c == 0x7f)
            goto bad;
        if (c == '%') {
            if (f->len - i < 3 || (hi = hex_value(f->p[i + 1])) < 0 ||
                (lo = hex_value(f->p[i + 2])) < 0 || (hi | lo) == 0)
                goto bad;
            c = (unsigned char)(hi << 4 | lo);
            i += 2;
        }
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return out;
bad:
    free(out);
    return NULL;
}

/* Strict decimal: optional '-' only when min < 0, no leading '+' or spaces. */
static int parse_decimal(const struct field *f, long long min, long long max, long long *value_r)
{
    char num[24];
    char *end;
    long long value;

    if (f->len == 0 || f->len >= sizeof(num) || (f->p[0] == '-' && min >= 0))
        return -1;
    if (f->p[0] != '-' && (f->p[0] < '0' || f->p[0] > '9'))
        return -1;
    memcpy(num, f->p, f->len);
    num[f->len] = '\0';
    errno = 0;
    value = strtoll(num, &end, 10);
    if (errno != 0 || *end != '\0' || value < min || value > max)
        return -1;
    *value_r = value;
    return 0;
}

static int parse_size(const struct field *f, uint64_t *value_r)
{
    char num[24];
    char *end;
    unsigned long long value;

    if (f->len == 0 || f->len >= sizeof(num) || f->p[0] < '0' || f->p[0] > '9')
        return -1;
    memcpy(num, f->p, f->len);
    num[f->len] = '\0';
    errno = 0;
    value = strtoull(num, &end, 10);
    if (errno != 0 || *end != '\0')
        return -1;
    *value_r = value;
    return 0;
}

static int set_queue_id(struct parser *ps, const struct field *f)
{
    if (f->len == 0 || f->len > SPOOL_QUEUE_ID_MAX)
        return parse_fail(ps, "bad queue id length");
    for (size_t i = 0; i < f->len; i++) {
        char c = f->p[i];

        if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')))
            return parse_fail(ps, "bad character in queue id");
    }
    memcpy(ps->env->queue_id, f->p, f->len);
    ps->env->queue_id[f->len] = '\0';
    return 0;
}

static int add_rcpt(struct parser *ps, const struct field *fields, size_t count)
{
    struct spool_envelope *env = ps->env;
    struct spool_rcpt *rcpt;
    long long notify;

    if (env->rcpt_count >= SPOOL_RCPT_MAX)
        return parse_fail(ps, "more than %d recipients", SPOOL_RCPT_MAX);
    if (env->rcpt_count == ps->rcpt_cap) {
        size_t cap = ps->rcpt_cap == 0 ? 4 : ps->rcpt_cap * 2;
        struct spool_rcpt *rcpts = realloc(env->rcpts, cap * sizeof(*rcpts));

        if (rcpts == NULL)
            return parse_fail(ps, "out of memory");
        env->rcpts = rcpts;
        ps->rcpt_cap = cap;
    }
    rcpt = &env->rcpts[env->rcpt_count];
    memset(rcpt, 0, sizeof(*rcpt));
    if (parse_decimal(&fields[1], 0, SPOOL_NOTIFY_MASK, &notify) < 0)
        return parse_fail(ps, "bad recipient notify");
    rcpt->notify = (unsigned)notify;
    env->rcpt_count++;
    rcpt->addr = unescape(&fields[0]);
    if (count == 3)
        rcpt->orcpt = unescape(&fields[2]);
    if (rcpt->addr == NULL || (count == 3 && rcpt->orcpt == NULL))
        return parse_fail(ps, "bad recipient value");
    return 0;
}

static int set_number(struct parser *ps, const struct record_def *def, const struct field *f)
{
    void *dst = (char *)ps->env + def->offset;
    long long value;

    if (def->type == REC_SIZE) {
        if (parse_size(f, &ps->env->size) < 0)
            return parse_fail(ps, "bad %s", def->key);
        return 0;
    }
    if (def->type == REC_TIME) {
        if (parse_decimal(f, INT64_MIN, INT64_MAX, &value) < 0)
            return parse_fail(ps, "bad %s", def->key);
        ps->env->received = (time_t)value;
    } else if (parse_decimal(f, def->min, def->max, &value) < 0) {
        return parse_fail(ps, "bad %s", def->key);
    } else if (def->type == REC_BOOL) {
        *(bool *)dst = value != 0;
    } else {
        *(int *)dst = (int)value;
    }
    return 0;
}

/* add_headers: bounded before it is decoded, checked after. */
static int set_headers(struct parser *ps, const struct field *f)
{
    const char *why;

    if (f->len > 3 * (size_t)SPOOL_ADD_HEADERS_MAX)
        return parse_fail(ps, "add_headers over %d octets", SPOOL_ADD_HEADERS_MAX);
    ps->env->add_headers = unescape(f);
    if (ps->env->add_headers == NULL)
        return parse_fail(ps, "bad add_headers value");
    if (spool_add_headers_check(ps->env->add_headers, strlen(ps->env->add_headers), &why) < 0)
        return parse_fail(ps, "add_headers: %s", why);
    return 0;
}

static int apply_record(struct parser *ps, const struct record_def *def,
                        const struct field *fields, size_t count)
{
    char **dst;

    if (def->type == REC_RCPT)
        return count >= 2 && count <= 3 ? add_rcpt(ps, fields, count)
                                        : parse_fail(ps, "bad recipient record");
    if (count != 1)
        return parse_fail(ps, "%s takes one value", def->key);
    if (def->type == REC_QUEUE_ID)
        return set_queue_id(ps, &fields[0]);
    if (def->type == REC_HEADERS)
        return set_headers(ps, &fields[0]);
    if (def->type != REC_STRING)
        return set_number(ps, def, &fields[0]);
    dst = (char **)((char *)ps->env + def->offset);
    *dst = unescape(&fields[0]);
    if (*dst == NULL)
        return parse_fail(ps, "bad %s value", def->key);
    return 0;
}

/* Splits "KEY f1 f2" (no '\n') at single spaces. Returns the field count, or
 * -1 when there are too many. */
static int split_line(const char *line, size_t len, struct field *key, struct field *fields)
{
    const char *end = line + len, *p = memchr(line, ' ', len);
    int count = 0;

    key->p = line;
    key->len = (p == NULL ? end : p) - line;
    while (p != NULL) {
        const char *start = p + 1;

        if (count == SPOOL_MAX_FIELDS)
            return -1;
        p = memchr(start, ' ', (size_t)(end - start));
        fields[count].p = start;
        fields[count].len = (size_t)((p == NULL ? end : p) - start);
        count++;
    }
    return count;
}

static int parse_record(struct parser *ps, const char *line, size_t len)
{
    struct field key, fields[SPOOL_MAX_FIELDS];
    int count = split_line(line, len, &key, fields);
    char name[40];

    for (size_t i = 0; i < RECORD_COUNT; i++) {
        if (strlen(records[i].key) != key.len || memcmp(records[i].key, key.p, key.len) != 0)
            continue;
        if ((ps->seen & (1u << i)) != 0 && records[i].type != REC_RCPT)
            return parse_fail(ps, "repeated %s record", records[i].key);
        ps->seen |= 1u << i;
        if (count < 0)
            return parse_fail(ps, "too many fields");
        return apply_record(ps, &records[i], fields, (size_t)count);
    }
    log_sanitize(name, sizeof(name), key.p, key.len < 32 ? key.len : 32);
    return parse_fail(ps, "unknown record \"%s\"", name);
}

static int check_required(struct parser *ps)
{
    for (size_t i = 0; i < RECORD_COUNT; i++) {
        if (records[i].required && (ps->seen & (1u << i)) == 0)
            return parse_fail(ps, "missing %s record", records[i].key);
    }
    return 0;
}

/* Returns 0 (complete, *end_r set), 1 when the text stops before "END\n"
 * (incomplete), -1 when corrupt. */
static int parse_records(struct parser *ps, const char *buf, size_t len, size_t *end_r)
{
    size_t pos = 0;

    if (len > SPOOL_ENVELOPE_MAX)
        return parse_fail(ps, "envelope over %u octets", SPOOL_ENVELOPE_MAX);
    for (;;) {
        const char *nl = memchr(buf + pos, '\n', len - pos);
        size_t line_len;

        ps->line++;
        if (nl == NULL) {
            parse_fail(ps, "no end marker");
            return 1;
        }
        line_len = (size_t)(nl - (buf + pos));
        if (line_len == 3 && memcmp(buf + pos, "END", 3) == 0) {
            *end_r = pos + 4;
            return check_required(ps);
        }
        if (parse_record(ps, buf + pos, line_len) < 0)
            return -1;
        pos += line_len + 1;
    }
}

static int envelope_parse(const char *buf, size_t len, struct spool_envelope **env_r,
                          size_t *end_r, char *error, size_t errsize)
{
    struct parser ps = { .error = error, .errsize = errsize };
    size_t end = 0;
    int ret;

    ps.env = calloc(1, sizeof(*ps.env));
    if (ps.env == NULL)
        return parse_fail(&ps, "out of memory");
    ret = parse_records(&ps, buf, len, &end);
    if (ret != 0) {
        spool_envelope_free(&ps.env);
        return ret;
    }
    *env_r = ps.env;
    if (end_r != NULL)
        *end_r = end;
    return 0;
}

int spool_envelope_parse(const char *buf, size_t len, struct spool_envelope **env_r,
                         size_t *end_r, char *error, size_t errsize)
{
    return envelope_parse(buf, len, env_r, end_r, error, errsize) == 0 ? 0 : -1;
}

/* ---- reading a file ---- */

static ssize_t pread_full(int fd, void *buf, size_t len, off_t off)
{
    size_t done = 0;

    while (done < len) {
        ssize_t n = pread(fd, (char *)buf + done, len - done, off + (off_t)done);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        done += (size_t)n;
    }
    return (ssize_t)done;
}

static int read_fail(char *error, size_t errsize, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int read_fail(char *error, size_t errsize, const char *fmt, ...)
{
    va_list ap;

    if (error != NULL && errsize > 0) {
        va_start(ap, fmt);
        vsnprintf(error, errsize, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* Reads and checks the header and the file size. Returns 0 with the
 * envelope's offset and length, 1 when incomplete, -1 when corrupt. */
static int read_layout(int fd, uint64_t *clen_r, uint64_t *eoff_r, size_t *elen_r, char *error,
                       size_t errsize)
{
    char header[SPOOL_HEADER_LEN];
    struct stat st;
    ssize_t n = pread_full(fd, header, sizeof(header), 0);
    int ret;

    if (n < 0 || fstat(fd, &st) < 0)
        return read_fail(error, errsize, "read: %s", strerror(errno));
    if (n < (ssize_t)sizeof(header))
        return 1;
    ret = spool_header_parse(header, clen_r, eoff_r);
    if (ret < 0)
        return read_fail(error, errsize, "corrupt header");
    if (ret != 0)
        return ret;
    if ((uint64_t)st.st_size < *eoff_r)
        return 1;
    if ((uint64_t)st.st_size - *eoff_r > SPOOL_ENVELOPE_MAX)
        return read_fail(error, errsize, "envelope over %u octets", SPOOL_ENVELOPE_MAX);
    *elen_r = (size_t)((uint64_t)st.st_size - *eoff_r);
    return 0;
}

static int read_envelope_fd(int fd, struct spool_envelope **env_r, uint64_t *clen_r,
                            char *error, size_t errsize)
{
    uint64_t eoff = 0;
    size_t elen = 0, end;
    char *buf;
    ssize_t n;
    int ret = read_layout(fd, clen_r, &eoff, &elen, error, errsize);

    if (ret != 0)
        return ret;
    buf = malloc(elen + 1);
    if (buf == NULL)
        return read_fail(error, errsize, "read: %s", strerror(ENOMEM));
    n = pread_full(fd, buf, elen, (off_t)eoff);
    if (n < 0)
        ret = read_fail(error, errsize, "read: %s", strerror(errno));
    else
        ret = envelope_parse(buf, (size_t)n, env_r, &end, error, errsize);
    free(buf);
    if (ret == 0 && (*env_r)->size != *clen_r) {
        spool_envelope_free(env_r);
        ret = read_fail(error, errsize, "envelope size differs from the header");
    }
    return ret;
}

int spool_read_envelope(const char *path, struct spool_envelope **env_r, uint64_t *content_off_r,
                        uint64_t *content_len_r, char *error, size_t errsize)
{
    uint64_t clen = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
    int ret;

    *env_r = NULL;
    if (fd < 0)
        return read_fail(error, errsize, "open: %s", strerror(errno));
    ret = read_envelope_fd(fd, env_r, &clen, error, errsize);
    close(fd);
    if (ret == 1)
        read_fail(error, errsize, "incomplete (no end marker)");
    if (ret != 0)
        return ret;
    if (content_off_r != NULL)
        *content_off_r = SPOOL_HEADER_LEN;
    if (content_len_r != NULL)
        *content_len_r = clen;
    return 0;
}

void spool_envelope_free(struct spool_envelope **_env)
{
    struct spool_envelope *env = *_env;

    if (env == NULL)
        return;
    *_env = NULL;
    for (size_t i = 0; i < env->rcpt_count; i++) {
        free(env->rcpts[i].addr);
        free(env->rcpts[i].orcpt);
    }
    free(env->rcpts);
    free(env->sender);
    free(env->listener);
    free(env->client_addr);
    free(env->client_name);
    free(env->helo);
    free(env->auth_user);
    free(env->tls);
    free(env->envid);
    free(env->add_headers);
    free(env);
}

/*
 * milter-proto — see milter-proto.h. The decoder takes a frame apart into
 * pointers to its NUL-terminated strings after checking that they end
 * inside it; the encoders write whole frames (length, command, data) with
 * the length computed first, so a frame is never left half written.
 */
#include "config.h"
#include "filters/milter-proto.h"

#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

long milter_frame_parse(const uint8_t *buf, size_t len, struct milter_frame *f)
{
    uint32_t n;

    if (len < 4)
        return 0;
    n = get32(buf);
    if (n == 0 || n > MILTER_FRAME_MAX)
        return -1;
    if (len - 4 < n)
        return 0;
    f->cmd = (char)buf[4];
    f->data = buf + 5;
    f->len = n - 1;
    return (long)n + 4;
}

/* Splits data into its NUL-terminated strings (at most max). Returns how
 * many there are, or -1 when the last one does not end in data or there
 * are more than max. No data = no strings. */
static int split_strings(const uint8_t *data, size_t len, const char **out, int max)
{
    int n = 0;
    size_t start = 0;

    if (len > 0 && data[len - 1] != '\0')
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (data[i] != '\0')
            continue;
        if (n == max)
            return -1;
        out[n++] = (const char *)data + start;
        start = i + 1;
    }
    return n;
}

static int decode_optneg(const struct milter_frame *f, struct milter_reply *r, const char **error_r)
{
    size_t off = 12;

    if (f->len < 12) {
        *error_r = "OPTNEG reply shorter than 12 bytes";
        return -1;
    }
    r->version = get32(f->data);
    r->actions = get32(f->data + 4);
    r->protocol = get32(f->data + 8);
    while (off < f->len) {
        uint32_t stage;
        const uint8_t *nul;

        if (f->len - off < 5) {
            *error_r = "OPTNEG reply: truncated macro list";
            return -1;
        }
        stage = get32(f->data + off);
        off += 4;
        nul = memchr(f->data + off, '\0', f->len - off);
        if (nul == NULL) {
            *error_r = "OPTNEG reply: macro list without its NUL";
            return -1;
        }
        if (stage >= MILTER_M_COUNT) {
            *error_r = "OPTNEG reply: macro list for an unknown stage";
            return -1;
        }
        r->symlist[stage] = (const char *)f->data + off;
        off = (size_t)(nul - f->data) + 1;
    }
    return 0;
}

/* Replies of n strings; the first one must not be empty when nonempty. */
static int decode_strings(const struct milter_frame *f, size_t skip, int min, int max,
                          bool nonempty, const char **strs, const char **error_r)
{
    int n = split_strings(f->data + skip, f->len - skip, strs, max);

    if (n < min) {
        *error_r =
            n < 0 ? "a string does not end in its frame, or too many strings" : "too few strings";
        return -1;
    }
    if (nonempty && strs[0][0] == '\0') {
        *error_r = "empty name or address";
        return -1;
    }
    return n;
}

static int decode_header(const struct milter_frame *f, struct milter_reply *r, bool indexed,
                         const char **error_r)
{
    const char *s[2];
    size_t skip = indexed ? 4 : 0;

    if (f->len < skip) {
        *error_r = "header reply without its index";
        return -1;
    }
    if (indexed)
        r->index = get32(f->data);
    if (decode_strings(f, skip, 2, 2, true, s, error_r) < 0)
        return -1;
    r->name = s[0];
    r->value = s[1];
    return 0;
}

/* Addresses with optional ESMTP arguments (ADDRCPT_PAR, CHGFROM). */
static int decode_addr(const struct milter_frame *f, struct milter_reply *r, int max,
                       const char **error_r)
{
    const char *s[2] = {NULL, NULL};
    int n = decode_strings(f, 0, 1, max, true, s, error_r);

    if (n < 0)
        return -1;
    r->addr = s[0];
    r->args = n > 1 ? s[1] : NULL;
    return 0;
}

static int decode_text(const struct milter_frame *f, struct milter_reply *r, const char **error_r)
{
    const char *s[1];

    if (decode_strings(f, 0, 1, 1, false, s, error_r) < 0)
        return -1;
    r->text = s[0];
    return 0;
}

int milter_reply_decode(const struct milter_frame *f, struct milter_reply *r, const char **error_r)
{
    memset(r, 0, sizeof(*r));
    r->cmd = f->cmd;
    switch (f->cmd) {
    case MILTER_REP_ACCEPT:
    case MILTER_REP_CONTINUE:
    case MILTER_REP_DISCARD:
    case MILTER_REP_REJECT:
    case MILTER_REP_TEMPFAIL:
    case MILTER_REP_SKIP:
    case MILTER_REP_PROGRESS:
    case MILTER_REP_SHUTDOWN:
    case MILTER_REP_CONN_FAIL:
        if (f->len != 0) {
            *error_r = "data after a reply that has none";
            return -1;
        }
        return 0;
    case MILTER_REP_OPTNEG:
        return decode_optneg(f, r, error_r);
    case MILTER_REP_ADDHEADER:
        return decode_header(f, r, false, error_r);
    case MILTER_REP_INSHEADER:
    case MILTER_REP_CHGHEADER:
        return decode_header(f, r, true, error_r);
    case MILTER_REP_ADDRCPT:
    case MILTER_REP_DELRCPT:
        return decode_addr(f, r, 1, error_r);
    case MILTER_REP_ADDRCPT_PAR:
    case MILTER_REP_CHGFROM:
        return decode_addr(f, r, 2, error_r);
    case MILTER_REP_REPLBODY:
        r->body = f->data;
        r->body_len = f->len;
        return 0;
    case MILTER_REP_QUARANTINE:
    case MILTER_REP_REPLYCODE:
        return decode_text(f, r, error_r);
    default:
        *error_r = "unknown reply";
        return -1;
    }
}

/* ---- REPLYCODE ---- */

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Length of an enhanced status code "c.sss.ddd" at p (class c), or 0. */
static size_t enhanced_len(const char *p, size_t len, char cls)
{
    size_t i = 0, digits;

    if (len < 5 || p[0] != cls || p[1] != '.')
        return 0;
    i = 2;
    for (int part = 0; part < 2; part++) {
        for (digits = 0; i < len && is_digit(p[i]) && digits < 3; i++)
            digits++;
        if (digits == 0)
            return 0;
        if (part == 0) {
            if (i >= len || p[i] != '.')
                return 0;
            i++;
        }
    }
    if (i < len && p[i] != ' ')
        return 0;
    return i;
}

/* Appends text[0..n) to out (size SMTP_STATUS_TEXT_MAX), after a '\n' when
 * out is not empty; stops when full. */
static void append_line(char *out, const char *text, size_t n)
{
    size_t o = strlen(out);

    if (o > 0 && o + 1 < SMTP_STATUS_TEXT_MAX)
        out[o++] = '\n';
    if (o + n >= SMTP_STATUS_TEXT_MAX)
        n = SMTP_STATUS_TEXT_MAX - 1 - o;
    memcpy(out + o, text, n);
    out[o + n] = '\0';
}

/* Checks one line (without its EOL): code, separator, printable text. */
static int check_line(const char *line, size_t len, bool last, const char *code,
                      const char **error_r)
{
    if (len < 3 || !is_digit(line[0]) || !is_digit(line[1]) || !is_digit(line[2])) {
        *error_r = "reply line does not start with a code";
        return -1;
    }
    if (line[0] != '4' && line[0] != '5') {
        *error_r = "reply code is not 4xx or 5xx";
        return -1;
    }
    if (line[1] > '5') {
        *error_r = "reply code out of range";
        return -1;
    }
    if (code[0] != '\0' && memcmp(line, code, 3) != 0) {
        *error_r = "reply lines with different codes";
        return -1;
    }
    if (len > 3 && line[3] != (last ? ' ' : '-')) {
        *error_r =
            last ? "last reply line is not \"CODE text\"" : "reply line is not \"CODE-text\"";
        return -1;
    }
    if (len == 3 && !last) {
        *error_r = "reply line is not \"CODE-text\"";
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        if (line[i] < 0x20 || line[i] > 0x7e) {
            *error_r = "reply text is not printable ASCII";
            return -1;
        }
    }
    return 0;
}

int milter_replycode_parse(const char *text, struct smtp_status *st, const char **error_r)
{
    char code[4] = "";
    const char *p = text;

    memset(st, 0, sizeof(*st));
    if (*p == '\0') {
        *error_r = "empty reply";
        return -1;
    }
    while (*p != '\0') {
        const char *eol = strchr(p, '\n');
        size_t len = eol != NULL ? (size_t)(eol - p) : strlen(p);
        const char *next = eol != NULL ? eol + 1 : p + len;
        bool last = *next == '\0';
        size_t skip, enh;

        if (len > 0 && p[len - 1] == '\r')
            len--;
        if (check_line(p, len, last, code, error_r) < 0)
            return -1;
        if (code[0] == '\0')
            memcpy(code, p, 3);
        skip = len > 3 ? 4 : 3;
        enh = enhanced_len(p + skip, len - skip, code[0]);
        if (enh > 0 && st->enhanced[0] == '\0')
            snprintf(st->enhanced, sizeof(st->enhanced), "%.*s", (int)enh, p + skip);
        if (enh > 0)
            skip += enh + (skip + enh < len ? 1 : 0);
        append_line(st->text, p + skip, len - skip);
        p = next;
    }
    st->code = (unsigned short)((code[0] - '0') * 100 + (code[1] - '0') * 10 + (code[2] - '0'));
    return 0;
}

const char *milter_rep_name(char cmd)
{
    switch (cmd) {
    case MILTER_REP_ADDRCPT:
        return "addrcpt";
    case MILTER_REP_DELRCPT:
        return "delrcpt";
    case MILTER_REP_ADDRCPT_PAR:
        return "addrcpt_par";
    case MILTER_REP_SHUTDOWN:
        return "shutdown";
    case MILTER_REP_ACCEPT:
        return "accept";
    case MILTER_REP_REPLBODY:
        return "replbody";
    case MILTER_REP_CONTINUE:
        return "continue";
    case MILTER_REP_DISCARD:
        return "discard";
    case MILTER_REP_CHGFROM:
        return "chgfrom";
    case MILTER_REP_CONN_FAIL:
        return "conn_fail";
    case MILTER_REP_ADDHEADER:
        return "addheader";
    case MILTER_REP_INSHEADER:
        return "insheader";
    case MILTER_REP_SETSYMLIST:
        return "setsymlist";
    case MILTER_REP_CHGHEADER:
        return "chgheader";
    case MILTER_REP_OPTNEG:
        return "optneg";
    case MILTER_REP_PROGRESS:
        return "progress";
    case MILTER_REP_QUARANTINE:
        return "quarantine";
    case MILTER_REP_REJECT:
        return "reject";
    case MILTER_REP_SKIP:
        return "skip";
    case MILTER_REP_TEMPFAIL:
        return "tempfail";
    case MILTER_REP_REPLYCODE:
        return "replycode";
    default:
        return "unknown";
    }
}

/* ---- encoding ---- */

static int put_head(struct evbuffer *out, char cmd, size_t len)
{
    uint8_t head[5];

    if (len > MILTER_CHUNK_MAX)
        return -1;
    put32(head, (uint32_t)len + 1);
    head[4] = (uint8_t)cmd;
    return evbuffer_add(out, head, sizeof(head));
}

int milter_put_empty(struct evbuffer *out, char cmd)
{
    return put_head(out, cmd, 0);
}

int milter_put_optneg(struct evbuffer *out, uint32_t version, uint32_t actions, uint32_t protocol)
{
    uint8_t data[12];

    put32(data, version);
    put32(data + 4, actions);
    put32(data + 8, protocol);
    if (put_head(out, MILTER_CMD_OPTNEG, sizeof(data)) < 0)
        return -1;
    return evbuffer_add(out, data, sizeof(data));
}

int milter_put_connect(struct evbuffer *out, const char *hostname, char family, uint16_t port,
                       const char *addr)
{
    size_t hlen = strlen(hostname) + 1;
    size_t alen = family == 'U' ? 0 : strlen(addr) + 1;
    uint8_t fam[3] = {(uint8_t)family, (uint8_t)(port >> 8), (uint8_t)port};
    size_t flen = family == 'U' ? 1 : 3;

    if (put_head(out, MILTER_CMD_CONNECT, hlen + flen + alen) < 0 ||
        evbuffer_add(out, hostname, hlen) < 0 || evbuffer_add(out, fam, flen) < 0)
        return -1;
    return alen > 0 ? evbuffer_add(out, addr, alen) : 0;
}

int milter_put_strings(struct evbuffer *out, char cmd, const char *const *strs, size_t n)
{
    size_t len = 0;

    for (size_t i = 0; i < n; i++)
        len += strlen(strs[i]) + 1;
    if (put_head(out, cmd, len) < 0)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (evbuffer_add(out, strs[i], strlen(strs[i]) + 1) < 0)
            return -1;
    return 0;
}

int milter_put_macros(struct evbuffer *out, char cmd, const char *const *names,
                      const char *const *values, size_t n)
{
    size_t len = 1;
    uint8_t c = (uint8_t)cmd;

    for (size_t i = 0; i < n; i++)
        len += strlen(names[i]) + 1 + strlen(values[i]) + 1;
    if (put_head(out, MILTER_CMD_MACRO, len) < 0 || evbuffer_add(out, &c, 1) < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (evbuffer_add(out, names[i], strlen(names[i]) + 1) < 0 ||
            evbuffer_add(out, values[i], strlen(values[i]) + 1) < 0)
            return -1;
    }
    return 0;
}

int milter_put_body(struct evbuffer *out, const void *data, size_t len)
{
    if (put_head(out, MILTER_CMD_BODY, len) < 0)
        return -1;
    return len > 0 ? evbuffer_add(out, data, len) : 0;
}

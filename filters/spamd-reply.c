/*
 * spamd-reply — see spamd-reply.h. The response is read as lines ending in
 * LF (a CR before it is dropped); the head (status line and header lines)
 * must end with an empty line within SPAMD_REPLY_HEAD_MAX octets, except
 * that an error status line is final at once (spamd sends an error as the
 * status line alone and closes). Nothing here allocates or keeps state.
 */
#include "config.h"
#include "filters/spamd-reply.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#define STATUS_LINE_MAX 512
#define HEADERS_FIELD_MAX 8192 /* X-Spam-Status of a HEADERS body, unfolded */

static const char *const command_names[] = {"SYMBOLS", "REPORT", "HEADERS"};

/* ---- small pieces ---- */

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_rule_char(char c)
{
    return is_digit(c) || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t';
}

size_t spamd_parse_number(const char *text, size_t len, double *out)
{
    size_t i = 0, int_digits = 0, frac_digits = 0;
    uint32_t whole = 0, frac = 0, scale = 1;
    double v;
    bool neg = false;

    if (i < len && (text[i] == '-' || text[i] == '+'))
        neg = text[i++] == '-';
    for (; i < len && is_digit(text[i]); i++) {
        if (++int_digits > 9)
            return 0;
        whole = whole * 10 + (uint32_t)(text[i] - '0');
    }
    if (int_digits == 0)
        return 0;
    if (i < len && text[i] == '.') {
        for (i++; i < len && is_digit(text[i]); i++) {
            if (++frac_digits > 6)
                return 0;
            frac = frac * 10 + (uint32_t)(text[i] - '0');
            scale *= 10;
        }
        if (frac_digits == 0)
            return 0;
    }
    v = (double)whole + (double)frac / scale; /* exact for what SpamAssassin prints */
    if (v > SPAMD_SCORE_MAX)
        return 0;
    *out = neg ? -v : v;
    return i;
}

bool spamd_user_ok(const char *name)
{
    size_t n = strlen(name);

    if (n == 0 || n > SPAMD_USER_MAX || name[0] == '-' || name[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!is_rule_char(c) && strchr(".+=@-", c) == NULL)
            return false;
    }
    return true;
}

int spamd_request_header(enum spamd_command cmd, uint64_t length, const char *user, char *out,
                         size_t size)
{
    bool with_user = user != NULL && user[0] != '\0';
    int n;

    if ((unsigned)cmd > SPAMD_CMD_HEADERS || (with_user && !spamd_user_ok(user)))
        return -1;
    n = snprintf(out, size, "%s SPAMC/1.5\r\nContent-length: %llu\r\n%s%s%s\r\n",
                 command_names[cmd], (unsigned long long)length, with_user ? "User: " : "",
                 with_user ? user : "", with_user ? "\r\n" : "");
    return n < 0 || (size_t)n >= size ? -1 : n;
}

/* The line at buf[*pos..len) without its end: *line, *n; moves *pos past
 * the LF. Returns false when no LF comes before len. */
static bool next_line(const char *buf, size_t len, size_t *pos, const char **line, size_t *n)
{
    const char *lf = memchr(buf + *pos, '\n', len - *pos);

    if (lf == NULL)
        return false;
    *line = buf + *pos;
    *n = (size_t)(lf - *line);
    if (*n > 0 && (*line)[*n - 1] == '\r')
        (*n)--;
    *pos = (size_t)(lf - buf) + 1;
    return true;
}

static void add_rule(struct spamd_reply *out, const char *name, size_t n, bool has_points,
                     double points)
{
    struct spamd_rule *r;

    if (out->rule_count >= SPAMD_RULES_MAX) {
        out->rules_dropped++;
        return;
    }
    r = &out->rules[out->rule_count++];
    memcpy(r->name, name, n);
    r->name[n] = '\0';
    r->has_points = has_points;
    r->points = has_points ? points : 0;
}

/* The length of the rule name at text[0..len): 1..SPAMD_RULE_MAX rule
 * characters, or 0. */
static size_t rule_name_len(const char *text, size_t len)
{
    size_t n = 0;

    while (n < len && is_rule_char(text[n]))
        n++;
    return n <= SPAMD_RULE_MAX ? n : 0;
}

/* ---- the head ---- */

/* "SPAMD/1.1 0 EX_OK" -> out->code, out->text. */
static int parse_status(const char *line, size_t n, struct spamd_reply *out, const char **error_r)
{
    size_t i = sizeof("SPAMD/1.") - 1, digits = 0, t = 0;

    if (n < i || memcmp(line, "SPAMD/1.", i) != 0) {
        *error_r = "not a spamd response (no SPAMD/1.x status line)";
        return -1;
    }
    while (i < n && is_digit(line[i]) && digits < 3)
        i++, digits++;
    if (digits == 0 || i >= n || line[i] != ' ') {
        *error_r = "bad protocol version in the status line";
        return -1;
    }
    i++;
    out->code = 0;
    for (digits = 0; i < n && is_digit(line[i]); i++) {
        if (++digits > 3) {
            *error_r = "bad code in the status line";
            return -1;
        }
        out->code = out->code * 10 + (unsigned)(line[i] - '0');
    }
    if (digits == 0 || (i < n && line[i] != ' ')) {
        *error_r = "bad code in the status line";
        return -1;
    }
    for (i++; i < n && t + 1 < sizeof(out->text); i++)
        out->text[t++] = line[i] >= 0x20 && line[i] < 0x7f ? line[i] : '?';
    out->text[t] = '\0';
    if (out->code != 0) {
        *error_r = "spamd answered an error";
        return -1;
    }
    return 0;
}

/* "True ; 20.0 / 5.0" */
static int parse_spam(const char *v, size_t n, struct spamd_reply *out)
{
    size_t i = 0, w, k;

    while (i < n && is_space(v[i]))
        i++;
    for (w = i; i < n && ((v[i] >= 'A' && v[i] <= 'Z') || (v[i] >= 'a' && v[i] <= 'z'));)
        i++;
    if ((i - w == 4 && strncasecmp(v + w, "true", 4) == 0) ||
        (i - w == 3 && strncasecmp(v + w, "yes", 3) == 0))
        out->is_spam = true;
    else if ((i - w == 5 && strncasecmp(v + w, "false", 5) == 0) ||
             (i - w == 2 && strncasecmp(v + w, "no", 2) == 0))
        out->is_spam = false;
    else
        return -1;
    while (i < n && is_space(v[i]))
        i++;
    if (i >= n || v[i++] != ';')
        return -1;
    while (i < n && is_space(v[i]))
        i++;
    if ((k = spamd_parse_number(v + i, n - i, &out->score)) == 0)
        return -1;
    for (i += k; i < n && is_space(v[i]);)
        i++;
    if (i >= n || v[i++] != '/')
        return -1;
    while (i < n && is_space(v[i]))
        i++;
    if ((k = spamd_parse_number(v + i, n - i, &out->threshold)) == 0)
        return -1;
    for (i += k; i < n && is_space(v[i]);)
        i++;
    return i == n ? 0 : -1;
}

struct head {
    size_t body; /* offset of the body */
    bool has_length;
    size_t length; /* Content-length */
    bool has_spam;
};

/* "Name: value": the name is 1..64 of [A-Za-z0-9-]. */
static int parse_header_line(const char *line, size_t n, struct head *h, struct spamd_reply *out,
                             const char **error_r)
{
    size_t name = 0, v;

    while (name < n && name <= 64 && (is_rule_char(line[name]) || line[name] == '-'))
        name++;
    if (name == 0 || name > 64 || name >= n || line[name] != ':') {
        *error_r = "bad header line in the response";
        return -1;
    }
    for (v = name + 1; v < n && is_space(line[v]);)
        v++;
    if (name == 14 && strncasecmp(line, "Content-length", 14) == 0) {
        size_t len = 0, i = v;
        for (; i < n && is_digit(line[i]) && len <= SPAMD_REPLY_MAX; i++)
            len = len * 10 + (size_t)(line[i] - '0');
        while (i < n && is_space(line[i]))
            i++;
        if (h->has_length || i == v || i != n || len > SPAMD_REPLY_MAX) {
            *error_r = "bad Content-length in the response";
            return -1;
        }
        h->has_length = true;
        h->length = len;
    } else if (name == 4 && strncasecmp(line, "Spam", 4) == 0) {
        if (h->has_spam || parse_spam(line + v, n - v, out) < 0) {
            *error_r = "bad Spam header in the response";
            return -1;
        }
        h->has_spam = true;
    } else if (name == 8 && strncasecmp(line, "Compress", 8) == 0) {
        *error_r = "compressed response (not asked for)";
        return -1;
    }
    return 0;
}

/* Returns 1 with h filled when the head is in, 0 for more, -1 bad. */
static int parse_head(const char *buf, size_t len, bool eof, struct head *h,
                      struct spamd_reply *out, const char **error_r)
{
    size_t pos = 0, n, lines = 0;
    const char *line;

    if (!next_line(buf, len < STATUS_LINE_MAX ? len : STATUS_LINE_MAX, &pos, &line, &n)) {
        if (len >= STATUS_LINE_MAX)
            *error_r = "status line too long";
        else if (eof)
            *error_r = len == 0 ? "closed without a response" : "response cut short";
        else
            return 0;
        return -1;
    }
    if (parse_status(line, n, out, error_r) < 0)
        return -1;
    for (;;) {
        size_t limit = len < SPAMD_REPLY_HEAD_MAX ? len : SPAMD_REPLY_HEAD_MAX;
        if (!next_line(buf, limit, &pos, &line, &n)) {
            if (len >= SPAMD_REPLY_HEAD_MAX)
                *error_r = "response header too long";
            else if (eof)
                *error_r = "response cut short";
            else
                return 0;
            return -1;
        }
        if (n == 0)
            break;
        if (++lines > SPAMD_REPLY_LINES_MAX) {
            *error_r = "too many header lines in the response";
            return -1;
        }
        if (parse_header_line(line, n, h, out, error_r) < 0)
            return -1;
    }
    h->body = pos;
    return 1;
}

/* ---- the bodies ---- */

/* "RULE_A,RULE_B" (and maybe a line end) */
static int parse_symbols(const char *b, size_t n, struct spamd_reply *out, const char **error_r)
{
    size_t i = 0;

    while (n > 0 && (b[n - 1] == '\r' || b[n - 1] == '\n' || is_space(b[n - 1])))
        n--;
    while (i < n) {
        size_t k = rule_name_len(b + i, n - i);
        if (k == 0 || (i + k < n && b[i + k] != ',') || i + k + 1 == n) {
            *error_r = "bad rule list in the SYMBOLS response";
            return -1;
        }
        add_rule(out, b + i, k, false, 0);
        i += k + 1;
    }
    return 0;
}

/* One line of the report's table: "  20 RULE_NAME   description". Other
 * lines (a description's continuation) are not rules. */
static void report_line(const char *line, size_t n, struct spamd_reply *out)
{
    size_t i = 0, k;
    double points;

    while (i < n && is_space(line[i]))
        i++;
    if ((k = spamd_parse_number(line + i, n - i, &points)) == 0)
        return;
    i += k;
    if (i >= n || !is_space(line[i]))
        return;
    while (i < n && is_space(line[i]))
        i++;
    k = rule_name_len(line + i, n - i);
    if (k > 0 && (i + k == n || is_space(line[i + k])))
        add_rule(out, line + i, k, true, points);
}

static int parse_report(const char *b, size_t n, struct spamd_reply *out)
{
    size_t pos = 0, len;
    const char *line;
    bool table = false;

    while (pos < n) {
        if (!next_line(b, n, &pos, &line, &len)) { /* the last line, without LF */
            line = b + pos;
            len = n - pos;
            pos = n;
        }
        if (!table) {
            table = len >= 4 && memcmp(line, "----", 4) == 0;
            continue;
        }
        while (len > 0 && is_space(line[len - 1]))
            len--;
        if (len == 0)
            break; /* the table ends at an empty line */
        report_line(line, len, out);
    }
    return 0;
}

/* The unfolded value of the first X-Spam-Status field of a header part
 * (CR and LF become spaces) into v; returns its length, 0 when there is
 * none, or -1 when it is longer than size. */
static long headers_status(const char *b, size_t n, char *v, size_t size)
{
    static const char name[] = "X-Spam-Status:";
    size_t pos = 0, o = 0, len;
    const char *line;
    bool in = false;

    while (pos < n) {
        if (!next_line(b, n, &pos, &line, &len)) {
            line = b + pos;
            len = n - pos;
            pos = n;
        }
        if (len == 0)
            break; /* end of the header */
        if (in && !is_space(line[0]))
            break;
        if (!in && len >= sizeof(name) - 1 && strncasecmp(line, name, sizeof(name) - 1) == 0) {
            in = true;
            line += sizeof(name) - 1;
            len -= sizeof(name) - 1;
        } else if (!in) {
            continue;
        }
        if (o + len + 1 >= size)
            return -1;
        for (size_t i = 0; i < len; i++)
            v[o++] = line[i] == '\r' || line[i] == '\n' ? ' ' : line[i];
        v[o++] = ' ';
    }
    v[o] = '\0';
    return (long)o;
}

/* "... tests=RULE_A,RULE_B,\t RULE_C autolearn=..." ("tests=none": none) */
static int parse_headers(const char *b, size_t n, struct spamd_reply *out, const char **error_r)
{
    char v[HEADERS_FIELD_MAX];
    long len = headers_status(b, n, v, sizeof(v));
    const char *t;
    size_t i;

    if (len < 0) {
        *error_r = "X-Spam-Status too long in the HEADERS response";
        return -1;
    }
    for (t = v; (t = strstr(t, "tests=")) != NULL; t++) {
        if (t == v || is_space(t[-1]))
            break;
    }
    if (t == NULL)
        return 0;
    t += sizeof("tests=") - 1;
    if (strncmp(t, "none", 4) == 0 && (t[4] == '\0' || is_space(t[4])))
        return 0;
    for (i = 0;;) {
        size_t k = rule_name_len(t + i, strlen(t + i));
        if (k == 0) {
            *error_r = "bad tests= list in the HEADERS response";
            return -1;
        }
        add_rule(out, t + i, k, false, 0);
        i += k;
        if (t[i] != ',')
            break;
        for (i++; is_space(t[i]);)
            i++;
    }
    if (t[i] != '\0' && !is_space(t[i])) {
        *error_r = "bad tests= list in the HEADERS response";
        return -1;
    }
    return 0;
}

int spamd_reply_parse(const char *buf, size_t len, bool eof, enum spamd_command cmd,
                      struct spamd_reply *out, const char **error_r)
{
    struct head h = {0};
    size_t body_len;
    int rc;

    memset(out, 0, sizeof(*out));
    *error_r = NULL;
    if (len > SPAMD_REPLY_MAX) {
        *error_r = "response too long";
        return -1;
    }
    if ((rc = parse_head(buf, len, eof, &h, out, error_r)) <= 0)
        return rc;
    body_len = len - h.body;
    if (h.has_length && body_len > h.length) {
        *error_r = "more data than Content-length in the response";
        return -1;
    }
    if ((h.has_length && body_len < h.length) || (!h.has_length && !eof)) {
        if (!eof)
            return 0;
        *error_r = "response cut short";
        return -1;
    }
    if (!h.has_spam) {
        *error_r = "no Spam header in the response";
        return -1;
    }
    switch (cmd) {
    case SPAMD_CMD_SYMBOLS:
        rc = parse_symbols(buf + h.body, body_len, out, error_r);
        break;
    case SPAMD_CMD_REPORT:
        rc = parse_report(buf + h.body, body_len, out);
        break;
    case SPAMD_CMD_HEADERS:
        rc = parse_headers(buf + h.body, body_len, out, error_r);
        break;
    default:
        *error_r = "unknown command";
        rc = -1;
    }
    return rc < 0 ? -1 : 1;
}

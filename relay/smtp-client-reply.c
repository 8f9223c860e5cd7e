/*
 * smtp-client-reply — see smtp-client-reply.h. One function reads every
 * line of a reply, first or continuation, with the same checks: length,
 * count, a three-digit code (2-5, 0-5, 0-9) equal to the first line's, then
 * SP, '-' or the end of the line. An RFC 3463 code of the reply's class at
 * the start of the first line is split out (and dropped from the following
 * lines when they repeat it).
 *
 * SECURITY: the bytes come from an untrusted server. Nothing is buffered
 * before its length is checked; text kept for logs and DSNs is cut to fit
 * and every control or non-ASCII byte becomes '?'.
 */
#include "config.h"
#include "relay/smtp-client-reply.h"

#include <stdbool.h>
#include <string.h>

void smtp_reply_parser_init(struct smtp_reply_parser *p)
{
    memset(p, 0, sizeof(*p));
}

static bool is_digit(char ch)
{
    return ch >= '0' && ch <= '9';
}

/* RFC 5321 §4.2: reply codes 2yz-5yz with y in 0-5. Returns 0 when bad. */
static unsigned parse_code(const char *s)
{
    if (s[0] < '2' || s[0] > '5' || s[1] < '0' || s[1] > '5' || !is_digit(s[2]))
        return 0;
    return (unsigned)(s[0] - '0') * 100 + (unsigned)(s[1] - '0') * 10 + (unsigned)(s[2] - '0');
}

/* Digits of one RFC 3463 subcode (1-3) at s[*i]; advances *i. */
static bool subcode(const char *s, size_t len, size_t *i)
{
    size_t start = *i;

    while (*i < len && is_digit(s[*i]) && *i - start < 3)
        (*i)++;
    return *i > start;
}

/* Length of "class.subject.detail" at the start of s when its class is the
 * reply's (2, 4 or 5) and it is followed by SP or the end; else 0. */
static size_t enhanced_len(const char *s, size_t len, unsigned code)
{
    unsigned cls = code / 100;
    size_t i = 2;

    if (cls == 3 || len < 5 || s[0] != (char)('0' + cls) || s[1] != '.')
        return 0;
    if (!subcode(s, len, &i) || i >= len || s[i] != '.')
        return 0;
    i++;
    if (!subcode(s, len, &i) || (i < len && s[i] != ' '))
        return 0;
    return i < sizeof(((struct smtp_status *)0)->enhanced) ? i : 0;
}

static char safe_char(char ch, bool upper)
{
    if (ch == '\t')
        return ' ';
    if ((unsigned char)ch < 0x20 || (unsigned char)ch >= 0x7f)
        return '?';
    if (upper && ch >= 'a' && ch <= 'z')
        return (char)(ch - 'a' + 'A');
    return ch;
}

/* Appends a line to status.text ('\n' between lines), cut to fit. */
static void add_text(struct smtp_reply_parser *p, const char *s, size_t len)
{
    char *text = p->status.text;
    size_t used = strlen(text), room;

    if (p->lines > 1 && used + 1 < sizeof(p->status.text))
        text[used++] = '\n';
    room = sizeof(p->status.text) - 1 - used;
    if (len > room)
        len = room;
    for (size_t i = 0; i < len; i++)
        text[used + i] = safe_char(s[i], false);
    text[used + len] = '\0';
}

/* Appends an EHLO keyword line to ext when all of it fits: a line cut in
 * two could read as another keyword. */
static void add_ext(struct smtp_reply_parser *p, const char *s, size_t len)
{
    size_t used = strlen(p->ext), sep = used > 0 ? 1 : 0;

    if (len == 0 || used + sep + len >= sizeof(p->ext))
        return;
    if (sep)
        p->ext[used++] = '\n';
    for (size_t i = 0; i < len; i++)
        p->ext[used + i] = safe_char(s[i], true);
    p->ext[used + len] = '\0';
}

/* The text after "CODE" and its separator, without the enhanced code. */
static void add_line_text(struct smtp_reply_parser *p, const char *s, size_t len)
{
    size_t enh = enhanced_len(s, len, p->code);

    if (p->lines == 1 && enh > 0) {
        memcpy(p->status.enhanced, s, enh);
        p->status.enhanced[enh] = '\0';
    } else if (p->status.enhanced[0] == '\0' || enh != strlen(p->status.enhanced) ||
               memcmp(s, p->status.enhanced, enh) != 0) {
        enh = 0; /* only a repeat of the first line's code is dropped */
    }
    s += enh;
    len -= enh;
    while (enh > 0 && len > 0 && *s == ' ') {
        s++;
        len--;
    }
    add_text(p, s, len);
    if (p->lines > 1)
        add_ext(p, s, len);
}

int smtp_reply_parser_line(struct smtp_reply_parser *p, const char *line, size_t len)
{
    unsigned code;

    if (len > 0 && line[len - 1] == '\r')
        len--; /* a caller that split at LF only */
    if (len < 3 || len > SMTP_REPLY_LINE_MAX || p->lines >= SMTP_REPLY_LINES)
        return -1;
    code = parse_code(line);
    if (code == 0 || (p->lines > 0 && code != p->code))
        return -1;
    if (len > 3 && line[3] != ' ' && line[3] != '-')
        return -1;
    p->code = code;
    p->lines++;
    add_line_text(p, len > 3 ? line + 4 : "", len > 3 ? len - 4 : 0);
    if (len > 3 && line[3] == '-')
        return 0;
    p->status.code = (unsigned short)code;
    return 1;
}

/*
 * fuzz-smtp-reply — libFuzzer target for relay/smtp-client-reply.c, the
 * parser of replies from untrusted next-hop servers. The input is split at
 * LF (a CR before it goes too, as the client's EOL search does; a lone CR
 * stays in the line) and fed line by line; after each complete or
 * malformed reply the parser starts again. Invariants that fail abort(),
 * so the fuzzer and the replay run in make check both report them. Each
 * line is copied into a buffer of exactly its size so that ASan sees any
 * read past the end.
 */
#include "config.h"
#include "relay/smtp-client-reply.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok)
{
    if (!ok)
        abort();
}

static bool printable(const char *s, bool newlines)
{
    for (; *s != '\0'; s++) {
        if ((*s < 0x20 && !(newlines && *s == '\n')) || *s >= 0x7f)
            return false;
    }
    return true;
}

/* A complete reply: a valid code, bounded and safe text, the enhanced
 * code of the same class when there is one, keyword lines upper-case. */
static void check_complete(const struct smtp_reply_parser *p)
{
    const struct smtp_status *st = &p->status;

    check(st->code >= 200 && st->code <= 599 && st->code == p->code);
    check(st->code % 100 / 10 <= 5);
    check(p->lines >= 1 && p->lines <= SMTP_REPLY_LINES);
    check(strlen(st->text) < SMTP_STATUS_TEXT_MAX && printable(st->text, true));
    check(strlen(st->enhanced) < sizeof(st->enhanced) && printable(st->enhanced, false));
    check(st->enhanced[0] == '\0' ||
          (st->enhanced[0] == (char)('0' + st->code / 100) && st->enhanced[1] == '.'));
    check(strlen(p->ext) < sizeof(p->ext) && printable(p->ext, true));
    for (const char *s = p->ext; *s != '\0'; s++)
        check(*s < 'a' || *s > 'z');
    check(p->lines > 1 || p->ext[0] == '\0');
}

static int feed_line(struct smtp_reply_parser *p, const uint8_t *data, size_t len)
{
    char *line = malloc(len > 0 ? len : 1);
    unsigned before = p->lines;
    int rc;

    if (line == NULL)
        return -1;
    if (len > 0)
        memcpy(line, data, len);
    rc = smtp_reply_parser_line(p, line, len);
    free(line);
    check(rc >= -1 && rc <= 1);
    if (rc >= 0)
        check(p->lines == before + 1);
    if (rc == 0)
        check(p->status.code == 0);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct smtp_reply_parser p;
    size_t start = 0;

    smtp_reply_parser_init(&p);
    while (start < size) {
        const uint8_t *lf = memchr(data + start, '\n', size - start);
        size_t end = lf != NULL ? (size_t)(lf - data) : size;
        size_t len = end - start;
        int rc;

        if (len > 0 && data[start + len - 1] == '\r')
            len--;
        rc = feed_line(&p, data + start, len);
        if (rc == 1)
            check_complete(&p);
        if (rc != 0)
            smtp_reply_parser_init(&p);
        start = end + 1;
    }
    return 0;
}

/*
 * fuzz-clamd-reply — libFuzzer target for filters/clamd-reply.c, the parser
 * of what clamd (or whatever answers at its address) sends back. The input
 * is the octets as they arrive: every prefix is given to clamd_reply_end,
 * as the filter does while they come in (a reply found stays found, the
 * bound holds); the first reply is judged from a buffer of exactly its size
 * (so ASan sees any read past it), and so is the whole input. Invariants
 * that fail abort(), so the fuzzer and the replay in make check both report
 * them: a clean verdict only for exactly "stream: OK", a virus only with a
 * bounded printable name without spaces that the input carries, never one
 * named Heuristics.Limits.Exceeded, log text printable.
 */
#include "config.h"
#include "filters/clamd.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define PREFIXES_MAX (CLAMD_REPLY_MAX + 16)

static void check(bool ok)
{
    if (!ok)
        abort();
}

static bool printable(const char *s, bool spaces)
{
    for (; *s != '\0'; s++) {
        if (*s < 0x20 || *s > 0x7e || (!spaces && *s == ' '))
            return false;
    }
    return true;
}

static void check_reply(const char *msg, size_t len, const struct clamd_reply *r)
{
    size_t body = len > 0 && msg[len - 1] == '\n' ? len - 1 : len;
    size_t n = strlen(r->name);

    check(r->verdict >= CLAMD_CLEAN && r->verdict <= CLAMD_ERROR);
    check(strlen(r->text) < sizeof(r->text) && printable(r->text, true));
    check(n <= CLAMD_NAME_MAX && printable(r->name, false));
    if (r->verdict == CLAMD_CLEAN)
        check(body == 10 && memcmp(msg, "stream: OK", 10) == 0);
    if (r->verdict == CLAMD_VIRUS) {
        check(n > 0 && body > 14 && memcmp(msg, "stream: ", 8) == 0);
        check(memcmp(msg + body - 6, " FOUND", 6) == 0 && memcmp(msg + 8, r->name, n) == 0);
        check(strncmp(r->name, "Heuristics.Limits.Exceeded", 26) != 0 ||
              (r->name[26] != '\0' && r->name[26] != '.'));
    }
    if (r->verdict != CLAMD_VIRUS && r->verdict != CLAMD_LIMIT)
        check(n == 0);
}

static void parse_exact(const uint8_t *data, size_t len)
{
    char *copy = malloc(len > 0 ? len : 1);
    struct clamd_reply r;

    if (copy == NULL)
        return;
    if (len > 0)
        memcpy(copy, data, len);
    else
        copy[0] = 'x'; /* never read: the parser sees len 0 */
    clamd_reply_parse(copy, len, &r);
    check_reply(copy, len, &r);
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    long end = clamd_reply_end(data, size);
    long first = -3;

    check(end >= -2 && end <= CLAMD_REPLY_MAX && end < (long)size);
    if (end >= 0) {
        check(data[end] == 0 && memchr(data, 0, (size_t)end) == NULL);
    } else {
        size_t seen = size < CLAMD_REPLY_MAX + 1 ? size : CLAMD_REPLY_MAX + 1;
        check(memchr(data, 0, seen) == NULL);
        check(end == (size > CLAMD_REPLY_MAX ? -2 : -1));
    }
    /* as the octets come in: once found, the end stays where it is */
    for (size_t i = 0; i <= size && i < PREFIXES_MAX; i++) {
        long e = clamd_reply_end(data, i);
        if (first >= 0)
            check(e == first);
        else if (e >= 0)
            first = e;
        check(e != -2 || end == -2);
    }
    if (end >= 0)
        parse_exact(data, (size_t)end);
    parse_exact(data, size);
    return 0;
}

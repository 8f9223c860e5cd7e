/*
 * fuzz-spamd-reply — libFuzzer target for filters/spamd-reply.c, the parser
 * of responses from spamd (a network peer: untrusted). The first octet
 * picks the command (its value mod 3: SYMBOLS, REPORT, HEADERS); the rest
 * is the response, parsed as the filter does while it reads: the first
 * half, then the whole without and with the peer's close. Invariants that
 * fail abort(), so the fuzzer and the replay run in make check both report
 * them: a result is one of -1, 0, 1, never 0 at the close; an error has a
 * reason; a complete reply has code 0, finite bounded numbers, at most
 * SPAMD_RULES_MAX rule names of [A-Za-z0-9_]; a reply complete with part
 * of the input is never "more, please" with all of it. The response is
 * copied into a buffer of exactly its size so that ASan sees any read past
 * the end.
 */
#include "config.h"
#include "filters/spamd-reply.h"

#include <math.h>
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

static bool number_ok(double v)
{
    return isfinite(v) && fabs(v) <= SPAMD_SCORE_MAX;
}

static void check_complete(const struct spamd_reply *r)
{
    check(r->code == 0);
    check(number_ok(r->score) && number_ok(r->threshold));
    check(r->rule_count <= SPAMD_RULES_MAX);
    check(r->rules_dropped == 0 || r->rule_count == SPAMD_RULES_MAX);
    for (size_t i = 0; i < r->rule_count; i++) {
        size_t n = strlen(r->rules[i].name);
        check(n >= 1 && n <= SPAMD_RULE_MAX);
        check(strspn(r->rules[i].name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                       "0123456789_") == n);
        check(number_ok(r->rules[i].points));
        check(r->rules[i].has_points || r->rules[i].points == 0);
    }
}

static int parse(const char *buf, size_t len, bool eof, enum spamd_command cmd,
                 struct spamd_reply *r)
{
    const char *error = NULL;
    int rc = spamd_reply_parse(buf, len, eof, cmd, r, &error);

    check(rc >= -1 && rc <= 1);
    check(!eof || rc != 0);
    check(rc != -1 || error != NULL);
    check(strlen(r->text) < sizeof(r->text));
    for (const char *t = r->text; *t != '\0'; t++)
        check(*t >= 0x20 && *t < 0x7f);
    if (rc == 1)
        check_complete(r);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct spamd_reply *r;
    enum spamd_command cmd;
    char *buf;
    size_t len;
    int half, whole;

    if (size == 0)
        return 0;
    cmd = (enum spamd_command)(data[0] % 3);
    len = size - 1;
    buf = malloc(len > 0 ? len : 1);
    r = malloc(sizeof(*r));
    if (buf == NULL || r == NULL) {
        free(buf);
        free(r);
        return 0;
    }
    if (len > 0)
        memcpy(buf, data + 1, len);
    half = parse(buf, len / 2, false, cmd, r);
    whole = parse(buf, len, false, cmd, r);
    check(half != 1 || whole != 0);
    check(half != -1 || whole == -1); /* an error does not go away with more input */
    (void)parse(buf, len, true, cmd, r);
    free(r);
    free(buf);
    return 0;
}

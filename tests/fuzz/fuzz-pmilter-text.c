/*
 * fuzz-pmilter-text — libFuzzer target for what postern-milter does to the
 * MTA's text (milter/pmilter-text.h): envelope addresses as libmilter
 * gives them, header names and values made CR LF for the collected
 * message, folded values made LF for libmilter, and reply text made fit
 * for smfi_setreply. The input, cut at its first NUL, is the text.
 *
 * Asserts memory safety and the documented results: an address at most
 * PMILTER_ADDR_MAX long with its one pair of angle brackets gone; CR LF
 * text with no lone CR or LF, as many line breaks as the input had; a
 * milter value with no CR and every LF kept; a reply with no CR, LF or
 * '%'. Invariants that fail abort(), so the fuzzer and the replay run in
 * make check both report them.
 */
#include "config.h"
#include "milter/pmilter-text.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t line_breaks(const char *s)
{
    size_t n = 0;

    for (; *s != '\0'; s++)
        if (*s == '\n' || (*s == '\r' && s[1] != '\n'))
            n++;
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in = malloc(size + 1), *a, *c, *v;
    size_t len;

    if (in == NULL)
        return 0;
    memcpy(in, data, size);
    in[size] = '\0';
    len = strlen(in);

    if ((a = pmilter_envelope_addr(in)) != NULL) {
        size_t alen = strlen(a);
        if (alen > PMILTER_ADDR_MAX)
            abort();
        if (len >= 2 && in[0] == '<' && in[len - 1] == '>'
                ? alen != len - 2 || memcmp(a, in + 1, alen) != 0
                : alen != len || memcmp(a, in, alen) != 0)
            abort();
        free(a);
    } else if (len <= PMILTER_ADDR_MAX) {
        abort(); /* only too long (or no memory, not here) is refused */
    }

    if ((c = pmilter_crlf(in)) != NULL) {
        size_t breaks = 0;
        for (const char *p = c; *p != '\0'; p++) {
            if (*p == '\r' && p[1] != '\n')
                abort();
            if (*p == '\n' && (p == c || p[-1] != '\r'))
                abort();
            if (*p == '\n')
                breaks++;
        }
        if (breaks != line_breaks(in))
            abort();
        free(c);
    }

    if ((v = pmilter_milter_value(in)) != NULL) {
        size_t lf_in = 0, lf_out = 0;
        for (const char *p = in; *p != '\0'; p++)
            lf_in += *p == '\n';
        for (const char *p = v; *p != '\0'; p++) {
            if (*p == '\r')
                abort();
            lf_out += *p == '\n';
        }
        if (lf_in != lf_out)
            abort();
        free(v);
    }

    pmilter_reply_text(in);
    if (strpbrk(in, "\r\n%") != NULL || strlen(in) != len)
        abort();
    free(in);
    return 0;
}

/*
 * pmilter-text — see pmilter-text.h.
 */
#include "config.h"
#include "milter/pmilter-text.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

char *pmilter_envelope_addr(const char *arg)
{
    size_t len;

    if (arg == NULL)
        arg = "";
    len = strlen(arg);
    if (len >= 2 && arg[0] == '<' && arg[len - 1] == '>') {
        arg++;
        len -= 2;
    }
    return len > PMILTER_ADDR_MAX ? NULL : strndup(arg, len);
}

char *pmilter_crlf(const char *s)
{
    size_t len = strlen(s);
    char *out, *o;

    if (len > (SIZE_MAX - 1) / 2 || (out = malloc(len * 2 + 1)) == NULL)
        return NULL;
    o = out;
    while (*s != '\0') {
        if (*s == '\r' || *s == '\n') {
            s += s[0] == '\r' && s[1] == '\n' ? 2 : 1;
            *o++ = '\r';
            *o++ = '\n';
        } else {
            *o++ = *s++;
        }
    }
    *o = '\0';
    return out;
}

char *pmilter_milter_value(const char *v)
{
    char *out = malloc(strlen(v) + 1), *o = out;

    if (out == NULL)
        return NULL;
    for (; *v != '\0'; v++)
        if (*v != '\r')
            *o++ = *v;
    *o = '\0';
    return out;
}

void pmilter_reply_text(char *text)
{
    for (char *p = text; *p != '\0'; p++)
        if (*p == '\r' || *p == '\n' || *p == '%')
            *p = ' ';
}

/*
 * clamd-reply — see clamd.h: where clamd's reply ends and what it says.
 *
 * SECURITY: reads octets from the network (clamd, or whatever answers at
 * its address). Bounded before anything is copied (CLAMD_REPLY_MAX,
 * CLAMD_NAME_MAX); only printable ASCII is ever accepted, so a name can go
 * into an SMTP reply and a log line as it is. Whatever is not one of the
 * forms below is an error, never clean. Fuzzed by tests/fuzz/fuzz-clamd-reply.c.
 */
#include "config.h"
#include "filters/clamd.h"

#include <stdio.h>
#include <string.h>

#include "lib/log.h"

#define PREFIX "stream: "
#define LIMITS_NAME "Heuristics.Limits.Exceeded"

long clamd_reply_end(const void *buf, size_t len)
{
    size_t n = len < CLAMD_REPLY_MAX + 1 ? len : CLAMD_REPLY_MAX + 1;
    const char *nul = memchr(buf, '\0', n);

    if (nul != NULL)
        return (long)(nul - (const char *)buf);
    return len > CLAMD_REPLY_MAX ? -2 : -1;
}

const char *clamd_verdict_name(enum clamd_verdict v)
{
    switch (v) {
    case CLAMD_CLEAN:
        return "clean";
    case CLAMD_VIRUS:
        return "virus";
    case CLAMD_LIMIT:
        return "limit";
    case CLAMD_ERROR:
        break;
    }
    return "error";
}

static bool printable(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (s[i] < 0x20 || s[i] > 0x7e)
            return false;
    }
    return true;
}

static bool ends_with(const char *s, size_t len, const char *suffix)
{
    size_t n = strlen(suffix);

    return len >= n && memcmp(s + len - n, suffix, n) == 0;
}

/* name[0..len) of a FOUND reply: without spaces, its "(md5:size)" suffix
 * dropped. Returns the length kept, or 0 when it is no name. */
static size_t found_name(const char *name, size_t len)
{
    const char *paren;

    if (len > 1 && name[len - 1] == ')' && (paren = memchr(name, '(', len)) != NULL)
        len = (size_t)(paren - name);
    if (len == 0 || len > CLAMD_NAME_MAX || memchr(name, ' ', len) != NULL)
        return 0;
    return len;
}

static void parse_found(const char *name, size_t len, struct clamd_reply *r)
{
    size_t n = found_name(name, len);
    size_t ln = strlen(LIMITS_NAME);

    if (n == 0)
        return; /* stays CLAMD_ERROR */
    memcpy(r->name, name, n);
    r->name[n] = '\0';
    /* "Heuristics.Limits.Exceeded" or ".MaxFileSize" etc.: clamd stopped
     * scanning at one of its limits (AlertExceedsMax) */
    if (n >= ln && memcmp(name, LIMITS_NAME, ln) == 0 && (n == ln || name[ln] == '.'))
        r->verdict = CLAMD_LIMIT;
    else
        r->verdict = CLAMD_VIRUS;
}

void clamd_reply_parse(const char *msg, size_t len, struct clamd_reply *r)
{
    size_t plen = strlen(PREFIX);

    memset(r, 0, sizeof(*r));
    r->verdict = CLAMD_ERROR;
    if (len > CLAMD_REPLY_MAX) {
        snprintf(r->text, sizeof(r->text), "reply too long");
        return;
    }
    log_sanitize(r->text, sizeof(r->text), msg, len);
    if (len > 0 && msg[len - 1] == '\n') /* the "n" form of the protocol */
        len--;
    if (!printable(msg, len))
        return;
    if (ends_with(msg, len, " ERROR")) {
        if (strstr(r->text, "size limit exceeded") != NULL)
            r->verdict = CLAMD_LIMIT;
        return;
    }
    if (len < plen || memcmp(msg, PREFIX, plen) != 0)
        return;
    msg += plen;
    len -= plen;
    if (len == 2 && memcmp(msg, "OK", 2) == 0)
        r->verdict = CLAMD_CLEAN;
    else if (ends_with(msg, len, " FOUND"))
        parse_found(msg, len - strlen(" FOUND"), r);
}

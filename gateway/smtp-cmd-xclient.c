/*
 * smtp-cmd-xclient — XCLIENT (Postfix's extension) for trusted front-ends
 * (smtp.xclient_hosts): they tell the real client's ADDR, PORT, NAME, HELO,
 * PROTO and LOGIN; the session then starts over as that client: the filter
 * chain's connect stage runs again for it (DNSBL and the rest judge the real
 * client), then a new 220 greeting (its relay rights included).
 *
 * SECURITY: only hosts in xclient_hosts get here; their values are still
 * xtext-decoded, bounded and validated like any client input.
 */
#include "config.h"
#include "gateway/smtp-session-private.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "gateway/limits.h"
#include "gateway/worker.h"
#include "lib/log.h"

static int apply_addr(struct smtp_session *s, const char *v)
{
    const char *text = strncasecmp(v, "IPV6:", 5) == 0 ? v + 5 : v;
    struct netaddr a;

    if (netaddr_parse(text, &a) < 0)
        return -1;
    if (s->limits_counted) {
        /* The session is counted under the address it is closed with (see
         * session_free): move its place from the old address to the new
         * one. The connection was admitted already, so nothing is enforced. */
        struct limits_config lc = { .exempt = true };
        limits_session_close(s->worker->limits, s->worker->index, &s->client);
        limits_session_open(s->worker->limits, s->worker->index, &a, &lc, time(NULL));
    }
    s->client = a;
    netaddr_to_text(&a, s->client_addr, sizeof(s->client_addr));
    s->trusted = netaddr_list_match(&s->cfg->trusted, &a);
    return 0;
}

static int apply_attr(struct smtp_session *s, const char *name, size_t nlen, const char *v)
{
    bool unavailable = strcmp(v, "[UNAVAILABLE]") == 0 || strcmp(v, "[TEMPUNAVAIL]") == 0;

    if (nlen == 4 && strncasecmp(name, "ADDR", 4) == 0)
        return unavailable ? 0 : apply_addr(s, v);
    if (nlen == 4 && strncasecmp(name, "NAME", 4) == 0)
        return log_sanitize(s->client_name, sizeof(s->client_name), unavailable ? "unknown" : v,
                            strlen(unavailable ? "unknown" : v)), 0;
    if (nlen == 4 && strncasecmp(name, "HELO", 4) == 0) {
        s->helo_seen = !unavailable;
        log_sanitize(s->helo, sizeof(s->helo), v, unavailable ? 0 : strlen(v));
        return 0;
    }
    if (nlen == 4 && strncasecmp(name, "PORT", 4) == 0) {
        char *end;
        unsigned long p = strtoul(v, &end, 10);
        if (!unavailable && (*end != '\0' || p > 65535))
            return -1;
        s->client_port = unavailable ? 0 : (unsigned)p;
        return 0;
    }
    if (nlen == 5 && strncasecmp(name, "PROTO", 5) == 0) {
        s->esmtp = strcasecmp(v, "ESMTP") == 0;
        return unavailable || s->esmtp || strcasecmp(v, "SMTP") == 0 ? 0 : -1;
    }
    if (nlen == 5 && strncasecmp(name, "LOGIN", 5) == 0) {
        s->authenticated = !unavailable;
        log_sanitize(s->auth_user, sizeof(s->auth_user), v, unavailable ? 0 : strlen(v));
        return 0;
    }
    return -2;
}

void smtp_cmd_xclient(struct smtp_session *s, const char *args, size_t len)
{
    char value[256];

    if (!s->xclient_ok) {
        smtp_reply_error(s, 550, "5.7.0", "Error: insufficient authorization");
        return;
    }
    if (s->txn != NULL) {
        smtp_reply_error(s, 503, "5.5.1", "Error: MAIL transaction in progress");
        return;
    }
    while (len > 0) {
        size_t tok = 0;
        while (tok < len && args[tok] != ' ')
            tok++;
        const char *eq = memchr(args, '=', tok);
        int rc = eq == NULL ? -1
                 : smtp_xtext_decode(eq + 1, tok - (size_t)(eq + 1 - args), value, sizeof(value)) < 0
                     ? -1
                     : apply_attr(s, args, (size_t)(eq - args), value);
        if (rc < 0) {
            smtp_reply_error(s, 501, "5.5.4", "Bad XCLIENT attribute or value");
            return;
        }
        args += tok;
        len -= tok;
        while (len > 0 && *args == ' ') {
            args++;
            len--;
        }
    }
    log_info("XCLIENT: client is now %s[%s]:%u", s->client_name, s->client_addr, s->client_port);
    smtp_session_restart(s); /* the new client's connect checks, then its 220 */
}

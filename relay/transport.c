/*
 * transport — see transport.h.
 */
#include "config.h"
#include "relay/transport.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* "[host]:port", "[host]", "host:port" or "host"; brackets mean no MX. */
static int parse_host_port(const char *s, struct nexthop *out, const char **error_r)
{
    const char *end = NULL, *colon;
    size_t hlen;

    out->mx = s[0] != '[';
    if (s[0] == '[') {
        if ((end = strchr(s, ']')) == NULL)
            return *error_r = "missing ']'", -1;
        hlen = (size_t)(end - s - 1);
        s++;
        colon = end[1] == ':' ? end + 1 : NULL;
        if (end[1] != '\0' && colon == NULL)
            return *error_r = "junk after ']'", -1;
    } else {
        colon = strrchr(s, ':');
        hlen = colon != NULL ? (size_t)(colon - s) : strlen(s);
    }
    if (hlen == 0 || hlen >= sizeof(out->host))
        return *error_r = "bad host", -1;
    memcpy(out->host, s, hlen);
    out->host[hlen] = '\0';
    out->port = 25;
    if (colon != NULL) {
        char *pe;
        unsigned long p = strtoul(colon + 1, &pe, 10);
        if (colon[1] == '\0' || *pe != '\0' || p == 0 || p > 65535)
            return *error_r = "bad port", -1;
        out->port = (unsigned)p;
    }
    return 0;
}

int nexthop_parse(const char *text, struct nexthop *out, const char **error_r)
{
    memset(out, 0, sizeof(*out));
    snprintf(out->text, sizeof(out->text), "%s", text);
    if (strcmp(text, "local") == 0) {
        out->kind = NEXTHOP_LOCAL;
        return 0;
    }
    if (strncmp(text, "smtp:", 5) == 0) {
        out->kind = NEXTHOP_SMTP;
        return parse_host_port(text + 5, out, error_r);
    }
    if (strncmp(text, "lmtp:unix:", 10) == 0) {
        out->kind = NEXTHOP_LMTP;
        out->unix_socket = true;
        if (text[10] != '/' || strlen(text + 10) >= 108) /* sun_path */
            return *error_r = "lmtp:unix: needs an absolute path under 108 octets", -1;
        snprintf(out->host, sizeof(out->host), "%s", text + 10);
        return 0;
    }
    if (strncmp(text, "lmtp:", 5) == 0) {
        out->kind = NEXTHOP_LMTP;
        if (parse_host_port(text + 5, out, error_r) < 0)
            return -1;
        if (out->mx)
            return *error_r = "lmtp needs [host]:port", -1;
        return 0;
    }
    *error_r = "unknown transport (want smtp:, lmtp: or local)";
    return -1;
}

const struct transport_entry *transport_lookup(const struct transport_table *t,
                                               const char *domain)
{
    const struct transport_entry *best = NULL, *star = NULL;
    size_t best_len = 0, dlen = strlen(domain);

    for (size_t i = 0; i < t->count; i++) {
        const char *d = t->entries[i].domain;
        size_t len = strlen(d);
        if (strcmp(d, "*") == 0) {
            star = &t->entries[i];
        } else if (d[0] != '.' && strcasecmp(d, domain) == 0) {
            return &t->entries[i];
        } else if (d[0] == '.' && dlen > len && strcasecmp(domain + dlen - len, d) == 0 &&
                   len > best_len) {
            best = &t->entries[i];
            best_len = len;
        }
    }
    return best != NULL ? best : star;
}

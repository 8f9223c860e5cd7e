/*
 * transport — where a recipient's mail goes next: the transport table from
 * the config ("domain" → next hop, "*" as the default) and the next-hop
 * syntax:
 *   smtp:[host]:port   SMTP to host (an IP literal or a name: A/AAAA), no MX
 *   smtp:[host]        the same on port 25
 *   smtp:domain[:port] MX lookup for domain (RFC 5321 §5), A/AAAA fallback
 *   lmtp:[host]:port   LMTP (RFC 2033) over TCP
 *   lmtp:unix:/path    LMTP over a unix socket
 *   local              Postern's own mailstore (not built yet: deferred)
 *
 * Called by the config loader (validation) and the queue manager (lookup).
 * Trusts the config once it has parsed; domains compare case-insensitively.
 */
#ifndef POSTERN_TRANSPORT_H
#define POSTERN_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>

enum nexthop_kind { NEXTHOP_SMTP, NEXTHOP_LMTP, NEXTHOP_LOCAL };

struct nexthop {
    enum nexthop_kind kind;
    bool mx;              /* smtp:domain: look up MX records for host */
    bool unix_socket;     /* lmtp:unix:/path; host holds the path */
    char host[256];
    unsigned port;
    char text[300];       /* as configured, the destination's key */
};

/* Parses a next-hop string. Returns 0, or -1 with *error_r. */
int nexthop_parse(const char *text, struct nexthop *out, const char **error_r);

struct transport_entry {
    char *domain;        /* "example.com", ".example.com" (subdomains) or "*" */
    struct nexthop nexthop;
    /* per-destination client settings (NULL/0 = the queue defaults) */
    int tls;             /* -1 = default, else enum smtp_client_tls */
    char *tls_name;
    char *auth_user;
    char *auth_password;
};

struct transport_table {
    struct transport_entry *entries;
    size_t count;
};

/* The entry for a recipient domain: exact match, then the longest
 * ".parent" match, then "*". NULL when nothing matches. */
const struct transport_entry *transport_lookup(const struct transport_table *t,
                                               const char *domain);

#endif

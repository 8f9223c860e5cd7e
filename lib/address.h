/*
 * address — parser for SMTP envelope paths (RFC 5321 §4.1.2, RFC 6531 for
 * UTF-8): "<local@domain>", "<>", "<Postmaster>", source routes, quoted local
 * parts, address literals.
 *
 * Called by the SMTP session for MAIL FROM and RCPT TO, and later by the relay
 * and filters. Trusts nothing: input is raw network bytes, of any length, with
 * any byte values; every length is bounded (RFC 5321 §4.5.3.1) before it is
 * copied.
 */
#ifndef POSTERN_ADDRESS_H
#define POSTERN_ADDRESS_H

#include <stdbool.h>
#include <stddef.h>

#define ADDR_LOCAL_MAX 64   /* octets, RFC 5321 §4.5.3.1.1 */
#define ADDR_DOMAIN_MAX 255 /* octets, §4.5.3.1.2 */
#define ADDR_PATH_MAX 256   /* octets including < >, §4.5.3.1.3 */

enum addr_flags {
    ADDR_ALLOW_UTF8 = 1 << 0,    /* RFC 6531: non-ASCII UTF-8 allowed (SMTPUTF8 given) */
    ADDR_ALLOW_NULL = 1 << 1,    /* "<>" allowed (reverse-path only) */
    ADDR_ALLOW_NOBRACKET = 1 << 2, /* accept a bare "user@dom" as sloppy clients send it */
    ADDR_ALLOW_POSTMASTER = 1 << 3, /* "<Postmaster>" without domain (RCPT only) */
};

struct addr_path {
    bool null;       /* "<>" */
    bool postmaster; /* "<Postmaster>" (any case) without a domain; local = "Postmaster" */
    bool had_route;  /* a source route "@a,@b:" came first; it is dropped (RFC 5321 App. C) */
    bool quoted;     /* the local part was a quoted string */
    bool literal;    /* the domain is an address literal "[...]" */
    bool utf8;       /* the address contains non-ASCII bytes */
    char local[ADDR_LOCAL_MAX + 1];    /* local part, quotes and quoted-pairs removed */
    char domain[ADDR_DOMAIN_MAX + 1];  /* domain as given ("[1.2.3.4]" keeps its brackets) */
};

/* Parses one path starting at s[0] (no leading spaces). On success returns 0,
 * fills *out and sets *consumed_r to the bytes used (just past '>'). On a
 * syntax error or a length over the bounds returns -1 and sets *error_r to a
 * static English text such as "Bad address syntax". UTF-8 is validated (no
 * overlongs, no surrogates) when ADDR_ALLOW_UTF8 is set; without it any byte
 * >= 0x80 is an error. Domains with a trailing dot, empty labels, or labels
 * longer than 63 octets are errors. */
int addr_parse_path(const char *s, size_t len, unsigned flags, struct addr_path *out,
                    size_t *consumed_r, const char **error_r);

/* Writes the mailbox as "local@domain" (no brackets; "" for the null path),
 * re-quoting the local part when it needs quotes. Returns the length that the
 * full string needs (like snprintf); output is always NUL-terminated. */
size_t addr_format(const struct addr_path *a, char *buf, size_t size);

/* True when the local part carries routing that some MTAs still honour:
 * '%', '!' or '@' (the last possible only when quoted). The relay check treats
 * such recipients as non-local. */
bool addr_local_has_routing(const struct addr_path *a);

/* Case-insensitive ASCII comparison of two domains (equal lengths). */
bool addr_domain_equal(const char *a, const char *b);

#endif

/*
 * dkim-authres — the Authentication-Results header field (RFC 8601) that
 * the dmarc filter (or the dkim filter with authres = yes) adds: Postern's
 * authserv-id (server.hostname), then one resinfo per method result, each
 * on its own folded line; and the authserv-id of such a field that arrived
 * with the message, so that one claiming Postern's id can be removed
 * (RFC 8601 §5: a receiver must not trust results under its own id that it
 * did not add).
 *
 * The builder writes only what it is given after checking it: property
 * values that came from the message (domains, selectors, b= prefixes) are
 * written as tokens when they are tokens and as quoted strings otherwise,
 * comments are cut to printable ASCII without parentheses or backslashes,
 * and the whole stays within FILTER_HEADER_VALUE_MAX (a resinfo that does
 * not fit is left out). The parser reads untrusted header text and is
 * bounded by its input and output sizes.
 */
#ifndef POSTERN_DKIM_AUTHRES_H
#define POSTERN_DKIM_AUTHRES_H

#include <stdbool.h>
#include <stddef.h>

#include "filters/dkim-verify.h"
#include "filters/filter.h"

struct authres {
    char buf[FILTER_HEADER_VALUE_MAX + 1];
    size_t len;
    size_t results; /* resinfos written */
};

/* Starts a value with authserv_id (a host name: written as given). */
void authres_init(struct authres *a, const char *authserv_id);

/* A property "ptype.property=value" of a resinfo. */
struct authres_prop {
    const char *name;  /* "header.d" */
    const char *value; /* NULL or "" = left out */
};

/* Appends "; method=result" with an optional comment ("(...)", may be
 * NULL or "") and n properties. */
void authres_add(struct authres *a, const char *method, const char *result, const char *comment,
                 const struct authres_prop *props, size_t n);

/* "dkim=<outcome> (<why>) header.d=<d> header.s=<s> header.b=<b>". */
void authres_add_dkim(struct authres *a, const struct dkim_sig_result *r);

/* The finished value ("<id>; none" when nothing was added). */
const char *authres_value(struct authres *a);

/* The authserv-id that the value of an Authentication-Results field
 * starts with (after CFWS: a token or a quoted string), copied into
 * id[size]. Returns 0, or -1 when none parses or it does not fit. */
int authres_authserv_id(const char *value, char *id, size_t size);

#endif

/*
 * dkim-message — the header section of a spooled message as the dkim and
 * dmarc filters read it: split into its fields (RFC 5322 §2.2: a field
 * starts on a line that does not begin with a space or tab, continuation
 * lines do), where the body starts, and the one From: mailbox that DMARC
 * and the choice of a signing key need (parsed by GMime, RFC 5322 §3.4).
 *
 * The content is what the SMTP layer spooled: lines end in CR LF
 * (gateway/smtp-data.h). The header ends at the first empty line; content
 * without one is all header. dkim_message_read preads it from the spool
 * (any thread: it only reads the descriptor it is given) and refuses a
 * header section longer than its bound; dkim_message_parse splits a
 * buffer already in memory (the fuzz target's entry). The From: helper
 * uses GMime and runs on the loop thread (dkim_message_gmime_init once).
 *
 * Trusts nothing in the message: every field is bounded by the header
 * section's bound, names are checked for the RFC 5322 ftext characters,
 * domains for host name syntax before anyone puts them in a query or a
 * header.
 */
#ifndef POSTERN_DKIM_MESSAGE_H
#define POSTERN_DKIM_MESSAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DKIM_DOMAIN_MAX 253 /* a host name, without the final dot */

/* One field: text[0..len) is "Name: value" with its folds (CR LF WSP), no
 * final CR LF; name_len is 0 when the line has no valid "name:" (such a
 * field is kept, so that the header can be fed whole, but named by none). */
struct dkim_field {
    const char *text;
    size_t len;
    size_t name_len;
};

struct dkim_message {
    char *buf; /* the header section as read (owned) */
    size_t buf_len;
    struct dkim_field *fields; /* into buf */
    size_t count;
    uint64_t body_off; /* from the content's start: just past the empty line */
};

/* Reads the header section of the content at [off, off + len) of fd.
 * Returns 0, or -1 with *why, a static text ("header section over
 * max_header_size", "cannot read the message", "out of memory"). */
int dkim_message_read(int fd, uint64_t off, uint64_t len, size_t max_header, struct dkim_message *m,
                      const char **why);

/* Splits buf[0..len), the start of a content, into m (buf is copied up to
 * the end of the header section). Same returns as dkim_message_read. */
int dkim_message_parse(const char *buf, size_t len, size_t max_header, struct dkim_message *m,
                       const char **why);

void dkim_message_free(struct dkim_message *m);

/* The fields called name (ASCII case-insensitive), and the index-th of them
 * (0-based), or NULL. */
size_t dkim_message_count(const struct dkim_message *m, const char *name);
const struct dkim_field *dkim_message_find(const struct dkim_message *m, const char *name,
                                           size_t index);

/* The value of f unfolded (CR LF removed), NUL octets and leading and
 * trailing white space dropped, cut to size - 1 octets; returns the length
 * written. */
size_t dkim_field_value(const struct dkim_field *f, char *out, size_t size);

/* Whether s is a host name: labels of letters, digits, '-' and '_' of 1..63
 * octets, dot-separated, at most DKIM_DOMAIN_MAX octets, no final dot. */
bool dkim_domain_ok(const char *s);

/* The one author of the message (RFC 7489 §6.6.1): exactly one From: field
 * with exactly one mailbox whose domain is a host name. Returns 0 with the
 * domain lower-cased in domain[DKIM_DOMAIN_MAX + 1], or -1 with *why
 * ("no From: field", "more than one From: field", "more than one From:
 * address", "From: address group", "From: address without a usable
 * domain"). GMime: loop thread only. */
int dkim_message_from_domain(const struct dkim_message *m, char *domain, const char **why);

/* GMime for dkim_message_from_domain: initialized once per process and
 * never shut down (GMime cannot be initialized again after
 * g_mime_shutdown). Any thread; called by the filters' create. */
void dkim_message_gmime_init(void);

#endif

/*
 * dha-directory — the known recipients of the dha filter: "user@domain"
 * entries, "@domain" catch-alls, the domains the filter judges and the
 * domains whose recipients are verified by the downstream (call-ahead).
 *
 * Built once at config time (entries from the config and from a file of one
 * entry per line, '#' comments), then sealed: sorted arrays searched with
 * bsearch, read-only and shared by reference between the settings and the
 * worker's instances. Domains compare without case (ASCII); local parts do
 * too when ignore_case is set, exactly otherwise. "postmaster" (any case) of
 * a judged domain is always known (RFC 5321 §4.5.1).
 *
 * Trusts the config's text only after parsing it like an SMTP path (every
 * entry is validated, errors name the file and line); recipients to look up
 * come from the SMTP layer, already parsed and bounded, and are parsed again
 * here the same way.
 */
#ifndef POSTERN_DHA_DIRECTORY_H
#define POSTERN_DHA_DIRECTORY_H

#include <stdbool.h>
#include <stddef.h>

#include "lib/address.h"

#define DHA_DIR_MAX_ENTRIES 1000000   /* entries and domains, all sources together */
#define DHA_DIR_MAX_FILE (256L << 20) /* octets of recipients_file */
#define DHA_DIR_MAX_LINE 1024         /* octets of one line of recipients_file */
#define DHA_DIR_KEY_MAX (ADDR_LOCAL_MAX + 1 + ADDR_DOMAIN_MAX + 1) /* "local@domain" + NUL */

struct dha_dir;

enum dha_lookup {
    DHA_NOT_JUDGED, /* not a domain the filter applies to (or no domain at all) */
    DHA_KNOWN,      /* in the directory, a catch-all domain, or postmaster */
    DHA_UNKNOWN,    /* a judged domain that does not know the recipient */
    DHA_VERIFY,     /* not in the directory; its domain is verified by call-ahead */
};

/* An empty directory; NULL when out of memory. */
struct dha_dir *dha_dir_new(bool ignore_case);

/* Add before dha_dir_seal. Each returns 0, or -1 with *error_r a static text. */
int dha_dir_add(struct dha_dir *d, const char *entry, const char **error_r); /* "u@d", "@d" */
int dha_dir_add_domain(struct dha_dir *d, const char *domain, const char **error_r);
int dha_dir_add_verify_domain(struct dha_dir *d, const char *domain, const char **error_r);
/* Adds every entry of a file; -1 with error "path:line: why" (or "path: why"). */
int dha_dir_load_file(struct dha_dir *d, const char *path, char *error, size_t errsize);

/* Sorts and drops duplicates; the judged domains are those added with
 * dha_dir_add_domain, or when there are none every domain of the entries;
 * verify domains are judged too. Returns 0, -1 when out of memory. */
int dha_dir_seal(struct dha_dir *d);

/* Classifies rcpt ("local@domain" as the SMTP layer formats it). key gets
 * the normalised address (for a cache key), "" when not judged. */
enum dha_lookup dha_dir_lookup(const struct dha_dir *d, const char *rcpt, char *key,
                               size_t keysize);

size_t dha_dir_entries(const struct dha_dir *d);
bool dha_dir_has_verify_domains(const struct dha_dir *d);

/* References: dha_dir_new gives one; unref clears the pointer (NULL-safe). */
struct dha_dir *dha_dir_ref(struct dha_dir *d);
void dha_dir_unref(struct dha_dir **d);

#endif

/*
 * attachments — the attachment filter: at the end of DATA it parses the
 * message's MIME structure (GMime) within hard bounds and applies attachment
 * rules to every MIME part and to every file inside archives (libarchive),
 * by file name, by declared type and by the type detected from the content
 * (libmagic).
 *
 * Bounds first. A cheap scanner of our own (attachments-scan.c, fuzzed)
 * walks the raw message before GMime sees it: nesting depth (max_depth),
 * MIME parts (max_parts), header fields per header section (max_headers)
 * and octets per header section (max_header_size). Over one of them the
 * message is never handed to GMime: symbol MIME_LIMIT (text: the bound) and
 * mime_limit_action (default reject, 552 5.6.0). The scanner exists
 * because GMime bounds only its own recursion (MAX_LEVEL 1024 levels in
 * 3.2, over which it stops recursing and warns GMIME_CRIT_NESTING_OVERFLOW)
 * and would build a tree of 100,000 sibling parts or buffer a 300 KB header
 * before anyone could count them (measured with 3.2.13: 100,000 empty
 * parts, a 1 MB message, take 134 MB; 1,000,000 take 1.3 GB and 3 s). The
 * walk over GMime's tree checks the same depth and part bounds again, so a
 * scanner that read the structure differently from GMime cannot open a
 * way past them. A message longer than max_size is over the bounds too,
 * judged by its length alone.
 *
 * The parts. For every MIME part (leaf parts, and message/rfc822 parts as
 * files of their own) the candidate file names are the Content-Disposition
 * filename and the Content-Type name, both decoded by GMime (RFC 2231
 * continuations and charsets, RFC 2047 encoded words), each checked: a rule
 * on names matches when either does. Names are normalized before matching
 * (attachments-rules.c): the part after the last '/' or '\', without the
 * trailing dots and spaces Windows ignores, without spaces around dots, and
 * without Unicode direction and zero-width marks (U+202E disguises
 * "fdp.exe" as "exe.pdf"). The declared type is the Content-Type's
 * type/subtype; the detected type is libmagic's MIME type of the decoded
 * content (its first 1 MiB). Rules are tried in order and the first that
 * matches decides for the part.
 *
 * Archives. Every part's decoded content is offered to libarchive (zip,
 * rar, rar5, 7z, tar, and gzip/bzip2/xz/lzip/zstd/compress/lz4 streams
 * around them or around a single file); what it recognizes is
 * opened, entry by entry, down to archive_max_depth levels of archives in
 * archives. Each entry is a file for the rules with in_archives = true
 * (its name is the entry's path, its detected type that of its data; it
 * has no declared type). An encrypted entry makes the archive encrypted
 * (symbol ARCHIVE_ENCRYPTED, encrypted_action); more than
 * archive_max_entries entries, more than archive_max_size octets unpacked
 * (both counted over every archive of the message and every level, so that
 * many attachments do not multiply the work), an archive unpacking to more
 * than archive_max_ratio times its own size (checked past 1 MiB unpacked),
 * an archive nested deeper than archive_max_depth, or an archive libarchive
 * cannot read to its end: symbol ARCHIVE_LIMIT, archive_limit_action. Such
 * an archive is never "clean".
 *
 * The actions, per rule and for the two archive cases: reject (554 5.7.1
 * naming the file and the rule; 552 5.6.0 for limits), quarantine
 * (FILTER_ACTION_QUARANTINE: the held state until the quarantine store
 * exists) or strip (the part is replaced by a text/plain part saying which
 * file was removed, by whom and why: filter_call_replace_body with the
 * rewritten MIME body; when the message itself is the attachment, its
 * Content-Type and Content-Transfer-Encoding are changed too and its
 * Content-Disposition removed). The strongest action over the whole message
 * wins (reject > tempfail > quarantine > strip): a message that is refused
 * or held is kept as it came, and its strip findings add no symbol.
 * Symbols (score 0): ATTACH_REJECTED, ATTACH_QUARANTINE, ATTACH_STRIPPED
 * (text: "file: rule"), ARCHIVE_ENCRYPTED (text: the archive), ARCHIVE_LIMIT
 * (text: "archive: limit"), MIME_LIMIT (text: the bound); at most
 * ATT_FINDINGS_MAX per message.
 *
 * Blocking work off the loop: the parse, libmagic and libarchive run on the
 * instance's own worker threads (lib/workpool.h, threads of them), with the
 * message read there by pread from a dup of content_fd; the result is
 * applied to the call on the loop. A cancelled call (timeout, client gone)
 * is cut loose at once and its job stops at the next part or archive block.
 * on_error defaults to tempfail: a safety scanner fails closed.
 *
 * Made per worker through its module (attachments-config.c). SECURITY:
 * reads whole messages from the network; every count, depth and size is
 * bounded by the config before anything is buffered for it, names reach
 * replies and symbols as printable ASCII only. Trusts GMime, libarchive
 * and libmagic to stay within the bounds of the buffers they are given.
 */
#ifndef POSTERN_ATTACHMENTS_H
#define POSTERN_ATTACHMENTS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "filters/filter.h"
#include "filters/module.h"

/* What a finding asks for, weakest first. */
enum att_action { ATT_ACTION_STRIP, ATT_ACTION_QUARANTINE, ATT_ACTION_TEMPFAIL, ATT_ACTION_REJECT };

/* The values of a rule's action, encrypted_action and archive_limit_action. */
extern const char *const att_file_action_values[]; /* "reject", "quarantine", "strip" */
/* The values of mime_limit_action. */
extern const char *const att_limit_action_values[]; /* "reject", "quarantine", "tempfail" */
enum att_action att_file_action(int value);
enum att_action att_limit_action(int value);

struct att_rule_settings {
    char *id;                         /* for symbols and replies; default "rule<N>" */
    struct cfg_strlist name;          /* globs on the normalized file name */
    struct cfg_strlist extensions;    /* "exe", "pdf.exe": the name ends in "." + one */
    bool double_extension;            /* only names like "invoice.pdf.exe" */
    struct cfg_strlist declared_type; /* globs on the Content-Type ("application/x-*") */
    struct cfg_strlist detected_type; /* globs on libmagic's MIME type */
    bool in_archives;                 /* also for files inside archives */
    int action;                       /* att_file_action_values */
};

struct att_settings {
    struct filter_common common;
    long long threads;
    long long max_size; /* octets: a longer message is over a MIME bound */
    long long max_depth, max_parts, max_headers, max_header_size;
    int mime_limit_action; /* att_limit_action_values */
    long long archive_max_depth, archive_max_entries, archive_max_size, archive_max_ratio;
    int encrypted_action, archive_limit_action; /* att_file_action_values */
    struct att_rule_settings *rules;
    size_t rule_count;
};

extern const struct filter_module attachments_module;
extern const struct filter_ops attachments_filter_ops;

/* ---- the bounds, and the scanner that checks them before GMime ---- */

struct att_limits {
    unsigned max_depth;         /* entity nesting: the message is depth 0 */
    unsigned max_parts;         /* entities, the message included */
    unsigned max_headers;       /* fields per header section */
    size_t max_header_size;     /* octets per header section */
    uint64_t max_size;          /* octets of the message */
    unsigned archive_max_depth; /* 0 = archives are not opened */
    unsigned archive_max_entries;
    uint64_t archive_max_size;
    unsigned archive_max_ratio;
};

/* Scans msg[0..len) for the MIME bounds of lim (max_size is not checked
 * here). Returns 0 when within them, or 1 with why ("nesting depth over
 * 20"). Linear in len; allocates at most max_depth boundaries. -1 when out
 * of memory. */
int att_prescan(const char *msg, size_t len, const struct att_limits *lim, char *why,
                size_t whysize);

/* ---- names ---- */

#define ATT_NAME_MAX 256

/* The form of a file name that rules see (see above), malloc'd (NULL when
 * out of memory); over 1,024 octets only its first and last 510 are kept,
 * joined by "~~~". */
char *att_name_normalize(const char *name);
/* Whether a normalized name ends in "." + ext (ASCII case ignored). */
bool att_name_has_ext(const char *norm, const char *ext);
/* Whether a normalized name has a double extension: its last extension
 * follows another of 2 to 4 letters or digits ("invoice.pdf.exe"). */
bool att_name_has_double_ext(const char *norm);
/* in, safe to show: control characters (and with ascii, every non-ASCII
 * octet) replaced by '?', cut to size. */
void att_text_sanitize(const char *in, char *out, size_t size, bool ascii);

/* ---- inspection of one message (any thread) ---- */

enum att_kind { ATT_KIND_RULE, ATT_KIND_ENCRYPTED, ATT_KIND_ARCHIVE_LIMIT, ATT_KIND_MIME_LIMIT };

#define ATT_FINDINGS_MAX 16

struct att_finding {
    enum att_kind kind;
    enum att_action action;
    char name[ATT_NAME_MAX];  /* the part's file name (sanitized UTF-8); "" for MIME_LIMIT */
    char entry[ATT_NAME_MAX]; /* path inside the archive(s) ("x.zip/a.exe"); "" = the part */
    char rule[64];            /* RULE: the rule's id */
    char why[128];            /* LIMIT kinds: the bound crossed */
};

struct att_report {
    struct att_finding findings[ATT_FINDINGS_MAX]; /* in message order */
    size_t count, dropped;                         /* kept, and not kept for room */
    enum att_action action;                        /* the strongest; valid when count > 0 */
    struct att_finding decisive;                   /* the first finding of that action */
    size_t parts;                                  /* MIME entities walked */
    /* action strip: the new body (CR LF lines), and when the message
     * itself was the attachment, its new Content-Type and
     * Content-Transfer-Encoding (NULL otherwise: a multipart's body was
     * rewritten with the parts replaced) */
    char *body;
    size_t body_len;
    char *content_type, *transfer_encoding;
};

/* Frees what a report holds and empties it. */
void att_report_clear(struct att_report *r);

struct att_policy;

/* Compiles settings (validated by the module's load) into a policy, which
 * is immutable once made and shared by every thread; hostname goes into the
 * text of stripped parts. Loads libmagic's database (blocking: done when
 * the instance is made). Returns 0, or -1 with error. */
int att_policy_new(const struct att_settings *s, const char *hostname, struct att_policy **p_r,
                   char *error, size_t errsize);
void att_policy_free(struct att_policy **p);
const struct att_limits *att_policy_limits(const struct att_policy *p);

/* Inspects msg[0..len) (a whole message, CR LF or LF lines) against p into
 * r (cleared first). stop, when not NULL, may be set by another thread:
 * the inspection then ends early. Returns 0 (r filled; no findings = clean),
 * or -1 with error (out of memory, libmagic failed, stopped). */
int att_inspect(const struct att_policy *p, const char *msg, size_t len, const atomic_bool *stop,
                struct att_report *r, char *error, size_t errsize);

#endif

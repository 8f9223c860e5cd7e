/*
 * spool-format — the on-disk form of one queued message, and its envelope.
 *
 * A spool file is:
 *   line 1, fixed width (80 octets including '\n'):
 *     "POSTERN-SPOOL-1 content=%016llx envelope=%016llx" padded with spaces
 *     (content = length of the content, envelope = its offset; both zero until
 *     the message is complete, then patched with pwrite before the fsync);
 *   the content: the message exactly as it will be relayed, CR LF line ends,
 *     not dot-stuffed, starting with Postern's Received: header;
 *   the envelope: one record per line, "KEY VALUE\n", values escaped (see
 *     spool_escape) so any byte can be stored; one of them may carry header
 *     lines that Postern adds in front of the content when it delivers
 *     (add_headers), so a header decided after the content was streamed to
 *     disk needs no rewrite of the file;
 *   the end marker line "END\n". A file whose header offsets are zero, or that
 *   does not have "END\n" right after its envelope records, is incomplete and
 *   was never acknowledged. Lines after END are reserved for the queue
 *   manager's per-recipient state (appended records).
 *
 * Used by the spool writer (lib/spool.c), and by the relay, posternctl and
 * tests through spool_read_envelope(). The reader trusts nothing in the file:
 * every record is bounded and checked.
 */
#ifndef POSTERN_SPOOL_FORMAT_H
#define POSTERN_SPOOL_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define SPOOL_HEADER_LEN 80
#define SPOOL_QUEUE_ID_MAX 32
#define SPOOL_ADD_HEADERS_MAX (16 * 1024) /* octets of add_headers, CR LF included */
#define SPOOL_HEADER_LINE_MAX 998         /* octets of one line without CR LF (RFC 5322) */

struct spool_rcpt {
    char *addr;     /* "local@domain", as accepted */
    unsigned notify; /* enum smtp_notify bits (smtp-params.h); 0 = unspecified */
    char *orcpt;    /* "rfc822;user@example" or NULL */
};

struct spool_envelope {
    char queue_id[SPOOL_QUEUE_ID_MAX + 1];
    char *sender;      /* "" for the null reverse-path */
    struct spool_rcpt *rcpts;
    size_t rcpt_count;
    char *listener;    /* listener name */
    char *client_addr; /* "192.0.2.1" */
    char *client_name; /* reverse name or "unknown" */
    char *helo;        /* as given, sanitized */
    char *auth_user;   /* NULL when not authenticated */
    char *tls;         /* NULL for plaintext, else "TLSv1.3 ..." */
    time_t received;
    int body;          /* enum smtp_body */
    bool smtputf8;
    int ret;           /* enum smtp_ret */
    char *envid;       /* NULL when none */
    uint64_t size;     /* content octets */
    /* Header fields to write before the content at delivery (and in a DSN
     * that returns it), or NULL / "" for none: complete fields, each
     * "Name: value" CR LF, optionally folded (continuation lines start with
     * a space or tab); printable US-ASCII only; at most
     * SPOOL_ADD_HEADERS_MAX octets. See spool_add_headers_check. Not
     * counted in size. */
    char *add_headers;
};

/* Checks header lines for spool_envelope.add_headers: len octets of text,
 * "" allowed. Returns 0, or -1 with *error_r set to a static reason (bad
 * field name, bare CR or LF, a line over SPOOL_HEADER_LINE_MAX, an empty or
 * blank line, a control or 8-bit octet, no final CR LF, more than
 * SPOOL_ADD_HEADERS_MAX octets). */
int spool_add_headers_check(const char *text, size_t len, const char **error_r);

/* Serializes env (records + "END\n") into a malloc'd buffer; *len_r is its
 * length. Returns NULL only when out of memory. */
char *spool_envelope_serialize(const struct spool_envelope *env, size_t *len_r);

/* Parses records from buf (the text after the content, up to the end of the
 * file). Returns 0 and a new envelope, or -1 with error. *end_r is set to the
 * offset just after "END\n". */
int spool_envelope_parse(const char *buf, size_t len, struct spool_envelope **env_r,
                         size_t *end_r, char *error, size_t errsize);

/* Reads a whole spool file's header and envelope. Returns 0, 1 when the file
 * is incomplete (no end marker: never acknowledged), -1 on other errors
 * (unreadable, corrupt) with error set. */
int spool_read_envelope(const char *path, struct spool_envelope **env_r, uint64_t *content_off_r,
                        uint64_t *content_len_r, char *error, size_t errsize);

void spool_envelope_free(struct spool_envelope **env);

/* Formats the fixed header line into buf (SPOOL_HEADER_LEN octets, no NUL). */
void spool_header_format(char buf[SPOOL_HEADER_LEN], uint64_t content_len, uint64_t env_off);
/* Returns 0 and the two numbers, 1 when they are still zero, -1 when corrupt. */
int spool_header_parse(const char buf[SPOOL_HEADER_LEN], uint64_t *content_len_r,
                       uint64_t *env_off_r);

#endif

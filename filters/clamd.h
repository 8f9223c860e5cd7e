/*
 * clamd — the virus scanner filter: every message, at the end of DATA, goes
 * to ClamAV's clamd over its INSTREAM protocol and the reply decides.
 *
 * At FILTER_EOM the spooled message (filter_txn content_fd, read with
 * pread from content_off, content_len octets) is streamed to clamd at
 * address ("127.0.0.1:3310", "[::1]:3310" or "/run/clamav/clamd.ctl") over
 * a non-blocking socket on the worker's event loop: "zINSTREAM\0", then
 * chunks of at most chunk_size octets each led by its length (32 bits, big
 * endian), then a zero length. The reply is one NUL-terminated line of at
 * most CLAMD_REPLY_MAX octets:
 *   "stream: OK"                          clean (symbol CLAMAV_CLEAN(0) if
 *                                         clean_symbol);
 *   "stream: NAME FOUND"                  a virus: symbol CLAMAV_VIRUS with
 *                                         virus_score and NAME as text,
 *                                         logged with the queue id, and the
 *                                         action: reject (554 5.7.1
 *                                         "Message rejected: virus NAME
 *                                         found"), quarantine or none;
 *   "stream: Heuristics.Limits.Exceeded... FOUND" (clamd's AlertExceedsMax)
 *   "INSTREAM size limit exceeded. ERROR" (over clamd's StreamMaxLength)
 *   "... ERROR", anything else, "stream: OK" before the whole message was
 *   sent, a connection refused, closed early or silent past
 *   connect_timeout or the filter's timeout:
 *                                         the scan failed, and the filter's
 *                                         on_error applies (default
 *                                         tempfail: 451 4.7.1). A message
 *                                         clamd did not scan is never clean
 *                                         (on_error skip: the chain's
 *                                         CLAMD_ERROR(0), no CLAMAV_CLEAN).
 * A message longer than max_size is not sent (clamd would refuse it): symbol
 * CLAMAV_SKIPPED_SIZE(0) and size_action (default accept: such messages
 * were never scanned, as with amavis; tempfail or reject to refuse them).
 *
 * Made per worker through its module (clamd-config.c). SECURITY: the reply
 * comes from the network and is parsed bounded (clamd-reply.c, fuzzed):
 * a signature name reaches the SMTP reply and the logs only as printable
 * ASCII without spaces. Trusts its config (validated by the module's load)
 * and the spool's content.
 */
#ifndef POSTERN_CLAMD_H
#define POSTERN_CLAMD_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "filters/filter.h"
#include "filters/module.h"

/* The order of the values of action. */
enum clamd_virus_action { CLAMD_VIRUS_REJECT, CLAMD_VIRUS_QUARANTINE, CLAMD_VIRUS_NONE };
/* The order of the values of size_action. */
enum clamd_size_action { CLAMD_SIZE_ACCEPT, CLAMD_SIZE_TEMPFAIL, CLAMD_SIZE_REJECT };

struct clamd_settings {
    struct filter_common common;
    char *address;             /* required */
    long long connect_timeout; /* ms */
    long long max_size;        /* octets: longer messages are not sent */
    int size_action;           /* enum clamd_size_action */
    long long chunk_size;      /* octets per INSTREAM chunk */
    int action;                /* enum clamd_virus_action */
    double virus_score;
    bool clean_symbol;
};

extern const struct filter_ops clamd_filter_ops;
extern const struct filter_module clamd_module;

struct clamd;
struct event_base;

/* Copies what it needs from cfg (which the module's load validated); runs
 * on base. Returns 0 and *clamd_r, or -1 with error. */
int clamd_new(struct event_base *base, const struct clamd_settings *cfg, struct clamd **clamd_r,
              char *error, size_t errsize);
void clamd_free(struct clamd **clamd);

/* "127.0.0.1:3310", "[::1]:3310" (numeric, a port is required) or
 * "/path/to/clamd.ctl" into *ss and *len. Returns 0, or -1 with *error_r. */
int clamd_address_parse(const char *text, struct sockaddr_storage *ss, socklen_t *len,
                        const char **error_r);

/* ---- the reply (clamd-reply.c) ---- */

#define CLAMD_REPLY_MAX 1024 /* octets of a reply before its NUL */
#define CLAMD_NAME_MAX 100   /* octets of a signature name */

enum clamd_verdict {
    CLAMD_CLEAN, /* stream: OK */
    CLAMD_VIRUS, /* stream: NAME FOUND */
    CLAMD_LIMIT, /* a limit of clamd's: not scanned (never clean) */
    CLAMD_ERROR, /* an error reply, or one not understood */
};

struct clamd_reply {
    enum clamd_verdict verdict;
    char name[CLAMD_NAME_MAX + 1]; /* VIRUS and a FOUND LIMIT: the signature */
    char text[160];                /* the reply for logs, sanitized, maybe cut */
};

/* Where the first reply in buf[0..len) ends: the offset of its NUL, or -1
 * when none came yet and len is within CLAMD_REPLY_MAX, or -2 when the
 * reply is already longer than that (an error: stop reading). */
long clamd_reply_end(const void *buf, size_t len);

/* Judges one reply, msg[0..len) without its NUL (may hold any octets).
 * Always fills *r; whatever is not exactly one of the known forms is
 * CLAMD_ERROR. Names are 1..CLAMD_NAME_MAX printable ASCII octets without
 * spaces (a "(hash:size)" suffix of ExtendedDetectionInfo is dropped). */
void clamd_reply_parse(const char *msg, size_t len, struct clamd_reply *r);

const char *clamd_verdict_name(enum clamd_verdict v);

#endif

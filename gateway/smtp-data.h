/*
 * smtp-data — the message content reader: turns the bytes a client sends
 * after DATA (dot-terminated, RFC 5321 §4.1.1.4, §4.5.2) or in BDAT chunks
 * (RFC 3030, raw) into the message content, with limits.
 *
 * Called by smtp-cmd-data.c / smtp-cmd-bdat.c with raw network bytes.
 * Safety (SMTP smuggling, CVE-2023-51764 class): the end of data is only the
 * exact sequence CR LF "." CR LF, where the first CR LF is a real line end
 * (or the start of data). A bare LF or bare CR is never a line end for that
 * purpose, whatever the policy. Under SMTP_BARE_REJECT the reader goes on to
 * the real end and then reports SMTP_DATA_ERR_BARE; under SMTP_BARE_NORMALIZE
 * bare LF and bare CR are written out as CR LF. Dot-unstuffing applies only
 * at real line starts. Output lines always end in CR LF.
 */
#ifndef POSTERN_SMTP_DATA_H
#define POSTERN_SMTP_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct evbuffer;

enum smtp_bare_policy { SMTP_BARE_REJECT, SMTP_BARE_NORMALIZE };
enum smtp_data_mode { SMTP_DATA_DOT, SMTP_DATA_RAW };

enum smtp_data_error {
    SMTP_DATA_OK = 0,
    SMTP_DATA_ERR_SIZE,  /* content over max_size: the rest is read and dropped */
    SMTP_DATA_ERR_LINE,  /* a line over max_line octets (excluding CRLF) */
    SMTP_DATA_ERR_BARE,  /* a bare CR or LF under SMTP_BARE_REJECT */
};

struct smtp_data_limits {
    size_t max_line;    /* octets per line without CRLF; 0 = unlimited */
    uint64_t max_size;  /* content octets; 0 = unlimited */
    enum smtp_bare_policy bare;
};

struct smtp_data_reader {
    /* private state; callers use the functions below */
    struct smtp_data_limits limits;
    enum smtp_data_mode mode;
    int state;
    size_t line_len;
    uint64_t size;
    enum smtp_data_error error; /* the first error seen; sticky */
    bool done;
};

void smtp_data_init(struct smtp_data_reader *r, enum smtp_data_mode mode,
                    const struct smtp_data_limits *limits);

/* Feeds len input bytes. Content goes to out (not written once an error is
 * set, so memory stays bounded). Returns the bytes consumed: in DOT mode it
 * stops right after the terminating ".\r\n" and sets *end_r, leaving what
 * follows (pipelined commands) unread; in RAW mode it consumes everything.
 * The reader counts size before it writes. */
size_t smtp_data_feed(struct smtp_data_reader *r, const char *in, size_t len,
                      struct evbuffer *out, bool *end_r);

/* RAW mode (BDAT LAST): flushes a pending CR at the end; DOT mode: nothing.
 * Returns the first error seen, or SMTP_DATA_OK. */
enum smtp_data_error smtp_data_finish(struct smtp_data_reader *r, struct evbuffer *out);

/* Bytes of content accepted so far. */
uint64_t smtp_data_size(const struct smtp_data_reader *r);

/* Counts the Received: header fields of a message's header section (up to
 * the first empty line) as its content streams past, for mail-loop
 * detection (RFC 5321 §6.3). Feed the reader's output in any chunks. */
struct smtp_hop_counter {
    unsigned hops;
    size_t col;      /* octets in the current line so far */
    unsigned match;  /* how much of "received:" the line started with */
    bool done;       /* the header section has ended */
};

void smtp_hops_feed(struct smtp_hop_counter *h, const char *p, size_t len);

#endif

/*
 * edit — the message edits of a transaction (filter.h: insert_header,
 * change_header, replace_body, change_sender, add_rcpt, delete_rcpt), kept
 * in the order they were asked for, with the limits that bound them.
 *
 * A list belongs to one filter call while the filter runs (filters/filter.c
 * and the filter_call_* edit functions in edit.c record into it); the chain
 * then moves each finished call's list, in link order, into the session's
 * (chain_result.edits), and the gateway takes that list when the message is
 * accepted and applies it (gateway/message-edit.c). Nothing here reads or
 * writes the message itself.
 *
 * Bounds (per list, so per call and per transaction): FILTER_EDITS_MAX
 * header and envelope edits; FILTER_EDIT_TEXT_MAX octets of names, values,
 * addresses and parameters together; one replaced body of at most
 * limits.body_max octets, of which the first FILTER_EDIT_BODY_MEM are kept in
 * memory and the rest in an unlinked temporary file in limits.tmp_dir (the
 * spool's tmp/, which the start-up scan empties); without a tmp_dir the
 * whole body is kept in memory, still bounded by body_max.
 *
 * Trusts its callers to validate nothing: every argument is checked here
 * (header fields as filter_call_add_header, addresses with lib/address.h,
 * parameters with lib/smtp-params.h). A list is used by one thread at a
 * time; once recording is over, filter_edits_body_read may be called from
 * another thread (it only preads).
 */
#ifndef POSTERN_FILTER_EDIT_H
#define POSTERN_FILTER_EDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define FILTER_EDITS_MAX 1000                      /* header + envelope edits per list */
#define FILTER_EDIT_TEXT_MAX (1024 * 1024)         /* their names, values, addresses */
#define FILTER_EDIT_PARAMS_MAX 1024                /* ESMTP parameters of one edit */
#define FILTER_EDIT_BODY_MEM (256 * 1024)          /* body octets kept in memory */
#define FILTER_EDIT_BODY_MAX_DEFAULT (10ull << 20) /* body_max when none is set */

struct addr_path;

enum filter_edit_kind {
    FILTER_EDIT_INSERT_HEADER, /* index (0-based position), name, value */
    FILTER_EDIT_CHANGE_HEADER, /* name, index (1-based occurrence), value (NULL: delete) */
    FILTER_EDIT_CHANGE_SENDER, /* value = address, params */
    FILTER_EDIT_ADD_RCPT,      /* value = address, params */
    FILTER_EDIT_DELETE_RCPT,   /* value = address */
};

struct filter_edit {
    enum filter_edit_kind kind;
    size_t index;
    char *name;     /* header edits; NULL otherwise */
    char *value;    /* header value, or the address as given ("<a@b>", "a@b", "<>") */
    char *params;   /* envelope edits: ESMTP parameters, or NULL */
    const char *by; /* the filter that asked (its ops name; static) */
};

struct filter_edit_limits {
    size_t max_edits;    /* 0 = FILTER_EDITS_MAX; never more */
    uint64_t body_max;   /* 0 = FILTER_EDIT_BODY_MAX_DEFAULT */
    const char *tmp_dir; /* for a body past FILTER_EDIT_BODY_MEM; NULL = memory only.
                          * Must stay valid while the list records. */
};

struct filter_edits;

/* An empty list; NULL when out of memory. lim may be NULL (defaults). */
struct filter_edits *filter_edits_new(const struct filter_edit_limits *lim);
/* Frees the list, its body and its file; NULL-safe, clears *e. */
void filter_edits_free(struct filter_edits **e);

/* Record one edit (the semantics are filter.h's). Each returns 0, or -1
 * when an argument is bad or a limit would be passed (then nothing is
 * recorded). by is kept as a pointer. */
int filter_edits_insert_header(struct filter_edits *e, size_t index, const char *name,
                               const char *value, const char *by);
int filter_edits_change_header(struct filter_edits *e, const char *name, size_t index,
                               const char *value, const char *by);
int filter_edits_change_sender(struct filter_edits *e, const char *sender, const char *params,
                               const char *by);
int filter_edits_add_rcpt(struct filter_edits *e, const char *rcpt, const char *params,
                          const char *by);
int filter_edits_delete_rcpt(struct filter_edits *e, const char *rcpt, const char *by);
/* Appends to the list's replacement body (the first call starts it; len 0
 * makes an empty body). -1 past body_max or on a write error: then the
 * list's body is dropped entirely (a half body is never applied) and
 * every later append fails too. */
int filter_edits_append_body(struct filter_edits *e, const void *chunk, size_t len, const char *by);

/* Moves every edit of from after into's (from is then empty) and, when from
 * replaced the body, its body in place of into's (the later replacement
 * wins). All or nothing: -1 (over into's limits, out of memory) leaves both
 * unchanged. */
int filter_edits_merge(struct filter_edits *into, struct filter_edits *from);

size_t filter_edits_count(const struct filter_edits *e);
const struct filter_edit *filter_edits_at(const struct filter_edits *e, size_t i);
/* True when some header edit is recorded or the body is replaced. */
bool filter_edits_touch_content(const struct filter_edits *e);
/* True when some envelope edit is recorded. */
bool filter_edits_touch_envelope(const struct filter_edits *e);

/* The replacement body: replaced is false when no filter replaced it. */
bool filter_edits_body_replaced(const struct filter_edits *e);
uint64_t filter_edits_body_len(const struct filter_edits *e);
const char *filter_edits_body_by(const struct filter_edits *e);
/* Copies up to len octets of the body from offset off into buf. Returns
 * the octets copied (0 at the end), or -1 with errno. */
ssize_t filter_edits_body_read(const struct filter_edits *e, uint64_t off, void *buf, size_t len);

/* Parses an edit's address (value of CHANGE_SENDER, ADD_RCPT, DELETE_RCPT):
 * one path, with or without angle brackets, nothing after it but spaces;
 * flags are lib/address.h's (ADDR_ALLOW_NOBRACKET is always added). Returns
 * 0, or -1 with *error_r. */
int filter_edit_parse_addr(const char *text, unsigned flags, struct addr_path *out,
                           const char **error_r);

#endif

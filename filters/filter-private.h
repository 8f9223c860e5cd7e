/*
 * filter-private — the inside of struct filter_call, shared by filter.c and
 * edit.c (the calls a filter makes) and chain.c (which creates, times and
 * merges calls).
 * Nothing outside filters/ includes this: filters see only filter.h.
 */
#ifndef POSTERN_FILTER_PRIVATE_H
#define POSTERN_FILTER_PRIVATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "filters/chain.h"
#include "filters/filter.h"
#include "lib/smtp-reply.h"

struct event;
struct filter_edits;
struct filter_edit_limits;

enum filter_call_state {
    FILTER_CALL_IDLE,      /* the link has no callback for this stage */
    FILTER_CALL_RUNNING,   /* inside the stage callback */
    FILTER_CALL_PENDING,   /* returned 0: waiting for filter_call_done or the timer */
    FILTER_CALL_FINISHED,  /* done, failed or timed out: findings are final */
    FILTER_CALL_CANCELLED, /* chain_run_cancel */
};

struct filter_call {
    struct chain_run *run;
    size_t index; /* of the link in the chain */
    const struct chain_link *link;
    const struct filter_txn *txn;
    enum filter_stage stage;
    bool late; /* the late step (filter_ops.late); stage is then FILTER_EOM */
    enum filter_call_state state;
    void *data;
    struct event *timer; /* armed while pending */
    uint64_t start_usec;
    /* findings; symbols beyond CHAIN_SYMBOLS_MAX are dropped, their score kept */
    struct filter_symbol *symbols;
    size_t symbol_count, symbol_alloc;
    double score;
    struct filter_header *headers; /* filter_call_add_header, in order */
    size_t header_count;
    struct filter_edits *edits;    /* message edits (edit.c), made at the first; or NULL */
    bool hit;
    unsigned delay_ms; /* filter_call_delay */
    enum filter_action action;
    struct smtp_status reply;
};

/* chain.c: a pending call ended (result 1 = done, -1 = error). */
void chain_call_done(struct filter_call *call, int result);
/* chain.c: the limits of the call's chain for its message edits. */
const struct filter_edit_limits *chain_call_edit_limits(const struct filter_call *call);

/* filter.c: the call is running or pending (its filter owns it). */
bool filter_call_live(const struct filter_call *call);
/* filter.c: the rules of filter_call_add_header for a field's name (1 to
 * FILTER_HEADER_NAME_MAX printable characters, no ':') and value (printable
 * ASCII, CR LF only as a fold, at most FILTER_HEADER_VALUE_MAX octets). */
bool filter_header_name_ok(const char *name);
bool filter_header_value_ok(const char *value);

#endif

/*
 * milter-private — the inside of the milter filter, shared by its files:
 *   milter.c         the instance, the sessions, the stage callbacks, the
 *                    replies and the decisions;
 *   milter-steps.c   which commands a stage needs (the plan) and sending
 *                    them;
 *   milter-conn.c    the socket: connect, negotiate, frames in and out,
 *                    the reply and idle timer;
 *   milter-msg.c     the spooled message as header fields and body chunks;
 *   milter-macros.c  the macros Postern can fill and their values;
 *   milter-edit.c    the modifications of an end-of-body reply, handed to
 *                    the filter API's edits.
 * Nothing outside filters/milter*.c includes this but tests/unit/test-milter.c.
 */
#ifndef POSTERN_MILTER_PRIVATE_H
#define POSTERN_MILTER_PRIVATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "filters/filter.h"
#include "filters/milter-proto.h"
#include "filters/milter.h"
#include "lib/netaddr.h"

struct bufferevent;
struct event;
struct event_base;

#define MILTER_MACRO_NAME_MAX 40
#define MILTER_MACROS_KNOWN                                                                        \
    "j, {daemon_name}, v, _, {client_addr}, {client_name}, {client_ptr}, i, {auth_authen}, "       \
    "{mail_addr}, {rcpt_addr}"
/* Output waiting to be written beyond which no more is queued (commands
 * that need no reply: headers with NR_HDR, body chunks with NR_BODY). */
#define MILTER_OUTBUF_MAX (256u * 1024u)
/* The header section read from the spool at end of message, at most. */
#define MILTER_HEADER_MAX (1024u * 1024u)

struct milter_names {
    char **names; /* normalized: "j", "{daemon_name}" */
    size_t count;
};

struct milter {
    struct event_base *base;
    char *id;                                 /* for logs */
    char prefix[FILTER_SYMBOL_NAME_MAX - 16]; /* "MILTER" or "MILTER_<ID>" */
    char *address;                            /* as configured, for logs */
    struct milter_address addr;
    char *hostname;
    unsigned connect_ms, command_ms, content_ms, idle_ms;
    struct milter_names macros[MILTER_M_COUNT];
    struct milter_sess *sessions;
    bool warned_flags; /* logged once: the milter asked for flags not offered */
};

enum milter_step_kind {
    MILTER_STEP_OPEN, /* connect and OPTNEG */
    MILTER_STEP_CONNECT,
    MILTER_STEP_HELO,
    MILTER_STEP_ABORT,
    MILTER_STEP_MAIL,
    MILTER_STEP_RCPTS, /* replay of the transaction's recipients, one by one */
    MILTER_STEP_RCPT,  /* the recipient of the RCPT stage */
    MILTER_STEP_DATA,
    MILTER_STEP_HEADERS, /* each header field, one by one */
    MILTER_STEP_EOH,
    MILTER_STEP_BODY, /* each chunk */
    MILTER_STEP_EOB,
};

struct milter_step {
    enum milter_step_kind kind;
    bool replay; /* not the stage's own command: a refusal is not the stage's */
};

#define MILTER_PLAN_MAX 16

struct milter_msg;

/* One SMTP session as this milter sees it. */
struct milter_sess {
    struct milter *m;
    struct milter_sess *prev, *next;
    const struct filter_txn *key; /* the gateway's per-session filter_txn */
    struct netaddr client;
    char *listener;
    bool failed;   /* an error: every later stage fails at once */
    bool accepted; /* the milter accepted the session */
    /* the connection */
    struct bufferevent *bev;
    bool ready;                                /* OPTNEG done */
    uint32_t actions, protocol;                /* negotiated */
    struct milter_names asked[MILTER_M_COUNT]; /* the milter's macro lists */
    bool asked_set[MILTER_M_COUNT];
    bool connect_sent;
    char *helo_sent;
    /* the milter's transaction */
    bool in_txn, msg_accepted, data_sent;
    char *txn_qid, *txn_sender;
    char **rcpts; /* recipients the milter took */
    size_t rcpt_count, rcpt_alloc;
    /* the stage in progress */
    struct filter_call *call;
    const struct filter_txn *txn;
    enum filter_stage stage;
    struct milter_step plan[MILTER_PLAN_MAX];
    size_t plan_len, plan_pos;
    bool step_sent; /* the current (one-command) step was sent */
    size_t iter;    /* the current many-command step's position */
    bool body_done; /* SKIP, or the last chunk was sent */
    bool waiting;   /* for the reply to waiting_cmd */
    char waiting_cmd;
    bool wait_write; /* for the output to drain */
    int result;      /* 0 = go on; 1 = the stage is decided */
    bool in_callback;
    struct milter_msg *msg; /* end of message: the content */
    size_t mod_count;       /* modifications handed to the chain */
    bool body_cr;           /* the last replaced body chunk ended in CR */
    char *quarantine;
    struct event *timer; /* reply timeout; idle timeout between stages */
};

/* milter.c */
int milter_new(struct event_base *base, const char *hostname, const struct milter_settings *cfg,
               struct milter **m_r, char *error, size_t errsize);
void milter_free(struct milter **m);
/* The connection got a frame / failed / drained its output. */
void milter_sess_frame(struct milter_sess *s, const struct milter_frame *f);
void milter_sess_conn_error(struct milter_sess *s, const char *why);
void milter_sess_drained(struct milter_sess *s);
void milter_sess_timeout(struct milter_sess *s);
/* Logs a warning about s's milter ("milter ID (ADDR): ..."). */
void milter_warn(const struct milter *m, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* milter-steps.c */
/* The stage's plan from the session's state and s->txn. */
void milter_plan_build(struct milter_sess *s);
/* Runs the plan until it waits (0) or the stage is decided (1, -1). */
int milter_advance(struct milter_sess *s);
/* The queue id for logs ("NOQUEUE" before MAIL). */
const char *milter_qid(const struct milter_sess *s);
/* Replaces *dst with a copy of src (NULL allowed); -1 when out of memory. */
int milter_set_str(char **dst, const char *src);
void milter_rcpts_clear(struct milter_sess *s);
/* The milter's transaction is txn's (same queue id and sender). */
bool milter_txn_same(const struct milter_sess *s, const struct filter_txn *txn);

/* milter-conn.c */
/* Opens the socket, queues OPTNEG; 0, or -1 with *why. */
int milter_conn_open(struct milter_sess *s, const char **why);
/* Sends QUIT when the connection is ready (quit), then closes it. */
void milter_conn_close(struct milter_sess *s, bool quit);
struct evbuffer *milter_conn_out(struct milter_sess *s);
size_t milter_conn_pending(struct milter_sess *s);
/* Arms the timer for ms (0 = disarm). */
void milter_conn_timer(struct milter_sess *s, unsigned ms);

/* milter-macros.c */
const char *milter_macro_key(size_t stage);
/* Splits configured items ("j {daemon_name}") or a milter's list into
 * normalized names; only known ones when known_only. 0 or -1 (memory). */
int milter_names_set(struct milter_names *n, const char *const *items, size_t count,
                     bool known_only);
void milter_names_free(struct milter_names *n);
/* Queues the MACRO frame for cmd with the values of names (those without a
 * value are left out; nothing when none has one). rcpt: the recipient of
 * an RCPT command, else NULL. */
int milter_macros_put(struct evbuffer *out, char cmd, const struct milter_names *names,
                      const struct milter *m, const struct filter_txn *txn, const char *rcpt);

/* milter-msg.c: the content of the message at txn's end of message */
struct milter_msg *milter_msg_open(int fd, uint64_t off, uint64_t len, const char **why);
void milter_msg_free(struct milter_msg **msg);
/* The next header field: 1 with *name and *value (valid until the next
 * call; value with LF folds, leading white space kept when leadspc), 0 at
 * the end of the header. */
int milter_msg_header(struct milter_msg *msg, bool leadspc, const char **name, const char **value);
/* The next body chunk (at most MILTER_CHUNK_MAX): 1 with *data, *len; 0 at
 * the end; -1 on a read error (*why). */
int milter_msg_body(struct milter_msg *msg, const uint8_t **data, size_t *len, const char **why);

/* milter-edit.c */
/* Hands a modification of the end-of-body reply to s->call's edits; 0, or
 * -1 with a warning logged when the chain refused it. */
int milter_mod_apply(struct milter_sess *s, const struct milter_reply *r);
/* The action bit a modification needs (0 = not a modification). */
uint32_t milter_mod_action(char cmd);

#endif

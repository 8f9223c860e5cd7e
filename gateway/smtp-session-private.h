/*
 * smtp-session-private — the session's state, shared by smtp-session.c and
 * the smtp-cmd-*.c handlers and nobody else. Ownership: the session owns its
 * bufferevent, its transaction; the transaction owns its recipients, its
 * content buffer and its spool message.
 */
#ifndef POSTERN_SMTP_SESSION_PRIVATE_H
#define POSTERN_SMTP_SESSION_PRIVATE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/time.h>
#include <openssl/ssl.h>

#include "gateway/smtp-session.h"
#include "gateway/smtp-data.h"
#include "gateway/smtp-hooks.h"
#include "lib/smtp-params.h"
#include "lib/smtp-reply.h"
#include "gateway/server-config.h"
#include "lib/address.h"
#include "lib/netaddr.h"

#define SASL_USER_MAX 257

struct event;
struct evbuffer;
struct spool_msg;
struct sasl_job;

enum smtp_state {
    SMTP_S_PROXY,     /* waiting for the PROXY header */
    SMTP_S_GREETING,  /* greet pause: any input now is an early talker */
    SMTP_S_COMMAND,   /* reading command lines */
    SMTP_S_AUTH,      /* reading a SASL continuation line */
    SMTP_S_DATA,      /* reading DATA content up to CRLF.CRLF */
    SMTP_S_BDAT,      /* reading a BDAT chunk */
    SMTP_S_WAIT,      /* a hook, AUTH check or spool commit is pending */
    SMTP_S_CLOSING,   /* flushing the last reply, then free */
};

struct smtp_rcpt {
    struct addr_path addr;
    struct smtp_rcpt_params params;
};

struct smtp_txn {
    char queue_id[33]; /* SPOOL_QUEUE_ID_MAX + 1 */
    struct addr_path sender;
    struct smtp_mail_params mail;
    struct smtp_rcpt *rcpts;
    size_t rcpt_count, rcpt_cap;
    unsigned rcpt_rejected;
    struct smtp_rcpt pending_rcpt; /* the RCPT waiting for its hook */
    struct spool_msg *msg;
    struct smtp_data_reader reader;
    struct evbuffer *content; /* reader output, drained into the spool */
    bool data_failed;         /* a write or BDAT error: answer at the end */
    struct smtp_hop_counter hops; /* Received: fields, for loop detection */
    int spool_errno;
    bool bdat_seen;
    struct timeval data_start;
    struct timeval start;
    enum smtp_verdict verdict;
    bool committing; /* msg is with the spool's commit (else: still ours to abort) */
    /* Header fields the hooks add (smtp_txn_add_header): written before
     * the content at delivery, never into the spooled content itself;
     * NULL = none. Owned by the transaction. */
    char *add_headers;
};

struct client_name_lookup;

struct smtp_session {
    struct smtp_session *prev, *next; /* worker's list */
    struct worker *worker;
    const struct postern_config *cfg;
    const struct listener_settings *listener;
    struct bufferevent *bev;
    /* Plaintext replies are collected here and written straight to the
     * socket by flush_ev (one write, no EPOLLOUT round trip); only what the
     * socket does not take goes through bev's output. Unused under TLS. */
    struct evbuffer *out;
    struct event *flush_ev;
    enum smtp_state state;
    enum smtp_state resume_state; /* where SMTP_S_WAIT returns to */
    int depth;                    /* > 0 while the input loop runs (no free then) */

    struct netaddr client;
    char client_addr[64];
    char client_name[256];
    unsigned client_port;
    bool trusted;      /* in relay.trusted_networks */
    bool xclient_ok;   /* may use XCLIENT */
    bool limits_counted;

    char helo[256];
    bool helo_seen, esmtp;
    bool tls;
    char tls_desc[128];
    bool authenticated;
    char auth_user[SASL_USER_MAX];
    int auth_mech; /* 0 none, 1 PLAIN, 2 LOGIN (waiting for user), 3 LOGIN (password) */
    struct sasl_job *auth_job;         /* a check running on the pool */
    struct sasl_job *auth_job_pending; /* credentials being collected */
    unsigned auth_failures;

    unsigned errors;
    bool skip_line;       /* discarding an over-long command line */
    bool input_paused;    /* replies wait for the client: not reading */
    bool close_after_reply;
    bool shutdown_requested;
    bool hook_pending;
    enum smtp_stage hook_stage; /* of the hook pending or last run */
    smtp_hook_done_cb *hook_cont;
    void *hook_state; /* the hooks' own per-session state (smtp-filters.c) */
    struct event *timer;
    struct event *greet_timer;
    struct client_name_lookup *name_lookup; /* PTR + forward lookup in flight */
    struct timeval last_input;
    struct smtp_txn *txn;
    uint64_t bdat_remaining;     /* chunk octets still to read */
    bool bdat_last;
    bool bdat_discard;           /* the chunk is read and dropped, then bdat_error */
    struct smtp_status bdat_error;
    unsigned long long messages;
    struct timeval connected;
};

/* smtp-session.c */
/* Where a reply is formatted: written out later in this loop iteration. */
struct evbuffer *smtp_session_output(struct smtp_session *s);
void smtp_reply(struct smtp_session *s, unsigned code, const char *enhanced, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void smtp_reply_status(struct smtp_session *s, const struct smtp_status *st);
/* An error reply that counts toward error_limit (421 and close past it). */
void smtp_reply_error(struct smtp_session *s, unsigned code, const char *enhanced,
                      const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void smtp_reply_error_status(struct smtp_session *s, const struct smtp_status *st);
void smtp_session_close_after_reply(struct smtp_session *s);
/* Skips "FROM:" / "TO:" (any case) and spaces after it; NULL if absent. */
const char *smtp_skip_keyword(const char *args, size_t *len, const char *kw);
/* The session is going away: detaches its AUTH check (which then frees
 * itself) and wipes the credentials being collected. */
void smtp_session_auth_cancel(struct smtp_session *s);
/* Runs a stage through the hooks; cont runs with the result (now or later). */
void smtp_session_run_stage(struct smtp_session *s, enum smtp_stage stage,
                            smtp_hook_done_cb *cont);
/* Back from SMTP_S_WAIT: reads what is buffered. */
void smtp_session_resume(struct smtp_session *s, enum smtp_state state);
/* Starts the session over for a new client (XCLIENT): the hooks forget the
 * old one, the connect stage runs, and the 220 (or its refusal) follows. */
void smtp_session_restart(struct smtp_session *s);
void smtp_session_reset_txn(struct smtp_session *s);
/* The reply for a verdict that is not CONTINUE/ACCEPT; returns true if sent. */
bool smtp_session_verdict_reply(struct smtp_session *s, const struct smtp_hook_result *r,
                                const char *default_text);
void smtp_session_start_tls(struct smtp_session *s, bool after_starttls);
struct smtp_params_offer smtp_session_offer(const struct smtp_session *s);
bool smtp_session_may_auth(const struct smtp_session *s);
bool smtp_session_offers_starttls(const struct smtp_session *s);
void smtp_session_data_input(struct smtp_session *s);
void smtp_session_bdat_input(struct smtp_session *s);
void smtp_session_auth_input(struct smtp_session *s, const char *line, size_t len);

/* smtp-cmd-*.c: each takes the argument text after the verb (no CRLF). */
typedef void smtp_cmd_fn(struct smtp_session *s, const char *args, size_t len);
smtp_cmd_fn smtp_cmd_ehlo, smtp_cmd_helo, smtp_cmd_mail, smtp_cmd_rcpt, smtp_cmd_data,
    smtp_cmd_bdat, smtp_cmd_rset, smtp_cmd_noop, smtp_cmd_quit, smtp_cmd_help, smtp_cmd_vrfy,
    smtp_cmd_expn, smtp_cmd_starttls, smtp_cmd_auth, smtp_cmd_xclient;

/* smtp-cmd-data.c: the end of a message (DATA or BDAT LAST). */
void smtp_data_finished(struct smtp_session *s);
/* smtp-cmd-data.c: writes the content gathered so far to the spool (at
 * once when force, else from SPOOL_FLUSH_AT octets), counting hops. */
void smtp_data_flush(struct smtp_txn *t, bool force);
/* smtp-cmd-data.c: starts the content (spool file, Received header). */
int smtp_data_begin(struct smtp_session *s, enum smtp_data_mode mode);
/* smtp-cmd-data.c: for the hooks, before the end-of-message stage is done:
 * adds the field "name: value" CR LF to t->add_headers (value may be
 * folded with CR LF and a space or tab). Returns 0, or -1 with *error_r
 * when the field is malformed or the lines would pass
 * SPOOL_ADD_HEADERS_MAX (spool_add_headers_check); then nothing is added. */
int smtp_txn_add_header(struct smtp_txn *t, const char *name, const char *value,
                        const char **error_r);
/* smtp-cmd-data.c: the same, but the field goes above those added so far
 * (the late step's fields: filters/filter.h, filter_ops.late). */
int smtp_txn_add_header_top(struct smtp_txn *t, const char *name, const char *value,
                            const char **error_r);

#endif

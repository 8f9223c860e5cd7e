/*
 * smtp-client-private — the client's state, shared by smtp-client.c (life
 * cycle, I/O, timers, failures), smtp-client-hello.c (greeting, EHLO/LHLO,
 * STARTTLS, AUTH), smtp-client-send.c (one message: envelope, replies,
 * outcomes) and smtp-client-data.c (content: dot-stuffing, streaming, 8-bit
 * scan), and by the unit test of the content writer. Nobody else.
 *
 * Ownership: the client owns its bufferevent (and the SSL inside), its
 * timers, copies of the config strings and its transaction's per-recipient
 * arrays. The message itself belongs to the caller until the send callback.
 */
#ifndef POSTERN_SMTP_CLIENT_PRIVATE_H
#define POSTERN_SMTP_CLIENT_PRIVATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/time.h>

#include "relay/smtp-client.h"
#include "relay/smtp-client-reply.h"

struct bufferevent;
struct event;

#define CLIENT_CHUNK (64 * 1024)     /* content read from the spool at a time */
#define CLIENT_OUT_HIGH (256 * 1024) /* stop reading content above this much queued */
#define CLIENT_OUT_LOW (64 * 1024)   /* ... and go on when it drains to this */
#define CLIENT_QUIT_WAIT_MS 2000     /* longest wait for the 221 to QUIT */

enum client_state {
    CLIENT_CONNECTING, /* TCP connect in progress */
    CLIENT_GREETING,   /* waiting for 220 */
    CLIENT_HELLO,      /* EHLO or LHLO sent */
    CLIENT_HELO,       /* HELO sent after EHLO got 5xx */
    CLIENT_STARTTLS,   /* STARTTLS sent */
    CLIENT_HANDSHAKE,  /* TLS handshake running */
    CLIENT_AUTH,       /* AUTH PLAIN sent */
    CLIENT_READY,      /* idle: may take a message */
    CLIENT_ENVELOPE,   /* MAIL, RCPT, DATA and their replies */
    CLIENT_CONTENT,    /* streaming content after 354 */
    CLIENT_DOT,        /* content sent, waiting for the final reply (LMTP: replies) */
    CLIENT_RSET,       /* RSET after a failed transaction */
    CLIENT_BROKEN,     /* connection gone or out of step: waits for smtp_client_close */
    CLIENT_QUIT,       /* closed by the caller, QUIT sent: freed on reply or timer */
    CLIENT_DEAD,       /* freed as soon as no handler of ours is on the stack */
};

/* What the server offered in its EHLO/LHLO reply. */
enum client_ext {
    EXT_PIPELINING = 1 << 0,
    EXT_SIZE = 1 << 1,
    EXT_8BITMIME = 1 << 2,
    EXT_SMTPUTF8 = 1 << 3,
    EXT_DSN = 1 << 4,
    EXT_STARTTLS = 1 << 5,
    EXT_AUTH_PLAIN = 1 << 6,
    EXT_ENHANCEDSTATUSCODES = 1 << 7,
};

/* Where a recipient stands in the current transaction. */
enum client_rcpt_state {
    RCPT_WAIT,     /* RCPT not answered yet */
    RCPT_ACCEPTED, /* RCPT got 2xx; waits for the final reply */
    RCPT_DONE,     /* outcome and status are final */
};

/* Content writer: CR LF line ends, dot-stuffing, across chunk boundaries. */
struct dot_writer {
    bool mid_line; /* the last byte written was not the end of a line */
    bool cr;       /* the last input byte was a CR whose line end is not written yet */
};

struct client_txn {
    bool active;
    const struct smtp_client_msg *msg;
    smtp_client_sent_cb *cb;
    void *ctx;
    enum smtp_rcpt_outcome *outcome;
    struct smtp_status *status;
    bool *remote;          /* per recipient: decided by a server reply */
    const struct smtp_status *server_reply; /* the reply being handled, or NULL */
    unsigned char *rstate; /* enum client_rcpt_state per recipient */
    size_t *order;         /* recipients put on the wire, in order */
    size_t nsend;          /* how many: commands are MAIL, RCPT order[0..nsend), DATA */
    size_t next_cmd;       /* next command to write (same numbering: 0 = MAIL) */
    size_t next_reply;     /* next reply expected */
    size_t accepted;       /* RCPTs answered 2xx */
    size_t lmtp_next;      /* LMTP: position in order of the next final reply */
    bool pipelining, mail_ok, body_8bit, smtputf8, no_rcpt_data;
    uint64_t done; /* content octets read so far */
    struct dot_writer w;
};

struct smtp_client {
    struct event_base *base;
    struct bufferevent *bev;
    struct event *timer;
    struct event *notify; /* runs a local outcome on the loop (on_notify) */
    enum client_state state;
    int depth; /* > 0 while a handler of ours runs: no free then */
    bool tls, esmtp, tls_tried;
    unsigned ext;        /* enum client_ext bits */
    char ext_text[1024]; /* the EHLO keyword lines (smtp_reply_parser.ext) */
    struct smtp_reply_parser parser;
    bool parser_done;           /* parser holds a complete reply; init before the next */
    unsigned char *rbuf, *wbuf; /* content chunk and its wire form (allocated once) */
    char peer[300];
    const char *phase; /* what we were doing, for "lost connection while ..." */

    /* configuration (strings copied) */
    bool lmtp, auth_plaintext;
    enum smtp_client_tls tls_mode;
    SSL_CTX *tls_ctx; /* a reference of our own */
    char *tls_name, *helo_name, *auth_user, *auth_pass;
    unsigned connect_ms, command_ms, data_ms;

    smtp_client_ready_cb *ready_cb;
    void *ready_ctx;
    bool notify_connect; /* on_notify reports notify_status as a connect failure */
    struct smtp_status notify_status;
    struct client_txn txn;
};

/* smtp-client.c */
void smtp_client_arm_timer(struct smtp_client *c, unsigned ms);
void smtp_client_wait_reply(struct smtp_client *c, const char *phase);
void smtp_client_printf(struct smtp_client *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void smtp_client_drop_connection(struct smtp_client *c);
void smtp_client_fail_connect(struct smtp_client *c, const struct smtp_status *st);
void smtp_client_connected(struct smtp_client *c);
void smtp_client_set_callbacks(struct smtp_client *c);
void smtp_client_status_fill(struct smtp_status *st);

/* smtp-client-hello.c */
void smtp_client_hello_reply(struct smtp_client *c, const struct smtp_status *r);
void smtp_client_tls_done(struct smtp_client *c);
void smtp_client_tls_failed(struct smtp_client *c);

/* smtp-client-send.c */
void smtp_client_txn_reply(struct smtp_client *c, const struct smtp_status *r);
void smtp_client_txn_break(struct smtp_client *c, const struct smtp_status *st);
void smtp_client_txn_finish(struct smtp_client *c, bool usable);
void smtp_client_txn_free(struct client_txn *t);
/* A recipient's final outcome from a reply or a local decision (the
 * outcome follows the code's class; the enhanced code is filled in). */
void smtp_client_decide(struct client_txn *t, size_t i, const struct smtp_status *st);
/* Every recipient still waiting (and accepted ones; only those when
 * accepted_only) gets st. */
void smtp_client_decide_open(struct client_txn *t, const struct smtp_status *st,
                             bool accepted_only);

/* smtp-client-data.c */
/* The decisions made before anything is sent (address syntax, SMTPUTF8,
 * 8BITMIME, BINARYMIME); fills txn.order with the recipients that go on
 * the wire. Returns false when none does. */
bool smtp_client_local_decisions(struct smtp_client *c);
void smtp_client_content_start(struct smtp_client *c);
void smtp_client_content_pump(struct smtp_client *c);
/* Writes the CR LF / dot-stuffed form of in into out, which has room for
 * 2 * len + 2 octets; returns the octets written. */
size_t dot_writer_put(struct dot_writer *w, const unsigned char *in, size_t len,
                      unsigned char *out);
/* The end of data: "\r\n.\r\n", or ".\r\n" when the content ended a line;
 * out has room for 5 octets. */
size_t dot_writer_end(struct dot_writer *w, unsigned char *out);

#endif

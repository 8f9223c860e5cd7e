/*
 * smtp-client — one outbound SMTP (RFC 5321) or LMTP (RFC 2033) connection
 * to a next hop, on the queue manager's event loop: greeting, EHLO/LHLO,
 * STARTTLS (opportunistic, or required and verified), AUTH PLAIN to a
 * smarthost, then any number of messages on the same connection (reuse),
 * each with PIPELINING when offered (MAIL, every RCPT and DATA in one
 * write), SIZE, BODY=8BITMIME, SMTPUTF8, DSN (RET, ENVID, NOTIFY, ORCPT).
 *
 * Safe output: content is read from the spool file, every line end is
 * written as CR LF and every line starting with "." is dot-stuffed, so
 * nothing a client sent raw reaches the next hop raw. The envelope's added
 * header fields go first, through the same writer. Plaintext the server
 * sends with its STARTTLS reply is discarded.
 *
 * Called by the queue manager. Trusts nothing the server says: replies are
 * parsed with bounds (smtp-client-reply.h); every step has a timeout.
 */
#ifndef POSTERN_SMTP_CLIENT_H
#define POSTERN_SMTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <openssl/ssl.h>

#include "lib/smtp-reply.h"

struct event_base;
struct smtp_client;

enum smtp_client_tls {
    SMTP_CLIENT_TLS_NONE,     /* never STARTTLS */
    SMTP_CLIENT_TLS_MAY,      /* STARTTLS when offered, no verification (default) */
    SMTP_CLIENT_TLS_REQUIRED, /* STARTTLS must succeed, else defer (4.7.5) */
    SMTP_CLIENT_TLS_VERIFY,   /* required, and the certificate must verify for tls_name */
};

struct smtp_client_config {
    bool lmtp;
    enum smtp_client_tls tls;
    SSL_CTX *tls_ctx;       /* client context (CA store for VERIFY); NULL = no TLS */
    const char *tls_name;   /* name to verify and send as SNI */
    const char *helo_name;  /* our name in EHLO/LHLO */
    const char *auth_user;  /* AUTH PLAIN when set; only after TLS unless auth_plaintext */
    const char *auth_pass;
    bool auth_plaintext;
    unsigned connect_timeout_ms, command_timeout_ms, data_timeout_ms;
};

/* One message: the envelope and where its content lies in the spool file. */
struct smtp_client_msg {
    const char *queue_id;
    const char *sender;             /* "" = null reverse-path */
    size_t rcpt_count;
    const char *const *rcpts;
    const unsigned *notify;         /* per rcpt, enum smtp_notify bits; NULL = none */
    const char *const *orcpt;       /* per rcpt "type;addr" or NULL entries; NULL = none */
    int ret;                        /* enum smtp_ret */
    const char *envid;              /* NULL = none */
    int body;                       /* enum smtp_body */
    bool smtputf8;
    int fd;                         /* spool file, read with pread */
    uint64_t offset, length;
    /* Header fields written before the content, through the same CR LF
     * and dot-stuffing writer (spool_envelope.add_headers: Postern's own,
     * checked by spool_add_headers_check), counted in SIZE=; NULL or "" =
     * none. */
    const char *add_headers;
    /* Recipient verification (call-ahead): MAIL, RCPT, then RSET instead
     * of DATA; a recipient the server accepted ends DELIVERED with its RCPT
     * reply. No content is read. */
    bool probe;
};

/* What happened to each recipient. */
enum smtp_rcpt_outcome {
    SMTP_RCPT_DELIVERED, /* 2xx after DATA (LMTP: its own reply) */
    SMTP_RCPT_DEFERRED,  /* 4xx, or the connection failed: try again later */
    SMTP_RCPT_BOUNCED,   /* 5xx, or a permanent local decision (8-bit, SMTPUTF8) */
};

struct smtp_client_result {
    size_t rcpt_count;
    enum smtp_rcpt_outcome *outcome;  /* per recipient */
    struct smtp_status *status;       /* per recipient: the reply that decided it */
    bool *remote;                     /* per recipient: status is the server's reply
                                       * (false: decided here, or the connection broke) */
    char peer[300];                   /* "mx.example.net[192.0.2.1]:25" for logs */
    bool connection_usable;           /* true: the connection may take another message */
};

/* Called once per phase. For connect: result is NULL and status says why a
 * connection failed (code 0 = ready). For send: result covers every
 * recipient. Runs on the loop, never inside the call that started it. */
typedef void smtp_client_ready_cb(void *ctx, struct smtp_client *c, const struct smtp_status *st);
typedef void smtp_client_sent_cb(void *ctx, struct smtp_client *c,
                                 const struct smtp_client_result *result);

/* Opens a connection and runs greeting, EHLO, STARTTLS and AUTH. On
 * failure cb gets a status (4xx for temporary trouble, 5xx for a 5xx
 * greeting) and the client is freed after cb returns. */
struct smtp_client *smtp_client_connect(struct event_base *base, const struct sockaddr *sa,
                                        socklen_t salen, const char *peer_name,
                                        const struct smtp_client_config *cfg,
                                        smtp_client_ready_cb *cb, void *ctx);

/* Sends one message on a ready connection. The msg and its strings must
 * stay valid until cb runs. If the connection breaks, every recipient not
 * yet answered is DEFERRED (a message whose DATA was sent but not answered
 * may have been delivered: at-least-once). */
void smtp_client_send(struct smtp_client *c, const struct smtp_client_msg *msg,
                      smtp_client_sent_cb *cb, void *ctx);

/* QUIT (when idle) and free; NULL-safe; clears the pointer. A pending
 * callback is not called. */
void smtp_client_close(struct smtp_client **c);

/* What the server offered (after connect). */
bool smtp_client_has_ext(const struct smtp_client *c, const char *ext);

#endif

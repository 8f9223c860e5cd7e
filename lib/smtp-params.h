/*
 * smtp-params — parser for ESMTP parameters on MAIL FROM and RCPT TO
 * (RFC 5321 §4.1.2 esmtp-param; SIZE RFC 1870, BODY RFC 6152/3030, SMTPUTF8
 * RFC 6531, RET/ENVID/NOTIFY/ORCPT RFC 3461, AUTH RFC 4954).
 *
 * Called by smtp-cmd-mail.c and smtp-cmd-rcpt.c with the text after the path.
 * Trusts nothing: bounded, every keyword and value checked; only the
 * extensions the session offered (struct smtp_params_offer) are accepted.
 */
#ifndef POSTERN_SMTP_PARAMS_H
#define POSTERN_SMTP_PARAMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/smtp-reply.h"

#define SMTP_ENVID_MAX 100 /* RFC 3461 §4.4, xtext-decoded octets */
#define SMTP_ORCPT_MAX 500 /* RFC 3461 §4.2 */
#define SMTP_MAIL_AUTH_MAX 512

/* What the session advertised to this client; a parameter of an extension
 * not offered is "555 5.5.4 Unsupported option". */
struct smtp_params_offer {
    bool size, eightbitmime, smtputf8, dsn, auth, chunking;
    uint64_t size_limit; /* 0 = no limit; SIZE=n above it gives 552 5.3.4 */
};

enum smtp_body { SMTP_BODY_UNSPEC, SMTP_BODY_7BIT, SMTP_BODY_8BITMIME, SMTP_BODY_BINARYMIME };
enum smtp_ret { SMTP_RET_UNSPEC, SMTP_RET_FULL, SMTP_RET_HDRS };

enum smtp_notify {
    SMTP_NOTIFY_UNSPEC = 0,
    SMTP_NOTIFY_NEVER = 1 << 0,
    SMTP_NOTIFY_SUCCESS = 1 << 1,
    SMTP_NOTIFY_FAILURE = 1 << 2,
    SMTP_NOTIFY_DELAY = 1 << 3,
};

struct smtp_mail_params {
    bool has_size;
    uint64_t size;
    enum smtp_body body;
    bool smtputf8;
    enum smtp_ret ret;
    char envid[SMTP_ENVID_MAX + 1];  /* xtext-decoded; "" = none */
    bool has_auth;
    char auth[SMTP_MAIL_AUTH_MAX + 1]; /* xtext-decoded AUTH= mailbox, "<>" kept as "<>" */
};

struct smtp_rcpt_params {
    unsigned notify;                  /* enum smtp_notify bits */
    char orcpt_type[32];              /* "rfc822", "utf-8"; "" = no ORCPT */
    char orcpt[SMTP_ORCPT_MAX + 1];   /* decoded (xtext, or utf-8-addr-xtext) */
};

/* Parses "KEY=VALUE KEY ..." (s may start with spaces; may be empty). Returns 0
 * on success; -1 with *err set to the reply: 555 5.5.4 for an unknown or not
 * offered keyword, 501 5.5.4 for a malformed or duplicate value, 552 5.3.4 for
 * SIZE over the limit, 555 5.5.4 for BODY=BINARYMIME without CHUNKING. */
int smtp_params_parse_mail(const char *s, size_t len, const struct smtp_params_offer *offer,
                           struct smtp_mail_params *out, struct smtp_status *err);
int smtp_params_parse_rcpt(const char *s, size_t len, const struct smtp_params_offer *offer,
                           struct smtp_rcpt_params *out, struct smtp_status *err);

/* xtext (RFC 3461 §4): decodes into out (size outsize, NUL-terminated).
 * Returns decoded length, -1 on bad syntax or overflow. */
int smtp_xtext_decode(const char *in, size_t len, char *out, size_t outsize);
/* Encodes raw bytes as xtext; returns the length needed (like snprintf). */
size_t smtp_xtext_encode(const char *in, size_t len, char *out, size_t outsize);

#endif

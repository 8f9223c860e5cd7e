/*
 * smtp-sasl — the SASL mechanisms SMTP AUTH offers (RFC 4954): PLAIN
 * (RFC 4616) and LOGIN, with strict base64 (RFC 4648).
 *
 * Called by smtp-cmd-auth.c with what the client sent (untrusted, bounded by
 * the command line limit). Decodes and splits; checking the password is the
 * caller's job (passwd_db_verify on a worker thread).
 */
#ifndef POSTERN_SMTP_SASL_H
#define POSTERN_SMTP_SASL_H

#include <stddef.h>

#define SASL_FIELD_MAX 256

struct sasl_credentials {
    char authzid[SASL_FIELD_MAX + 1]; /* "" when none given */
    char authcid[SASL_FIELD_MAX + 1];
    char password[SASL_FIELD_MAX + 1];
};

/* Strict base64 decode: only A-Z a-z 0-9 + /, correct '=' padding, length a
 * multiple of 4; "=" alone means an empty string (RFC 4954 §4). Returns the
 * decoded length, or -1 on bad input or when out (outsize) is too small. The
 * output is NUL-terminated when there is room. */
int sasl_base64_decode(const char *in, size_t len, unsigned char *out, size_t outsize);
/* Encodes; returns the length written (out NUL-terminated), -1 if too small. */
int sasl_base64_encode(const unsigned char *in, size_t len, char *out, size_t outsize);

/* PLAIN: base64 of "authzid NUL authcid NUL password". Returns 0, or -1 with
 * *error_r ("Invalid base64 data", "Invalid PLAIN response") on malformed
 * input, empty authcid or password, NUL bytes inside a field, or fields over
 * SASL_FIELD_MAX. */
int sasl_plain_decode(const char *b64, size_t len, struct sasl_credentials *out,
                      const char **error_r);

/* LOGIN: one base64 answer (user name or password) into out (NUL-terminated,
 * SASL_FIELD_MAX). Returns 0 or -1 with *error_r. */
int sasl_login_decode(const char *b64, size_t len, char *out, const char **error_r);

#endif

/*
 * tls — OpenSSL server contexts for STARTTLS and implicit TLS listeners.
 *
 * Called by the master at config load (and SIGHUP reload). Trusts the admin's
 * cert and key files; checks they load and match. TLS 1.2 minimum, the
 * OpenSSL default cipher list, no compression, no renegotiation.
 */
#ifndef POSTERN_TLS_H
#define POSTERN_TLS_H

#include <stddef.h>
#include <openssl/ssl.h>

/* Builds a server SSL_CTX from a PEM certificate chain and a PEM key.
 * Returns NULL with a message in error (errsize bytes) naming the file. */
SSL_CTX *tls_server_ctx_new(const char *cert_file, const char *key_file, char *error,
                            size_t errsize);

/* Describes the session for logs and the Received header:
 * "TLSv1.3 TLS_AES_256_GCM_SHA384 (256/256 bits)". */
const char *tls_describe(SSL *ssl, char *buf, size_t size);

#endif

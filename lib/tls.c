/*
 * tls — see tls.h. Builds the server SSL_CTX that STARTTLS and implicit TLS
 * listeners share: TLS 1.2 minimum, OpenSSL's default ciphers, no
 * compression (CRIME), no renegotiation (client-initiated DoS).
 *
 * Trusts the admin's certificate and key files for their content, but
 * checks that they load and that the key matches the certificate. An
 * encrypted key fails to load instead of prompting on a terminal. Errors
 * name the file and OpenSSL's reason; the thread's error queue is left empty.
 */
#include "config.h"
#include "lib/tls.h"

#include <stdio.h>

#include <openssl/err.h>

/* A daemon has no one to ask for a passphrase. */
static int no_passphrase(char *buf, int size, int rwflag, void *userdata)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)userdata;
    return 0;
}

/* "what: reason" with the earliest (most specific) queued OpenSSL error. */
static void tls_error(char *error, size_t errsize, const char *what, const char *file)
{
    char reason[256] = "unknown error";
    unsigned long code = ERR_get_error();

    if (code != 0)
        ERR_error_string_n(code, reason, sizeof(reason));
    ERR_clear_error();
    if (error != NULL && errsize > 0)
        snprintf(error, errsize, "%s: %s: %s", file, what, reason);
}

static int tls_load_files(SSL_CTX *ctx, const char *cert_file, const char *key_file,
                          char *error, size_t errsize)
{
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
        tls_error(error, errsize, "cannot load certificate chain", cert_file);
        return -1;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
        tls_error(error, errsize, "cannot load private key", key_file);
        return -1;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        tls_error(error, errsize, "private key does not match the certificate", key_file);
        return -1;
    }
    return 0;
}

SSL_CTX *tls_server_ctx_new(const char *cert_file, const char *key_file, char *error,
                            size_t errsize)
{
    SSL_CTX *ctx;

    ERR_clear_error();
    ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        tls_error(error, errsize, "cannot create TLS context", cert_file);
        return NULL;
    }
    SSL_CTX_set_default_passwd_cb(ctx, no_passphrase);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
        tls_error(error, errsize, "cannot set TLS 1.2 minimum", cert_file);
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (tls_load_files(ctx, cert_file, key_file, error, errsize) < 0) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

const char *tls_describe(SSL *ssl, char *buf, size_t size)
{
    const SSL_CIPHER *cipher = SSL_get_current_cipher(ssl);
    int alg_bits = 0, bits;

    if (size == 0)
        return "";
    if (cipher == NULL) {
        snprintf(buf, size, "%s (no cipher)", SSL_get_version(ssl));
        return buf;
    }
    bits = SSL_CIPHER_get_bits(cipher, &alg_bits);
    snprintf(buf, size, "%s %s (%d/%d bits)", SSL_get_version(ssl), SSL_CIPHER_get_name(cipher),
             bits, alg_bits);
    return buf;
}

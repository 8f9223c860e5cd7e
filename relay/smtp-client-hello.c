/*
 * smtp-client-hello — from the greeting to a ready connection: EHLO (HELO
 * when EHLO gets 5xx) or LHLO, STARTTLS as cfg->tls asks, EHLO again over
 * TLS, AUTH PLAIN to a smarthost. Called from smtp-client.c with each
 * complete reply while the connection is being set up.
 *
 * SECURITY: what the server offers is read from its EHLO reply, which an
 * attacker on the path can rewrite; so with tls = REQUIRED or VERIFY a
 * missing STARTTLS, a refused STARTTLS or a failed handshake defers the
 * connection (4.7.5) before anything of a message is sent. Plaintext that
 * arrived after the 220 to STARTTLS is thrown away before the handshake,
 * and the extensions are forgotten and asked for again over TLS.
 * Credentials go out only over TLS unless cfg->auth_plaintext.
 */
#include "config.h"
#include "relay/smtp-client-private.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "lib/smtp-sasl.h"
#include "lib/log.h"
#include "lib/tls.h"

static const struct {
    const char *keyword;
    unsigned bit;
} ext_table[] = {
    {"PIPELINING", EXT_PIPELINING},
    {"SIZE", EXT_SIZE},
    {"8BITMIME", EXT_8BITMIME},
    {"SMTPUTF8", EXT_SMTPUTF8},
    {"DSN", EXT_DSN},
    {"STARTTLS", EXT_STARTTLS},
    {"ENHANCEDSTATUSCODES", EXT_ENHANCEDSTATUSCODES},
};

/* The parameters of an EHLO keyword line ("AUTH PLAIN LOGIN", or the old
 * "AUTH=PLAIN LOGIN"), NULL when the server did not offer it. The lines
 * end at '\n'; *len_r gets the length of the parameters. */
static const char *ext_params(const char *ext_text, const char *keyword, size_t *len_r)
{
    size_t n = strlen(keyword);

    for (const char *p = ext_text; *p != '\0';) {
        const char *eol = strchr(p, '\n');
        size_t len = eol != NULL ? (size_t)(eol - p) : strlen(p);

        if (len >= n && strncasecmp(p, keyword, n) == 0 &&
            (len == n || p[n] == ' ' || p[n] == '=')) {
            *len_r = len == n ? 0 : len - n - 1;
            return len == n ? p + n : p + n + 1;
        }
        p += len + (eol != NULL ? 1 : 0);
    }
    return NULL;
}

bool smtp_client_has_ext(const struct smtp_client *c, const char *ext)
{
    size_t len;

    return ext_params(c->ext_text, ext, &len) != NULL;
}

static bool has_word(const char *s, size_t len, const char *word)
{
    size_t n = strlen(word);

    for (size_t i = 0; i < len;) {
        size_t j = i;

        while (j < len && s[j] != ' ')
            j++;
        if (j - i == n && strncasecmp(s + i, word, n) == 0)
            return true;
        i = j + 1;
    }
    return false;
}

static void parse_ext(struct smtp_client *c)
{
    const char *params;
    size_t len;

    c->ext = 0;
    for (size_t i = 0; i < sizeof(ext_table) / sizeof(ext_table[0]); i++) {
        if (ext_params(c->ext_text, ext_table[i].keyword, &len) != NULL)
            c->ext |= ext_table[i].bit;
    }
    params = ext_params(c->ext_text, "AUTH", &len);
    if (params != NULL && has_word(params, len, "PLAIN"))
        c->ext |= EXT_AUTH_PLAIN;
}

static void send_hello(struct smtp_client *c)
{
    c->ext = 0;
    c->ext_text[0] = '\0';
    smtp_client_printf(c, "%s %s\r\n", c->lmtp ? "LHLO" : "EHLO", c->helo_name);
    c->state = CLIENT_HELLO;
    smtp_client_wait_reply(c, c->lmtp ? "sending LHLO" : "sending EHLO");
}

static void fail_tls(struct smtp_client *c, const char *why)
{
    struct smtp_status st;

    smtp_status_set(&st, 451, "4.7.5", "TLS is required for %s, but %s", c->peer, why);
    smtp_client_fail_connect(c, &st);
}

/* A 4xx or 5xx ends the attempt with the server's word; anything else out
 * of place is a protocol error (temporary). */
static void fail_with_reply(struct smtp_client *c, const struct smtp_status *r)
{
    struct smtp_status st;
    unsigned cls = r->code / 100;

    if (cls == 4 || cls == 5) {
        smtp_client_fail_connect(c, r);
        return;
    }
    smtp_status_set(&st, 451, "4.5.0", "unexpected reply %u from %s while %s", r->code, c->peer,
                    c->phase);
    smtp_client_fail_connect(c, &st);
}

static bool want_auth(struct smtp_client *c)
{
    if (c->auth_user == NULL)
        return false;
    if (!(c->ext & EXT_AUTH_PLAIN)) {
        log_warning("%s does not offer AUTH PLAIN: going on without authentication", c->peer);
        return false;
    }
    if (!c->tls && !c->auth_plaintext) {
        log_warning("%s: not sending credentials without TLS", c->peer);
        return false;
    }
    return true;
}

/* AUTH PLAIN with an initial response (RFC 4954, RFC 4616): no authzid. */
static void send_auth(struct smtp_client *c)
{
    size_t ulen = strlen(c->auth_user), plen = strlen(c->auth_pass), rawlen = ulen + plen + 2;
    size_t b64size = 4 * ((rawlen + 2) / 3) + 1;
    unsigned char *raw = malloc(rawlen);
    char *b64 = malloc(b64size);
    struct smtp_status st;
    bool ok;

    if (raw == NULL || b64 == NULL) {
        free(raw);
        free(b64);
        smtp_status_set(&st, 451, "4.3.0", "out of memory");
        smtp_client_fail_connect(c, &st);
        return;
    }
    raw[0] = '\0';
    memcpy(raw + 1, c->auth_user, ulen);
    raw[1 + ulen] = '\0';
    memcpy(raw + 2 + ulen, c->auth_pass, plen);
    ok = sasl_base64_encode(raw, rawlen, b64, b64size) >= 0;
    if (ok)
        smtp_client_printf(c, "AUTH PLAIN %s\r\n", b64);
    OPENSSL_cleanse(raw, rawlen);
    OPENSSL_cleanse(b64, b64size);
    free(raw);
    free(b64);
    if (!ok) {
        smtp_status_set(&st, 451, "4.7.0", "cannot encode the credentials for %s", c->peer);
        smtp_client_fail_connect(c, &st);
        return;
    }
    c->state = CLIENT_AUTH;
    smtp_client_wait_reply(c, "sending AUTH");
}

/* After EHLO/LHLO/HELO: STARTTLS, AUTH or ready. */
static void after_hello(struct smtp_client *c)
{
    bool required =
        c->tls_mode == SMTP_CLIENT_TLS_REQUIRED || c->tls_mode == SMTP_CLIENT_TLS_VERIFY;
    bool can = c->tls_ctx != NULL && (c->ext & EXT_STARTTLS) != 0;

    if (!c->tls && required && !can) {
        fail_tls(c,
                 c->tls_ctx == NULL ? "no TLS context is configured" : "STARTTLS was not offered");
        return;
    }
    if (!c->tls && can && !c->tls_tried && c->tls_mode != SMTP_CLIENT_TLS_NONE) {
        c->tls_tried = true;
        smtp_client_printf(c, "STARTTLS\r\n");
        c->state = CLIENT_STARTTLS;
        smtp_client_wait_reply(c, "sending STARTTLS");
        return;
    }
    if (want_auth(c)) {
        send_auth(c);
        return;
    }
    smtp_client_connected(c);
}

/* SNI carries host names only (RFC 6066 §3). */
static bool is_ip_literal(const char *name)
{
    unsigned char buf[sizeof(struct in6_addr)];

    return inet_pton(AF_INET, name, buf) == 1 || inet_pton(AF_INET6, name, buf) == 1;
}

static SSL *tls_new_ssl(struct smtp_client *c)
{
    const char *name = c->tls_name;
    SSL *ssl = SSL_new(c->tls_ctx);

    if (ssl == NULL)
        return NULL;
    if (name != NULL && !is_ip_literal(name) && SSL_set_tlsext_host_name(ssl, name) != 1)
        log_warning("%s: cannot set TLS SNI name", c->peer);
    if (c->tls_mode != SMTP_CLIENT_TLS_VERIFY) {
        SSL_set_verify(ssl, SSL_VERIFY_NONE, NULL);
        return ssl;
    }
    SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (name == NULL || SSL_set1_host(ssl, name) != 1) {
        SSL_free(ssl);
        return NULL;
    }
    SSL_set_verify(ssl, SSL_VERIFY_PEER, NULL);
    return ssl;
}

/* The 220 to STARTTLS: throw away what else came in plaintext, then put a
 * TLS filter over the socket's bufferevent. */
static void tls_start(struct smtp_client *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    SSL *ssl = tls_new_ssl(c);
    struct bufferevent *tls = NULL;

    evbuffer_drain(in, evbuffer_get_length(in));
    c->parser_done = true;
    if (ssl != NULL)
        tls = bufferevent_openssl_filter_new(c->base, c->bev, ssl, BUFFEREVENT_SSL_CONNECTING,
                                             BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (tls == NULL) {
        ERR_clear_error();
        fail_tls(c, c->tls_mode == SMTP_CLIENT_TLS_VERIFY && c->tls_name == NULL
                        ? "no name to verify is configured"
                        : "TLS could not be started");
        return;
    }
    /* bounds what the filter queues on the socket (content streaming) */
    bufferevent_setwatermark(c->bev, EV_WRITE, 0, CLIENT_OUT_HIGH);
    c->bev = tls;
    smtp_client_set_callbacks(c);
    c->state = CLIENT_HANDSHAKE;
    smtp_client_wait_reply(c, "in the TLS handshake");
}

void smtp_client_tls_done(struct smtp_client *c)
{
    SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
    char desc[128];

    if (ssl == NULL ||
        (c->tls_mode == SMTP_CLIENT_TLS_VERIFY && SSL_get_verify_result(ssl) != X509_V_OK)) {
        fail_tls(c, "the certificate did not verify");
        return;
    }
    c->tls = true;
    log_info("TLS established with %s: %s", c->peer, tls_describe(ssl, desc, sizeof(desc)));
    send_hello(c);
}

void smtp_client_tls_failed(struct smtp_client *c)
{
    SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
    unsigned long e = bufferevent_get_openssl_error(c->bev);
    char reason[200] = "connection closed";
    struct smtp_status st;
    long vr = ssl != NULL ? SSL_get_verify_result(ssl) : X509_V_OK;

    if (c->tls_mode == SMTP_CLIENT_TLS_VERIFY && vr != X509_V_OK)
        snprintf(reason, sizeof(reason), "certificate: %s", X509_verify_cert_error_string(vr));
    else if (e != 0)
        ERR_error_string_n(e, reason, sizeof(reason));
    while (bufferevent_get_openssl_error(c->bev) != 0)
        ;
    ERR_clear_error();
    smtp_status_set(&st, 451, "4.7.5", "TLS handshake with %s failed: %s", c->peer, reason);
    smtp_client_fail_connect(c, &st);
}

static void greeting_reply(struct smtp_client *c, const struct smtp_status *r)
{
    if (r->code / 100 == 2)
        send_hello(c);
    else
        fail_with_reply(c, r);
}

static void hello_reply(struct smtp_client *c, const struct smtp_status *r)
{
    if (r->code / 100 == 2) {
        c->esmtp = true;
        memcpy(c->ext_text, c->parser.ext, sizeof(c->ext_text));
        c->ext_text[sizeof(c->ext_text) - 1] = '\0';
        parse_ext(c);
        after_hello(c);
    } else if (r->code / 100 == 5 && !c->lmtp) {
        smtp_client_printf(c, "HELO %s\r\n", c->helo_name);
        c->state = CLIENT_HELO;
        smtp_client_wait_reply(c, "sending HELO");
    } else {
        fail_with_reply(c, r);
    }
}

static void helo_reply(struct smtp_client *c, const struct smtp_status *r)
{
    if (r->code / 100 != 2) {
        fail_with_reply(c, r);
        return;
    }
    c->esmtp = false;
    c->ext = 0;
    c->ext_text[0] = '\0';
    after_hello(c);
}

static void starttls_reply(struct smtp_client *c, const struct smtp_status *r)
{
    if (r->code / 100 == 2) {
        tls_start(c);
        return;
    }
    if (c->tls_mode == SMTP_CLIENT_TLS_REQUIRED || c->tls_mode == SMTP_CLIENT_TLS_VERIFY) {
        char why[SMTP_STATUS_TEXT_MAX];

        snprintf(why, sizeof(why), "STARTTLS was refused: %u %.200s", r->code, r->text);
        fail_tls(c, why);
        return;
    }
    log_info("%s refused STARTTLS (%u): going on without TLS", c->peer, r->code);
    after_hello(c);
}

static void auth_reply(struct smtp_client *c, const struct smtp_status *r)
{
    if (r->code / 100 == 2) {
        log_debug("authenticated to %s as %s", c->peer, c->auth_user);
        smtp_client_connected(c);
        return;
    }
    log_warning("AUTH to %s failed: %u %s", c->peer, r->code, r->text);
    fail_with_reply(c, r);
}

void smtp_client_hello_reply(struct smtp_client *c, const struct smtp_status *r)
{
    switch (c->state) {
    case CLIENT_GREETING:
        greeting_reply(c, r);
        break;
    case CLIENT_HELLO:
        hello_reply(c, r);
        break;
    case CLIENT_HELO:
        helo_reply(c, r);
        break;
    case CLIENT_STARTTLS:
        starttls_reply(c, r);
        break;
    case CLIENT_AUTH:
        auth_reply(c, r);
        break;
    default:
        break;
    }
}

/*
 * test-smtp-client-script — relay/smtp-client*.c against what smtp-sink
 * cannot play: a mix of replies per recipient, LMTP replies per recipient,
 * STARTTLS (plaintext injection, verification, SNI), AUTH, malformed
 * replies, a server that stops answering. A small scripted server thread
 * does it: fault injection only, it checks each line it gets.
 *
 * Exits 77 (skipped) when /usr/sbin/smtp-sink is not installed (the
 * shared fixture's teardown expects the postfix package).
 */
#include "tests/unit/smtp-client-test.h"

/* ---- TLS material for the scripted server ---- */

struct tls_pair {
    EVP_PKEY *key;
    X509 *cert;
};

static void add_san(X509 *x, const char *name)
{
    char san[300];
    X509V3_CTX ctx;
    X509_EXTENSION *ext;

    snprintf(san, sizeof(san), "DNS:%s", name);
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_alt_name, san);
    assert_non_null(ext);
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
}

/* A self-signed certificate for name. */
static struct tls_pair tls_pair_new(const char *name)
{
    struct tls_pair p = {.key = EVP_EC_gen("P-256"), .cert = X509_new()};
    X509_NAME *subject;

    assert_true(p.key != NULL && p.cert != NULL);
    X509_set_version(p.cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(p.cert), 1);
    X509_gmtime_adj(X509_getm_notBefore(p.cert), -3600);
    X509_gmtime_adj(X509_getm_notAfter(p.cert), 86400);
    X509_set_pubkey(p.cert, p.key);
    subject = X509_get_subject_name(p.cert);
    X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC, (const unsigned char *)name, -1, -1, 0);
    X509_set_issuer_name(p.cert, subject);
    add_san(p.cert, name);
    assert_true(X509_sign(p.cert, p.key, EVP_sha256()) > 0);
    return p;
}

static void tls_pair_free(struct tls_pair *p)
{
    EVP_PKEY_free(p->key);
    X509_free(p->cert);
}

static SSL_CTX *server_ctx(const struct tls_pair *p)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

    assert_non_null(ctx);
    assert_int_equal(SSL_CTX_use_certificate(ctx, p->cert), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey(ctx, p->key), 1);
    return ctx;
}

/* A client context that trusts p's certificate (none when p is NULL). */
static SSL_CTX *client_ctx(const struct tls_pair *p)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

    assert_non_null(ctx);
    if (p != NULL)
        assert_int_equal(X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), p->cert), 1);
    return ctx;
}

/* ---- the scripted server (fault injection) ---- */

enum {
    STEP_CONTENT = 1 << 0,   /* read content lines up to "." (instead of expect) */
    STEP_TLS = 1 << 1,       /* after the reply: TLS handshake */
    STEP_CLOSE = 1 << 2,     /* after the reply: close */
    STEP_HANG = 1 << 3,      /* after the reply: say nothing until the client closes */
    STEP_PIPELINED = 1 << 4, /* the next line must come without our reply */
};

/* expect: the whole line, or a prefix when it ends in '*'. */
struct step {
    const char *expect;
    const char *reply;
    unsigned flags;
};

struct script {
    const struct step *steps; /* ends with an empty step */
    SSL_CTX *tls;
    int lfd, port;
    pthread_t thread;
    /* results, read after the join */
    unsigned done;
    char error[512];
    char content[8192];
    size_t content_len;
    char sni[256];
};

struct conn {
    int fd;
    SSL *ssl;
    char buf[8192];
    size_t len;
};

static ssize_t conn_read(struct conn *k, void *buf, size_t size)
{
    if (k->ssl != NULL)
        return SSL_read(k->ssl, buf, (int)size);
    return recv(k->fd, buf, size, 0);
}

static void conn_write(struct conn *k, const char *s)
{
    if (k->ssl != NULL)
        SSL_write(k->ssl, s, (int)strlen(s));
    else
        send(k->fd, s, strlen(s), MSG_NOSIGNAL);
}

/* Reads one line (CR LF stripped) into line; -1 at the end. */
static int conn_line(struct conn *k, char *line, size_t size)
{
    char *lf;

    while ((lf = memchr(k->buf, '\n', k->len)) == NULL) {
        ssize_t n =
            k->len < sizeof(k->buf) ? conn_read(k, k->buf + k->len, sizeof(k->buf) - k->len) : -1;
        if (n <= 0)
            return -1;
        k->len += (size_t)n;
    }
    size_t len = (size_t)(lf - k->buf), used = len + 1;
    if (len > 0 && k->buf[len - 1] == '\r')
        len--;
    if (len >= size)
        len = size - 1;
    memcpy(line, k->buf, len);
    line[len] = '\0';
    memmove(k->buf, k->buf + used, k->len - used);
    k->len -= used;
    return (int)len;
}

/* Is more input there without our saying anything (within 300 ms)? */
static bool conn_more(struct conn *k)
{
    struct pollfd pfd = {.fd = k->fd, .events = POLLIN};

    if (k->len > 0 || (k->ssl != NULL && SSL_pending(k->ssl) > 0))
        return true;
    return poll(&pfd, 1, 300) == 1;
}

static bool line_matches(const char *line, const char *expect)
{
    size_t n = strlen(expect);

    if (n > 0 && expect[n - 1] == '*')
        return strncmp(line, expect, n - 1) == 0;
    return strcmp(line, expect) == 0;
}

static bool read_content(struct script *s, struct conn *k)
{
    char line[2048];
    int n;

    while ((n = conn_line(k, line, sizeof(line))) >= 0) {
        if (strcmp(line, ".") == 0)
            return true;
        if (s->content_len + (size_t)n + 2 < sizeof(s->content)) {
            memcpy(s->content + s->content_len, line, (size_t)n);
            memcpy(s->content + s->content_len + (size_t)n, "\r\n", 2);
            s->content_len += (size_t)n + 2;
        }
    }
    snprintf(s->error, sizeof(s->error), "connection closed in the content");
    return false;
}

static bool start_tls(struct script *s, struct conn *k)
{
    const char *name;

    k->len = 0; /* nothing the client sent in plaintext is kept */
    k->ssl = SSL_new(s->tls);
    SSL_set_fd(k->ssl, k->fd);
    if (SSL_accept(k->ssl) != 1) {
        snprintf(s->error, sizeof(s->error), "TLS handshake failed");
        return false;
    }
    name = SSL_get_servername(k->ssl, TLSEXT_NAMETYPE_host_name);
    snprintf(s->sni, sizeof(s->sni), "%s", name != NULL ? name : "");
    return true;
}

/* Waits until the client closes (or 5 s: the socket's receive timeout). */
static void wait_close(struct conn *k)
{
    char buf[512];

    while (conn_read(k, buf, sizeof(buf)) > 0)
        ;
}

static bool run_step(struct script *s, struct conn *k, const struct step *st)
{
    char line[2048];

    if (st->flags & STEP_CONTENT) {
        if (!read_content(s, k))
            return false;
    } else if (st->expect != NULL) {
        if (conn_line(k, line, sizeof(line)) < 0)
            snprintf(line, sizeof(line), "(connection closed)");
        if (!line_matches(line, st->expect)) {
            snprintf(s->error, sizeof(s->error), "got \"%.200s\", expected \"%.200s\"", line,
                     st->expect);
            return false;
        }
    }
    if ((st->flags & STEP_PIPELINED) && !conn_more(k)) {
        snprintf(s->error, sizeof(s->error), "no pipelining after \"%s\"", st->expect);
        return false;
    }
    if (st->reply != NULL)
        conn_write(k, st->reply);
    if ((st->flags & STEP_TLS) && !start_tls(s, k))
        return false;
    if (st->flags & (STEP_HANG | STEP_CLOSE)) {
        if (st->flags & STEP_CLOSE)
            shutdown(k->fd, SHUT_WR);
        wait_close(k);
        return false;
    }
    return true;
}

static void *script_main(void *arg)
{
    struct script *s = arg;
    struct conn k = {.fd = accept(s->lfd, NULL, NULL)};
    struct timeval tv = {5, 0};

    if (k.fd < 0) {
        snprintf(s->error, sizeof(s->error), "no connection");
        return NULL;
    }
    setsockopt(k.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    for (const struct step *st = s->steps; st->expect != NULL || st->reply != NULL || st->flags;
         st++) {
        if (!run_step(s, &k, st))
            break;
        s->done++;
    }
    if (k.ssl != NULL)
        SSL_free(k.ssl);
    close(k.fd);
    return NULL;
}

static void script_start(struct script *s, const struct step *steps, SSL_CTX *tls)
{
    struct sockaddr_in sin = {.sin_family = AF_INET};
    socklen_t len = sizeof(sin);
    struct timeval tv = {10, 0};

    memset(s, 0, sizeof(*s));
    s->steps = steps;
    s->tls = tls;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    s->lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(s->lfd >= 0);
    assert_int_equal(bind(s->lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(listen(s->lfd, 4), 0);
    assert_int_equal(getsockname(s->lfd, (struct sockaddr *)&sin, &len), 0);
    setsockopt(s->lfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)); /* bounds accept() */
    s->port = ntohs(sin.sin_port);
    assert_int_equal(pthread_create(&s->thread, NULL, script_main, s), 0);
}

/* Joins the server; returns how many steps it finished. */
static unsigned script_join(struct script *s)
{
    pthread_join(s->thread, NULL);
    close(s->lfd);
    return s->done;
}

static void script_ok(struct script *s, size_t nsteps)
{
    unsigned done = script_join(s);

    if (s->error[0] != '\0' || done != nsteps)
        fail_msg("script: %u of %zu steps: %s", done, nsteps, s->error);
}

/* How many steps the server finishes when the client does as scripted:
 * all of them, or those before the first that hangs or closes. */
static size_t script_len(const struct step *steps)
{
    size_t n = 0;

    while ((steps[n].expect != NULL || steps[n].reply != NULL || steps[n].flags) &&
           !(steps[n].flags & (STEP_HANG | STEP_CLOSE)))
        n++;
    return n;
}

#define EHLO_PIPELINING "250-script\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES\r\n"

/* ---- scripted tests ---- */

/* One RCPT accepted, one 5xx, one 4xx, one accepted; all in one write. */
static const struct step rcpt_mix_steps[] = {
    {NULL, "220 script ESMTP\r\n", 0},
    {"EHLO client.test", "250-script\r\n250-PIPELINING\r\n250 SIZE 1000000\r\n", 0},
    {"MAIL FROM:<s@example.test> SIZE=19", "250 2.1.0 Ok\r\n", STEP_PIPELINED},
    {"RCPT TO:<a@example.test>", "250 2.1.5 Ok\r\n", STEP_PIPELINED},
    {"RCPT TO:<b@example.test>", "550 5.1.1 <b@example.test>: unknown\r\n", STEP_PIPELINED},
    {"RCPT TO:<c@example.test>", "451 4.3.0 try later\r\n", STEP_PIPELINED},
    {"RCPT TO:<d@example.test>", "250 Ok\r\n", STEP_PIPELINED},
    {"DATA", "354 go\r\n", 0},
    {NULL, "250 2.0.0 Ok: queued\r\n", STEP_CONTENT},
    {"QUIT", "221 2.0.0 Bye\r\n", 0},
    {NULL, NULL, 0},
};

/* A server that answers DATA with 354 though every RCPT failed: the empty
 * message is ended, then RSET. */
static const struct step no_rcpt_354_steps[] = {
    {NULL, "220 script ESMTP\r\n", 0},
    {"EHLO client.test", EHLO_PIPELINING, 0},
    {"MAIL FROM:<s@example.test>", "250 2.1.0 Ok\r\n", STEP_PIPELINED},
    {"RCPT TO:<a@example.test>", "550 5.1.1 no\r\n", STEP_PIPELINED},
    {"RCPT TO:<b@example.test>", "550 5.1.1 no\r\n", STEP_PIPELINED},
    {"DATA", "354 go anyway\r\n", 0},
    {NULL, "554 5.5.1 Error: no valid recipients\r\n", STEP_CONTENT},
    {"RSET", "250 2.0.0 Ok\r\n", 0},
    {"QUIT", "221 2.0.0 Bye\r\n", 0},
    {NULL, NULL, 0},
};

/* LMTP: one final reply per accepted recipient, in order. */
static const struct step lmtp_mix_steps[] = {
    {NULL, "220 lmtp\r\n", 0},
    {"LHLO client.test", EHLO_PIPELINING, 0},
    {"MAIL FROM:<s@example.test>", "250 2.1.0 Ok\r\n", STEP_PIPELINED},
    {"RCPT TO:<a@example.test>", "250 2.1.5 Ok\r\n", STEP_PIPELINED},
    {"RCPT TO:<b@example.test>", "550 5.1.1 unknown\r\n", STEP_PIPELINED},
    {"RCPT TO:<c@example.test>", "250 2.1.5 Ok\r\n", STEP_PIPELINED},
    {"DATA", "354 go\r\n", 0},
    {NULL, "250 2.0.0 <a@example.test> delivered\r\n452 4.2.2 <c@example.test> over quota\r\n",
     STEP_CONTENT},
    {"QUIT", "221 2.0.0 Bye\r\n", 0},
    {NULL, NULL, 0},
};

/* 421 in the middle of the pipelined RCPTs: everyone open is deferred
 * with it, and the connection is done. */
static const struct step rcpt_421_steps[] = {
    {NULL, "220 script ESMTP\r\n", 0},
    {"EHLO client.test", EHLO_PIPELINING, 0},
    {"MAIL FROM:<s@example.test>", "250 2.1.0 Ok\r\n", 0},
    {"RCPT TO:<a@example.test>", "250 2.1.5 Ok\r\n", 0},
    {"RCPT TO:<b@example.test>", "421 4.3.2 shutting down\r\n", STEP_CLOSE},
    {NULL, NULL, 0},
};

/* The final reply does not come within data_timeout: deferred (the
 * message may have arrived), the connection is given up. */
static const struct step data_timeout_steps[] = {
    {NULL, "220 script ESMTP\r\n", 0},
    {"EHLO client.test", EHLO_PIPELINING, 0},
    {"MAIL FROM:<s@example.test>", "250 2.1.0 Ok\r\n", 0},
    {"RCPT TO:<a@example.test>", "250 2.1.5 Ok\r\n", 0},
    {"DATA", "354 go\r\n", 0},
    {NULL, NULL, STEP_CONTENT | STEP_HANG},
    {NULL, NULL, 0},
};

static const char *const four_rcpts[] = {"a@example.test", "b@example.test", "c@example.test",
                                         "d@example.test"};

/* One message against a script that runs to its end (script_len). */
struct send_row {
    const char *name;
    const struct step *steps;
    bool lmtp;                /* cfg.lmtp */
    unsigned data_timeout_ms; /* 0: default_config's */
    const char *content;      /* NULL: tricky */
    size_t rcpt_count;        /* the first of four_rcpts */
    struct {
        enum smtp_rcpt_outcome outcome;
        unsigned code;
        const char *enhanced;
    } want[4];                /* per recipient */
    const char *text;         /* in the first status text; NULL: not looked at */
    bool usable;
    const char *received;     /* the content as the server read it; NULL: not looked at */
};

static const struct send_row send_rows[] = {
    {.name = "rcpt mix", .steps = rcpt_mix_steps, .content = "Subject: mix\n\n.dot\n",
     .rcpt_count = 4,
     .want = {{SMTP_RCPT_DELIVERED, 250, "2.0.0"}, {SMTP_RCPT_BOUNCED, 550, "5.1.1"},
              {SMTP_RCPT_DEFERRED, 451, "4.3.0"}, {SMTP_RCPT_DELIVERED, 250, "2.0.0"}},
     .usable = true, .received = "Subject: mix\r\n\r\n..dot\r\n"},
    {.name = "354 without rcpt", .steps = no_rcpt_354_steps, .rcpt_count = 2,
     .want = {{SMTP_RCPT_BOUNCED, 550, "5.1.1"}, {SMTP_RCPT_BOUNCED, 550, "5.1.1"}},
     .usable = true, .received = ""},
    {.name = "lmtp mix", .steps = lmtp_mix_steps, .lmtp = true, .rcpt_count = 3,
     .want = {{SMTP_RCPT_DELIVERED, 250, "2.0.0"}, {SMTP_RCPT_BOUNCED, 550, "5.1.1"},
              {SMTP_RCPT_DEFERRED, 452, "4.2.2"}},
     .usable = true},
    {.name = "421 rcpt", .steps = rcpt_421_steps, .rcpt_count = 2,
     .want = {{SMTP_RCPT_DEFERRED, 421, "4.3.2"}, {SMTP_RCPT_DEFERRED, 421, "4.3.2"}},
     .usable = false},
    {.name = "data timeout", .steps = data_timeout_steps, .data_timeout_ms = 300,
     .rcpt_count = 1, .want = {{SMTP_RCPT_DEFERRED, 451, "4.4.2"}}, .text = "timed out",
     .usable = false},
};

static void run_send_row(struct fixture *f, const struct send_row *row)
{
    const char *content = row->content != NULL ? row->content : tricky;
    struct smtp_client_config cfg = default_config();
    struct script s;
    struct smtp_client *c;
    struct test_msg t;

    print_message("[ ROW      ] %s\n", row->name);
    cfg.lmtp = row->lmtp;
    if (row->data_timeout_ms != 0)
        cfg.data_timeout_ms = row->data_timeout_ms;
    script_start(&s, row->steps, NULL);
    c = open_client(f, s.port, &cfg);
    assert_non_null(c);
    msg_init(&t, content, strlen(content), four_rcpts, row->rcpt_count);
    send_msg(f, c, &t.m);
    for (size_t i = 0; i < row->rcpt_count; i++)
        assert_outcome(f, i, row->want[i].outcome, row->want[i].code, row->want[i].enhanced);
    if (row->text != NULL)
        assert_non_null(strstr(f->status[0].text, row->text));
    assert_true(f->usable == row->usable);
    close_client(f, &c);
    script_ok(&s, script_len(row->steps));
    if (row->received != NULL) {
        assert_string_equal(s.content, row->received);
        assert_int_equal(s.content_len, strlen(row->received));
    }
    msg_free(&t);
}

static void test_script_send(void **state)
{
    for (size_t i = 0; i < N_ELEMENTS(send_rows); i++)
        run_send_row(*state, &send_rows[i]);
}

/* Connection-phase faults: each script ends the attempt with a status. */
static void connect_fails(struct fixture *f, const struct step *steps,
                          const struct smtp_client_config *cfg, SSL_CTX *server_tls, unsigned code,
                          const char *enhanced)
{
    struct script s;

    script_start(&s, steps, server_tls);
    assert_null(open_client(f, s.port, cfg));
    if (f->ready.code != code || strcmp(f->ready.enhanced, enhanced) != 0)
        fail_msg("connect: %u %s %s; expected %u %s", f->ready.code, f->ready.enhanced,
                 f->ready.text, code, enhanced);
    script_join(&s);
}

static const struct step malformed_greeting_steps[] = {
    {NULL, "2x0 script ESMTP\r\n", STEP_HANG},
    {NULL, NULL, 0},
};

static const struct step malformed_ehlo_steps[] = {
    {NULL, "220 script ESMTP\r\n", 0},
    {"EHLO client.test", "250-script\r\n251 mixed\r\n", STEP_HANG},
    {NULL, NULL, 0},
};

static const struct step ehlo_timeout_steps[] = {
    {NULL, "220 script ESMTP\r\n", 0},
    {"EHLO client.test", NULL, STEP_HANG},
    {NULL, NULL, 0},
};

/* AUTH PLAIN refused: the connection fails with the server's status. */
static const struct step auth_refused_steps[] = {
    {NULL, "220 script ESMTP\r\n", 0},
    {"EHLO client.test", "250-script\r\n250 AUTH LOGIN PLAIN\r\n", 0},
    {"AUTH PLAIN AHVzZXIAc2VjcmV0", "535 5.7.8 Authentication failed\r\n", STEP_HANG},
    {NULL, NULL, 0},
};

static const struct connect_row {
    const char *name;
    const struct step *steps;
    unsigned command_timeout_ms; /* 0: default_config's */
    bool auth_plaintext;         /* user / secret, AUTH without TLS allowed */
    unsigned code;
    const char *enhanced;
} connect_rows[] = {
    {.name = "malformed greeting", .steps = malformed_greeting_steps, .code = 451,
     .enhanced = "4.5.0"},
    {.name = "malformed ehlo", .steps = malformed_ehlo_steps, .code = 451, .enhanced = "4.5.0"},
    {.name = "ehlo timeout", .steps = ehlo_timeout_steps, .command_timeout_ms = 300, .code = 451,
     .enhanced = "4.4.2"},
    {.name = "auth refused", .steps = auth_refused_steps, .auth_plaintext = true, .code = 535,
     .enhanced = "5.7.8"},
};

static void test_script_connect_fails(void **state)
{
    for (size_t i = 0; i < N_ELEMENTS(connect_rows); i++) {
        const struct connect_row *row = &connect_rows[i];
        struct smtp_client_config cfg = default_config();

        print_message("[ ROW      ] %s\n", row->name);
        if (row->command_timeout_ms != 0)
            cfg.command_timeout_ms = row->command_timeout_ms;
        if (row->auth_plaintext) {
            cfg.auth_user = "user";
            cfg.auth_pass = "secret";
            cfg.auth_plaintext = true;
        }
        connect_fails(*state, row->steps, &cfg, NULL, row->code, row->enhanced);
    }
}

/* No credentials in plaintext unless auth_plaintext. */
static void test_script_no_auth_without_tls(void **state)
{
    static const struct step steps[] = {
        {NULL, "220 script ESMTP\r\n", 0},
        {"EHLO client.test", "250-script\r\n250 AUTH PLAIN\r\n", 0},
        {"QUIT", "221 2.0.0 Bye\r\n", 0},
        {NULL, NULL, 0},
    };
    struct fixture *f = *state;
    struct smtp_client_config cfg = default_config();
    struct script s;
    struct smtp_client *c;

    cfg.auth_user = "user";
    cfg.auth_pass = "secret";
    script_start(&s, steps, NULL);
    c = open_client(f, s.port, &cfg);
    assert_non_null(c);
    close_client(f, &c);
    script_ok(&s, N_ELEMENTS(steps) - 1);
}

/* tls = REQUIRED: no STARTTLS offered (smtp-sink), no TLS context, or
 * STARTTLS refused: 4.7.5, and no MAIL ever. */
static void test_tls_required_refusals(void **state)
{
    static const struct step refused[] = {
        {NULL, "220 script ESMTP\r\n", 0},
        {"EHLO client.test", "250-script\r\n250 STARTTLS\r\n", 0},
        {"STARTTLS", "454 4.7.0 TLS not available\r\n", STEP_HANG},
        {NULL, NULL, 0},
    };
    struct fixture *f = *state;
    struct smtp_client_config cfg = default_config();
    struct sink *s = &f->sink;

    cfg.tls = SMTP_CLIENT_TLS_REQUIRED;
    cfg.tls_ctx = client_ctx(NULL);
    sink_start(s, NULL);
    assert_null(open_client(f, s->port, &cfg));
    assert_int_equal(f->ready.code, 451);
    assert_string_equal(f->ready.enhanced, "4.7.5");
    connect_fails(f, refused, &cfg, NULL, 451, "4.7.5");
    SSL_CTX_free(cfg.tls_ctx);
    cfg.tls_ctx = NULL;
    assert_null(open_client(f, s->port, &cfg));
    assert_string_equal(f->ready.enhanced, "4.7.5");
    assert_int_equal(sink_count(s), 0);
    sink_stop(s);
}

/* STARTTLS with plaintext injected after the 220 (thrown away), EHLO
 * again over TLS, the certificate verified for tls_name (sent as SNI),
 * AUTH PLAIN over TLS, then a message. */
static void test_tls_verify_auth_deliver(void **state)
{
    static const struct step steps[] = {
        {NULL, "220 script ESMTP\r\n", 0},
        {"EHLO client.test", "250-script\r\n250-PIPELINING\r\n250 STARTTLS\r\n", 0},
        {"STARTTLS", "220 2.0.0 Ready to start TLS\r\n250 injected in plaintext\r\n", STEP_TLS},
        {"EHLO client.test", "250-script\r\n250-PIPELINING\r\n250-AUTH PLAIN\r\n250 8BITMIME\r\n",
         0},
        {"AUTH PLAIN AHVzZXIAc2VjcmV0", "235 2.7.0 Authentication successful\r\n", 0},
        {"MAIL FROM:<s@example.test>", "250 2.1.0 Ok\r\n", STEP_PIPELINED},
        {"RCPT TO:<a@example.test>", "250 2.1.5 Ok\r\n", STEP_PIPELINED},
        {"DATA", "354 go\r\n", 0},
        {NULL, "250 2.0.0 Ok\r\n", STEP_CONTENT},
        {"QUIT", "221 2.0.0 Bye\r\n", 0},
        {NULL, NULL, 0},
    };
    struct fixture *f = *state;
    struct smtp_client_config cfg = default_config();
    struct tls_pair pair = tls_pair_new("mx.example.test");
    SSL_CTX *sctx = server_ctx(&pair);
    struct script s;
    struct smtp_client *c;
    struct test_msg t;

    cfg.tls = SMTP_CLIENT_TLS_VERIFY;
    cfg.tls_ctx = client_ctx(&pair);
    cfg.tls_name = "mx.example.test";
    cfg.auth_user = "user";
    cfg.auth_pass = "secret";
    script_start(&s, steps, sctx);
    c = open_client(f, s.port, &cfg);
    if (c == NULL)
        fail_msg("connect: %u %s", f->ready.code, f->ready.text);
    assert_false(smtp_client_has_ext(c, "STARTTLS"));
    assert_true(smtp_client_has_ext(c, "AUTH"));
    msg_init(&t, tricky, strlen(tricky), two_rcpts, 1);
    send_msg(f, c, &t.m);
    assert_outcome(f, 0, SMTP_RCPT_DELIVERED, 250, "2.0.0");
    close_client(f, &c);
    script_ok(&s, N_ELEMENTS(steps) - 1);
    assert_string_equal(s.sni, "mx.example.test");
    msg_free(&t);
    SSL_CTX_free(cfg.tls_ctx);
    SSL_CTX_free(sctx);
    tls_pair_free(&pair);
}

/* VERIFY: a certificate for another name, or one nobody trusts: 4.7.5,
 * the server never sees a second EHLO, let alone MAIL. REQUIRED (no
 * verification) takes the same untrusted certificate. */
static void test_tls_verify_failures(void **state)
{
    static const struct step steps[] = {
        {NULL, "220 script ESMTP\r\n", 0},
        {"EHLO client.test", "250-script\r\n250 STARTTLS\r\n", 0},
        {"STARTTLS", "220 2.0.0 Ready to start TLS\r\n", STEP_TLS},
        {"EHLO client.test", "250 script\r\n", 0},
        {"QUIT", "221 2.0.0 Bye\r\n", 0},
        {NULL, NULL, 0},
    };
    struct fixture *f = *state;
    struct smtp_client_config cfg = default_config();
    struct tls_pair other = tls_pair_new("other.example.test");
    SSL_CTX *sctx = server_ctx(&other);
    struct script s;
    struct smtp_client *c;

    cfg.tls = SMTP_CLIENT_TLS_VERIFY;
    cfg.tls_name = "mx.example.test";
    for (int trusted = 0; trusted < 2; trusted++) {
        cfg.tls_ctx = client_ctx(trusted ? &other : NULL);
        script_start(&s, steps, sctx);
        assert_null(open_client(f, s.port, &cfg));
        assert_int_equal(f->ready.code, 451);
        assert_string_equal(f->ready.enhanced, "4.7.5");
        assert_int_equal(script_join(&s), 2);
        SSL_CTX_free(cfg.tls_ctx);
    }
    cfg.tls = SMTP_CLIENT_TLS_REQUIRED;
    cfg.tls_ctx = client_ctx(NULL);
    script_start(&s, steps, sctx);
    c = open_client(f, s.port, &cfg);
    assert_non_null(c);
    close_client(f, &c);
    script_ok(&s, N_ELEMENTS(steps) - 1);
    SSL_CTX_free(cfg.tls_ctx);
    SSL_CTX_free(sctx);
    tls_pair_free(&other);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_script_send, setup, teardown),
        cmocka_unit_test_setup_teardown(test_script_connect_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_script_no_auth_without_tls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_required_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_verify_auth_deliver, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_verify_failures, setup, teardown),
    };

    if (access(SINK_PATH, X_OK) != 0) {
        fprintf(stderr, "skipped: %s not installed (Debian package postfix)\n", SINK_PATH);
        return 77;
    }
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test-smtp-client — relay/smtp-client*.c against Postfix's smtp-sink
 * (started here on a free loopback port, with -d to dump each transaction
 * so the test can read what arrived): delivery, pipelining or not,
 * connection reuse, dot-stuffing and line ends, per-command 4xx and 5xx,
 * disconnects, a 421 greeting, LMTP, HELO fallback and the 8BITMIME /
 * SMTPUTF8 refusals, the envelope's added header fields (first on the wire,
 * counted in SIZE= against a minimal SIZE server here, since smtp-sink
 * offers no SIZE, and returned in a DSN); and the dot-stuffing writer by
 * itself. What smtp-sink cannot do is in test-smtp-client-script.c.
 *
 * Exits 77 (skipped) when /usr/sbin/smtp-sink is not installed.
 */
#include "tests/unit/smtp-client-test.h"

#include <event2/buffer.h>

#include "relay/dsn.h"

/* smtp-sink run with opts (NULL-terminated), and a client connected to it. */
static struct smtp_client *sink_open(struct fixture *f, const char *const *opts,
                                     const struct smtp_client_config *cfg)
{
    struct smtp_client *c;

    sink_start(&f->sink, opts);
    c = open_client(f, f->sink.port, cfg);
    assert_non_null(c);
    return c;
}

/* Every recipient of the last message: outcome o, code (and enhanced). */
static void assert_outcomes(const struct fixture *f, enum smtp_rcpt_outcome o, unsigned code,
                            const char *enhanced)
{
    for (size_t i = 0; i < f->n; i++)
        assert_outcome(f, i, o, code, enhanced);
}

/* Commands are small writes: Nagle must be off. */
static bool tcp_nodelay(const struct smtp_client *c)
{
    int on = 0;
    socklen_t len = sizeof(on);

    assert_int_equal(getsockopt(bufferevent_getfd(c->bev), IPPROTO_TCP, TCP_NODELAY, &on, &len), 0);
    return on != 0;
}

/* What smtp-sink offers by default (names match whole, in any case), and
 * Nagle off; delivery over it is the first row of test_sink_tricky. */
static void test_sink_pipelining(void **state)
{
    struct fixture *f = *state;
    struct smtp_client_config cfg = default_config();
    struct smtp_client *c = sink_open(f, NULL, &cfg);

    assert_true(smtp_client_has_ext(c, "PIPELINING"));
    assert_true(smtp_client_has_ext(c, "pipelining"));
    assert_true(smtp_client_has_ext(c, "AUTH"));
    assert_false(smtp_client_has_ext(c, "PIPE"));
    assert_true(tcp_nodelay(c));
    close_client(f, &c);
    sink_stop(&f->sink);
}

/* The tricky message to both of two_rcpts over smtp-sink run with opts:
 * sent `rounds` times on one connection, each time every recipient gets
 * the same outcome. */
struct tricky_row {
    const char *name;
    const char *opts[3];             /* smtp-sink's, NULL-terminated */
    bool lmtp;                       /* cfg.lmtp */
    enum smtp_body body;             /* declared in MAIL */
    const char *has_ext, *lacks_ext; /* after the greeting; NULL: not looked at */
    int rounds;
    enum smtp_rcpt_outcome outcome;
    unsigned code;
    const char *enhanced;            /* NULL: any */
    bool usable;                     /* the connection after each round */
    const char *dump_args;           /* in the message's dump; NULL: not looked at */
    bool nothing_arrives;            /* smtp-sink dumped no message at all */
};

static const struct tricky_row tricky_rows[] = {
    {.name = "pipelining", .has_ext = "8BITMIME", .lacks_ext = "SMTPUTF8", .rounds = 1,
     .outcome = SMTP_RCPT_DELIVERED, .code = 250, .enhanced = "2.0.0", .usable = true,
     .dump_args = "X-Mail-Args: <s@example.test>\n"},
    {.name = "no pipelining", .opts = {"-p"}, .has_ext = "8BITMIME", .lacks_ext = "SMTPUTF8",
     .rounds = 1, .outcome = SMTP_RCPT_DELIVERED, .code = 250, .enhanced = "2.0.0",
     .usable = true, .dump_args = "X-Mail-Args: <s@example.test>\n"},
    /* Every RCPT refused (5xx, then 4xx): no DATA, RSET, the connection
     * takes the next message. */
    {.name = "rcpt 5xx", .opts = {"-f", "rcpt"}, .rounds = 2, .outcome = SMTP_RCPT_BOUNCED,
     .code = 500, .usable = true, .nothing_arrives = true},
    {.name = "rcpt 4xx", .opts = {"-r", "rcpt"}, .rounds = 2, .outcome = SMTP_RCPT_DEFERRED,
     .code = 450, .usable = true, .nothing_arrives = true},
    /* The server hangs up after the final dot, without a reply: deferred
     * (it may have been delivered: at-least-once), the connection is gone;
     * the second round: a broken connection defers at once. */
    {.name = "disconnect after dot", .opts = {"-q", "."}, .rounds = 2,
     .outcome = SMTP_RCPT_DEFERRED, .code = 451, .enhanced = "4.4.2", .usable = false},
    {.name = "lmtp", .opts = {"-L"}, .lmtp = true, .rounds = 1, .outcome = SMTP_RCPT_DELIVERED,
     .code = 250, .enhanced = "2.2.0", .usable = true, .dump_args = "X-Client-Proto: LMTP\n"},
    /* EHLO refused: HELO, no extensions, so BODY=8BITMIME is left out of a
     * message that is 7-bit after all. */
    {.name = "helo fallback", .opts = {"-e"}, .body = SMTP_BODY_8BITMIME,
     .lacks_ext = "PIPELINING", .rounds = 1, .outcome = SMTP_RCPT_DELIVERED, .code = 250,
     .enhanced = "2.0.0", .usable = true,
     .dump_args = "X-Client-Proto: SMTP\nX-Helo-Args: client.test\nX-Mail-Args: <s@example.test>\n"},
};

static void run_tricky_row(struct fixture *f, const struct tricky_row *row)
{
    struct smtp_client_config cfg = default_config();
    struct smtp_client *c;
    struct test_msg t;

    print_message("[ ROW      ] %s\n", row->name);
    cfg.lmtp = row->lmtp;
    c = sink_open(f, row->opts, &cfg);
    if (row->has_ext != NULL)
        assert_true(smtp_client_has_ext(c, row->has_ext));
    if (row->lacks_ext != NULL)
        assert_false(smtp_client_has_ext(c, row->lacks_ext));
    msg_init(&t, tricky, strlen(tricky), two_rcpts, 2);
    t.m.body = row->body;
    for (int round = 0; round < row->rounds; round++) {
        send_msg(f, c, &t.m);
        assert_outcomes(f, row->outcome, row->code, row->enhanced);
        assert_true(f->usable == row->usable);
    }
    close_client(f, &c);
    if (row->nothing_arrives)
        assert_int_equal(sink_count(&f->sink), 0);
    if (row->dump_args != NULL)
        assert_dump(&f->sink, "<tricky@test>", tricky_dump, row->dump_args);
    msg_free(&t);
    sink_stop(&f->sink);
}

static void test_sink_tricky(void **state)
{
    for (size_t i = 0; i < N_ELEMENTS(tricky_rows); i++)
        run_tricky_row(*state, &tricky_rows[i]);
}

/* Several messages on one connection: a small one, a large one (streamed
 * through the output watermarks), one without a final line end, an empty
 * one. */
static char *large_content(size_t *len_r, char **dump_r)
{
    size_t lines = 20000, cap = lines * 80 + 64;
    char *s = malloc(cap), *d = malloc(cap);
    size_t n = 0, m = 0;

    assert_true(s != NULL && d != NULL);
    n += (size_t)sprintf(s + n, "Message-ID: <large@test>\r\n\r\n");
    m += (size_t)sprintf(d + m, "Message-ID: <large@test>\n\n");
    for (size_t i = 0; i < lines; i++) {
        const char *lead = i % 7 == 0 ? "." : "";
        n += (size_t)sprintf(s + n, "%sline %06zu 0123456789abcdefghijklmnopqrstuvwxyz\r\n", lead,
                             i);
        m += (size_t)sprintf(d + m, "%sline %06zu 0123456789abcdefghijklmnopqrstuvwxyz\n", lead, i);
    }
    sprintf(d + m, "\n");
    *len_r = n;
    *dump_r = d;
    return s;
}

static void test_sink_reuse(void **state)
{
    static const char small[] = "Message-ID: <small@test>\r\n\r\nsmall\r\n";
    static const char noeol[] = "Message-ID: <noeol@test>\r\n\r\nlast line without newline";
    struct fixture *f = *state;
    struct smtp_client_config cfg = default_config();
    struct test_msg t[3];
    struct sink *s = &f->sink;
    struct smtp_client *c;
    size_t large_len;
    char *large_dump, *large = large_content(&large_len, &large_dump);

    c = sink_open(f, NULL, &cfg);
    msg_init(&t[0], small, sizeof(small) - 1, two_rcpts, 1);
    msg_init(&t[1], large, large_len, two_rcpts, 2);
    msg_init(&t[2], noeol, sizeof(noeol) - 1, two_rcpts + 1, 1);
    for (size_t i = 0; i < 3; i++) {
        send_msg(f, c, &t[i].m);
        assert_outcome(f, 0, SMTP_RCPT_DELIVERED, 250, "2.0.0");
        assert_true(f->usable);
    }
    close_client(f, &c);
    assert_int_equal(sink_count(s), 3);
    assert_dump(s, "<small@test>", "Message-ID: <small@test>\n\nsmall\n\n", NULL);
    assert_dump(s, "<large@test>", large_dump, NULL);
    assert_dump(s, "<noeol@test>", "Message-ID: <noeol@test>\n\nlast line without newline\n\n",
                NULL);
    for (size_t i = 0; i < 3; i++)
        msg_free(&t[i]);
    free(large);
    free(large_dump);
    sink_stop(s);
}

static void test_sink_421_greeting(void **state)
{
    static const char *const opts[] = {"-Q", "connect", NULL};
    struct fixture *f = *state;
    struct smtp_client_config cfg = default_config();
    struct sink *s = &f->sink;

    sink_start(s, opts);
    assert_null(open_client(f, s->port, &cfg));
    assert_int_equal(f->ready.code, 421);
    assert_true(f->ready.enhanced[0] == '4');
    sink_stop(s);
}

static void test_connect_refused(void **state)
{
    struct fixture *f = *state;
    struct smtp_client_config cfg = default_config();

    assert_null(open_client(f, free_port(), &cfg));
    assert_int_equal(f->ready.code, 451);
    assert_string_equal(f->ready.enhanced, "4.4.1");
}

static const char eight[] = "Message-ID: <eight@test>\r\n\r\ncaf\xc3\xa9\r\n";

/* RFC 6152: 8-bit content to a server without 8BITMIME is bounced here,
 * nothing sent; 7-bit content declared 8BITMIME goes without BODY=. With
 * 8BITMIME offered, BODY=8BITMIME and the DSN parameters go along. */
static void test_sink_8bitmime(void **state)
{
    static const char *const opts[] = {"-8", NULL};
    struct fixture *f = *state;
    struct smtp_client_config cfg = default_config();
    struct sink *s = &f->sink;
    struct smtp_client *c;
    struct test_msg t, t7;

    c = sink_open(f, opts, &cfg);
    assert_false(smtp_client_has_ext(c, "8BITMIME"));
    msg_init(&t, eight, sizeof(eight) - 1, two_rcpts, 2);
    t.m.body = SMTP_BODY_8BITMIME;
    send_msg(f, c, &t.m);
    assert_outcomes(f, SMTP_RCPT_BOUNCED, 554, "5.6.3");
    assert_true(f->usable);
    msg_init(&t7, tricky, strlen(tricky), two_rcpts, 1);
    t7.m.body = SMTP_BODY_8BITMIME;
    send_msg(f, c, &t7.m);
    assert_outcome(f, 0, SMTP_RCPT_DELIVERED, 250, "2.0.0");
    close_client(f, &c);
    assert_int_equal(sink_count(s), 1);
    assert_dump(s, "<tricky@test>", tricky_dump, "X-Mail-Args: <s@example.test>\n");
    msg_free(&t);
    msg_free(&t7);
    sink_stop(s);
}

static void test_sink_8bitmime_dsn(void **state)
{
    static const unsigned notify[] = {SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE, SMTP_NOTIFY_NEVER};
    static const char *const orcpt[] = {"rfc822;a+x=y@example.test", NULL};
    struct fixture *f = *state;
    struct smtp_client_config cfg = default_config();
    struct sink *s = &f->sink;
    struct smtp_client *c;
    struct test_msg t;

    c = sink_open(f, NULL, &cfg);
    msg_init(&t, eight, sizeof(eight) - 1, two_rcpts, 2);
    t.m.body = SMTP_BODY_8BITMIME;
    t.m.ret = SMTP_RET_HDRS;
    t.m.envid = "id+1=x";
    t.m.notify = notify;
    t.m.orcpt = orcpt;
    send_msg(f, c, &t.m);
    assert_outcome(f, 0, SMTP_RCPT_DELIVERED, 250, "2.0.0");
    close_client(f, &c);
    assert_dump(s, "<eight@test>", "Message-ID: <eight@test>\n\ncaf\xc3\xa9\n\n",
                "X-Mail-Args: <s@example.test> BODY=8BITMIME RET=HDRS ENVID=id+2B1+3Dx\n"
                "X-Rcpt-Args: <a@example.test> NOTIFY=SUCCESS,FAILURE "
                "ORCPT=rfc822;a+2Bx+3Dy@example.test\n"
                "X-Rcpt-Args: <b@example.test> NOTIFY=NEVER\n");
    msg_free(&t);
    sink_stop(s);
}

/* RFC 6531: smtp-sink offers no SMTPUTF8. A UTF-8 recipient is bounced,
 * the ASCII one goes without SMTPUTF8 when the content is ASCII; 8-bit
 * content of an SMTPUTF8 message bounces everyone; so does a UTF-8 sender. */
static void test_sink_smtputf8(void **state)
{
    static const char *const rcpts[] = {"j\xc3\xb6rg@example.test", "a@example.test"};
    static const char utf8[] = "Message-ID: <utf8@test>\r\nSubject: \xc3\xa4\r\n\r\nx\r\n";
    struct fixture *f = *state;
    struct smtp_client_config cfg = default_config();
    struct sink *s = &f->sink;
    struct smtp_client *c;
    struct test_msg t, t8;

    c = sink_open(f, NULL, &cfg);
    msg_init(&t, tricky, strlen(tricky), rcpts, 2);
    t.m.smtputf8 = true;
    send_msg(f, c, &t.m);
    assert_outcome(f, 0, SMTP_RCPT_BOUNCED, 553, "5.6.7");
    assert_non_null(strstr(f->status[0].text, "SMTPUTF8 not supported by the next hop"));
    assert_outcome(f, 1, SMTP_RCPT_DELIVERED, 250, "2.0.0");
    msg_init(&t8, utf8, sizeof(utf8) - 1, rcpts + 1, 1);
    t8.m.smtputf8 = true;
    send_msg(f, c, &t8.m);
    assert_outcome(f, 0, SMTP_RCPT_BOUNCED, 553, "5.6.7");
    t8.m.smtputf8 = false; /* 8-bit but not SMTPUTF8: goes as it is */
    t8.m.sender = "\xc3\xa4@example.test";
    send_msg(f, c, &t8.m);
    assert_outcome(f, 0, SMTP_RCPT_BOUNCED, 553, "5.6.7");
    assert_true(f->usable);
    close_client(f, &c);
    assert_int_equal(sink_count(s), 1);
    assert_dump(s, "<tricky@test>", tricky_dump,
                "X-Mail-Args: <s@example.test>\nX-Rcpt-Args: <a@example.test>\n");
    msg_free(&t);
    msg_free(&t8);
    sink_stop(s);
}

/* ---- header fields added by Postern (spool_envelope.add_headers) ---- */

static const char added[] = "X-Spam-Flag: YES\r\nX-Postern-Score: 7.5 (DNSBL_A=7.5)\r\n"
                            "\tfolded=yes\r\n";
static const char added_dump[] = "X-Spam-Flag: YES\nX-Postern-Score: 7.5 (DNSBL_A=7.5)\n"
                                 "\tfolded=yes\n";

/* They arrive first, before the content (whose own line ends and dots are
 * handled as always), on SMTP and LMTP, on a reused connection too; an
 * empty set changes nothing. */
static void test_sink_add_headers(void **state)
{
    static const char small[] = "Message-ID: <small@test>\r\n\r\nsmall\r\n";
    struct fixture *f = *state;
    struct smtp_client_config cfg = default_config();
    struct sink *s = &f->sink;
    struct smtp_client *c;
    struct test_msg t, t2;
    char *want = malloc(sizeof(added_dump) + strlen(tricky_dump));

    for (int lmtp = 0; lmtp < 2; lmtp++) {
        static const char *const lmtp_opts[] = {"-L", NULL};

        cfg.lmtp = lmtp;
        c = sink_open(f, lmtp ? lmtp_opts : NULL, &cfg);
        msg_init(&t, tricky, strlen(tricky), two_rcpts, 2);
        t.m.add_headers = added;
        send_msg(f, c, &t.m);
        assert_outcomes(f, SMTP_RCPT_DELIVERED, 250, NULL);
        assert_true(f->usable);
        msg_init(&t2, small, sizeof(small) - 1, two_rcpts, 1);
        t2.m.add_headers = "";
        send_msg(f, c, &t2.m);
        assert_outcome(f, 0, SMTP_RCPT_DELIVERED, 250, NULL);
        close_client(f, &c);
        sprintf(want, "%s%s", added_dump, tricky_dump);
        assert_dump(s, "<tricky@test>", want, NULL);
        assert_dump(s, "<small@test>", "Message-ID: <small@test>\n\nsmall\n\n", NULL);
        msg_free(&t);
        msg_free(&t2);
        sink_stop(s);
    }
    free(want);
}

/* A one-connection SMTP server that offers SIZE and keeps the MAIL line
 * and the content (dot-unstuffed, CR LF kept). */
struct size_server {
    int lfd, port;
    pthread_t thread;
    char mail[1100];
    char content[4096];
    size_t content_len;
};

static bool srv_line(int fd, char *buf, size_t size)
{
    size_t n = 0;

    while (n + 1 < size) {
        if (read(fd, buf + n, 1) != 1)
            return false;
        if (buf[n++] == '\n')
            break;
    }
    buf[n] = '\0';
    return true;
}

static void srv_say(int fd, const char *text)
{
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
}

static void *size_server_run(void *arg)
{
    struct size_server *ss = arg;
    int fd = accept(ss->lfd, NULL, NULL);
    char line[1100];

    if (fd < 0)
        return NULL;
    srv_say(fd, "220 size.test ESMTP\r\n");
    while (srv_line(fd, line, sizeof(line))) {
        if (strncmp(line, "EHLO", 4) == 0) {
            srv_say(fd, "250-size.test\r\n250 SIZE 1000000\r\n");
        } else if (strncmp(line, "MAIL", 4) == 0) {
            snprintf(ss->mail, sizeof(ss->mail), "%s", line);
            srv_say(fd, "250 2.1.0 Ok\r\n");
        } else if (strncmp(line, "RCPT", 4) == 0) {
            srv_say(fd, "250 2.1.5 Ok\r\n");
        } else if (strncmp(line, "DATA", 4) == 0) {
            srv_say(fd, "354 go ahead\r\n");
            while (srv_line(fd, line, sizeof(line)) && strcmp(line, ".\r\n") != 0) {
                const char *l = line[0] == '.' ? line + 1 : line;
                size_t n = strlen(l);

                if (ss->content_len + n < sizeof(ss->content)) {
                    memcpy(ss->content + ss->content_len, l, n);
                    ss->content_len += n;
                }
            }
            srv_say(fd, "250 2.0.0 Ok: queued\r\n");
        } else {
            srv_say(fd, "221 2.0.0 Bye\r\n");
            break;
        }
    }
    close(fd);
    return NULL;
}

/* SIZE= is the content and the added lines together, which is exactly what
 * goes on the wire for CR LF content without leading dots. */
static void test_add_headers_size(void **state)
{
    static const char body[] = "Subject: sized\r\n\r\nbody\r\n";
    struct fixture *f = *state;
    struct smtp_client_config cfg = default_config();
    struct sockaddr_in sin = {.sin_family = AF_INET};
    socklen_t slen = sizeof(sin);
    struct size_server ss = {.content_len = 0};
    struct smtp_client *c;
    struct test_msg t;
    char want[256];

    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ss.lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(ss.lfd >= 0);
    assert_int_equal(bind(ss.lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(listen(ss.lfd, 1), 0);
    assert_int_equal(getsockname(ss.lfd, (struct sockaddr *)&sin, &slen), 0);
    ss.port = ntohs(sin.sin_port);
    assert_int_equal(pthread_create(&ss.thread, NULL, size_server_run, &ss), 0);

    c = open_client(f, ss.port, &cfg);
    assert_non_null(c);
    assert_true(smtp_client_has_ext(c, "SIZE"));
    msg_init(&t, body, sizeof(body) - 1, two_rcpts, 1);
    t.m.add_headers = added;
    send_msg(f, c, &t.m);
    assert_outcome(f, 0, SMTP_RCPT_DELIVERED, 250, "2.0.0");
    close_client(f, &c);
    pthread_join(ss.thread, NULL);
    close(ss.lfd);
    snprintf(want, sizeof(want), "MAIL FROM:<s@example.test> SIZE=%zu\r\n",
             sizeof(body) - 1 + sizeof(added) - 1);
    assert_string_equal(ss.mail, want);
    assert_int_equal(ss.content_len, sizeof(body) - 1 + sizeof(added) - 1);
    assert_memory_equal(ss.content, added, sizeof(added) - 1);
    assert_memory_equal(ss.content + sizeof(added) - 1, body, sizeof(body) - 1);
    msg_free(&t);
}

/* A DSN that returns the content returns it as it was delivered: with the
 * added fields first (in full, and in the header section only), and the
 * fields count toward the return limit. (relay/dsn.c; here because it is
 * the other writer of add_headers.) */
static void test_dsn_add_headers(void **state)
{
    static const char body[] = "Subject: Hello\r\n\r\nbody line\r\n";
    static const struct smtp_status st = {.code = 550, .enhanced = "5.1.1", .text = "no"};
    const struct dsn_rcpt r = {.addr = "a@example.test", .status = &st};
    struct test_msg t;
    struct dsn_input in = {
        .action = DSN_ACTION_FAILED, .reporting_mta = "mx.test", .queue_id = "QID",
        .sender = "s@example.test", .rcpts = &r, .rcpt_count = 1,
        .return_limit = 1024 * 1024, .add_headers = added,
    };
    char error[256], full[512];
    struct evbuffer *out;
    char *text;

    (void)state;
    msg_init(&t, body, sizeof(body) - 1, two_rcpts, 1);
    in.content_fd = t.m.fd;
    in.content_offset = t.m.offset;
    in.content_length = t.m.length;
    snprintf(full, sizeof(full), "%s%s", added, body);
    for (int round = 0; round < 3; round++) {
        /* 0: full; 1: RET=HDRS; 2: over the limit only with the added lines */
        in.ret = round == 1 ? SMTP_RET_HDRS : SMTP_RET_UNSPEC;
        in.return_limit = round == 2 ? sizeof(body) - 1 : 1024 * 1024;
        out = evbuffer_new();
        assert_int_equal(dsn_build(&in, out, error, sizeof(error)), 0);
        evbuffer_add(out, "", 1);
        text = (char *)evbuffer_pullup(out, -1);
        if (round == 0) {
            assert_non_null(strstr(text, "Content-Type: message/rfc822"));
            assert_non_null(strstr(text, full));
        } else {
            assert_non_null(strstr(text, "Content-Type: text/rfc822-headers"));
            snprintf(full, sizeof(full), "\r\n\r\n%sSubject: Hello\r\n\r\n--", added);
            assert_non_null(strstr(text, full));
            assert_null(strstr(text, "body line"));
        }
        evbuffer_free(out);
    }
    msg_free(&t);
}

static void test_dot_writer(void **state)
{
    static const struct {
        const char *in, *out;
    } rows[] = {
        {"", ".\r\n"},
        {"a", "a\r\n.\r\n"},
        {"a\r\n", "a\r\n.\r\n"},
        {".", "..\r\n.\r\n"},
        {".\r\n", "..\r\n.\r\n"},
        {"a\n.b\rc\r\r\n..\n", "a\r\n..b\r\nc\r\n\r\n...\r\n.\r\n"},
        {"\r", "\r\n.\r\n"},
        {"\n\n", "\r\n\r\n.\r\n"},
        {"x.y\r\n", "x.y\r\n.\r\n"},
    };
    unsigned char out[64];

    (void)state;
    for (size_t i = 0; i < N_ELEMENTS(rows); i++) {
        size_t len = strlen(rows[i].in);
        /* whole, and one octet at a time (chunk boundaries anywhere) */
        for (int bytewise = 0; bytewise < 2; bytewise++) {
            struct dot_writer w = {.mid_line = false};
            size_t n = 0;

            if (!bytewise)
                n = dot_writer_put(&w, (const unsigned char *)rows[i].in, len, out);
            for (size_t j = 0; bytewise && j < len; j++)
                n += dot_writer_put(&w, (const unsigned char *)rows[i].in + j, 1, out + n);
            n += dot_writer_end(&w, out + n);
            out[n] = '\0';
            if (strcmp((char *)out, rows[i].out) != 0)
                fail_msg("row %zu%s: \"%s\"", i, bytewise ? " bytewise" : "", (char *)out);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dot_writer),
        cmocka_unit_test_setup_teardown(test_sink_pipelining, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sink_tricky, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sink_reuse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sink_421_greeting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sink_8bitmime, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sink_8bitmime_dsn, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sink_smtputf8, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sink_add_headers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_add_headers_size, setup, teardown),
        cmocka_unit_test(test_dsn_add_headers),
    };

    if (access(SINK_PATH, X_OK) != 0) {
        fprintf(stderr, "skipped: %s not installed (Debian package postfix)\n", SINK_PATH);
        return 77;
    }
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test-smtp-client — relay/smtp-client*.c against real servers: Postfix's
 * smtp-sink (started here on a free loopback port, with -d to dump each
 * transaction so the test can read what arrived) for delivery, pipelining
 * or not, connection reuse, dot-stuffing and line ends, per-command 4xx and
 * 5xx, disconnects, a 421 greeting, LMTP, HELO fallback and the 8BITMIME /
 * SMTPUTF8 refusals. What smtp-sink cannot do (a mix of replies per
 * recipient, LMTP replies per recipient, STARTTLS, AUTH, malformed
 * replies, a server that stops answering) is played by a small scripted
 * server thread: fault injection only, it checks each line it gets.
 *
 * Exits 77 (skipped) when /usr/sbin/smtp-sink is not installed.
 */
#include "config.h"
#include "relay/smtp-client-private.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "lib/smtp-params.h"

#define SINK_PATH "/usr/sbin/smtp-sink"
#define MAX_RCPTS 8
#define N_ELEMENTS(a) (sizeof(a) / sizeof((a)[0]))

/* ---- the event loop and the client's callbacks ---- */

struct sink {
    pid_t pid;
    int port;
    char dir[64];
};

struct fixture {
    struct sink sink; /* stopped by teardown if a test fails */
    struct event_base *base;
    struct event *guard;
    bool done, timed_out;
    struct smtp_status ready;
    size_t n;
    enum smtp_rcpt_outcome outcome[MAX_RCPTS];
    struct smtp_status status[MAX_RCPTS];
    bool usable;
};

static void on_guard(evutil_socket_t fd, short what, void *arg)
{
    struct fixture *f = arg;

    (void)fd;
    (void)what;
    f->timed_out = true;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    if (f == NULL || (f->base = event_base_new()) == NULL)
        return -1;
    f->guard = evtimer_new(f->base, on_guard, f);
    *state = f;
    return f->guard == NULL ? -1 : 0;
}

static void sink_stop(struct sink *s);

static int teardown(void **state)
{
    struct fixture *f = *state;

    if (f->sink.pid > 0)
        sink_stop(&f->sink);
    event_free(f->guard);
    event_base_free(f->base);
    free(f);
    return 0;
}

static void on_ready(void *ctx, struct smtp_client *c, const struct smtp_status *st)
{
    struct fixture *f = ctx;

    (void)c;
    f->ready = *st;
    f->done = true;
}

static void on_sent(void *ctx, struct smtp_client *c, const struct smtp_client_result *res)
{
    struct fixture *f = ctx;

    (void)c;
    assert_true(res->rcpt_count <= MAX_RCPTS);
    f->n = res->rcpt_count;
    for (size_t i = 0; i < res->rcpt_count; i++) {
        f->outcome[i] = res->outcome[i];
        f->status[i] = res->status[i];
        assert_true(res->status[i].code >= 200 && res->status[i].code <= 599);
        assert_true(res->status[i].enhanced[0] != '\0');
    }
    f->usable = res->connection_usable;
    f->done = true;
}

/* Runs the loop until a callback came (at most 20 s). */
static void run_loop(struct fixture *f)
{
    struct timeval tv = {20, 0};

    f->done = false;
    f->timed_out = false;
    evtimer_add(f->guard, &tv);
    while (!f->done && !f->timed_out)
        event_base_loop(f->base, EVLOOP_ONCE);
    evtimer_del(f->guard);
    assert_false(f->timed_out);
}

static struct smtp_client_config default_config(void)
{
    struct smtp_client_config cfg = {
        .tls = SMTP_CLIENT_TLS_NONE,
        .helo_name = "client.test",
        .connect_timeout_ms = 5000,
        .command_timeout_ms = 5000,
        .data_timeout_ms = 10000,
    };
    return cfg;
}

/* Connects; returns the ready client, or NULL with f->ready saying why. */
static struct smtp_client *open_client(struct fixture *f, int port,
                                       const struct smtp_client_config *cfg)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    struct smtp_client *c;

    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    memset(&f->ready, 0xff, sizeof(f->ready));
    f->done = false;
    c = smtp_client_connect(f->base, (struct sockaddr *)&sin, sizeof(sin), "mx.example.test", cfg,
                            on_ready, f);
    assert_non_null(c);
    assert_false(f->done); /* never called back inside the call */
    run_loop(f);
    return f->ready.code == 0 ? c : NULL;
}

static void send_msg(struct fixture *f, struct smtp_client *c, const struct smtp_client_msg *m)
{
    f->n = 0;
    f->done = false;
    smtp_client_send(c, m, on_sent, f);
    assert_false(f->done);
    run_loop(f);
    assert_int_equal(f->n, m->rcpt_count);
}

/* Closes and lets the QUIT finish: the loop runs until nothing is left. */
static void close_client(struct fixture *f, struct smtp_client **c)
{
    smtp_client_close(c);
    assert_null(*c);
    event_base_dispatch(f->base);
}

static void assert_outcome(const struct fixture *f, size_t i, enum smtp_rcpt_outcome o,
                           unsigned code, const char *enhanced)
{
    if (f->outcome[i] != o || f->status[i].code != code ||
        (enhanced != NULL && strcmp(f->status[i].enhanced, enhanced) != 0))
        fail_msg("rcpt %zu: outcome %d status %u %s %s; expected %d %u %s", i, f->outcome[i],
                 f->status[i].code, f->status[i].enhanced, f->status[i].text, o, code,
                 enhanced != NULL ? enhanced : "");
}

/* ---- messages in a spool-like file ---- */

struct test_msg {
    char path[64];
    struct smtp_client_msg m;
};

/* The content lies between junk on both sides, as in a spool file. */
static void msg_init(struct test_msg *t, const char *content, size_t len, const char *const *rcpts,
                     size_t n)
{
    static const char junk[] = "JUNK-BEFORE-CONTENT\n.\r\n";
    int fd;

    snprintf(t->path, sizeof(t->path), "/tmp/test-smtp-client.XXXXXX");
    fd = mkstemp(t->path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, junk, sizeof(junk) - 1), sizeof(junk) - 1);
    assert_int_equal(write(fd, content, len), (ssize_t)len);
    assert_int_equal(write(fd, junk, sizeof(junk) - 1), sizeof(junk) - 1);
    t->m = (struct smtp_client_msg){
        .queue_id = "TESTQID",
        .sender = "s@example.test",
        .rcpt_count = n,
        .rcpts = rcpts,
        .fd = fd,
        .offset = sizeof(junk) - 1,
        .length = len,
    };
}

static void msg_free(struct test_msg *t)
{
    close(t->m.fd);
    unlink(t->path);
}

/* ---- smtp-sink ---- */

static int free_port(void)
{
    struct sockaddr_in sin = {.sin_family = AF_INET};
    socklen_t len = sizeof(sin);
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    close(fd);
    return ntohs(sin.sin_port);
}

static bool port_open(int port)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    bool ok;

    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok = fd >= 0 && connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

static void sink_exec(const struct sink *s, const char *const *opts)
{
    char tmpl[128], addr[32];
    const char *argv[32];
    size_t n = 0;
    int devnull = open("/dev/null", O_WRONLY);

    snprintf(tmpl, sizeof(tmpl), "%s/%%M.", s->dir);
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", s->port);
    argv[n++] = SINK_PATH;
    if (geteuid() == 0) {
        argv[n++] = "-u";
        argv[n++] = "nobody";
    }
    for (size_t i = 0; opts != NULL && opts[i] != NULL && n < N_ELEMENTS(argv) - 5; i++)
        argv[n++] = opts[i];
    argv[n++] = "-d";
    argv[n++] = tmpl;
    argv[n++] = addr;
    argv[n++] = "20";
    argv[n] = NULL;
    if (devnull >= 0)
        dup2(devnull, STDOUT_FILENO);
    execv(SINK_PATH, (char *const *)argv);
    _exit(127);
}

/* Starts smtp-sink with opts (NULL-terminated) and waits until it listens. */
static void sink_start(struct sink *s, const char *const *opts)
{
    snprintf(s->dir, sizeof(s->dir), "/tmp/test-smtp-sink.XXXXXX");
    assert_non_null(mkdtemp(s->dir));
    assert_int_equal(chmod(s->dir, 0777), 0); /* smtp-sink writes as nobody */
    s->port = free_port();
    s->pid = fork();
    assert_true(s->pid >= 0);
    if (s->pid == 0)
        sink_exec(s, opts);
    for (int i = 0; i < 250 && !port_open(s->port); i++) {
        assert_int_equal(waitpid(s->pid, NULL, WNOHANG), 0); /* still running */
        usleep(20000);
    }
    assert_true(port_open(s->port));
}

static void sink_stop(struct sink *s)
{
    DIR *d = opendir(s->dir);
    struct dirent *de;
    char path[512];

    kill(s->pid, SIGTERM);
    waitpid(s->pid, NULL, 0);
    s->pid = 0;
    while (d != NULL && (de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s", s->dir, de->d_name);
        unlink(path);
    }
    if (d != NULL)
        closedir(d);
    rmdir(s->dir);
}

static char *read_file(const char *path)
{
    FILE *fp = fopen(path, "rb");
    char *buf = NULL;
    size_t len = 0, cap = 0, n;

    if (fp == NULL)
        return NULL;
    do {
        if (cap - len < 65536) {
            cap = cap * 2 + 65536;
            char *bigger = realloc(buf, cap + 1);

            assert_non_null(bigger);
            buf = bigger;
        }
        n = fread(buf + len, 1, cap - len, fp);
        len += n;
    } while (n > 0);
    fclose(fp);
    buf[len] = '\0';
    return buf;
}

/* The dump that contains marker (malloc'd), NULL when none; *count gets
 * the number of dumps. */
static char *sink_find(const struct sink *s, const char *marker, size_t *count)
{
    DIR *d = opendir(s->dir);
    struct dirent *de;
    char path[512], *found = NULL;

    *count = 0;
    assert_non_null(d);
    while ((de = readdir(d)) != NULL) {
        char *text;

        if (de->d_name[0] == '.')
            continue;
        (*count)++;
        snprintf(path, sizeof(path), "%s/%s", s->dir, de->d_name);
        text = read_file(path);
        if (text != NULL && found == NULL && marker != NULL && strstr(text, marker) != NULL)
            found = text;
        else
            free(text);
    }
    closedir(d);
    return found;
}

static size_t sink_count(const struct sink *s)
{
    size_t count;

    free(sink_find(s, NULL, &count));
    return count;
}

/* The content smtp-sink received: what follows its three-line Received:
 * header; it writes each line with LF and one empty line after. */
static const char *dump_body(const char *dump)
{
    const char *p = strstr(dump, "\nReceived: ");

    assert_non_null(p);
    for (int i = 0; i < 3 && p != NULL; i++)
        p = strchr(p + 1, '\n');
    assert_non_null(p);
    return p + 1;
}

static void assert_dump(const struct sink *s, const char *marker, const char *body,
                        const char *mail_args)
{
    size_t count;
    char *dump = sink_find(s, marker, &count);

    if (dump == NULL)
        fail_msg("no dump with \"%s\" (%zu dumps)", marker, count);
    if (strcmp(dump_body(dump), body) != 0)
        fail_msg("dump body:\n[%s]\nexpected:\n[%s]", dump_body(dump), body);
    if (mail_args != NULL && strstr(dump, mail_args) == NULL)
        fail_msg("no \"%s\" in the dump:\n%s", mail_args, dump);
    free(dump);
}

/* ---- tests against smtp-sink ---- */

static const char *const two_rcpts[] = {"a@example.test", "b@example.test"};

/* Dot-stuffing and line ends: a lone ".", "..x", bare LF, bare CR. */
static const char tricky[] = "Message-ID: <tricky@test>\r\nSubject: dots\r\n\r\n"
                             ".\r\n..x\r\n.leading\nbare LF line\nbare CR\rline\r\n";
static const char tricky_dump[] = "Message-ID: <tricky@test>\nSubject: dots\n\n"
                                  ".\n..x\n.leading\nbare LF line\nbare CR\nline\n\n";

static void deliver_tricky(struct fixture *f, const char *const *opts)
{
    struct smtp_client_config cfg = default_config();
    struct smtp_client *c;
    struct sink *s = &f->sink;
    struct test_msg t;

    sink_start(s, opts);
    c = open_client(f, s->port, &cfg);
    assert_non_null(c);
    assert_true(smtp_client_has_ext(c, "8BITMIME"));
    assert_false(smtp_client_has_ext(c, "SMTPUTF8"));
    msg_init(&t, tricky, sizeof(tricky) - 1, two_rcpts, 2);
    send_msg(f, c, &t.m);
    assert_outcome(f, 0, SMTP_RCPT_DELIVERED, 250, "2.0.0");
    assert_outcome(f, 1, SMTP_RCPT_DELIVERED, 250, "2.0.0");
    assert_true(f->usable);
    close_client(f, &c);
    assert_dump(s, "<tricky@test>", tricky_dump, "X-Mail-Args: <s@example.test>\n");
    msg_free(&t);
    sink_stop(s);
}

/* Commands are small writes: Nagle must be off. */
static bool tcp_nodelay(const struct smtp_client *c)
{
    int on = 0;
    socklen_t len = sizeof(on);

    assert_int_equal(getsockopt(bufferevent_getfd(c->bev), IPPROTO_TCP, TCP_NODELAY, &on, &len), 0);
    return on != 0;
}

static void test_sink_pipelining(void **state)
{
    struct fixture *f = *state;
    struct sink *s = &f->sink;
    struct smtp_client_config cfg = default_config();
    struct smtp_client *c;

    sink_start(s, NULL);
    c = open_client(f, s->port, &cfg);
    assert_true(smtp_client_has_ext(c, "PIPELINING"));
    assert_true(smtp_client_has_ext(c, "pipelining"));
    assert_true(smtp_client_has_ext(c, "AUTH"));
    assert_false(smtp_client_has_ext(c, "PIPE"));
    assert_true(tcp_nodelay(c));
    close_client(f, &c);
    sink_stop(s);
    deliver_tricky(f, NULL);
}

static void test_sink_no_pipelining(void **state)
{
    static const char *const opts[] = {"-p", NULL};

    deliver_tricky(*state, opts);
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

    sink_start(s, NULL);
    c = open_client(f, s->port, &cfg);
    assert_non_null(c);
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

/* Every RCPT refused (5xx, then 4xx): no DATA, RSET, the connection takes
 * the next message. */
static void rcpt_refused(struct fixture *f, const char *opt, enum smtp_rcpt_outcome o,
                         unsigned code)
{
    const char *const opts[] = {opt, "rcpt", NULL};
    struct smtp_client_config cfg = default_config();
    struct sink *s = &f->sink;
    struct smtp_client *c;
    struct test_msg t;

    sink_start(s, opts);
    c = open_client(f, s->port, &cfg);
    assert_non_null(c);
    msg_init(&t, tricky, sizeof(tricky) - 1, two_rcpts, 2);
    for (int round = 0; round < 2; round++) {
        send_msg(f, c, &t.m);
        assert_outcome(f, 0, o, code, NULL);
        assert_outcome(f, 1, o, code, NULL);
        assert_true(f->usable);
    }
    close_client(f, &c);
    assert_int_equal(sink_count(s), 0);
    msg_free(&t);
    sink_stop(s);
}

static void test_sink_rcpt_5xx(void **state)
{
    rcpt_refused(*state, "-f", SMTP_RCPT_BOUNCED, 500);
}

static void test_sink_rcpt_4xx(void **state)
{
    rcpt_refused(*state, "-r", SMTP_RCPT_DEFERRED, 450);
}

/* The server hangs up after the final dot, without a reply: deferred (it
 * may have been delivered: at-least-once), the connection is gone. */
static void test_sink_disconnect_after_dot(void **state)
{
    static const char *const opts[] = {"-q", ".", NULL};
    struct fixture *f = *state;
    struct smtp_client_config cfg = default_config();
    struct sink *s = &f->sink;
    struct smtp_client *c;
    struct test_msg t;

    sink_start(s, opts);
    c = open_client(f, s->port, &cfg);
    assert_non_null(c);
    msg_init(&t, tricky, sizeof(tricky) - 1, two_rcpts, 2);
    send_msg(f, c, &t.m);
    assert_outcome(f, 0, SMTP_RCPT_DEFERRED, 451, "4.4.2");
    assert_outcome(f, 1, SMTP_RCPT_DEFERRED, 451, "4.4.2");
    assert_false(f->usable);
    send_msg(f, c, &t.m); /* a broken connection defers at once */
    assert_outcome(f, 0, SMTP_RCPT_DEFERRED, 451, "4.4.2");
    assert_false(f->usable);
    close_client(f, &c);
    msg_free(&t);
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

static void test_sink_lmtp(void **state)
{
    static const char *const opts[] = {"-L", NULL};
    struct fixture *f = *state;
    struct smtp_client_config cfg = default_config();
    struct sink *s = &f->sink;
    struct smtp_client *c;
    struct test_msg t;

    cfg.lmtp = true;
    sink_start(s, opts);
    c = open_client(f, s->port, &cfg);
    assert_non_null(c);
    msg_init(&t, tricky, sizeof(tricky) - 1, two_rcpts, 2);
    send_msg(f, c, &t.m);
    assert_outcome(f, 0, SMTP_RCPT_DELIVERED, 250, "2.2.0");
    assert_outcome(f, 1, SMTP_RCPT_DELIVERED, 250, "2.2.0");
    assert_true(f->usable);
    close_client(f, &c);
    assert_dump(s, "<tricky@test>", tricky_dump, "X-Client-Proto: LMTP\n");
    msg_free(&t);
    sink_stop(s);
}

/* EHLO refused: HELO, no extensions, so BODY=8BITMIME is left out of a
 * message that is 7-bit after all. */
static void test_sink_helo_fallback(void **state)
{
    static const char *const opts[] = {"-e", NULL};
    struct fixture *f = *state;
    struct smtp_client_config cfg = default_config();
    struct sink *s = &f->sink;
    struct smtp_client *c;
    struct test_msg t;

    sink_start(s, opts);
    c = open_client(f, s->port, &cfg);
    assert_non_null(c);
    assert_false(smtp_client_has_ext(c, "PIPELINING"));
    msg_init(&t, tricky, sizeof(tricky) - 1, two_rcpts, 2);
    t.m.body = SMTP_BODY_8BITMIME;
    send_msg(f, c, &t.m);
    assert_outcome(f, 0, SMTP_RCPT_DELIVERED, 250, "2.0.0");
    close_client(f, &c);
    assert_dump(s, "<tricky@test>", tricky_dump,
                "X-Client-Proto: SMTP\nX-Helo-Args: client.test\nX-Mail-Args: <s@example.test>\n");
    msg_free(&t);
    sink_stop(s);
}

/* RFC 6152: 8-bit content to a server without 8BITMIME is bounced here,
 * nothing sent; 7-bit content declared 8BITMIME goes without BODY=. With
 * 8BITMIME offered, BODY=8BITMIME and the DSN parameters go along. */
static void test_sink_8bitmime(void **state)
{
    static const char *const opts[] = {"-8", NULL};
    static const char eight[] = "Message-ID: <eight@test>\r\n\r\ncaf\xc3\xa9\r\n";
    struct fixture *f = *state;
    struct smtp_client_config cfg = default_config();
    struct sink *s = &f->sink;
    struct smtp_client *c;
    struct test_msg t, t7;

    sink_start(s, opts);
    c = open_client(f, s->port, &cfg);
    assert_non_null(c);
    assert_false(smtp_client_has_ext(c, "8BITMIME"));
    msg_init(&t, eight, sizeof(eight) - 1, two_rcpts, 2);
    t.m.body = SMTP_BODY_8BITMIME;
    send_msg(f, c, &t.m);
    assert_outcome(f, 0, SMTP_RCPT_BOUNCED, 554, "5.6.3");
    assert_outcome(f, 1, SMTP_RCPT_BOUNCED, 554, "5.6.3");
    assert_true(f->usable);
    msg_init(&t7, tricky, sizeof(tricky) - 1, two_rcpts, 1);
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
    static const char eight[] = "Message-ID: <eight@test>\r\n\r\ncaf\xc3\xa9\r\n";
    static const unsigned notify[] = {SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE, SMTP_NOTIFY_NEVER};
    static const char *const orcpt[] = {"rfc822;a+x=y@example.test", NULL};
    struct fixture *f = *state;
    struct smtp_client_config cfg = default_config();
    struct sink *s = &f->sink;
    struct smtp_client *c;
    struct test_msg t;

    sink_start(s, NULL);
    c = open_client(f, s->port, &cfg);
    assert_non_null(c);
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

    sink_start(s, NULL);
    c = open_client(f, s->port, &cfg);
    assert_non_null(c);
    msg_init(&t, tricky, sizeof(tricky) - 1, rcpts, 2);
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

#define EHLO_PIPELINING "250-script\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES\r\n"

/* ---- scripted tests ---- */

/* One RCPT accepted, one 5xx, one 4xx, one accepted; all in one write. */
static void test_script_rcpt_mix(void **state)
{
    static const struct step steps[] = {
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
    static const char *const rcpts[] = {"a@example.test", "b@example.test", "c@example.test",
                                        "d@example.test"};
    static const char content[] = "Subject: mix\n\n.dot\n";
    struct fixture *f = *state;
    struct smtp_client_config cfg = default_config();
    struct script s;
    struct smtp_client *c;
    struct test_msg t;

    script_start(&s, steps, NULL);
    c = open_client(f, s.port, &cfg);
    assert_non_null(c);
    msg_init(&t, content, sizeof(content) - 1, rcpts, 4);
    send_msg(f, c, &t.m);
    assert_outcome(f, 0, SMTP_RCPT_DELIVERED, 250, "2.0.0");
    assert_outcome(f, 1, SMTP_RCPT_BOUNCED, 550, "5.1.1");
    assert_outcome(f, 2, SMTP_RCPT_DEFERRED, 451, "4.3.0");
    assert_outcome(f, 3, SMTP_RCPT_DELIVERED, 250, "2.0.0");
    assert_true(f->usable);
    close_client(f, &c);
    script_ok(&s, N_ELEMENTS(steps) - 1);
    assert_string_equal(s.content, "Subject: mix\r\n\r\n..dot\r\n");
    msg_free(&t);
}

/* A server that answers DATA with 354 though every RCPT failed: the empty
 * message is ended, then RSET. */
static void test_script_354_without_rcpt(void **state)
{
    static const struct step steps[] = {
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
    struct fixture *f = *state;
    struct smtp_client_config cfg = default_config();
    struct script s;
    struct smtp_client *c;
    struct test_msg t;

    script_start(&s, steps, NULL);
    c = open_client(f, s.port, &cfg);
    assert_non_null(c);
    msg_init(&t, tricky, sizeof(tricky) - 1, two_rcpts, 2);
    send_msg(f, c, &t.m);
    assert_outcome(f, 0, SMTP_RCPT_BOUNCED, 550, "5.1.1");
    assert_outcome(f, 1, SMTP_RCPT_BOUNCED, 550, "5.1.1");
    assert_true(f->usable);
    close_client(f, &c);
    script_ok(&s, N_ELEMENTS(steps) - 1);
    assert_int_equal(s.content_len, 0);
    msg_free(&t);
}

/* LMTP: one final reply per accepted recipient, in order. */
static void test_script_lmtp_mix(void **state)
{
    static const struct step steps[] = {
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
    static const char *const rcpts[] = {"a@example.test", "b@example.test", "c@example.test"};
    struct fixture *f = *state;
    struct smtp_client_config cfg = default_config();
    struct script s;
    struct smtp_client *c;
    struct test_msg t;

    cfg.lmtp = true;
    script_start(&s, steps, NULL);
    c = open_client(f, s.port, &cfg);
    assert_non_null(c);
    msg_init(&t, tricky, sizeof(tricky) - 1, rcpts, 3);
    send_msg(f, c, &t.m);
    assert_outcome(f, 0, SMTP_RCPT_DELIVERED, 250, "2.0.0");
    assert_outcome(f, 1, SMTP_RCPT_BOUNCED, 550, "5.1.1");
    assert_outcome(f, 2, SMTP_RCPT_DEFERRED, 452, "4.2.2");
    assert_true(f->usable);
    close_client(f, &c);
    script_ok(&s, N_ELEMENTS(steps) - 1);
    msg_free(&t);
}

/* 421 in the middle of the pipelined RCPTs: everyone open is deferred
 * with it, and the connection is done. */
static void test_script_421_rcpt(void **state)
{
    static const struct step steps[] = {
        {NULL, "220 script ESMTP\r\n", 0},
        {"EHLO client.test", EHLO_PIPELINING, 0},
        {"MAIL FROM:<s@example.test>", "250 2.1.0 Ok\r\n", 0},
        {"RCPT TO:<a@example.test>", "250 2.1.5 Ok\r\n", 0},
        {"RCPT TO:<b@example.test>", "421 4.3.2 shutting down\r\n", STEP_CLOSE},
        {NULL, NULL, 0},
    };
    struct fixture *f = *state;
    struct smtp_client_config cfg = default_config();
    struct script s;
    struct smtp_client *c;
    struct test_msg t;

    script_start(&s, steps, NULL);
    c = open_client(f, s.port, &cfg);
    assert_non_null(c);
    msg_init(&t, tricky, sizeof(tricky) - 1, two_rcpts, 2);
    send_msg(f, c, &t.m);
    assert_outcome(f, 0, SMTP_RCPT_DEFERRED, 421, "4.3.2");
    assert_outcome(f, 1, SMTP_RCPT_DEFERRED, 421, "4.3.2");
    assert_false(f->usable);
    close_client(f, &c);
    script_join(&s);
    msg_free(&t);
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

static void test_script_malformed(void **state)
{
    static const struct step greeting[] = {
        {NULL, "2x0 script ESMTP\r\n", STEP_HANG},
        {NULL, NULL, 0},
    };
    static const struct step ehlo[] = {
        {NULL, "220 script ESMTP\r\n", 0},
        {"EHLO client.test", "250-script\r\n251 mixed\r\n", STEP_HANG},
        {NULL, NULL, 0},
    };
    struct smtp_client_config cfg = default_config();

    connect_fails(*state, greeting, &cfg, NULL, 451, "4.5.0");
    connect_fails(*state, ehlo, &cfg, NULL, 451, "4.5.0");
}

static void test_script_timeout(void **state)
{
    static const struct step steps[] = {
        {NULL, "220 script ESMTP\r\n", 0},
        {"EHLO client.test", NULL, STEP_HANG},
        {NULL, NULL, 0},
    };
    struct smtp_client_config cfg = default_config();

    cfg.command_timeout_ms = 300;
    connect_fails(*state, steps, &cfg, NULL, 451, "4.4.2");
}

/* The final reply does not come within data_timeout: deferred (the
 * message may have arrived), the connection is given up. */
static void test_script_data_timeout(void **state)
{
    static const struct step steps[] = {
        {NULL, "220 script ESMTP\r\n", 0},
        {"EHLO client.test", EHLO_PIPELINING, 0},
        {"MAIL FROM:<s@example.test>", "250 2.1.0 Ok\r\n", 0},
        {"RCPT TO:<a@example.test>", "250 2.1.5 Ok\r\n", 0},
        {"DATA", "354 go\r\n", 0},
        {NULL, NULL, STEP_CONTENT | STEP_HANG},
        {NULL, NULL, 0},
    };
    struct fixture *f = *state;
    struct smtp_client_config cfg = default_config();
    struct script s;
    struct smtp_client *c;
    struct test_msg t;

    cfg.data_timeout_ms = 300;
    script_start(&s, steps, NULL);
    c = open_client(f, s.port, &cfg);
    assert_non_null(c);
    msg_init(&t, tricky, sizeof(tricky) - 1, two_rcpts, 1);
    send_msg(f, c, &t.m);
    assert_outcome(f, 0, SMTP_RCPT_DEFERRED, 451, "4.4.2");
    assert_non_null(strstr(f->status[0].text, "timed out"));
    assert_false(f->usable);
    close_client(f, &c);
    assert_int_equal(script_join(&s), 5);
    msg_free(&t);
}

/* AUTH PLAIN refused: the connection fails with the server's status. */
static void test_script_auth_refused(void **state)
{
    static const struct step steps[] = {
        {NULL, "220 script ESMTP\r\n", 0},
        {"EHLO client.test", "250-script\r\n250 AUTH LOGIN PLAIN\r\n", 0},
        {"AUTH PLAIN AHVzZXIAc2VjcmV0", "535 5.7.8 Authentication failed\r\n", STEP_HANG},
        {NULL, NULL, 0},
    };
    struct smtp_client_config cfg = default_config();

    cfg.auth_user = "user";
    cfg.auth_pass = "secret";
    cfg.auth_plaintext = true;
    connect_fails(*state, steps, &cfg, NULL, 535, "5.7.8");
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
    msg_init(&t, tricky, sizeof(tricky) - 1, two_rcpts, 1);
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

/* ---- the content writer by itself ---- */

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
        cmocka_unit_test_setup_teardown(test_sink_no_pipelining, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sink_reuse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sink_rcpt_5xx, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sink_rcpt_4xx, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sink_disconnect_after_dot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sink_421_greeting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sink_lmtp, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sink_helo_fallback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sink_8bitmime, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sink_8bitmime_dsn, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sink_smtputf8, setup, teardown),
        cmocka_unit_test_setup_teardown(test_script_rcpt_mix, setup, teardown),
        cmocka_unit_test_setup_teardown(test_script_354_without_rcpt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_script_lmtp_mix, setup, teardown),
        cmocka_unit_test_setup_teardown(test_script_421_rcpt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_script_malformed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_script_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_script_data_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_script_auth_refused, setup, teardown),
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

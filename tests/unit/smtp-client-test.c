/*
 * smtp-client-test — see smtp-client-test.h.
 */
#include "tests/unit/smtp-client-test.h"

const char *const two_rcpts[2] = {"a@example.test", "b@example.test"};

/* Dot-stuffing and line ends: a lone ".", "..x", bare LF, bare CR. */
const char tricky[] = "Message-ID: <tricky@test>\r\nSubject: dots\r\n\r\n"
                      ".\r\n..x\r\n.leading\nbare LF line\nbare CR\rline\r\n";
const char tricky_dump[] = "Message-ID: <tricky@test>\nSubject: dots\n\n"
                           ".\n..x\n.leading\nbare LF line\nbare CR\nline\n\n";

/* ---- the event loop and the client's callbacks ---- */

void on_guard(evutil_socket_t fd, short what, void *arg)
{
    struct fixture *f = arg;

    (void)fd;
    (void)what;
    f->timed_out = true;
}

int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    if (f == NULL || (f->base = event_base_new()) == NULL)
        return -1;
    f->guard = evtimer_new(f->base, on_guard, f);
    *state = f;
    return f->guard == NULL ? -1 : 0;
}


int teardown(void **state)
{
    struct fixture *f = *state;

    if (f->sink.pid > 0)
        sink_stop(&f->sink);
    event_free(f->guard);
    event_base_free(f->base);
    free(f);
    return 0;
}

void on_ready(void *ctx, struct smtp_client *c, const struct smtp_status *st)
{
    struct fixture *f = ctx;

    (void)c;
    f->ready = *st;
    f->done = true;
}

void on_sent(void *ctx, struct smtp_client *c, const struct smtp_client_result *res)
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
void run_loop(struct fixture *f)
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

struct smtp_client_config default_config(void)
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
struct smtp_client *open_client(struct fixture *f, int port,
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

void send_msg(struct fixture *f, struct smtp_client *c, const struct smtp_client_msg *m)
{
    f->n = 0;
    f->done = false;
    smtp_client_send(c, m, on_sent, f);
    assert_false(f->done);
    run_loop(f);
    assert_int_equal(f->n, m->rcpt_count);
}

/* Closes and lets the QUIT finish: the loop runs until nothing is left. */
void close_client(struct fixture *f, struct smtp_client **c)
{
    smtp_client_close(c);
    assert_null(*c);
    event_base_dispatch(f->base);
}

void assert_outcome(const struct fixture *f, size_t i, enum smtp_rcpt_outcome o,
                           unsigned code, const char *enhanced)
{
    if (f->outcome[i] != o || f->status[i].code != code ||
        (enhanced != NULL && strcmp(f->status[i].enhanced, enhanced) != 0))
        fail_msg("rcpt %zu: outcome %d status %u %s %s; expected %d %u %s", i, f->outcome[i],
                 f->status[i].code, f->status[i].enhanced, f->status[i].text, o, code,
                 enhanced != NULL ? enhanced : "");
}

/* ---- messages in a spool-like file ---- */


/* The content lies between junk on both sides, as in a spool file. */
void msg_init(struct test_msg *t, const char *content, size_t len, const char *const *rcpts,
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

void msg_free(struct test_msg *t)
{
    close(t->m.fd);
    unlink(t->path);
}

/* ---- smtp-sink ---- */

int free_port(void)
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

bool port_open(int port)
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

void sink_exec(const struct sink *s, const char *const *opts)
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
void sink_start(struct sink *s, const char *const *opts)
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

void sink_stop(struct sink *s)
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

char *read_file(const char *path)
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
char *sink_find(const struct sink *s, const char *marker, size_t *count)
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

size_t sink_count(const struct sink *s)
{
    size_t count;

    free(sink_find(s, NULL, &count));
    return count;
}

/* The content smtp-sink received: what follows its three-line Received:
 * header; it writes each line with LF and one empty line after. */
const char *dump_body(const char *dump)
{
    const char *p = strstr(dump, "\nReceived: ");

    assert_non_null(p);
    for (int i = 0; i < 3 && p != NULL; i++)
        p = strchr(p + 1, '\n');
    assert_non_null(p);
    return p + 1;
}

void assert_dump(const struct sink *s, const char *marker, const char *body,
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

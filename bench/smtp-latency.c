/*
 * smtp-latency — per-message latency of an SMTP server: S sessions in
 * parallel, each sending its share of M messages one after another, one
 * connection per message (greeting, EHLO, MAIL, RCPT, DATA, the content,
 * QUIT; no pipelining), all on one poll loop so that the client's own cost
 * is the same whatever the server does. Run by bench/chain_latency.py
 * (bench/chain-latency.sh); built on request only (`make
 * bench/smtp-latency`, EXTRA_PROGRAMS in bench/local.mk). Plain C and libc.
 *
 * A message's latency is from connect() to the 250 that answers the end of
 * its content (the server has queued it), on the monotonic clock; the time
 * of each step is kept too (greeting, EHLO, MAIL, RCPT, DATA's 354, the
 * content's 250). Session s binds source address --source + (s % count)
 * (127.0.0.2, 127.0.0.3, ... are local on Linux) and sends to recipient
 * number (message number % count) of --rcpts.
 *
 * Output on stdout, for the script to parse:
 *   sessions=S n=N ok=K fail=F secs=T rate=R p50_us=A p99_us=B mean_us=C
 *   step_p50_us=greet:..,ehlo:..,mail:..,rcpt:..,data:..,dot:..
 *   fail_replies=CODE@STEP:COUNT,...
 * Every message has --timeout seconds; the run has --run-timeout. A reply
 * other than the expected one ends that message (counted as failed, the
 * connection closed) and the session goes on with its next message.
 * Talks only to --host (127.0.0.1 in the benchmark).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#define SL_SESSIONS_MAX 512
#define SL_MESSAGES_MAX 1000000
#define SL_RCPTS_MAX 64
#define SL_BUF 8192
#define SL_FAILS_MAX 16

enum sl_step { ST_GREET, ST_EHLO, ST_MAIL, ST_RCPT, ST_DATA, ST_DOT, ST_QUIT, ST_STEPS };
static const char *const step_names[ST_STEPS] = {"greet", "ehlo", "mail", "rcpt",
                                                 "data",  "dot",  "quit"};
static const int step_code[ST_STEPS] = {220, 250, 250, 250, 354, 250, 221};

struct sl_opts {
    const char *host;
    int port;
    struct in_addr source;
    unsigned source_count;
    unsigned sessions, messages;
    const char *from;
    char *rcpts[SL_RCPTS_MAX];
    unsigned rcpt_count;
    unsigned size;
    unsigned timeout_s, run_timeout_s;
};

struct sl_session {
    int fd;
    unsigned msg; /* the message in progress (global number) */
    enum sl_step step;
    uint64_t start_ns, step_ns;
    char in[SL_BUF];
    size_t in_len;
    const char *out; /* what is left to write */
    size_t out_len;
    char cmd[512];
};

struct sl_fail {
    int code;
    enum sl_step step;
    unsigned count;
};

struct sl {
    struct sl_opts o;
    struct sl_session s[SL_SESSIONS_MAX];
    unsigned next; /* next message to start */
    unsigned finished, ok;
    uint32_t *lat_us; /* per message number; 0 = failed */
    uint32_t *step_us[ST_STEPS];
    char *content;
    size_t content_len;
    struct sl_fail fails[SL_FAILS_MAX];
    size_t fail_count;
};

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint32_t us_since(uint64_t t)
{
    uint64_t us = (now_ns() - t) / 1000;

    return us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

/* The content: headers and text lines up to about size octets, then ".". */
static int make_content(struct sl *sl)
{
    size_t cap = sl->o.size + 512, n;
    char *c = malloc(cap);

    if (c == NULL)
        return -1;
    n = (size_t)snprintf(c, cap,
                         "From: <%s>\r\nTo: <bench@example.test>\r\nSubject: latency bench\r\n"
                         "Message-ID: <bench@client.example>\r\n\r\n",
                         sl->o.from);
    while (n + 80 < sl->o.size)
        n += (size_t)snprintf(c + n, cap - n, "%.76s\r\n",
                              "The quick brown fox jumps over the lazy dog, again and again and "
                              "again and again.");
    n += (size_t)snprintf(c + n, cap - n, ".\r\n");
    sl->content = c;
    sl->content_len = n;
    return 0;
}

static void fail_add(struct sl *sl, int code, enum sl_step step)
{
    for (size_t i = 0; i < sl->fail_count; i++)
        if (sl->fails[i].code == code && sl->fails[i].step == step) {
            sl->fails[i].count++;
            return;
        }
    if (sl->fail_count < SL_FAILS_MAX)
        sl->fails[sl->fail_count++] = (struct sl_fail){code, step, 1};
}

static void session_close(struct sl_session *s)
{
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
}

static int session_connect(struct sl *sl, struct sl_session *s, unsigned idx)
{
    struct sockaddr_in src = {.sin_family = AF_INET}, dst = {.sin_family = AF_INET};
    int one = 1;

    src.sin_addr.s_addr = htonl(ntohl(sl->o.source.s_addr) + idx % sl->o.source_count);
    dst.sin_port = htons((uint16_t)sl->o.port);
    if (inet_pton(AF_INET, sl->o.host, &dst.sin_addr) != 1)
        return -1;
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->fd < 0)
        return -1;
    setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (bind(s->fd, (struct sockaddr *)&src, sizeof(src)) < 0 ||
        (connect(s->fd, (struct sockaddr *)&dst, sizeof(dst)) < 0 && errno != EINPROGRESS)) {
        session_close(s);
        return -1;
    }
    return 0;
}

/* Starts the next message on session s (index idx), if any is left. */
static void session_next(struct sl *sl, struct sl_session *s, unsigned idx)
{
    while (sl->next < sl->o.messages) {
        s->msg = sl->next++;
        s->step = ST_GREET;
        s->in_len = 0;
        s->out_len = 0;
        s->start_ns = s->step_ns = now_ns();
        if (session_connect(sl, s, idx) == 0)
            return;
        fail_add(sl, errno, ST_GREET);
        sl->finished++;
    }
}

static void send_cmd(struct sl *sl, struct sl_session *s)
{
    const char *rcpt = sl->o.rcpts[s->msg % sl->o.rcpt_count];

    switch (s->step) {
    case ST_EHLO:
        snprintf(s->cmd, sizeof(s->cmd), "EHLO client.example\r\n");
        break;
    case ST_MAIL:
        snprintf(s->cmd, sizeof(s->cmd), "MAIL FROM:<%s>\r\n", sl->o.from);
        break;
    case ST_RCPT:
        snprintf(s->cmd, sizeof(s->cmd), "RCPT TO:<%s>\r\n", rcpt);
        break;
    case ST_DATA:
        snprintf(s->cmd, sizeof(s->cmd), "DATA\r\n");
        break;
    case ST_DOT:
        s->out = sl->content;
        s->out_len = sl->content_len;
        return;
    case ST_QUIT:
        snprintf(s->cmd, sizeof(s->cmd), "QUIT\r\n");
        break;
    default:
        return;
    }
    s->out = s->cmd;
    s->out_len = strlen(s->cmd);
}

/* The message of s ended (ok or not): counts it and starts the next. */
static void message_end(struct sl *sl, struct sl_session *s, unsigned idx)
{
    session_close(s);
    sl->finished++;
    session_next(sl, s, idx);
}

/* A complete reply (last line "NNN ") is in s->in: returns its code, 0 when
 * more is needed, -1 when it is not a reply. */
static int reply_code(struct sl_session *s)
{
    size_t start = 0;

    for (size_t i = 0; i < s->in_len; i++) {
        if (s->in[i] != '\n')
            continue;
        if (i - start >= 3 &&
            (i - start == 3 || s->in[start + 3] == ' ' || s->in[start + 3] == '\r')) {
            int code = atoi(s->in + start);
            return code >= 200 && code < 600 ? code : -1;
        }
        start = i + 1;
    }
    return s->in_len >= sizeof(s->in) - 1 ? -1 : 0;
}

static void on_reply(struct sl *sl, struct sl_session *s, unsigned idx, int code)
{
    uint32_t step_us = us_since(s->step_ns);

    s->in_len = 0;
    if (code != step_code[s->step]) {
        fail_add(sl, code, s->step);
        message_end(sl, s, idx);
        return;
    }
    sl->step_us[s->step][s->msg] = step_us;
    if (s->step == ST_DOT) {
        sl->lat_us[s->msg] = us_since(s->start_ns);
        sl->ok++;
    }
    if (s->step == ST_QUIT) {
        message_end(sl, s, idx);
        return;
    }
    s->step++;
    s->step_ns = now_ns();
    send_cmd(sl, s);
}

static void on_readable(struct sl *sl, struct sl_session *s, unsigned idx)
{
    ssize_t n = read(s->fd, s->in + s->in_len, sizeof(s->in) - 1 - s->in_len);
    int code;

    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        fail_add(sl, n == 0 ? 0 : -errno, s->step);
        message_end(sl, s, idx);
        return;
    }
    s->in_len += (size_t)n;
    if ((code = reply_code(s)) != 0)
        on_reply(sl, s, idx, code < 0 ? 0 : code);
}

static void on_writable(struct sl *sl, struct sl_session *s, unsigned idx)
{
    ssize_t n = write(s->fd, s->out, s->out_len);

    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n < 0) {
        fail_add(sl, -errno, s->step);
        message_end(sl, s, idx);
        return;
    }
    s->out += n;
    s->out_len -= (size_t)n;
}

static void check_timeouts(struct sl *sl)
{
    uint64_t limit = (uint64_t)sl->o.timeout_s * 1000000000u, now = now_ns();

    for (unsigned i = 0; i < sl->o.sessions; i++) {
        struct sl_session *s = &sl->s[i];
        if (s->fd >= 0 && now - s->start_ns > limit) {
            fail_add(sl, 1, s->step); /* code 1 = timeout */
            message_end(sl, s, i);
        }
    }
}

static int run(struct sl *sl)
{
    struct pollfd pfd[SL_SESSIONS_MAX];
    uint64_t deadline = now_ns() + (uint64_t)sl->o.run_timeout_s * 1000000000u;

    for (unsigned i = 0; i < sl->o.sessions; i++) {
        sl->s[i].fd = -1;
        session_next(sl, &sl->s[i], i);
    }
    while (sl->finished < sl->o.messages) {
        if (now_ns() > deadline) {
            fprintf(stderr, "smtp-latency: run not finished in %u s\n", sl->o.run_timeout_s);
            return -1;
        }
        for (unsigned i = 0; i < sl->o.sessions; i++) {
            pfd[i].fd = sl->s[i].fd;
            pfd[i].events = sl->s[i].out_len > 0 ? POLLOUT : POLLIN;
            pfd[i].revents = 0;
        }
        if (poll(pfd, sl->o.sessions, 200) < 0 && errno != EINTR)
            return -1;
        for (unsigned i = 0; i < sl->o.sessions; i++) {
            if (pfd[i].fd < 0 || pfd[i].fd != sl->s[i].fd || pfd[i].revents == 0)
                continue;
            if (sl->s[i].out_len > 0)
                on_writable(sl, &sl->s[i], i);
            else
                on_readable(sl, &sl->s[i], i);
        }
        check_timeouts(sl);
    }
    return 0;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

    return x < y ? -1 : x > y;
}

/* Median of the non-zero entries (a step a failed message never reached is 0). */
static uint32_t pct(uint32_t *v, size_t n, double q)
{
    size_t k = 0;

    qsort(v, n, sizeof(*v), cmp_u32);
    while (k < n && v[k] == 0)
        k++;
    if (k == n)
        return 0;
    return v[k + (size_t)((double)(n - k - 1) * q)];
}

static void report(struct sl *sl, double secs)
{
    uint64_t sum = 0;
    unsigned n = sl->o.messages;

    for (unsigned i = 0; i < n; i++)
        sum += sl->lat_us[i];
    printf("sessions=%u n=%u ok=%u fail=%u secs=%.3f rate=%.1f ", sl->o.sessions, n, sl->ok,
           n - sl->ok, secs, secs > 0 ? sl->ok / secs : 0.0);
    printf("mean_us=%llu ", sl->ok ? (unsigned long long)(sum / sl->ok) : 0ull);
    printf("p50_us=%u ", pct(sl->lat_us, n, 0.5));
    printf("p99_us=%u step_p50_us=", pct(sl->lat_us, n, 0.99));
    for (int st = 0; st < ST_QUIT; st++)
        printf("%s%s:%u", st ? "," : "", step_names[st], pct(sl->step_us[st], n, 0.5));
    printf(" fail_replies=");
    for (size_t i = 0; i < sl->fail_count; i++)
        printf("%s%d@%s:%u", i ? "," : "", sl->fails[i].code, step_names[sl->fails[i].step],
               sl->fails[i].count);
    printf("\n");
    fflush(stdout);
}

static void usage(void)
{
    fprintf(stderr, "usage: smtp-latency --port P [--host 127.0.0.1] [--source 127.0.0.2]\n"
                    "       [--source-count N] [--sessions S] [--messages M] [--from ADDR]\n"
                    "       [--rcpts a@x,b@x] [--size BYTES] [--timeout S] [--run-timeout S]\n");
    exit(2);
}

static void split_rcpts(struct sl_opts *o, char *list)
{
    char *save = NULL;

    o->rcpt_count = 0;
    for (char *r = strtok_r(list, ",", &save); r != NULL && o->rcpt_count < SL_RCPTS_MAX;
         r = strtok_r(NULL, ",", &save))
        o->rcpts[o->rcpt_count++] = r;
}

static void parse_opts(int argc, char **argv, struct sl_opts *o)
{
    static const struct option longs[] = {{"host", required_argument, NULL, 'h'},
                                          {"port", required_argument, NULL, 'p'},
                                          {"source", required_argument, NULL, 's'},
                                          {"source-count", required_argument, NULL, 'c'},
                                          {"sessions", required_argument, NULL, 'S'},
                                          {"messages", required_argument, NULL, 'm'},
                                          {"from", required_argument, NULL, 'f'},
                                          {"rcpts", required_argument, NULL, 'r'},
                                          {"size", required_argument, NULL, 'z'},
                                          {"timeout", required_argument, NULL, 't'},
                                          {"run-timeout", required_argument, NULL, 'T'},
                                          {NULL, 0, NULL, 0}};
    static char default_rcpt[] = "user@example.test";
    int ch;

    *o = (struct sl_opts){.host = "127.0.0.1",
                          .source_count = 1,
                          .sessions = 1,
                          .messages = 100,
                          .from = "sender@client.example",
                          .size = 1024,
                          .timeout_s = 30,
                          .run_timeout_s = 600};
    inet_pton(AF_INET, "127.0.0.1", &o->source);
    split_rcpts(o, default_rcpt);
    while ((ch = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        switch (ch) {
        case 'h':
            o->host = optarg;
            break;
        case 'p':
            o->port = atoi(optarg);
            break;
        case 's':
            if (inet_pton(AF_INET, optarg, &o->source) != 1)
                usage();
            break;
        case 'c':
            o->source_count = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'S':
            o->sessions = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'm':
            o->messages = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'f':
            o->from = optarg;
            break;
        case 'r':
            split_rcpts(o, optarg);
            break;
        case 'z':
            o->size = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 't':
            o->timeout_s = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'T':
            o->run_timeout_s = (unsigned)strtoul(optarg, NULL, 10);
            break;
        default:
            usage();
        }
    }
    if (o->port <= 0 || o->port > 65535 || o->sessions == 0 || o->sessions > SL_SESSIONS_MAX ||
        o->messages == 0 || o->messages > SL_MESSAGES_MAX || o->source_count == 0 ||
        o->rcpt_count == 0 || o->size > 10 * 1024 * 1024 || o->timeout_s == 0 ||
        o->run_timeout_s == 0)
        usage();
}

int main(int argc, char **argv)
{
    static struct sl sl;
    uint64_t t0;
    int r;

    parse_opts(argc, argv, &sl.o);
    sl.lat_us = calloc(sl.o.messages, sizeof(*sl.lat_us));
    for (int st = 0; st < ST_STEPS; st++)
        if ((sl.step_us[st] = calloc(sl.o.messages, sizeof(uint32_t))) == NULL)
            return 1;
    if (sl.lat_us == NULL || make_content(&sl) < 0)
        return 1;
    t0 = now_ns();
    r = run(&sl);
    report(&sl, (double)(now_ns() - t0) / 1e9);
    for (unsigned i = 0; i < sl.o.sessions; i++)
        session_close(&sl.s[i]);
    return r == 0 ? 0 : 1;
}

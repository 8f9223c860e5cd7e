/*
 * spamd — see spamd.h. One connection per scan (spamd answers one request
 * per connection and closes): the request's header and the message go
 * out through a bufferevent, the message read from the spool in chunks of
 * SEND_CHUNK as the output drains below SEND_LOW, so a scan holds at most
 * about two chunks of it; the response is read up to SPAMD_REPLY_MAX and
 * parsed (spamd-reply.c) each time more comes, until it is complete, bad,
 * or the peer closes. A timer per scan bounds the whole exchange. The
 * module (config table, checks) is in spamd-config.c.
 */
#include "config.h"
#include "filters/spamd.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/util.h>

#include "lib/log.h"

#define SEND_CHUNK (64 * 1024)
#define SEND_LOW (32 * 1024)
#define SPAMASSASSIN_SYMBOL "SPAMASSASSIN"
#define SPAMD_ERROR_SYMBOL "SPAMD_ERROR" /* the chain's skip symbol for "spamd" */
#define SPAMD_SIZE_SYMBOL "SPAMD_SKIPPED_SIZE"
#define QID_MAX 64

struct spamd {
    struct event_base *base;
    struct sockaddr_storage sa;
    int salen;
    char *address;
    enum spamd_command command;
    char *user;          /* a fixed User:, or NULL */
    bool user_recipient; /* User: from the first recipient */
    uint64_t max_size;
    unsigned deadline_ms;
    enum filter_on_error on_error;
    bool skip_trusted, skip_authenticated;
};

struct spamd_scan {
    struct spamd *sd;
    struct filter_call *call;
    struct bufferevent *bev;
    struct event *timer;
    int fd;             /* the spool's: not owned */
    uint64_t off, left; /* message octets still to send, from off */
    bool connected;
    long start_ms;
    char qid[QID_MAX];
    struct spamd_reply reply;
};

static const char *const command_names[] = {"SYMBOLS", "REPORT", "HEADERS"};

static long mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- names ---- */

int spamd_parse_address(const char *address, struct sockaddr_storage *sa, int *salen,
                        const char **error_r)
{
    memset(sa, 0, sizeof(*sa));
    if (address[0] == '/') {
        struct sockaddr_un *sun = (struct sockaddr_un *)sa;
        size_t n = strlen(address);
        if (n >= sizeof(sun->sun_path)) {
            *error_r = "unix socket path too long";
            return -1;
        }
        sun->sun_family = AF_UNIX;
        memcpy(sun->sun_path, address, n + 1);
        *salen = (int)(offsetof(struct sockaddr_un, sun_path) + n + 1);
        return 0;
    }
    *salen = (int)sizeof(*sa);
    if (evutil_parse_sockaddr_port(address, (struct sockaddr *)sa, salen) < 0 ||
        (sa->ss_family != AF_INET && sa->ss_family != AF_INET6) ||
        (sa->ss_family == AF_INET && ((struct sockaddr_in *)sa)->sin_port == 0) ||
        (sa->ss_family == AF_INET6 && ((struct sockaddr_in6 *)sa)->sin6_port == 0)) {
        *error_r = "not \"host:port\", \"[v6]:port\" or a unix socket path";
        return -1;
    }
    return 0;
}

int spamd_user_from_rcpt(const char *rcpt, char *out, size_t size)
{
    const char *at = strrchr(rcpt, '@');
    size_t n = at != NULL ? (size_t)(at - rcpt) : strlen(rcpt);

    if (n == 0 || n >= size || n > SPAMD_USER_MAX)
        return -1;
    for (size_t i = 0; i < n; i++)
        out[i] = rcpt[i] >= 'A' && rcpt[i] <= 'Z' ? (char)(rcpt[i] - 'A' + 'a') : rcpt[i];
    out[n] = '\0';
    return spamd_user_ok(out) ? 0 : -1;
}

void spamd_rule_symbol(const char *rule, char *out, size_t size)
{
    snprintf(out, size, "SA_%s", rule);
}

/* ---- instances ---- */

int spamd_new(struct event_base *base, const struct spamd_settings *cfg, struct spamd **spamd_r,
              char *error, size_t errsize)
{
    struct spamd *sd = calloc(1, sizeof(*sd));
    const char *why;

    *spamd_r = NULL;
    if (sd == NULL || (sd->address = strdup(cfg->address)) == NULL) {
        snprintf(error, errsize, "spamd: out of memory");
        spamd_free(&sd);
        return -1;
    }
    if (spamd_parse_address(cfg->address, &sd->sa, &sd->salen, &why) < 0) {
        snprintf(error, errsize, "spamd: address \"%s\": %s", cfg->address, why);
        spamd_free(&sd);
        return -1;
    }
    sd->base = base;
    sd->command = (enum spamd_command)cfg->command;
    sd->user_recipient = cfg->user != NULL && strcmp(cfg->user, SPAMD_USER_RECIPIENT) == 0;
    if (cfg->user != NULL && cfg->user[0] != '\0' && !sd->user_recipient &&
        (sd->user = strdup(cfg->user)) == NULL) {
        snprintf(error, errsize, "spamd: out of memory");
        spamd_free(&sd);
        return -1;
    }
    sd->max_size = (uint64_t)cfg->max_size;
    /* before the chain's timer, so that a slow spamd is our own failure */
    sd->deadline_ms = (unsigned)(cfg->common.timeout - cfg->common.timeout / 10);
    sd->on_error = (enum filter_on_error)cfg->common.on_error;
    sd->skip_trusted = cfg->skip_trusted;
    sd->skip_authenticated = cfg->skip_authenticated;
    *spamd_r = sd;
    return 0;
}

void spamd_free(struct spamd **sdp)
{
    struct spamd *sd = *sdp;

    if (sd == NULL)
        return;
    *sdp = NULL;
    free(sd->address);
    free(sd->user);
    free(sd);
}

/* ---- the end of a scan ---- */

static void scan_free(struct spamd_scan *sc)
{
    if (sc->bev != NULL)
        bufferevent_free(sc->bev);
    if (sc->timer != NULL)
        event_free(sc->timer);
    free(sc);
}

/* The findings of a failure: with on_error skip the filter's own (the
 * chain's SPAMD_ERROR and a header field); returns the call's result. */
static int failure_findings(const struct spamd *sd, struct filter_call *call, const char *qid,
                            const char *why)
{
    log_warning("spamd: %s: %s: %s; not scanned (on_error %s)", qid, sd->address, why,
                filter_on_error_values[sd->on_error]);
    if (sd->on_error != FILTER_ON_ERROR_SKIP)
        return -1;
    filter_call_symbol(call, SPAMD_ERROR_SYMBOL, 0, why);
    (void)filter_call_add_header(call, SPAMD_HEADER, "skipped (spamd unavailable)");
    return 1;
}

static void scan_fail(struct spamd_scan *sc, const char *why)
{
    struct filter_call *call = sc->call;
    int rc = failure_findings(sc->sd, call, sc->qid, why);

    scan_free(sc);
    filter_call_done(call, rc);
}

/* "RULE_A,RULE_B,..." for the log, cut with "..." */
static void rule_list(const struct spamd_reply *r, char *out, size_t size)
{
    size_t o = 0;

    out[0] = '\0';
    for (size_t i = 0; i < r->rule_count; i++) {
        size_t n = strlen(r->rules[i].name);
        if (o + n + 5 >= size) {
            snprintf(out + o, size - o, "...");
            return;
        }
        o += (size_t)snprintf(out + o, size - o, "%s%s", i > 0 ? "," : "", r->rules[i].name);
    }
}

static void scan_finish(struct spamd_scan *sc)
{
    const struct spamd_reply *r = &sc->reply;
    struct filter_call *call = sc->call;
    char name[FILTER_SYMBOL_NAME_MAX], text[FILTER_SYMBOL_TEXT_MAX], rules[512];

    snprintf(text, sizeof(text), "%.1f/%.1f", r->score, r->threshold);
    filter_call_symbol(call, SPAMASSASSIN_SYMBOL, r->score, text);
    for (size_t i = 0; i < r->rule_count; i++) {
        spamd_rule_symbol(r->rules[i].name, name, sizeof(name));
        if (r->rules[i].has_points)
            snprintf(text, sizeof(text), "%g", r->rules[i].points);
        filter_call_symbol(call, name, 0, r->rules[i].has_points ? text : NULL);
    }
    rule_list(r, rules, sizeof(rules));
    log_info("spamd: %s: score %.1f/%.1f (%s) in %ld ms, %zu rules%s: %s", sc->qid, r->score,
             r->threshold, r->is_spam ? "spam" : "ham", mono_ms() - sc->start_ms,
             r->rule_count + r->rules_dropped, r->rules_dropped > 0 ? " (some not kept)" : "",
             rules[0] != '\0' ? rules : "-");
    scan_free(sc);
    filter_call_done(call, 1);
}

/* ---- the exchange ---- */

/* Tops the output up from the spool to SEND_CHUNK; -1 on a read error or
 * a message shorter than its length. */
static int fill_output(struct spamd_scan *sc)
{
    struct evbuffer *out = bufferevent_get_output(sc->bev);

    while (sc->left > 0 && evbuffer_get_length(out) < SEND_CHUNK) {
        size_t want = sc->left < SEND_CHUNK ? (size_t)sc->left : SEND_CHUNK;
        struct evbuffer_iovec v;
        ssize_t got;

        if (evbuffer_reserve_space(out, (ev_ssize_t)want, &v, 1) < 1)
            return -1;
        do
            got = pread(sc->fd, v.iov_base, want, (off_t)sc->off);
        while (got < 0 && errno == EINTR);
        if (got <= 0)
            return -1;
        v.iov_len = (size_t)got;
        if (evbuffer_commit_space(out, &v, 1) < 0)
            return -1;
        sc->off += (uint64_t)got;
        sc->left -= (uint64_t)got;
    }
    return 0;
}

static void on_write(struct bufferevent *bev, void *ctx)
{
    struct spamd_scan *sc = ctx;

    (void)bev;
    if (fill_output(sc) < 0)
        scan_fail(sc, "cannot read the spooled message");
}

/* Parses what came; finishes or fails the scan unless more is needed.
 * Returns true when the scan is over (sc is freed). */
static bool take_reply(struct spamd_scan *sc, bool eof)
{
    struct evbuffer *in = bufferevent_get_input(sc->bev);
    size_t len = evbuffer_get_length(in);
    const char *error;
    char why[256];
    int rc;

    if (len > SPAMD_REPLY_MAX) {
        scan_fail(sc, "response too long");
        return true;
    }
    rc = spamd_reply_parse(len > 0 ? (const char *)evbuffer_pullup(in, -1) : "", len, eof,
                           sc->sd->command, &sc->reply, &error);
    if (rc == 0)
        return false;
    if (rc == 1) {
        scan_finish(sc);
        return true;
    }
    if (sc->reply.code != 0)
        snprintf(why, sizeof(why), "%s: %u %s", error, sc->reply.code, sc->reply.text);
    else
        snprintf(why, sizeof(why), "%s", error);
    scan_fail(sc, why);
    return true;
}

static void on_read(struct bufferevent *bev, void *ctx)
{
    (void)bev;
    (void)take_reply(ctx, false);
}

static void on_event(struct bufferevent *bev, short what, void *ctx)
{
    struct spamd_scan *sc = ctx;
    char why[256];

    (void)bev;
    if (what & BEV_EVENT_CONNECTED) {
        sc->connected = true;
        return;
    }
    /* spamd may answer (an error) and close before it has read the whole
     * message: what came is its answer, even when the send then failed */
    if ((what & BEV_EVENT_EOF) || evbuffer_get_length(bufferevent_get_input(sc->bev)) > 0) {
        (void)take_reply(sc, true);
        return;
    }
    snprintf(why, sizeof(why), "%s: %s", sc->connected ? "connection lost" : "cannot connect",
             evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
    scan_fail(sc, why);
}

static void on_timer(evutil_socket_t fd, short what, void *ctx)
{
    struct spamd_scan *sc = ctx;
    char why[64];

    (void)fd;
    (void)what;
    snprintf(why, sizeof(why), "no answer within %u ms", sc->sd->deadline_ms);
    scan_fail(sc, why);
}

/* A socket of our own, TCP_NODELAY before the first byte (SERVICES.md). */
static int open_socket(const struct sockaddr *sa)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;

    if (fd >= 0 && sa->sa_family != AF_UNIX)
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

/* The request's header with the User: this message gets. */
static int request_header(const struct spamd *sd, const struct filter_txn *txn, char *out,
                          size_t size)
{
    char user[SPAMD_USER_MAX + 1];
    const char *u = sd->user;

    if (sd->user_recipient && txn->rcpt_count > 0 &&
        spamd_user_from_rcpt(txn->rcpts[0], user, sizeof(user)) == 0)
        u = user;
    else if (sd->user_recipient)
        u = NULL; /* no safe name: spamd's default preferences */
    return spamd_request_header(sd->command, txn->content_len, u, out, size);
}

/* The scan's connection with the request's header and the first chunks
 * of the message in its output; -1 with why. */
static int scan_connect(struct spamd_scan *sc, const char *head, size_t n, char *why, size_t size)
{
    const struct spamd *sd = sc->sd;
    const int opts = BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS;
    int fd = open_socket((const struct sockaddr *)&sd->sa);

    if (fd < 0) {
        snprintf(why, size, "cannot make a socket: %s", strerror(errno));
        return -1;
    }
    if ((sc->bev = bufferevent_socket_new(sd->base, fd, opts)) == NULL) {
        close(fd);
        snprintf(why, size, "out of memory");
        return -1;
    }
    bufferevent_setcb(sc->bev, on_read, on_write, on_event, sc);
    bufferevent_setwatermark(sc->bev, EV_WRITE, SEND_LOW, 0);
    bufferevent_setwatermark(sc->bev, EV_READ, 0, SPAMD_REPLY_MAX + 1);
    if (evbuffer_add(bufferevent_get_output(sc->bev), head, n) < 0 || fill_output(sc) < 0) {
        snprintf(why, size, "cannot read the spooled message");
        return -1;
    }
    if (bufferevent_enable(sc->bev, EV_READ | EV_WRITE) < 0 ||
        bufferevent_socket_connect(sc->bev, (const struct sockaddr *)&sd->sa, sd->salen) < 0) {
        snprintf(why, size, "cannot connect: %s", strerror(errno));
        return -1;
    }
    return 0;
}

/* Starts the exchange; NULL with why. */
static struct spamd_scan *scan_start(struct spamd *sd, struct filter_call *call, const char *qid,
                                     char *why, size_t size)
{
    const struct filter_txn *txn = filter_call_txn(call);
    struct spamd_scan *sc = calloc(1, sizeof(*sc));
    struct timeval tv = {.tv_sec = sd->deadline_ms / 1000,
                         .tv_usec = (sd->deadline_ms % 1000) * 1000};
    char head[256];
    int n;

    if (sc == NULL || (sc->timer = evtimer_new(sd->base, on_timer, sc)) == NULL) {
        snprintf(why, size, "out of memory");
        free(sc);
        return NULL;
    }
    sc->sd = sd;
    sc->call = call;
    sc->fd = txn->content_fd;
    sc->off = txn->content_off;
    sc->left = txn->content_len;
    sc->start_ms = mono_ms();
    snprintf(sc->qid, sizeof(sc->qid), "%s", qid);
    if ((n = request_header(sd, txn, head, sizeof(head))) < 0) {
        snprintf(why, size, "cannot make the request"); /* load checked user */
        scan_free(sc);
        return NULL;
    }
    if (scan_connect(sc, head, (size_t)n, why, size) < 0) {
        scan_free(sc);
        return NULL;
    }
    evtimer_add(sc->timer, &tv);
    return sc;
}

static int spamd_eom(void *instance, struct filter_call *call)
{
    struct spamd *sd = instance;
    const struct filter_txn *txn = filter_call_txn(call);
    const char *qid = txn->queue_id != NULL ? txn->queue_id : "-";
    struct spamd_scan *sc;
    char why[160];

    if ((sd->skip_trusted && txn->trusted) || (sd->skip_authenticated && txn->authenticated))
        return 1;
    if (txn->content_fd < 0)
        return failure_findings(sd, call, qid, "no message content");
    if (txn->content_len > sd->max_size) {
        snprintf(why, sizeof(why), "%llu octets", (unsigned long long)txn->content_len);
        filter_call_symbol(call, SPAMD_SIZE_SYMBOL, 0, why);
        (void)filter_call_add_header(call, SPAMD_HEADER, "skipped (message over max_size)");
        log_info("spamd: %s: %llu octets over max_size %llu; not scanned", qid,
                 (unsigned long long)txn->content_len, (unsigned long long)sd->max_size);
        return 1;
    }
    if ((sc = scan_start(sd, call, qid, why, sizeof(why))) == NULL)
        return failure_findings(sd, call, qid, why);
    log_debug("spamd: %s: %s of %llu octets to %s", qid, command_names[sd->command],
              (unsigned long long)txn->content_len, sd->address);
    filter_call_set_data(call, sc);
    return 0;
}

static void spamd_cancel(void *instance, struct filter_call *call)
{
    struct spamd_scan *sc = filter_call_data(call);

    (void)instance;
    if (sc != NULL)
        scan_free(sc);
}

const struct filter_ops spamd_filter_ops = {
    .name = "spamd",
    .stage = {[FILTER_EOM] = spamd_eom},
    .cancel = spamd_cancel,
};

/*
 * clamd — see clamd.h. One scan per FILTER_EOM call: a new connection to
 * clamd (clamd answers INSTREAM once and closes), the message streamed from
 * the spool file as the socket drains (at most two chunks buffered), and
 * the first NUL-terminated reply judged by clamd-reply.c. clamd may answer
 * before the stream ends (its StreamMaxLength): the reply is read even
 * after a write fails, and it decides. Every way a scan can fail ends the
 * call with -1, so the link's on_error applies (default tempfail); the
 * filter's timeout (the chain's timer) bounds the whole scan, and
 * connect_timeout the connection.
 *
 * The module (config table, checks) is in clamd-config.c.
 */
#include "config.h"
#include "filters/clamd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/util.h>

#include "lib/log.h"

#define CLAMD_COMMAND "zINSTREAM" /* and its NUL */
#define CLAMD_QID_MAX 64
#define CLAMD_PREAD_TRIES 100 /* EINTR and short reads of one chunk */

struct clamd {
    struct event_base *base;
    struct sockaddr_storage sa;
    socklen_t salen;
    char *address;
    unsigned connect_timeout_ms;
    uint64_t max_size;
    enum clamd_size_action size_action;
    size_t chunk_size;
    enum clamd_virus_action action;
    double virus_score;
    bool clean_symbol;
};

struct clamd_scan {
    struct clamd *c;
    struct filter_call *call;
    struct bufferevent *bev;
    int content_fd;
    uint64_t off, left; /* what is still to be sent */
    bool sent_end;      /* the zero-length chunk is in the output */
    bool connected;
    bool write_failed; /* reading on for a reply clamd sent before closing */
    int write_error;
    char qid[CLAMD_QID_MAX];
};

/* ---- instances ---- */

int clamd_address_parse(const char *text, struct sockaddr_storage *ss, socklen_t *len,
                        const char **error_r)
{
    struct sockaddr_un *sun = (struct sockaddr_un *)ss;
    int n = (int)sizeof(*ss);

    memset(ss, 0, sizeof(*ss));
    if (text[0] == '/') {
        if (strlen(text) >= sizeof(sun->sun_path)) {
            *error_r = "socket path too long";
            return -1;
        }
        sun->sun_family = AF_UNIX;
        memcpy(sun->sun_path, text, strlen(text) + 1);
        *len = (socklen_t)sizeof(*sun);
        return 0;
    }
    if (evutil_parse_sockaddr_port(text, (struct sockaddr *)ss, &n) < 0 ||
        (ss->ss_family != AF_INET && ss->ss_family != AF_INET6)) {
        *error_r = "not \"ip:port\", \"[ipv6]:port\" or \"/path\"";
        return -1;
    }
    if ((ss->ss_family == AF_INET && ((struct sockaddr_in *)ss)->sin_port == 0) ||
        (ss->ss_family == AF_INET6 && ((struct sockaddr_in6 *)ss)->sin6_port == 0)) {
        *error_r = "a port is needed (clamd's TCPSocket, usually 3310)";
        return -1;
    }
    *len = (socklen_t)n;
    return 0;
}

int clamd_new(struct event_base *base, const struct clamd_settings *cfg, struct clamd **clamd_r,
              char *error, size_t errsize)
{
    struct clamd *c = calloc(1, sizeof(*c));
    const char *why;

    *clamd_r = NULL;
    if (c == NULL || (c->address = strdup(cfg->address != NULL ? cfg->address : "")) == NULL) {
        free(c);
        snprintf(error, errsize, "clamd: out of memory");
        return -1;
    }
    if (clamd_address_parse(c->address, &c->sa, &c->salen, &why) < 0) {
        snprintf(error, errsize, "clamd: address \"%s\": %s", c->address, why);
        clamd_free(&c);
        return -1;
    }
    c->base = base;
    c->connect_timeout_ms = (unsigned)cfg->connect_timeout;
    c->max_size = (uint64_t)cfg->max_size;
    c->size_action = (enum clamd_size_action)cfg->size_action;
    c->chunk_size = (size_t)cfg->chunk_size;
    c->action = (enum clamd_virus_action)cfg->action;
    c->virus_score = cfg->virus_score;
    c->clean_symbol = cfg->clean_symbol;
    *clamd_r = c;
    return 0;
}

void clamd_free(struct clamd **cp)
{
    struct clamd *c = *cp;

    if (c == NULL)
        return;
    *cp = NULL;
    free(c->address);
    free(c);
}

/* ---- the end of a scan ---- */

static void scan_free(struct clamd_scan *sc)
{
    if (sc->bev != NULL)
        bufferevent_free(sc->bev); /* closes the socket */
    free(sc);
}

/* The scan failed: logged, and the link's on_error applies. */
static void scan_fail(struct clamd_scan *sc, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void scan_fail(struct clamd_scan *sc, const char *fmt, ...)
{
    struct filter_call *call = sc->call;
    char why[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    log_warning("%s: clamd: %s: %s; not scanned", sc->qid, sc->c->address, why);
    scan_free(sc);
    filter_call_done(call, -1);
}

/* Turns clamd's verdict into findings. */
static void scan_verdict(struct clamd_scan *sc, const struct clamd_reply *r)
{
    struct filter_call *call = sc->call;
    const struct clamd *c = sc->c;

    if (r->verdict == CLAMD_LIMIT || r->verdict == CLAMD_ERROR) {
        scan_fail(sc, "%s: \"%s\"", r->verdict == CLAMD_LIMIT ? "over a limit of clamd's" : "error",
                  r->text);
        return;
    }
    if (r->verdict == CLAMD_CLEAN && (!sc->sent_end || sc->write_failed ||
                                      evbuffer_get_length(bufferevent_get_output(sc->bev)) > 0)) {
        /* clamd scans what it received only after the zero-length chunk */
        scan_fail(sc, "\"%s\" before the whole message was sent", r->text);
        return;
    }
    if (r->verdict == CLAMD_CLEAN) {
        if (c->clean_symbol)
            filter_call_symbol(call, "CLAMAV_CLEAN", 0, NULL);
    } else {
        static const char *const acts[] = {"rejected", "quarantined", "no action"};
        log_info("%s: clamd: virus %s found; %s", sc->qid, r->name, acts[c->action]);
        filter_call_symbol(call, "CLAMAV_VIRUS", c->virus_score, r->name);
        if (c->action == CLAMD_VIRUS_REJECT)
            filter_call_action(call, FILTER_ACTION_REJECT, 554, "5.7.1",
                               "Message rejected: virus %s found", r->name);
        else if (c->action == CLAMD_VIRUS_QUARANTINE)
            filter_call_action(call, FILTER_ACTION_QUARANTINE, 0, NULL, "virus %s", r->name);
    }
    scan_free(sc);
    filter_call_done(call, 1);
}

/* Judges the reply once it is complete; at_end: nothing more will come.
 * Returns true when the scan ended. */
static bool scan_reply(struct clamd_scan *sc, bool at_end)
{
    struct evbuffer *in = bufferevent_get_input(sc->bev);
    size_t len = evbuffer_get_length(in);
    size_t look = len < CLAMD_REPLY_MAX + 1 ? len : CLAMD_REPLY_MAX + 1;
    const char *data = (const char *)evbuffer_pullup(in, (ev_ssize_t)look);
    long end = data != NULL ? clamd_reply_end(data, look) : -1;
    struct clamd_reply r;

    if (end >= 0) {
        clamd_reply_parse(data, (size_t)end, &r);
        scan_verdict(sc, &r);
        return true;
    }
    if (end == -2) {
        scan_fail(sc, "reply longer than %d octets", CLAMD_REPLY_MAX);
        return true;
    }
    if (!at_end)
        return false;
    if (sc->write_failed)
        scan_fail(sc, "connection lost while sending (%s), %s",
                  evutil_socket_error_to_string(sc->write_error),
                  len > 0 ? "reply incomplete" : "no reply");
    else if (len > 0)
        scan_fail(sc, "connection closed in the middle of the reply");
    else
        scan_fail(sc, "connection closed %s", sc->sent_end ? "without a reply" : "while sending");
    return true;
}

/* ---- streaming the message ---- */

/* Reads n octets of the message at sc->off into dst. */
static int read_content(struct clamd_scan *sc, char *dst, size_t n)
{
    size_t got = 0;

    for (int tries = 0; got < n && tries < CLAMD_PREAD_TRIES; tries++) {
        ssize_t r = pread(sc->content_fd, dst + got, n - got, (off_t)(sc->off + got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    return got == n ? 0 : -1;
}

/* Appends one chunk (or the end) to out. */
static int add_chunk(struct clamd_scan *sc, struct evbuffer *out)
{
    size_t n = sc->left < sc->c->chunk_size ? (size_t)sc->left : sc->c->chunk_size;
    uint32_t be = htonl((uint32_t)n);
    struct evbuffer_iovec v;

    if (evbuffer_add(out, &be, sizeof(be)) < 0)
        return -1;
    if (n == 0) {
        sc->sent_end = true;
        return 0;
    }
    if (evbuffer_reserve_space(out, (ev_ssize_t)n, &v, 1) != 1 || v.iov_len < n ||
        read_content(sc, v.iov_base, n) < 0)
        return -1;
    v.iov_len = n;
    if (evbuffer_commit_space(out, &v, 1) < 0)
        return -1;
    sc->off += n;
    sc->left -= n;
    return 0;
}

/* Keeps about two chunks in the output until the end is in. Returns false
 * when the scan ended. */
static bool scan_fill(struct clamd_scan *sc)
{
    struct evbuffer *out = bufferevent_get_output(sc->bev);

    while (!sc->sent_end && !sc->write_failed && evbuffer_get_length(out) < 2 * sc->c->chunk_size) {
        errno = 0;
        if (add_chunk(sc, out) < 0) {
            scan_fail(sc, "cannot read the message from the spool: %s",
                      errno != 0 ? strerror(errno) : "short read");
            return false;
        }
    }
    return true;
}

static void on_read(struct bufferevent *bev, void *arg)
{
    (void)bev;
    scan_reply(arg, false);
}

static void on_write(struct bufferevent *bev, void *arg)
{
    (void)bev;
    (void)scan_fill(arg);
}

/* Returns false when the scan ended. */
static bool on_connected(struct clamd_scan *sc)
{
    struct evbuffer *out = bufferevent_get_output(sc->bev);

    bufferevent_set_timeouts(sc->bev, NULL, NULL); /* the chain's timeout bounds the rest */
    bufferevent_setwatermark(sc->bev, EV_WRITE, sc->c->chunk_size, 0);
    if (evbuffer_add(out, CLAMD_COMMAND, sizeof(CLAMD_COMMAND)) < 0) {
        scan_fail(sc, "out of memory");
        return false;
    }
    return scan_fill(sc);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    struct clamd_scan *sc = arg;
    int err = EVUTIL_SOCKET_ERROR(); /* kept by libevent for deferred callbacks */
    struct evbuffer *out = bufferevent_get_output(bev);

    if (what & BEV_EVENT_CONNECTED) {
        sc->connected = true;
        if (!on_connected(sc) || (what & ~BEV_EVENT_CONNECTED) == 0)
            return;
    }
    if (what & BEV_EVENT_TIMEOUT) { /* only armed while connecting */
        scan_fail(sc, "connect timed out after %u ms", sc->c->connect_timeout_ms);
    } else if (!sc->connected) {
        scan_fail(sc, "cannot connect: %s", evutil_socket_error_to_string(err));
    } else {
        /* deferred callbacks come merged: a write error and the read side's
         * end may arrive in one call */
        if ((what & BEV_EVENT_WRITING) && !sc->write_failed) {
            /* clamd may have answered and closed (StreamMaxLength) before
             * the stream ended: stop sending, read on for what it said */
            sc->write_failed = true;
            sc->write_error = (what & BEV_EVENT_ERROR) ? err : EPIPE;
            evbuffer_drain(out, evbuffer_get_length(out));
        }
        /* the read side's EOF or error: nothing more comes */
        scan_reply(sc, (what & BEV_EVENT_READING) != 0);
    }
}

/* A non-blocking connection to clamd; -1 with errno when it failed at once. */
static int scan_connect(struct clamd_scan *sc)
{
    const struct clamd *c = sc->c;
    struct timeval tv = {.tv_sec = c->connect_timeout_ms / 1000,
                         .tv_usec = (c->connect_timeout_ms % 1000) * 1000};
    int one = 1;
    int fd = socket(c->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -1;
    if (c->sa.ss_family != AF_UNIX) /* the last small chunk must not wait for an ACK */
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (const struct sockaddr *)&c->sa, c->salen) < 0 && errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    sc->bev = bufferevent_socket_new(c->base, fd, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (sc->bev == NULL) {
        close(fd);
        errno = ENOMEM;
        return -1;
    }
    bufferevent_setcb(sc->bev, on_read, on_write, on_event, sc);
    bufferevent_set_timeouts(sc->bev, NULL, &tv);
    /* fd is connecting: libevent reports CONNECTED (or the error) */
    if (bufferevent_socket_connect(sc->bev, NULL, 0) < 0 ||
        bufferevent_enable(sc->bev, EV_READ | EV_WRITE) < 0) {
        errno = EIO;
        return -1;
    }
    return 0;
}

/* ---- FILTER_EOM ---- */

/* A message over max_size: not sent; the symbol and size_action. */
static void too_big(const struct clamd *c, struct filter_call *call, const char *qid, uint64_t len)
{
    char text[64];

    snprintf(text, sizeof(text), "%" PRIu64 " > %" PRIu64, len, c->max_size);
    filter_call_symbol(call, "CLAMAV_SKIPPED_SIZE", 0, text);
    log_info("%s: clamd: not scanned: %" PRIu64 " octets over max_size %" PRIu64, qid, len,
             c->max_size);
    if (c->size_action == CLAMD_SIZE_TEMPFAIL)
        filter_call_action(call, FILTER_ACTION_TEMPFAIL, 452, "4.3.4",
                           "Message too big to be scanned, try again later");
    else if (c->size_action == CLAMD_SIZE_REJECT)
        filter_call_action(call, FILTER_ACTION_REJECT, 552, "5.3.4",
                           "Message too big to be scanned");
}

static int clamd_eom(void *instance, struct filter_call *call)
{
    struct clamd *c = instance;
    const struct filter_txn *txn = filter_call_txn(call);
    const char *qid = txn->queue_id != NULL ? txn->queue_id : "NOQUEUE";
    struct clamd_scan *sc;

    if (txn->content_fd < 0) {
        log_warning("%s: clamd: no message content to scan", qid);
        return -1;
    }
    if (txn->content_len > c->max_size) {
        too_big(c, call, qid, txn->content_len);
        return 1;
    }
    if ((sc = calloc(1, sizeof(*sc))) == NULL)
        return -1;
    *sc = (struct clamd_scan){.c = c,
                              .call = call,
                              .content_fd = txn->content_fd,
                              .off = txn->content_off,
                              .left = txn->content_len};
    snprintf(sc->qid, sizeof(sc->qid), "%s", qid);
    if (scan_connect(sc) < 0) {
        log_warning("%s: clamd: %s: cannot connect: %s; not scanned", qid, c->address,
                    strerror(errno));
        scan_free(sc);
        return -1;
    }
    filter_call_set_data(call, sc);
    return 0;
}

static void clamd_cancel(void *instance, struct filter_call *call)
{
    struct clamd_scan *sc = filter_call_data(call);

    (void)instance;
    if (sc == NULL)
        return;
    log_warning("%s: clamd: %s: scan stopped (no verdict in time, or the client left); "
                "not scanned",
                sc->qid, sc->c->address);
    scan_free(sc);
}

const struct filter_ops clamd_filter_ops = {
    .name = "clamd",
    .stage = {[FILTER_EOM] = clamd_eom},
    .cancel = clamd_cancel,
};

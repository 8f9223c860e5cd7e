/*
 * smtp-client — see smtp-client.h. This file holds the client's life cycle
 * (connect, close, free), its bufferevent, timer and notify callbacks, the
 * reading of replies, and what a failure does in each state. The protocol
 * steps are in smtp-client-hello.c (greeting to ready) and
 * smtp-client-send.c (one message); the content in smtp-client-data.c.
 *
 * Callbacks to the caller run only from our libevent callbacks (the
 * bufferevent defers its own: BEV_OPT_DEFER_CALLBACKS) or from the notify
 * event, never from inside a call the caller made. The caller may close the
 * client or send the next message from any of its callbacks: c->depth keeps
 * the memory alive until our handler returns, and a handler looks at
 * c->state again after every call out.
 *
 * SECURITY: talks to a server on the network and trusts none of its bytes:
 * replies are read one bounded line at a time (smtp-client-reply.c), a line
 * longer than the limit fails the connection, every wait has a timer.
 */
#include "config.h"
#include "relay/smtp-client-private.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/un.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <openssl/crypto.h>

#include "lib/log.h"

#define DEFAULT_CONNECT_MS 30000
#define DEFAULT_COMMAND_MS 300000
#define DEFAULT_DATA_MS 600000

static void client_free(struct smtp_client *c)
{
    smtp_client_txn_free(&c->txn);
    if (c->bev != NULL)
        bufferevent_free(c->bev);
    event_free(c->timer);
    event_free(c->notify);
    SSL_CTX_free(c->tls_ctx);
    if (c->auth_pass != NULL)
        OPENSSL_cleanse(c->auth_pass, strlen(c->auth_pass));
    free(c->auth_pass);
    free(c->auth_user);
    free(c->helo_name);
    free(c->tls_name);
    free(c->rbuf);
    free(c->wbuf);
    free(c);
}

/* Every handler of ours ends here: the last one out frees a dead client. */
static void unwind(struct smtp_client *c)
{
    if (--c->depth == 0 && c->state == CLIENT_DEAD)
        client_free(c);
}

void smtp_client_arm_timer(struct smtp_client *c, unsigned ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};

    evtimer_add(c->timer, &tv);
}

void smtp_client_wait_reply(struct smtp_client *c, const char *phase)
{
    c->phase = phase;
    smtp_client_arm_timer(c, c->command_ms);
}

void smtp_client_printf(struct smtp_client *c, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    evbuffer_add_vprintf(bufferevent_get_output(c->bev), fmt, ap);
    va_end(ap);
}

void smtp_client_drop_connection(struct smtp_client *c)
{
    if (c->bev != NULL)
        bufferevent_free(c->bev);
    c->bev = NULL;
    evtimer_del(c->timer);
}

/* A reply without an enhanced code gets the class's generic one (RFC 3463
 * X.0.0), so that a DSN always has one to report. */
void smtp_client_status_fill(struct smtp_status *st)
{
    unsigned cls = st->code / 100;

    if (st->enhanced[0] == '\0' && (cls == 2 || cls == 4 || cls == 5))
        snprintf(st->enhanced, sizeof(st->enhanced), "%u.0.0", cls);
}

void smtp_client_fail_connect(struct smtp_client *c, const struct smtp_status *st)
{
    smtp_client_ready_cb *cb = c->ready_cb;
    struct smtp_status copy = *st;

    smtp_client_status_fill(&copy);
    log_info("connect to %s failed: %u %s %s", c->peer, copy.code, copy.enhanced, copy.text);
    c->ready_cb = NULL;
    smtp_client_drop_connection(c);
    c->state = CLIENT_DEAD; /* freed when the handler unwinds, after cb */
    if (cb != NULL)
        cb(c->ready_ctx, c, &copy);
}

void smtp_client_connected(struct smtp_client *c)
{
    smtp_client_ready_cb *cb = c->ready_cb;
    struct smtp_status ok = {.code = 0};

    evtimer_del(c->timer);
    c->state = CLIENT_READY;
    c->phase = "idle";
    c->ready_cb = NULL;
    log_debug("connected to %s%s", c->peer, c->tls ? " (TLS)" : "");
    if (cb != NULL)
        cb(c->ready_ctx, c, &ok);
}

/* The connection failed (st says how): what that means depends on where
 * we were. */
static void client_error(struct smtp_client *c, const struct smtp_status *st)
{
    switch (c->state) {
    case CLIENT_CONNECTING:
    case CLIENT_GREETING:
    case CLIENT_HELLO:
    case CLIENT_HELO:
    case CLIENT_STARTTLS:
    case CLIENT_HANDSHAKE:
    case CLIENT_AUTH:
        smtp_client_fail_connect(c, st);
        break;
    case CLIENT_ENVELOPE:
    case CLIENT_CONTENT:
    case CLIENT_DOT:
    case CLIENT_RSET:
        smtp_client_txn_break(c, st);
        break;
    case CLIENT_READY:
        log_debug("idle connection to %s closed: %s", c->peer, st->text);
        smtp_client_drop_connection(c);
        c->state = CLIENT_BROKEN;
        break;
    case CLIENT_QUIT:
        smtp_client_drop_connection(c);
        c->state = CLIENT_DEAD;
        break;
    case CLIENT_BROKEN:
    case CLIENT_DEAD:
        break;
    }
}

static void dispatch_reply(struct smtp_client *c, const struct smtp_status *r)
{
    struct smtp_status st;

    switch (c->state) {
    case CLIENT_GREETING:
    case CLIENT_HELLO:
    case CLIENT_HELO:
    case CLIENT_STARTTLS:
    case CLIENT_AUTH:
        smtp_client_hello_reply(c, r);
        break;
    case CLIENT_ENVELOPE:
    case CLIENT_CONTENT:
    case CLIENT_DOT:
    case CLIENT_RSET:
        smtp_client_txn_reply(c, r);
        break;
    case CLIENT_QUIT:
        smtp_client_drop_connection(c);
        c->state = CLIENT_DEAD;
        break;
    default:
        smtp_status_set(&st, 451, "4.5.0", "unexpected reply from %s while %s", c->peer, c->phase);
        client_error(c, &st);
        break;
    }
}

/* Reads lines until a reply is complete: 1 (in c->parser.status), 0 when
 * more input is needed, -1 for a malformed reply. */
static int read_reply(struct smtp_client *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    char line[SMTP_REPLY_LINE_MAX + 1];

    for (;;) {
        size_t eol_len = 0;
        struct evbuffer_ptr p = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_CRLF);
        int rc;

        if (p.pos < 0)
            return evbuffer_get_length(in) > SMTP_REPLY_LINE_MAX + 1 ? -1 : 0;
        if ((size_t)p.pos > SMTP_REPLY_LINE_MAX)
            return -1;
        if (c->parser_done) {
            smtp_reply_parser_init(&c->parser);
            c->parser_done = false;
        }
        evbuffer_remove(in, line, (size_t)p.pos);
        evbuffer_drain(in, eol_len);
        rc = smtp_reply_parser_line(&c->parser, line, (size_t)p.pos);
        if (rc != 0) {
            c->parser_done = true;
            return rc;
        }
    }
}

static bool reading(const struct smtp_client *c)
{
    return c->bev != NULL && c->state != CLIENT_DEAD && c->state != CLIENT_BROKEN &&
           c->state != CLIENT_CONNECTING && c->state != CLIENT_HANDSHAKE;
}

static void process_input(struct smtp_client *c)
{
    struct smtp_status st;

    while (reading(c)) {
        int rc = read_reply(c);

        if (rc == 0)
            break;
        if (rc < 0) {
            log_warning("malformed reply from %s while %s", c->peer, c->phase);
            smtp_status_set(&st, 451, "4.5.0", "malformed reply from %s while %s", c->peer,
                            c->phase);
            client_error(c, &st);
            break;
        }
        dispatch_reply(c, &c->parser.status);
    }
}

static void on_read(struct bufferevent *bev, void *arg)
{
    struct smtp_client *c = arg;

    c->depth++;
    if (bev == c->bev)
        process_input(c);
    unwind(c);
}

static void on_write(struct bufferevent *bev, void *arg)
{
    struct smtp_client *c = arg;

    c->depth++;
    if (bev == c->bev && c->state == CLIENT_CONTENT)
        smtp_client_content_pump(c);
    unwind(c);
}

static void io_failed(struct smtp_client *c, short what, int err)
{
    struct smtp_status st;

    if (c->state == CLIENT_HANDSHAKE) {
        smtp_client_tls_failed(c);
        return;
    }
    if (c->state == CLIENT_CONNECTING)
        smtp_status_set(&st, 451, "4.4.1", "connect to %s: %s", c->peer,
                        err != 0 ? strerror(err) : "connection failed");
    else
        smtp_status_set(&st, 451, "4.4.2", "lost connection with %s while %s%s", c->peer, c->phase,
                        (what & BEV_EVENT_ERROR) && err != 0 ? " (I/O error)" : "");
    client_error(c, &st);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    struct smtp_client *c = arg;
    int err = EVUTIL_SOCKET_ERROR();

    c->depth++;
    if (bev != c->bev) {
        /* an event of the plaintext bufferevent now under TLS: the filter's own follow */
    } else if (what & BEV_EVENT_CONNECTED) {
        if (c->state == CLIENT_CONNECTING) {
            c->state = CLIENT_GREETING;
            smtp_client_wait_reply(c, "waiting for the greeting");
        } else if (c->state == CLIENT_HANDSHAKE) {
            smtp_client_tls_done(c);
        }
    } else {
        process_input(c); /* the replies that came before the end */
        if (c->bev == bev)
            io_failed(c, what, err);
    }
    unwind(c);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct smtp_client *c = arg;
    struct smtp_status st;

    (void)fd;
    (void)what;
    c->depth++;
    if (c->state == CLIENT_CONNECTING)
        smtp_status_set(&st, 451, "4.4.1", "connect to %s: timed out", c->peer);
    else if (c->state == CLIENT_HANDSHAKE)
        smtp_status_set(&st, 451, "4.7.5", "TLS handshake with %s timed out", c->peer);
    else
        smtp_status_set(&st, 451, "4.4.2", "conversation with %s timed out while %s", c->peer,
                        c->phase);
    client_error(c, &st);
    unwind(c);
}

/* Outcomes decided without the network reach the caller from here. */
static void on_notify(evutil_socket_t fd, short what, void *arg)
{
    struct smtp_client *c = arg;

    (void)fd;
    (void)what;
    c->depth++;
    if (c->notify_connect) {
        c->notify_connect = false;
        smtp_client_fail_connect(c, &c->notify_status);
    } else if (c->txn.active) {
        smtp_client_txn_finish(c, c->state == CLIENT_READY);
    }
    unwind(c);
}

void smtp_client_set_callbacks(struct smtp_client *c)
{
    bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

/* A non-empty word of printable ASCII: safe on a command line. */
static bool word_ok(const char *s)
{
    if (s == NULL || *s == '\0')
        return false;
    for (; *s != '\0'; s++) {
        if (*s <= ' ' || *s >= 0x7f)
            return false;
    }
    return true;
}

static char *dup_or_null(const char *s)
{
    return s == NULL ? NULL : strdup(s);
}

static bool copy_config(struct smtp_client *c, const struct smtp_client_config *cfg)
{
    c->lmtp = cfg->lmtp;
    c->tls_mode = cfg->tls;
    c->auth_plaintext = cfg->auth_plaintext;
    c->connect_ms = cfg->connect_timeout_ms != 0 ? cfg->connect_timeout_ms : DEFAULT_CONNECT_MS;
    c->command_ms = cfg->command_timeout_ms != 0 ? cfg->command_timeout_ms : DEFAULT_COMMAND_MS;
    c->data_ms = cfg->data_timeout_ms != 0 ? cfg->data_timeout_ms : DEFAULT_DATA_MS;
    if (cfg->tls_ctx != NULL && SSL_CTX_up_ref(cfg->tls_ctx) == 1)
        c->tls_ctx = cfg->tls_ctx;
    c->helo_name = strdup(word_ok(cfg->helo_name) ? cfg->helo_name : "localhost");
    c->tls_name = dup_or_null(cfg->tls_name);
    if (cfg->auth_user != NULL && cfg->auth_user[0] != '\0' && cfg->auth_pass != NULL) {
        c->auth_user = strdup(cfg->auth_user);
        c->auth_pass = strdup(cfg->auth_pass);
        if (c->auth_user == NULL || c->auth_pass == NULL)
            return false;
    }
    return c->helo_name != NULL && (cfg->tls_name == NULL || c->tls_name != NULL) &&
           (cfg->tls_ctx == NULL || c->tls_ctx != NULL);
}

/* "name[192.0.2.1]:25", "name[/run/lmtp]" */
static void format_peer(struct smtp_client *c, const struct sockaddr *sa, const char *name)
{
    char addr[INET6_ADDRSTRLEN + 1] = "?";
    unsigned port = 0;

    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &sin->sin_addr, addr, sizeof(addr));
        port = ntohs(sin->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &sin6->sin6_addr, addr, sizeof(addr));
        port = ntohs(sin6->sin6_port);
    } else if (sa->sa_family == AF_UNIX) {
        const struct sockaddr_un *sun = (const struct sockaddr_un *)sa;
        snprintf(c->peer, sizeof(c->peer), "%s[%.*s]", name != NULL ? name : "local",
                 (int)sizeof(sun->sun_path), sun->sun_path);
        return;
    }
    snprintf(c->peer, sizeof(c->peer), "%s[%s]:%u", name != NULL ? name : addr, addr, port);
}

/* The peer's name comes from DNS: it goes into logs and DSNs only as
 * printable ASCII. */
static void sanitize_peer(struct smtp_client *c)
{
    for (char *p = c->peer; *p != '\0'; p++) {
        if (*p < ' ' || *p >= 0x7f)
            *p = '?';
    }
}

static struct smtp_client *client_new(struct event_base *base, const struct smtp_client_config *cfg,
                                      smtp_client_ready_cb *cb, void *ctx)
{
    struct smtp_client *c = calloc(1, sizeof(*c));

    if (c == NULL)
        return NULL;
    c->base = base;
    c->ready_cb = cb;
    c->ready_ctx = ctx;
    c->phase = "connecting";
    c->parser_done = true;
    c->timer = evtimer_new(base, on_timer, c);
    c->notify = event_new(base, -1, 0, on_notify, c);
    if (c->timer == NULL || c->notify == NULL || !copy_config(c, cfg)) {
        client_free(c);
        return NULL;
    }
    return c;
}

/* A socket of our own, so that TCP_NODELAY is set before the first byte:
 * commands are small writes, and Nagle against delayed ACKs costs ~40 ms
 * on each (see SERVICES.md). */
static int open_socket(const struct sockaddr *sa)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;

    if (fd >= 0 && (sa->sa_family == AF_INET || sa->sa_family == AF_INET6))
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

static int start_connect(struct smtp_client *c, const struct sockaddr *sa, socklen_t salen)
{
    int fd = open_socket(sa);

    if (fd < 0)
        return -1;
    c->bev = bufferevent_socket_new(c->base, fd, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (c->bev == NULL) {
        close(fd);
        return -1;
    }
    smtp_client_set_callbacks(c);
    if (bufferevent_socket_connect(c->bev, sa, (int)salen) < 0)
        return -1;
    c->state = CLIENT_CONNECTING;
    smtp_client_arm_timer(c, c->connect_ms);
    return 0;
}

struct smtp_client *smtp_client_connect(struct event_base *base, const struct sockaddr *sa,
                                        socklen_t salen, const char *peer_name,
                                        const struct smtp_client_config *cfg,
                                        smtp_client_ready_cb *cb, void *ctx)
{
    struct smtp_client *c = client_new(base, cfg, cb, ctx);

    if (c == NULL)
        return NULL;
    format_peer(c, sa, peer_name);
    sanitize_peer(c);
    if (c->tls_name == NULL && word_ok(peer_name)) /* verify the name we were sent to */
        c->tls_name = strdup(peer_name);
    if (start_connect(c, sa, salen) == 0)
        return c;
    /* reported from the loop, never inside this call */
    smtp_status_set(&c->notify_status, 451, "4.4.1", "connect to %s: %s", c->peer, strerror(errno));
    smtp_client_drop_connection(c);
    c->state = CLIENT_CONNECTING;
    c->notify_connect = true;
    event_active(c->notify, EV_TIMEOUT, 1);
    return c;
}

void smtp_client_close(struct smtp_client **_c)
{
    struct smtp_client *c = *_c;

    if (c == NULL)
        return;
    *_c = NULL;
    c->ready_cb = NULL;
    c->notify_connect = false;
    event_del(c->notify);
    smtp_client_txn_free(&c->txn); /* a pending result is not delivered */
    if (c->state == CLIENT_READY && c->bev != NULL) {
        smtp_client_printf(c, "QUIT\r\n");
        c->state = CLIENT_QUIT;
        c->phase = "sending QUIT";
        smtp_client_arm_timer(c, c->command_ms < CLIENT_QUIT_WAIT_MS ? c->command_ms
                                                                     : CLIENT_QUIT_WAIT_MS);
        return;
    }
    if (c->state == CLIENT_QUIT || c->state == CLIENT_DEAD)
        return;
    smtp_client_drop_connection(c);
    c->state = CLIENT_DEAD;
    if (c->depth == 0)
        client_free(c);
}

/*
 * worker — see worker.h. Accepts on the shared sockets, owns the sessions,
 * and stops in one of two ways: SIGTERM (sessions get 421 now, commits in
 * flight are waited for up to server.shutdown_grace) or drain (SIGUSR1 on
 * reload, or the master's pipe closing: no new sessions, the open ones go on
 * until they end).
 */
#include "config.h"
#include "gateway/worker.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "gateway/listener.h"
#include "gateway/server-config.h"
#include "gateway/smtp-filters.h"
#include "gateway/smtp-hooks.h"
#include "gateway/smtp-session-private.h"
#include "lib/spool.h"
#include "lib/dns.h"
#include "lib/log.h"
#include "lib/workpool.h"

struct accept_ctx {
    struct worker *w;
    const struct listener_socket *sock;
    struct evconnlistener *listener;
    struct event *resume; /* re-enables accepting after an accept error */
};

int worker_init(struct worker *w, const struct postern_config *cfg, unsigned index,
                struct limits *limits, char *error, size_t errsize)
{
    memset(w, 0, sizeof(*w));
    w->cfg = cfg;
    w->index = index;
    w->limits = limits;
    w->hooks = &smtp_hooks_accept_all;
    w->qmgr_fd = -1;
    if ((w->base = event_base_new()) == NULL) {
        snprintf(error, errsize, "cannot create the event loop");
        return -1;
    }
    if (spool_open(cfg->server.spool_dir, w->base, &w->spool, error, errsize) < 0)
        return -1;
    struct dns_config dc = {
        .nameservers = (const char *const *)cfg->dns.nameservers.items,
        .nameserver_count = cfg->dns.nameservers.count,
        .timeout_ms = (unsigned)cfg->dns.timeout,
        .attempts = (unsigned)cfg->dns.attempts,
        .cache_size = (size_t)cfg->dns.cache_size,
        .cache_max_ttl_s = (unsigned)(cfg->dns.cache_max_ttl / 1000),
    };
    if (dns_new(w->base, &dc, &w->dns, error, errsize) < 0)
        return -1;
    if (cfg->filtering.count > 0) {
        if (smtp_filters_new(w->base, w->dns, cfg, &w->filters, error, errsize) < 0)
            return -1;
        w->hooks = smtp_filters_hooks(w->filters);
    }
    if (cfg->passwd != NULL &&
        (w->auth_pool = workpool_create(w->base, (unsigned)cfg->auth.threads)) == NULL) {
        snprintf(error, errsize, "cannot start the password threads: %s", strerror(errno));
        return -1;
    }
    return 0;
}

void worker_free(struct worker *w)
{
    /* Sessions still open (the shutdown grace ran out) go first: they
     * detach from their AUTH checks and spool commits, which the pool and
     * the spool then settle and free. */
    while (w->sessions != NULL) {
        struct smtp_session *s = w->sessions;
        smtp_session_destroy(&s);
    }
    for (size_t i = 0; i < w->accepting_count; i++)
        evconnlistener_free(w->accepting[i]);
    free(w->accepting);
    w->accepting = NULL;
    w->accepting_count = 0;
    if (w->qmgr_fd >= 0)
        close(w->qmgr_fd);
    workpool_destroy(&w->auth_pool);
    smtp_filters_free(&w->filters);
    dns_free(&w->dns);
    spool_close(&w->spool);
    for (size_t i = 0; i < sizeof(w->signals) / sizeof(w->signals[0]); i++) {
        if (w->signals[i] != NULL)
            event_free(w->signals[i]);
    }
    if (w->parent_watch != NULL)
        event_free(w->parent_watch);
    if (w->stop_timer != NULL)
        event_free(w->stop_timer);
    if (w->base != NULL)
        event_base_free(w->base);
    memset(w, 0, sizeof(*w));
}

void worker_session_added(struct worker *w, struct smtp_session *s)
{
    s->next = w->sessions;
    s->prev = NULL;
    if (w->sessions != NULL)
        w->sessions->prev = s;
    w->sessions = s;
    w->session_count++;
    w->sessions_total++;
}

void worker_session_removed(struct worker *w, struct smtp_session *s)
{
    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        w->sessions = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    w->session_count--;
    if (w->stopping && w->session_count == 0)
        event_base_loopexit(w->base, NULL);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    struct accept_ctx *ctx = arg;
    struct bufferevent *bev;
    int one = 1;

    (void)l;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    /* Deferred callbacks: a write never calls back into the session (and
     * never frees it) from inside the code that wrote. */
    bev = bufferevent_socket_new(ctx->w->base, fd, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (bev == NULL) {
        close(fd);
        return;
    }
    smtp_session_new(ctx->w, ctx->sock, bev, sa, (socklen_t)salen);
}

static void on_accept_resume(evutil_socket_t fd, short what, void *arg)
{
    struct accept_ctx *ctx = arg;

    (void)fd;
    (void)what;
    if (!ctx->w->stopping)
        evconnlistener_enable(ctx->listener);
}

/* accept() failed for a reason other than a client gone or a signal: most
 * often EMFILE/ENFILE (out of descriptors). The pending connection stays in
 * the backlog, so the socket stays readable: without a pause the loop would
 * spin on accept (and log every failure). Stop accepting for a second. */
static void on_accept_error(struct evconnlistener *l, void *arg)
{
    struct accept_ctx *ctx = arg;
    int err = EVUTIL_SOCKET_ERROR();
    struct timeval tv = { 1, 0 };

    evconnlistener_disable(l);
    if (ctx->resume == NULL)
        ctx->resume = evtimer_new(ctx->w->base, on_accept_resume, ctx);
    if (ctx->resume == NULL) {
        evconnlistener_enable(l); /* out of memory: better spin than go deaf */
        return;
    }
    log_warning("listener %s: accept: %s; not accepting for 1 s", ctx->sock->settings->name,
                strerror(err));
    evtimer_add(ctx->resume, &tv);
}

static void stop_accepting(struct worker *w)
{
    for (size_t i = 0; i < w->accepting_count; i++)
        evconnlistener_disable(w->accepting[i]);
    w->stopping = true;
    if (w->session_count == 0)
        event_base_loopexit(w->base, NULL);
}

static void on_stop_timer(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;

    (void)fd;
    (void)what;
    log_warning("shutdown grace time over with %zu sessions open", w->session_count);
    event_base_loopexit(w->base, NULL);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct worker *w = arg;

    (void)what;
    if (sig == SIGTERM || sig == SIGINT) {
        long long ms = w->cfg->server.shutdown_grace;
        struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
        log_info("stopping: %zu sessions get 421", w->session_count);
        stop_accepting(w);
        for (struct smtp_session *s = w->sessions, *next; s != NULL; s = next) {
            next = s->next;
            smtp_session_shutdown(s);
        }
        w->stop_timer = evtimer_new(w->base, on_stop_timer, w);
        evtimer_add(w->stop_timer, &tv);
    } else if (sig == SIGUSR1) {
        log_info("draining: %zu sessions left", w->session_count);
        stop_accepting(w);
    }
}

static void on_parent(evutil_socket_t fd, short what, void *arg)
{
    char buf[64];

    (void)what;
    if (read(fd, buf, sizeof(buf)) == 0) {
        log_warning("master process gone: draining");
        event_del(((struct worker *)arg)->parent_watch);
        stop_accepting(arg);
    }
}

static int start_listeners(struct worker *w, const struct listener_socket *socks, size_t count,
                           struct accept_ctx *ctx)
{
    w->accepting = calloc(count, sizeof(*w->accepting));
    if (w->accepting == NULL)
        return -1;
    for (size_t i = 0; i < count; i++) {
        ctx[i].w = w;
        ctx[i].sock = &socks[i];
        w->accepting[i] = evconnlistener_new(w->base, on_accept, &ctx[i], 0, -1, socks[i].fd);
        if (w->accepting[i] == NULL)
            return -1;
        ctx[i].listener = w->accepting[i];
        evconnlistener_set_error_cb(w->accepting[i], on_accept_error);
        w->accepting_count++;
    }
    return 0;
}

int worker_run(struct worker *w, const struct listener_socket *socks, size_t count, int parent_fd)
{
    static const int sigs[] = { SIGTERM, SIGINT, SIGUSR1 };
    struct accept_ctx *ctx = calloc(count, sizeof(*ctx));

    if (ctx == NULL || start_listeners(w, socks, count, ctx) < 0) {
        log_error("cannot listen: %s", strerror(errno));
        free(ctx);
        return 1;
    }
    for (size_t i = 0; i < 3; i++) {
        w->signals[i] = evsignal_new(w->base, sigs[i], on_signal, w);
        event_add(w->signals[i], NULL);
    }
    if (parent_fd >= 0) {
        w->parent_watch = event_new(w->base, parent_fd, EV_READ | EV_PERSIST, on_parent, w);
        event_add(w->parent_watch, NULL);
    }
    event_base_dispatch(w->base);
    for (size_t i = 0; i < count; i++) {
        if (ctx[i].resume != NULL)
            event_free(ctx[i].resume);
    }
    free(ctx);
    return 0;
}

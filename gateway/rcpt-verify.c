/*
 * rcpt-verify — see rcpt-verify.h. A verification is: transport lookup →
 * (MX lookup →) address lookup → connect → probe → status. Every step can
 * fail into -1 ("unknown"); only a 5xx to RCPT says the recipient does not
 * exist (0), only a 2xx that it does (1).
 */
#include "config.h"
#include "gateway/rcpt-verify.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include <event2/event.h>

#include "gateway/server-config.h"
#include "lib/dns.h"
#include "lib/log.h"
#include "relay/smtp-client.h"
#include "relay/transport.h"

struct verify_job {
    struct rcpt_verifier *v;
    struct verify_job *prev, *next;
    char rcpt[1024];
    const struct transport_entry *entry;
    unsigned port;
    struct dns_query *query;
    struct smtp_client *client;
    struct smtp_client_config ccfg;
    struct smtp_client_msg msg;
    const char *rcpts[1];
    struct event *notify; /* reports a failure from the loop */
    filter_verify_cb *cb;
    void *ctx;
    int status;
    char reply[600];
};

struct rcpt_verifier {
    struct event_base *base;
    struct dns *dns;
    const struct postern_config *cfg;
    struct filter_verifier iface;
    struct verify_job *jobs;
};

static void job_free(struct verify_job *j)
{
    struct rcpt_verifier *v = j->v;

    if (j->prev != NULL)
        j->prev->next = j->next;
    else
        v->jobs = j->next;
    if (j->next != NULL)
        j->next->prev = j->prev;
    if (j->query != NULL)
        dns_query_cancel(j->query);
    smtp_client_close(&j->client);
    if (j->notify != NULL)
        event_free(j->notify);
    free(j);
}

static void job_report(struct verify_job *j)
{
    filter_verify_cb *cb = j->cb;
    void *ctx = j->ctx;
    int status = j->status;
    char reply[sizeof(j->reply)];

    snprintf(reply, sizeof(reply), "%s", j->reply);
    job_free(j);
    cb(ctx, status, reply);
}

static void on_notify(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    job_report(arg);
}

/* Fails the job from the loop (never inside verify()). */
static void job_fail(struct verify_job *j, const char *why)
{
    j->status = -1;
    snprintf(j->reply, sizeof(j->reply), "%s", why);
    event_active(j->notify, EV_TIMEOUT, 1);
}

static void on_sent(void *ctx, struct smtp_client *c, const struct smtp_client_result *res)
{
    struct verify_job *j = ctx;

    (void)c;
    j->status = res->outcome[0] == SMTP_RCPT_DELIVERED ? 1
                : res->outcome[0] == SMTP_RCPT_BOUNCED && res->remote[0] ? 0
                                                                         : -1;
    snprintf(j->reply, sizeof(j->reply), "%u %s %s", res->status[0].code,
             res->status[0].enhanced, res->status[0].text);
    job_report(j);
}

static void on_ready(void *ctx, struct smtp_client *c, const struct smtp_status *st)
{
    struct verify_job *j = ctx;

    if (st->code != 0) {
        j->client = NULL; /* freed by the client after this callback */
        j->status = -1;
        snprintf(j->reply, sizeof(j->reply), "%u %s", st->code, st->text);
        job_report(j);
        return;
    }
    smtp_client_send(c, &j->msg, on_sent, j);
}

static void connect_to(struct verify_job *j, const struct sockaddr *sa, socklen_t len,
                       const char *name)
{
    j->client = smtp_client_connect(j->v->base, sa, len, name, &j->ccfg, on_ready, j);
    if (j->client == NULL)
        job_fail(j, "cannot connect");
}

static void on_addrs(void *ctx, enum dns_status st, const struct dns_addr *a, size_t n)
{
    struct verify_job *j = ctx;
    struct sockaddr_storage ss;

    j->query = NULL;
    if (st != DNS_OK || n == 0) {
        job_fail(j, dns_status_name(st));
        return;
    }
    ss = a[0].sa;
    if (ss.ss_family == AF_INET)
        ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)j->port);
    else
        ((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)j->port);
    connect_to(j, (struct sockaddr *)&ss, a[0].len, j->entry->nexthop.host);
}

static void on_mx(void *ctx, enum dns_status st, const struct dns_mx *mx, size_t n)
{
    struct verify_job *j = ctx;
    const char *host = j->entry->nexthop.host; /* no MX: the domain itself */
    unsigned best = ~0u;

    j->query = NULL;
    if (st == DNS_OK) {
        for (size_t i = 0; i < n; i++) {
            if (mx[i].preference < best) {
                best = mx[i].preference;
                host = mx[i].host;
            }
        }
    } else if (st != DNS_NODATA) {
        job_fail(j, dns_status_name(st));
        return;
    }
    if (strcmp(host, ".") == 0) {
        job_fail(j, "null MX");
        return;
    }
    if ((j->query = dns_query_addr(j->v->dns, host, AF_UNSPEC, on_addrs, j)) == NULL)
        job_fail(j, "cannot query");
}

static void job_start(struct verify_job *j)
{
    const struct nexthop *nh = &j->entry->nexthop;
    struct sockaddr_un sun = { .sun_family = AF_UNIX };

    if (nh->kind == NEXTHOP_LOCAL) {
        job_fail(j, "local delivery cannot verify");
    } else if (nh->unix_socket) {
        if (strlen(nh->host) >= sizeof(sun.sun_path)) {
            job_fail(j, "socket path too long");
            return;
        }
        memcpy(sun.sun_path, nh->host, strlen(nh->host) + 1);
        connect_to(j, (struct sockaddr *)&sun, sizeof(sun), nh->host);
    } else if (nh->mx) {
        if ((j->query = dns_query_mx(j->v->dns, nh->host, on_mx, j)) == NULL)
            job_fail(j, "cannot query");
    } else if ((j->query = dns_query_addr(j->v->dns, nh->host, AF_UNSPEC, on_addrs, j)) == NULL) {
        job_fail(j, "cannot query");
    }
}

static void client_config(struct verify_job *j)
{
    const struct postern_config *cfg = j->v->cfg;
    const struct queue_settings *qs = &cfg->delivery.queue;
    const struct transport_entry *e = j->entry;

    j->ccfg = (struct smtp_client_config){
        .lmtp = e->nexthop.kind == NEXTHOP_LMTP,
        .tls = e->tls >= 0 ? (enum smtp_client_tls)e->tls : (enum smtp_client_tls)qs->tls,
        .tls_ctx = cfg->delivery.client_tls,
        .tls_name = e->tls_name != NULL ? e->tls_name : e->nexthop.host,
        .helo_name = qs->helo_name != NULL ? qs->helo_name : cfg->server.hostname,
        .auth_user = e->auth_user,
        .auth_pass = e->auth_password,
        .connect_timeout_ms = (unsigned)qs->connect_timeout,
        .command_timeout_ms = (unsigned)qs->command_timeout,
        .data_timeout_ms = (unsigned)qs->data_timeout,
    };
    j->rcpts[0] = j->rcpt;
    j->msg = (struct smtp_client_msg){
        .queue_id = "verify", .sender = "", .rcpt_count = 1, .rcpts = j->rcpts, .fd = -1,
        .probe = true};
}

static void *verify(void *vctx, const char *rcpt, filter_verify_cb *cb, void *ctx)
{
    struct rcpt_verifier *v = vctx;
    const char *at = strrchr(rcpt, '@');
    const struct transport_entry *e =
        at == NULL ? NULL : transport_lookup(&v->cfg->delivery.transports, at + 1);
    struct verify_job *j;

    if (e == NULL || strlen(rcpt) >= sizeof(j->rcpt) || (j = calloc(1, sizeof(*j))) == NULL)
        return NULL;
    if ((j->notify = event_new(v->base, -1, 0, on_notify, j)) == NULL) {
        free(j);
        return NULL;
    }
    j->v = v;
    j->entry = e;
    j->port = e->nexthop.port != 0 ? e->nexthop.port : 25;
    j->cb = cb;
    j->ctx = ctx;
    snprintf(j->rcpt, sizeof(j->rcpt), "%s", rcpt);
    j->next = v->jobs;
    if (v->jobs != NULL)
        v->jobs->prev = j;
    v->jobs = j;
    client_config(j);
    job_start(j);
    return j;
}

static void cancel(void *vctx, void *handle)
{
    (void)vctx;
    job_free(handle);
}

struct rcpt_verifier *rcpt_verifier_new(struct event_base *base, struct dns *dns,
                                        const struct postern_config *cfg)
{
    struct rcpt_verifier *v = calloc(1, sizeof(*v));

    if (v == NULL)
        return NULL;
    v->base = base;
    v->dns = dns;
    v->cfg = cfg;
    v->iface = (struct filter_verifier){.verify = verify, .cancel = cancel, .vctx = v};
    return v;
}

void rcpt_verifier_free(struct rcpt_verifier **vp)
{
    struct rcpt_verifier *v = *vp;

    if (v == NULL)
        return;
    *vp = NULL;
    while (v->jobs != NULL)
        job_free(v->jobs);
    free(v);
}

const struct filter_verifier *rcpt_verifier_iface(struct rcpt_verifier *v)
{
    return &v->iface;
}

/*
 * qmgr-deliver — one delivery attempt of a message: its pending recipients
 * are grouped by next hop into jobs; each destination runs at most
 * destination_concurrency jobs (and the qmgr at most concurrency in all),
 * resolves its next hop (MX, then A/AAAA, RFC 5321 §5), tries the
 * addresses in order and reuses idle connections. Every recipient of a
 * job ends DELIVERED, DEFERRED or BOUNCED; qmgr-finish.c settles them.
 */
#include "config.h"
#include "relay/qmgr-private.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <search.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/event.h>

#include "lib/dns.h"
#include "lib/log.h"

#define QJOB_MAX_ADDRS 20

static void dest_run(struct qdest *d);
static void connect_next(struct qjob *j);
static void run_waiting(const void *node, VISIT v, void *arg);
static void job_connect_fresh(struct qjob *j);
static void job_resolve(struct qjob *j);

static int strcmp_null(const char *a, const char *b)
{
    return a == b ? 0 : a == NULL ? -1 : b == NULL ? 1 : strcmp(a, b);
}

/* By next hop, then by the transport's client settings: two transports to
 * the same next hop with different TLS or AUTH settings are different
 * destinations, so that a connection set up for one (its certificate
 * check, its credentials) never carries the other's mail. */
static int cmp_dest(const void *a, const void *b)
{
    const struct transport_entry *x = ((const struct qdest *)a)->entry;
    const struct transport_entry *y = ((const struct qdest *)b)->entry;
    int c = strcmp(((const struct qdest *)a)->key, ((const struct qdest *)b)->key);
    int tx = x != NULL ? x->tls : -1, ty = y != NULL ? y->tls : -1;

    if (c != 0 || x == y)
        return c;
    if (tx != ty)
        return tx < ty ? -1 : 1;
    if ((c = strcmp_null(x != NULL ? x->tls_name : NULL, y != NULL ? y->tls_name : NULL)) != 0)
        return c;
    if ((c = strcmp_null(x != NULL ? x->auth_user : NULL, y != NULL ? y->auth_user : NULL)) != 0)
        return c;
    return strcmp_null(x != NULL ? x->auth_password : NULL, y != NULL ? y->auth_password : NULL);
}

static void client_config(struct qdest *d)
{
    const struct queue_settings *qs = &d->q->p->relay->queue;
    const struct transport_entry *e = d->entry;

    d->client_cfg = (struct smtp_client_config){
        .lmtp = d->nexthop.kind == NEXTHOP_LMTP,
        .tls = e != NULL && e->tls >= 0 ? (enum smtp_client_tls)e->tls
                                        : (enum smtp_client_tls)qs->tls,
        .tls_ctx = d->q->p->relay->client_tls,
        .tls_name = e != NULL && e->tls_name != NULL ? e->tls_name : d->nexthop.host,
        .helo_name = qs->helo_name != NULL ? qs->helo_name : d->q->p->hostname,
        .auth_user = e != NULL ? e->auth_user : NULL,
        .auth_pass = e != NULL ? e->auth_password : NULL,
        .connect_timeout_ms = (unsigned)qs->connect_timeout,
        .command_timeout_ms = (unsigned)qs->command_timeout,
        .data_timeout_ms = (unsigned)qs->data_timeout,
    };
}

static struct qdest *dest_get(struct qmgr *q, const struct transport_entry *e, const char *domain)
{
    struct qdest *d = calloc(1, sizeof(*d)), **found;
    const char *error;

    if (d == NULL)
        return NULL;
    if (e != NULL) {
        d->nexthop = e->nexthop;
    } else {
        char text[300];
        snprintf(text, sizeof(text), "smtp:%s", domain);
        if (nexthop_parse(text, &d->nexthop, &error) < 0)
            nexthop_parse("smtp:invalid.", &d->nexthop, &error);
    }
    snprintf(d->key, sizeof(d->key), "%s", d->nexthop.text);
    d->entry = e; /* part of the comparison */
    found = tsearch(d, &q->dests, cmp_dest);
    if (found == NULL || *found != d) {
        free(d);
        return found == NULL ? NULL : *found;
    }
    d->q = q;
    client_config(d);
    return d;
}

static void conn_free(struct qconn *c)
{
    if (c == NULL)
        return;
    if (c->idle_timer != NULL)
        event_free(c->idle_timer);
    smtp_client_close(&c->client);
    free(c);
}

static void dest_free(void *node)
{
    struct qdest *d = node;

    while (d->idle != NULL) {
        struct qconn *c = d->idle;
        d->idle = c->next;
        conn_free(c);
    }
    free(d);
}

void qmgr_dests_free(struct qmgr *q)
{
    tdestroy(q->dests, dest_free);
    q->dests = NULL;
}

static const char *rcpt_domain(const struct qmsg *m, const char *addr)
{
    const char *at = strrchr(addr, '@');

    return at != NULL ? at + 1 : m->q->p->hostname;
}

static void job_free(struct qjob *j)
{
    if (j->fd >= 0)
        close(j->fd);
    free(j->idx);
    free(j->rcpts);
    free(j->notify);
    free(j->orcpt);
    free(j->addrs);
    free(j->addr_names);
    free(j);
}

static void log_rcpt(const struct qjob *j, size_t k, const char *peer)
{
    const struct qmsg *m = j->msg;
    size_t i = j->idx[k];
    static const char *const names[] = { "sent", "deferred", "bounced" };
    struct timeval now, d;

    gettimeofday(&now, NULL);
    timersub(&now, &m->attempt_start, &d);
    log_info("%s: to=<%s>, relay=%s, delay=%ld.%02ld, dsn=%s, status=%s (%03u %s)", m->id,
             j->rcpts[k], peer[0] != '\0' ? peer : j->dest->key, (long)d.tv_sec,
             (long)d.tv_usec / 10000,
             m->status[i].enhanced[0] != '\0' ? m->status[i].enhanced : "-",
             names[m->outcome[i]], m->status[i].code, m->status[i].text);
}

/* Ends a job: outcomes are recorded, the slot is freed for the next. */
static void job_end(struct qjob *j, const char *peer)
{
    struct qmsg *m = j->msg;
    struct qdest *d = j->dest;
    struct qmgr *q = d->q;

    for (size_t k = 0; k < j->count; k++)
        log_rcpt(j, k, peer);
    job_free(j);
    d->active--;
    q->active--;
    if (--m->jobs_running == 0)
        qmgr_attempt_done(m);
    dest_run(d);
    if (q->waiting > 0)
        twalk_r(q->dests, run_waiting, NULL);
    qmgr_maybe_exit(q);
}

static void job_fail_all(struct qjob *j, enum smtp_rcpt_outcome o, const struct smtp_status *st)
{
    for (size_t k = 0; k < j->count; k++) {
        j->msg->outcome[j->idx[k]] = o;
        j->msg->status[j->idx[k]] = *st;
        free(j->msg->relay[j->idx[k]]);
        j->msg->relay[j->idx[k]] = NULL;
    }
    job_end(j, "");
}

static void on_idle_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct qconn *c = arg, **pp;

    (void)fd;
    (void)what;
    for (pp = &c->dest->idle; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    }
    conn_free(c);
}

static void park(struct qconn *c)
{
    struct qdest *d = c->dest;
    long long ms = d->q->p->relay->queue.idle_timeout;
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

    if (d->q->stopping || ms == 0) {
        conn_free(c);
        return;
    }
    if (c->idle_timer == NULL)
        c->idle_timer = evtimer_new(d->q->base, on_idle_timeout, c);
    evtimer_add(c->idle_timer, &tv);
    c->next = d->idle;
    d->idle = c;
}

/* A cached connection the server had closed fails before anything is
 * sent: that is not a delivery attempt, so the job gets a new connection. */
static bool stale_connection(const struct qconn *c, const struct smtp_client_result *r)
{
    if (c->sent == 0 || r->connection_usable)
        return false;
    for (size_t k = 0; k < r->rcpt_count; k++) {
        if (r->outcome[k] != SMTP_RCPT_DEFERRED || strcmp(r->status[k].enhanced, "4.4.2") != 0)
            return false;
    }
    return true;
}

static void on_sent(void *ctx, struct smtp_client *client, const struct smtp_client_result *r)
{
    struct qjob *j = ctx;
    struct qconn *c = j->conn;
    char peer[300];

    (void)client;
    if (!j->fresh_retry && stale_connection(c, r)) {
        j->fresh_retry = true;
        j->conn = NULL;
        conn_free(c);
        job_connect_fresh(j);
        return;
    }
    for (size_t k = 0; k < j->count && k < r->rcpt_count; k++) {
        size_t i = j->idx[k];
        j->msg->outcome[i] = r->outcome[k];
        j->msg->status[i] = r->status[k];
        free(j->msg->relay[i]); /* Remote-MTA in a DSN: only who really answered */
        j->msg->relay[i] = r->remote != NULL && r->remote[k] ? strdup(r->peer) : NULL;
    }
    snprintf(peer, sizeof(peer), "%s", r->peer);
    c->sent++;
    if (r->connection_usable &&
        c->sent < (unsigned)j->dest->q->p->relay->queue.messages_per_connection)
        park(c);
    else
        conn_free(c);
    job_end(j, peer);
}

static void send_job(struct qjob *j, struct qconn *c)
{
    j->conn = c;
    if (c->idle_timer != NULL)
        evtimer_del(c->idle_timer);
    smtp_client_send(c->client, &j->cmsg, on_sent, j);
}

static void on_ready(void *ctx, struct smtp_client *client, const struct smtp_status *st)
{
    struct qjob *j = ctx;
    struct qconn *c;

    if (st != NULL && st->code != 0) {
        j->last = *st; /* the client frees itself after this callback */
        connect_next(j);
        return;
    }
    if ((c = calloc(1, sizeof(*c))) == NULL) {
        smtp_client_close(&client);
        smtp_status_set(&j->last, 451, "4.3.0", "out of memory");
        connect_next(j);
        return;
    }
    c->client = client;
    c->dest = j->dest;
    send_job(j, c);
}

static void connect_next(struct qjob *j)
{
    struct dns_addr *a;
    char name[256];

    if (j->addr_next >= j->addr_count) {
        if (j->last.code == 0)
            smtp_status_set(&j->last, 451, "4.4.1", "no address to connect to");
        job_fail_all(j, SMTP_RCPT_DEFERRED, &j->last);
        return;
    }
    a = &j->addrs[j->addr_next];
    snprintf(name, sizeof(name), "%s", j->addr_names[j->addr_next]);
    j->addr_next++;
    if (smtp_client_connect(j->dest->q->base, (struct sockaddr *)&a->sa, a->len, name,
                            &j->dest->client_cfg, on_ready, j) == NULL) {
        smtp_status_set(&j->last, 451, "4.4.1", "cannot connect to %s", name);
        connect_next(j);
    }
}

static void add_addrs(struct qjob *j, const char *name, const struct dns_addr *a, size_t n)
{
    unsigned port = j->dest->nexthop.port;

    for (size_t i = 0; i < n && j->addr_count < QJOB_MAX_ADDRS; i++) {
        struct dns_addr *o = &j->addrs[j->addr_count];
        *o = a[i];
        if (o->sa.ss_family == AF_INET)
            ((struct sockaddr_in *)&o->sa)->sin_port = htons((uint16_t)port);
        else
            ((struct sockaddr_in6 *)&o->sa)->sin6_port = htons((uint16_t)port);
        snprintf(j->addr_names[j->addr_count], sizeof(j->addr_names[0]), "%s", name);
        j->addr_count++;
    }
}

static void resolve_next_mx(struct qjob *j);

static void on_addrs(void *ctx, enum dns_status st, const struct dns_addr *a, size_t n)
{
    struct qjob *j = ctx;
    const char *host = j->mx != NULL ? j->mx[j->mx_next - 1].host : j->dest->nexthop.host;

    j->query = NULL;
    if (st == DNS_OK)
        add_addrs(j, host, a, n);
    else if (st == DNS_TEMPFAIL || st == DNS_BADANSWER)
        smtp_status_set(&j->last, 451, "4.4.3", "Host %s: temporary DNS failure (%s)", host,
                        dns_status_name(st));
    else
        smtp_status_set(&j->last, 450, "4.4.4", "Host %s: no address record", host);
    if (j->mx != NULL && j->mx_next < j->mx_count) {
        resolve_next_mx(j);
        return;
    }
    connect_next(j);
}

static void resolve_next_mx(struct qjob *j)
{
    const char *host = j->mx[j->mx_next++].host;

    j->query = dns_query_addr(j->dest->q->dns, host, AF_UNSPEC, on_addrs, j);
    if (j->query == NULL) {
        smtp_status_set(&j->last, 451, "4.4.3", "Host %s: cannot query DNS", host);
        if (j->mx_next < j->mx_count)
            resolve_next_mx(j);
        else
            connect_next(j);
    }
}

static void on_mx(void *ctx, enum dns_status st, const struct dns_mx *mx, size_t n)
{
    struct qjob *j = ctx;
    const char *domain = j->dest->nexthop.host;
    struct smtp_status s;

    j->query = NULL;
    if (st == DNS_OK && n == 1 && strcmp(mx[0].host, ".") == 0) {
        smtp_status_set(&s, 556, "5.1.10", "Domain %s does not accept mail (null MX)", domain);
        job_fail_all(j, SMTP_RCPT_BOUNCED, &s);
    } else if (st == DNS_OK && n > 0 && (j->mx = calloc(n, sizeof(*mx))) != NULL) {
        memcpy(j->mx, mx, n * sizeof(*mx));
        j->mx_count = n;
        resolve_next_mx(j);
    } else if (st == DNS_NODATA) {
        j->query = dns_query_addr(j->dest->q->dns, domain, AF_UNSPEC, on_addrs, j);
        if (j->query == NULL)
            connect_next(j);
    } else {
        smtp_status_set(&s, 451, st == DNS_NXDOMAIN ? "4.1.2" : "4.4.3",
                        "Domain %s: %s", domain,
                        st == DNS_NXDOMAIN ? "not found in DNS" : "temporary DNS failure");
        job_fail_all(j, SMTP_RCPT_DEFERRED, &s);
    }
}

/* A literal next hop ("[192.0.2.1]" or a unix socket) needs no DNS. */
static bool literal_addr(struct qjob *j)
{
    const struct nexthop *nh = &j->dest->nexthop;
    struct dns_addr a = { .len = 0 };

    if (nh->unix_socket) {
        struct sockaddr_un *un = (struct sockaddr_un *)&a.sa;
        size_t plen = strlen(nh->host);
        un->sun_family = AF_UNIX;
        if (plen >= sizeof(un->sun_path))
            plen = sizeof(un->sun_path) - 1; /* the config check refuses longer paths */
        memcpy(un->sun_path, nh->host, plen);
        a.len = sizeof(*un);
        j->addrs[0] = a;
        snprintf(j->addr_names[0], sizeof(j->addr_names[0]), "%s", nh->host);
        j->addr_count = 1;
        return true;
    }
    struct sockaddr_in *in = (struct sockaddr_in *)&a.sa;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&a.sa;
    if (inet_pton(AF_INET, nh->host, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        a.len = sizeof(*in);
    } else if (inet_pton(AF_INET6, nh->host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        a.len = sizeof(*in6);
    } else {
        return false;
    }
    add_addrs(j, nh->host, &a, 1);
    return true;
}

static void job_resolve(struct qjob *j)
{
    const struct nexthop *nh = &j->dest->nexthop;
    struct smtp_status s;

    if (nh->kind == NEXTHOP_LOCAL) {
        smtp_status_set(&s, 450, "4.3.0", "local delivery is not available yet");
        job_fail_all(j, SMTP_RCPT_DEFERRED, &s);
    } else if (literal_addr(j)) {
        connect_next(j);
    } else if (nh->mx) {
        if ((j->query = dns_query_mx(j->dest->q->dns, nh->host, on_mx, j)) == NULL)
            connect_next(j);
    } else if ((j->query = dns_query_addr(j->dest->q->dns, nh->host, AF_UNSPEC, on_addrs, j)) ==
               NULL) {
        connect_next(j);
    }
}

/* A new connection: resolve the next hop and try its addresses. */
static void job_connect_fresh(struct qjob *j)
{
    j->addr_count = j->addr_next = 0;
    if (j->addrs == NULL)
        j->addrs = calloc(QJOB_MAX_ADDRS, sizeof(*j->addrs));
    if (j->addr_names == NULL)
        j->addr_names = calloc(QJOB_MAX_ADDRS, sizeof(*j->addr_names));
    if (j->addrs == NULL || j->addr_names == NULL) {
        struct smtp_status s;
        smtp_status_set(&s, 451, "4.3.0", "out of memory");
        job_fail_all(j, SMTP_RCPT_DEFERRED, &s);
        return;
    }
    job_resolve(j);
}

static void job_start(struct qjob *j)
{
    struct qdest *d = j->dest;
    struct qconn *c = d->idle;
    char path[4200];

    qmgr_message_path(d->q, j->msg->id, path, sizeof(path));
    j->fd = open(path, O_RDONLY | O_CLOEXEC);
    j->cmsg.fd = j->fd;
    if (j->fd < 0) {
        struct smtp_status s;
        smtp_status_set(&s, 451, "4.3.0", "cannot open the queue file: %s", strerror(errno));
        job_fail_all(j, SMTP_RCPT_DEFERRED, &s);
        return;
    }
    if (c != NULL) {
        d->idle = c->next;
        send_job(j, c);
        return;
    }
    job_connect_fresh(j);
}

static void dest_run(struct qdest *d)
{
    struct qmgr *q = d->q;
    const struct queue_settings *qs = &q->p->relay->queue;

    while (d->waiting_head != NULL && d->active < (unsigned)qs->destination_concurrency &&
           q->active < (unsigned)qs->concurrency) {
        struct qjob *j = d->waiting_head;
        d->waiting_head = j->next;
        if (d->waiting_head == NULL)
            d->waiting_tail = NULL;
        q->waiting--;
        d->active++;
        q->active++;
        job_start(j);
    }
}

static void run_waiting(const void *node, VISIT v, void *arg)
{
    struct qdest *d = *(struct qdest *const *)node;

    (void)arg;
    if ((v == postorder || v == leaf) && d->waiting_head != NULL)
        dest_run(d);
}

static struct qjob *job_new(struct qmsg *m, struct qdest *d)
{
    struct qjob *j = calloc(1, sizeof(*j));
    size_t n = m->qf->env->rcpt_count;

    if (j == NULL)
        return NULL;
    j->fd = -1;
    j->msg = m;
    j->dest = d;
    j->idx = calloc(n, sizeof(*j->idx));
    j->rcpts = calloc(n, sizeof(*j->rcpts));
    j->notify = calloc(n, sizeof(*j->notify));
    j->orcpt = calloc(n, sizeof(*j->orcpt));
    if (j->idx == NULL || j->rcpts == NULL || j->notify == NULL || j->orcpt == NULL) {
        job_free(j);
        return NULL;
    }
    return j;
}

static void job_add_rcpt(struct qjob *j, size_t i)
{
    const struct spool_rcpt *r = &j->msg->qf->env->rcpts[i];

    j->idx[j->count] = i;
    j->rcpts[j->count] = r->addr;
    j->notify[j->count] = r->notify;
    j->orcpt[j->count] = r->orcpt;
    j->count++;
}

static void job_fill_msg(struct qjob *j)
{
    const struct queue_file *qf = j->msg->qf;

    j->cmsg = (struct smtp_client_msg){
        .queue_id = j->msg->id,
        .sender = qf->env->sender,
        .rcpt_count = j->count,
        .rcpts = j->rcpts,
        .notify = j->notify,
        .orcpt = j->orcpt,
        .ret = qf->env->ret,
        .envid = qf->env->envid,
        .body = qf->env->body,
        .smtputf8 = qf->env->smtputf8,
        .fd = -1,
        .offset = qf->content_off,
        .length = qf->content_len,
        .add_headers = qf->env->add_headers,
    };
}

/* Groups the pending recipients into one job per destination. */
static size_t make_jobs(struct qmsg *m, struct qjob **jobs)
{
    const struct queue_file *qf = m->qf;
    size_t njobs = 0;

    for (size_t i = 0; i < qf->env->rcpt_count; i++) {
        if (qf->state[i] != QRCPT_PENDING)
            continue;
        const char *domain = rcpt_domain(m, qf->env->rcpts[i].addr);
        const struct transport_entry *e = transport_lookup(&m->q->p->relay->transports, domain);
        struct qdest *d = dest_get(m->q, e, domain);
        size_t k = 0;
        while (k < njobs && jobs[k]->dest != d)
            k++;
        if (d == NULL)
            continue; /* out of memory: this recipient waits for the next attempt */
        if (k == njobs) {
            struct qjob *j = job_new(m, d);
            if (j == NULL)
                continue;
            jobs[njobs++] = j;
        }
        job_add_rcpt(jobs[k], i);
    }
    return njobs;
}

static bool attempt_alloc(struct qmsg *m)
{
    size_t n = m->qf->env->rcpt_count;

    if (m->outcome == NULL) {
        m->outcome = calloc(n, sizeof(*m->outcome));
        m->status = calloc(n, sizeof(*m->status));
        m->relay = calloc(n, sizeof(*m->relay));
    }
    if (m->outcome == NULL || m->status == NULL || m->relay == NULL)
        return false;
    for (size_t i = 0; i < n; i++) {
        m->outcome[i] = SMTP_RCPT_DEFERRED;
        m->status[i].code = 0;
    }
    return true;
}

void qmgr_attempt(struct qmsg *m)
{
    struct qmgr *q = m->q;
    struct qjob **jobs;
    size_t njobs;

    char path[4200];

    if (q->stopping || m->jobs_running > 0)
        return;
    qmgr_message_path(q, m->id, path, sizeof(path));
    if (access(path, F_OK) < 0) {
        log_info("%s: no longer in the active queue", m->id);
        qmgr_message_free(m); /* held or deleted while an attempt was settling */
        return;
    }
    if (!attempt_alloc(m))
        return;
    jobs = calloc(m->qf->env->rcpt_count, sizeof(*jobs));
    if (jobs == NULL)
        return;
    gettimeofday(&m->attempt_start, NULL);
    njobs = make_jobs(m, jobs);
    m->jobs_running = (unsigned)njobs;
    for (size_t k = 0; k < njobs; k++) {
        struct qdest *d = jobs[k]->dest;
        job_fill_msg(jobs[k]);
        if (d->waiting_tail != NULL)
            d->waiting_tail->next = jobs[k];
        else
            d->waiting_head = jobs[k];
        d->waiting_tail = jobs[k];
        q->waiting++;
    }
    free(jobs);
    if (njobs == 0) {
        qmgr_attempt_done(m);
        return;
    }
    twalk_r(q->dests, run_waiting, NULL);
}

/*
 * dns-bridge — see dns-bridge.h. A question lives in one of two lists under
 * the bridge's mutex: queued (asked, not yet seen by the loop) and running
 * (its lib/dns query started); then it is done (the answer in it, out of
 * both lists) and its thread takes it. A thread that stops waiting frees a
 * queued question itself and marks a running one abandoned: the loop frees
 * that one when its answer comes (or dns_bridge_free cancels it).
 */
#include "config.h"
#include "filters/dns-bridge.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/eventfd.h>

#include <event2/event.h>

enum req_state { REQ_QUEUED, REQ_RUNNING, REQ_DONE };

struct dns_bridge_req {
    struct dns_bridge_req *prev, *next;
    struct dns_bridge *b;
    struct dns_bridge_question q; /* q.name points to name */
    char name[DNS_NAME_MAX + 1];
    enum req_state state;
    bool abandoned;          /* its thread stopped waiting */
    struct dns_query *query; /* the loop's, while running */
    struct dns_bridge_answer ans;
};

struct req_list {
    struct dns_bridge_req *head, *tail;
};

struct dns_bridge {
    struct event_base *base;
    struct dns *dns;
    int efd;
    struct event *ev;
    pthread_mutex_t lock;
    pthread_cond_t cond; /* CLOCK_MONOTONIC: an answer came, a cancel, the close */
    struct req_list queued, running;
    bool closing;
};

/* ---- lists (under the lock) ---- */

static void list_push(struct req_list *l, struct dns_bridge_req *r)
{
    r->next = NULL;
    r->prev = l->tail;
    if (l->tail != NULL)
        l->tail->next = r;
    else
        l->head = r;
    l->tail = r;
}

static void list_remove(struct req_list *l, struct dns_bridge_req *r)
{
    if (r->prev != NULL)
        r->prev->next = r->next;
    else
        l->head = r->next;
    if (r->next != NULL)
        r->next->prev = r->prev;
    else
        l->tail = r->prev;
    r->prev = r->next = NULL;
}

/* ---- answers ---- */

void dns_bridge_answer_free(struct dns_bridge_answer *a)
{
    for (size_t i = 0; a->items != NULL && i < a->n; i++)
        free(a->items[i]);
    free(a->items);
    free(a->addrs);
    a->items = NULL;
    a->addrs = NULL;
    a->n = 0;
}

/* Copies names into a; "." is left out when skip_root (a null MX). */
static int copy_items(struct dns_bridge_answer *a, const char *const *s, size_t n, bool skip_root)
{
    if (n == 0)
        return 0;
    if ((a->items = calloc(n, sizeof(*a->items))) == NULL)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (skip_root && strcmp(s[i], ".") == 0)
            continue;
        if ((a->items[a->n] = strdup(s[i])) == NULL)
            return -1;
        a->n++;
    }
    return 0;
}

/* On the loop: hands the answer to the waiting thread, or drops it with
 * the question when the thread has gone. */
static void req_finish(struct dns_bridge_req *r, struct dns_bridge_answer *ans)
{
    struct dns_bridge *b = r->b;

    if (ans->st == DNS_OK && ans->n == 0)
        ans->st = DNS_NODATA; /* only "." hosts, or nothing copied */
    pthread_mutex_lock(&b->lock);
    list_remove(&b->running, r);
    r->query = NULL;
    if (r->abandoned) {
        pthread_mutex_unlock(&b->lock);
        dns_bridge_answer_free(ans);
        free(r);
        return;
    }
    r->ans = *ans;
    r->state = REQ_DONE;
    pthread_cond_broadcast(&b->cond);
    pthread_mutex_unlock(&b->lock);
}

/* An answer copied, or DNS_TEMPFAIL when there is no memory for it. */
static void finish_items(struct dns_bridge_req *r, enum dns_status st, const char *const *s,
                         size_t n, bool skip_root)
{
    struct dns_bridge_answer ans = {.st = st};

    if (st == DNS_OK && copy_items(&ans, s, n, skip_root) < 0) {
        dns_bridge_answer_free(&ans);
        ans.st = DNS_TEMPFAIL;
    }
    req_finish(r, &ans);
}

static void on_txt(void *ctx, enum dns_status st, const char *const *txt, size_t n)
{
    finish_items(ctx, st, txt, n, false);
}

static void on_ptr(void *ctx, enum dns_status st, const char *const *names, size_t n)
{
    finish_items(ctx, st, names, n, false);
}

static void on_mx(void *ctx, enum dns_status st, const struct dns_mx *mx, size_t n)
{
    const char *hosts[DNS_MAX_RECORDS];

    if (n > DNS_MAX_RECORDS)
        n = DNS_MAX_RECORDS;
    for (size_t i = 0; st == DNS_OK && i < n; i++)
        hosts[i] = mx[i].host;
    finish_items(ctx, st, hosts, st == DNS_OK ? n : 0, true);
}

static void on_addr(void *ctx, enum dns_status st, const struct dns_addr *a, size_t n)
{
    struct dns_bridge_answer ans = {.st = st};

    if (st == DNS_OK && n > 0) {
        if ((ans.addrs = calloc(n, sizeof(*ans.addrs))) == NULL) {
            ans.st = DNS_TEMPFAIL;
        } else {
            memcpy(ans.addrs, a, n * sizeof(*a));
            ans.n = n;
        }
    }
    req_finish(ctx, &ans);
}

/* ---- the loop side ---- */

/* Starts a question's query. A question lib/dns will not ask (a name that
 * is no DNS name) gets DNS_NXDOMAIN: no such name can exist. */
static void req_start(struct dns_bridge *b, struct dns_bridge_req *r)
{
    struct dns_query *query = NULL;

    switch (r->q.kind) {
    case DNS_BRIDGE_A:
    case DNS_BRIDGE_AAAA:
        query = dns_query_addr(b->dns, r->name, r->q.kind == DNS_BRIDGE_A ? AF_INET : AF_INET6,
                               on_addr, r);
        break;
    case DNS_BRIDGE_MX:
        query = dns_query_mx(b->dns, r->name, on_mx, r);
        break;
    case DNS_BRIDGE_TXT:
        query = dns_query_txt(b->dns, r->name, on_txt, r);
        break;
    case DNS_BRIDGE_PTR:
        query = dns_query_ptr(b->dns, (const struct sockaddr *)&r->q.addr, on_ptr, r);
        break;
    }
    if (query == NULL) {
        struct dns_bridge_answer ans = {.st = DNS_NXDOMAIN};
        req_finish(r, &ans);
        return;
    }
    r->query = query; /* the loop's alone: threads never touch a running question's query */
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    struct dns_bridge *b = arg;
    uint64_t count;

    (void)what;
    if (read(fd, &count, sizeof(count)) < 0 && errno != EAGAIN && errno != EINTR)
        return;
    for (;;) {
        struct dns_bridge_req *r;

        pthread_mutex_lock(&b->lock);
        r = b->queued.head;
        if (r != NULL) {
            list_remove(&b->queued, r);
            r->state = REQ_RUNNING;
            list_push(&b->running, r);
        }
        pthread_mutex_unlock(&b->lock);
        if (r == NULL)
            break;
        req_start(b, r);
    }
}

int dns_bridge_new(struct event_base *base, struct dns *dns, struct dns_bridge **bridge_r,
                   char *error, size_t errsize)
{
    struct dns_bridge *b = calloc(1, sizeof(*b));
    pthread_condattr_t attr;

    *bridge_r = NULL;
    if (b == NULL) {
        snprintf(error, errsize, "dns bridge: out of memory");
        return -1;
    }
    b->base = base;
    b->dns = dns;
    pthread_mutex_init(&b->lock, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&b->cond, &attr);
    pthread_condattr_destroy(&attr);
    b->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (b->efd >= 0)
        b->ev = event_new(base, b->efd, EV_READ | EV_PERSIST, on_wake, b);
    if (b->ev == NULL || event_add(b->ev, NULL) < 0) {
        snprintf(error, errsize, "dns bridge: %s", b->efd < 0 ? strerror(errno) : "event_new");
        dns_bridge_free(&b);
        return -1;
    }
    *bridge_r = b;
    return 0;
}

void dns_bridge_close(struct dns_bridge *b)
{
    pthread_mutex_lock(&b->lock);
    b->closing = true;
    pthread_cond_broadcast(&b->cond);
    pthread_mutex_unlock(&b->lock);
}

void dns_bridge_cancel(struct dns_bridge *b, atomic_bool *flag)
{
    pthread_mutex_lock(&b->lock);
    atomic_store(flag, true);
    pthread_cond_broadcast(&b->cond);
    pthread_mutex_unlock(&b->lock);
}

void dns_bridge_free(struct dns_bridge **bp)
{
    struct dns_bridge *b = *bp;
    struct dns_bridge_req *r, *next;

    if (b == NULL)
        return;
    *bp = NULL;
    /* no thread asks any more: the lists are the loop's */
    for (r = b->running.head; r != NULL; r = next) {
        next = r->next;
        if (r->query != NULL)
            dns_query_cancel(r->query); /* its callback never runs */
        free(r);
    }
    for (r = b->queued.head; r != NULL; r = next) {
        next = r->next;
        free(r);
    }
    if (b->ev != NULL)
        event_free(b->ev);
    if (b->efd >= 0)
        close(b->efd);
    pthread_cond_destroy(&b->cond);
    pthread_mutex_destroy(&b->lock);
    free(b);
}

/* ---- the threads' side ---- */

static bool stop_waiting(const struct dns_bridge *b, const atomic_bool *cancelled)
{
    return b->closing || (cancelled != NULL && atomic_load(cancelled));
}

/* Wakes the loop; an eventfd write fails only when the counter would
 * overflow, and then a wake-up is pending anyway. */
static void bridge_wake(struct dns_bridge *b)
{
    uint64_t one = 1;
    ssize_t ret;

    do {
        ret = write(b->efd, &one, sizeof(one));
    } while (ret < 0 && errno == EINTR);
}

int dns_bridge_ask(struct dns_bridge *b, const struct dns_bridge_question *q,
                   const struct timespec *deadline, const atomic_bool *cancelled,
                   struct dns_bridge_answer *out)
{
    struct dns_bridge_req *r;
    bool timed_out = false;

    memset(out, 0, sizeof(*out));
    if (q->kind != DNS_BRIDGE_PTR && (q->name == NULL || strlen(q->name) > DNS_NAME_MAX)) {
        out->st = DNS_NXDOMAIN;
        return 0;
    }
    if ((r = calloc(1, sizeof(*r))) == NULL)
        return -1;
    r->b = b;
    r->q = *q;
    if (q->kind != DNS_BRIDGE_PTR)
        strcpy(r->name, q->name);
    r->q.name = r->name;
    pthread_mutex_lock(&b->lock);
    if (stop_waiting(b, cancelled)) {
        pthread_mutex_unlock(&b->lock);
        free(r);
        out->st = DNS_CANCELLED;
        return 0;
    }
    if (b->queued.head == NULL)
        bridge_wake(b);
    list_push(&b->queued, r);
    while (r->state != REQ_DONE && !stop_waiting(b, cancelled)) {
        if (pthread_cond_timedwait(&b->cond, &b->lock, deadline) == ETIMEDOUT) {
            timed_out = r->state != REQ_DONE;
            break;
        }
    }
    if (r->state == REQ_DONE) {
        *out = r->ans;
        pthread_mutex_unlock(&b->lock);
        free(r);
        return 0;
    }
    if (r->state == REQ_QUEUED) {
        list_remove(&b->queued, r);
        free(r);
    } else {
        r->abandoned = true; /* the loop frees it */
    }
    pthread_mutex_unlock(&b->lock);
    out->st = timed_out ? DNS_TEMPFAIL : DNS_CANCELLED;
    out->timed_out = timed_out;
    return 0;
}

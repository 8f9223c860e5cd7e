/*
 * kv — see kv.h. The front: validates and copies each request, arms its
 * timer, hands it to the back end (kv-backend.h) and delivers the result from
 * the request's own event, so that callbacks never run inside a kv_* call,
 * inside hiredis or inside a workpool completion (kv_free from a callback is
 * then always safe).
 *
 * A request is reference-counted: one reference for the front while it is
 * pending, one for the back end until it settles the request. The front
 * finishes a request exactly once (result delivered, timeout, kv_cancel or
 * kv_free); whatever the back end reports afterwards is dropped.
 *
 * Trusts its caller to stay on the loop thread.
 */
#include "config.h"
#include "lib/kv.h"
#include "lib/kv-backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#define KV_DEFAULT_TIMEOUT_MS 1000

struct kv {
    struct event_base *base;
    const struct kv_backend_ops *ops;
    void *be;
    struct timeval timeout;
    struct kv_req *pending; /* doubly linked, front's reference */
    bool dying;
};

const char *kv_status_name(enum kv_status st)
{
    switch (st) {
    case KV_OK:
        return "ok";
    case KV_NOTFOUND:
        return "notfound";
    case KV_ERROR:
        return "error";
    case KV_TIMEOUT:
        return "timeout";
    case KV_CANCELLED:
        return "cancelled";
    }
    return "unknown";
}

uint64_t kv_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int kv_new(struct event_base *base, const struct kv_config *cfg, struct kv **kv_r, char *error,
           size_t errsize)
{
    struct kv *kv = calloc(1, sizeof(*kv));
    unsigned ms = cfg->timeout_ms != 0 ? cfg->timeout_ms : KV_DEFAULT_TIMEOUT_MS;
    int rc;

    if (kv == NULL) {
        snprintf(error, errsize, "out of memory");
        return -1;
    }
    kv->base = base;
    kv->timeout.tv_sec = ms / 1000;
    kv->timeout.tv_usec = (ms % 1000) * 1000;
    switch (cfg->backend) {
    case KV_BACKEND_LMDB:
        rc = kv_lmdb_open(base, cfg, &kv->be, &kv->ops, error, errsize);
        break;
    case KV_BACKEND_REDIS:
        rc = kv_redis_open(base, cfg, &kv->be, &kv->ops, error, errsize);
        break;
    default:
        snprintf(error, errsize, "unknown kv back end %d", (int)cfg->backend);
        rc = -1;
    }
    if (rc < 0) {
        free(kv);
        return -1;
    }
    *kv_r = kv;
    return 0;
}

static void kv_req_unref(struct kv_req *req)
{
    if (--req->refs > 0)
        return;
    free(req->key);
    free(req->value);
    free(req->res_value);
    free(req);
}

/* Takes req off the pending list and stops its event: it is finished. */
static void kv_req_finish(struct kv_req *req)
{
    struct kv *kv = req->kv;

    if (req->prev != NULL)
        req->prev->next = req->next;
    else
        kv->pending = req->next;
    if (req->next != NULL)
        req->next->prev = req->prev;
    req->prev = req->next = NULL;
    event_free(req->ev);
    req->ev = NULL;
    req->finished = true;
}

/* The request's event: a result the back end posted, or the timeout. */
static void kv_req_fire(evutil_socket_t fd, short what, void *arg)
{
    struct kv_req *req = arg;
    struct kv_result res = {.status = KV_TIMEOUT};

    (void)fd;
    (void)what;
    if (req->has_result)
        res = req->res;
    kv_req_finish(req);
    req->cb(req->ctx, &res);
    kv_req_unref(req);
}

void kv_req_complete(struct kv_req *req, const struct kv_result *res)
{
    if (!req->finished && !req->has_result) {
        req->res = *res;
        if (res->value != NULL && res->value_len > 0) {
            req->res_value = malloc(res->value_len);
            if (req->res_value != NULL) {
                memcpy(req->res_value, res->value, res->value_len);
                req->res.value = req->res_value;
            } else {
                req->res = (struct kv_result){.status = KV_ERROR};
            }
        } else if (res->status == KV_OK && req->op == KV_OP_GET) {
            req->res.value = "";
        }
        req->has_result = true;
        event_active(req->ev, EV_TIMEOUT, 1);
    }
    kv_req_unref(req);
}

void kv_req_fail(struct kv_req *req, enum kv_status st)
{
    struct kv_result res = {.status = st};

    kv_req_complete(req, &res);
}

static struct kv_req *kv_req_new(struct kv *kv, enum kv_op op, const char *key, kv_cb *cb,
                                 void *ctx)
{
    size_t len = key != NULL ? strlen(key) : 0;
    struct kv_req *req;

    if (kv == NULL || kv->dying || cb == NULL ||
        (op != KV_OP_PURGE && (len == 0 || len > KV_KEY_MAX)))
        return NULL;
    req = calloc(1, sizeof(*req));
    if (req == NULL)
        return NULL;
    req->key = strdup(key != NULL ? key : "");
    req->ev = evtimer_new(kv->base, kv_req_fire, req);
    if (req->key == NULL || req->ev == NULL) {
        if (req->ev != NULL)
            event_free(req->ev);
        free(req->key);
        free(req);
        return NULL;
    }
    req->op = op;
    req->key_len = len;
    req->kv = kv;
    req->cb = cb;
    req->ctx = ctx;
    return req;
}

/* Links, arms and hands over a request built by kv_req_new. */
static struct kv_req *kv_req_start(struct kv_req *req)
{
    struct kv *kv = req->kv;

    req->refs = 2;
    req->next = kv->pending;
    if (kv->pending != NULL)
        kv->pending->prev = req;
    kv->pending = req;
    evtimer_add(req->ev, &kv->timeout);
    kv->ops->submit(kv->be, req);
    return req;
}

struct kv_req *kv_get(struct kv *kv, const char *key, kv_cb *cb, void *ctx)
{
    struct kv_req *req = kv_req_new(kv, KV_OP_GET, key, cb, ctx);

    return req != NULL ? kv_req_start(req) : NULL;
}

struct kv_req *kv_set(struct kv *kv, const char *key, const void *value, size_t value_len,
                      uint64_t ttl_ms, kv_cb *cb, void *ctx)
{
    struct kv_req *req;

    if (value_len > KV_VALUE_MAX || (value == NULL && value_len > 0))
        return NULL;
    req = kv_req_new(kv, KV_OP_SET, key, cb, ctx);
    if (req == NULL)
        return NULL;
    req->value = malloc(value_len + 1);
    if (req->value == NULL) {
        req->refs = 1;
        event_free(req->ev);
        kv_req_unref(req);
        return NULL;
    }
    if (value_len > 0)
        memcpy(req->value, value, value_len);
    req->value[value_len] = '\0';
    req->value_len = value_len;
    req->ttl_ms = ttl_ms;
    return kv_req_start(req);
}

struct kv_req *kv_incr(struct kv *kv, const char *key, int64_t delta, uint64_t ttl_ms, kv_cb *cb,
                       void *ctx)
{
    struct kv_req *req = kv_req_new(kv, KV_OP_INCR, key, cb, ctx);

    if (req == NULL)
        return NULL;
    req->delta = delta;
    req->ttl_ms = ttl_ms;
    return kv_req_start(req);
}

struct kv_req *kv_take(struct kv *kv, const char *key, double capacity, double refill_per_sec,
                       double cost, kv_cb *cb, void *ctx)
{
    struct kv_req *req;

    if (!(capacity > 0) || !(refill_per_sec > 0) || !(cost >= 0) || capacity > 1e15 ||
        cost > 1e15 || refill_per_sec > 1e15)
        return NULL;
    req = kv_req_new(kv, KV_OP_TAKE, key, cb, ctx);
    if (req == NULL)
        return NULL;
    req->capacity = capacity;
    req->refill = refill_per_sec;
    req->cost = cost;
    return kv_req_start(req);
}

struct kv_req *kv_del(struct kv *kv, const char *key, kv_cb *cb, void *ctx)
{
    struct kv_req *req = kv_req_new(kv, KV_OP_DEL, key, cb, ctx);

    return req != NULL ? kv_req_start(req) : NULL;
}

struct kv_req *kv_purge(struct kv *kv, kv_cb *cb, void *ctx)
{
    struct kv_req *req = kv_req_new(kv, KV_OP_PURGE, NULL, cb, ctx);

    return req != NULL ? kv_req_start(req) : NULL;
}

void kv_cancel(struct kv_req *req)
{
    if (req == NULL || req->finished)
        return;
    kv_req_finish(req);
    kv_req_unref(req);
}

void kv_free(struct kv **kvp)
{
    struct kv *kv = kvp != NULL ? *kvp : NULL;
    struct kv_result res = {.status = KV_CANCELLED};

    if (kv == NULL)
        return;
    *kvp = NULL;
    kv->dying = true;
    while (kv->pending != NULL) {
        struct kv_req *req = kv->pending;

        kv_req_finish(req);
        req->cb(req->ctx, &res);
        kv_req_unref(req);
    }
    kv->ops->destroy(kv->be);
    free(kv);
}

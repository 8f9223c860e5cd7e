/*
 * kv-backend — the contract between lib/kv.c (the front) and its back ends
 * (kv-lmdb.c, kv-redis.c). Private to lib/kv*.c.
 *
 * The front owns every request: it copies the arguments, arms the timer,
 * and delivers the callback from its own event, so back ends never call user
 * code and user code never runs inside hiredis or the workpool. A back end
 * holds one reference on each request it was given and settles it exactly
 * once with kv_req_complete(), on the loop thread, even when the front has
 * already finished the request (timeout, cancel, kv_free): then the call only
 * drops the reference. The request fields below are read-only for back ends.
 */
#ifndef POSTERN_KV_BACKEND_H
#define POSTERN_KV_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/kv.h"

enum kv_op { KV_OP_GET, KV_OP_SET, KV_OP_INCR, KV_OP_TAKE, KV_OP_DEL, KV_OP_PURGE };

struct kv_req {
    enum kv_op op;
    char *key; /* NUL-terminated copy */
    size_t key_len;
    unsigned char *value; /* set */
    size_t value_len;
    uint64_t ttl_ms; /* set, incr */
    int64_t delta;   /* incr */
    double capacity; /* take */
    double refill;
    double cost;
    /* The front's; back ends do not touch these. */
    struct kv *kv;
    struct kv_req *prev;
    struct kv_req *next;
    kv_cb *cb;
    void *ctx;
    struct event *ev; /* the timeout, and the delivery of a result */
    unsigned refs;
    bool finished; /* delivered, cancelled or timed out */
    bool has_result;
    struct kv_result res;
    unsigned char *res_value;
};

struct kv_backend_ops {
    /* Takes a reference on req; settles it later with kv_req_complete (it
     * may do so inside this call: the front defers the delivery). */
    void (*submit)(void *be, struct kv_req *req);
    /* Settles every request it still holds, then frees the back end. */
    void (*destroy)(void *be);
};

/* Loop thread only. res->value is copied. Drops the back end's reference. */
void kv_req_complete(struct kv_req *req, const struct kv_result *res);
/* A kv_req_complete with just a status. */
void kv_req_fail(struct kv_req *req, enum kv_status st);

int kv_lmdb_open(struct event_base *base, const struct kv_config *cfg, void **be_r,
                 const struct kv_backend_ops **ops_r, char *error, size_t errsize);
int kv_redis_open(struct event_base *base, const struct kv_config *cfg, void **be_r,
                  const struct kv_backend_ops **ops_r, char *error, size_t errsize);

/* Wall clock in milliseconds (LMDB expiry and buckets, shared across processes). */
uint64_t kv_now_ms(void);

#endif

/*
 * kv — Postern's key-value state store (greylisting triplets, rate-limit
 * buckets, DHA counters, verification cache): one asynchronous interface
 * with two back ends, embedded LMDB (the default, one node) and Redis
 * through hiredis's libevent adapter (several gateways sharing state).
 *
 * Owned by one event loop: every call is made on the loop thread of the
 * event_base given to kv_new, and every request completes through its
 * callback on that loop, never inside the call that started it. Each
 * request has a timer (kv_config.timeout_ms): a store that is down or hangs
 * costs the caller at most that long, then KV_TIMEOUT; a late answer is
 * dropped. Atomic operations (incr, take) are atomic across every process
 * and gateway sharing the store: a Redis Lua script, an LMDB write
 * transaction.
 *
 * Trusts its caller for keys and values (bounded by KV_KEY_MAX and
 * KV_VALUE_MAX, binary-safe); trusts nothing a Redis server or the LMDB file
 * returns beyond its type and length. One kv handle per LMDB path per
 * process (LMDB's rule); several processes may share a path. The process
 * must ignore SIGPIPE (hiredis writes with write(2)).
 */
#ifndef POSTERN_KV_H
#define POSTERN_KV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct kv;
struct kv_req;

#define KV_KEY_MAX 400           /* octets, with the Redis prefix */
#define KV_VALUE_MAX (64 * 1024) /* octets */

enum kv_backend {
    KV_BACKEND_LMDB,
    KV_BACKEND_REDIS,
};

struct kv_config {
    enum kv_backend backend;
    unsigned timeout_ms; /* per request; 0 = 1000 */
    /* LMDB: a directory (created 0700 if missing) holding data.mdb and lock.mdb. */
    const char *lmdb_dir;
    size_t lmdb_map_size; /* 0 = 256 MiB */
    bool lmdb_nosync;     /* no fsync on commit: faster, a power loss may lose state */
    /* Redis: "host:port" (IPv4 literal or name, IPv6 as "[addr]:port") or "/path/to/socket". */
    const char *redis_address;
    const char *redis_password; /* NULL: no AUTH */
    unsigned redis_db;          /* SELECT when not 0 */
    const char *redis_prefix;   /* prepended to every key; NULL = none */
};

/* Result status, closed set. */
enum kv_status {
    KV_OK,
    KV_NOTFOUND,  /* get/del: no such key, or it has expired */
    KV_ERROR,     /* store unreachable, refused, wrong type, map full, ... */
    KV_TIMEOUT,   /* no answer within timeout_ms */
    KV_CANCELLED, /* kv_free with the request pending */
};

struct kv_result {
    enum kv_status status;
    const void *value; /* get: the bytes, valid during the callback only */
    size_t value_len;
    int64_t number; /* incr: the new value; purge: entries removed */
    bool allowed;   /* take: the cost was taken */
    double tokens;  /* take: tokens left after this request */
};

typedef void kv_cb(void *ctx, const struct kv_result *res);

/* Returns 0 and *kv_r, or -1 with error (LMDB: the directory cannot be
 * created, opened or written; Redis: a bad address). A Redis server that is
 * down is not an error here: requests fail with KV_ERROR until it is back. */
int kv_new(struct event_base *base, const struct kv_config *cfg, struct kv **kv_r, char *error,
           size_t errsize);
/* Every pending request's callback runs (inside this call) with
 * KV_CANCELLED. NULL-safe, clears *kv. May be called from a kv callback. */
void kv_free(struct kv **kv);

/*
 * Each returns a handle usable with kv_cancel until its callback has run, or
 * NULL when the request could not start (bad arguments, no memory, kv being
 * freed): the callback is then never called. Keys are 1..KV_KEY_MAX octets.
 * ttl_ms 0 means no expiry.
 */
struct kv_req *kv_get(struct kv *kv, const char *key, kv_cb *cb, void *ctx);
struct kv_req *kv_set(struct kv *kv, const char *key, const void *value, size_t value_len,
                      uint64_t ttl_ms, kv_cb *cb, void *ctx);
/* Adds delta to a decimal integer value (absent = 0). ttl_ms is applied only
 * when the increment creates the key (Redis INCRBY + PEXPIRE on a new key). */
struct kv_req *kv_incr(struct kv *kv, const char *key, int64_t delta, uint64_t ttl_ms, kv_cb *cb,
                       void *ctx);
/* Token bucket: a new bucket is full (capacity); it refills refill_per_sec
 * tokens per second up to capacity; the request takes cost tokens when that
 * many are there (allowed) and takes none otherwise. Time is the server's
 * (Redis TIME) or the host's wall clock (LMDB). capacity > 0,
 * refill_per_sec > 0, 0 <= cost. The bucket expires once it would be full. */
struct kv_req *kv_take(struct kv *kv, const char *key, double capacity, double refill_per_sec,
                       double cost, kv_cb *cb, void *ctx);
/* KV_OK when a key was removed, KV_NOTFOUND when there was none. */
struct kv_req *kv_del(struct kv *kv, const char *key, kv_cb *cb, void *ctx);
/* Removes expired entries (LMDB; Redis expires by itself: number 0). */
struct kv_req *kv_purge(struct kv *kv, kv_cb *cb, void *ctx);

/* After this the request's callback is never called. */
void kv_cancel(struct kv_req *req);

const char *kv_status_name(enum kv_status st);

#endif

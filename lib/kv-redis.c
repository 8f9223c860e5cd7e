/*
 * kv-redis — the shared back end of lib/kv: one hiredis async connection
 * on the owner's event_base (adapters/libevent.h), for several gateways
 * that share rate limits and greylisting state.
 *
 * Requests are pipelined on the connection; AUTH and SELECT go first after
 * every connect. While there is no connection a request fails at once
 * (KV_ERROR), and a timer reconnects with a doubling backoff
 * (KV_REDIS_BACKOFF_MIN..MAX ms). hiredis 0.14 has no timeout for async
 * commands: the front's timer per request gives the caller KV_TIMEOUT, and
 * the late reply only drops the back end's reference. incr and take are Lua
 * scripts (EVAL), so each is atomic on the server; take reads the server's
 * TIME so that gateways with skewed clocks share one bucket correctly.
 *
 * Trusts nothing in replies beyond hiredis's parser: a reply of an
 * unexpected type is KV_ERROR.
 */
#include "config.h"
#include "lib/kv-backend.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libevent.h>

#define KV_REDIS_BACKOFF_MIN 50
#define KV_REDIS_BACKOFF_MAX 2000
#define KV_REDIS_ARGS 8
#define KV_REDIS_NUM 64

/* KEYS[1]; ARGV: delta, ttl_ms (0 = none). TTL only on a new key. */
static const char kv_redis_incr_lua[] =
    "local new = redis.call('EXISTS', KEYS[1]) == 0\n"
    "local v = redis.call('INCRBY', KEYS[1], ARGV[1])\n"
    "if new and tonumber(ARGV[2]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end\n"
    "return v\n";

/* KEYS[1]; ARGV: capacity, refill per second, cost. Returns {allowed, tokens}. */
static const char kv_redis_take_lua[] =
    "local cap = tonumber(ARGV[1])\n"
    "local rate = tonumber(ARGV[2])\n"
    "local cost = tonumber(ARGV[3])\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local s = redis.call('HMGET', KEYS[1], 't', 'ts')\n"
    "local tokens = tonumber(s[1])\n"
    "local ts = tonumber(s[2])\n"
    "if tokens == nil or ts == nil then tokens = cap; ts = now end\n"
    "if now > ts then tokens = tokens + (now - ts) * rate / 1000 end\n"
    "if tokens > cap then tokens = cap end\n"
    "local allowed = 0\n"
    "if tokens >= cost then tokens = tokens - cost; allowed = 1 end\n"
    "redis.call('HSET', KEYS[1], 't', string.format('%.17g', tokens), 'ts', now)\n"
    "redis.call('PEXPIRE', KEYS[1], math.ceil(cap / rate * 1000) + 1000)\n"
    "return {allowed, string.format('%.17g', tokens)}\n";

struct kv_redis {
    struct event_base *base;
    redisAsyncContext *ac; /* NULL while disconnected */
    struct event *retry;
    unsigned backoff_ms;
    char *host; /* NULL for a unix socket */
    char *path;
    int port;
    char *password;
    unsigned db;
    char *prefix;
};

static void kv_redis_connect(struct kv_redis *r);

static void kv_redis_schedule(struct kv_redis *r)
{
    struct timeval tv = {.tv_sec = r->backoff_ms / 1000, .tv_usec = (r->backoff_ms % 1000) * 1000};

    evtimer_add(r->retry, &tv);
    r->backoff_ms =
        r->backoff_ms * 2 > KV_REDIS_BACKOFF_MAX ? KV_REDIS_BACKOFF_MAX : r->backoff_ms * 2;
}

static void kv_redis_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    kv_redis_connect(arg);
}

static void kv_redis_on_connect(const redisAsyncContext *ac, int status)
{
    struct kv_redis *r = ac->data;

    if (r == NULL)
        return;
    if (status == REDIS_OK) {
        r->backoff_ms = KV_REDIS_BACKOFF_MIN;
        return;
    }
    /* hiredis frees the context after this callback. */
    r->ac = NULL;
    kv_redis_schedule(r);
}

static void kv_redis_on_disconnect(const redisAsyncContext *ac, int status)
{
    struct kv_redis *r = ac->data;

    (void)status;
    if (r == NULL)
        return;
    r->ac = NULL;
    kv_redis_schedule(r);
}

/* Queues AUTH and SELECT: hiredis sends them first once connected. */
static void kv_redis_hello(struct kv_redis *r)
{
    char db[16];

    if (r->password != NULL)
        redisAsyncCommand(r->ac, NULL, NULL, "AUTH %s", r->password);
    if (r->db != 0) {
        snprintf(db, sizeof(db), "%u", r->db);
        redisAsyncCommand(r->ac, NULL, NULL, "SELECT %s", db);
    }
}

static void kv_redis_connect(struct kv_redis *r)
{
    redisAsyncContext *ac =
        r->path != NULL ? redisAsyncConnectUnix(r->path) : redisAsyncConnect(r->host, r->port);

    if (ac == NULL || ac->err != 0) {
        if (ac != NULL)
            redisAsyncFree(ac);
        kv_redis_schedule(r);
        return;
    }
    ac->data = r;
    if (redisLibeventAttach(ac, r->base) != REDIS_OK) {
        redisAsyncFree(ac);
        kv_redis_schedule(r);
        return;
    }
    redisAsyncSetConnectCallback(ac, kv_redis_on_connect);
    redisAsyncSetDisconnectCallback(ac, kv_redis_on_disconnect);
    r->ac = ac;
    kv_redis_hello(r);
}

/* Maps a reply to a result for the request's operation. */
static void kv_redis_result(const struct kv_req *req, const redisReply *rep, struct kv_result *res)
{
    *res = (struct kv_result){.status = KV_ERROR};
    if (rep == NULL || rep->type == REDIS_REPLY_ERROR)
        return;
    switch (req->op) {
    case KV_OP_GET:
        if (rep->type == REDIS_REPLY_NIL)
            res->status = KV_NOTFOUND;
        else if (rep->type == REDIS_REPLY_STRING)
            *res = (struct kv_result){.status = KV_OK, .value = rep->str, .value_len = rep->len};
        break;
    case KV_OP_SET:
        if (rep->type == REDIS_REPLY_STATUS)
            res->status = KV_OK;
        break;
    case KV_OP_INCR:
        if (rep->type == REDIS_REPLY_INTEGER)
            *res = (struct kv_result){.status = KV_OK, .number = rep->integer};
        break;
    case KV_OP_DEL:
        if (rep->type == REDIS_REPLY_INTEGER)
            res->status = rep->integer > 0 ? KV_OK : KV_NOTFOUND;
        break;
    case KV_OP_TAKE:
        if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
            rep->element[0]->type == REDIS_REPLY_INTEGER &&
            rep->element[1]->type == REDIS_REPLY_STRING) {
            *res = (struct kv_result){.status = KV_OK,
                                      .allowed = rep->element[0]->integer == 1,
                                      .tokens = strtod(rep->element[1]->str, NULL)};
        }
        break;
    case KV_OP_PURGE:
        break;
    }
}

/* hiredis calls this once per command: a reply, or NULL when the
 * connection is lost or freed. */
static void kv_redis_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct kv_req *req = privdata;
    struct kv_result res;

    (void)ac;
    kv_redis_result(req, reply, &res);
    kv_req_complete(req, &res);
}

struct kv_redis_cmd {
    int argc;
    const char *argv[KV_REDIS_ARGS];
    size_t len[KV_REDIS_ARGS];
    char num[3][KV_REDIS_NUM];
};

static void cmd_add(struct kv_redis_cmd *c, const char *s, size_t len)
{
    c->argv[c->argc] = s;
    c->len[c->argc] = len;
    c->argc++;
}

static void cmd_str(struct kv_redis_cmd *c, const char *s)
{
    cmd_add(c, s, strlen(s));
}

/* Builds the command for req with the prefixed key pk. */
static void kv_redis_build(const struct kv_req *req, const char *pk, struct kv_redis_cmd *c)
{
    switch (req->op) {
    case KV_OP_GET:
    case KV_OP_DEL:
        cmd_str(c, req->op == KV_OP_GET ? "GET" : "DEL");
        cmd_str(c, pk);
        return;
    case KV_OP_SET:
        cmd_str(c, "SET");
        cmd_str(c, pk);
        cmd_add(c, (const char *)req->value, req->value_len);
        if (req->ttl_ms > 0) {
            cmd_str(c, "PX");
            snprintf(c->num[0], KV_REDIS_NUM, "%" PRIu64, req->ttl_ms);
            cmd_str(c, c->num[0]);
        }
        return;
    case KV_OP_INCR:
        cmd_str(c, "EVAL");
        cmd_str(c, kv_redis_incr_lua);
        cmd_str(c, "1");
        cmd_str(c, pk);
        snprintf(c->num[0], KV_REDIS_NUM, "%" PRId64, req->delta);
        snprintf(c->num[1], KV_REDIS_NUM, "%" PRIu64, req->ttl_ms);
        cmd_str(c, c->num[0]);
        cmd_str(c, c->num[1]);
        return;
    default:
        cmd_str(c, "EVAL");
        cmd_str(c, kv_redis_take_lua);
        cmd_str(c, "1");
        cmd_str(c, pk);
        snprintf(c->num[0], KV_REDIS_NUM, "%.17g", req->capacity);
        snprintf(c->num[1], KV_REDIS_NUM, "%.17g", req->refill);
        snprintf(c->num[2], KV_REDIS_NUM, "%.17g", req->cost);
        cmd_str(c, c->num[0]);
        cmd_str(c, c->num[1]);
        cmd_str(c, c->num[2]);
        return;
    }
}

static void kv_redis_submit(void *be, struct kv_req *req)
{
    struct kv_redis *r = be;
    struct kv_redis_cmd cmd = {.argc = 0};
    char pk[KV_KEY_MAX + 1];
    struct kv_result none = {.status = KV_OK};

    if (req->op == KV_OP_PURGE) {
        kv_req_complete(req, &none);
        return;
    }
    if (snprintf(pk, sizeof(pk), "%s%s", r->prefix, req->key) >= (int)sizeof(pk) || r->ac == NULL) {
        kv_req_fail(req, KV_ERROR);
        return;
    }
    kv_redis_build(req, pk, &cmd);
    if (redisAsyncCommandArgv(r->ac, kv_redis_reply, req, cmd.argc, cmd.argv, cmd.len) != REDIS_OK)
        kv_req_fail(req, KV_ERROR);
}

static void kv_redis_destroy(void *be)
{
    struct kv_redis *r = be;

    if (r->ac != NULL) {
        r->ac->data = NULL;
        redisAsyncFree(r->ac); /* each pending reply callback runs with NULL */
    }
    if (r->retry != NULL)
        event_free(r->retry);
    free(r->host);
    free(r->path);
    free(r->password);
    free(r->prefix);
    free(r);
}

static const struct kv_backend_ops kv_redis_ops = {
    .submit = kv_redis_submit,
    .destroy = kv_redis_destroy,
};

/* "/path", "host:port" or "[v6]:port". */
static int kv_redis_address(struct kv_redis *r, const char *addr, char *error, size_t errsize)
{
    const char *colon = strrchr(addr, ':');
    const char *host = addr;
    size_t hlen;
    char *end;
    long port;

    if (addr[0] == '/')
        return (r->path = strdup(addr)) != NULL ? 0 : -1;
    if (colon == NULL || colon == addr)
        goto bad;
    hlen = (size_t)(colon - addr);
    if (addr[0] == '[') {
        if (hlen < 3 || addr[hlen - 1] != ']')
            goto bad;
        host++;
        hlen -= 2;
    }
    errno = 0;
    port = strtol(colon + 1, &end, 10);
    if (errno != 0 || *end != '\0' || port < 1 || port > 65535)
        goto bad;
    r->port = (int)port;
    r->host = strndup(host, hlen);
    return r->host != NULL ? 0 : -1;
bad:
    snprintf(error, errsize, "kv: bad redis address \"%s\" (host:port or /path)", addr);
    return -1;
}

int kv_redis_open(struct event_base *base, const struct kv_config *cfg, void **be_r,
                  const struct kv_backend_ops **ops_r, char *error, size_t errsize)
{
    struct kv_redis *r = calloc(1, sizeof(*r));

    if (r == NULL)
        goto nomem;
    r->base = base;
    r->db = cfg->redis_db;
    r->backoff_ms = KV_REDIS_BACKOFF_MIN;
    r->prefix = strdup(cfg->redis_prefix != NULL ? cfg->redis_prefix : "");
    r->password = cfg->redis_password != NULL ? strdup(cfg->redis_password) : NULL;
    r->retry = evtimer_new(base, kv_redis_retry, r);
    if (r->prefix == NULL || r->retry == NULL ||
        (cfg->redis_password != NULL && r->password == NULL))
        goto nomem;
    if (cfg->redis_address == NULL) {
        snprintf(error, errsize, "kv: no redis address");
        goto fail;
    }
    if (kv_redis_address(r, cfg->redis_address, error, errsize) < 0)
        goto fail;
    kv_redis_connect(r);
    *be_r = r;
    *ops_r = &kv_redis_ops;
    return 0;
nomem:
    snprintf(error, errsize, "kv: out of memory");
fail:
    if (r != NULL)
        kv_redis_destroy(r);
    return -1;
}

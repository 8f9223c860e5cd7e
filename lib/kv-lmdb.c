/*
 * kv-lmdb — the embedded back end of lib/kv: one LMDB environment (data.mdb
 * and lock.mdb in a directory), shared by every process that opens the same
 * directory (LMDB's lock file and its process-shared writer mutex make each
 * write transaction atomic across them).
 *
 * Every request runs as one transaction on a single workpool thread (LMDB
 * allows one writer at a time, and a commit may fsync), and completes back
 * on the loop. A value is stored as an 8-octet expiry (wall-clock ms since
 * the epoch, host byte order, 0 = never) followed by the bytes; an expired
 * entry is absent to every operation and is deleted when a write meets it,
 * or by kv_purge. Counters are decimal text, buckets "tokens stamp_ms".
 *
 * Trusts the file to come from this module on this host (same byte order);
 * still, a record shorter than its header or a counter that is not a number
 * is KV_ERROR, never a crash.
 */
#include "config.h"
#include "lib/kv-backend.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <lmdb.h>

#include "lib/workpool.h"

#define KV_LMDB_DEFAULT_MAP (256u * 1024 * 1024)
#define KV_LMDB_HDR 8
#define KV_LMDB_NUM_MAX 64

struct kv_lmdb {
    MDB_env *env;
    MDB_dbi dbi;
    struct workpool *pool;
};

/* One request on the pool thread: the result lives here until done(). */
struct kv_lmdb_job {
    struct kv_lmdb *l;
    struct kv_req *req;
    struct kv_result res;
    unsigned char *value; /* get: the bytes, malloc'd on the pool thread */
};

static uint64_t rec_expiry(const MDB_val *v)
{
    uint64_t exp;

    memcpy(&exp, v->mv_data, sizeof(exp));
    return exp;
}

static bool rec_live(const MDB_val *v, uint64_t now)
{
    uint64_t exp = rec_expiry(v);

    return exp == 0 || exp > now;
}

/* Writes header + bytes as the value of key. */
static int rec_put(struct kv_lmdb *l, MDB_txn *txn, MDB_val *key, uint64_t exp, const void *data,
                   size_t len)
{
    MDB_val v = {.mv_size = KV_LMDB_HDR + len, .mv_data = NULL};
    int rc = mdb_put(txn, l->dbi, key, &v, MDB_RESERVE);

    if (rc != 0)
        return rc;
    memcpy(v.mv_data, &exp, sizeof(exp));
    if (len > 0)
        memcpy((unsigned char *)v.mv_data + KV_LMDB_HDR, data, len);
    return 0;
}

/* Reads the live record of key into *v: 0, MDB_NOTFOUND (absent or
 * expired) or an error; MDB_CORRUPTED for a record shorter than its header. */
static int rec_get(struct kv_lmdb *l, MDB_txn *txn, MDB_val *key, MDB_val *v, uint64_t now)
{
    int rc = mdb_get(txn, l->dbi, key, v);

    if (rc != 0)
        return rc;
    if (v->mv_size < KV_LMDB_HDR)
        return MDB_CORRUPTED;
    if (!rec_live(v, now))
        return MDB_NOTFOUND;
    v->mv_data = (unsigned char *)v->mv_data + KV_LMDB_HDR;
    v->mv_size -= KV_LMDB_HDR;
    return 0;
}

static void op_get(struct kv_lmdb_job *job, MDB_txn *txn, MDB_val *key, uint64_t now)
{
    MDB_val v;
    int rc = rec_get(job->l, txn, key, &v, now);

    if (rc != 0) {
        job->res.status = rc == MDB_NOTFOUND ? KV_NOTFOUND : KV_ERROR;
        return;
    }
    job->value = malloc(v.mv_size + 1);
    if (job->value == NULL) {
        job->res.status = KV_ERROR;
        return;
    }
    memcpy(job->value, v.mv_data, v.mv_size);
    job->res.value = job->value;
    job->res.value_len = v.mv_size;
    job->res.status = KV_OK;
}

static uint64_t expiry_of(uint64_t now, uint64_t ttl_ms)
{
    return ttl_ms == 0 ? 0 : now + ttl_ms;
}

static int op_set(struct kv_lmdb_job *job, MDB_txn *txn, MDB_val *key, uint64_t now)
{
    const struct kv_req *req = job->req;

    return rec_put(job->l, txn, key, expiry_of(now, req->ttl_ms), req->value, req->value_len);
}

/* Parses a stored counter; -1 when it is not a decimal int64. */
static int parse_counter(const MDB_val *v, int64_t *n)
{
    char buf[KV_LMDB_NUM_MAX];
    char *end;

    if (v->mv_size == 0 || v->mv_size >= sizeof(buf))
        return -1;
    memcpy(buf, v->mv_data, v->mv_size);
    buf[v->mv_size] = '\0';
    errno = 0;
    *n = strtoll(buf, &end, 10);
    return errno != 0 || *end != '\0' ? -1 : 0;
}

static int op_incr(struct kv_lmdb_job *job, MDB_txn *txn, MDB_val *key, uint64_t now)
{
    const struct kv_req *req = job->req;
    char buf[KV_LMDB_NUM_MAX];
    uint64_t exp = expiry_of(now, req->ttl_ms);
    int64_t n = 0;
    MDB_val v;
    int rc = mdb_get(txn, job->l->dbi, key, &v);

    if (rc == 0 && v.mv_size >= KV_LMDB_HDR && rec_live(&v, now)) {
        MDB_val body = {.mv_size = v.mv_size - KV_LMDB_HDR,
                        .mv_data = (unsigned char *)v.mv_data + KV_LMDB_HDR};

        exp = rec_expiry(&v);
        if (parse_counter(&body, &n) < 0 || __builtin_add_overflow(n, req->delta, &n))
            return MDB_INCOMPATIBLE;
    } else if (rc == 0 || rc == MDB_NOTFOUND) {
        n = req->delta;
    } else {
        return rc;
    }
    snprintf(buf, sizeof(buf), "%" PRId64, n);
    job->res.number = n;
    return rec_put(job->l, txn, key, exp, buf, strlen(buf));
}

static int op_take(struct kv_lmdb_job *job, MDB_txn *txn, MDB_val *key, uint64_t now)
{
    const struct kv_req *req = job->req;
    double tokens = req->capacity, stamp = (double)now;
    char buf[KV_LMDB_NUM_MAX * 2];
    MDB_val v;
    int rc = rec_get(job->l, txn, key, &v, now);

    if (rc == 0) {
        if (v.mv_size >= sizeof(buf))
            return MDB_INCOMPATIBLE;
        memcpy(buf, v.mv_data, v.mv_size);
        buf[v.mv_size] = '\0';
        if (sscanf(buf, "%lf %lf", &tokens, &stamp) != 2 || !isfinite(tokens))
            return MDB_INCOMPATIBLE;
    } else if (rc != MDB_NOTFOUND) {
        return rc;
    }
    if ((double)now > stamp)
        tokens += ((double)now - stamp) * req->refill / 1000.0;
    tokens = fmin(tokens, req->capacity);
    job->res.allowed = tokens >= req->cost;
    if (job->res.allowed)
        tokens -= req->cost;
    job->res.tokens = tokens;
    snprintf(buf, sizeof(buf), "%.17g %" PRIu64, tokens, now);
    return rec_put(job->l, txn, key,
                   now + (uint64_t)ceil(req->capacity / req->refill * 1000.0) + 1000, buf,
                   strlen(buf));
}

static int op_del(struct kv_lmdb_job *job, MDB_txn *txn, MDB_val *key, uint64_t now)
{
    MDB_val v;
    int rc = rec_get(job->l, txn, key, &v, now);

    if (rc != 0 && rc != MDB_NOTFOUND)
        return rc;
    job->res.status = rc == 0 ? KV_OK : KV_NOTFOUND;
    rc = mdb_del(txn, job->l->dbi, key, NULL);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

static int op_purge(struct kv_lmdb_job *job, MDB_txn *txn, uint64_t now)
{
    MDB_cursor *cur;
    MDB_val k, v;
    int rc = mdb_cursor_open(txn, job->l->dbi, &cur);

    if (rc != 0)
        return rc;
    while ((rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) == 0) {
        if (v.mv_size >= KV_LMDB_HDR && rec_live(&v, now))
            continue;
        rc = mdb_cursor_del(cur, 0);
        if (rc != 0)
            break;
        job->res.number++;
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

/* A write transaction for every operation but get. */
static int run_write(struct kv_lmdb_job *job, MDB_val *key, uint64_t now)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(job->l->env, NULL, 0, &txn);

    if (rc != 0)
        return rc;
    job->res.status = KV_OK;
    switch (job->req->op) {
    case KV_OP_SET:
        rc = op_set(job, txn, key, now);
        break;
    case KV_OP_INCR:
        rc = op_incr(job, txn, key, now);
        break;
    case KV_OP_TAKE:
        rc = op_take(job, txn, key, now);
        break;
    case KV_OP_DEL:
        rc = op_del(job, txn, key, now);
        break;
    default:
        rc = op_purge(job, txn, now);
        break;
    }
    if (rc != 0) {
        mdb_txn_abort(txn);
        return rc;
    }
    return mdb_txn_commit(txn);
}

/* Runs on the pool thread. */
static void kv_lmdb_work(void *ctx)
{
    struct kv_lmdb_job *job = ctx;
    MDB_val key = {.mv_size = job->req->key_len, .mv_data = job->req->key};
    uint64_t now = kv_now_ms();
    MDB_txn *txn;
    int rc;

    if (job->req->op != KV_OP_GET) {
        if (run_write(job, &key, now) != 0)
            job->res = (struct kv_result){.status = KV_ERROR};
        return;
    }
    rc = mdb_txn_begin(job->l->env, NULL, MDB_RDONLY, &txn);
    if (rc != 0) {
        job->res.status = KV_ERROR;
        return;
    }
    op_get(job, txn, &key, now);
    mdb_txn_abort(txn);
}

/* On the loop (or inside workpool_destroy). */
static void kv_lmdb_done(void *ctx, bool cancelled)
{
    struct kv_lmdb_job *job = ctx;

    if (cancelled)
        job->res = (struct kv_result){.status = KV_CANCELLED};
    kv_req_complete(job->req, &job->res);
    free(job->value);
    free(job);
}

static void kv_lmdb_submit(void *be, struct kv_req *req)
{
    struct kv_lmdb *l = be;
    struct kv_lmdb_job *job = calloc(1, sizeof(*job));

    if (job == NULL) {
        kv_req_fail(req, KV_ERROR);
        return;
    }
    job->l = l;
    job->req = req;
    job->res.status = KV_ERROR;
    if (workpool_submit(l->pool, kv_lmdb_work, kv_lmdb_done, job) < 0) {
        free(job);
        kv_req_fail(req, KV_ERROR);
    }
}

static void kv_lmdb_destroy(void *be)
{
    struct kv_lmdb *l = be;

    workpool_destroy(&l->pool);
    mdb_env_close(l->env);
    free(l);
}

static const struct kv_backend_ops kv_lmdb_ops = {
    .submit = kv_lmdb_submit,
    .destroy = kv_lmdb_destroy,
};

/* Opens the environment and its unnamed database; writes once to prove
 * that the directory and the file are writable. */
static int kv_lmdb_env(struct kv_lmdb *l, const struct kv_config *cfg, char *error, size_t errsize)
{
    unsigned flags = MDB_NOTLS | MDB_NOMETASYNC | (cfg->lmdb_nosync ? MDB_NOSYNC : 0);
    size_t map = cfg->lmdb_map_size != 0 ? cfg->lmdb_map_size : KV_LMDB_DEFAULT_MAP;
    MDB_txn *txn = NULL;
    int dead, rc;

    if (mkdir(cfg->lmdb_dir, 0700) < 0 && errno != EEXIST) {
        snprintf(error, errsize, "kv: mkdir %s: %s", cfg->lmdb_dir, strerror(errno));
        return -1;
    }
    rc = mdb_env_create(&l->env);
    if (rc == 0)
        rc = mdb_env_set_mapsize(l->env, map);
    if (rc == 0)
        rc = mdb_env_open(l->env, cfg->lmdb_dir, flags, 0600);
    if (rc == 0)
        rc = mdb_reader_check(l->env, &dead);
    if (rc == 0)
        rc = mdb_txn_begin(l->env, NULL, 0, &txn);
    if (rc == 0)
        rc = mdb_dbi_open(txn, NULL, 0, &l->dbi);
    if (rc == 0)
        rc = mdb_txn_commit(txn);
    else if (txn != NULL)
        mdb_txn_abort(txn);
    if (rc != 0) {
        snprintf(error, errsize, "kv: lmdb %s: %s", cfg->lmdb_dir, mdb_strerror(rc));
        return -1;
    }
    return 0;
}

int kv_lmdb_open(struct event_base *base, const struct kv_config *cfg, void **be_r,
                 const struct kv_backend_ops **ops_r, char *error, size_t errsize)
{
    struct kv_lmdb *l;

    if (cfg->lmdb_dir == NULL || cfg->lmdb_dir[0] == '\0') {
        snprintf(error, errsize, "kv: no lmdb directory");
        return -1;
    }
    l = calloc(1, sizeof(*l));
    if (l == NULL) {
        snprintf(error, errsize, "kv: out of memory");
        return -1;
    }
    if (kv_lmdb_env(l, cfg, error, errsize) < 0) {
        if (l->env != NULL)
            mdb_env_close(l->env);
        free(l);
        return -1;
    }
    l->pool = workpool_create(base, 1);
    if (l->pool == NULL) {
        snprintf(error, errsize, "kv: workpool: %s", strerror(errno));
        mdb_env_close(l->env);
        free(l);
        return -1;
    }
    *be_r = l;
    *ops_r = &kv_lmdb_ops;
    return 0;
}

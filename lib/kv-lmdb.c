/*
 * kv-lmdb — the embedded back end of lib/kv: one LMDB environment (data.mdb
 * and lock.mdb in a directory), shared by every process that opens the same
 * directory (LMDB's lock file and its process-shared writer mutex make each
 * write transaction atomic across them).
 *
 * Requests run on a single workpool thread (LMDB allows one writer at a
 * time, and a commit fsyncs) with group commit: a batch job is queued only
 * when none waits, and it takes every request queued by then; the reads
 * share one read-only transaction, the writes one write transaction with
 * one commit (one fsync for the batch), each write in a nested transaction
 * of its own so that one that fails (map full, a bad record) is undone
 * alone. Finished requests complete back on the loop. A value is stored as an 8-octet expiry (wall-clock ms since
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
#include <pthread.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <lmdb.h>

#include "lib/workpool.h"

#define KV_LMDB_DEFAULT_MAP (256u * 1024 * 1024)
#define KV_LMDB_HDR 8
#define KV_LMDB_NUM_MAX 64

struct kv_lmdb_job;

struct kv_lmdb_list {
    struct kv_lmdb_job *head, *tail;
};

struct kv_lmdb {
    MDB_env *env;
    MDB_dbi dbi;
    struct workpool *pool;
    pthread_mutex_t lock;          /* guards pending, finished, batch_queued */
    struct kv_lmdb_list pending;   /* submitted, not yet taken by a batch */
    struct kv_lmdb_list finished;  /* run, waiting for done() on the loop */
    bool batch_queued;             /* a batch job is in the pool's queue */
};

/* One request: the result lives here until it completes on the loop. */
struct kv_lmdb_job {
    struct kv_lmdb *l;
    struct kv_lmdb_job *next;
    struct kv_req *req;
    struct kv_result res;
    unsigned char *value; /* get: the bytes, malloc'd on the pool thread */
    bool in_write;        /* ran in the batch's write transaction */
};

static void list_push(struct kv_lmdb_list *list, struct kv_lmdb_job *job)
{
    job->next = NULL;
    if (list->tail != NULL)
        list->tail->next = job;
    else
        list->head = job;
    list->tail = job;
}

static struct kv_lmdb_job *list_take(struct kv_lmdb_list *list)
{
    struct kv_lmdb_job *head = list->head;

    list->head = list->tail = NULL;
    return head;
}

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

/* One write, inside the batch's transaction (txn): a nested transaction
 * that is committed into the batch, or aborted alone when the write fails. */
static int run_write(struct kv_lmdb_job *job, MDB_txn *parent, MDB_val *key, uint64_t now)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(job->l->env, parent, 0, &txn);

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

static MDB_val job_key(const struct kv_lmdb_job *job)
{
    return (MDB_val){.mv_size = job->req->key_len, .mv_data = job->req->key};
}

/* Runs a batch in submission order: the writes (and the reads that come
 * after the first write, which must see them) in one write transaction
 * with one commit, one fsync; the reads before it in a read-only one. A
 * failed commit fails everything that went through the write transaction. */
static void run_batch(struct kv_lmdb *l, struct kv_lmdb_job *batch, uint64_t now)
{
    MDB_txn *rtxn = NULL, *wtxn = NULL;
    bool wrote = false;

    for (struct kv_lmdb_job *job = batch; job != NULL; job = job->next) {
        MDB_val key = job_key(job);
        if (job->req->op == KV_OP_GET && wtxn == NULL) {
            if (rtxn == NULL && mdb_txn_begin(l->env, NULL, MDB_RDONLY, &rtxn) != 0)
                rtxn = NULL; /* this read stays KV_ERROR */
            else
                op_get(job, rtxn, &key, now);
            continue;
        }
        if (wtxn == NULL && mdb_txn_begin(l->env, NULL, 0, &wtxn) != 0) {
            wtxn = NULL;
            continue; /* stays KV_ERROR; the next one tries again */
        }
        job->in_write = true;
        if (job->req->op == KV_OP_GET) {
            op_get(job, wtxn, &key, now);
        } else if (run_write(job, wtxn, &key, now) != 0) {
            job->res = (struct kv_result){.status = KV_ERROR};
        } else {
            wrote = true;
        }
    }
    if (rtxn != NULL)
        mdb_txn_abort(rtxn);
    if (wtxn == NULL)
        return;
    if (!wrote) {
        mdb_txn_abort(wtxn);
        return;
    }
    if (mdb_txn_commit(wtxn) == 0)
        return;
    for (struct kv_lmdb_job *job = batch; job != NULL; job = job->next) {
        if (job->in_write) {
            free(job->value);
            job->value = NULL;
            job->res = (struct kv_result){.status = KV_ERROR};
        }
    }
}

/* Runs on the pool thread: takes every request queued so far. */
static void kv_lmdb_work(void *ctx)
{
    struct kv_lmdb *l = ctx;
    struct kv_lmdb_job *batch, *last = NULL;
    uint64_t now = kv_now_ms();

    pthread_mutex_lock(&l->lock);
    batch = list_take(&l->pending);
    l->batch_queued = false;
    pthread_mutex_unlock(&l->lock);
    if (batch == NULL)
        return;
    run_batch(l, batch, now);
    for (last = batch; last->next != NULL; last = last->next)
        ;
    pthread_mutex_lock(&l->lock);
    if (l->finished.tail != NULL)
        l->finished.tail->next = batch;
    else
        l->finished.head = batch;
    l->finished.tail = last;
    pthread_mutex_unlock(&l->lock);
}

static void complete_list(struct kv_lmdb_job *job, bool cancelled)
{
    while (job != NULL) {
        struct kv_lmdb_job *next = job->next;
        if (cancelled)
            job->res = (struct kv_result){.status = KV_CANCELLED};
        kv_req_complete(job->req, &job->res);
        free(job->value);
        free(job);
        job = next;
    }
}

/* On the loop (or inside workpool_destroy): completes every finished
 * request, whichever batch ran it. A batch job cancelled before it ran took
 * nothing; destroy settles what is still pending. */
static void kv_lmdb_done(void *ctx, bool cancelled)
{
    struct kv_lmdb *l = ctx;
    struct kv_lmdb_job *finished;

    (void)cancelled;
    pthread_mutex_lock(&l->lock);
    finished = list_take(&l->finished);
    pthread_mutex_unlock(&l->lock);
    complete_list(finished, false);
}

static void kv_lmdb_submit(void *be, struct kv_req *req)
{
    struct kv_lmdb *l = be;
    struct kv_lmdb_job *job = calloc(1, sizeof(*job));
    bool ok = true;

    if (job == NULL) {
        kv_req_fail(req, KV_ERROR);
        return;
    }
    job->l = l;
    job->req = req;
    job->res.status = KV_ERROR;
    pthread_mutex_lock(&l->lock);
    if (!l->batch_queued && workpool_submit(l->pool, kv_lmdb_work, kv_lmdb_done, l) < 0)
        ok = false;
    if (ok) {
        list_push(&l->pending, job);
        l->batch_queued = true;
    }
    pthread_mutex_unlock(&l->lock);
    if (!ok) {
        free(job);
        kv_req_fail(req, KV_ERROR);
    }
}

static void kv_lmdb_destroy(void *be)
{
    struct kv_lmdb *l = be;

    workpool_destroy(&l->pool); /* runs the done() still due */
    complete_list(list_take(&l->finished), false);
    complete_list(list_take(&l->pending), true);
    pthread_mutex_destroy(&l->lock);
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
    pthread_mutex_init(&l->lock, NULL);
    if (kv_lmdb_env(l, cfg, error, errsize) < 0) {
        if (l->env != NULL)
            mdb_env_close(l->env);
        pthread_mutex_destroy(&l->lock);
        free(l);
        return -1;
    }
    l->pool = workpool_create(base, 1);
    if (l->pool == NULL) {
        snprintf(error, errsize, "kv: workpool: %s", strerror(errno));
        mdb_env_close(l->env);
        pthread_mutex_destroy(&l->lock);
        free(l);
        return -1;
    }
    *be_r = l;
    *ops_r = &kv_lmdb_ops;
    return 0;
}

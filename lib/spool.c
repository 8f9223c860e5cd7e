/*
 * spool — see spool.h. Writes messages to tmp/, and commits them into queue/
 * (or hold/) on one commit thread per spool so that the event loop never
 * waits for the disk.
 *
 * Writing (loop thread): spool_msg_begin takes a file from the pool of
 * retired ones (spool-pool.h) or creates one, as tmp/<id> (read-write: the
 * filters read it before the commit), and puts a zeroed header in a 64 KiB
 * buffer; content is buffered and written with write(2) from offset 0 (a
 * reused file is cut to the message's end at the commit);
 * the first error is kept and returned by every later call. spool_msg_commit
 * appends the envelope (with the message's own queue id and content size) and
 * END, patches the header (in the buffer, or with pwrite once flushed), and
 * queues the message. The envelope is parsed back before it is written, so a
 * message is only ever acknowledged in a form the reader accepts. A rewrite
 * (spool_msg_rewrite_begin) is a second message writing tmp/<id>.new, which
 * finish renames over tmp/<id> and whose descriptor and buffer the message
 * then takes: the commit path is the same for a rewritten message.
 *
 * Group commit: the commit thread is a one-thread workpool. A commit job is
 * queued only when none is waiting; when it runs it takes every pending
 * message at once, renames each into queue/ or, when held, hold/
 * (RENAME_NOREPLACE, so a queue id collision fails instead of replacing a
 * message), then flushes everything at once through the sync crew's
 * long-lived threads: each file's fdatasync and one fsync of each directory
 * that got a file, so that the file system folds them into fewer flushes and
 * the batch waits for one flush, not a file's and then its directory's. A
 * message is acknowledged only when its file's flush and its directory's
 * both succeeded; before that the queue manager may already see its name
 * (delivering early is at worst a duplicate, never a loss). Messages that
 * arrive meanwhile form the next batch.
 * Finished messages go to a list that the workpool's done() drains on the
 * loop thread, calling each callback (unless detached) and freeing the
 * message. A failed message is unlinked from tmp/, queue/ or hold/ before
 * its callback sees the errno.
 *
 * Trusts the caller for queue ids and envelopes (spool.h); trusts nothing in
 * the files spool_recover scans (spool_read_envelope checks them).
 */
#include "config.h"
#include "lib/spool.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include <event2/buffer.h>

#include "lib/log.h"
#include "lib/spool-pool.h"
#include "lib/sync-crew.h"
#include "lib/workpool.h"

#define SPOOL_BUF_SIZE (64 * 1024)
#define SPOOL_SYNC_THREADS 8 /* concurrent fdatasyncs per batch */

struct msg_list {
    struct spool_msg *head;
    struct spool_msg *tail;
};

struct spool {
    char *dir;
    int dir_fd, tmp_fd, queue_fd, hold_fd, free_fd;
    struct spool_pool *pool;    /* files to reuse, in free/ */
    struct workpool *committer; /* one thread: the commit thread */
    struct sync_crew *crew;     /* the commit thread's helpers, or NULL */
    uint64_t space_ok_until;    /* spool_has_space: no need to ask before (coarse ms) */
    pthread_mutex_t lock;       /* guards pending, finished, inflight, batch_queued */
    pthread_cond_t idle;        /* signalled when inflight drops */
    struct msg_list pending;    /* queued by the loop, not yet taken by a batch */
    struct msg_list finished;   /* synced and renamed, or failed: callbacks due */
    unsigned inflight;          /* in pending or in the batch being synced */
    bool batch_queued;          /* a commit job waits to take pending */
    bool dispatching;           /* loop: running callbacks */
    uint32_t counter;           /* loop: queue id counter */
};

struct spool_msg {
    struct spool *spool;
    struct spool_msg *next;
    int fd;
    int error; /* sticky errno */
    bool hold; /* committed into hold/, not queue/ */
    bool renamed;
    bool reused; /* its file came from the pool: may be longer than written */
    char queue_id[SPOOL_QUEUE_ID_MAX + 1];
    char tmp_name[SPOOL_QUEUE_ID_MAX + 8]; /* its file in tmp/: the queue id, or
                                           * "<id>.new" for a rewrite */
    char *buf; /* SPOOL_BUF_SIZE; freed when handed to the commit thread */
    size_t buf_len;
    uint64_t flushed;     /* octets written to fd */
    uint64_t content_len; /* content octets appended (header excluded) */
    spool_commit_cb *cb;  /* NULL when detached */
    void *ctx;
};

static void msg_list_push(struct msg_list *list, struct spool_msg *msg)
{
    msg->next = NULL;
    if (list->tail != NULL)
        list->tail->next = msg;
    else
        list->head = msg;
    list->tail = msg;
}

static struct spool_msg *msg_list_take(struct msg_list *list)
{
    struct spool_msg *head = list->head;

    list->head = NULL;
    list->tail = NULL;
    return head;
}

/* Renames without replacing; falls back to link+unlink where the file system
 * does not know RENAME_NOREPLACE. */
static int rename_noreplace(int from_dir, const char *from, int to_dir, const char *to)
{
    if (renameat2(from_dir, from, to_dir, to, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno != EINVAL && errno != ENOSYS)
        return -1;
    if (linkat(from_dir, from, to_dir, to, 0) < 0)
        return -1;
    (void)unlinkat(from_dir, from, 0);
    return 0;
}

/* ---- the commit thread ---- */

static int msg_dir_fd(const struct spool *spool, const struct spool_msg *msg)
{
    return msg->hold ? spool->hold_fd : spool->queue_fd;
}

/* Moves a file from tmp/ into queue/ or hold/, before it is flushed: the
 * batch's flushes then make the content and the name durable together.
 * Removes the file on failure. */
static void commit_rename(struct spool *spool, struct spool_msg *msg)
{
    if (msg->error == 0 &&
        rename_noreplace(spool->tmp_fd, msg->tmp_name, msg_dir_fd(spool, msg), msg->queue_id) < 0)
        msg->error = errno;
    if (msg->error != 0) {
        (void)unlinkat(spool->tmp_fd, msg->tmp_name, 0);
        return;
    }
    msg->renamed = true;
}

/* A message that cannot be acknowledged: its file goes. */
static void commit_undo(struct spool *spool, struct spool_msg *msg, int err)
{
    (void)unlinkat(msg_dir_fd(spool, msg), msg->queue_id, 0);
    msg->renamed = false;
    msg->error = err;
}

/* Flushes every renamed file (fdatasync) and each directory that got one
 * (fsync) at once, through the sync crew (started at the first batch that
 * has more than one flush); a message is durable when its file's flush and
 * its directory's both succeeded, else it is undone. */
static void commit_flush(struct spool *spool, struct spool_msg *batch, size_t count)
{
    struct sync_item *items = calloc(count + 2, sizeof(*items));
    size_t n = 0, dir_at[2] = { 0, 0 }; /* [hold]: index of queue/'s and hold/'s flush */
    bool dir_used[2] = { false, false };

    for (struct spool_msg *msg = batch; msg != NULL && items != NULL; msg = msg->next) {
        if (!msg->renamed)
            continue;
        items[n++] = (struct sync_item){ .fd = msg->fd };
        dir_used[msg->hold] = true;
    }
    for (int hold = 0; hold < 2 && items != NULL; hold++) {
        if (!dir_used[hold])
            continue;
        dir_at[hold] = n;
        items[n++] = (struct sync_item){ .fd = hold ? spool->hold_fd : spool->queue_fd,
                                         .full = true };
    }
    if (n > 1 && spool->crew == NULL)
        spool->crew = sync_crew_new(SPOOL_SYNC_THREADS - 1); /* NULL: the caller alone */
    if (items != NULL)
        sync_crew_run(spool->crew, items, n);
    n = 0;
    for (struct spool_msg *msg = batch; msg != NULL; msg = msg->next) {
        int err = ENOMEM;

        if (!msg->renamed)
            continue;
        if (items != NULL && (err = items[n++].err) == 0)
            err = items[dir_at[msg->hold]].err;
        if (err != 0)
            commit_undo(spool, msg, err);
    }
    free(items);
}

static void commit_close(struct spool *spool, struct spool_msg *msg)
{
    if (close(msg->fd) < 0 && errno != EINTR && msg->renamed)
        commit_undo(spool, msg, errno);
    msg->fd = -1;
}

static void commit_batch(void *arg)
{
    struct spool *spool = arg;
    struct spool_msg *batch, *last = NULL;
    unsigned count = 0;

    pthread_mutex_lock(&spool->lock);
    batch = msg_list_take(&spool->pending);
    spool->batch_queued = false;
    pthread_mutex_unlock(&spool->lock);
    if (batch == NULL)
        return;

    for (struct spool_msg *msg = batch; msg != NULL; msg = msg->next) {
        last = msg;
        count++;
    }
    for (struct spool_msg *msg = batch; msg != NULL; msg = msg->next)
        commit_rename(spool, msg);
    commit_flush(spool, batch, count);
    for (struct spool_msg *msg = batch; msg != NULL; msg = msg->next)
        commit_close(spool, msg);

    pthread_mutex_lock(&spool->lock);
    if (spool->finished.tail != NULL)
        spool->finished.tail->next = batch;
    else
        spool->finished.head = batch;
    spool->finished.tail = last;
    spool->inflight -= count;
    pthread_cond_broadcast(&spool->idle);
    pthread_mutex_unlock(&spool->lock);
}

/* ---- back on the loop ---- */

static void msg_free(struct spool_msg *msg)
{
    if (msg->fd >= 0)
        close(msg->fd);
    free(msg->buf);
    free(msg);
}

/* A job's done(): drains every finished message, whichever batch it was
 * in. A cancelled job (the pool destroyed before it ran) cannot have taken
 * messages: spool_close waits until none is in flight first. */
static void commit_done(void *arg, bool cancelled)
{
    struct spool *spool = arg;
    struct spool_msg *msg;

    (void)cancelled;
    pthread_mutex_lock(&spool->lock);
    msg = msg_list_take(&spool->finished);
    pthread_mutex_unlock(&spool->lock);

    spool->dispatching = true;
    while (msg != NULL) {
        struct spool_msg *next = msg->next;

        if (msg->error != 0)
            log_error("spool: %s: commit failed: %s", msg->queue_id, strerror(msg->error));
        if (msg->cb != NULL)
            msg->cb(msg->ctx, msg->error);
        msg_free(msg);
        msg = next;
    }
    spool->dispatching = false;
}

/* Queues msg for the commit thread; a job is submitted only when none waits.
 * Invariant: pending is non-empty only while batch_queued. */
static int spool_hand_over(struct spool_msg *msg)
{
    struct spool *spool = msg->spool;
    int ret = 0;

    if (spool->committer == NULL) {
        errno = ESHUTDOWN;
        return -1;
    }
    free(msg->buf);
    msg->buf = NULL;
    pthread_mutex_lock(&spool->lock);
    assert(spool->batch_queued || spool->pending.head == NULL);
    if (!spool->batch_queued &&
        workpool_submit(spool->committer, commit_batch, commit_done, spool) < 0)
        ret = -1;
    if (ret == 0) {
        msg_list_push(&spool->pending, msg);
        spool->batch_queued = true;
        spool->inflight++;
    }
    pthread_mutex_unlock(&spool->lock);
    if (ret < 0)
        errno = ENOMEM;
    return ret;
}

/* ---- writing ---- */

static int write_full(int fd, const void *data, size_t len)
{
    const char *p = data;

    while (len > 0) {
        ssize_t n = write(fd, p, len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0) {
            errno = ENOSPC;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int msg_fail(struct spool_msg *msg, int err)
{
    if (msg->error == 0)
        msg->error = err;
    errno = msg->error;
    return -1;
}

static int msg_flush(struct spool_msg *msg)
{
    if (msg->error != 0)
        return msg_fail(msg, msg->error);
    if (msg->buf_len == 0)
        return 0;
    if (write_full(msg->fd, msg->buf, msg->buf_len) < 0)
        return msg_fail(msg, errno);
    msg->flushed += msg->buf_len;
    msg->buf_len = 0;
    return 0;
}

int spool_msg_content(struct spool_msg *msg, int *fd_r, uint64_t *offset_r, uint64_t *length_r)
{
    if (msg_flush(msg) < 0)
        return -1;
    *fd_r = msg->fd;
    *offset_r = SPOOL_HEADER_LEN;
    *length_r = msg->content_len;
    return 0;
}

/* Buffers data; what does not fit after a flush is written directly. */
static int msg_append(struct spool_msg *msg, const void *data, size_t len)
{
    if (msg->error != 0)
        return msg_fail(msg, msg->error);
    if (len == 0)
        return 0;
    if (len > SPOOL_BUF_SIZE - msg->buf_len) {
        if (msg_flush(msg) < 0)
            return -1;
        if (len >= SPOOL_BUF_SIZE) {
            if (write_full(msg->fd, data, len) < 0)
                return msg_fail(msg, errno);
            msg->flushed += len;
            return 0;
        }
    }
    memcpy(msg->buf + msg->buf_len, data, len);
    msg->buf_len += len;
    return 0;
}

/* A new message in tmp/<tmp_name>, with its header reserved. Read and
 * write: the filters read the content before the commit. */
static struct spool_msg *msg_new(struct spool *spool, const char *queue_id, const char *suffix,
                                 bool reuse)
{
    struct spool_msg *msg;
    size_t len = strlen(queue_id);

    if (len == 0 || len > SPOOL_QUEUE_ID_MAX || strchr(queue_id, '/') != NULL) {
        errno = EINVAL;
        return NULL;
    }
    msg = calloc(1, sizeof(*msg));
    if (msg == NULL || (msg->buf = malloc(SPOOL_BUF_SIZE)) == NULL) {
        free(msg);
        errno = ENOMEM;
        return NULL;
    }
    msg->spool = spool;
    memcpy(msg->queue_id, queue_id, len + 1);
    snprintf(msg->tmp_name, sizeof(msg->tmp_name), "%s%s", queue_id, suffix);
    msg->fd = reuse ? spool_pool_take(spool->pool, spool->tmp_fd, msg->tmp_name) : -1;
    msg->reused = msg->fd >= 0;
    if (!msg->reused)
        msg->fd = openat(spool->tmp_fd, msg->tmp_name, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
    if (msg->fd < 0) {
        int err = errno;

        msg_free(msg);
        errno = err;
        return NULL;
    }
    spool_header_format(msg->buf, 0, 0);
    msg->buf_len = SPOOL_HEADER_LEN;
    return msg;
}

struct spool_msg *spool_msg_begin(struct spool *spool, const char *queue_id)
{
    return msg_new(spool, queue_id, "", true);
}

struct spool_msg *spool_msg_rewrite_begin(struct spool_msg *msg)
{
    if (msg_flush(msg) < 0)
        return NULL;
    return msg_new(msg->spool, msg->queue_id, ".new", false);
}

int spool_msg_rewrite_finish(struct spool_msg *msg, struct spool_msg **_dst)
{
    struct spool_msg *dst = *_dst;
    int tmp_fd = msg->spool->tmp_fd;
    int err;

    *_dst = NULL;
    assert(dst->spool == msg->spool && strcmp(dst->queue_id, msg->queue_id) == 0);
    if (dst->error != 0 || renameat(tmp_fd, dst->tmp_name, tmp_fd, msg->tmp_name) < 0) {
        err = dst->error != 0 ? dst->error : errno;
        spool_msg_abort(&dst);
        errno = err;
        return -1;
    }
    close(msg->fd); /* the old file: unlinked by the rename */
    free(msg->buf);
    msg->fd = dst->fd;
    msg->buf = dst->buf;
    msg->buf_len = dst->buf_len;
    msg->flushed = dst->flushed;
    msg->content_len = dst->content_len;
    msg->reused = dst->reused;
    msg->error = 0;
    dst->fd = -1;
    dst->buf = NULL;
    msg_free(dst);
    return 0;
}

int spool_msg_write(struct spool_msg *msg, const void *data, size_t len)
{
    if (msg_append(msg, data, len) < 0)
        return -1;
    msg->content_len += len;
    return 0;
}

int spool_msg_write_evbuffer(struct spool_msg *msg, struct evbuffer *buf)
{
    int ret = 0;

    while (evbuffer_get_length(buf) > 0) {
        struct evbuffer_iovec vec[16];
        int n = evbuffer_peek(buf, -1, NULL, vec, 16);
        size_t total = 0;

        for (int i = 0; i < n && i < 16; i++) {
            if (ret == 0 && spool_msg_write(msg, vec[i].iov_base, vec[i].iov_len) < 0)
                ret = -1;
            total += vec[i].iov_len;
        }
        evbuffer_drain(buf, total);
    }
    if (ret < 0)
        errno = msg->error;
    return ret;
}

uint64_t spool_msg_size(const struct spool_msg *msg)
{
    return msg->content_len;
}

/* Serializes env with the message's own id and size, and checks that it
 * parses back. Returns the text, or NULL with errno. */
static char *msg_envelope_text(const struct spool_msg *msg, const struct spool_envelope *env,
                               size_t *len_r)
{
    struct spool_envelope copy = *env, *check = NULL;
    char error[160];
    char *text;

    memcpy(copy.queue_id, msg->queue_id, sizeof(copy.queue_id));
    copy.size = msg->content_len;
    text = spool_envelope_serialize(&copy, len_r);
    if (text == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    if (spool_envelope_parse(text, *len_r, &check, NULL, error, sizeof(error)) < 0) {
        log_error("spool: %s: refusing an envelope that does not parse back: %s",
                  msg->queue_id, error);
        free(text);
        errno = EINVAL;
        return NULL;
    }
    spool_envelope_free(&check);
    return text;
}

/* Appends envelope and END, and makes the header point at them. */
static int msg_finish(struct spool_msg *msg, const struct spool_envelope *env)
{
    char header[SPOOL_HEADER_LEN];
    size_t len;
    char *text;
    int ret;

    if (msg->error != 0)
        return msg_fail(msg, msg->error);
    text = msg_envelope_text(msg, env, &len);
    if (text == NULL)
        return msg_fail(msg, errno);
    ret = msg_append(msg, text, len);
    free(text);
    if (ret < 0)
        return -1;
    spool_header_format(header, msg->content_len, SPOOL_HEADER_LEN + msg->content_len);
    if (msg->flushed == 0) {
        memcpy(msg->buf, header, SPOOL_HEADER_LEN);
        if (msg_flush(msg) < 0)
            return -1;
    } else {
        if (msg_flush(msg) < 0)
            return -1;
        while ((ret = (int)pwrite(msg->fd, header, SPOOL_HEADER_LEN, 0)) < 0 && errno == EINTR)
            ;
        if (ret != SPOOL_HEADER_LEN)
            return msg_fail(msg, ret < 0 ? errno : EIO);
    }
    /* a reused file may be longer than this message: what lies past END goes */
    if (msg->reused && ftruncate(msg->fd, (off_t)msg->flushed) < 0)
        return msg_fail(msg, errno);
    return 0;
}

int spool_msg_commit(struct spool_msg *msg, const struct spool_envelope *env, spool_commit_cb *cb,
                     void *ctx)
{
    int err;

    msg->cb = cb;
    msg->ctx = ctx;
    if (msg_finish(msg, env) == 0 && spool_hand_over(msg) == 0)
        return 0;
    err = errno;
    spool_msg_abort(&msg);
    errno = err;
    return -1;
}

int spool_msg_commit_hold(struct spool_msg *msg, const struct spool_envelope *env,
                          spool_commit_cb *cb, void *ctx)
{
    msg->hold = true;
    return spool_msg_commit(msg, env, cb, ctx);
}

void spool_msg_detach(struct spool_msg *msg)
{
    msg->cb = NULL;
    msg->ctx = NULL;
}

void spool_msg_abort(struct spool_msg **_msg)
{
    struct spool_msg *msg = *_msg;

    if (msg == NULL)
        return;
    *_msg = NULL;
    if (msg->fd >= 0) {
        close(msg->fd);
        msg->fd = -1;
        /* for reuse: a message's own file (not a rewrite's, which may be on
         * another thread) that had no error (ENOSPC: give the space back) */
        if (msg->error == 0 && strcmp(msg->tmp_name, msg->queue_id) == 0)
            (void)spool_pool_retire(msg->spool->pool, msg->spool->tmp_fd, msg->tmp_name,
                                    msg->flushed);
        else
            (void)unlinkat(msg->spool->tmp_fd, msg->tmp_name, 0);
    }
    msg_free(msg);
}

/* ---- the spool ---- */

static int open_subdir(int dir_fd, const char *name, bool *created)
{
    if (mkdirat(dir_fd, name, 0700) == 0)
        *created = true;
    else if (errno != EEXIST)
        return -1;
    return openat(dir_fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

static int spool_open_dirs(struct spool *spool, char *error, size_t errsize)
{
    bool created = false;
    int fd = -1;

    if (mkdir(spool->dir, 0700) < 0 && errno != EEXIST)
        goto fail;
    spool->dir_fd = open(spool->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (spool->dir_fd < 0 || (spool->tmp_fd = open_subdir(spool->dir_fd, "tmp", &created)) < 0)
        goto fail;
    spool->queue_fd = open_subdir(spool->dir_fd, "queue", &created);
    if (spool->queue_fd < 0 ||
        (spool->hold_fd = open_subdir(spool->dir_fd, "hold", &created)) < 0 ||
        (fd = open_subdir(spool->dir_fd, "corrupt", &created)) < 0 ||
        (spool->free_fd = open_subdir(spool->dir_fd, "free", &created)) < 0 ||
        (spool->pool = spool_pool_new(spool->free_fd)) == NULL)
        goto fail;
    close(fd);
    if (created && fsync(spool->dir_fd) < 0)
        goto fail;
    return 0;
fail:
    snprintf(error, errsize, "spool %s: %s", spool->dir, strerror(errno));
    return -1;
}

static void spool_free(struct spool *spool)
{
    workpool_destroy(&spool->committer);
    sync_crew_free(spool->crew);
    if (spool->tmp_fd >= 0)
        close(spool->tmp_fd);
    if (spool->queue_fd >= 0)
        close(spool->queue_fd);
    if (spool->hold_fd >= 0)
        close(spool->hold_fd);
    spool_pool_free(&spool->pool);
    if (spool->free_fd >= 0)
        close(spool->free_fd);
    if (spool->dir_fd >= 0)
        close(spool->dir_fd);
    pthread_cond_destroy(&spool->idle);
    pthread_mutex_destroy(&spool->lock);
    free(spool->dir);
    free(spool);
}

int spool_open(const char *dir, struct event_base *base, struct spool **spool_r, char *error,
               size_t errsize)
{
    struct spool *spool = calloc(1, sizeof(*spool));
    struct timespec ts;

    if (spool == NULL || (spool->dir = strdup(dir)) == NULL) {
        free(spool);
        snprintf(error, errsize, "spool %s: out of memory", dir);
        return -1;
    }
    spool->dir_fd = spool->tmp_fd = spool->queue_fd = spool->hold_fd = spool->free_fd = -1;
    pthread_mutex_init(&spool->lock, NULL);
    pthread_cond_init(&spool->idle, NULL);
    if (spool_open_dirs(spool, error, errsize) < 0) {
        spool_free(spool);
        return -1;
    }
    spool->committer = workpool_create(base, 1);
    if (spool->committer == NULL) {
        snprintf(error, errsize, "spool %s: commit thread: %s", dir, strerror(errno));
        spool_free(spool);
        return -1;
    }
    clock_gettime(CLOCK_REALTIME, &ts);
    spool->counter = (uint32_t)ts.tv_nsec ^ (uint32_t)((uintptr_t)spool >> 4);
    *spool_r = spool;
    return 0;
}

void spool_close(struct spool **_spool)
{
    struct spool *spool = *_spool;

    if (spool == NULL)
        return;
    *_spool = NULL;
    assert(!spool->dispatching); /* not from inside a commit callback */
    pthread_mutex_lock(&spool->lock);
    while (spool->inflight > 0)
        pthread_cond_wait(&spool->idle, &spool->lock);
    pthread_mutex_unlock(&spool->lock);
    workpool_destroy(&spool->committer); /* runs the done() still due */
    commit_done(spool, false);           /* and in case none was */
    spool_free(spool);
}

int spool_retire(struct spool *spool, const char *queue_id, uint64_t size)
{
    return spool_pool_retire(spool->pool, spool->queue_fd, queue_id, size);
}

/* 10 hex digits of time (20 bits of seconds, 20 of microseconds), 6 of pid
 * (pid_max is at most 2^22), 4 of a per-spool counter: 20 characters. */
void spool_new_queue_id(struct spool *spool, char *buf, size_t size)
{
    struct timespec ts;
    uint64_t t;

    clock_gettime(CLOCK_REALTIME, &ts);
    t = ((uint64_t)ts.tv_sec & 0xfffff) << 20 | (uint64_t)(ts.tv_nsec / 1000);
    snprintf(buf, size, "%010" PRIX64 "%06X%04X", t, (unsigned)getpid() & 0xffffff,
             (unsigned)(spool->counter++ & 0xffff));
}

/* Free space is asked of the file system at most once a second while
 * there is plenty (twice min_free and 64 MiB more): one statvfs per message
 * would cost as much as the rest of MAIL FROM. Close to the limit, every
 * call asks. */
#define SPOOL_SPACE_MARGIN (64ull << 20)

static uint64_t coarse_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int spool_has_space(struct spool *spool, uint64_t min_free)
{
    struct statvfs st;
    uint64_t now = coarse_ms(), avail;

    if (now < spool->space_ok_until)
        return 1;
    if (fstatvfs(spool->queue_fd, &st) < 0)
        return 0;
    if (st.f_frsize != 0 && st.f_bavail > UINT64_MAX / st.f_frsize)
        return 1;
    avail = (uint64_t)st.f_bavail * st.f_frsize;
    if (min_free < UINT64_MAX / 4 && avail >= 2 * min_free + SPOOL_SPACE_MARGIN)
        spool->space_ok_until = now + 1000;
    return avail >= min_free;
}

/* ---- start-up recovery ---- */

struct recover {
    int dir_fd;
    int sub_fd;
    int corrupt_fd;
    const char *dir;
    const char *sub; /* the subdirectory being scanned */
    int count;
    bool changed;
    bool corrupt_changed;
};

static const char *safe_name(char *buf, size_t size, const char *name)
{
    return log_sanitize(buf, size, name, strlen(name));
}

static void recover_remove(struct recover *rc, const char *name, const char *why)
{
    char shown[256];

    safe_name(shown, sizeof(shown), name);
    if (unlinkat(rc->sub_fd, name, 0) < 0) {
        log_error("spool: cannot remove %s%s: %s", shown, why, strerror(errno));
        return;
    }
    log_warning("spool: removed incomplete message %s%s", shown, why);
    rc->count++;
    rc->changed = true;
}

static void recover_move_corrupt(struct recover *rc, const char *name, const char *why)
{
    char shown[256];
    bool created = false;

    safe_name(shown, sizeof(shown), name);
    if (rc->corrupt_fd < 0)
        rc->corrupt_fd = open_subdir(rc->dir_fd, "corrupt", &created);
    if (created && fsync(rc->dir_fd) < 0)
        log_error("spool: fsync %s: %s", rc->dir, strerror(errno));
    if (rc->corrupt_fd < 0 || rename_noreplace(rc->sub_fd, name, rc->corrupt_fd, name) < 0) {
        log_error("spool: cannot move corrupt message %s to corrupt/: %s", shown,
                  strerror(errno));
        return;
    }
    log_warning("spool: moved corrupt message %s to corrupt/: %s", shown, why);
    rc->count++;
    rc->changed = true;
    rc->corrupt_changed = true;
}

/* A file in queue/ or hold/: kept when complete, removed when it lacks its
 * end marker (never acknowledged), moved to corrupt/ when unreadable.
 * Also removed: a complete file whose envelope names another queue id. A
 * file is renamed into queue/ before it is flushed, and a file from the
 * pool still holds the delivered message it held before; after a crash in
 * between, its new name can show that old content, which must not be
 * delivered again (the new message was never acknowledged). */
static void recover_queue_entry(struct recover *rc, const char *name)
{
    struct spool_envelope *env = NULL;
    char path[PATH_MAX], error[160];
    int ret;

    if ((size_t)snprintf(path, sizeof(path), "%s/%s/%s", rc->dir, rc->sub, name) >=
        sizeof(path)) {
        recover_move_corrupt(rc, name, "name too long");
        return;
    }
    ret = spool_read_envelope(path, &env, NULL, NULL, error, sizeof(error));
    if (ret == 0 && strcmp(env->queue_id, name) != 0)
        recover_remove(rc, name, " (the content of an older message: a reused file)");
    spool_envelope_free(&env);
    if (ret == 1)
        recover_remove(rc, name, strcmp(rc->sub, "hold") == 0 ? " (hold/)" : "");
    else if (ret < 0)
        recover_move_corrupt(rc, name, error);
}

/* Runs fn on every entry of dir/sub; a missing sub is empty. */
static int recover_scan(struct recover *rc, const char *sub,
                        void (*fn)(struct recover *, const char *), char *error, size_t errsize)
{
    struct dirent *de;
    DIR *d;

    rc->changed = false;
    rc->sub = sub;
    /* O_NOFOLLOW: this runs as root in a directory the workers' user owns */
    rc->sub_fd = openat(rc->dir_fd, sub, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (rc->sub_fd < 0 && errno == ENOENT)
        return 0;
    if (rc->sub_fd < 0 || (d = fdopendir(rc->sub_fd)) == NULL) {
        snprintf(error, errsize, "spool %s/%s: %s", rc->dir, sub, strerror(errno));
        if (rc->sub_fd >= 0)
            close(rc->sub_fd);
        return -1;
    }
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            fn(rc, de->d_name);
    }
    if (rc->changed && fsync(rc->sub_fd) < 0)
        log_error("spool: fsync %s/%s: %s", rc->dir, sub, strerror(errno));
    closedir(d);
    return 0;
}

static void recover_tmp_entry(struct recover *rc, const char *name)
{
    recover_remove(rc, name, " (tmp/)");
}

/* free/ holds no message, only files to reuse; after a crash a name there
 * might still point at a file that a queued message has taken since, so
 * none is kept. */
static void recover_free_entry(struct recover *rc, const char *name)
{
    if (unlinkat(rc->sub_fd, name, 0) == 0)
        rc->changed = true;
}

int spool_recover(const char *dir, char *error, size_t errsize)
{
    struct recover rc = { .corrupt_fd = -1, .dir = dir };
    int ret = -1;

    rc.dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (rc.dir_fd < 0) {
        snprintf(error, errsize, "spool %s: %s", dir, strerror(errno));
        return -1;
    }
    if (recover_scan(&rc, "free", recover_free_entry, error, errsize) == 0 &&
        recover_scan(&rc, "tmp", recover_tmp_entry, error, errsize) == 0 &&
        recover_scan(&rc, "queue", recover_queue_entry, error, errsize) == 0 &&
        recover_scan(&rc, "hold", recover_queue_entry, error, errsize) == 0)
        ret = rc.count;
    if (rc.corrupt_fd >= 0) {
        if (rc.corrupt_changed && fsync(rc.corrupt_fd) < 0)
            log_error("spool: fsync %s/corrupt: %s", dir, strerror(errno));
        close(rc.corrupt_fd);
    }
    close(rc.dir_fd);
    return ret;
}

/*
 * test-spool — unit tests for lib/spool and the lib/workpool its commits run
 * on, against a real event_base in a mkdtemp directory: commit, commit into
 * hold/, group commit, writing from an evbuffer, detach, abort, rewrite
 * before the commit, close draining pending commits, recovery of queue/ and
 * hold/, a full disk on a tiny tmpfs, queue id uniqueness, the pool of files
 * to reuse (lib/spool-pool). The formats the
 * spool writes (header line, envelope, header lines to add) are
 * test-spool-format's.
 *
 * Trusts nothing but cmocka and libevent; needs root only for the tmpfs test,
 * which is skipped when mount(2) is refused.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "lib/spool-format.h"
#include "lib/spool-pool.h"
#include "lib/spool.h"
#include "lib/workpool.h"
#include "tests/unit/spool-test.h"

struct commit_result {
    int calls;
    int error;
    int *total; /* also counted here when set */
};

static int setup(void **state)
{
    struct spool_test *fx = calloc(1, sizeof(*fx));

    assert_non_null(fx);
    spool_test_open(fx, "test-spool");
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    spool_test_close(*state);
    free(*state);
    return 0;
}

/* Runs the loop until *counter reaches target; fails after 60 seconds. */
static void run_until(struct event_base *base, const int *counter, int target)
{
    const struct timeval tick = { 0, 20000 };
    time_t start = time(NULL);

    while (*counter < target) {
        assert_true(time(NULL) - start < 60);
        event_base_loopexit(base, &tick);
        event_base_loop(base, EVLOOP_ONCE);
    }
}

static void on_commit(void *ctx, int error)
{
    struct commit_result *res = ctx;

    res->calls++;
    res->error = error;
    if (res->total != NULL)
        (*res->total)++;
}

static int count_files(const char *dir, const char *sub)
{
    char path[256];
    struct dirent *de;
    int n = 0;
    DIR *d;

    snprintf(path, sizeof(path), "%s/%s", dir, sub);
    d = opendir(path);
    assert_non_null(d);
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] != '.')
            n++;
    }
    closedir(d);
    return n;
}

static void queue_path(const struct spool_test *fx, const char *sub, const char *id, char *buf,
                       size_t size)
{
    snprintf(buf, size, "%s/%s/%s", fx->spool_dir, sub, id);
}

static bool exists(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0;
}

/* ---- workpool ---- */

struct pool_test {
    atomic_int worked;
    int done;
    int cancelled;
    pthread_t loop_thread;
};

static void pool_work(void *ctx)
{
    struct pool_test *pt = ctx;

    atomic_fetch_add(&pt->worked, 1);
}

static void pool_done(void *ctx, bool cancelled)
{
    struct pool_test *pt = ctx;

    assert_true(pthread_equal(pthread_self(), pt->loop_thread));
    pt->done++;
    pt->cancelled += cancelled;
}

static void test_workpool(void **state)
{
    struct spool_test *fx = *state;
    struct pool_test pt = { .loop_thread = pthread_self() };
    struct workpool *pool = workpool_create(fx->base, 4);

    assert_non_null(pool);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(workpool_submit(pool, pool_work, pool_done, &pt), 0);
    run_until(fx->base, &pt.done, 1000);
    assert_int_equal(atomic_load(&pt.worked), 1000);
    assert_int_equal(pt.done, 1000);
    assert_int_equal(pt.cancelled, 0);
    /* destroyed with jobs queued: destroy settles every one of them, those
     * whose work ran and those cancelled, and nothing comes afterwards */
    for (int i = 0; i < 100; i++)
        assert_int_equal(workpool_submit(pool, pool_work, pool_done, &pt), 0);
    workpool_destroy(&pool);
    assert_null(pool);
    assert_int_equal(pt.done, 1100);
    assert_int_equal(atomic_load(&pt.worked) - 1000, 100 - pt.cancelled);
    event_base_loop(fx->base, EVLOOP_NONBLOCK);
    assert_int_equal(pt.done, 1100);
    workpool_destroy(&pool);
}

static void pool_slow_work(void *ctx)
{
    usleep(20000);
    pool_work(ctx);
}

/* One thread busy with slow work: destroy finishes the running job and
 * cancels the queued ones, each settled exactly once. */
static void test_workpool_cancel(void **state)
{
    struct spool_test *fx = *state;
    struct pool_test pt = { .loop_thread = pthread_self() };
    struct workpool *pool = workpool_create(fx->base, 1);

    assert_non_null(pool);
    for (int i = 0; i < 10; i++)
        assert_int_equal(workpool_submit(pool, pool_slow_work, pool_done, &pt), 0);
    workpool_destroy(&pool);
    assert_int_equal(pt.done, 10);
    assert_true(pt.cancelled >= 1);
    assert_int_equal(atomic_load(&pt.worked) + pt.cancelled, 10);
}

/* ---- the spool ---- */

static void sample_envelope(struct spool_envelope *env, struct spool_rcpt *rcpt)
{
    memset(env, 0, sizeof(*env));
    rcpt->addr = "user@example.org";
    rcpt->notify = 6;
    rcpt->orcpt = "rfc822;user@example.org";
    env->sender = "sender@example.com";
    env->rcpts = rcpt;
    env->rcpt_count = 1;
    env->client_addr = "192.0.2.1";
    env->received = time(NULL);
}

static char *read_file(const char *path, size_t *len_r)
{
    struct stat st;
    char *buf;
    int fd = open(path, O_RDONLY);

    assert_true(fd >= 0);
    assert_int_equal(fstat(fd, &st), 0);
    buf = malloc((size_t)st.st_size + 1);
    assert_int_equal(read(fd, buf, (size_t)st.st_size), st.st_size);
    close(fd);
    *len_r = (size_t)st.st_size;
    return buf;
}

/* Checks a committed file in sub/: header, exact content, envelope. */
static void check_committed_in(struct spool_test *fx, const char *sub, const char *id,
                               const char *content, size_t clen)
{
    struct spool_envelope *env = NULL;
    uint64_t off = 0, len = 0;
    char path[256], error[256], *file;
    size_t flen;

    queue_path(fx, sub, id, path, sizeof(path));
    assert_int_equal(spool_read_envelope(path, &env, &off, &len, error, sizeof(error)), 0);
    assert_int_equal(off, SPOOL_HEADER_LEN);
    assert_int_equal(len, clen);
    assert_string_equal(env->queue_id, id);
    assert_int_equal(env->size, clen);
    assert_string_equal(env->sender, "sender@example.com");
    assert_string_equal(env->rcpts[0].orcpt, "rfc822;user@example.org");
    spool_envelope_free(&env);
    file = read_file(path, &flen);
    assert_true(flen > off + len + 4);
    assert_memory_equal(file + off, content, clen);
    assert_memory_equal(file + flen - 4, "END\n", 4);
    free(file);
    queue_path(fx, "tmp", id, path, sizeof(path));
    assert_false(exists(path));
    queue_path(fx, strcmp(sub, "queue") == 0 ? "hold" : "queue", id, path, sizeof(path));
    assert_false(exists(path));
}

static void check_committed(struct spool_test *fx, const char *id, const char *content, size_t clen)
{
    check_committed_in(fx, "queue", id, content, clen);
}

static char *make_content(size_t len, unsigned seed)
{
    char *content = malloc(len);

    for (size_t i = 0; i < len; i++)
        content[i] = (char)((i * 31 + seed) % 251);
    return content;
}

/* Commits a message of clen octets written chunk by chunk through spool, and
 * checks the file; its queue id into id. */
static void commit_through(struct spool_test *fx, struct spool *spool, size_t clen, size_t chunk,
                           char id[SPOOL_QUEUE_ID_MAX + 1])
{
    struct commit_result res = { 0, -1, NULL };
    struct spool_envelope env;
    struct spool_rcpt rcpt;
    char *content = make_content(clen, (unsigned)clen);
    struct spool_msg *msg;

    spool_new_queue_id(spool, id, SPOOL_QUEUE_ID_MAX + 1);
    msg = spool_msg_begin(spool, id);
    assert_non_null(msg);
    for (size_t off = 0; off < clen; off += chunk) {
        size_t n = clen - off < chunk ? clen - off : chunk;

        assert_int_equal(spool_msg_write(msg, content + off, n), 0);
    }
    assert_int_equal(spool_msg_size(msg), clen);
    sample_envelope(&env, &rcpt);
    assert_int_equal(spool_msg_commit(msg, &env, on_commit, &res), 0);
    run_until(fx->base, &res.calls, 1);
    assert_int_equal(res.calls, 1);
    assert_int_equal(res.error, 0);
    check_committed(fx, id, content, clen);
    free(content);
}

static void commit_and_check(struct spool_test *fx, size_t clen, size_t chunk)
{
    char id[SPOOL_QUEUE_ID_MAX + 1];

    commit_through(fx, fx->spool, clen, chunk, id);
}

static void test_commit(void **state)
{
    struct spool_test *fx = *state;

    commit_and_check(fx, 2048, 100);         /* fits the buffer: one write */
    commit_and_check(fx, 0, 1);              /* empty content */
    commit_and_check(fx, 300 * 1024, 7000);  /* flushed, header patched by pwrite */
    commit_and_check(fx, 200 * 1024, 100000); /* writes bigger than the buffer */
    assert_int_equal(count_files(fx->spool_dir, "queue"), 4);
    assert_int_equal(count_files(fx->spool_dir, "tmp"), 0);
}

/* A HOLD verdict: the message goes to hold/ with the same durability, its
 * header lines to add with it; in a batch with queued ones, each lands in
 * its own directory. */
static void test_commit_hold(void **state)
{
    static const char headers[] = "X-Spam-Flag: YES\r\nX-Postern-Score: 12.5\r\n";
    struct spool_test *fx = *state;
    struct commit_result res[10];
    char ids[10][SPOOL_QUEUE_ID_MAX + 1], path[256], error[256];
    struct spool_envelope env, *parsed = NULL;
    struct spool_rcpt rcpt;
    int total = 0;

    assert_int_equal(count_files(fx->spool_dir, "hold"), 0); /* made by spool_open */
    sample_envelope(&env, &rcpt);
    env.add_headers = (char *)headers;
    for (int i = 0; i < 10; i++) {
        struct spool_msg *msg;

        res[i] = (struct commit_result){ 0, -1, &total };
        spool_new_queue_id(fx->spool, ids[i], sizeof(ids[i]));
        msg = spool_msg_begin(fx->spool, ids[i]);
        assert_non_null(msg);
        assert_int_equal(spool_msg_write(msg, "held\r\n", 6), 0);
        if (i % 2 == 0)
            assert_int_equal(spool_msg_commit_hold(msg, &env, on_commit, &res[i]), 0);
        else
            assert_int_equal(spool_msg_commit(msg, &env, on_commit, &res[i]), 0);
    }
    run_until(fx->base, &total, 10);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(res[i].calls, 1);
        assert_int_equal(res[i].error, 0);
        check_committed_in(fx, i % 2 == 0 ? "hold" : "queue", ids[i], "held\r\n", 6);
    }
    assert_int_equal(count_files(fx->spool_dir, "hold"), 5);
    assert_int_equal(count_files(fx->spool_dir, "queue"), 5);
    assert_int_equal(count_files(fx->spool_dir, "tmp"), 0);

    queue_path(fx, "hold", ids[0], path, sizeof(path));
    assert_int_equal(spool_read_envelope(path, &parsed, NULL, NULL, error, sizeof(error)), 0);
    assert_string_equal(parsed->add_headers, headers);
    assert_int_equal(parsed->size, 6); /* the added lines are not content */
    spool_envelope_free(&parsed);

    /* a held message whose header lines would not parse back: refused at
     * once, nothing left anywhere */
    {
        struct commit_result bad = { 0, -1, NULL };
        char id[SPOOL_QUEUE_ID_MAX + 1];
        struct spool_msg *msg;

        env.add_headers = "X-Bad: bare\nLF\r\n";
        spool_new_queue_id(fx->spool, id, sizeof(id));
        msg = spool_msg_begin(fx->spool, id);
        assert_non_null(msg);
        assert_int_equal(spool_msg_write(msg, "x\r\n", 3), 0);
        assert_int_equal(spool_msg_commit_hold(msg, &env, on_commit, &bad), -1);
        assert_int_equal(errno, EINVAL);
        event_base_loop(fx->base, EVLOOP_NONBLOCK);
        assert_int_equal(bad.calls, 0);
        assert_int_equal(count_files(fx->spool_dir, "tmp"), 0);
        assert_int_equal(count_files(fx->spool_dir, "hold"), 5);
    }
}

/* Commits still pending when the spool closes land in hold/ too. */
static void test_close_drains_hold(void **state)
{
    struct spool_test *fx = *state;
    struct commit_result res = { 0, -1, NULL };
    struct spool_envelope env;
    struct spool_rcpt rcpt;
    char id[SPOOL_QUEUE_ID_MAX + 1];
    struct spool_msg *msg;

    sample_envelope(&env, &rcpt);
    spool_new_queue_id(fx->spool, id, sizeof(id));
    msg = spool_msg_begin(fx->spool, id);
    assert_int_equal(spool_msg_write(msg, "data\r\n", 6), 0);
    assert_int_equal(spool_msg_commit_hold(msg, &env, on_commit, &res), 0);
    spool_close(&fx->spool);
    assert_int_equal(res.calls, 1);
    assert_int_equal(res.error, 0);
    check_committed_in(fx, "hold", id, "data\r\n", 6);
}

static void test_write_evbuffer(void **state)
{
    struct spool_test *fx = *state;
    struct commit_result res = { 0, -1, NULL };
    struct evbuffer *eb = evbuffer_new();
    char *content = make_content(100000, 3);
    struct spool_envelope env;
    struct spool_rcpt rcpt;
    char id[SPOOL_QUEUE_ID_MAX + 1];
    struct spool_msg *msg;

    for (size_t off = 0; off < 100000; off += 10000) /* several chains */
        evbuffer_add(eb, content + off, 10000);
    spool_new_queue_id(fx->spool, id, sizeof(id));
    msg = spool_msg_begin(fx->spool, id);
    assert_non_null(msg);
    assert_int_equal(spool_msg_write_evbuffer(msg, eb), 0);
    assert_int_equal(evbuffer_get_length(eb), 0);
    sample_envelope(&env, &rcpt);
    assert_int_equal(spool_msg_commit(msg, &env, on_commit, &res), 0);
    run_until(fx->base, &res.calls, 1);
    assert_int_equal(res.error, 0);
    check_committed(fx, id, content, 100000);
    evbuffer_free(eb);
    free(content);
}

#define MANY 200

static void test_group_commit(void **state)
{
    struct spool_test *fx = *state;
    static struct commit_result res[MANY];
    static char ids[MANY][SPOOL_QUEUE_ID_MAX + 1];
    struct spool_envelope env;
    struct spool_rcpt rcpt;
    int total = 0;
    char *content = make_content(2048, 9);

    memset(res, 0, sizeof(res));
    sample_envelope(&env, &rcpt);
    for (int i = 0; i < MANY; i++) {
        struct spool_msg *msg;

        spool_new_queue_id(fx->spool, ids[i], sizeof(ids[i]));
        msg = spool_msg_begin(fx->spool, ids[i]);
        assert_non_null(msg);
        assert_int_equal(spool_msg_write(msg, content, 2048), 0);
        res[i].error = -1;
        res[i].total = &total;
        assert_int_equal(spool_msg_commit(msg, &env, on_commit, &res[i]), 0);
    }
    run_until(fx->base, &total, MANY);
    for (int i = 0; i < MANY; i++) {
        assert_int_equal(res[i].calls, 1);
        assert_int_equal(res[i].error, 0);
        check_committed(fx, ids[i], content, 2048);
    }
    assert_int_equal(count_files(fx->spool_dir, "queue"), MANY);
    event_base_loop(fx->base, EVLOOP_NONBLOCK); /* no second callback */
    for (int i = 0; i < MANY; i++)
        assert_int_equal(res[i].calls, 1);
    free(content);
}

static void test_detach(void **state)
{
    struct spool_test *fx = *state;
    struct commit_result res = { 0, -1, NULL }, other = { 0, -1, NULL };
    struct spool_envelope env;
    struct spool_rcpt rcpt;
    char id[SPOOL_QUEUE_ID_MAX + 1], id2[SPOOL_QUEUE_ID_MAX + 1];
    struct spool_msg *msg, *msg2;

    sample_envelope(&env, &rcpt);
    spool_new_queue_id(fx->spool, id, sizeof(id));
    spool_new_queue_id(fx->spool, id2, sizeof(id2));
    msg = spool_msg_begin(fx->spool, id);
    msg2 = spool_msg_begin(fx->spool, id2);
    assert_int_equal(spool_msg_write(msg, "hello\r\n", 7), 0);
    assert_int_equal(spool_msg_write(msg2, "world\r\n", 7), 0);
    assert_int_equal(spool_msg_commit(msg, &env, on_commit, &res), 0);
    spool_msg_detach(msg);
    assert_int_equal(spool_msg_commit(msg2, &env, on_commit, &other), 0);
    run_until(fx->base, &other.calls, 1);
    spool_close(&fx->spool);
    assert_int_equal(res.calls, 0);
    assert_int_equal(other.calls, 1);
    check_committed(fx, id, "hello\r\n", 7);
    check_committed(fx, id2, "world\r\n", 7);
}

/* A rewrite before the commit: the content is readable through
 * spool_msg_content; the new one goes to tmp/<id>.new, takes the old one's
 * place on finish, and is what the commit makes durable (the envelope's
 * size follows it); a rewrite aborted or failing leaves the message as it
 * was and nothing behind. */
static void test_rewrite(void **state)
{
    struct spool_test *fx = *state;
    struct commit_result res = { 0, -1, NULL };
    char id[SPOOL_QUEUE_ID_MAX + 1], path[256], buf[64];
    char *big = make_content(200000, 5);
    struct spool_envelope env, *parsed = NULL;
    struct spool_rcpt rcpt;
    struct spool_msg *msg, *dst;
    uint64_t off, len;
    int fd;

    sample_envelope(&env, &rcpt);
    spool_new_queue_id(fx->spool, id, sizeof(id));
    msg = spool_msg_begin(fx->spool, id);
    assert_int_equal(spool_msg_write(msg, "old content\r\n", 13), 0);
    assert_int_equal(spool_msg_content(msg, &fd, &off, &len), 0);
    assert_int_equal(len, 13);
    assert_int_equal(pread(fd, buf, 13, (off_t)off), 13); /* readable: the filters read it */
    assert_memory_equal(buf, "old content\r\n", 13);

    /* aborted: the message keeps its content */
    dst = spool_msg_rewrite_begin(msg);
    assert_non_null(dst);
    assert_int_equal(count_files(fx->spool_dir, "tmp"), 2);
    assert_int_equal(spool_msg_write(dst, "x\r\n", 3), 0);
    spool_msg_abort(&dst);
    assert_int_equal(count_files(fx->spool_dir, "tmp"), 1);
    assert_int_equal(spool_msg_size(msg), 13);

    /* the rename fails (its file vanished): -1, the message as it was */
    dst = spool_msg_rewrite_begin(msg);
    assert_non_null(dst);
    snprintf(path, sizeof(path), "%s/tmp/%s.new", fx->spool_dir, id);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(spool_msg_rewrite_finish(msg, &dst), -1);
    assert_int_equal(errno, ENOENT);
    assert_null(dst);
    assert_int_equal(spool_msg_size(msg), 13);
    assert_int_equal(count_files(fx->spool_dir, "tmp"), 1);

    /* done: larger than the write buffer, so both flushed and buffered */
    dst = spool_msg_rewrite_begin(msg);
    assert_non_null(dst);
    assert_int_equal(spool_msg_write(dst, big, 200000), 0);
    assert_int_equal(spool_msg_write(dst, "tail\r\n", 6), 0);
    assert_int_equal(spool_msg_rewrite_finish(msg, &dst), 0);
    assert_null(dst);
    assert_int_equal(count_files(fx->spool_dir, "tmp"), 1);
    assert_int_equal(spool_msg_size(msg), 200006);
    assert_int_equal(spool_msg_write(msg, "more\r\n", 6), 0); /* appends go on */
    assert_int_equal(spool_msg_commit(msg, &env, on_commit, &res), 0);
    run_until(fx->base, &res.calls, 1);
    assert_int_equal(res.error, 0);
    big = realloc(big, 200012);
    memcpy(big + 200000, "tail\r\nmore\r\n", 12);
    check_committed(fx, id, big, 200012);
    queue_path(fx, "queue", id, path, sizeof(path));
    assert_int_equal(spool_read_envelope(path, &parsed, NULL, NULL, buf, sizeof(buf)), 0);
    assert_int_equal(parsed->size, 200012);
    spool_envelope_free(&parsed);
    assert_int_equal(count_files(fx->spool_dir, "tmp"), 0);
    free(big);
}

static void test_abort(void **state)
{
    struct spool_test *fx = *state;
    char id[SPOOL_QUEUE_ID_MAX + 1], path[256];
    struct spool_msg *msg;

    spool_new_queue_id(fx->spool, id, sizeof(id));
    msg = spool_msg_begin(fx->spool, id);
    assert_non_null(msg);
    queue_path(fx, "tmp", id, path, sizeof(path));
    assert_true(exists(path));
    assert_int_equal(spool_msg_write(msg, "x", 1), 0);
    spool_msg_abort(&msg);
    assert_null(msg);
    spool_msg_abort(&msg);
    assert_false(exists(path));
    assert_int_equal(count_files(fx->spool_dir, "tmp"), 0);
    assert_int_equal(count_files(fx->spool_dir, "queue"), 0);

    /* a queue id in use is refused */
    msg = spool_msg_begin(fx->spool, id);
    assert_non_null(msg);
    assert_null(spool_msg_begin(fx->spool, id));
    assert_int_equal(errno, EEXIST);
    spool_msg_abort(&msg);
}

static void test_close_drains(void **state)
{
    struct spool_test *fx = *state;
    struct commit_result res[5];
    struct spool_envelope env;
    struct spool_rcpt rcpt;
    char id[SPOOL_QUEUE_ID_MAX + 1];

    sample_envelope(&env, &rcpt);
    for (int i = 0; i < 5; i++) {
        struct spool_msg *msg;

        res[i].calls = 0;
        res[i].error = -1;
        res[i].total = NULL;

        spool_new_queue_id(fx->spool, id, sizeof(id));
        msg = spool_msg_begin(fx->spool, id);
        assert_int_equal(spool_msg_write(msg, "data\r\n", 6), 0);
        assert_int_equal(spool_msg_commit(msg, &env, on_commit, &res[i]), 0);
    }
    spool_close(&fx->spool); /* without running the loop */
    for (int i = 0; i < 5; i++) {
        assert_int_equal(res[i].calls, 1);
        assert_int_equal(res[i].error, 0);
    }
    assert_int_equal(count_files(fx->spool_dir, "queue"), 5);
}

static void write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_CREAT | O_EXCL | O_WRONLY, 0600);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
}

/* A spool file with the given header numbers, content "hi\r\n" and tail. */
static void write_spool_file(const char *path, uint64_t clen, uint64_t eoff, const char *tail)
{
    char buf[4096];

    spool_header_format(buf, clen, eoff);
    memcpy(buf + SPOOL_HEADER_LEN, "hi\r\n", 4);
    strcpy(buf + SPOOL_HEADER_LEN + 4, tail);
    write_file(path, buf, SPOOL_HEADER_LEN + 4 + strlen(tail));
}

static void check_read(const struct spool_test *fx, const char *id, int expect)
{
    struct spool_envelope *env = NULL;
    uint64_t off = 0, len = 0;
    char path[256], error[256] = "";

    queue_path(fx, "queue", id, path, sizeof(path));
    assert_int_equal(spool_read_envelope(path, &env, &off, &len, error, sizeof(error)), expect);
    assert_true(expect == 0 ? env != NULL : env == NULL && error[0] != '\0');
    spool_envelope_free(&env);
}

/* Leaves one committed message, then plants a file of every kind. */
static void plant_recover_files(struct spool_test *fx)
{
    const uint64_t eoff = SPOOL_HEADER_LEN + 4;
    const char *garbage = "garbage garbage garbage garbage garbage garbage garbage garbage "
                          "garbage garbage garbage\n";
    char path[256];

    commit_and_check(fx, 2048, 512);
    spool_close(&fx->spool);
    queue_path(fx, "tmp", "T1", path, sizeof(path));
    write_file(path, "partial", 7);
    queue_path(fx, "tmp", "T2", path, sizeof(path));
    write_file(path, "", 0);
    queue_path(fx, "queue", "ZERO", path, sizeof(path));
    write_spool_file(path, 0, 0, "");
    queue_path(fx, "queue", "NOEND", path, sizeof(path));
    write_spool_file(path, 4, eoff, "queue_id NOEND\nsender a\nreceived 1\nsize 4\nrcpt b 0\n");
    queue_path(fx, "queue", "SHORT", path, sizeof(path));
    write_file(path, "POSTERN", 7);
    queue_path(fx, "queue", "GOOD", path, sizeof(path));
    write_spool_file(path, 4, eoff, "queue_id GOOD\nsender a\nreceived 1\nsize 4\nrcpt b 0\nEND\n");
    queue_path(fx, "queue", "BADHDR", path, sizeof(path));
    write_file(path, garbage, strlen(garbage));
    queue_path(fx, "queue", "BADREC", path, sizeof(path));
    write_spool_file(path, 4, eoff, "queue_id BADREC\nbogus 1\nEND\n");
    queue_path(fx, "queue", "BADSIZE", path, sizeof(path));
    write_spool_file(path, 4, eoff, "queue_id B\nsender a\nreceived 1\nsize 5\nrcpt b 0\nEND\n");
    /* a reused file renamed, its new content lost in a crash: the old
     * message's, under another id */
    queue_path(fx, "queue", "STALE", path, sizeof(path));
    write_spool_file(path, 4, eoff, "queue_id OLDER\nsender a\nreceived 1\nsize 4\nrcpt b 0\nEND\n");
}

static void test_recover(void **state)
{
    struct spool_test *fx = *state;
    char path[256], error[256];

    plant_recover_files(fx);
    check_read(fx, "ZERO", 1);
    check_read(fx, "NOEND", 1);
    check_read(fx, "SHORT", 1);
    check_read(fx, "GOOD", 0);
    check_read(fx, "BADHDR", -1);
    check_read(fx, "BADREC", -1);
    check_read(fx, "BADSIZE", -1);
    check_read(fx, "MISSING", -1);

    assert_int_equal(spool_recover(fx->spool_dir, error, sizeof(error)), 9);
    assert_int_equal(count_files(fx->spool_dir, "tmp"), 0);
    assert_int_equal(count_files(fx->spool_dir, "queue"), 2);
    queue_path(fx, "queue", "STALE", path, sizeof(path));
    assert_false(exists(path));
    queue_path(fx, "queue", "GOOD", path, sizeof(path));
    assert_true(exists(path));
    assert_int_equal(count_files(fx->spool_dir, "corrupt"), 3);
    queue_path(fx, "corrupt", "BADHDR", path, sizeof(path));
    assert_true(exists(path));
    queue_path(fx, "corrupt", "BADREC", path, sizeof(path));
    assert_true(exists(path));
    /* a second scan finds nothing to do */
    assert_int_equal(spool_recover(fx->spool_dir, error, sizeof(error)), 0);
    snprintf(path, sizeof(path), "%s/nonexistent", fx->dir);
    assert_int_equal(spool_recover(path, error, sizeof(error)), -1);
}

/* hold/ is scanned like queue/: complete files stay where they are (the
 * queue manager never sees them), incomplete ones go, corrupt ones are
 * moved aside. */
static void test_recover_hold(void **state)
{
    struct spool_test *fx = *state;
    const uint64_t eoff = SPOOL_HEADER_LEN + 4;
    char path[256], error[256];
    char id[SPOOL_QUEUE_ID_MAX + 1];
    struct commit_result res = { 0, -1, NULL };
    struct spool_envelope env;
    struct spool_rcpt rcpt;
    struct spool_msg *msg;

    sample_envelope(&env, &rcpt);
    env.add_headers = "X-Spam-Flag: YES\r\n";
    spool_new_queue_id(fx->spool, id, sizeof(id));
    msg = spool_msg_begin(fx->spool, id);
    assert_int_equal(spool_msg_write(msg, "held\r\n", 6), 0);
    assert_int_equal(spool_msg_commit_hold(msg, &env, on_commit, &res), 0);
    run_until(fx->base, &res.calls, 1);
    assert_int_equal(res.error, 0);
    spool_close(&fx->spool);

    queue_path(fx, "hold", "GOOD", path, sizeof(path));
    write_spool_file(path, 4, eoff, "queue_id GOOD\nsender a\nreceived 1\nsize 4\nrcpt b 0\nEND\n"
                                    "T 1700000000 1\n");
    queue_path(fx, "hold", "NOEND", path, sizeof(path));
    write_spool_file(path, 4, eoff, "queue_id NOEND\nsender a\nreceived 1\nsize 4\nrcpt b 0\n");
    queue_path(fx, "hold", "BADHDRS", path, sizeof(path));
    write_spool_file(path, 4, eoff,
                     "queue_id BADHDRS\nsender a\nreceived 1\nsize 4\nrcpt b 0\n"
                     "add_headers X-A:%20b%0A\nEND\n");

    assert_int_equal(spool_recover(fx->spool_dir, error, sizeof(error)), 2);
    assert_int_equal(count_files(fx->spool_dir, "hold"), 2);
    assert_int_equal(count_files(fx->spool_dir, "queue"), 0);
    check_committed_in(fx, "hold", id, "held\r\n", 6);
    queue_path(fx, "hold", "GOOD", path, sizeof(path));
    assert_true(exists(path));
    queue_path(fx, "corrupt", "BADHDRS", path, sizeof(path));
    assert_true(exists(path));
    assert_int_equal(spool_recover(fx->spool_dir, error, sizeof(error)), 0);
}

static void assert_spool_empty(const struct spool_test *fx)
{
    assert_int_equal(count_files(fx->spool_dir, "tmp"), 0);
    assert_int_equal(count_files(fx->spool_dir, "queue"), 0);
}

/* Fails while writing (a flush): sticky, then the commit fails too. */
static void disk_full_while_writing(struct spool_test *fx, const char *content)
{
    struct commit_result res = { 0, -1, NULL };
    char id[SPOOL_QUEUE_ID_MAX + 1];
    struct spool_envelope env;
    struct spool_rcpt rcpt;
    struct spool_msg *msg;
    int ret = 0;

    sample_envelope(&env, &rcpt);
    spool_new_queue_id(fx->spool, id, sizeof(id));
    msg = spool_msg_begin(fx->spool, id);
    assert_non_null(msg);
    for (int i = 0; i < 64 && ret == 0; i++)
        ret = spool_msg_write(msg, content, 8192);
    assert_int_equal(ret, -1);
    assert_int_equal(errno, ENOSPC);
    assert_int_equal(spool_msg_write(msg, "x", 1), -1);
    assert_int_equal(errno, ENOSPC);
    assert_int_equal(spool_msg_commit(msg, &env, on_commit, &res), -1);
    assert_int_equal(errno, ENOSPC);
    event_base_loop(fx->base, EVLOOP_NONBLOCK);
    assert_int_equal(res.calls, 0);
    assert_spool_empty(fx);
}

/* Fails at commit: the content was still in the buffer. */
static void disk_full_at_commit(struct spool_test *fx, const char *content)
{
    struct commit_result res = { 0, -1, NULL };
    char id[SPOOL_QUEUE_ID_MAX + 1], path[256];
    struct spool_envelope env;
    struct spool_rcpt rcpt;
    struct spool_msg *msg;
    int fd;

    snprintf(path, sizeof(path), "%s/filler", fx->spool_dir);
    fd = open(path, O_CREAT | O_WRONLY, 0600);
    for (int i = 0; i < 4; i++)
        assert_int_equal(write(fd, content, 8192), 8192);
    close(fd);
    sample_envelope(&env, &rcpt);
    spool_new_queue_id(fx->spool, id, sizeof(id));
    msg = spool_msg_begin(fx->spool, id);
    for (int i = 0; i < 6; i++)
        assert_int_equal(spool_msg_write(msg, content, 8192), 0);
    assert_int_equal(spool_msg_commit(msg, &env, on_commit, &res), -1);
    assert_int_equal(errno, ENOSPC);
    event_base_loop(fx->base, EVLOOP_NONBLOCK);
    assert_int_equal(res.calls, 0);
    assert_spool_empty(fx);
    unlink(path);
}

/* The spool's file system is a 64 KiB tmpfs: a message that does not fit
 * fails with ENOSPC, stickily, and leaves nothing behind. */
static void test_disk_full(void **state)
{
    struct spool_test *fx = *state;
    char error[256], *content;

    spool_close(&fx->spool);
    if (mount("tmpfs", fx->spool_dir, "tmpfs", 0, "size=64k,mode=0700") < 0)
        skip();
    fx->mounted = true;
    assert_int_equal(spool_open(fx->spool_dir, fx->base, &fx->spool, error, sizeof(error)), 0);
    assert_true(spool_has_space(fx->spool, 16 * 1024));
    assert_false(spool_has_space(fx->spool, 1024 * 1024));
    content = make_content(8192, 1);
    disk_full_while_writing(fx, content);
    disk_full_at_commit(fx, content);
    free(content);
}

static int compare_ids(const void *a, const void *b)
{
    return strcmp(a, b);
}

static struct stat stat_of(const char *path)
{
    struct stat st;

    assert_int_equal(stat(path, &st), 0);
    return st;
}

/* A file the queue manager retires is reused by the next message, in
 * another process's spool too: same inode, cut to the new message's end.
 * Too big a file, or an aborted message's with an error, is unlinked; a
 * clean abort feeds the pool; the start-up scan empties it. */
static void test_pool_reuse(void **state)
{
    struct spool_test *fx = *state;
    char old_id[SPOOL_QUEUE_ID_MAX + 1], id[SPOOL_QUEUE_ID_MAX + 1], path[256], error[256];
    struct spool *other = NULL;
    struct spool_msg *msg;
    struct stat old;

    assert_int_equal(spool_open(fx->spool_dir, fx->base, &other, error, sizeof(error)), 0);
    assert_int_equal(count_files(fx->spool_dir, "free"), 0); /* made by spool_open */
    commit_through(fx, fx->spool, 100 * 1024, 7000, old_id);
    queue_path(fx, "queue", old_id, path, sizeof(path));
    old = stat_of(path);
    assert_int_equal(spool_retire(fx->spool, old_id, 100 * 1024), 0);
    assert_false(exists(path));
    assert_int_equal(count_files(fx->spool_dir, "free"), 1);

    commit_through(fx, other, 2048, 100, id);
    assert_int_equal(count_files(fx->spool_dir, "free"), 0);
    queue_path(fx, "queue", id, path, sizeof(path));
    assert_int_equal(stat_of(path).st_ino, old.st_ino);
    assert_true(stat_of(path).st_size < 4096); /* nothing of the old 100 KiB left */
    assert_true(old.st_size > 100 * 1024);

    assert_int_equal(spool_retire(fx->spool, id, SPOOL_POOL_FILE_MAX + 1), 0);
    assert_false(exists(path));
    assert_int_equal(count_files(fx->spool_dir, "free"), 0);
    assert_int_equal(spool_retire(fx->spool, id, 10), -1);
    assert_int_equal(errno, ENOENT);

    spool_new_queue_id(fx->spool, id, sizeof(id));
    msg = spool_msg_begin(fx->spool, id);
    assert_non_null(msg);
    assert_int_equal(spool_msg_write(msg, "x", 1), 0);
    spool_msg_abort(&msg);
    assert_int_equal(count_files(fx->spool_dir, "tmp"), 0);
    assert_int_equal(count_files(fx->spool_dir, "free"), 1);
    spool_close(&other);
    assert_int_equal(spool_recover(fx->spool_dir, error, sizeof(error)), 0);
    assert_int_equal(count_files(fx->spool_dir, "free"), 0);
}

/* The pool never holds more than SPOOL_POOL_MAX files: the rest are unlinked. */
static void test_pool_cap(void **state)
{
    struct spool_test *fx = *state;
    char name[32], path[256];

    for (int i = 0; i < SPOOL_POOL_MAX + 10; i++) {
        int fd;

        snprintf(name, sizeof(name), "P%04d", i);
        queue_path(fx, "queue", name, path, sizeof(path));
        fd = open(path, O_CREAT | O_WRONLY, 0600);
        assert_true(fd >= 0);
        close(fd);
        assert_int_equal(spool_retire(fx->spool, name, 0), 0);
    }
    assert_int_equal(count_files(fx->spool_dir, "free"), SPOOL_POOL_MAX);
    assert_int_equal(count_files(fx->spool_dir, "queue"), 0);
}

static void test_queue_ids(void **state)
{
    struct spool_test *fx = *state;
    enum { N = 100000, W = 21 };
    char(*ids)[W] = malloc((size_t)N * W);

    for (int i = 0; i < N; i++) {
        spool_new_queue_id(fx->spool, ids[i], W);
        assert_int_equal(strlen(ids[i]), 20);
        assert_int_equal(strspn(ids[i], "0123456789ABCDEF"), 20);
    }
    qsort(ids, N, W, compare_ids);
    for (int i = 1; i < N; i++)
        assert_string_not_equal(ids[i - 1], ids[i]);
    free(ids);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_workpool, setup, teardown),
        cmocka_unit_test_setup_teardown(test_workpool_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_hold, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_drains_hold, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_evbuffer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_detach, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abort, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rewrite, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_drains, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recover, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recover_hold, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disk_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_ids, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pool_reuse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pool_cap, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

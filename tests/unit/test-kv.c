/*
 * test-kv — lib/kv: one suite run against both back ends, LMDB in a temp
 * dir and a real redis-server that the test starts on a free 127.0.0.1 port
 * (state in a temp dir, killed by its pid; it also dies with the test).
 * Covers get/set/del, TTL expiry, incr with expiry, the token bucket, cancel,
 * kv_free with requests pending, exact totals when three processes share a
 * counter or a bucket; and faults: Redis down (KV_ERROR at once, back after
 * a restart), Redis hung with SIGSTOP (KV_TIMEOUT on time while the loop
 * keeps running), LMDB directory that cannot be written.
 *
 * Without redis-server the Redis half is skipped (exit 77 if the rest
 * passed). Nothing leaves 127.0.0.1.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <event2/event.h>

#include "lib/kv.h"
#include "tests/unit/kv-test.h"
#include "tests/unit/loop-test.h"

#define TIMEOUT_MS 500
#define WAIT_MAX_MS 10000 /* an answer that has not come by then never will */
#define PROCS 3
#define INCRS 500
#define BUCKET 100

struct env {
    struct kv_test kt; /* first, for kv_test_group_setup */
    char prefix[32];
    unsigned serial;
    struct event_base *base;
    struct kv *kv;
};

struct waiter {
    int calls;
    struct kv_result res;
    char value[256];
    long at_ms;
};

/* ---- fixture ---- */

static int group_setup_lmdb(void **state)
{
    return kv_test_group_setup(state, sizeof(struct env), KV_BACKEND_LMDB, "test-kv");
}

static int group_setup_redis(void **state)
{
    return kv_test_group_setup(state, sizeof(struct env), KV_BACKEND_REDIS, "test-kv");
}

static struct kv *env_open(struct env *e, struct event_base *base)
{
    char err[256];
    struct kv *kv = NULL;

    if (kv_test_open(&e->kt, base, "state", e->prefix, TIMEOUT_MS, &kv, err, sizeof(err)) < 0)
        fprintf(stderr, "kv_new: %s\n", err);
    return kv;
}

/* Each test gets a fresh handle and, on Redis, a key prefix of its own. */
static int test_setup(void **state)
{
    struct env *e = *state;

    snprintf(e->prefix, sizeof(e->prefix), "t%u:%ld:", ++e->serial, (long)getpid());
    e->base = event_base_new();
    e->kv = e->base != NULL ? env_open(e, e->base) : NULL;
    return e->kv != NULL ? 0 : -1;
}

static int test_teardown(void **state)
{
    struct env *e = *state;

    kv_free(&e->kv);
    event_base_free(e->base);
    e->base = NULL;
    return 0;
}

/* ---- helpers ---- */

static void on_result(void *ctx, const struct kv_result *res)
{
    struct waiter *w = ctx;
    size_t n = res->value_len < sizeof(w->value) - 1 ? res->value_len : sizeof(w->value) - 1;

    w->calls++;
    w->res = *res;
    w->res.value = NULL;
    if (res->value != NULL)
        memcpy(w->value, res->value, n);
    w->value[n] = '\0';
    w->at_ms = now_ms();
}

static bool answered(const void *ctx)
{
    return ((const struct waiter *)ctx)->calls != 0;
}

static void wait_for(struct event_base *base, struct waiter *w)
{
    if (!loop_run_until(base, answered, w, WAIT_MAX_MS))
        fail_msg("no answer in %d ms", WAIT_MAX_MS);
}

static struct waiter do_get(struct env *e, const char *key)
{
    struct waiter w = {.calls = 0};

    assert_non_null(kv_get(e->kv, key, on_result, &w));
    wait_for(e->base, &w);
    return w;
}

static struct waiter do_incr(struct kv *kv, struct event_base *base, const char *key, int64_t d,
                             uint64_t ttl)
{
    struct waiter w = {.calls = 0};

    assert_non_null(kv_incr(kv, key, d, ttl, on_result, &w));
    wait_for(base, &w);
    return w;
}

static struct waiter do_take(struct kv *kv, struct event_base *base, const char *key, double cap,
                             double rate, double cost)
{
    struct waiter w = {.calls = 0};

    if (kv_take(kv, key, cap, rate, cost, on_result, &w) == NULL)
        w.res.status = KV_ERROR;
    else
        wait_for(base, &w);
    return w;
}

/* ---- the table: one step per row, run in order on one handle ---- */

enum step_op { S_GET, S_SET, S_DEL, S_INCR };

struct step {
    enum step_op op;
    const char *key;
    const char *value; /* set; get: expected */
    size_t value_len;  /* set: when the value holds NUL */
    int64_t delta;
    enum kv_status status;
    int64_t number; /* incr: expected */
};

static const struct step steps[] = {
    {.op = S_GET, .key = "a", .status = KV_NOTFOUND},
    {.op = S_SET, .key = "a", .value = "hello", .status = KV_OK},
    {.op = S_GET, .key = "a", .value = "hello", .status = KV_OK},
    {.op = S_SET, .key = "a", .value = "", .status = KV_OK},
    {.op = S_GET, .key = "a", .value = "", .status = KV_OK},
    {.op = S_SET, .key = "bin", .value = "x\0y", .value_len = 3, .status = KV_OK},
    {.op = S_DEL, .key = "a", .status = KV_OK},
    {.op = S_DEL, .key = "a", .status = KV_NOTFOUND},
    {.op = S_GET, .key = "a", .status = KV_NOTFOUND},
    {.op = S_INCR, .key = "n", .delta = 5, .status = KV_OK, .number = 5},
    {.op = S_INCR, .key = "n", .delta = -7, .status = KV_OK, .number = -2},
    {.op = S_GET, .key = "n", .value = "-2", .status = KV_OK},
    {.op = S_SET, .key = "s", .value = "text", .status = KV_OK},
    {.op = S_INCR, .key = "s", .delta = 1, .status = KV_ERROR},
    {.op = S_SET, .key = "n", .value = "41", .status = KV_OK},
    {.op = S_INCR, .key = "n", .delta = 1, .status = KV_OK, .number = 42},
};

static void run_step(struct env *e, const struct step *s)
{
    struct waiter w = {.calls = 0};
    size_t len = s->value_len != 0 ? s->value_len : (s->value != NULL ? strlen(s->value) : 0);
    struct kv_req *req = NULL;

    switch (s->op) {
    case S_GET:
        req = kv_get(e->kv, s->key, on_result, &w);
        break;
    case S_SET:
        req = kv_set(e->kv, s->key, s->value, len, 0, on_result, &w);
        break;
    case S_DEL:
        req = kv_del(e->kv, s->key, on_result, &w);
        break;
    case S_INCR:
        req = kv_incr(e->kv, s->key, s->delta, 0, on_result, &w);
        break;
    }
    assert_non_null(req);
    assert_int_equal(w.calls, 0); /* never inside the call */
    wait_for(e->base, &w);
    assert_int_equal(w.calls, 1);
    assert_string_equal(kv_status_name(w.res.status), kv_status_name(s->status));
    if (s->op == S_GET && s->status == KV_OK) {
        assert_int_equal(w.res.value_len, len);
        assert_memory_equal(w.value, s->value, len);
    }
    if (s->op == S_INCR && s->status == KV_OK)
        assert_int_equal(w.res.number, s->number);
}

/* The same steps sent all at once, without waiting for any answer: the
 * store batches them (LMDB: one transaction, nested writes; Redis: one
 * pipeline) and every answer must still be the one of the steps in order,
 * the failing INCR on a text value included, without spoiling the rest. */
static bool all_answered(const void *ctx)
{
    const struct waiter *w = ctx;

    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++)
        if (w[i].calls == 0)
            return false;
    return true;
}

static void test_burst(void **state)
{
    struct env *e = *state;
    static struct waiter w[sizeof(steps) / sizeof(steps[0])];
    const size_t n = sizeof(steps) / sizeof(steps[0]);

    memset(w, 0, sizeof(w));
    for (size_t i = 0; i < n; i++) {
        const struct step *st = &steps[i];
        size_t len = st->value_len != 0 ? st->value_len : (st->value != NULL ? strlen(st->value) : 0);
        struct kv_req *req = NULL;
        char key[64];
        snprintf(key, sizeof(key), "burst-%s", st->key); /* LMDB keeps test_steps' keys */
        switch (st->op) {
        case S_GET:
            req = kv_get(e->kv, key, on_result, &w[i]);
            break;
        case S_SET:
            req = kv_set(e->kv, key, st->value, len, 0, on_result, &w[i]);
            break;
        case S_DEL:
            req = kv_del(e->kv, key, on_result, &w[i]);
            break;
        case S_INCR:
            req = kv_incr(e->kv, key, st->delta, 0, on_result, &w[i]);
            break;
        }
        assert_non_null(req);
    }
    if (!loop_run_until(e->base, all_answered, w, WAIT_MAX_MS))
        fail_msg("not every answer in %d ms", WAIT_MAX_MS);
    for (size_t i = 0; i < n; i++) {
        const struct step *st = &steps[i];
        size_t len = st->value_len != 0 ? st->value_len : (st->value != NULL ? strlen(st->value) : 0);
        if (w[i].res.status != st->status)
            fail_msg("step %zu: %s, want %s", i, kv_status_name(w[i].res.status),
                     kv_status_name(st->status));
        if (st->op == S_GET && st->status == KV_OK) {
            assert_int_equal(w[i].res.value_len, len);
            assert_memory_equal(w[i].value, st->value, len);
        }
        if (st->op == S_INCR && st->status == KV_OK)
            assert_int_equal(w[i].res.number, st->number);
    }
}

static void test_steps(void **state)
{
    struct env *e = *state;
    struct waiter w;

    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++)
        run_step(e, &steps[i]);
    w = do_get(e, "bin");
    assert_int_equal(w.res.value_len, 3);
    assert_memory_equal(w.value, "x\0y", 3);
    assert_null(kv_get(e->kv, "", on_result, &w));
}

static void test_ttl(void **state)
{
    struct env *e = *state;
    struct waiter w = {.calls = 0};

    assert_non_null(kv_set(e->kv, "t", "v", 1, 150, on_result, &w));
    wait_for(e->base, &w);
    assert_int_equal(w.res.status, KV_OK);
    assert_int_equal(do_get(e, "t").res.status, KV_OK);
    assert_int_equal(do_incr(e->kv, e->base, "c", 1, 200).res.number, 1);
    assert_int_equal(do_incr(e->kv, e->base, "c", 1, 5000).res.number, 2); /* TTL kept */
    loop_run_for(e->base, 300);
    assert_int_equal(do_get(e, "t").res.status, KV_NOTFOUND);
    assert_int_equal(do_incr(e->kv, e->base, "c", 1, 0).res.number, 1); /* expired: new */
    w = (struct waiter){.calls = 0};
    assert_non_null(kv_purge(e->kv, on_result, &w));
    wait_for(e->base, &w);
    assert_int_equal(w.res.status, KV_OK);
}

static void test_bucket(void **state)
{
    struct env *e = *state;
    struct waiter w;

    for (int i = 0; i < 5; i++) {
        w = do_take(e->kv, e->base, "b", 5, 10, 1);
        assert_int_equal(w.res.status, KV_OK);
        assert_true(w.res.allowed);
        assert_true(w.res.tokens < 5 - i && w.res.tokens >= 4 - i);
    }
    w = do_take(e->kv, e->base, "b", 5, 10, 1);
    assert_int_equal(w.res.status, KV_OK);
    assert_false(w.res.allowed);
    loop_run_for(e->base, 250); /* ~2.5 tokens back */
    for (int i = 0; i < 2; i++)
        assert_true(do_take(e->kv, e->base, "b", 5, 10, 1).res.allowed);
    assert_false(do_take(e->kv, e->base, "b2", 5, 10, 6).res.allowed); /* more than capacity */
    assert_true(do_take(e->kv, e->base, "b2", 5, 10, 5).res.allowed);
    assert_null(kv_take(e->kv, "b3", 0, 1, 1, on_result, &w));
}

static void test_cancel(void **state)
{
    struct env *e = *state;
    struct waiter w = {.calls = 0}, w2 = {.calls = 0};
    struct kv_req *req = kv_incr(e->kv, "k", 1, 0, on_result, &w);

    assert_non_null(req);
    kv_cancel(req);
    loop_run_for(e->base, 100);
    assert_int_equal(w.calls, 0);
    assert_non_null(kv_get(e->kv, "k", on_result, &w2));
    wait_for(e->base, &w2);
    assert_int_equal(w2.calls, 1);
    assert_int_equal(w.calls, 0);
}

static void test_free_pending(void **state)
{
    struct env *e = *state;
    struct waiter w[3] = {{.calls = 0}};

    assert_non_null(kv_get(e->kv, "x", on_result, &w[0]));
    assert_non_null(kv_set(e->kv, "x", "1", 1, 0, on_result, &w[1]));
    assert_non_null(kv_incr(e->kv, "y", 1, 0, on_result, &w[2]));
    kv_free(&e->kv);
    assert_null(e->kv);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(w[i].calls, 1);
        assert_int_equal(w[i].res.status, KV_CANCELLED);
    }
    loop_run_for(e->base, 50);
    for (int i = 0; i < 3; i++)
        assert_int_equal(w[i].calls, 1);
}

/* ---- three processes on one counter and one bucket ---- */

/* In a child: its own loop and handle; exit status = successes (<= 255 / counted). */
static void child_run(struct env *e, bool bucket)
{
    struct event_base *base = event_base_new();
    struct kv *kv = base != NULL ? env_open(e, base) : NULL;
    int n = 0;

    if (kv == NULL)
        _exit(255);
    for (int i = 0; i < (bucket ? BUCKET : INCRS); i++) {
        struct waiter w = bucket ? do_take(kv, base, "bucket", BUCKET, 0.001, 1)
                                 : do_incr(kv, base, "counter", 1, 0);

        if (w.res.status != KV_OK)
            _exit(254);
        n += bucket ? w.res.allowed : 0;
    }
    kv_free(&kv);
    event_base_free(base);
    _exit(bucket ? n : 0);
}

static int run_children(struct env *e, bool bucket)
{
    pid_t pids[PROCS];
    int total = 0;

    kv_free(&e->kv); /* no LMDB handle of ours is inherited across fork */
    for (int i = 0; i < PROCS; i++) {
        pids[i] = fork();
        if (pids[i] == 0)
            child_run(e, bucket);
    }
    for (int i = 0; i < PROCS; i++) {
        int st = 0;

        waitpid(pids[i], &st, 0);
        assert_true(WIFEXITED(st));
        assert_true(WEXITSTATUS(st) <= BUCKET);
        total += WEXITSTATUS(st);
    }
    e->kv = env_open(e, e->base);
    assert_non_null(e->kv);
    return total;
}

static void test_concurrent_incr(void **state)
{
    struct env *e = *state;
    struct waiter w;

    run_children(e, false);
    w = do_get(e, "counter");
    assert_int_equal(w.res.status, KV_OK);
    assert_string_equal(w.value, "1500");
}

static void test_concurrent_bucket(void **state)
{
    struct env *e = *state;

    assert_int_equal(run_children(e, true), BUCKET);
    assert_false(do_take(e->kv, e->base, "bucket", BUCKET, 0.001, 1).res.allowed);
}

/* ---- faults ---- */

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    *(long *)arg = now_ms();
}

/* SIGSTOP: the connection stays up, no answer comes. */
static void test_redis_hung(void **state)
{
    struct env *e = *state;
    struct waiter w = {.calls = 0};
    long ticked = 0, start;
    struct timeval tick = {.tv_sec = 0, .tv_usec = 100000};
    struct event *ev = evtimer_new(e->base, on_tick, &ticked);

    assert_int_equal(do_get(e, "h").res.status, KV_NOTFOUND); /* connected */
    kv_test_redis_pause(&e->kt);
    start = now_ms();
    evtimer_add(ev, &tick);
    assert_non_null(kv_incr(e->kv, "h", 1, 0, on_result, &w));
    wait_for(e->base, &w);
    assert_int_equal(w.res.status, KV_TIMEOUT);
    assert_in_range(w.at_ms - start, TIMEOUT_MS - 20, TIMEOUT_MS + 200);
    assert_in_range(ticked - start, 90, 250); /* the loop kept running */
    event_free(ev);
    kv_test_redis_resume(&e->kt);
    w = do_get(e, "h"); /* the late incr's reply is dropped, this one is ours */
    assert_int_equal(w.res.status, KV_OK);
    assert_string_equal(w.value, "1");
}

/* Killed: KV_ERROR at once; restarted: works again after a reconnect. */
static void test_redis_down(void **state)
{
    struct env *e = *state;
    struct waiter w = {.calls = 0};
    long start, deadline;

    assert_int_equal(do_get(e, "d").res.status, KV_NOTFOUND);
    kv_test_redis_stop(&e->kt);
    loop_run_for(e->base, 50); /* the disconnect is seen */
    for (int i = 0; i < 3; i++) {
        start = now_ms();
        w = do_get(e, "d");
        assert_int_equal(w.res.status, KV_ERROR);
        assert_true(w.at_ms - start < 100);
        loop_run_for(e->base, 60);
    }
    assert_int_equal(kv_test_redis_start(&e->kt), 0);
    deadline = now_ms() + 3000;
    do {
        loop_run_for(e->base, 50);
        w = do_get(e, "d");
    } while (w.res.status == KV_ERROR && now_ms() < deadline);
    assert_int_equal(w.res.status, KV_NOTFOUND);
}

static bool open_fails(const char *dir)
{
    struct event_base *base = event_base_new();
    struct kv_config cfg = {.backend = KV_BACKEND_LMDB, .lmdb_dir = dir};
    struct kv *kv = NULL;
    char err[256];
    int rc = kv_new(base, &cfg, &kv, err, sizeof(err));

    kv_free(&kv);
    event_base_free(base);
    return rc < 0 && err[0] != '\0';
}

/* A directory that cannot be written (as nobody, when we are root), and a
 * path under a regular file. */
static void test_lmdb_unwritable(void **state)
{
    struct env *e = *state;
    char ro[96], file[96], under[128];
    int st = 0;
    pid_t pid;

    snprintf(ro, sizeof(ro), "%s/ro", e->kt.dir);
    snprintf(file, sizeof(file), "%s/file", e->kt.dir);
    snprintf(under, sizeof(under), "%s/file/state", e->kt.dir);
    assert_int_equal(mkdir(ro, 0555), 0);
    fclose(fopen(file, "w"));
    assert_true(open_fails(under));
    pid = fork();
    if (pid == 0) {
        if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
            _exit(2);
        _exit(open_fails(ro) ? 0 : 1);
    }
    waitpid(pid, &st, 0);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

#define COMMON_TESTS                                                                               \
    cmocka_unit_test_setup_teardown(test_steps, test_setup, test_teardown),                        \
        cmocka_unit_test_setup_teardown(test_burst, test_setup, test_teardown),                    \
        cmocka_unit_test_setup_teardown(test_ttl, test_setup, test_teardown),                      \
        cmocka_unit_test_setup_teardown(test_bucket, test_setup, test_teardown),                   \
        cmocka_unit_test_setup_teardown(test_cancel, test_setup, test_teardown),                   \
        cmocka_unit_test_setup_teardown(test_free_pending, test_setup, test_teardown),             \
        cmocka_unit_test_setup_teardown(test_concurrent_incr, test_setup, test_teardown),          \
        cmocka_unit_test_setup_teardown(test_concurrent_bucket, test_setup, test_teardown)

int main(void)
{
    const struct CMUnitTest lmdb_tests[] = {
        COMMON_TESTS,
        cmocka_unit_test_setup_teardown(test_lmdb_unwritable, test_setup, test_teardown),
    };
    const struct CMUnitTest redis_tests[] = {
        COMMON_TESTS,
        cmocka_unit_test_setup_teardown(test_redis_hung, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_redis_down, test_setup, test_teardown),
    };
    int failed;

    signal(SIGPIPE, SIG_IGN);
    failed = cmocka_run_group_tests_name("kv-lmdb", lmdb_tests, group_setup_lmdb,
                                         kv_test_group_teardown);
    if (!kv_test_have_redis("test-kv"))
        return failed != 0 ? 1 : 77;
    failed += cmocka_run_group_tests_name("kv-redis", redis_tests, group_setup_redis,
                                          kv_test_group_teardown);
    return failed != 0 ? 1 : 0;
}

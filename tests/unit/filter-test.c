/*
 * filter-test — see filter-test.h.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <string.h>

#include "tests/unit/filter-test.h"
#include "tests/unit/loop-test.h"

void filter_test_open(struct filter_test *ft, const struct filter_module *module,
                      const struct filter_env *env, const void *settings)
{
    const struct filter_common *common = settings;
    char err[256];

    *ft = (struct filter_test){.module = module};
    if (module->create(env, settings, &ft->instance, err, sizeof(err)) < 0)
        fail_msg("create: %s", err);
    struct chain_link link = {.ops = module->ops,
                              .instance = ft->instance,
                              .on_error = (enum filter_on_error)common->on_error,
                              .timeout_ms = (unsigned)common->timeout};
    ft->chain = chain_new(env->base, &link, 1);
    assert_non_null(ft->chain);
}

void filter_test_close(struct filter_test *ft)
{
    chain_free(&ft->chain);
    if (ft->instance != NULL)
        ft->module->destroy(ft->instance);
    ft->instance = NULL;
}

void filter_test_done(void *ctx, const struct chain_result *res)
{
    struct filter_test_result *r = ctx;

    r->calls++;
    r->res = *res;
}

struct wait_for {
    const struct filter_test_result *r;
    size_t n;
};

static bool all_came(const void *ctx)
{
    const struct wait_for *w = ctx;

    for (size_t i = 0; i < w->n; i++)
        if (w->r[i].calls == 0)
            return false;
    return true;
}

long filter_test_wait(struct event_base *base, struct filter_test_result *r, size_t n, long max_ms)
{
    struct wait_for w = {.r = r, .n = n};
    long start = now_ms();

    loop_run_until(base, all_came, &w, max_ms);
    return now_ms() - start;
}

long filter_test_run(struct event_base *base, struct chain_session *s, enum filter_stage stage,
                     const struct filter_txn *txn, struct filter_test_result *r, long max_ms)
{
    long start = now_ms();

    memset(r, 0, sizeof(*r));
    assert_non_null(chain_run(s, stage, txn, filter_test_done, r));
    filter_test_wait(base, r, 1, max_ms);
    assert_int_equal(r->calls, 1);
    return now_ms() - start;
}

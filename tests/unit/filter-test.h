/*
 * filter-test — one filter driven through the chain (filters/chain.h) on a
 * test's event loop, as a gateway worker drives it: the instance made by
 * its module from loaded settings, a chain of that one link (on_error and
 * timeout from the settings' common keys), and a stage run to its result
 * with a deadline on the wait. Used by test-greylist, test-ratelimit,
 * test-dha and test-dnsbl.
 */
#ifndef POSTERN_FILTER_TEST_H
#define POSTERN_FILTER_TEST_H

#include <stddef.h>

#include "filters/chain.h"
#include "filters/module.h"

struct filter_test {
    const struct filter_module *module;
    void *instance;
    struct chain *chain;
};

/* Makes module's instance in env from settings (as the config loaded them:
 * they start with struct filter_common) and a chain of just that link on
 * env->base. Fails the test ("create: <error>") when the module refuses. */
void filter_test_open(struct filter_test *ft, const struct filter_module *module,
                      const struct filter_env *env, const void *settings);

/* Frees the chain and the instance; may be called again, or before open. */
void filter_test_close(struct filter_test *ft);

/* A chain's result as it comes back; calls counts the callbacks. */
struct filter_test_result {
    int calls;
    struct chain_result res;
};

/* A chain_done_cb; ctx is a struct filter_test_result. */
void filter_test_done(void *ctx, const struct chain_result *res);

/* Runs the loop until each of the n results has come, or max_ms have
 * passed; returns the ms it ran. The caller checks the calls. */
long filter_test_wait(struct event_base *base, struct filter_test_result *r, size_t n, long max_ms);

/* Runs stage for txn in session s and the loop until its result (into r,
 * cleared first), at most max_ms; fails the test unless exactly one came.
 * Returns the ms from chain_run to the result. */
long filter_test_run(struct event_base *base, struct chain_session *s, enum filter_stage stage,
                     const struct filter_txn *txn, struct filter_test_result *r, long max_ms);

#endif

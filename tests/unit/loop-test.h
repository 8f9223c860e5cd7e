/*
 * loop-test — running a test's libevent loop: for a fixed time (so timers,
 * expiries and late answers get their turn), or until a condition holds,
 * with a deadline so that a callback that never comes ends the wait instead
 * of hanging the test. Used by test-kv, test-greylist, test-ratelimit,
 * test-dha, test-chain and, through filter-test, test-dnsbl.
 */
#ifndef POSTERN_LOOP_TEST_H
#define POSTERN_LOOP_TEST_H

#include <stdbool.h>

struct event_base;

/* CLOCK_MONOTONIC in milliseconds. */
long now_ms(void);

/* Runs the loop for ms milliseconds. */
void loop_run_for(struct event_base *base, long ms);

/* Runs the loop a turn at a time until done(ctx) is true or max_ms have
 * passed; returns done(ctx). Each turn must succeed (the test fails on an
 * event_base_loop error). Leaves no event of its own behind. */
bool loop_run_until(struct event_base *base, bool (*done)(const void *ctx), const void *ctx,
                    long max_ms);

#endif

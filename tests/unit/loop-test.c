/*
 * loop-test — see loop-test.h.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <time.h>

#include <event2/event.h>

#include "tests/unit/loop-test.h"

long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

void loop_run_for(struct event_base *base, long ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};

    event_base_loopexit(base, &tv);
    event_base_dispatch(base);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    *(bool *)arg = true;
}

/* The deadline is a timer of our own rather than event_base_loopexit: a
 * loopexit left pending would end a later loop_run_for early. The timer
 * also keeps EVLOOP_ONCE from returning at once when nothing else waits. */
bool loop_run_until(struct event_base *base, bool (*done)(const void *ctx), const void *ctx,
                    long max_ms)
{
    struct timeval tv = {.tv_sec = max_ms / 1000, .tv_usec = (max_ms % 1000) * 1000};
    bool expired = false;
    struct event *deadline = evtimer_new(base, on_deadline, &expired);

    assert_non_null(deadline);
    evtimer_add(deadline, &tv);
    while (!done(ctx) && !expired) {
        if (event_base_loop(base, EVLOOP_ONCE) != 0) {
            event_free(deadline);
            fail_msg("event_base_loop failed");
        }
    }
    event_free(deadline);
    return done(ctx);
}

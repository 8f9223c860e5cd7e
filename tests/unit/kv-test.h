/*
 * kv-test — the state stores of the tests that run one suite against both
 * lib/kv back ends: a temp dir per cmocka group (LMDB's directories,
 * redis-server's log), and for the Redis group a real redis-server started
 * on a free 127.0.0.1 port (in the foreground, our child, killed by its pid;
 * it also dies with the test), which a test may stop and start again, or
 * pause with SIGSTOP and resume, to see the store down or hung; and a
 * test's own loop and store in it (kv_test_store_open). Used by
 * test-kv, test-greylist, test-ratelimit and test-dha. Nothing leaves
 * 127.0.0.1.
 */
#ifndef POSTERN_KV_TEST_H
#define POSTERN_KV_TEST_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "lib/kv.h"

#define REDIS_PATH "/usr/bin/redis-server"

struct kv_test {
    enum kv_backend backend;
    char dir[64];    /* the group's temp dir */
    pid_t redis_pid; /* 0 when not running */
    int redis_port;
};

/* cmocka group setup: *state = size zeroed bytes starting with a struct
 * kv_test for backend, its dir made as "/tmp/<name>.XXXXXX" and, for Redis,
 * redis-server started. Returns 0, or -1. */
int kv_test_group_setup(void **state, size_t size, enum kv_backend backend, const char *name);

/* cmocka group teardown: stops redis-server, removes the dir, frees *state. */
int kv_test_group_teardown(void **state);

/* Whether redis-server is installed; if not, says on stderr that name's
 * Redis half is skipped. */
bool kv_test_have_redis(const char *name);

/* Starts redis-server on t's port and dir; 0 once it answers PING, -1 when
 * it does not within 3 s. */
int kv_test_redis_start(struct kv_test *t);
/* Kills it (also when paused) and reaps it; nothing when not running. */
void kv_test_redis_stop(struct kv_test *t);
/* SIGSTOP: connections stay up, no answer comes. */
void kv_test_redis_pause(struct kv_test *t);
/* SIGCONT. */
void kv_test_redis_resume(struct kv_test *t);

/* A handle on base for the group's store: LMDB in <dir>/<lmdb_name>, or the
 * Redis server with every key prefixed by prefix. Returns kv_new's 0, or -1
 * with error. */
int kv_test_open(const struct kv_test *t, struct event_base *base, const char *lmdb_name,
                 const char *prefix, unsigned timeout_ms, struct kv **kv_r, char *error,
                 size_t errsize);

/* A test's own loop and store in the group's back end (test-ratelimit,
 * test-dha): a new event base and a handle on it whose Redis keys start
 * with "t<serial>:<pid>:", serial counting the group's stores, and whose
 * LMDB is <dir>/<lmdb_name> (NULL: "state<serial>", a dir of its own). */
struct kv_test_store {
    unsigned serial;
    char prefix[32];
    struct event_base *base;
    struct kv *kv;
};

/* Opens the next store; returns 0, or -1 with error (nothing left open). */
int kv_test_store_open(const struct kv_test *t, struct kv_test_store *st, const char *lmdb_name,
                       unsigned timeout_ms, char *error, size_t errsize);

/* Frees the handle and the loop; may be called again. */
void kv_test_store_close(struct kv_test_store *st);

#endif

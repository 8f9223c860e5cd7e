/*
 * spool-test — a spool of its own for a unit test: a mkdtemp directory
 * under /tmp, an event_base, and lib/spool opened on <dir>/spool;
 * spool_test_close takes it all away again (after unmounting spool_dir
 * when a test mounted something there). Failures are cmocka assertions.
 */
#ifndef POSTERN_TESTS_SPOOL_TEST_H
#define POSTERN_TESTS_SPOOL_TEST_H

#include <stdbool.h>

struct event_base;
struct spool;

struct spool_test {
    char dir[64]; /* the mkdtemp directory */
    char spool_dir[96];
    struct event_base *base;
    struct spool *spool;
    bool mounted; /* the test mounted a file system on spool_dir */
};

/* name: a word for the directory, "/tmp/<name>.XXXXXX". */
void spool_test_open(struct spool_test *st, const char *name);
void spool_test_close(struct spool_test *st);

#endif

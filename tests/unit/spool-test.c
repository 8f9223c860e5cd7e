/*
 * spool-test — see spool-test.h.
 */
#include "config.h"
#include "tests/unit/spool-test.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>

#include <event2/event.h>

#include "lib/spool.h"

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

void spool_test_open(struct spool_test *st, const char *name)
{
    char error[256];

    memset(st, 0, sizeof(*st));
    assert_true((size_t)snprintf(st->dir, sizeof(st->dir), "/tmp/%s.XXXXXX", name) <
                sizeof(st->dir));
    assert_non_null(mkdtemp(st->dir));
    snprintf(st->spool_dir, sizeof(st->spool_dir), "%s/spool", st->dir);
    st->base = event_base_new();
    assert_non_null(st->base);
    assert_int_equal(spool_open(st->spool_dir, st->base, &st->spool, error, sizeof(error)), 0);
}

void spool_test_close(struct spool_test *st)
{
    spool_close(&st->spool);
    assert_null(st->spool);
    if (st->mounted)
        umount2(st->spool_dir, MNT_DETACH);
    event_base_free(st->base);
    nftw(st->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

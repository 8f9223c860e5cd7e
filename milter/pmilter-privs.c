/*
 * pmilter-privs — see pmilter-privs.h. The socket is libmilter's and is
 * left as it made it (a unix socket keeps the mode the umask gives, owned
 * by root, as when postern-milter ran as root throughout): the MTA only
 * connects to it.
 */
#include "config.h"
#include "milter/pmilter-privs.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gateway/server-config.h"
#include "lib/kv.h"
#include "lib/log.h"

/* Makes dir (mode) when missing and gives it to p's user (follow: as
 * privs_chown's). */
static void own_dir(const struct privs *p, const char *dir, mode_t mode, bool follow)
{
    char error[512];

    if (mkdir(dir, mode) < 0 && errno != EEXIST)
        log_warning("cannot create %s: %s", dir, strerror(errno));
    else if (privs_chown(p, dir, follow, error, sizeof(error)) < 0)
        log_warning("%s", error);
}

/* The LMDB directory and the files a run as root may have left in it. */
static void own_state(const struct postern_config *cfg, const struct privs *p)
{
    static const char *const files[] = {"data.mdb", "lock.mdb"};
    const struct state_settings *st = &cfg->filtering.state;
    char dir[4096], path[4200], error[512];

    if (!cfg->filtering.uses_kv || st->backend != KV_BACKEND_LMDB)
        return;
    if (st->lmdb_dir != NULL)
        snprintf(dir, sizeof(dir), "%s", st->lmdb_dir);
    else
        snprintf(dir, sizeof(dir), "%s/state", cfg->server.spool_dir);
    own_dir(p, dir, 0700, st->lmdb_dir != NULL); /* the admin's, or in spool_dir */
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
        if (access(path, F_OK) == 0 && privs_chown(p, path, false, error, sizeof(error)) < 0)
            log_warning("%s", error);
    }
}

int pmilter_privs_prepare(const struct postern_config *cfg, struct privs *p)
{
    char error[512];

    if (privs_resolve(p, cfg->server.user, cfg->server.group, error, sizeof(error)) < 0) {
        log_error("%s", error);
        return -1;
    }
    /* the state store (greylist's LMDB) lives under spool_dir by default */
    own_dir(p, cfg->server.spool_dir, 0750, true);
    if (p->drop)
        own_state(cfg, p);
    return 0;
}

int pmilter_privs_drop(const struct postern_config *cfg, const struct privs *p, const char *tmp_dir)
{
    char error[512];

    if (!p->drop)
        return 0;
    if (privs_drop(p, error, sizeof(error)) < 0) {
        log_error("%s", error);
        return -1;
    }
    log_info("running as user %s (uid %u, gid %u)", cfg->server.user, (unsigned)p->uid,
             (unsigned)p->gid);
    if (access(tmp_dir, W_OK | X_OK) < 0)
        log_warning("messages are collected in %s, which user %s cannot write: %s", tmp_dir,
                    cfg->server.user, strerror(errno));
    return 0;
}

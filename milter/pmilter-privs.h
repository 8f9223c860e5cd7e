/*
 * pmilter-privs — postern-milter started as root: the user it becomes
 * (posternd's server.user and server.group, resolved as posternd's master
 * does with lib/privs.h), the directories it writes as that user made and
 * given to it, and the switch. pmilter_run opens libmilter's socket (as
 * root) between pmilter_privs_prepare and pmilter_privs_drop, and builds
 * the filters only after the drop.
 *
 * Called by pmilter.c before any thread starts. Trusts the config
 * (validated by the loader). Not started as root, nothing changes user and
 * nothing is given away; spool_dir is still created when missing.
 */
#ifndef POSTERN_PMILTER_PRIVS_H
#define POSTERN_PMILTER_PRIVS_H

#include "lib/privs.h"

struct postern_config;

/* Resolves the user into *p when root, creates spool_dir (0750) and, for
 * an LMDB state store that a filter uses, its directory (state.lmdb_dir,
 * default <spool_dir>/state, 0700), and gives both (and the LMDB files
 * already there) to the user. Returns 0, or -1 (unknown user or group)
 * with the reason logged. A directory that cannot be made or given is
 * logged as a warning: the store's own open then says what is wrong. */
int pmilter_privs_prepare(const struct postern_config *cfg, struct privs *p);

/* Becomes p's user (nothing unless p->drop) and warns when tmp_dir (where
 * messages are collected) is not writable by it. Returns 0, or -1 with the
 * reason logged: the milter must not run. */
int pmilter_privs_drop(const struct postern_config *cfg, const struct privs *p,
                       const char *tmp_dir);

#endif

/*
 * privs — giving up root: the user and group a program started as root
 * runs as (posternd's server.user and server.group, which postern-milter
 * shares), handing it a path, and the switch itself (the supplementary
 * groups cut to that one group, setgid, setuid, then a check that root
 * cannot be regained).
 *
 * Called by gateway/master.c (in each worker after fork) and by
 * postern-milter's start-up (milter/pmilter-privs.c). Trusts the names it
 * is given (from the validated config) and the system's user database
 * (getpwnam, getgrnam). Errors come back as text; what to do about them
 * (exit) is the caller's.
 */
#ifndef POSTERN_PRIVS_H
#define POSTERN_PRIVS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct privs {
    bool drop; /* started as root (euid 0): switch to uid/gid */
    uid_t uid;
    gid_t gid;
};

/* Fills p: when the effective user is root, the uid of user and the gid
 * of group (NULL = user's primary group); otherwise p->drop is false and
 * nothing is looked up. Returns 0, or -1 with "server.user NAME does not
 * exist" (or server.group) in error. */
int privs_resolve(struct privs *p, const char *user, const char *group, char *error,
                  size_t errsize);

/* Gives path to p's user and group; does nothing unless p->drop. follow:
 * path is the admin's (spool_dir itself: its parent is not the user's), so
 * a symlink there is followed; otherwise a symlink itself is changed,
 * never what it points to (a path inside a directory the user owns).
 * Returns 0, or -1 with "cannot chown PATH: reason" in error. */
int privs_chown(const struct privs *p, const char *path, bool follow, char *error,
                size_t errsize);

/* Becomes p's user (does nothing unless p->drop): setgroups to p->gid
 * alone, setgid, setuid; then checks that the real and effective ids are
 * p's and, when p->uid is not 0, that setuid(0) fails. Call it before any
 * thread starts. Returns 0, or -1 with "cannot drop privileges: reason" in
 * error: the process must not go on. */
int privs_drop(const struct privs *p, char *error, size_t errsize);

#endif

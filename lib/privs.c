/*
 * privs — see privs.h.
 */
#include "config.h"
#include "lib/privs.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int privs_resolve(struct privs *p, const char *user, const char *group, char *error, size_t errsize)
{
    struct passwd *pw;
    struct group *gr;

    *p = (struct privs){.drop = geteuid() == 0};
    if (!p->drop)
        return 0;
    if ((pw = getpwnam(user)) == NULL) {
        snprintf(error, errsize, "server.user %s does not exist", user);
        return -1;
    }
    p->uid = pw->pw_uid;
    p->gid = pw->pw_gid;
    if (group != NULL) {
        if ((gr = getgrnam(group)) == NULL) {
            snprintf(error, errsize, "server.group %s does not exist", group);
            return -1;
        }
        p->gid = gr->gr_gid;
    }
    return 0;
}

int privs_chown(const struct privs *p, const char *path, bool follow, char *error,
                size_t errsize)
{
    /* not following: the user owns the directories these paths are in
     * after the first run, and could have put a symlink to a file of root's
     * in their place */
    if (p->drop && (follow ? chown(path, p->uid, p->gid) : lchown(path, p->uid, p->gid)) < 0) {
        snprintf(error, errsize, "cannot chown %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

int privs_drop(const struct privs *p, char *error, size_t errsize)
{
    uid_t ruid, euid, suid;
    gid_t rgid, egid, sgid;

    if (!p->drop)
        return 0;
    if (setgroups(1, &p->gid) < 0 || setgid(p->gid) < 0 || setuid(p->uid) < 0) {
        snprintf(error, errsize, "cannot drop privileges: %s", strerror(errno));
        return -1;
    }
    if (getresuid(&ruid, &euid, &suid) < 0 || getresgid(&rgid, &egid, &sgid) < 0 ||
        ruid != p->uid || euid != p->uid || suid != p->uid || rgid != p->gid || egid != p->gid ||
        sgid != p->gid) {
        snprintf(error, errsize, "cannot drop privileges: the ids did not change");
        return -1;
    }
    if (p->uid != 0 && (setuid(0) == 0 || seteuid(0) == 0)) {
        snprintf(error, errsize, "cannot drop privileges: root can be regained");
        return -1;
    }
    return 0;
}

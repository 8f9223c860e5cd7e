/*
 * listener — the listening sockets posternd binds from the config: one per
 * listener address and SMTP worker ("lane"), non-blocking, SO_REUSEADDR,
 * IPV6_V6ONLY on v6 sockets, and SO_REUSEPORT so that the kernel spreads
 * new connections evenly over the workers (each accepts only from its own
 * lane's sockets: no thundering herd, no worker carrying most sessions).
 *
 * Called by the master (binding, re-binding on reload); the workers inherit
 * the file descriptors across fork. Trusts the config (already validated).
 */
#ifndef POSTERN_LISTENER_H
#define POSTERN_LISTENER_H

#include <stddef.h>

#include <event2/util.h>

struct postern_config;
struct listener_settings;

struct listener_socket {
    const struct listener_settings *settings; /* in the config the socket was bound for */
    char address[300];                        /* as written in the config */
    unsigned lane;                            /* the SMTP worker that accepts from it */
    evutil_socket_t fd;
};

/* Binds every address of every listener, once per lane (0..lanes-1).
 * Sockets from old (count old_count) whose address and lane match are
 * reused instead of bound again (on reload) and their fd set to -1 in old. Returns 0 and a new array, or -1 with error and
 * old as it was (the running configuration keeps its sockets). */
int listeners_bind(const struct postern_config *cfg, unsigned lanes, struct listener_socket *old,
                   size_t old_count, struct listener_socket **socks_r, size_t *count_r,
                   char *error, size_t errsize);

/* Keeps only lane's sockets in socks (closing the others' descriptors);
 * returns the new count. For a worker after fork. */
size_t listeners_keep_lane(struct listener_socket *socks, size_t count, unsigned lane);

/* Closes every fd still >= 0 and frees the array; NULL-safe. */
void listeners_close(struct listener_socket **socks, size_t count);

#endif

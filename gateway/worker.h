/*
 * worker — one SMTP worker process: an event_base, the listening sockets it
 * shares with its siblings, its sessions, its spool writer and its
 * password-checking threads.
 *
 * Started by the master after fork (worker_run never returns to it), and by
 * tests and the fuzz target through worker_init/worker_free. Talks to
 * untrusted clients through its sessions; trusts the master and the config.
 */
#ifndef POSTERN_WORKER_H
#define POSTERN_WORKER_H

#include <stdbool.h>
#include <stddef.h>

#include <event2/util.h>

struct event_base;
struct event;
struct evconnlistener;
struct postern_config;
struct limits;
struct spool;
struct workpool;
struct smtp_hooks;
struct dns;
struct smtp_filters;
struct smtp_session;
struct listener_socket;

struct worker {
    struct event_base *base;
    const struct postern_config *cfg;
    unsigned index;            /* row in the shared limits table */
    struct limits *limits;     /* shared with the master and siblings; may be NULL */
    struct spool *spool;
    struct workpool *auth_pool;
    struct dns *dns;           /* client names and the filters' lookups */
    const struct smtp_hooks *hooks;
    struct smtp_filters *filters; /* NULL when the config lists none */
    int qmgr_fd;               /* the queue manager's FIFO, opened on first use; -1 */

    struct evconnlistener **accepting;
    size_t accepting_count;
    struct smtp_session *sessions; /* doubly linked through the session */
    size_t session_count;
    unsigned long long sessions_total;
    bool stopping;      /* no new sessions; exit when the last one ends */
    struct event *stop_timer;
    struct event *signals[3];
    struct event *parent_watch;
};

/* Sets up everything but the listeners. Returns 0, -1 with error. */
int worker_init(struct worker *w, const struct postern_config *cfg, unsigned index,
                struct limits *limits, char *error, size_t errsize);
void worker_free(struct worker *w);

/* Runs the worker loop on the given sockets until it is told to stop (SIGTERM:
 * graceful, sessions get 421; SIGUSR1: stop accepting and drain — used on
 * reload) and its sessions are gone. parent_fd is a pipe whose EOF means
 * the master died (then the worker drains like on reload). Returns the exit
 * status for the process. */
int worker_run(struct worker *w, const struct listener_socket *socks, size_t count, int parent_fd);

/* Session bookkeeping, called by smtp-session.c. */
void worker_session_added(struct worker *w, struct smtp_session *s);
void worker_session_removed(struct worker *w, struct smtp_session *s);

#endif

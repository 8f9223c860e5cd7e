/*
 * qmgr-private — the queue manager's state, shared by qmgr.c (messages,
 * notifications, scans), qmgr-deliver.c (destinations, jobs, connections)
 * and qmgr-finish.c (end of an attempt: records, DSNs, retries).
 * Ownership: the qmgr owns its messages and destinations; a message owns
 * its queue_file; a job belongs to its message and is queued on its
 * destination; an idle connection belongs to its destination.
 */
#ifndef POSTERN_QMGR_PRIVATE_H
#define POSTERN_QMGR_PRIVATE_H

#include <stdbool.h>
#include <sys/time.h>

#include "relay/qmgr.h"
#include "relay/queue-file.h"
#include "relay/relay-config.h"
#include "relay/smtp-client.h"
#include "relay/transport.h"

struct dns;
struct dns_mx;
struct dns_addr;
struct dns_query;
struct spool;
struct event;
struct qjob;

struct qmsg {
    char id[SPOOL_QUEUE_ID_MAX + 1];
    struct qmgr *q;
    struct queue_file *qf;
    size_t qf_rcpts;  /* qf->env->rcpt_count, kept for freeing */
    struct event *timer;
    unsigned jobs_running;
    bool dropped;     /* deleted or held while a delivery ran */
    struct timeval attempt_start;
    /* outcomes of the current attempt, per recipient */
    enum smtp_rcpt_outcome *outcome;
    struct smtp_status *status;
    char **relay;     /* per recipient: who answered (for the DSN), or NULL */
};

struct qconn {
    struct qconn *next;
    struct smtp_client *client;
    struct event *idle_timer;
    struct qdest *dest;
    unsigned sent;
};

struct qdest {
    char key[320];              /* nexthop text + domain for MX lookups */
    struct qmgr *q;
    const struct transport_entry *entry; /* NULL: default MX delivery */
    struct nexthop nexthop;
    struct smtp_client_config client_cfg;
    unsigned active;
    struct qjob *waiting_head, *waiting_tail;
    struct qconn *idle;
};

struct qjob {
    struct qjob *next;
    struct qmsg *msg;
    struct qdest *dest;
    size_t count;
    size_t *idx;                /* recipient indexes in the message */
    const char **rcpts;
    unsigned *notify;
    const char **orcpt;
    struct smtp_client_msg cmsg;
    int fd;
    /* resolution */
    struct dns_mx *mx;          /* MX hosts still to resolve, in order */
    size_t mx_count, mx_next;
    struct dns_query *query;
    struct dns_addr *addrs;
    size_t addr_count, addr_next;
    char (*addr_names)[256];
    struct smtp_status last;    /* why the last address failed */
    struct qconn *conn;
    bool fresh_retry;           /* a stale cached connection was replaced once */
};

struct qmgr {
    struct event_base *base;
    const struct qmgr_params *p;
    char queue_dir[4096];
    struct dns *dns;
    struct spool *spool;
    void *msgs;                 /* tsearch tree of struct qmsg, by id */
    void *dests;                /* tsearch tree of struct qdest, by key */
    unsigned active;            /* jobs running */
    unsigned waiting;           /* jobs queued on destinations */
    bool stopping;
    int fifo_fd;
    struct event *fifo_ev;
    struct evbuffer *fifo_buf;
    struct event *scan_timer;
    struct event *signals[2];
    struct event *stop_timer;
};

/* qmgr.c */
void qmgr_message_add(struct qmgr *q, const char *id);
void qmgr_message_free(struct qmsg *m);
void qmgr_message_path(const struct qmgr *q, const char *id, char *buf, size_t size);
void qmgr_maybe_exit(struct qmgr *q);

/* qmgr-deliver.c */
void qmgr_attempt(struct qmsg *m);
void qmgr_dests_free(struct qmgr *q);

/* qmgr-finish.c: called when the last job of an attempt is done */
void qmgr_attempt_done(struct qmsg *m);

#endif

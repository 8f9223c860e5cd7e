/*
 * qmgr — see qmgr.h. This file keeps the set of queued messages (a tsearch
 * tree by queue id), reads the FIFO, scans the queue directory, and times
 * each message's next attempt; qmgr-deliver.c runs the attempts and
 * qmgr-finish.c settles them.
 */
#include "config.h"
#include "relay/qmgr-private.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <search.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "lib/spool.h"
#include "lib/dns.h"
#include "lib/log.h"

int qmgr_fifo_create(const char *spool_dir, char *error, size_t errsize)
{
    char path[4096];

    snprintf(path, sizeof(path), "%s/%s", spool_dir, QMGR_FIFO);
    if (mkfifo(path, 0622) < 0 && errno != EEXIST) {
        snprintf(error, errsize, "mkfifo %s: %s", path, strerror(errno));
        return -1;
    }
    chmod(path, 0622);
    return 0;
}

void qmgr_notify(const char *spool_dir, int *fd, const char *line)
{
    char path[4096];
    size_t len = strlen(line);

    for (int tries = 0; tries < 2; tries++) {
        if (*fd < 0) {
            snprintf(path, sizeof(path), "%s/%s", spool_dir, QMGR_FIFO);
            *fd = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
            if (*fd < 0)
                return; /* no queue manager running: its start-up scan finds it */
        }
        if (write(*fd, line, len) == (ssize_t)len || errno == EAGAIN)
            return;
        close(*fd); /* the reader went away: reopen once */
        *fd = -1;
    }
}

static int cmp_msg(const void *a, const void *b)
{
    return strcmp(((const struct qmsg *)a)->id, ((const struct qmsg *)b)->id);
}

static struct qmsg *find_msg(struct qmgr *q, const char *id)
{
    struct qmsg key;
    void *found;

    snprintf(key.id, sizeof(key.id), "%s", id);
    found = tfind(&key, &q->msgs, cmp_msg);
    return found == NULL ? NULL : *(struct qmsg **)found;
}

void qmgr_message_path(const struct qmgr *q, const char *id, char *buf, size_t size)
{
    snprintf(buf, size, "%s/%s", q->queue_dir, id);
}

static bool valid_id(const char *id)
{
    size_t n = strspn(id, "0123456789ABCDEFabcdef");
    return n > 0 && n <= SPOOL_QUEUE_ID_MAX && id[n] == '\0';
}

static void on_msg_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    qmgr_attempt(arg);
}

static void move_corrupt(struct qmgr *q, const char *id, const char *error)
{
    char from[4200], to[4200];

    qmgr_message_path(q, id, from, sizeof(from));
    snprintf(to, sizeof(to), "%s/corrupt/%s", q->p->spool_dir, id);
    log_error("%s: corrupt queue file moved to corrupt/: %s", id, error);
    if (rename(from, to) < 0)
        log_error("%s: cannot move to corrupt/: %s", id, strerror(errno));
}

void qmgr_message_free(struct qmsg *m)
{
    if (m == NULL)
        return;
    tdelete(m, &m->q->msgs, cmp_msg);
    if (m->timer != NULL)
        event_free(m->timer);
    queue_file_free(&m->qf);
    free(m->outcome);
    free(m->status);
    if (m->relay != NULL) {
        for (size_t i = 0; i < m->qf_rcpts; i++)
            free(m->relay[i]);
    }
    free(m->relay);
    free(m);
}

static void schedule(struct qmsg *m)
{
    time_t now = time(NULL);
    struct timeval tv = { m->qf->next_attempt > now ? m->qf->next_attempt - now : 0, 0 };

    evtimer_add(m->timer, &tv);
}

void qmgr_message_add(struct qmgr *q, const char *id)
{
    char path[4200], error[256];
    struct queue_file *qf;
    struct qmsg *m;
    int rc;

    if (!valid_id(id) || find_msg(q, id) != NULL)
        return;
    qmgr_message_path(q, id, path, sizeof(path));
    rc = queue_file_load(path, &qf, error, sizeof(error));
    if (rc != 0) {
        if (access(path, F_OK) == 0)
            move_corrupt(q, id, rc > 0 ? "incomplete" : error);
        return;
    }
    if (queue_file_pending(qf) == 0) {
        unlink(path); /* finished before a crash took the unlink */
        queue_file_free(&qf);
        return;
    }
    m = calloc(1, sizeof(*m));
    snprintf(m->id, sizeof(m->id), "%s", id);
    m->q = q;
    m->qf = qf;
    m->qf_rcpts = qf->env->rcpt_count;
    m->timer = evtimer_new(q->base, on_msg_timer, m);
    tsearch(m, &q->msgs, cmp_msg);
    schedule(m);
}

/* "C ID": posternctl moved or deleted the file. */
static void message_changed(struct qmgr *q, const char *id)
{
    struct qmsg *m = find_msg(q, id);
    char path[4200];

    if (m != NULL) {
        qmgr_message_path(q, id, path, sizeof(path));
        if (access(path, F_OK) == 0)
            return;
        if (m->jobs_running > 0) {
            m->dropped = true; /* the attempt ends, then it is forgotten */
            return;
        }
        log_info("%s: removed from the active queue", id);
        qmgr_message_free(m);
        return;
    }
    qmgr_message_add(q, id);
}

static void flush_one(const void *node, VISIT v, int depth)
{
    struct qmsg *m = *(struct qmsg *const *)node;

    (void)depth;
    if ((v == postorder || v == leaf) && m->jobs_running == 0) {
        struct timeval now = { 0, 0 };
        evtimer_add(m->timer, &now);
    }
}

static void scan(struct qmgr *q);

static void fifo_line(struct qmgr *q, const char *line)
{
    if (line[0] == 'Q' && line[1] == ' ')
        qmgr_message_add(q, line + 2);
    else if (line[0] == 'C' && line[1] == ' ')
        message_changed(q, line + 2);
    else if (line[0] == 'F' && line[1] == ' ') {
        struct qmsg *m = find_msg(q, line + 2);
        if (m == NULL) { /* never announced (a lost notification): load it now */
            qmgr_message_add(q, line + 2);
            m = find_msg(q, line + 2);
        }
        if (m != NULL && m->jobs_running == 0)
            flush_one(&m, leaf, 0);
    } else if (strcmp(line, "F") == 0) {
        log_info("flush requested");
        scan(q); /* files nobody announced too, without waiting for the next scan */
        twalk(q->msgs, flush_one);
    }
}

static void on_fifo(evutil_socket_t fd, short what, void *arg)
{
    struct qmgr *q = arg;
    char *line;
    size_t len;

    (void)what;
    if (evbuffer_read(q->fifo_buf, fd, 65536) <= 0)
        return;
    while ((line = evbuffer_readln(q->fifo_buf, &len, EVBUFFER_EOL_LF)) != NULL) {
        if (len < 64)
            fifo_line(q, line);
        free(line);
    }
    if (evbuffer_get_length(q->fifo_buf) > 4096)
        evbuffer_drain(q->fifo_buf, evbuffer_get_length(q->fifo_buf)); /* garbage */
}

static void scan(struct qmgr *q)
{
    DIR *d = opendir(q->queue_dir);
    struct dirent *de;

    if (d == NULL) {
        log_error("cannot scan %s: %s", q->queue_dir, strerror(errno));
        return;
    }
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] != '.')
            qmgr_message_add(q, de->d_name);
    }
    closedir(d);
}

static void on_scan(evutil_socket_t fd, short what, void *arg)
{
    struct qmgr *q = arg;
    long long ms = q->p->relay->queue.scan_interval;
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

    (void)fd;
    (void)what;
    if (!q->stopping) {
        scan(q);
        evtimer_add(q->scan_timer, &tv);
    }
}

void qmgr_maybe_exit(struct qmgr *q)
{
    if (q->stopping && q->active == 0)
        event_base_loopexit(q->base, NULL);
}

static void on_stop_timer(evutil_socket_t fd, short what, void *arg)
{
    struct qmgr *q = arg;

    (void)fd;
    (void)what;
    log_warning("stopping with %u deliveries in flight (they will be retried)", q->active);
    event_base_loopexit(q->base, NULL);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct qmgr *q = arg;
    long long ms = q->p->shutdown_grace_ms;
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

    (void)sig;
    (void)what;
    if (q->stopping)
        return;
    log_info("queue manager stopping: %u deliveries in flight", q->active);
    q->stopping = true;
    q->stop_timer = evtimer_new(q->base, on_stop_timer, q);
    evtimer_add(q->stop_timer, &tv);
    qmgr_maybe_exit(q);
}

static int open_fifo(struct qmgr *q, char *error, size_t errsize)
{
    char path[4200];

    snprintf(path, sizeof(path), "%s/%s", q->p->spool_dir, QMGR_FIFO);
    /* O_RDWR: the FIFO never reports EOF when the last writer closes */
    q->fifo_fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (q->fifo_fd < 0) {
        snprintf(error, errsize, "open %.300s: %s", path, strerror(errno));
        return -1;
    }
    /* A big pipe: a burst of thousands of notifications must not be
     * dropped (a dropped one waits for the next scan). Best effort. */
    fcntl(q->fifo_fd, F_SETPIPE_SZ, 1 << 20);
    q->fifo_buf = evbuffer_new();
    q->fifo_ev = event_new(q->base, q->fifo_fd, EV_READ | EV_PERSIST, on_fifo, q);
    event_add(q->fifo_ev, NULL);
    return 0;
}

static int qmgr_setup(struct qmgr *q, char *error, size_t errsize)
{
    struct dns_config dc = { .nameservers = q->p->nameservers,
                             .nameserver_count = q->p->nameserver_count,
                             .timeout_ms = q->p->dns_timeout_ms,
                             .attempts = q->p->dns_attempts,
                             .cache_size = q->p->dns_cache_size,
                             .cache_max_ttl_s = q->p->dns_cache_max_ttl_s };
    static const int sigs[] = { SIGTERM, SIGINT };

    snprintf(q->queue_dir, sizeof(q->queue_dir), "%s/queue", q->p->spool_dir);
    if (spool_open(q->p->spool_dir, q->base, &q->spool, error, errsize) < 0 ||
        dns_new(q->base, &dc, &q->dns, error, errsize) < 0 || open_fifo(q, error, errsize) < 0)
        return -1;
    for (size_t i = 0; i < 2; i++) {
        q->signals[i] = evsignal_new(q->base, sigs[i], on_signal, q);
        event_add(q->signals[i], NULL);
    }
    q->scan_timer = evtimer_new(q->base, on_scan, q);
    return 0;
}

static void free_all_msgs(struct qmgr *q)
{
    while (q->msgs != NULL)
        qmgr_message_free(*(struct qmsg **)q->msgs);
}

static void qmgr_teardown(struct qmgr *q)
{
    dns_free(&q->dns); /* pending lookups end their jobs (deferred) first */
    qmgr_dests_free(q);
    free_all_msgs(q);
    for (size_t i = 0; i < 2; i++) {
        if (q->signals[i] != NULL)
            event_free(q->signals[i]);
    }
    if (q->scan_timer != NULL)
        event_free(q->scan_timer);
    if (q->stop_timer != NULL)
        event_free(q->stop_timer);
    if (q->fifo_ev != NULL)
        event_free(q->fifo_ev);
    if (q->fifo_buf != NULL)
        evbuffer_free(q->fifo_buf);
    if (q->fifo_fd >= 0)
        close(q->fifo_fd);
    spool_close(&q->spool);
}

int qmgr_run(struct event_base *base, const struct qmgr_params *params)
{
    struct qmgr q = { .base = base, .p = params, .fifo_fd = -1 };
    char error[512];
    int rc = 0;

    if (qmgr_setup(&q, error, sizeof(error)) < 0) {
        log_error("queue manager: %s", error);
        rc = 1;
    } else {
        log_info("queue manager started");
        on_scan(-1, 0, &q);
        event_base_dispatch(base);
    }
    qmgr_teardown(&q);
    return rc;
}

/*
 * attachments — see attachments.h. The filter's stage and its jobs: at
 * FILTER_EOM a job gets a dup of the content fd (the session may close its
 * own while the job waits) and goes to the instance's workpool; on a pool
 * thread it reads the message with pread and inspects it (attachments-
 * mime.c); back on the loop its report becomes the call's symbols, action,
 * and for strip its message edits. A cancelled call leaves its job running
 * without a call: the job's stop flag ends the work early and done() frees
 * it. The instance keeps its live jobs so that destroy can cut them all
 * loose before the pool settles them.
 *
 * The message is read whole into memory with pread, and GMime parses it
 * there: a GMime stream over the fd would move the file offset it shares
 * with the session's fd (a dup shares it, and the spool appends with
 * write), and an mmap would die of SIGBUS if the spool file ever shrank
 * under a job that was cancelled. Memory is bounded by threads x max_size
 * (a longer message is judged by its length alone, unread), plus one
 * decoded part and one archive entry at a time.
 */
#include "config.h"
#include "filters/attachments-private.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/workpool.h"

struct att_job;

struct att_filter {
    struct att_policy *policy;
    struct workpool *pool;
    struct att_job *jobs; /* submitted, done() not yet run */
};

struct att_job {
    struct att_filter *f;
    struct att_job *prev, *next;
    struct filter_call *call; /* NULL once cancelled */
    int fd;                   /* a dup of content_fd; -1 once closed */
    uint64_t off, len;
    atomic_bool stop;
    char queue_id[64];
    int result; /* of the work: 0, or -1 with error */
    char error[160];
    struct att_report report;
};

/* ---- on a pool thread ---- */

static int read_message(struct att_job *job, char **msg_r)
{
    char *msg = malloc(job->len > 0 ? (size_t)job->len : 1);
    uint64_t got = 0;

    *msg_r = NULL;
    if (msg == NULL) {
        snprintf(job->error, sizeof(job->error), "out of memory for %llu octets",
                 (unsigned long long)job->len);
        return -1;
    }
    while (got < job->len) {
        ssize_t n = pread(job->fd, msg + got, (size_t)(job->len - got), (off_t)(job->off + got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            snprintf(job->error, sizeof(job->error), "cannot read the message: %s",
                     n < 0 ? strerror(errno) : "short file");
            free(msg);
            return -1;
        }
        got += (uint64_t)n;
    }
    *msg_r = msg;
    return 0;
}

static void job_work(void *ctx)
{
    struct att_job *job = ctx;
    const struct att_policy *p = job->f->policy;
    char *msg = NULL;

    job->result = -1;
    /* over max_size, att_inspect decides from the length alone */
    if (job->len <= att_policy_limits(p)->max_size && read_message(job, &msg) < 0)
        goto out;
    job->result = att_inspect(p, msg, (size_t)job->len, &job->stop, &job->report, job->error,
                              sizeof(job->error));
out:
    free(msg);
    close(job->fd);
    job->fd = -1;
}

/* ---- back on the loop ---- */

static const char *symbol_name(const struct att_finding *f)
{
    switch (f->kind) {
    case ATT_KIND_ENCRYPTED:
        return "ARCHIVE_ENCRYPTED";
    case ATT_KIND_ARCHIVE_LIMIT:
        return "ARCHIVE_LIMIT";
    case ATT_KIND_MIME_LIMIT:
        return "MIME_LIMIT";
    case ATT_KIND_RULE:
        break;
    }
    return f->action == ATT_ACTION_STRIP        ? "ATTACH_STRIPPED"
           : f->action == ATT_ACTION_QUARANTINE ? "ATTACH_QUARANTINE"
                                                : "ATTACH_REJECTED";
}

/* "invoice.zip/x.exe" as printable ASCII. */
static void file_text(const struct att_finding *f, char *out, size_t size)
{
    char joined[ATT_NAME_MAX * 2 + 2];

    snprintf(joined, sizeof(joined), "%s%s%s", f->name, f->entry[0] != '\0' ? "/" : "", f->entry);
    att_text_sanitize(joined, out, size, true);
}

/* "file: rule", "archive: limit", "archive" or "limit", the file cut so
 * that what follows it stays whole. */
static void finding_text(const struct att_finding *f, char *out, size_t size)
{
    const char *tail = f->kind == ATT_KIND_RULE            ? f->rule
                       : f->kind == ATT_KIND_ARCHIVE_LIMIT ? f->why
                                                           : NULL;
    char file[FILTER_SYMBOL_TEXT_MAX];
    size_t room = sizeof(file);

    if (f->kind == ATT_KIND_MIME_LIMIT) {
        snprintf(out, size, "%s", f->why);
        return;
    }
    if (tail != NULL && strlen(tail) + 16 < room)
        room -= strlen(tail) + 2;
    file_text(f, file, room);
    if (tail == NULL)
        snprintf(out, size, "%s", file);
    else if (snprintf(out, size, "%s: %s", file, tail) >= (int)size)
        out[size - 1] = '\0'; /* cut: the symbol keeps what fits */
}

/* The reply for the decisive finding of a refused or deferred message. */
static void ask_action(struct filter_call *call, const struct att_finding *f)
{
    char file[100];

    file_text(f, file, sizeof(file));
    if (f->action == ATT_ACTION_QUARANTINE) {
        filter_call_action(call, FILTER_ACTION_QUARANTINE, 0, NULL, "%s", "attachment held");
        return;
    }
    if (f->action == ATT_ACTION_TEMPFAIL) {
        filter_call_action(call, FILTER_ACTION_TEMPFAIL, 451, "4.6.0",
                           "Message MIME structure over a limit (%s), try again later", f->why);
        return;
    }
    switch (f->kind) {
    case ATT_KIND_RULE:
        filter_call_action(call, FILTER_ACTION_REJECT, 554, "5.7.1",
                           "Attachment \"%s\" refused by rule %s", file, f->rule);
        break;
    case ATT_KIND_ENCRYPTED:
        filter_call_action(call, FILTER_ACTION_REJECT, 554, "5.7.1",
                           "Attachment \"%s\" refused: encrypted archive", file);
        break;
    case ATT_KIND_ARCHIVE_LIMIT:
        filter_call_action(call, FILTER_ACTION_REJECT, 552, "5.6.0",
                           "Attachment \"%s\" refused: archive over a limit (%s)", file, f->why);
        break;
    case ATT_KIND_MIME_LIMIT:
        filter_call_action(call, FILTER_ACTION_REJECT, 552, "5.6.0",
                           "Message refused: MIME structure over a limit (%s)", f->why);
        break;
    }
}

/* The strip's message edits. Returns 0, or -1 when one is refused. */
static int ask_strip(struct filter_call *call, const struct att_report *r)
{
    if (r->content_type != NULL &&
        (filter_call_change_header(call, "Content-Type", 1, r->content_type) < 0 ||
         filter_call_change_header(call, "Content-Transfer-Encoding", 1, r->transfer_encoding) <
             0 ||
         filter_call_change_header(call, "Content-Disposition", 1, NULL) < 0))
        return -1;
    return filter_call_replace_body(call, r->body, r->body_len);
}

/* Applies the job's report to its call; returns the call's result. */
static int job_apply(struct att_job *job, struct filter_call *call)
{
    const struct att_report *r = &job->report;
    bool strip;
    char text[FILTER_SYMBOL_TEXT_MAX];

    if (job->result < 0) {
        log_warning("attachments: %s: %s", job->queue_id, job->error);
        return -1;
    }
    if (r->count == 0)
        return 1;
    strip = r->action == ATT_ACTION_STRIP;
    if (strip && ask_strip(call, r) < 0) {
        log_warning("attachments: %s: the message edits to strip an attachment were refused",
                    job->queue_id);
        return -1;
    }
    for (size_t i = 0; i < r->count; i++) {
        const struct att_finding *f = &r->findings[i];
        if (f->action == ATT_ACTION_STRIP && !strip)
            continue; /* nothing was stripped: the message is refused or held as it came */
        finding_text(f, text, sizeof(text));
        filter_call_symbol(call, symbol_name(f), 0, text);
        log_info("attachments: %s: %s(%s): %s", job->queue_id, symbol_name(f), text,
                 f->action == ATT_ACTION_STRIP        ? "strip"
                 : f->action == ATT_ACTION_QUARANTINE ? "quarantine"
                 : f->action == ATT_ACTION_TEMPFAIL   ? "tempfail"
                                                      : "reject");
    }
    if (r->dropped > 0)
        log_info("attachments: %s: %zu more findings not listed", job->queue_id, r->dropped);
    if (!strip)
        ask_action(call, &r->decisive);
    return 1;
}

static void job_unlink(struct att_job *job)
{
    if (job->prev != NULL)
        job->prev->next = job->next;
    else
        job->f->jobs = job->next;
    if (job->next != NULL)
        job->next->prev = job->prev;
}

static void job_done(void *ctx, bool cancelled)
{
    struct att_job *job = ctx;
    struct filter_call *call = job->call;

    job_unlink(job);
    if (job->fd >= 0)
        close(job->fd);
    if (call != NULL) {
        filter_call_set_data(call, NULL);
        filter_call_done(call, cancelled ? -1 : job_apply(job, call));
    }
    att_report_clear(&job->report);
    free(job);
}

/* ---- the stage ---- */

static int att_eom(void *instance, struct filter_call *call)
{
    struct att_filter *f = instance;
    const struct filter_txn *txn = filter_call_txn(call);
    struct att_job *job;

    if (txn->content_fd < 0)
        return 1;
    if ((job = calloc(1, sizeof(*job))) == NULL)
        return -1;
    if ((job->fd = fcntl(txn->content_fd, F_DUPFD_CLOEXEC, 0)) < 0) {
        log_warning("attachments: cannot dup the message's fd: %s", strerror(errno));
        free(job);
        return -1;
    }
    job->f = f;
    job->call = call;
    job->off = txn->content_off;
    job->len = txn->content_len;
    atomic_init(&job->stop, false);
    snprintf(job->queue_id, sizeof(job->queue_id), "%s",
             txn->queue_id != NULL ? txn->queue_id : "-");
    if (workpool_submit(f->pool, job_work, job_done, job) < 0) {
        close(job->fd);
        free(job);
        return -1;
    }
    job->next = f->jobs;
    if (f->jobs != NULL)
        f->jobs->prev = job;
    f->jobs = job;
    filter_call_set_data(call, job);
    return 0;
}

static void att_cancel(void *instance, struct filter_call *call)
{
    struct att_job *job = filter_call_data(call);

    (void)instance;
    if (job == NULL)
        return;
    job->call = NULL;
    atomic_store(&job->stop, true);
}

const struct filter_ops attachments_filter_ops = {
    .name = "attachments",
    .stage = {[FILTER_EOM] = att_eom},
    .cancel = att_cancel,
};

/* ---- instances ---- */

int att_create(const struct filter_env *env, const void *settings, void **instance, char *error,
               size_t errsize)
{
    const struct att_settings *s = settings;
    struct att_filter *f = calloc(1, sizeof(*f));

    *instance = NULL;
    if (f == NULL) {
        snprintf(error, errsize, "attachments: out of memory");
        return -1;
    }
    if (att_policy_new(s, env->hostname, &f->policy, error, errsize) < 0) {
        free(f);
        return -1;
    }
    if ((f->pool = workpool_create(env->base, (unsigned)s->threads)) == NULL) {
        snprintf(error, errsize, "attachments: cannot start %lld threads: %s", s->threads,
                 strerror(errno));
        att_policy_free(&f->policy);
        free(f);
        return -1;
    }
    *instance = f;
    return 0;
}

void att_destroy(void *instance)
{
    struct att_filter *f = instance;

    if (f == NULL)
        return;
    /* the calls are gone with the chain: no done() may touch them */
    for (struct att_job *job = f->jobs; job != NULL; job = job->next) {
        job->call = NULL;
        atomic_store(&job->stop, true);
    }
    workpool_destroy(&f->pool);
    att_policy_free(&f->policy);
    free(f);
}

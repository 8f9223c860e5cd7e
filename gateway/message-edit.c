/*
 * message-edit — see message-edit.h. The content rewrite loads the header
 * section (bounded), splits it into fields, applies the header edits in
 * order to that list, and writes the list, the separator and the body (the
 * old one copied from the file, or the filters' one with its line ends
 * made CR LF) into a new spool file. The envelope edits work on the
 * transaction's own structures, as MAIL and RCPT would have filled them.
 *
 * SECURITY: the spooled content is the client's; nothing in it is trusted
 * beyond what the DATA reader already bounded. The header section is held
 * in memory only up to MESSAGE_EDIT_HEADER_MAX; the body is streamed in
 * chunks.
 */
#include "config.h"
#include "gateway/message-edit.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "filters/edit.h"
#include "gateway/smtp-session-private.h"
#include "lib/address.h"
#include "lib/log.h"
#include "lib/smtp-params.h"
#include "lib/spool.h"
#include "lib/workpool.h"

#define CHUNK (64 * 1024)

/* ---- the header section ---- */

struct hfield {
    const char *raw; /* an original field: its lines in the buffer */
    size_t raw_len;
    const char *name; /* in the buffer, or the edit's */
    size_t name_len;
    const struct filter_edit *edit; /* a field an edit wrote, or NULL */
    bool fixed;                     /* Postern's Received: never moved or changed */
};

struct hblock {
    char *buf; /* the first octets of the content */
    size_t len, alloc;
    struct hfield *f;
    size_t n, falloc;
    bool separator;    /* the empty line was there */
    uint64_t rest_off; /* where the body (what follows the fields) starts */
};

static int read_at(int fd, char *buf, size_t len, uint64_t off)
{
    while (len > 0) {
        ssize_t n = pread(fd, buf, len, (off_t)off);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0) {
            errno = EIO; /* shorter than the spool says */
            return -1;
        }
        buf += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

static int field_reserve(struct hblock *h, size_t want)
{
    struct hfield *grown;
    size_t n;

    if (want <= h->falloc)
        return 0;
    n = h->falloc == 0 ? 32 : h->falloc * 2;
    while (n < want)
        n *= 2;
    if ((grown = realloc(h->f, n * sizeof(*grown))) == NULL)
        return -1;
    h->f = grown;
    h->falloc = n;
    return 0;
}

/* The length of the field name a line starts with ("Name:", "Name :"), or
 * 0 when the line does not start a field. */
static size_t field_name_len(const char *line, size_t len)
{
    size_t i = 0, j;

    while (i < len && line[i] >= 33 && line[i] <= 126 && line[i] != ':')
        i++;
    for (j = i; j < len && (line[j] == ' ' || line[j] == '\t'); j++)
        ;
    return i > 0 && j < len && line[j] == ':' ? i : 0;
}

/* Splits h->buf into fields. Returns 1 when the section's end is known, 0
 * when more of the content is needed (not eof), -1 when out of memory. */
static int header_parse(struct hblock *h, bool eof)
{
    size_t pos = 0;

    h->n = 0;
    h->separator = false;
    while (pos < h->len) {
        const char *line = h->buf + pos;
        const char *lf = memchr(line, '\n', h->len - pos);
        size_t end, text, name_len;

        if (lf == NULL && !eof)
            return 0; /* the line goes on */
        end = lf == NULL ? h->len : (size_t)(lf - h->buf) + 1;
        text = end - pos;
        while (text > 0 && (line[text - 1] == '\n' || line[text - 1] == '\r'))
            text--;
        if (text == 0 && lf != NULL) {
            h->separator = true;
            h->rest_off = end;
            return 1;
        }
        if (line[0] == ' ' || line[0] == '\t') {
            if (h->n == 0)
                break; /* a continuation of nothing: the body */
            h->f[h->n - 1].raw_len = end - (size_t)(h->f[h->n - 1].raw - h->buf);
        } else if ((name_len = field_name_len(line, text)) > 0) {
            if (field_reserve(h, h->n + 1) < 0)
                return -1;
            h->f[h->n++] = (struct hfield){
                .raw = line, .raw_len = end - pos, .name = line, .name_len = name_len};
        } else {
            break; /* not a field: the body starts here, unseparated */
        }
        pos = end;
    }
    if (pos == h->len && !eof)
        return 0; /* a continuation line may follow */
    h->rest_off = pos;
    return 1;
}

static bool is_received(const struct hfield *f)
{
    return f->name_len == 8 && strncasecmp(f->name, "Received", 8) == 0;
}

/* Reads the content's header section, 64 KiB more at a time; a first
 * Received: is Postern's own (fixed) when keep_received. */
static int header_load(struct hblock *h, int fd, uint64_t off, uint64_t len, bool keep_received)
{
    for (;;) {
        uint64_t target = len < MESSAGE_EDIT_HEADER_MAX ? len : MESSAGE_EDIT_HEADER_MAX;
        int rc;

        if (target > h->len + CHUNK)
            target = h->len + CHUNK;
        if (target > h->alloc) {
            char *grown = realloc(h->buf, (size_t)target);

            if (grown == NULL)
                return -1;
            h->buf = grown;
            h->alloc = (size_t)target;
        }
        if (target > h->len &&
            read_at(fd, h->buf + h->len, (size_t)target - h->len, off + h->len) < 0)
            return -1;
        h->len = (size_t)target;
        if ((rc = header_parse(h, h->len == len)) < 0)
            return -1;
        if (rc > 0)
            break;
        if (h->len >= MESSAGE_EDIT_HEADER_MAX) {
            errno = E2BIG;
            return -1;
        }
    }
    if (keep_received && h->n > 0 && is_received(&h->f[0]))
        h->f[0].fixed = true;
    return 0;
}

static void header_free(struct hblock *h)
{
    free(h->buf);
    free(h->f);
}

/* ---- the header edits ---- */

static int field_insert(struct hblock *h, size_t at, const struct filter_edit *ed)
{
    if (field_reserve(h, h->n + 1) < 0)
        return -1;
    memmove(&h->f[at + 1], &h->f[at], (h->n - at) * sizeof(*h->f));
    h->f[at] = (struct hfield){.name = ed->name, .name_len = strlen(ed->name), .edit = ed};
    h->n++;
    return 0;
}

/* The index-th (1-based) field called name, or h->n. */
static size_t field_find(const struct hblock *h, const char *name, size_t index)
{
    size_t len = strlen(name);

    for (size_t i = 0; i < h->n; i++) {
        if (h->f[i].name_len == len && strncasecmp(h->f[i].name, name, len) == 0 && --index == 0)
            return i;
    }
    return h->n;
}

static int header_edit(struct hblock *h, const struct filter_edit *ed,
                       struct message_edit_report *rep)
{
    size_t at;

    if (ed->kind == FILTER_EDIT_INSERT_HEADER) {
        at = ed->index < h->n ? ed->index : h->n;
        if (at == 0 && h->n > 0 && h->f[0].fixed)
            at = 1; /* Postern's Received: stays first */
        rep->inserted++;
        return field_insert(h, at, ed);
    }
    if (ed->kind != FILTER_EDIT_CHANGE_HEADER)
        return 0;
    at = field_find(h, ed->name, ed->index);
    if (at == h->n) {
        if (ed->value == NULL)
            return 0;
        rep->appended++;
        return field_insert(h, h->n, ed);
    }
    if (h->f[at].fixed) {
        if (rep->ignored++ == 0)
            rep->ignored_by = ed->by;
        return 0;
    }
    if (ed->value == NULL) {
        memmove(&h->f[at], &h->f[at + 1], (h->n - at - 1) * sizeof(*h->f));
        h->n--;
        rep->deleted++;
        return 0;
    }
    h->f[at] = (struct hfield){.name = ed->name, .name_len = strlen(ed->name), .edit = ed};
    rep->changed++;
    return 0;
}

/* ---- writing ---- */

/* Where the new content goes: a spool file (msg) or a descriptor (fd). */
struct edit_out {
    struct spool_msg *msg;
    int fd;
    uint64_t written;
};

static int put(struct edit_out *dst, const char *p, size_t len)
{
    if (dst->msg != NULL) {
        if (spool_msg_write(dst->msg, p, len) < 0)
            return -1;
        dst->written += len;
        return 0;
    }
    for (size_t done = 0; done < len;) {
        ssize_t n = write(dst->fd, p + done, len - done);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n == 0)
                errno = EIO;
            return -1;
        }
        done += (size_t)n;
    }
    dst->written += len;
    return 0;
}

static int put_str(struct edit_out *dst, const char *s)
{
    return put(dst, s, strlen(s));
}

/* An original field as it was, but always ending in CR LF; a field an edit
 * wrote as "Name: value" CR LF. */
static int put_field(struct edit_out *dst, const struct hfield *f)
{
    const char *v;
    size_t len;

    if (f->edit == NULL) {
        len = f->raw_len;
        if (len >= 2 && f->raw[len - 2] == '\r' && f->raw[len - 1] == '\n')
            return put(dst, f->raw, len);
        while (len > 0 && (f->raw[len - 1] == '\r' || f->raw[len - 1] == '\n'))
            len--;
        return put(dst, f->raw, len) < 0 ? -1 : put_str(dst, "\r\n");
    }
    v = f->edit->value;
    if (put_str(dst, f->edit->name) < 0 || put_str(dst, ":") < 0 ||
        (v[0] != '\0' && v[0] != ' ' && v[0] != '\t' && put_str(dst, " ") < 0) ||
        put_str(dst, v) < 0)
        return -1;
    return put_str(dst, "\r\n");
}

/* The old body, [from, len) of the content, as it was. */
static int copy_rest(struct edit_out *dst, int fd, uint64_t off, uint64_t from, uint64_t len)
{
    char *buf;
    int ret = 0;

    if (from >= len)
        return 0;
    if ((buf = malloc(CHUNK)) == NULL)
        return -1;
    while (ret == 0 && from < len) {
        size_t n = len - from < CHUNK ? (size_t)(len - from) : CHUNK;

        ret = read_at(fd, buf, n, off + from) < 0 || put(dst, buf, n) < 0 ? -1 : 0;
        from += n;
    }
    free(buf);
    return ret;
}

/* Makes CR LF of every bare CR and bare LF in in[0, n); *cr carries a CR
 * that ended the previous chunk. Returns the octets put in out (2n + 2). */
static size_t crlf_chunk(const char *in, size_t n, char *out, bool *cr)
{
    size_t o = 0;

    for (size_t i = 0; i < n; i++) {
        char c = in[i];

        if (*cr) {
            out[o++] = '\r';
            out[o++] = '\n';
            *cr = false;
            if (c == '\n')
                continue;
        }
        if (c == '\r')
            *cr = true;
        else if (c == '\n') {
            out[o++] = '\r';
            out[o++] = '\n';
        } else
            out[o++] = c;
    }
    return o;
}

/* The filters' body, every line ending in CR LF, the last one too. */
static int put_body(struct edit_out *dst, const struct filter_edits *e)
{
    uint64_t off = 0, len = filter_edits_body_len(e);
    char *in = malloc(CHUNK), *out = malloc(2 * CHUNK + 2);
    bool cr = false, line_open = false;
    int ret = 0;

    if (in == NULL || out == NULL)
        ret = -1;
    while (ret == 0 && off < len) {
        ssize_t n = filter_edits_body_read(e, off, in, CHUNK);
        size_t o;

        if (n <= 0) {
            if (n == 0)
                errno = EIO;
            ret = -1;
            break;
        }
        off += (uint64_t)n;
        o = crlf_chunk(in, (size_t)n, out, &cr);
        if (o > 0)
            line_open = out[o - 1] != '\n';
        ret = put(dst, out, o);
    }
    if (ret == 0 && (cr || line_open))
        ret = put_str(dst, "\r\n");
    free(in);
    free(out);
    return ret;
}

static int rewrite(const struct filter_edits *e, int in_fd, uint64_t off, uint64_t len,
                   bool keep_received, struct edit_out *dst, struct message_edit_report *rep)
{
    struct hblock h = {0};
    int ret = -1;

    *rep = (struct message_edit_report){.old_size = len};
    if (header_load(&h, in_fd, off, len, keep_received) < 0)
        goto out;
    for (size_t i = 0; i < filter_edits_count(e); i++) {
        if (header_edit(&h, filter_edits_at(e, i), rep) < 0)
            goto out;
    }
    for (size_t i = 0; i < h.n; i++) {
        if (put_field(dst, &h.f[i]) < 0)
            goto out;
    }
    if (filter_edits_body_replaced(e)) {
        rep->body = true;
        if (put_str(dst, "\r\n") < 0 || put_body(dst, e) < 0)
            goto out;
    } else if ((h.separator && put_str(dst, "\r\n") < 0) ||
               copy_rest(dst, in_fd, off, h.rest_off, len) < 0) {
        goto out;
    }
    rep->new_size = dst->written;
    ret = 0;
out:
    header_free(&h);
    return ret;
}

int message_edit_rewrite(const struct filter_edits *e, int in_fd, uint64_t off, uint64_t len,
                         struct spool_msg *dst, struct message_edit_report *rep)
{
    struct edit_out out = {.msg = dst, .fd = -1, .written = spool_msg_size(dst)};

    return rewrite(e, in_fd, off, len, true, &out, rep);
}

int message_edit_rewrite_fd(const struct filter_edits *e, int in_fd, uint64_t off, uint64_t len,
                            int out_fd, struct message_edit_report *rep)
{
    struct edit_out out = {.fd = out_fd};

    return rewrite(e, in_fd, off, len, false, &out, rep);
}

int message_edit_content(struct spool_msg *msg, const struct filter_edits *e,
                         struct message_edit_report *rep)
{
    struct spool_msg *dst;
    uint64_t off, len;
    int fd, err;

    if (spool_msg_content(msg, &fd, &off, &len) < 0 || (dst = spool_msg_rewrite_begin(msg)) == NULL)
        return -1;
    if (message_edit_rewrite(e, fd, off, len, dst, rep) < 0) {
        err = errno;
        spool_msg_abort(&dst);
        errno = err;
        return -1;
    }
    return spool_msg_rewrite_finish(msg, &dst);
}

/* ---- on a thread ---- */

struct message_edit_job {
    struct filter_edits *edits;
    struct spool_msg *msg; /* the loop's: touched only in job_done */
    struct spool_msg *dst; /* the thread's until job_done */
    int in_fd;             /* a dup of msg's: msg may be aborted meanwhile */
    uint64_t off, len;
    int error;
    struct message_edit_report rep;
    message_edit_done_cb *cb; /* NULL once cancelled */
    void *ctx;
};

static void job_work(void *arg)
{
    struct message_edit_job *job = arg;

    if (message_edit_rewrite(job->edits, job->in_fd, job->off, job->len, job->dst, &job->rep) < 0)
        job->error = errno != 0 ? errno : EIO;
}

static void job_free(struct message_edit_job *job)
{
    spool_msg_abort(&job->dst);
    if (job->in_fd >= 0)
        close(job->in_fd);
    filter_edits_free(&job->edits);
    free(job);
}

static void job_done(void *arg, bool cancelled)
{
    struct message_edit_job *job = arg;

    if (cancelled && job->error == 0)
        job->error = ECANCELED; /* the pool went away before the work ran */
    if (job->cb != NULL) {
        if (job->error == 0 && spool_msg_rewrite_finish(job->msg, &job->dst) < 0)
            job->error = errno;
        job->cb(job->ctx, job->error, &job->rep);
    }
    job_free(job);
}

struct message_edit_job *message_edit_start(struct workpool *pool, struct spool_msg *msg,
                                            struct filter_edits **e, message_edit_done_cb *cb,
                                            void *ctx)
{
    struct message_edit_job *job = calloc(1, sizeof(*job));
    int fd, err;

    if (job == NULL)
        return NULL;
    job->in_fd = -1;
    if (spool_msg_content(msg, &fd, &job->off, &job->len) < 0 ||
        (job->in_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0 ||
        (job->dst = spool_msg_rewrite_begin(msg)) == NULL)
        goto fail;
    job->msg = msg;
    job->edits = *e;
    job->cb = cb;
    job->ctx = ctx;
    if (workpool_submit(pool, job_work, job_done, job) < 0) {
        job->edits = NULL;
        errno = ENOMEM;
        goto fail;
    }
    *e = NULL;
    return job;
fail:
    err = errno;
    job_free(job);
    errno = err;
    return NULL;
}

void message_edit_cancel(struct message_edit_job **_job)
{
    struct message_edit_job *job = *_job;

    if (job == NULL)
        return;
    *_job = NULL;
    job->cb = NULL;
    job->ctx = NULL;
    job->msg = NULL;
}

/* ---- the envelope ---- */

static bool same_addr(const struct addr_path *a, const struct addr_path *b)
{
    if (a->null || b->null)
        return a->null == b->null;
    if (a->postmaster || b->postmaster)
        return a->postmaster == b->postmaster;
    return strcmp(a->local, b->local) == 0 && strcasecmp(a->domain, b->domain) == 0;
}

/* Parameters from a filter are checked for syntax, not against the offer. */
static const struct smtp_params_offer offer_all = {
    .size = true,
    .eightbitmime = true,
    .smtputf8 = true,
    .dsn = true,
    .auth = true,
    .chunking = true,
};

/* Overrides what the filter's parameters name; SIZE is not kept. */
static void merge_mail_params(struct smtp_mail_params *mp, const struct smtp_mail_params *np)
{
    if (np->body != SMTP_BODY_UNSPEC)
        mp->body = np->body;
    if (np->smtputf8)
        mp->smtputf8 = true;
    if (np->ret != SMTP_RET_UNSPEC)
        mp->ret = np->ret;
    if (np->envid[0] != '\0')
        memcpy(mp->envid, np->envid, sizeof(mp->envid));
    if (np->has_auth) {
        mp->has_auth = true;
        memcpy(mp->auth, np->auth, sizeof(mp->auth));
    }
}

static void change_sender(struct smtp_txn *t, const struct filter_edit *ed)
{
    char old[ADDR_PATH_MAX * 4 + 8], now[ADDR_PATH_MAX * 4 + 8];
    struct smtp_mail_params mp = t->mail, np;
    struct smtp_status err;
    struct addr_path a;
    const char *error = "bad parameters";

    if (ed->params != NULL) {
        if (smtp_params_parse_mail(ed->params, strlen(ed->params), &offer_all, &np, &err) < 0)
            goto bad;
        merge_mail_params(&mp, &np);
    }
    if (filter_edit_parse_addr(ed->value, ADDR_ALLOW_NULL | (mp.smtputf8 ? ADDR_ALLOW_UTF8 : 0), &a,
                               &error) < 0)
        goto bad;
    addr_format(&t->sender, old, sizeof(old));
    addr_format(&a, now, sizeof(now));
    log_info("%s: filter %s changed the sender <%s> to <%s>", t->queue_id, ed->by, old, now);
    t->sender = a;
    t->mail = mp;
    return;
bad:
    log_warning("%s: filter %s: sender change skipped: %s", t->queue_id, ed->by, error);
}

static int add_rcpt(struct smtp_txn *t, const struct filter_edit *ed)
{
    char text[ADDR_PATH_MAX * 4 + 8];
    struct smtp_rcpt r = {0};
    struct smtp_status err;
    const char *error = "bad parameters";

    if (filter_edit_parse_addr(ed->value,
                               ADDR_ALLOW_POSTMASTER | (t->mail.smtputf8 ? ADDR_ALLOW_UTF8 : 0),
                               &r.addr, &error) < 0 ||
        (ed->params != NULL &&
         smtp_params_parse_rcpt(ed->params, strlen(ed->params), &offer_all, &r.params, &err) < 0)) {
        log_warning("%s: filter %s: recipient not added: %s", t->queue_id, ed->by, error);
        return 0;
    }
    addr_format(&r.addr, text, sizeof(text));
    for (size_t i = 0; i < t->rcpt_count; i++) {
        if (same_addr(&t->rcpts[i].addr, &r.addr)) {
            log_info("%s: filter %s: recipient <%s> is there already", t->queue_id, ed->by, text);
            return 0;
        }
    }
    if (t->rcpt_count == t->rcpt_cap) {
        size_t cap = t->rcpt_cap == 0 ? 4 : t->rcpt_cap * 2;
        struct smtp_rcpt *n = realloc(t->rcpts, cap * sizeof(*n));

        if (n == NULL)
            return -1;
        t->rcpts = n;
        t->rcpt_cap = cap;
    }
    t->rcpts[t->rcpt_count++] = r;
    log_info("%s: filter %s added the recipient <%s>", t->queue_id, ed->by, text);
    return 0;
}

static void delete_rcpt(struct smtp_txn *t, const struct filter_edit *ed)
{
    char text[ADDR_PATH_MAX * 4 + 8];
    struct addr_path a;
    const char *error;
    size_t kept = 0, removed;

    if (filter_edit_parse_addr(ed->value, ADDR_ALLOW_POSTMASTER | ADDR_ALLOW_UTF8, &a, &error) <
        0) {
        log_warning("%s: filter %s: recipient not removed: %s", t->queue_id, ed->by, error);
        return;
    }
    for (size_t i = 0; i < t->rcpt_count; i++) {
        if (!same_addr(&t->rcpts[i].addr, &a))
            t->rcpts[kept++] = t->rcpts[i];
    }
    removed = t->rcpt_count - kept;
    t->rcpt_count = kept;
    addr_format(&a, text, sizeof(text));
    if (removed > 0)
        log_info("%s: filter %s removed the recipient <%s>", t->queue_id, ed->by, text);
    else
        log_info("%s: filter %s: no recipient <%s> to remove", t->queue_id, ed->by, text);
}

int message_edit_envelope(struct smtp_txn *t, const struct filter_edits *e)
{
    for (size_t i = 0; i < filter_edits_count(e); i++) {
        const struct filter_edit *ed = filter_edits_at(e, i);

        switch (ed->kind) {
        case FILTER_EDIT_CHANGE_SENDER:
            change_sender(t, ed);
            break;
        case FILTER_EDIT_ADD_RCPT:
            if (add_rcpt(t, ed) < 0)
                return -1;
            break;
        case FILTER_EDIT_DELETE_RCPT:
            delete_rcpt(t, ed);
            break;
        default:
            break;
        }
    }
    return 0;
}

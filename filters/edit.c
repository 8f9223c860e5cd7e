/*
 * edit — see edit.h. The ordered list of a call's (then a transaction's)
 * message edits, and the filter_call_* edit functions of filter.h that
 * record into the call's list.
 *
 * Every argument is checked before anything is stored, against the limits
 * of edit.h, so a list holds only edits the gateway can apply: header
 * fields as filter_call_add_header wants them, addresses that parse,
 * parameters that parse. A replaced body lives in memory up to
 * FILTER_EDIT_BODY_MEM, then in an unlinked file in the spool's tmp/.
 *
 * Trusts its callers for the filter_call contract (filter.h); the text it
 * is given comes from filters and, through them, from the network.
 */
#include "config.h"
#include "filters/edit.h"
#include "filters/filter-private.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/address.h"
#include "lib/smtp-params.h"

struct edit_body {
    bool set;    /* a replacement was started */
    bool failed; /* over body_max or a write error: dropped, appends refused */
    uint64_t len;
    char *mem; /* octets [0, min(len, FILTER_EDIT_BODY_MEM)) */
    size_t mem_alloc;
    int fd; /* octets from FILTER_EDIT_BODY_MEM on, at file offset 0; -1 */
    const char *by;
};

struct filter_edits {
    struct filter_edit *v;
    size_t count, alloc;
    size_t max_edits;
    size_t text; /* octets of names, values and parameters held */
    uint64_t body_max;
    const char *tmp_dir;
    struct edit_body body;
};

/* Every extension on: a filter's parameters are checked for syntax, not
 * against what this client was offered. */
static const struct smtp_params_offer offer_all = {
    .size = true,
    .eightbitmime = true,
    .smtputf8 = true,
    .dsn = true,
    .auth = true,
    .chunking = true,
};

struct filter_edits *filter_edits_new(const struct filter_edit_limits *lim)
{
    struct filter_edits *e = calloc(1, sizeof(*e));

    if (e == NULL)
        return NULL;
    e->max_edits = FILTER_EDITS_MAX;
    e->body_max = FILTER_EDIT_BODY_MAX_DEFAULT;
    e->body.fd = -1;
    if (lim != NULL) {
        if (lim->max_edits != 0 && lim->max_edits < FILTER_EDITS_MAX)
            e->max_edits = lim->max_edits;
        if (lim->body_max != 0)
            e->body_max = lim->body_max;
        e->tmp_dir = lim->tmp_dir;
    }
    return e;
}

static void body_clear(struct edit_body *b)
{
    free(b->mem);
    if (b->fd >= 0)
        close(b->fd);
    *b = (struct edit_body){.fd = -1};
}

static void edit_clear(struct filter_edit *ed)
{
    free(ed->name);
    free(ed->value);
    free(ed->params);
}

void filter_edits_free(struct filter_edits **_e)
{
    struct filter_edits *e = *_e;

    if (e == NULL)
        return;
    *_e = NULL;
    for (size_t i = 0; i < e->count; i++)
        edit_clear(&e->v[i]);
    free(e->v);
    body_clear(&e->body);
    free(e);
}

/* ---- recording ---- */

static size_t opt_len(const char *s)
{
    return s == NULL ? 0 : strlen(s);
}

static char *opt_dup(const char *s, bool *oom)
{
    char *d;

    if (s == NULL)
        return NULL;
    if ((d = strdup(s)) == NULL)
        *oom = true;
    return d;
}

/* Appends a copy of ed (its strings duplicated) when the limits allow. */
static int edits_push(struct filter_edits *e, const struct filter_edit *ed)
{
    size_t text = opt_len(ed->name) + opt_len(ed->value) + opt_len(ed->params);
    struct filter_edit copy = *ed;
    bool oom = false;

    if (e->count >= e->max_edits || text > FILTER_EDIT_TEXT_MAX - e->text)
        return -1;
    if (e->count == e->alloc) {
        size_t n = e->alloc == 0 ? 8 : e->alloc * 2;
        struct filter_edit *grown;

        if (n > e->max_edits)
            n = e->max_edits;
        if ((grown = realloc(e->v, n * sizeof(*grown))) == NULL)
            return -1;
        e->v = grown;
        e->alloc = n;
    }
    copy.name = opt_dup(ed->name, &oom);
    copy.value = opt_dup(ed->value, &oom);
    copy.params = opt_dup(ed->params, &oom);
    if (oom) {
        edit_clear(&copy);
        return -1;
    }
    e->v[e->count++] = copy;
    e->text += text;
    return 0;
}

int filter_edits_insert_header(struct filter_edits *e, size_t index, const char *name,
                               const char *value, const char *by)
{
    if (name == NULL || value == NULL || !filter_header_name_ok(name) ||
        !filter_header_value_ok(value))
        return -1;
    return edits_push(e, &(struct filter_edit){.kind = FILTER_EDIT_INSERT_HEADER,
                                               .index = index,
                                               .name = (char *)name,
                                               .value = (char *)value,
                                               .by = by});
}

int filter_edits_change_header(struct filter_edits *e, const char *name, size_t index,
                               const char *value, const char *by)
{
    if (name == NULL || !filter_header_name_ok(name) ||
        (value != NULL && !filter_header_value_ok(value)))
        return -1;
    /* libmilter: an index of 0 is the same as 1 */
    return edits_push(e, &(struct filter_edit){.kind = FILTER_EDIT_CHANGE_HEADER,
                                               .index = index == 0 ? 1 : index,
                                               .name = (char *)name,
                                               .value = (char *)value,
                                               .by = by});
}

int filter_edit_parse_addr(const char *text, unsigned flags, struct addr_path *out,
                           const char **error_r)
{
    size_t len, used;

    while (*text == ' ')
        text++;
    len = strlen(text);
    while (len > 0 && text[len - 1] == ' ')
        len--;
    if (addr_parse_path(text, len, flags | ADDR_ALLOW_NOBRACKET, out, &used, error_r) < 0)
        return -1;
    if (used != len) {
        *error_r = "text after the address";
        return -1;
    }
    return 0;
}

/* The parameters, when given, must parse as MAIL's (sender) or RCPT's. */
static bool params_ok(const char *params, bool mail)
{
    struct smtp_mail_params mp;
    struct smtp_rcpt_params rp;
    struct smtp_status err;
    size_t len;

    if (params == NULL)
        return true;
    if ((len = strlen(params)) > FILTER_EDIT_PARAMS_MAX)
        return false;
    if (mail)
        return smtp_params_parse_mail(params, len, &offer_all, &mp, &err) == 0;
    return smtp_params_parse_rcpt(params, len, &offer_all, &rp, &err) == 0;
}

static int push_envelope(struct filter_edits *e, enum filter_edit_kind kind, const char *addr,
                         const char *params, const char *by)
{
    return edits_push(e,
                      &(struct filter_edit){
                          .kind = kind, .value = (char *)addr, .params = (char *)params, .by = by});
}

int filter_edits_change_sender(struct filter_edits *e, const char *sender, const char *params,
                               const char *by)
{
    struct addr_path a;
    const char *error;

    if (sender == NULL ||
        filter_edit_parse_addr(sender, ADDR_ALLOW_NULL | ADDR_ALLOW_UTF8, &a, &error) < 0 ||
        !params_ok(params, true))
        return -1;
    return push_envelope(e, FILTER_EDIT_CHANGE_SENDER, sender, params, by);
}

int filter_edits_add_rcpt(struct filter_edits *e, const char *rcpt, const char *params,
                          const char *by)
{
    struct addr_path a;
    const char *error;

    if (rcpt == NULL ||
        filter_edit_parse_addr(rcpt, ADDR_ALLOW_POSTMASTER | ADDR_ALLOW_UTF8, &a, &error) < 0 ||
        !params_ok(params, false))
        return -1;
    return push_envelope(e, FILTER_EDIT_ADD_RCPT, rcpt, params, by);
}

int filter_edits_delete_rcpt(struct filter_edits *e, const char *rcpt, const char *by)
{
    struct addr_path a;
    const char *error;

    if (rcpt == NULL ||
        filter_edit_parse_addr(rcpt, ADDR_ALLOW_POSTMASTER | ADDR_ALLOW_UTF8, &a, &error) < 0)
        return -1;
    return push_envelope(e, FILTER_EDIT_DELETE_RCPT, rcpt, NULL, by);
}

/* ---- the replacement body ---- */

static int write_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* The unlinked file for the part past FILTER_EDIT_BODY_MEM. */
static int body_open_file(const char *dir)
{
    char path[4096];
    int fd;

    if ((size_t)snprintf(path, sizeof(path), "%s/edit-body.XXXXXX", dir) >= sizeof(path))
        return -1;
    if ((fd = mkostemp(path, O_CLOEXEC)) < 0)
        return -1;
    (void)unlink(path);
    return fd;
}

static int body_append_mem(struct edit_body *b, const char *p, size_t n)
{
    if (n == 0)
        return 0;
    if (b->len + n > b->mem_alloc) {
        size_t want = b->mem_alloc == 0 ? 16 * 1024 : b->mem_alloc * 2;
        char *grown;

        while (want < b->len + n)
            want *= 2;
        if (want > FILTER_EDIT_BODY_MEM)
            want = FILTER_EDIT_BODY_MEM;
        if ((grown = realloc(b->mem, want)) == NULL)
            return -1;
        b->mem = grown;
        b->mem_alloc = want;
    }
    memcpy(b->mem + b->len, p, n);
    return 0;
}

/* Memory only, past FILTER_EDIT_BODY_MEM: doubles up to max. */
static int body_append_more(struct edit_body *b, const char *p, size_t len, uint64_t max)
{
    if (b->len + len > b->mem_alloc) {
        uint64_t want = (uint64_t)b->mem_alloc * 2;
        char *grown;

        if (want < b->len + len)
            want = b->len + len;
        if (want > max)
            want = max;
        if (want > SIZE_MAX || (grown = realloc(b->mem, (size_t)want)) == NULL)
            return -1;
        b->mem = grown;
        b->mem_alloc = (size_t)want;
    }
    memcpy(b->mem + b->len, p, len);
    b->len += len;
    return 0;
}

static int body_append(struct filter_edits *e, const char *p, size_t len)
{
    struct edit_body *b = &e->body;
    size_t n;

    if (len == 0)
        return 0;
    if (b->len < FILTER_EDIT_BODY_MEM) {
        n = FILTER_EDIT_BODY_MEM - (size_t)b->len;
        n = n < len ? n : len;
        if (body_append_mem(b, p, n) < 0)
            return -1;
        b->len += n;
        p += n;
        len -= n;
    }
    if (len == 0)
        return 0;
    if (e->tmp_dir == NULL) /* memory only: grow past the first part */
        return body_append_more(b, p, len, e->body_max);
    if (b->fd < 0 && (b->fd = body_open_file(e->tmp_dir)) < 0)
        return -1;
    if (write_all(b->fd, p, len) < 0)
        return -1;
    b->len += len;
    return 0;
}

int filter_edits_append_body(struct filter_edits *e, const void *chunk, size_t len, const char *by)
{
    struct edit_body *b = &e->body;

    if (b->failed || (chunk == NULL && len > 0))
        return -1;
    if (len > e->body_max - b->len || body_append(e, chunk, len) < 0) {
        body_clear(b);
        b->failed = true;
        return -1;
    }
    b->set = true;
    b->by = by;
    return 0;
}

bool filter_edits_body_replaced(const struct filter_edits *e)
{
    return e->body.set && !e->body.failed;
}

uint64_t filter_edits_body_len(const struct filter_edits *e)
{
    return filter_edits_body_replaced(e) ? e->body.len : 0;
}

const char *filter_edits_body_by(const struct filter_edits *e)
{
    return filter_edits_body_replaced(e) ? e->body.by : NULL;
}

ssize_t filter_edits_body_read(const struct filter_edits *e, uint64_t off, void *buf, size_t len)
{
    const struct edit_body *b = &e->body;
    uint64_t in_mem = b->fd >= 0 ? FILTER_EDIT_BODY_MEM : b->len;
    ssize_t n;

    if (!filter_edits_body_replaced(e) || off >= b->len || len == 0)
        return 0;
    if (len > b->len - off)
        len = (size_t)(b->len - off);
    if (off < in_mem) {
        if (len > in_mem - off)
            len = (size_t)(in_mem - off);
        memcpy(buf, b->mem + off, len);
        return (ssize_t)len;
    }
    do
        n = pread(b->fd, buf, len, (off_t)(off - FILTER_EDIT_BODY_MEM));
    while (n < 0 && errno == EINTR);
    if (n == 0) { /* the file is shorter than recorded */
        errno = EIO;
        return -1;
    }
    return n;
}

/* ---- merging and reading ---- */

int filter_edits_merge(struct filter_edits *into, struct filter_edits *from)
{
    size_t need = into->count + from->count;

    if (need > into->max_edits || from->text > FILTER_EDIT_TEXT_MAX - into->text)
        return -1;
    if (need > into->alloc) {
        struct filter_edit *grown = realloc(into->v, need * sizeof(*grown));

        if (grown == NULL)
            return -1;
        into->v = grown;
        into->alloc = need;
    }
    if (from->count > 0)
        memcpy(into->v + into->count, from->v, from->count * sizeof(*from->v));
    into->count = need;
    into->text += from->text;
    from->count = 0;
    from->text = 0;
    if (filter_edits_body_replaced(from)) {
        body_clear(&into->body);
        into->body = from->body;
        from->body = (struct edit_body){.fd = -1};
    }
    return 0;
}

size_t filter_edits_count(const struct filter_edits *e)
{
    return e->count;
}

const struct filter_edit *filter_edits_at(const struct filter_edits *e, size_t i)
{
    return i < e->count ? &e->v[i] : NULL;
}

bool filter_edits_touch_content(const struct filter_edits *e)
{
    if (filter_edits_body_replaced(e))
        return true;
    for (size_t i = 0; i < e->count; i++) {
        if (e->v[i].kind == FILTER_EDIT_INSERT_HEADER || e->v[i].kind == FILTER_EDIT_CHANGE_HEADER)
            return true;
    }
    return false;
}

bool filter_edits_touch_envelope(const struct filter_edits *e)
{
    for (size_t i = 0; i < e->count; i++) {
        if (e->v[i].kind != FILTER_EDIT_INSERT_HEADER && e->v[i].kind != FILTER_EDIT_CHANGE_HEADER)
            return true;
    }
    return false;
}

/* ---- the filter's calls (filter.h) ---- */

/* The call's list, made at its first edit; NULL when the call may not edit
 * (not at end of message, or in the late step) or out of memory. */
static struct filter_edits *call_edits(struct filter_call *call)
{
    assert(filter_call_live(call));
    if (call->stage != FILTER_EOM || call->late)
        return NULL;
    if (call->edits == NULL)
        call->edits = filter_edits_new(chain_call_edit_limits(call));
    return call->edits;
}

static const char *call_name(const struct filter_call *call)
{
    return call->link->ops->name;
}

int filter_call_insert_header(struct filter_call *call, size_t index, const char *name,
                              const char *value)
{
    struct filter_edits *e = call_edits(call);

    return e == NULL ? -1 : filter_edits_insert_header(e, index, name, value, call_name(call));
}

int filter_call_change_header(struct filter_call *call, const char *name, size_t index,
                              const char *value)
{
    struct filter_edits *e = call_edits(call);

    return e == NULL ? -1 : filter_edits_change_header(e, name, index, value, call_name(call));
}

int filter_call_replace_body(struct filter_call *call, const void *chunk, size_t len)
{
    struct filter_edits *e = call_edits(call);

    return e == NULL ? -1 : filter_edits_append_body(e, chunk, len, call_name(call));
}

int filter_call_change_sender(struct filter_call *call, const char *sender, const char *params)
{
    struct filter_edits *e = call_edits(call);

    return e == NULL ? -1 : filter_edits_change_sender(e, sender, params, call_name(call));
}

int filter_call_add_rcpt(struct filter_call *call, const char *rcpt, const char *params)
{
    struct filter_edits *e = call_edits(call);

    return e == NULL ? -1 : filter_edits_add_rcpt(e, rcpt, params, call_name(call));
}

int filter_call_delete_rcpt(struct filter_call *call, const char *rcpt)
{
    struct filter_edits *e = call_edits(call);

    return e == NULL ? -1 : filter_edits_delete_rcpt(e, rcpt, call_name(call));
}

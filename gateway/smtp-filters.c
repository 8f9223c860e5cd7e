/*
 * smtp-filters — see smtp-filters.h. The per-session state (struct
 * filter_sess, in session->hook_state) holds the chain session, the run in
 * flight and the filter_txn with the text it points to, which must stay
 * valid until the chain calls back. When the end-of-message verdict
 * accepts the message, its header fields (the filters', the policy's) are
 * added, the filters' message edits are applied (message-edit.h): the
 * envelope at once, the content on the worker's edit thread; then, on the
 * final message, the filters' late step runs (chain_run_late: DKIM
 * signing), whose fields go on top of the others; the stage ends when the
 * last of these has. A late step that refuses (its on_error tempfail or
 * reject) refuses the message.
 */
#include "config.h"
#include "gateway/smtp-filters.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "filters/chain.h"
#include "filters/edit.h"
#include "gateway/message-edit.h"
#include "gateway/rcpt-verify.h"
#include "gateway/server-config.h"
#include "gateway/smtp-session-private.h"
#include "lib/address.h"
#include "lib/dns.h"
#include "lib/kv.h"
#include "lib/log.h"
#include "lib/spool.h"
#include "lib/workpool.h"
#include "policy/policy.h"

struct smtp_filters {
    const struct postern_config *cfg;
    struct dns *dns; /* the worker's */
    struct kv *kv;
    struct rcpt_verifier *verifier;
    struct filter_env env;
    void **instances;       /* one per cfg->filtering.filters */
    size_t instance_count;
    struct chain **chains;  /* one per listener (NULL: the listener runs none) */
    size_t chain_count;
    struct workpool *edit_pool; /* message rewrites; made at the first */
    struct smtp_hooks hooks;
};

#define ADDR_TEXT_MAX (ADDR_PATH_MAX * 4 + 8)

struct filter_sess {
    struct smtp_filters *f;
    enum smtp_stage stage; /* of the run in flight */
    struct smtp_session *s;
    struct chain_session *cs;
    struct chain_run *run;
    smtp_hook_done_cb *done;
    struct filter_txn txn;
    char sender[ADDR_TEXT_MAX];
    char rcpt[ADDR_TEXT_MAX];
    char **rcpts; /* text of the accepted recipients, for DATA and EOM */
    size_t rcpt_count;
    struct message_edit_job *edit_job; /* the content rewrite in flight */
    struct smtp_hook_result held; /* the verdict the rewrite or late step waits to give */
};

enum smtp_verdict smtp_filters_verdict(enum filter_action action)
{
    switch (action) {
    case FILTER_ACTION_NONE:
        return SMTP_VERDICT_CONTINUE;
    case FILTER_ACTION_ACCEPT:
        return SMTP_VERDICT_ACCEPT;
    case FILTER_ACTION_DISCARD:
        return SMTP_VERDICT_DISCARD;
    case FILTER_ACTION_HOLD:
    case FILTER_ACTION_QUARANTINE: /* no quarantine store yet: held for review */
        return SMTP_VERDICT_HOLD;
    case FILTER_ACTION_TEMPFAIL:
        return SMTP_VERDICT_TEMPFAIL;
    case FILTER_ACTION_REJECT:
        return SMTP_VERDICT_REJECT;
    case FILTER_ACTION_DISCONNECT:
        return SMTP_VERDICT_DISCONNECT;
    }
    return SMTP_VERDICT_TEMPFAIL; /* unknown: fail closed */
}

static void free_rcpts(struct filter_sess *fs)
{
    for (size_t i = 0; i < fs->rcpt_count; i++)
        free(fs->rcpts[i]);
    free(fs->rcpts);
    fs->rcpts = NULL;
    fs->rcpt_count = 0;
}

static int fill_rcpts(struct filter_sess *fs, const struct smtp_txn *t)
{
    char one[ADDR_TEXT_MAX];

    free_rcpts(fs);
    if (t->rcpt_count == 0)
        return 0;
    if ((fs->rcpts = calloc(t->rcpt_count, sizeof(*fs->rcpts))) == NULL)
        return -1;
    for (size_t i = 0; i < t->rcpt_count; i++) {
        addr_format(&t->rcpts[i].addr, one, sizeof(one));
        if ((fs->rcpts[i] = strdup(one)) == NULL)
            return -1;
        fs->rcpt_count++;
    }
    return 0;
}

static struct chain *listener_chain(struct smtp_filters *f, const struct smtp_session *s);

static int fill_txn(struct filter_sess *fs, enum smtp_stage stage)
{
    const struct smtp_session *s = fs->s;
    const struct smtp_txn *t = s->txn;
    struct filter_txn *x = &fs->txn;

    memset(x, 0, sizeof(*x));
    x->listener = s->listener->name;
    x->direction = s->authenticated || s->trusted || s->listener->role != ROLE_MX
                       ? FILTER_OUTBOUND
                       : FILTER_INBOUND;
    x->client = s->client;
    x->client_addr = s->client_addr;
    x->client_name = s->client_name;
    x->helo = s->helo_seen ? s->helo : NULL;
    x->authenticated = s->authenticated;
    x->auth_user = s->authenticated ? s->auth_user : NULL;
    x->trusted = s->trusted;
    x->content_fd = -1;
    const struct chain_result *found = chain_session_result(fs->cs);
    x->symbols = found->symbols;
    x->symbol_count = found->symbol_count;
    if (t == NULL)
        return 0;
    x->queue_id = t->queue_id;
    addr_format(&t->sender, fs->sender, sizeof(fs->sender));
    x->sender = fs->sender;
    if (stage == SMTP_STAGE_RCPT) {
        addr_format(&t->pending_rcpt.addr, fs->rcpt, sizeof(fs->rcpt));
        x->rcpt = fs->rcpt;
    }
    if (stage >= SMTP_STAGE_DATA && fill_rcpts(fs, t) < 0)
        return -1;
    if (stage == SMTP_STAGE_EOM && t->msg != NULL &&
        chain_has_stage(listener_chain(fs->f, s), FILTER_EOM) &&
        spool_msg_content(t->msg, &x->content_fd, &x->content_off, &x->content_len) < 0)
        return -1;
    x->rcpts = (const char *const *)fs->rcpts;
    x->rcpt_count = fs->rcpt_count;
    return 0;
}

static int add_header(void *ctx, const char *name, const char *value)
{
    struct smtp_txn *t = ctx;
    const char *error;

    if (smtp_txn_add_header(t, name, value, &error) == 0)
        return 0;
    log_warning("%s: cannot add %s: %s", t->queue_id, name, error);
    return -1;
}

/* A failed rewrite refuses the message: a header section too big to edit
 * is the client's doing (552), anything else a local trouble (451). */
static void edit_failed(struct filter_sess *fs, struct smtp_hook_result *r, int error)
{
    log_error("%s: cannot apply the filters' changes to the message: %s", fs->s->txn->queue_id,
              strerror(error));
    if (error == E2BIG) {
        r->verdict = SMTP_VERDICT_REJECT;
        smtp_status_set(&r->reply, 552, "5.3.4", "Error: message header too big to edit");
    } else {
        r->verdict = SMTP_VERDICT_TEMPFAIL;
        smtp_status_set(&r->reply, 451, "4.3.0", "Error: cannot apply the filters' changes");
    }
}

/* ---- the late step ---- */

static bool accepting(enum smtp_verdict v)
{
    return v == SMTP_VERDICT_CONTINUE || v == SMTP_VERDICT_ACCEPT || v == SMTP_VERDICT_HOLD;
}

/* The late step's fields go on top of the message, the first topmost; one
 * that does not fit is logged and left out (as add_header's). */
static void add_late_headers(struct smtp_txn *t, const struct chain_result *res)
{
    const char *error;

    for (size_t i = res->late_header_count; i-- > 0;)
        if (smtp_txn_add_header_top(t, res->late_headers[i].name, res->late_headers[i].value,
                                    &error) < 0)
            log_warning("%s: cannot add %s: %s", t->queue_id, res->late_headers[i].name, error);
}

static void on_late_done(void *ctx, const struct chain_result *res)
{
    struct filter_sess *fs = ctx;
    struct smtp_hook_result r = fs->held;

    fs->run = NULL;
    if (res->action == FILTER_ACTION_TEMPFAIL || res->action == FILTER_ACTION_REJECT ||
        res->action == FILTER_ACTION_DISCONNECT) {
        log_info("%s: %s by %s in the late step", fs->s->txn->queue_id,
                 filter_action_name(res->action), res->action_by != NULL ? res->action_by : "-");
        r.verdict = smtp_filters_verdict(res->action);
        r.reply = res->reply;
    } else {
        add_late_headers(fs->s->txn, res);
    }
    fs->done(fs->s, &r);
}

/* The late step sees the final envelope (after the filters' edits). */
static int refresh_envelope(struct filter_sess *fs, const struct smtp_txn *t)
{
    addr_format(&t->sender, fs->sender, sizeof(fs->sender));
    fs->txn.sender = fs->sender;
    fs->txn.rcpts = NULL;
    fs->txn.rcpt_count = 0;
    if (fill_rcpts(fs, t) < 0)
        return -1;
    fs->txn.rcpts = (const char *const *)fs->rcpts;
    fs->txn.rcpt_count = fs->rcpt_count;
    return 0;
}

/* Runs the filters' late step on the final message: the content as
 * rewritten, the fields added so far above it. Returns 1 when r is final
 * now (no late step; or it cannot run, and r refuses), 0 when
 * on_late_done will end the stage. */
static int start_late(struct filter_sess *fs, struct smtp_hook_result *r)
{
    struct smtp_txn *t = fs->s->txn;
    struct filter_txn *x = &fs->txn;

    if (t->msg == NULL || !chain_has_late(listener_chain(fs->f, fs->s)))
        return 1;
    x->rcpt = NULL;
    x->added_headers = t->add_headers;
    fs->held = *r;
    errno = 0;
    if (refresh_envelope(fs, t) < 0 ||
        spool_msg_content(t->msg, &x->content_fd, &x->content_off, &x->content_len) < 0 ||
        (fs->run = chain_run_late(fs->cs, x, on_late_done, fs)) == NULL) {
        log_error("%s: cannot run the filters' late step: %s", t->queue_id,
                  errno != 0 ? strerror(errno) : "out of memory");
        r->verdict = SMTP_VERDICT_TEMPFAIL;
        smtp_status_set(&r->reply, 451, "4.3.0", "Error: local trouble");
        return 1;
    }
    return 0;
}

/* ---- the message edits ---- */

static void on_edit_done(void *ctx, int error, const struct message_edit_report *rep)
{
    struct filter_sess *fs = ctx;
    struct smtp_txn *t = fs->s->txn;
    struct smtp_hook_result r = fs->held;
    int64_t size;

    fs->edit_job = NULL;
    if (error != 0) {
        edit_failed(fs, &r, error);
    } else {
        /* the summary line's size is the reader's count: make it the new
         * content's (less Postern's Received:, as before) */
        size = (int64_t)smtp_data_size(&t->reader) + (int64_t)rep->new_size -
               (int64_t)rep->old_size;
        t->reader.size = size > 0 ? (uint64_t)size : 0;
        log_info("%s: filters edited the message: header fields +%u ~%u -%u, %u appended, "
                 "body %s, size %llu -> %llu",
                 t->queue_id, rep->inserted, rep->changed, rep->deleted, rep->appended,
                 rep->body ? "replaced" : "kept", (unsigned long long)rep->old_size,
                 (unsigned long long)rep->new_size);
        if (rep->ignored > 0)
            log_warning("%s: filter %s: %u change(s) of Postern's Received: ignored",
                        t->queue_id, rep->ignored_by, rep->ignored);
        if (start_late(fs, &r) == 0)
            return;
    }
    fs->done(fs->s, &r);
}

/* Applies the transaction's message edits to an accepted message. Returns
 * 1 when r is final now, 0 when the content rewrite will end the stage. */
static int apply_edits(struct filter_sess *fs, struct smtp_hook_result *r)
{
    struct smtp_txn *t = fs->s->txn;
    struct filter_edits *e = chain_session_take_edits(fs->cs);
    int ret = 1;

    if (e == NULL)
        return 1;
    if (message_edit_envelope(t, e) < 0) {
        edit_failed(fs, r, ENOMEM);
    } else if (t->rcpt_count == 0) {
        log_info("%s: the filters removed every recipient: message discarded", t->queue_id);
        r->verdict = SMTP_VERDICT_DISCARD;
    } else if (filter_edits_touch_content(e) && t->msg != NULL) {
        errno = 0;
        if (fs->f->edit_pool == NULL)
            fs->f->edit_pool = workpool_create(fs->f->env.base, 1);
        fs->held = *r;
        if (fs->f->edit_pool == NULL ||
            (fs->edit_job = message_edit_start(fs->f->edit_pool, t->msg, &e, on_edit_done,
                                               fs)) == NULL)
            edit_failed(fs, r, errno != 0 ? errno : ENOMEM);
        else
            ret = 0;
    }
    filter_edits_free(&e);
    return ret;
}

static void on_chain_done(void *ctx, const struct chain_result *res)
{
    struct filter_sess *fs = ctx;
    const struct postern_config *cfg = fs->f->cfg;
    bool final = fs->stage == SMTP_STAGE_EOM;
    struct policy_decision d;
    struct smtp_hook_result r;

    fs->run = NULL;
    policy_decide(&cfg->filtering.policy, fs->txn.direction, final, res, &d);
    r.verdict = smtp_filters_verdict(d.action);
    r.reply = d.reply;
    /* an accepted message carries the verdict in its headers (a failure to
     * add them is logged; the message is not refused for it) */
    if (final && fs->s->txn != NULL &&
        (r.verdict == SMTP_VERDICT_CONTINUE || r.verdict == SMTP_VERDICT_ACCEPT ||
         r.verdict == SMTP_VERDICT_HOLD)) {
        for (size_t i = 0; i < res->header_count; i++)
            (void)add_header(fs->s->txn, res->headers[i].name, res->headers[i].value);
        (void)policy_headers(&cfg->filtering.policy, &d, res, cfg->server.hostname, add_header,
                             fs->s->txn);
        if (apply_edits(fs, &r) == 0)
            return; /* on_edit_done goes on */
        if (accepting(r.verdict) && start_late(fs, &r) == 0)
            return;
    }
    fs->done(fs->s, &r);
}

/* The chain of the session's listener, or NULL when it runs none. */
static struct chain *listener_chain(struct smtp_filters *f, const struct smtp_session *s)
{
    size_t i = (size_t)(s->listener - f->cfg->listeners);

    return i < f->chain_count ? f->chains[i] : NULL;
}

static struct filter_sess *sess_get(struct smtp_filters *f, struct smtp_session *s)
{
    struct filter_sess *fs = s->hook_state;
    struct chain *chain;

    if (fs != NULL)
        return fs;
    if ((chain = listener_chain(f, s)) == NULL || (fs = calloc(1, sizeof(*fs))) == NULL)
        return NULL;
    fs->f = f;
    fs->s = s;
    if ((fs->cs = chain_session_new(chain)) == NULL) {
        free(fs);
        return NULL;
    }
    s->hook_state = fs;
    return fs;
}

static int filters_stage(void *ctx, struct smtp_session *s, enum smtp_stage stage,
                         struct smtp_hook_result *result, smtp_hook_done_cb *done)
{
    static const enum filter_stage map[SMTP_STAGE_COUNT] = {
        FILTER_CONNECT, FILTER_HELO, FILTER_MAIL, FILTER_RCPT, FILTER_DATA, FILTER_EOM,
    };
    struct filter_sess *fs;

    if (stage >= SMTP_STAGE_COUNT)
        return -1;
    if (listener_chain(ctx, s) == NULL) {
        result->verdict = SMTP_VERDICT_CONTINUE;
        return 1;
    }
    if ((fs = sess_get(ctx, s)) == NULL)
        return -1;
    if (stage == SMTP_STAGE_MAIL)
        chain_session_reset(fs->cs); /* a new transaction */
    if (fill_txn(fs, stage) < 0)
        return -1;
    fs->done = done;
    fs->stage = stage;
    fs->run = chain_run(fs->cs, map[stage], &fs->txn, on_chain_done, fs);
    return fs->run == NULL ? -1 : 0;
}

static void filters_cancel(void *ctx, struct smtp_session *s)
{
    struct filter_sess *fs = s->hook_state;

    (void)ctx;
    if (fs != NULL && fs->run != NULL) {
        chain_run_cancel(fs->run);
        fs->run = NULL;
    }
    if (fs != NULL)
        message_edit_cancel(&fs->edit_job);
}

static void filters_end(void *ctx, struct smtp_session *s)
{
    struct filter_sess *fs = s->hook_state;

    if (fs == NULL)
        return;
    filters_cancel(ctx, s);
    chain_session_free(&fs->cs);
    free_rcpts(fs);
    free(fs);
    s->hook_state = NULL;
}

bool smtp_filters_summary(const struct smtp_session *s, char *out, size_t size)
{
    const struct filter_sess *fs = s->hook_state;
    const struct chain_result *r;
    size_t o;

    if (fs == NULL || size == 0)
        return false;
    r = chain_session_result(fs->cs);
    o = (size_t)snprintf(out, size, "symbols=%s", r->symbol_count == 0 ? "-" : "");
    for (size_t i = 0; i < r->symbol_count && o < size; i++)
        o += (size_t)snprintf(out + o, size - o, "%s%s(%g)", i > 0 ? "," : "", r->symbols[i].name,
                              r->symbols[i].score);
    if (o < size)
        snprintf(out + o, size - o, " score=%g", r->score);
    return true;
}

static void init_hooks(struct smtp_filters *f)
{
    f->hooks.stage = filters_stage;
    f->hooks.cancel = filters_cancel;
    f->hooks.end = filters_end;
    f->hooks.ctx = f;
}

/* The worker's state store and call-ahead, shared by its filters. */
static int make_env(struct smtp_filters *f, struct event_base *base, char *error, size_t errsize)
{
    const struct postern_config *cfg = f->cfg;
    const struct state_settings *st = &cfg->filtering.state;
    char lmdb_dir[4096];

    snprintf(lmdb_dir, sizeof(lmdb_dir), "%s/state", cfg->server.spool_dir);
    struct kv_config kc = {
        .backend = (enum kv_backend)st->backend,
        .timeout_ms = (unsigned)st->timeout,
        .lmdb_dir = st->lmdb_dir != NULL ? st->lmdb_dir : lmdb_dir,
        .lmdb_map_size = (size_t)st->lmdb_map_size,
        .lmdb_nosync = st->lmdb_nosync,
        .redis_address = st->redis,
        .redis_password = st->redis_password,
        .redis_db = (unsigned)st->redis_db,
        .redis_prefix = st->redis_prefix,
    };
    if (cfg->filtering.uses_kv && kv_new(base, &kc, &f->kv, error, errsize) < 0)
        return -1;
    if ((f->verifier = rcpt_verifier_new(base, f->dns, cfg)) == NULL) {
        snprintf(error, errsize, "filters: out of memory");
        return -1;
    }
    f->env = (struct filter_env){.base = base,
                                 .dns = f->dns,
                                 .kv = f->kv,
                                 .hostname = cfg->server.hostname,
                                 .verifier = rcpt_verifier_iface(f->verifier)};
    return 0;
}

static int make_instances(struct smtp_filters *f, char *error, size_t errsize)
{
    const struct filter_config *fc = &f->cfg->filtering;

    if ((f->instances = calloc(fc->count + 1, sizeof(*f->instances))) == NULL) {
        snprintf(error, errsize, "filters: out of memory");
        return -1;
    }
    for (; f->instance_count < fc->count; f->instance_count++) {
        const struct filter_instance_settings *fi = &fc->filters[f->instance_count];
        if (fi->module->create(&f->env, fi->settings, &f->instances[f->instance_count], error,
                               errsize) < 0)
            return -1;
    }
    return 0;
}

static int make_chains(struct smtp_filters *f, struct event_base *base, char *error,
                       size_t errsize)
{
    const struct postern_config *cfg = f->cfg;
    char tmp_dir[4096]; /* where a replaced body past edit.h's memory part goes */

    snprintf(tmp_dir, sizeof(tmp_dir), "%s/tmp", cfg->server.spool_dir);
    if ((f->chains = calloc(cfg->listener_count + 1, sizeof(*f->chains))) == NULL)
        goto oom;
    for (; f->chain_count < cfg->listener_count; f->chain_count++) {
        const struct listener_settings *l = &cfg->listeners[f->chain_count];
        struct chain_link *links;
        if (l->chain_len == 0)
            continue;
        if ((links = calloc(l->chain_len, sizeof(*links))) == NULL)
            goto oom;
        for (size_t i = 0; i < l->chain_len; i++) {
            const struct filter_instance_settings *fi = &cfg->filtering.filters[l->chain[i]];
            const struct filter_common *c = filter_instance_common(fi);
            links[i] = (struct chain_link){.ops = fi->module->ops,
                                           .instance = f->instances[l->chain[i]],
                                           .on_error = (enum filter_on_error)c->on_error,
                                           .timeout_ms = (unsigned)c->timeout};
        }
        f->chains[f->chain_count] = chain_new(base, links, l->chain_len);
        free(links);
        if (f->chains[f->chain_count] == NULL ||
            chain_set_edit_limits(f->chains[f->chain_count],
                                  (uint64_t)cfg->smtp.message_size_limit, tmp_dir) < 0)
            goto oom;
    }
    return 0;
oom:
    snprintf(error, errsize, "filters: cannot create the chains");
    return -1;
}

int smtp_filters_new(struct event_base *base, struct dns *dns, const struct postern_config *cfg,
                     struct smtp_filters **f_r, char *error, size_t errsize)
{
    struct smtp_filters *f = calloc(1, sizeof(*f));

    *f_r = NULL;
    if (f == NULL) {
        snprintf(error, errsize, "filters: out of memory");
        return -1;
    }
    f->cfg = cfg;
    f->dns = dns;
    if (make_env(f, base, error, errsize) < 0 || make_instances(f, error, errsize) < 0 ||
        make_chains(f, base, error, errsize) < 0) {
        smtp_filters_free(&f);
        return -1;
    }
    init_hooks(f);
    *f_r = f;
    return 0;
}

void smtp_filters_free(struct smtp_filters **fp)
{
    struct smtp_filters *f = *fp;

    if (f == NULL)
        return;
    *fp = NULL;
    workpool_destroy(&f->edit_pool); /* settles the rewrites of sessions gone */
    for (size_t i = 0; i < f->chain_count; i++)
        chain_free(&f->chains[i]);
    free(f->chains);
    for (size_t i = 0; i < f->instance_count; i++)
        f->cfg->filtering.filters[i].module->destroy(f->instances[i]);
    free(f->instances);
    rcpt_verifier_free(&f->verifier);
    kv_free(&f->kv);
    free(f);
}

const struct smtp_hooks *smtp_filters_hooks(const struct smtp_filters *f)
{
    return &f->hooks;
}

void *smtp_filters_instance(const struct smtp_filters *f, size_t i)
{
    return i < f->instance_count ? f->instances[i] : NULL;
}

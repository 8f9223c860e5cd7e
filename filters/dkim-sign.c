/*
 * dkim-sign — see dkim-sign.h. A job goes: read the content's header
 * section and split the added fields on a pool thread → pick the key on
 * the loop (GMime for the From: mailbox) → sign on a pool thread
 * (dkim_sign, every named field, the added ones first, dkim_eoh, the body,
 * dkim_eom, dkim_getsighdr_d) → the callback on the loop.
 */
#include "config.h"
#include "filters/dkim-sign.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <opendkim/dkim.h>

#include "filters/dkim-message.h"
#include "lib/workpool.h"

#define BODY_CHUNK (64 * 1024)
#define SIGNATURE_FIELD "DKIM-Signature: "

struct dkim_signer {
    struct workpool *pool;
    DKIM_LIB *lib;
    struct dkim_sign_key *keys;
    size_t key_count;
    char **sign_headers;     /* NULL-terminated, for libopendkim */
    char **oversign_headers; /* the same */
    enum dkim_sign_by by;
    size_t max_header;
};

struct dkim_sign_job {
    struct dkim_signer *s;
    int fd;
    uint64_t off, len;
    char id[64];
    char sender_domain[DKIM_DOMAIN_MAX + 1];
    dkim_sign_cb *cb;
    void *ctx;
    bool in_pool, cancelled;
    int status; /* of the last job: -1 = why */
    const char *why;
    char why_buf[128];
    struct dkim_message msg;   /* the content's header section */
    char *added_text;          /* txn->added_headers, or NULL */
    struct dkim_message added; /* its fields: above the content's */
    const struct dkim_sign_key *key;
    char *value;
};

static int refuse_query(void *srv, int type, unsigned char *query, unsigned char *buf,
                        size_t buflen, void **qh)
{
    (void)srv, (void)type, (void)query, (void)buf, (void)buflen, (void)qh;
    return DKIM_DNS_ERROR;
}

/* ---- the signer ---- */

static char **copy_names(const char *const *names, size_t n)
{
    char **out = calloc(n + 1, sizeof(*out));

    for (size_t i = 0; out != NULL && i < n; i++) {
        if ((out[i] = strdup(names[i])) == NULL) {
            for (size_t j = 0; j < i; j++)
                free(out[j]);
            free(out);
            return NULL;
        }
    }
    return out;
}

static void free_names(char **names)
{
    for (size_t i = 0; names != NULL && names[i] != NULL; i++)
        free(names[i]);
    free(names);
}

static int copy_keys(struct dkim_signer *s, const struct dkim_sign_config *cfg)
{
    if ((s->keys = calloc(cfg->key_count + 1, sizeof(*s->keys))) == NULL)
        return -1;
    for (size_t i = 0; i < cfg->key_count; i++, s->key_count++) {
        const struct dkim_sign_key *k = &cfg->keys[i];
        struct dkim_sign_key *c = &s->keys[i];
        c->alg = k->alg;
        c->domain = strdup(k->domain);
        c->selector = strdup(k->selector);
        c->key_file = strdup(k->key_file);
        c->pem = strdup(k->pem);
        if (c->domain == NULL || c->selector == NULL || c->key_file == NULL || c->pem == NULL) {
            s->key_count++;
            return -1;
        }
    }
    return 0;
}

static int set_up(struct dkim_signer *s)
{
    if ((s->lib = dkim_init(NULL, NULL)) == NULL)
        return -1;
    dkim_dns_set_query_start(s->lib, refuse_query);
    if (dkim_options(s->lib, DKIM_OP_SETOPT, DKIM_OPTS_SIGNHDRS, s->sign_headers,
                     sizeof(s->sign_headers)) != DKIM_STAT_OK)
        return -1;
    if (s->oversign_headers[0] != NULL &&
        dkim_options(s->lib, DKIM_OP_SETOPT, DKIM_OPTS_OVERSIGNHDRS, s->oversign_headers,
                     sizeof(s->oversign_headers)) != DKIM_STAT_OK)
        return -1;
    return 0;
}

int dkim_signer_new(struct workpool *pool, const struct dkim_sign_config *cfg,
                    struct dkim_signer **s_r, char *error, size_t errsize)
{
    struct dkim_signer *s = calloc(1, sizeof(*s));

    *s_r = NULL;
    if (s == NULL) {
        snprintf(error, errsize, "dkim: out of memory");
        return -1;
    }
    s->pool = pool;
    s->by = cfg->by;
    s->max_header = cfg->max_header;
    s->sign_headers = copy_names(cfg->sign_headers, cfg->sign_count);
    s->oversign_headers = copy_names(cfg->oversign_headers, cfg->oversign_count);
    if (s->sign_headers == NULL || s->oversign_headers == NULL || copy_keys(s, cfg) < 0 ||
        set_up(s) < 0) {
        snprintf(error, errsize, "dkim: cannot set up signing");
        dkim_signer_free(&s);
        return -1;
    }
    *s_r = s;
    return 0;
}

void dkim_signer_free(struct dkim_signer **sp)
{
    struct dkim_signer *s = *sp;

    if (s == NULL)
        return;
    *sp = NULL;
    if (s->lib != NULL)
        dkim_close(s->lib);
    for (size_t i = 0; i < s->key_count; i++) {
        free(s->keys[i].domain);
        free(s->keys[i].selector);
        free(s->keys[i].key_file);
        free(s->keys[i].pem);
    }
    free(s->keys);
    free_names(s->sign_headers);
    free_names(s->oversign_headers);
    free(s);
}

/* ---- the key ---- */

/* Whether key domain k is domain d or a parent of it. */
static bool covers(const char *k, const char *d)
{
    size_t kl = strlen(k), dl = strlen(d);

    if (dl == kl)
        return strcasecmp(k, d) == 0;
    return dl > kl && d[dl - kl - 1] == '.' && strcasecmp(d + dl - kl, k) == 0;
}

static const struct dkim_sign_key *pick_for(const struct dkim_signer *s, const char *domain)
{
    const struct dkim_sign_key *best = NULL;

    if (domain == NULL || domain[0] == '\0')
        return NULL;
    for (size_t i = 0; i < s->key_count; i++) {
        if (covers(s->keys[i].domain, domain) &&
            (best == NULL || strlen(s->keys[i].domain) > strlen(best->domain)))
            best = &s->keys[i];
    }
    return best;
}

const struct dkim_sign_key *dkim_signer_pick(const struct dkim_signer *s, const char *from_domain,
                                             const char *sender_domain)
{
    const struct dkim_sign_key *k = NULL;

    if (s->by != DKIM_SIGN_BY_SENDER)
        k = pick_for(s, from_domain);
    if (k == NULL && s->by != DKIM_SIGN_BY_FROM)
        k = pick_for(s, sender_domain);
    return k;
}

/* ---- a job ---- */

static void job_free(struct dkim_sign_job *j)
{
    dkim_message_free(&j->msg);
    dkim_message_free(&j->added);
    free(j->added_text);
    free(j->value);
    if (j->fd >= 0)
        close(j->fd);
    free(j);
}

static void job_end(struct dkim_sign_job *j, int status, const char *why)
{
    j->cb(j->ctx, status, status == 1 ? j->key : NULL, j->value, why);
    job_free(j);
}

static bool submit(struct dkim_sign_job *j, workpool_fn *work, workpool_done_fn *done)
{
    if (workpool_submit(j->s->pool, work, done, j) < 0)
        return false;
    j->in_pool = true;
    return true;
}

static void job_read(void *arg)
{
    struct dkim_sign_job *j = arg;

    size_t added = j->added_text != NULL ? strlen(j->added_text) : 0;

    /* the added fields are the program's own, bounded where they were made
     * (gateway: the spool's add_headers limit): max_header_size is for the
     * client's header section */
    if (dkim_message_read(j->fd, j->off, j->len, j->s->max_header, &j->msg, &j->why) < 0 ||
        (added > 0 && dkim_message_parse(j->added_text, added, added, &j->added, &j->why) < 0))
        j->status = -1;
}

/* Feeds the fields of m that have a name. */
static DKIM_STAT feed_fields(DKIM *dkim, const struct dkim_message *m)
{
    DKIM_STAT st = DKIM_STAT_OK;

    for (size_t i = 0; i < m->count && st == DKIM_STAT_OK; i++) {
        const struct dkim_field *f = &m->fields[i];
        if (f->name_len > 0)
            st = dkim_header(dkim, (unsigned char *)f->text, f->len);
    }
    return st;
}

static int feed_body(struct dkim_sign_job *j, DKIM *dkim)
{
    unsigned char *buf = malloc(BODY_CHUNK);
    uint64_t at = j->msg.body_off;

    if (buf == NULL)
        return -1;
    while (at < j->len) {
        size_t want = j->len - at < BODY_CHUNK ? (size_t)(j->len - at) : BODY_CHUNK;
        ssize_t got = pread(j->fd, buf, want, (off_t)(j->off + at));
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0 || dkim_body(dkim, buf, (size_t)got) != DKIM_STAT_OK) {
            free(buf);
            return -1;
        }
        at += (uint64_t)got;
    }
    free(buf);
    return 0;
}

/* Signs; sets j->value or j->status -1 and j->why. */
static void sign(struct dkim_sign_job *j, DKIM *dkim)
{
    DKIM_STAT st;
    unsigned char *hdr = NULL;
    size_t len = 0;

    /* the header section as relayed: the added fields above the content's */
    st = feed_fields(dkim, &j->added);
    if (st == DKIM_STAT_OK)
        st = feed_fields(dkim, &j->msg);
    if (st == DKIM_STAT_OK)
        st = dkim_eoh(dkim);
    if (st == DKIM_STAT_OK && feed_body(j, dkim) < 0)
        st = DKIM_STAT_NORESOURCE;
    if (st == DKIM_STAT_OK)
        st = dkim_eom(dkim, NULL);
    if (st == DKIM_STAT_OK)
        st = dkim_getsighdr_d(dkim, sizeof(SIGNATURE_FIELD) - 1, &hdr, &len);
    if (st == DKIM_STAT_OK && (j->value = strndup((const char *)hdr, len)) == NULL)
        st = DKIM_STAT_NORESOURCE;
    if (st != DKIM_STAT_OK) {
        const char *e = dkim_geterror(dkim);
        snprintf(j->why_buf, sizeof(j->why_buf), "signing failed: %s",
                 e != NULL && e[0] != '\0' ? e : dkim_getresultstr(st));
        j->status = -1;
        j->why = j->why_buf;
    }
}

static void job_sign(void *arg)
{
    struct dkim_sign_job *j = arg;
    const struct dkim_sign_key *k = j->key;
    DKIM_STAT st;
    DKIM *dkim =
        dkim_sign(j->s->lib, (const unsigned char *)j->id, NULL, (const dkim_sigkey_t)k->pem,
                  (const unsigned char *)k->selector, (const unsigned char *)k->domain,
                  DKIM_CANON_RELAXED, DKIM_CANON_RELAXED, k->alg, -1, &st);

    if (dkim == NULL) {
        snprintf(j->why_buf, sizeof(j->why_buf), "signing failed: %s", dkim_getresultstr(st));
        j->status = -1;
        j->why = j->why_buf;
        return;
    }
    sign(j, dkim);
    dkim_free(dkim);
}

static void job_sign_done(void *arg, bool cancelled)
{
    struct dkim_sign_job *j = arg;

    j->in_pool = false;
    if (cancelled || j->cancelled)
        job_free(j);
    else if (j->status < 0)
        job_end(j, -1, j->why);
    else
        job_end(j, 1, NULL);
}

static void job_read_done(void *arg, bool cancelled)
{
    struct dkim_sign_job *j = arg;
    char from[DKIM_DOMAIN_MAX + 1];
    const char *why;

    j->in_pool = false;
    if (cancelled || j->cancelled) {
        job_free(j);
        return;
    }
    if (j->status < 0) {
        job_end(j, -1, j->why);
        return;
    }
    if (dkim_message_from_domain(&j->msg, from, &why) < 0)
        from[0] = '\0';
    j->key = dkim_signer_pick(j->s, from, j->sender_domain);
    if (j->key == NULL)
        job_end(j, 0, "no key for the message's domains");
    else if (!submit(j, job_sign, job_sign_done))
        job_end(j, -1, "out of memory");
}

/* The domain of an envelope address ("local@domain"; the last '@'). */
static void sender_domain(const char *sender, char *out)
{
    const char *at = sender != NULL ? strrchr(sender, '@') : NULL;

    out[0] = '\0';
    if (at != NULL && dkim_domain_ok(at + 1))
        memcpy(out, at + 1, strlen(at + 1) + 1);
}

struct dkim_sign_job *dkim_sign_start(struct dkim_signer *s, const struct filter_txn *txn,
                                      dkim_sign_cb *cb, void *ctx)
{
    struct dkim_sign_job *j;

    if (txn->content_fd < 0 || (j = calloc(1, sizeof(*j))) == NULL)
        return NULL;
    j->s = s;
    j->off = txn->content_off;
    j->len = txn->content_len;
    j->cb = cb;
    j->ctx = ctx;
    snprintf(j->id, sizeof(j->id), "%s", txn->queue_id != NULL ? txn->queue_id : "-");
    sender_domain(txn->sender, j->sender_domain);
    if (txn->added_headers != NULL && txn->added_headers[0] != '\0' &&
        (j->added_text = strdup(txn->added_headers)) == NULL) {
        free(j);
        return NULL;
    }
    if ((j->fd = dup(txn->content_fd)) < 0) {
        free(j->added_text);
        free(j);
        return NULL;
    }
    if (!submit(j, job_read, job_read_done)) {
        job_free(j);
        return NULL;
    }
    return j;
}

void dkim_sign_cancel(struct dkim_sign_job *j)
{
    if (j == NULL)
        return;
    j->cancelled = true;
    if (!j->in_pool)
        job_free(j);
}

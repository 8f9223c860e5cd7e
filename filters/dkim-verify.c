/*
 * dkim-verify — see dkim-verify.h. A check goes: job 1 on a pool thread
 * (header read, dkim_header each field, dkim_eoh, signature list) → on the
 * loop the header callback and one TXT query per distinct key → job 2 on a
 * pool thread (dkim_body, dkim_eom with the answers, one result per
 * signature) → the end callback on the loop. The libopendkim handle is used
 * by one thread at a time; the pool's queue orders the hand-overs.
 */
#include "config.h"
#include "filters/dkim-verify.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <opendkim/dkim.h>

#include "lib/dns.h"
#include "lib/log.h"
#include "lib/workpool.h"

#define BODY_CHUNK (64 * 1024)
#define KEY_RECORD_MAX 4096 /* octets of a key record kept from DNS */

struct dkim_verifier {
    struct event_base *base;
    struct dns *dns;
    struct workpool *pool;
    DKIM_LIB *lib;
    size_t max_signatures;
    size_t max_header;
};

struct dkim_check;

struct dkim_key {
    struct dkim_check *c;
    char name[DNS_NAME_MAX + 1]; /* "<s>._domainkey.<d>" */
    struct dns_query *q;         /* while asked */
    enum dns_status st;
    char *txt; /* the first record when st is DNS_OK */
};

struct dkim_check {
    struct dkim_verifier *v;
    int fd;
    uint64_t off, len;
    char id[64];
    dkim_header_cb *hcb;
    dkim_check_cb *cb;
    void *ctx;
    bool in_pool, in_callback, cancelled;
    /* job 1 */
    int status; /* -1: why */
    const char *why;
    struct dkim_message msg;
    DKIM *dkim;
    DKIM_STAT eoh;
    DKIM_SIGINFO **sigs;
    int nsigs;
    size_t used;  /* signatures verified: min(nsigs, max_signatures) */
    int *sig_key; /* per used signature: index into keys, -1 = none */
    struct dkim_key *keys;
    size_t key_count, outstanding;
    /* job 2 */
    struct dkim_sig_result *results;
};

const char *dkim_outcome_name(enum dkim_outcome o)
{
    switch (o) {
    case DKIM_OUTCOME_PASS:
        return "pass";
    case DKIM_OUTCOME_FAIL:
        return "fail";
    case DKIM_OUTCOME_PERMERROR:
        return "permerror";
    case DKIM_OUTCOME_TEMPERROR:
        return "temperror";
    }
    return "permerror";
}

/* ---- the key lookup libopendkim calls (on a pool thread) ---- */

static int sig_index(const struct dkim_check *c, const DKIM_SIGINFO *sig)
{
    for (size_t i = 0; i < c->used; i++) {
        if (c->sigs[i] == sig)
            return (int)i;
    }
    return -1;
}

static DKIM_CBSTAT key_lookup(DKIM *dkim, DKIM_SIGINFO *sig, u_char *buf, size_t buflen)
{
    struct dkim_check *c = dkim_get_user_context(dkim);
    int i = c != NULL ? sig_index(c, sig) : -1;
    const struct dkim_key *k;

    if (i < 0 || c->sig_key[i] < 0)
        return DKIM_CBSTAT_NOTFOUND;
    k = &c->keys[c->sig_key[i]];
    switch (k->st) {
    case DNS_OK:
        if (k->txt == NULL)
            return DKIM_CBSTAT_NOTFOUND;
        if (strlen(k->txt) >= buflen)
            return DKIM_CBSTAT_ERROR;
        memcpy(buf, k->txt, strlen(k->txt) + 1);
        return DKIM_CBSTAT_CONTINUE;
    case DNS_NXDOMAIN:
    case DNS_NODATA:
        return DKIM_CBSTAT_NOTFOUND;
    default:
        return DKIM_CBSTAT_TRYAGAIN;
    }
}

/* libopendkim's own resolver is never used: every key comes from key_lookup. */
static int refuse_query(void *srv, int type, unsigned char *query, unsigned char *buf,
                        size_t buflen, void **qh)
{
    (void)srv, (void)type, (void)query, (void)buf, (void)buflen, (void)qh;
    return DKIM_DNS_ERROR;
}

/* ---- the verifier ---- */

int dkim_verifier_new(struct event_base *base, struct dns *dns, struct workpool *pool,
                      const struct dkim_verify_config *cfg, struct dkim_verifier **v_r, char *error,
                      size_t errsize)
{
    struct dkim_verifier *v = calloc(1, sizeof(*v));
    unsigned int flags = DKIM_LIBFLAGS_DELAYSIGPROC | DKIM_LIBFLAGS_BADSIGHANDLES;
    unsigned int bits = cfg->min_key_bits;

    *v_r = NULL;
    if (v == NULL || (v->lib = dkim_init(NULL, NULL)) == NULL) {
        snprintf(error, errsize, "dkim: cannot initialize libopendkim");
        free(v);
        return -1;
    }
    v->base = base;
    v->dns = dns;
    v->pool = pool;
    v->max_signatures = cfg->max_signatures;
    v->max_header = cfg->max_header;
    dkim_dns_set_query_start(v->lib, refuse_query);
    if (dkim_set_key_lookup(v->lib, key_lookup) != DKIM_STAT_OK ||
        dkim_options(v->lib, DKIM_OP_SETOPT, DKIM_OPTS_FLAGS, &flags, sizeof(flags)) !=
            DKIM_STAT_OK ||
        dkim_options(v->lib, DKIM_OP_SETOPT, DKIM_OPTS_MINKEYBITS, &bits, sizeof(bits)) !=
            DKIM_STAT_OK) {
        snprintf(error, errsize, "dkim: cannot set up libopendkim");
        dkim_verifier_free(&v);
        return -1;
    }
    *v_r = v;
    return 0;
}

void dkim_verifier_free(struct dkim_verifier **vp)
{
    struct dkim_verifier *v = *vp;

    if (v == NULL)
        return;
    *vp = NULL;
    dkim_close(v->lib);
    free(v);
}

/* ---- a check's life ---- */

static void cancel_queries(struct dkim_check *c)
{
    for (size_t i = 0; i < c->key_count; i++) {
        if (c->keys[i].q != NULL) {
            dns_query_cancel(c->keys[i].q);
            c->keys[i].q = NULL;
        }
    }
    c->outstanding = 0;
}

static void check_free(struct dkim_check *c)
{
    cancel_queries(c);
    if (c->dkim != NULL)
        dkim_free(c->dkim);
    for (size_t i = 0; i < c->key_count; i++)
        free(c->keys[i].txt);
    free(c->keys);
    free(c->sig_key);
    free(c->results);
    dkim_message_free(&c->msg);
    if (c->fd >= 0)
        close(c->fd);
    free(c);
}

/* Calls the end callback and frees the check. */
static void check_end(struct dkim_check *c, int status, size_t n, const char *why)
{
    c->in_callback = true;
    c->cb(c->ctx, status, c->results, n, why);
    check_free(c);
}

static bool submit(struct dkim_check *c, workpool_fn *work, workpool_done_fn *done)
{
    if (workpool_submit(c->v->pool, work, done, c) < 0)
        return false;
    c->in_pool = true;
    return true;
}

/* ---- job 1: the header ---- */

static void feed_header(struct dkim_check *c)
{
    DKIM_STAT st;

    c->dkim = dkim_verify(c->v->lib, (const unsigned char *)c->id, NULL, &st);
    if (c->dkim == NULL) {
        c->status = -1;
        c->why = "cannot make a libopendkim handle";
        return;
    }
    dkim_set_user_context(c->dkim, c);
    for (size_t i = 0; i < c->msg.count; i++) {
        const struct dkim_field *f = &c->msg.fields[i];
        if (f->name_len > 0)
            (void)dkim_header(c->dkim, (unsigned char *)f->text, f->len);
    }
    c->eoh = dkim_eoh(c->dkim);
    if (c->eoh == DKIM_STAT_OK && dkim_getsiglist(c->dkim, &c->sigs, &c->nsigs) != DKIM_STAT_OK)
        c->nsigs = 0;
}

static void job_header(void *arg)
{
    struct dkim_check *c = arg;

    if (dkim_message_read(c->fd, c->off, c->len, c->v->max_header, &c->msg, &c->why) < 0) {
        c->status = -1;
        return;
    }
    feed_header(c);
}

static void job_body(void *arg);
static void job_body_done(void *arg, bool cancelled);

static void start_body(struct dkim_check *c)
{
    if (!submit(c, job_body, job_body_done))
        check_end(c, -1, 0, "out of memory");
}

static void on_key(void *ctx, enum dns_status st, const char *const *txt, size_t n)
{
    struct dkim_key *k = ctx;
    struct dkim_check *c = k->c;

    k->q = NULL;
    k->st = st;
    if (st == DNS_OK) {
        /* several records: the first (RFC 6376 §3.6.2.2 leaves it open) */
        if (n == 0 || strlen(txt[0]) > KEY_RECORD_MAX)
            k->st = DNS_NODATA;
        else if ((k->txt = strdup(txt[0])) == NULL)
            k->st = DNS_TEMPFAIL;
    }
    if (--c->outstanding == 0)
        start_body(c);
}

/* The key entry for "<s>._domainkey.<d>", asked once per check; -1 when d=
 * or s= cannot be asked about. */
static int key_for(struct dkim_check *c, const char *d, const char *s)
{
    char name[DNS_NAME_MAX + 1];
    struct dkim_key *k;
    int n;

    if (d == NULL || s == NULL || !dkim_domain_ok(d) || !dkim_domain_ok(s))
        return -1;
    n = snprintf(name, sizeof(name), "%s._domainkey.%s", s, d);
    if (n < 0 || (size_t)n > DKIM_DOMAIN_MAX)
        return -1;
    for (size_t i = 0; i < c->key_count; i++) {
        if (strcasecmp(c->keys[i].name, name) == 0)
            return (int)i;
    }
    k = &c->keys[c->key_count];
    *k = (struct dkim_key){.c = c, .st = DNS_TEMPFAIL};
    memcpy(k->name, name, (size_t)n + 1);
    c->outstanding++;
    k->q = dns_query_txt(c->v->dns, name, on_key, k);
    if (k->q == NULL)
        c->outstanding--; /* stays DNS_TEMPFAIL */
    return (int)c->key_count++;
}

/* Asks for the keys of the signatures to verify and ignores the others. */
static int ask_keys(struct dkim_check *c)
{
    c->used = (size_t)c->nsigs < c->v->max_signatures ? (size_t)c->nsigs : c->v->max_signatures;
    for (size_t i = c->used; i < (size_t)c->nsigs; i++)
        dkim_sig_ignore(c->sigs[i]);
    if ((size_t)c->nsigs > c->used)
        log_info("%s: dkim: %d signatures, the first %zu verified", c->id, c->nsigs, c->used);
    c->sig_key = calloc(c->used + 1, sizeof(*c->sig_key));
    c->keys = calloc(c->used + 1, sizeof(*c->keys));
    if (c->sig_key == NULL || c->keys == NULL)
        return -1;
    c->outstanding = 1; /* no body job before every query has started */
    for (size_t i = 0; i < c->used; i++) {
        DKIM_SIGINFO *sig = c->sigs[i];
        int err = dkim_sig_geterror(sig);
        c->sig_key[i] = err != DKIM_SIGERROR_UNKNOWN && err != DKIM_SIGERROR_OK
                            ? -1
                            : key_for(c, (const char *)dkim_sig_getdomain(sig),
                                      (const char *)dkim_sig_getselector(sig));
    }
    return 0;
}

/* The message could not be taken apart: one permerror for all its
 * signatures, none when it has no DKIM-Signature field. */
static void end_unparsed(struct dkim_check *c)
{
    struct dkim_sig_result *r;

    if (dkim_message_count(&c->msg, "DKIM-Signature") == 0) {
        check_end(c, 0, 0, NULL);
        return;
    }
    if ((r = c->results = calloc(1, sizeof(*r))) == NULL) {
        check_end(c, -1, 0, "out of memory");
        return;
    }
    r->outcome = DKIM_OUTCOME_PERMERROR;
    snprintf(r->why, sizeof(r->why), "message: %s",
             dkim_getresultstr(c->eoh) != NULL ? dkim_getresultstr(c->eoh) : "unusable");
    check_end(c, 0, 1, NULL);
}

static void job_header_done(void *arg, bool cancelled)
{
    struct dkim_check *c = arg;

    c->in_pool = false;
    if (cancelled || c->cancelled) {
        check_free(c);
        return;
    }
    if (c->status < 0) {
        check_end(c, -1, 0, c->why);
        return;
    }
    if (c->hcb != NULL) {
        c->in_callback = true;
        c->hcb(c->ctx, &c->msg);
        c->in_callback = false;
        if (c->cancelled) {
            check_free(c);
            return;
        }
    }
    if (c->eoh == DKIM_STAT_NOSIG || (c->eoh == DKIM_STAT_OK && c->nsigs == 0)) {
        check_end(c, 0, 0, NULL);
        return;
    }
    if (c->eoh != DKIM_STAT_OK) {
        end_unparsed(c);
        return;
    }
    if (ask_keys(c) < 0) {
        check_end(c, -1, 0, "out of memory");
        return;
    }
    if (--c->outstanding == 0)
        start_body(c);
}

/* ---- job 2: the body and the results ---- */

/* Copies a tag value that came from the message if every octet is in the
 * allowed set, else "". */
static void copy_checked(char *out, size_t size, const unsigned char *in, bool host)
{
    out[0] = '\0';
    if (in == NULL || strlen((const char *)in) >= size)
        return;
    if (host && !dkim_domain_ok((const char *)in))
        return;
    for (size_t i = 0; in[i] != '\0'; i++)
        out[i] = (char)(host ? tolower(in[i]) : in[i]);
    out[strlen((const char *)in)] = '\0';
}

/* The first 8 base64 characters of b= (folding white space skipped). */
static void copy_b(char *out, size_t size, const unsigned char *b)
{
    size_t o = 0;

    for (; b != NULL && *b != '\0' && o + 1 < size; b++) {
        if (isalnum(*b) || *b == '+' || *b == '/')
            out[o++] = (char)*b;
        else if (!isspace(*b))
            break;
    }
    out[o] = '\0';
}

static bool dns_temporary(enum dns_status st)
{
    return st != DNS_OK && st != DNS_NXDOMAIN && st != DNS_NODATA;
}

static void classify(const struct dkim_check *c, size_t i, struct dkim_sig_result *r)
{
    DKIM_SIGINFO *sig = c->sigs[i];
    unsigned int flags = dkim_sig_getflags(sig);
    int bh = dkim_sig_getbh(sig), err = dkim_sig_geterror(sig), key = c->sig_key[i];
    const char *es;

    copy_checked(r->domain, sizeof(r->domain), dkim_sig_getdomain(sig), true);
    copy_checked(r->selector, sizeof(r->selector), dkim_sig_getselector(sig), true);
    copy_b(r->b, sizeof(r->b), dkim_sig_gettagvalue(sig, 0, (unsigned char *)"b"));
    if (key >= 0 && dns_temporary(c->keys[key].st)) {
        r->outcome = DKIM_OUTCOME_TEMPERROR;
        snprintf(r->why, sizeof(r->why), "key lookup: %s", dns_status_name(c->keys[key].st));
    } else if ((flags & DKIM_SIGFLAG_PASSED) != 0 && bh == DKIM_SIGBH_MATCH) {
        r->outcome = DKIM_OUTCOME_PASS;
    } else if (bh == DKIM_SIGBH_MISMATCH) {
        r->outcome = DKIM_OUTCOME_FAIL;
        snprintf(r->why, sizeof(r->why), "body hash mismatch");
    } else if (err == DKIM_SIGERROR_BADSIG) {
        r->outcome = DKIM_OUTCOME_FAIL;
        snprintf(r->why, sizeof(r->why), "signature mismatch");
    } else {
        r->outcome = DKIM_OUTCOME_PERMERROR;
        es = err > 0 ? dkim_sig_geterrorstr(err) : NULL;
        snprintf(r->why, sizeof(r->why), "%s",
                 es != NULL ? es
                 : key < 0  ? "bad d= or s="
                            : "not verified");
    }
}

static int feed_body(struct dkim_check *c)
{
    unsigned char *buf = malloc(BODY_CHUNK);
    uint64_t at = c->msg.body_off;

    if (buf == NULL)
        return -1;
    while (at < c->len) {
        size_t want = c->len - at < BODY_CHUNK ? (size_t)(c->len - at) : BODY_CHUNK;
        ssize_t got = pread(c->fd, buf, want, (off_t)(c->off + at));
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            free(buf);
            return -1;
        }
        (void)dkim_body(c->dkim, buf, (size_t)got);
        at += (uint64_t)got;
    }
    free(buf);
    return 0;
}

static void job_body(void *arg)
{
    struct dkim_check *c = arg;

    if (feed_body(c) < 0) {
        c->status = -1;
        c->why = "cannot read the message";
        return;
    }
    (void)dkim_eom(c->dkim, NULL); /* the outcome is per signature, below */
    if ((c->results = calloc(c->used + 1, sizeof(*c->results))) == NULL) {
        c->status = -1;
        c->why = "out of memory";
        return;
    }
    for (size_t i = 0; i < c->used; i++)
        classify(c, i, &c->results[i]);
}

static void job_body_done(void *arg, bool cancelled)
{
    struct dkim_check *c = arg;

    c->in_pool = false;
    if (cancelled || c->cancelled) {
        check_free(c);
        return;
    }
    if (c->status < 0)
        check_end(c, -1, 0, c->why);
    else
        check_end(c, 0, c->used, NULL);
}

/* ---- the calls ---- */

struct dkim_check *dkim_check_start(struct dkim_verifier *v, const struct filter_txn *txn,
                                    dkim_header_cb *hcb, dkim_check_cb *cb, void *ctx)
{
    struct dkim_check *c;

    if (txn->content_fd < 0 || (c = calloc(1, sizeof(*c))) == NULL)
        return NULL;
    c->v = v;
    c->off = txn->content_off;
    c->len = txn->content_len;
    c->hcb = hcb;
    c->cb = cb;
    c->ctx = ctx;
    snprintf(c->id, sizeof(c->id), "%s", txn->queue_id != NULL ? txn->queue_id : "-");
    if ((c->fd = dup(txn->content_fd)) < 0) {
        free(c);
        return NULL;
    }
    if (!submit(c, job_header, job_header_done)) {
        check_free(c);
        return NULL;
    }
    return c;
}

void dkim_check_cancel(struct dkim_check *c)
{
    if (c == NULL)
        return;
    c->cancelled = true;
    cancel_queries(c);
    if (!c->in_pool && !c->in_callback)
        check_free(c);
}

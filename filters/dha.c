/*
 * dha — see dha.h. A check is a small state machine on the loop:
 *   CONNECT  get the address's and the network's block keys → done;
 *   RCPT     classify (directory) → [verify: cache get → call-ahead]
 *            → count (incr both counters for an unknown recipient, get
 *              them otherwise) → decide → [block: set the block keys]
 *            → findings, and done at once or when the delay timer fires.
 * Every RCPT of a judged client goes through the store, so a known and an
 * unknown recipient cost the same requests; the delay is measured from the
 * start of the check so that a call-ahead does not show through it.
 *
 * Keys: dha:unknown:ip:<addr>, dha:unknown:net:<net>/<prefix> (counters,
 * TTL window from the first unknown recipient), dha:block:ip:<addr>,
 * dha:block:net:<net>/<prefix> (TTL block_time), dha:verify:<rcpt> ("1" or
 * "0", TTL verify_cache_ttl or verify_negative_ttl).
 */
#include "config.h"
#include "filters/dha.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "lib/kv.h"
#include "lib/log.h"

#define DHA_REPLY_TEXT "Too many unknown recipients"

enum dha_level { DHA_LEVEL_NONE, DHA_LEVEL_DELAY, DHA_LEVEL_DISCONNECT, DHA_LEVEL_BLOCK };

struct dha {
    struct event_base *base;
    struct kv *kv;
    const struct filter_verifier *verifier; /* NULL when none */
    struct dha_dir *dir;                    /* a reference */
    struct dha_params p;
};

struct dha_check;

/* One of the (at most two) store requests in flight: [0] address, [1] network. */
struct dha_slot {
    struct dha_check *c;
    int index;
    struct kv_req *req;
};

struct dha_check {
    struct dha *d;
    struct filter_call *call;
    struct dha_slot slot[2];
    int outstanding;
    enum kv_status failed; /* KV_OK, or the first failure of the pair */
    bool found[2];         /* CONNECT: a block key is there */
    int64_t count[2];      /* RCPT: earlier unknown recipients */
    enum dha_lookup cls;
    void *verify; /* call-ahead handle while waiting */
    struct event *timer;
    enum dha_level level;
    uint64_t start_ms;
    char addr[64];
    char id[2][72];                  /* "ip:<addr>", "net:<net>/<prefix>" */
    char rcpt[DHA_DIR_KEY_MAX + 16]; /* dha:verify:<rcpt>, "" when not cacheable */
};

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void noop_cb(void *ctx, const struct kv_result *res)
{
    (void)ctx;
    (void)res;
}

/* ---- the check's life ---- */

static struct dha_check *check_new(struct dha *d, struct filter_call *call)
{
    const struct filter_txn *txn = filter_call_txn(call);
    struct dha_check *c = calloc(1, sizeof(*c));
    struct netaddr net;
    char text[64];
    unsigned prefix;

    if (c == NULL)
        return NULL;
    c->d = d;
    c->call = call;
    c->start_ms = now_ms();
    netaddr_to_text(&txn->client, c->addr, sizeof(c->addr));
    net = netaddr_network(&txn->client, (unsigned)d->p.ipv4_prefix, (unsigned)d->p.ipv6_prefix);
    netaddr_to_text(&net, text, sizeof(text));
    prefix = (unsigned)(netaddr_is_v4(&txn->client) ? d->p.ipv4_prefix : d->p.ipv6_prefix);
    snprintf(c->id[0], sizeof(c->id[0]), "ip:%s", c->addr);
    snprintf(c->id[1], sizeof(c->id[1]), "net:%s/%u", text, prefix);
    for (int i = 0; i < 2; i++)
        c->slot[i] = (struct dha_slot){.c = c, .index = i};
    return c;
}

static void check_free(struct dha_check *c)
{
    for (int i = 0; i < 2; i++) {
        if (c->slot[i].req != NULL)
            kv_cancel(c->slot[i].req);
    }
    if (c->verify != NULL)
        c->d->verifier->cancel(c->d->verifier->vctx, c->verify);
    if (c->timer != NULL)
        event_free(c->timer);
    free(c);
}

/* Ends a pending check (from a callback, never inside the stage callback). */
static void check_done(struct dha_check *c, int result)
{
    struct filter_call *call = c->call;

    check_free(c);
    filter_call_done(call, result);
}

/* The store failed: the filter's on_error applies. */
static void check_fail(struct dha_check *c, const char *what, enum kv_status st)
{
    log_warning("dha: state store %s for [%s]: %s", what, c->addr, kv_status_name(st));
    check_done(c, -1);
}

/* "dha:<kind>:<id>" for slot i. */
static const char *slot_key(const struct dha_check *c, int i, const char *kind, char *buf,
                            size_t size)
{
    snprintf(buf, size, "dha:%s:%s", kind, c->id[i]);
    return buf;
}

/* A slot's answer is in; true when it was the last of the pair. */
static bool slot_answered(struct dha_slot *slot, enum kv_status st)
{
    struct dha_check *c = slot->c;

    slot->req = NULL;
    if (st != KV_OK && st != KV_NOTFOUND && c->failed == KV_OK)
        c->failed = st;
    return --c->outstanding == 0;
}

/* Starts requests for both slots (start(c, i) returns the request or NULL);
 * -1 when one could not start (the other is cancelled). */
static int start_pair(struct dha_check *c, struct kv_req *(*start)(struct dha_check *, int))
{
    c->failed = KV_OK;
    for (int i = 0; i < 2; i++) {
        if ((c->slot[i].req = start(c, i)) == NULL) {
            if (i == 1) {
                kv_cancel(c->slot[0].req);
                c->slot[0].req = NULL;
            }
            return -1;
        }
    }
    c->outstanding = 2;
    return 0;
}

/* A decimal counter as stored by kv_incr. */
static int64_t parse_count(const struct kv_result *res)
{
    char buf[24];
    size_t n = res->value_len < sizeof(buf) - 1 ? res->value_len : sizeof(buf) - 1;

    memcpy(buf, res->value, n);
    buf[n] = '\0';
    return strtoll(buf, NULL, 10);
}

/* ---- CONNECT: is the client blocked? ---- */

static void on_block_get(void *ctx, const struct kv_result *res);

static struct kv_req *start_block_get(struct dha_check *c, int i)
{
    char key[128];

    return kv_get(c->d->kv, slot_key(c, i, "block", key, sizeof(key)), on_block_get, &c->slot[i]);
}

static void on_block_get(void *ctx, const struct kv_result *res)
{
    struct dha_slot *slot = ctx;
    struct dha_check *c = slot->c;

    c->found[slot->index] = res->status == KV_OK;
    if (!slot_answered(slot, res->status))
        return;
    if (c->failed != KV_OK) {
        check_fail(c, "lookup", c->failed);
        return;
    }
    if (c->found[0] || c->found[1]) {
        log_info("dha: refusing [%s]: blocked (%s)", c->addr, c->found[0] ? c->id[0] : c->id[1]);
        filter_call_symbol(c->call, "DHA_BLOCKED", 0, c->found[0] ? "address" : "network");
        filter_call_action(c->call, FILTER_ACTION_DISCONNECT, 421, "4.7.0", DHA_REPLY_TEXT);
    }
    check_done(c, 1);
}

static int dha_connect(void *instance, struct filter_call *call)
{
    struct dha *d = instance;
    struct dha_check *c;

    if (d->p.skip_outbound && filter_call_txn(call)->direction == FILTER_OUTBOUND)
        return 1;
    if ((c = check_new(d, call)) == NULL)
        return -1;
    if (start_pair(c, start_block_get) < 0) {
        check_free(c);
        return -1;
    }
    filter_call_set_data(call, c);
    return 0;
}

/* ---- RCPT: the decision and its reply ---- */

static bool reached(long long threshold, int64_t count)
{
    return threshold > 0 && count >= threshold;
}

static enum dha_level decide(const struct dha_params *p, const int64_t count[2])
{
    if (reached(p->block_after, count[0]) || reached(p->net_block_after, count[1]))
        return DHA_LEVEL_BLOCK;
    if (reached(p->disconnect_after, count[0]) || reached(p->net_disconnect_after, count[1]))
        return DHA_LEVEL_DISCONNECT;
    if (reached(p->delay_after, count[0]) || reached(p->net_delay_after, count[1]))
        return DHA_LEVEL_DELAY;
    return DHA_LEVEL_NONE;
}

/* Throttled means every RCPT of the client waits, whatever comes after. */
static bool throttled(const struct dha_params *p, const int64_t count[2])
{
    return reached(p->delay_after, count[0]) || reached(p->net_delay_after, count[1]);
}

static void add_findings(struct dha_check *c)
{
    struct filter_call *call = c->call;
    char text[32];

    if (c->cls == DHA_UNKNOWN) {
        snprintf(text, sizeof(text), "%" PRId64, c->count[0] + 1);
        filter_call_symbol(call, "DHA_UNKNOWN_RCPT", 0, text);
    }
    switch (c->level) {
    case DHA_LEVEL_BLOCK:
        filter_call_symbol(call, "DHA_BLOCKED", 0, NULL);
        filter_call_action(call, FILTER_ACTION_DISCONNECT, 421, "4.7.0", DHA_REPLY_TEXT);
        break;
    case DHA_LEVEL_DISCONNECT:
        filter_call_symbol(call, "DHA_DISCONNECT", 0, NULL);
        filter_call_action(call, FILTER_ACTION_DISCONNECT, 421, "4.7.0", DHA_REPLY_TEXT);
        break;
    case DHA_LEVEL_DELAY:
        filter_call_symbol(call, "DHA_THROTTLED", 0, NULL);
        filter_call_action(call, FILTER_ACTION_TEMPFAIL, 450, "4.7.1", "Try again later");
        break;
    case DHA_LEVEL_NONE:
        if (c->cls == DHA_UNKNOWN && c->d->p.reject_unknown)
            filter_call_action(call, FILTER_ACTION_REJECT, 550, "5.1.1", "User unknown");
        break;
    }
}

static void on_delay(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    check_done(arg, 1);
}

/* Findings now; the reply at start + delay when the client is throttled. */
static void finish(struct dha_check *c)
{
    uint64_t elapsed = now_ms() - c->start_ms, delay = (uint64_t)c->d->p.delay;
    struct timeval tv;

    add_findings(c);
    if (!throttled(&c->d->p, c->count) || elapsed >= delay) {
        check_done(c, 1);
        return;
    }
    delay -= elapsed;
    tv = (struct timeval){.tv_sec = (time_t)(delay / 1000),
                          .tv_usec = (suseconds_t)(delay % 1000) * 1000};
    if ((c->timer = evtimer_new(c->d->base, on_delay, c)) == NULL ||
        evtimer_add(c->timer, &tv) < 0) {
        check_done(c, 1); /* out of memory: answer without the delay */
        return;
    }
}

static void on_block_set(void *ctx, const struct kv_result *res)
{
    struct dha_slot *slot = ctx;
    struct dha_check *c = slot->c;

    slot->req = NULL;
    if (res->status != KV_OK)
        log_warning("dha: cannot store the block of [%s]: %s", c->addr,
                    kv_status_name(res->status));
    if (--c->outstanding == 0)
        finish(c);
}

/* Sets the block key of the address and/or the network, whichever is due;
 * the reply waits for the store so that a new connection finds the block. */
static void start_block_sets(struct dha_check *c)
{
    const struct dha_params *p = &c->d->p;
    const bool due[2] = {reached(p->block_after, c->count[0]),
                         reached(p->net_block_after, c->count[1])};
    char key[128];

    c->outstanding = 0;
    for (int i = 0; i < 2; i++) {
        if (!due[i])
            continue;
        c->slot[i].req = kv_set(c->d->kv, slot_key(c, i, "block", key, sizeof(key)), "1", 1,
                                (uint64_t)p->block_time, on_block_set, &c->slot[i]);
        if (c->slot[i].req != NULL)
            c->outstanding++;
        else
            log_warning("dha: cannot store the block of [%s]", c->addr);
    }
    if (c->outstanding == 0)
        finish(c); /* still disconnect; the block is lost */
}

static void decided(struct dha_check *c)
{
    c->level = decide(&c->d->p, c->count);
    if (c->level == DHA_LEVEL_DISCONNECT)
        log_info("dha: disconnecting [%s] after %" PRId64 " unknown recipients (network %" PRId64
                 ")",
                 c->addr, c->count[0], c->count[1]);
    if (c->level != DHA_LEVEL_BLOCK) {
        finish(c);
        return;
    }
    log_info("dha: blocking [%s] for %llds after %" PRId64 " unknown recipients (network %" PRId64
             ")",
             c->addr, c->d->p.block_time / 1000, c->count[0], c->count[1]);
    start_block_sets(c);
}

/* ---- RCPT: counting ---- */

static void on_count(void *ctx, const struct kv_result *res)
{
    struct dha_slot *slot = ctx;
    struct dha_check *c = slot->c;
    int64_t n = 0;

    if (res->status == KV_OK)
        n = c->cls == DHA_UNKNOWN ? res->number - 1 : parse_count(res);
    c->count[slot->index] = n < 0 ? 0 : n;
    if (!slot_answered(slot, res->status))
        return;
    if (c->failed != KV_OK)
        check_fail(c, "count", c->failed);
    else
        decided(c);
}

static struct kv_req *start_count(struct dha_check *c, int i)
{
    char key[128];

    slot_key(c, i, "unknown", key, sizeof(key));
    if (c->cls == DHA_UNKNOWN)
        return kv_incr(c->d->kv, key, 1, (uint64_t)c->d->p.window, on_count, &c->slot[i]);
    return kv_get(c->d->kv, key, on_count, &c->slot[i]);
}

/* From a callback: a failure to start ends the check. */
static void count_or_fail(struct dha_check *c)
{
    if (start_pair(c, start_count) < 0)
        check_fail(c, "count", KV_ERROR);
}

/* ---- RCPT: call-ahead with its cache ---- */

static void on_verified(void *ctx, int status, const char *reply)
{
    struct dha_check *c = ctx;
    const struct dha_params *p = &c->d->p;

    c->verify = NULL;
    if (status == 1 || status == 0) {
        c->cls = status == 1 ? DHA_KNOWN : DHA_UNKNOWN;
        if (c->rcpt[0] != '\0')
            kv_set(c->d->kv, c->rcpt, status == 1 ? "1" : "0", 1,
                   (uint64_t)(status == 1 ? p->verify_cache_ttl : p->verify_negative_ttl), noop_cb,
                   NULL);
    } else {
        c->cls = DHA_KNOWN; /* unknown answer: not counted, not cached */
        log_info("dha: call-ahead for [%s]: no answer (%s); not counted", c->addr,
                 reply != NULL ? reply : "-");
    }
    count_or_fail(c);
}

static void on_cache_get(void *ctx, const struct kv_result *res)
{
    struct dha_slot *slot = ctx;
    struct dha_check *c = slot->c;
    const struct filter_verifier *v = c->d->verifier;
    const char *rcpt = filter_call_txn(c->call)->rcpt;

    slot->req = NULL;
    c->outstanding = 0;
    if (res->status == KV_OK) {
        c->cls = res->value_len == 1 && *(const char *)res->value == '1' ? DHA_KNOWN : DHA_UNKNOWN;
        count_or_fail(c);
        return;
    }
    if (res->status != KV_NOTFOUND) {
        check_fail(c, "cache lookup", res->status);
        return;
    }
    if ((c->verify = v->verify(v->vctx, rcpt, on_verified, c)) == NULL)
        on_verified(c, -1, "cannot start");
}

static int dha_rcpt(void *instance, struct filter_call *call)
{
    struct dha *d = instance;
    const struct filter_txn *txn = filter_call_txn(call);
    struct dha_check *c;
    char key[DHA_DIR_KEY_MAX];
    enum dha_lookup cls;

    if ((d->p.skip_outbound && txn->direction == FILTER_OUTBOUND) || txn->rcpt == NULL)
        return 1;
    cls = dha_dir_lookup(d->dir, txn->rcpt, key, sizeof(key));
    if ((c = check_new(d, call)) == NULL)
        return -1;
    c->cls = cls;
    if (cls == DHA_VERIFY) {
        snprintf(c->rcpt, sizeof(c->rcpt), "dha:verify:%s", key);
        c->slot[0].req = kv_get(d->kv, c->rcpt, on_cache_get, &c->slot[0]);
        c->outstanding = 1;
        if (c->slot[0].req == NULL) {
            check_free(c);
            return -1;
        }
    } else if (start_pair(c, start_count) < 0) {
        check_free(c);
        return -1;
    }
    filter_call_set_data(call, c);
    return 0;
}

static void dha_cancel(void *instance, struct filter_call *call)
{
    struct dha_check *c = filter_call_data(call);

    (void)instance;
    if (c != NULL)
        check_free(c);
}

static const struct filter_ops dha_ops = {
    .name = "dha",
    .stage = {[FILTER_CONNECT] = dha_connect, [FILTER_RCPT] = dha_rcpt},
    .cancel = dha_cancel,
};

/* ---- the module: config and instances ---- */

#define S(field) offsetof(struct dha_settings, field)
#define P(field) offsetof(struct dha_settings, p.field)
#define COUNT_RANGE -1, 1000000
static const struct cfg_key dha_keys[] = {
    FILTER_COMMON_KEYS("skip", "30s"),
    {"recipients", CFG_STRLIST, S(recipients), "", 0, 0, NULL,
     "known recipients: \"user@domain\", or \"@domain\" for a catch-all domain"},
    {"recipients_file", CFG_STRING, S(recipients_file), NULL, 0, 0, NULL,
     "file of known recipients, one entry per line, # comments (read at config time)"},
    {"domains", CFG_STRLIST, S(domains), "", 0, 0, NULL,
     "domains whose recipients are judged (empty: every domain of the directory)"},
    {"ignore_case", CFG_BOOL, S(ignore_case), "yes", 0, 0, NULL,
     "compare local parts without case (domains always are)"},
    {"verify_domains", CFG_STRLIST, S(verify_domains), "", 0, 0, NULL,
     "domains whose unlisted recipients are verified by call-ahead to the downstream"},
    {"verify_cache_ttl", CFG_DURATION, P(verify_cache_ttl), "1h", 1000, 30LL * 86400000, NULL,
     "how long a call-ahead's \"valid\" answer is cached"},
    {"verify_negative_ttl", CFG_DURATION, P(verify_negative_ttl), "10m", 1000, 30LL * 86400000,
     NULL, "how long a call-ahead's \"unknown\" answer is cached"},
    {"reject_unknown", CFG_BOOL, P(reject_unknown), "yes", 0, 0, NULL,
     "550 5.1.1 for an unknown recipient (false: only the symbol and the counting)"},
    {"skip_outbound", CFG_BOOL, P(skip_outbound), "yes", 0, 0, NULL,
     "do not judge authenticated and trusted clients"},
    {"window", CFG_DURATION, P(window), "10m", 1000, 7LL * 86400000, NULL,
     "unknown recipients are counted over this time from the first one"},
    {"ipv4_prefix", CFG_INT, P(ipv4_prefix), "24", 8, 32, NULL,
     "an IPv4 client's network for the net_* counts"},
    {"ipv6_prefix", CFG_INT, P(ipv6_prefix), "64", 16, 128, NULL,
     "an IPv6 client's network for the net_* counts"},
    {"delay_after", CFG_INT, P(delay_after), "5", 0, 1000000, NULL,
     "after this many unknown recipients every RCPT reply waits `delay` (0 = never)"},
    {"disconnect_after", CFG_INT, P(disconnect_after), "10", 0, 1000000, NULL,
     "after this many, 421 4.7.0 and disconnect (0 = never)"},
    {"block_after", CFG_INT, P(block_after), "20", 0, 1000000, NULL,
     "after this many, the client is refused at connect for block_time (0 = never)"},
    {"net_delay_after", CFG_INT, P(net_delay_after), "-1", COUNT_RANGE, NULL,
     "delay_after for the client's network (-1 = 4 x delay_after)"},
    {"net_disconnect_after", CFG_INT, P(net_disconnect_after), "-1", COUNT_RANGE, NULL,
     "disconnect_after for the client's network (-1 = 4 x disconnect_after)"},
    {"net_block_after", CFG_INT, P(net_block_after), "-1", COUNT_RANGE, NULL,
     "block_after for the client's network (-1 = 4 x block_after)"},
    {"delay", CFG_DURATION, P(delay), "5s", 0, 600000, NULL,
     "how long a throttled client waits for each RCPT reply (less than timeout)"},
    {"block_time", CFG_DURATION, P(block_time), "1h", 1000, 30LL * 86400000, NULL,
     "how long a blocked client is refused"},
    {.name = NULL},
};
#undef COUNT_RANGE
#undef P
#undef S

/* Adds a list's entries with add(); errors name the element's line. */
static void load_list(struct dha_dir *dir, const config_setting_t *g, const char *name,
                      const struct cfg_strlist *l,
                      int (*add)(struct dha_dir *, const char *, const char **),
                      struct cfg_errors *errs)
{
    const config_setting_t *s = config_setting_get_member(g, name);
    const char *why;

    for (size_t i = 0; i < l->count; i++) {
        const config_setting_t *e = NULL;
        if (s != NULL && config_setting_is_aggregate(s))
            e = config_setting_get_elem(s, (unsigned)i);
        if (add(dir, l->items[i], &why) < 0)
            cfg_error_add(errs, e != NULL ? e : s, "dha: %s: \"%s\": %s", name, l->items[i], why);
    }
}

static void load_directory(struct dha_settings *f, const config_setting_t *g,
                           struct cfg_errors *errs)
{
    char error[512];

    if ((f->dir = dha_dir_new(f->ignore_case)) == NULL) {
        cfg_error_add(errs, g, "dha: out of memory");
        return;
    }
    load_list(f->dir, g, "recipients", &f->recipients, dha_dir_add, errs);
    load_list(f->dir, g, "domains", &f->domains, dha_dir_add_domain, errs);
    load_list(f->dir, g, "verify_domains", &f->verify_domains, dha_dir_add_verify_domain, errs);
    if (f->recipients_file != NULL &&
        dha_dir_load_file(f->dir, f->recipients_file, error, sizeof(error)) < 0)
        cfg_error_add(errs, config_setting_get_member(g, "recipients_file"), "dha: %s", error);
    if (dha_dir_seal(f->dir) < 0)
        cfg_error_add(errs, g, "dha: out of memory");
}

static void dha_load(void *settings, const config_setting_t *g, struct cfg_errors *errs)
{
    struct dha_settings *f = settings;
    struct dha_params *p = &f->p;

    if (f->recipients.count == 0 && f->recipients_file == NULL && f->verify_domains.count == 0)
        cfg_error_add(errs, g, "dha: needs recipients, recipients_file or verify_domains");
    if (p->delay >= f->common.timeout)
        cfg_error_add(errs, config_setting_get_member(g, "delay"),
                      "dha: delay (%lldms) must be less than timeout (%lldms)", p->delay,
                      f->common.timeout);
    if (p->net_delay_after < 0)
        p->net_delay_after = 4 * p->delay_after;
    if (p->net_disconnect_after < 0)
        p->net_disconnect_after = 4 * p->disconnect_after;
    if (p->net_block_after < 0)
        p->net_block_after = 4 * p->block_after;
    load_directory(f, g, errs);
}

static void dha_free_settings(void *settings)
{
    struct dha_settings *f = settings;

    dha_dir_unref(&f->dir);
}

static int dha_create(const struct filter_env *env, const void *settings, void **instance,
                      char *error, size_t errsize)
{
    const struct dha_settings *f = settings;
    struct dha *d;

    *instance = NULL;
    if (f->dir == NULL || env->kv == NULL) {
        snprintf(error, errsize, "dha: %s", f->dir == NULL ? "no directory" : "no state store");
        return -1;
    }
    if (dha_dir_has_verify_domains(f->dir) && env->verifier == NULL) {
        snprintf(error, errsize,
                 "dha: verify_domains needs a recipient verifier (call-ahead), "
                 "which this program does not provide");
        return -1;
    }
    if ((d = calloc(1, sizeof(*d))) == NULL) {
        snprintf(error, errsize, "dha: out of memory");
        return -1;
    }
    d->base = env->base;
    d->kv = env->kv;
    d->verifier = env->verifier;
    d->dir = dha_dir_ref(f->dir);
    d->p = f->p;
    *instance = d;
    return 0;
}

static void dha_destroy(void *instance)
{
    struct dha *d = instance;

    if (d == NULL)
        return;
    dha_dir_unref(&d->dir);
    free(d);
}

const struct filter_module dha_module = {
    .name = "dha",
    .ops = &dha_ops,
    .keys = dha_keys,
    .settings_size = sizeof(struct dha_settings),
    .uses_kv = true,
    .load = dha_load,
    .free_settings = dha_free_settings,
    .create = dha_create,
    .destroy = dha_destroy,
};

/*
 * greylist — see greylist.h. How it keeps its state and why:
 *
 *   gl:t:<id>   the attempts of a triplet (id: greylist_triplet_id) within
 *               retry_window: a counter made by kv_incr with retry_window
 *               as its TTL, holding first_seen_ms * 1000000 + attempts.
 *   gl:p:<id>   a triplet that passed: the time (ms) it was last written;
 *               TTL entry_lifetime, written again when a message finds it
 *               older than a quarter of that, so it lives entry_lifetime
 *               (less at most a quarter) after it was last used, at a
 *               quarter of the writes.
 *   gl:c:<net>  the passes from a client network: a counter whose TTL
 *               (entry_lifetime) runs from its first pass.
 *   gl:a:<net>  an auto-allowed client network: the time it was written;
 *               TTL entry_lifetime, refreshed like gl:p.
 *
 * The first-seen time is written once, by the first attempt, and never
 * moved by a retry. kv has no set-if-absent, and a get-then-set would let
 * a concurrent first attempt (another worker, another gateway on the same
 * Redis) or a retry reset it. So every attempt does kv_incr(gl:t, 1,
 * retry_window), atomic in both back ends (a Lua script, an LMDB write
 * transaction); the one attempt that gets 1 made the record and alone adds
 * its time with kv_incr(gl:t, now_ms * 1000000). Retries only add 1, and
 * every worker decodes the same time (value / 1000000). The TTL runs from
 * the creation: retry_window after the first attempt the record is gone
 * and the next attempt starts over. An attempt between the two increments
 * finds no time yet and is early. If the second increment is lost (the
 * worker killed in between), the triplet stays early until its record
 * expires, then starts over. The factor leaves room for a million
 * attempts per window (each further million only moves the time by 1 ms)
 * and the product fits an int64 until the year 2262.
 *
 * One check per call, in phases, each a set of requests in flight at once:
 * LOOKUP reads gl:a and the gl:p of each triplet; ATTEMPT counts the
 * attempt of each triplet that is not known; RECORD writes what the
 * outcomes need (first-seen times, passes, the network's pass count,
 * refreshes); ALLOW writes gl:a when the count reached auto_allow_after. A
 * read or an attempt that fails fails the call (on_error applies); a write
 * that fails after the decision is logged and the decision stands. Every
 * request has the store's timeout; the chain's timeout cancels what is in
 * flight. Clocks: the hosts' wall clocks (keep them in NTP sync when
 * several gateways share a Redis).
 *
 * The triplet's identity and the allow lists are greylist-key.c's; the
 * config, the instances and the purge of expired entries are
 * greylist-module.c's.
 */
#include "config.h"
#include "filters/greylist-private.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/kv.h"
#include "lib/log.h"

#define GL_STAMP_SCALE 1000000LL
#define GL_KEY_MAX (8 + GREYLIST_ID_MAX)

/* ---- who is not greylisted ---- */

/* Why the whole transaction is not greylisted (a key's name), or NULL. */
static const char *skip_reason(const struct greylist *g, const struct filter_txn *txn,
                               const char *sender)
{
    if (g->skip_auth && txn->authenticated)
        return "authenticated";
    if (g->skip_trusted && txn->trusted)
        return "trusted";
    if (netaddr_list_match(&g->networks, &txn->client))
        return "allow_networks";
    if (g->skip_dnswl && filter_txn_has_symbol(txn, "DNSWL_"))
        return "dnswl";
    if (filter_txn_has_symbol(txn, "SPF_PASS") && greylist_domain_listed(&g->spf_domains, sender))
        return "spf_allow_domains";
    if (greylist_addr_listed(&g->senders, sender))
        return "allow_senders";
    return NULL;
}

/* ---- one check: the phases ---- */

enum gl_outcome {
    GL_UNKNOWN, /* not decided yet */
    GL_SKIPPED, /* allow_recipients */
    GL_NEW,
    GL_EARLY,
    GL_PASS,
    GL_KNOWN,
    GL_AUTO,
    GL_OUTCOMES
};

enum gl_phase { GL_LOOKUP, GL_ATTEMPT, GL_RECORD, GL_ALLOW, GL_DONE };

enum gl_op {
    OP_GET_AUTO,   /* gl:a */
    OP_GET_PASSED, /* gl:p */
    OP_ATTEMPT,    /* incr gl:t by 1 */
    OP_STAMP,      /* incr gl:t by the first-seen time */
    OP_SET_PASSED, /* gl:p, a pass or a refresh */
    OP_COUNT,      /* incr gl:c */
    OP_SET_AUTO,   /* gl:a, a new allow or a refresh */
};

static const char *const op_names[] = {
    [OP_GET_AUTO] = "lookup of the network", [OP_GET_PASSED] = "lookup",
    [OP_ATTEMPT] = "attempt count",          [OP_STAMP] = "first-seen write",
    [OP_SET_PASSED] = "pass write",          [OP_COUNT] = "network pass count",
    [OP_SET_AUTO] = "network allow write",
};

struct gl_check;

/* The request in flight for a triplet or for the client network. */
struct gl_slot {
    struct gl_check *c;
    struct kv_req *req;
    enum gl_op op;
};

struct gl_triplet {
    struct gl_slot slot;
    const char *rcpt; /* the txn's, valid for the stage */
    enum gl_outcome outcome;
    bool creator; /* this attempt made gl:t */
    long long ms; /* NEW, EARLY: left; PASS: waited; KNOWN: age of gl:p */
    char id[GREYLIST_ID_MAX];
};

struct gl_check {
    struct greylist *g;
    struct filter_call *call;
    enum gl_phase phase;
    size_t outstanding;
    bool failed;
    bool warned; /* one warning per check */
    long long now;
    struct gl_slot net_slot;
    char net[GREYLIST_NET_MAX];
    bool auto_allowed;
    long long auto_age;
    long long net_passes; /* gl:c after this check's passes; 0 = not counted */
    size_t passes;
    size_t n;
    struct gl_triplet t[];
};

static long long wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A stored time ("1700000000000"), or -1. */
static long long parse_ms(const struct kv_result *res)
{
    char buf[24];
    char *end;
    long long v;

    if (res->value_len == 0 || res->value_len >= sizeof(buf))
        return -1;
    memcpy(buf, res->value, res->value_len);
    buf[res->value_len] = '\0';
    v = strtoll(buf, &end, 10);
    return *end == '\0' && v > 0 ? v : -1;
}

static bool op_decides(enum gl_op op)
{
    return op == OP_GET_AUTO || op == OP_GET_PASSED || op == OP_ATTEMPT || op == OP_STAMP;
}

static void gl_on_result(void *ctx, const struct kv_result *res);

/* Counts a request that started; one that could not start fails the check
 * when its answer was needed for the decision. */
static void gl_started(struct gl_check *c, struct gl_slot *sl, enum gl_op op, struct kv_req *req)
{
    if (req == NULL) {
        if (!c->warned)
            log_warning("greylist: cannot start the state store %s", op_names[op]);
        c->warned = true;
        c->failed = c->failed || op_decides(op);
        return;
    }
    sl->req = req;
    sl->op = op;
    c->outstanding++;
}

static void gl_get(struct gl_check *c, struct gl_slot *sl, enum gl_op op, const char *kind,
                   const char *id)
{
    char key[GL_KEY_MAX];

    snprintf(key, sizeof(key), "gl:%s:%s", kind, id);
    gl_started(c, sl, op, kv_get(c->g->kv, key, gl_on_result, sl));
}

static void gl_incr(struct gl_check *c, struct gl_slot *sl, enum gl_op op, const char *kind,
                    const char *id, int64_t delta, long long ttl)
{
    char key[GL_KEY_MAX];

    snprintf(key, sizeof(key), "gl:%s:%s", kind, id);
    gl_started(c, sl, op, kv_incr(c->g->kv, key, delta, (uint64_t)ttl, gl_on_result, sl));
}

/* Writes the current time under kind:id for the entry lifetime. */
static void gl_stamp(struct gl_check *c, struct gl_slot *sl, enum gl_op op, const char *kind,
                     const char *id)
{
    char key[GL_KEY_MAX], value[24];
    int n = snprintf(value, sizeof(value), "%lld", c->now);

    snprintf(key, sizeof(key), "gl:%s:%s", kind, id);
    gl_started(c, sl, op,
               kv_set(c->g->kv, key, value, (size_t)n, (uint64_t)c->g->lifetime, gl_on_result, sl));
}

/* A record older than a quarter of its lifetime is written again. */
static bool gl_stale(const struct gl_check *c, long long age)
{
    return age > c->g->lifetime / 4;
}

/* The first attempts that made their gl:t write their time into it. */
static void gl_issue_first_seen(struct gl_check *c)
{
    for (size_t i = 0; i < c->n; i++) {
        struct gl_triplet *t = &c->t[i];
        if (t->outcome == GL_NEW && t->creator)
            gl_incr(c, &t->slot, OP_STAMP, "t", t->id, c->now * GL_STAMP_SCALE, c->g->window);
    }
}

static void gl_issue_record(struct gl_check *c)
{
    const struct greylist *g = c->g;

    gl_issue_first_seen(c);
    for (size_t i = 0; i < c->n; i++) {
        struct gl_triplet *t = &c->t[i];
        if (t->outcome == GL_PASS || (t->outcome == GL_KNOWN && gl_stale(c, t->ms)))
            gl_stamp(c, &t->slot, OP_SET_PASSED, "p", t->id);
        c->passes += t->outcome == GL_PASS;
    }
    if (c->passes > 0 && g->auto_after > 0)
        gl_incr(c, &c->net_slot, OP_COUNT, "c", c->net, (int64_t)c->passes, g->lifetime);
    else if (c->auto_allowed && gl_stale(c, c->auto_age))
        gl_stamp(c, &c->net_slot, OP_SET_AUTO, "a", c->net);
}

/* Starts the requests of the check's phase. */
static void gl_issue(struct gl_check *c)
{
    const struct greylist *g = c->g;

    switch (c->phase) {
    case GL_LOOKUP:
        if (g->auto_after > 0)
            gl_get(c, &c->net_slot, OP_GET_AUTO, "a", c->net);
        for (size_t i = 0; i < c->n; i++)
            if (c->t[i].outcome == GL_UNKNOWN)
                gl_get(c, &c->t[i].slot, OP_GET_PASSED, "p", c->t[i].id);
        break;
    case GL_ATTEMPT:
        for (size_t i = 0; i < c->n; i++) {
            struct gl_triplet *t = &c->t[i];
            if (t->outcome != GL_UNKNOWN)
                continue;
            if (c->auto_allowed)
                t->outcome = GL_AUTO;
            else
                gl_incr(c, &t->slot, OP_ATTEMPT, "t", t->id, 1, g->window);
        }
        break;
    case GL_RECORD:
        gl_issue_record(c);
        break;
    case GL_ALLOW:
        if (g->auto_after > 0 && c->net_passes >= g->auto_after) {
            log_info("greylist: client network %s allowed after %lld passes", c->net,
                     c->net_passes);
            gl_stamp(c, &c->net_slot, OP_SET_AUTO, "a", c->net);
        }
        break;
    case GL_DONE:
        break;
    }
}

/* The outcome of an attempt from gl:t's value after this attempt's +1. */
static void gl_decide(struct gl_check *c, struct gl_triplet *t, int64_t v)
{
    long long first = v / GL_STAMP_SCALE, elapsed = c->now - first;

    if (v == 1) {
        t->creator = true;
        t->outcome = GL_NEW;
        t->ms = c->g->delay;
    } else if (first == 0 || elapsed < c->g->delay) {
        /* no time yet (the first attempt is writing it), or too soon */
        t->outcome = GL_EARLY;
        t->ms = first == 0 || elapsed < 0 ? c->g->delay : c->g->delay - elapsed;
    } else {
        t->outcome = GL_PASS;
        t->ms = elapsed;
    }
}

static void gl_result(struct gl_check *c, struct gl_slot *sl, const struct kv_result *res)
{
    /* a triplet's slot is its first member */
    struct gl_triplet *t = sl == &c->net_slot ? NULL : (struct gl_triplet *)sl;
    bool ok = res->status == KV_OK;
    bool absent = res->status == KV_NOTFOUND && (sl->op == OP_GET_AUTO || sl->op == OP_GET_PASSED);

    if (!ok && !absent) {
        if (!c->warned)
            log_warning("greylist: state store %s for [%s]: %s%s", op_names[sl->op],
                        filter_call_txn(c->call)->client_addr, kv_status_name(res->status),
                        op_decides(sl->op) ? "" : " (the decision stands)");
        c->warned = true;
        c->failed = c->failed || op_decides(sl->op);
        return;
    }
    switch (sl->op) {
    case OP_GET_AUTO:
        c->auto_allowed = ok;
        c->auto_age = ok ? c->now - parse_ms(res) : 0;
        break;
    case OP_GET_PASSED:
        if (ok) {
            t->outcome = GL_KNOWN;
            t->ms = c->now - parse_ms(res);
        }
        break;
    case OP_ATTEMPT:
        if (res->number < 1)
            c->failed = true; /* not our counter */
        else
            gl_decide(c, t, res->number);
        break;
    case OP_COUNT:
        c->net_passes = res->number;
        break;
    case OP_STAMP:
    case OP_SET_PASSED:
    case OP_SET_AUTO:
        break;
    }
}

static void gl_end(struct gl_check *c, int result);

/* Moves through the phases while nothing is in flight. A check that fails
 * after some of its attempts made their record still writes their
 * first-seen times (else those triplets would stay early for the whole
 * retry window). */
static void gl_run(struct gl_check *c)
{
    while (c->outstanding == 0) {
        if (c->failed && c->phase == GL_ATTEMPT) {
            c->phase = GL_RECORD;
            gl_issue_first_seen(c);
            continue;
        }
        if (c->failed) {
            gl_end(c, -1);
            return;
        }
        if (c->phase == GL_DONE) {
            gl_end(c, 1);
            return;
        }
        c->phase++;
        gl_issue(c);
    }
}

static void gl_on_result(void *ctx, const struct kv_result *res)
{
    struct gl_slot *sl = ctx;
    struct gl_check *c = sl->c;

    sl->req = NULL;
    c->outstanding--;
    gl_result(c, sl, res);
    if (c->outstanding == 0)
        gl_run(c);
}

static void gl_cancel_requests(struct gl_check *c)
{
    if (c->net_slot.req != NULL)
        kv_cancel(c->net_slot.req);
    for (size_t i = 0; i < c->n; i++)
        if (c->t[i].slot.req != NULL)
            kv_cancel(c->t[i].slot.req);
}

/* ---- findings ---- */

static const char *const outcome_names[GL_OUTCOMES] = {
    [GL_SKIPPED] = "GREYLIST_SKIP", [GL_NEW] = "GREYLIST_NEW",     [GL_EARLY] = "GREYLIST_EARLY",
    [GL_PASS] = "GREYLIST_PASS",    [GL_KNOWN] = "GREYLIST_KNOWN", [GL_AUTO] = "GREYLIST_AUTO",
};

static long long ceil_seconds(long long ms)
{
    long long s = (ms + 999) / 1000;

    return s < 1 ? 1 : s;
}

/* The reply with "%s" as the seconds left and "%%" as '%'. */
static void format_reply(const char *tmpl, long long secs, char *out, size_t size)
{
    size_t o = 0;

    for (const char *p = tmpl; *p != '\0' && o + 1 < size; p++) {
        if (p[0] == '%' && p[1] == 's') {
            int n = snprintf(out + o, size - o, "%lld", secs);
            o = n < 0 || (size_t)n >= size - o ? size - 1 : o + (size_t)n;
            p++;
            continue;
        }
        if (p[0] == '%' && p[1] == '%')
            p++;
        out[o++] = *p;
    }
    out[o] = '\0';
}

static void outcome_text(const struct gl_check *c, const struct gl_triplet *t, size_t count,
                         char *out, size_t size)
{
    int n = 0;

    switch (t->outcome) {
    case GL_SKIPPED:
        n = snprintf(out, size, "allow_recipients");
        break;
    case GL_NEW:
    case GL_EARLY:
        n = snprintf(out, size, "%llds left", ceil_seconds(t->ms));
        break;
    case GL_PASS:
        n = snprintf(out, size, "after %llds", t->ms / 1000);
        break;
    case GL_AUTO:
        n = snprintf(out, size, "%s", c->net);
        break;
    default:
        out[0] = '\0';
        break;
    }
    if (count > 1 && n >= 0 && (size_t)n < size)
        snprintf(out + n, size - (size_t)n, "%s%zu recipients", n > 0 ? ", " : "", count);
}

static void gl_log(const struct gl_check *c, const struct gl_triplet *t)
{
    static const char *const what[GL_OUTCOMES] = {
        [GL_NEW] = "new", [GL_EARLY] = "early", [GL_PASS] = "pass"};
    const struct filter_txn *txn = filter_call_txn(c->call);

    if (what[t->outcome] == NULL)
        return;
    log_info("%s: greylist %s: client=[%s] sender=<%s> rcpt=<%s> %s %llds",
             txn->queue_id != NULL ? txn->queue_id : "-", what[t->outcome], txn->client_addr,
             txn->sender != NULL ? txn->sender : "", t->rcpt,
             t->outcome == GL_PASS ? "waited" : "left",
             t->outcome == GL_PASS ? t->ms / 1000 : ceil_seconds(t->ms));
}

/* Adds a symbol per outcome (the first triplet's text) and the tempfail. */
static void gl_report(struct gl_check *c)
{
    size_t count[GL_OUTCOMES] = {0};
    const struct gl_triplet *first[GL_OUTCOMES] = {NULL};
    long long left = 0;
    char text[FILTER_SYMBOL_TEXT_MAX], reply[SMTP_STATUS_TEXT_MAX];

    for (size_t i = 0; i < c->n; i++) {
        const struct gl_triplet *t = &c->t[i];
        count[t->outcome]++;
        if (first[t->outcome] == NULL)
            first[t->outcome] = t;
        if ((t->outcome == GL_NEW || t->outcome == GL_EARLY) && t->ms > left)
            left = t->ms;
        gl_log(c, t);
    }
    for (int o = GL_SKIPPED; o < GL_OUTCOMES; o++) {
        if (count[o] == 0)
            continue;
        outcome_text(c, first[o], count[o], text, sizeof(text));
        filter_call_symbol(c->call, outcome_names[o], 0, text);
    }
    if (count[GL_NEW] + count[GL_EARLY] == 0)
        return;
    format_reply(c->g->reply, ceil_seconds(left), reply, sizeof(reply));
    filter_call_action(c->call, FILTER_ACTION_TEMPFAIL, 451, "4.7.1", "%s", reply);
}

static void gl_end(struct gl_check *c, int result)
{
    struct filter_call *call = c->call;

    if (result == 1)
        gl_report(c);
    filter_call_set_data(call, NULL);
    free(c);
    filter_call_done(call, result);
}

/* ---- the stages ---- */

static struct gl_check *gl_check_new(struct greylist *g, struct filter_call *call,
                                     const char *const *rcpts, size_t n)
{
    const struct filter_txn *txn = filter_call_txn(call);
    const char *sender = txn->sender != NULL ? txn->sender : "";
    struct gl_check *c = calloc(1, sizeof(*c) + n * sizeof(c->t[0]));

    if (c == NULL)
        return NULL;
    c->g = g;
    c->call = call;
    c->n = n;
    c->now = wall_ms();
    c->net_slot.c = c;
    greylist_network_text(&txn->client, g->v4_prefix, g->v6_prefix, c->net, sizeof(c->net));
    for (size_t i = 0; i < n; i++) {
        struct gl_triplet *t = &c->t[i];
        t->slot.c = c;
        t->rcpt = rcpts[i];
        if (greylist_addr_listed(&g->rcpts, rcpts[i]))
            t->outcome = GL_SKIPPED;
        else if (greylist_triplet_id(&txn->client, g->v4_prefix, g->v6_prefix, sender, rcpts[i],
                                     t->id, sizeof(t->id)) < 0) {
            free(c);
            return NULL;
        }
    }
    return c;
}

/* Greylists the transaction's triplets for rcpts; the filter.h contract. */
static int gl_start(struct greylist *g, struct filter_call *call, const char *const *rcpts,
                    size_t n)
{
    const struct filter_txn *txn = filter_call_txn(call);
    const char *why = skip_reason(g, txn, txn->sender != NULL ? txn->sender : "");
    struct gl_check *c;
    size_t skipped = 0;

    if (why != NULL) {
        filter_call_symbol(call, "GREYLIST_SKIP", 0, why);
        return 1;
    }
    if ((c = gl_check_new(g, call, rcpts, n)) == NULL)
        return -1;
    for (size_t i = 0; i < n; i++)
        skipped += c->t[i].outcome == GL_SKIPPED;
    if (skipped == n) {
        filter_call_symbol(call, "GREYLIST_SKIP", 0, "allow_recipients");
        free(c);
        return 1;
    }
    c->phase = GL_LOOKUP;
    gl_issue(c);
    if (c->outstanding == 0) {
        free(c); /* nothing started: the store refused every request */
        return -1;
    }
    filter_call_set_data(call, c);
    return 0;
}

static int greylist_rcpt(void *instance, struct filter_call *call)
{
    struct greylist *g = instance;
    const struct filter_txn *txn = filter_call_txn(call);

    if (g->stage != GREYLIST_AT_RCPT || txn->rcpt == NULL)
        return 1;
    return gl_start(g, call, &txn->rcpt, 1);
}

static int greylist_data(void *instance, struct filter_call *call)
{
    struct greylist *g = instance;
    const struct filter_txn *txn = filter_call_txn(call);

    if (g->stage != GREYLIST_AT_DATA || txn->rcpt_count == 0)
        return 1;
    return gl_start(g, call, txn->rcpts, txn->rcpt_count);
}

static void greylist_cancel(void *instance, struct filter_call *call)
{
    struct gl_check *c = filter_call_data(call);

    (void)instance;
    if (c == NULL)
        return;
    gl_cancel_requests(c);
    free(c);
}

const struct filter_ops greylist_filter_ops = {
    .name = "greylist",
    .stage = {[FILTER_RCPT] = greylist_rcpt, [FILTER_DATA] = greylist_data},
    .cancel = greylist_cancel,
};

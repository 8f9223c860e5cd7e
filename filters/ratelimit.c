/*
 * ratelimit — see ratelimit.h. A stage call finds the buckets that apply
 * (stage, direction, a key value present), makes their keys, and takes them
 * one at a time through kv_take; the call ends when the list is done, a
 * tempfail bucket is over its limit, or the store fails.
 */
#include "config.h"
#include "filters/ratelimit.h"

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/kv.h"
#include "lib/log.h"
#include "lib/netaddr.h"

#define RATELIMIT_REPLY_MAX 200
#define VALUE_MAX 1040 /* a key value as text (an address: 256 * 4 + 8), before hashing */

static const char *const key_values[] = {"client_ip", "client_net", "sender", "sender_domain",
                                         "auth_user", "recipient",  NULL};
static const char *const count_values[] = {"connections", "messages", "recipients", NULL};
static const char *const direction_values[] = {"inbound", "outbound", "any", NULL};
static const char *const action_values[] = {"tempfail", "hold", NULL};

struct rl_bucket {
    struct ratelimit_limit_settings lim; /* a copy (name not kept: symbol is) */
    size_t index;                        /* in the config */
    enum filter_stage stage;             /* where it is counted */
    double capacity, rate;               /* tokens; tokens per second */
    char period[16];                     /* "1h" */
};

struct ratelimit {
    struct kv *kv; /* the worker's, not owned */
    char *id;
    char *reply; /* NULL: the default text */
    unsigned v4_prefix, v6_prefix;
    struct netaddr_list exempt;
    struct rl_bucket *buckets; /* soonest refill of one token first */
    size_t bucket_count;
};

struct rl_take {
    const struct rl_bucket *b;
    char value[VALUE_MAX];
    char key[RATELIMIT_KEY_MAX];
};

struct rl_check {
    struct ratelimit *r;
    struct filter_call *call;
    struct kv_req *req; /* the take in flight */
    size_t next, count;
    struct rl_take takes[];
};

/* ---- names and keys ---- */

void ratelimit_period_text(long long ms, char *out, size_t size)
{
    static const struct {
        long long ms;
        const char *unit;
    } units[] = {{86400000, "d"}, {3600000, "h"}, {60000, "m"}, {1000, "s"}};

    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (ms > 0 && ms % units[i].ms == 0) {
            snprintf(out, size, "%lld%s", ms / units[i].ms, units[i].unit);
            return;
        }
    }
    snprintf(out, size, "%lldms", ms);
}

/* FNV-1a, 64 bits: keeps an over-long value's key unique enough. */
static uint64_t hash64(const char *s)
{
    uint64_t h = 14695981039346656037ULL;

    for (; *s != '\0'; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

void ratelimit_bucket_key(const char *id, const char *symbol, const char *value, char *out,
                          size_t size)
{
    const char *name = strncmp(symbol, "RATELIMIT_", 10) == 0 ? symbol + 10 : symbol;
    int n = snprintf(out, size, "rl:%s:%s:%s", id, name, value);

    if (n < 0 || (size_t)n >= size || (size_t)n >= RATELIMIT_KEY_MAX)
        snprintf(out, size, "rl:%s:%s:#%016llx", id, name, (unsigned long long)hash64(value));
}

/* "auth-user" -> "RATELIMIT_AUTH_USER", cut to fit. */
static void symbol_from(const char *name, char *out, size_t size)
{
    size_t o;

    if (strncasecmp(name, "RATELIMIT_", 10) == 0)
        name += 10;
    o = (size_t)snprintf(out, size, "RATELIMIT_");
    for (; *name != '\0' && o + 1 < size; name++) {
        unsigned char c = (unsigned char)*name;
        out[o++] = isalnum(c) ? (char)toupper(c) : '_';
    }
    out[o < size ? o : size - 1] = '\0';
}

static void derive_symbol(struct ratelimit_limit_settings *l)
{
    char name[96], period[16];

    if (l->name != NULL) {
        symbol_from(l->name, l->symbol, sizeof(l->symbol));
        return;
    }
    ratelimit_period_text(l->per, period, sizeof(period));
    snprintf(name, sizeof(name), "%s_%s_%s", key_values[l->key], count_values[l->count], period);
    symbol_from(name, l->symbol, sizeof(l->symbol));
}

static void lower_copy(char *out, size_t size, const char *in)
{
    size_t i = 0;

    for (; in[i] != '\0' && i + 1 < size; i++)
        out[i] = (char)tolower((unsigned char)in[i]);
    out[i] = '\0';
}

/* The bucket's value for txn into out; false when the key is absent. */
static bool key_value(const struct ratelimit *r, const struct rl_bucket *b,
                      const struct filter_txn *txn, char *out, size_t size)
{
    const char *at;
    char text[64];

    switch ((enum ratelimit_key)b->lim.key) {
    case RATELIMIT_KEY_CLIENT_IP:
        netaddr_to_text(&txn->client, out, size);
        return true;
    case RATELIMIT_KEY_CLIENT_NET: {
        struct netaddr net = netaddr_network(&txn->client, r->v4_prefix, r->v6_prefix);
        bool v4 = netaddr_is_v4(&txn->client);
        netaddr_to_text(&net, text, sizeof(text));
        snprintf(out, size, "%s/%u", text, v4 ? r->v4_prefix : r->v6_prefix);
        return true;
    }
    case RATELIMIT_KEY_SENDER:
        if (txn->sender == NULL || txn->sender[0] == '\0')
            return false;
        lower_copy(out, size, txn->sender);
        return true;
    case RATELIMIT_KEY_SENDER_DOMAIN:
        if (txn->sender == NULL || (at = strrchr(txn->sender, '@')) == NULL || at[1] == '\0')
            return false;
        lower_copy(out, size, at + 1);
        return true;
    case RATELIMIT_KEY_AUTH_USER:
        if (!txn->authenticated || txn->auth_user == NULL || txn->auth_user[0] == '\0')
            return false;
        lower_copy(out, size, txn->auth_user);
        return true;
    case RATELIMIT_KEY_RECIPIENT:
        if (txn->rcpt == NULL || txn->rcpt[0] == '\0')
            return false;
        lower_copy(out, size, txn->rcpt);
        return true;
    }
    return false;
}

static bool direction_matches(int dir, enum filter_direction d)
{
    return dir == RATELIMIT_ANY || (dir == RATELIMIT_INBOUND) == (d == FILTER_INBOUND);
}

/* ---- the check ---- */

static void check_free(struct rl_check *c)
{
    free(c);
}

/* A bucket is over its limit: its symbol, and its action. Returns true when
 * the stage ends here (tempfail). */
static bool over_limit(struct rl_check *c, const struct rl_take *t)
{
    const struct filter_txn *txn = filter_call_txn(c->call);
    const struct ratelimit_limit_settings *l = &t->b->lim;
    const char *kind = key_values[l->key];
    bool hold = l->action == RATELIMIT_HOLD && txn->direction == FILTER_OUTBOUND;
    char value[128], auth[128], sender[256], text[256]; /* the symbol keeps what fits */

    log_sanitize(value, sizeof(value), t->value, strlen(t->value));
    snprintf(text, sizeof(text), "%lld per %s for %s %s", l->limit, t->b->period, kind, value);
    filter_call_symbol(c->call, l->symbol, 0, text);
    if (!hold) {
        log_info("ratelimit: %s: %s over %lld per %s for %s %s: tempfail",
                 txn->queue_id != NULL ? txn->queue_id : "-", l->symbol, l->limit, t->b->period,
                 kind, value);
        if (c->r->reply != NULL)
            filter_call_action(c->call, FILTER_ACTION_TEMPFAIL, 450, "4.7.1", "%s", c->r->reply);
        else
            filter_call_action(c->call, FILTER_ACTION_TEMPFAIL, 450, "4.7.1",
                               "Rate limit exceeded (%lld per %s for %s), try again later",
                               l->limit, t->b->period, kind);
        return true;
    }
    log_sanitize(auth, sizeof(auth), txn->auth_user != NULL ? txn->auth_user : "-",
                 strlen(txn->auth_user != NULL ? txn->auth_user : "-"));
    log_sanitize(sender, sizeof(sender), txn->sender != NULL ? txn->sender : "",
                 strlen(txn->sender != NULL ? txn->sender : ""));
    log_warning("ratelimit: %s: %s over %lld per %s for %s %s: message held; auth=%s "
                "sender=<%s> client=[%s]",
                txn->queue_id != NULL ? txn->queue_id : "-", l->symbol, l->limit, t->b->period,
                kind, value, auth, sender, txn->client_addr != NULL ? txn->client_addr : "?");
    filter_call_action(c->call, FILTER_ACTION_HOLD, 0, NULL, "%s", "held");
    return false;
}

static void on_taken(void *ctx, const struct kv_result *res);

/* Starts the next take; -1 when it cannot start. */
static int take_next(struct rl_check *c)
{
    const struct rl_take *t = &c->takes[c->next];

    c->req = kv_take(c->r->kv, t->key, t->b->capacity, t->b->rate, 1, on_taken, c);
    return c->req != NULL ? 0 : -1;
}

static void on_taken(void *ctx, const struct kv_result *res)
{
    struct rl_check *c = ctx;
    struct filter_call *call = c->call;
    const struct rl_take *t = &c->takes[c->next++];
    int result = 1;

    c->req = NULL;
    if (res->status != KV_OK) {
        log_warning("ratelimit: state store %s for %s; rate limits skipped",
                    kv_status_name(res->status), t->b->lim.symbol);
        result = -1;
    } else if ((res->allowed || !over_limit(c, t)) && c->next < c->count) {
        if (take_next(c) == 0)
            return;
        result = -1;
    }
    check_free(c);
    filter_call_done(call, result);
}

static int rl_stage(void *instance, struct filter_call *call)
{
    struct ratelimit *r = instance;
    const struct filter_txn *txn = filter_call_txn(call);
    enum filter_stage stage = filter_call_stage(call);
    struct rl_check *c;

    if (netaddr_list_match(&r->exempt, &txn->client))
        return 1;
    if ((c = calloc(1, sizeof(*c) + r->bucket_count * sizeof(c->takes[0]))) == NULL)
        return -1;
    c->r = r;
    c->call = call;
    for (size_t i = 0; i < r->bucket_count; i++) {
        const struct rl_bucket *b = &r->buckets[i];
        struct rl_take *t = &c->takes[c->count];
        if (b->stage != stage || !direction_matches(b->lim.direction, txn->direction) ||
            !key_value(r, b, txn, t->value, sizeof(t->value)))
            continue;
        t->b = b;
        ratelimit_bucket_key(r->id, b->lim.symbol, t->value, t->key, sizeof(t->key));
        c->count++;
    }
    if (c->count == 0 || take_next(c) < 0) {
        int rc = c->count == 0 ? 1 : -1;
        check_free(c);
        return rc;
    }
    filter_call_set_data(call, c);
    return 0;
}

static void rl_cancel(void *instance, struct filter_call *call)
{
    struct rl_check *c = filter_call_data(call);

    (void)instance;
    if (c == NULL)
        return;
    if (c->req != NULL)
        kv_cancel(c->req);
    check_free(c);
}

static const struct filter_ops ratelimit_ops = {
    .name = "ratelimit",
    .stage = {[FILTER_CONNECT] = rl_stage, [FILTER_RCPT] = rl_stage, [FILTER_DATA] = rl_stage},
    .cancel = rl_cancel,
};

/* ---- instances ---- */

static enum filter_stage count_stage(const struct ratelimit_limit_settings *l)
{
    if (l->count == RATELIMIT_CONNECTIONS)
        return FILTER_CONNECT;
    if (l->count == RATELIMIT_RECIPIENTS || l->key == RATELIMIT_KEY_RECIPIENT)
        return FILTER_RCPT;
    return FILTER_DATA;
}

/* Soonest refill of one token first; config order among equals. */
static int bucket_order(const void *a, const void *b)
{
    const struct rl_bucket *x = a, *y = b;
    double tx = 1.0 / x->rate, ty = 1.0 / y->rate;

    if (tx != ty)
        return tx < ty ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

static void ratelimit_destroy(void *instance)
{
    struct ratelimit *r = instance;

    if (r == NULL)
        return;
    netaddr_list_free(&r->exempt);
    free(r->buckets);
    free(r->id);
    free(r->reply);
    free(r);
}

/* The buckets, in the order they are taken (bucket_order). */
static void make_buckets(struct ratelimit *r, const struct ratelimit_settings *s)
{
    for (size_t i = 0; i < s->limit_count; i++) {
        const struct ratelimit_limit_settings *l = &s->limits[i];
        struct rl_bucket *b = &r->buckets[r->bucket_count++];
        b->lim = *l;
        b->lim.name = NULL;
        b->index = i;
        b->stage = count_stage(l);
        b->capacity = (double)(l->burst > 0 ? l->burst : l->limit);
        b->rate = (double)l->limit * 1000.0 / (double)l->per;
        ratelimit_period_text(l->per, b->period, sizeof(b->period));
    }
    qsort(r->buckets, r->bucket_count, sizeof(*r->buckets), bucket_order);
}

/* The instance owns copies of what it keeps: it may outlive the settings. */
static int copy_settings(struct ratelimit *r, const struct ratelimit_settings *s, char *error,
                         size_t errsize)
{
    const char *err = NULL;

    r->v4_prefix = (unsigned)s->ipv4_prefix;
    r->v6_prefix = (unsigned)s->ipv6_prefix;
    r->id = strdup(s->common.id != NULL ? s->common.id : s->common.name);
    r->reply = s->reply != NULL ? strdup(s->reply) : NULL;
    r->buckets = calloc(s->limit_count + 1, sizeof(*r->buckets));
    if (r->id == NULL || (s->reply != NULL && r->reply == NULL) || r->buckets == NULL) {
        snprintf(error, errsize, "ratelimit: out of memory");
        return -1;
    }
    for (size_t i = 0; i < s->exempt_networks.count; i++) {
        if (netaddr_list_add(&r->exempt, s->exempt_networks.items[i], &err) < 0) {
            snprintf(error, errsize, "ratelimit: exempt_networks \"%s\": %s",
                     s->exempt_networks.items[i], err);
            return -1;
        }
    }
    return 0;
}

static int ratelimit_create(const struct filter_env *env, const void *settings, void **instance,
                            char *error, size_t errsize)
{
    const struct ratelimit_settings *s = settings;
    struct ratelimit *r;

    *instance = NULL;
    if (env->kv == NULL) {
        snprintf(error, errsize, "ratelimit: no state store");
        return -1;
    }
    if ((r = calloc(1, sizeof(*r))) == NULL) {
        snprintf(error, errsize, "ratelimit: out of memory");
        return -1;
    }
    r->kv = env->kv;
    if (copy_settings(r, s, error, errsize) < 0) {
        ratelimit_destroy(r);
        return -1;
    }
    make_buckets(r, s);
    *instance = r;
    return 0;
}

/* ---- the module: config ---- */

#define S(field) offsetof(struct ratelimit_settings, field)
static const struct cfg_key ratelimit_keys[] = {
    FILTER_COMMON_KEYS("skip", "5s"),
    {"ipv4_prefix", CFG_INT, S(ipv4_prefix), "24", 1, 32, NULL,
     "client_net: the IPv4 network length"},
    {"ipv6_prefix", CFG_INT, S(ipv6_prefix), "64", 1, 128, NULL,
     "client_net: the IPv6 network length"},
    {"exempt_networks", CFG_STRLIST, S(exempt_networks), "", 0, 0, NULL,
     "clients never counted or limited (CIDR list)"},
    {"reply", CFG_STRING, S(reply), NULL, 0, 0, NULL,
     "text of the 450 4.7.1 (default: Rate limit exceeded (N per PERIOD for KEY), ...)"},
    {"limits", CFG_GROUP, 0, NULL, 0, 0, NULL, "the buckets (see filters.ratelimit.limits.*)"},
    {.name = NULL},
};
#undef S

#define S(field) offsetof(struct ratelimit_limit_settings, field)
static const struct cfg_key limit_keys[] = {
    {"key", CFG_ENUM, S(key), NULL, 0, 0, key_values,
     "what is counted per value: client_ip, client_net, sender, sender_domain, auth_user, "
     "recipient (required)"},
    {"count", CFG_ENUM, S(count), "messages", 0, 0, count_values,
     "connections (at connect), messages (at DATA) or recipients (at RCPT)"},
    {"limit", CFG_INT, S(limit), NULL, 1, 1000000000, NULL, "how many per `per` (required)"},
    {"per", CFG_DURATION, S(per), "1h", 1000, 366LL * 86400000, NULL,
     "the period of the limit: \"1m\", \"1h\", \"1d\""},
    {"burst", CFG_INT, S(burst), "0", 0, 1000000000, NULL,
     "the bucket's capacity: how many at once after a quiet time (0 = limit)"},
    {"direction", CFG_ENUM, S(direction), "any", 0, 0, direction_values,
     "inbound, outbound (authenticated, trusted or submission clients) or any"},
    {"action", CFG_ENUM, S(action), "tempfail", 0, 0, action_values,
     "over the limit: tempfail (450 4.7.1) or hold (outbound: keep in the held queue)"},
    {"name", CFG_STRING, S(name), NULL, 0, 0, NULL,
     "symbol RATELIMIT_<NAME> (default: KEY_COUNT_PER, e.g. AUTH_USER_MESSAGES_1H)"},
    {.name = NULL},
};
#undef S

static const config_setting_t *member_or(const config_setting_t *g, const char *name)
{
    const config_setting_t *m = config_setting_get_member(g, name);

    return m != NULL ? m : g;
}

/* An unknown enum value leaves -1 in its field. */
static bool enums_valid(const struct ratelimit_limit_settings *l)
{
    return l->key >= 0 && l->count >= 0 && l->direction >= 0 && l->action >= 0;
}

/* Checks across the keys of one group, each error on its setting's line. */
static void check_limit(const struct ratelimit_limit_settings *l, const config_setting_t *e,
                        struct cfg_errors *errs)
{
    if (config_setting_get_member(e, "key") == NULL)
        cfg_error_add(errs, e, "ratelimit limit without a key");
    if (config_setting_get_member(e, "limit") == NULL)
        cfg_error_add(errs, e, "ratelimit limit without a limit");
    if (l->count == RATELIMIT_CONNECTIONS && l->key != RATELIMIT_KEY_CLIENT_IP &&
        l->key != RATELIMIT_KEY_CLIENT_NET)
        cfg_error_add(errs, member_or(e, "count"),
                      "ratelimit: connections are counted at connect, where the key \"%s\" is "
                      "not known (use client_ip or client_net)",
                      key_values[l->key]);
    if (l->action == RATELIMIT_HOLD && l->direction == RATELIMIT_INBOUND)
        cfg_error_add(errs, member_or(e, "action"),
                      "ratelimit: action hold is for outbound mail only (direction inbound)");
    if (l->action == RATELIMIT_HOLD && l->count == RATELIMIT_CONNECTIONS)
        cfg_error_add(errs, member_or(e, "action"),
                      "ratelimit: action hold needs messages or recipients (a connection is "
                      "not a message to hold)");
}

static void check_reply(const char *reply, const config_setting_t *g, struct cfg_errors *errs)
{
    size_t len = reply == NULL ? 0 : strlen(reply);

    if (reply == NULL)
        return;
    if (len == 0 || len > RATELIMIT_REPLY_MAX)
        cfg_error_add(errs, member_or(g, "reply"), "ratelimit: reply must be 1..%d characters",
                      RATELIMIT_REPLY_MAX);
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)reply[i] < 0x20 || (unsigned char)reply[i] > 0x7e) {
            cfg_error_add(errs, member_or(g, "reply"),
                          "ratelimit: reply must be printable ASCII on one line");
            return;
        }
    }
}

static void check_exempt(const struct cfg_strlist *l, const config_setting_t *g,
                         struct cfg_errors *errs)
{
    for (size_t i = 0; i < l->count; i++) {
        struct netaddr_cidr c;
        const char *err = NULL;
        if (netaddr_cidr_parse(l->items[i], &c, &err) < 0)
            cfg_error_add(errs, member_or(g, "exempt_networks"),
                          "ratelimit: exempt_networks \"%s\": %s", l->items[i],
                          err != NULL ? err : "bad network");
    }
}

static void ratelimit_load(void *settings, const config_setting_t *g, struct cfg_errors *errs)
{
    struct ratelimit_settings *f = settings;
    const config_setting_t *ls = config_setting_get_member(g, "limits");
    int n = ls == NULL ? 0 : config_setting_length(ls);

    check_reply(f->reply, g, errs);
    check_exempt(&f->exempt_networks, g, errs);
    if (ls == NULL || config_setting_type(ls) != CONFIG_TYPE_LIST || n == 0) {
        cfg_error_add(errs, ls != NULL ? ls : g,
                      "ratelimit: limits must be a list ( { key = ...; limit = ...; } )");
        return;
    }
    if ((f->limits = calloc((size_t)n, sizeof(*f->limits))) == NULL)
        return;
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(ls, i);
        struct ratelimit_limit_settings *l = &f->limits[f->limit_count++];
        if (config_setting_type(e) != CONFIG_TYPE_GROUP) {
            cfg_error_add(errs, e, "each ratelimit limit must be a group { ... }");
            continue;
        }
        if (cfg_section_load(e, limit_keys, l, errs) > 0 && !enums_valid(l))
            continue; /* an unknown value, already reported */
        check_limit(l, e, errs);
        derive_symbol(l);
        for (size_t j = 0; j + 1 < f->limit_count; j++) {
            if (strcmp(f->limits[j].symbol, l->symbol) == 0)
                cfg_error_add(errs, e, "ratelimit: symbol %s used twice (give one a name)",
                              l->symbol);
        }
    }
}

static void ratelimit_free_settings(void *settings)
{
    struct ratelimit_settings *f = settings;

    for (size_t j = 0; j < f->limit_count; j++)
        cfg_section_free(limit_keys, &f->limits[j]);
    free(f->limits);
    f->limits = NULL;
    f->limit_count = 0;
}

static void ratelimit_describe(FILE *out)
{
    cfg_section_describe(out, "filters.ratelimit.limits", limit_keys);
}

const struct filter_module ratelimit_module = {
    .name = "ratelimit",
    .ops = &ratelimit_ops,
    .keys = ratelimit_keys,
    .settings_size = sizeof(struct ratelimit_settings),
    .uses_kv = true,
    .load = ratelimit_load,
    .free_settings = ratelimit_free_settings,
    .describe = ratelimit_describe,
    .create = ratelimit_create,
    .destroy = ratelimit_destroy,
};

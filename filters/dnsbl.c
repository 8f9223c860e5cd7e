/*
 * dnsbl — see dnsbl.h. One check per CONNECT call: a query per list, all at
 * once; the call finishes when the last answer (or failure) is in. Only A
 * answers are read; a list's codes (when given) pick the answers that count.
 */
#include "config.h"
#include "filters/dnsbl.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"

struct dnsbl_zone {
    char *zone;
    char symbol[FILTER_SYMBOL_NAME_MAX];
    double score;
    char **codes;
    size_t code_count;
};

struct dnsbl {
    struct dns *dns; /* the worker's, not owned */
    struct dnsbl_zone *lists;
    size_t list_count;
    double reject_score;
};

struct dnsbl_check;

struct dnsbl_lookup {
    struct dnsbl_check *check;
    size_t index;        /* into dnsbl.lists */
    struct dns_query *q; /* NULL once answered */
};

struct dnsbl_check {
    struct dnsbl *d;
    struct filter_call *call;
    size_t outstanding;
    double score;
    const char *listed_by; /* zone of the first listing */
    char addr[64];
    struct dnsbl_lookup lookups[];
};

int dnsbl_query_name(const struct netaddr *addr, const char *zone, char *out, size_t size)
{
    size_t o = 0;
    int n;

    if (netaddr_is_v4(addr)) {
        n = snprintf(out, size, "%u.%u.%u.%u.%s", addr->a[15], addr->a[14], addr->a[13],
                     addr->a[12], zone);
        return n < 0 || (size_t)n >= size ? -1 : 0;
    }
    for (int i = 15; i >= 0; i--) {
        n = snprintf(out + o, size - o, "%x.%x.", addr->a[i] & 0xf, addr->a[i] >> 4);
        if (n < 0 || (size_t)n >= size - o)
            return -1;
        o += (size_t)n;
    }
    n = snprintf(out + o, size - o, "%s", zone);
    return n < 0 || (size_t)n >= size - o ? -1 : 0;
}

void dnsbl_symbol_name(const char *zone, char *out, size_t size)
{
    size_t o = (size_t)snprintf(out, size, "DNSBL_");

    for (; *zone != '\0' && o + 1 < size; zone++) {
        unsigned char c = (unsigned char)*zone;
        out[o++] = isalnum(c) ? (char)toupper(c) : '_';
    }
    out[o < size ? o : size - 1] = '\0';
}

static int copy_list(struct dnsbl_zone *z, const struct dnsbl_list_settings *l)
{
    if ((z->zone = strdup(l->zone)) == NULL)
        return -1;
    dnsbl_symbol_name(l->zone, z->symbol, sizeof(z->symbol));
    z->score = l->score;
    if (l->codes.count > 0 && (z->codes = calloc(l->codes.count, sizeof(*z->codes))) == NULL)
        return -1;
    for (size_t i = 0; i < l->codes.count; i++) {
        if ((z->codes[i] = strdup(l->codes.items[i])) == NULL)
            return -1;
        z->code_count++;
    }
    return 0;
}

int dnsbl_new(struct dns *dns, const struct dnsbl_settings *cfg, struct dnsbl **dnsbl_r,
              char *error, size_t errsize)
{
    struct dnsbl *d = calloc(1, sizeof(*d));

    *dnsbl_r = NULL;
    if (d == NULL || (d->lists = calloc(cfg->list_count + 1, sizeof(*d->lists))) == NULL) {
        snprintf(error, errsize, "dnsbl: out of memory");
        free(d);
        return -1;
    }
    d->dns = dns;
    d->reject_score = cfg->reject_score;
    for (size_t i = 0; i < cfg->list_count; i++) {
        d->list_count++;
        if (copy_list(&d->lists[i], &cfg->lists[i]) < 0) {
            snprintf(error, errsize, "dnsbl: out of memory");
            dnsbl_free(&d);
            return -1;
        }
    }
    *dnsbl_r = d;
    return 0;
}

void dnsbl_free(struct dnsbl **dp)
{
    struct dnsbl *d = *dp;

    if (d == NULL)
        return;
    *dp = NULL;
    for (size_t i = 0; i < d->list_count; i++) {
        for (size_t j = 0; j < d->lists[i].code_count; j++)
            free(d->lists[i].codes[j]);
        free(d->lists[i].codes);
        free(d->lists[i].zone);
    }
    free(d->lists);
    free(d);
}

static bool code_counts(const struct dnsbl_zone *z, const char *text)
{
    if (z->code_count == 0)
        return true;
    for (size_t i = 0; i < z->code_count; i++) {
        if (strcmp(z->codes[i], text) == 0)
            return true;
    }
    return false;
}

/* Adds the list's symbol for the first answer that counts. */
static void check_answers(struct dnsbl_check *c, const struct dnsbl_zone *z,
                          const struct dns_addr *a, size_t n)
{
    char text[INET6_ADDRSTRLEN];

    for (size_t i = 0; i < n; i++) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)&a[i].sa;
        if (sin->sin_family != AF_INET ||
            inet_ntop(AF_INET, &sin->sin_addr, text, sizeof(text)) == NULL || !code_counts(z, text))
            continue;
        filter_call_symbol(c->call, z->symbol, z->score, text);
        c->score += z->score;
        if (c->listed_by == NULL)
            c->listed_by = z->zone;
        return;
    }
}

static void check_finish(struct dnsbl_check *c)
{
    struct filter_call *call = c->call;
    struct dnsbl *d = c->d;

    if (d->reject_score > 0 && c->score >= d->reject_score && c->listed_by != NULL)
        filter_call_action(call, FILTER_ACTION_REJECT, 554, "5.7.1",
                           "Service unavailable; client [%s] blocked using %s", c->addr,
                           c->listed_by);
    free(c);
    filter_call_done(call, 1);
}

static void on_answer(void *ctx, enum dns_status st, const struct dns_addr *a, size_t n)
{
    struct dnsbl_lookup *l = ctx;
    struct dnsbl_check *c = l->check;
    const struct dnsbl_zone *z = &c->d->lists[l->index];

    l->q = NULL;
    c->outstanding--;
    if (st == DNS_OK)
        check_answers(c, z, a, n);
    else if (st != DNS_NXDOMAIN && st != DNS_NODATA)
        log_warning("dnsbl: %s for [%s]: %s; taken as not listed", z->zone, c->addr,
                    dns_status_name(st));
    if (c->outstanding == 0)
        check_finish(c);
}

static int dnsbl_connect(void *instance, struct filter_call *call)
{
    struct dnsbl *d = instance;
    const struct filter_txn *txn = filter_call_txn(call);
    struct dnsbl_check *c = calloc(1, sizeof(*c) + d->list_count * sizeof(c->lookups[0]));
    char name[DNS_NAME_MAX + 1];

    if (c == NULL)
        return -1;
    c->d = d;
    c->call = call;
    netaddr_to_text(&txn->client, c->addr, sizeof(c->addr));
    for (size_t i = 0; i < d->list_count; i++) {
        struct dnsbl_lookup *l = &c->lookups[i];
        l->check = c;
        l->index = i;
        if (dnsbl_query_name(&txn->client, d->lists[i].zone, name, sizeof(name)) < 0)
            continue;
        l->q = dns_query_addr(d->dns, name, AF_INET, on_answer, l);
        if (l->q != NULL)
            c->outstanding++;
        else
            log_warning("dnsbl: cannot query %s; taken as not listed", name);
    }
    if (c->outstanding == 0) {
        free(c);
        return 1;
    }
    filter_call_set_data(call, c);
    return 0;
}

static void dnsbl_cancel(void *instance, struct filter_call *call)
{
    struct dnsbl_check *c = filter_call_data(call);

    (void)instance;
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->d->list_count; i++) {
        if (c->lookups[i].q != NULL)
            dns_query_cancel(c->lookups[i].q);
    }
    free(c);
}

const struct filter_ops dnsbl_filter_ops = {
    .name = "dnsbl",
    .stage = {[FILTER_CONNECT] = dnsbl_connect},
    .cancel = dnsbl_cancel,
};

/* ---- the module: config and instances ---- */

#define S(field) offsetof(struct dnsbl_settings, field)
static const struct cfg_key dnsbl_keys[] = {
    FILTER_COMMON_KEYS("skip", "5s"),
    { "reject_score", CFG_DOUBLE, S(reject_score), "0", 0, 1000000, NULL,
      "reject at connect when the lists' scores reach this (0 = never)" },
    { "lists", CFG_GROUP, 0, NULL, 0, 0, NULL, "the DNS lists (see filters.dnsbl.lists.*)" },
    { .name = NULL },
};
#undef S

#define S(field) offsetof(struct dnsbl_list_settings, field)
static const struct cfg_key dnsbl_list_keys[] = {
    { "zone", CFG_STRING, S(zone), NULL, 0, 0, NULL, "the list's DNS zone (required)" },
    { "score", CFG_DOUBLE, S(score), "1", -1000000, 1000000, NULL, "score of a listing" },
    { "codes", CFG_STRLIST, S(codes), "", 0, 0, NULL,
      "answers that count as listed, e.g. \"127.0.0.2\" (empty = any)" },
    { .name = NULL },
};
#undef S

static void dnsbl_load(void *settings, const config_setting_t *g, struct cfg_errors *errs)
{
    struct dnsbl_settings *f = settings;
    const config_setting_t *ls = config_setting_get_member(g, "lists");
    int n = ls == NULL ? 0 : config_setting_length(ls);

    if (ls == NULL || config_setting_type(ls) != CONFIG_TYPE_LIST || n == 0) {
        cfg_error_add(errs, ls != NULL ? ls : g, "dnsbl: lists must be a list ( { zone = ...; } )");
        return;
    }
    if ((f->lists = calloc((size_t)n, sizeof(*f->lists))) == NULL)
        return;
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(ls, i);
        struct dnsbl_list_settings *l = &f->lists[f->list_count++];
        if (config_setting_type(e) != CONFIG_TYPE_GROUP) {
            cfg_error_add(errs, e, "each dnsbl list must be a group { ... }");
            continue;
        }
        cfg_section_load(e, dnsbl_list_keys, l, errs);
        if (l->zone == NULL || l->zone[0] == '\0')
            cfg_error_add(errs, e, "dnsbl list without a zone");
    }
}

static void dnsbl_free_settings(void *settings)
{
    struct dnsbl_settings *f = settings;

    for (size_t j = 0; j < f->list_count; j++)
        cfg_section_free(dnsbl_list_keys, &f->lists[j]);
    free(f->lists);
    f->lists = NULL;
    f->list_count = 0;
}

static void dnsbl_describe(FILE *out)
{
    cfg_section_describe(out, "filters.dnsbl.lists", dnsbl_list_keys);
}

static int dnsbl_create(const struct filter_env *env, const void *settings, void **instance,
                        char *error, size_t errsize)
{
    return dnsbl_new(env->dns, settings, (struct dnsbl **)instance, error, errsize);
}

static void dnsbl_destroy(void *instance)
{
    struct dnsbl *d = instance;

    dnsbl_free(&d);
}

const struct filter_module dnsbl_module = {
    .name = "dnsbl",
    .ops = &dnsbl_filter_ops,
    .keys = dnsbl_keys,
    .settings_size = sizeof(struct dnsbl_settings),
    .load = dnsbl_load,
    .free_settings = dnsbl_free_settings,
    .describe = dnsbl_describe,
    .create = dnsbl_create,
    .destroy = dnsbl_destroy,
};

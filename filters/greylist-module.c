/*
 * greylist-module — the greylist filter's module (module.h): its config
 * table with the checks across keys (retry_window longer than delay, the
 * lists' entries, the reply text), and its instances: one per worker, on
 * the worker's state store, with a timer that asks the store every
 * purge_interval to remove expired entries (LMDB keeps them until then,
 * and most triplets are never retried; Redis expires keys itself and the
 * request does nothing there).
 *
 * Called by the config loader and the gateway. Trusts nothing in the
 * file: every value is checked here or by its table row.
 */
#include "config.h"
#include "filters/greylist-private.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "lib/kv.h"
#include "lib/log.h"

#define GL_REPLY_MAX 200

/* ---- removing expired entries ---- */

static void purge_arm(struct greylist *g)
{
    struct timeval tv = {.tv_sec = g->purge_interval / 1000,
                         .tv_usec = (g->purge_interval % 1000) * 1000};

    evtimer_add(g->purge_timer, &tv);
}

static void purge_done(void *ctx, const struct kv_result *res)
{
    struct greylist *g = ctx;

    g->purge_req = NULL;
    if (res->status == KV_CANCELLED)
        return; /* the store is going away */
    if (res->status != KV_OK)
        log_warning("greylist: removing expired state: %s", kv_status_name(res->status));
    else if (res->number > 0)
        log_debug("greylist: removed %lld expired state entries", (long long)res->number);
    purge_arm(g);
}

static void purge_tick(evutil_socket_t fd, short what, void *arg)
{
    struct greylist *g = arg;

    (void)fd;
    (void)what;
    g->purge_req = kv_purge(g->kv, purge_done, g);
    if (g->purge_req == NULL)
        purge_arm(g);
}

/* ---- config ---- */

static const char *const stage_values[] = {"rcpt", "data", NULL};

#define DAY_MS (86400LL * 1000)
#define S(field) offsetof(struct greylist_settings, field)
static const struct cfg_key greylist_keys[] = {
    FILTER_COMMON_KEYS("skip", "5s"),
    {"delay", CFG_DURATION, S(delay), "5m", 0, DAY_MS, NULL,
     "a retry sooner than this after the first attempt is refused again"},
    {"retry_window", CFG_DURATION, S(retry_window), "2d", 1000, 30 * DAY_MS, NULL,
     "the first retry after delay must come within this of the first attempt"},
    {"entry_lifetime", CFG_DURATION, S(entry_lifetime), "35d", 1000, 3650 * DAY_MS, NULL,
     "how long a passed triplet or an auto-allowed network is kept after last use"},
    {"auto_allow_after", CFG_INT, S(auto_allow_after), "5", 0, 1000000, NULL,
     "passes after which the client network is allowed itself (0 = never)"},
    {"ipv4_prefix", CFG_INT, S(ipv4_prefix), "24", 8, 32, NULL,
     "IPv4 clients are grouped by this network prefix"},
    {"ipv6_prefix", CFG_INT, S(ipv6_prefix), "64", 16, 128, NULL,
     "IPv6 clients are grouped by this network prefix"},
    {"stage", CFG_ENUM, S(stage), "rcpt", 0, 0, stage_values,
     "rcpt: 451 per recipient; data: 451 at DATA for the whole transaction"},
    {"skip_authenticated", CFG_BOOL, S(skip_authenticated), "yes", 0, 0, NULL,
     "no greylisting for authenticated clients"},
    {"skip_trusted", CFG_BOOL, S(skip_trusted), "yes", 0, 0, NULL,
     "no greylisting for relay.trusted_networks"},
    {"skip_dnswl", CFG_BOOL, S(skip_dnswl), "yes", 0, 0, NULL,
     "no greylisting when an earlier filter added a DNSWL_* symbol"},
    {"spf_allow_domains", CFG_STRLIST, S(spf_allow_domains), "", 0, 0, NULL,
     "sender domains (and subdomains) not greylisted after an SPF_PASS* symbol"},
    {"allow_networks", CFG_STRLIST, S(allow_networks), "", 0, 0, NULL,
     "client networks (CIDR) never greylisted"},
    {"allow_senders", CFG_STRLIST, S(allow_senders), "", 0, 0, NULL,
     "senders never greylisted: \"a@b\", \"@b\", \"a@\", \"<>\""},
    {"allow_recipients", CFG_STRLIST, S(allow_recipients), "", 0, 0, NULL,
     "recipients never greylisted: \"a@b\", \"@b\", \"a@\""},
    {"reply", CFG_STRING, S(reply), "Greylisted, please try again later (%s seconds left)", 0, 0,
     NULL, "text of the 451 4.7.1; %s = seconds left"},
    {"purge_interval", CFG_DURATION, S(purge_interval), "1h", 0, 7 * DAY_MS, NULL,
     "how often expired state entries are removed (LMDB; 0 = never)"},
    {.name = NULL},
};
#undef S

/* The setting for an error about key's element i: the element, the key, or
 * the group. */
static const config_setting_t *where(const config_setting_t *g, const char *key, size_t i)
{
    const config_setting_t *m = config_setting_get_member(g, key);
    const config_setting_t *e = NULL;

    if (m == NULL)
        return g;
    if (config_setting_is_aggregate(m))
        e = config_setting_get_elem(m, (unsigned)i);
    return e != NULL ? e : m;
}

static void load_addresses(const struct cfg_strlist *l, const char *key, bool senders,
                           const config_setting_t *g, struct cfg_errors *errs)
{
    for (size_t i = 0; i < l->count; i++) {
        const char *e = l->items[i];
        if (senders && strcmp(e, "<>") == 0)
            continue;
        if (strchr(e, '@') == NULL || strcmp(e, "@") == 0 || strpbrk(e, " \t<>") != NULL)
            cfg_error_add(errs, where(g, key, i),
                          "%s: \"%s\" is not \"user@domain\", \"@domain\" or \"user@\"%s", key, e,
                          senders ? " or \"<>\"" : "");
    }
}

static bool reply_valid(const char *r)
{
    size_t n = strlen(r);

    for (size_t i = 0; i < n; i++) {
        if (r[i] < 0x20 || r[i] > 0x7e)
            return false;
        if (r[i] == '%' && r[i + 1] != 's' && r[i + 1] != '%')
            return false;
        i += r[i] == '%';
    }
    return n > 0 && n <= GL_REPLY_MAX;
}

static void greylist_load(void *settings, const config_setting_t *g, struct cfg_errors *errs)
{
    const struct greylist_settings *f = settings;
    struct netaddr_list nets = {0};
    const char *error;

    if (f->retry_window <= f->delay)
        cfg_error_add(errs, where(g, "retry_window", 0),
                      "greylist: retry_window must be longer than delay");
    for (size_t i = 0; i < f->allow_networks.count; i++)
        if (netaddr_list_add(&nets, f->allow_networks.items[i], &error) < 0)
            cfg_error_add(errs, where(g, "allow_networks", i), "allow_networks: \"%s\": %s",
                          f->allow_networks.items[i], error);
    netaddr_list_free(&nets);
    load_addresses(&f->allow_senders, "allow_senders", true, g, errs);
    load_addresses(&f->allow_recipients, "allow_recipients", false, g, errs);
    for (size_t i = 0; i < f->spf_allow_domains.count; i++) {
        const char *d = f->spf_allow_domains.items[i];
        if (d[0] == '.' || strpbrk(d, "@ \t") != NULL)
            cfg_error_add(errs, where(g, "spf_allow_domains", i),
                          "spf_allow_domains: \"%s\" is not a domain", d);
    }
    if (f->reply != NULL && !reply_valid(f->reply))
        cfg_error_add(errs, where(g, "reply", 0),
                      "reply: printable ASCII up to %d characters, '%%' only as %%s or %%%%",
                      GL_REPLY_MAX);
}

static int copy_lower(struct cfg_strlist *to, const struct cfg_strlist *from)
{
    if (from->count == 0)
        return 0;
    if ((to->items = calloc(from->count, sizeof(*to->items))) == NULL)
        return -1;
    for (size_t i = 0; i < from->count; i++) {
        if ((to->items[i] = strdup(from->items[i])) == NULL)
            return -1;
        to->count++;
        for (char *p = to->items[i]; *p != '\0'; p++)
            *p = greylist_ascii_lower(*p);
    }
    return 0;
}

static void greylist_destroy(void *instance)
{
    struct greylist *g = instance;

    if (g == NULL)
        return;
    if (g->purge_req != NULL)
        kv_cancel(g->purge_req);
    if (g->purge_timer != NULL)
        event_free(g->purge_timer);
    cfg_strlist_free(&g->spf_domains);
    cfg_strlist_free(&g->senders);
    cfg_strlist_free(&g->rcpts);
    netaddr_list_free(&g->networks);
    free(g->reply);
    free(g);
}

static int copy_settings(struct greylist *g, const struct greylist_settings *f)
{
    const char *error;

    g->delay = f->delay;
    g->window = f->retry_window;
    g->lifetime = f->entry_lifetime;
    g->auto_after = f->auto_allow_after;
    g->purge_interval = f->purge_interval;
    g->v4_prefix = (unsigned)f->ipv4_prefix;
    g->v6_prefix = (unsigned)f->ipv6_prefix;
    g->stage = (enum greylist_stage)f->stage;
    g->skip_auth = f->skip_authenticated;
    g->skip_trusted = f->skip_trusted;
    g->skip_dnswl = f->skip_dnswl;
    for (size_t i = 0; i < f->allow_networks.count; i++)
        if (netaddr_list_add(&g->networks, f->allow_networks.items[i], &error) < 0)
            return -1;
    g->reply = strdup(f->reply != NULL ? f->reply : "Greylisted, please try again later");
    if (g->reply == NULL || copy_lower(&g->spf_domains, &f->spf_allow_domains) < 0 ||
        copy_lower(&g->senders, &f->allow_senders) < 0 ||
        copy_lower(&g->rcpts, &f->allow_recipients) < 0)
        return -1;
    return 0;
}

static int greylist_create(const struct filter_env *env, const void *settings, void **instance,
                           char *error, size_t errsize)
{
    struct greylist *g;

    *instance = NULL;
    if (env->kv == NULL) {
        snprintf(error, errsize, "greylist: no state store");
        return -1;
    }
    if ((g = calloc(1, sizeof(*g))) == NULL) {
        snprintf(error, errsize, "greylist: out of memory");
        return -1;
    }
    g->kv = env->kv;
    if (copy_settings(g, settings) < 0 ||
        (g->purge_timer = evtimer_new(env->base, purge_tick, g)) == NULL) {
        snprintf(error, errsize, "greylist: out of memory");
        greylist_destroy(g);
        return -1;
    }
    if (g->purge_interval > 0)
        purge_arm(g);
    *instance = g;
    return 0;
}

const struct filter_module greylist_module = {
    .name = "greylist",
    .ops = &greylist_filter_ops,
    .keys = greylist_keys,
    .settings_size = sizeof(struct greylist_settings),
    .uses_kv = true,
    .load = greylist_load,
    .create = greylist_create,
    .destroy = greylist_destroy,
};

/*
 * dnsbl-config — the dnsbl filter's module (module.h): its config table
 * (filters.dnsbl and filters.dnsbl.lists), the checks that the table alone
 * cannot make (codes in 127/8, allow_networks as CIDR, the forms of
 * reject_exempt_recipients, accept only on allow lists, distinct symbol
 * names per instance), each an error naming the setting's line; and the
 * instances made per worker (dnsbl.c).
 *
 * Trusts libconfig and lib/cfg for types and ranges; validates the rest.
 */
#include "config.h"
#include "filters/dnsbl.h"

#include <stdlib.h>
#include <string.h>

static const char *const reject_stage_values[] = {"connect", "rcpt", NULL};
static const char *const list_type_values[] = {"block", "allow", NULL};

#define S(field) offsetof(struct dnsbl_settings, field)
static const struct cfg_key dnsbl_keys[] = {
    FILTER_COMMON_KEYS("skip", "5s"),
    { "reject_score", CFG_DOUBLE, S(reject_score), "0", 0, 1000000, NULL,
      "reject when the lists' scores reach this and a block list is among them (0 = never)" },
    { "reject_stage", CFG_ENUM, S(reject_stage), "rcpt", 0, 0, reject_stage_values,
      "where to reject: \"connect\" (554 greeting) or \"rcpt\" (each recipient)" },
    { "reject_exempt_recipients", CFG_STRLIST, S(reject_exempt_recipients), "postmaster", 0, 0,
      NULL, "recipients never rejected at RCPT: \"local\", \"local@\", \"@domain\", an address" },
    { "allow_networks", CFG_STRLIST, S(allow_networks), "", 0, 0, NULL,
      "clients (CIDR) allow-listed at connect: every further check is skipped" },
    { "skip_authenticated", CFG_BOOL, S(skip_authenticated), "yes", 0, 0, NULL,
      "never reject authenticated clients" },
    { "skip_trusted", CFG_BOOL, S(skip_trusted), "yes", 0, 0, NULL,
      "no lookups and no reject for clients in relay.trusted_networks" },
    { "lists", CFG_GROUP, 0, NULL, 0, 0, NULL, "the DNS lists (see filters.dnsbl.lists.*)" },
    { .name = NULL },
};
#undef S

#define S(field) offsetof(struct dnsbl_list_settings, field)
static const struct cfg_key dnsbl_list_keys[] = {
    { "zone", CFG_STRING, S(zone), NULL, 0, 0, NULL, "the list's DNS zone (required)" },
    { "type", CFG_ENUM, S(type), "block", 0, 0, list_type_values,
      "\"block\" (symbol DNSBL_<ZONE>) or \"allow\" (symbol DNSWL_<ZONE>)" },
    { "score", CFG_DOUBLE, S(score), "1", -1000000, 1000000, NULL,
      "score of a listing (allow lists: usually negative)" },
    { "accept", CFG_BOOL, S(accept), "no", 0, 0, NULL,
      "allow lists: a listing skips every further check of the session" },
    { "ipv6", CFG_BOOL, S(ipv6), "yes", 0, 0, NULL, "ask the list about IPv6 clients" },
    { "codes", CFG_STRLIST, S(codes), "", 0, 0, NULL,
      "answers that count as listed, e.g. \"127.0.0.2\" (empty and mask 0 = any in 127/8)" },
    { "mask", CFG_INT, S(mask), "0", 0, 255, NULL,
      "answers whose last octet shares a bit with this count as listed (0 = not used)" },
    { .name = NULL },
};
#undef S

/* The setting of a key of group for error lines (the group when unset). */
static const config_setting_t *key_or_group(const config_setting_t *g, const char *key)
{
    const config_setting_t *s = config_setting_get_member(g, key);

    return s != NULL ? s : g;
}

static void check_list(const struct dnsbl_list_settings *l, const config_setting_t *e,
                       struct cfg_errors *errs)
{
    uint32_t code;

    if (l->zone == NULL || l->zone[0] == '\0')
        cfg_error_add(errs, e, "dnsbl list without a zone");
    if (l->accept && l->type != DNSBL_LIST_ALLOW)
        cfg_error_add(errs, key_or_group(e, "accept"),
                      "dnsbl: accept = true needs type = \"allow\"");
    for (size_t i = 0; i < l->codes.count; i++) {
        if (dnsbl_parse_code(l->codes.items[i], &code) < 0 || code >> 24 != 127)
            cfg_error_add(errs, key_or_group(e, "codes"),
                          "dnsbl: code \"%s\" is not an address in 127.0.0.0/8",
                          l->codes.items[i]);
    }
}

/* Two lists of one instance must not share a symbol name: the RCPT stage
 * finds its lists' listings by name. */
static void check_symbols(const struct dnsbl_settings *f, const config_setting_t *ls,
                          struct cfg_errors *errs)
{
    char a[FILTER_SYMBOL_NAME_MAX], b[FILTER_SYMBOL_NAME_MAX];

    for (size_t i = 0; i < f->list_count; i++) {
        const struct dnsbl_list_settings *li = &f->lists[i];
        if (li->zone == NULL)
            continue;
        dnsbl_symbol_name(li->type == DNSBL_LIST_ALLOW ? "DNSWL_" : "DNSBL_", li->zone, a,
                          sizeof(a));
        for (size_t j = 0; j < i; j++) {
            const struct dnsbl_list_settings *lj = &f->lists[j];
            if (lj->zone == NULL)
                continue;
            dnsbl_symbol_name(lj->type == DNSBL_LIST_ALLOW ? "DNSWL_" : "DNSBL_", lj->zone, b,
                              sizeof(b));
            if (strcmp(a, b) == 0)
                cfg_error_add(errs, config_setting_get_elem(ls, (unsigned)i),
                              "dnsbl: lists \"%s\" and \"%s\" both make symbol %s", lj->zone,
                              li->zone, a);
        }
    }
}

static void check_filter(const struct dnsbl_settings *f, const config_setting_t *g,
                         struct cfg_errors *errs)
{
    struct netaddr_cidr cidr;
    const char *why;

    for (size_t i = 0; i < f->allow_networks.count; i++) {
        if (netaddr_cidr_parse(f->allow_networks.items[i], &cidr, &why) < 0)
            cfg_error_add(errs, key_or_group(g, "allow_networks"),
                          "dnsbl: allow_networks: \"%s\": %s", f->allow_networks.items[i], why);
    }
    for (size_t i = 0; i < f->reject_exempt_recipients.count; i++) {
        const char *r = f->reject_exempt_recipients.items[i];
        if (r[0] == '\0' || strcmp(r, "@") == 0 || r[strcspn(r, " \t\r\n<>")] != '\0')
            cfg_error_add(errs, key_or_group(g, "reject_exempt_recipients"),
                          "dnsbl: reject_exempt_recipients: \"%s\" is not \"local\", "
                          "\"local@\", \"@domain\" or \"local@domain\"",
                          r);
    }
}

static void dnsbl_load(void *settings, const config_setting_t *g, struct cfg_errors *errs)
{
    struct dnsbl_settings *f = settings;
    const config_setting_t *ls = config_setting_get_member(g, "lists");
    int n = ls == NULL ? 0 : config_setting_length(ls);

    check_filter(f, g, errs);
    if (ls == NULL && f->allow_networks.count > 0)
        return; /* only an allow-list of networks */
    if (ls == NULL || config_setting_type(ls) != CONFIG_TYPE_LIST || n == 0) {
        cfg_error_add(errs, ls != NULL ? ls : g, "dnsbl: lists must be a list ( { zone = ...; } )");
        return;
    }
    if ((f->lists = calloc((size_t)n, sizeof(*f->lists))) == NULL)
        return;
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(ls, (unsigned)i);
        struct dnsbl_list_settings *l = &f->lists[f->list_count++];
        if (config_setting_type(e) != CONFIG_TYPE_GROUP) {
            cfg_error_add(errs, e, "each dnsbl list must be a group { ... }");
            continue;
        }
        cfg_section_load(e, dnsbl_list_keys, l, errs);
        check_list(l, e, errs);
    }
    check_symbols(f, ls, errs);
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

/*
 * module — how a filter plugs into Postern: its config table, how its
 * instance is made from the config, and what it may use while running.
 *
 * Every filter file defines one struct filter_module; registry.c lists them
 * all. A filter's settings struct starts with struct filter_common, and its
 * key table starts with FILTER_COMMON_KEYS, so that one cfg_section_load
 * reads the whole group `{ name = "greylist"; on_error = ...; ... }` with
 * unknown keys still an error naming file and line.
 *
 * Instances are made per worker process, on its event loop, with the
 * worker's shared resolver and state store (struct filter_env). Trusts its
 * callers (config loader, gateway) to pair create/destroy and load/free.
 */
#ifndef POSTERN_FILTER_MODULE_H
#define POSTERN_FILTER_MODULE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "filters/filter.h"
#include "lib/cfg.h"

struct event_base;
struct dns;
struct kv;

/* The keys every filter has, first in its settings struct. */
struct filter_common {
    char *name;     /* the module: "dnsbl" */
    char *id;       /* how listeners name this instance; default: name */
    int on_error;   /* enum filter_on_error */
    long long timeout; /* ms, per stage */
};

/* The order of enum filter_on_error. */
extern const char *const filter_on_error_values[];

#define FILTER_COMMON_KEYS(on_error_default, timeout_default)                                     \
    {"name", CFG_STRING, offsetof(struct filter_common, name), NULL, 0, 0, NULL,                  \
     "which filter (required)"},                                                                  \
    {"id", CFG_STRING, offsetof(struct filter_common, id), NULL, 0, 0, NULL,                      \
     "name of this instance for listeners' filters lists (default: name)"},                       \
    {"on_error", CFG_ENUM, offsetof(struct filter_common, on_error), on_error_default, 0, 0,      \
     filter_on_error_values, "when the filter fails or times out: tempfail, accept, skip, reject"}, \
    {"timeout", CFG_DURATION, offsetof(struct filter_common, timeout), timeout_default, 100,      \
     600000, NULL, "longest wait for the filter at one stage"}

/* A recipient verification by the downstream MTA (call-ahead), done by the
 * program that runs the chain (it knows the transports): status 1 = the
 * downstream accepts the recipient, 0 = it refuses it (5xx), -1 = unknown
 * (4xx, unreachable, timeout). Called back on the loop, never inside
 * verify(); cancel(handle) stops it (cb is then not called). */
typedef void filter_verify_cb(void *ctx, int status, const char *reply);
struct filter_verifier {
    void *(*verify)(void *vctx, const char *rcpt, filter_verify_cb *cb, void *ctx);
    void (*cancel)(void *vctx, void *handle);
    void *vctx;
};

/* What an instance may use; valid for the instance's whole life. */
struct filter_env {
    struct event_base *base;
    struct dns *dns;  /* the worker's resolver (with its cache) */
    struct kv *kv;    /* the state store; NULL when no filter declared uses_kv */
    const char *hostname;
    const struct filter_verifier *verifier; /* NULL when none */
};

struct filter_module {
    const char *name;
    const struct filter_ops *ops;
    const struct cfg_key *keys; /* FILTER_COMMON_KEYS first, then the filter's own */
    size_t settings_size;       /* struct starting with struct filter_common */
    bool uses_kv;               /* needs env->kv */
    /* After cfg_section_load: nested groups and checks across keys; errors
     * go to errs with the setting's line. May be NULL. */
    void (*load)(void *settings, const config_setting_t *group, struct cfg_errors *errs);
    /* Frees what load allocated (cfg_section_free does the table's keys). May be NULL. */
    void (*free_settings)(void *settings);
    /* Prints the nested tables' keys for --list-keys. May be NULL. */
    void (*describe)(FILE *out);
    /* Makes an instance for one worker. Returns 0, or -1 with error. */
    int (*create)(const struct filter_env *env, const void *settings, void **instance,
                  char *error, size_t errsize);
    void (*destroy)(void *instance);
};

/* The registry (registry.c): every filter module, NULL-terminated. */
extern const struct filter_module *const filter_modules[];
const struct filter_module *filter_module_find(const char *name);

#endif

/*
 * milter-config — the milter filter's module (module.h): its config table,
 * the checks the table alone cannot make (the address, the macro names,
 * the per-step timeouts against the chain's timeout), each an error naming
 * the setting's line; and the milter address parser.
 *
 * Trusts libconfig and lib/cfg for types and ranges; validates the rest.
 */
#include "config.h"
#include "filters/milter.h"
#include "filters/milter-private.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

/* Postfix's defaults, less the macros Postern cannot fill ({daemon_addr},
 * TLS), plus the client's address and name at connect. */
#define S(field) offsetof(struct milter_settings, field)
#define M(stage) (offsetof(struct milter_settings, macros) + (stage) * sizeof(struct cfg_strlist))
static const struct cfg_key milter_keys[] = {
    FILTER_COMMON_KEYS("tempfail", "10m"),
    {"address", CFG_STRING, S(address), NULL, 0, 0, NULL,
     "the milter's socket: \"inet:127.0.0.1:8891\", \"inet6:[::1]:8891\", \"unix:/path\" "
     "(required)"},
    {"connect_timeout", CFG_DURATION, S(connect_timeout), "30s", 100, 3600000, NULL,
     "longest wait to connect and negotiate options"},
    {"command_timeout", CFG_DURATION, S(command_timeout), "30s", 100, 3600000, NULL,
     "longest wait for the reply to one command"},
    {"content_timeout", CFG_DURATION, S(content_timeout), "5m", 100, 3600000, NULL,
     "longest wait for the end-of-message reply (each progress starts it again)"},
    {"idle_timeout", CFG_DURATION, S(idle_timeout), "10s", 100, 3600000, NULL,
     "a connection idle this long is closed (QUIT); a session that comes back is replayed"},
    {"connect_macros", CFG_STRLIST, M(MILTER_M_CONNECT),
     "j {daemon_name} v _ {client_addr} "
     "{client_name}",
     0, 0, NULL, "macros sent with connect"},
    {"helo_macros", CFG_STRLIST, M(MILTER_M_HELO), "", 0, 0, NULL, "macros sent with helo"},
    {"mail_macros", CFG_STRLIST, M(MILTER_M_MAIL), "i {auth_authen} {mail_addr}", 0, 0, NULL,
     "macros sent with mail"},
    {"rcpt_macros", CFG_STRLIST, M(MILTER_M_RCPT), "i {rcpt_addr}", 0, 0, NULL,
     "macros sent with each rcpt"},
    {"data_macros", CFG_STRLIST, M(MILTER_M_DATA), "i", 0, 0, NULL, "macros sent with data"},
    {"eoh_macros", CFG_STRLIST, M(MILTER_M_EOH), "i", 0, 0, NULL, "macros sent with end of header"},
    {"eom_macros", CFG_STRLIST, M(MILTER_M_EOM), "i", 0, 0, NULL,
     "macros sent with end of message"},
    {.name = NULL},
};
#undef S
#undef M

/* ---- addresses ---- */

static int parse_port(const char *text, size_t len, uint16_t *port)
{
    unsigned long v = 0;

    if (len == 0 || len > 5)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (text[i] < '0' || text[i] > '9')
            return -1;
        v = v * 10 + (unsigned long)(text[i] - '0');
    }
    if (v == 0 || v > 65535)
        return -1;
    *port = (uint16_t)v;
    return 0;
}

static int inet_host(const char *host, size_t len, uint16_t port, struct milter_address *out)
{
    char buf[INET6_ADDRSTRLEN + 1];
    struct sockaddr_in *sin = (struct sockaddr_in *)&out->sa;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->sa;

    if (len >= 2 && host[0] == '[' && host[len - 1] == ']') {
        host++;
        len -= 2;
    }
    if (len == 0 || len >= sizeof(buf))
        return -1;
    memcpy(buf, host, len);
    buf[len] = '\0';
    if (strcmp(buf, "localhost") == 0)
        snprintf(buf, sizeof(buf), "127.0.0.1");
    memset(&out->sa, 0, sizeof(out->sa));
    out->tcp = true;
    if (inet_pton(AF_INET, buf, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        out->len = sizeof(*sin);
        return 0;
    }
    if (inet_pton(AF_INET6, buf, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        out->len = sizeof(*sin6);
        return 0;
    }
    return -1;
}

/* "HOST:PORT", "[ADDR]:PORT" or Sendmail's "PORT@HOST". */
static int parse_inet(const char *t, struct milter_address *out, const char **error_r)
{
    const char *at = strchr(t, '@');
    const char *colon = strrchr(t, ':');
    uint16_t port;

    if (at != NULL) {
        if (parse_port(t, (size_t)(at - t), &port) < 0) {
            *error_r = "bad port";
            return -1;
        }
        if (inet_host(at + 1, strlen(at + 1), port, out) < 0) {
            *error_r = "host must be a numeric address or localhost";
            return -1;
        }
        return 0;
    }
    if (colon == NULL || parse_port(colon + 1, strlen(colon + 1), &port) < 0) {
        *error_r = "expected HOST:PORT with a port from 1 to 65535";
        return -1;
    }
    if (inet_host(t, (size_t)(colon - t), port, out) < 0) {
        *error_r = "host must be a numeric address (IPv6 in brackets) or localhost";
        return -1;
    }
    return 0;
}

static int parse_unix(const char *path, struct milter_address *out, const char **error_r)
{
    struct sockaddr_un *sun = (struct sockaddr_un *)&out->sa;

    if (path[0] != '/') {
        *error_r = "a unix socket needs an absolute path";
        return -1;
    }
    if (strlen(path) >= sizeof(sun->sun_path)) {
        *error_r = "unix socket path too long";
        return -1;
    }
    memset(&out->sa, 0, sizeof(out->sa));
    sun->sun_family = AF_UNIX;
    memcpy(sun->sun_path, path, strlen(path) + 1);
    out->len = (socklen_t)sizeof(*sun);
    out->tcp = false;
    return 0;
}

int milter_address_parse(const char *text, struct milter_address *out, const char **error_r)
{
    static const char *const inet_prefixes[] = {"inet:", "inet6:", "tcp:"};
    static const char *const unix_prefixes[] = {"unix:", "local:"};

    if (text == NULL || text[0] == '\0') {
        *error_r = "empty address";
        return -1;
    }
    for (size_t i = 0; i < sizeof(inet_prefixes) / sizeof(inet_prefixes[0]); i++) {
        size_t n = strlen(inet_prefixes[i]);
        if (strncmp(text, inet_prefixes[i], n) == 0)
            return parse_inet(text + n, out, error_r);
    }
    for (size_t i = 0; i < sizeof(unix_prefixes) / sizeof(unix_prefixes[0]); i++) {
        size_t n = strlen(unix_prefixes[i]);
        if (strncmp(text, unix_prefixes[i], n) == 0)
            return parse_unix(text + n, out, error_r);
    }
    if (text[0] == '/')
        return parse_unix(text, out, error_r);
    return parse_inet(text, out, error_r);
}

/* ---- the module ---- */

static const config_setting_t *key_or_group(const config_setting_t *g, const char *key)
{
    const config_setting_t *s = config_setting_get_member(g, key);

    return s != NULL ? s : g;
}

static void check_macros(const struct milter_settings *f, const config_setting_t *g,
                         struct cfg_errors *errs)
{
    for (size_t st = 0; st < MILTER_M_COUNT; st++) {
        struct milter_names n = {0};
        if (milter_names_set(&n, (const char *const *)f->macros[st].items, f->macros[st].count,
                             false) < 0)
            cfg_error_add(errs, g, "milter: out of memory");
        for (size_t i = 0; i < n.count; i++)
            if (!milter_macro_known(n.names[i]))
                cfg_error_add(errs, key_or_group(g, milter_macro_key(st)),
                              "milter: %s: unknown macro \"%s\" (known: %s)", milter_macro_key(st),
                              n.names[i], MILTER_MACROS_KNOWN);
        milter_names_free(&n);
    }
}

static void milter_load(void *settings, const config_setting_t *g, struct cfg_errors *errs)
{
    struct milter_settings *f = settings;
    struct milter_address a;
    const char *why;

    if (f->address == NULL)
        cfg_error_add(errs, g, "milter: address is required");
    else if (milter_address_parse(f->address, &a, &why) < 0)
        cfg_error_add(errs, key_or_group(g, "address"), "milter: address \"%s\": %s", f->address,
                      why);
    if (f->content_timeout > f->common.timeout)
        cfg_error_add(errs, key_or_group(g, "content_timeout"),
                      "milter: content_timeout (%lld ms) is longer than timeout (%lld ms), which "
                      "bounds each stage as a whole",
                      f->content_timeout, f->common.timeout);
    check_macros(f, g, errs);
}

static int milter_create(const struct filter_env *env, const void *settings, void **instance,
                         char *error, size_t errsize)
{
    return milter_new(env->base, env->hostname, settings, (struct milter **)instance, error,
                      errsize);
}

static void milter_destroy(void *instance)
{
    struct milter *m = instance;

    milter_free(&m);
}

const struct filter_module milter_module = {
    .name = "milter",
    .ops = &milter_filter_ops,
    .keys = milter_keys,
    .settings_size = sizeof(struct milter_settings),
    .load = milter_load,
    .create = milter_create,
    .destroy = milter_destroy,
};

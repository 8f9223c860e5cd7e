/*
 * server-config — see server-config.h. The tables below are the single
 * place where posternd's keys, defaults and ranges are declared; the
 * annotated conf/postern.conf documents the same keys (a test compares them).
 */
#include "config.h"
#include "gateway/server-config.h"

#include <libgen.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <event2/util.h>

#include "lib/passwd.h"
#include "lib/tls.h"

#define SEC(n) ((long long)(n) * 1000)
#define S(field) offsetof(struct server_settings, field)
static const struct cfg_key server_keys[] = {
    { "hostname", CFG_STRING, S(hostname), NULL, 0, 0, NULL,
      "name in the greeting and Received: headers (default: the system host name)" },
    { "user", CFG_STRING, S(user), "postern", 0, 0, NULL,
      "user the workers run as when started as root" },
    { "group", CFG_STRING, S(group), NULL, 0, 0, NULL, "group (default: the user's group)" },
    { "workers", CFG_INT, S(workers), "0", 0, 64, NULL, "SMTP worker processes (0 = one per CPU)" },
    { "spool_dir", CFG_STRING, S(spool_dir), LOCALSTATEDIR "/spool/postern", 0, 0, NULL,
      "the durable queue" },
    { "spool_min_free", CFG_SIZE, S(spool_min_free), "100M", 0, 1LL << 50, NULL,
      "free space below which MAIL gets 452 4.3.1 (checked with SIZE added)" },
    { "pid_file", CFG_STRING, S(pid_file), NULL, 0, 0, NULL, "master's pid file (none by default)" },
    { "log_target", CFG_STRING, S(log_target), "stderr", 0, 0, NULL, "stderr or syslog" },
    { "log_facility", CFG_STRING, S(log_facility), "mail", 0, 0, NULL, "syslog facility" },
    { "log_level", CFG_STRING, S(log_level), "info", 0, 0, NULL, "error, warning, info or debug" },
    { "shutdown_grace", CFG_DURATION, S(shutdown_grace), "10s", 0, SEC(3600), NULL,
      "how long SIGTERM waits for commits in flight" },
    { .name = NULL },
};
#undef S

static const char *const bare_values[] = { "reject", "normalize", NULL };

#define S(field) offsetof(struct smtp_settings, field)
static const struct cfg_key smtp_keys[] = {
    { "banner", CFG_STRING, S(banner), "ESMTP Postern", 0, 0, NULL, "greeting text after the host name" },
    { "line_limit", CFG_SIZE, S(line_limit), "2048", 512, 1 << 20, NULL,
      "longest command line (500 5.5.2 beyond)" },
    { "data_line_limit", CFG_SIZE, S(data_line_limit), "64K", 1000, 1 << 30, NULL,
      "longest message line" },
    { "message_size_limit", CFG_SIZE, S(message_size_limit), "25M", 1024, 1LL << 40, NULL,
      "largest message (SIZE and actual octets, 552 5.3.4)" },
    { "recipient_limit", CFG_INT, S(recipient_limit), "1000", 1, 100000, NULL,
      "recipients per message (452 4.5.3 beyond)" },
    { "hop_limit", CFG_INT, S(hop_limit), "50", 1, 1000, NULL,
      "most Received: headers a message may carry (554 5.4.6 beyond: a mail loop)" },
    { "error_limit", CFG_INT, S(error_limit), "20", 1, 1000, NULL,
      "errors per session before 421 and disconnect" },
    { "command_timeout", CFG_DURATION, S(command_timeout), "300s", 100, SEC(3600), NULL,
      "idle time allowed while waiting for a command or data" },
    { "data_timeout", CFG_DURATION, S(data_timeout), "10m", 100, SEC(86400), NULL,
      "longest time for a whole DATA or BDAT transfer" },
    { "min_data_rate", CFG_SIZE, S(min_data_rate), "500", 0, 1 << 30, NULL,
      "bytes per second a client must keep up during DATA (0 = off)" },
    { "max_sessions", CFG_INT, S(max_sessions), "1000", 1, 1000000, NULL,
      "concurrent sessions over all workers" },
    { "max_sessions_per_ip", CFG_INT, S(max_sessions_per_ip), "50", 0, 1000000, NULL,
      "concurrent sessions per client address (0 = off; trusted networks exempt)" },
    { "connection_rate_limit", CFG_INT, S(connection_rate_limit), "120", 0, 1000000, NULL,
      "connections per client address per minute (0 = off; trusted networks exempt)" },
    { "bare_newline", CFG_ENUM, S(bare_newline), "reject", 0, 0, bare_values,
      "bare CR or LF in message data: reject (550 5.5.2) or normalize to CRLF" },
    { "xclient_hosts", CFG_STRLIST, S(xclient_hosts), "", 0, 0, NULL,
      "networks allowed to use XCLIENT" },
    { "smtputf8", CFG_BOOL, S(smtputf8), "yes", 0, 0, NULL, "offer SMTPUTF8 (RFC 6531)" },
    { "dsn", CFG_BOOL, S(dsn), "yes", 0, 0, NULL, "offer DSN (RFC 3461)" },
    { "chunking", CFG_BOOL, S(chunking), "yes", 0, 0, NULL, "offer CHUNKING/BDAT (RFC 3030)" },
    { "reverse_lookup", CFG_BOOL, S(reverse_lookup), "yes", 0, 0, NULL,
      "look up the client's name (PTR, confirmed by A/AAAA); else \"unknown\"" },
    { .name = NULL },
};
#undef S

#define S(field) offsetof(struct relay_settings, field)
static const struct cfg_key relay_keys[] = {
    { "local_domains", CFG_STRLIST, S(local_domains), "", 0, 0, NULL,
      "domains this gateway accepts mail for from anyone" },
    { "trusted_networks", CFG_STRLIST, S(trusted_networks), "127.0.0.0/8, ::1/128", 0, 0, NULL,
      "clients allowed to relay to any domain without AUTH" },
    { .name = NULL },
};
#undef S

#define S(field) offsetof(struct tls_settings, field)
static const struct cfg_key tls_keys[] = {
    { "cert_file", CFG_STRING, S(cert_file), NULL, 0, 0, NULL, "PEM certificate chain" },
    { "key_file", CFG_STRING, S(key_file), NULL, 0, 0, NULL, "PEM private key" },
    { .name = NULL },
};
#undef S

#define S(field) offsetof(struct auth_settings, field)
static const struct cfg_key auth_keys[] = {
    { "passwd_file", CFG_STRING, S(passwd_file), NULL, 0, 0, NULL,
      "Dovecot-style passwd-file with crypt(3) hashes" },
    { "threads", CFG_INT, S(threads), "2", 1, 64, NULL, "password-checking threads per worker" },
    { .name = NULL },
};
#undef S

#define S(field) offsetof(struct dns_settings, field)
static const struct cfg_key dns_keys[] = {
    { "nameservers", CFG_STRLIST, S(nameservers), "", 0, 0, NULL,
      "resolvers: \"127.0.0.1\", \"127.0.0.1:5353\", \"[::1]:53\" (empty = /etc/resolv.conf)" },
    { "timeout", CFG_DURATION, S(timeout), "2s", 100, SEC(60), NULL, "per try" },
    { "attempts", CFG_INT, S(attempts), "2", 1, 10, NULL, "tries per query" },
    { "cache_size", CFG_INT, S(cache_size), "10000", 0, 10000000, NULL,
      "answers cached per worker (0 = no cache)" },
    { "cache_max_ttl", CFG_DURATION, S(cache_max_ttl), "1h", 1000, SEC(86400), NULL,
      "longest time an answer is cached, whatever its TTL" },
    { .name = NULL },
};
#undef S

static const char *const role_values[] = { "mx", "submission", "submissions", NULL };
static const char *const proxy_values[] = { "off", "v1", "v2", "any", NULL };

#define S(field) offsetof(struct listener_settings, field)
static const struct cfg_key listener_keys[] = {
    { "name", CFG_STRING, S(name), NULL, 0, 0, NULL, "listener name for logs (required)" },
    { "role", CFG_ENUM, S(role), "mx", 0, 0, role_values,
      "mx, submission (STARTTLS+AUTH required) or submissions (implicit TLS)" },
    { "address", CFG_STRLIST, S(address), NULL, 0, 0, NULL,
      "addresses to bind: \"127.0.0.1:25\", \"[::1]:25\", \"*:25\" (required)" },
    { "proxy_protocol", CFG_ENUM, S(proxy_protocol), "off", 0, 0, proxy_values,
      "expect a PROXY header: off, v1, v2 or any" },
    { "starttls", CFG_BOOL, S(starttls), "yes", 0, 0, NULL, "offer STARTTLS when tls has a cert" },
    { "auth", CFG_BOOL, S(auth), "no", 0, 0, NULL,
      "offer AUTH on an mx listener (submission roles always do)" },
    { "auth_without_tls", CFG_BOOL, S(auth_without_tls), "no", 0, 0, NULL,
      "offer AUTH before TLS (not for the internet)" },
    { "greet_pause", CFG_DURATION, S(greet_pause), "0", 0, SEC(60), NULL,
      "wait before the greeting; a client that talks first is rejected" },
    { "filters", CFG_STRLIST, S(filters), "", 0, 0, NULL,
      "ids of the filters this listener runs, in order (empty = all; [\"none\"] = none)" },
    { .name = NULL },
};
#undef S

static const struct {
    const char *name;
    const struct cfg_key *keys;
    size_t offset;
} sections[] = {
    { "server", server_keys, offsetof(struct postern_config, server) },
    { "smtp", smtp_keys, offsetof(struct postern_config, smtp) },
    { "relay", relay_keys, offsetof(struct postern_config, relay) },
    { "tls", tls_keys, offsetof(struct postern_config, tls) },
    { "auth", auth_keys, offsetof(struct postern_config, auth) },
    { "dns", dns_keys, offsetof(struct postern_config, dns) },
};
#define N_SECTIONS (sizeof(sections) / sizeof(sections[0]))

void postern_config_describe(FILE *out)
{
    for (size_t i = 0; i < N_SECTIONS; i++)
        cfg_section_describe(out, sections[i].name, sections[i].keys);
    cfg_section_describe(out, "listeners", listener_keys);
    filter_config_describe(out);
    relay_config_describe(out);
}

static void check_top_level(const config_t *cf, struct cfg_errors *errs)
{
    const config_setting_t *root = config_root_setting(cf);

    for (int i = 0; i < config_setting_length(root); i++) {
        const config_setting_t *s = config_setting_get_elem(root, i);
        const char *name = config_setting_name(s);
        bool known = strcmp(name, "listeners") == 0 || strcmp(name, "transports") == 0 ||
                     strcmp(name, "queue") == 0 || strcmp(name, "filters") == 0 ||
                     strcmp(name, "state") == 0 || strcmp(name, "policy") == 0;
        for (size_t j = 0; j < N_SECTIONS; j++)
            known = known || strcmp(name, sections[j].name) == 0;
        if (!known)
            cfg_error_add(errs, s, "unknown section \"%s\"", name);
        else if (config_setting_type(s) != CONFIG_TYPE_GROUP && strcmp(name, "listeners") != 0 &&
                 strcmp(name, "transports") != 0 && strcmp(name, "filters") != 0)
            cfg_error_add(errs, s, "%s must be a group { ... }", name);
    }
}

/* "*:25" means every address; libevent parses the rest. */
int postern_listener_address_parse(const char *text, struct sockaddr_storage *ss, int *len,
                                   int wildcard_v6)
{
    char buf[300];

    if (strncmp(text, "*:", 2) == 0) {
        snprintf(buf, sizeof(buf), "%s:%s", wildcard_v6 ? "[::]" : "0.0.0.0", text + 2);
        text = buf;
    }
    *len = (int)sizeof(*ss);
    return evutil_parse_sockaddr_port(text, (struct sockaddr *)ss, len);
}

static void load_listener(struct postern_config *cfg, const config_setting_t *g,
                          struct cfg_errors *errs)
{
    struct listener_settings *l = &cfg->listeners[cfg->listener_count++];

    cfg_section_load(g, listener_keys, l, errs);
    if (l->name == NULL)
        cfg_error_add(errs, g, "listener without a name");
    if (l->address.count == 0)
        cfg_error_add(errs, g, "listener %s: address is required", l->name ? l->name : "?");
    for (size_t i = 0; i < l->address.count; i++) {
        struct sockaddr_storage ss;
        int len;
        if (postern_listener_address_parse(l->address.items[i], &ss, &len, 0) < 0)
            cfg_error_add(errs, g, "listener %s: bad address \"%s\" (want host:port)",
                          l->name ? l->name : "?", l->address.items[i]);
    }
    for (size_t i = 0; l->name != NULL && i + 1 < cfg->listener_count; i++) {
        if (strcmp(cfg->listeners[i].name, l->name) == 0)
            cfg_error_add(errs, g, "listener name \"%s\" used twice", l->name);
    }
    const config_setting_t *fl = config_setting_get_member(g, "filters");
    int n = filter_config_chain(&cfg->filtering, &l->filters, fl != NULL ? fl : g, &l->chain, errs);
    l->chain_len = n < 0 ? 0 : (size_t)n;
}

static void load_listeners(struct postern_config *cfg, const config_t *cf, struct cfg_errors *errs)
{
    const config_setting_t *ls = config_lookup(cf, "listeners");
    int n = ls == NULL ? 0 : config_setting_length(ls);

    if (ls != NULL && config_setting_type(ls) != CONFIG_TYPE_LIST) {
        cfg_error_add(errs, ls, "listeners must be a list ( { ... }, { ... } )");
        return;
    }
    if (n == 0) {
        cfg_error_add(errs, ls, "no listeners configured");
        return;
    }
    cfg->listeners = calloc((size_t)n, sizeof(*cfg->listeners));
    for (int i = 0; cfg->listeners != NULL && i < n; i++) {
        const config_setting_t *g = config_setting_get_elem(ls, i);
        if (config_setting_type(g) != CONFIG_TYPE_GROUP)
            cfg_error_add(errs, g, "each listener must be a group { ... }");
        else
            load_listener(cfg, g, errs);
    }
}

static void load_netlist(struct netaddr_list *out, const struct cfg_strlist *in,
                         const config_t *cf, const char *path, struct cfg_errors *errs)
{
    for (size_t i = 0; i < in->count; i++) {
        const char *error;
        if (netaddr_list_add(out, in->items[i], &error) < 0)
            cfg_error_add(errs, config_lookup(cf, path), "%s: \"%s\": %s", path, in->items[i],
                          error);
    }
}

static void derive_tls_auth(struct postern_config *cfg, const config_t *cf, struct cfg_errors *errs)
{
    char err[512];

    if ((cfg->tls.cert_file == NULL) != (cfg->tls.key_file == NULL))
        cfg_error_add(errs, config_lookup(cf, "tls"), "tls: cert_file and key_file go together");
    else if (cfg->tls.cert_file != NULL &&
             (cfg->tls_ctx = tls_server_ctx_new(cfg->tls.cert_file, cfg->tls.key_file, err,
                                                sizeof(err))) == NULL)
        cfg_error_add(errs, config_lookup(cf, "tls.cert_file"), "%s", err);
    if (cfg->auth.passwd_file != NULL &&
        passwd_db_load(cfg->auth.passwd_file, &cfg->passwd, err, sizeof(err)) < 0)
        cfg_error_add(errs, config_lookup(cf, "auth.passwd_file"), "%s", err);
    for (size_t i = 0; i < cfg->listener_count; i++) {
        const struct listener_settings *l = &cfg->listeners[i];
        if (l->role != ROLE_MX && cfg->tls.cert_file == NULL)
            cfg_error_add(errs, config_lookup(cf, "listeners"),
                          "listener %s: role %s needs tls.cert_file", l->name ? l->name : "?",
                          role_values[l->role]);
        if ((l->role != ROLE_MX || l->auth) && cfg->auth.passwd_file == NULL)
            cfg_error_add(errs, config_lookup(cf, "listeners"),
                          "listener %s: AUTH needs auth.passwd_file", l->name ? l->name : "?");
    }
}

static void derive(struct postern_config *cfg, const config_t *cf, struct cfg_errors *errs)
{
    char host[256];

    if (cfg->server.hostname == NULL && gethostname(host, sizeof(host)) == 0) {
        host[sizeof(host) - 1] = '\0';
        cfg->server.hostname = strdup(host);
    }
    load_netlist(&cfg->trusted, &cfg->relay.trusted_networks, cf, "relay.trusted_networks", errs);
    load_netlist(&cfg->xclient, &cfg->smtp.xclient_hosts, cf, "smtp.xclient_hosts", errs);
    derive_tls_auth(cfg, cf, errs);
}

static int read_file(config_t *cf, const char *path, struct cfg_errors *errs)
{
    char *copy = strdup(path);

    config_init(cf);
    if (copy != NULL)
        config_set_include_dir(cf, dirname(copy));
    free(copy);
    if (config_read_file(cf, path) == CONFIG_TRUE)
        return 0;
    if (config_error_type(cf) == CONFIG_ERR_FILE_IO)
        cfg_error_add(errs, NULL, "%s: cannot read the file", path);
    else
        cfg_error_add(errs, NULL, "%s:%d: %s",
                      config_error_file(cf) ? config_error_file(cf) : path,
                      config_error_line(cf), config_error_text(cf));
    return -1;
}

struct postern_config *postern_config_load(const char *path, struct cfg_errors *errs)
{
    config_t cf;
    struct postern_config *cfg;
    size_t before = errs->count;

    if (read_file(&cf, path, errs) < 0) {
        config_destroy(&cf);
        return NULL;
    }
    cfg = calloc(1, sizeof(*cfg));
    if (cfg == NULL) {
        config_destroy(&cf);
        return NULL;
    }
    cfg->path = strdup(path);
    check_top_level(&cf, errs);
    for (size_t i = 0; i < N_SECTIONS; i++)
        cfg_section_load(config_lookup(&cf, sections[i].name), sections[i].keys,
                         (char *)cfg + sections[i].offset, errs);
    filter_config_load(&cfg->filtering, &cf, errs);
    load_listeners(cfg, &cf, errs);
    relay_config_load(&cfg->delivery, &cf, errs);
    if (errs->count == before)
        derive(cfg, &cf, errs);
    config_destroy(&cf);
    if (errs->count != before)
        postern_config_free(&cfg);
    return cfg;
}

void postern_config_free(struct postern_config **cfgp)
{
    struct postern_config *cfg = *cfgp;

    if (cfg == NULL)
        return;
    for (size_t i = 0; i < N_SECTIONS; i++)
        cfg_section_free(sections[i].keys, (char *)cfg + sections[i].offset);
    for (size_t i = 0; i < cfg->listener_count; i++) {
        cfg_section_free(listener_keys, &cfg->listeners[i]);
        free(cfg->listeners[i].chain);
    }
    free(cfg->listeners);
    filter_config_free(&cfg->filtering);
    relay_config_free(&cfg->delivery);
    netaddr_list_free(&cfg->trusted);
    netaddr_list_free(&cfg->xclient);
    SSL_CTX_free(cfg->tls_ctx);
    passwd_db_free(&cfg->passwd);
    free(cfg->path);
    free(cfg);
    *cfgp = NULL;
}

bool postern_config_local_domain(const struct postern_config *cfg, const char *domain)
{
    for (size_t i = 0; i < cfg->relay.local_domains.count; i++) {
        if (strcasecmp(cfg->relay.local_domains.items[i], domain) == 0)
            return true;
    }
    return false;
}

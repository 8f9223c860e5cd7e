/*
 * relay-config — see relay-config.h.
 */
#include "config.h"
#include "relay/relay-config.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "relay/smtp-client.h"

#define SEC(n) ((long long)(n) * 1000)
static const char *const tls_values[] = { "none", "may", "required", "verify", NULL };

#define S(field) offsetof(struct queue_settings, field)
static const struct cfg_key queue_keys[] = {
    { "min_backoff", CFG_DURATION, S(min_backoff), "300s", SEC(1), SEC(86400), NULL,
      "first retry delay; it doubles per attempt" },
    { "max_backoff", CFG_DURATION, S(max_backoff), "4000s", SEC(1), SEC(86400), NULL,
      "longest delay between retries" },
    { "lifetime", CFG_DURATION, S(lifetime), "5d", SEC(1), SEC(86400 * 60), NULL,
      "how long a message is retried before it bounces" },
    { "delay_warning", CFG_DURATION, S(delay_warning), "4h", 0, SEC(86400 * 60), NULL,
      "send a delayed-delivery DSN after this long (0 = never)" },
    { "concurrency", CFG_INT, S(concurrency), "100", 1, 10000, NULL,
      "deliveries in flight in total" },
    { "destination_concurrency", CFG_INT, S(destination_concurrency), "20", 1, 1000, NULL,
      "deliveries in flight per next hop" },
    { "messages_per_connection", CFG_INT, S(messages_per_connection), "100", 1, 100000, NULL,
      "messages sent over one connection before it is closed" },
    { "connect_timeout", CFG_DURATION, S(connect_timeout), "30s", 100, SEC(600), NULL,
      "TCP connect and greeting" },
    { "command_timeout", CFG_DURATION, S(command_timeout), "300s", 100, SEC(3600), NULL,
      "each command's reply" },
    { "data_timeout", CFG_DURATION, S(data_timeout), "10m", 100, SEC(86400), NULL,
      "sending the content and its final reply" },
    { "idle_timeout", CFG_DURATION, S(idle_timeout), "5s", 0, SEC(600), NULL,
      "how long an idle connection is kept for reuse" },
    { "tls", CFG_ENUM, S(tls), "may", 0, 0, tls_values,
      "outbound STARTTLS: none, may (opportunistic), required, verify" },
    { "ca_file", CFG_STRING, S(ca_file), NULL, 0, 0, NULL,
      "CA certificates for tls = verify (default: the system store)" },
    { "helo_name", CFG_STRING, S(helo_name), NULL, 0, 0, NULL,
      "name in EHLO (default: server.hostname)" },
    { "bounce_return_limit", CFG_SIZE, S(bounce_return_limit), "50K", 0, 1LL << 30, NULL,
      "largest original returned whole in a bounce (else headers only)" },
    { "scan_interval", CFG_DURATION, S(scan_interval), "60s", 100, SEC(3600), NULL,
      "how often the queue directory is scanned besides notifications" },
    { .name = NULL },
};
#undef S

struct transport_text {
    char *domain, *nexthop, *tls_name, *auth_user, *auth_password;
    int tls;
};
static const char *const tls_values_default[] = { "default", "none", "may", "required", "verify",
                                                  NULL };

#define S(field) offsetof(struct transport_text, field)
static const struct cfg_key transport_keys[] = {
    { "domain", CFG_STRING, S(domain), NULL, 0, 0, NULL,
      "recipient domain, \".example.com\" for subdomains, or \"*\" (required)" },
    { "nexthop", CFG_STRING, S(nexthop), NULL, 0, 0, NULL,
      "smtp:[host]:port, smtp:domain, lmtp:[host]:port, lmtp:unix:/path or local (required)" },
    { "tls", CFG_ENUM, S(tls), "default", 0, 0, tls_values_default,
      "override queue.tls for this destination" },
    { "tls_name", CFG_STRING, S(tls_name), NULL, 0, 0, NULL,
      "certificate name to verify (default: the next hop's host)" },
    { "auth_user", CFG_STRING, S(auth_user), NULL, 0, 0, NULL, "AUTH PLAIN user for a smarthost" },
    { "auth_password", CFG_STRING, S(auth_password), NULL, 0, 0, NULL, "AUTH PLAIN password" },
    { .name = NULL },
};
#undef S

void relay_config_describe(FILE *out)
{
    cfg_section_describe(out, "queue", queue_keys);
    cfg_section_describe(out, "transports", transport_keys);
}

static void load_transport(struct relay_config *rc, const config_setting_t *g,
                           struct cfg_errors *errs)
{
    struct transport_text t = { 0 };
    struct transport_entry *e = &rc->transports.entries[rc->transports.count];
    const char *error;

    cfg_section_load(g, transport_keys, &t, errs);
    if (t.domain == NULL || t.nexthop == NULL) {
        cfg_error_add(errs, g, "a transport needs domain and nexthop");
    } else if (nexthop_parse(t.nexthop, &e->nexthop, &error) < 0) {
        cfg_error_add(errs, g, "nexthop \"%s\": %s", t.nexthop, error);
    } else {
        e->domain = t.domain;
        e->tls = t.tls - 1; /* "default" = -1 */
        e->tls_name = t.tls_name;
        e->auth_user = t.auth_user;
        e->auth_password = t.auth_password;
        t.domain = t.tls_name = t.auth_user = t.auth_password = NULL;
        rc->transports.count++;
    }
    cfg_section_free(transport_keys, &t);
}

static void load_client_tls(struct relay_config *rc, const config_t *cf, struct cfg_errors *errs)
{
    rc->client_tls = SSL_CTX_new(TLS_client_method());
    if (rc->client_tls == NULL)
        return;
    SSL_CTX_set_min_proto_version(rc->client_tls, TLS1_2_VERSION);
    if (rc->queue.ca_file != NULL
            ? SSL_CTX_load_verify_locations(rc->client_tls, rc->queue.ca_file, NULL) != 1
            : SSL_CTX_set_default_verify_paths(rc->client_tls) != 1)
        cfg_error_add(errs, config_lookup(cf, "queue.ca_file"), "cannot load CA certificates %s",
                      rc->queue.ca_file ? rc->queue.ca_file : "(system)");
}

void relay_config_load(struct relay_config *rc, const config_t *cf, struct cfg_errors *errs)
{
    const config_setting_t *ts = config_lookup(cf, "transports");
    int n = ts == NULL ? 0 : config_setting_length(ts);

    memset(rc, 0, sizeof(*rc));
    cfg_section_load(config_lookup(cf, "queue"), queue_keys, &rc->queue, errs);
    if (ts != NULL && config_setting_type(ts) != CONFIG_TYPE_LIST) {
        cfg_error_add(errs, ts, "transports must be a list ( { ... }, ... )");
        n = 0;
    }
    if (n > 0 && (rc->transports.entries = calloc((size_t)n, sizeof(struct transport_entry))) == NULL)
        n = 0;
    for (int i = 0; i < n; i++) {
        const config_setting_t *g = config_setting_get_elem(ts, i);
        if (config_setting_type(g) != CONFIG_TYPE_GROUP)
            cfg_error_add(errs, g, "each transport must be a group { ... }");
        else
            load_transport(rc, g, errs);
    }
    load_client_tls(rc, cf, errs);
}

void relay_config_free(struct relay_config *rc)
{
    cfg_section_free(queue_keys, &rc->queue);
    for (size_t i = 0; i < rc->transports.count; i++) {
        struct transport_entry *e = &rc->transports.entries[i];
        free(e->domain);
        free(e->tls_name);
        free(e->auth_user);
        free(e->auth_password);
    }
    free(rc->transports.entries);
    SSL_CTX_free(rc->client_tls);
    memset(rc, 0, sizeof(*rc));
}

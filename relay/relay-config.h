/*
 * relay-config — the queue manager's part of posternd's configuration:
 * the `queue` section (retries, lifetimes, concurrency, timeouts, TLS and
 * DSN defaults) and the `transports` list (next hop per recipient domain).
 * Tables here, loaded by gateway/server-config.c with the rest of the file.
 */
#ifndef POSTERN_RELAY_CONFIG_H
#define POSTERN_RELAY_CONFIG_H

#include <libconfig.h>
#include <openssl/ssl.h>

#include "lib/cfg.h"
#include "relay/transport.h"

struct queue_settings {
    long long min_backoff, max_backoff, lifetime, delay_warning; /* ms */
    long long concurrency, destination_concurrency, messages_per_connection;
    long long connect_timeout, command_timeout, data_timeout, idle_timeout; /* ms */
    int tls; /* enum smtp_client_tls */
    char *ca_file;
    char *helo_name;
    long long bounce_return_limit;
    long long scan_interval; /* ms */
};

struct relay_config {
    struct queue_settings queue;
    struct transport_table transports;
    SSL_CTX *client_tls; /* derived: client context with the CA store */
};

/* Loads `queue` and `transports` from the file's root; errors go to errs. */
void relay_config_load(struct relay_config *rc, const config_t *cf, struct cfg_errors *errs);
void relay_config_free(struct relay_config *rc);
void relay_config_describe(FILE *out);

#endif

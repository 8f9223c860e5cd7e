/*
 * server-config — posternd's configuration: the section tables (every key,
 * type, default, range and doc in one place) and the loader that turns a
 * libconfig file into a struct postern_config, including what is derived
 * from it (network lists, the TLS context, the passwd-file).
 *
 * Called by the master at start and on SIGHUP, and by `posternd -t`.
 * Trusts nothing in the file; every error is reported as file:line.
 */
#ifndef POSTERN_SERVER_CONFIG_H
#define POSTERN_SERVER_CONFIG_H

#include <stdbool.h>
#include <stdio.h>
#include <sys/socket.h>
#include <openssl/ssl.h>

#include "gateway/filter-config.h"
#include "lib/cfg.h"
#include "lib/netaddr.h"
#include "relay/relay-config.h"

struct passwd_db;

enum listener_role { ROLE_MX, ROLE_SUBMISSION, ROLE_SUBMISSIONS };
enum proxy_mode { PROXY_OFF, PROXY_V1, PROXY_V2, PROXY_ANY };

struct server_settings {
    char *hostname;
    char *user;
    char *group;
    long long workers;
    char *spool_dir;
    long long spool_min_free;
    char *pid_file;
    char *log_target;
    char *log_facility;
    char *log_level;
    long long shutdown_grace;
};

struct smtp_settings {
    char *banner;
    long long line_limit;
    long long data_line_limit;
    long long message_size_limit;
    long long recipient_limit;
    long long hop_limit;
    long long error_limit;
    long long command_timeout;
    long long data_timeout;
    long long min_data_rate;
    long long max_sessions;
    long long max_sessions_per_ip;
    long long connection_rate_limit;
    int bare_newline; /* enum smtp_bare_policy */
    struct cfg_strlist xclient_hosts;
    bool smtputf8;
    bool dsn;
    bool chunking;
    bool reverse_lookup;
};

struct dns_settings {
    struct cfg_strlist nameservers;
    long long timeout;
    long long attempts;
    long long cache_size;
    long long cache_max_ttl;
};

struct relay_settings {
    struct cfg_strlist local_domains;
    struct cfg_strlist trusted_networks;
};

struct tls_settings {
    char *cert_file;
    char *key_file;
};

struct auth_settings {
    char *passwd_file;
    long long threads;
};

struct listener_settings {
    char *name;
    int role; /* enum listener_role */
    struct cfg_strlist address;
    int proxy_protocol; /* enum proxy_mode */
    bool starttls;
    bool auth;
    bool auth_without_tls;
    long long greet_pause;
    struct cfg_strlist filters; /* filter ids; empty = all, ["none"] = none */
    /* derived: indexes into postern_config.filtering.filters, in chain order */
    size_t *chain;
    size_t chain_len;
};

struct postern_config {
    char *path;
    struct server_settings server;
    struct smtp_settings smtp;
    struct relay_settings relay;
    struct tls_settings tls;
    struct auth_settings auth;
    struct dns_settings dns;
    struct listener_settings *listeners;
    size_t listener_count;
    struct relay_config delivery; /* the queue manager's sections: queue, transports */
    struct filter_config filtering; /* filters, state, policy */

    /* derived */
    struct netaddr_list trusted;
    struct netaddr_list xclient;
    SSL_CTX *tls_ctx;          /* NULL when no certificate is configured */
    struct passwd_db *passwd;  /* NULL when no passwd_file */
};

/* Loads and validates path. Returns the config, or NULL with errs filled. */
struct postern_config *postern_config_load(const char *path, struct cfg_errors *errs);
void postern_config_free(struct postern_config **cfg);

/* Prints every key of every section (posternd --list-keys). */
void postern_config_describe(FILE *out);

/* Parses a listener address "127.0.0.1:25", "[::1]:25" or "*:25" (the
 * wildcard becomes 0.0.0.0, or [::] when wildcard_v6). Returns 0 or -1. */
int postern_listener_address_parse(const char *text, struct sockaddr_storage *ss, int *len,
                                   int wildcard_v6);

/* True when domain is one of relay.local_domains (case-insensitive). */
bool postern_config_local_domain(const struct postern_config *cfg, const char *domain);

#endif

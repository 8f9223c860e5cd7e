/*
 * limits — connection limits shared by all SMTP workers: sessions in total,
 * sessions per client address, connections per client address per minute.
 *
 * The table lives in shared memory made by the master before it forks. Each
 * worker writes only its own row (so no locks are needed and a crashed
 * worker's row is simply cleared by the master); a check sums the rows.
 * Client addresses are counted in fixed-size slots by hash: two addresses
 * that share a slot share its count (the limit errs on the strict side,
 * rarely, with LIMITS_SLOTS slots). Trusts its callers.
 */
#ifndef POSTERN_LIMITS_H
#define POSTERN_LIMITS_H

#include <stdbool.h>
#include <time.h>

#include "lib/netaddr.h"

#define LIMITS_SLOTS 16384

struct limits;

struct limits *limits_create(unsigned workers);
void limits_destroy(struct limits **l);
/* Forgets what a worker counted (it crashed or exited). */
void limits_clear_worker(struct limits *l, unsigned worker);

enum limits_verdict { LIMITS_OK, LIMITS_TOO_MANY_SESSIONS, LIMITS_TOO_MANY_FROM_IP,
                      LIMITS_RATE_FROM_IP };

struct limits_config {
    long long max_sessions, max_per_ip, rate_per_minute; /* 0 = off for per-ip ones */
    bool exempt; /* client in trusted networks: only max_sessions applies */
};

/* Checks and, when OK, counts a new session of worker for addr. */
enum limits_verdict limits_session_open(struct limits *l, unsigned worker,
                                        const struct netaddr *addr,
                                        const struct limits_config *cfg, time_t now);
void limits_session_close(struct limits *l, unsigned worker, const struct netaddr *addr);

#endif

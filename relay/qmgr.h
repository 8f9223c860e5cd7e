/*
 * qmgr — the queue manager: takes every message the SMTP workers commit to
 * the spool and gets each recipient to its next hop — delivered, retried
 * with exponential backoff, or bounced with a DSN — never lost, never
 * silently dropped (DESIGN.md "Durability").
 *
 * It runs as one posternd child process with its own event loop. Messages
 * arrive through the queue FIFO (spool_dir/qmgr.fifo: lines "Q ID" from the
 * SMTP workers, "F" / "F ID" to flush, "C ID" when posternctl changed a
 * file) and through a directory scan at start and every scan_interval.
 * Trusts the spool's files only as far as queue-file.h checks them.
 */
#ifndef POSTERN_QMGR_H
#define POSTERN_QMGR_H

#include <stddef.h>

struct event_base;
struct relay_config;

struct qmgr_params {
    const char *spool_dir;
    const char *hostname;
    const struct relay_config *relay;
    const char *const *nameservers; /* NULL = /etc/resolv.conf */
    size_t nameserver_count;
    unsigned dns_timeout_ms, dns_attempts;
    size_t dns_cache_size;
    unsigned dns_cache_max_ttl_s;
    long long shutdown_grace_ms;
};

#define QMGR_FIFO "qmgr.fifo"

/* Creates spool_dir/qmgr.fifo if missing (mode 0622). Called by the master. */
int qmgr_fifo_create(const char *spool_dir, char *error, size_t errsize);

/* Runs the queue manager on base until SIGTERM and its deliveries end.
 * Returns the process exit status. */
int qmgr_run(struct event_base *base, const struct qmgr_params *params);

/* For SMTP workers and posternctl: writes one line ("Q ID\n") to the FIFO
 * without blocking. *fd caches the open FIFO (-1 to start); failures are
 * silent (the scan finds the message). */
void qmgr_notify(const char *spool_dir, int *fd, const char *line);

#endif

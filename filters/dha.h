/*
 * dha — directory harvest attack throttling. At RCPT the recipient is
 * checked against the known recipients (dha-directory.h: a list or file of
 * addresses and catch-all domains; for verify_domains, a call-ahead to the
 * downstream through the program's struct filter_verifier, its answer cached
 * in the state store). Unknown recipients of the judged domains are counted
 * per client address and per client network (kv_incr with a window TTL).
 * Against the counts of earlier unknown recipients the filter escalates:
 *   below delay_after      an unknown recipient: 550 5.1.1 (reject_unknown);
 *   delay_after reached    every RCPT reply of the client waits `delay`
 *                          (counted from the start of the check), and valid
 *                          and unknown recipients alike get 450 4.7.1;
 *   disconnect_after       421 4.7.0 and the connection is closed;
 *   block_after            the client (address or network) is refused at
 *                          CONNECT with 421 4.7.0 for block_time.
 * Once throttled, a known and an unknown recipient get the same reply after
 * the same delay: the answers tell an attacker nothing. Symbols (score 0):
 * DHA_UNKNOWN_RCPT (text: the client's count), DHA_THROTTLED,
 * DHA_DISCONNECT, DHA_BLOCKED. Authenticated and trusted clients (the
 * outbound direction) are skipped by default. A state store that fails or
 * times out is the filter's error: on_error applies (default skip).
 *
 * Made per worker through its module (module.h) with the worker's state
 * store and verifier. Trusts its config (validated at load) and the SMTP
 * layer's parsed recipient; stores only its own counters and cache entries.
 */
#ifndef POSTERN_DHA_H
#define POSTERN_DHA_H

#include <stdbool.h>

#include "filters/dha-directory.h"
#include "filters/filter.h"
#include "filters/module.h"

/* The numbers an instance copies from its settings. Durations in ms;
 * thresholds count earlier unknown recipients, 0 = never. */
struct dha_params {
    long long verify_cache_ttl, verify_negative_ttl;
    long long window;
    long long ipv4_prefix, ipv6_prefix;
    long long delay_after, disconnect_after, block_after;
    long long net_delay_after, net_disconnect_after, net_block_after; /* -1: 4 x per address */
    long long delay, block_time;
    bool reject_unknown;
    bool skip_outbound;
};

struct dha_settings {
    struct filter_common common;
    struct cfg_strlist recipients; /* "user@domain", "@domain" */
    char *recipients_file;
    struct cfg_strlist domains;        /* judged; empty: those of the directory */
    struct cfg_strlist verify_domains; /* call-ahead */
    bool ignore_case;
    struct dha_params p;
    struct dha_dir *dir; /* built by the module's load */
};

extern const struct filter_module dha_module;

#endif

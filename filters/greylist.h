/*
 * greylist — greylisting (postgrey-like) of (client network, sender,
 * recipient) triplets on the shared state store (lib/kv.h).
 *
 * The first attempt of a triplet gets 451 4.7.1 at RCPT (or, with
 * stage = "data", at the DATA command for the whole transaction); a retry
 * before `delay` is still refused; a retry after `delay` and within
 * `retry_window` of the first attempt passes, and the triplet is then
 * remembered for `entry_lifetime` after it was last seen. A client network
 * (IPv4 /24, IPv6 /64 by default) whose triplets passed `auto_allow_after`
 * times is allow-listed itself for `entry_lifetime`. Never greylisted:
 * authenticated and trusted clients, clients an earlier stage found on a
 * DNSWL (a symbol "DNSWL_..."), senders of `spf_allow_domains` when an
 * earlier stage found "SPF_PASS...", `allow_networks`, `allow_senders`
 * and `allow_recipients`.
 *
 * Symbols (score 0): GREYLIST_NEW, GREYLIST_EARLY (tempfailed),
 * GREYLIST_PASS, GREYLIST_KNOWN, GREYLIST_AUTO, GREYLIST_SKIP (the reason
 * as text); the chain adds GREYLIST_ERROR when the store fails and
 * on_error is "skip" (the default: a store that is down must not stop
 * mail).
 *
 * Made per worker through its module (module.h) with the worker's state
 * store. Trusts its config (validated by the loader); the addresses it
 * reads were parsed and bounded by the SMTP layer, and it escapes or
 * hashes them before they become keys.
 */
#ifndef POSTERN_GREYLIST_H
#define POSTERN_GREYLIST_H

#include <stdbool.h>
#include <stddef.h>

#include "filters/filter.h"
#include "filters/module.h"
#include "lib/cfg.h"

/* The order of the stage key's values. */
enum greylist_stage { GREYLIST_AT_RCPT, GREYLIST_AT_DATA };

struct greylist_settings {
    struct filter_common common;
    long long delay;            /* ms: a retry before this is still refused */
    long long retry_window;     /* ms after the first attempt; later starts over */
    long long entry_lifetime;   /* ms a passed triplet or allowed network is kept */
    long long auto_allow_after; /* passes that allow a client network; 0 = never */
    long long ipv4_prefix, ipv6_prefix;
    int stage; /* enum greylist_stage */
    bool skip_authenticated, skip_trusted, skip_dnswl;
    struct cfg_strlist spf_allow_domains;               /* "example.org": it and its subdomains */
    struct cfg_strlist allow_networks;                  /* CIDR */
    struct cfg_strlist allow_senders, allow_recipients; /* "a@b", "@b", "a@" */
    char *reply;                                        /* "%s" = seconds left */
    long long purge_interval; /* ms between removals of expired entries; 0 = never */
};

extern const struct filter_module greylist_module;

/* The triplet's identity in the store, "<net>/<sender>/<rcpt>" (what follows
 * "gl:t:" and "gl:p:"): net is the client's network ("192.0.2.0/24"),
 * sender and rcpt are lower-cased and escaped (%XX outside [a-z0-9.@_+=#<>-]),
 * the null sender is "<>", and the sender's VERP/BATV parts are normalized
 * (a "+extension" cut, "prvs=tag=" dropped, numbers standing alone become
 * "#") as postgrey does. Parts too long for a key are replaced by
 * "sha256:<hex>" of their normalized text. Returns 0, or -1 when out is too
 * small (GREYLIST_ID_MAX is enough). */
#define GREYLIST_ID_MAX 320
int greylist_triplet_id(const struct netaddr *client, unsigned v4_prefix, unsigned v6_prefix,
                        const char *sender, const char *rcpt, char *out, size_t size);

#endif

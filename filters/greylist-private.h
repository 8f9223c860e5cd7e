/*
 * greylist-private — what the greylist filter's files share: the instance
 * (made by greylist-module.c from the settings, used by greylist.c's
 * checks) and the keying and list helpers of greylist-key.c. Nothing
 * outside filters/greylist*.c includes this.
 */
#ifndef POSTERN_GREYLIST_PRIVATE_H
#define POSTERN_GREYLIST_PRIVATE_H

#include <stdbool.h>
#include <stddef.h>

#include "filters/greylist.h"
#include "lib/cfg.h"
#include "lib/netaddr.h"

struct event;
struct kv;
struct kv_req;

#define GREYLIST_NET_MAX 64 /* "ffff:...:ffff/128" */

/* One per worker: copies of the settings, the worker's store, the purge. */
struct greylist {
    struct kv *kv;
    struct event *purge_timer;
    struct kv_req *purge_req;
    long long delay, window, lifetime, auto_after, purge_interval;
    unsigned v4_prefix, v6_prefix;
    enum greylist_stage stage;
    bool skip_auth, skip_trusted, skip_dnswl;
    struct cfg_strlist spf_domains, senders, rcpts; /* lower-cased copies */
    struct netaddr_list networks;
    char *reply;
};

/* greylist.c: the stage callbacks. */
extern const struct filter_ops greylist_filter_ops;

/* greylist-key.c */
char greylist_ascii_lower(char c);
/* "192.0.2.0/24": the client's network as keyed. */
void greylist_network_text(const struct netaddr *client, unsigned v4, unsigned v6, char *out,
                           size_t size);
/* An allow_senders/allow_recipients list: "a@b" that address, "@b" any
 * address at b, "a@" the local part a at any domain, "<>" the null sender;
 * case-insensitive. */
bool greylist_addr_listed(const struct cfg_strlist *l, const char *addr);
/* The sender's domain is one of the list's or below one. */
bool greylist_domain_listed(const struct cfg_strlist *l, const char *sender);

#endif

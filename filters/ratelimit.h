/*
 * ratelimit — token-bucket rate limits on the state store (lib/kv), inbound
 * and outbound: a hosting provider stops a compromised account early, an MX
 * slows down a client that floods it.
 *
 * Each group of `limits` is one bucket: a key (client_ip, client_net =
 * the client's /ipv4_prefix or /ipv6_prefix, sender, sender_domain,
 * auth_user, recipient), what it counts (connections, messages,
 * recipients), `limit` per `per` (the refill rate) and `burst` (the
 * capacity; default = limit), a direction (inbound, outbound, any) and an
 * action. One value of the key has one bucket per group, so one key may
 * have several buckets (per minute, per hour, per day): each must have
 * room. The bucket is kv_take (cost 1): on Redis one Lua script, so the
 * count is exact across every gateway and worker sharing the store, with
 * no read-modify-write in the client; on LMDB one write transaction.
 *
 * When each thing is counted (cost 1):
 *   connections  at CONNECT (keys client_ip and client_net only);
 *   recipients   at RCPT, one per RCPT command that reaches the filter;
 *   messages     at DATA (the DATA command, or the first BDAT). DATA and not
 *                end of message, so that a message counts once the client
 *                asked to send it: one refused later by a content filter, or
 *                dropped half-way, still counts (no free probing), and a
 *                refusal at DATA costs the client no transfer of the body.
 *                Messages keyed by recipient are counted at RCPT (one per
 *                transaction naming the recipient), so that a refusal defers
 *                that recipient only.
 * A key that is absent does not count: no auth_user when the client did not
 * authenticate, no sender or sender_domain for the null sender. Values are
 * compared without case (ASCII). Clients in exempt_networks are never counted.
 *
 * Several buckets at one stage are taken one after another, the bucket
 * whose token comes back soonest (per / limit) first, and the first bucket
 * over its limit with action tempfail ends the stage: a refused attempt then
 * costs nothing in the longer buckets (an hour's budget is not burnt by
 * refusals of the minute's). Tokens already taken in shorter buckets stay
 * taken, which is cheap by that order.
 *
 * Over the limit: the symbol RATELIMIT_<NAME> (score 0, text "N per PERIOD
 * for KEY VALUE"), NAME the group's name or KEY_COUNT_PER
 * (RATELIMIT_AUTH_USER_MESSAGES_1H), and
 *   tempfail  450 4.7.1 "Rate limit exceeded (N per PERIOD for KEY), try
 *             again later" (or the `reply` text), in either direction;
 *   hold      outbound only: the message is accepted into the held queue
 *             (HOLD at RCPT or DATA is carried by the chain to the end of
 *             the message) and a warning names the auth user, sender and
 *             client for the admin. Telling the user by mail, and
 *             quarantine, come later. An inbound transaction over a hold
 *             bucket of direction "any" gets tempfail: strangers' mail is
 *             not held. hold is refused for connections (there is no message
 *             to hold) and with direction inbound.
 *
 * on_error defaults to skip: a rate limiter that is down must not stop mail.
 * The first state store failure of a stage (down, timeout) ends the stage
 * as an error (RATELIMIT_ERROR), so a hung Redis costs one state.timeout per
 * stage that has buckets, not one per bucket.
 *
 * State keys: "rl:<id>:<NAME>:<value>" (hashed when long), under the
 * store's redis_prefix. Made per worker through its module (module.h), with
 * the worker's state store. Trusts its config (validated at load) and the
 * chain; the key values come from the SMTP layer, bounded, and are escaped
 * before they reach a log line or a symbol.
 */
#ifndef POSTERN_RATELIMIT_H
#define POSTERN_RATELIMIT_H

#include <stddef.h>

#include "filters/filter.h"
#include "filters/module.h"

/* The order of the values of each group's key, count, direction, action. */
enum ratelimit_key {
    RATELIMIT_KEY_CLIENT_IP,
    RATELIMIT_KEY_CLIENT_NET,
    RATELIMIT_KEY_SENDER,
    RATELIMIT_KEY_SENDER_DOMAIN,
    RATELIMIT_KEY_AUTH_USER,
    RATELIMIT_KEY_RECIPIENT,
};
enum ratelimit_count { RATELIMIT_CONNECTIONS, RATELIMIT_MESSAGES, RATELIMIT_RECIPIENTS };
enum ratelimit_direction { RATELIMIT_INBOUND, RATELIMIT_OUTBOUND, RATELIMIT_ANY };
enum ratelimit_action { RATELIMIT_TEMPFAIL, RATELIMIT_HOLD };

/* One bucket (a group of limits). */
struct ratelimit_limit_settings {
    int key;                             /* enum ratelimit_key */
    int count;                           /* enum ratelimit_count */
    long long limit;                     /* tokens per `per` */
    long long per;                       /* ms */
    long long burst;                     /* capacity; 0 = limit */
    int direction;                       /* enum ratelimit_direction */
    int action;                          /* enum ratelimit_action */
    char *name;                          /* NULL: derived */
    char symbol[FILTER_SYMBOL_NAME_MAX]; /* set by the loader */
};

struct ratelimit_settings {
    struct filter_common common;
    long long ipv4_prefix, ipv6_prefix; /* of client_net */
    struct cfg_strlist exempt_networks;
    char *reply; /* text of the 450 instead of the default; NULL = default */
    struct ratelimit_limit_settings *limits;
    size_t limit_count;
};

extern const struct filter_module ratelimit_module;

#define RATELIMIT_KEY_MAX 320 /* octets of a state key, before redis_prefix */

/* The state key of a bucket (symbol) of filter instance id for one value:
 * "rl:<id>:<symbol without RATELIMIT_>:<value>"; a value that would not fit
 * is replaced by "#" and a 64-bit hash of it. size >= RATELIMIT_KEY_MAX. */
void ratelimit_bucket_key(const char *id, const char *symbol, const char *value, char *out,
                          size_t size);

/* "1h", "30m", "1d", "90s", "500ms": the shortest exact text of a period. */
void ratelimit_period_text(long long ms, char *out, size_t size);

#endif

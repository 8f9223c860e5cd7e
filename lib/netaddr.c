/*
 * netaddr.c — IP addresses and CIDR networks (contract in netaddr.h).
 *
 * Called by the gateway (trusted networks, per-network limits) and later by
 * filters. Trusts callers to pass valid sockaddrs and C strings; the CIDR
 * text comes from the config and is fully validated (inet_pton, a plain
 * decimal prefix, no host bits past the prefix).
 *
 * IPv4 is kept as IPv4-mapped IPv6 (::ffff:a.b.c.d), an IPv4 prefix p as
 * 96 + p. Matching is by family as well as by bits: an IPv6 network never
 * matches an IPv4 client even when it covers ::ffff:0:0/96 (so "::/0" means
 * all of IPv6, not everything), and a mapped network only matches IPv4.
 */
#include "config.h"

#include <arpa/inet.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "lib/netaddr.h"

#define V4_BASE 96 /* bits of the ::ffff:0:0/96 mapped prefix */

static const uint8_t v4_mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

static void set_v4(struct netaddr *out, const void *addr4)
{
    memcpy(out->a, v4_mapped, sizeof(v4_mapped));
    memcpy(out->a + 12, addr4, 4);
}

bool netaddr_is_v4(const struct netaddr *a)
{
    return memcmp(a->a, v4_mapped, sizeof(v4_mapped)) == 0;
}

int netaddr_from_sockaddr(const struct sockaddr *sa, struct netaddr *out)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;

        set_v4(out, &sin->sin_addr);
        return 0;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;

        memcpy(out->a, &sin6->sin6_addr, 16);
        return 0;
    }
    return -1;
}

int netaddr_parse(const char *text, struct netaddr *out)
{
    struct in_addr a4;

    if (text == NULL)
        return -1;
    if (inet_pton(AF_INET, text, &a4) == 1) {
        set_v4(out, &a4);
        return 0;
    }
    return inet_pton(AF_INET6, text, out->a) == 1 ? 0 : -1;
}

const char *netaddr_to_text(const struct netaddr *a, char *buf, size_t size)
{
    socklen_t len = size > INT_MAX ? INT_MAX : (socklen_t)size;

    if (netaddr_is_v4(a))
        return inet_ntop(AF_INET, a->a + 12, buf, len);
    return inet_ntop(AF_INET6, a->a, buf, len);
}

/* Clears every bit of a past the first prefix bits. */
static void mask_bits(struct netaddr *a, unsigned prefix)
{
    for (unsigned i = 0; i < 16; i++) {
        unsigned keep = prefix > i * 8 ? prefix - i * 8 : 0;

        if (keep < 8)
            a->a[i] &= (uint8_t)(0xff00u >> keep);
    }
}

/* "0" to "max" in plain decimal: no sign, no leading zero, no spaces. */
static int parse_prefix(const char *text, unsigned max, unsigned *prefix_r)
{
    unsigned v = 0;
    size_t n = strlen(text);

    if (n == 0 || n > 3 || (n > 1 && text[0] == '0'))
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (text[i] < '0' || text[i] > '9')
            return -1;
        v = v * 10 + (unsigned)(text[i] - '0');
    }
    if (v > max)
        return -1;
    *prefix_r = v;
    return 0;
}

static int fail(const char **error_r, const char *error)
{
    if (error_r != NULL)
        *error_r = error;
    return -1;
}

int netaddr_cidr_parse(const char *text, struct netaddr_cidr *out, const char **error_r)
{
    char addr[INET6_ADDRSTRLEN];
    const char *slash;
    size_t n;
    struct in_addr a4;
    struct netaddr masked;
    bool v4;
    unsigned max;

    if (text == NULL)
        return fail(error_r, "no network address");
    slash = strchr(text, '/');
    n = slash != NULL ? (size_t)(slash - text) : strlen(text);
    if (n == 0 || n >= sizeof(addr))
        return fail(error_r, "bad network address");
    memcpy(addr, text, n);
    addr[n] = '\0';
    v4 = inet_pton(AF_INET, addr, &a4) == 1; /* written as IPv4: prefix 0-32 */
    if (netaddr_parse(addr, &out->net) < 0)
        return fail(error_r, "bad network address");
    max = v4 ? 32 : 128;
    out->prefix = max;
    if (slash != NULL && parse_prefix(slash + 1, max, &out->prefix) < 0)
        return fail(error_r, v4 ? "bad prefix length (0-32 for IPv4)"
                                : "bad prefix length (0-128 for IPv6)");
    if (v4)
        out->prefix += V4_BASE;
    masked = out->net;
    mask_bits(&masked, out->prefix);
    if (memcmp(masked.a, out->net.a, sizeof(masked.a)) != 0)
        return fail(error_r, "host bits set past the prefix length");
    return 0;
}

/* A network covers IPv4 only when it lies inside ::ffff:0:0/96. */
static bool cidr_is_v4(const struct netaddr_cidr *c)
{
    return c->prefix >= V4_BASE && netaddr_is_v4(&c->net);
}

bool netaddr_cidr_match(const struct netaddr_cidr *c, const struct netaddr *a)
{
    struct netaddr masked = *a;

    if (cidr_is_v4(c) != netaddr_is_v4(a))
        return false;
    mask_bits(&masked, c->prefix);
    return memcmp(masked.a, c->net.a, sizeof(masked.a)) == 0;
}

int netaddr_list_add(struct netaddr_list *l, const char *text, const char **error_r)
{
    struct netaddr_cidr c;
    struct netaddr_cidr *items;

    if (netaddr_cidr_parse(text, &c, error_r) < 0)
        return -1;
    if (l->count >= SIZE_MAX / sizeof(*items) - 1)
        return fail(error_r, "too many networks");
    items = realloc(l->items, (l->count + 1) * sizeof(*items));
    if (items == NULL)
        return fail(error_r, "out of memory");
    items[l->count++] = c;
    l->items = items;
    return 0;
}

bool netaddr_list_match(const struct netaddr_list *l, const struct netaddr *a)
{
    for (size_t i = 0; i < l->count; i++)
        if (netaddr_cidr_match(&l->items[i], a))
            return true;
    return false;
}

void netaddr_list_free(struct netaddr_list *l)
{
    if (l == NULL)
        return;
    free(l->items);
    l->items = NULL;
    l->count = 0;
}

struct netaddr netaddr_network(const struct netaddr *a, unsigned v4_prefix, unsigned v6_prefix)
{
    struct netaddr n = *a;

    if (netaddr_is_v4(a))
        mask_bits(&n, V4_BASE + (v4_prefix < 32 ? v4_prefix : 32));
    else
        mask_bits(&n, v6_prefix < 128 ? v6_prefix : 128);
    return n;
}

/* FNV-1a over the 16 octets, the seed folded into the offset basis, then
 * the murmur3 finalizer so the low bits (table index) depend on all input. */
uint32_t netaddr_hash(const struct netaddr *a, uint32_t seed)
{
    uint32_t h = 2166136261u ^ seed;

    for (size_t i = 0; i < sizeof(a->a); i++) {
        h ^= a->a[i];
        h *= 16777619u;
    }
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h;
}

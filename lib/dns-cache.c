/*
 * dns-cache — see dns-cache.h. Entries sit in a tsearch(3) tree ordered by
 * key, and on a list that the purge walks; the earliest expiry of all
 * entries is kept, so that a full cache with nothing expired costs no walk.
 */
#include "config.h"
#include "lib/dns-cache.h"

#include <search.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DNS_CACHE_DEFAULT_MAX_TTL_S 3600
#define DNS_T_SOA 6
#define DNS_C_IN 1
#define DNS_HEADER_LEN 12
#define DNS_WIRE_NAME_MAX 255

struct dns_cache_entry {
    struct dns_cache_key key; /* first: the tree compares entries as keys */
    struct dns_cache_entry *prev;
    struct dns_cache_entry *next;
    uint64_t expires_ms;
    struct dns_cache_answer ans; /* records point into this allocation */
};

struct dns_cache {
    void *root;
    struct dns_cache_entry *head;
    size_t count;
    size_t max;
    unsigned max_ttl_s;
    uint64_t next_expiry_ms; /* no entry expires before this */
};

static uint64_t dns_cache_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int dns_cache_cmp(const void *a, const void *b)
{
    const struct dns_cache_key *x = a, *y = b;

    if (x->type != y->type)
        return x->type < y->type ? -1 : 1;
    if (x->family != y->family)
        return x->family < y->family ? -1 : 1;
    return strcmp(x->name, y->name);
}

int dns_cache_new(size_t max_entries, unsigned max_ttl_s, struct dns_cache **cache_r)
{
    struct dns_cache *c;

    *cache_r = NULL;
    if (max_entries == 0)
        return 0;
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return -1;
    c->max = max_entries;
    c->max_ttl_s = max_ttl_s != 0 ? max_ttl_s : DNS_CACHE_DEFAULT_MAX_TTL_S;
    c->next_expiry_ms = UINT64_MAX;
    *cache_r = c;
    return 0;
}

static void dns_cache_remove(struct dns_cache *c, struct dns_cache_entry *e)
{
    (void)tdelete(&e->key, &c->root, dns_cache_cmp);
    if (e->prev != NULL)
        e->prev->next = e->next;
    else
        c->head = e->next;
    if (e->next != NULL)
        e->next->prev = e->prev;
    c->count--;
    free(e);
}

void dns_cache_free(struct dns_cache **cachep)
{
    struct dns_cache *c = *cachep;

    if (c == NULL)
        return;
    *cachep = NULL;
    while (c->head != NULL)
        dns_cache_remove(c, c->head);
    free(c);
}

void dns_cache_name(const char *name, char out[DNS_NAME_MAX + 1])
{
    size_t len = strnlen(name, DNS_NAME_MAX);

    if (len > 0 && name[len - 1] == '.')
        len--;
    for (size_t i = 0; i < len; i++)
        out[i] = (name[i] >= 'A' && name[i] <= 'Z') ? (char)(name[i] - 'A' + 'a') : name[i];
    out[len] = '\0';
}

static struct dns_cache_entry *dns_cache_find(struct dns_cache *c, const struct dns_cache_key *key)
{
    void **slot = tfind(key, &c->root, dns_cache_cmp);

    return slot != NULL ? *slot : NULL;
}

bool dns_cache_get(struct dns_cache *c, const struct dns_cache_key *key,
                   struct dns_cache_answer *ans)
{
    struct dns_cache_entry *e = c != NULL ? dns_cache_find(c, key) : NULL;
    void *copy;

    if (e == NULL)
        return false;
    if (dns_cache_now_ms() >= e->expires_ms) {
        dns_cache_remove(c, e);
        return false;
    }
    copy = malloc(e->ans.size != 0 ? e->ans.size : 1);
    if (copy == NULL)
        return false;
    if (e->ans.size > 0)
        memcpy(copy, e->ans.records, e->ans.size);
    *ans = e->ans;
    ans->records = copy;
    return true;
}

/* Drops expired entries, if any can have expired, and notes the next expiry. */
static void dns_cache_purge(struct dns_cache *c, uint64_t now)
{
    struct dns_cache_entry *e, *next;

    if (now < c->next_expiry_ms)
        return;
    c->next_expiry_ms = UINT64_MAX;
    for (e = c->head; e != NULL; e = next) {
        next = e->next;
        if (now >= e->expires_ms)
            dns_cache_remove(c, e);
        else if (e->expires_ms < c->next_expiry_ms)
            c->next_expiry_ms = e->expires_ms;
    }
}

/* One allocation: the entry, its records, then its name. */
static struct dns_cache_entry *dns_cache_entry_new(const struct dns_cache_key *key,
                                                   const struct dns_cache_answer *ans)
{
    size_t namelen = strlen(key->name);
    struct dns_cache_entry *e = malloc(sizeof(*e) + ans->size + namelen + 1);
    char *p;

    if (e == NULL)
        return NULL;
    p = (char *)(e + 1);
    e->ans = *ans;
    e->ans.records = p;
    if (ans->size > 0)
        memcpy(p, ans->records, ans->size);
    p += ans->size;
    memcpy(p, key->name, namelen + 1);
    e->key = *key;
    e->key.name = p;
    return e;
}

void dns_cache_put(struct dns_cache *c, const struct dns_cache_key *key,
                   const struct dns_cache_answer *ans, uint32_t ttl_s)
{
    uint64_t now = dns_cache_now_ms();
    struct dns_cache_entry *e;

    if (c == NULL || ttl_s == 0 ||
        (ans->st != DNS_OK && ans->st != DNS_NXDOMAIN && ans->st != DNS_NODATA))
        return;
    if ((e = dns_cache_find(c, key)) != NULL)
        dns_cache_remove(c, e);
    if (c->count >= c->max)
        dns_cache_purge(c, now);
    if (c->count >= c->max || (e = dns_cache_entry_new(key, ans)) == NULL)
        return;
    if (tsearch(&e->key, &c->root, dns_cache_cmp) == NULL) {
        free(e);
        return;
    }
    e->expires_ms = now + (uint64_t)(ttl_s < c->max_ttl_s ? ttl_s : c->max_ttl_s) * 1000u;
    if (e->expires_ms < c->next_expiry_ms)
        c->next_expiry_ms = e->expires_ms;
    e->prev = NULL;
    e->next = c->head;
    if (c->head != NULL)
        c->head->prev = e;
    c->head = e;
    c->count++;
}

size_t dns_cache_count(const struct dns_cache *c)
{
    return c != NULL ? c->count : 0;
}

/* ---- the reply walk ---- */

struct dns_walk {
    const unsigned char *buf;
    size_t len; /* the end of what may be read: the reply, or one RDATA */
    size_t pos;
};

struct dns_walk_rr {
    unsigned type;
    unsigned rclass;
    uint32_t ttl;
    size_t rdata; /* offset in the reply */
    size_t rdlen;
};

static int dns_walk_u16(struct dns_walk *w, unsigned *v)
{
    if (w->len - w->pos < 2)
        return -1;
    *v = (unsigned)w->buf[w->pos] << 8 | w->buf[w->pos + 1];
    w->pos += 2;
    return 0;
}

/* A TTL; the top bit set means 0 (RFC 2181 §8). */
static int dns_walk_ttl(struct dns_walk *w, uint32_t *v)
{
    const unsigned char *p = w->buf + w->pos;

    if (w->len - w->pos < 4)
        return -1;
    *v = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
    if (*v & 0x80000000u)
        *v = 0;
    w->pos += 4;
    return 0;
}

/* Skips a name: labels up to a zero octet or a compression pointer, which
 * ends the name here and is not followed. */
static int dns_walk_name(struct dns_walk *w)
{
    size_t total = 1;

    for (;;) {
        unsigned l;

        if (w->pos >= w->len)
            return -1;
        l = w->buf[w->pos];
        if ((l & 0xc0) == 0xc0) {
            if (w->len - w->pos < 2)
                return -1;
            w->pos += 2;
            return 0;
        }
        if ((l & 0xc0) != 0) /* extended label types: not in replies */
            return -1;
        w->pos++;
        if (l == 0)
            return 0;
        total += l + 1u;
        if (total > DNS_WIRE_NAME_MAX || w->len - w->pos < l)
            return -1;
        w->pos += l;
    }
}

static int dns_walk_rr(struct dns_walk *w, struct dns_walk_rr *rr)
{
    unsigned rdlen;

    if (dns_walk_name(w) < 0 || dns_walk_u16(w, &rr->type) < 0 ||
        dns_walk_u16(w, &rr->rclass) < 0 || dns_walk_ttl(w, &rr->ttl) < 0 ||
        dns_walk_u16(w, &rdlen) < 0 || w->len - w->pos < rdlen)
        return -1;
    rr->rdata = w->pos;
    rr->rdlen = rdlen;
    w->pos += rdlen;
    return 0;
}

/* min(the SOA record's TTL, its MINIMUM): two names, then five 32-bit
 * fields that must end the RDATA exactly. */
static int dns_walk_soa(const struct dns_walk *w, const struct dns_walk_rr *rr, uint32_t *ttl_r)
{
    struct dns_walk rd = { .buf = w->buf, .len = rr->rdata + rr->rdlen, .pos = rr->rdata };
    uint32_t minimum;

    if (dns_walk_name(&rd) < 0 || dns_walk_name(&rd) < 0 || rd.len - rd.pos != 20)
        return -1;
    rd.pos += 16;
    if (dns_walk_ttl(&rd, &minimum) < 0)
        return -1;
    *ttl_r = rr->ttl < minimum ? rr->ttl : minimum;
    return 0;
}

int dns_reply_ttl(const unsigned char *buf, size_t len, bool negative, uint32_t *ttl_r)
{
    struct dns_walk w = { .buf = buf, .len = len, .pos = 4 };
    struct dns_walk_rr rr;
    unsigned qd, an, ns, type;
    uint32_t ttl = UINT32_MAX, soa;
    bool have_soa = false;

    if (buf == NULL || len < DNS_HEADER_LEN || dns_walk_u16(&w, &qd) < 0 ||
        dns_walk_u16(&w, &an) < 0 || dns_walk_u16(&w, &ns) < 0 || qd != 1)
        return -1;
    w.pos = DNS_HEADER_LEN;
    if (dns_walk_name(&w) < 0 || dns_walk_u16(&w, &type) < 0 || dns_walk_u16(&w, &type) < 0)
        return -1;
    /* every record costs at least 11 octets: the loops end with the buffer */
    for (unsigned i = 0; i < an; i++) {
        if (dns_walk_rr(&w, &rr) < 0)
            return -1;
        ttl = rr.ttl < ttl ? rr.ttl : ttl;
    }
    if (!negative) {
        *ttl_r = ttl;
        return an > 0 ? 0 : -1;
    }
    for (unsigned i = 0; i < ns && !have_soa; i++) {
        if (dns_walk_rr(&w, &rr) < 0)
            return -1;
        if (rr.type == DNS_T_SOA && rr.rclass == DNS_C_IN) {
            if (dns_walk_soa(&w, &rr, &soa) < 0)
                return -1;
            have_soa = true;
        }
    }
    if (!have_soa)
        return -1;
    *ttl_r = soa < ttl ? soa : ttl;
    return 0;
}

/*
 * dns — see dns.h. One c-ares channel per struct dns, driven by the owner's
 * event_base: c-ares's socket-state callback adds and removes one persistent
 * event per socket, and one timer, re-armed from ares_timeout() after every
 * operation, lets c-ares retry and time out. c-ares is told to look up names
 * exactly as given (no search list, no HOSTALIASES, no /etc/hosts), at the
 * nameservers that dns-servers read from the configuration.
 *
 * Every lookup is one ares_query per record type (two for addresses of
 * either family), so that the raw reply is at hand: dns-cache reads the TTLs
 * there (and c-ares's ares_addrttl for addresses). A query handle lives until
 * c-ares has called back for each of its parts (c-ares cannot cancel one
 * query) and, when the answer must wait, until it is delivered: answers from
 * the cache, for address literals, or that c-ares reports while a query is
 * being started go to a ready list that an event delivers later, so user
 * callbacks never run inside dns_query_*.
 * dns_free from inside a callback only marks the resolver dying; the handler
 * that ran the callback destroys it on the way out, because c-ares must not
 * be destroyed from inside its own processing.
 *
 * Trusts its caller to use it from the loop thread and to free it before the
 * event_base. Trusts nothing in answers: dns-parse reads them into records
 * and checks those against its rules (see dns-parse.h), and the cache holds
 * only what passed, under TTLs that dns-cache read from the reply.
 */
#include "config.h"
#include "lib/dns.h"
#include "lib/dns-cache.h"
#include "lib/dns-parse.h"
#include "lib/dns-servers.h"

#include <assert.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <ares.h>
#include <ares_nameser.h>
#include <event2/event.h>

#define DNS_DEFAULT_TIMEOUT_MS 2000
#define DNS_DEFAULT_ATTEMPTS 2

enum dns_kind { DNS_KIND_MX, DNS_KIND_ADDR, DNS_KIND_TXT, DNS_KIND_PTR };

/* Where a query is: c-ares holds it, its result waits on the ready list, or
 * its callback is running. */
enum dns_qstate { DNS_Q_IN_ARES, DNS_Q_READY, DNS_Q_DELIVERING };

struct dns_sock {
    struct dns_sock *next;
    ares_socket_t fd;
    struct event *ev;
};

/* One c-ares query of a dns_query (addresses of either family take two). */
struct dns_part {
    struct dns_query *q;
    int type; /* T_MX, T_TXT, T_PTR, T_A, T_AAAA */
    struct dns_result res;
};

struct dns_query {
    struct dns *dns;
    struct dns_query *prev; /* on dns->ready while DNS_Q_READY */
    struct dns_query *next;
    enum dns_kind kind;
    int family; /* DNS_KIND_ADDR: asked; DNS_KIND_PTR: of the address */
    enum dns_qstate state;
    bool cancelled;
    unsigned nparts;
    unsigned pending; /* parts c-ares has yet to call back */
    union {
        dns_mx_cb *mx;
        dns_addr_cb *addr;
        dns_txt_cb *txt;
        dns_ptr_cb *ptr;
    } cb;
    void *ctx;
    struct dns_part parts[2];
    struct dns_result res;  /* owned by the query until delivered */
    struct event *deadline; /* while c-ares holds it */
    unsigned char ptr_addr[16]; /* DNS_KIND_PTR: the address, for c-ares's parser */
    int ptr_addrlen;
    char name[DNS_NAME_MAX + 1]; /* as the cache knows it */
};

struct dns {
    struct event_base *base;
    ares_channel channel;
    struct event *timer;
    struct event *ready_ev;
    struct dns_sock *socks;
    struct dns_query *ready_head;
    struct dns_query *ready_tail;
    struct dns_cache *cache; /* NULL: no cache */
    struct timeval deadline; /* timeout x attempts x nameservers */
    unsigned depth;  /* handlers of ours running c-ares or user callbacks */
    bool submitting; /* inside dns_query_*: answers must wait */
    bool dying;      /* dns_free was called; destroy when depth drops to 0 */
};

static pthread_once_t dns_ares_once = PTHREAD_ONCE_INIT;

static void dns_ares_init_once(void)
{
    (void)ares_library_init(ARES_LIB_INIT_ALL);
}

const char *dns_status_name(enum dns_status st)
{
    switch (st) {
    case DNS_OK:
        return "ok";
    case DNS_NXDOMAIN:
        return "nxdomain";
    case DNS_NODATA:
        return "nodata";
    case DNS_TEMPFAIL:
        return "tempfail";
    case DNS_BADANSWER:
        return "badanswer";
    case DNS_CANCELLED:
        return "cancelled";
    }
    return "unknown";
}

/* Unknown or local failures (ENOMEM, ECONNREFUSED, ...) are temporary. */
static enum dns_status dns_status_from_ares(int status)
{
    switch (status) {
    case ARES_SUCCESS:
        return DNS_OK;
    case ARES_ENOTFOUND:
        return DNS_NXDOMAIN;
    case ARES_ENODATA:
        return DNS_NODATA;
    case ARES_EBADRESP:
    case ARES_EFORMERR:
    case ARES_EBADNAME: /* names are checked before querying: from the answer */
        return DNS_BADANSWER;
    case ARES_ECANCELLED:
    case ARES_EDESTRUCTION:
        return DNS_CANCELLED;
    default:
        return DNS_TEMPFAIL;
    }
}

/* ---- sockets and the timer ---- */

static void dns_enter(struct dns *dns)
{
    dns->depth++;
}

static void dns_destroy(struct dns *dns);
static void dns_timer_rearm(struct dns *dns);

/* Ends a handler: destroys a resolver freed meanwhile, else re-arms the timer. */
static void dns_leave(struct dns *dns)
{
    assert(dns->depth > 0);
    if (--dns->depth == 0 && dns->dying) {
        dns_destroy(dns);
        return;
    }
    if (!dns->dying)
        dns_timer_rearm(dns);
}

static void dns_timer_rearm(struct dns *dns)
{
    struct timeval tv;

    if (ares_timeout(dns->channel, NULL, &tv) == NULL) {
        evtimer_del(dns->timer);
        return;
    }
    evtimer_add(dns->timer, &tv);
}

static void dns_on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct dns *dns = arg;

    dns_enter(dns);
    ares_process_fd(dns->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    dns_leave(dns);
}

/* The event's dns_sock may be gone when ares_process_fd returns. */
static void dns_on_sock(evutil_socket_t fd, short what, void *arg)
{
    struct dns *dns = arg;
    ares_socket_t rfd = (what & EV_READ) ? (ares_socket_t)fd : ARES_SOCKET_BAD;
    ares_socket_t wfd = (what & EV_WRITE) ? (ares_socket_t)fd : ARES_SOCKET_BAD;

    dns_enter(dns);
    ares_process_fd(dns->channel, rfd, wfd);
    dns_leave(dns);
}

static void dns_sock_remove(struct dns_sock **link)
{
    struct dns_sock *s = *link;

    *link = s->next;
    event_free(s->ev);
    free(s);
}

/* c-ares's ARES_OPT_SOCK_STATE_CB: what it wants to hear about a socket.
 * Without memory for the event the query times out (DNS_TEMPFAIL). */
static void dns_on_sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
    struct dns *dns = data;
    struct dns_sock **link = &dns->socks;
    short what = (short)((readable ? EV_READ : 0) | (writable ? EV_WRITE : 0));
    struct dns_sock *s;

    while (*link != NULL && (*link)->fd != fd)
        link = &(*link)->next;
    if (*link != NULL)
        dns_sock_remove(link);
    if (what == 0)
        return;
    s = calloc(1, sizeof(*s));
    if (s == NULL)
        return;
    s->fd = fd;
    s->ev = event_new(dns->base, fd, (short)(what | EV_PERSIST), dns_on_sock, dns);
    if (s->ev == NULL || event_add(s->ev, NULL) != 0) {
        if (s->ev != NULL)
            event_free(s->ev);
        free(s);
        return;
    }
    s->next = dns->socks;
    dns->socks = s;
}

/* ---- delivery ---- */

static void dns_result_clear(struct dns_result *r)
{
    free(r->records);
    r->records = NULL;
    r->size = 0;
    r->n = 0;
}

static void dns_query_free(struct dns_query *q)
{
    dns_result_clear(&q->res);
    for (unsigned i = 0; i < q->nparts; i++)
        dns_result_clear(&q->parts[i].res);
    if (q->deadline != NULL)
        event_free(q->deadline);
    free(q);
}

static void dns_ready_unlink(struct dns *dns, struct dns_query *q)
{
    if (q->prev != NULL)
        q->prev->next = q->next;
    else
        dns->ready_head = q->next;
    if (q->next != NULL)
        q->next->prev = q->prev;
    else
        dns->ready_tail = q->prev;
    q->prev = q->next = NULL;
}

static void dns_ready_push(struct dns *dns, struct dns_query *q)
{
    q->state = DNS_Q_READY;
    q->next = NULL;
    q->prev = dns->ready_tail;
    if (dns->ready_tail != NULL)
        dns->ready_tail->next = q;
    else
        dns->ready_head = q;
    dns->ready_tail = q;
    event_active(dns->ready_ev, EV_TIMEOUT, 0);
}

/* Points strs[] at the n strings of a TXT or PTR block (n is bounded). */
static const char *const *dns_strings(const struct dns_result *r,
                                      const char *strs[DNS_MAX_RECORDS])
{
    const char *p = r->records;

    assert(r->n <= DNS_MAX_RECORDS);
    for (size_t i = 0; i < r->n; i++) {
        strs[i] = p;
        p += strlen(p) + 1;
    }
    return r->n > 0 ? strs : NULL;
}

/* Runs the user's callback with the query's result. */
static void dns_callback(struct dns_query *q)
{
    const struct dns_result *r = &q->res;
    const char *strs[DNS_MAX_RECORDS];

    q->state = DNS_Q_DELIVERING;
    switch (q->kind) {
    case DNS_KIND_MX:
        q->cb.mx(q->ctx, r->st, r->records, r->n);
        break;
    case DNS_KIND_ADDR:
        q->cb.addr(q->ctx, r->st, r->records, r->n);
        break;
    case DNS_KIND_TXT:
        q->cb.txt(q->ctx, r->st, dns_strings(r, strs), r->n);
        break;
    case DNS_KIND_PTR:
        q->cb.ptr(q->ctx, r->st, dns_strings(r, strs), r->n);
        break;
    }
}

/* Runs the user's callback (unless cancelled) and frees the query. */
static void dns_deliver(struct dns_query *q)
{
    if (!q->cancelled)
        dns_callback(q);
    dns_query_free(q);
}

/* A query's result is complete: deliver now, or later if being started. */
static void dns_finish(struct dns_query *q, enum dns_status st)
{
    struct dns *dns = q->dns;

    if (dns->dying || st != DNS_OK)
        dns_result_clear(&q->res);
    q->res.st = dns->dying ? DNS_CANCELLED : st;
    if (dns->submitting)
        dns_ready_push(dns, q);
    else
        dns_deliver(q);
}

/* Delivers the results that were waiting when the event fired; later ones
 * wait for the next round so that a callback restarting queries cannot keep
 * the loop here. */
static void dns_on_ready(evutil_socket_t fd, short what, void *arg)
{
    struct dns *dns = arg;
    size_t todo = 0;
    struct dns_query *q;

    for (q = dns->ready_head; q != NULL; q = q->next)
        todo++;
    dns_enter(dns);
    while (todo-- > 0 && !dns->dying && (q = dns->ready_head) != NULL) {
        dns_ready_unlink(dns, q);
        dns_deliver(q);
    }
    if (!dns->dying && dns->ready_head != NULL)
        event_active(dns->ready_ev, EV_TIMEOUT, 0);
    dns_leave(dns);
}

/* ---- answers ---- */

static enum dns_status dns_parse(const struct dns_part *p, struct dns_result *r,
                                 const unsigned char *abuf, int alen)
{
    switch (p->type) {
    case T_MX:
        return dns_parse_mx(r, abuf, alen);
    case T_TXT:
        return dns_parse_txt(r, abuf, alen);
    case T_PTR:
        return dns_parse_ptr(r, abuf, alen, p->q->ptr_addr, p->q->ptr_addrlen, p->q->family);
    default:
        return dns_parse_addr(r, p->type, abuf, alen);
    }
}

/* One part's answer: its records, and whether and how long it may be cached
 * (addresses got their TTLs from c-ares; the rest from the raw reply). */
static void dns_part_answer(struct dns_part *p, int status, const unsigned char *abuf, int alen)
{
    struct dns_result *r = &p->res;
    bool negative;

    r->st = dns_status_from_ares(status);
    if (r->st == DNS_OK)
        r->st = abuf != NULL && alen > 0 ? dns_parse(p, r, abuf, alen) : DNS_BADANSWER;
    if (r->st != DNS_OK) {
        dns_result_clear(r);
        r->cacheable = false;
    }
    negative = r->st == DNS_NXDOMAIN || r->st == DNS_NODATA;
    if ((negative || (r->st == DNS_OK && !r->cacheable)) && abuf != NULL && alen > 0)
        r->cacheable = dns_reply_ttl(abuf, (size_t)alen, negative, &r->ttl) == 0;
}

/* Addresses of either family: any addresses make the answer; else the
 * gravest failure (a half that failed must not read as "no such name"). */
static enum dns_status dns_status_merge(enum dns_status a, enum dns_status b)
{
    static const enum dns_status order[] = { DNS_OK, DNS_TEMPFAIL, DNS_BADANSWER, DNS_NODATA };

    for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++)
        if (a == order[i] || b == order[i])
            return order[i];
    return a;
}

/* The query's result from its parts: IPv4 addresses, then IPv6. */
static void dns_merge(struct dns_query *q)
{
    struct dns_result *a = &q->parts[0].res, *b = &q->parts[1].res, *r = &q->res;
    size_t n, na;
    struct dns_addr *out;

    if (q->nparts == 1) {
        *r = *a;
        a->records = NULL;
        return;
    }
    r->st = dns_status_merge(a->st, b->st);
    r->cacheable = a->cacheable && b->cacheable;
    r->ttl = a->ttl < b->ttl ? a->ttl : b->ttl;
    if (r->st != DNS_OK)
        return;
    n = a->n + b->n < DNS_MAX_RECORDS ? a->n + b->n : DNS_MAX_RECORDS;
    na = a->n < n ? a->n : n;
    if ((out = calloc(n, sizeof(*out))) == NULL) {
        r->st = DNS_TEMPFAIL;
        r->cacheable = false;
        return;
    }
    if (na > 0)
        memcpy(out, a->records, na * sizeof(*out));
    if (n > na)
        memcpy(out + na, b->records, (n - na) * sizeof(*out));
    r->records = out;
    r->size = n * sizeof(*out);
    r->n = n;
}

static void dns_query_key(const struct dns_query *q, struct dns_cache_key *key)
{
    key->type = q->parts[0].type;
    key->family = q->kind == DNS_KIND_ADDR ? q->family : 0;
    key->name = q->name;
}

/* Every part has its answer: merge, keep in the cache, deliver. */
static void dns_query_complete(struct dns_query *q)
{
    struct dns_cache_key key;

    if (!q->dns->dying) {
        dns_merge(q);
        if (q->res.cacheable) {
            const struct dns_cache_answer ans = {
                .st = q->res.st, .records = q->res.records, .size = q->res.size, .n = q->res.n
            };
            dns_query_key(q, &key);
            dns_cache_put(q->dns->cache, &key, &ans, q->res.ttl);
        }
    }
    dns_finish(q, q->res.st);
}

/* c-ares's callback for each part. */
static void dns_on_answer(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    struct dns_part *p = arg;
    struct dns_query *q = p->q;

    assert(q->pending > 0);
    q->pending--;
    if (!q->cancelled && !q->dns->dying)
        dns_part_answer(p, status, abuf, alen);
    if (q->pending > 0)
        return;
    if (q->cancelled)
        dns_query_free(q);
    else
        dns_query_complete(q);
}

/* c-ares doubles the timeout on each round of tries; the caller is promised
 * an answer within timeout x attempts x nameservers. Parts still out count
 * as DNS_TEMPFAIL (one family's addresses still come when the other's are
 * late, uncached); the query is freed once c-ares has let go of each part. */
static void dns_on_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct dns_query *q = arg;
    struct dns *dns = q->dns;

    dns_enter(dns);
    dns_merge(q);
    q->cancelled = true;
    dns_callback(q);
    q->state = DNS_Q_IN_ARES;
    dns_leave(dns);
}

/* ---- queries ---- */

/* Exact names only: 1..253 octets (plus an optional final dot), labels of
 * 1..63 printable octets; no backslash, which c-ares reads as an escape. */
static bool dns_name_ok(const char *name)
{
    size_t len, label = 0;

    if (name == NULL)
        return false;
    len = strnlen(name, DNS_NAME_MAX + 1);
    if (len > 0 && len <= DNS_NAME_MAX && name[len - 1] == '.')
        len--;
    if (len == 0 || len > 253)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c == '.') {
            if (label == 0)
                return false;
            label = 0;
        } else if (c <= 0x20 || c >= 0x7f || c == '\\' || ++label > 63) {
            return false;
        }
    }
    return label > 0;
}

/* A query of one record type, or of A and AAAA for addresses of either. */
static struct dns_query *dns_query_new(struct dns *dns, const char *name, enum dns_kind kind,
                                       int type, int family, void *ctx)
{
    struct dns_query *q;

    if (dns == NULL || dns->dying || !dns_name_ok(name))
        return NULL;
    q = calloc(1, sizeof(*q));
    if (q == NULL)
        return NULL;
    q->dns = dns;
    q->kind = kind;
    q->family = family;
    q->state = DNS_Q_IN_ARES;
    q->ctx = ctx;
    q->nparts = kind == DNS_KIND_ADDR && family == AF_UNSPEC ? 2 : 1;
    q->parts[0] = (struct dns_part){ .q = q, .type = type, .res.st = DNS_TEMPFAIL };
    q->parts[1] = (struct dns_part){ .q = q, .type = T_AAAA, .res.st = DNS_TEMPFAIL };
    dns_cache_name(name, q->name);
    dns->submitting = true;
    return q;
}

/* From the cache, or c-ares's queries; answers arrive through the loop. */
static struct dns_query *dns_query_submit(struct dns_query *q, const char *name)
{
    struct dns *dns = q->dns;
    struct dns_cache_key key;
    struct dns_cache_answer ans;

    dns_query_key(q, &key);
    if (dns_cache_get(dns->cache, &key, &ans)) {
        q->res = (struct dns_result){ .st = ans.st, .records = ans.records, .size = ans.size,
                                      .n = ans.n };
        dns_finish(q, ans.st);
    } else {
        q->pending = q->nparts;
        for (unsigned i = 0; i < q->nparts; i++)
            ares_query(dns->channel, name, C_IN, q->parts[i].type, dns_on_answer, &q->parts[i]);
        /* without memory for it, c-ares's own timeouts end the query */
        if (q->pending > 0 && (q->deadline = evtimer_new(dns->base, dns_on_deadline, q)) != NULL)
            evtimer_add(q->deadline, &dns->deadline);
    }
    dns->submitting = false;
    dns_timer_rearm(dns);
    return q;
}

struct dns_query *dns_query_mx(struct dns *dns, const char *name, dns_mx_cb *cb, void *ctx)
{
    struct dns_query *q = cb != NULL ? dns_query_new(dns, name, DNS_KIND_MX, T_MX, 0, ctx) : NULL;

    if (q == NULL)
        return NULL;
    q->cb.mx = cb;
    return dns_query_submit(q, name);
}

struct dns_query *dns_query_txt(struct dns *dns, const char *name, dns_txt_cb *cb, void *ctx)
{
    struct dns_query *q = cb != NULL ? dns_query_new(dns, name, DNS_KIND_TXT, T_TXT, 0, ctx)
                                     : NULL;

    if (q == NULL)
        return NULL;
    q->cb.txt = cb;
    return dns_query_submit(q, name);
}

/* An address literal needs no DNS: DNS_OK, or DNS_NODATA for the other
 * family. False when name is no literal. */
static bool dns_addr_literal(struct dns_query *q, const char *name)
{
    struct dns_addr a;
    struct in6_addr bytes;
    int family = inet_pton(AF_INET, name, &bytes) == 1    ? AF_INET
                 : inet_pton(AF_INET6, name, &bytes) == 1 ? AF_INET6
                                                          : AF_UNSPEC;

    if (family == AF_UNSPEC)
        return false;
    memset(&a, 0, sizeof(a));
    dns_addr_put(&a, family, &bytes, 0);
    q->res.st = q->family == AF_UNSPEC || q->family == family ? DNS_OK : DNS_NODATA;
    if (q->res.st == DNS_OK && (q->res.records = malloc(sizeof(a))) == NULL)
        q->res.st = DNS_TEMPFAIL;
    if (q->res.st == DNS_OK) {
        memcpy(q->res.records, &a, sizeof(a));
        q->res.size = sizeof(a);
        q->res.n = 1;
    }
    dns_finish(q, q->res.st);
    q->dns->submitting = false;
    return true;
}

struct dns_query *dns_query_addr(struct dns *dns, const char *name, int family, dns_addr_cb *cb,
                                 void *ctx)
{
    struct dns_query *q;

    if (cb == NULL || (family != AF_INET && family != AF_INET6 && family != AF_UNSPEC))
        return NULL;
    q = dns_query_new(dns, name, DNS_KIND_ADDR, family == AF_INET6 ? T_AAAA : T_A, family, ctx);
    if (q == NULL)
        return NULL;
    q->cb.addr = cb;
    if (dns_addr_literal(q, name))
        return q;
    return dns_query_submit(q, name);
}

/* The in-addr.arpa or ip6.arpa name of an address (a v4-mapped one counts
 * as IPv4), its octets (4 or 16, *len_r) and family; -1 for other families. */
static int dns_ptr_name(const struct sockaddr *sa, unsigned char addr[16], int *len_r,
                        char out[DNS_NAME_MAX + 1])
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *b;
    char *p = out;

    if (sa->sa_family == AF_INET) {
        b = (const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr;
        *len_r = 4;
    } else if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        *len_r = IN6_IS_ADDR_V4MAPPED(a6) ? 4 : 16;
        b = a6->s6_addr + 16 - *len_r;
    } else {
        return -1;
    }
    memcpy(addr, b, (size_t)*len_r);
    if (*len_r == 4) {
        snprintf(out, DNS_NAME_MAX + 1, "%u.%u.%u.%u.in-addr.arpa", b[3], b[2], b[1], b[0]);
        return AF_INET;
    }
    for (int i = 15; i >= 0; i--) { /* 64 octets of nibbles, then the suffix */
        *p++ = hex[b[i] & 15];
        *p++ = '.';
        *p++ = hex[b[i] >> 4];
        *p++ = '.';
    }
    strcpy(p, "ip6.arpa");
    return AF_INET6;
}

struct dns_query *dns_query_ptr(struct dns *dns, const struct sockaddr *sa, dns_ptr_cb *cb,
                                void *ctx)
{
    char name[DNS_NAME_MAX + 1];
    unsigned char addr[16];
    int len, family = sa != NULL ? dns_ptr_name(sa, addr, &len, name) : -1;
    struct dns_query *q;

    if (cb == NULL || family < 0)
        return NULL;
    q = dns_query_new(dns, name, DNS_KIND_PTR, T_PTR, family, ctx);
    if (q == NULL)
        return NULL;
    q->cb.ptr = cb;
    memcpy(q->ptr_addr, addr, (size_t)len);
    q->ptr_addrlen = len;
    return dns_query_submit(q, name);
}

void dns_query_cancel(struct dns_query *q)
{
    if (q == NULL)
        return;
    switch (q->state) {
    case DNS_Q_IN_ARES:
        q->cancelled = true; /* freed when c-ares has called back for each part */
        if (q->deadline != NULL)
            evtimer_del(q->deadline);
        break;
    case DNS_Q_READY:
        dns_ready_unlink(q->dns, q);
        dns_query_free(q);
        break;
    case DNS_Q_DELIVERING:
        break; /* its own callback: freed after it returns */
    }
}

/* ---- setup and teardown ---- */

static int dns_timeout_ms(const struct dns_config *cfg)
{
    unsigned ms = cfg->timeout_ms != 0 ? cfg->timeout_ms : DNS_DEFAULT_TIMEOUT_MS;

    return ms < INT_MAX ? (int)ms : INT_MAX;
}

static int dns_tries(const struct dns_config *cfg)
{
    unsigned tries = cfg->attempts != 0 ? cfg->attempts : DNS_DEFAULT_ATTEMPTS;

    return tries < 100 ? (int)tries : 100;
}

/* Exact names (no search list, no HOSTALIASES), DNS only (no /etc/hosts).
 * No ARES_FLAG_EDNS: c-ares 1.18 answers a SERVFAIL, NOTIMP or FORMERR to an
 * EDNS query by toggling EDNS off for the whole channel and cutting 11 octets
 * off the query, so the next such answer toggles it back and mangles a query
 * sent without EDNS. Plain DNS sends answers over 512 octets by TCP instead. */
static int dns_channel_init(struct dns *dns, const struct dns_config *cfg, char *error,
                            size_t errsize)
{
    char lookups[] = "b";
    struct ares_options opts = {
        .flags = ARES_FLAG_NOSEARCH | ARES_FLAG_NOALIASES,
        .timeout = dns_timeout_ms(cfg),
        .tries = dns_tries(cfg),
        .domains = NULL,
        .ndomains = 0,
        .lookups = lookups,
        .sock_state_cb = dns_on_sock_state,
        .sock_state_cb_data = dns,
    };
    int mask = ARES_OPT_FLAGS | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_DOMAINS |
               ARES_OPT_LOOKUPS | ARES_OPT_SOCK_STATE_CB;
    int rc = ares_init_options(&dns->channel, &opts, mask);

    if (rc != ARES_SUCCESS) {
        dns->channel = NULL;
        snprintf(error, errsize, "dns: c-ares init: %s", ares_strerror(rc));
        return -1;
    }
    return 0;
}

/* The deadline of a query: each try of each round, timeout long. */
static void dns_deadline_init(struct dns *dns, const struct dns_config *cfg)
{
    struct ares_addr_port_node *servers = NULL;
    uint64_t n = 0, ms = (uint64_t)dns_timeout_ms(cfg) * (uint64_t)dns_tries(cfg);

    if (ares_get_servers_ports(dns->channel, &servers) == ARES_SUCCESS)
        for (const struct ares_addr_port_node *s = servers; s != NULL; s = s->next)
            n++;
    ares_free_data(servers);
    ms *= n > 0 ? n : 1;
    dns->deadline.tv_sec = (time_t)(ms / 1000);
    dns->deadline.tv_usec = (suseconds_t)(ms % 1000 * 1000);
}

/* Settles every query (DNS_CANCELLED) and frees everything; depth is 0. */
static void dns_destroy(struct dns *dns)
{
    struct dns_query *q;

    dns->dying = true;
    if (dns->channel != NULL)
        ares_cancel(dns->channel);
    while ((q = dns->ready_head) != NULL) {
        dns_ready_unlink(dns, q);
        dns_result_clear(&q->res);
        q->res.st = DNS_CANCELLED;
        dns_deliver(q);
    }
    if (dns->channel != NULL)
        ares_destroy(dns->channel);
    while (dns->socks != NULL)
        dns_sock_remove(&dns->socks);
    if (dns->timer != NULL)
        event_free(dns->timer);
    if (dns->ready_ev != NULL)
        event_free(dns->ready_ev);
    dns_cache_free(&dns->cache);
    free(dns);
}

int dns_new(struct event_base *base, const struct dns_config *cfg, struct dns **dns_r,
            char *error, size_t errsize)
{
    static const struct dns_config defaults = { .nameservers = NULL };
    struct dns *dns;

    *dns_r = NULL;
    if (pthread_once(&dns_ares_once, dns_ares_init_once) != 0 ||
        ares_library_initialized() != ARES_SUCCESS) {
        snprintf(error, errsize, "dns: c-ares library initialisation failed");
        return -1;
    }
    dns = calloc(1, sizeof(*dns));
    if (dns == NULL) {
        snprintf(error, errsize, "dns: out of memory");
        return -1;
    }
    dns->base = base;
    dns->timer = evtimer_new(base, dns_on_timer, dns);
    dns->ready_ev = event_new(base, -1, 0, dns_on_ready, dns);
    if (dns->timer == NULL || dns->ready_ev == NULL) {
        snprintf(error, errsize, "dns: cannot create events");
        dns_destroy(dns);
        return -1;
    }
    if (cfg == NULL)
        cfg = &defaults;
    if (dns_channel_init(dns, cfg, error, errsize) < 0 ||
        dns_servers_set(dns->channel, cfg, error, errsize) < 0) {
        dns_destroy(dns);
        return -1;
    }
    dns_deadline_init(dns, cfg);
    if (dns_cache_new(cfg->cache_size, cfg->cache_max_ttl_s, &dns->cache) < 0) {
        snprintf(error, errsize, "dns: no memory for the cache");
        dns_destroy(dns);
        return -1;
    }
    *dns_r = dns;
    return 0;
}

void dns_free(struct dns **dnsp)
{
    struct dns *dns = *dnsp;

    if (dns == NULL)
        return;
    *dnsp = NULL;
    assert(!dns->dying);
    dns->dying = true;
    if (dns->depth == 0)
        dns_destroy(dns);
    /* else the handler running us destroys it in dns_leave() */
}

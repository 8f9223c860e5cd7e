/*
 * dns — see dns.h. One c-ares channel per struct dns, driven by the owner's
 * event_base: c-ares's socket-state callback adds and removes one persistent
 * event per socket, and one timer, re-armed from ares_timeout() after every
 * operation, lets c-ares retry and time out. c-ares is told to look up names
 * exactly as given (no search list, no HOSTALIASES, no /etc/hosts).
 *
 * A query handle lives until c-ares has called back (c-ares cannot cancel one
 * query) and, when the answer must wait, until it is delivered: answers that
 * c-ares reports while a query is being started go to a ready list that an
 * event delivers later, so user callbacks never run inside dns_query_*.
 * dns_free from inside a callback only marks the resolver dying; the handler
 * that ran the callback destroys it on the way out, because c-ares must not
 * be destroyed from inside its own processing.
 *
 * Trusts its caller to use it from the loop thread and to free it before the
 * event_base. Trusts nothing in answers: c-ares's parsers bound the message
 * (and any parser failure is DNS_BADANSWER);
 * here host names must be printable ASCII of at most DNS_NAME_MAX octets, a
 * TXT record at most DNS_TXT_MAX octets without NUL (else DNS_BADANSWER, so
 * that SPF/DKIM/DMARC never see a silently cut record), MX and address
 * answers are cut to DNS_MAX_RECORDS (MX after sorting by preference), and a
 * TXT answer of more records is DNS_BADANSWER.
 */
#include "config.h"
#include "lib/dns.h"

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

#define DNS_TXT_MAX 4096
#define DNS_DEFAULT_TIMEOUT_MS 2000
#define DNS_DEFAULT_ATTEMPTS 2

enum dns_kind { DNS_KIND_MX, DNS_KIND_ADDR, DNS_KIND_TXT };

/* Where a query is: c-ares holds it, its result waits on the ready list, or
 * its callback is running. */
enum dns_qstate { DNS_Q_IN_ARES, DNS_Q_READY, DNS_Q_DELIVERING };

struct dns_sock {
    struct dns_sock *next;
    ares_socket_t fd;
    struct event *ev;
};

struct dns_query {
    struct dns *dns;
    struct dns_query *prev;  /* on dns->ready while DNS_Q_READY */
    struct dns_query *next;
    enum dns_kind kind;
    int family;      /* DNS_KIND_ADDR */
    enum dns_qstate state;
    bool cancelled;
    union {
        dns_mx_cb *mx;
        dns_addr_cb *addr;
        dns_txt_cb *txt;
    } cb;
    void *ctx;
    /* The result, owned by the query until delivered. */
    enum dns_status st;
    size_t n;
    void *records; /* one block: struct dns_mx[], struct dns_addr[] or char *[] + text */
};

struct dns {
    struct event_base *base;
    ares_channel channel;
    struct event *timer;
    struct event *ready_ev;
    struct dns_sock *socks;
    struct dns_query *ready_head;
    struct dns_query *ready_tail;
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

/* A parser's verdict: anything but "no such records" or no memory means
 * the answer is malformed (ares_expand_name says EBADNAME, others EBADRESP). */
static enum dns_status dns_status_from_parse(int status)
{
    switch (status) {
    case ARES_SUCCESS:
        return DNS_OK;
    case ARES_ENODATA:
        return DNS_NODATA;
    case ARES_ENOMEM:
        return DNS_TEMPFAIL;
    default:
        return DNS_BADANSWER;
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

static void dns_query_free(struct dns_query *q)
{
    free(q->records);
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

/* Runs the user's callback (unless cancelled) and frees the query. */
static void dns_deliver(struct dns_query *q)
{
    q->state = DNS_Q_DELIVERING;
    if (!q->cancelled) {
        switch (q->kind) {
        case DNS_KIND_MX:
            q->cb.mx(q->ctx, q->st, q->records, q->n);
            break;
        case DNS_KIND_ADDR:
            q->cb.addr(q->ctx, q->st, q->records, q->n);
            break;
        case DNS_KIND_TXT:
            q->cb.txt(q->ctx, q->st, (const char *const *)q->records, q->n);
            break;
        }
    }
    dns_query_free(q);
}

/* A query's result is complete: deliver now, or later if being started. */
static void dns_finish(struct dns_query *q, enum dns_status st)
{
    struct dns *dns = q->dns;

    if (dns->dying || st != DNS_OK) {
        free(q->records);
        q->records = NULL;
        q->n = 0;
    }
    q->st = dns->dying ? DNS_CANCELLED : st;
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

/* Host names from answers: printable ASCII, no space, bounded; no backslash,
 * which c-ares uses to escape unprintable octets. */
static bool dns_host_ok(const char *host)
{
    size_t len = strnlen(host, DNS_NAME_MAX + 1);

    if (len > DNS_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)host[i];
        if (c <= 0x20 || c >= 0x7f || c == '\\')
            return false;
    }
    return true;
}

struct dns_mx_ref {
    const struct ares_mx_reply *mx;
    size_t index;
};

/* By preference, then answer order (qsort is not stable by itself). */
static int dns_mx_cmp(const void *a, const void *b)
{
    const struct dns_mx_ref *x = a, *y = b;

    if (x->mx->priority != y->mx->priority)
        return x->mx->priority < y->mx->priority ? -1 : 1;
    return x->index < y->index ? -1 : (x->index > y->index);
}

/* Copies the sorted replies into q->records (cut to DNS_MAX_RECORDS). */
static enum dns_status dns_mx_store(struct dns_query *q, struct dns_mx_ref *refs, size_t count)
{
    struct dns_mx *out;
    size_t n = count < DNS_MAX_RECORDS ? count : DNS_MAX_RECORDS;

    qsort(refs, count, sizeof(*refs), dns_mx_cmp);
    out = calloc(n, sizeof(*out));
    if (out == NULL)
        return DNS_TEMPFAIL;
    for (size_t i = 0; i < n; i++) {
        const char *host = refs[i].mx->host[0] != '\0' ? refs[i].mx->host : ".";
        out[i].preference = refs[i].mx->priority;
        memcpy(out[i].host, host, strlen(host) + 1);
    }
    q->records = out;
    q->n = n;
    return DNS_OK;
}

static enum dns_status dns_mx_parse(struct dns_query *q, const unsigned char *abuf, int alen)
{
    struct ares_mx_reply *head = NULL, *mx;
    struct dns_mx_ref *refs;
    size_t count = 0;
    enum dns_status st = DNS_OK;
    int rc = ares_parse_mx_reply(abuf, alen, &head);

    if (rc != ARES_SUCCESS)
        return dns_status_from_parse(rc);
    for (mx = head; mx != NULL && st == DNS_OK; mx = mx->next, count++)
        if (!dns_host_ok(mx->host))
            st = DNS_BADANSWER;
    refs = st == DNS_OK ? calloc(count ? count : 1, sizeof(*refs)) : NULL;
    if (st == DNS_OK && refs == NULL)
        st = DNS_TEMPFAIL;
    if (st == DNS_OK) {
        count = 0;
        for (mx = head; mx != NULL; mx = mx->next, count++)
            refs[count] = (struct dns_mx_ref){ .mx = mx, .index = count };
        st = count == 0 ? DNS_NODATA : dns_mx_store(q, refs, count);
    }
    free(refs);
    ares_free_data(head);
    return st;
}

/* Sizes the answer: records and text octets; DNS_BADANSWER past the bounds. */
static enum dns_status dns_txt_measure(const struct ares_txt_ext *head, size_t *n_r,
                                       size_t *bytes_r)
{
    size_t n = 0, bytes = 0, cur = 0;

    for (const struct ares_txt_ext *t = head; t != NULL; t = t->next) {
        if (t->record_start || n == 0) {
            if (++n > DNS_MAX_RECORDS)
                return DNS_BADANSWER;
            cur = 0;
        }
        if (t->length > DNS_TXT_MAX - cur || memchr(t->txt, '\0', t->length) != NULL)
            return DNS_BADANSWER;
        cur += t->length;
        bytes += t->length;
    }
    *n_r = n;
    *bytes_r = bytes;
    return n == 0 ? DNS_NODATA : DNS_OK;
}

/* One block: n pointers, then the NUL-terminated records they point to. */
static enum dns_status dns_txt_store(struct dns_query *q, const struct ares_txt_ext *head,
                                     size_t n, size_t bytes)
{
    char **recs = malloc(n * sizeof(char *) + bytes + n);
    char *p;
    size_t i = 0;

    if (recs == NULL)
        return DNS_TEMPFAIL;
    p = (char *)(recs + n);
    for (const struct ares_txt_ext *t = head; t != NULL; t = t->next) {
        if (t->record_start || i == 0) {
            if (i > 0)
                *p++ = '\0';
            recs[i++] = p;
        }
        memcpy(p, t->txt, t->length);
        p += t->length;
    }
    *p = '\0';
    q->records = recs;
    q->n = n;
    return DNS_OK;
}

static enum dns_status dns_txt_parse(struct dns_query *q, const unsigned char *abuf, int alen)
{
    struct ares_txt_ext *head = NULL;
    size_t n = 0, bytes = 0;
    enum dns_status st;
    int rc = ares_parse_txt_reply_ext(abuf, alen, &head);

    if (rc != ARES_SUCCESS)
        return dns_status_from_parse(rc);
    st = dns_txt_measure(head, &n, &bytes);
    if (st == DNS_OK)
        st = dns_txt_store(q, head, n, bytes);
    ares_free_data(head);
    return st;
}

/* c-ares's callback for MX and TXT queries. */
static void dns_on_answer(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    struct dns_query *q = arg;
    enum dns_status st = dns_status_from_ares(status);

    if (q->cancelled) {
        dns_query_free(q);
        return;
    }
    if (st == DNS_OK && !q->dns->dying) {
        if (abuf == NULL || alen <= 0)
            st = DNS_BADANSWER;
        else if (q->kind == DNS_KIND_MX)
            st = dns_mx_parse(q, abuf, alen);
        else
            st = dns_txt_parse(q, abuf, alen);
    }
    dns_finish(q, st);
}

/* An address of the family asked for, with the size of that family (a
 * hostile server may answer an A query with AAAA records too). */
static bool dns_addr_wanted(const struct dns_query *q, const struct ares_addrinfo_node *a)
{
    if (q->family != AF_UNSPEC && a->ai_family != q->family)
        return false;
    if (a->ai_family == AF_INET)
        return a->ai_addrlen == sizeof(struct sockaddr_in);
    if (a->ai_family == AF_INET6)
        return a->ai_addrlen == sizeof(struct sockaddr_in6);
    return false;
}

static enum dns_status dns_addr_store(struct dns_query *q, const struct ares_addrinfo *res)
{
    size_t n = 0, i = 0;
    struct dns_addr *out;

    for (const struct ares_addrinfo_node *a = res->nodes; a != NULL; a = a->ai_next)
        n += dns_addr_wanted(q, a);
    if (n == 0)
        return DNS_NODATA;
    n = n < DNS_MAX_RECORDS ? n : DNS_MAX_RECORDS;
    out = calloc(n, sizeof(*out));
    if (out == NULL)
        return DNS_TEMPFAIL;
    for (const struct ares_addrinfo_node *a = res->nodes; a != NULL && i < n; a = a->ai_next) {
        if (!dns_addr_wanted(q, a))
            continue;
        memcpy(&out[i].sa, a->ai_addr, a->ai_addrlen);
        out[i].len = (socklen_t)a->ai_addrlen;
        if (a->ai_family == AF_INET)
            ((struct sockaddr_in *)&out[i].sa)->sin_port = 0;
        else
            ((struct sockaddr_in6 *)&out[i].sa)->sin6_port = 0;
        i++;
    }
    q->records = out;
    q->n = n;
    return DNS_OK;
}

/* c-ares's callback for ares_getaddrinfo. */
static void dns_on_addrinfo(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
    struct dns_query *q = arg;
    enum dns_status st = dns_status_from_ares(status);

    if (q->cancelled) {
        dns_query_free(q);
    } else {
        if (st == DNS_OK && !q->dns->dying)
            st = res != NULL ? dns_addr_store(q, res) : DNS_BADANSWER;
        dns_finish(q, st);
    }
    if (res != NULL)
        ares_freeaddrinfo(res);
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

static struct dns_query *dns_query_new(struct dns *dns, const char *name, enum dns_kind kind,
                                       void *ctx)
{
    struct dns_query *q;

    if (dns == NULL || dns->dying || !dns_name_ok(name))
        return NULL;
    q = calloc(1, sizeof(*q));
    if (q == NULL)
        return NULL;
    q->dns = dns;
    q->kind = kind;
    q->state = DNS_Q_IN_ARES;
    q->ctx = ctx;
    dns->submitting = true;
    return q;
}

/* After c-ares has the query: answers arrive through the loop from now on. */
static struct dns_query *dns_query_started(struct dns_query *q)
{
    q->dns->submitting = false;
    dns_timer_rearm(q->dns);
    return q;
}

struct dns_query *dns_query_mx(struct dns *dns, const char *name, dns_mx_cb *cb, void *ctx)
{
    struct dns_query *q = cb != NULL ? dns_query_new(dns, name, DNS_KIND_MX, ctx) : NULL;

    if (q == NULL)
        return NULL;
    q->cb.mx = cb;
    ares_query(dns->channel, name, C_IN, T_MX, dns_on_answer, q);
    return dns_query_started(q);
}

struct dns_query *dns_query_txt(struct dns *dns, const char *name, dns_txt_cb *cb, void *ctx)
{
    struct dns_query *q = cb != NULL ? dns_query_new(dns, name, DNS_KIND_TXT, ctx) : NULL;

    if (q == NULL)
        return NULL;
    q->cb.txt = cb;
    ares_query(dns->channel, name, C_IN, T_TXT, dns_on_answer, q);
    return dns_query_started(q);
}

struct dns_query *dns_query_addr(struct dns *dns, const char *name, int family, dns_addr_cb *cb,
                                 void *ctx)
{
    struct ares_addrinfo_hints hints = {
        .ai_family = family,
        .ai_flags = ARES_AI_NOSORT,
    };
    struct dns_query *q;

    if (cb == NULL || (family != AF_INET && family != AF_INET6 && family != AF_UNSPEC))
        return NULL;
    q = dns_query_new(dns, name, DNS_KIND_ADDR, ctx);
    if (q == NULL)
        return NULL;
    q->cb.addr = cb;
    q->family = family;
    ares_getaddrinfo(dns->channel, name, NULL, &hints, dns_on_addrinfo, q);
    return dns_query_started(q);
}

void dns_query_cancel(struct dns_query *q)
{
    if (q == NULL)
        return;
    switch (q->state) {
    case DNS_Q_IN_ARES:
        q->cancelled = true; /* freed when c-ares calls back */
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

/* Port text of a nameserver: 1..65535, digits only. */
static int dns_port_parse(const char *text, int *port_r)
{
    unsigned long v;
    char *end;

    if (text[0] < '0' || text[0] > '9')
        return -1;
    v = strtoul(text, &end, 10);
    if (*end != '\0' || v == 0 || v > 65535)
        return -1;
    *port_r = (int)v;
    return 0;
}

/* Splits "ip", "ip:port" (IPv4 only), "[ipv6]" or "[ipv6]:port". */
static int dns_server_split(const char *text, char *host, size_t hostsize, const char **port_r)
{
    const char *sep;
    size_t hlen;

    *port_r = NULL;
    if (text[0] == '[') {
        sep = strchr(text, ']');
        if (sep == NULL || (sep[1] != '\0' && sep[1] != ':'))
            return -1;
        if (sep[1] == ':')
            *port_r = sep + 2;
        hlen = (size_t)(sep - text - 1);
        text++;
    } else {
        sep = strchr(text, ':');
        if (sep != NULL && strchr(sep + 1, ':') != NULL)
            sep = NULL; /* a bare IPv6 address */
        if (sep != NULL)
            *port_r = sep + 1;
        hlen = sep != NULL ? (size_t)(sep - text) : strlen(text);
    }
    if (hlen == 0 || hlen >= hostsize)
        return -1;
    memcpy(host, text, hlen);
    host[hlen] = '\0';
    return 0;
}

static int dns_server_parse(const char *text, struct ares_addr_port_node *node)
{
    char host[INET6_ADDRSTRLEN];
    const char *port;
    int portnum = 0; /* c-ares: 0 = 53 */
    bool bracket = text[0] == '[';

    if (dns_server_split(text, host, sizeof(host), &port) < 0)
        return -1;
    if (port != NULL && dns_port_parse(port, &portnum) < 0)
        return -1;
    if (!bracket && inet_pton(AF_INET, host, &node->addr.addr4) == 1)
        node->family = AF_INET;
    else if ((bracket || port == NULL) && inet_pton(AF_INET6, host, &node->addr.addr6) == 1)
        node->family = AF_INET6;
    else
        return -1;
    node->udp_port = portnum;
    node->tcp_port = portnum;
    return 0;
}

static int dns_servers_set(struct dns *dns, const struct dns_config *cfg, char *error,
                           size_t errsize)
{
    size_t count = cfg->nameserver_count;
    struct ares_addr_port_node *nodes;
    int rc;

    if (count == 0)
        return 0;
    nodes = cfg->nameservers != NULL ? calloc(count, sizeof(*nodes)) : NULL;
    if (nodes == NULL) {
        snprintf(error, errsize, "dns: no memory for %zu nameservers", count);
        return -1;
    }
    for (size_t i = 0; i < count; i++) {
        const char *text = cfg->nameservers[i] != NULL ? cfg->nameservers[i] : "";
        if (dns_server_parse(text, &nodes[i]) < 0) {
            snprintf(error, errsize, "dns: bad nameserver \"%.80s\" (want ip, ip:port or [ipv6]:port)",
                     text);
            free(nodes);
            return -1;
        }
        nodes[i].next = i + 1 < count ? &nodes[i + 1] : NULL;
    }
    rc = ares_set_servers_ports(dns->channel, nodes);
    free(nodes);
    if (rc != ARES_SUCCESS) {
        snprintf(error, errsize, "dns: setting nameservers: %s", ares_strerror(rc));
        return -1;
    }
    return 0;
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
    unsigned timeout = cfg->timeout_ms != 0 ? cfg->timeout_ms : DNS_DEFAULT_TIMEOUT_MS;
    unsigned tries = cfg->attempts != 0 ? cfg->attempts : DNS_DEFAULT_ATTEMPTS;
    struct ares_options opts = {
        .flags = ARES_FLAG_NOSEARCH | ARES_FLAG_NOALIASES,
        .timeout = timeout < INT_MAX ? (int)timeout : INT_MAX,
        .tries = tries < 100 ? (int)tries : 100,
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

/* Settles every query (DNS_CANCELLED) and frees everything; depth is 0. */
static void dns_destroy(struct dns *dns)
{
    struct dns_query *q;

    dns->dying = true;
    if (dns->channel != NULL)
        ares_cancel(dns->channel);
    while ((q = dns->ready_head) != NULL) {
        dns_ready_unlink(dns, q);
        free(q->records);
        q->records = NULL;
        q->n = 0;
        q->st = DNS_CANCELLED;
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
        dns_servers_set(dns, cfg, error, errsize) < 0) {
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

/*
 * dns-parse — see dns-parse.h. Each parser lets c-ares read the reply into
 * its own structures, checks every record against our rules, then copies
 * what passed into one block. MX replies are sorted through an array of
 * references, as c-ares's list cannot be sorted in place.
 */
#include "config.h"
#include "lib/dns-parse.h"

#include <stdlib.h>
#include <string.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <ares.h>
#include <ares_nameser.h>

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

/* PTR names: letters, digits, '-' and '_' in labels of 1..63 octets. */
static bool dns_hostname_ok(const char *name)
{
    size_t len = strnlen(name, DNS_NAME_MAX + 1), label = 0;

    if (len == 0 || len > DNS_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        bool ldh = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                   c == '-' || c == '_';
        if (c == '.') {
            if (label == 0)
                return false;
            label = 0;
        } else if (!ldh || ++label > 63) {
            return false;
        }
    }
    return label > 0;
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

/* Copies the sorted replies into r (cut to DNS_MAX_RECORDS). */
static enum dns_status dns_mx_store(struct dns_result *r, struct dns_mx_ref *refs, size_t count)
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
    r->records = out;
    r->size = n * sizeof(*out);
    r->n = n;
    return DNS_OK;
}

enum dns_status dns_parse_mx(struct dns_result *r, const unsigned char *abuf, int alen)
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
        st = count == 0 ? DNS_NODATA : dns_mx_store(r, refs, count);
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

/* One block: the n records, each NUL-terminated. */
static enum dns_status dns_txt_store(struct dns_result *r, const struct ares_txt_ext *head,
                                     size_t n, size_t bytes)
{
    char *block = malloc(bytes + n), *p = block;
    size_t i = 0;

    if (block == NULL)
        return DNS_TEMPFAIL;
    for (const struct ares_txt_ext *t = head; t != NULL; t = t->next) {
        if (t->record_start || i == 0) {
            if (i++ > 0)
                *p++ = '\0';
        }
        memcpy(p, t->txt, t->length);
        p += t->length;
    }
    *p = '\0';
    r->records = block;
    r->size = bytes + n;
    r->n = n;
    return DNS_OK;
}

enum dns_status dns_parse_txt(struct dns_result *r, const unsigned char *abuf, int alen)
{
    struct ares_txt_ext *head = NULL;
    size_t n = 0, bytes = 0;
    enum dns_status st;
    int rc = ares_parse_txt_reply_ext(abuf, alen, &head);

    if (rc != ARES_SUCCESS)
        return dns_status_from_parse(rc);
    st = dns_txt_measure(head, &n, &bytes);
    if (st == DNS_OK)
        st = dns_txt_store(r, head, n, bytes);
    ares_free_data(head);
    return st;
}

/* Every name is checked; the first DNS_MAX_RECORDS are kept, NUL-terminated. */
static enum dns_status dns_ptr_store(struct dns_result *r, char *const *names)
{
    size_t n = 0, size = 0;
    char *p;

    for (size_t i = 0; names != NULL && names[i] != NULL; i++) {
        if (!dns_hostname_ok(names[i]))
            return DNS_BADANSWER;
        if (n < DNS_MAX_RECORDS) {
            size += strlen(names[i]) + 1;
            n++;
        }
    }
    if (n == 0)
        return DNS_NODATA;
    if ((p = r->records = malloc(size)) == NULL)
        return DNS_TEMPFAIL;
    for (size_t i = 0; i < n; i++)
        p = stpcpy(p, names[i]) + 1;
    r->size = size;
    r->n = n;
    return DNS_OK;
}

/* c-ares lists every PTR name of the answer as an alias. */
enum dns_status dns_parse_ptr(struct dns_result *r, const unsigned char *abuf, int alen,
                              const void *addr, int addrlen, int family)
{
    struct hostent *host = NULL;
    enum dns_status st;
    int rc = ares_parse_ptr_reply(abuf, alen, addr, addrlen, family, &host);

    if (rc != ARES_SUCCESS)
        return dns_status_from_parse(rc);
    st = dns_ptr_store(r, host->h_aliases);
    ares_free_hostent(host);
    return st;
}

/* TTLs below 0 count as 0. */
uint32_t dns_addr_put(struct dns_addr *out, int family, const void *addr, int ttl)
{
    if (family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&out->sa;
        sin->sin_family = AF_INET;
        memcpy(&sin->sin_addr, addr, sizeof(sin->sin_addr));
        out->len = sizeof(*sin);
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->sa;
        sin6->sin6_family = AF_INET6;
        memcpy(&sin6->sin6_addr, addr, sizeof(sin6->sin6_addr));
        out->len = sizeof(*sin6);
    }
    return ttl > 0 ? (uint32_t)ttl : 0;
}

/* A or AAAA records of the family asked for (a hostile server may mix them
 * in), with their TTLs, CNAMEs' included; c-ares cuts them to our bound. */
enum dns_status dns_parse_addr(struct dns_result *r, int type, const unsigned char *abuf, int alen)
{
    struct ares_addrttl v4[DNS_MAX_RECORDS];
    struct ares_addr6ttl v6[DNS_MAX_RECORDS];
    int count = DNS_MAX_RECORDS;
    int rc = type == T_A ? ares_parse_a_reply(abuf, alen, NULL, v4, &count)
                         : ares_parse_aaaa_reply(abuf, alen, NULL, v6, &count);
    struct dns_addr *out;
    uint32_t ttl = UINT32_MAX, t;

    if (rc != ARES_SUCCESS)
        return dns_status_from_parse(rc);
    if (count <= 0 || count > DNS_MAX_RECORDS)
        return DNS_NODATA;
    out = calloc((size_t)count, sizeof(*out));
    if (out == NULL)
        return DNS_TEMPFAIL;
    for (int i = 0; i < count; i++) {
        if (type == T_A)
            t = dns_addr_put(&out[i], AF_INET, &v4[i].ipaddr, v4[i].ttl);
        else
            t = dns_addr_put(&out[i], AF_INET6, &v6[i].ip6addr, v6[i].ttl);
        ttl = t < ttl ? t : ttl;
    }
    r->records = out;
    r->size = (size_t)count * sizeof(*out);
    r->n = (size_t)count;
    r->ttl = ttl;
    r->cacheable = true;
    return DNS_OK;
}

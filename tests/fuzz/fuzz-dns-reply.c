/*
 * fuzz-dns-reply — libFuzzer target for the code that reads raw DNS replies
 * from untrusted nameservers: dns_reply_ttl() (lib/dns-cache.c: the TTL
 * walk of positive answers, and the SOA TTL/MINIMUM of negative ones) and
 * the answer parsers of lib/dns-parse.c (MX; TXT; PTR of an IPv4 and of an
 * IPv6 address; A and AAAA). The input is one reply, given to each of them;
 * it is copied into a buffer of exactly its size so that ASan sees any read
 * past the end, and must come back unchanged.
 *
 * Asserts only memory safety and the documented bounds of the results: a
 * status from the closed set, nothing allocated on failure, 1..DNS_MAX_RECORDS
 * records on success in a block of exactly the size stated, MX hosts
 * printable and at most DNS_NAME_MAX octets and sorted by preference, TXT
 * records at most DNS_TXT_MAX octets, PTR names host names (dns.h),
 * addresses of the family asked for with port 0, TTLs below 2^31 (RFC 2181
 * §8). Invariants that fail abort(), so the fuzzer and the replay run in
 * make check both report them.
 */
#include "config.h"
#include "lib/dns-cache.h"
#include "lib/dns-parse.h"

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <ares_nameser.h>

#define TTL_MAX 0x7fffffffu

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok)
{
    if (!ok)
        abort();
}

/* The common contract of the parsers (dns-parse.h). */
static void check_result(enum dns_status st, const struct dns_result *r)
{
    check(st == DNS_OK || st == DNS_NODATA || st == DNS_BADANSWER || st == DNS_TEMPFAIL);
    if (st != DNS_OK) {
        check(r->records == NULL && r->n == 0 && r->size == 0);
        return;
    }
    check(r->records != NULL && r->n >= 1 && r->n <= DNS_MAX_RECORDS);
}

/* An MX host: "." or printable ASCII without space or backslash. */
static bool mx_host_ok(const char *host)
{
    size_t len = strnlen(host, DNS_NAME_MAX + 1);

    if (len == 0 || len > DNS_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (host[i] <= 0x20 || host[i] >= 0x7f || host[i] == '\\')
            return false;
    return true;
}

/* A PTR name as dns.h promises it: LDH and '_' labels of 1..63 octets, at
 * most DNS_NAME_MAX octets, no final dot. */
static bool ptr_name_ok(const char *name, size_t len)
{
    size_t label = 0;

    if (len == 0 || len > DNS_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        if (c == '.') {
            if (label == 0)
                return false;
            label = 0;
        } else if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                     c == '-' || c == '_') ||
                   ++label > 63) {
            return false;
        }
    }
    return label > 0;
}

/* n NUL-terminated strings that fill the block exactly, each at most max
 * octets (and a host name when names). */
static void check_strings(const struct dns_result *r, size_t max, bool names)
{
    const char *p = r->records;
    size_t off = 0;

    for (size_t i = 0; i < r->n; i++) {
        size_t len;
        check(off < r->size);
        len = strnlen(p + off, r->size - off);
        check(len < r->size - off && len <= max);
        if (names)
            check(ptr_name_ok(p + off, len));
        off += len + 1;
    }
    check(off == r->size);
}

static void fuzz_mx(const unsigned char *buf, int len)
{
    struct dns_result r = { .st = DNS_OK };
    enum dns_status st = dns_parse_mx(&r, buf, len);
    const struct dns_mx *mx = r.records;

    check_result(st, &r);
    if (st == DNS_OK) {
        check(r.size == r.n * sizeof(*mx));
        for (size_t i = 0; i < r.n; i++) {
            check(mx_host_ok(mx[i].host) && mx[i].preference <= 65535);
            check(i == 0 || mx[i - 1].preference <= mx[i].preference);
        }
    }
    free(r.records);
}

static void fuzz_txt(const unsigned char *buf, int len)
{
    struct dns_result r = { .st = DNS_OK };
    enum dns_status st = dns_parse_txt(&r, buf, len);

    check_result(st, &r);
    if (st == DNS_OK)
        check_strings(&r, DNS_TXT_MAX, false);
    free(r.records);
}

static void fuzz_ptr(const unsigned char *buf, int len, const void *addr, int addrlen, int family)
{
    struct dns_result r = { .st = DNS_OK };
    enum dns_status st = dns_parse_ptr(&r, buf, len, addr, addrlen, family);

    check_result(st, &r);
    if (st == DNS_OK)
        check_strings(&r, DNS_NAME_MAX, true);
    free(r.records);
}

static void fuzz_addr(const unsigned char *buf, int len, int type)
{
    struct dns_result r = { .st = DNS_OK };
    enum dns_status st = dns_parse_addr(&r, type, buf, len);
    const struct dns_addr *a = r.records;
    int family = type == T_A ? AF_INET : AF_INET6;

    check_result(st, &r);
    if (st == DNS_OK) {
        check(r.size == r.n * sizeof(*a) && r.cacheable && r.ttl <= TTL_MAX);
        for (size_t i = 0; i < r.n; i++) {
            check(a[i].sa.ss_family == family);
            if (family == AF_INET)
                check(a[i].len == sizeof(struct sockaddr_in) &&
                      ((const struct sockaddr_in *)&a[i].sa)->sin_port == 0);
            else
                check(a[i].len == sizeof(struct sockaddr_in6) &&
                      ((const struct sockaddr_in6 *)&a[i].sa)->sin6_port == 0);
        }
    }
    free(r.records);
}

static void fuzz_ttl(const unsigned char *buf, size_t len, bool negative)
{
    uint32_t ttl = UINT32_MAX;
    int rc = dns_reply_ttl(buf, len, negative, &ttl);

    check(rc == 0 || rc == -1);
    if (rc == 0)
        check(ttl <= TTL_MAX);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const unsigned char v4[4] = {192, 0, 2, 1};
    static const unsigned char v6[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 1};
    unsigned char *buf;
    int len;

    if (size > INT_MAX)
        return 0;
    len = (int)size;
    buf = malloc(size > 0 ? size : 1);
    if (buf == NULL)
        return 0;
    if (size > 0)
        memcpy(buf, data, size);
    fuzz_ttl(buf, size, false);
    fuzz_ttl(buf, size, true);
    fuzz_mx(buf, len);
    fuzz_txt(buf, len);
    fuzz_ptr(buf, len, v4, sizeof(v4), AF_INET);
    fuzz_ptr(buf, len, v6, sizeof(v6), AF_INET6);
    fuzz_addr(buf, len, T_A);
    fuzz_addr(buf, len, T_AAAA);
    check(size == 0 || memcmp(buf, data, size) == 0);
    free(buf);
    return 0;
}

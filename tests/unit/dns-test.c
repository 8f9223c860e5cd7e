/*
 * dns-test — see dns-test.h.
 */
#include "tests/unit/dns-test.h"

/* ---- fixture: nsd, a silent socket, a scripted responder ---- */


long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

int write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    if (f == NULL)
        return -1;
    fputs(text, f);
    return fclose(f);
}

static const char zone_head[] =
    "$ORIGIN dns.test.\n"
    "$TTL 300\n"
    "@ IN SOA ns.dns.test. hostmaster.dns.test. 1 3600 600 86400 300\n"
    "@ IN NS ns\n"
    "ns IN A 127.0.0.1\n"
    "mx-order IN MX 20 c\n"
    "mx-order IN MX 10 b\n"
    "mx-order IN MX 30 d\n"
    "mx-order IN MX 10 a\n"
    "mx-alias IN CNAME mx-order\n"
    "null-mx IN MX 0 .\n"
    "a-only IN A 192.0.2.1\n"
    "v4 IN A 192.0.2.10\n"
    "v4 IN A 192.0.2.11\n"
    "v6 IN AAAA 2001:db8::6\n"
    "dual IN A 192.0.2.20\n"
    "dual IN AAAA 2001:db8::20\n"
    "alias IN CNAME dual\n"
    "txt-spf IN TXT \"v=spf1 \" \"ip4:192.0.2.0/24 \" \"-all\"\n"
    "txt-two IN TXT \"one\"\n"
    "txt-two IN TXT \"two\" \"three\"\n"
    "txt-empty IN TXT \"\"\n"
    "txt-nul IN TXT \"a\\000b\"\n";

/* "name IN TXT" + parts strings of TXT_PART octets ('a', 'b', ...). */
void zone_txt_parts(FILE *f, const char *name, int parts, char *expect, size_t expsize)
{
    size_t off = 0;

    fprintf(f, "%s IN TXT (", name);
    for (int i = 0; i < parts; i++) {
        char part[TXT_PART + 1];
        memset(part, 'a' + i, TXT_PART);
        part[TXT_PART] = '\0';
        fprintf(f, " \"%s\"\n", part);
        if (expect != NULL && off + TXT_PART < expsize) {
            memcpy(expect + off, part, TXT_PART);
            off += TXT_PART;
        }
    }
    fprintf(f, ")\n");
    if (expect != NULL)
        expect[off] = '\0';
}

/* MX_MANY records with falling preferences; TXT_MANY one-string records. */
void zone_many(FILE *f, struct env *env)
{
    size_t off = 0;

    for (int i = 1; i <= MX_MANY; i++)
        fprintf(f, "mx-many IN MX %d h%d\n", MX_MANY + 1 - i, i);
    for (int i = 0; i < TXT_MANY; i++)
        fprintf(f, "txt-many IN TXT \"r%d\"\n", i);
    for (int pref = 1; pref <= DNS_MAX_RECORDS; pref++)
        off += (size_t)snprintf(env->mx_many + off, sizeof(env->mx_many) - off, "%s%d h%d.dns.test",
                                pref > 1 ? "," : "", pref, MX_MANY + 1 - pref);
}

static const char zone_rev4[] =
    "$ORIGIN 2.0.192.in-addr.arpa.\n"
    "$TTL 300\n"
    "@ IN SOA ns.dns.test. hostmaster.dns.test. 1 3600 600 86400 300\n"
    "@ IN NS ns.dns.test.\n"
    "10 IN PTR v4.dns.test.\n"
    "11 IN PTR v4.dns.test.\n"
    "11 IN PTR other.dns.test.\n"
    "12 IN PTR bad\\032name.dns.test.\n"
    "13 IN PTR under_score.dns.test.\n"
    "14 IN TXT \"no ptr\"\n";

static const char zone_rev6[] =
    "$ORIGIN 8.b.d.0.1.0.0.2.ip6.arpa.\n"
    "$TTL 300\n"
    "@ IN SOA ns.dns.test. hostmaster.dns.test. 1 3600 600 86400 300\n"
    "@ IN NS ns.dns.test.\n"
    "6.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0 IN PTR v6.dns.test.\n"
    "0.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0 IN PTR dual.dns.test.\n";

/* dir/name.zone with the text; its mtime set to env->zone_mtime when set. */
static int write_zone_file(const struct env *env, const char *name, const char *text)
{
    char path[160];
    struct timespec times[2];

    snprintf(path, sizeof(path), "%s/%s.zone", env->nsd.dir, name);
    if (write_file(path, text) < 0)
        return -1;
    if (env->zone_mtime == 0)
        return 0;
    times[0] = times[1] = (struct timespec){ .tv_sec = env->zone_mtime };
    return utimensat(AT_FDCWD, path, times, 0);
}

/* ttl.test and 100.51.198.in-addr.arpa: TTL_SHORT, except "long" (60 s) and
 * the SOA (30 s, MINIMUM TTL_SHORT: negative answers live TTL_SHORT). In
 * version 1 "gone" does not exist and "nodata" has no address; in version 2
 * both have 192.0.2.2; every other answer names the version. */
int write_ttl_zones(struct env *env, int version)
{
    char text[1024];
    int v = version;

    snprintf(text, sizeof(text),
             "$ORIGIN ttl.test.\n$TTL %d\n"
             "@ 30 IN SOA ns.dns.test. hostmaster.dns.test. %d 3600 600 86400 %d\n"
             "@ 30 IN NS ns.dns.test.\n"
             "a IN A 192.0.2.%d\n"
             "mx IN MX 10 mx%d.ttl.test.\n"
             "txt IN TXT \"v%d\"\n"
             "long 60 IN A 192.0.2.%d\n"
             "nodata IN TXT \"x\"\n"
             "%s",
             TTL_SHORT, v, TTL_SHORT, v, v, v, v,
             v == 1 ? "" : "nodata IN A 192.0.2.2\ngone IN A 192.0.2.2\n");
    if (write_zone_file(env, "ttl.test", text) < 0)
        return -1;
    snprintf(text, sizeof(text),
             "$ORIGIN 100.51.198.in-addr.arpa.\n$TTL %d\n"
             "@ 30 IN SOA ns.dns.test. hostmaster.dns.test. %d 3600 600 86400 %d\n"
             "@ 30 IN NS ns.dns.test.\n"
             "7 IN PTR host%d.ttl.test.\n",
             TTL_SHORT, v, TTL_SHORT, v);
    env->ttl_version = version;
    return write_zone_file(env, "100.51.198.in-addr.arpa", text);
}

/* Rewrites the ttl.test zones with a later mtime and has nsd reload them. */
int reload_nsd(struct env *env, int version)
{
    env->zone_mtime = env->zone_mtime != 0 ? env->zone_mtime + 1 : time(NULL) + 1;
    if (write_ttl_zones(env, version) < 0)
        return -1;
    return nsd_test_reload(&env->nsd);
}

int write_zone(struct env *env)
{
    char path[128], txt[TXT_LONG_PARTS * TXT_PART + 1];
    FILE *f;

    char rev4[sizeof(zone_rev4) + PTR_MANY * 40];
    size_t off = strlen(zone_rev4);

    memcpy(rev4, zone_rev4, off + 1);
    for (int i = 0; i < PTR_MANY; i++) /* an answer for TCP, cut to DNS_MAX_RECORDS */
        off += (size_t)snprintf(rev4 + off, sizeof(rev4) - off, "3 IN PTR p%02d.dns.test.\n", i);
    if (write_zone_file(env, "2.0.192.in-addr.arpa", rev4) < 0 ||
        write_zone_file(env, "8.b.d.0.1.0.0.2.ip6.arpa", zone_rev6) < 0 ||
        write_ttl_zones(env, 1) < 0)
        return -1;

    snprintf(path, sizeof(path), "%s/dns.test.zone", env->nsd.dir);
    f = fopen(path, "w");
    if (f == NULL)
        return -1;
    fputs(zone_head, f);
    zone_txt_parts(f, "txt-long", TXT_LONG_PARTS, txt, sizeof(txt));
    zone_txt_parts(f, "txt-huge", TXT_HUGE_PARTS, NULL, 0);
    zone_many(f, env);
    snprintf(env->txt_long, sizeof(env->txt_long), "\"%s\"", txt);
    return fclose(f);
}

/* ---- results ---- */


void result_begin(struct result *r, enum dns_status st, size_t n)
{
    r->calls++;
    r->st = st;
    r->n = n;
    r->inside = r->inside || r->starting;
    r->at_ms = now_ms();
    r->text[0] = '\0';
    assert_true(n <= DNS_MAX_RECORDS);
    assert_true(st == DNS_OK || n == 0);
}

int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Joins the items (sorted unless the order matters) into r->text. */
void result_end(struct result *r, bool sort, const char *sep)
{
    size_t off = 0;

    if (sort)
        qsort(r->items, r->n, sizeof(r->items[0]), cmp_str);
    for (size_t i = 0; i < r->n; i++) {
        int w = snprintf(r->text + off, sizeof(r->text) - off, "%s%s", i ? sep : "", r->items[i]);
        assert_true(w >= 0 && (size_t)w < sizeof(r->text) - off);
        off += (size_t)w;
        free(r->items[i]);
        r->items[i] = NULL;
    }
    if (r->hook != NULL)
        r->hook(r);
}

bool host_printable(const char *s)
{
    size_t len = strnlen(s, DNS_NAME_MAX + 1);

    if (len == 0 || len > DNS_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
            return false;
    return true;
}

void on_mx(void *ctx, enum dns_status st, const struct dns_mx *mx, size_t n)
{
    struct result *r = ctx;
    char item[DNS_NAME_MAX + 16];

    result_begin(r, st, n);
    for (size_t i = 0; i < n; i++) {
        assert_true(host_printable(mx[i].host));
        assert_true(mx[i].preference <= 65535);
        snprintf(item, sizeof(item), "%u %s", mx[i].preference, mx[i].host);
        r->items[i] = strdup(item);
    }
    result_end(r, false, ",");
}

void on_addr(void *ctx, enum dns_status st, const struct dns_addr *a, size_t n)
{
    struct result *r = ctx;
    char item[INET6_ADDRSTRLEN];

    result_begin(r, st, n);
    for (size_t i = 0; i < n; i++) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)&a[i].sa;
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&a[i].sa;
        if (a[i].sa.ss_family == AF_INET) {
            assert_int_equal(a[i].len, sizeof(*sin));
            assert_int_equal(sin->sin_port, 0);
            inet_ntop(AF_INET, &sin->sin_addr, item, sizeof(item));
        } else {
            assert_int_equal(a[i].sa.ss_family, AF_INET6);
            assert_int_equal(a[i].len, sizeof(*sin6));
            assert_int_equal(sin6->sin6_port, 0);
            inet_ntop(AF_INET6, &sin6->sin6_addr, item, sizeof(item));
        }
        r->items[i] = strdup(item);
    }
    result_end(r, true, ",");
}

void on_txt(void *ctx, enum dns_status st, const char *const *txt, size_t n)
{
    struct result *r = ctx;

    result_begin(r, st, n);
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(txt[i]);
        assert_true(len <= 4096);
        r->items[i] = malloc(len + 3);
        snprintf(r->items[i], len + 3, "\"%s\"", txt[i]);
    }
    result_end(r, true, "|");
}

void on_ptr(void *ctx, enum dns_status st, const char *const *names, size_t n)
{
    struct result *r = ctx;

    result_begin(r, st, n);
    for (size_t i = 0; i < n; i++) {
        assert_true(host_printable(names[i]));
        r->items[i] = strdup(names[i]);
    }
    result_end(r, true, ",");
}

/* An IPv4 or IPv6 literal as a sockaddr (port 0); -1 if it is neither. */
int sockaddr_from_text(const char *text, struct sockaddr_storage *ss)
{
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

    memset(ss, 0, sizeof(*ss));
    if (inet_pton(AF_INET, text, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        return 0;
    }
    if (inet_pton(AF_INET6, text, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        return 0;
    }
    return -1;
}

struct dns_query *start(struct dns *dns, enum kind kind, const char *name, int family,
                               struct result *r)
{
    struct dns_query *q = NULL;
    struct sockaddr_storage ss;

    r->starting = true;
    switch (kind) {
    case Q_MX:
        q = dns_query_mx(dns, name, on_mx, r);
        break;
    case Q_ADDR:
        q = dns_query_addr(dns, name, family, on_addr, r);
        break;
    case Q_TXT:
        q = dns_query_txt(dns, name, on_txt, r);
        break;
    case Q_PTR:
        if (sockaddr_from_text(name, &ss) == 0)
            q = dns_query_ptr(dns, (struct sockaddr *)&ss, on_ptr, r);
        break;
    }
    r->starting = false;
    return q;
}

void on_flag(evutil_socket_t fd, short what, void *arg)
{
    *(bool *)arg = true;
}

bool all_called(const struct result *rs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (rs[i].calls == 0)
            return false;
    return true;
}

/* Runs the loop until each result has been called or max_ms have passed. */
bool run_until(struct event_base *base, const struct result *rs, size_t n, int max_ms)
{
    bool expired = false;
    struct event *guard = evtimer_new(base, on_flag, &expired);
    struct timeval tv = { .tv_sec = max_ms / 1000, .tv_usec = (max_ms % 1000) * 1000 };

    evtimer_add(guard, &tv);
    while (!expired && !all_called(rs, n))
        event_base_loop(base, EVLOOP_ONCE);
    event_free(guard);
    return all_called(rs, n);
}

void run_for(struct event_base *base, int ms)
{
    struct result never = { .calls = 0 };

    run_until(base, &never, 1, ms);
}

/* A result hook: cancels the query that r->hook_arg points to and clears
 * that pointer, so that of two queries cancelling each other only one runs. */
void cancel_other(struct result *r)
{
    struct dns_query **other = r->hook_arg;

    dns_query_cancel(*other);
    *other = NULL;
}

struct dns *dns_at(struct event_base *base, int port, unsigned timeout_ms, unsigned attempts)
{
    char server[32], error[256] = "";
    const char *servers[] = { server };
    struct dns_config cfg = { .nameservers = servers, .nameserver_count = 1,
                              .timeout_ms = timeout_ms, .attempts = attempts };
    struct dns *dns = NULL;

    snprintf(server, sizeof(server), "127.0.0.1:%d", port);
    if (dns_new(base, &cfg, &dns, error, sizeof(error)) != 0)
        fail_msg("dns_new: %s", error);
    return dns;
}

/* A resolver with a cache (timeout 1000 ms, 2 attempts). */
struct dns *dns_cached(struct event_base *base, int port, size_t size, unsigned max_ttl_s)
{
    char server[32], error[256] = "";
    const char *servers[] = { server };
    struct dns_config cfg = { .nameservers = servers, .nameserver_count = 1, .timeout_ms = 1000,
                              .attempts = 2, .cache_size = size, .cache_max_ttl_s = max_ttl_s };
    struct dns *dns = NULL;

    snprintf(server, sizeof(server), "127.0.0.1:%d", port);
    if (dns_new(base, &cfg, &dns, error, sizeof(error)) != 0)
        fail_msg("dns_new: %s", error);
    return dns;
}

unsigned fake_queries(struct env *env)
{
    return atomic_load(&env->fake_count);
}

/* ---- the scripted responder ---- */


void put_bytes(struct pkt *p, const void *data, size_t n)
{
    if (n <= sizeof(p->b) - p->len) {
        memcpy(p->b + p->len, data, n);
        p->len += n;
    }
}

void put16(struct pkt *p, unsigned v)
{
    uint8_t b[2] = { (uint8_t)(v >> 8), (uint8_t)v };

    put_bytes(p, b, 2);
}

/* Owner = the question's name (a pointer), class IN. */
void put_rr_head_ttl(struct pkt *p, unsigned type, size_t rdlen, uint32_t ttl)
{
    put16(p, 0xc00c);
    put16(p, type);
    put16(p, 1);
    put16(p, ttl >> 16);
    put16(p, ttl & 0xffff);
    put16(p, (unsigned)rdlen);
}

/* TTL 300. */
void put_rr_head(struct pkt *p, unsigned type, size_t rdlen)
{
    put_rr_head_ttl(p, type, rdlen, 300);
}

void put_name(struct pkt *p, const char *dotted)
{
    while (*dotted != '\0') {
        size_t len = strcspn(dotted, ".");
        uint8_t l = (uint8_t)len;
        put_bytes(p, &l, 1);
        put_bytes(p, dotted, len);
        dotted += len + (dotted[len] == '.');
    }
    put_bytes(p, "", 1);
}

void put_mx(struct pkt *p, unsigned pref, const char *host)
{
    put_rr_head(p, 15, 2 + strlen(host) + 2);
    put16(p, pref);
    put_name(p, host);
}

/* One TXT record of n strings (each under 256 octets). */
void put_txt(struct pkt *p, const char *const *parts, size_t n)
{
    size_t rdlen = 0;

    for (size_t i = 0; i < n; i++)
        rdlen += 1 + strlen(parts[i]);
    put_rr_head(p, 16, rdlen);
    for (size_t i = 0; i < n; i++) {
        uint8_t l = (uint8_t)strlen(parts[i]);
        put_bytes(p, &l, 1);
        put_bytes(p, parts[i], l);
    }
}


/* An SOA owned by owner (owner and names uncompressed): RR TTL ttl, MINIMUM
 * minimum. extra != 0 makes a broken one for the TTL walk's tests: RDLENGTH
 * and RDATA one octet longer (extra > 0) or shorter (extra < 0). */
void put_soa_owned(struct pkt *p, const char *owner, uint32_t ttl, uint32_t minimum, int extra)
{
    put_name(p, owner);
    put16(p, 6);
    put16(p, 1);
    put16(p, ttl >> 16);
    put16(p, ttl & 0xffff);
    put16(p, (unsigned)(2 * 14 + 20 + extra)); /* two names of 14 octets, five numbers */
    put_name(p, "ns.fake.test");
    put_name(p, "hm.fake.test");
    for (int i = 0; i < 4; i++)
        put16(p, 0), put16(p, 1);
    put16(p, minimum >> 16);
    put16(p, minimum & 0xffff);
    if (extra > 0)
        put_bytes(p, "", 1);
    if (extra < 0)
        p->len--;
}

/* An SOA for fake.test for the authority section. */
void put_soa(struct pkt *p, uint32_t ttl, uint32_t minimum)
{
    put_soa_owned(p, "fake.test", ttl, minimum, 0);
}

/* One record of the type asked for (A, AAAA, MX, TXT, PTR) with this TTL. */
void fake_record(struct pkt *p, const struct fake_query *fq, uint32_t ttl)
{
    switch (fq->qtype) {
    case 1:
        put_rr_head_ttl(p, 1, 4, ttl);
        put_bytes(p, "\xc0\x00\x02\x01", 4);
        break;
    case 28:
        put_rr_head_ttl(p, 28, 16, ttl);
        put_bytes(p, "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x01", 16);
        break;
    case 15:
        put_rr_head_ttl(p, 15, 2 + 14, ttl);
        put16(p, 10);
        put_name(p, "mx.fake.test");
        break;
    case 16:
        put_rr_head_ttl(p, 16, 4, ttl);
        put_bytes(p, "\003ttl", 4);
        break;
    default:
        put_rr_head_ttl(p, fq->qtype, 14, ttl);
        put_name(p, "pt.fake.test");
        break;
    }
}

int fake_parse(const uint8_t *buf, size_t len, struct fake_query *fq)
{
    size_t pos = 12;

    if (len < 17 || buf[12] == 0 || buf[12] > 63 || 13u + buf[12] > len)
        return -1;
    memcpy(fq->label, buf + 13, buf[12]);
    fq->label[buf[12]] = '\0';
    while (pos < len && buf[pos] != 0 && buf[pos] <= 63)
        pos += 1u + buf[pos];
    if (pos + 5 > len || buf[pos] != 0)
        return -1;
    fq->buf = buf;
    fq->qend = pos + 5;
    fq->qtype = (unsigned)buf[pos + 1] << 8 | buf[pos + 2];
    return 0;
}

/* Header (id and RD echoed, QR AA RA, rcode) and the question. */
void fake_head(struct pkt *p, const struct fake_query *fq, unsigned flags, unsigned ancount)
{
    p->len = 0;
    put_bytes(p, fq->buf, 2);
    put16(p, 0x8480 | (fq->buf[2] & 0x01u) << 8 | flags);
    put16(p, 1);
    put16(p, ancount);
    put16(p, 0);
    put16(p, 0);
    put_bytes(p, fq->buf + 12, fq->qend - 12);
}

/* Random header flags and answer count, then random or RR-shaped bytes. */
void fake_fuzz(struct pkt *p, const struct fake_query *fq, uint64_t *rng)
{
    uint64_t r = rng_next(rng);
    unsigned flags = (r & 3) == 0 ? (unsigned)(r >> 8) % 6 : 0;
    unsigned ancount = (unsigned)(r >> 16) % 5;
    size_t extra = (size_t)(r >> 24) % 200;

    if ((r >> 40) % 16 == 0)
        flags |= 0x0200; /* TC: c-ares retries over TCP, which is refused */
    fake_head(p, fq, flags, ancount);
    for (unsigned i = 0; (r >> 48) % 2 == 0 && i < ancount; i++) {
        size_t rdlen = (size_t)rng_next(rng) % 40;
        put_rr_head(p, fq->qtype, rdlen);
        for (size_t j = 0; j < rdlen; j++)
            put_bytes(p, &(uint8_t){ (uint8_t)rng_next(rng) }, 1);
    }
    for (size_t j = 0; j < extra; j++)
        put_bytes(p, &(uint8_t){ (uint8_t)rng_next(rng) }, 1);
}

/* Scripted cache answers: "ttlT" one record of TTL T; "v4only" an A record
 * of TTL 100, and NODATA without SOA for other types; "nxT-M" (NXDOMAIN)
 * and "ndT-M" (NODATA) with an SOA of TTL T and MINIMUM M; "nxbadsoa" with
 * an SOA whose RDATA runs past its length. False for other labels. */
static bool fake_ttl_answer(struct pkt *p, const struct fake_query *fq)
{
    const char *l = fq->label;
    unsigned t, m;

    if (sscanf(l, "ttl%u", &t) == 1 || (strcmp(l, "v4only") == 0 && fq->qtype == 1)) {
        fake_head(p, fq, 0, 1);
        fake_record(p, fq, l[0] == 't' ? t : 100);
    } else if (strcmp(l, "v4only") == 0) {
        fake_head(p, fq, 0, 0);
    } else if ((sscanf(l, "nx%u-%u", &t, &m) == 2 || sscanf(l, "nd%u-%u", &t, &m) == 2)) {
        fake_head(p, fq, l[1] == 'x' ? 3 : 0, 0);
        p->b[9] = 1; /* NSCOUNT */
        put_soa(p, t, m);
    } else if (strcmp(l, "nxbadsoa") == 0) {
        fake_head(p, fq, 3, 0);
        p->b[9] = 1;
        put_soa(p, 100, 100);
        p->b[p->len - 49] = 47; /* RDLENGTH's low octet: one short of the 48 */
    } else {
        return false;
    }
    return true;
}

/* Faults: "wrongid" (the id off by one), "short" (6 octets of header),
 * "trunc" (an MX record cut inside its RDATA). False for other labels. */
static bool fake_fault_answer(struct pkt *p, const struct fake_query *fq)
{
    const char *l = fq->label;

    if (strcmp(l, "wrongid") == 0) {
        fake_head(p, fq, 0, 1);
        fake_record(p, fq, 300);
        p->b[1] ^= 1;
    } else if (strcmp(l, "short") == 0) {
        fake_head(p, fq, 0, 1);
        p->len = 6;
    } else if (strcmp(l, "trunc") == 0) {
        fake_head(p, fq, 0, 1);
        put_mx(p, 10, "cut.fake.test");
        p->len -= 6;
    } else {
        return false;
    }
    return true;
}

/* Builds the answer the first label (for PTR: the address's last octet) asks
 * for; 0 = stay silent. */
size_t fake_answer(struct pkt *p, const struct fake_query *fq, uint64_t *rng)
{
    const char *l = fq->label;
    unsigned ms;

    if (fake_ttl_answer(p, fq) || fake_fault_answer(p, fq))
        return p->len;
    if (sscanf(l, "slow%u", &ms) == 1) {
        fake_head(p, fq, 0, 1);
        fake_record(p, fq, 300);
    } else if (fq->qtype == 12 && strcmp(l, "1") == 0) { /* 192.0.2.1 */
        fake_head(p, fq, 0, 1);
        fake_record(p, fq, 300);
    } else if (fq->qtype == 12 && (strcmp(l, "2") == 0 || strcmp(l, "4") == 0 ||
                                   strcmp(l, "5") == 0)) { /* not host names */
        fake_head(p, fq, 0, 1);
        put_rr_head(p, 12, 15);
        put_name(p, l[0] == '2'   ? "a\001b.fake.test"
                    : l[0] == '4' ? "a/b.fake.test"
                                  : "a*b.fake.test");
    } else if (strcmp(l, "mxorder") == 0) {
        fake_head(p, fq, 0, 3);
        put_mx(p, 10, "y.fake.test");
        put_mx(p, 5, "z.fake.test");
        put_mx(p, 10, "x.fake.test");
    } else if (strcmp(l, "mxctl") == 0) {
        fake_head(p, fq, 0, 1);
        put_mx(p, 10, "a\001b.fake.test");
    } else if (strcmp(l, "trail") == 0) {
        fake_head(p, fq, 0, 0);
        put_bytes(p, "\0\0\0\0\0\0\0\0", 8);
    } else if (strcmp(l, "noanswer") == 0) {
        fake_head(p, fq, 0, 0);
    } else if (strcmp(l, "txtrec") == 0) {
        fake_head(p, fq, 0, 3);
        put_txt(p, (const char *[]){ "ab", "cd" }, 2);
        put_txt(p, (const char *[]){ "ef" }, 1);
        put_txt(p, (const char *[]){ "" }, 1);
    } else if (strcmp(l, "mixed") == 0) {
        fake_head(p, fq, 0, 2);
        put_rr_head(p, 28, 16); /* an AAAA record in the answer to an A query */
        put_bytes(p, "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x01", 16);
        put_rr_head(p, 1, 4);
        put_bytes(p, "\xc0\x00\x02\x01", 4);
    } else if (strcmp(l, "empty") == 0) {
        fake_head(p, fq, 0, 1);
    } else if (strcmp(l, "servfail") == 0 || strcmp(l, "nxdomain") == 0 ||
               strcmp(l, "formerr") == 0) {
        fake_head(p, fq, l[0] == 's' ? 2 : l[0] == 'n' ? 3 : 1, 0);
    } else if (strcmp(l, "junk") == 0) {
        p->len = 1 + (size_t)rng_next(rng) % 512;
        for (size_t j = 0; j < p->len; j++)
            p->b[j] = (uint8_t)rng_next(rng);
    } else if (strncmp(l, "fuzz", 4) == 0) {
        fake_fuzz(p, fq, rng);
    } else {
        return 0;
    }
    return p->len;
}

/* Sends the delayed answers that are due; returns the ms until the next. */
static int fake_send_due(struct env *env)
{
    long now = now_ms(), wait = -1;

    for (int i = 0; i < FAKE_DELAYED; i++) {
        struct delayed *d = &env->delayed[i];
        if (d->len == 0)
            continue;
        if (d->due_ms <= now) {
            sendto(env->fake_fd, d->b, d->len, 0, (struct sockaddr *)&d->to, d->tolen);
            d->len = 0;
        } else if (wait < 0 || d->due_ms - now < wait) {
            wait = d->due_ms - now;
        }
    }
    return (int)wait;
}

/* "slowN" answers wait N ms (while other queries are answered). */
static void fake_reply(struct env *env, const struct fake_query *fq, const struct pkt *p,
                       const struct sockaddr_storage *from, socklen_t fromlen)
{
    unsigned ms;

    if (sscanf(fq->label, "slow%u", &ms) != 1 || ms == 0) {
        sendto(env->fake_fd, p->b, p->len, 0, (const struct sockaddr *)from, fromlen);
        return;
    }
    for (int i = 0; i < FAKE_DELAYED; i++) {
        struct delayed *d = &env->delayed[i];
        if (d->len == 0) {
            memcpy(d->b, p->b, p->len);
            d->len = p->len;
            d->due_ms = now_ms() + (long)ms;
            d->to = *from;
            d->tolen = fromlen;
            return;
        }
    }
}

/* Answers until it receives a one-octet datagram. */
void *fake_main(void *arg)
{
    struct env *env = arg;
    uint64_t rng = env->seed;

    for (;;) {
        uint8_t buf[1500];
        struct sockaddr_storage from;
        socklen_t fromlen = sizeof(from);
        struct fake_query fq;
        struct pkt p = { .len = 0 };
        struct pollfd pfd = { .fd = env->fake_fd, .events = POLLIN };
        ssize_t len;

        if (poll(&pfd, 1, fake_send_due(env)) <= 0)
            continue;
        len = recvfrom(env->fake_fd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fromlen);
        if (len == 1)
            break;
        if (len < 0 || fake_parse(buf, (size_t)len, &fq) < 0)
            continue;
        atomic_fetch_add(&env->fake_count, 1);
        if (fake_answer(&p, &fq, &rng) > 0)
            fake_reply(env, &fq, &p, &from, fromlen);
    }
    return NULL;
}

/* ---- group setup ---- */

int start_nsd(struct env *env)
{
    static const struct nsd_zone zones[] = {
        { .name = "dns.test" }, { .name = "2.0.192.in-addr.arpa" },
        { .name = "8.b.d.0.1.0.0.2.ip6.arpa" }, { .name = "ttl.test" },
        { .name = "100.51.198.in-addr.arpa" } };
    char why[512];

    if (nsd_test_prepare(&env->nsd, "dns", why, sizeof(why)) < 0 || write_zone(env) < 0 ||
        nsd_test_run(&env->nsd, zones, sizeof(zones) / sizeof(zones[0]), why, sizeof(why)) < 0) {
        fprintf(stderr, "%s\n", why);
        return -1;
    }
    return 0;
}

/* True, with a line saying why, when nsd is not there to test against. */
bool nsd_missing(const char *prog)
{
    if (access(NSD_TEST_PATH, X_OK) == 0)
        return false;
    fprintf(stderr, "%s: %s not installed (apt-get install nsd); skipped\n", prog, NSD_TEST_PATH);
    return true;
}

int group_setup(void **state)
{
    struct env *env = calloc(1, sizeof(*env));

    if (env == NULL)
        return -1;
    *state = env;
    env->nsd.pid = -1;
    env->silent_fd = -1;
    env->fake_fd = -1;
    env->seed = (uint64_t)time(NULL) * 2654435761u ^ (uint64_t)getpid();
    if (getenv("TEST_DNS_SEED") != NULL)
        env->seed = strtoull(getenv("TEST_DNS_SEED"), NULL, 0);
    env->seed |= 1;
    fprintf(stderr, "test-dns: seed %llu (TEST_DNS_SEED to repeat)\n",
            (unsigned long long)env->seed);
    env->silent_fd = nsd_test_silent_socket(&env->silent_port);
    env->fake_fd = nsd_test_silent_socket(&env->fake_port);
    if (env->silent_fd < 0 || env->fake_fd < 0)
        return -1;
    if (pthread_create(&env->fake_thread, NULL, fake_main, env) != 0)
        return -1;
    env->fake_running = true;
    return start_nsd(env);
}

void stop_fake(struct env *env)
{
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                               .sin_port = htons((uint16_t)env->fake_port) };
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

    sendto(fd, "q", 1, 0, (struct sockaddr *)&sin, sizeof(sin));
    close(fd);
    pthread_join(env->fake_thread, NULL);
}

int group_teardown(void **state)
{
    struct env *env = *state;

    nsd_test_stop(&env->nsd);
    if (env->fake_running)
        stop_fake(env);
    if (env->silent_fd >= 0)
        close(env->silent_fd);
    if (env->fake_fd >= 0)
        close(env->fake_fd);
    free(env);
    return 0;
}


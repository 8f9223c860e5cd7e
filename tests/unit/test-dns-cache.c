/*
 * test-dns-cache — the answer cache of lib/dns: the TTL walk over raw
 * replies (dns_reply_ttl, table-driven, every cut of a sound reply refused),
 * the cache module by itself (keys, size, expiry, the TTL cap), and the
 * cache inside the resolver against the responder thread of dns-test, which
 * counts queries so that a hit can be told from a miss (positive and
 * negative TTLs, a full cache, hits cancelled or freed while they wait), and
 * against nsd: a zone changed and reloaded still answers from the cache until
 * the TTL runs out, then the new answer comes.
 *
 * Needs /usr/sbin/nsd (exit 77 without it). Nothing leaves 127.0.0.1.
 */
#include "tests/unit/dns-test.h"

#include "lib/dns-cache.h"

/* ---- tests: the TTL walk over raw replies ---- */

/* A reply header and the question "q.test" IN A; counts as given. */
static void wire_head(struct pkt *p, unsigned qd, unsigned an, unsigned ns, unsigned rcode)
{
    p->len = 0;
    put16(p, 0x1234);
    put16(p, 0x8480 | rcode);
    put16(p, qd);
    put16(p, an);
    put16(p, ns);
    put16(p, 0);
    put_name(p, "q.test");
    put16(p, 1);
    put16(p, 1);
}

/* An A record owned by the question's name (a compression pointer). */
static void wire_a(struct pkt *p, uint32_t ttl)
{
    put_rr_head_ttl(p, 1, 4, ttl);
    put_bytes(p, "\xc0\x00\x02\x01", 4);
}

static void wire_cname(struct pkt *p, uint32_t ttl)
{
    put_rr_head_ttl(p, 5, 8, ttl);
    put_name(p, "r.test");
}

enum wire_shape {
    W_POS,          /* A 300, A 5 */
    W_POS_NONE,     /* NOERROR, no answers */
    W_POS_TOPBIT,   /* A with TTL 0x80000001 */
    W_NEG,          /* SOA ttl 100 minimum 7 */
    W_NEG_REV,      /* SOA ttl 7 minimum 100 */
    W_NEG_CNAME,    /* CNAME 3, SOA 100/100 */
    W_NEG_NS_FIRST, /* an NS record, then the SOA 9/9 */
    W_NEG_NOSOA,    /* only an NS record in the authority */
    W_NEG_SOA_LONG, /* SOA RDATA with an octet too many */
    W_NEG_SOA_SHORT,
    W_QD0,
    W_QD2,
    W_EXT_LABEL,    /* owner starts with an 0x40 label type */
    W_LABEL_PAST,   /* a label running past the end */
    W_RDLEN_PAST,   /* RDLENGTH past the end */
    W_LONG_NAME,    /* owner of more than 255 octets */
    W_PTR_LOOP,     /* owner is a pointer to itself: skipped, not followed */
};

struct wire_case {
    enum wire_shape shape;
    bool negative;
    int rc;
    uint32_t ttl;
};

static const struct wire_case wire_cases[] = {
    { .shape = W_POS, .ttl = 5 },
    { .shape = W_POS_NONE, .rc = -1 },
    { .shape = W_POS_TOPBIT, .ttl = 0 },
    { .shape = W_NEG, .negative = true, .ttl = 7 },
    { .shape = W_NEG_REV, .negative = true, .ttl = 7 },
    { .shape = W_NEG_CNAME, .negative = true, .ttl = 3 },
    { .shape = W_NEG_NS_FIRST, .negative = true, .ttl = 9 },
    { .shape = W_NEG_NOSOA, .negative = true, .rc = -1 },
    { .shape = W_NEG_SOA_LONG, .negative = true, .rc = -1 },
    { .shape = W_NEG_SOA_SHORT, .negative = true, .rc = -1 },
    { .shape = W_QD0, .rc = -1 },
    { .shape = W_QD2, .rc = -1 },
    { .shape = W_EXT_LABEL, .rc = -1 },
    { .shape = W_LABEL_PAST, .rc = -1 },
    { .shape = W_RDLEN_PAST, .rc = -1 },
    { .shape = W_LONG_NAME, .rc = -1 },
    { .shape = W_PTR_LOOP, .ttl = 42 },
};

/* SOA for "test" with a given RDATA length change (0 = well-formed). */
static void wire_soa(struct pkt *p, uint32_t ttl, uint32_t minimum, int extra)
{
    put_soa_owned(p, "test", ttl, minimum, extra);
}

static void wire_ns(struct pkt *p)
{
    put_name(p, "test");
    put16(p, 2);
    put16(p, 1);
    put16(p, 0);
    put16(p, 60);
    put16(p, 2);
    put16(p, 0xc00c);
}

static void wire_build(struct pkt *p, enum wire_shape shape)
{
    switch (shape) {
    case W_POS:
        wire_head(p, 1, 2, 0, 0);
        wire_a(p, 300);
        wire_a(p, 5);
        break;
    case W_POS_NONE:
        wire_head(p, 1, 0, 0, 0);
        break;
    case W_POS_TOPBIT:
        wire_head(p, 1, 1, 0, 0);
        wire_a(p, 0x80000001u);
        break;
    case W_NEG:
    case W_NEG_REV:
        wire_head(p, 1, 0, 1, 3);
        wire_soa(p, shape == W_NEG ? 100 : 7, shape == W_NEG ? 7 : 100, 0);
        break;
    case W_NEG_CNAME:
        wire_head(p, 1, 1, 1, 3);
        wire_cname(p, 3);
        wire_soa(p, 100, 100, 0);
        break;
    case W_NEG_NS_FIRST:
        wire_head(p, 1, 0, 2, 0);
        wire_ns(p);
        wire_soa(p, 9, 9, 0);
        break;
    case W_NEG_NOSOA:
        wire_head(p, 1, 0, 1, 3);
        wire_ns(p);
        break;
    case W_NEG_SOA_LONG:
    case W_NEG_SOA_SHORT:
        wire_head(p, 1, 0, 1, 3);
        wire_soa(p, 100, 100, shape == W_NEG_SOA_LONG ? 1 : -1);
        break;
    case W_QD0:
        wire_head(p, 0, 1, 0, 0);
        p->len = 12;
        wire_a(p, 5);
        break;
    case W_QD2:
        wire_head(p, 2, 1, 0, 0);
        put16(p, 0xc00c);
        put16(p, 1);
        put16(p, 1);
        wire_a(p, 5);
        break;
    case W_EXT_LABEL:
        wire_head(p, 1, 1, 0, 0);
        put_bytes(p, "\x41q\0", 3);
        put_bytes(p, "\0\1\0\1\0\0\0\5\0\0", 10);
        break;
    case W_LABEL_PAST:
        wire_head(p, 1, 1, 0, 0);
        put_bytes(p, "\x3fq", 2);
        break;
    case W_RDLEN_PAST:
        wire_head(p, 1, 1, 0, 0);
        put_rr_head_ttl(p, 1, 40, 5);
        put_bytes(p, "\xc0\x00\x02\x01", 4);
        break;
    case W_LONG_NAME:
        wire_head(p, 1, 1, 0, 0);
        for (int i = 0; i < 5; i++) {
            uint8_t label[64];
            label[0] = 63;
            memset(label + 1, 'x', 63);
            put_bytes(p, label, sizeof(label));
        }
        put_bytes(p, "\0\0\1\0\1\0\0\0\5\0\0", 11);
        break;
    case W_PTR_LOOP: {
        size_t self = 0;
        wire_head(p, 1, 1, 0, 0);
        self = p->len;
        put16(p, 0xc000 | (unsigned)self);
        put16(p, 1);
        put16(p, 1);
        put16(p, 0);
        put16(p, 42);
        put16(p, 4);
        put_bytes(p, "\xc0\x00\x02\x01", 4);
        break;
    }
    }
}

static void test_reply_ttl(void **state)
{
    for (size_t i = 0; i < sizeof(wire_cases) / sizeof(wire_cases[0]); i++) {
        const struct wire_case *c = &wire_cases[i];
        struct pkt p = { .len = 0 };
        uint32_t ttl = 12345;
        int rc;

        wire_build(&p, c->shape);
        rc = dns_reply_ttl(p.b, p.len, c->negative, &ttl);
        if (rc != c->rc || (rc == 0 && ttl != c->ttl))
            fail_msg("case %zu: rc %d ttl %u, want rc %d ttl %u", i, rc, ttl, c->rc, c->ttl);
        /* every cut of a sound reply is refused, reading nothing past the cut */
        for (size_t cut = 0; c->rc == 0 && cut < p.len; cut++) {
            uint8_t *copy = malloc(cut + 1);
            memcpy(copy, p.b, cut);
            if (dns_reply_ttl(copy, cut, c->negative, &ttl) != -1)
                fail_msg("case %zu cut at %zu: accepted", i, cut);
            free(copy);
        }
    }
    assert_int_equal(dns_reply_ttl(NULL, 0, false, &(uint32_t){ 0 }), -1);
}

/* ---- tests: the cache module ---- */

static void test_cache_unit(void **state)
{
    struct dns_cache *c, *capped, *none;
    char name[DNS_NAME_MAX + 1];
    struct dns_mx mx = { .preference = 5, .host = "mx.test" };
    struct dns_cache_answer ans = { .st = DNS_OK, .records = &mx, .size = sizeof(mx), .n = 1 };
    struct dns_cache_answer neg = { .st = DNS_NXDOMAIN, .records = NULL, .size = 0 };
    struct dns_cache_answer bad = { .st = DNS_TEMPFAIL, .records = NULL, .size = 0 };
    struct dns_cache_answer got;
    struct dns_cache_key ka = { .type = 15, .name = "a.test" };
    struct dns_cache_key kb = { .type = 15, .name = "b.test" };
    struct dns_cache_key kc = { .type = 15, .name = "c.test" };
    struct dns_cache_key kt = { .type = 16, .name = "a.test" };
    struct dns_cache_key k4 = { .type = 1, .family = AF_INET, .name = "a.test" };
    struct dns_cache_key k6 = { .type = 1, .family = AF_INET6, .name = "a.test" };

    dns_cache_name("MX.Example.TEST.", name);
    assert_string_equal(name, "mx.example.test");
    assert_int_equal(dns_cache_new(0, 0, &none), 0);
    assert_null(none);
    dns_cache_put(none, &ka, &ans, 100);
    assert_false(dns_cache_get(none, &ka, &got));

    assert_int_equal(dns_cache_new(2, 0, &c), 0);
    assert_int_equal(dns_cache_new(8, 1, &capped), 0);
    dns_cache_put(c, &ka, &ans, 100);
    dns_cache_put(c, &kb, &neg, 100);
    dns_cache_put(c, &kc, &ans, 100); /* full of live entries: not kept */
    assert_int_equal(dns_cache_count(c), 2);
    assert_false(dns_cache_get(c, &kc, &got));
    assert_false(dns_cache_get(c, &kt, &got)); /* another type */
    assert_true(dns_cache_get(c, &ka, &got));
    assert_int_equal(got.st, DNS_OK);
    assert_int_equal(got.n, 1);
    assert_int_equal(got.size, sizeof(mx));
    assert_true(got.records != (void *)&mx);
    assert_string_equal(((struct dns_mx *)got.records)->host, "mx.test");
    free(got.records);
    assert_true(dns_cache_get(c, &kb, &got));
    assert_int_equal(got.st, DNS_NXDOMAIN);
    free(got.records);

    dns_cache_put(capped, &k4, &ans, 0);          /* TTL 0: not kept */
    dns_cache_put(capped, &k4, &bad, 100);        /* TEMPFAIL: not kept */
    assert_int_equal(dns_cache_count(capped), 0);
    dns_cache_put(capped, &k4, &ans, 100);        /* lives 1 s, the cap */
    dns_cache_put(capped, &k4, &neg, 100);        /* replaces */
    dns_cache_put(c, &kb, &ans, 1);               /* replaces; lives 1 s */
    assert_int_equal(dns_cache_count(capped), 1);
    assert_int_equal(dns_cache_count(c), 2);
    assert_false(dns_cache_get(capped, &k6, &got)); /* another family */
    assert_true(dns_cache_get(capped, &k4, &got));
    assert_int_equal(got.st, DNS_NXDOMAIN);
    free(got.records);

    usleep(1100 * 1000);
    assert_false(dns_cache_get(capped, &k4, &got));
    assert_int_equal(dns_cache_count(capped), 0); /* dropped when found expired */
    dns_cache_put(c, &kc, &ans, 100);             /* full: b has expired and goes */
    assert_int_equal(dns_cache_count(c), 2);
    assert_true(dns_cache_get(c, &kc, &got));
    free(got.records);
    assert_false(dns_cache_get(c, &kb, &got));
    assert_true(dns_cache_get(c, &ka, &got));
    free(got.records);
    dns_cache_free(&c);
    dns_cache_free(&capped);
    assert_null(c);
    dns_cache_free(&c);
}

/* ---- tests: the cache against the responder, which counts queries ---- */

struct cache_case {
    bool capped;     /* on the resolver with cache_max_ttl_s 1 */
    enum kind kind;
    const char *name;
    int family;
    enum dns_status st;
    bool hit;        /* a second query at once comes from the cache */
    bool hit_later;  /* and one 1.3 s later still does */
};

static const struct cache_case cache_cases[] = {
    { .kind = Q_MX, .name = "ttl1.fake.test", .hit = true },
    { .kind = Q_MX, .name = "ttl100.fake.test", .hit = true, .hit_later = true },
    { .kind = Q_TXT, .name = "ttl1.fake.test", .hit = true },
    { .kind = Q_TXT, .name = "ttl100.fake.test", .hit = true, .hit_later = true },
    { .kind = Q_ADDR, .name = "ttl1.fake.test", .family = AF_INET, .hit = true },
    { .kind = Q_ADDR, .name = "ttl100.fake.test", .family = AF_INET6, .hit = true,
      .hit_later = true },
    { .kind = Q_ADDR, .name = "ttl100.fake.test", .family = AF_UNSPEC, .hit = true,
      .hit_later = true },
    { .kind = Q_ADDR, .name = "ttl100.fake.test", .family = AF_INET, .hit = true,
      .hit_later = true },
    { .kind = Q_PTR, .name = "192.0.2.1", .hit = true, .hit_later = true },
    { .kind = Q_ADDR, .name = "v4only.fake.test", .family = AF_INET, .hit = true,
      .hit_later = true },
    /* the AAAA half is uncacheable (NODATA without SOA): so is the whole */
    { .kind = Q_ADDR, .name = "v4only.fake.test", .family = AF_UNSPEC },
    { .kind = Q_MX, .name = "ttl0.fake.test" },
    { .kind = Q_MX, .name = "nx1-100.fake.test", .st = DNS_NXDOMAIN, .hit = true },
    { .kind = Q_MX, .name = "nx100-1.fake.test", .st = DNS_NXDOMAIN, .hit = true },
    { .kind = Q_MX, .name = "nx100-100.fake.test", .st = DNS_NXDOMAIN, .hit = true,
      .hit_later = true },
    { .kind = Q_TXT, .name = "nd1-100.fake.test", .st = DNS_NODATA, .hit = true },
    { .kind = Q_ADDR, .name = "nd100-100.fake.test", .family = AF_INET, .st = DNS_NODATA,
      .hit = true, .hit_later = true },
    { .kind = Q_ADDR, .name = "nd100-100.fake.test", .family = AF_UNSPEC, .st = DNS_NODATA,
      .hit = true, .hit_later = true },
    { .kind = Q_MX, .name = "nxdomain.fake.test", .st = DNS_NXDOMAIN }, /* no SOA */
    { .kind = Q_MX, .name = "nxbadsoa.fake.test", .st = DNS_NXDOMAIN },
    { .kind = Q_MX, .name = "noanswer.fake.test", .st = DNS_NODATA },   /* no SOA */
    { .kind = Q_ADDR, .name = "noanswer.fake.test", .family = AF_UNSPEC, .st = DNS_NODATA },
    { .kind = Q_MX, .name = "servfail.fake.test", .st = DNS_TEMPFAIL },
    { .kind = Q_MX, .name = "empty.fake.test", .st = DNS_BADANSWER },
    { .kind = Q_MX, .name = "trunc.fake.test", .st = DNS_BADANSWER },
    { .kind = Q_MX, .name = "mxctl.fake.test", .st = DNS_BADANSWER },
    { .kind = Q_PTR, .name = "192.0.2.2", .st = DNS_BADANSWER },
    { .capped = true, .kind = Q_MX, .name = "ttl100.fake.test", .hit = true },
    { .capped = true, .kind = Q_MX, .name = "nx100-100.fake.test", .st = DNS_NXDOMAIN,
      .hit = true },
};

/* One query; *hit_r tells whether the responder was left alone. */
static void cache_query(struct env *env, struct event_base *base, struct dns *dns,
                        const struct cache_case *c, struct result *r, bool *hit_r)
{
    unsigned before = fake_queries(env);

    memset(r, 0, sizeof(*r));
    if (start(dns, c->kind, c->name, c->family, r) == NULL)
        fail_msg("%s: not started", c->name);
    assert_int_equal(r->calls, 0); /* never inside dns_query_*, hit or not */
    if (!run_until(base, r, 1, 3000))
        fail_msg("%s: no answer", c->name);
    if (r->st != c->st)
        fail_msg("%s (kind %d family %d): got %s, want %s", c->name, c->kind, c->family,
                 dns_status_name(r->st), dns_status_name(c->st));
    assert_false(r->inside);
    *hit_r = fake_queries(env) == before;
}

static void test_cache_hits(void **state)
{
    struct env *env = *state;
    struct event_base *base = event_base_new();
    struct dns *dns = dns_cached(base, env->fake_port, 64, 0);
    struct dns *capped = dns_cached(base, env->fake_port, 64, 1);
    enum { N = sizeof(cache_cases) / sizeof(cache_cases[0]) };
    struct result *first = calloc(N, sizeof(*first)), *r = calloc(1, sizeof(*r));
    struct cache_case upper = { .kind = Q_MX, .name = "TTL100.Fake.Test." };
    bool hit;

    for (size_t i = 0; i < N; i++) {
        const struct cache_case *c = &cache_cases[i];
        struct dns *d = c->capped ? capped : dns;
        cache_query(env, base, d, c, &first[i], &hit);
        if (hit)
            fail_msg("%s (kind %d family %d): first query not sent", c->name, c->kind, c->family);
        cache_query(env, base, d, c, r, &hit);
        if (hit != c->hit)
            fail_msg("%s (kind %d family %d): hit %d, want %d", c->name, c->kind, c->family, hit,
                     c->hit);
        assert_string_equal(r->text, first[i].text);
    }
    cache_query(env, base, dns, &upper, r, &hit); /* the same name in another case */
    assert_true(hit);
    assert_string_equal(r->text, "10 mx.fake.test");
    run_for(base, 1300);
    for (size_t i = 0; i < N; i++) {
        const struct cache_case *c = &cache_cases[i];
        cache_query(env, base, c->capped ? capped : dns, c, r, &hit);
        if (hit != c->hit_later)
            fail_msg("%s (kind %d family %d) later: hit %d, want %d", c->name, c->kind, c->family,
                     hit, c->hit_later);
        assert_string_equal(r->text, first[i].text);
    }
    dns_free(&dns);
    dns_free(&capped);
    free(first);
    free(r);
    event_base_free(base);
}

/* A cache of 2 keeps 2 answers; a third waits until one has expired. */
static void test_cache_size(void **state)
{
    struct env *env = *state;
    struct event_base *base = event_base_new();
    struct dns *dns = dns_cached(base, env->fake_port, 2, 0);
    const struct cache_case c[3] = {
        { .kind = Q_MX, .name = "ttl1.s1.fake.test" },
        { .kind = Q_MX, .name = "ttl1.s2.fake.test" },
        { .kind = Q_MX, .name = "ttl1.s3.fake.test" },
    };
    struct result *r = calloc(1, sizeof(*r));
    bool hit;

    for (int i = 0; i < 3; i++) {
        cache_query(env, base, dns, &c[i], r, &hit);
        assert_false(hit);
    }
    cache_query(env, base, dns, &c[0], r, &hit);
    assert_true(hit);
    cache_query(env, base, dns, &c[1], r, &hit);
    assert_true(hit);
    cache_query(env, base, dns, &c[2], r, &hit);
    assert_false(hit); /* was not kept: the cache was full of live answers */
    run_for(base, 1100);
    cache_query(env, base, dns, &c[2], r, &hit);
    assert_false(hit); /* kept now: the expired ones made room */
    cache_query(env, base, dns, &c[2], r, &hit);
    assert_true(hit);
    dns_free(&dns);
    free(r);
    event_base_free(base);
}

/* Hits wait on the ready list: cancel, cancel from another callback, free. */
static void test_cache_cancel(void **state)
{
    struct env *env = *state;
    struct event_base *base = event_base_new();
    struct dns *dns = dns_cached(base, env->fake_port, 8, 0);
    struct result r[5] = { { .calls = 0 } };
    struct dns_query *q[2];
    unsigned before;

    assert_non_null(start(dns, Q_MX, "ttl100.cancel.fake.test", 0, &r[0]));
    assert_true(run_until(base, &r[0], 1, 3000));
    before = fake_queries(env);
    dns_query_cancel(start(dns, Q_MX, "ttl100.cancel.fake.test", 0, &r[1]));
    r[2].hook = r[3].hook = cancel_other;
    r[2].hook_arg = &q[1];
    r[3].hook_arg = &q[0];
    q[0] = start(dns, Q_MX, "ttl100.cancel.fake.test", 0, &r[2]);
    q[1] = start(dns, Q_MX, "ttl100.cancel.fake.test", 0, &r[3]);
    run_for(base, 100);
    assert_int_equal(fake_queries(env), before);
    assert_int_equal(r[1].calls, 0);
    assert_int_equal(r[2].calls + r[3].calls, 1);
    assert_int_equal(r[2].st + r[3].st, DNS_OK);
    assert_non_null(start(dns, Q_MX, "ttl100.cancel.fake.test", 0, &r[4]));
    dns_free(&dns); /* a hit waiting: CANCELLED, at once */
    assert_int_equal(r[4].calls, 1);
    assert_int_equal(r[4].st, DNS_CANCELLED);
    assert_int_equal(event_base_get_num_events(base, EVENT_BASE_COUNT_ADDED), 0);
    event_base_free(base);
}

/* ---- tests: the cache against nsd, whose zone changes under it ---- */

struct ttl_case {
    enum kind kind;
    const char *name;
    int family;
    enum dns_status st1, st2; /* in zone versions 1 and 2 */
    const char *text1, *text2;
};

static const struct ttl_case ttl_cases[] = {
    { .kind = Q_ADDR, .name = "a.ttl.test", .family = AF_INET, .text1 = "192.0.2.1",
      .text2 = "192.0.2.2" },
    { .kind = Q_MX, .name = "mx.ttl.test", .text1 = "10 mx1.ttl.test", .text2 = "10 mx2.ttl.test" },
    { .kind = Q_TXT, .name = "txt.ttl.test", .text1 = "\"v1\"", .text2 = "\"v2\"" },
    { .kind = Q_PTR, .name = "198.51.100.7", .text1 = "host1.ttl.test", .text2 = "host2.ttl.test" },
    { .kind = Q_ADDR, .name = "gone.ttl.test", .family = AF_UNSPEC, .st1 = DNS_NXDOMAIN,
      .text2 = "192.0.2.2" },
    { .kind = Q_ADDR, .name = "nodata.ttl.test", .family = AF_INET, .st1 = DNS_NODATA,
      .text2 = "192.0.2.2" },
};

static void ttl_check(struct event_base *base, struct dns *dns, const struct ttl_case *c,
                      int version)
{
    struct result *r = calloc(1, sizeof(*r));
    enum dns_status st = version == 1 ? c->st1 : c->st2;
    const char *text = version == 1 ? c->text1 : c->text2;

    assert_non_null(start(dns, c->kind, c->name, c->family, r));
    if (!run_until(base, r, 1, 3000))
        fail_msg("%s: no answer", c->name);
    if (r->st != st || strcmp(r->text, text != NULL ? text : "") != 0)
        fail_msg("%s (version %d): got %s \"%s\", want %s \"%s\"", c->name, version,
                 dns_status_name(r->st), r->text, dns_status_name(st), text ? text : "");
    free(r);
}

/* Polls the uncached resolver until nsd serves version 2 (3 s at most). */
static void wait_reloaded(struct event_base *base, struct dns *plain)
{
    for (int i = 0; i < 60; i++) {
        struct result *r = calloc(2, sizeof(*r));
        bool done;
        start(plain, Q_ADDR, "a.ttl.test", AF_INET, &r[0]);
        start(plain, Q_PTR, "198.51.100.7", 0, &r[1]);
        run_until(base, r, 2, 1000);
        done = strcmp(r[0].text, "192.0.2.2") == 0 && strcmp(r[1].text, "host2.ttl.test") == 0;
        free(r);
        if (done)
            return;
        run_for(base, 50);
    }
    fail_msg("nsd did not reload the ttl.test zones");
}

/* Answers cached from nsd outlive a zone change until their TTL (TTL_SHORT;
 * for NXDOMAIN and NODATA the SOA MINIMUM, under an SOA TTL of 30), then the
 * new ones come. A 60 s record stays; with cache_max_ttl_s 1 it does not. */
static void test_cache_nsd(void **state)
{
    struct env *env = *state;
    struct event_base *base = event_base_new();
    struct dns *plain = dns_at(base, env->nsd.port, 1000, 2);
    struct dns *cached = dns_cached(base, env->nsd.port, 64, 0);
    struct dns *capped = dns_cached(base, env->nsd.port, 64, 1);
    const struct ttl_case long_case = { .kind = Q_ADDR, .name = "long.ttl.test",
                                        .family = AF_INET, .text1 = "192.0.2.1",
                                        .text2 = "192.0.2.2" };
    enum { N = sizeof(ttl_cases) / sizeof(ttl_cases[0]) };
    long t0 = now_ms(), spent;

    assert_int_equal(env->ttl_version, 1);
    for (size_t i = 0; i < N; i++)
        ttl_check(base, cached, &ttl_cases[i], 1);
    ttl_check(base, cached, &long_case, 1);
    ttl_check(base, capped, &long_case, 1);
    assert_int_equal(reload_nsd(env, 2), 0);
    wait_reloaded(base, plain);
    for (size_t i = 0; i < N; i++) {
        ttl_check(base, plain, &ttl_cases[i], 2); /* nsd has changed ... */
        ttl_check(base, cached, &ttl_cases[i], 1); /* ... the cache has not */
    }
    spent = now_ms() - t0;
    fprintf(stderr, "cache-nsd: reload and checks took %ld ms\n", spent);
    if (spent >= TTL_SHORT * 1000)
        fail_msg("took %ld ms, past the TTL: the checks above proved nothing", spent);
    run_for(base, (int)(t0 + TTL_SHORT * 1000 + 300 - now_ms()));
    for (size_t i = 0; i < N; i++)
        ttl_check(base, cached, &ttl_cases[i], 2);
    ttl_check(base, cached, &long_case, 1);  /* 60 s */
    ttl_check(base, capped, &long_case, 2);  /* capped at 1 s */
    dns_free(&plain);
    dns_free(&cached);
    dns_free(&capped);
    event_base_free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reply_ttl),
        cmocka_unit_test(test_cache_unit),
        cmocka_unit_test(test_cache_hits),
        cmocka_unit_test(test_cache_size),
        cmocka_unit_test(test_cache_cancel),
        cmocka_unit_test(test_cache_nsd),
    };

    if (nsd_missing("test-dns-cache"))
        return 77;
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

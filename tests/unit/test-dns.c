/*
 * test-dns — lib/dns against real servers on loopback ports: an nsd that the
 * test starts with its own zones (MX ordering, null MX, NXDOMAIN, NODATA,
 * A/AAAA, CNAME, TXT concatenation and bounds, long answers over TCP, PTR for
 * IPv4 and IPv6), a UDP socket that never answers (timeouts, a loop that
 * keeps running, cancel, dns_free with queries pending), a port where nothing
 * listens, and a responder thread that sends scripted, late, malformed or
 * random answers (BADANSWER, SERVFAIL, stable MX sort, fuzz) and counts
 * queries, so that the cache tests can tell a hit from a miss. The cache is
 * also shown against nsd: a zone changed and reloaded still answers from the
 * cache until the TTL runs out, then the new answer comes. The TTL walk over
 * raw replies and the cache module are tested on their own, table-driven.
 *
 * Needs /usr/sbin/nsd (exit 77 without it). Nothing leaves 127.0.0.1.
 */
#include "tests/unit/dns-test.h"

#include "lib/dns-cache.h"

/* ---- tests: answers from nsd and the responder ---- */

enum server { SRV_NSD, SRV_FAKE };

struct query_case {
    enum server server;
    enum kind kind;
    const char *name;
    int family;
    enum dns_status st;
    const char *text; /* MX in answer order; addresses and TXT sorted */
};

static const struct query_case query_cases[] = {
    { .kind = Q_MX, .name = "mx-order.dns.test",
      .text = "10 b.dns.test,10 a.dns.test,20 c.dns.test,30 d.dns.test" },
    { .kind = Q_MX, .name = "MX-Order.dns.test.",
      .text = "10 b.dns.test,10 a.dns.test,20 c.dns.test,30 d.dns.test" },
    { .kind = Q_MX, .name = "mx-alias.dns.test",
      .text = "10 b.dns.test,10 a.dns.test,20 c.dns.test,30 d.dns.test" },
    { .kind = Q_MX, .name = "null-mx.dns.test", .text = "0 ." },
    { .kind = Q_MX, .name = "a-only.dns.test", .st = DNS_NODATA },
    { .kind = Q_MX, .name = "nope.dns.test", .st = DNS_NXDOMAIN },
    { .kind = Q_MX, .name = "outside.example.invalid", .st = DNS_TEMPFAIL }, /* REFUSED */
    { .kind = Q_ADDR, .name = "v4.dns.test", .family = AF_INET, .text = "192.0.2.10,192.0.2.11" },
    { .kind = Q_ADDR, .name = "v4.dns.test", .family = AF_INET6, .st = DNS_NODATA },
    { .kind = Q_ADDR, .name = "v4.dns.test", .family = AF_UNSPEC, .text = "192.0.2.10,192.0.2.11" },
    { .kind = Q_ADDR, .name = "v6.dns.test", .family = AF_INET6, .text = "2001:db8::6" },
    { .kind = Q_ADDR, .name = "v6.dns.test", .family = AF_INET, .st = DNS_NODATA },
    { .kind = Q_ADDR, .name = "dual.dns.test", .family = AF_UNSPEC,
      .text = "192.0.2.20,2001:db8::20" },
    { .kind = Q_ADDR, .name = "dual.dns.test", .family = AF_INET6, .text = "2001:db8::20" },
    { .kind = Q_ADDR, .name = "alias.dns.test.", .family = AF_UNSPEC,
      .text = "192.0.2.20,2001:db8::20" },
    { .kind = Q_ADDR, .name = "txt-spf.dns.test", .family = AF_UNSPEC, .st = DNS_NODATA },
    { .kind = Q_ADDR, .name = "nope.dns.test", .family = AF_UNSPEC, .st = DNS_NXDOMAIN },
    { .kind = Q_ADDR, .name = "192.0.2.55", .family = AF_INET, .text = "192.0.2.55" },
    { .kind = Q_TXT, .name = "txt-spf.dns.test", .text = "\"v=spf1 ip4:192.0.2.0/24 -all\"" },
    { .kind = Q_TXT, .name = "txt-two.dns.test", .text = "\"one\"|\"twothree\"" },
    { .kind = Q_TXT, .name = "txt-empty.dns.test", .text = "\"\"" },
    { .kind = Q_TXT, .name = "txt-nul.dns.test", .st = DNS_BADANSWER },
    { .kind = Q_TXT, .name = "txt-huge.dns.test", .st = DNS_BADANSWER }, /* > 4096 octets */
    { .kind = Q_TXT, .name = "txt-many.dns.test", .st = DNS_BADANSWER }, /* > 64 records */
    { .kind = Q_TXT, .name = "a-only.dns.test", .st = DNS_NODATA },
    { .kind = Q_TXT, .name = "nope.dns.test", .st = DNS_NXDOMAIN },
    { .kind = Q_PTR, .name = "192.0.2.10", .text = "v4.dns.test" },
    { .kind = Q_PTR, .name = "192.0.2.11", .text = "other.dns.test,v4.dns.test" },
    { .kind = Q_PTR, .name = "192.0.2.12", .st = DNS_BADANSWER }, /* "bad name" */
    { .kind = Q_PTR, .name = "192.0.2.13", .text = "under_score.dns.test" },
    { .kind = Q_PTR, .name = "192.0.2.14", .st = DNS_NODATA },
    { .kind = Q_PTR, .name = "192.0.2.99", .st = DNS_NXDOMAIN },
    { .kind = Q_PTR, .name = "::ffff:192.0.2.10", .text = "v4.dns.test" },
    { .kind = Q_PTR, .name = "2001:db8::6", .text = "v6.dns.test" },
    { .kind = Q_PTR, .name = "2001:db8::20", .text = "dual.dns.test" },
    { .kind = Q_PTR, .name = "2001:db8::7", .st = DNS_NXDOMAIN },
    { .kind = Q_PTR, .name = "203.0.113.1", .st = DNS_TEMPFAIL }, /* REFUSED */
    { .kind = Q_ADDR, .name = "2001:db8::9", .family = AF_UNSPEC, .text = "2001:db8::9" },
    { .kind = Q_ADDR, .name = "2001:db8::9", .family = AF_INET, .st = DNS_NODATA },
    { .server = SRV_FAKE, .kind = Q_MX, .name = "mxorder.fake.test",
      .text = "5 z.fake.test,10 y.fake.test,10 x.fake.test" },
    { .server = SRV_FAKE, .kind = Q_MX, .name = "trail.fake.test", .st = DNS_NODATA },
    { .server = SRV_FAKE, .kind = Q_MX, .name = "noanswer.fake.test", .st = DNS_NODATA },
    { .server = SRV_FAKE, .kind = Q_TXT, .name = "txtrec.fake.test",
      .text = "\"\"|\"abcd\"|\"ef\"" },
    { .server = SRV_FAKE, .kind = Q_ADDR, .name = "mixed.fake.test", .family = AF_INET,
      .text = "192.0.2.1" },
    { .server = SRV_FAKE, .kind = Q_MX, .name = "mxctl.fake.test", .st = DNS_BADANSWER },
    { .server = SRV_FAKE, .kind = Q_MX, .name = "empty.fake.test", .st = DNS_BADANSWER },
    { .server = SRV_FAKE, .kind = Q_TXT, .name = "empty.fake.test", .st = DNS_BADANSWER },
    { .server = SRV_FAKE, .kind = Q_ADDR, .name = "empty.fake.test", .family = AF_INET,
      .st = DNS_BADANSWER },
    { .server = SRV_FAKE, .kind = Q_MX, .name = "servfail.fake.test", .st = DNS_TEMPFAIL },
    { .server = SRV_FAKE, .kind = Q_MX, .name = "formerr.fake.test", .st = DNS_BADANSWER },
    { .server = SRV_FAKE, .kind = Q_MX, .name = "trunc.fake.test", .st = DNS_BADANSWER },
    { .server = SRV_FAKE, .kind = Q_ADDR, .name = "ttl5.fake.test", .family = AF_UNSPEC,
      .text = "192.0.2.1,2001:db8::1" },
    { .server = SRV_FAKE, .kind = Q_PTR, .name = "192.0.2.1", .text = "pt.fake.test" },
    { .server = SRV_FAKE, .kind = Q_PTR, .name = "192.0.2.2", .st = DNS_BADANSWER },
    { .server = SRV_FAKE, .kind = Q_PTR, .name = "192.0.2.4", .st = DNS_BADANSWER },
    { .server = SRV_FAKE, .kind = Q_PTR, .name = "192.0.2.5", .st = DNS_BADANSWER },
    { .server = SRV_FAKE, .kind = Q_TXT, .name = "nxdomain.fake.test", .st = DNS_NXDOMAIN },
    { .server = SRV_FAKE, .kind = Q_MX, .name = "junk.fake.test", .st = DNS_TEMPFAIL },
    { .server = SRV_FAKE, .kind = Q_ADDR, .name = "junk.fake.test", .family = AF_UNSPEC,
      .st = DNS_TEMPFAIL },
    /* after SERVFAIL and FORMERR answers the channel still sends sound queries */
    { .server = SRV_FAKE, .kind = Q_TXT, .name = "servfail.fake.test", .st = DNS_TEMPFAIL },
    { .server = SRV_FAKE, .kind = Q_MX, .name = "mxorder.fake.test",
      .text = "5 z.fake.test,10 y.fake.test,10 x.fake.test" },
};

static void check_case(struct event_base *base, struct dns *dns, const struct query_case *c)
{
    struct result *r = calloc(1, sizeof(*r));
    struct dns_query *q = start(dns, c->kind, c->name, c->family, r);

    assert_non_null(q);
    if (!run_until(base, r, 1, 3000))
        fail_msg("%s: no answer", c->name);
    if (r->st != c->st || strcmp(r->text, c->text != NULL ? c->text : "") != 0)
        fail_msg("%s (kind %d family %d): got %s \"%s\", want %s \"%s\"", c->name, c->kind,
                 c->family, dns_status_name(r->st), r->text, dns_status_name(c->st),
                 c->text != NULL ? c->text : "");
    assert_int_equal(r->calls, 1);
    assert_false(r->inside);
    free(r);
}

static void test_queries(void **state)
{
    struct env *env = *state;
    struct event_base *base = event_base_new();
    struct dns *nsd = dns_at(base, env->nsd_port, 1000, 2);
    struct dns *fake = dns_at(base, env->fake_port, 200, 1);

    for (size_t i = 0; i < sizeof(query_cases) / sizeof(query_cases[0]); i++)
        check_case(base, query_cases[i].server == SRV_NSD ? nsd : fake, &query_cases[i]);
    dns_free(&nsd);
    dns_free(&fake);
    assert_null(nsd);
    event_base_free(base);
}

/* Answers too big for UDP with EDNS (1280 octets) come over TCP. */
static void test_long_answers(void **state)
{
    struct env *env = *state;
    struct event_base *base = event_base_new();
    struct dns *dns = dns_at(base, env->nsd_port, 1000, 2);
    struct result *r = calloc(2, sizeof(*r));

    assert_non_null(start(dns, Q_TXT, "txt-long.dns.test", 0, &r[0]));
    assert_non_null(start(dns, Q_MX, "mx-many.dns.test", 0, &r[1]));
    assert_true(run_until(base, r, 2, 3000));
    assert_int_equal(r[0].st, DNS_OK);
    assert_string_equal(r[0].text, env->txt_long);
    assert_int_equal(r[1].st, DNS_OK);
    assert_int_equal(r[1].n, DNS_MAX_RECORDS);
    assert_string_equal(r[1].text, env->mx_many);
    dns_free(&dns);
    free(r);
    event_base_free(base);
}

/* Many queries in flight at once on one channel, all answered. */
static void test_parallel(void **state)
{
    struct env *env = *state;
    struct event_base *base = event_base_new();
    struct dns *dns = dns_at(base, env->nsd_port, 1000, 2);
    enum { N = 60 };
    struct result *r = calloc(N, sizeof(*r));

    for (int i = 0; i < N; i++)
        assert_non_null(start(dns, (enum kind)(i % 3), i % 3 == Q_ADDR ? "dual.dns.test"
                                                      : i % 3 == Q_MX ? "mx-order.dns.test"
                                                                      : "txt-two.dns.test",
                              AF_UNSPEC, &r[i]));
    assert_true(run_until(base, r, N, 5000));
    for (int i = 0; i < N; i++) {
        assert_int_equal(r[i].calls, 1);
        assert_int_equal(r[i].st, DNS_OK);
    }
    dns_free(&dns);
    free(r);
    event_base_free(base);
}

/* ---- tests: names and configuration ---- */

/* A 64-octet label, a name of 253 octets (the most) and one of 254. */
static void long_names(char *label64, char *ok253, char *long254)
{
    memset(label64, 'l', 64);
    strcpy(label64 + 64, ".dns.test");
    /* labels of 61, 61, 61 and 58 octets, then "dns.test" */
    memset(ok253, 'x', 245);
    ok253[61] = ok253[123] = ok253[185] = ok253[244] = '.';
    strcpy(ok253 + 245, "dns.test");
    assert_int_equal(strlen(ok253), 253);
    sprintf(long254, "y%s", ok253);
}

struct bad_name_case {
    enum kind kind;
    const char *name;
    int family;
};

static void test_bad_names(void **state)
{
    struct env *env = *state;
    struct event_base *base = event_base_new();
    struct dns *dns = dns_at(base, env->nsd_port, 1000, 2);
    char label64[80], long254[300], ok253[300];
    const struct bad_name_case cases[] = {
        { .kind = Q_MX, .name = NULL },
        { .kind = Q_MX, .name = "" },
        { .kind = Q_MX, .name = "." },
        { .kind = Q_TXT, .name = "a..dns.test" },
        { .kind = Q_TXT, .name = ".dns.test" },
        { .kind = Q_TXT, .name = "dns.test.." },
        { .kind = Q_MX, .name = "bad name.dns.test" },
        { .kind = Q_MX, .name = "back\\.slash.dns.test" },
        { .kind = Q_MX, .name = "tab\t.dns.test" },
        { .kind = Q_MX, .name = "h\xc3\xa9.dns.test" },
        { .kind = Q_ADDR, .name = label64, .family = AF_INET },
        { .kind = Q_ADDR, .name = long254, .family = AF_INET },
        { .kind = Q_ADDR, .name = "v4.dns.test", .family = AF_UNIX },
    };
    struct result r = { .calls = 0 }, r253 = { .calls = 0 };

    long_names(label64, ok253, long254);

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        if (start(dns, cases[i].kind, cases[i].name, cases[i].family, &r) != NULL)
            fail_msg("case %zu (%s) started", i, cases[i].name ? cases[i].name : "NULL");
    assert_null(dns_query_mx(dns, "dns.test", NULL, &r));
    assert_null(dns_query_mx(NULL, "dns.test", on_mx, &r));
    {
        struct sockaddr_storage ss = { .ss_family = AF_UNIX };
        assert_null(dns_query_ptr(dns, (struct sockaddr *)&ss, on_ptr, &r));
        assert_null(dns_query_ptr(dns, NULL, on_ptr, &r));
        assert_int_equal(sockaddr_from_text("192.0.2.1", &ss), 0);
        assert_null(dns_query_ptr(dns, (struct sockaddr *)&ss, NULL, &r));
        assert_null(dns_query_ptr(NULL, (struct sockaddr *)&ss, on_ptr, &r));
    }
    strcat(ok253, ".");
    assert_non_null(start(dns, Q_MX, ok253, 0, &r253)); /* 253 + final dot is fine */
    assert_true(run_until(base, &r253, 1, 3000));
    assert_int_equal(r253.st, DNS_NXDOMAIN);
    run_for(base, 50);
    assert_int_equal(r.calls, 0);
    dns_free(&dns);
    event_base_free(base);
}

struct config_case {
    const char *servers[2];
    size_t count;
    int rc;
};

static const struct config_case config_cases[] = {
    { .servers = { "127.0.0.1" }, .count = 1 },
    { .servers = { "127.0.0.1:15353" }, .count = 1 },
    { .servers = { "::1" }, .count = 1 },
    { .servers = { "[::1]" }, .count = 1 },
    { .servers = { "[::1]:53", "192.0.2.1:5353" }, .count = 2 },
    { .servers = { "127.0.0.1:0" }, .count = 1, .rc = -1 },
    { .servers = { "127.0.0.1:65536" }, .count = 1, .rc = -1 },
    { .servers = { "127.0.0.1:" }, .count = 1, .rc = -1 },
    { .servers = { "127.0.0.1:53x" }, .count = 1, .rc = -1 },
    { .servers = { "127.0.0.1:-53" }, .count = 1, .rc = -1 },
    { .servers = { "[::1" }, .count = 1, .rc = -1 },
    { .servers = { "[::1]x" }, .count = 1, .rc = -1 },
    { .servers = { "[127.0.0.1]:53" }, .count = 1, .rc = -1 },
    { .servers = { "ns.example.test" }, .count = 1, .rc = -1 },
    { .servers = { "" }, .count = 1, .rc = -1 },
    { .servers = { NULL }, .count = 1, .rc = -1 },
    { .servers = { "127.0.0.1", "1.2.3.4.5" }, .count = 2, .rc = -1 },
};

static void test_config(void **state)
{
    struct event_base *base = event_base_new();

    for (size_t i = 0; i < sizeof(config_cases) / sizeof(config_cases[0]); i++) {
        const struct config_case *c = &config_cases[i];
        struct dns_config cfg = { .nameservers = c->servers, .nameserver_count = c->count };
        char error[256] = "";
        struct dns *dns = (struct dns *)&cfg; /* must be cleared on failure */
        int rc = dns_new(base, &cfg, &dns, error, sizeof(error));

        if (rc != c->rc)
            fail_msg("case %zu (%s): rc %d error \"%s\"", i, c->servers[0], rc, error);
        if (rc == 0) {
            assert_non_null(dns);
        } else {
            assert_null(dns);
            assert_true(error[0] != '\0');
        }
        dns_free(&dns);
    }
    {
        struct dns *dns = NULL;
        char error[64];
        assert_int_equal(dns_new(base, NULL, &dns, error, sizeof(error)), 0); /* resolv.conf */
        dns_free(&dns);
        dns_free(&dns);
        dns_free(&(struct dns *){ NULL });
    }
    event_base_free(base);
}

static void test_status_names(void **state)
{
    static const struct {
        enum dns_status st;
        const char *name;
    } names[] = {
        { DNS_OK, "ok" }, { DNS_NXDOMAIN, "nxdomain" }, { DNS_NODATA, "nodata" },
        { DNS_TEMPFAIL, "tempfail" }, { DNS_BADANSWER, "badanswer" },
        { DNS_CANCELLED, "cancelled" },
    };

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        assert_string_equal(dns_status_name(names[i].st), names[i].name);
    assert_string_equal(dns_status_name((enum dns_status)99), "unknown");
}

/* ---- tests: timeouts, the loop, failover ---- */

struct tick {
    long armed_ms;
    long fired_ms;
};

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct tick *t = arg;

    t->fired_ms = now_ms();
}

/* A server that never answers: TEMPFAIL after timeout_ms x attempts, and
 * a 50 ms timer on the same base fires on time meanwhile (a blocking
 * resolver would hold it until the 500 ms timeout). */
static void test_timeout(void **state)
{
    struct env *env = *state;
    struct event_base *base = event_base_new();
    struct dns *dns = dns_at(base, env->silent_port, 500, 1);
    struct tick tick = { .armed_ms = now_ms() };
    struct event *timer = evtimer_new(base, on_tick, &tick);
    struct result r[3] = { { .calls = 0 } };
    long t0 = now_ms();

    evtimer_add(timer, &(struct timeval){ .tv_usec = 50000 });
    assert_non_null(start(dns, Q_MX, "hang.dns.test", 0, &r[0]));
    assert_non_null(start(dns, Q_ADDR, "hang.dns.test", AF_UNSPEC, &r[1]));
    assert_non_null(start(dns, Q_TXT, "hang.dns.test", 0, &r[2]));
    assert_true(run_until(base, r, 3, 5000));
    for (int i = 0; i < 3; i++) {
        assert_int_equal(r[i].st, DNS_TEMPFAIL);
        assert_true(r[i].at_ms - t0 >= 450);
        assert_true(r[i].at_ms - t0 < 3000);
    }
    assert_true(tick.fired_ms != 0);
    assert_true(tick.fired_ms - tick.armed_ms >= 45);
    assert_true(tick.fired_ms - tick.armed_ms < 300);
    event_free(timer);
    dns_free(&dns);
    event_base_free(base);
}

/* The first server never answers; the second (nsd) does. */
static void test_failover(void **state)
{
    struct env *env = *state;
    struct event_base *base = event_base_new();
    char silent[32], nsd[32], error[256];
    const char *servers[] = { silent, nsd };
    struct dns_config cfg = { .nameservers = servers, .nameserver_count = 2, .timeout_ms = 200,
                              .attempts = 2 };
    struct dns *dns;
    struct result r = { .calls = 0 };

    snprintf(silent, sizeof(silent), "127.0.0.1:%d", env->silent_port);
    snprintf(nsd, sizeof(nsd), "127.0.0.1:%d", env->nsd_port);
    assert_int_equal(dns_new(base, &cfg, &dns, error, sizeof(error)), 0);
    assert_non_null(start(dns, Q_MX, "null-mx.dns.test", 0, &r));
    assert_true(run_until(base, &r, 1, 3000));
    assert_int_equal(r.st, DNS_OK);
    assert_string_equal(r.text, "0 .");
    dns_free(&dns);
    event_base_free(base);
}

/* ---- tests: cancel and free ---- */

static void cancel_other(struct result *r)
{
    struct dns_query **other = r->hook_arg;

    dns_query_cancel(*other);
    *other = NULL;
}

static void test_cancel(void **state)
{
    struct env *env = *state;
    struct event_base *base = event_base_new();
    struct dns *dns = dns_at(base, env->nsd_port, 1000, 2);
    struct dns *hang = dns_at(base, env->silent_port, 100, 1);
    struct result r[6] = { { .calls = 0 } };
    struct dns_query *q[2];

    dns_query_cancel(start(dns, Q_MX, "mx-order.dns.test", 0, &r[0])); /* answered later */
    dns_query_cancel(start(dns, Q_ADDR, "192.0.2.1", AF_INET, &r[1]));  /* answered at once */
    dns_query_cancel(start(hang, Q_TXT, "hang.dns.test", 0, &r[2]));   /* times out later */
    dns_query_cancel(NULL);
    /* two answers where each callback cancels the other: only one runs */
    r[3].hook = r[4].hook = cancel_other;
    r[3].hook_arg = &q[1];
    r[4].hook_arg = &q[0];
    q[0] = start(dns, Q_MX, "null-mx.dns.test", 0, &r[3]);
    q[1] = start(dns, Q_MX, "null-mx.dns.test", 0, &r[4]);
    assert_non_null(start(dns, Q_ADDR, "v4.dns.test", AF_INET, &r[5]));
    assert_true(run_until(base, &r[5], 1, 3000));
    run_for(base, 400);
    assert_int_equal(r[0].calls + r[1].calls + r[2].calls, 0);
    assert_int_equal(r[3].calls + r[4].calls, 1);
    assert_int_equal(r[5].st, DNS_OK);
    dns_free(&dns);
    dns_free(&hang);
    event_base_free(base);
}

static void start_again(struct result *r)
{
    struct dns *dns = r->hook_arg;

    assert_null(dns_query_mx(dns, "v4.dns.test", on_mx, r)); /* dying: refused */
}

/* dns_free settles every pending query with DNS_CANCELLED, at once. */
static void test_free_pending(void **state)
{
    struct env *env = *state;
    struct event_base *base = event_base_new();
    struct dns *dns = dns_at(base, env->silent_port, 1000, 2);
    struct result r[5] = { { .calls = 0 } };

    assert_non_null(start(dns, Q_MX, "hang.dns.test", 0, &r[0]));
    assert_non_null(start(dns, Q_ADDR, "hang.dns.test", AF_UNSPEC, &r[1]));
    assert_non_null(start(dns, Q_TXT, "hang.dns.test", 0, &r[2]));
    dns_query_cancel(start(dns, Q_MX, "hang2.dns.test", 0, &r[4]));
    r[0].hook = start_again;
    r[0].hook_arg = dns;
    run_for(base, 20); /* the queries are on the wire, the timer armed */
    assert_non_null(start(dns, Q_ADDR, "192.0.2.8", AF_INET, &r[3])); /* result waiting */
    dns_free(&dns);
    assert_null(dns);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(r[i].calls, 1);
        assert_int_equal(r[i].st, DNS_CANCELLED);
        assert_int_equal(r[i].n, 0);
    }
    assert_int_equal(r[4].calls, 0);
    run_for(base, 300); /* nothing of the resolver is left on the base */
    for (int i = 0; i < 4; i++)
        assert_int_equal(r[i].calls, 1);
    assert_int_equal(event_base_get_num_events(base, EVENT_BASE_COUNT_ADDED), 0);
    event_base_free(base);
}

static void free_dns(struct result *r)
{
    struct dns **dns = r->hook_arg;

    dns_free(dns);
}

/* dns_free from inside a callback: the other queries end CANCELLED. */
static void test_free_in_callback(void **state)
{
    struct env *env = *state;
    struct event_base *base = event_base_new();
    struct dns *dns = dns_at(base, env->nsd_port, 1000, 2);
    struct result r[4] = { { .calls = 0 } };
    int ok = 0, cancelled = 0;

    for (int i = 0; i < 4; i++) {
        r[i].hook = free_dns;
        r[i].hook_arg = &dns;
        assert_non_null(start(dns, i == 3 ? Q_ADDR : Q_MX, i == 3 ? "hang.example.invalid"
                                                                  : "mx-order.dns.test",
                              AF_INET, &r[i]));
    }
    assert_true(run_until(base, r, 4, 3000));
    assert_null(dns);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(r[i].calls, 1);
        ok += r[i].st != DNS_CANCELLED;
        cancelled += r[i].st == DNS_CANCELLED;
    }
    assert_int_equal(ok, 1);
    assert_int_equal(cancelled, 3);
    run_for(base, 100);
    assert_int_equal(event_base_get_num_events(base, EVENT_BASE_COUNT_ADDED), 0);
    event_base_free(base);
}

/* ---- tests: garbage ---- */

/* Random answers with the right id and question: any status but CANCELLED,
 * records well-formed (checked in the callbacks), no crash. */
static void test_fuzz(void **state)
{
    struct env *env = *state;
    struct event_base *base = event_base_new();
    /* generous timeout: on a loaded machine the responder thread may lag */
    struct dns *dns = dns_at(base, env->fake_port, 2000, 2);
    struct result *r = calloc(FUZZ_QUERIES, sizeof(*r));
    int count[DNS_CANCELLED + 1] = { 0 };

    for (int i = 0; i < FUZZ_QUERIES; i++) {
        char name[64];
        snprintf(name, sizeof(name), "fuzz%d.fake.test", i);
        assert_non_null(start(dns, (enum kind)(i % 3), name, AF_UNSPEC, &r[i]));
    }
    assert_true(run_until(base, r, FUZZ_QUERIES, 30000));
    for (int i = 0; i < FUZZ_QUERIES; i++) {
        assert_int_equal(r[i].calls, 1);
        assert_int_not_equal(r[i].st, DNS_CANCELLED);
        count[r[i].st]++;
    }
    fprintf(stderr, "fuzz: ok %d nxdomain %d nodata %d tempfail %d badanswer %d\n",
            count[DNS_OK], count[DNS_NXDOMAIN], count[DNS_NODATA], count[DNS_TEMPFAIL],
            count[DNS_BADANSWER]);
    assert_true(count[DNS_BADANSWER] > 0);
    dns_free(&dns);
    free(r);
    event_base_free(base);
}

/* ---- tests: PTR bounds ---- */

/* More PTR records than DNS_MAX_RECORDS (over TCP) are cut to that many. */
static void test_ptr_bounds(void **state)
{
    struct env *env = *state;
    struct event_base *base = event_base_new();
    struct dns *dns = dns_at(base, env->nsd_port, 1000, 2);
    struct result *r = calloc(1, sizeof(*r));

    assert_non_null(start(dns, Q_PTR, "192.0.2.3", 0, r));
    assert_true(run_until(base, r, 1, 3000));
    assert_int_equal(r->st, DNS_OK);
    assert_int_equal(r->n, DNS_MAX_RECORDS);
    assert_non_null(strstr(r->text, "p00.dns.test,"));
    dns_free(&dns);
    free(r);
    event_base_free(base);
}

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
    put_name(p, "test");
    put16(p, 6);
    put16(p, 1);
    put16(p, ttl >> 16);
    put16(p, ttl & 0xffff);
    put16(p, (unsigned)(2 * 14 + 20 + extra));
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
    struct dns *plain = dns_at(base, env->nsd_port, 1000, 2);
    struct dns *cached = dns_cached(base, env->nsd_port, 64, 0);
    struct dns *capped = dns_cached(base, env->nsd_port, 64, 1);
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

/* ---- tests: faults ---- */

struct fault_case {
    const char *what;
    int port;        /* 0: the responder; -1: a port nothing listens on */
    enum kind kind;
    const char *name;
    unsigned timeout_ms;
    unsigned attempts;
    enum dns_status st;
    long min_ms;     /* the answer takes at least this long */
};

/* Three attempts: c-ares alone would double the timeout on each (7 x). */
static const struct fault_case fault_cases[] = {
    { .what = "server down", .port = -1, .kind = Q_MX, .name = "down.fake.test",
      .timeout_ms = 300, .attempts = 3, .st = DNS_TEMPFAIL },
    { .what = "late answer", .kind = Q_MX, .name = "slow2500.fake.test", .timeout_ms = 300,
      .attempts = 3, .st = DNS_TEMPFAIL, .min_ms = 850 },
    { .what = "slow answer in time", .kind = Q_MX, .name = "slow150.fake.test",
      .timeout_ms = 600, .attempts = 1, .st = DNS_OK, .min_ms = 140 },
    { .what = "wrong id", .kind = Q_TXT, .name = "wrongid.fake.test", .timeout_ms = 200,
      .attempts = 3, .st = DNS_TEMPFAIL, .min_ms = 550 },
    { .what = "runt", .kind = Q_MX, .name = "short.fake.test", .timeout_ms = 200, .attempts = 3,
      .st = DNS_TEMPFAIL, .min_ms = 550 },
    { .what = "garbage", .kind = Q_ADDR, .name = "junk.fake.test", .timeout_ms = 200,
      .attempts = 3, .st = DNS_TEMPFAIL, .min_ms = 550 },
    { .what = "truncated record", .kind = Q_MX, .name = "trunc.fake.test", .timeout_ms = 200,
      .attempts = 3, .st = DNS_BADANSWER },
    { .what = "servfail", .kind = Q_MX, .name = "servfail.fake.test", .timeout_ms = 200,
      .attempts = 3, .st = DNS_TEMPFAIL },
};

/* Each fault ends in its status within timeout x attempts (plus slack). */
static void test_faults(void **state)
{
    struct env *env = *state;
    struct event_base *base = event_base_new();
    int down = free_port();

    assert_true(down > 0);
    for (size_t i = 0; i < sizeof(fault_cases) / sizeof(fault_cases[0]); i++) {
        const struct fault_case *c = &fault_cases[i];
        int port = c->port == 0 ? env->fake_port : down;
        struct dns *dns = dns_at(base, port, c->timeout_ms, c->attempts);
        struct result *r = calloc(1, sizeof(*r));
        long t0 = now_ms(), limit = (long)(c->timeout_ms * c->attempts) + 300;

        assert_non_null(start(dns, c->kind, c->name, AF_INET, r));
        if (!run_until(base, r, 1, (int)limit + 2000))
            fail_msg("%s: no answer", c->what);
        if (r->st != c->st || r->at_ms - t0 > limit || r->at_ms - t0 < c->min_ms)
            fail_msg("%s: %s after %ld ms, want %s in %ld..%ld ms", c->what,
                     dns_status_name(r->st), r->at_ms - t0, dns_status_name(c->st), c->min_ms,
                     limit);
        assert_int_equal(r->calls, 1);
        dns_free(&dns);
        free(r);
    }
    event_base_free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_names),
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_queries),
        cmocka_unit_test(test_long_answers),
        cmocka_unit_test(test_parallel),
        cmocka_unit_test(test_bad_names),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_failover),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_free_pending),
        cmocka_unit_test(test_free_in_callback),
        cmocka_unit_test(test_fuzz),
        cmocka_unit_test(test_ptr_bounds),
        cmocka_unit_test(test_reply_ttl),
        cmocka_unit_test(test_cache_unit),
        cmocka_unit_test(test_cache_hits),
        cmocka_unit_test(test_cache_size),
        cmocka_unit_test(test_cache_cancel),
        cmocka_unit_test(test_cache_nsd),
        cmocka_unit_test(test_faults),
    };

    if (access(NSD_PATH, X_OK) != 0) {
        fprintf(stderr, "test-dns: %s not installed (apt-get install nsd); skipped\n", NSD_PATH);
        return 77;
    }
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

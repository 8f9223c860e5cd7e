/*
 * test-dns — lib/dns's queries against real servers on loopback ports: an
 * nsd that the test starts with its own zones (MX ordering, null MX,
 * NXDOMAIN, NODATA, A/AAAA, CNAME, TXT concatenation and bounds, long answers
 * over TCP, PTR for IPv4 and IPv6), a UDP socket that never answers
 * (timeouts, a loop that keeps running, cancel, dns_free with queries
 * pending), a port where nothing listens, and a responder thread that sends
 * scripted, late, malformed or random answers (BADANSWER, SERVFAIL, stable MX
 * sort, fuzz, faults). Names and configuration are checked before any query
 * leaves. The cache and the TTL walk it relies on are test-dns-cache's.
 *
 * Needs /usr/sbin/nsd (exit 77 without it). Nothing leaves 127.0.0.1.
 */
#include "tests/unit/dns-test.h"

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
    struct dns *nsd = dns_at(base, env->nsd.port, 1000, 2);
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
    struct dns *dns = dns_at(base, env->nsd.port, 1000, 2);
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
    struct dns *dns = dns_at(base, env->nsd.port, 1000, 2);
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
    struct dns *dns = dns_at(base, env->nsd.port, 1000, 2);
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
    snprintf(nsd, sizeof(nsd), "127.0.0.1:%d", env->nsd.port);
    assert_int_equal(dns_new(base, &cfg, &dns, error, sizeof(error)), 0);
    assert_non_null(start(dns, Q_MX, "null-mx.dns.test", 0, &r));
    assert_true(run_until(base, &r, 1, 3000));
    assert_int_equal(r.st, DNS_OK);
    assert_string_equal(r.text, "0 .");
    dns_free(&dns);
    event_base_free(base);
}

/* ---- tests: cancel and free ---- */

static void test_cancel(void **state)
{
    struct env *env = *state;
    struct event_base *base = event_base_new();
    struct dns *dns = dns_at(base, env->nsd.port, 1000, 2);
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
    struct dns *dns = dns_at(base, env->nsd.port, 1000, 2);
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
    struct dns *dns = dns_at(base, env->nsd.port, 1000, 2);
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
    int down = nsd_test_free_port();

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
        cmocka_unit_test(test_faults),
    };

    if (nsd_missing("test-dns"))
        return 77;
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

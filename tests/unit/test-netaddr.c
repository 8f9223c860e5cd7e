/*
 * test-netaddr — table-driven tests of addresses, CIDR networks and lists,
 * network keys and the address hash.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <string.h>
#include <sys/un.h>

#include "lib/netaddr.h"

struct parse_case {
    const char *text;
    int expect_rc;
    const char *expect_text; /* netaddr_to_text of the result */
    bool v4;
};

static const struct parse_case parse_cases[] = {
    { .text = "192.0.2.1", .expect_text = "192.0.2.1", .v4 = true },
    { .text = "0.0.0.0", .expect_text = "0.0.0.0", .v4 = true },
    { .text = "255.255.255.255", .expect_text = "255.255.255.255", .v4 = true },
    { .text = "::ffff:192.0.2.1", .expect_text = "192.0.2.1", .v4 = true },
    { .text = "2001:db8::1", .expect_text = "2001:db8::1" },
    { .text = "2001:DB8:0:0:0:0:0:1", .expect_text = "2001:db8::1" },
    { .text = "2001:db8:0:1:1:1:1:1", .expect_text = "2001:db8:0:1:1:1:1:1" },
    { .text = "2001:0:0:1:0:0:0:1", .expect_text = "2001:0:0:1::1" },
    { .text = "2001:db8:0:0:1:0:0:1", .expect_text = "2001:db8::1:0:0:1" },
    { .text = "::1", .expect_text = "::1" },
    { .text = "::", .expect_text = "::" },
    { .text = "::ffff:0:0", .expect_text = "0.0.0.0", .v4 = true },
    { .text = "", .expect_rc = -1 },
    { .text = "1.2.3", .expect_rc = -1 },
    { .text = "1.2.3.256", .expect_rc = -1 },
    { .text = "1.2.3.4.5", .expect_rc = -1 },
    { .text = "1.2.3.4 ", .expect_rc = -1 },
    { .text = " 1.2.3.4", .expect_rc = -1 },
    { .text = "1.2.3.4/24", .expect_rc = -1 },
    { .text = "fe80::1%eth0", .expect_rc = -1 },
    { .text = "2001:db8:::1", .expect_rc = -1 },
    { .text = "1::2::3", .expect_rc = -1 },
    { .text = "gggg::", .expect_rc = -1 },
    { .text = "localhost", .expect_rc = -1 },
};

struct cidr_case {
    const char *text;
    int expect_rc;
    unsigned prefix;         /* in the mapped space */
    const char *expect_net;  /* text of the network address */
};

static const struct cidr_case cidr_cases[] = {
    { .text = "10.0.0.0/8", .prefix = 104, .expect_net = "10.0.0.0" },
    { .text = "192.0.2.0/24", .prefix = 120, .expect_net = "192.0.2.0" },
    { .text = "127.0.0.1", .prefix = 128, .expect_net = "127.0.0.1" },
    { .text = "127.0.0.1/32", .prefix = 128, .expect_net = "127.0.0.1" },
    { .text = "0.0.0.0/0", .prefix = 96, .expect_net = "0.0.0.0" },
    { .text = "::1", .prefix = 128, .expect_net = "::1" },
    { .text = "2001:db8::/32", .prefix = 32, .expect_net = "2001:db8::" },
    { .text = "::/0", .prefix = 0, .expect_net = "::" },
    { .text = "::ffff:10.0.0.0/104", .prefix = 104, .expect_net = "10.0.0.0" },
    { .text = "::ffff:0:0/96", .prefix = 96, .expect_net = "0.0.0.0" },
    { .text = "2001:db8::/128", .prefix = 128, .expect_net = "2001:db8::" },
    { .text = "10.0.0.1/8", .expect_rc = -1 },
    { .text = "1.2.3.5/31", .expect_rc = -1 },
    { .text = "1.2.3.4/31", .prefix = 127, .expect_net = "1.2.3.4" },
    { .text = "2001:db8::1/64", .expect_rc = -1 },
    { .text = "::ffff:10.0.0.1/104", .expect_rc = -1 },
    { .text = "10.0.0.0/33", .expect_rc = -1 },
    { .text = "2001:db8::/129", .expect_rc = -1 },
    { .text = "10.0.0.0/", .expect_rc = -1 },
    { .text = "10.0.0.0/-1", .expect_rc = -1 },
    { .text = "10.0.0.0/+8", .expect_rc = -1 },
    { .text = "10.0.0.0/08", .expect_rc = -1 },
    { .text = "10.0.0.0/8 ", .expect_rc = -1 },
    { .text = "10.0.0.0/8/8", .expect_rc = -1 },
    { .text = "10.0.0.0/1000", .expect_rc = -1 },
    { .text = "/8", .expect_rc = -1 },
    { .text = "", .expect_rc = -1 },
    { .text = "10.0.0/8", .expect_rc = -1 },
    { .text = "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255:1/8", .expect_rc = -1 },
};

struct match_case {
    const char *cidr;
    const char *addr;
    bool match;
};

static const struct match_case match_cases[] = {
    { "10.0.0.0/8", "10.255.1.2", true },
    { "10.0.0.0/8", "11.0.0.0", false },
    { "10.0.0.0/8", "9.255.255.255", false },
    { "192.168.1.128/25", "192.168.1.127", false },
    { "192.168.1.128/25", "192.168.1.128", true },
    { "192.168.1.128/25", "192.168.1.255", true },
    { "127.0.0.1", "127.0.0.1", true },
    { "127.0.0.1", "127.0.0.2", false },
    { "::ffff:127.0.0.1", "127.0.0.1", true },
    { "0.0.0.0/0", "203.0.113.9", true },
    { "0.0.0.0/0", "::1", false },
    { "0.0.0.0/0", "2001:db8::1", false },
    { "::ffff:0:0/96", "1.2.3.4", true },
    { "::/0", "2001:db8::1", true },
    { "::/0", "1.2.3.4", false },       /* IPv6 networks never match IPv4 */
    { "::/96", "1.2.3.4", false },
    { "::/80", "::ffff:1.2.3.4", false },
    { "::1", "::1", true },
    { "::1", "127.0.0.1", false },
    { "2001:db8::/32", "2001:db8:ffff::1", true },
    { "2001:db8::/32", "2001:db9::1", false },
    { "2001:db8::/33", "2001:db8:7fff::", true },
    { "2001:db8::/33", "2001:db8:8000::", false },
    { "2001:db8::/128", "2001:db8::", true },
    { "2001:db8::/128", "2001:db8::1", false },
};

struct network_case {
    const char *addr;
    unsigned v4_prefix, v6_prefix;
    const char *expect;
};

static const struct network_case network_cases[] = {
    { "192.0.2.77", 24, 64, "192.0.2.0" },
    { "192.0.3.77", 23, 64, "192.0.2.0" },
    { "192.0.2.77", 32, 64, "192.0.2.77" },
    { "192.0.2.77", 40, 64, "192.0.2.77" },
    { "192.0.2.77", 0, 64, "0.0.0.0" },
    { "2001:db8:1:2:3:4:5:6", 24, 64, "2001:db8:1:2::" },
    { "2001:db8:1:2:3:4:5:6", 24, 48, "2001:db8:1::" },
    { "2001:db8:1:2:3:4:5:7", 24, 127, "2001:db8:1:2:3:4:5:6" },
    { "2001:db8:1:2:3:4:5:7", 24, 200, "2001:db8:1:2:3:4:5:7" },
    { "2001:db8:1:2:3:4:5:6", 24, 0, "::" },
};

static struct netaddr must_parse(const char *text)
{
    struct netaddr a;

    if (netaddr_parse(text, &a) != 0)
        fail_msg("cannot parse %s", text);
    return a;
}

static void test_parse(void **state)
{
    for (size_t i = 0; i < sizeof(parse_cases) / sizeof(parse_cases[0]); i++) {
        const struct parse_case *c = &parse_cases[i];
        struct netaddr a;
        char buf[INET6_ADDRSTRLEN];

        if (netaddr_parse(c->text, &a) != c->expect_rc)
            fail_msg("\"%s\": parse rc, want %d", c->text, c->expect_rc);
        if (c->expect_rc != 0)
            continue;
        if (netaddr_is_v4(&a) != c->v4)
            fail_msg("\"%s\": is_v4 %d", c->text, netaddr_is_v4(&a));
        assert_ptr_equal(netaddr_to_text(&a, buf, sizeof(buf)), buf);
        if (strcmp(buf, c->expect_text) != 0)
            fail_msg("\"%s\": text \"%s\", want \"%s\"", c->text, buf, c->expect_text);
    }
}

static void test_to_text_small_buffer(void **state)
{
    struct netaddr a = must_parse("192.0.2.1");
    char buf[10]; /* exactly "192.0.2.1" and its NUL */

    assert_null(netaddr_to_text(&a, buf, sizeof(buf) - 1));
    assert_ptr_equal(netaddr_to_text(&a, buf, sizeof(buf)), buf);
    assert_string_equal(buf, "192.0.2.1");
    a = must_parse("2001:db8::1");
    assert_null(netaddr_to_text(&a, buf, sizeof(buf)));
}

static void test_from_sockaddr(void **state)
{
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(25) };
    struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6 };
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    struct netaddr a, b;

    inet_pton(AF_INET, "198.51.100.7", &sin.sin_addr);
    assert_int_equal(netaddr_from_sockaddr((struct sockaddr *)&sin, &a), 0);
    assert_true(netaddr_is_v4(&a));
    b = must_parse("198.51.100.7");
    assert_memory_equal(a.a, b.a, 16);

    /* A v4-mapped IPv6 peer is the same address as the IPv4 one. */
    inet_pton(AF_INET6, "::ffff:198.51.100.7", &sin6.sin6_addr);
    assert_int_equal(netaddr_from_sockaddr((struct sockaddr *)&sin6, &b), 0);
    assert_memory_equal(a.a, b.a, 16);

    inet_pton(AF_INET6, "2001:db8::5", &sin6.sin6_addr);
    assert_int_equal(netaddr_from_sockaddr((struct sockaddr *)&sin6, &b), 0);
    assert_false(netaddr_is_v4(&b));
    a = must_parse("2001:db8::5");
    assert_memory_equal(a.a, b.a, 16);

    assert_int_equal(netaddr_from_sockaddr((struct sockaddr *)&sun, &a), -1);
}

static void test_cidr_parse(void **state)
{
    for (size_t i = 0; i < sizeof(cidr_cases) / sizeof(cidr_cases[0]); i++) {
        const struct cidr_case *c = &cidr_cases[i];
        struct netaddr_cidr cidr;
        const char *error = NULL;
        char buf[INET6_ADDRSTRLEN];

        if (netaddr_cidr_parse(c->text, &cidr, &error) != c->expect_rc)
            fail_msg("\"%s\": rc, want %d", c->text, c->expect_rc);
        if (c->expect_rc != 0) {
            if (error == NULL || error[0] == '\0')
                fail_msg("\"%s\": no error text", c->text);
            continue;
        }
        if (cidr.prefix != c->prefix)
            fail_msg("\"%s\": prefix %u, want %u", c->text, cidr.prefix, c->prefix);
        netaddr_to_text(&cidr.net, buf, sizeof(buf));
        if (strcmp(buf, c->expect_net) != 0)
            fail_msg("\"%s\": network %s, want %s", c->text, buf, c->expect_net);
    }
}

static void test_cidr_match(void **state)
{
    for (size_t i = 0; i < sizeof(match_cases) / sizeof(match_cases[0]); i++) {
        const struct match_case *c = &match_cases[i];
        struct netaddr_cidr cidr;
        struct netaddr a = must_parse(c->addr);
        const char *error;

        if (netaddr_cidr_parse(c->cidr, &cidr, &error) != 0)
            fail_msg("%s: %s", c->cidr, error);
        if (netaddr_cidr_match(&cidr, &a) != c->match)
            fail_msg("%s vs %s: match %d, want %d", c->cidr, c->addr, !c->match, c->match);
    }
}

static void test_list(void **state)
{
    struct netaddr_list l = { NULL, 0 };
    const char *error = NULL;
    struct netaddr a = must_parse("127.0.0.1");

    assert_false(netaddr_list_match(&l, &a));
    assert_int_equal(netaddr_list_add(&l, "127.0.0.0/8", &error), 0);
    assert_int_equal(netaddr_list_add(&l, "::1", &error), 0);
    assert_int_equal(netaddr_list_add(&l, "192.0.2.1/24", &error), -1);
    assert_non_null(error);
    assert_int_equal(l.count, 2);
    assert_int_equal(netaddr_list_add(&l, "2001:db8::/32", &error), 0);
    assert_int_equal(l.count, 3);
    for (size_t i = 0; i < sizeof(match_cases) / sizeof(match_cases[0]); i++) {
        /* Reuse the match table's addresses against the list's networks. */
        bool want;

        a = must_parse(match_cases[i].addr);
        want = strncmp(match_cases[i].addr, "127.", 4) == 0 ||
                    strcmp(match_cases[i].addr, "::1") == 0 ||
                    strncmp(match_cases[i].addr, "2001:db8:", 9) == 0;
        if (netaddr_list_match(&l, &a) != want)
            fail_msg("list vs %s: want %d", match_cases[i].addr, want);
    }
    netaddr_list_free(&l);
    assert_null(l.items);
    assert_int_equal(l.count, 0);
    netaddr_list_free(&l);
    netaddr_list_free(NULL);
}

static void test_network(void **state)
{
    for (size_t i = 0; i < sizeof(network_cases) / sizeof(network_cases[0]); i++) {
        const struct network_case *c = &network_cases[i];
        struct netaddr a = must_parse(c->addr);
        struct netaddr n = netaddr_network(&a, c->v4_prefix, c->v6_prefix);
        char buf[INET6_ADDRSTRLEN];

        netaddr_to_text(&n, buf, sizeof(buf));
        if (strcmp(buf, c->expect) != 0)
            fail_msg("%s /%u /%u: %s, want %s", c->addr, c->v4_prefix, c->v6_prefix, buf,
                     c->expect);
    }
}

/* Stable for equal input, moved by the seed, and spread over buckets. */
static void test_hash(void **state)
{
    struct netaddr a = must_parse("10.0.0.1"), b = must_parse("::ffff:10.0.0.1");
    unsigned buckets[16] = { 0 };

    assert_int_equal(netaddr_hash(&a, 1), netaddr_hash(&b, 1));
    assert_int_not_equal(netaddr_hash(&a, 1), netaddr_hash(&a, 2));
    b = must_parse("10.0.0.2");
    assert_int_not_equal(netaddr_hash(&a, 1), netaddr_hash(&b, 1));
    for (unsigned i = 0; i < 256; i++) {
        a.a[15] = (uint8_t)i;
        buckets[netaddr_hash(&a, 7) & 15]++;
    }
    for (unsigned i = 0; i < 16; i++)
        if (buckets[i] < 4 || buckets[i] > 32)
            fail_msg("bucket %u holds %u of 256", i, buckets[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_to_text_small_buffer),
        cmocka_unit_test(test_from_sockaddr),
        cmocka_unit_test(test_cidr_parse),
        cmocka_unit_test(test_cidr_match),
        cmocka_unit_test(test_list),
        cmocka_unit_test(test_network),
        cmocka_unit_test(test_hash),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test-proxy-proto — table-driven tests of the PROXY protocol v1/v2 parser.
 *
 * Each row is parsed from an exact-size heap copy (so a sanitizer catches a
 * read past len). Every valid row is also cut at every length (each prefix
 * must answer 0, "need more") and offered under the other version's accept
 * mask alone (must answer -1).
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/proxy-proto.h"

#define BOTH (PROXY_ACCEPT_V1 | PROXY_ACCEPT_V2)

struct proxy_case {
    const char *name;
    const char *input;
    size_t len;
    unsigned accept;       /* 0 = BOTH */
    int expect_rc;
    size_t rest;           /* octets after the header, left unconsumed */
    int version;
    bool local;
    const char *src, *dst; /* text; NULL when local */
    unsigned sport, dport;
};

#define IN(s) .input = (s), .len = sizeof(s) - 1
#define V2SIG "\r\n\r\n\0\r\nQUIT\n"
#define X10 "xxxxxxxxxx"
#define X90 X10 X10 X10 X10 X10 X10 X10 X10 X10
#define FFFF8 "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
#define A4 "\x01\x02\x03\x04" "\x05\x06\x07\x08" "\x00\x6f" "\x00\xde"
#define A6 "\x20\x01\x0d\xb8" "\0\0\0\0" "\0\0\0\0" "\0\0\0\x01" \
           "\0\0\0\0" "\0\0\0\0" "\0\0\0\0" "\0\0\0\x01" "\x01\xf4" "\x00\x19"

#define V1_OK(n, s, r, sa, sp, da, dp)                                             \
    { .name = n, IN(s), .expect_rc = 1, .rest = r, .version = 1, .src = sa,    \
      .sport = sp, .dst = da, .dport = dp }
#define V1_LOCAL(n, s) { .name = n, IN(s), .expect_rc = 1, .version = 1, .local = true }
#define V2_OK(n, s, r, sa, sp, da, dp)                                             \
    { .name = n, IN(s), .expect_rc = 1, .rest = r, .version = 2, .src = sa,    \
      .sport = sp, .dst = da, .dport = dp }
#define V2_LOCAL(n, s) { .name = n, IN(s), .expect_rc = 1, .version = 2, .local = true }
#define BAD(n, s) { .name = n, IN(s), .expect_rc = -1 }
#define MORE(n, s) { .name = n, IN(s), .expect_rc = 0 }

static const struct proxy_case cases[] = {
    /* v1, valid. */
    V1_OK("v1 tcp4", "PROXY TCP4 1.2.3.4 5.6.7.8 111 222\r\n", 0, "1.2.3.4", 111, "5.6.7.8", 222),
    V1_OK("v1 tcp4, pipelined EHLO", "PROXY TCP4 1.2.3.4 5.6.7.8 111 222\r\nEHLO x\r\n", 8,
          "1.2.3.4", 111, "5.6.7.8", 222),
    V1_OK("v1 tcp4 edges", "PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n", 0,
          "0.0.0.0", 0, "255.255.255.255", 65535),
    V1_OK("v1 tcp6", "PROXY TCP6 2001:db8::1 ::1 65535 0\r\n", 0, "2001:db8::1", 65535, "::1", 0),
    V1_OK("v1 tcp6 longest", "PROXY TCP6 " FFFF8 " " FFFF8 " 65535 65535\r\n", 0,
          FFFF8, 65535, FFFF8, 65535),
    V1_OK("v1 tcp6 upper case", "PROXY TCP6 2001:DB8::A ::1 25 25\r\n", 0,
          "2001:db8::a", 25, "::1", 25),
    V1_OK("v1 tcp6 embedded v4", "PROXY TCP6 ::ffff:192.0.2.1 2001:db8::2 25 587\r\n", 0,
          "::ffff:192.0.2.1", 25, "2001:db8::2", 587),
    V1_LOCAL("v1 unknown", "PROXY UNKNOWN\r\n"),
    V1_LOCAL("v1 unknown with addresses", "PROXY UNKNOWN " FFFF8 " " FFFF8 " 65535 65535\r\n"),
    V1_LOCAL("v1 unknown, 107 octets", "PROXY UNKNOWN " X90 "x\r\n"),
    V1_LOCAL("v1 unknown junk", "PROXY UNKNOWN whatever  it\tsays\r\n"),

    /* v1, invalid. */
    BAD("v1 108 octets", "PROXY UNKNOWN " X90 "xx\r\n"),
    BAD("v1 107 octets, no LF", "PROXY UNKNOWN " X90 "xxx"),
    BAD("v1 bare LF", "PROXY TCP4 1.2.3.4 5.6.7.8 111 222\n"),
    BAD("v1 CR CR LF", "PROXY TCP4 1.2.3.4 5.6.7.8 111 222\r\r\n"),
    BAD("v1 CR inside", "PROXY TCP4 1.2.3.4\r5.6.7.8 111 222\r\n"),
    BAD("v1 double space", "PROXY  TCP4 1.2.3.4 5.6.7.8 111 222\r\n"),
    BAD("v1 double space later", "PROXY TCP4 1.2.3.4  5.6.7.8 111 222\r\n"),
    BAD("v1 trailing space", "PROXY TCP4 1.2.3.4 5.6.7.8 111 222 \r\n"),
    BAD("v1 tab", "PROXY\tTCP4 1.2.3.4 5.6.7.8 111 222\r\n"),
    BAD("v1 lower case", "proxy tcp4 1.2.3.4 5.6.7.8 111 222\r\n"),
    BAD("v1 TCP5", "PROXY TCP5 1.2.3.4 5.6.7.8 111 222\r\n"),
    BAD("v1 UNKNOWNX", "PROXY UNKNOWNX\r\n"),
    BAD("v1 no fields", "PROXY\r\n"),
    BAD("v1 too few fields", "PROXY TCP4 1.2.3.4 5.6.7.8 111\r\n"),
    BAD("v1 octet 256", "PROXY TCP4 1.2.3.256 5.6.7.8 111 222\r\n"),
    BAD("v1 three octets", "PROXY TCP4 1.2.3 5.6.7.8 111 222\r\n"),
    BAD("v1 leading zero octet", "PROXY TCP4 01.2.3.4 5.6.7.8 111 222\r\n"),
    BAD("v1 v6 address in TCP4", "PROXY TCP4 ::1 ::1 111 222\r\n"),
    BAD("v1 v4 address in TCP6", "PROXY TCP6 1.2.3.4 5.6.7.8 111 222\r\n"),
    BAD("v1 triple colon", "PROXY TCP6 2001:db8:::1 ::1 111 222\r\n"),
    BAD("v1 two double colons", "PROXY TCP6 1::2::3 ::1 111 222\r\n"),
    BAD("v1 NUL in source", "PROXY TCP4 1.2.3.4\0 5.6.7.8 111 222\r\n"),
    BAD("v1 NUL then junk in address",
        "PROXY TCP6 2001:db8::1 ::f3\0\0\0" "192.0.2.7 65535 587\r\n"),
    BAD("v1 NUL in port", "PROXY TCP4 1.2.3.4 5.6.7.8 11\0 222\r\n"),
    BAD("v1 port 65536", "PROXY TCP4 1.2.3.4 5.6.7.8 65536 222\r\n"),
    BAD("v1 port +1", "PROXY TCP4 1.2.3.4 5.6.7.8 +1 222\r\n"),
    BAD("v1 port -1", "PROXY TCP4 1.2.3.4 5.6.7.8 111 -1\r\n"),
    BAD("v1 port leading zero", "PROXY TCP4 1.2.3.4 5.6.7.8 080 222\r\n"),
    BAD("v1 port hex", "PROXY TCP4 1.2.3.4 5.6.7.8 0x10 222\r\n"),
    BAD("v1 port six digits", "PROXY TCP4 1.2.3.4 5.6.7.8 111 000222\r\n"),
    BAD("v1 port letter", "PROXY TCP4 1.2.3.4 5.6.7.8 111 22a\r\n"),

    /* v1 prefixes: 0 only while a valid header can still follow. */
    MORE("empty", ""),
    MORE("v1 P", "P"),
    MORE("v1 to the source", "PROXY TCP4 1.2.3.4"),
    MORE("v1 to the CR", "PROXY TCP4 1.2.3.4 5.6.7.8 111 222\r"),
    MORE("v1 106 octets", "PROXY UNKNOWN " X90 "xx"),
    MORE("v1 port 0 so far", "PROXY TCP4 1.2.3.4 5.6.7.8 0"),
    MORE("v1 tcp6 so far", "PROXY TCP6 2001:db8::"),
    MORE("v1 tcp6 v4 part so far", "PROXY TCP6 ::ffff:1.2."),
    BAD("v1 PROXX", "PROXX"),
    BAD("v1 bad octet so far", "PROXY TCP4 1.2.3.400"),
    BAD("v1 five octets so far", "PROXY TCP4 1.2.3.4.5"),
    BAD("v1 CR too early", "PROXY TCP4 1.2.3.4 5.6.7.8 111\r"),
    BAD("v1 port over so far", "PROXY TCP4 1.2.3.4 5.6.7.8 99999"),
    BAD("v1 port leading zero so far", "PROXY TCP4 1.2.3.4 5.6.7.8 01"),
    BAD("v1 too many so far", "PROXY TCP4 1.2.3.4 5.6.7.8 111 222 "),
    BAD("v1 tcp6 triple colon so far", "PROXY TCP6 2001:db8:::"),
    BAD("v1 tcp6 long group so far", "PROXY TCP6 12345"),
    BAD("v1 tcp6 nine groups so far", "PROXY TCP6 1:2:3:4:5:6:7:8:9"),
    BAD("v1 tcp6 bad v4 part so far", "PROXY TCP6 ::ffff:1.2.300"),

    /* Not a PROXY header at all. */
    BAD("SMTP instead", "EHLO client.example\r\n"),
    BAD("HTTP instead", "GET / HTTP/1.0\r\n"),
    BAD("NUL", "\0"),

    /* v2. */
    V2_OK("v2 tcp4", V2SIG "\x21\x11\x00\x0c" A4, 0, "1.2.3.4", 111, "5.6.7.8", 222),
    V2_OK("v2 tcp4, TLVs and EHLO",
          V2SIG "\x21\x11\x00\x12" A4 "\x04\x00\x03" "abc" "EHLO x\r\n", 8,
          "1.2.3.4", 111, "5.6.7.8", 222),
    V2_OK("v2 tcp4, longer address block", V2SIG "\x21\x11\x00\x0d" A4 "\x00", 0,
          "1.2.3.4", 111, "5.6.7.8", 222),
    V2_OK("v2 tcp6", V2SIG "\x21\x21\x00\x24" A6, 0, "2001:db8::1", 500, "::1", 25),
    V2_OK("v2 tcp6, TLV", V2SIG "\x21\x21\x00\x28" A6 "\x01\x00\x01" "x" "QUIT\r\n", 6,
          "2001:db8::1", 500, "::1", 25),
    V2_LOCAL("v2 local", V2SIG "\x20\x00\x00\x00"),
    V2_LOCAL("v2 local ignores family", V2SIG "\x20\x55\x00\x03" "abc"),
    V2_LOCAL("v2 local with tcp4 block", V2SIG "\x20\x11\x00\x0c" A4),
    V2_LOCAL("v2 proxy unspec", V2SIG "\x21\x00\x00\x00"),
    V2_LOCAL("v2 proxy unspec with TLVs", V2SIG "\x21\x00\x00\x04" "abcd"),
    BAD("v2 version 1", V2SIG "\x11\x11\x00\x0c" A4),
    BAD("v2 version 3", V2SIG "\x31\x11\x00\x0c" A4),
    BAD("v2 command 2", V2SIG "\x22\x11\x00\x0c" A4),
    BAD("v2 udp4", V2SIG "\x21\x12\x00\x0c" A4),
    BAD("v2 unix", V2SIG "\x21\x31\x00\x0c" A4),
    BAD("v2 unspec family, stream", V2SIG "\x21\x01\x00\x0c" A4),
    BAD("v2 tcp4 short block",
        V2SIG "\x21\x11\x00\x0b" "\x01\x02\x03\x04" "\x05\x06\x07\x08" "\0\0\0"),
    BAD("v2 tcp6 with tcp4 block", V2SIG "\x21\x21\x00\x0c" A4),
    BAD("v2 length 1025", V2SIG "\x21\x11\x04\x01"),
    BAD("v2 length 65535", V2SIG "\x20\x00\xff\xff"),
    BAD("v2 bad signature", "\r\n\r\n\0\r\nQUIX\n\x21\x11\x00\x0c" A4),
    BAD("v2 bad signature so far", "\r\n\r\n\0\r\nQ\n"),
    MORE("v2 to the command", V2SIG "\x21"),
    MORE("v2 to the length", V2SIG "\x21\x11\x00"),
    MORE("v2 into the addresses", V2SIG "\x21\x11\x00\x0c" "\x01\x02"),

    /* Accept masks. */
    { .name = "v1 under v1 only", IN("PROXY UNKNOWN\r\n"), .accept = PROXY_ACCEPT_V1,
      .expect_rc = 1, .version = 1, .local = true },
    { .name = "v2 under v2 only", IN(V2SIG "\x20\x00\x00\x00"), .accept = PROXY_ACCEPT_V2,
      .expect_rc = 1, .version = 2, .local = true },
    { .name = "v1 prefix under v2 only", IN("PROX"), .accept = PROXY_ACCEPT_V2, .expect_rc = -1 },
    { .name = "v2 prefix under v1 only", IN("\r\n"), .accept = PROXY_ACCEPT_V1, .expect_rc = -1 },
    { .name = "nothing accepted", IN(""), .accept = 4, .expect_rc = -1 },
};

struct parsed {
    int rc;
    struct proxy_info info;
    size_t consumed;
    const char *error;
};

/* Parses input[0..len) from an exact-size heap copy. */
static struct parsed parse(const char *input, size_t len, unsigned accept)
{
    struct parsed p = { .consumed = (size_t)-1, .error = NULL };
    unsigned char *copy = malloc(len != 0 ? len : 1);

    assert_non_null(copy);
    memcpy(copy, input, len);
    p.rc = proxy_parse(copy, len, accept, &p.info, &p.consumed, &p.error);
    free(copy);
    return p;
}

static void check_addr(const char *name, const struct sockaddr_storage *ss, socklen_t ss_len,
                       const char *want, unsigned want_port)
{
    char text[INET6_ADDRSTRLEN] = "";
    unsigned port;

    if (strchr(want, ':') != NULL) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;

        assert_int_equal(ss->ss_family, AF_INET6);
        assert_int_equal(ss_len, sizeof(*sin6));
        inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof(text));
        port = ntohs(sin6->sin6_port);
    } else {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;

        assert_int_equal(ss->ss_family, AF_INET);
        assert_int_equal(ss_len, sizeof(*sin));
        inet_ntop(AF_INET, &sin->sin_addr, text, sizeof(text));
        port = ntohs(sin->sin_port);
    }
    if (strcmp(text, want) != 0 || port != want_port)
        fail_msg("%s: address %s port %u, want %s port %u", name, text, port, want, want_port);
}

static void check_case(const struct proxy_case *c)
{
    struct parsed p = parse(c->input, c->len, c->accept != 0 ? c->accept : BOTH);

    if (p.rc != c->expect_rc)
        fail_msg("%s: rc %d, want %d (%s)", c->name, p.rc, c->expect_rc,
                 p.error != NULL ? p.error : "no error");
    if (p.rc < 0 && (p.error == NULL || p.error[0] == '\0'))
        fail_msg("%s: -1 without an error text", c->name);
    if (p.rc != 1)
        return;
    if (p.consumed != c->len - c->rest)
        fail_msg("%s: consumed %zu, want %zu", c->name, p.consumed, c->len - c->rest);
    assert_int_equal(p.info.version, c->version);
    if (p.info.local != c->local)
        fail_msg("%s: local %d, want %d", c->name, p.info.local, c->local);
    if (c->local)
        return;
    check_addr(c->name, &p.info.src, p.info.src_len, c->src, c->sport);
    check_addr(c->name, &p.info.dst, p.info.dst_len, c->dst, c->dport);
}

static void test_table(void **state)
{
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        check_case(&cases[i]);
}

/* Every proper prefix of a valid header needs more. */
static void test_truncated(void **state)
{
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct proxy_case *c = &cases[i];
        unsigned accept = c->accept != 0 ? c->accept : BOTH;

        if (c->expect_rc != 1)
            continue;
        for (size_t k = 0; k < c->len - c->rest; k++) {
            struct parsed p = parse(c->input, k, accept);

            if (p.rc != 0)
                fail_msg("%s: cut at %zu: rc %d (%s), want 0", c->name, k, p.rc,
                         p.error != NULL ? p.error : "");
        }
    }
}

/* A valid header of a version not accepted is an error, not "need more". */
static void test_accept_mask(void **state)
{
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct proxy_case *c = &cases[i];
        unsigned other = c->version == 1 ? PROXY_ACCEPT_V2 : PROXY_ACCEPT_V1;

        if (c->expect_rc != 1 || c->accept != 0)
            continue;
        if (parse(c->input, c->len, other).rc != -1)
            fail_msg("%s: accepted under the other version's mask", c->name);
        if (parse(c->input, c->len, 0).rc != -1)
            fail_msg("%s: accepted under an empty mask", c->name);
    }
}

/* The biggest v2 header: 16 + PROXY_V2_MAX_LEN octets. */
static void test_v2_max_len(void **state)
{
    static const char head[] = V2SIG "\x21\x11\x04\x00" A4;
    char buf[16 + PROXY_V2_MAX_LEN + 4];
    struct parsed p;

    memset(buf, 'T', sizeof(buf));
    memcpy(buf, head, sizeof(head) - 1);
    p = parse(buf, sizeof(buf), BOTH);
    assert_int_equal(p.rc, 1);
    assert_int_equal(p.consumed, 16 + PROXY_V2_MAX_LEN);
    check_addr("v2 max", &p.info.src, p.info.src_len, "1.2.3.4", 111);
    assert_int_equal(parse(buf, 16 + PROXY_V2_MAX_LEN - 1, BOTH).rc, 0);
    buf[15] = 0x01; /* 1025 */
    assert_int_equal(parse(buf, sizeof(buf), BOTH).rc, -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_accept_mask),
        cmocka_unit_test(test_v2_max_len),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

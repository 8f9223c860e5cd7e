/*
 * test-address — table-driven tests of lib/address.c: addr_parse_path() over
 * valid and hostile paths (one row per case, every output field checked),
 * addr_format() re-quoting and round trips, addr_local_has_routing() and
 * addr_domain_equal(). Trusts nothing but cmocka.
 */
#include "config.h"
#include "lib/address.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

/* Long inputs, built by the preprocessor so that each stays one table row. */
#define A10 "aaaaaaaaaa"
#define A60 A10 A10 A10 A10 A10 A10
#define LABEL62 A60 "aa"
#define LABEL63 A60 "aaa"
#define LABEL64 A60 "aaaa"
#define LOCAL64 A60 "aaaa"
#define LOCAL65 A60 "aaaaa"
#define DOM252 LABEL63 "." LABEL63 "." LABEL63 "." A60          /* 252 octets */
#define DOM253 DOM252 "a"                                       /* 253 octets */
#define DOM255 LABEL63 "." LABEL63 "." LABEL63 "." LABEL63      /* 255 octets */
#define DOM256 LABEL63 "." LABEL63 "." LABEL63 "." LABEL62 ".a" /* 256 octets */

#define U8 ADDR_ALLOW_UTF8
#define NUL ADDR_ALLOW_NULL
#define BARE ADDR_ALLOW_NOBRACKET
#define PM ADDR_ALLOW_POSTMASTER

struct path_case {
    const char *input;
    size_t len; /* 0: strlen(input) */
    unsigned flags;
    int ok;
    const char *local, *domain; /* expected on success */
    size_t consumed;            /* 0: the whole input */
    const char *error;          /* expected error text; NULL: any */
    bool null, postmaster, had_route, quoted, literal, utf8, routing;
};

/* clang-format off */
static const struct path_case path_cases[] = {
    /* plain paths and what follows them */
    {.input = "<a@b.example>", .ok = 1, .local = "a", .domain = "b.example"},
    {.input = "<First.Last@Sub.Example.COM>", .ok = 1, .local = "First.Last",
     .domain = "Sub.Example.COM"},
    {.input = "<a+tag=x/y{z}~@b-c.example>", .ok = 1, .local = "a+tag=x/y{z}~",
     .domain = "b-c.example"},
    {.input = "<a@b.example> SIZE=100", .ok = 1, .local = "a", .domain = "b.example",
     .consumed = 13},
    {.input = "<a@b.example>junk", .ok = 1, .local = "a", .domain = "b.example", .consumed = 13},
    {.input = "<a@123.example>", .ok = 1, .local = "a", .domain = "123.example"},
    /* null path */
    {.input = "<>", .flags = NUL, .ok = 1, .local = "", .domain = "", .null = true},
    {.input = "<> BODY=8BITMIME", .flags = NUL, .ok = 1, .local = "", .domain = "",
     .null = true, .consumed = 2},
    {.input = "<>", .ok = 0, .error = "Null path not allowed"},
    {.input = "< >", .flags = NUL, .ok = 0},
    /* Postmaster */
    {.input = "<Postmaster>", .flags = PM, .ok = 1, .local = "Postmaster", .domain = "",
     .postmaster = true},
    {.input = "<pOSTMASTER>", .flags = PM, .ok = 1, .local = "Postmaster", .domain = "",
     .postmaster = true},
    {.input = "<Postmaster>", .ok = 0, .error = "Missing domain"},
    {.input = "<\"Postmaster\">", .flags = PM, .ok = 0, .error = "Missing domain"},
    {.input = "<Postmaste>", .flags = PM, .ok = 0, .error = "Missing domain"},
    {.input = "<@r.example:Postmaster>", .flags = PM, .ok = 0},
    {.input = "<Postmaster@b.example>", .ok = 1, .local = "Postmaster", .domain = "b.example"},
    /* source routes: validated, then dropped */
    {.input = "<@a.example,@b.example:c@d.example>", .ok = 1, .local = "c",
     .domain = "d.example", .had_route = true},
    {.input = "<@a.example:c@d.example> X", .ok = 1, .local = "c", .domain = "d.example",
     .had_route = true, .consumed = 24},
    {.input = "<@a.example,c@d.example>", .ok = 0, .error = "Bad source route"},
    {.input = "<@a.example,b.example:c@d.example>", .ok = 0, .error = "Bad source route"},
    {.input = "<@:c@d.example>", .ok = 0},
    {.input = "<@a.example:>", .ok = 0},
    {.input = "<@[192.0.2.1]:c@d.example>", .ok = 0},
    {.input = "<@a..example:c@d.example>", .ok = 0, .error = "Empty label in domain"},
    /* quoted local parts */
    {.input = "<\"a b\"@b.example>", .ok = 1, .local = "a b", .domain = "b.example",
     .quoted = true},
    {.input = "<\"a\\\"b\\\\c\"@b.example>", .ok = 1, .local = "a\"b\\c", .domain = "b.example",
     .quoted = true},
    {.input = "<\"a\\bc\"@b.example>", .ok = 1, .local = "abc", .domain = "b.example",
     .quoted = true},
    {.input = "<\"a@b\"@c.example>", .ok = 1, .local = "a@b", .domain = "c.example",
     .quoted = true, .routing = true},
    {.input = "<\"\"@b.example>", .ok = 1, .local = "", .domain = "b.example", .quoted = true},
    {.input = "<\"a..b.\"@b.example>", .ok = 1, .local = "a..b.", .domain = "b.example",
     .quoted = true},
    {.input = "<\"abc@b.example>", .ok = 0, .error = "Unterminated quoted local part"},
    {.input = "<\"a\x01\"@b.example>", .ok = 0, .error = "Bad character in quoted local part"},
    {.input = "<\"a\\\x01\"@b.example>", .ok = 0, .error = "Bad character in quoted local part"},
    {.input = "<\"a\tb\"@b.example>", .ok = 0},
    {.input = "<\"a\"b@b.example>", .ok = 0, .error = "Missing domain"},
    /* routing characters in the local part */
    {.input = "<a%b@c.example>", .ok = 1, .local = "a%b", .domain = "c.example",
     .routing = true},
    {.input = "<b!a@c.example>", .ok = 1, .local = "b!a", .domain = "c.example",
     .routing = true},
    {.input = "<\"a%b\"@c.example>", .ok = 1, .local = "a%b", .domain = "c.example",
     .quoted = true, .routing = true},
    /* dot-strings */
    {.input = "<a..b@c.example>", .ok = 0, .error = "Bad local part syntax"},
    {.input = "<.a@c.example>", .ok = 0, .error = "Bad local part syntax"},
    {.input = "<a.@c.example>", .ok = 0, .error = "Bad local part syntax"},
    {.input = "<@c.example>", .ok = 0},
    {.input = "<a(b)@c.example>", .ok = 0, .error = "Missing domain"},
    /* address literals */
    {.input = "<a@[192.0.2.1]>", .ok = 1, .local = "a", .domain = "[192.0.2.1]",
     .literal = true},
    {.input = "<a@[IPv6:2001:db8::1]>", .ok = 1, .local = "a", .domain = "[IPv6:2001:db8::1]",
     .literal = true},
    {.input = "<a@[ipv6:::1]>", .ok = 1, .local = "a", .domain = "[ipv6:::1]", .literal = true},
    {.input = "<a@[IPv6:::ffff:192.0.2.1]>", .ok = 1, .local = "a",
     .domain = "[IPv6:::ffff:192.0.2.1]", .literal = true},
    {.input = "<a@[256.0.0.1]>", .ok = 0, .error = "Bad address literal"},
    {.input = "<a@[192.0.2]>", .ok = 0, .error = "Bad address literal"},
    {.input = "<a@[192.0.2.01]>", .ok = 0, .error = "Bad address literal"},
    {.input = "<a@[2001:db8::1]>", .ok = 0, .error = "Bad address literal"},
    {.input = "<a@[IPv6:2001:db8::g]>", .ok = 0, .error = "Bad address literal"},
    {.input = "<a@[IPv6:1.2.3.4]>", .ok = 0, .error = "Bad address literal"},
    {.input = "<a@[x-tag:stuff]>", .ok = 0, .error = "Bad address literal"},
    {.input = "<a@[]>", .ok = 0, .error = "Bad address literal"},
    {.input = "<a@[192.0.2.1>", .ok = 0, .error = "Bad address literal"},
    {.input = "<a@[192.0.2.1\0]>", .len = 17, .ok = 0, .error = "Bad address literal"},
    {.input = "<a@[IPv6:" A60 "]>", .ok = 0, .error = "Bad address literal"},
    /* domains */
    {.input = "<a@b.example.>", .ok = 0, .error = "Trailing dot in domain"},
    {.input = "a@b.example. SIZE=1", .flags = BARE, .ok = 0, .error = "Trailing dot in domain"},
    {.input = "<a@b..example>", .ok = 0, .error = "Empty label in domain"},
    {.input = "<a@b.%example>", .ok = 0, .error = "Bad domain syntax"},
    {.input = "<a@.b.example>", .ok = 0, .error = "Empty label in domain"},
    {.input = "<a@>", .ok = 0, .error = "Missing domain"},
    {.input = "<a>", .ok = 0, .error = "Missing domain"},
    {.input = "<a@-b.example>", .ok = 0, .error = "Bad domain syntax"},
    {.input = "<a@b-.example>", .ok = 0, .error = "Bad domain syntax"},
    {.input = "<a@b_c.example>", .ok = 0, .error = "Bad address syntax"},
    {.input = "<a@b.example x>", .ok = 0, .error = "Bad address syntax"},
    {.input = "<a@b.example", .ok = 0, .error = "Missing '>'"},
    {.input = "<a@b.example>", .len = 12, .ok = 0, .error = "Missing '>'"},
    {.input = "<a@b.example>", .len = 5, .ok = 0, .error = "Trailing dot in domain"},
    {.input = "<", .ok = 0},
    {.input = "", .ok = 0},
    /* lengths (RFC 5321 §4.5.3.1) */
    {.input = "<a@" LABEL63 ".example>", .ok = 1, .local = "a", .domain = LABEL63 ".example"},
    {.input = "<a@" LABEL64 ".example>", .ok = 0, .error = "Domain label too long"},
    {.input = "<a@b." LABEL64 ">", .ok = 0, .error = "Domain label too long"},
    {.input = "<a@" A60 "a\xc3\xbc.example>", .flags = U8, .ok = 1, .utf8 = true, .local = "a",
     .domain = A60 "a\xc3\xbc.example"},
    {.input = "<a@" LABEL62 "\xc3\xbc.example>", .flags = U8, .ok = 0,
     .error = "Domain label too long"},
    {.input = "<a@" LABEL62 "\xf0\x9f\x98\x80>", .flags = U8, .ok = 0,
     .error = "Domain label too long"},
    {.input = "<" A60 "aa\xf0\x9f\x98\x80@b.example>", .flags = U8, .ok = 0,
     .error = "Local part too long"},
    {.input = "<" A60 "\xf0\x9f\x98\x80@b.example>", .flags = U8, .ok = 1, .utf8 = true,
     .local = A60 "\xf0\x9f\x98\x80", .domain = "b.example"},
    {.input = "<" LOCAL64 "@b.example>", .ok = 1, .local = LOCAL64, .domain = "b.example"},
    {.input = "<" LOCAL65 "@b.example>", .ok = 0, .error = "Local part too long"},
    {.input = "<\"" A60 "aa\"@b.example>", .ok = 1, .local = A60 "aa", .domain = "b.example",
     .quoted = true},
    {.input = "<\"" A60 "aaa\"@b.example>", .ok = 0, .error = "Local part too long"},
    {.input = "<\"" A60 A10 "\"@b.example>", .ok = 0, .error = "Local part too long"},
    {.input = "<a@" DOM252 ">", .ok = 1, .local = "a", .domain = DOM252},
    {.input = "<ab@" DOM252 ">", .ok = 0, .error = "Path too long"},
    {.input = "<a@" DOM253 ">", .ok = 0, .error = "Path too long"},
    {.input = "<a@" DOM255 ">", .ok = 0, .error = "Path too long"},
    {.input = "<a@" DOM256 ">", .ok = 0, .error = "Domain too long"},
    {.input = "<@" DOM252 ",@" DOM252 ":a@b.example>", .ok = 0, .error = "Path too long"},
    {.input = "<@" A60 ":" LOCAL64 "@" DOM252 ">", .ok = 0, .error = "Path too long"},
    {.input = "a@" DOM252, .flags = BARE, .ok = 1, .local = "a", .domain = DOM252},
    {.input = "ab@" DOM252, .flags = BARE, .ok = 0, .error = "Path too long"},
    /* UTF-8 (RFC 6531) */
    {.input = "<\xce\xb4\xce\xbf\xce\xba\xce\xb9\xce\xbc\xce\xae@\xcf\x80\xce\xb1\xcf\x81"
              "\xce\xac\xce\xb4\xce\xb5\xce\xb9\xce\xb3\xce\xbc\xce\xb1.example>",
     .flags = U8, .ok = 1, .utf8 = true,
     .local = "\xce\xb4\xce\xbf\xce\xba\xce\xb9\xce\xbc\xce\xae",
     .domain = "\xcf\x80\xce\xb1\xcf\x81\xce\xac\xce\xb4\xce\xb5\xce\xb9\xce\xb3\xce\xbc\xce\xb1"
               ".example"},
    {.input = "<\xe7\x94\xa8\xe6\x88\xb7@b.example>", .flags = U8, .ok = 1, .utf8 = true,
     .local = "\xe7\x94\xa8\xe6\x88\xb7", .domain = "b.example"},
    {.input = "<\"\xc3\xbc x\"@b.example>", .flags = U8, .ok = 1, .utf8 = true, .quoted = true,
     .local = "\xc3\xbc x", .domain = "b.example"},
    {.input = "<a@\xf0\x9f\x98\x80.example>", .flags = U8, .ok = 1, .utf8 = true, .local = "a",
     .domain = "\xf0\x9f\x98\x80.example"},
    {.input = "<\xc3\xbc@b.example>", .ok = 0, .error = "Non-ASCII address without SMTPUTF8"},
    {.input = "<a@\xc3\xbc.example>", .ok = 0, .error = "Non-ASCII address without SMTPUTF8"},
    {.input = "<\"\xc3\xbc\"@b.example>", .ok = 0, .error = "Non-ASCII address without SMTPUTF8"},
    {.input = "<\xc0\xaf@b.example>", .flags = U8, .ok = 0, .error = "Invalid UTF-8 in address"},
    {.input = "<\xe0\x80\xaf@b.example>", .flags = U8, .ok = 0,
     .error = "Invalid UTF-8 in address"},
    {.input = "<\xf0\x80\x80\xaf@b.example>", .flags = U8, .ok = 0,
     .error = "Invalid UTF-8 in address"},
    {.input = "<\xed\xa0\x80@b.example>", .flags = U8, .ok = 0,
     .error = "Invalid UTF-8 in address"},
    {.input = "<\xf4\x90\x80\x80@b.example>", .flags = U8, .ok = 0,
     .error = "Invalid UTF-8 in address"},
    {.input = "<a\xe2\x82\x41@b.example>", .flags = U8, .ok = 0,
     .error = "Invalid UTF-8 in address"},
    {.input = "<a\xc3@b.example>", .flags = U8, .ok = 0, .error = "Invalid UTF-8 in address"},
    {.input = "<a\xe2\x82", .flags = U8, .ok = 0, .error = "Invalid UTF-8 in address"},
    {.input = "<a\xe2\x82\xac@b.example>", .len = 4, .flags = U8, .ok = 0,
     .error = "Invalid UTF-8 in address"},
    {.input = "<\x80@b.example>", .flags = U8, .ok = 0, .error = "Invalid UTF-8 in address"},
    {.input = "<a@b\xff.example>", .flags = U8, .ok = 0, .error = "Invalid UTF-8 in address"},
    {.input = "<\"\\\xc3\xbc\"@b.example>", .flags = U8, .ok = 0},
    /* NUL bytes and control characters */
    {.input = "<a\0b@c.example>", .len = 15, .ok = 0},
    {.input = "<a@c\0.example>", .len = 14, .ok = 0},
    {.input = "<\0>", .len = 3, .flags = NUL, .ok = 0},
    {.input = "<a@b.example>\0", .len = 14, .ok = 1, .local = "a", .domain = "b.example",
     .consumed = 13},
    {.input = "<a\x01@b.example>", .ok = 0},
    {.input = "<a@b.example\r\n>", .ok = 0},
    {.input = "<a b@c.example>", .ok = 0},
    {.input = "<\x7f@b.example>", .ok = 0},
    {.input = "<a@b.example\x7f>", .ok = 0},
    /* without brackets */
    {.input = "a@b.example", .flags = BARE, .ok = 1, .local = "a", .domain = "b.example"},
    {.input = "a@b.example SIZE=10", .flags = BARE, .ok = 1, .local = "a", .domain = "b.example",
     .consumed = 11},
    {.input = "\"a b\"@b.example BODY=7BIT", .flags = BARE, .ok = 1, .local = "a b",
     .domain = "b.example", .quoted = true, .consumed = 15},
    {.input = "<a@b.example>", .flags = BARE, .ok = 1, .local = "a", .domain = "b.example"},
    {.input = "Postmaster", .flags = BARE | PM, .ok = 1, .local = "Postmaster", .domain = "",
     .postmaster = true},
    {.input = "a@b.example", .ok = 0, .error = "Bad address syntax: missing '<'"},
    {.input = " <a@b.example>", .ok = 0, .error = "Bad address syntax: missing '<'"},
    {.input = "a@b.example>", .flags = BARE, .ok = 0, .error = "Bad address syntax"},
    {.input = "a@b.example\t", .flags = BARE, .ok = 0, .error = "Bad address syntax"},
    {.input = "", .flags = BARE, .ok = 0, .error = "Bad local part syntax"},
    {.input = "@r.example:a@b.example", .flags = BARE, .ok = 0},
};
/* clang-format on */

/* Fails the test naming the row, so a table failure points at its case. */
#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            fail_msg("row %zu \"%s\": %s", i, tc->input, #cond);                                   \
    } while (0)

static void test_parse_path(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(path_cases) / sizeof(path_cases[0]); i++) {
        const struct path_case *tc = &path_cases[i];
        size_t len = tc->len != 0 ? tc->len : strlen(tc->input), consumed = 99;
        const char *error = NULL;
        struct addr_path a;
        int ret = addr_parse_path(tc->input, len, tc->flags, &a, &consumed, &error);

        if (!tc->ok) {
            CHECK(ret == -1 && consumed == 0 && error != NULL);
            CHECK(tc->error == NULL || (error != NULL && strcmp(error, tc->error) == 0));
            continue;
        }
        CHECK(ret == 0);
        CHECK(consumed == (tc->consumed != 0 ? tc->consumed : len));
        CHECK(strcmp(a.local, tc->local) == 0 && strcmp(a.domain, tc->domain) == 0);
        CHECK(a.null == tc->null && a.postmaster == tc->postmaster);
        CHECK(a.had_route == tc->had_route && a.quoted == tc->quoted);
        CHECK(a.literal == tc->literal && a.utf8 == tc->utf8);
        CHECK(addr_local_has_routing(&a) == tc->routing);
    }
}

struct format_case {
    const char *input;
    unsigned flags;
    const char *formatted;
};

/* clang-format off */
static const struct format_case format_cases[] = {
    {.input = "<a@b.example>", .formatted = "a@b.example"},
    {.input = "<>", .flags = NUL, .formatted = ""},
    {.input = "<postmaster>", .flags = PM, .formatted = "Postmaster"},
    {.input = "<@r.example:a@b.example>", .formatted = "a@b.example"},
    {.input = "<\"abc\"@b.example>", .formatted = "abc@b.example"},
    {.input = "<\"a\\bc\"@b.example>", .formatted = "abc@b.example"},
    {.input = "<\"a.b\"@b.example>", .formatted = "a.b@b.example"},
    {.input = "<\"a b\"@b.example>", .formatted = "\"a b\"@b.example"},
    {.input = "<\"a\\\"b\\\\c\"@b.example>", .formatted = "\"a\\\"b\\\\c\"@b.example"},
    {.input = "<\"a@b\"@c.example>", .formatted = "\"a@b\"@c.example"},
    {.input = "<\"a..b\"@c.example>", .formatted = "\"a..b\"@c.example"},
    {.input = "<\".a\"@c.example>", .formatted = "\".a\"@c.example"},
    {.input = "<\"a.\"@c.example>", .formatted = "\"a.\"@c.example"},
    {.input = "<\"\"@c.example>", .formatted = "\"\"@c.example"},
    {.input = "<\"(x)\"@c.example>", .formatted = "\"(x)\"@c.example"},
    {.input = "<a@[IPv6:::1]>", .formatted = "a@[IPv6:::1]"},
    {.input = "<\xc3\xbc@\xc3\xbc.example>", .flags = U8,
     .formatted = "\xc3\xbc@\xc3\xbc.example"},
    {.input = "<\"\xc3\xbc\"@b.example>", .flags = U8, .formatted = "\xc3\xbc@b.example"},
    {.input = "<\"" A60 "\\\"\"@b.example>", .formatted = "\"" A60 "\\\"\"@b.example"},
};
/* clang-format on */

/* addr_format() re-quotes only when needed, and what it writes parses back
 * to the same mailbox. */
static void test_format_round_trip(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(format_cases) / sizeof(format_cases[0]); i++) {
        const struct format_case *tc = &format_cases[i];
        struct addr_path a, b;
        char buf[ADDR_PATH_MAX + 1], path[ADDR_PATH_MAX + 3];
        size_t consumed, n;
        const char *error;

        CHECK(addr_parse_path(tc->input, strlen(tc->input), tc->flags, &a, &consumed, &error) == 0);
        n = addr_format(&a, buf, sizeof(buf));
        CHECK(n == strlen(buf) && strcmp(buf, tc->formatted) == 0);
        snprintf(path, sizeof(path), "<%s>", buf);
        CHECK(addr_parse_path(path, n + 2, tc->flags, &b, &consumed, &error) == 0);
        CHECK(consumed == n + 2 && b.null == a.null && b.postmaster == a.postmaster);
        CHECK(strcmp(a.local, b.local) == 0 && strcmp(a.domain, b.domain) == 0);
    }
}

/* Like snprintf: the needed length comes back, the output is cut and still
 * NUL-terminated, and size 0 writes nothing. */
static void test_format_truncation(void **state)
{
    struct addr_path a;
    char buf[8];
    size_t consumed;
    const char *error;

    (void)state;
    assert_int_equal(addr_parse_path("<\"a b\"@b.example>", 17, 0, &a, &consumed, &error), 0);
    memset(buf, 'X', sizeof(buf));
    assert_int_equal(addr_format(&a, buf, sizeof(buf)), 15);
    assert_string_equal(buf, "\"a b\"@b");
    memset(buf, 'X', sizeof(buf));
    assert_int_equal(addr_format(&a, buf, 1), 15);
    assert_int_equal(buf[0], '\0');
    assert_int_equal(buf[1], 'X');
    assert_int_equal(addr_format(&a, NULL, 0), 15);
}

struct domain_case {
    const char *a, *b;
    bool equal;
};

/* clang-format off */
static const struct domain_case domain_cases[] = {
    {.a = "Example.COM", .b = "example.com", .equal = true},
    {.a = "example.com", .b = "example.com", .equal = true},
    {.a = "", .b = "", .equal = true},
    {.a = "[IPv6:::1]", .b = "[ipv6:::1]", .equal = true},
    {.a = "example.com", .b = "example.com.", .equal = false},
    {.a = "example.co", .b = "example.com", .equal = false},
    {.a = "a", .b = "", .equal = false},
    {.a = "\xc3\x9c.example", .b = "\xc3\xbc.example", .equal = false},
    {.a = "a-b", .b = "a_b", .equal = false},
};
/* clang-format on */

static void test_domain_equal(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(domain_cases) / sizeof(domain_cases[0]); i++) {
        const struct domain_case *dc = &domain_cases[i];
        if (addr_domain_equal(dc->a, dc->b) != dc->equal ||
            addr_domain_equal(dc->b, dc->a) != dc->equal)
            fail_msg("row %zu: \"%s\" vs \"%s\"", i, dc->a, dc->b);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_path),
        cmocka_unit_test(test_format_round_trip),
        cmocka_unit_test(test_format_truncation),
        cmocka_unit_test(test_domain_equal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

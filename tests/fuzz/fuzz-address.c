/*
 * fuzz-address — libFuzzer target for the envelope parsers that read the
 * network: addr_parse_path() under several flag sets, addr_format() on every
 * success (whose output must parse back to the same mailbox), and
 * smtp_params_parse_mail()/_rcpt() and xtext over the same bytes and over
 * what follows a parsed path. Invariants that fail abort(), so the fuzzer
 * and the replay run in make check both report them. Trusts nothing in the
 * input; the bytes are copied into a buffer of exactly their size so that
 * ASan sees any read past the end.
 */
#include "config.h"
#include "lib/address.h"
#include "lib/smtp-params.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const unsigned flag_sets[] = {
    0,
    ADDR_ALLOW_NULL,
    ADDR_ALLOW_UTF8 | ADDR_ALLOW_NULL,
    ADDR_ALLOW_NOBRACKET | ADDR_ALLOW_POSTMASTER,
    ADDR_ALLOW_UTF8 | ADDR_ALLOW_NULL | ADDR_ALLOW_NOBRACKET | ADDR_ALLOW_POSTMASTER,
};

/* clang-format off */
static const struct smtp_params_offer offers[] = {
    {.size = true, .eightbitmime = true, .smtputf8 = true, .dsn = true, .auth = true,
     .chunking = true, .size_limit = 10000000},
    {.size = true, .eightbitmime = true, .dsn = true, .size_limit = 0},
    {.size_limit = 0},
};
/* clang-format on */

static void check(bool ok)
{
    if (!ok)
        abort();
}

/* The formatted mailbox, put back in brackets, parses to the same thing. */
static void check_format(const struct addr_path *a, unsigned flags)
{
    char path[ADDR_PATH_MAX + 8], small[6];
    struct addr_path b;
    size_t n, consumed;
    const char *error = NULL;

    n = addr_format(a, path + 1, sizeof(path) - 2);
    check(n + 2 <= ADDR_PATH_MAX && n == strlen(path + 1));
    check(addr_format(a, small, sizeof(small)) == n && strlen(small) == (n < 5 ? n : 5));
    path[0] = '<';
    path[n + 1] = '>';
    check(addr_parse_path(path, n + 2, flags, &b, &consumed, &error) == 0);
    check(consumed == n + 2 && b.null == a->null && b.postmaster == a->postmaster);
    check(b.literal == a->literal && b.utf8 == a->utf8 && !b.had_route);
    check(strcmp(a->local, b.local) == 0 && strcmp(a->domain, b.domain) == 0);
    check(addr_local_has_routing(a) == addr_local_has_routing(&b));
    check(addr_domain_equal(a->domain, b.domain));
}

/* A domain name (not a literal) has labels of 1 to 63 octets and no
 * trailing dot. */
static bool labels_ok(const char *domain)
{
    size_t label = 0;

    for (const char *p = domain; *p != '\0'; p++) {
        if (*p != '.')
            label++;
        else if (label == 0)
            return false;
        else
            label = 0;
        if (label > 63)
            return false;
    }
    return domain[0] == '\0' || label > 0;
}

/* Parses a path; returns the bytes it used, 0 when it failed. */
static size_t check_path(const char *s, size_t size, unsigned flags)
{
    struct addr_path a;
    size_t consumed = 12345;
    const char *error = NULL;

    if (addr_parse_path(s, size, flags, &a, &consumed, &error) < 0) {
        check(error != NULL && consumed == 0);
        return 0;
    }
    check(consumed > 0 && consumed <= size && consumed <= ADDR_PATH_MAX);
    check(strlen(a.local) <= ADDR_LOCAL_MAX && strlen(a.domain) <= ADDR_DOMAIN_MAX);
    check(!a.utf8 || (flags & ADDR_ALLOW_UTF8) != 0);
    check(!a.null || ((flags & ADDR_ALLOW_NULL) != 0 && consumed == 2));
    check(!a.postmaster || (flags & ADDR_ALLOW_POSTMASTER) != 0);
    check(a.null || a.postmaster || a.domain[0] != '\0');
    check(a.literal ? a.domain[0] == '[' : labels_ok(a.domain));
    check_format(&a, flags);
    return consumed;
}

static bool status_ok(const struct smtp_status *st)
{
    return (st->code == 501 && strcmp(st->enhanced, "5.5.4") == 0) ||
           (st->code == 555 && strcmp(st->enhanced, "5.5.4") == 0) ||
           (st->code == 552 && strcmp(st->enhanced, "5.3.4") == 0);
}

static void check_params(const char *s, size_t size)
{
    for (size_t i = 0; i < sizeof(offers) / sizeof(offers[0]); i++) {
        const struct smtp_params_offer *o = &offers[i];
        struct smtp_mail_params mp;
        struct smtp_rcpt_params rp;
        struct smtp_status st = {0};

        if (smtp_params_parse_mail(s, size, o, &mp, &st) < 0) {
            check(status_ok(&st));
        } else {
            check(st.code == 0 && strlen(mp.envid) <= SMTP_ENVID_MAX);
            check(!mp.has_size || o->size_limit == 0 || mp.size <= o->size_limit);
            check(mp.body != SMTP_BODY_BINARYMIME || o->chunking);
            check(mp.has_auth == (mp.auth[0] != '\0'));
        }
        memset(&st, 0, sizeof(st));
        if (smtp_params_parse_rcpt(s, size, o, &rp, &st) < 0) {
            check(status_ok(&st));
        } else {
            check(st.code == 0 && strlen(rp.orcpt) <= SMTP_ORCPT_MAX);
            check((rp.notify & SMTP_NOTIFY_NEVER) == 0 || rp.notify == SMTP_NOTIFY_NEVER);
            check((rp.orcpt_type[0] == '\0') == (rp.orcpt[0] == '\0'));
        }
    }
}

/* Decoding then re-encoding then decoding gives the same bytes. */
static void check_xtext(const char *s, size_t size)
{
    char dec[128], enc[3 * sizeof(dec)], dec2[sizeof(dec)];
    int n = smtp_xtext_decode(s, size, dec, sizeof(dec));
    size_t elen;

    if (n < 0)
        return;
    check((size_t)n <= size && (size_t)n < sizeof(dec));
    elen = smtp_xtext_encode(dec, (size_t)n, enc, sizeof(enc));
    check(elen < sizeof(enc) && elen == strlen(enc));
    check(smtp_xtext_decode(enc, elen, dec2, sizeof(dec2)) == n);
    check(memcmp(dec, dec2, (size_t)n) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size > 0 ? size : 1);

    if (s == NULL)
        return 0;
    if (size > 0)
        memcpy(s, data, size);
    for (size_t i = 0; i < sizeof(flag_sets) / sizeof(flag_sets[0]); i++) {
        size_t used = check_path(s, size, flag_sets[i]);

        if (used > 0)
            check_params(s + used, size - used);
    }
    check_params(s, size);
    check_xtext(s, size);
    free(s);
    return 0;
}

/*
 * fuzz-dkim-message — libFuzzer target for what the dkim and dmarc filters
 * read from a message before any library sees it: the header section split
 * into fields (dkim_message_parse, with a bound of the input's size and a
 * small one), each field's unfolded value, the authserv-id of each value
 * (authres_authserv_id), the one From: mailbox (dkim_message_from_domain,
 * GMime), and the Authentication-Results builder fed the same bytes as a
 * comment and a property value, whose output must pass
 * filter_call_add_header's rules. Invariants that fail abort(), so the
 * fuzzer and the replay run in make check both report them. The input is
 * copied into a buffer of exactly its size so that ASan sees any read past
 * its end.
 */
#include "config.h"
#include "filters/dkim-authres.h"
#include "filters/dkim-message.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok)
{
    if (!ok)
        abort();
}

/* filter_call_add_header's rule: printable ASCII, CR LF only as a fold. */
static bool value_ok(const char *v)
{
    if (strlen(v) > FILTER_HEADER_VALUE_MAX)
        return false;
    for (const char *p = v; *p != '\0'; p++) {
        if (*p == '\r' && p[1] == '\n' && (p[2] == ' ' || p[2] == '\t')) {
            p++;
            continue;
        }
        if ((*p < 32 && *p != '\t') || *p > 126)
            return false;
    }
    return true;
}

static void check_field(const struct dkim_message *m, const struct dkim_field *f)
{
    char value[512], id[DKIM_DOMAIN_MAX + 2];
    size_t n;

    check(f->text >= m->buf && f->text + f->len <= m->buf + m->buf_len);
    check(f->name_len <= f->len);
    for (size_t i = 0; i < f->name_len; i++)
        check(f->text[i] > 32 && f->text[i] < 127 && f->text[i] != ':');
    n = dkim_field_value(f, value, sizeof(value));
    check(n == strlen(value) && n < sizeof(value) && n <= f->len);
    check(n == 0 || (value[0] != ' ' && value[n - 1] != ' ' && value[n - 1] != '\t'));
    if (authres_authserv_id(value, id, sizeof(id)) == 0)
        check(id[0] != '\0' && strlen(id) < sizeof(id));
}

static void check_message(const char *s, size_t size, size_t max)
{
    struct dkim_message m;
    const char *why = NULL;
    char domain[DKIM_DOMAIN_MAX + 1];

    if (dkim_message_parse(s, size, max, &m, &why) < 0) {
        check(why != NULL);
        return;
    }
    check(m.buf_len <= max && m.buf_len <= size && m.body_off <= size);
    check(m.body_off >= m.buf_len);
    for (size_t i = 0; i < m.count; i++)
        check_field(&m, &m.fields[i]);
    if (dkim_message_from_domain(&m, domain, &why) == 0)
        check(dkim_domain_ok(domain));
    else
        check(why != NULL);
    dkim_message_free(&m);
}

/* The builder sanitizes whatever it is given. */
static void check_builder(const char *s)
{
    struct authres a;
    struct authres_prop props[] = {{"header.from", s}, {"header.d", "example.org"}};
    struct dkim_sig_result r = {.outcome = DKIM_OUTCOME_FAIL};

    snprintf(r.domain, sizeof(r.domain), "%s", s);
    snprintf(r.selector, sizeof(r.selector), "%s", s);
    snprintf(r.why, sizeof(r.why), "%s", s);
    authres_init(&a, "mx.postern.test");
    authres_add(&a, "dmarc", "fail", s, props, 2);
    authres_add_dkim(&a, &r);
    check(value_ok(authres_value(&a)));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);

    if (s == NULL)
        return 0;
    dkim_message_gmime_init();
    memcpy(s, data, size);
    check_message(s, size, size);
    check_message(s, size, 64);
    s[size] = '\0';
    check_builder(s);
    free(s);
    return 0;
}

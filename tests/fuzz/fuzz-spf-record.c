/*
 * fuzz-spf-record — libFuzzer target for what the spf filter reads from
 * DNS: SPF records (libspf2's parser and interpreter, behind our record
 * pick in get_spf: "v=spf1", several, none), exp= explanations (our
 * space escaping, libspf2's macro compiler and expander), the answers our
 * DNS layer turns into SPF_dns_rr_t, and the texts made of them (the
 * cleaned explanation and problem, the Received-SPF field).
 *
 * The input is a small zone: its lines are TXT records, line k the one of
 * "k.fuzz.test" (line 0: "fuzz.test", the sender's domain). A and AAAA of
 * any name under fuzz.test answer 192.0.2.1 and 2001:db8::1, MX answers
 * mx.fuzz.test, PTR answers ptr.fuzz.test; names that start with "t" get
 * a temporary failure, other names NXDOMAIN. Each input runs the MAIL FROM
 * check from 192.0.2.1 and the HELO check from 2001:db8::1 (spf-eval.h),
 * with no threads: the resolver answers at once.
 *
 * Asserts memory safety and the documented bounds: an outcome from the
 * closed set, at most SPF_MAX_QUERIES questions, explanation and problem
 * printable ASCII within SPF_TEXT_MAX, an explanation only for a fail, and
 * a Received-SPF value that filter_call_add_header accepts (printable, CR
 * LF only before a tab). Invariants that fail abort(), so the fuzzer and
 * the replay run in make check both report them.
 */
#include "config.h"
#include "filters/spf-eval.h"

#include <arpa/inet.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <netinet/in.h>

#define LINES_MAX 16
#define LINE_MAX_LEN 1024

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct zone {
    char lines[LINES_MAX][LINE_MAX_LEN + 1];
    size_t count;
    unsigned asked;
};

static void check(bool ok)
{
    if (!ok)
        abort();
}

static void split(struct zone *z, const uint8_t *data, size_t size)
{
    size_t start = 0;

    z->count = 0;
    for (size_t i = 0; i <= size && z->count < LINES_MAX; i++) {
        if (i < size && data[i] != '\n')
            continue;
        size_t n = i - start < LINE_MAX_LEN ? i - start : LINE_MAX_LEN;
        memcpy(z->lines[z->count], data + start, n);
        z->lines[z->count][n] = '\0'; /* a NUL inside ends it, as in lib/dns */
        z->count++;
        start = i + 1;
    }
}

static bool under_zone(const char *name)
{
    size_t n = strlen(name);

    return (n >= 9 && strcasecmp(name + n - 9, "fuzz.test") == 0 &&
            (n == 9 || name[n - 10] == '.'));
}

static int one_item(struct dns_bridge_answer *out, const char *text)
{
    out->items = calloc(1, sizeof(*out->items));
    if (out->items == NULL || (out->items[0] = strdup(text)) == NULL)
        return -1;
    out->n = 1;
    out->st = DNS_OK;
    return 0;
}

static int one_addr(struct dns_bridge_answer *out, int family)
{
    out->addrs = calloc(1, sizeof(*out->addrs));
    if (out->addrs == NULL)
        return -1;
    if (family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&out->addrs[0].sa;
        sin->sin_family = AF_INET;
        inet_pton(AF_INET, "192.0.2.1", &sin->sin_addr);
        out->addrs[0].len = sizeof(*sin);
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->addrs[0].sa;
        sin6->sin6_family = AF_INET6;
        inet_pton(AF_INET6, "2001:db8::1", &sin6->sin6_addr);
        out->addrs[0].len = sizeof(*sin6);
    }
    out->n = 1;
    out->st = DNS_OK;
    return 0;
}

/* The line for name: "fuzz.test" is 0, "k.fuzz.test" is k. */
static int line_of(const struct zone *z, const char *name)
{
    char *end;
    long k;

    if (strcasecmp(name, "fuzz.test") == 0)
        return z->count > 0 ? 0 : -1;
    k = strtol(name, &end, 10);
    if (end == name || strcasecmp(end, ".fuzz.test") != 0 || k < 0 || (size_t)k >= z->count)
        return -1;
    return (int)k;
}

static int ask(void *ctx, const struct dns_bridge_question *q, struct dns_bridge_answer *out)
{
    struct zone *z = ctx;
    int line;

    memset(out, 0, sizeof(*out));
    z->asked++;
    if (q->kind == DNS_BRIDGE_PTR)
        return one_item(out, "ptr.fuzz.test");
    check(q->name != NULL && strlen(q->name) <= DNS_NAME_MAX);
    out->st = DNS_NXDOMAIN;
    if (q->name[0] == 't') {
        out->st = DNS_TEMPFAIL;
        return 0;
    }
    if (!under_zone(q->name))
        return 0;
    switch (q->kind) {
    case DNS_BRIDGE_TXT:
        line = line_of(z, q->name);
        return line < 0 ? 0 : one_item(out, z->lines[line]);
    case DNS_BRIDGE_MX:
        return one_item(out, "mx.fuzz.test");
    case DNS_BRIDGE_A:
        return one_addr(out, AF_INET);
    case DNS_BRIDGE_AAAA:
        return one_addr(out, AF_INET6);
    default:
        return 0;
    }
}

static bool printable(const char *s, size_t max)
{
    size_t n = strnlen(s, max);

    if (n >= max)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
            return false;
    return true;
}

/* filter_call_add_header's rule for values (filter.c). */
static bool field_ok(const char *v)
{
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

static void run_check(struct zone *z, const struct spf_eval_in *in, const char *client_ip)
{
    struct spf_resolver res = {.ask = ask, .ctx = z};
    struct spf_eval_out out;
    char value[2048];

    z->asked = 0;
    spf_eval(in, &res, &out);
    check((unsigned)out.outcome < SPF_OUTCOMES);
    check(out.queries <= SPF_MAX_QUERIES && z->asked == out.queries);
    check(printable(out.explanation, sizeof(out.explanation)));
    check(printable(out.problem, sizeof(out.problem)));
    check(out.outcome == SPF_OUT_FAIL || out.explanation[0] == '\0');
    struct spf_report r = {.outcome = out.outcome,
                           .scope = in->scope,
                           .receiver = in->receiver,
                           .client_ip = client_ip,
                           .identity = out.identity,
                           .helo = in->helo,
                           .problem = out.problem};
    if (spf_received_value(&r, value, sizeof(value)) == 0)
        check(field_ok(value) && strlen(value) < sizeof(value));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct zone z;
    char text[LINE_MAX_LEN + 1], clean[128];
    struct sockaddr_storage ss;
    struct spf_eval_in in = {.helo = "fuzz.test",
                             .receiver = "mx.fuzz.test",
                             .explanation = "%{c} is not allowed to send mail from %{o}"};

    split(&z, data, size);
    /* the texts of the first line as the client might send them */
    snprintf(text, sizeof(text), "%s", z.count > 0 ? z.lines[0] : "");
    spf_clean_text(text, clean, sizeof(clean));
    check(printable(clean, sizeof(clean)));
    (void)spf_domain_ok(text);
    (void)spf_reverse_name_parse(text, &ss);

    in.scope = SPF_SCOPE_MAILFROM;
    in.sender = "user@fuzz.test";
    check(netaddr_parse("192.0.2.1", &in.client) == 0);
    run_check(&z, &in, "192.0.2.1");
    in.scope = SPF_SCOPE_HELO;
    in.sender = "";
    check(netaddr_parse("2001:db8::1", &in.client) == 0);
    run_check(&z, &in, "2001:db8::1");
    return 0;
}

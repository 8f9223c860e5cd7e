/*
 * dnsbl — see dnsbl.h. One check per CONNECT call: a query per list, all at
 * once; the call finishes when the last answer (or failure) is in, and then
 * adds the listings in the lists' order (so symbols and the zone named in a
 * reject do not depend on which answer came first). The RCPT call is
 * synchronous: it reads the symbols the chain kept from CONNECT. The
 * module (config table, checks) is in dnsbl-config.c.
 */
#include "config.h"
#include "filters/dnsbl.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/log.h"

#define DNSBL_ALLOWED_SYMBOL "DNSBL_ALLOWED"

struct dnsbl_list {
    char *zone;
    char symbol[FILTER_SYMBOL_NAME_MAX];
    double score;
    bool allow, accept, ipv6;
    unsigned mask;
    uint32_t *codes; /* host byte order */
    size_t code_count;
    bool warned_public; /* logged once that it answers outside 127/8 */
};

struct dnsbl {
    struct dns *dns; /* the worker's, not owned */
    struct dnsbl_list *lists;
    size_t list_count;
    double reject_score;
    enum dnsbl_reject_stage reject_stage;
    char **exempt;
    size_t exempt_count;
    struct netaddr_list allow_networks;
    bool skip_authenticated, skip_trusted;
};

struct dnsbl_check;

struct dnsbl_lookup {
    struct dnsbl_check *check;
    size_t index;        /* into dnsbl.lists */
    struct dns_query *q; /* NULL once answered */
    bool listed;
    char answer[INET_ADDRSTRLEN];
};

struct dnsbl_check {
    struct dnsbl *d;
    struct filter_call *call;
    size_t outstanding;
    char addr[64];
    struct dnsbl_lookup lookups[];
};

/* ---- names and matching ---- */

int dnsbl_query_name(const struct netaddr *addr, const char *zone, char *out, size_t size)
{
    size_t o = 0;
    int n;

    if (netaddr_is_v4(addr)) {
        n = snprintf(out, size, "%u.%u.%u.%u.%s", addr->a[15], addr->a[14], addr->a[13],
                     addr->a[12], zone);
        return n < 0 || (size_t)n >= size ? -1 : 0;
    }
    for (int i = 15; i >= 0; i--) {
        n = snprintf(out + o, size - o, "%x.%x.", addr->a[i] & 0xf, addr->a[i] >> 4);
        if (n < 0 || (size_t)n >= size - o)
            return -1;
        o += (size_t)n;
    }
    n = snprintf(out + o, size - o, "%s", zone);
    return n < 0 || (size_t)n >= size - o ? -1 : 0;
}

void dnsbl_symbol_name(const char *prefix, const char *zone, char *out, size_t size)
{
    int n = snprintf(out, size, "%s", prefix);
    size_t o = n < 0 ? 0 : (size_t)n;

    for (; *zone != '\0' && o + 1 < size; zone++) {
        unsigned char c = (unsigned char)*zone;
        out[o++] = isalnum(c) ? (char)toupper(c) : '_';
    }
    out[o < size ? o : size - 1] = '\0';
}

int dnsbl_answer_counts(uint32_t answer, const uint32_t *codes, size_t code_count,
                        unsigned mask)
{
    if (answer >> 24 != 127)
        return -1;
    if (code_count == 0 && mask == 0)
        return 1;
    for (size_t i = 0; i < code_count; i++) {
        if (codes[i] == answer)
            return 1;
    }
    return (answer & 0xffu & mask) != 0 ? 1 : 0;
}

/* Whether the part of rcpt before (local) or after (domain) its last '@'
 * is text[0..n), without regard to case. */
static bool part_equal(const char *rcpt, bool domain, const char *text, size_t n)
{
    const char *at = strrchr(rcpt, '@');
    const char *part = domain ? (at != NULL ? at + 1 : NULL) : rcpt;
    size_t len = domain ? (part != NULL ? strlen(part) : 0)
                        : (at != NULL ? (size_t)(at - rcpt) : strlen(rcpt));

    return part != NULL && len == n && strncasecmp(part, text, n) == 0;
}

bool dnsbl_rcpt_exempt(const char *const *exempt, size_t count, const char *rcpt)
{
    for (size_t i = 0; i < count; i++) {
        const char *e = exempt[i];
        const char *at = strrchr(e, '@');
        bool hit;

        if (at == NULL) /* "postmaster" */
            hit = part_equal(rcpt, false, e, strlen(e));
        else if (at[1] == '\0') /* "postmaster@" */
            hit = part_equal(rcpt, false, e, (size_t)(at - e));
        else if (at == e) /* "@example.org" */
            hit = part_equal(rcpt, true, e + 1, strlen(e + 1));
        else
            hit = strcasecmp(e, rcpt) == 0;
        if (hit)
            return true;
    }
    return false;
}

/* ---- instances ---- */

int dnsbl_parse_code(const char *text, uint32_t *out)
{
    struct in_addr a;

    if (inet_pton(AF_INET, text, &a) != 1)
        return -1;
    *out = ntohl(a.s_addr);
    return 0;
}

static int copy_list(struct dnsbl_list *z, const struct dnsbl_list_settings *l)
{
    if ((z->zone = strdup(l->zone)) == NULL)
        return -1;
    z->allow = l->type == DNSBL_LIST_ALLOW;
    dnsbl_symbol_name(z->allow ? "DNSWL_" : "DNSBL_", l->zone, z->symbol, sizeof(z->symbol));
    z->score = l->score;
    z->accept = l->accept;
    z->ipv6 = l->ipv6;
    z->mask = (unsigned)l->mask;
    if (l->codes.count > 0 && (z->codes = calloc(l->codes.count, sizeof(*z->codes))) == NULL)
        return -1;
    for (size_t i = 0; i < l->codes.count; i++) {
        if (dnsbl_parse_code(l->codes.items[i], &z->codes[z->code_count]) == 0)
            z->code_count++; /* load rejected the others */
    }
    return 0;
}

static int copy_settings(struct dnsbl *d, const struct dnsbl_settings *cfg)
{
    const char *why;

    d->reject_score = cfg->reject_score;
    d->reject_stage = (enum dnsbl_reject_stage)cfg->reject_stage;
    d->skip_authenticated = cfg->skip_authenticated;
    d->skip_trusted = cfg->skip_trusted;
    for (size_t i = 0; i < cfg->allow_networks.count; i++) {
        if (netaddr_list_add(&d->allow_networks, cfg->allow_networks.items[i], &why) < 0)
            return -1; /* out of memory: load checked the syntax */
    }
    d->exempt = calloc(cfg->reject_exempt_recipients.count + 1, sizeof(*d->exempt));
    if (d->exempt == NULL)
        return -1;
    for (size_t i = 0; i < cfg->reject_exempt_recipients.count; i++) {
        if ((d->exempt[i] = strdup(cfg->reject_exempt_recipients.items[i])) == NULL)
            return -1;
        d->exempt_count++;
    }
    for (size_t i = 0; i < cfg->list_count; i++) {
        d->list_count++;
        if (copy_list(&d->lists[i], &cfg->lists[i]) < 0)
            return -1;
    }
    return 0;
}

int dnsbl_new(struct dns *dns, const struct dnsbl_settings *cfg, struct dnsbl **dnsbl_r,
              char *error, size_t errsize)
{
    struct dnsbl *d = calloc(1, sizeof(*d));

    *dnsbl_r = NULL;
    if (d == NULL || (d->lists = calloc(cfg->list_count + 1, sizeof(*d->lists))) == NULL) {
        snprintf(error, errsize, "dnsbl: out of memory");
        free(d);
        return -1;
    }
    d->dns = dns;
    if (copy_settings(d, cfg) < 0) {
        snprintf(error, errsize, "dnsbl: out of memory");
        dnsbl_free(&d);
        return -1;
    }
    *dnsbl_r = d;
    return 0;
}

void dnsbl_free(struct dnsbl **dp)
{
    struct dnsbl *d = *dp;

    if (d == NULL)
        return;
    *dp = NULL;
    for (size_t i = 0; i < d->list_count; i++) {
        free(d->lists[i].codes);
        free(d->lists[i].zone);
    }
    free(d->lists);
    for (size_t i = 0; i < d->exempt_count; i++)
        free(d->exempt[i]);
    free(d->exempt);
    netaddr_list_free(&d->allow_networks);
    free(d);
}

/* ---- CONNECT: the lookups ---- */

/* Notes the first answer that counts; logs a broken list once. */
static void check_answers(struct dnsbl_lookup *l, struct dnsbl_list *z, const char *addr,
                          const struct dns_addr *a, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)&a[i].sa;
        uint32_t answer;
        int counts;

        if (sin->sin_family != AF_INET)
            continue;
        answer = ntohl(sin->sin_addr.s_addr);
        counts = dnsbl_answer_counts(answer, z->codes, z->code_count, z->mask);
        if (counts < 0 && !z->warned_public) {
            z->warned_public = true;
            log_warning("dnsbl: %s answers %u.%u.%u.%u for [%s], outside 127.0.0.0/8: the list "
                        "is broken or refuses this resolver; such answers are ignored",
                        z->zone, answer >> 24, (answer >> 16) & 0xffu, (answer >> 8) & 0xffu,
                        answer & 0xffu, addr);
        }
        if (counts <= 0)
            continue;
        l->listed = true;
        inet_ntop(AF_INET, &sin->sin_addr, l->answer, sizeof(l->answer));
        return;
    }
}

/* Adds the listings in the lists' order and decides. */
static void check_finish(struct dnsbl_check *c)
{
    struct filter_call *call = c->call;
    struct dnsbl *d = c->d;
    const char *blocked_by = NULL;
    bool accept = false;
    double score = 0;

    for (size_t i = 0; i < d->list_count; i++) {
        const struct dnsbl_list *z = &d->lists[i];
        if (!c->lookups[i].listed)
            continue;
        filter_call_symbol(call, z->symbol, z->score, c->lookups[i].answer);
        score += z->score;
        accept = accept || (z->allow && z->accept);
        if (!z->allow && blocked_by == NULL)
            blocked_by = z->zone;
    }
    if (accept)
        filter_call_action(call, FILTER_ACTION_ACCEPT, 0, NULL, "allow-listed");
    else if (d->reject_stage == DNSBL_REJECT_CONNECT && d->reject_score > 0 &&
             blocked_by != NULL && score >= d->reject_score)
        filter_call_action(call, FILTER_ACTION_REJECT, 554, "5.7.1",
                           "Service unavailable; client [%s] blocked using %s", c->addr,
                           blocked_by);
    free(c);
    filter_call_done(call, 1);
}

static void on_answer(void *ctx, enum dns_status st, const struct dns_addr *a, size_t n)
{
    struct dnsbl_lookup *l = ctx;
    struct dnsbl_check *c = l->check;
    struct dnsbl_list *z = &c->d->lists[l->index];

    l->q = NULL;
    c->outstanding--;
    if (st == DNS_OK)
        check_answers(l, z, c->addr, a, n);
    else if (st != DNS_NXDOMAIN && st != DNS_NODATA)
        log_warning("dnsbl: %s for [%s]: %s; taken as not listed", z->zone, c->addr,
                    dns_status_name(st));
    if (c->outstanding == 0)
        check_finish(c);
}

/* Starts the queries; returns how many are outstanding. */
static size_t check_start(struct dnsbl_check *c, const struct netaddr *client)
{
    struct dnsbl *d = c->d;
    char name[DNS_NAME_MAX + 1];
    bool v6 = !netaddr_is_v4(client);

    for (size_t i = 0; i < d->list_count; i++) {
        struct dnsbl_lookup *l = &c->lookups[i];
        l->check = c;
        l->index = i;
        if (v6 && !d->lists[i].ipv6)
            continue;
        if (dnsbl_query_name(client, d->lists[i].zone, name, sizeof(name)) < 0) {
            log_warning("dnsbl: query name for [%s] in %s too long; taken as not listed",
                        c->addr, d->lists[i].zone);
            continue;
        }
        l->q = dns_query_addr(d->dns, name, AF_INET, on_answer, l);
        if (l->q != NULL)
            c->outstanding++;
        else
            log_warning("dnsbl: cannot query %s; taken as not listed", name);
    }
    return c->outstanding;
}

static int dnsbl_connect(void *instance, struct filter_call *call)
{
    struct dnsbl *d = instance;
    const struct filter_txn *txn = filter_call_txn(call);
    struct dnsbl_check *c;

    if (netaddr_list_match(&d->allow_networks, &txn->client)) {
        filter_call_symbol(call, DNSBL_ALLOWED_SYMBOL, 0, "allow_networks");
        filter_call_action(call, FILTER_ACTION_ACCEPT, 0, NULL, "allow-listed");
        return 1;
    }
    if ((d->skip_trusted && txn->trusted) || (d->skip_authenticated && txn->authenticated))
        return 1;
    c = calloc(1, sizeof(*c) + d->list_count * sizeof(c->lookups[0]));
    if (c == NULL)
        return -1;
    c->d = d;
    c->call = call;
    netaddr_to_text(&txn->client, c->addr, sizeof(c->addr));
    if (check_start(c, &txn->client) == 0) {
        free(c);
        return 1;
    }
    filter_call_set_data(call, c);
    return 0;
}

static void dnsbl_cancel(void *instance, struct filter_call *call)
{
    struct dnsbl_check *c = filter_call_data(call);

    (void)instance;
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->d->list_count; i++) {
        if (c->lookups[i].q != NULL)
            dns_query_cancel(c->lookups[i].q);
    }
    free(c);
}

/* ---- RCPT: the reject from the symbols CONNECT left ---- */

static int dnsbl_rcpt(void *instance, struct filter_call *call)
{
    struct dnsbl *d = instance;
    const struct filter_txn *txn = filter_call_txn(call);
    const char *blocked_by = NULL;
    double score = 0;

    if (d->reject_stage != DNSBL_REJECT_RCPT || d->reject_score <= 0 || txn->rcpt == NULL ||
        (d->skip_trusted && txn->trusted) || (d->skip_authenticated && txn->authenticated) ||
        dnsbl_rcpt_exempt((const char *const *)d->exempt, d->exempt_count, txn->rcpt))
        return 1;
    /* load made the lists' symbol names distinct */
    for (size_t i = 0; i < d->list_count; i++) {
        for (size_t j = 0; j < txn->symbol_count; j++) {
            if (strcmp(txn->symbols[j].name, d->lists[i].symbol) != 0)
                continue;
            score += txn->symbols[j].score;
            if (!d->lists[i].allow && blocked_by == NULL)
                blocked_by = d->lists[i].zone;
        }
    }
    if (blocked_by != NULL && score >= d->reject_score)
        filter_call_action(call, FILTER_ACTION_REJECT, 554, "5.7.1",
                           "Service unavailable; client [%s] blocked using %s", txn->client_addr,
                           blocked_by);
    return 1;
}

const struct filter_ops dnsbl_filter_ops = {
    .name = "dnsbl",
    .stage = {[FILTER_CONNECT] = dnsbl_connect, [FILTER_RCPT] = dnsbl_rcpt},
    .cancel = dnsbl_cancel,
};

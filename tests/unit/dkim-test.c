/*
 * dkim-test — see dkim-test.h. The zones:
 *   example.com  sel._domainkey (the key), rev._domainkey (revoked),
 *                _dmarc "p=reject; sp=quarantine",
 *                _dmarc.pct "p=reject; pct=0", _dmarc.strict "p=reject;
 *                adkim=s; aspf=s", _dmarc.multi (two records), _dmarc.bad
 *                "p=bogus";
 *   example.org  sel._domainkey, _dmarc "p=quarantine";
 *   example.net  sel._domainkey, no _dmarc; _dmarc.monitor "p=none".
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>

#include <event2/event.h>

#include "lib/dns.h"
#include "tests/unit/config-test.h"
#include "tests/unit/dkim-test.h"
#include "tests/unit/loop-test.h"

#define GENKEY "/usr/sbin/opendkim-genkey"
#define PREFIX "XXXXX" /* the octets in front of the content in its file */

const char *dfx_missing(void)
{
    if (access(NSD_TEST_PATH, X_OK) != 0)
        return "nsd is not installed (apt-get install nsd)";
    if (access(GENKEY, X_OK) != 0)
        return "opendkim-genkey is not installed (apt-get install opendkim-tools)";
    if (access("/usr/share/publicsuffix/public_suffix_list.dat", R_OK) != 0)
        return "the public suffix list is not installed (apt-get install publicsuffix)";
    return NULL;
}

/* ---- the key and the zones ---- */

static void run_genkey(struct dfx *fx)
{
    pid_t pid = fork();
    int status;

    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open("/dev/null", O_WRONLY);
        if (fd >= 0)
            dup2(fd, 2);
        execl(GENKEY, "opendkim-genkey", "-D", fx->nsd.dir, "-d", "example.com", "-s", "sel",
              (char *)NULL);
        _exit(127);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    snprintf(fx->key, sizeof(fx->key), "%s/sel.private", fx->nsd.dir);
}

/* The key record out of genkey's zone text: its quoted strings joined. */
static void read_record(struct dfx *fx, char *zone_text, size_t size)
{
    char path[128];
    FILE *f;
    size_t n, o = 0;
    bool in = false;

    snprintf(path, sizeof(path), "%s/sel.txt", fx->nsd.dir);
    f = fopen(path, "r");
    assert_non_null(f);
    n = fread(zone_text, 1, size - 1, f);
    fclose(f);
    zone_text[n] = '\0';
    *(strrchr(zone_text, ')') + 1) = '\0'; /* genkey's comment follows the record */
    for (size_t i = 0; i < n && zone_text[i] != '\0'; i++) {
        if (zone_text[i] == '"')
            in = !in;
        else if (in && o + 1 < sizeof(fx->record))
            fx->record[o++] = zone_text[i];
    }
    fx->record[o] = '\0';
}

static void write_zone(const struct dfx *fx, const char *zone, const char *key_text,
                       const char *records)
{
    char path[128];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s.zone", fx->nsd.dir, zone);
    f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f,
            "$ORIGIN %s.\n$TTL 300\n@ IN SOA ns.%s. hostmaster.%s. 1 3600 600 86400 300\n"
            "@ IN NS ns\nns IN A 127.0.0.1\n%s\n"
            "rev._domainkey IN TXT \"v=DKIM1; k=rsa; p=\"\n%s",
            zone, zone, zone, key_text, records);
    assert_int_equal(fclose(f), 0);
}

static const struct nsd_zone zones[] = {
    {.name = "example.com"}, {.name = "example.org"}, {.name = "example.net"}};

static void write_zones(const struct dfx *fx, const char *key_text)
{
    write_zone(fx, "example.com", key_text,
               "_dmarc IN TXT \"v=DMARC1; p=reject; sp=quarantine\"\n"
               "_dmarc.pct IN TXT \"v=DMARC1; p=reject; pct=0\"\n"
               "_dmarc.strict IN TXT \"v=DMARC1; p=reject; adkim=s; aspf=s\"\n"
               "_dmarc.multi IN TXT \"v=DMARC1; p=none\"\n"
               "_dmarc.multi IN TXT \"v=DMARC1; p=reject\"\n"
               "_dmarc.bad IN TXT \"v=DMARC1; p=bogus\"\n");
    write_zone(fx, "example.org", key_text, "_dmarc IN TXT \"v=DMARC1; p=quarantine\"\n");
    write_zone(fx, "example.net", key_text, "_dmarc.monitor IN TXT \"v=DMARC1; p=none\"\n");
}

/* ---- resolvers, nsd ---- */

static struct dns *resolver(struct event_base *base, int port)
{
    char ns[32];
    const char *nss[] = {ns};
    struct dns_config dc = {
        .nameservers = nss, .nameserver_count = 1, .timeout_ms = 300, .attempts = 1};
    struct dns *dns = NULL;
    char error[256];

    snprintf(ns, sizeof(ns), "127.0.0.1:%d", port);
    if (dns_new(base, &dc, &dns, error, sizeof(error)) < 0)
        fail_msg("dns_new: %s", error);
    return dns;
}

void dfx_start(struct dfx *fx)
{
    char key_text[4096], why[512];

    memset(fx, 0, sizeof(*fx));
    fx->silent_fd = -1;
    if (nsd_test_prepare(&fx->nsd, "dkim", why, sizeof(why)) < 0)
        fail_msg("%s", why);
    run_genkey(fx);
    read_record(fx, key_text, sizeof(key_text));
    assert_true(strstr(fx->record, "p=") != NULL);
    write_zones(fx, key_text);
    fx->silent_fd = nsd_test_silent_socket(&fx->silent_port);
    assert_true(fx->silent_fd >= 0);
    fx->base = event_base_new();
    assert_non_null(fx->base);
    fx->dns = resolver(fx->base, fx->nsd.port);
    fx->silent = resolver(fx->base, fx->silent_port);
    if (nsd_test_run(&fx->nsd, zones, sizeof(zones) / sizeof(zones[0]), why, sizeof(why)) < 0)
        fail_msg("%s", why);
}

void dfx_stop(struct dfx *fx)
{
    nsd_test_stop(&fx->nsd);
    dns_free(&fx->dns);
    dns_free(&fx->silent);
    if (fx->base != NULL)
        event_base_free(fx->base);
    fx->base = NULL;
    if (fx->silent_fd >= 0)
        close(fx->silent_fd);
    fx->silent_fd = -1;
}

int dfx_group_setup(void **state)
{
    struct dfx *fx = calloc(1, sizeof(*fx));

    if (fx == NULL)
        return -1;
    dfx_start(fx);
    *state = fx;
    return 0;
}

int dfx_group_teardown(void **state)
{
    struct dfx *fx = *state;

    dfx_stop(fx);
    free(fx);
    return 0;
}

/* ---- runs ---- */

void dfx_open(struct dfx *fx, struct dfx_run *run, const char *filters_text, bool silent)
{
    struct cfg_errors errs = {0};
    struct filter_env env = {
        .base = fx->base, .dns = silent ? fx->silent : fx->dns, .hostname = DFX_HOSTNAME};
    const struct filter_instance_settings *fi;

    memset(run, 0, sizeof(*run));
    run->cfg = config_test_load(filters_text, &errs);
    if (run->cfg == NULL)
        fail_msg("config: %s", errs.count > 0 ? errs.msgs[0] : "?");
    cfg_errors_clear(&errs);
    fi = &run->cfg->filtering.filters[0];
    filter_test_open(&run->ft, fi->module, &env, fi->settings);
    run->s = chain_session_new(run->ft.chain);
    assert_non_null(run->s);
}

void dfx_close(struct dfx_run *run)
{
    chain_session_free(&run->s);
    filter_test_close(&run->ft);
    postern_config_free(&run->cfg);
}

static void run_content(struct dfx *fx, struct dfx_run *run, const char *content,
                        const char *added, bool late, const struct dfx_txn *t)
{
    char path[128];
    static int seq;
    const char *rcpts[] = {"user@example.test"};
    FILE *f;
    int fd;

    snprintf(path, sizeof(path), "%s/msg%d", fx->nsd.dir, ++seq);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(PREFIX, f);
    fputs(content, f);
    assert_int_equal(fclose(f), 0);
    fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    struct filter_txn txn = {.queue_id = "TESTQID",
                             .listener = "mx",
                             .direction = t->direction,
                             .client_addr = "192.0.2.1",
                             .client_name = "unknown",
                             .helo = t->helo != NULL ? t->helo : "client.example.com",
                             .sender = t->sender != NULL ? t->sender : "user@example.com",
                             .rcpts = rcpts,
                             .rcpt_count = 1,
                             .content_fd = fd,
                             .content_off = sizeof(PREFIX) - 1,
                             .content_len = strlen(content),
                             .added_headers = added,
                             .symbols = t->symbols,
                             .symbol_count = t->symbol_count};
    assert_int_equal(netaddr_parse("192.0.2.1", &txn.client), 0);
    chain_session_reset(run->s);
    if (late) {
        memset(&run->r, 0, sizeof(run->r));
        assert_non_null(chain_run_late(run->s, &txn, filter_test_done, &run->r));
        filter_test_wait(fx->base, &run->r, 1, DFX_RUN_MS);
        assert_int_equal(run->r.calls, 1);
    } else {
        filter_test_run(fx->base, run->s, FILTER_EOM, &txn, &run->r, DFX_RUN_MS);
    }
    close(fd);
    unlink(path);
}

void dfx_eom(struct dfx *fx, struct dfx_run *run, const char *content, const struct dfx_txn *t)
{
    run_content(fx, run, content, NULL, false, t);
}

void dfx_late(struct dfx *fx, struct dfx_run *run, const char *content, const char *added,
              const struct dfx_txn *t)
{
    run_content(fx, run, content, added, true, t);
}

char *dfx_message(const char *from, const char *fields, const char *body)
{
    size_t size = (from != NULL ? strlen(from) : 0) + strlen(fields) + strlen(body) + 256;
    char *m = malloc(size);

    assert_non_null(m);
    snprintf(m, size,
             "%s%s%sTo: user@example.test\r\nSubject: a test\r\n"
             "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <1@example.test>\r\n"
             "%s\r\n%s",
             from != NULL ? "From: " : "", from != NULL ? from : "", from != NULL ? "\r\n" : "",
             fields, body);
    return m;
}

char *dfx_sign_added(struct dfx *fx, const char *keys_text, const char *content,
                     const char *added, const char *sender)
{
    char filters[2048];
    struct dfx_run run;
    struct dfx_txn t = {.direction = FILTER_OUTBOUND, .sender = sender};
    const char *value;
    char *signed_msg;
    size_t size;

    snprintf(filters, sizeof(filters), "filters = ( { name = \"dkim\"; %s } );", keys_text);
    dfx_open(fx, &run, filters, false);
    dfx_late(fx, &run, content, added, &t);
    value = dfx_late_header(&run.r.res, "DKIM-Signature");
    if (value == NULL)
        fail_msg("not signed: %s", dfx_symbols_text(&run.r.res));
    size = strlen(value) + strlen(content) + (added != NULL ? strlen(added) : 0) + 32;
    signed_msg = malloc(size);
    assert_non_null(signed_msg);
    snprintf(signed_msg, size, "DKIM-Signature: %s\r\n%s%s", value, added != NULL ? added : "",
             content);
    dfx_close(&run);
    return signed_msg;
}

char *dfx_sign(struct dfx *fx, const char *keys_text, const char *content, const char *sender)
{
    return dfx_sign_added(fx, keys_text, content, NULL, sender);
}

const struct filter_symbol *dfx_symbol(const struct chain_result *r, const char *name, size_t nth)
{
    for (size_t i = 0; i < r->symbol_count; i++) {
        if (strcmp(r->symbols[i].name, name) == 0 && nth-- == 0)
            return &r->symbols[i];
    }
    return NULL;
}

const char *dfx_header(const struct chain_result *r, const char *name)
{
    for (size_t i = 0; i < r->header_count; i++) {
        if (strcmp(r->headers[i].name, name) == 0)
            return r->headers[i].value;
    }
    return NULL;
}

const char *dfx_late_header(const struct chain_result *r, const char *name)
{
    for (size_t i = 0; i < r->late_header_count; i++) {
        if (strcmp(r->late_headers[i].name, name) == 0)
            return r->late_headers[i].value;
    }
    return NULL;
}

const char *dfx_symbols_text(const struct chain_result *r)
{
    static char out[4096];
    size_t o = 0;

    out[0] = '\0';
    for (size_t i = 0; i < r->symbol_count && o < sizeof(out); i++)
        o += (size_t)snprintf(out + o, sizeof(out) - o, "%s(%g) %s; ", r->symbols[i].name,
                              r->symbols[i].score, r->symbols[i].text);
    return out;
}

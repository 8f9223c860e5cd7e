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
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <event2/event.h>

#include "lib/dns.h"
#include "tests/unit/config-test.h"
#include "tests/unit/dkim-test.h"
#include "tests/unit/loop-test.h"

#define NSD "/usr/sbin/nsd"
#define GENKEY "/usr/sbin/opendkim-genkey"
#define PREFIX "XXXXX" /* the octets in front of the content in its file */

const char *dfx_missing(void)
{
    if (access(NSD, X_OK) != 0)
        return "nsd is not installed (apt-get install nsd)";
    if (access(GENKEY, X_OK) != 0)
        return "opendkim-genkey is not installed (apt-get install opendkim-tools)";
    if (access("/usr/share/publicsuffix/public_suffix_list.dat", R_OK) != 0)
        return "the public suffix list is not installed (apt-get install publicsuffix)";
    return NULL;
}

/* ---- sockets ---- */

static int udp_socket(int *port_r)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -1;
    if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
        getsockname(fd, (struct sockaddr *)&sin, &len) < 0) {
        close(fd);
        return -1;
    }
    *port_r = ntohs(sin.sin_port);
    return fd;
}

/* A port free for UDP and TCP now (nsd binds both). */
static int free_port(void)
{
    for (int attempt = 0; attempt < 20; attempt++) {
        int port, one = 1, ok;
        int u = udp_socket(&port);
        int t = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};

        sin.sin_port = htons((uint16_t)port);
        setsockopt(t, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        ok = u >= 0 && t >= 0 && bind(t, (struct sockaddr *)&sin, sizeof(sin)) == 0;
        if (u >= 0)
            close(u);
        if (t >= 0)
            close(t);
        if (ok)
            return port;
    }
    return -1;
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
        execl(GENKEY, "opendkim-genkey", "-D", fx->dir, "-d", "example.com", "-s", "sel",
              (char *)NULL);
        _exit(127);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    snprintf(fx->key, sizeof(fx->key), "%s/sel.private", fx->dir);
}

/* The key record out of genkey's zone text: its quoted strings joined. */
static void read_record(struct dfx *fx, char *zone_text, size_t size)
{
    char path[128];
    FILE *f;
    size_t n, o = 0;
    bool in = false;

    snprintf(path, sizeof(path), "%s/sel.txt", fx->dir);
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

    snprintf(path, sizeof(path), "%s/%s.zone", fx->dir, zone);
    f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f,
            "$ORIGIN %s.\n$TTL 300\n@ IN SOA ns.%s. hostmaster.%s. 1 3600 600 86400 300\n"
            "@ IN NS ns\nns IN A 127.0.0.1\n%s\n"
            "rev._domainkey IN TXT \"v=DKIM1; k=rsa; p=\"\n%s",
            zone, zone, zone, key_text, records);
    assert_int_equal(fclose(f), 0);
}

static const char *const zones[] = {"example.com", "example.org", "example.net"};

static void write_zones(const struct dfx *fx, const char *key_text)
{
    char path[128];
    FILE *f;

    write_zone(fx, "example.com", key_text,
               "_dmarc IN TXT \"v=DMARC1; p=reject; sp=quarantine\"\n"
               "_dmarc.pct IN TXT \"v=DMARC1; p=reject; pct=0\"\n"
               "_dmarc.strict IN TXT \"v=DMARC1; p=reject; adkim=s; aspf=s\"\n"
               "_dmarc.multi IN TXT \"v=DMARC1; p=none\"\n"
               "_dmarc.multi IN TXT \"v=DMARC1; p=reject\"\n"
               "_dmarc.bad IN TXT \"v=DMARC1; p=bogus\"\n");
    write_zone(fx, "example.org", key_text, "_dmarc IN TXT \"v=DMARC1; p=quarantine\"\n");
    write_zone(fx, "example.net", key_text, "_dmarc.monitor IN TXT \"v=DMARC1; p=none\"\n");
    snprintf(path, sizeof(path), "%s/nsd.conf", fx->dir);
    f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f,
            "server:\n  ip-address: 127.0.0.1@%d\n  port: %d\n  username: \"\"\n"
            "  chroot: \"\"\n  zonesdir: \"%s\"\n  pidfile: \"%s/nsd.pid\"\n"
            "  database: \"\"\n  xfrdfile: \"%s/xfrd.state\"\n"
            "  zonelistfile: \"%s/zone.list\"\n  logfile: \"%s/nsd.log\"\n"
            "remote-control:\n  control-enable: no\n",
            fx->nsd_port, fx->nsd_port, fx->dir, fx->dir, fx->dir, fx->dir, fx->dir);
    for (size_t i = 0; i < sizeof(zones) / sizeof(zones[0]); i++)
        fprintf(f, "zone:\n  name: \"%s\"\n  zonefile: \"%s.zone\"\n", zones[i], zones[i]);
    assert_int_equal(fclose(f), 0);
}

/* ---- nsd ---- */

static pid_t spawn_nsd(const struct dfx *fx)
{
    char conf[128], out[128];
    pid_t pid;

    snprintf(conf, sizeof(conf), "%s/nsd.conf", fx->dir);
    snprintf(out, sizeof(out), "%s/nsd.out", fx->dir);
    pid = fork();
    if (pid == 0) {
        int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execl(NSD, "nsd", "-c", conf, "-d", (char *)NULL);
        _exit(127);
    }
    return pid;
}

struct answer {
    int calls;
    enum dns_status st;
};

static void on_answer(void *ctx, enum dns_status st, const char *const *txt, size_t n)
{
    struct answer *a = ctx;

    (void)txt, (void)n;
    a->calls++;
    a->st = st;
}

static bool answered(const void *ctx)
{
    return ((const struct answer *)ctx)->calls > 0;
}

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

/* Waits (at most 10 s) until nsd answers for the key. */
static void wait_nsd(struct dfx *fx)
{
    for (int i = 0; i < 100; i++) {
        struct answer a = {0};
        int status;

        assert_non_null(dns_query_txt(fx->dns, "sel._domainkey.example.com", on_answer, &a));
        loop_run_until(fx->base, answered, &a, 1000);
        if (a.calls > 0 && a.st == DNS_OK)
            return;
        if (waitpid(fx->nsd_pid, &status, WNOHANG) == fx->nsd_pid)
            break;
        loop_run_for(fx->base, 50);
    }
    fail_msg("nsd did not answer; see %s/nsd.out and nsd.log", fx->dir);
}

void dfx_start(struct dfx *fx)
{
    char key_text[4096];

    memset(fx, 0, sizeof(*fx));
    fx->silent_fd = -1;
    strcpy(fx->dir, "/tmp/test-dkim.XXXXXX");
    assert_non_null(mkdtemp(fx->dir));
    run_genkey(fx);
    read_record(fx, key_text, sizeof(key_text));
    assert_true(strstr(fx->record, "p=") != NULL);
    fx->nsd_port = free_port();
    assert_true(fx->nsd_port > 0);
    write_zones(fx, key_text);
    fx->silent_fd = udp_socket(&fx->silent_port);
    assert_true(fx->silent_fd >= 0);
    fx->base = event_base_new();
    assert_non_null(fx->base);
    fx->dns = resolver(fx->base, fx->nsd_port);
    fx->silent = resolver(fx->base, fx->silent_port);
    fx->nsd_pid = spawn_nsd(fx);
    assert_true(fx->nsd_pid > 0);
    wait_nsd(fx);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

void dfx_stop(struct dfx *fx)
{
    int status;

    if (fx->nsd_pid > 0) {
        kill(fx->nsd_pid, SIGTERM);
        waitpid(fx->nsd_pid, &status, 0);
        fx->nsd_pid = 0;
    }
    dns_free(&fx->dns);
    dns_free(&fx->silent);
    if (fx->base != NULL)
        event_base_free(fx->base);
    fx->base = NULL;
    if (fx->silent_fd >= 0)
        close(fx->silent_fd);
    fx->silent_fd = -1;
    if (fx->dir[0] != '\0')
        nftw(fx->dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
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

void dfx_eom(struct dfx *fx, struct dfx_run *run, const char *content, const struct dfx_txn *t)
{
    char path[128];
    static int seq;
    const char *rcpts[] = {"user@example.test"};
    FILE *f;
    int fd;

    snprintf(path, sizeof(path), "%s/msg%d", fx->dir, ++seq);
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
                             .symbols = t->symbols,
                             .symbol_count = t->symbol_count};
    assert_int_equal(netaddr_parse("192.0.2.1", &txn.client), 0);
    chain_session_reset(run->s);
    filter_test_run(fx->base, run->s, FILTER_EOM, &txn, &run->r, DFX_RUN_MS);
    close(fd);
    unlink(path);
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

char *dfx_sign(struct dfx *fx, const char *keys_text, const char *content, const char *sender)
{
    char filters[2048];
    struct dfx_run run;
    struct dfx_txn t = {.direction = FILTER_OUTBOUND, .sender = sender};
    const char *value;
    char *signed_msg;
    size_t size;

    snprintf(filters, sizeof(filters), "filters = ( { name = \"dkim\"; %s } );", keys_text);
    dfx_open(fx, &run, filters, false);
    dfx_eom(fx, &run, content, &t);
    value = dfx_header(&run.r.res, "DKIM-Signature");
    if (value == NULL)
        fail_msg("not signed: %s", dfx_symbols_text(&run.r.res));
    size = strlen(value) + strlen(content) + 32;
    signed_msg = malloc(size);
    assert_non_null(signed_msg);
    snprintf(signed_msg, size, "DKIM-Signature: %s\r\n%s", value, content);
    dfx_close(&run);
    return signed_msg;
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

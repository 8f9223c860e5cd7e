/*
 * test-dns — lib/dns against real servers on loopback ports: an nsd that the
 * test starts with its own "dns.test" zone (MX ordering, null MX, NXDOMAIN,
 * NODATA, A/AAAA, CNAME, TXT concatenation and bounds, long answers over TCP),
 * a UDP socket that never answers (timeouts, a loop that keeps running,
 * cancel, dns_free with queries pending), and a responder thread that sends
 * scripted or random answers (BADANSWER, SERVFAIL, stable MX sort, fuzz).
 *
 * Needs /usr/sbin/nsd (exit 77 without it). Nothing leaves 127.0.0.1.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <event2/event.h>

#include "lib/dns.h"

#define NSD_PATH "/usr/sbin/nsd"
#define TXT_PART 250  /* octets per string of the long TXT records */
#define TXT_LONG_PARTS 12
#define TXT_HUGE_PARTS 20
#define MX_MANY 70
#define TXT_MANY (DNS_MAX_RECORDS + 1)
#define FUZZ_QUERIES 300

/* ---- fixture: nsd, a silent socket, a scripted responder ---- */

struct env {
    char dir[64];
    pid_t nsd_pid;
    int nsd_port;
    int silent_fd;
    int silent_port;
    int fake_fd;
    int fake_port;
    pthread_t fake_thread;
    bool fake_running;
    uint64_t seed;
    char txt_long[TXT_LONG_PARTS * TXT_PART + 3]; /* expected, quoted */
    char mx_many[DNS_MAX_RECORDS * 24];           /* expected */
};

static long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* A UDP socket on 127.0.0.1 with a kernel-chosen port. */
static int udp_bound(int *port_r)
{
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
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

/* A port free for both UDP and TCP right now (for nsd, which binds both). */
static int free_port(void)
{
    for (int attempt = 0; attempt < 20; attempt++) {
        int port, ok, one = 1;
        int u = udp_bound(&port);
        int t = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in sin = { .sin_family = AF_INET,
                                   .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };

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

static int write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    if (f == NULL)
        return -1;
    fputs(text, f);
    return fclose(f);
}

static const char zone_head[] =
    "$ORIGIN dns.test.\n"
    "$TTL 300\n"
    "@ IN SOA ns.dns.test. hostmaster.dns.test. 1 3600 600 86400 300\n"
    "@ IN NS ns\n"
    "ns IN A 127.0.0.1\n"
    "mx-order IN MX 20 c\n"
    "mx-order IN MX 10 b\n"
    "mx-order IN MX 30 d\n"
    "mx-order IN MX 10 a\n"
    "mx-alias IN CNAME mx-order\n"
    "null-mx IN MX 0 .\n"
    "a-only IN A 192.0.2.1\n"
    "v4 IN A 192.0.2.10\n"
    "v4 IN A 192.0.2.11\n"
    "v6 IN AAAA 2001:db8::6\n"
    "dual IN A 192.0.2.20\n"
    "dual IN AAAA 2001:db8::20\n"
    "alias IN CNAME dual\n"
    "txt-spf IN TXT \"v=spf1 \" \"ip4:192.0.2.0/24 \" \"-all\"\n"
    "txt-two IN TXT \"one\"\n"
    "txt-two IN TXT \"two\" \"three\"\n"
    "txt-empty IN TXT \"\"\n"
    "txt-nul IN TXT \"a\\000b\"\n";

/* "name IN TXT" + parts strings of TXT_PART octets ('a', 'b', ...). */
static void zone_txt_parts(FILE *f, const char *name, int parts, char *expect, size_t expsize)
{
    size_t off = 0;

    fprintf(f, "%s IN TXT (", name);
    for (int i = 0; i < parts; i++) {
        char part[TXT_PART + 1];
        memset(part, 'a' + i, TXT_PART);
        part[TXT_PART] = '\0';
        fprintf(f, " \"%s\"\n", part);
        if (expect != NULL && off + TXT_PART < expsize) {
            memcpy(expect + off, part, TXT_PART);
            off += TXT_PART;
        }
    }
    fprintf(f, ")\n");
    if (expect != NULL)
        expect[off] = '\0';
}

/* MX_MANY records with falling preferences; TXT_MANY one-string records. */
static void zone_many(FILE *f, struct env *env)
{
    size_t off = 0;

    for (int i = 1; i <= MX_MANY; i++)
        fprintf(f, "mx-many IN MX %d h%d\n", MX_MANY + 1 - i, i);
    for (int i = 0; i < TXT_MANY; i++)
        fprintf(f, "txt-many IN TXT \"r%d\"\n", i);
    for (int pref = 1; pref <= DNS_MAX_RECORDS; pref++)
        off += (size_t)snprintf(env->mx_many + off, sizeof(env->mx_many) - off, "%s%d h%d.dns.test",
                                pref > 1 ? "," : "", pref, MX_MANY + 1 - pref);
}

static int write_zone(struct env *env)
{
    char path[128], txt[TXT_LONG_PARTS * TXT_PART + 1];
    FILE *f;

    snprintf(path, sizeof(path), "%s/dns.test.zone", env->dir);
    f = fopen(path, "w");
    if (f == NULL)
        return -1;
    fputs(zone_head, f);
    zone_txt_parts(f, "txt-long", TXT_LONG_PARTS, txt, sizeof(txt));
    zone_txt_parts(f, "txt-huge", TXT_HUGE_PARTS, NULL, 0);
    zone_many(f, env);
    snprintf(env->txt_long, sizeof(env->txt_long), "\"%s\"", txt);
    return fclose(f);
}

static int write_nsd_conf(const struct env *env)
{
    char path[128], conf[2048];
    const char *d = env->dir;
    int p = env->nsd_port;

    snprintf(conf, sizeof(conf),
             "server:\n  ip-address: 127.0.0.1@%d\n  port: %d\n  username: \"\"\n"
             "  chroot: \"\"\n  zonesdir: \"%s\"\n  pidfile: \"%s/nsd.pid\"\n"
             "  database: \"\"\n  xfrdfile: \"%s/xfrd.state\"\n"
             "  zonelistfile: \"%s/zone.list\"\n  logfile: \"%s/nsd.log\"\n"
             "remote-control:\n  control-enable: no\n"
             "zone:\n  name: \"dns.test\"\n  zonefile: \"dns.test.zone\"\n",
             p, p, d, d, d, d, d);
    snprintf(path, sizeof(path), "%s/nsd.conf", d);
    return write_file(path, conf);
}

static pid_t spawn_nsd(const struct env *env)
{
    char conf[128], out[128];
    pid_t pid;

    snprintf(conf, sizeof(conf), "%s/nsd.conf", env->dir);
    snprintf(out, sizeof(out), "%s/nsd.out", env->dir);
    pid = fork();
    if (pid == 0) {
        int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execl(NSD_PATH, "nsd", "-c", conf, "-d", (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* ---- results ---- */

struct result {
    int calls;
    enum dns_status st;
    size_t n;
    bool starting;   /* set by the test around dns_query_* */
    bool inside;     /* the callback ran while starting */
    long at_ms;
    char *items[DNS_MAX_RECORDS];
    char text[TXT_HUGE_PARTS * TXT_PART + 64];
    void (*hook)(struct result *r);
    void *hook_arg;
};

static void result_begin(struct result *r, enum dns_status st, size_t n)
{
    r->calls++;
    r->st = st;
    r->n = n;
    r->inside = r->inside || r->starting;
    r->at_ms = now_ms();
    r->text[0] = '\0';
    assert_true(n <= DNS_MAX_RECORDS);
    assert_true(st == DNS_OK || n == 0);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Joins the items (sorted unless the order matters) into r->text. */
static void result_end(struct result *r, bool sort, const char *sep)
{
    size_t off = 0;

    if (sort)
        qsort(r->items, r->n, sizeof(r->items[0]), cmp_str);
    for (size_t i = 0; i < r->n; i++) {
        int w = snprintf(r->text + off, sizeof(r->text) - off, "%s%s", i ? sep : "", r->items[i]);
        assert_true(w >= 0 && (size_t)w < sizeof(r->text) - off);
        off += (size_t)w;
        free(r->items[i]);
        r->items[i] = NULL;
    }
    if (r->hook != NULL)
        r->hook(r);
}

static bool host_printable(const char *s)
{
    size_t len = strnlen(s, DNS_NAME_MAX + 1);

    if (len == 0 || len > DNS_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
            return false;
    return true;
}

static void on_mx(void *ctx, enum dns_status st, const struct dns_mx *mx, size_t n)
{
    struct result *r = ctx;
    char item[DNS_NAME_MAX + 16];

    result_begin(r, st, n);
    for (size_t i = 0; i < n; i++) {
        assert_true(host_printable(mx[i].host));
        assert_true(mx[i].preference <= 65535);
        snprintf(item, sizeof(item), "%u %s", mx[i].preference, mx[i].host);
        r->items[i] = strdup(item);
    }
    result_end(r, false, ",");
}

static void on_addr(void *ctx, enum dns_status st, const struct dns_addr *a, size_t n)
{
    struct result *r = ctx;
    char item[INET6_ADDRSTRLEN];

    result_begin(r, st, n);
    for (size_t i = 0; i < n; i++) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)&a[i].sa;
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&a[i].sa;
        if (a[i].sa.ss_family == AF_INET) {
            assert_int_equal(a[i].len, sizeof(*sin));
            assert_int_equal(sin->sin_port, 0);
            inet_ntop(AF_INET, &sin->sin_addr, item, sizeof(item));
        } else {
            assert_int_equal(a[i].sa.ss_family, AF_INET6);
            assert_int_equal(a[i].len, sizeof(*sin6));
            assert_int_equal(sin6->sin6_port, 0);
            inet_ntop(AF_INET6, &sin6->sin6_addr, item, sizeof(item));
        }
        r->items[i] = strdup(item);
    }
    result_end(r, true, ",");
}

static void on_txt(void *ctx, enum dns_status st, const char *const *txt, size_t n)
{
    struct result *r = ctx;

    result_begin(r, st, n);
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(txt[i]);
        assert_true(len <= 4096);
        r->items[i] = malloc(len + 3);
        snprintf(r->items[i], len + 3, "\"%s\"", txt[i]);
    }
    result_end(r, true, "|");
}

enum kind { Q_MX, Q_ADDR, Q_TXT };

static struct dns_query *start(struct dns *dns, enum kind kind, const char *name, int family,
                               struct result *r)
{
    struct dns_query *q = NULL;

    r->starting = true;
    switch (kind) {
    case Q_MX:
        q = dns_query_mx(dns, name, on_mx, r);
        break;
    case Q_ADDR:
        q = dns_query_addr(dns, name, family, on_addr, r);
        break;
    case Q_TXT:
        q = dns_query_txt(dns, name, on_txt, r);
        break;
    }
    r->starting = false;
    return q;
}

static void on_flag(evutil_socket_t fd, short what, void *arg)
{
    *(bool *)arg = true;
}

static bool all_called(const struct result *rs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (rs[i].calls == 0)
            return false;
    return true;
}

/* Runs the loop until each result has been called or max_ms have passed. */
static bool run_until(struct event_base *base, const struct result *rs, size_t n, int max_ms)
{
    bool expired = false;
    struct event *guard = evtimer_new(base, on_flag, &expired);
    struct timeval tv = { .tv_sec = max_ms / 1000, .tv_usec = (max_ms % 1000) * 1000 };

    evtimer_add(guard, &tv);
    while (!expired && !all_called(rs, n))
        event_base_loop(base, EVLOOP_ONCE);
    event_free(guard);
    return all_called(rs, n);
}

static void run_for(struct event_base *base, int ms)
{
    struct result never = { .calls = 0 };

    run_until(base, &never, 1, ms);
}

static struct dns *dns_at(struct event_base *base, int port, unsigned timeout_ms, unsigned attempts)
{
    char server[32], error[256] = "";
    const char *servers[] = { server };
    struct dns_config cfg = { .nameservers = servers, .nameserver_count = 1,
                              .timeout_ms = timeout_ms, .attempts = attempts };
    struct dns *dns = NULL;

    snprintf(server, sizeof(server), "127.0.0.1:%d", port);
    if (dns_new(base, &cfg, &dns, error, sizeof(error)) != 0)
        fail_msg("dns_new: %s", error);
    return dns;
}

/* ---- the scripted responder ---- */

struct pkt {
    uint8_t b[1400];
    size_t len;
};

static void put_bytes(struct pkt *p, const void *data, size_t n)
{
    if (n <= sizeof(p->b) - p->len) {
        memcpy(p->b + p->len, data, n);
        p->len += n;
    }
}

static void put16(struct pkt *p, unsigned v)
{
    uint8_t b[2] = { (uint8_t)(v >> 8), (uint8_t)v };

    put_bytes(p, b, 2);
}

/* Owner = the question's name (a pointer), class IN, TTL 300. */
static void put_rr_head(struct pkt *p, unsigned type, size_t rdlen)
{
    static const uint8_t ttl[4] = { 0, 0, 1, 44 };

    put16(p, 0xc00c);
    put16(p, type);
    put16(p, 1);
    put_bytes(p, ttl, 4);
    put16(p, (unsigned)rdlen);
}

static void put_name(struct pkt *p, const char *dotted)
{
    while (*dotted != '\0') {
        size_t len = strcspn(dotted, ".");
        uint8_t l = (uint8_t)len;
        put_bytes(p, &l, 1);
        put_bytes(p, dotted, len);
        dotted += len + (dotted[len] == '.');
    }
    put_bytes(p, "", 1);
}

static void put_mx(struct pkt *p, unsigned pref, const char *host)
{
    put_rr_head(p, 15, 2 + strlen(host) + 2);
    put16(p, pref);
    put_name(p, host);
}

/* One TXT record of n strings (each under 256 octets). */
static void put_txt(struct pkt *p, const char *const *parts, size_t n)
{
    size_t rdlen = 0;

    for (size_t i = 0; i < n; i++)
        rdlen += 1 + strlen(parts[i]);
    put_rr_head(p, 16, rdlen);
    for (size_t i = 0; i < n; i++) {
        uint8_t l = (uint8_t)strlen(parts[i]);
        put_bytes(p, &l, 1);
        put_bytes(p, parts[i], l);
    }
}

struct fake_query {
    const uint8_t *buf;
    size_t qend;     /* end of the question */
    char label[64];  /* its first label */
    unsigned qtype;
};

static int fake_parse(const uint8_t *buf, size_t len, struct fake_query *fq)
{
    size_t pos = 12;

    if (len < 17 || buf[12] == 0 || buf[12] > 63 || 13u + buf[12] > len)
        return -1;
    memcpy(fq->label, buf + 13, buf[12]);
    fq->label[buf[12]] = '\0';
    while (pos < len && buf[pos] != 0 && buf[pos] <= 63)
        pos += 1u + buf[pos];
    if (pos + 5 > len || buf[pos] != 0)
        return -1;
    fq->buf = buf;
    fq->qend = pos + 5;
    fq->qtype = (unsigned)buf[pos + 1] << 8 | buf[pos + 2];
    return 0;
}

/* Header (id and RD echoed, QR AA RA, rcode) and the question. */
static void fake_head(struct pkt *p, const struct fake_query *fq, unsigned flags, unsigned ancount)
{
    p->len = 0;
    put_bytes(p, fq->buf, 2);
    put16(p, 0x8480 | (fq->buf[2] & 0x01u) << 8 | flags);
    put16(p, 1);
    put16(p, ancount);
    put16(p, 0);
    put16(p, 0);
    put_bytes(p, fq->buf + 12, fq->qend - 12);
}

/* Random header flags and answer count, then random or RR-shaped bytes. */
static void fake_fuzz(struct pkt *p, const struct fake_query *fq, uint64_t *rng)
{
    uint64_t r = rng_next(rng);
    unsigned flags = (r & 3) == 0 ? (unsigned)(r >> 8) % 6 : 0;
    unsigned ancount = (unsigned)(r >> 16) % 5;
    size_t extra = (size_t)(r >> 24) % 200;

    if ((r >> 40) % 16 == 0)
        flags |= 0x0200; /* TC: c-ares retries over TCP, which is refused */
    fake_head(p, fq, flags, ancount);
    for (unsigned i = 0; (r >> 48) % 2 == 0 && i < ancount; i++) {
        size_t rdlen = (size_t)rng_next(rng) % 40;
        put_rr_head(p, fq->qtype, rdlen);
        for (size_t j = 0; j < rdlen; j++)
            put_bytes(p, &(uint8_t){ (uint8_t)rng_next(rng) }, 1);
    }
    for (size_t j = 0; j < extra; j++)
        put_bytes(p, &(uint8_t){ (uint8_t)rng_next(rng) }, 1);
}

/* Builds the answer the first label asks for; 0 = stay silent. */
static size_t fake_answer(struct pkt *p, const struct fake_query *fq, uint64_t *rng)
{
    const char *l = fq->label;

    if (strcmp(l, "mxorder") == 0) {
        fake_head(p, fq, 0, 3);
        put_mx(p, 10, "y.fake.test");
        put_mx(p, 5, "z.fake.test");
        put_mx(p, 10, "x.fake.test");
    } else if (strcmp(l, "mxctl") == 0) {
        fake_head(p, fq, 0, 1);
        put_mx(p, 10, "a\001b.fake.test");
    } else if (strcmp(l, "trail") == 0) {
        fake_head(p, fq, 0, 0);
        put_bytes(p, "\0\0\0\0\0\0\0\0", 8);
    } else if (strcmp(l, "noanswer") == 0) {
        fake_head(p, fq, 0, 0);
    } else if (strcmp(l, "txtrec") == 0) {
        fake_head(p, fq, 0, 3);
        put_txt(p, (const char *[]){ "ab", "cd" }, 2);
        put_txt(p, (const char *[]){ "ef" }, 1);
        put_txt(p, (const char *[]){ "" }, 1);
    } else if (strcmp(l, "mixed") == 0) {
        fake_head(p, fq, 0, 2);
        put_rr_head(p, 28, 16); /* an AAAA record in the answer to an A query */
        put_bytes(p, "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x01", 16);
        put_rr_head(p, 1, 4);
        put_bytes(p, "\xc0\x00\x02\x01", 4);
    } else if (strcmp(l, "empty") == 0) {
        fake_head(p, fq, 0, 1);
    } else if (strcmp(l, "servfail") == 0 || strcmp(l, "nxdomain") == 0 ||
               strcmp(l, "formerr") == 0) {
        fake_head(p, fq, l[0] == 's' ? 2 : l[0] == 'n' ? 3 : 1, 0);
    } else if (strcmp(l, "junk") == 0) {
        p->len = 1 + (size_t)rng_next(rng) % 512;
        for (size_t j = 0; j < p->len; j++)
            p->b[j] = (uint8_t)rng_next(rng);
    } else if (strncmp(l, "fuzz", 4) == 0) {
        fake_fuzz(p, fq, rng);
    } else {
        return 0;
    }
    return p->len;
}

/* Answers until it receives a one-octet datagram. */
static void *fake_main(void *arg)
{
    struct env *env = arg;
    uint64_t rng = env->seed;

    for (;;) {
        uint8_t buf[1500];
        struct sockaddr_storage from;
        socklen_t fromlen = sizeof(from);
        struct fake_query fq;
        struct pkt p = { .len = 0 };
        ssize_t len = recvfrom(env->fake_fd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fromlen);

        if (len == 1)
            break;
        if (len < 0 || fake_parse(buf, (size_t)len, &fq) < 0)
            continue;
        if (fake_answer(&p, &fq, &rng) > 0)
            sendto(env->fake_fd, p.b, p.len, 0, (struct sockaddr *)&from, fromlen);
    }
    return NULL;
}

/* ---- group setup ---- */

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

/* Polls nsd with the resolver itself until it answers (5 s at most). */
static int wait_nsd(struct env *env)
{
    struct event_base *base = event_base_new();
    int ok = -1;

    for (int i = 0; i < 100 && ok < 0; i++) {
        struct dns *dns = dns_at(base, env->nsd_port, 100, 1);
        struct result r = { .calls = 0 };
        int status;

        start(dns, Q_ADDR, "ns.dns.test", AF_INET, &r);
        run_until(base, &r, 1, 1000);
        dns_free(&dns);
        if (r.st == DNS_OK)
            ok = 0;
        else if (waitpid(env->nsd_pid, &status, WNOHANG) == env->nsd_pid)
            break;
        else
            run_for(base, 50);
    }
    event_base_free(base);
    return ok;
}

static int start_nsd(struct env *env)
{
    strcpy(env->dir, "/tmp/test-dns.XXXXXX");
    if (mkdtemp(env->dir) == NULL)
        return -1;
    env->nsd_port = free_port();
    if (env->nsd_port < 0 || write_zone(env) < 0 || write_nsd_conf(env) < 0)
        return -1;
    env->nsd_pid = spawn_nsd(env);
    if (env->nsd_pid < 0)
        return -1;
    if (wait_nsd(env) < 0) {
        fprintf(stderr, "nsd did not answer; see %s/nsd.out and nsd.log\n", env->dir);
        return -1;
    }
    return 0;
}

static int group_setup(void **state)
{
    struct env *env = calloc(1, sizeof(*env));

    if (env == NULL)
        return -1;
    *state = env;
    env->nsd_pid = -1;
    env->silent_fd = -1;
    env->fake_fd = -1;
    env->seed = (uint64_t)time(NULL) * 2654435761u ^ (uint64_t)getpid();
    if (getenv("TEST_DNS_SEED") != NULL)
        env->seed = strtoull(getenv("TEST_DNS_SEED"), NULL, 0);
    env->seed |= 1;
    fprintf(stderr, "test-dns: seed %llu (TEST_DNS_SEED to repeat)\n",
            (unsigned long long)env->seed);
    env->silent_fd = udp_bound(&env->silent_port);
    env->fake_fd = udp_bound(&env->fake_port);
    if (env->silent_fd < 0 || env->fake_fd < 0)
        return -1;
    if (pthread_create(&env->fake_thread, NULL, fake_main, env) != 0)
        return -1;
    env->fake_running = true;
    return start_nsd(env);
}

static void stop_fake(struct env *env)
{
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                               .sin_port = htons((uint16_t)env->fake_port) };
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

    sendto(fd, "q", 1, 0, (struct sockaddr *)&sin, sizeof(sin));
    close(fd);
    pthread_join(env->fake_thread, NULL);
}

static int group_teardown(void **state)
{
    struct env *env = *state;

    if (env->nsd_pid > 0) {
        kill(env->nsd_pid, SIGTERM);
        waitpid(env->nsd_pid, NULL, 0);
    }
    if (env->fake_running)
        stop_fake(env);
    if (env->silent_fd >= 0)
        close(env->silent_fd);
    if (env->fake_fd >= 0)
        close(env->fake_fd);
    if (env->dir[0] != '\0')
        nftw(env->dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
    free(env);
    return 0;
}

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
    struct dns *nsd = dns_at(base, env->nsd_port, 1000, 2);
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
    struct dns *dns = dns_at(base, env->nsd_port, 1000, 2);
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
    struct dns *dns = dns_at(base, env->nsd_port, 1000, 2);
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
    struct dns *dns = dns_at(base, env->nsd_port, 1000, 2);
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
    snprintf(nsd, sizeof(nsd), "127.0.0.1:%d", env->nsd_port);
    assert_int_equal(dns_new(base, &cfg, &dns, error, sizeof(error)), 0);
    assert_non_null(start(dns, Q_MX, "null-mx.dns.test", 0, &r));
    assert_true(run_until(base, &r, 1, 3000));
    assert_int_equal(r.st, DNS_OK);
    assert_string_equal(r.text, "0 .");
    dns_free(&dns);
    event_base_free(base);
}

/* ---- tests: cancel and free ---- */

static void cancel_other(struct result *r)
{
    struct dns_query **other = r->hook_arg;

    dns_query_cancel(*other);
    *other = NULL;
}

static void test_cancel(void **state)
{
    struct env *env = *state;
    struct event_base *base = event_base_new();
    struct dns *dns = dns_at(base, env->nsd_port, 1000, 2);
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
    struct dns *dns = dns_at(base, env->nsd_port, 1000, 2);
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
    };

    if (access(NSD_PATH, X_OK) != 0) {
        fprintf(stderr, "test-dns: %s not installed (apt-get install nsd); skipped\n", NSD_PATH);
        return 77;
    }
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

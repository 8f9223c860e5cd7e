/*
 * dns-test — the fixture of test-dns and test-dns-cache: an nsd (nsd-test.h)
 * started with the tests' own zones on a free loopback port ("dns.test", reverse zones for
 * 192.0.2.0/24 and 2001:db8::/32, and "ttl.test" with 198.51.100.0/24's
 * reverse zone, short TTLs, which the cache tests rewrite and reload), a UDP
 * socket that never answers, a responder thread with scripted, delayed or
 * random answers that counts the queries it receives, and the helpers that
 * run queries on an event loop and record their results.
 */
#ifndef POSTERN_DNS_TEST_H
#define POSTERN_DNS_TEST_H

#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
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
#include "tests/unit/nsd-test.h"

#define TXT_PART 250  /* octets per string of the long TXT records */
#define TXT_LONG_PARTS 12
#define TXT_HUGE_PARTS 20
#define MX_MANY 70
#define TXT_MANY (DNS_MAX_RECORDS + 1)
#define PTR_MANY (DNS_MAX_RECORDS + 6) /* PTR records for 192.0.2.3 */
#define FUZZ_QUERIES 300
#define TTL_SHORT 2  /* seconds: the TTL (and SOA MINIMUM) of ttl.test */
#define FAKE_DELAYED 16

enum kind { Q_MX, Q_ADDR, Q_TXT, Q_PTR }; /* Q_PTR: the name is an address literal */

struct delayed {
    long due_ms;
    uint8_t b[1400];
    size_t len;
    struct sockaddr_storage to;
    socklen_t tolen;
};

struct env {
    struct nsd_test nsd; /* its dir holds the zone files this fixture writes */
    int silent_fd;
    int silent_port;
    int fake_fd;
    int fake_port;
    pthread_t fake_thread;
    bool fake_running;
    atomic_uint fake_count;       /* queries the responder has received */
    struct delayed delayed[FAKE_DELAYED]; /* the responder thread's own */
    int ttl_version;              /* of the ttl.test zones, 1 at the start */
    time_t zone_mtime;            /* set on each rewrite, so nsd sees a change */
    uint64_t seed;
    char txt_long[TXT_LONG_PARTS * TXT_PART + 3]; /* expected, quoted */
    char mx_many[DNS_MAX_RECORDS * 24];           /* expected */
};

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

struct pkt {
    uint8_t b[1400];
    size_t len;
};

struct fake_query {
    const uint8_t *buf;
    size_t qend;     /* end of the question */
    char label[64];  /* its first label */
    unsigned qtype;
};

long now_ms(void);
uint64_t rng_next(uint64_t *s);
int write_file(const char *path, const char *text);
void zone_txt_parts(FILE *f, const char *name, int parts, char *expect, size_t expsize);
void zone_many(FILE *f, struct env *env);
int write_zone(struct env *env);
int write_ttl_zones(struct env *env, int version);
int reload_nsd(struct env *env, int version);
void result_begin(struct result *r, enum dns_status st, size_t n);
int cmp_str(const void *a, const void *b);
void result_end(struct result *r, bool sort, const char *sep);
bool host_printable(const char *s);
void on_mx(void *ctx, enum dns_status st, const struct dns_mx *mx, size_t n);
void on_addr(void *ctx, enum dns_status st, const struct dns_addr *a, size_t n);
void on_txt(void *ctx, enum dns_status st, const char *const *txt, size_t n);
void on_ptr(void *ctx, enum dns_status st, const char *const *names, size_t n);
int sockaddr_from_text(const char *text, struct sockaddr_storage *ss);
struct dns_query *start(struct dns *dns, enum kind kind, const char *name, int family,
                               struct result *r);
void on_flag(evutil_socket_t fd, short what, void *arg);
bool all_called(const struct result *rs, size_t n);
bool run_until(struct event_base *base, const struct result *rs, size_t n, int max_ms);
void run_for(struct event_base *base, int ms);
void cancel_other(struct result *r);
struct dns *dns_at(struct event_base *base, int port, unsigned timeout_ms, unsigned attempts);
struct dns *dns_cached(struct event_base *base, int port, size_t size, unsigned max_ttl_s);
unsigned fake_queries(struct env *env);
void put_bytes(struct pkt *p, const void *data, size_t n);
void put16(struct pkt *p, unsigned v);
void put_rr_head(struct pkt *p, unsigned type, size_t rdlen);
void put_rr_head_ttl(struct pkt *p, unsigned type, size_t rdlen, uint32_t ttl);
void put_soa(struct pkt *p, uint32_t ttl, uint32_t minimum);
void put_soa_owned(struct pkt *p, const char *owner, uint32_t ttl, uint32_t minimum, int extra);
void fake_record(struct pkt *p, const struct fake_query *fq, uint32_t ttl);
void put_name(struct pkt *p, const char *dotted);
void put_mx(struct pkt *p, unsigned pref, const char *host);
void put_txt(struct pkt *p, const char *const *parts, size_t n);
int fake_parse(const uint8_t *buf, size_t len, struct fake_query *fq);
void fake_head(struct pkt *p, const struct fake_query *fq, unsigned flags, unsigned ancount);
void fake_fuzz(struct pkt *p, const struct fake_query *fq, uint64_t *rng);
size_t fake_answer(struct pkt *p, const struct fake_query *fq, uint64_t *rng);
void *fake_main(void *arg);
int start_nsd(struct env *env);
bool nsd_missing(const char *prog);
int group_setup(void **state);
void stop_fake(struct env *env);
int group_teardown(void **state);

#endif

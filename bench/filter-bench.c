/*
 * filter-bench — decisions per second of one greylist or ratelimit filter
 * instance driven through the real chain (filters/chain.h), or of a Postfix
 * policy server (postgrey) queried over the policy protocol, on the same
 * triplets and with the same number of decisions in flight. Run by
 * bench/filter_bench.py (bench/filter-bench.sh), which starts the servers,
 * writes the config and repeats the runs; built on request only
 * (`make bench/filter-bench`, EXTRA_PROGRAMS in bench/local.mk).
 *
 * Triplet i (0 <= i < N): client 10.a.b.c with a distinct /24 per triplet
 * (a = 10 + i / 65536, b = i / 256 % 256, c = i % 256, host 1 + i % 254),
 * sender "user<i>@sender<i % 97>.example", recipient
 * "rcpt<i % 1000>@example.test". Every pass asks about all N triplets in
 * order; `inflight` decisions are outstanding at any time (each slot starts
 * the next triplet when its answer comes), all on one event loop:
 *   filter mode  one chain_session per decision, one RCPT stage run; the
 *                filter and its state store are made from a posternd config
 *                file (filters[0] and the state section) as a worker does;
 *   policy mode  `inflight` persistent TCP connections to the policy server,
 *                each sequential (one request, wait for its answer), as
 *                Postfix's smtpd uses a policy service; the request carries
 *                the attributes Postfix 3.7 sends at RCPT.
 * Latency = from starting the decision (chain_run / the request written) to
 * its answer, on the monotonic clock. Between passes the driver can wait
 * (--wait-ms) with the loop running, e.g. past the greylisting delay.
 *
 * Output, one line per pass on stdout, for the script to parse:
 *   pass=NAME n=N inflight=K secs=S rate=R p50_us=A p99_us=B max_us=C
 *   outcomes=WORD:COUNT,...
 * WORD is the first symbol of the chain's result (GREYLIST_NEW, or "none"),
 * prefixed "tempfail/" when the chain asked for a tempfail; in policy mode
 * the first word of the reply's action (DEFER_IF_PERMIT, DUNNO, PREPEND).
 *
 * Talks only to the addresses it is given (127.0.0.1 in the benchmark).
 * Every pass is bounded by --pass-timeout; exit status 1 when a pass did
 * not finish or an answer could not be read.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "filters/chain.h"
#include "filters/module.h"
#include "gateway/filter-config.h"
#include "gateway/server-config.h"
#include "lib/kv.h"
#include "lib/log.h"

#define FB_INFLIGHT_MAX 1024
#define FB_TRIPLETS_MAX 10000000u
#define FB_ADDR_MAX 128
#define FB_OUTCOMES_MAX 16
#define FB_WORD_MAX (FILTER_SYMBOL_NAME_MAX + 16)
#define FB_REPLY_MAX 4096 /* longest policy answer we read */

struct fb_opts {
    const char *config; /* filter mode */
    const char *policy; /* policy mode: "127.0.0.1:PORT" */
    unsigned triplets;
    unsigned inflight;
    const char *passes; /* "new,retry,known" */
    unsigned wait_ms;   /* between passes */
    unsigned pass_timeout_s;
};

struct fb_outcome {
    char word[FB_WORD_MAX];
    unsigned count;
};

struct fb;

/* One decision in flight. */
struct fb_slot {
    struct fb *fb;
    unsigned index; /* the triplet */
    uint64_t start_ns;
    bool busy;
    /* filter mode */
    struct chain_session *cs;
    struct filter_txn txn;
    char client[FB_ADDR_MAX], sender[FB_ADDR_MAX], rcpt[FB_ADDR_MAX];
    /* policy mode */
    struct bufferevent *bev;
    bool connected;
};

struct fb {
    struct fb_opts o;
    struct event_base *base;
    /* filter mode */
    struct postern_config *cfg;
    struct kv *kv;
    void *instance;
    struct chain *chain;
    /* policy mode */
    struct sockaddr_in policy_sa;
    /* the pass */
    struct fb_slot *slots;
    unsigned next, done;
    uint32_t *lat_us; /* per triplet */
    struct fb_outcome outcomes[FB_OUTCOMES_MAX];
    size_t outcome_count;
    bool failed;
};

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- the triplets ---- */

static void triplet(unsigned i, char *client, char *sender, char *rcpt)
{
    snprintf(client, FB_ADDR_MAX, "%u.%u.%u.%u", 10 + i / 65536, i / 256 % 256, i % 256,
             1 + i % 254);
    snprintf(sender, FB_ADDR_MAX, "user%u@sender%u.example", i, i % 97);
    snprintf(rcpt, FB_ADDR_MAX, "rcpt%u@example.test", i % 1000);
}

/* ---- outcomes and the end of a decision ---- */

static void outcome_add(struct fb *fb, const char *word)
{
    for (size_t i = 0; i < fb->outcome_count; i++) {
        if (strcmp(fb->outcomes[i].word, word) == 0) {
            fb->outcomes[i].count++;
            return;
        }
    }
    if (fb->outcome_count == FB_OUTCOMES_MAX) {
        word = "other";
        for (size_t i = 0; i < fb->outcome_count; i++)
            if (strcmp(fb->outcomes[i].word, word) == 0) {
                fb->outcomes[i].count++;
                return;
            }
        fb->outcome_count--; /* the last slot becomes "other" */
    }
    snprintf(fb->outcomes[fb->outcome_count].word, FB_WORD_MAX, "%s", word);
    fb->outcomes[fb->outcome_count++].count = 1;
}

static void slot_start(struct fb_slot *sl);

/* Records the decision of sl and starts the slot's next one. */
static void slot_finish(struct fb_slot *sl, const char *word)
{
    struct fb *fb = sl->fb;
    uint64_t us = (now_ns() - sl->start_ns) / 1000;

    fb->lat_us[sl->index] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
    outcome_add(fb, word);
    sl->busy = false;
    fb->done++;
    if (fb->done == fb->o.triplets)
        event_base_loopbreak(fb->base);
    else
        slot_start(sl);
}

/* ---- filter mode: the chain ---- */

static void chain_done(void *ctx, const struct chain_result *res)
{
    struct fb_slot *sl = ctx;
    char word[FB_WORD_MAX];

    snprintf(word, sizeof(word), "%s%s", res->action == FILTER_ACTION_TEMPFAIL ? "tempfail/" : "",
             res->symbol_count > 0 ? res->symbols[0].name : "none");
    chain_session_free(&sl->cs);
    slot_finish(sl, word);
}

static int chain_start(struct fb_slot *sl)
{
    struct fb *fb = sl->fb;

    triplet(sl->index, sl->client, sl->sender, sl->rcpt);
    sl->txn = (struct filter_txn){.queue_id = "BENCHQ",
                                  .listener = "mx",
                                  .direction = FILTER_INBOUND,
                                  .client_addr = sl->client,
                                  .client_name = "unknown",
                                  .helo = "client.example",
                                  .sender = sl->sender,
                                  .rcpt = sl->rcpt,
                                  .content_fd = -1};
    if (netaddr_parse(sl->client, &sl->txn.client) < 0 ||
        (sl->cs = chain_session_new(fb->chain)) == NULL)
        return -1;
    sl->start_ns = now_ns();
    if (chain_run(sl->cs, FILTER_RCPT, &sl->txn, chain_done, sl) == NULL) {
        chain_session_free(&sl->cs);
        return -1;
    }
    return 0;
}

static int filter_setup(struct fb *fb)
{
    struct cfg_errors errs = {0};
    char err[512];
    const struct state_settings *st;
    const struct filter_instance_settings *fi;
    const struct filter_common *c;

    if ((fb->cfg = postern_config_load(fb->o.config, &errs)) == NULL) {
        fprintf(stderr, "filter-bench: %s\n", errs.count > 0 ? errs.msgs[0] : "bad config");
        cfg_errors_clear(&errs);
        return -1;
    }
    if (fb->cfg->filtering.count == 0) {
        fprintf(stderr, "filter-bench: %s has no filter\n", fb->o.config);
        return -1;
    }
    st = &fb->cfg->filtering.state;
    struct kv_config kc = {.backend = (enum kv_backend)st->backend,
                           .timeout_ms = (unsigned)st->timeout,
                           .lmdb_dir = st->lmdb_dir,
                           .lmdb_map_size = (size_t)st->lmdb_map_size,
                           .lmdb_nosync = st->lmdb_nosync,
                           .redis_address = st->redis,
                           .redis_password = st->redis_password,
                           .redis_db = (unsigned)st->redis_db,
                           .redis_prefix = st->redis_prefix};
    if (kc.backend == KV_BACKEND_LMDB && kc.lmdb_dir == NULL) {
        fprintf(stderr, "filter-bench: set state.lmdb_dir\n");
        return -1;
    }
    if (kv_new(fb->base, &kc, &fb->kv, err, sizeof(err)) < 0) {
        fprintf(stderr, "filter-bench: state: %s\n", err);
        return -1;
    }
    fi = &fb->cfg->filtering.filters[0];
    c = filter_instance_common(fi);
    struct filter_env env = {.base = fb->base, .kv = fb->kv, .hostname = "mx.bench.test"};
    if (fi->module->create(&env, fi->settings, &fb->instance, err, sizeof(err)) < 0) {
        fprintf(stderr, "filter-bench: %s\n", err);
        return -1;
    }
    struct chain_link link = {.ops = fi->module->ops,
                              .instance = fb->instance,
                              .on_error = (enum filter_on_error)c->on_error,
                              .timeout_ms = (unsigned)c->timeout};
    fb->chain = chain_new(fb->base, &link, 1);
    return fb->chain != NULL ? 0 : -1;
}

/* ---- policy mode: Postfix's policy protocol ---- */

static int policy_request(struct fb_slot *sl)
{
    struct evbuffer *out = bufferevent_get_output(sl->bev);

    triplet(sl->index, sl->client, sl->sender, sl->rcpt);
    sl->start_ns = now_ns();
    /* the attributes of Postfix 3.7's smtpd at RCPT, in its order */
    return evbuffer_add_printf(
               out,
               "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n"
               "helo_name=client.example\nqueue_id=\nsender=%s\nrecipient=%s\n"
               "recipient_count=0\nclient_address=%s\nclient_name=unknown\n"
               "reverse_client_name=unknown\ninstance=%x.%x.0\nsasl_method=\n"
               "sasl_username=\nsasl_sender=\nsize=0\nccert_subject=\nccert_issuer=\n"
               "ccert_fingerprint=\nccert_pubkey_fingerprint=\nencryption_protocol=\n"
               "encryption_cipher=\nencryption_keysize=0\netrn_domain=\nstress=\n"
               "server_address=127.0.0.1\nserver_port=25\npolicy_context=\n"
               "compatibility_level=3.6\nmail_version=3.7.11\n\n",
               sl->sender, sl->rcpt, sl->client, sl->index, (unsigned)(sl - sl->fb->slots)) < 0
               ? -1
               : 0;
}

/* The first word of "action=WORD ...": the decision. */
static void action_word(const char *reply, char *word, size_t size)
{
    const char *a = strstr(reply, "action=");
    size_t n = 0;

    if (a == NULL) {
        snprintf(word, size, "noaction");
        return;
    }
    a += 7;
    while (a[n] != '\0' && a[n] != ' ' && a[n] != '\n' && n + 1 < size)
        n++;
    memcpy(word, a, n);
    word[n] = '\0';
}

static void policy_fail(struct fb_slot *sl, const char *why)
{
    fprintf(stderr, "filter-bench: policy connection %u: %s\n", (unsigned)(sl - sl->fb->slots),
            why);
    sl->fb->failed = true;
    event_base_loopbreak(sl->fb->base);
}

static void policy_read(struct bufferevent *bev, void *ctx)
{
    struct fb_slot *sl = ctx;
    struct evbuffer *in = bufferevent_get_input(bev);
    struct evbuffer_ptr end = evbuffer_search(in, "\n\n", 2, NULL);
    char reply[FB_REPLY_MAX], word[FB_WORD_MAX];

    if (end.pos < 0) {
        if (evbuffer_get_length(in) >= sizeof(reply))
            policy_fail(sl, "answer too long");
        return;
    }
    if (!sl->busy || (size_t)end.pos + 2 >= sizeof(reply)) {
        policy_fail(sl, "unexpected answer");
        return;
    }
    evbuffer_remove(in, reply, (size_t)end.pos + 2);
    reply[end.pos + 2] = '\0';
    action_word(reply, word, sizeof(word));
    slot_finish(sl, word);
}

static void policy_event(struct bufferevent *bev, short what, void *ctx)
{
    struct fb_slot *sl = ctx;
    int one = 1;

    if (what & BEV_EVENT_CONNECTED) {
        setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        sl->connected = true;
        return;
    }
    policy_fail(sl, (what & BEV_EVENT_EOF) ? "closed by the server" : strerror(errno));
}

static int policy_connect(struct fb *fb, struct fb_slot *sl)
{
    sl->bev = bufferevent_socket_new(fb->base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (sl->bev == NULL)
        return -1;
    bufferevent_setcb(sl->bev, policy_read, NULL, policy_event, sl);
    bufferevent_enable(sl->bev, EV_READ | EV_WRITE);
    return bufferevent_socket_connect(sl->bev, (struct sockaddr *)&fb->policy_sa,
                                      sizeof(fb->policy_sa));
}

static int parse_hostport(const char *text, struct sockaddr_in *sa)
{
    char host[64];
    const char *colon = strrchr(text, ':');
    long port;

    if (colon == NULL || (size_t)(colon - text) >= sizeof(host))
        return -1;
    memcpy(host, text, (size_t)(colon - text));
    host[colon - text] = '\0';
    port = strtol(colon + 1, NULL, 10);
    *sa = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    return port > 0 && port < 65536 && inet_pton(AF_INET, host, &sa->sin_addr) == 1 ? 0 : -1;
}

/* Opens every connection and waits (bounded) until all are up. */
static int policy_setup(struct fb *fb)
{
    uint64_t deadline = now_ns() + 10ull * 1000000000u;
    unsigned up = 0;

    if (parse_hostport(fb->o.policy, &fb->policy_sa) < 0) {
        fprintf(stderr, "filter-bench: --policy wants IPv4:PORT\n");
        return -1;
    }
    for (unsigned i = 0; i < fb->o.inflight; i++)
        if (policy_connect(fb, &fb->slots[i]) < 0)
            return -1;
    while (up < fb->o.inflight && !fb->failed && now_ns() < deadline) {
        event_base_loop(fb->base, EVLOOP_ONCE);
        up = 0;
        for (unsigned i = 0; i < fb->o.inflight; i++)
            up += fb->slots[i].connected;
    }
    return up == fb->o.inflight ? 0 : -1;
}

/* ---- a pass ---- */

static void slot_start(struct fb_slot *sl)
{
    struct fb *fb = sl->fb;
    int r;

    if (fb->next >= fb->o.triplets || fb->failed)
        return;
    sl->index = fb->next++;
    sl->busy = true;
    r = fb->o.policy != NULL ? policy_request(sl) : chain_start(sl);
    if (r < 0) {
        fprintf(stderr, "filter-bench: cannot start decision %u\n", sl->index);
        fb->failed = true;
        event_base_loopbreak(fb->base);
    }
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

    return x < y ? -1 : x > y;
}

static void pass_report(struct fb *fb, const char *name, double secs)
{
    unsigned n = fb->done;

    qsort(fb->lat_us, n, sizeof(*fb->lat_us), cmp_u32);
    printf("pass=%s n=%u inflight=%u secs=%.3f rate=%.1f p50_us=%u p99_us=%u max_us=%u outcomes=",
           name, n, fb->o.inflight, secs, secs > 0 ? n / secs : 0.0, n ? fb->lat_us[n / 2] : 0,
           n ? fb->lat_us[(size_t)((n - 1) * 0.99)] : 0, n ? fb->lat_us[n - 1] : 0);
    for (size_t i = 0; i < fb->outcome_count; i++)
        printf("%s%s:%u", i ? "," : "", fb->outcomes[i].word, fb->outcomes[i].count);
    printf("\n");
    fflush(stdout);
}

static void pass_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct fb *fb = arg;

    (void)fd;
    (void)what;
    fprintf(stderr, "filter-bench: pass not finished in %u s (%u of %u)\n", fb->o.pass_timeout_s,
            fb->done, fb->o.triplets);
    fb->failed = true;
    event_base_loopbreak(fb->base);
}

static int run_pass(struct fb *fb, const char *name)
{
    struct timeval tv = {.tv_sec = fb->o.pass_timeout_s};
    struct event *timer = evtimer_new(fb->base, pass_deadline, fb);
    uint64_t t0;

    if (timer == NULL)
        return -1;
    fb->next = fb->done = 0;
    fb->outcome_count = 0;
    evtimer_add(timer, &tv);
    t0 = now_ns();
    for (unsigned i = 0; i < fb->o.inflight; i++)
        slot_start(&fb->slots[i]);
    if (!fb->failed)
        event_base_dispatch(fb->base);
    event_free(timer);
    if (fb->failed)
        return -1;
    pass_report(fb, name, (double)(now_ns() - t0) / 1e9);
    return 0;
}

/* Runs the loop for ms (the filters' timers run meanwhile). */
static void wait_ms(struct fb *fb, unsigned ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};

    event_base_loopexit(fb->base, &tv);
    event_base_dispatch(fb->base);
}

/* ---- main ---- */

static void usage(void)
{
    fprintf(stderr,
            "usage: filter-bench (--config POSTERN.CONF | --policy IP:PORT) [--triplets N]\n"
            "       [--inflight K] [--passes new,retry,known] [--wait-ms MS]\n"
            "       [--pass-timeout S]\n");
    exit(2);
}

static void parse_opts(int argc, char **argv, struct fb_opts *o)
{
    static const struct option longs[] = {
        {"config", required_argument, NULL, 'c'},       {"policy", required_argument, NULL, 'p'},
        {"triplets", required_argument, NULL, 'n'},     {"inflight", required_argument, NULL, 'k'},
        {"passes", required_argument, NULL, 's'},       {"wait-ms", required_argument, NULL, 'w'},
        {"pass-timeout", required_argument, NULL, 't'}, {NULL, 0, NULL, 0}};
    int ch;

    *o = (struct fb_opts){
        .triplets = 20000, .inflight = 1, .passes = "new,known", .pass_timeout_s = 600};
    while ((ch = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        switch (ch) {
        case 'c':
            o->config = optarg;
            break;
        case 'p':
            o->policy = optarg;
            break;
        case 'n':
            o->triplets = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'k':
            o->inflight = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 's':
            o->passes = optarg;
            break;
        case 'w':
            o->wait_ms = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 't':
            o->pass_timeout_s = (unsigned)strtoul(optarg, NULL, 10);
            break;
        default:
            usage();
        }
    }
    if ((o->config == NULL) == (o->policy == NULL) || o->triplets == 0 ||
        o->triplets > FB_TRIPLETS_MAX || o->inflight == 0 || o->inflight > FB_INFLIGHT_MAX ||
        o->pass_timeout_s == 0)
        usage();
    if (o->inflight > o->triplets)
        o->inflight = o->triplets;
}

static int run_passes(struct fb *fb)
{
    char passes[256], *save = NULL, *name;
    bool first = true;

    snprintf(passes, sizeof(passes), "%s", fb->o.passes);
    for (name = strtok_r(passes, ",", &save); name != NULL; name = strtok_r(NULL, ",", &save)) {
        if (!first && fb->o.wait_ms > 0)
            wait_ms(fb, fb->o.wait_ms);
        first = false;
        if (run_pass(fb, name) < 0)
            return -1;
    }
    return 0;
}

static void teardown(struct fb *fb)
{
    for (unsigned i = 0; fb->slots != NULL && i < fb->o.inflight; i++) {
        chain_session_free(&fb->slots[i].cs);
        if (fb->slots[i].bev != NULL)
            bufferevent_free(fb->slots[i].bev);
    }
    chain_free(&fb->chain);
    if (fb->instance != NULL)
        fb->cfg->filtering.filters[0].module->destroy(fb->instance);
    kv_free(&fb->kv);
    postern_config_free(&fb->cfg);
    free(fb->slots);
    free(fb->lat_us);
    if (fb->base != NULL)
        event_base_free(fb->base);
}

int main(int argc, char **argv)
{
    struct fb fb = {.failed = false};
    int r;

    parse_opts(argc, argv, &fb.o);
    signal(SIGPIPE, SIG_IGN);
    log_setup("filter-bench", LOG_TARGET_STDERR, "mail", LOG_LEVEL_INFO);
    fb.base = event_base_new();
    fb.slots = calloc(fb.o.inflight, sizeof(*fb.slots));
    fb.lat_us = calloc(fb.o.triplets, sizeof(*fb.lat_us));
    if (fb.base == NULL || fb.slots == NULL || fb.lat_us == NULL)
        return 1;
    for (unsigned i = 0; i < fb.o.inflight; i++)
        fb.slots[i].fb = &fb;
    r = fb.o.policy != NULL ? policy_setup(&fb) : filter_setup(&fb);
    if (r == 0)
        r = run_passes(&fb);
    teardown(&fb);
    return r == 0 ? 0 : 1;
}

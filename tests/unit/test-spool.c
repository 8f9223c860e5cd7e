/*
 * test-spool — unit tests for lib/workpool, gateway/spool-format and
 * gateway/spool: the header and envelope formats (round trips with hostile
 * values, a table of corrupt envelopes, a table of added header lines, and
 * the gateway's smtp_txn_add_header that fills them), and
 * the spool against a real event_base in a mkdtemp directory (commit, commit
 * into hold/, group commit, detach, abort, rewrite before the commit,
 * recovery of queue/ and hold/, a
 * full disk on a tiny tmpfs, queue id uniqueness).
 *
 * Trusts nothing but cmocka and libevent; needs root only for the tmpfs test,
 * which is skipped when mount(2) is refused.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "gateway/smtp-session-private.h"
#include "lib/spool-format.h"
#include "lib/spool.h"
#include "lib/workpool.h"

struct fixture {
    char dir[64];   /* the mkdtemp directory */
    char spool_dir[96];
    struct event_base *base;
    struct spool *spool;
    bool mounted;
};

struct commit_result {
    int calls;
    int error;
    int *total; /* also counted here when set */
};

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    char error[256];

    assert_non_null(fx);
    strcpy(fx->dir, "/tmp/test-spool.XXXXXX");
    assert_non_null(mkdtemp(fx->dir));
    snprintf(fx->spool_dir, sizeof(fx->spool_dir), "%s/spool", fx->dir);
    fx->base = event_base_new();
    assert_non_null(fx->base);
    assert_int_equal(spool_open(fx->spool_dir, fx->base, &fx->spool, error, sizeof(error)), 0);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;

    spool_close(&fx->spool);
    assert_null(fx->spool);
    if (fx->mounted)
        umount2(fx->spool_dir, MNT_DETACH);
    event_base_free(fx->base);
    nftw(fx->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(fx);
    return 0;
}

/* Runs the loop until *counter reaches target; fails after 60 seconds. */
static void run_until(struct event_base *base, const int *counter, int target)
{
    const struct timeval tick = { 0, 20000 };
    time_t start = time(NULL);

    while (*counter < target) {
        assert_true(time(NULL) - start < 60);
        event_base_loopexit(base, &tick);
        event_base_loop(base, EVLOOP_ONCE);
    }
}

static void on_commit(void *ctx, int error)
{
    struct commit_result *res = ctx;

    res->calls++;
    res->error = error;
    if (res->total != NULL)
        (*res->total)++;
}

static int count_files(const char *dir, const char *sub)
{
    char path[256];
    struct dirent *de;
    int n = 0;
    DIR *d;

    snprintf(path, sizeof(path), "%s/%s", dir, sub);
    d = opendir(path);
    assert_non_null(d);
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] != '.')
            n++;
    }
    closedir(d);
    return n;
}

static void queue_path(const struct fixture *fx, const char *sub, const char *id, char *buf,
                       size_t size)
{
    snprintf(buf, size, "%s/%s/%s", fx->spool_dir, sub, id);
}

static bool exists(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0;
}

static void assert_str_or_null(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        assert_ptr_equal(a, b);
    else
        assert_string_equal(a, b);
}

/* ---- workpool ---- */

struct pool_test {
    atomic_int worked;
    int done;
    int cancelled;
    pthread_t loop_thread;
};

static void pool_work(void *ctx)
{
    struct pool_test *pt = ctx;

    atomic_fetch_add(&pt->worked, 1);
}

static void pool_done(void *ctx, bool cancelled)
{
    struct pool_test *pt = ctx;

    assert_true(pthread_equal(pthread_self(), pt->loop_thread));
    pt->done++;
    pt->cancelled += cancelled;
}

static void test_workpool(void **state)
{
    struct fixture *fx = *state;
    struct pool_test pt = { .loop_thread = pthread_self() };
    struct workpool *pool = workpool_create(fx->base, 4);

    assert_non_null(pool);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(workpool_submit(pool, pool_work, pool_done, &pt), 0);
    run_until(fx->base, &pt.done, 1000);
    assert_int_equal(atomic_load(&pt.worked), 1000);
    assert_int_equal(pt.done, 1000);
    assert_int_equal(pt.cancelled, 0);
    /* destroyed with jobs queued: destroy settles every one of them, those
     * whose work ran and those cancelled, and nothing comes afterwards */
    for (int i = 0; i < 100; i++)
        assert_int_equal(workpool_submit(pool, pool_work, pool_done, &pt), 0);
    workpool_destroy(&pool);
    assert_null(pool);
    assert_int_equal(pt.done, 1100);
    assert_int_equal(atomic_load(&pt.worked) - 1000, 100 - pt.cancelled);
    event_base_loop(fx->base, EVLOOP_NONBLOCK);
    assert_int_equal(pt.done, 1100);
    workpool_destroy(&pool);
}

static void pool_slow_work(void *ctx)
{
    usleep(20000);
    pool_work(ctx);
}

/* One thread busy with slow work: destroy finishes the running job and
 * cancels the queued ones, each settled exactly once. */
static void test_workpool_cancel(void **state)
{
    struct fixture *fx = *state;
    struct pool_test pt = { .loop_thread = pthread_self() };
    struct workpool *pool = workpool_create(fx->base, 1);

    assert_non_null(pool);
    for (int i = 0; i < 10; i++)
        assert_int_equal(workpool_submit(pool, pool_slow_work, pool_done, &pt), 0);
    workpool_destroy(&pool);
    assert_int_equal(pt.done, 10);
    assert_true(pt.cancelled >= 1);
    assert_int_equal(atomic_load(&pt.worked) + pt.cancelled, 10);
}

/* ---- the header line ---- */

static void test_header(void **state)
{
    char buf[SPOOL_HEADER_LEN], bad[SPOOL_HEADER_LEN];
    uint64_t clen = 1, eoff = 1;

    spool_header_format(buf, 0, 0);
    assert_int_equal(buf[SPOOL_HEADER_LEN - 1], '\n');
    assert_int_equal(spool_header_parse(buf, &clen, &eoff), 1);
    spool_header_format(buf, 1234, SPOOL_HEADER_LEN + 1234);
    assert_int_equal(spool_header_parse(buf, &clen, &eoff), 0);
    assert_int_equal(clen, 1234);
    assert_int_equal(eoff, SPOOL_HEADER_LEN + 1234);
    assert_memory_equal(buf, "POSTERN-SPOOL-1 content=00000000000004d2 envelope=0000000000000522",
                        66);

    spool_header_format(bad, 1234, 99); /* offset does not follow the content */
    assert_int_equal(spool_header_parse(bad, &clen, &eoff), -1);
    spool_header_format(bad, 5, 0);
    assert_int_equal(spool_header_parse(bad, &clen, &eoff), -1);
    spool_header_format(bad, UINT64_MAX, 0x4f);
    assert_int_equal(spool_header_parse(bad, &clen, &eoff), -1);
    static const size_t flips[] = { 0, 14, 24, 30, 40, 49, 60, 70, SPOOL_HEADER_LEN - 1 };
    for (size_t i = 0; i < sizeof(flips) / sizeof(flips[0]); i++) {
        memcpy(bad, buf, sizeof(bad));
        bad[flips[i]] = 'Z';
        assert_int_equal(spool_header_parse(bad, &clen, &eoff), -1);
    }
    memset(bad, 0, sizeof(bad));
    assert_int_equal(spool_header_parse(bad, &clen, &eoff), -1);
}

/* ---- envelopes ---- */

static const char *const hostile[] = {
    "a b@example.com", "100%@example.com", "line\nbreak@example.com", "tab\there",
    "用户@例子.广告", "%41%", "\x01\x1f\x7f\x20", " leading", "trailing ", "",
};
#define HOSTILE_COUNT (sizeof(hostile) / sizeof(hostile[0]))

static void fill_envelope(struct spool_envelope *env, struct spool_rcpt *rcpts, size_t count)
{
    memset(env, 0, sizeof(*env));
    strcpy(env->queue_id, "0123456789ABCDEF0123");
    env->sender = "";
    for (size_t i = 0; i < count; i++) {
        rcpts[i].addr = (char *)hostile[i % HOSTILE_COUNT];
        rcpts[i].notify = (unsigned)(i % 16);
        rcpts[i].orcpt = i % 3 == 0 ? NULL : (char *)hostile[(i + 1) % HOSTILE_COUNT];
    }
    env->rcpts = rcpts;
    env->rcpt_count = count;
    env->listener = "inbound 25";
    env->client_addr = "2001:db8::1";
    env->client_name = "unknown";
    env->helo = "\r\n%% HELO \x7f";
    env->auth_user = NULL;
    env->tls = "TLSv1.3 TLS_AES_256_GCM_SHA384 256/256";
    env->received = 1700000000;
    env->body = 2;
    env->smtputf8 = true;
    env->ret = 1;
    env->envid = "";
    env->size = 12345;
    env->add_headers = "X-Spam-Flag: YES\r\nX-Postern-Score: 7.5 (100%, a b)\r\n"
                       "\tfolded%41 line\r\n";
}

static void assert_envelope_equal(const struct spool_envelope *a, const struct spool_envelope *b)
{
    assert_string_equal(a->queue_id, b->queue_id);
    assert_str_or_null(a->sender, b->sender);
    assert_int_equal(a->rcpt_count, b->rcpt_count);
    for (size_t i = 0; i < a->rcpt_count; i++) {
        assert_string_equal(a->rcpts[i].addr, b->rcpts[i].addr);
        assert_int_equal(a->rcpts[i].notify, b->rcpts[i].notify);
        assert_str_or_null(a->rcpts[i].orcpt, b->rcpts[i].orcpt);
    }
    assert_str_or_null(a->listener, b->listener);
    assert_str_or_null(a->client_addr, b->client_addr);
    assert_str_or_null(a->client_name, b->client_name);
    assert_str_or_null(a->helo, b->helo);
    assert_str_or_null(a->auth_user, b->auth_user);
    assert_str_or_null(a->tls, b->tls);
    assert_str_or_null(a->envid, b->envid);
    assert_int_equal(a->received, b->received);
    assert_int_equal(a->body, b->body);
    assert_int_equal(a->smtputf8, b->smtputf8);
    assert_int_equal(a->ret, b->ret);
    assert_int_equal(a->size, b->size);
    assert_str_or_null(a->add_headers, b->add_headers);
}

static void test_envelope_roundtrip(void **state)
{
    static struct spool_rcpt rcpts[1000];
    struct spool_envelope env, *parsed = NULL;
    char error[256], *text, *longer;
    size_t len, end = 0;

    fill_envelope(&env, rcpts, 1000);
    text = spool_envelope_serialize(&env, &len);
    assert_non_null(text);
    assert_memory_equal(text + len - 4, "END\n", 4);
    for (size_t i = 0; i + 4 < len; i++) /* only records end lines; no raw controls */
        assert_true(text[i] == '\n' || (unsigned char)text[i] >= 0x20);
    assert_int_equal(spool_envelope_parse(text, len, &parsed, &end, error, sizeof(error)), 0);
    assert_int_equal(end, len);
    assert_envelope_equal(&env, parsed);
    spool_envelope_free(&parsed);
    assert_null(parsed);
    spool_envelope_free(&parsed);

    /* the queue manager's records after END are not the envelope's */
    longer = malloc(len + 32);
    memcpy(longer, text, len);
    memcpy(longer + len, "delivered 3 250\n", 16);
    assert_int_equal(spool_envelope_parse(longer, len + 16, &parsed, &end, error, sizeof(error)),
                     0);
    assert_int_equal(end, len);
    assert_envelope_equal(&env, parsed);
    spool_envelope_free(&parsed);
    free(longer);
    free(text);
}

static void test_envelope_sparse(void **state)
{
    struct spool_rcpt rcpt = { .addr = "postmaster" };
    struct spool_envelope env = { .queue_id = "A", .sender = "", .rcpts = &rcpt, .rcpt_count = 1 };
    struct spool_envelope *parsed = NULL;
    char error[256], *text;
    size_t len;

    text = spool_envelope_serialize(&env, &len);
    assert_non_null(text);
    assert_int_equal(spool_envelope_parse(text, len, &parsed, NULL, error, sizeof(error)), 0);
    assert_envelope_equal(&env, parsed);
    assert_null(parsed->listener);
    assert_null(parsed->rcpts[0].orcpt);
    assert_null(parsed->add_headers);
    spool_envelope_free(&parsed);
    free(text);

    /* no header lines to add: no record at all */
    env.add_headers = "";
    text = spool_envelope_serialize(&env, &len);
    assert_non_null(text);
    assert_null(memmem(text, len, "add_headers", 11));
    assert_int_equal(spool_envelope_parse(text, len, &parsed, NULL, error, sizeof(error)), 0);
    assert_null(parsed->add_headers);
    spool_envelope_free(&parsed);
    free(text);
}

#define BASE "queue_id ABC\nsender a@b\nreceived 1\nsize 0\nrcpt x@y 0\n"
#define ROW(n, e, t) { .name = (n), .error = (e), .text = (t), .len = sizeof(t) - 1 }

static const struct corrupt_case {
    const char *name;
    const char *text;
    size_t len;
    const char *error; /* expected in the error message */
} corrupt_cases[] = {
    ROW("empty", "no end marker", ""),
    ROW("no end marker", "no end marker", BASE),
    ROW("end without newline", "no end marker", BASE "END"),
    ROW("end with CR", "unknown record", BASE "END\r\n"),
    ROW("end with a space", "unknown record", BASE "END \n"),
    ROW("unknown record", "unknown record", BASE "colour red\nEND\n"),
    ROW("upper-case key", "unknown record", BASE "HELO x\nEND\n"),
    ROW("empty line", "unknown record", BASE "\nEND\n"),
    ROW("repeated sender", "repeated sender", BASE "sender c@d\nEND\n"),
    ROW("repeated queue id", "repeated queue_id", BASE "queue_id ABD\nEND\n"),
    ROW("missing queue id", "missing queue_id",
        "sender a@b\nreceived 1\nsize 0\nrcpt x@y 0\nEND\n"),
    ROW("missing sender", "missing sender", "queue_id A\nreceived 1\nsize 0\nrcpt x@y 0\nEND\n"),
    ROW("missing received", "missing received", "queue_id A\nsender a\nsize 0\nrcpt x@y 0\nEND\n"),
    ROW("missing size", "missing size", "queue_id A\nsender a\nreceived 1\nrcpt x@y 0\nEND\n"),
    ROW("no recipient", "missing rcpt", "queue_id A\nsender a\nreceived 1\nsize 0\nEND\n"),
    ROW("helo without value", "takes one value", BASE "helo\nEND\n"),
    ROW("two values", "takes one value", BASE "helo a b\nEND\n"),
    ROW("raw tab", "bad helo value", BASE "helo a\tb\nEND\n"),
    ROW("raw CR", "bad helo value", BASE "helo x\r\nEND\n"),
    ROW("raw DEL", "bad helo value", BASE "helo a\x7f\nEND\n"),
    ROW("raw NUL", "bad helo value", BASE "helo a\0b\nEND\n"),
    ROW("escaped NUL", "bad helo value", BASE "helo a%00b\nEND\n"),
    ROW("short escape", "bad helo value", BASE "helo a%4\nEND\n"),
    ROW("bad escape", "bad helo value", BASE "helo a%zz\nEND\n"),
    ROW("queue id path", "bad character in queue id",
        "queue_id ../x\nsender a\nreceived 1\nsize 0\nrcpt x@y 0\nEND\n"),
    ROW("queue id too long", "bad queue id length",
        "queue_id 0123456789012345678901234567890123\nsender a\nreceived 1\nsize 0\n"
        "rcpt x@y 0\nEND\n"),
    ROW("received not a number", "bad received",
        "queue_id A\nsender a\nreceived 12a\nsize 0\nrcpt x@y 0\nEND\n"),
    ROW("size negative", "bad size",
        "queue_id A\nsender a\nreceived 1\nsize -1\nrcpt x@y 0\nEND\n"),
    ROW("size overflow", "bad size",
        "queue_id A\nsender a\nreceived 1\nsize 99999999999999999999\nrcpt x@y 0\nEND\n"),
    ROW("body out of range", "bad body", BASE "body 4\nEND\n"),
    ROW("body negative", "bad body", BASE "body -1\nEND\n"),
    ROW("body plus sign", "bad body", BASE "body +1\nEND\n"),
    ROW("smtputf8 two", "bad smtputf8", BASE "smtputf8 2\nEND\n"),
    ROW("ret out of range", "bad ret", BASE "ret 3\nEND\n"),
    ROW("notify out of range", "bad recipient notify", BASE "rcpt a 16\nEND\n"),
    ROW("notify not a number", "bad recipient notify", BASE "rcpt a x\nEND\n"),
    ROW("rcpt without notify", "bad recipient record", BASE "rcpt a\nEND\n"),
    ROW("rcpt with four fields", "too many fields", BASE "rcpt a 0 b c\nEND\n"),
    ROW("bad orcpt", "bad recipient value", BASE "rcpt a 0 b%\nEND\n"),
    ROW("add_headers raw CR LF", "bad add_headers value", BASE "add_headers X-A:%20b\r\nEND\n"),
    ROW("add_headers bare LF", "add_headers: bare LF", BASE "add_headers X-A:%20b%0AEND\n"),
    ROW("add_headers escaped NUL", "bad add_headers value",
        BASE "add_headers X-A:%20b%00%0D%0A\nEND\n"),
    ROW("add_headers without value", "takes one value", BASE "add_headers\nEND\n"),
    ROW("repeated add_headers", "repeated add_headers",
        BASE "add_headers X-A:%20b%0D%0A\nadd_headers X-B:%20c%0D%0A\nEND\n"),
};

static void test_envelope_corrupt(void **state)
{
    for (size_t i = 0; i < sizeof(corrupt_cases) / sizeof(corrupt_cases[0]); i++) {
        const struct corrupt_case *c = &corrupt_cases[i];
        struct spool_envelope *env = NULL;
        char error[256] = "";

        if (spool_envelope_parse(c->text, c->len, &env, NULL, error, sizeof(error)) != -1)
            fail_msg("corrupt case \"%s\" parsed", c->name);
        assert_null(env);
        if (strstr(error, c->error) == NULL)
            fail_msg("corrupt case \"%s\": error \"%s\"", c->name, error);
    }
    /* and the base itself is fine */
    struct spool_envelope *env = NULL;
    char error[256];

    assert_int_equal(spool_envelope_parse(BASE "END\n", strlen(BASE "END\n"), &env, NULL, error,
                                          sizeof(error)),
                     0);
    spool_envelope_free(&env);
}

static void test_envelope_limits(void **state)
{
    const char line[] = "rcpt a 0\n";
    size_t n = 100000, len = strlen(BASE) + n * (sizeof(line) - 1) + 4;
    struct spool_envelope *env = NULL;
    char error[256], *text = malloc(len), *p = text;

    assert_non_null(text);
    p += sprintf(p, "%s", BASE);
    for (size_t i = 0; i < n; i++)
        p += sprintf(p, "%s", line);
    memcpy(p, "END\n", 4);
    assert_int_equal(spool_envelope_parse(text, len, &env, NULL, error, sizeof(error)), -1);
    assert_non_null(strstr(error, "recipients"));
    /* one less (100000 in all, with BASE's own) is fine */
    memmove(text + strlen(BASE), text + strlen(BASE) + sizeof(line) - 1,
            len - strlen(BASE) - (sizeof(line) - 1));
    len -= sizeof(line) - 1;
    assert_int_equal(spool_envelope_parse(text, len, &env, NULL, error, sizeof(error)), 0);
    assert_int_equal(env->rcpt_count, 100000);
    spool_envelope_free(&env);
    free(text);

    len = 16 * 1024 * 1024 + 1;
    text = malloc(len);
    memset(text, 'x', len);
    assert_int_equal(spool_envelope_parse(text, len, &env, NULL, error, sizeof(error)), -1);
    free(text);
}

/* ---- header lines to add ---- */

/* Escapes like the writer does (octets <= 0x20, '%' and 0x7f as %XX). */
static size_t test_escape(char *out, const char *in, size_t len)
{
    size_t o = 0;

    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];

        if (c > 0x20 && c != '%' && c != 0x7f)
            out[o++] = (char)c;
        else
            o += (size_t)sprintf(out + o, "%%%02X", c);
    }
    return o;
}

#define HROW(n, e, t) { .name = (n), .error = (e), .text = (t), .len = sizeof(t) - 1 }

/* error NULL: accepted. */
static const struct header_case {
    const char *name;
    const char *text;
    size_t len;
    const char *error;
} header_cases[] = {
    HROW("none", NULL, ""),
    HROW("one field", NULL, "X-Spam-Flag: YES\r\n"),
    HROW("two fields", NULL, "X-Spam-Flag: YES\r\nX-Postern-Score: 7.5\r\n"),
    HROW("folded", NULL,
         "Authentication-Results: mx.example;\r\n\tspf=pass smtp.mailfrom=a@example.org\r\n"
         "  dkim=none\r\n"),
    HROW("empty value", NULL, "X-Empty:\r\n"),
    HROW("tab after colon", NULL, "X-Tab:\tvalue\r\n"),
    HROW("odd but legal name", NULL, "X.!#$%&'*+-/=?^_`{|}~: v\r\n"),
    HROW("no final CR LF", "do not end with CR LF", "X-A: b"),
    HROW("no line end at all", "do not end with CR LF", "X-A: b\r\nX-B: c"),
    HROW("bare LF at the end", "bare LF", "X-A: b\n"),
    HROW("bare LF inside", "bare LF", "X-A: b\nX-B: c\r\n"),
    HROW("LF CR", "bare LF", "X-A: b\n\r"),
    HROW("bare CR inside", "bare CR", "X-A: b\rX-B: c\r\n"),
    HROW("CR at the end", "bare CR", "X-A: b\r"),
    HROW("space in the name", "bad header field name", "X A: b\r\n"),
    HROW("space before the colon", "bad header field name", "X-A : b\r\n"),
    HROW("no colon", "bad header field name", "X-A b\r\n"),
    HROW("empty name", "bad header field name", ": b\r\n"),
    HROW("8-bit name", "bad header field name", "X-\xc3\xa4: b\r\n"),
    HROW("control in the name", "bad header field name", "X-\x01: b\r\n"),
    HROW("DEL in the name", "bad header field name", "X-\x7f: b\r\n"),
    HROW("empty line after", "empty line", "X-A: b\r\n\r\n"),
    HROW("empty line first", "empty line", "\r\nX-A: b\r\n"),
    HROW("body after an empty line", "empty line", "X-A: b\r\n\r\nbody\r\n"),
    HROW("continuation first", "continuation line without a header field", " folded\r\n"),
    HROW("blank continuation", "blank continuation", "X-A: b\r\n \t\r\n"),
    HROW("control in the value", "control or 8-bit", "X-A: b\x01c\r\n"),
    HROW("DEL in the value", "control or 8-bit", "X-A: \x7f\r\n"),
    HROW("NUL in the value", "control or 8-bit", "X-A: b\0c\r\n"),
    HROW("8-bit value", "control or 8-bit", "X-A: caf\xc3\xa9\r\n"),
    HROW("8-bit continuation", "control or 8-bit", "X-A: b\r\n \xff\r\n"),
};

/* Checks one text both ways: by itself, and as a spool record (a bad one
 * makes the envelope corrupt, a good one round-trips). */
static void check_header_text(const char *name, const char *text, size_t len, const char *error)
{
    char *record = malloc(strlen(BASE) + 3 * len + 32), *p = record;
    struct spool_envelope *env = NULL;
    const char *why = NULL;
    char perror[256] = "";
    int ret = spool_add_headers_check(text, len, &why);

    if (error == NULL && ret != 0)
        fail_msg("header case \"%s\" refused: %s", name, why);
    if (error != NULL && (ret != -1 || strstr(why, error) == NULL))
        fail_msg("header case \"%s\": %d \"%s\"", name, ret, why != NULL ? why : "");
    p += sprintf(p, "%sadd_headers ", BASE);
    p += test_escape(p, text, len);
    p += sprintf(p, "\nEND\n");
    ret = spool_envelope_parse(record, (size_t)(p - record), &env, NULL, perror, sizeof(perror));
    if (error == NULL) {
        if (ret != 0)
            fail_msg("header case \"%s\" as a record: %s", name, perror);
        assert_non_null(env->add_headers);
        assert_int_equal(strlen(env->add_headers), len);
        assert_memory_equal(env->add_headers, text, len);
    } else if (ret != -1 || strstr(perror, "add_headers") == NULL) {
        fail_msg("header case \"%s\" as a record: %d \"%s\"", name, ret, perror);
    }
    spool_envelope_free(&env);
    free(record);
}

static void test_add_headers(void **state)
{
    char *text;
    size_t n;

    (void)state;
    for (size_t i = 0; i < sizeof(header_cases) / sizeof(header_cases[0]); i++)
        check_header_text(header_cases[i].name, header_cases[i].text, header_cases[i].len,
                          header_cases[i].error);

    /* a line of 998 octets is fine, 999 is not */
    text = malloc(SPOOL_ADD_HEADERS_MAX + 1024);
    memcpy(text, "X-Long: ", 8);
    memset(text + 8, 'a', SPOOL_HEADER_LINE_MAX - 8);
    memcpy(text + SPOOL_HEADER_LINE_MAX, "\r\n", 2);
    check_header_text("998 octets", text, SPOOL_HEADER_LINE_MAX + 2, NULL);
    memset(text + 8, 'a', SPOOL_HEADER_LINE_MAX - 7);
    memcpy(text + SPOOL_HEADER_LINE_MAX + 1, "\r\n", 2);
    check_header_text("999 octets", text, SPOOL_HEADER_LINE_MAX + 3, "longer than 998");
    memmove(text + 8, text, SPOOL_HEADER_LINE_MAX + 3); /* as a continuation line */
    memcpy(text, "X-A: b\r\n ", 9);
    check_header_text("999 octets folded", text, SPOOL_HEADER_LINE_MAX + 11, "longer than 998");

    /* SPOOL_ADD_HEADERS_MAX in all is fine, one more is not */
    n = 0;
    while (n < SPOOL_ADD_HEADERS_MAX) {
        size_t line = SPOOL_ADD_HEADERS_MAX - n < 900 ? SPOOL_ADD_HEADERS_MAX - n : 900;

        assert_true(line >= 8);
        memcpy(text + n, "X-F: ", 5);
        memset(text + n + 5, 'v', line - 7);
        memcpy(text + n + line - 2, "\r\n", 2);
        n += line;
    }
    assert_int_equal(n, SPOOL_ADD_HEADERS_MAX);
    check_header_text("16 KiB", text, n, NULL);
    memcpy(text + n - 2, "w\r\n", 3);
    check_header_text("16 KiB + 1", text, n + 1, "over 16 KiB");
    free(text);

    /* a record too long to be worth decoding */
    n = 3 * SPOOL_ADD_HEADERS_MAX + 1;
    text = malloc(strlen(BASE) + n + 32);
    sprintf(text, "%sadd_headers ", BASE);
    memset(text + strlen(text), 'x', n);
    memcpy(text + strlen(BASE) + 12 + n, "\nEND\n", 5);
    {
        struct spool_envelope *env = NULL;
        char error[256] = "";

        assert_int_equal(spool_envelope_parse(text, strlen(BASE) + 12 + n + 5, &env, NULL, error,
                                              sizeof(error)),
                         -1);
        assert_non_null(strstr(error, "add_headers over"));
        assert_null(env);
    }
    free(text);
}

/* The gateway's way in for the hooks: fields are appended in order; a bad
 * one, or one past the bound, is refused and leaves what was there. */
static void test_txn_add_header(void **state)
{
    struct smtp_txn t = { .add_headers = NULL };
    const char *why = NULL;
    char *big;

    (void)state;
    assert_int_equal(smtp_txn_add_header(&t, "X-Spam-Flag", "YES", &why), 0);
    assert_int_equal(smtp_txn_add_header(&t, "X-Postern-Score", "7.5 (A=5,\r\n\tB=2.5)", &why),
                     0);
    assert_string_equal(t.add_headers,
                        "X-Spam-Flag: YES\r\nX-Postern-Score: 7.5 (A=5,\r\n\tB=2.5)\r\n");
    assert_int_equal(smtp_txn_add_header(&t, "X Bad", "v", &why), -1);
    assert_non_null(strstr(why, "field name"));
    assert_int_equal(smtp_txn_add_header(&t, "X-LF", "a\nb", &why), -1);
    assert_non_null(strstr(why, "bare LF"));
    assert_int_equal(smtp_txn_add_header(&t, "X-Blank", "a\r\n\r\nbody", &why), -1);
    assert_non_null(strstr(why, "empty line"));
    big = malloc(SPOOL_ADD_HEADERS_MAX + 1);
    memset(big, 'v', SPOOL_ADD_HEADERS_MAX);
    big[SPOOL_ADD_HEADERS_MAX] = '\0';
    assert_int_equal(smtp_txn_add_header(&t, "X-Big", big, &why), -1);
    assert_non_null(strstr(why, "16 KiB"));
    /* a folded value that fits by itself, but not after the two fields */
    big[SPOOL_ADD_HEADERS_MAX - 40] = '\0';
    for (size_t i = 80; i + 80 < SPOOL_ADD_HEADERS_MAX - 40; i += 80)
        memcpy(big + i, "\r\n\t", 3);
    assert_int_equal(smtp_txn_add_header(&t, "X-Big", big, &why), -1);
    assert_non_null(strstr(why, "16 KiB"));
    free(big);
    assert_string_equal(t.add_headers,
                        "X-Spam-Flag: YES\r\nX-Postern-Score: 7.5 (A=5,\r\n\tB=2.5)\r\n");
    free(t.add_headers);
}

/* ---- the spool ---- */

static void sample_envelope(struct spool_envelope *env, struct spool_rcpt *rcpt)
{
    memset(env, 0, sizeof(*env));
    rcpt->addr = "user@example.org";
    rcpt->notify = 6;
    rcpt->orcpt = "rfc822;user@example.org";
    env->sender = "sender@example.com";
    env->rcpts = rcpt;
    env->rcpt_count = 1;
    env->client_addr = "192.0.2.1";
    env->received = time(NULL);
}

static char *read_file(const char *path, size_t *len_r)
{
    struct stat st;
    char *buf;
    int fd = open(path, O_RDONLY);

    assert_true(fd >= 0);
    assert_int_equal(fstat(fd, &st), 0);
    buf = malloc((size_t)st.st_size + 1);
    assert_int_equal(read(fd, buf, (size_t)st.st_size), st.st_size);
    close(fd);
    *len_r = (size_t)st.st_size;
    return buf;
}

/* Checks a committed file in sub/: header, exact content, envelope. */
static void check_committed_in(struct fixture *fx, const char *sub, const char *id,
                               const char *content, size_t clen)
{
    struct spool_envelope *env = NULL;
    uint64_t off = 0, len = 0;
    char path[256], error[256], *file;
    size_t flen;

    queue_path(fx, sub, id, path, sizeof(path));
    assert_int_equal(spool_read_envelope(path, &env, &off, &len, error, sizeof(error)), 0);
    assert_int_equal(off, SPOOL_HEADER_LEN);
    assert_int_equal(len, clen);
    assert_string_equal(env->queue_id, id);
    assert_int_equal(env->size, clen);
    assert_string_equal(env->sender, "sender@example.com");
    assert_string_equal(env->rcpts[0].orcpt, "rfc822;user@example.org");
    spool_envelope_free(&env);
    file = read_file(path, &flen);
    assert_true(flen > off + len + 4);
    assert_memory_equal(file + off, content, clen);
    assert_memory_equal(file + flen - 4, "END\n", 4);
    free(file);
    queue_path(fx, "tmp", id, path, sizeof(path));
    assert_false(exists(path));
    queue_path(fx, strcmp(sub, "queue") == 0 ? "hold" : "queue", id, path, sizeof(path));
    assert_false(exists(path));
}

static void check_committed(struct fixture *fx, const char *id, const char *content, size_t clen)
{
    check_committed_in(fx, "queue", id, content, clen);
}

static char *make_content(size_t len, unsigned seed)
{
    char *content = malloc(len);

    for (size_t i = 0; i < len; i++)
        content[i] = (char)((i * 31 + seed) % 251);
    return content;
}

static void commit_and_check(struct fixture *fx, size_t clen, size_t chunk)
{
    struct commit_result res = { 0, -1, NULL };
    struct spool_envelope env;
    struct spool_rcpt rcpt;
    char id[SPOOL_QUEUE_ID_MAX + 1], *content = make_content(clen, (unsigned)clen);
    struct spool_msg *msg;

    spool_new_queue_id(fx->spool, id, sizeof(id));
    msg = spool_msg_begin(fx->spool, id);
    assert_non_null(msg);
    for (size_t off = 0; off < clen; off += chunk) {
        size_t n = clen - off < chunk ? clen - off : chunk;

        assert_int_equal(spool_msg_write(msg, content + off, n), 0);
    }
    assert_int_equal(spool_msg_size(msg), clen);
    sample_envelope(&env, &rcpt);
    assert_int_equal(spool_msg_commit(msg, &env, on_commit, &res), 0);
    run_until(fx->base, &res.calls, 1);
    assert_int_equal(res.calls, 1);
    assert_int_equal(res.error, 0);
    check_committed(fx, id, content, clen);
    free(content);
}

static void test_commit(void **state)
{
    struct fixture *fx = *state;

    commit_and_check(fx, 2048, 100);         /* fits the buffer: one write */
    commit_and_check(fx, 0, 1);              /* empty content */
    commit_and_check(fx, 300 * 1024, 7000);  /* flushed, header patched by pwrite */
    commit_and_check(fx, 200 * 1024, 100000); /* writes bigger than the buffer */
    assert_int_equal(count_files(fx->spool_dir, "queue"), 4);
    assert_int_equal(count_files(fx->spool_dir, "tmp"), 0);
}

/* A HOLD verdict: the message goes to hold/ with the same durability, its
 * header lines to add with it; in a batch with queued ones, each lands in
 * its own directory. */
static void test_commit_hold(void **state)
{
    static const char headers[] = "X-Spam-Flag: YES\r\nX-Postern-Score: 12.5\r\n";
    struct fixture *fx = *state;
    struct commit_result res[10];
    char ids[10][SPOOL_QUEUE_ID_MAX + 1], path[256], error[256];
    struct spool_envelope env, *parsed = NULL;
    struct spool_rcpt rcpt;
    int total = 0;

    assert_int_equal(count_files(fx->spool_dir, "hold"), 0); /* made by spool_open */
    sample_envelope(&env, &rcpt);
    env.add_headers = (char *)headers;
    for (int i = 0; i < 10; i++) {
        struct spool_msg *msg;

        res[i] = (struct commit_result){ 0, -1, &total };
        spool_new_queue_id(fx->spool, ids[i], sizeof(ids[i]));
        msg = spool_msg_begin(fx->spool, ids[i]);
        assert_non_null(msg);
        assert_int_equal(spool_msg_write(msg, "held\r\n", 6), 0);
        if (i % 2 == 0)
            assert_int_equal(spool_msg_commit_hold(msg, &env, on_commit, &res[i]), 0);
        else
            assert_int_equal(spool_msg_commit(msg, &env, on_commit, &res[i]), 0);
    }
    run_until(fx->base, &total, 10);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(res[i].calls, 1);
        assert_int_equal(res[i].error, 0);
        check_committed_in(fx, i % 2 == 0 ? "hold" : "queue", ids[i], "held\r\n", 6);
    }
    assert_int_equal(count_files(fx->spool_dir, "hold"), 5);
    assert_int_equal(count_files(fx->spool_dir, "queue"), 5);
    assert_int_equal(count_files(fx->spool_dir, "tmp"), 0);

    queue_path(fx, "hold", ids[0], path, sizeof(path));
    assert_int_equal(spool_read_envelope(path, &parsed, NULL, NULL, error, sizeof(error)), 0);
    assert_string_equal(parsed->add_headers, headers);
    assert_int_equal(parsed->size, 6); /* the added lines are not content */
    spool_envelope_free(&parsed);

    /* a held message whose header lines would not parse back: refused at
     * once, nothing left anywhere */
    {
        struct commit_result bad = { 0, -1, NULL };
        char id[SPOOL_QUEUE_ID_MAX + 1];
        struct spool_msg *msg;

        env.add_headers = "X-Bad: bare\nLF\r\n";
        spool_new_queue_id(fx->spool, id, sizeof(id));
        msg = spool_msg_begin(fx->spool, id);
        assert_non_null(msg);
        assert_int_equal(spool_msg_write(msg, "x\r\n", 3), 0);
        assert_int_equal(spool_msg_commit_hold(msg, &env, on_commit, &bad), -1);
        assert_int_equal(errno, EINVAL);
        event_base_loop(fx->base, EVLOOP_NONBLOCK);
        assert_int_equal(bad.calls, 0);
        assert_int_equal(count_files(fx->spool_dir, "tmp"), 0);
        assert_int_equal(count_files(fx->spool_dir, "hold"), 5);
    }
}

/* Commits still pending when the spool closes land in hold/ too. */
static void test_close_drains_hold(void **state)
{
    struct fixture *fx = *state;
    struct commit_result res = { 0, -1, NULL };
    struct spool_envelope env;
    struct spool_rcpt rcpt;
    char id[SPOOL_QUEUE_ID_MAX + 1];
    struct spool_msg *msg;

    sample_envelope(&env, &rcpt);
    spool_new_queue_id(fx->spool, id, sizeof(id));
    msg = spool_msg_begin(fx->spool, id);
    assert_int_equal(spool_msg_write(msg, "data\r\n", 6), 0);
    assert_int_equal(spool_msg_commit_hold(msg, &env, on_commit, &res), 0);
    spool_close(&fx->spool);
    assert_int_equal(res.calls, 1);
    assert_int_equal(res.error, 0);
    check_committed_in(fx, "hold", id, "data\r\n", 6);
}

static void test_write_evbuffer(void **state)
{
    struct fixture *fx = *state;
    struct commit_result res = { 0, -1, NULL };
    struct evbuffer *eb = evbuffer_new();
    char *content = make_content(100000, 3);
    struct spool_envelope env;
    struct spool_rcpt rcpt;
    char id[SPOOL_QUEUE_ID_MAX + 1];
    struct spool_msg *msg;

    for (size_t off = 0; off < 100000; off += 10000) /* several chains */
        evbuffer_add(eb, content + off, 10000);
    spool_new_queue_id(fx->spool, id, sizeof(id));
    msg = spool_msg_begin(fx->spool, id);
    assert_non_null(msg);
    assert_int_equal(spool_msg_write_evbuffer(msg, eb), 0);
    assert_int_equal(evbuffer_get_length(eb), 0);
    sample_envelope(&env, &rcpt);
    assert_int_equal(spool_msg_commit(msg, &env, on_commit, &res), 0);
    run_until(fx->base, &res.calls, 1);
    assert_int_equal(res.error, 0);
    check_committed(fx, id, content, 100000);
    evbuffer_free(eb);
    free(content);
}

#define MANY 200

static void test_group_commit(void **state)
{
    struct fixture *fx = *state;
    static struct commit_result res[MANY];
    static char ids[MANY][SPOOL_QUEUE_ID_MAX + 1];
    struct spool_envelope env;
    struct spool_rcpt rcpt;
    int total = 0;
    char *content = make_content(2048, 9);

    memset(res, 0, sizeof(res));
    sample_envelope(&env, &rcpt);
    for (int i = 0; i < MANY; i++) {
        struct spool_msg *msg;

        spool_new_queue_id(fx->spool, ids[i], sizeof(ids[i]));
        msg = spool_msg_begin(fx->spool, ids[i]);
        assert_non_null(msg);
        assert_int_equal(spool_msg_write(msg, content, 2048), 0);
        res[i].error = -1;
        res[i].total = &total;
        assert_int_equal(spool_msg_commit(msg, &env, on_commit, &res[i]), 0);
    }
    run_until(fx->base, &total, MANY);
    for (int i = 0; i < MANY; i++) {
        assert_int_equal(res[i].calls, 1);
        assert_int_equal(res[i].error, 0);
        check_committed(fx, ids[i], content, 2048);
    }
    assert_int_equal(count_files(fx->spool_dir, "queue"), MANY);
    event_base_loop(fx->base, EVLOOP_NONBLOCK); /* no second callback */
    for (int i = 0; i < MANY; i++)
        assert_int_equal(res[i].calls, 1);
    free(content);
}

static void test_detach(void **state)
{
    struct fixture *fx = *state;
    struct commit_result res = { 0, -1, NULL }, other = { 0, -1, NULL };
    struct spool_envelope env;
    struct spool_rcpt rcpt;
    char id[SPOOL_QUEUE_ID_MAX + 1], id2[SPOOL_QUEUE_ID_MAX + 1];
    struct spool_msg *msg, *msg2;

    sample_envelope(&env, &rcpt);
    spool_new_queue_id(fx->spool, id, sizeof(id));
    spool_new_queue_id(fx->spool, id2, sizeof(id2));
    msg = spool_msg_begin(fx->spool, id);
    msg2 = spool_msg_begin(fx->spool, id2);
    assert_int_equal(spool_msg_write(msg, "hello\r\n", 7), 0);
    assert_int_equal(spool_msg_write(msg2, "world\r\n", 7), 0);
    assert_int_equal(spool_msg_commit(msg, &env, on_commit, &res), 0);
    spool_msg_detach(msg);
    assert_int_equal(spool_msg_commit(msg2, &env, on_commit, &other), 0);
    run_until(fx->base, &other.calls, 1);
    spool_close(&fx->spool);
    assert_int_equal(res.calls, 0);
    assert_int_equal(other.calls, 1);
    check_committed(fx, id, "hello\r\n", 7);
    check_committed(fx, id2, "world\r\n", 7);
}

/* A rewrite before the commit: the content is readable through
 * spool_msg_content; the new one goes to tmp/<id>.new, takes the old one's
 * place on finish, and is what the commit makes durable (the envelope's
 * size follows it); a rewrite aborted or failing leaves the message as it
 * was and nothing behind. */
static void test_rewrite(void **state)
{
    struct fixture *fx = *state;
    struct commit_result res = { 0, -1, NULL };
    char id[SPOOL_QUEUE_ID_MAX + 1], path[256], buf[64];
    char *big = make_content(200000, 5);
    struct spool_envelope env, *parsed = NULL;
    struct spool_rcpt rcpt;
    struct spool_msg *msg, *dst;
    uint64_t off, len;
    int fd;

    sample_envelope(&env, &rcpt);
    spool_new_queue_id(fx->spool, id, sizeof(id));
    msg = spool_msg_begin(fx->spool, id);
    assert_int_equal(spool_msg_write(msg, "old content\r\n", 13), 0);
    assert_int_equal(spool_msg_content(msg, &fd, &off, &len), 0);
    assert_int_equal(len, 13);
    assert_int_equal(pread(fd, buf, 13, (off_t)off), 13); /* readable: the filters read it */
    assert_memory_equal(buf, "old content\r\n", 13);

    /* aborted: the message keeps its content */
    dst = spool_msg_rewrite_begin(msg);
    assert_non_null(dst);
    assert_int_equal(count_files(fx->spool_dir, "tmp"), 2);
    assert_int_equal(spool_msg_write(dst, "x\r\n", 3), 0);
    spool_msg_abort(&dst);
    assert_int_equal(count_files(fx->spool_dir, "tmp"), 1);
    assert_int_equal(spool_msg_size(msg), 13);

    /* the rename fails (its file vanished): -1, the message as it was */
    dst = spool_msg_rewrite_begin(msg);
    assert_non_null(dst);
    snprintf(path, sizeof(path), "%s/tmp/%s.new", fx->spool_dir, id);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(spool_msg_rewrite_finish(msg, &dst), -1);
    assert_int_equal(errno, ENOENT);
    assert_null(dst);
    assert_int_equal(spool_msg_size(msg), 13);
    assert_int_equal(count_files(fx->spool_dir, "tmp"), 1);

    /* done: larger than the write buffer, so both flushed and buffered */
    dst = spool_msg_rewrite_begin(msg);
    assert_non_null(dst);
    assert_int_equal(spool_msg_write(dst, big, 200000), 0);
    assert_int_equal(spool_msg_write(dst, "tail\r\n", 6), 0);
    assert_int_equal(spool_msg_rewrite_finish(msg, &dst), 0);
    assert_null(dst);
    assert_int_equal(count_files(fx->spool_dir, "tmp"), 1);
    assert_int_equal(spool_msg_size(msg), 200006);
    assert_int_equal(spool_msg_write(msg, "more\r\n", 6), 0); /* appends go on */
    assert_int_equal(spool_msg_commit(msg, &env, on_commit, &res), 0);
    run_until(fx->base, &res.calls, 1);
    assert_int_equal(res.error, 0);
    big = realloc(big, 200012);
    memcpy(big + 200000, "tail\r\nmore\r\n", 12);
    check_committed(fx, id, big, 200012);
    queue_path(fx, "queue", id, path, sizeof(path));
    assert_int_equal(spool_read_envelope(path, &parsed, NULL, NULL, buf, sizeof(buf)), 0);
    assert_int_equal(parsed->size, 200012);
    spool_envelope_free(&parsed);
    assert_int_equal(count_files(fx->spool_dir, "tmp"), 0);
    free(big);
}

static void test_abort(void **state)
{
    struct fixture *fx = *state;
    char id[SPOOL_QUEUE_ID_MAX + 1], path[256];
    struct spool_msg *msg;

    spool_new_queue_id(fx->spool, id, sizeof(id));
    msg = spool_msg_begin(fx->spool, id);
    assert_non_null(msg);
    queue_path(fx, "tmp", id, path, sizeof(path));
    assert_true(exists(path));
    assert_int_equal(spool_msg_write(msg, "x", 1), 0);
    spool_msg_abort(&msg);
    assert_null(msg);
    spool_msg_abort(&msg);
    assert_false(exists(path));
    assert_int_equal(count_files(fx->spool_dir, "tmp"), 0);
    assert_int_equal(count_files(fx->spool_dir, "queue"), 0);

    /* a queue id in use is refused */
    msg = spool_msg_begin(fx->spool, id);
    assert_non_null(msg);
    assert_null(spool_msg_begin(fx->spool, id));
    assert_int_equal(errno, EEXIST);
    spool_msg_abort(&msg);
}

static void test_close_drains(void **state)
{
    struct fixture *fx = *state;
    struct commit_result res[5];
    struct spool_envelope env;
    struct spool_rcpt rcpt;
    char id[SPOOL_QUEUE_ID_MAX + 1];

    sample_envelope(&env, &rcpt);
    for (int i = 0; i < 5; i++) {
        struct spool_msg *msg;

        res[i].calls = 0;
        res[i].error = -1;
        res[i].total = NULL;

        spool_new_queue_id(fx->spool, id, sizeof(id));
        msg = spool_msg_begin(fx->spool, id);
        assert_int_equal(spool_msg_write(msg, "data\r\n", 6), 0);
        assert_int_equal(spool_msg_commit(msg, &env, on_commit, &res[i]), 0);
    }
    spool_close(&fx->spool); /* without running the loop */
    for (int i = 0; i < 5; i++) {
        assert_int_equal(res[i].calls, 1);
        assert_int_equal(res[i].error, 0);
    }
    assert_int_equal(count_files(fx->spool_dir, "queue"), 5);
}

static void write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_CREAT | O_EXCL | O_WRONLY, 0600);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
}

/* A spool file with the given header numbers, content "hi\r\n" and tail. */
static void write_spool_file(const char *path, uint64_t clen, uint64_t eoff, const char *tail)
{
    char buf[4096];

    spool_header_format(buf, clen, eoff);
    memcpy(buf + SPOOL_HEADER_LEN, "hi\r\n", 4);
    strcpy(buf + SPOOL_HEADER_LEN + 4, tail);
    write_file(path, buf, SPOOL_HEADER_LEN + 4 + strlen(tail));
}

static void check_read(const struct fixture *fx, const char *id, int expect)
{
    struct spool_envelope *env = NULL;
    uint64_t off = 0, len = 0;
    char path[256], error[256] = "";

    queue_path(fx, "queue", id, path, sizeof(path));
    assert_int_equal(spool_read_envelope(path, &env, &off, &len, error, sizeof(error)), expect);
    assert_true(expect == 0 ? env != NULL : env == NULL && error[0] != '\0');
    spool_envelope_free(&env);
}

/* Leaves one committed message, then plants a file of every kind. */
static void plant_recover_files(struct fixture *fx)
{
    const uint64_t eoff = SPOOL_HEADER_LEN + 4;
    const char *garbage = "garbage garbage garbage garbage garbage garbage garbage garbage "
                          "garbage garbage garbage\n";
    char path[256];

    commit_and_check(fx, 2048, 512);
    spool_close(&fx->spool);
    queue_path(fx, "tmp", "T1", path, sizeof(path));
    write_file(path, "partial", 7);
    queue_path(fx, "tmp", "T2", path, sizeof(path));
    write_file(path, "", 0);
    queue_path(fx, "queue", "ZERO", path, sizeof(path));
    write_spool_file(path, 0, 0, "");
    queue_path(fx, "queue", "NOEND", path, sizeof(path));
    write_spool_file(path, 4, eoff, "queue_id NOEND\nsender a\nreceived 1\nsize 4\nrcpt b 0\n");
    queue_path(fx, "queue", "SHORT", path, sizeof(path));
    write_file(path, "POSTERN", 7);
    queue_path(fx, "queue", "GOOD", path, sizeof(path));
    write_spool_file(path, 4, eoff, "queue_id GOOD\nsender a\nreceived 1\nsize 4\nrcpt b 0\nEND\n");
    queue_path(fx, "queue", "BADHDR", path, sizeof(path));
    write_file(path, garbage, strlen(garbage));
    queue_path(fx, "queue", "BADREC", path, sizeof(path));
    write_spool_file(path, 4, eoff, "queue_id BADREC\nbogus 1\nEND\n");
    queue_path(fx, "queue", "BADSIZE", path, sizeof(path));
    write_spool_file(path, 4, eoff, "queue_id B\nsender a\nreceived 1\nsize 5\nrcpt b 0\nEND\n");
}

static void test_recover(void **state)
{
    struct fixture *fx = *state;
    char path[256], error[256];

    plant_recover_files(fx);
    check_read(fx, "ZERO", 1);
    check_read(fx, "NOEND", 1);
    check_read(fx, "SHORT", 1);
    check_read(fx, "GOOD", 0);
    check_read(fx, "BADHDR", -1);
    check_read(fx, "BADREC", -1);
    check_read(fx, "BADSIZE", -1);
    check_read(fx, "MISSING", -1);

    assert_int_equal(spool_recover(fx->spool_dir, error, sizeof(error)), 8);
    assert_int_equal(count_files(fx->spool_dir, "tmp"), 0);
    assert_int_equal(count_files(fx->spool_dir, "queue"), 2);
    queue_path(fx, "queue", "GOOD", path, sizeof(path));
    assert_true(exists(path));
    assert_int_equal(count_files(fx->spool_dir, "corrupt"), 3);
    queue_path(fx, "corrupt", "BADHDR", path, sizeof(path));
    assert_true(exists(path));
    queue_path(fx, "corrupt", "BADREC", path, sizeof(path));
    assert_true(exists(path));
    /* a second scan finds nothing to do */
    assert_int_equal(spool_recover(fx->spool_dir, error, sizeof(error)), 0);
    snprintf(path, sizeof(path), "%s/nonexistent", fx->dir);
    assert_int_equal(spool_recover(path, error, sizeof(error)), -1);
}

/* hold/ is scanned like queue/: complete files stay where they are (the
 * queue manager never sees them), incomplete ones go, corrupt ones are
 * moved aside. */
static void test_recover_hold(void **state)
{
    struct fixture *fx = *state;
    const uint64_t eoff = SPOOL_HEADER_LEN + 4;
    char path[256], error[256];
    char id[SPOOL_QUEUE_ID_MAX + 1];
    struct commit_result res = { 0, -1, NULL };
    struct spool_envelope env;
    struct spool_rcpt rcpt;
    struct spool_msg *msg;

    sample_envelope(&env, &rcpt);
    env.add_headers = "X-Spam-Flag: YES\r\n";
    spool_new_queue_id(fx->spool, id, sizeof(id));
    msg = spool_msg_begin(fx->spool, id);
    assert_int_equal(spool_msg_write(msg, "held\r\n", 6), 0);
    assert_int_equal(spool_msg_commit_hold(msg, &env, on_commit, &res), 0);
    run_until(fx->base, &res.calls, 1);
    assert_int_equal(res.error, 0);
    spool_close(&fx->spool);

    queue_path(fx, "hold", "GOOD", path, sizeof(path));
    write_spool_file(path, 4, eoff, "queue_id GOOD\nsender a\nreceived 1\nsize 4\nrcpt b 0\nEND\n"
                                    "T 1700000000 1\n");
    queue_path(fx, "hold", "NOEND", path, sizeof(path));
    write_spool_file(path, 4, eoff, "queue_id NOEND\nsender a\nreceived 1\nsize 4\nrcpt b 0\n");
    queue_path(fx, "hold", "BADHDRS", path, sizeof(path));
    write_spool_file(path, 4, eoff,
                     "queue_id BADHDRS\nsender a\nreceived 1\nsize 4\nrcpt b 0\n"
                     "add_headers X-A:%20b%0A\nEND\n");

    assert_int_equal(spool_recover(fx->spool_dir, error, sizeof(error)), 2);
    assert_int_equal(count_files(fx->spool_dir, "hold"), 2);
    assert_int_equal(count_files(fx->spool_dir, "queue"), 0);
    check_committed_in(fx, "hold", id, "held\r\n", 6);
    queue_path(fx, "hold", "GOOD", path, sizeof(path));
    assert_true(exists(path));
    queue_path(fx, "corrupt", "BADHDRS", path, sizeof(path));
    assert_true(exists(path));
    assert_int_equal(spool_recover(fx->spool_dir, error, sizeof(error)), 0);
}

static void assert_spool_empty(const struct fixture *fx)
{
    assert_int_equal(count_files(fx->spool_dir, "tmp"), 0);
    assert_int_equal(count_files(fx->spool_dir, "queue"), 0);
}

/* Fails while writing (a flush): sticky, then the commit fails too. */
static void disk_full_while_writing(struct fixture *fx, const char *content)
{
    struct commit_result res = { 0, -1, NULL };
    char id[SPOOL_QUEUE_ID_MAX + 1];
    struct spool_envelope env;
    struct spool_rcpt rcpt;
    struct spool_msg *msg;
    int ret = 0;

    sample_envelope(&env, &rcpt);
    spool_new_queue_id(fx->spool, id, sizeof(id));
    msg = spool_msg_begin(fx->spool, id);
    assert_non_null(msg);
    for (int i = 0; i < 64 && ret == 0; i++)
        ret = spool_msg_write(msg, content, 8192);
    assert_int_equal(ret, -1);
    assert_int_equal(errno, ENOSPC);
    assert_int_equal(spool_msg_write(msg, "x", 1), -1);
    assert_int_equal(errno, ENOSPC);
    assert_int_equal(spool_msg_commit(msg, &env, on_commit, &res), -1);
    assert_int_equal(errno, ENOSPC);
    event_base_loop(fx->base, EVLOOP_NONBLOCK);
    assert_int_equal(res.calls, 0);
    assert_spool_empty(fx);
}

/* Fails at commit: the content was still in the buffer. */
static void disk_full_at_commit(struct fixture *fx, const char *content)
{
    struct commit_result res = { 0, -1, NULL };
    char id[SPOOL_QUEUE_ID_MAX + 1], path[256];
    struct spool_envelope env;
    struct spool_rcpt rcpt;
    struct spool_msg *msg;
    int fd;

    snprintf(path, sizeof(path), "%s/filler", fx->spool_dir);
    fd = open(path, O_CREAT | O_WRONLY, 0600);
    for (int i = 0; i < 4; i++)
        assert_int_equal(write(fd, content, 8192), 8192);
    close(fd);
    sample_envelope(&env, &rcpt);
    spool_new_queue_id(fx->spool, id, sizeof(id));
    msg = spool_msg_begin(fx->spool, id);
    for (int i = 0; i < 6; i++)
        assert_int_equal(spool_msg_write(msg, content, 8192), 0);
    assert_int_equal(spool_msg_commit(msg, &env, on_commit, &res), -1);
    assert_int_equal(errno, ENOSPC);
    event_base_loop(fx->base, EVLOOP_NONBLOCK);
    assert_int_equal(res.calls, 0);
    assert_spool_empty(fx);
    unlink(path);
}

/* The spool's file system is a 64 KiB tmpfs: a message that does not fit
 * fails with ENOSPC, stickily, and leaves nothing behind. */
static void test_disk_full(void **state)
{
    struct fixture *fx = *state;
    char error[256], *content;

    spool_close(&fx->spool);
    if (mount("tmpfs", fx->spool_dir, "tmpfs", 0, "size=64k,mode=0700") < 0)
        skip();
    fx->mounted = true;
    assert_int_equal(spool_open(fx->spool_dir, fx->base, &fx->spool, error, sizeof(error)), 0);
    assert_true(spool_has_space(fx->spool, 16 * 1024));
    assert_false(spool_has_space(fx->spool, 1024 * 1024));
    content = make_content(8192, 1);
    disk_full_while_writing(fx, content);
    disk_full_at_commit(fx, content);
    free(content);
}

static int compare_ids(const void *a, const void *b)
{
    return strcmp(a, b);
}

static void test_queue_ids(void **state)
{
    struct fixture *fx = *state;
    enum { N = 100000, W = 21 };
    char(*ids)[W] = malloc((size_t)N * W);

    for (int i = 0; i < N; i++) {
        spool_new_queue_id(fx->spool, ids[i], W);
        assert_int_equal(strlen(ids[i]), 20);
        assert_int_equal(strspn(ids[i], "0123456789ABCDEF"), 20);
    }
    qsort(ids, N, W, compare_ids);
    for (int i = 1; i < N; i++)
        assert_string_not_equal(ids[i - 1], ids[i]);
    free(ids);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_workpool, setup, teardown),
        cmocka_unit_test_setup_teardown(test_workpool_cancel, setup, teardown),
        cmocka_unit_test(test_header),
        cmocka_unit_test(test_envelope_roundtrip),
        cmocka_unit_test(test_envelope_sparse),
        cmocka_unit_test(test_envelope_corrupt),
        cmocka_unit_test(test_envelope_limits),
        cmocka_unit_test(test_add_headers),
        cmocka_unit_test(test_txn_add_header),
        cmocka_unit_test_setup_teardown(test_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_hold, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_drains_hold, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_evbuffer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_detach, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abort, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rewrite, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_drains, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recover, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recover_hold, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disk_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_ids, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

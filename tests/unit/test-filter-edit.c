/*
 * test-filter-edit — filters/edit (the message edits a filter records) and
 * how the chain merges them: a table of edits that must be recorded or
 * refused (header rules of filter_call_add_header, addresses, ESMTP
 * parameters), the limits (edits per list, text, body size), the body kept
 * in memory and past FILTER_EDIT_BODY_MEM in an unlinked file, merging (all
 * or nothing, the later body wins); then, through a real chain on an
 * event_base with test filters written here, that edits are taken only at
 * FILTER_EOM, merged in link order whatever the completion order, dropped
 * with a failed or timed-out call's symbols, dropped whole past the
 * transaction's limit, bounded by chain_set_edit_limits, and freed by
 * chain_session_reset or taken by chain_session_take_edits.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "filters/chain.h"
#include "filters/edit.h"
#include "filters/filter.h"
#include "tests/unit/loop-test.h"

#define RUN_MAX_MS 5000

/* ---- the list on its own ---- */

enum op { INS, CHG, SENDER, ADD, DEL };

struct edit_row {
    const char *what;
    enum op op;
    size_t index;
    const char *name, *value, *params;
    int ret;
};

static const struct edit_row edit_rows[] = {
    {"insert", INS, 0, "X-A", "v", NULL, 0},
    {"insert past the end", INS, 99999, "X-A", "v", NULL, 0},
    {"insert folded", INS, 1, "X-A", "one\r\n\ttwo", NULL, 0},
    {"insert empty value", INS, 1, "X-A", "", NULL, 0},
    {"insert name with colon", INS, 0, "X:A", "v", NULL, -1},
    {"insert empty name", INS, 0, "", "v", NULL, -1},
    {"insert name with space", INS, 0, "X A", "v", NULL, -1},
    {"insert name too long", INS, 0,
     "X-1234567890123456789012345678901234567890123456789012345678901234", "v", NULL, -1},
    {"insert bare LF", INS, 0, "X-A", "a\nb", NULL, -1},
    {"insert CR LF not a fold", INS, 0, "X-A", "a\r\nInjected: yes", NULL, -1},
    {"insert 8-bit", INS, 0, "X-A", "caf\xc3\xa9", NULL, -1},
    {"insert NULL value", INS, 0, "X-A", NULL, NULL, -1},
    {"change", CHG, 1, "Subject", "new", NULL, 0},
    {"change index 0", CHG, 0, "Subject", "new", NULL, 0},
    {"delete", CHG, 2, "Subject", NULL, NULL, 0},
    {"change bad value", CHG, 1, "Subject", "a\rb", NULL, -1},
    {"change bad name", CHG, 1, "Sub ject", "x", NULL, -1},
    {"sender", SENDER, 0, NULL, "<new@example.org>", NULL, 0},
    {"sender bare", SENDER, 0, NULL, "new@example.org", NULL, 0},
    {"sender null", SENDER, 0, NULL, "<>", NULL, 0},
    {"sender params", SENDER, 0, NULL, "<a@example.org>", "RET=HDRS ENVID=x SIZE=99", 0},
    {"sender bad params", SENDER, 0, NULL, "<a@example.org>", "FOO=bar", -1},
    {"sender garbage after", SENDER, 0, NULL, "<a@example.org> junk", NULL, -1},
    {"sender bad", SENDER, 0, NULL, "<a@@example.org>", NULL, -1},
    {"sender NULL", SENDER, 0, NULL, NULL, NULL, -1},
    {"rcpt", ADD, 0, NULL, "<r@example.org>", NULL, 0},
    {"rcpt postmaster", ADD, 0, NULL, "<Postmaster>", NULL, 0},
    {"rcpt utf-8", ADD, 0, NULL, "<j\xc3\xb6rg@example.org>", NULL, 0},
    {"rcpt params", ADD, 0, NULL, "<r@example.org>", "NOTIFY=NEVER ORCPT=rfc822;r@example.org", 0},
    {"rcpt bad params", ADD, 0, NULL, "<r@example.org>", "NOTIFY=SOMETIMES", -1},
    {"rcpt null", ADD, 0, NULL, "<>", NULL, -1},
    {"rcpt trailing spaces", ADD, 0, NULL, " <r@example.org>  ", NULL, 0},
    {"delete rcpt", DEL, 0, NULL, "r@example.org", NULL, 0},
    {"delete rcpt bad", DEL, 0, NULL, "r@", NULL, -1},
};

static int row_apply(struct filter_edits *e, const struct edit_row *r)
{
    switch (r->op) {
    case INS:
        return filter_edits_insert_header(e, r->index, r->name, r->value, "t");
    case CHG:
        return filter_edits_change_header(e, r->name, r->index, r->value, "t");
    case SENDER:
        return filter_edits_change_sender(e, r->value, r->params, "t");
    case ADD:
        return filter_edits_add_rcpt(e, r->value, r->params, "t");
    case DEL:
        return filter_edits_delete_rcpt(e, r->value, "t");
    }
    return -2;
}

static void test_record_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(edit_rows) / sizeof(edit_rows[0]); i++) {
        const struct edit_row *r = &edit_rows[i];
        struct filter_edits *e = filter_edits_new(NULL);
        const struct filter_edit *ed;

        assert_non_null(e);
        if (row_apply(e, r) != r->ret)
            fail_msg("row \"%s\": expected %d", r->what, r->ret);
        assert_int_equal(filter_edits_count(e), r->ret == 0 ? 1 : 0);
        if (r->ret == 0) {
            ed = filter_edits_at(e, 0);
            assert_string_equal(ed->by, "t");
            if (r->op == INS || r->op == CHG) {
                assert_string_equal(ed->name, r->name);
                assert_true(filter_edits_touch_content(e));
                assert_false(filter_edits_touch_envelope(e));
            } else {
                assert_null(ed->name);
                assert_string_equal(ed->value, r->value);
                assert_false(filter_edits_touch_content(e));
                assert_true(filter_edits_touch_envelope(e));
            }
            if (r->op == CHG)
                assert_int_equal(ed->index, r->index == 0 ? 1 : r->index);
            if (r->op == CHG && r->value == NULL)
                assert_null(ed->value);
        }
        filter_edits_free(&e);
        assert_null(e);
    }
    {
        struct filter_edits *none = NULL;

        filter_edits_free(&none); /* NULL-safe */
    }
}

static void test_record_order_and_limit(void **state)
{
    struct filter_edits *e = filter_edits_new(NULL);
    char name[32];

    (void)state;
    for (int i = 0; i < FILTER_EDITS_MAX; i++) {
        snprintf(name, sizeof(name), "X-%d", i);
        assert_int_equal(filter_edits_insert_header(e, (size_t)i, name, "v", "t"), 0);
    }
    assert_int_equal(filter_edits_insert_header(e, 0, "X-Over", "v", "t"), -1);
    assert_int_equal(filter_edits_add_rcpt(e, "a@example.org", NULL, "t"), -1);
    assert_int_equal(filter_edits_count(e), FILTER_EDITS_MAX);
    for (int i = 0; i < FILTER_EDITS_MAX; i++) {
        snprintf(name, sizeof(name), "X-%d", i);
        assert_string_equal(filter_edits_at(e, (size_t)i)->name, name);
        assert_int_equal(filter_edits_at(e, (size_t)i)->index, i);
    }
    assert_null(filter_edits_at(e, FILTER_EDITS_MAX));
    filter_edits_free(&e);

    /* a smaller configured limit, and the text limit */
    e = filter_edits_new(&(struct filter_edit_limits){.max_edits = 2});
    assert_int_equal(filter_edits_delete_rcpt(e, "a@example.org", "t"), 0);
    assert_int_equal(filter_edits_delete_rcpt(e, "b@example.org", "t"), 0);
    assert_int_equal(filter_edits_delete_rcpt(e, "c@example.org", "t"), -1);
    filter_edits_free(&e);
    {
        char *big = malloc(FILTER_HEADER_VALUE_MAX + 1);
        int ok = 0;

        memset(big, 'x', FILTER_HEADER_VALUE_MAX);
        big[FILTER_HEADER_VALUE_MAX] = '\0';
        e = filter_edits_new(NULL);
        while (filter_edits_insert_header(e, 0, "X-Big", big, "t") == 0)
            ok++;
        /* FILTER_EDIT_TEXT_MAX / (4000 + 5) */
        assert_int_equal(ok, FILTER_EDIT_TEXT_MAX / (FILTER_HEADER_VALUE_MAX + 5));
        assert_int_equal(filter_edits_insert_header(e, 0, "X-Small", "v", "t"), 0);
        filter_edits_free(&e);
        free(big);
    }
}

static bool dir_empty(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int n = 0;

    assert_non_null(d);
    while ((de = readdir(d)) != NULL)
        n += de->d_name[0] != '.';
    closedir(d);
    return n == 0;
}

static void check_body(const struct filter_edits *e, const char *want, size_t len)
{
    char *got = malloc(len + 1);
    size_t off = 0;
    ssize_t n;

    assert_true(filter_edits_body_replaced(e));
    assert_int_equal(filter_edits_body_len(e), len);
    /* odd-sized reads across the memory/file boundary */
    while ((n = filter_edits_body_read(e, off, got + off, off % 3 == 0 ? 7777 : 65536)) > 0)
        off += (size_t)n;
    assert_int_equal(n, 0);
    assert_int_equal(off, len);
    assert_memory_equal(got, want, len);
    free(got);
}

/* A body of 300 KB in 7,000-octet chunks: memory only, then with the part
 * past FILTER_EDIT_BODY_MEM in an unlinked file of tmp_dir. */
static void test_body(void **state)
{
    const size_t len = 300 * 1000;
    char *body = malloc(len), dir[] = "/tmp/test-filter-edit.XXXXXX";
    struct filter_edits *e;

    (void)state;
    for (size_t i = 0; i < len; i++)
        body[i] = (char)('a' + i % 26);
    assert_non_null(mkdtemp(dir));
    for (int spill = 0; spill < 2; spill++) {
        e = filter_edits_new(&(struct filter_edit_limits){.tmp_dir = spill ? dir : NULL});
        assert_false(filter_edits_body_replaced(e));
        assert_false(filter_edits_touch_content(e));
        for (size_t off = 0; off < len; off += 7000)
            assert_int_equal(
                filter_edits_append_body(e, body + off, len - off < 7000 ? len - off : 7000, "b"),
                0);
        assert_true(filter_edits_touch_content(e));
        assert_string_equal(filter_edits_body_by(e), "b");
        check_body(e, body, len);
        assert_true(dir_empty(dir)); /* the file has no name */
        filter_edits_free(&e);
    }
    /* an empty replacement is a replacement */
    e = filter_edits_new(NULL);
    assert_int_equal(filter_edits_append_body(e, NULL, 0, "b"), 0);
    assert_true(filter_edits_body_replaced(e));
    assert_int_equal(filter_edits_body_len(e), 0);
    filter_edits_free(&e);
    /* past body_max: the whole body goes, later chunks fail */
    e = filter_edits_new(&(struct filter_edit_limits){.body_max = 10});
    assert_int_equal(filter_edits_append_body(e, "12345", 5, "b"), 0);
    assert_int_equal(filter_edits_append_body(e, "123456", 6, "b"), -1);
    assert_false(filter_edits_body_replaced(e));
    assert_int_equal(filter_edits_append_body(e, "1", 1, "b"), -1);
    assert_false(filter_edits_touch_content(e));
    filter_edits_free(&e);
    /* a directory that cannot take the file fails the append */
    e = filter_edits_new(&(struct filter_edit_limits){.tmp_dir = "/nonexistent/dir"});
    assert_int_equal(filter_edits_append_body(e, body, FILTER_EDIT_BODY_MEM, "b"), 0);
    assert_int_equal(filter_edits_append_body(e, "x", 1, "b"), -1);
    assert_false(filter_edits_body_replaced(e));
    filter_edits_free(&e);
    rmdir(dir);
    free(body);
}

static void test_merge(void **state)
{
    struct filter_edits *a = filter_edits_new(&(struct filter_edit_limits){.max_edits = 3});
    struct filter_edits *b = filter_edits_new(NULL);

    (void)state;
    assert_int_equal(filter_edits_insert_header(a, 0, "X-A", "1", "a"), 0);
    assert_int_equal(filter_edits_append_body(a, "from a\r\n", 8, "a"), 0);
    assert_int_equal(filter_edits_insert_header(b, 0, "X-B", "1", "b"), 0);
    assert_int_equal(filter_edits_add_rcpt(b, "r@example.org", NULL, "b"), 0);
    assert_int_equal(filter_edits_append_body(b, "from b\r\n", 8, "b"), 0);
    assert_int_equal(filter_edits_merge(a, b), 0);
    assert_int_equal(filter_edits_count(a), 3);
    assert_int_equal(filter_edits_count(b), 0);
    assert_false(filter_edits_body_replaced(b));
    assert_string_equal(filter_edits_at(a, 0)->name, "X-A");
    assert_string_equal(filter_edits_at(a, 1)->name, "X-B");
    assert_string_equal(filter_edits_at(a, 2)->value, "r@example.org");
    check_body(a, "from b\r\n", 8); /* the later replacement wins */
    assert_string_equal(filter_edits_body_by(a), "b");
    /* over a's limit: nothing moves */
    assert_int_equal(filter_edits_delete_rcpt(b, "x@example.org", "b"), 0);
    assert_int_equal(filter_edits_merge(a, b), -1);
    assert_int_equal(filter_edits_count(a), 3);
    assert_int_equal(filter_edits_count(b), 1);
    /* a list without a body leaves into's body alone */
    filter_edits_free(&b);
    b = filter_edits_new(NULL);
    assert_int_equal(filter_edits_merge(a, b), 0);
    check_body(a, "from b\r\n", 8);
    filter_edits_free(&a);
    filter_edits_free(&b);
}

/* ---- through the chain ---- */

enum ef_kind { EF_SYNC, EF_ERROR, EF_PENDING, EF_PENDING_ERROR, EF_HANG };

struct ef {
    struct filter_ops ops;
    const char *name;
    enum ef_kind kind;
    unsigned delay_ms;
    unsigned count;   /* header edits to record, "X-<name>: <i>" */
    const char *body; /* replace_body with it when not NULL */
    struct event *ev;
    struct filter_call *call;
    int refused; /* edit calls that returned -1 */
};

static void ef_record(struct ef *f, struct filter_call *call)
{
    char name[32], value[16];

    f->refused = 0;
    snprintf(name, sizeof(name), "X-%s", f->name);
    for (unsigned i = 0; i < f->count; i++) {
        snprintf(value, sizeof(value), "%u", i);
        f->refused += filter_call_insert_header(call, 999, name, value) != 0;
    }
    if (f->body != NULL)
        f->refused += filter_call_replace_body(call, f->body, strlen(f->body)) != 0;
    f->refused += filter_call_change_header(call, "Subject", 1, "edited") != 0;
    f->refused += filter_call_change_sender(call, "<s@example.org>", NULL) != 0;
    f->refused += filter_call_add_rcpt(call, "<r@example.org>", NULL) != 0;
    f->refused += filter_call_delete_rcpt(call, "<old@example.org>") != 0;
    /* bad arguments are refused at every stage */
    assert_int_equal(filter_call_insert_header(call, 0, "Bad:Name", "v"), -1);
    assert_int_equal(filter_call_add_rcpt(call, "not an address", NULL), -1);
}

static void ef_complete(evutil_socket_t fd, short what, void *arg)
{
    struct ef *f = arg;
    struct filter_call *call = f->call;

    (void)fd;
    (void)what;
    f->call = NULL;
    ef_record(f, call);
    filter_call_done(call, f->kind == EF_PENDING ? 1 : -1);
}

static int ef_stage(void *instance, struct filter_call *call)
{
    struct ef *f = instance;
    struct timeval tv = {0, (suseconds_t)f->delay_ms * 1000};

    switch (f->kind) {
    case EF_SYNC:
    case EF_ERROR:
        ef_record(f, call);
        return f->kind == EF_SYNC ? 1 : -1;
    case EF_HANG:
        ef_record(f, call);
        break;
    default:
        evtimer_add(f->ev, &tv);
        break;
    }
    f->call = call;
    return 0;
}

static void ef_cancel(void *instance, struct filter_call *call)
{
    struct ef *f = instance;

    assert_ptr_equal(call, f->call);
    f->call = NULL;
    event_del(f->ev);
}

struct cenv {
    struct event_base *base;
    struct ef f[3];
    struct chain_link links[3];
    size_t n;
    struct chain *chain;
    struct chain_session *s;
    int results;
};

static void cenv_build(struct cenv *c, const struct ef *specs, size_t n)
{
    memset(c, 0, sizeof(*c));
    c->base = event_base_new();
    c->n = n;
    for (size_t i = 0; i < n; i++) {
        c->f[i] = specs[i];
        c->f[i].ops.name = specs[i].name;
        c->f[i].ops.cancel = ef_cancel;
        for (int st = 0; st < FILTER_STAGES; st++)
            c->f[i].ops.stage[st] = ef_stage;
        c->f[i].ev = evtimer_new(c->base, ef_complete, &c->f[i]);
        c->links[i] = (struct chain_link){.ops = &c->f[i].ops,
                                          .instance = &c->f[i],
                                          .on_error = FILTER_ON_ERROR_SKIP,
                                          .timeout_ms = 50};
    }
    c->chain = chain_new(c->base, c->links, n);
    assert_non_null(c->chain);
    c->s = chain_session_new(c->chain);
    assert_non_null(c->s);
}

static void cenv_free(struct cenv *c)
{
    chain_session_free(&c->s);
    chain_free(&c->chain);
    for (size_t i = 0; i < c->n; i++)
        event_free(c->f[i].ev);
    event_base_free(c->base);
}

static void on_result(void *ctx, const struct chain_result *res)
{
    (void)res;
    ((struct cenv *)ctx)->results++;
}

static bool got_result(const void *ctx)
{
    return ((const struct cenv *)ctx)->results > 0;
}

static const struct filter_txn txn = {.queue_id = "Q1",
                                      .listener = "test",
                                      .client_addr = "192.0.2.1",
                                      .client_name = "unknown",
                                      .sender = "old@example.org",
                                      .content_fd = -1};

static const struct filter_edits *cenv_run(struct cenv *c, enum filter_stage stage)
{
    c->results = 0;
    assert_non_null(chain_run(c->s, stage, &txn, on_result, c));
    assert_true(loop_run_until(c->base, got_result, c, RUN_MAX_MS));
    return chain_session_result(c->s)->edits;
}

/* Names of the header edits in order, "a,a,b". */
static void edit_names(const struct filter_edits *e, char *out, size_t size)
{
    size_t o = 0;

    out[0] = '\0';
    for (size_t i = 0; e != NULL && i < filter_edits_count(e) && o < size; i++) {
        const struct filter_edit *ed = filter_edits_at(e, i);

        if (ed->kind == FILTER_EDIT_INSERT_HEADER)
            o += (size_t)snprintf(out + o, size - o, "%s%s", o > 0 ? "," : "", ed->name + 2);
    }
}

static void test_chain_only_at_eom(void **state)
{
    static const struct ef specs[] = {{.name = "a", .count = 1, .body = "b\r\n"}};
    struct cenv c;

    (void)state;
    cenv_build(&c, specs, 1);
    for (enum filter_stage st = FILTER_CONNECT; st < FILTER_EOM; st++) {
        assert_null(cenv_run(&c, st));
        assert_int_equal(c.f[0].refused, 6); /* every edit of ef_record */
    }
    assert_non_null(cenv_run(&c, FILTER_EOM));
    assert_int_equal(c.f[0].refused, 0);
    assert_int_equal(filter_edits_count(chain_session_result(c.s)->edits), 5);
    /* a new transaction forgets them */
    chain_session_reset(c.s);
    assert_null(chain_session_result(c.s)->edits);
    cenv_free(&c);
}

static void test_chain_link_order(void **state)
{
    /* a completes last, c first: the result is still a, b, c */
    static const struct ef specs[] = {
        {.name = "a", .kind = EF_PENDING, .delay_ms = 30, .count = 2, .body = "from a\r\n"},
        {.name = "b", .kind = EF_PENDING, .delay_ms = 10, .count = 1},
        {.name = "c", .kind = EF_SYNC, .count = 2}};
    struct cenv c;
    const struct filter_edits *e;
    struct filter_edits *taken;
    char names[64];

    (void)state;
    cenv_build(&c, specs, 3);
    e = cenv_run(&c, FILTER_EOM);
    assert_non_null(e);
    edit_names(e, names, sizeof(names));
    assert_string_equal(names, "a,a,b,c,c");
    assert_int_equal(filter_edits_count(e), 5 + 3 * 4);
    assert_string_equal(filter_edits_at(e, 0)->by, "a");
    assert_string_equal(filter_edits_at(e, filter_edits_count(e) - 1)->by, "c");
    check_body(e, "from a\r\n", 8);
    taken = chain_session_take_edits(c.s);
    assert_ptr_equal(taken, e);
    assert_null(chain_session_result(c.s)->edits);
    assert_null(chain_session_take_edits(c.s));
    filter_edits_free(&taken);
    cenv_free(&c);
}

static void test_chain_failed_calls(void **state)
{
    /* errors at once, later and by timeout lose their edits, others keep theirs */
    static const struct ef specs[] = {
        {.name = "a", .kind = EF_ERROR, .count = 3, .body = "a\r\n"},
        {.name = "b", .kind = EF_PENDING_ERROR, .delay_ms = 5, .count = 3, .body = "b\r\n"},
        {.name = "c", .kind = EF_HANG, .count = 3, .body = "c\r\n"}};
    static const struct ef ok = {.name = "d", .kind = EF_SYNC, .count = 1};
    struct cenv c;
    const struct chain_result *res;
    char names[64];

    (void)state;
    cenv_build(&c, specs, 3);
    assert_null(cenv_run(&c, FILTER_EOM));
    res = chain_session_result(c.s);
    assert_int_equal(res->symbol_count, 3); /* A_ERROR, B_ERROR, C_ERROR */
    cenv_free(&c);

    {
        struct ef mixed[3] = {specs[0], ok, specs[2]};

        cenv_build(&c, mixed, 3);
        edit_names(cenv_run(&c, FILTER_EOM), names, sizeof(names));
        assert_string_equal(names, "d");
        assert_false(filter_edits_body_replaced(chain_session_result(c.s)->edits));
        cenv_free(&c);
    }
}

static void test_chain_limits(void **state)
{
    /* a's 600 fit; b's 600 would pass 1,000: dropped whole; c's fit */
    static const struct ef specs[] = {
        {.name = "a", .count = 596}, {.name = "b", .count = 596}, {.name = "c", .count = 1}};
    static const struct ef body_spec[] = {{.name = "a", .body = "0123456789X"},
                                          {.name = "b", .body = "0123456789"}};
    struct cenv c;
    const struct filter_edits *e;
    char names[8192];

    (void)state;
    cenv_build(&c, specs, 3);
    e = cenv_run(&c, FILTER_EOM);
    assert_int_equal(filter_edits_count(e), 600 + 5);
    edit_names(e, names, sizeof(names));
    assert_null(strstr(names, "b"));
    assert_non_null(strstr(names, "c"));
    cenv_free(&c);

    /* the chain's body limit */
    cenv_build(&c, body_spec, 2);
    assert_int_equal(chain_set_edit_limits(c.chain, 10, NULL), 0);
    e = cenv_run(&c, FILTER_EOM);
    assert_int_equal(c.f[0].refused, 1);
    assert_int_equal(c.f[1].refused, 0);
    check_body(e, "0123456789", 10);
    cenv_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_record_table),
        cmocka_unit_test(test_record_order_and_limit),
        cmocka_unit_test(test_body),
        cmocka_unit_test(test_merge),
        cmocka_unit_test(test_chain_only_at_eom),
        cmocka_unit_test(test_chain_link_order),
        cmocka_unit_test(test_chain_failed_calls),
        cmocka_unit_test(test_chain_limits),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

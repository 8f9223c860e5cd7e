/*
 * test-message-edit — gateway/message-edit on real spool files (lib/spool
 * in a mkdtemp directory): a table of header and body rewrites (insert at
 * 0, in the middle, past the end; change the 1st and 2nd occurrence;
 * delete; change a missing field = append; folded fields; names in any
 * case; Postern's Received: first and untouched; a replaced body with bare
 * CR and LF made CR LF; CR LF kept everywhere; header sections without a
 * separator), the limits (header section over MESSAGE_EDIT_HEADER_MAX:
 * E2BIG and nothing left behind), large bodies copied and replaced (one
 * kept in an unlinked file), the commit of a rewritten message (content and
 * envelope size), the rewrite on a worker thread and its cancel, and the
 * envelope edits on a session-less struct smtp_txn (sender and parameters,
 * recipients added, duplicates, removed, UTF-8 only with SMTPUTF8, the
 * last one removed); and the rewrite into a descriptor (postern-milter's,
 * where a first Received: is like any other field).
 *
 * This is how the gateway's application of the filters' edits is covered
 * until an integration test can drive it through a milter.
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>

#include <event2/event.h>

#include "filters/edit.h"
#include "gateway/message-edit.h"
#include "gateway/smtp-session-private.h"
#include "lib/address.h"
#include "lib/spool-format.h"
#include "lib/spool.h"
#include "lib/workpool.h"
#include "tests/unit/loop-test.h"
#include "tests/unit/spool-test.h"

struct fixture {
    struct spool_test st;
    char tmp_dir[128]; /* the spool's tmp/ */
};

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));

    assert_non_null(fx);
    spool_test_open(&fx->st, "test-message-edit");
    snprintf(fx->tmp_dir, sizeof(fx->tmp_dir), "%s/tmp", fx->st.spool_dir);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;

    spool_test_close(&fx->st);
    free(fx);
    return 0;
}

static int count_files(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int n = 0;

    assert_non_null(d);
    while ((de = readdir(d)) != NULL)
        n += de->d_name[0] != '.';
    closedir(d);
    return n;
}

static struct spool_msg *make_msg(struct fixture *fx, const char *content, size_t len)
{
    char id[SPOOL_QUEUE_ID_MAX + 1];
    struct spool_msg *msg;

    spool_new_queue_id(fx->st.spool, id, sizeof(id));
    msg = spool_msg_begin(fx->st.spool, id);
    assert_non_null(msg);
    assert_int_equal(spool_msg_write(msg, content, len), 0);
    return msg;
}

/* The message's content as the filters (and the commit) see it. */
static char *msg_text(struct spool_msg *msg, size_t *len_r)
{
    uint64_t off, len;
    char *buf;
    int fd;

    assert_int_equal(spool_msg_content(msg, &fd, &off, &len), 0);
    assert_int_equal(len, spool_msg_size(msg));
    buf = malloc((size_t)len + 1);
    assert_int_equal(pread(fd, buf, (size_t)len, (off_t)off), (ssize_t)len);
    buf[len] = '\0';
    *len_r = (size_t)len;
    return buf;
}

/* ---- the table ---- */

enum op { END, INS, CHG };

struct hedit {
    enum op op;
    size_t index;
    const char *name, *value; /* CHG with value NULL: delete */
};

struct row {
    const char *what;
    const char *in;
    struct hedit ed[4];
    const char *body; /* the replacement, or NULL */
    const char *out;
    unsigned ignored;
};

#define RCVD "Received: from client (unknown [192.0.2.1])\r\n\tby mx (Postern) id Q; date\r\n"
/* MSG's fields after RCVD, one macro each, so a row's output shows its edit */
#define FROM "From: a@example.org\r\n"
#define S1 "Subject: one\r\n"
#define TO "To: b@example.org\r\n"
#define S2 "Subject: two\r\n\tfolded\r\n"
#define BODY "\r\nbody line\r\n.dot line\r\n"
#define MSG RCVD FROM S1 TO S2 BODY

/* clang-format off */
static const struct row rows[] = {
    {"nothing to do", MSG, {{.op = END}}, NULL, MSG, 0},
    {"insert at 0 goes after Postern's Received", MSG, {{INS, 0, "X-A", "v"}}, NULL,
     RCVD "X-A: v\r\n" FROM S1 TO S2 BODY, 0},
    {"insert at 1 is the same place", MSG, {{INS, 1, "X-A", "v"}}, NULL,
     RCVD "X-A: v\r\n" FROM S1 TO S2 BODY, 0},
    {"insert in the middle", MSG, {{INS, 3, "X-A", "v"}}, NULL,
     RCVD FROM S1 "X-A: v\r\n" TO S2 BODY, 0},
    {"insert at the end", MSG, {{INS, 5, "X-A", "v"}}, NULL,
     RCVD FROM S1 TO S2 "X-A: v\r\n" BODY, 0},
    {"insert past the end", MSG, {{INS, 1000, "X-A", "v"}}, NULL,
     RCVD FROM S1 TO S2 "X-A: v\r\n" BODY, 0},
    {"insert a folded value", MSG, {{INS, 1, "X-A", "one\r\n\ttwo"}}, NULL,
     RCVD "X-A: one\r\n\ttwo\r\n" FROM S1 TO S2 BODY, 0},
    {"change the first occurrence", MSG, {{CHG, 1, "Subject", "new"}}, NULL,
     RCVD FROM "Subject: new\r\n" TO S2 BODY, 0},
    {"change the second (folded) occurrence", MSG, {{CHG, 2, "Subject", "new"}}, NULL,
     RCVD FROM S1 TO "Subject: new\r\n" BODY, 0},
    {"names compare in any case", MSG, {{CHG, 2, "SUBJECT", "new"}}, NULL,
     RCVD FROM S1 TO "SUBJECT: new\r\n" BODY, 0},
    {"delete the first", MSG, {{CHG, 1, "subject", NULL}}, NULL, RCVD FROM TO S2 BODY, 0},
    {"delete the folded second", MSG, {{CHG, 2, "Subject", NULL}}, NULL, RCVD FROM S1 TO BODY, 0},
    {"change a missing field: appended", MSG, {{CHG, 1, "X-New", "v"}}, NULL,
     RCVD FROM S1 TO S2 "X-New: v\r\n" BODY, 0},
    {"change a missing occurrence: appended", MSG, {{CHG, 3, "Subject", "three"}}, NULL,
     RCVD FROM S1 TO S2 "Subject: three\r\n" BODY, 0},
    {"delete a missing field: nothing", MSG, {{CHG, 1, "X-New", NULL}}, NULL, MSG, 0},
    {"Postern's Received cannot be changed or deleted", MSG,
     {{CHG, 1, "Received", "forged"}, {CHG, 1, "received", NULL}}, NULL, MSG, 2},
    {"an older Received can",
     RCVD "Received: older\r\n\tline\r\nSubject: s\r\n\r\nb\r\n",
     {{CHG, 2, "Received", NULL}}, NULL, RCVD "Subject: s\r\n\r\nb\r\n", 0},
    {"edits apply one after the other", MSG,
     {{INS, 1, "X-A", "1"}, {INS, 1, "X-B", "2"}, {CHG, 1, "X-A", NULL}, {CHG, 1, "From", "c"}},
     NULL, RCVD "X-B: 2\r\nFrom: c\r\n" S1 TO S2 BODY, 0},
    {"a value with a leading blank, an empty value", MSG,
     {{CHG, 1, "Subject", " lead"}, {INS, 9, "X-E", ""}}, NULL,
     RCVD FROM "Subject: lead\r\n" TO S2 "X-E:\r\n" BODY, 0},
    {"a blank before the colon", RCVD "Subject : old\r\n\r\nb\r\n",
     {{CHG, 1, "Subject", "new"}}, NULL, RCVD "Subject: new\r\n\r\nb\r\n", 0},
    {"body replaced", MSG, {{.op = END}}, "new body\r\n",
     RCVD FROM S1 TO S2 "\r\nnew body\r\n", 0},
    {"body with bare LF, bare CR, no last line end", MSG, {{INS, 9, "X-A", "v"}},
     "a\nb\rc\r\n\r\rd",
     RCVD FROM S1 TO S2 "X-A: v\r\n\r\na\r\nb\r\nc\r\n\r\n\r\nd\r\n", 0},
    {"body ending in a CR", RCVD "S: x\r\n\r\nold\r\n", {{.op = END}}, "a\r", RCVD "S: x\r\n\r\na\r\n", 0},
    {"empty body", MSG, {{.op = END}}, "", RCVD FROM S1 TO S2 "\r\n", 0},
    {"header only, no empty line", RCVD "Subject: s\r\n", {{INS, 9, "X-A", "v"}}, NULL,
     RCVD "Subject: s\r\nX-A: v\r\n", 0},
    {"header only, body replaced", RCVD "Subject: s\r\n", {{.op = END}}, "b\r\n",
     RCVD "Subject: s\r\n\r\nb\r\n", 0},
    {"last field without its line end", RCVD "Subject: s", {{INS, 9, "X-A", "v"}}, NULL,
     RCVD "Subject: s\r\nX-A: v\r\n", 0},
    {"a line that is no field starts the body", RCVD "Subject: s\r\nno field here\r\nmore\r\n",
     {{INS, 9, "X-A", "v"}}, NULL, RCVD "Subject: s\r\nX-A: v\r\nno field here\r\nmore\r\n", 0},
    {"no field at all", "just text\r\n", {{INS, 0, "X-A", "v"}}, NULL,
     "X-A: v\r\njust text\r\n", 0},
    {"an empty message", "", {{INS, 0, "X-A", "v"}}, NULL, "X-A: v\r\n", 0},
};
/* clang-format on */

static struct filter_edits *row_edits(const struct row *r, const char *tmp_dir)
{
    struct filter_edits *e = filter_edits_new(&(struct filter_edit_limits){.tmp_dir = tmp_dir});

    assert_non_null(e);
    for (size_t i = 0; i < 4 && r->ed[i].op != END; i++) {
        const struct hedit *h = &r->ed[i];

        if (h->op == INS)
            assert_int_equal(filter_edits_insert_header(e, h->index, h->name, h->value, "t"), 0);
        else
            assert_int_equal(filter_edits_change_header(e, h->name, h->index, h->value, "t"), 0);
    }
    if (r->body != NULL)
        assert_int_equal(filter_edits_append_body(e, r->body, strlen(r->body), "t"), 0);
    return e;
}

static void test_rewrite_table(void **state)
{
    struct fixture *fx = *state;

    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const struct row *r = &rows[i];
        struct spool_msg *msg = make_msg(fx, r->in, strlen(r->in));
        struct filter_edits *e = row_edits(r, fx->tmp_dir);
        struct message_edit_report rep;
        size_t len;
        char *got;

        if (message_edit_content(msg, e, &rep) != 0)
            fail_msg("row \"%s\": %s", r->what, strerror(errno));
        got = msg_text(msg, &len);
        if (len != strlen(r->out) || memcmp(got, r->out, len) != 0)
            fail_msg("row \"%s\":\n got: [%s]\nwant: [%s]", r->what, got, r->out);
        assert_int_equal(rep.old_size, strlen(r->in));
        assert_int_equal(rep.new_size, len);
        assert_int_equal(rep.ignored, r->ignored);
        assert_int_equal(rep.body, r->body != NULL);
        for (size_t j = 0; j + 1 < len; j++) /* never a bare LF or CR */
            if ((got[j] == '\r') != (got[j + 1] == '\n'))
                fail_msg("row \"%s\": bare CR or LF at %zu", r->what, j);
        assert_int_equal(count_files(fx->tmp_dir), 1); /* the message's file only */
        free(got);
        filter_edits_free(&e);
        spool_msg_abort(&msg);
    }
    assert_int_equal(count_files(fx->tmp_dir), 0);
}

/* Rewrites in into a temporary file with message_edit_rewrite_fd. */
static char *rewrite_fd(struct fixture *fx, const char *in, const struct filter_edits *e,
                        struct message_edit_report *rep, size_t *len_r)
{
    char path[192];
    int in_fd, out_fd;
    off_t end;
    char *buf;

    snprintf(path, sizeof(path), "%s/in", fx->st.dir);
    in_fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(in_fd >= 0);
    assert_int_equal(write(in_fd, in, strlen(in)), (ssize_t)strlen(in));
    snprintf(path, sizeof(path), "%s/out", fx->st.dir);
    out_fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(out_fd >= 0);
    if (message_edit_rewrite_fd(e, in_fd, 0, strlen(in), out_fd, rep) < 0)
        fail_msg("message_edit_rewrite_fd: %s", strerror(errno));
    end = lseek(out_fd, 0, SEEK_END);
    assert_int_equal(end, (off_t)rep->new_size);
    buf = calloc(1, (size_t)end + 1);
    assert_non_null(buf);
    assert_int_equal(pread(out_fd, buf, (size_t)end, 0), (ssize_t)end);
    close(in_fd);
    close(out_fd);
    *len_r = (size_t)end;
    return buf;
}

/* Into a descriptor: the same as the spool's rewrite for every row that
 * does not start with a Received: field; a first Received: is a field like
 * any other (changed, deleted, inserted before). */
static void test_rewrite_fd(void **state)
{
    struct fixture *fx = *state;
    struct message_edit_report rep;
    struct filter_edits *e;
    size_t len;
    char *got;

    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const struct row *r = &rows[i];

        if (strncmp(r->in, "Received:", 9) == 0)
            continue;
        e = row_edits(r, fx->tmp_dir);
        got = rewrite_fd(fx, r->in, e, &rep, &len);
        if (len != strlen(r->out) || memcmp(got, r->out, len) != 0)
            fail_msg("row \"%s\":\n got: [%s]\nwant: [%s]", r->what, got, r->out);
        free(got);
        filter_edits_free(&e);
    }
    e = filter_edits_new(NULL);
    assert_non_null(e);
    assert_int_equal(filter_edits_insert_header(e, 0, "X-A", "v", "t"), 0);
    assert_int_equal(filter_edits_change_header(e, "Received", 1, "changed", "t"), 0);
    assert_int_equal(filter_edits_append_body(e, "new\n", 4, "t"), 0);
    got = rewrite_fd(fx, MSG, e, &rep, &len);
    assert_string_equal(got, "X-A: v\r\nReceived: changed\r\n" FROM S1 TO S2 "\r\nnew\r\n");
    assert_int_equal(rep.ignored, 0);
    assert_int_equal(rep.inserted, 1);
    assert_int_equal(rep.changed, 1);
    assert_true(rep.body);
    free(got);
    filter_edits_free(&e);
}

static char *big_header(size_t octets, size_t *len_r)
{
    static const char field[] = "X-Filler: 0123456789012345678901234567890123456789\r\n";
    size_t n = strlen(RCVD), f = strlen(field);
    char *buf = malloc(octets + f + 64);

    memcpy(buf, RCVD, n);
    while (n < octets) {
        memcpy(buf + n, field, f);
        n += f;
    }
    memcpy(buf + n, "\r\nbody\r\n", 8);
    *len_r = n + 8;
    return buf;
}

/* A header section up to MESSAGE_EDIT_HEADER_MAX is edited; past it the
 * edit fails with E2BIG, the message keeps its content, nothing is left. */
static void test_header_limit(void **state)
{
    struct fixture *fx = *state;
    struct filter_edits *e = filter_edits_new(NULL);
    struct message_edit_report rep;
    size_t len, got_len;
    char *content, *got;
    struct spool_msg *msg;

    assert_int_equal(filter_edits_change_header(e, "X-Filler", 2, NULL, "t"), 0);
    content = big_header(MESSAGE_EDIT_HEADER_MAX - 1000, &len);
    msg = make_msg(fx, content, len);
    assert_int_equal(message_edit_content(msg, e, &rep), 0);
    assert_int_equal(rep.deleted, 1);
    assert_int_equal(spool_msg_size(msg), len - 52);
    spool_msg_abort(&msg);
    free(content);

    content = big_header(MESSAGE_EDIT_HEADER_MAX + 10, &len);
    msg = make_msg(fx, content, len);
    assert_int_equal(message_edit_content(msg, e, &rep), -1);
    assert_int_equal(errno, E2BIG);
    got = msg_text(msg, &got_len);
    assert_int_equal(got_len, len);
    assert_memory_equal(got, content, len);
    assert_int_equal(count_files(fx->tmp_dir), 1);
    spool_msg_abort(&msg);
    assert_int_equal(count_files(fx->tmp_dir), 0);
    free(got);
    free(content);
    filter_edits_free(&e);
}

static char *pattern(size_t len, unsigned seed)
{
    char *p = malloc(len);

    for (size_t i = 0; i < len; i++)
        p[i] = (i + 1) % 80 == 0 ? '\n' : (i + 2) % 80 == 0 ? '\r' : (char)('a' + (i * seed) % 26);
    return p;
}

static void on_commit(void *ctx, int err)
{
    int *cs = ctx;

    cs[0]++;
    cs[1] = err;
}

/* A large body is copied intact around a header edit; a large replacement
 * (partly in an unlinked file of tmp/) arrives intact; the committed file
 * has the new content and the envelope its size. */
static void test_large_and_commit(void **state)
{
    struct fixture *fx = *state;
    const size_t blen = 700 * 1000;
    char *body = pattern(blen, 7), *repl = pattern(blen, 11), *content, *got, *want;
    size_t hlen = strlen(RCVD "Subject: s\r\n\r\n"), len, got_len;
    struct filter_edits *e = filter_edits_new(&(struct filter_edit_limits){.tmp_dir = fx->tmp_dir});
    struct message_edit_report rep;
    struct spool_msg *msg;

    content = malloc(hlen + blen);
    memcpy(content, RCVD "Subject: s\r\n\r\n", hlen);
    memcpy(content + hlen, body, blen);
    len = hlen + blen;
    msg = make_msg(fx, content, len);
    assert_int_equal(filter_edits_insert_header(e, 1, "X-A", "v", "t"), 0);
    assert_int_equal(message_edit_content(msg, e, &rep), 0);
    got = msg_text(msg, &got_len);
    assert_int_equal(got_len, len + 8);
    assert_memory_equal(got + strlen(RCVD), "X-A: v\r\nSubject: s\r\n\r\n", 22);
    assert_memory_equal(got + hlen + 8, body, blen);
    free(got);

    /* now replace the body too, 9 octets at a time for a while */
    for (size_t off = 0; off < blen; off += off < 900 ? 9 : 65536) {
        size_t n = off < 900 ? 9 : 65536;

        assert_int_equal(
            filter_edits_append_body(e, repl + off, blen - off < n ? blen - off : n, "t"), 0);
    }
    assert_int_equal(count_files(fx->tmp_dir), 1); /* the body file has no name */
    assert_int_equal(message_edit_content(msg, e, &rep), 0);
    assert_true(rep.body);
    got = msg_text(msg, &got_len);
    want = malloc(len + 16);
    memcpy(want, RCVD "X-A: v\r\nX-A: v\r\nSubject: s\r\n\r\n", hlen + 16);
    memcpy(want + hlen + 16, repl, blen);
    assert_int_equal(got_len, hlen + 16 + blen);
    assert_memory_equal(got, want, got_len);

    {
        struct spool_envelope env = {0}, *parsed = NULL;
        struct spool_rcpt rcpt = {.addr = "b@example.org"};
        int cs[2] = {0, -1}; /* calls, error */
        char path[256], error[160], id[SPOOL_QUEUE_ID_MAX + 1];
        uint64_t coff, clen;
        int fd;

        env.sender = "a@example.org";
        env.rcpts = &rcpt;
        env.rcpt_count = 1;
        env.received = time(NULL);
        /* the queue id is the message's: find it from the file in tmp/ */
        {
            DIR *d = opendir(fx->tmp_dir);
            struct dirent *de;

            while ((de = readdir(d)) != NULL)
                if (de->d_name[0] != '.')
                    snprintf(id, sizeof(id), "%.32s", de->d_name);
            closedir(d);
        }
        assert_int_equal(spool_msg_commit(msg, &env, on_commit, cs), 0);
        for (int i = 0; i < 500 && cs[0] == 0; i++)
            loop_run_for(fx->st.base, 10);
        assert_int_equal(cs[0], 1);
        assert_int_equal(cs[1], 0);
        snprintf(path, sizeof(path), "%s/queue/%s", fx->st.spool_dir, id);
        assert_int_equal(spool_read_envelope(path, &parsed, &coff, &clen, error, sizeof(error)), 0);
        assert_int_equal(parsed->size, got_len);
        assert_int_equal(clen, got_len);
        spool_envelope_free(&parsed);
        fd = open(path, O_RDONLY);
        assert_true(fd >= 0);
        assert_int_equal(pread(fd, want, got_len, (off_t)coff), (ssize_t)got_len);
        assert_memory_equal(want, got, got_len);
        close(fd);
        assert_int_equal(count_files(fx->tmp_dir), 0);
    }
    filter_edits_free(&e);
    free(got);
    free(want);
    free(content);
    free(body);
    free(repl);
}

/* ---- on a thread ---- */

struct job_result {
    int calls, error;
    struct message_edit_report rep;
};

static void on_job(void *ctx, int error, const struct message_edit_report *rep)
{
    struct job_result *jr = ctx;

    jr->calls++;
    jr->error = error;
    jr->rep = *rep;
}

static bool job_called(const void *ctx)
{
    return ((const struct job_result *)ctx)->calls > 0;
}

static void test_job(void **state)
{
    struct fixture *fx = *state;
    struct workpool *pool = workpool_create(fx->st.base, 1);
    struct filter_edits *e = filter_edits_new(NULL);
    struct job_result jr = {0};
    struct message_edit_job *job;
    struct spool_msg *msg = make_msg(fx, MSG, strlen(MSG));
    size_t len, blen;
    char *got, *big;

    assert_non_null(pool);
    assert_int_equal(filter_edits_change_header(e, "Subject", 1, "new", "t"), 0);
    assert_int_equal(filter_edits_append_body(e, "b\r\n", 3, "t"), 0);
    job = message_edit_start(pool, msg, &e, on_job, &jr);
    assert_non_null(job);
    assert_null(e); /* taken */
    assert_int_equal(jr.calls, 0);
    assert_true(loop_run_until(fx->st.base, job_called, &jr, 5000));
    assert_int_equal(jr.error, 0);
    assert_int_equal(jr.rep.changed, 1);
    got = msg_text(msg, &len);
    assert_string_equal(got, RCVD FROM "Subject: new\r\n" TO S2 "\r\nb\r\n");
    free(got);
    spool_msg_abort(&msg);

    /* a failure comes back with its errno, the message as it was */
    big = big_header(MESSAGE_EDIT_HEADER_MAX + 10, &blen);
    msg = make_msg(fx, big, blen);
    e = filter_edits_new(NULL);
    assert_int_equal(filter_edits_insert_header(e, 0, "X-A", "v", "t"), 0);
    jr = (struct job_result){0};
    assert_non_null(message_edit_start(pool, msg, &e, on_job, &jr));
    assert_true(loop_run_until(fx->st.base, job_called, &jr, 5000));
    assert_int_equal(jr.error, E2BIG);
    assert_int_equal(spool_msg_size(msg), blen);
    assert_int_equal(count_files(fx->tmp_dir), 1);
    spool_msg_abort(&msg);
    free(big);

    /* cancelled: the session goes away (its message aborted at once);
     * the callback never comes, and nothing is left in tmp/ */
    msg = make_msg(fx, MSG, strlen(MSG));
    e = filter_edits_new(NULL);
    assert_int_equal(filter_edits_insert_header(e, 0, "X-A", "v", "t"), 0);
    jr = (struct job_result){0};
    job = message_edit_start(pool, msg, &e, on_job, &jr);
    assert_non_null(job);
    message_edit_cancel(&job);
    assert_null(job);
    message_edit_cancel(&job); /* NULL-safe */
    spool_msg_abort(&msg);
    workpool_destroy(&pool); /* settles the job */
    loop_run_for(fx->st.base, 20);
    assert_int_equal(jr.calls, 0);
    assert_int_equal(count_files(fx->tmp_dir), 0);
}

/* ---- the envelope ---- */

static void set_addr(struct addr_path *a, const char *text, unsigned flags)
{
    const char *error;

    assert_int_equal(filter_edit_parse_addr(text, flags, a, &error), 0);
}

static struct smtp_txn *make_txn(const char *sender, const char *const *rcpts, size_t n)
{
    struct smtp_txn *t = calloc(1, sizeof(*t));

    snprintf(t->queue_id, sizeof(t->queue_id), "QTEST");
    set_addr(&t->sender, sender, ADDR_ALLOW_NULL);
    t->rcpts = calloc(n, sizeof(*t->rcpts));
    t->rcpt_cap = n;
    for (size_t i = 0; i < n; i++)
        set_addr(&t->rcpts[i].addr, rcpts[i], ADDR_ALLOW_POSTMASTER);
    t->rcpt_count = n;
    return t;
}

static void free_txn(struct smtp_txn *t)
{
    free(t->rcpts);
    free(t);
}

static void rcpt_list(const struct smtp_txn *t, char *out, size_t size)
{
    char one[ADDR_PATH_MAX * 4 + 8];
    size_t o = 0;

    out[0] = '\0';
    for (size_t i = 0; i < t->rcpt_count && o < size; i++) {
        addr_format(&t->rcpts[i].addr, one, sizeof(one));
        o += (size_t)snprintf(out + o, size - o, "%s%s", i > 0 ? "," : "", one);
    }
}

static void test_envelope(void **state)
{
    static const char *const rcpts[] = {"r1@example.org", "r2@example.org", "<Postmaster>"};
    struct smtp_txn *t = make_txn("<s@example.org>", rcpts, 3);
    struct filter_edits *e = filter_edits_new(NULL);
    char text[1024];

    (void)state;
    assert_int_equal(
        filter_edits_change_sender(e, "<new@example.org>", "RET=HDRS ENVID=abc SIZE=5", "t"), 0);
    assert_int_equal(filter_edits_add_rcpt(e, "<r3@example.org>", "NOTIFY=NEVER", "t"), 0);
    assert_int_equal(filter_edits_add_rcpt(e, "r1@EXAMPLE.ORG", NULL, "t"), 0); /* there */
    assert_int_equal(filter_edits_add_rcpt(e, "<j\xc3\xb6rg@example.org>", NULL, "t"), 0);
    assert_int_equal(filter_edits_delete_rcpt(e, "<r2@Example.Org>", "t"), 0);
    assert_int_equal(filter_edits_delete_rcpt(e, "<R1@example.org>", "t"), 0); /* local differs */
    assert_int_equal(filter_edits_delete_rcpt(e, "<postmaster>", "t"), 0);
    assert_int_equal(filter_edits_delete_rcpt(e, "<nobody@example.org>", "t"), 0);
    assert_int_equal(filter_edits_insert_header(e, 0, "X-Ignored", "here", "t"), 0);
    assert_int_equal(message_edit_envelope(t, e), 0);
    addr_format(&t->sender, text, sizeof(text));
    assert_string_equal(text, "new@example.org");
    assert_int_equal(t->mail.ret, SMTP_RET_HDRS);
    assert_string_equal(t->mail.envid, "abc");
    assert_false(t->mail.has_size);
    rcpt_list(t, text, sizeof(text));
    assert_string_equal(text, "r1@example.org,r3@example.org"); /* no UTF-8 without SMTPUTF8 */
    assert_int_equal(t->rcpts[1].params.notify, SMTP_NOTIFY_NEVER);
    filter_edits_free(&e);

    /* SMTPUTF8 given by the sender change itself makes UTF-8 acceptable */
    e = filter_edits_new(NULL);
    assert_int_equal(filter_edits_change_sender(e, "<>", "SMTPUTF8", "t"), 0);
    assert_int_equal(
        filter_edits_add_rcpt(e, "<j\xc3\xb6rg@example.org>", "ORCPT=rfc822;r1@example.org", "t"),
        0);
    assert_int_equal(message_edit_envelope(t, e), 0);
    assert_true(t->sender.null);
    assert_true(t->mail.smtputf8);
    assert_int_equal(t->rcpt_count, 3);
    assert_string_equal(t->rcpts[2].params.orcpt_type, "rfc822");
    filter_edits_free(&e);

    /* removing every recipient leaves none: the gateway then discards */
    e = filter_edits_new(NULL);
    assert_int_equal(filter_edits_delete_rcpt(e, "r1@example.org", "t"), 0);
    assert_int_equal(filter_edits_delete_rcpt(e, "r3@example.org", "t"), 0);
    assert_int_equal(filter_edits_delete_rcpt(e, "j\xc3\xb6rg@example.org", "t"), 0);
    assert_int_equal(message_edit_envelope(t, e), 0);
    assert_int_equal(t->rcpt_count, 0);
    /* and an add after that brings one back (the list is applied in order) */
    assert_int_equal(filter_edits_add_rcpt(e, "r9@example.org", NULL, "t"), 0);
    assert_int_equal(message_edit_envelope(t, e), 0);
    rcpt_list(t, text, sizeof(text));
    assert_string_equal(text, "r9@example.org");
    filter_edits_free(&e);
    free_txn(t);
}

/* Many recipients added: the array grows. */
static void test_envelope_grow(void **state)
{
    static const char *const none[] = {"a@example.org"};
    struct smtp_txn *t = make_txn("<>", none, 1);
    struct filter_edits *e = filter_edits_new(NULL);
    char addr[64];

    (void)state;
    for (int i = 0; i < 40; i++) {
        snprintf(addr, sizeof(addr), "<u%d@example.org>", i);
        assert_int_equal(filter_edits_add_rcpt(e, addr, NULL, "t"), 0);
    }
    assert_int_equal(message_edit_envelope(t, e), 0);
    assert_int_equal(t->rcpt_count, 41);
    addr_format(&t->rcpts[40].addr, addr, sizeof(addr));
    assert_string_equal(addr, "u39@example.org");
    filter_edits_free(&e);
    free_txn(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_rewrite_table, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rewrite_fd, setup, teardown),
        cmocka_unit_test_setup_teardown(test_header_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_large_and_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_job, setup, teardown),
        cmocka_unit_test(test_envelope),
        cmocka_unit_test(test_envelope_grow),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test-passwd — lib/passwd.c: passwd-files with one user per scheme (hashes
 * made here with crypt_gensalt_rn + crypt_rn, plus one published $6$
 * vector), a table of {user, password, expect} rows, malformed files that
 * must fail on the right line, thread safety, and the unknown-user timing.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <crypt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lib/passwd.h"

/* One user per scheme; hashes are generated at setup from .prefix/.cost. */
static const struct user_row {
    const char *user;
    const char *scheme; /* "{...}" written before the hash, or "" */
    const char *prefix; /* crypt_gensalt prefix, NULL for {PLAIN}/{CLEAR} */
    unsigned long cost;
    const char *password;
    const char *extra; /* fields after the password, "" for none */
} users[] = {
    { "yes", "", "$y$", 0, "yes-secret", ":1000:1000::/home/yes:/bin/false" },
    { "yes2", "{CRYPT}", "$y$", 0, "p\xc3\xa4ss w\xc3\xb6rd", "" },
    { "yes3", "{crypt}", "$y$", 0, "third", "::::::" },
    { "yes4", "", "$y$", 0, "fourth", "" },
    { "yes5", "", "$y$", 0, "fifth", "" },
    { "bf", "{BLF-CRYPT}", "$2b$", 4, "blowfish", ":1001:1001" },
    { "bfy", "{BLF-CRYPT}", "$2y$", 4, "blowfish-y", "" },
    { "s512", "{SHA512-CRYPT}", "$6$", 0, "sha512 pw", "" },
    { "s256", "{SHA256-CRYPT}", "$5$", 0, "sha256 pw", "" },
    { "md5", "{MD5-CRYPT}", "$1$", 0, "md5 pw", "" },
    { "plain", "{PLAIN}", NULL, 0, "plain-secret", ":1002:1002" },
    { "clear", "{CLEAR}", NULL, 0, "clear secret with spaces", "" },
    { "Alice@Example.org", "{PLAIN}", NULL, 0, "x", "" },
};

/* The SHA-crypt specification's vector ("Hello world!", salt "saltstring"). */
static const char vector_line[] =
    "vector:{SHA512-CRYPT}$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJu"
    "esI68u4OTLiBFdcbYEdFCoEOfaS35inz1\n";

static const struct verify_row {
    const char *user;
    const char *password;
    int expect;
} verify_rows[] = {
    { .user = "yes", .password = "yes-secret", .expect = 1 },
    { .user = "yes", .password = "yes-secreT", .expect = 0 },
    { .user = "yes", .password = "yes-secret ", .expect = 0 },
    { .user = "yes", .password = "", .expect = 0 },
    { .user = "yes2", .password = "p\xc3\xa4ss w\xc3\xb6rd", .expect = 1 },
    { .user = "yes3", .password = "third", .expect = 1 },
    { .user = "bf", .password = "blowfish", .expect = 1 },
    { .user = "bf", .password = "blowfis", .expect = 0 },
    { .user = "bfy", .password = "blowfish-y", .expect = 1 },
    { .user = "s512", .password = "sha512 pw", .expect = 1 },
    { .user = "s512", .password = "sha256 pw", .expect = 0 },
    { .user = "s256", .password = "sha256 pw", .expect = 1 },
    { .user = "md5", .password = "md5 pw", .expect = 1 },
    { .user = "md5", .password = "MD5 pw", .expect = 0 },
    { .user = "plain", .password = "plain-secret", .expect = 1 },
    { .user = "plain", .password = "plain-secre", .expect = 0 },
    { .user = "plain", .password = "plain-secret2", .expect = 0 },
    { .user = "plain", .password = "", .expect = 0 },
    { .user = "clear", .password = "clear secret with spaces", .expect = 1 },
    { .user = "Alice@Example.org", .password = "x", .expect = 1 },
    { .user = "alice@example.org", .password = "x", .expect = 0 },
    { .user = "vector", .password = "Hello world!", .expect = 1 },
    { .user = "vector", .password = "Hello world", .expect = 0 },
    { .user = "nobody", .password = "yes-secret", .expect = 0 },
    { .user = "ye", .password = "yes-secret", .expect = 0 },
    { .user = "", .password = "", .expect = 0 },
    { .user = "# comment", .password = "", .expect = 0 },
    { .user = "crlf", .password = "crlf-pw", .expect = 1 },
    { .user = "crlf", .password = "crlf-pw\r", .expect = 0 },
};

struct fixture {
    char path[64];
    struct passwd_db *db;
};

static void make_hash(const char *prefix, unsigned long cost, const char *password, char *out,
                      size_t outsize)
{
    char setting[CRYPT_GENSALT_OUTPUT_SIZE];
    struct crypt_data *data = calloc(1, sizeof(*data));
    const char *hash;

    assert_non_null(data);
    assert_non_null(crypt_gensalt_rn(prefix, cost, NULL, 0, setting, sizeof(setting)));
    hash = crypt_rn(password, setting, data, sizeof(*data));
    assert_non_null(hash);
    assert_true(strlen(hash) < outsize);
    strcpy(out, hash);
    free(data);
}

/* Writes content to a new temporary file; path receives its name. */
static void write_temp(char *path, size_t pathsize, const char *content, size_t len)
{
    int fd;

    snprintf(path, pathsize, "/tmp/test-passwd.XXXXXX");
    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, content, len), (ssize_t)len);
    assert_int_equal(close(fd), 0);
}

static void write_user(FILE *fp, const struct user_row *u)
{
    char hash[CRYPT_OUTPUT_SIZE];

    if (u->prefix != NULL)
        make_hash(u->prefix, u->cost, u->password, hash, sizeof(hash));
    fprintf(fp, "%s:%s%s%s\n", u->user, u->scheme, u->prefix != NULL ? hash : u->password,
            u->extra);
}

static int setup_db(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    char *buf = NULL, error[256] = "";
    size_t size = 0;
    FILE *fp = open_memstream(&buf, &size);

    assert_non_null(fx);
    assert_non_null(fp);
    fputs("# users for test-passwd\n\n   \n", fp);
    for (size_t i = 0; i < sizeof(users) / sizeof(users[0]); i++)
        write_user(fp, &users[i]);
    fputs(vector_line, fp);
    fputs("crlf:{PLAIN}crlf-pw\r\n", fp);
    fclose(fp);
    write_temp(fx->path, sizeof(fx->path), buf, size);
    free(buf);
    if (passwd_db_load(fx->path, &fx->db, error, sizeof(error)) != 0)
        fail_msg("load failed: %s", error);
    *state = fx;
    return 0;
}

static int teardown_db(void **state)
{
    struct fixture *fx = *state;

    passwd_db_free(&fx->db);
    assert_null(fx->db);
    passwd_db_free(&fx->db);
    unlink(fx->path);
    free(fx);
    return 0;
}

static void test_count(void **state)
{
    struct fixture *fx = *state;

    /* users[], the vector and the CRLF line; comments and blanks are not users. */
    assert_int_equal(passwd_db_count(fx->db), sizeof(users) / sizeof(users[0]) + 2);
    assert_int_equal(passwd_db_count(NULL), 0);
}

static void test_verify_table(void **state)
{
    struct fixture *fx = *state;

    for (size_t i = 0; i < sizeof(verify_rows) / sizeof(verify_rows[0]); i++) {
        const struct verify_row *r = &verify_rows[i];
        int got = passwd_db_verify(fx->db, r->user, r->password);
        if (got != r->expect)
            fail_msg("row %zu: user '%s' password '%s': got %d, want %d", i, r->user,
                     r->password, got, r->expect);
    }
}

static void test_verify_odd_args(void **state)
{
    struct fixture *fx = *state;
    char longname[300];

    memset(longname, 'y', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    assert_int_equal(passwd_db_verify(fx->db, longname, "x"), 0);
    assert_int_equal(passwd_db_verify(fx->db, NULL, "x"), 0);
    assert_int_equal(passwd_db_verify(fx->db, "plain", NULL), 0);
    assert_int_equal(passwd_db_verify(NULL, "plain", "plain-secret"), 0);
}

#define THREADS 4

static void *verify_thread(void *arg)
{
    const struct passwd_db *db = arg;
    size_t bad = 0;

    for (size_t i = 0; i < sizeof(verify_rows) / sizeof(verify_rows[0]); i++) {
        const struct verify_row *r = &verify_rows[i];
        if (passwd_db_verify(db, r->user, r->password) != r->expect)
            bad++;
    }
    return (void *)(uintptr_t)bad;
}

/* The contract says thread-safe: the same rows from several threads at once. */
static void test_verify_threads(void **state)
{
    struct fixture *fx = *state;
    pthread_t threads[THREADS];
    void *bad;

    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&threads[i], NULL, verify_thread, fx->db), 0);
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_join(threads[i], &bad), 0);
        assert_int_equal((uintptr_t)bad, 0);
    }
}

static double now_sec(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double median_verify_time(const struct passwd_db *db, const char *user)
{
    double t[5], tmp;

    for (int i = 0; i < 5; i++) {
        double start = now_sec();
        assert_int_equal(passwd_db_verify(db, user, "wrong password"), 0);
        t[i] = now_sec() - start;
    }
    for (int i = 0; i < 5; i++) {
        for (int j = i + 1; j < 5; j++) {
            if (t[j] < t[i]) {
                tmp = t[i];
                t[i] = t[j];
                t[j] = tmp;
            }
        }
    }
    return t[2];
}

/* The largest class is yescrypt (five entries against four {PLAIN}), so an
 * unknown user must cost about a yescrypt run too. Without the dummy it
 * would be a thousand times faster; the bound is loose so that a loaded
 * machine does not fail the test. */
static void test_unknown_user_timing(void **state)
{
    struct fixture *fx = *state;
    double known = median_verify_time(fx->db, "yes");
    double unknown = median_verify_time(fx->db, "no-such-user");

    if (unknown < known / 10)
        fail_msg("unknown user took %.6fs, wrong password %.6fs", unknown, known);
}

/* One yescrypt user and one {PLAIN} user: the tie must pick the yescrypt
 * dummy, or an unknown user would answer as fast as a {PLAIN} one. */
static void test_unknown_user_timing_tie(void **state)
{
    char hash[CRYPT_OUTPUT_SIZE], content[CRYPT_OUTPUT_SIZE + 32], path[64], error[256] = "";
    struct passwd_db *db = NULL;
    double known, unknown;

    (void)state;
    make_hash("$y$", 0, "pw", hash, sizeof(hash));
    snprintf(content, sizeof(content), "p:{PLAIN}pw\ny:%s\n", hash);
    write_temp(path, sizeof(path), content, strlen(content));
    assert_int_equal(passwd_db_load(path, &db, error, sizeof(error)), 0);
    known = median_verify_time(db, "y");
    unknown = median_verify_time(db, "no-such-user");
    if (unknown < known / 10)
        fail_msg("unknown user took %.6fs, wrong password %.6fs", unknown, known);
    passwd_db_free(&db);
    unlink(path);
}

#define NUL_LINE "ok:{PLAIN}x\nbob:{PLAIN}a\0b\n"

static const struct bad_row {
    const char *content;
    size_t len; /* 0 = strlen(content) */
    unsigned int line;
    const char *message;
} bad_rows[] = {
    { .content = "alice\n", .line = 1, .message = "missing ':'" },
    { .content = "# c\n\nbob:{PLAIN}x\n:{PLAIN}y\n", .line = 4, .message = "empty user name" },
    { .content = "bob:{FOO}x\n", .line = 1, .message = "unknown password {SCHEME}" },
    { .content = "bob:{}x\n", .line = 1, .message = "unknown password {SCHEME}" },
    { .content = "bob:{PLAIN\n", .line = 1, .message = "unterminated {SCHEME}" },
    { .content = "a:{PLAIN}a\nbob:\n", .line = 2, .message = "empty password" },
    { .content = "bob:{PLAIN}\n", .line = 1, .message = "empty password" },
    { .content = "bob:{PLAIN}:1000:1000\n", .line = 1, .message = "empty password" },
    { .content = "bob::1000\n", .line = 1, .message = "empty password" },
    { .content = "bob:plaintext\n", .line = 1, .message = "unsupported password hash" },
    { .content = "bob:{CRYPT}abJnggxhB/yWI\n", .line = 1, .message = "unsupported" },
    { .content = "bob:$9$abc$def\n", .line = 1, .message = "unsupported password hash" },
    { .content = "bob:{SHA512-CRYPT}$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZF0gS"
                 "RzC6\n",
      .line = 1,
      .message = "does not match its {SCHEME}" },
    { .content = "bob:{MD5-CRYPT}$1$salt$tooshort\n", .line = 1, .message = "malformed" },
    { .content = "bob:$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJue"
                 "sI68u4OTLiBFdcbYEdFCoEOfaS35inz\n",
      .line = 1,
      .message = "malformed" },
    { .content = "bob:$1$saltsalt$ab cdefghijklmnopqrstu\n", .line = 1, .message = "malformed" },
    { .content = "a:{PLAIN}1\nb:{PLAIN}2\na:{PLAIN}3\n",
      .line = 3,
      .message = "duplicate user (first on line 1)" },
    { .content = "b\x01ob:{PLAIN}x\n", .line = 1, .message = "control character" },
    { .content = NUL_LINE, .len = sizeof(NUL_LINE) - 1, .line = 2, .message = "NUL byte" },
};

static void check_bad_file(size_t row, const struct bad_row *r)
{
    char path[64], error[256] = "", prefix[100];
    struct passwd_db *db = (struct passwd_db *)&error; /* must come back NULL */
    size_t len = r->len != 0 ? r->len : strlen(r->content);

    write_temp(path, sizeof(path), r->content, len);
    if (passwd_db_load(path, &db, error, sizeof(error)) != -1)
        fail_msg("row %zu: loaded", row);
    assert_null(db);
    snprintf(prefix, sizeof(prefix), "%s:%u: ", path, r->line);
    if (strncmp(error, prefix, strlen(prefix)) != 0 || strstr(error, r->message) == NULL)
        fail_msg("row %zu: error '%s', want '%s%s'", row, error, prefix, r->message);
    unlink(path);
}

static void test_bad_files(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(bad_rows) / sizeof(bad_rows[0]); i++)
        check_bad_file(i, &bad_rows[i]);
}

static void test_long_user_name(void **state)
{
    char line[300 + 16], path[64], error[256] = "";
    struct passwd_db *db = NULL;
    (void)state;

    /* 255 octets is allowed, 256 is not. */
    memset(line, 'u', 255);
    strcpy(line + 255, ":{PLAIN}pw\n");
    write_temp(path, sizeof(path), line, strlen(line));
    assert_int_equal(passwd_db_load(path, &db, error, sizeof(error)), 0);
    line[255] = '\0';
    assert_int_equal(passwd_db_verify(db, line, "pw"), 1);
    passwd_db_free(&db);
    unlink(path);

    memset(line, 'u', 256);
    strcpy(line + 256, ":{PLAIN}pw\n");
    write_temp(path, sizeof(path), line, strlen(line));
    assert_int_equal(passwd_db_load(path, &db, error, sizeof(error)), -1);
    assert_non_null(strstr(error, ":1: user name longer than 255"));
    unlink(path);
}

static void test_missing_file(void **state)
{
    char error[256] = "", small[8];
    struct passwd_db *db = NULL;
    (void)state;

    assert_int_equal(passwd_db_load("/nonexistent/passwd", &db, error, sizeof(error)), -1);
    assert_null(db);
    assert_string_equal(error, "/nonexistent/passwd: cannot open: No such file or directory");
    /* A short error buffer is truncated, never overrun. */
    assert_int_equal(passwd_db_load("/nonexistent/passwd", &db, small, sizeof(small)), -1);
    assert_string_equal(small, "/nonexi");
}

/* An empty file (or only comments) loads with no users, and an unknown
 * user still runs the built-in yescrypt dummy. */
static void test_empty_file(void **state)
{
    char path[64], error[256] = "";
    struct passwd_db *db = NULL;
    const char content[] = "# nobody yet\n\n";
    (void)state;

    write_temp(path, sizeof(path), content, strlen(content));
    assert_int_equal(passwd_db_load(path, &db, error, sizeof(error)), 0);
    assert_int_equal(passwd_db_count(db), 0);
    assert_int_equal(passwd_db_verify(db, "anyone", "postern-dummy-password"), 0);
    assert_int_equal(passwd_db_verify(db, "", ""), 0);
    passwd_db_free(&db);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_count),
        cmocka_unit_test(test_verify_table),
        cmocka_unit_test(test_verify_odd_args),
        cmocka_unit_test(test_verify_threads),
        cmocka_unit_test(test_unknown_user_timing),
    };
    const struct CMUnitTest file_tests[] = {
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_long_user_name),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_empty_file),
        cmocka_unit_test(test_unknown_user_timing_tie),
    };
    int failed = cmocka_run_group_tests_name("passwd verify", tests, setup_db, teardown_db);

    failed += cmocka_run_group_tests_name("passwd load", file_tests, NULL, NULL);
    return failed == 0 ? 0 : 1;
}

/*
 * passwd — see passwd.h. Loads a Dovecot-style passwd-file into a sorted
 * array (looked up with bsearch) and verifies passwords with crypt_rn(3)
 * from libxcrypt, or with a constant-time compare for {PLAIN}.
 *
 * Trusts the admin's file only as far as its owner: every line is still
 * validated (user name, scheme, hash syntax) and a bad one fails the whole
 * load with "path:line: message". Trusts nothing in the user name and
 * password given to passwd_db_verify(): they come from SMTP AUTH clients.
 *
 * Timing: an unknown user is checked against a dummy hash with the same
 * scheme and cost as most entries (a copy of one entry's hash string; the
 * result is thrown away), so "no such user" costs what "wrong password"
 * costs. {PLAIN} entries are compared as SHA-256 digests with
 * CRYPTO_memcmp(), so the time does not depend on where they differ.
 */
#include "config.h"
#include "lib/passwd.h"

#include <crypt.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#define PASSWD_USER_MAX 255
#define PASSWD_HASH_MAX (CRYPT_OUTPUT_SIZE - 1)

/* How an entry's secret is checked; the crypt classes pick the dummy. */
enum passwd_class {
    CLASS_PLAIN,
    CLASS_YESCRYPT,
    CLASS_BCRYPT,
    CLASS_SHA512,
    CLASS_SHA256,
    CLASS_MD5,
    CLASS_COUNT,
    CLASS_ANY_CRYPT = CLASS_COUNT, /* {CRYPT} or no scheme: any crypt class */
};

static const struct {
    const char *prefix;
    enum passwd_class cls;
} crypt_prefixes[] = {
    { "$y$", CLASS_YESCRYPT }, { "$2b$", CLASS_BCRYPT }, { "$2a$", CLASS_BCRYPT },
    { "$2y$", CLASS_BCRYPT },  { "$6$", CLASS_SHA512 },  { "$5$", CLASS_SHA256 },
    { "$1$", CLASS_MD5 },
};

/* Length of the last '$'-separated part of a complete hash, per class
 * (bcrypt's includes its 22-character salt). Catches truncated lines. */
static const size_t crypt_tail_len[CLASS_COUNT] = {
    [CLASS_YESCRYPT] = 43, [CLASS_BCRYPT] = 53, [CLASS_SHA512] = 86,
    [CLASS_SHA256] = 43,   [CLASS_MD5] = 22,
};

static const struct {
    const char *name;
    enum passwd_class cls;
} schemes[] = {
    { "PLAIN", CLASS_PLAIN },          { "CLEAR", CLASS_PLAIN },
    { "CRYPT", CLASS_ANY_CRYPT },      { "SHA512-CRYPT", CLASS_SHA512 },
    { "SHA256-CRYPT", CLASS_SHA256 },  { "MD5-CRYPT", CLASS_MD5 },
    { "BLF-CRYPT", CLASS_BCRYPT },
};

static const char crypt_chars[] =
    "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz$=";

/* Used only when the file has no entries at all (yescrypt, default cost). */
static const char empty_db_dummy[] =
    "$y$j9T$zf/oCWkZxFS4tIw5WXp2C.$g6tQccuya6NR6JTxihZPE12pZymue9mLOl7UneyjtZ7";

struct passwd_entry {
    char *user;
    char *secret; /* crypt hash, or the password itself for CLASS_PLAIN */
    enum passwd_class cls;
    unsigned int line;
};

struct passwd_db {
    struct passwd_entry *entries;
    size_t count;
    size_t alloc;
    const char *dummy; /* crypt hash for unknown users; NULL = plain dummy */
};

static void set_error(char *error, size_t errsize, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_error(char *error, size_t errsize, const char *fmt, ...)
{
    va_list ap;

    if (error == NULL || errsize == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(error, errsize, fmt, ap);
    va_end(ap);
}

static int crypt_class_of(const char *hash, enum passwd_class *cls_r)
{
    size_t n = sizeof(crypt_prefixes) / sizeof(crypt_prefixes[0]);

    for (size_t i = 0; i < n; i++) {
        size_t plen = strlen(crypt_prefixes[i].prefix);
        if (strncmp(hash, crypt_prefixes[i].prefix, plen) == 0) {
            *cls_r = crypt_prefixes[i].cls;
            return 0;
        }
    }
    return -1;
}

/* A crypt hash: a supported prefix, then only the characters crypt(3)
 * writes (its base64 alphabet, '$' separators, "rounds=N"). */
static int check_crypt_hash(const char *hash, enum passwd_class want, enum passwd_class *cls_r,
                            const char **error_r)
{
    size_t len = strlen(hash);

    if (crypt_class_of(hash, cls_r) < 0) {
        *error_r = "unsupported password hash (want $y$, $2b$, $6$, $5$ or $1$)";
        return -1;
    }
    if (want != CLASS_ANY_CRYPT && want != *cls_r) {
        *error_r = "hash does not match its {SCHEME}";
        return -1;
    }
    if (len > PASSWD_HASH_MAX || strspn(hash, crypt_chars) != len ||
        strlen(strrchr(hash, '$') + 1) != crypt_tail_len[*cls_r]) {
        *error_r = "malformed password hash";
        return -1;
    }
    return 0;
}

/* Splits an optional "{SCHEME}" off the password field. */
static int parse_scheme(char **field, enum passwd_class *cls_r, const char **error_r)
{
    char *p = *field, *end;
    size_t n = sizeof(schemes) / sizeof(schemes[0]);

    *cls_r = CLASS_ANY_CRYPT;
    if (*p != '{')
        return 0;
    end = strchr(p, '}');
    if (end == NULL) {
        *error_r = "unterminated {SCHEME}";
        return -1;
    }
    *end = '\0';
    *field = end + 1;
    for (size_t i = 0; i < n; i++) {
        if (strcasecmp(p + 1, schemes[i].name) == 0) {
            *cls_r = schemes[i].cls;
            return 0;
        }
    }
    *error_r = "unknown password {SCHEME}";
    return -1;
}

static int check_user(const char *user, const char **error_r)
{
    size_t len = strlen(user);

    if (len == 0) {
        *error_r = "empty user name";
        return -1;
    }
    if (len > PASSWD_USER_MAX) {
        *error_r = "user name longer than 255 octets";
        return -1;
    }
    for (const unsigned char *p = (const unsigned char *)user; *p != '\0'; p++) {
        if (*p < 0x20 || *p == 0x7f) {
            *error_r = "control character in user name";
            return -1;
        }
    }
    return 0;
}

/* "user:{SCHEME}secret[:uid:gid:...]"; the fields after the secret are for
 * userdb lookups and are ignored here. Points into line (modified). */
static int parse_line(char *line, char **user_r, char **secret_r, enum passwd_class *cls_r,
                      const char **error_r)
{
    char *pw = strchr(line, ':'), *end;

    if (pw == NULL) {
        *error_r = "missing ':' after the user name";
        return -1;
    }
    *pw++ = '\0';
    if ((end = strchr(pw, ':')) != NULL)
        *end = '\0';
    if (check_user(line, error_r) < 0 || parse_scheme(&pw, cls_r, error_r) < 0)
        return -1;
    if (*pw == '\0') {
        *error_r = "empty password";
        return -1;
    }
    if (*cls_r != CLASS_PLAIN && check_crypt_hash(pw, *cls_r, cls_r, error_r) < 0)
        return -1;
    *user_r = line;
    *secret_r = pw;
    return 0;
}

static int db_append(struct passwd_db *db, const char *user, const char *secret,
                     enum passwd_class cls, unsigned int line)
{
    struct passwd_entry *e;

    if (db->count == db->alloc) {
        size_t n = db->alloc == 0 ? 16 : db->alloc * 2;
        e = reallocarray(db->entries, n, sizeof(*e));
        if (e == NULL)
            return -1;
        db->entries = e;
        db->alloc = n;
    }
    e = &db->entries[db->count];
    e->user = strdup(user);
    e->secret = strdup(secret);
    if (e->user == NULL || e->secret == NULL) {
        free(e->user);
        free(e->secret);
        return -1;
    }
    e->cls = cls;
    e->line = line;
    db->count++;
    return 0;
}

/* Strips the line ending and says whether the line holds an entry at all.
 * A NUL byte inside the line is an error (-1). */
static int line_prepare(char *line, ssize_t len)
{
    if (len > 0 && line[len - 1] == '\n')
        line[--len] = '\0';
    if (len > 0 && line[len - 1] == '\r')
        line[--len] = '\0';
    if ((size_t)len != strlen(line))
        return -1;
    if (line[strspn(line, " \t")] == '\0' || line[0] == '#')
        return 0;
    return 1;
}

static int read_lines(FILE *fp, const char *path, struct passwd_db *db, char *error,
                      size_t errsize)
{
    char *line = NULL, *user, *secret;
    size_t size = 0;
    ssize_t len;
    unsigned int lineno = 0;
    enum passwd_class cls;
    const char *msg = NULL;
    int ret = 0, kind;

    while (ret == 0 && (len = getline(&line, &size, fp)) >= 0) {
        lineno++;
        kind = line_prepare(line, len);
        if (kind < 0)
            msg = "NUL byte in line";
        else if (kind > 0 && parse_line(line, &user, &secret, &cls, &msg) == 0 &&
                 db_append(db, user, secret, cls, lineno) < 0)
            msg = "out of memory";
        if (msg != NULL) {
            set_error(error, errsize, "%s:%u: %s", path, lineno, msg);
            ret = -1;
        }
    }
    if (ret == 0 && ferror(fp)) {
        set_error(error, errsize, "%s:%u: read error: %s", path, lineno + 1, strerror(errno));
        ret = -1;
    }
    if (line != NULL)
        explicit_bzero(line, size);
    free(line);
    return ret;
}

static int entry_cmp(const void *a, const void *b)
{
    const struct passwd_entry *x = a, *y = b;
    int c = strcmp(x->user, y->user);

    if (c != 0)
        return c;
    return x->line < y->line ? -1 : x->line > y->line;
}

static int key_cmp(const void *key, const void *elem)
{
    const struct passwd_entry *e = elem;

    return strcmp(key, e->user);
}

/* After sorting, duplicates are neighbours; report the later line. */
static int check_duplicates(const struct passwd_db *db, const char *path, char *error,
                            size_t errsize)
{
    for (size_t i = 1; i < db->count; i++) {
        const struct passwd_entry *prev = &db->entries[i - 1], *e = &db->entries[i];
        if (strcmp(prev->user, e->user) == 0) {
            set_error(error, errsize, "%s:%u: duplicate user (first on line %u)", path,
                      e->line, prev->line);
            return -1;
        }
    }
    return 0;
}

/* The dummy for unknown users: the hash of the first entry of the most
 * common class, so its scheme and cost match what most users pay. A tie
 * goes to a crypt class (yescrypt first), never to the fast {PLAIN}. */
static void choose_dummy(struct passwd_db *db)
{
    size_t counts[CLASS_COUNT] = { 0 };
    const char *first[CLASS_COUNT] = { NULL };
    enum passwd_class best = CLASS_YESCRYPT;

    if (db->count == 0) {
        db->dummy = empty_db_dummy;
        return;
    }
    for (size_t i = 0; i < db->count; i++) {
        const struct passwd_entry *e = &db->entries[i];
        if (counts[e->cls]++ == 0)
            first[e->cls] = e->secret;
    }
    for (int c = CLASS_YESCRYPT + 1; c < CLASS_COUNT; c++) {
        if (counts[c] > counts[best])
            best = (enum passwd_class)c;
    }
    if (counts[CLASS_PLAIN] > counts[best])
        best = CLASS_PLAIN;
    db->dummy = best == CLASS_PLAIN ? NULL : first[best];
}

int passwd_db_load(const char *path, struct passwd_db **db_r, char *error, size_t errsize)
{
    struct passwd_db *db;
    FILE *fp;
    int ret;

    *db_r = NULL;
    if ((fp = fopen(path, "re")) == NULL) {
        set_error(error, errsize, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    if ((db = calloc(1, sizeof(*db))) == NULL) {
        fclose(fp);
        set_error(error, errsize, "%s: out of memory", path);
        return -1;
    }
    ret = read_lines(fp, path, db, error, errsize);
    fclose(fp);
    if (ret == 0 && db->count > 0) {
        qsort(db->entries, db->count, sizeof(db->entries[0]), entry_cmp);
        ret = check_duplicates(db, path, error, errsize);
    }
    if (ret < 0) {
        passwd_db_free(&db);
        return -1;
    }
    choose_dummy(db);
    *db_r = db;
    return 0;
}

/* Compares SHA-256 digests so the time depends on neither length nor the
 * position of the first difference. */
static int plain_equal(const char *secret, const char *password)
{
    unsigned char a[EVP_MAX_MD_SIZE], b[EVP_MAX_MD_SIZE];
    unsigned int alen = 0, blen = 0;
    int ok;

    if (EVP_Digest(secret, strlen(secret), a, &alen, EVP_sha256(), NULL) != 1 ||
        EVP_Digest(password, strlen(password), b, &blen, EVP_sha256(), NULL) != 1)
        return 0;
    ok = alen == blen && CRYPTO_memcmp(a, b, alen) == 0;
    OPENSSL_cleanse(a, sizeof(a));
    OPENSSL_cleanse(b, sizeof(b));
    return ok;
}

/* crypt_rn() with the stored hash as setting; struct crypt_data is 32 KiB,
 * too big for a worker thread's stack, so it lives on the heap. */
static int crypt_equal(const char *hash, const char *password)
{
    struct crypt_data *data = calloc(1, sizeof(*data));
    const char *out;
    size_t len = strlen(hash);
    int ok = 0;

    if (data == NULL)
        return 0;
    out = crypt_rn(password, hash, data, sizeof(*data));
    if (out != NULL && out[0] != '*' && strlen(out) == len)
        ok = CRYPTO_memcmp(out, hash, len) == 0;
    OPENSSL_cleanse(data, sizeof(*data));
    free(data);
    return ok;
}

static const struct passwd_entry *db_lookup(const struct passwd_db *db, const char *user)
{
    if (db->count == 0 || strlen(user) > PASSWD_USER_MAX)
        return NULL;
    return bsearch(user, db->entries, db->count, sizeof(db->entries[0]), key_cmp);
}

int passwd_db_verify(const struct passwd_db *db, const char *user, const char *password)
{
    const struct passwd_entry *e;

    if (db == NULL || user == NULL || password == NULL)
        return 0;
    e = db_lookup(db, user);
    if (e == NULL) {
        /* Same work as a wrong password; the answer is no either way. */
        if (db->dummy != NULL)
            (void)crypt_equal(db->dummy, password);
        else
            (void)plain_equal("postern-dummy-password", password);
        return 0;
    }
    if (e->cls == CLASS_PLAIN)
        return plain_equal(e->secret, password);
    return crypt_equal(e->secret, password);
}

size_t passwd_db_count(const struct passwd_db *db)
{
    return db == NULL ? 0 : db->count;
}

void passwd_db_free(struct passwd_db **_db)
{
    struct passwd_db *db = *_db;

    if (db == NULL)
        return;
    *_db = NULL;
    for (size_t i = 0; i < db->count; i++) {
        explicit_bzero(db->entries[i].secret, strlen(db->entries[i].secret));
        free(db->entries[i].secret);
        free(db->entries[i].user);
    }
    free(db->entries);
    free(db);
}

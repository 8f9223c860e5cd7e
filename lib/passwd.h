/*
 * passwd — users and password hashes from a passwd-file in Dovecot's format
 * ("user:{SCHEME}hash:uid:gid:gecos:home:shell:extra", '#' comments, empty
 * lines ignored), verified with crypt(3) (yescrypt "$y$", bcrypt "$2b$",
 * SHA-512-crypt "$6$", SHA-256-crypt "$5$", MD5-crypt "$1$") or {PLAIN}.
 * Schemes accepted: {PLAIN}, {CLEAR}, {CRYPT}, {SHA512-CRYPT}, {SHA256-CRYPT},
 * {MD5-CRYPT}, {BLF-CRYPT}, and a bare crypt hash without a scheme.
 *
 * Loaded from the admin's file (trusted for format, still validated: a bad
 * line is an error naming file:line). passwd_db_verify() is BLOCKING (crypt
 * is slow on purpose): call it from a worker thread, never the event loop.
 * It is thread-safe (crypt_r) and takes about the same time for an unknown
 * user as for a wrong password.
 */
#ifndef POSTERN_PASSWD_H
#define POSTERN_PASSWD_H

#include <stddef.h>

struct passwd_db;

/* Returns 0 and *db_r, or -1 with a message "path:line: ..." in error
 * (errsize bytes). Usernames are compared as given (case-sensitive), with
 * a user name of up to 255 octets. */
int passwd_db_load(const char *path, struct passwd_db **db_r, char *error, size_t errsize);

/* 1 = user exists and the password matches, 0 = no. */
int passwd_db_verify(const struct passwd_db *db, const char *user, const char *password);

size_t passwd_db_count(const struct passwd_db *db);

void passwd_db_free(struct passwd_db **db);

#endif

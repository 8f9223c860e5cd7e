/*
 * attachments-test — what test-attachments builds its input from, at test
 * time: MIME messages (multipart/mixed with base64 parts, any headers the
 * test gives, so RFC 2231 and RFC 2047 names are written out literally),
 * MIME bombs (nested multiparts, sibling parts, a huge header), a minimal
 * PE executable that libmagic recognizes, and archives made with
 * libarchive's writers (zip, encrypted zip, 7z, tar.gz, a gzip'd single
 * file) or by hand (a RAR 4 archive with stored entries: libarchive cannot
 * write RAR). Everything is in memory; failures fail the test.
 */
#ifndef POSTERN_ATTACHMENTS_TEST_H
#define POSTERN_ATTACHMENTS_TEST_H

#include <stdbool.h>
#include <stddef.h>

/* A growing buffer (NUL-terminated). */
struct mbuf {
    char *p;
    size_t len, cap;
};

void mbuf_add(struct mbuf *b, const void *data, size_t len);
void mbuf_str(struct mbuf *b, const char *s);
void mbuf_printf(struct mbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void mbuf_free(struct mbuf *b);

/* The message header (a Received field first, as content_fd shows it) of a
 * multipart/mixed with boundary, and a text part. */
void msg_begin(struct mbuf *m, const char *boundary);
/* A part: headers (each ending CR LF) and data, base64-encoded. */
void msg_part(struct mbuf *m, const char *boundary, const char *headers, const void *data,
              size_t len);
/* An attachment part: Content-Type type with name=, Content-Disposition
 * attachment with filename= (each NULL to leave it out). */
void msg_file(struct mbuf *m, const char *boundary, const char *type, const char *name,
              const char *filename, const void *data, size_t len);
void msg_end(struct mbuf *m, const char *boundary);

/* MIME bombs, each a whole message. */
char *bomb_nested(unsigned depth, const char *param, size_t *len);
char *bomb_siblings(unsigned parts, const char *param, size_t *len);
char *bomb_header(size_t octets, size_t *len);
char *bomb_fields(unsigned fields, size_t *len);
/* A message whose attachment's Content-Disposition has params RFC 2231
 * parameters: kind "continuations" (filename*0 .. filename*<params-1>, "a"
 * each and ".exe" last), "reversed" (the same, the last number first) or
 * "distinct" (p0 .. p<params-1>, then filename="evil.exe"). */
char *bomb_rfc2231(unsigned params, const char *kind, size_t *len);

/* A minimal PE executable of size octets (>= 512). */
void test_pe(unsigned char *out, size_t size);

struct test_entry {
    const char *name;
    const void *data;
    size_t len;
};

/* An archive of entries in format "zip", "zip-encrypted", "7z", "tar.gz"
 * or "gz" (one entry: a gzip'd file); malloc'd, *len octets. */
void *archive_build(const char *format, const struct test_entry *e, size_t n, size_t *len);
/* Zip bombs, built a block at a time (never the whole unpacked data in
 * memory): one entry name of size zero octets; a zip of levels nested zips
 * (l1.zip .. ), each holding copies of the one below it and the last one
 * copies of 1 MiB of zeros; entries entries of one octet each (f<n>.txt),
 * the last one named last when not NULL. Each malloc'd, *len octets. */
void *zip_zeros(const char *name, size_t size, size_t *len);
void *zip_nested_bomb(unsigned levels, unsigned copies, size_t *len);
void *zip_many(unsigned entries, const char *last, size_t *len);

/* A RAR 4 archive of one stored entry, its encrypted flag as given. */
void *rar4_build(const char *name, const void *data, size_t len, bool encrypted, size_t *out_len);

/* What the inspection tests share: the host name for the policy, the
 * boundary of msg_one_file, and a rule set covering each match kind. */
#define ATT_TEST_HOST "mx.postern.test"
#define ATT_TEST_BOUNDARY "b1"
#define ATT_TEST_RULES                                                                             \
    "rules = ( { id = \"exe\"; extensions = [\"exe\", \".SCR\", \"com\"]; },"                      \
    " { id = \"pe\"; detected_type = [\"application/vnd.microsoft.portable-executable\","          \
    " \"application/x-dosexec\"]; },"                                                              \
    " { id = \"msdownload\"; declared_type = [\"application/x-msdownload\"]; in_archives = "       \
    "false; },"                                                                                    \
    " { id = \"js\"; name = [\"*.js\"]; action = \"quarantine\"; },"                               \
    " { id = \"bat\"; extensions = [\"bat\"]; action = \"strip\"; } );"

/* A message whose only part is one file (boundary ATT_TEST_BOUNDARY). */
void msg_one_file(struct mbuf *m, const char *type, const char *name, const char *filename,
                  const void *data, size_t len);

/* An attachments policy made from a filter group's keys, as posternd loads
 * it (config_test_load); att_pol_free frees the policy and the config. */
struct postern_config;
struct att_policy;
struct att_pol {
    struct postern_config *cfg;
    struct att_policy *p;
};
void att_pol_new(struct att_pol *x, const char *hostname, const char *keys);
void att_pol_free(struct att_pol *x);

#endif

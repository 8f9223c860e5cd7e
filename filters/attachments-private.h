/*
 * attachments-private — what the files of the attachments filter share:
 * the compiled policy and its rules (attachments-config.c makes them,
 * attachments-rules.c matches them), the libmagic pool
 * (attachments-magic.c), the archive inspection (attachments-archive.c),
 * the findings of one message (attachments-mime.c keeps them) and the
 * replacement of stripped parts (attachments-strip.c). Nothing outside the
 * filter includes this.
 */
#ifndef POSTERN_ATTACHMENTS_PRIVATE_H
#define POSTERN_ATTACHMENTS_PRIVATE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "filters/attachments.h"

/* libmagic gets at most this much of a file. */
#define ATT_MAGIC_BYTES (1024 * 1024)
/* An archive's ratio is checked once its entries passed this many octets. */
#define ATT_RATIO_FLOOR (1024 * 1024)
#define ATT_TYPE_MAX 128

struct att_rule {
    char id[64];
    char **names, **exts, **declared, **detected; /* NULL-terminated; NULL = not a criterion */
    bool double_ext, in_archives;
    enum att_action action;
};

struct att_magic;

struct att_policy {
    struct att_rule *rules;
    size_t rule_count;
    struct att_limits limits;
    enum att_action encrypted_action, archive_limit_action, mime_limit_action;
    bool need_detect;         /* some rule has detected_type */
    bool need_detect_entries; /* ... and in_archives */
    char hostname[256];
    struct att_magic *magic; /* thread-safe */
};

/* ---- the instance (attachments.c), for the module ---- */

int att_create(const struct filter_env *env, const void *settings, void **instance, char *error,
               size_t errsize);
void att_destroy(void *instance);

/* ---- rules (attachments-rules.c) ---- */

/* A file as the rules see it: up to two candidate names (raw, as decoded),
 * the declared type (NULL for archive entries) and the detected one (NULL
 * when not detected). */
struct att_object {
    const char *names[2];
    size_t name_count;
    const char *declared;
    const char *detected;
    bool in_archive;
};

/* The first rule that matches o into *rule_r (NULL: none); *name_r = the
 * index of the candidate name that matched (0 when the rule has no name
 * criterion). Returns 0, or -1 when out of memory. */
int att_rules_match(const struct att_policy *p, const struct att_object *o,
                    const struct att_rule **rule_r, size_t *name_r);

/* ---- libmagic (attachments-magic.c) ---- */

/* A pool of libmagic cookies (one is not thread-safe): a thread takes one,
 * loads a new one when none is free, and gives it back. Made with one
 * cookie loaded, so a missing database is an error at start. */
struct att_magic *att_magic_new(char *error, size_t errsize);
void att_magic_free(struct att_magic **m);
/* The MIME type of data[0..len) (at most ATT_MAGIC_BYTES are looked at)
 * into out, lower case. Returns 0, or -1 (out of memory, database). */
int att_magic_detect(struct att_magic *m, const void *data, size_t len, char *out, size_t size);

/* ---- findings (attachments-mime.c keeps them) ---- */

/* One attachment being judged: the strongest finding over the part itself
 * and what its archives hold (the first of equal strength). */
struct att_verdict {
    bool found;
    struct att_finding f;
};

/* Keeps f in v when v has none or f is stronger. */
void att_verdict_offer(struct att_verdict *v, const struct att_finding *f);

/* ---- archives (attachments-archive.c) ---- */

struct att_archive_scan {
    const struct att_policy *p;
    const atomic_bool *stop;
    const char *part_name; /* the MIME part's display name, for findings */
    uint64_t *unpacked;    /* the message's, every archive and level together */
    unsigned *entries;     /* the same */
    struct att_verdict *v;
};

/* Offers data to libarchive; when it is an archive, judges its entries
 * (rules with in_archives, encryption, the archive limits, archives
 * inside it) into s->v. Returns 1 when it was an archive, 0 when not, -1
 * when out of memory, stopped or libmagic failed (error filled). */
int att_archive_check(struct att_archive_scan *s, const void *data, size_t len, char *error,
                      size_t errsize);

/* ---- MIME (attachments-mime.c) ---- */

/* Initializes GMime once per process (thread-safe; GMime is never shut
 * down: its tables stay for the process's life). */
void att_mime_init(void);

/* ---- strip (attachments-strip.c) ---- */

struct _GMimeObject;

/* The text of the part that replaces a stripped one. */
void att_strip_text(const struct att_policy *p, const struct att_finding *f, char *out,
                    size_t size);
/* A new text/plain part for f (a GMimeTextPart), or NULL when out of memory. */
struct _GMimeObject *att_strip_part(const struct att_policy *p, const struct att_finding *f);
/* Writes object's content (no header) with CR LF lines into r->body.
 * Returns 0 or -1 (out of memory). */
int att_strip_body(struct _GMimeObject *object, struct att_report *r);
/* Fills r for a message that is itself the stripped attachment: the
 * replacement's body, Content-Type and Content-Transfer-Encoding. */
int att_strip_whole(const struct att_policy *p, const struct att_finding *f, struct att_report *r);

#endif

/*
 * attachments-magic — content type detection with libmagic for the
 * attachments filter's worker threads. A magic_t is not thread-safe, so
 * the pool keeps loaded cookies on a free list under a mutex: a thread
 * takes one (loading a new one, outside the lock, when none is free),
 * detects, and gives it back. The pool never holds more cookies than
 * threads ever used at once.
 *
 * libmagic reads Debian's compiled database (the default path); it looks at
 * the first ATT_MAGIC_BYTES octets it is given, and is told not to look
 * into compressed data (archives are libarchive's job). Trusts libmagic
 * with the untrusted octets.
 */
#include "config.h"
#include "filters/attachments-private.h"

#include <ctype.h>
#include <magic.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAGIC_FLAGS (MAGIC_MIME_TYPE | MAGIC_NO_CHECK_COMPRESS | MAGIC_ERROR)

struct magic_slot {
    struct magic_slot *next;
    magic_t cookie;
};

struct att_magic {
    pthread_mutex_t lock;
    struct magic_slot *free_list;
};

static struct magic_slot *slot_load(char *error, size_t errsize)
{
    struct magic_slot *s = calloc(1, sizeof(*s));

    if (s == NULL) {
        snprintf(error, errsize, "out of memory");
        return NULL;
    }
    if ((s->cookie = magic_open(MAGIC_FLAGS)) == NULL) {
        snprintf(error, errsize, "libmagic: cannot open");
        free(s);
        return NULL;
    }
    if (magic_load(s->cookie, NULL) != 0) {
        snprintf(error, errsize, "libmagic: cannot load its database: %s",
                 magic_error(s->cookie) != NULL ? magic_error(s->cookie) : "?");
        magic_close(s->cookie);
        free(s);
        return NULL;
    }
    return s;
}

struct att_magic *att_magic_new(char *error, size_t errsize)
{
    struct att_magic *m = calloc(1, sizeof(*m));

    if (m == NULL) {
        snprintf(error, errsize, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&m->lock, NULL);
    if ((m->free_list = slot_load(error, errsize)) == NULL) {
        att_magic_free(&m);
        return NULL;
    }
    return m;
}

void att_magic_free(struct att_magic **mp)
{
    struct att_magic *m = *mp;

    if (m == NULL)
        return;
    *mp = NULL;
    while (m->free_list != NULL) {
        struct magic_slot *s = m->free_list;
        m->free_list = s->next;
        magic_close(s->cookie);
        free(s);
    }
    pthread_mutex_destroy(&m->lock);
    free(m);
}

static struct magic_slot *slot_take(struct att_magic *m)
{
    struct magic_slot *s;
    char error[256];

    pthread_mutex_lock(&m->lock);
    s = m->free_list;
    if (s != NULL)
        m->free_list = s->next;
    pthread_mutex_unlock(&m->lock);
    return s != NULL ? s : slot_load(error, sizeof(error));
}

static void slot_give(struct att_magic *m, struct magic_slot *s)
{
    pthread_mutex_lock(&m->lock);
    s->next = m->free_list;
    m->free_list = s;
    pthread_mutex_unlock(&m->lock);
}

int att_magic_detect(struct att_magic *m, const void *data, size_t len, char *out, size_t size)
{
    struct magic_slot *s = slot_take(m);
    const char *type;
    size_t i;

    if (s == NULL)
        return -1;
    type = magic_buffer(s->cookie, data, len < ATT_MAGIC_BYTES ? len : ATT_MAGIC_BYTES);
    /* "application/octet-stream" when nothing is known; NULL only on error */
    snprintf(out, size, "%s", type != NULL ? type : "application/octet-stream");
    slot_give(m, s);
    for (i = 0; out[i] != '\0'; i++)
        out[i] = (char)tolower((unsigned char)out[i]);
    return 0;
}

/*
 * attachments-mime — one message's inspection (att_inspect, attachments.h):
 * the pre-scan of the bounds, GMime's parse over the message in memory,
 * then an iterative walk over GMime's tree (no recursion: depth and part
 * bounds are checked again on the tree GMime really built) that judges
 * every leaf part and every message/rfc822 part as a file: its names, its
 * declared and detected types, what its archives hold. The findings go to
 * the report; with strip as the message's action the parts to strip are
 * replaced in the tree and the new body is written (attachments-strip.c).
 *
 * Runs on a worker thread (or a test's); every GMime object it makes is its
 * own. Checks the stop flag at every part.
 */
#include "config.h"
#include "filters/attachments-private.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gmime/gmime.h>

static pthread_once_t gmime_once = PTHREAD_ONCE_INIT;

static void gmime_init_once(void)
{
    g_mime_init();
}

void att_mime_init(void)
{
    pthread_once(&gmime_once, gmime_init_once);
}

struct strip_target {
    GMimeObject *parent; /* a multipart, a message, or NULL: the message itself */
    int index;           /* in the multipart */
    struct att_finding f;
};

struct walk {
    const struct att_policy *p;
    const atomic_bool *stop;
    struct att_report *r;
    struct strip_target *strips;
    size_t strip_count, strip_alloc;
    uint64_t unpacked; /* from every archive of the message */
    unsigned entries;  /* in every archive of the message */
    char *error;
    size_t errsize;
    bool over; /* a MIME bound was crossed: the walk ends */
};

struct frame {
    GMimeObject *obj, *parent;
    int index;
    unsigned depth;
};

void att_report_clear(struct att_report *r)
{
    free(r->body);
    free(r->content_type);
    free(r->transfer_encoding);
    memset(r, 0, sizeof(*r));
}

/* ---- findings ---- */

static int record(struct walk *w, const struct att_finding *f, GMimeObject *parent, int index)
{
    struct att_report *r = w->r;

    if (r->count + r->dropped == 0 || f->action > r->action) {
        r->action = f->action;
        r->decisive = *f;
    }
    if (r->count < ATT_FINDINGS_MAX)
        r->findings[r->count++] = *f;
    else
        r->dropped++;
    if (f->action != ATT_ACTION_STRIP)
        return 0;
    if (w->strip_count == w->strip_alloc) {
        size_t n = w->strip_alloc == 0 ? 4 : w->strip_alloc * 2;
        struct strip_target *grown = realloc(w->strips, n * sizeof(*grown));
        if (grown == NULL) {
            snprintf(w->error, w->errsize, "out of memory");
            return -1;
        }
        w->strips = grown;
        w->strip_alloc = n;
    }
    w->strips[w->strip_count++] = (struct strip_target){.parent = parent, .index = index, .f = *f};
    return 0;
}

static int mime_limit(struct walk *w, const char *why)
{
    struct att_finding f = {.kind = ATT_KIND_MIME_LIMIT, .action = w->p->mime_limit_action};

    snprintf(f.why, sizeof(f.why), "%s", why);
    w->over = true;
    return record(w, &f, NULL, -1);
}

/* ---- one part ---- */

/* The decoded content of a leaf part, in a memory stream (NULL: none). */
static GMimeStream *decode(GMimeObject *obj)
{
    GMimeDataWrapper *content = g_mime_part_get_content((GMimePart *)obj);
    GMimeStream *out;

    if (content == NULL)
        return NULL;
    out = g_mime_stream_mem_new();
    if (g_mime_data_wrapper_write_to_stream(content, out) < 0) {
        g_object_unref(out);
        return NULL;
    }
    return out;
}

/* The name shown for a part: the candidate that matched, or the first, or
 * "(unnamed TYPE)". */
static void display_name(const struct att_object *o, size_t which, char *out, size_t size)
{
    char text[ATT_NAME_MAX];

    if (o->name_count > 0)
        snprintf(text, sizeof(text), "%s", o->names[which < o->name_count ? which : 0]);
    else
        snprintf(text, sizeof(text), "(unnamed %s)", o->declared != NULL ? o->declared : "part");
    att_text_sanitize(text, out, size, false);
}

struct part_info {
    struct att_object o;
    char *declared;    /* g_malloc'd */
    GMimeStream *data; /* decoded content, or NULL */
    char detected[ATT_TYPE_MAX];
};

static int part_info(struct walk *w, GMimeObject *obj, struct part_info *pi)
{
    const char *fname = g_mime_object_get_content_disposition_parameter(obj, "filename");
    const char *cname = g_mime_object_get_content_type_parameter(obj, "name");
    GMimeContentType *ct = g_mime_object_get_content_type(obj);

    if (fname != NULL && fname[0] != '\0')
        pi->o.names[pi->o.name_count++] = fname;
    if (cname != NULL && cname[0] != '\0' && (fname == NULL || strcmp(fname, cname) != 0))
        pi->o.names[pi->o.name_count++] = cname;
    if (ct != NULL && (pi->declared = g_mime_content_type_get_mime_type(ct)) != NULL) {
        for (char *c = pi->declared; *c != '\0'; c++)
            *c = (char)tolower((unsigned char)*c);
        pi->o.declared = pi->declared;
    }
    if (!GMIME_IS_PART(obj) || (pi->data = decode(obj)) == NULL)
        return 0;
    if (w->p->need_detect) {
        GByteArray *b = g_mime_stream_mem_get_byte_array((GMimeStreamMem *)pi->data);
        if (att_magic_detect(w->p->magic, b->data, b->len, pi->detected, sizeof(pi->detected)) <
            0) {
            snprintf(w->error, w->errsize, "libmagic failed");
            return -1;
        }
        pi->o.detected = pi->detected;
    }
    return 0;
}

/* Judges one file of the message. Returns 0, or -1 with the error. */
static int judge(struct walk *w, const struct frame *fr)
{
    struct part_info pi = {.declared = NULL};
    struct att_verdict v = {.found = false};
    const struct att_rule *rule = NULL;
    char name[ATT_NAME_MAX];
    size_t which = 0;
    int r;

    if ((r = part_info(w, fr->obj, &pi)) == 0 &&
        (r = att_rules_match(w->p, &pi.o, &rule, &which)) < 0)
        snprintf(w->error, w->errsize, "out of memory");
    display_name(&pi.o, which, name, sizeof(name));
    if (r == 0 && rule != NULL) {
        struct att_finding f = {.kind = ATT_KIND_RULE, .action = rule->action};
        snprintf(f.name, sizeof(f.name), "%s", name);
        snprintf(f.rule, sizeof(f.rule), "%s", rule->id);
        att_verdict_offer(&v, &f);
    }
    if (r == 0 && pi.data != NULL && w->p->limits.archive_max_depth > 0 &&
        !(v.found && v.f.action == ATT_ACTION_REJECT)) {
        GByteArray *b = g_mime_stream_mem_get_byte_array((GMimeStreamMem *)pi.data);
        struct att_archive_scan scan = {.p = w->p,
                                        .stop = w->stop,
                                        .part_name = name,
                                        .unpacked = &w->unpacked,
                                        .entries = &w->entries,
                                        .v = &v};
        if (att_archive_check(&scan, b->data, b->len, w->error, w->errsize) < 0)
            r = -1;
    }
    if (r == 0 && v.found)
        r = record(w, &v.f, fr->parent, fr->index);
    if (pi.data != NULL)
        g_object_unref(pi.data);
    g_free(pi.declared);
    return r;
}

/* ---- the walk ---- */

struct stack {
    struct frame *f;
    size_t n, alloc;
};

static int push(struct walk *w, struct stack *st, struct frame fr)
{
    if (st->n == st->alloc) {
        size_t n = st->alloc == 0 ? 16 : st->alloc * 2;
        struct frame *grown = realloc(st->f, n * sizeof(*grown));
        if (grown == NULL) {
            snprintf(w->error, w->errsize, "out of memory");
            return -1;
        }
        st->f = grown;
        st->alloc = n;
    }
    st->f[st->n++] = fr;
    return 0;
}

/* What a frame holds: a multipart's parts, an embedded message's body. */
static int open_frame(struct walk *w, struct stack *st, const struct frame *fr)
{
    if (GMIME_IS_MULTIPART(fr->obj)) {
        GMimeMultipart *mp = (GMimeMultipart *)fr->obj;
        for (int i = g_mime_multipart_get_count(mp); i-- > 0;) {
            struct frame c = {.obj = g_mime_multipart_get_part(mp, i),
                              .parent = fr->obj,
                              .index = i,
                              .depth = fr->depth + 1};
            if (push(w, st, c) < 0)
                return -1;
        }
        return 0;
    }
    if (!GMIME_IS_MESSAGE_PART(fr->obj) && !GMIME_IS_PART(fr->obj))
        return 0;
    size_t before = w->r->count + w->r->dropped;
    if (judge(w, fr) < 0)
        return -1;
    if (!GMIME_IS_MESSAGE_PART(fr->obj) || w->r->count + w->r->dropped != before)
        return 0; /* a leaf, or a message judged as a whole */
    GMimeMessage *m = g_mime_message_part_get_message((GMimeMessagePart *)fr->obj);
    GMimeObject *body = m != NULL ? g_mime_message_get_mime_part(m) : NULL;
    if (body == NULL)
        return 0;
    return push(w, st,
                (struct frame){
                    .obj = body, .parent = (GMimeObject *)m, .index = -1, .depth = fr->depth + 1});
}

static int walk_tree(struct walk *w, GMimeObject *top)
{
    const struct att_limits *lim = &w->p->limits;
    struct stack st = {.f = NULL};
    char why[128];
    int r = push(w, &st, (struct frame){.obj = top, .index = -1});

    while (r == 0 && st.n > 0 && !w->over) {
        struct frame fr = st.f[--st.n];
        if (w->stop != NULL && atomic_load(w->stop)) {
            snprintf(w->error, w->errsize, "stopped");
            r = -1;
        } else if (++w->r->parts > lim->max_parts) {
            snprintf(why, sizeof(why), "more than %u MIME parts", lim->max_parts);
            r = mime_limit(w, why);
        } else if (fr.depth > lim->max_depth) {
            snprintf(why, sizeof(why), "nesting depth over %u", lim->max_depth);
            r = mime_limit(w, why);
        } else {
            r = open_frame(w, &st, &fr);
        }
    }
    free(st.f);
    return r;
}

/* ---- strip ---- */

static int apply_strips(struct walk *w, GMimeObject *top)
{
    for (size_t i = 0; i < w->strip_count; i++) {
        const struct strip_target *t = &w->strips[i];
        GMimeObject *repl;
        if (t->parent == NULL)
            return att_strip_whole(w->p, &t->f, w->r);
        if ((repl = att_strip_part(w->p, &t->f)) == NULL)
            return -1;
        if (GMIME_IS_MULTIPART(t->parent)) {
            GMimeObject *old =
                g_mime_multipart_replace((GMimeMultipart *)t->parent, t->index, repl);
            if (old != NULL)
                g_object_unref(old);
        } else {
            g_mime_message_set_mime_part((GMimeMessage *)t->parent, repl);
        }
        g_object_unref(repl);
    }
    return att_strip_body(top, w->r);
}

/* ---- the message ---- */

static void on_warning(gint64 offset, GMimeParserWarning code, const gchar *item, gpointer data)
{
    (void)offset, (void)item;
    if (code == GMIME_CRIT_NESTING_OVERFLOW)
        *(bool *)data = true;
}

static int inspect_parsed(struct walk *w, GMimeMessage *m, bool overflow)
{
    GMimeObject *top = m != NULL ? g_mime_message_get_mime_part(m) : NULL;
    char why[128];
    int r;

    if (m == NULL)
        return mime_limit(w, "the message cannot be parsed");
    if (overflow) {
        snprintf(why, sizeof(why), "nesting depth over %u", w->p->limits.max_depth);
        return mime_limit(w, why);
    }
    if (top == NULL)
        return 0;
    if ((r = walk_tree(w, top)) < 0 || w->over || w->r->count == 0 ||
        w->r->action != ATT_ACTION_STRIP)
        return r;
    if (apply_strips(w, top) < 0) {
        snprintf(w->error, w->errsize, "out of memory");
        return -1;
    }
    return 0;
}

static int parse_and_walk(struct walk *w, const char *msg, size_t len)
{
    /* GMime reads the message where it is: the array lends msg to the
     * stream and is freed without it */
    GByteArray *ba = g_byte_array_new_take((guint8 *)(uintptr_t)msg, len);
    GMimeStream *stream = g_mime_stream_mem_new_with_byte_array(ba);
    GMimeParserOptions *opts = g_mime_parser_options_new();
    bool overflow = false;
    GMimeParser *parser;
    GMimeMessage *m;
    int r;

    g_mime_stream_mem_set_owner((GMimeStreamMem *)stream, FALSE);
    g_mime_parser_options_set_warning_callback(opts, on_warning, &overflow);
    parser = g_mime_parser_new_with_stream(stream);
    g_mime_parser_set_format(parser, GMIME_FORMAT_MESSAGE);
    m = g_mime_parser_construct_message(parser, opts);
    g_object_unref(parser);
    r = inspect_parsed(w, m, overflow);
    if (m != NULL)
        g_object_unref(m);
    g_object_unref(stream);
    g_mime_parser_options_free(opts);
    (void)g_byte_array_free(ba, FALSE);
    return r;
}

int att_inspect(const struct att_policy *p, const char *msg, size_t len, const atomic_bool *stop,
                struct att_report *r, char *error, size_t errsize)
{
    struct walk w = {.p = p, .stop = stop, .r = r, .error = error, .errsize = errsize};
    char why[128];
    int ret;

    att_report_clear(r);
    att_mime_init();
    if (len > p->limits.max_size || len > G_MAXUINT) {
        snprintf(why, sizeof(why), "message over %llu octets",
                 (unsigned long long)p->limits.max_size);
        ret = mime_limit(&w, why);
    } else if ((ret = att_prescan(msg, len, &p->limits, why, sizeof(why))) != 0) {
        if (ret < 0)
            snprintf(error, errsize, "out of memory");
        else
            ret = mime_limit(&w, why);
    } else {
        ret = parse_and_walk(&w, msg, len);
    }
    free(w.strips);
    if (ret < 0)
        att_report_clear(r);
    return ret < 0 ? -1 : 0;
}

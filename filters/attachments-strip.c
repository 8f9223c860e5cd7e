/*
 * attachments-strip — the part that takes a stripped attachment's place,
 * and the new body of the message (see attachments.h): a text/plain part
 * saying which file was removed, by which host and why, in us-ascii or
 * (for names outside ASCII) utf-8 with a transfer encoding that keeps it
 * 7-bit; the message's body written back by GMime
 * with CR LF line ends, every bare LF or CR GMime leaves (it writes
 * multipart epilogues as they were) made CR LF too, as
 * filter_call_replace_body wants it.
 *
 * Runs on a worker thread. The names in the text come sanitized in the
 * finding (valid UTF-8, no control characters).
 */
#include "config.h"
#include "filters/attachments-private.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gmime/gmime.h>

static void reason(const struct att_finding *f, char *out, size_t size)
{
    bool inner = f->entry[0] != '\0';

    switch (f->kind) {
    case ATT_KIND_RULE:
        if (inner)
            snprintf(out, size, "the file \"%s\" inside it matched the attachment rule \"%s\".",
                     f->entry, f->rule);
        else
            snprintf(out, size, "it matched the attachment rule \"%s\".", f->rule);
        return;
    case ATT_KIND_ENCRYPTED:
        if (inner)
            snprintf(out, size,
                     "the archive \"%s\" inside it is encrypted: its content cannot be checked.",
                     f->entry);
        else
            snprintf(out, size, "it is an encrypted archive: its content cannot be checked.");
        return;
    case ATT_KIND_ARCHIVE_LIMIT:
        if (inner)
            snprintf(out, size, "the archive \"%s\" inside it is over a limit (%s).", f->entry,
                     f->why);
        else
            snprintf(out, size, "it is an archive over a limit (%s).", f->why);
        return;
    case ATT_KIND_MIME_LIMIT:
        break;
    }
    snprintf(out, size, "the message is over a limit (%s).", f->why);
}

void att_strip_text(const struct att_policy *p, const struct att_finding *f, char *out, size_t size)
{
    char why[ATT_NAME_MAX * 2 + 256];

    reason(f, why, sizeof(why));
    snprintf(out, size,
             "The attachment \"%s\" was removed from this message by %s.\n"
             "Reason: %s\n",
             f->name, p->hostname, why);
}

GMimeObject *att_strip_part(const struct att_policy *p, const struct att_finding *f)
{
    char text[ATT_NAME_MAX * 3 + 1024];
    GMimeTextPart *part = g_mime_text_part_new_with_subtype("plain");
    GMimeStream *stream;
    GMimeDataWrapper *content;
    bool ascii = true;

    if (part == NULL)
        return NULL;
    att_strip_text(p, f, text, sizeof(text));
    for (const char *c = text; *c != '\0'; c++)
        ascii = ascii && (unsigned char)*c < 0x80;
    /* the text as it is (UTF-8), not converted to a charset GMime picks */
    stream = g_mime_stream_mem_new_with_buffer(text, strlen(text));
    content = g_mime_data_wrapper_new_with_stream(stream, GMIME_CONTENT_ENCODING_DEFAULT);
    g_mime_part_set_content((GMimePart *)part, content);
    g_object_unref(content);
    g_object_unref(stream);
    g_mime_text_part_set_charset(part, ascii ? "us-ascii" : "utf-8");
    g_mime_part_set_content_encoding(
        (GMimePart *)part,
        g_mime_part_get_best_content_encoding((GMimePart *)part, GMIME_ENCODING_CONSTRAINT_7BIT));
    return (GMimeObject *)part;
}

/* data[0..len) with every line ending CR LF, and a CR LF at the end. */
static char *crlf(const unsigned char *data, size_t len, size_t *out_len)
{
    size_t extra = 2, o = 0;
    char *out;

    for (size_t i = 0; i < len; i++) {
        if ((data[i] == '\n' && (i == 0 || data[i - 1] != '\r')) ||
            (data[i] == '\r' && (i + 1 == len || data[i + 1] != '\n')))
            extra++;
    }
    if ((out = malloc(len + extra + 1)) == NULL)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        if (data[i] == '\n' && (i == 0 || data[i - 1] != '\r'))
            out[o++] = '\r';
        out[o++] = (char)data[i];
        if (data[i] == '\r' && (i + 1 == len || data[i + 1] != '\n'))
            out[o++] = '\n';
    }
    if (o < 2 || out[o - 2] != '\r' || out[o - 1] != '\n') {
        out[o++] = '\r';
        out[o++] = '\n';
    }
    out[o] = '\0';
    *out_len = o;
    return out;
}

int att_strip_body(GMimeObject *object, struct att_report *r)
{
    GMimeFormatOptions *fo = g_mime_format_options_clone(NULL);
    GMimeStream *out = g_mime_stream_mem_new();
    GByteArray *b;
    int ret = -1;

    g_mime_format_options_set_newline_format(fo, GMIME_NEWLINE_FORMAT_DOS);
    if (g_mime_object_write_content_to_stream(object, fo, out) >= 0) {
        b = g_mime_stream_mem_get_byte_array((GMimeStreamMem *)out);
        free(r->body);
        r->body = crlf(b->data, b->len, &r->body_len);
        ret = r->body != NULL ? 0 : -1;
    }
    g_object_unref(out);
    g_mime_format_options_free(fo);
    return ret;
}

int att_strip_whole(const struct att_policy *p, const struct att_finding *f, struct att_report *r)
{
    GMimeObject *part = att_strip_part(p, f);
    const char *charset, *cte;
    char ctype[128];
    int ret;

    if (part == NULL)
        return -1;
    charset = g_mime_text_part_get_charset((GMimeTextPart *)part);
    cte = g_mime_content_encoding_to_string(g_mime_part_get_content_encoding((GMimePart *)part));
    snprintf(ctype, sizeof(ctype), "text/plain; charset=%s", charset != NULL ? charset : "utf-8");
    r->content_type = strdup(ctype);
    r->transfer_encoding = strdup(cte != NULL ? cte : "7bit");
    ret = r->content_type != NULL && r->transfer_encoding != NULL ? att_strip_body(part, r) : -1;
    g_object_unref(part);
    return ret;
}

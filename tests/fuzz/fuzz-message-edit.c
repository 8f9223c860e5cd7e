/*
 * fuzz-message-edit — libFuzzer target for the header parser and rewriter
 * of gateway/message-edit, which reads the client's message content: the
 * input is a little edit script and then the content. Byte 0 gives the
 * number of edits (0..7), each next byte one edit (kind in bits 0-1:
 * insert, change, delete, replace body; index in bits 2-4; field name from
 * a fixed list in bits 5-7); the rest is the content, written to a memfd
 * and rewritten into a spool message in a temporary spool.
 *
 * Invariants (abort() when broken): the rewrite succeeds (the input is far
 * below MESSAGE_EDIT_HEADER_MAX); the report's sizes are the input's and
 * the output's; for content without a bare CR or LF (as the DATA reader
 * leaves it), the output has none either and a first field "Received:"
 * comes out first and unchanged.
 */
#include "config.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <sys/mman.h>

#include <event2/event.h>

#include "filters/edit.h"
#include "gateway/message-edit.h"
#include "lib/spool.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const names[] = {"Received", "Subject",  "X-A", "From",
                                    "To",       "received", "X-B", "DKIM-Signature"};

static struct spool *spool;

static void check(bool ok)
{
    if (!ok)
        abort();
}

static char spool_dir[] = "/tmp/fuzz-message-edit.XXXXXX";
static struct event_base *base;

/* At exit: the spool and its (empty) directories go. */
static void drop_spool(void)
{
    static const char *const subs[] = {"tmp", "queue", "hold", "corrupt"};
    char path[sizeof(spool_dir) + 16];

    spool_close(&spool);
    event_base_free(base);
    for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", spool_dir, subs[i]);
        (void)rmdir(path);
    }
    (void)rmdir(spool_dir);
}

/* One spool for the process, in a directory of its own. */
static struct spool *get_spool(void)
{
    char error[256];

    if (spool != NULL)
        return spool;
    check(mkdtemp(spool_dir) != NULL);
    check((base = event_base_new()) != NULL);
    check(spool_open(spool_dir, base, &spool, error, sizeof(error)) == 0);
    atexit(drop_spool);
    return spool;
}

static bool crlf_clean(const char *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (p[i] == '\r' && (i + 1 == len || p[i + 1] != '\n'))
            return false;
        if (p[i] == '\n' && (i == 0 || p[i - 1] != '\r'))
            return false;
    }
    return true;
}

/* The length of the first field's lines when it is a Received:, else 0. */
static size_t first_received(const char *p, size_t len)
{
    size_t i = 0;

    if (len < 9 || strncasecmp(p, "Received:", 9) != 0)
        return 0;
    for (;;) {
        const char *lf = memchr(p + i, '\n', len - i);

        if (lf == NULL)
            return 0; /* no line end: rewritten with one */
        i = (size_t)(lf - p) + 1;
        if (i == len || (p[i] != ' ' && p[i] != '\t'))
            return i;
    }
}

static struct filter_edits *script(const uint8_t *data, size_t n)
{
    struct filter_edits *e = filter_edits_new(NULL);

    check(e != NULL);
    for (size_t i = 0; i < n; i++) {
        unsigned kind = data[i] & 3, index = (data[i] >> 2) & 7;
        const char *name = names[data[i] >> 5];

        if (kind == 0)
            check(filter_edits_insert_header(e, index, name, "v\r\n\tfolded", "f") == 0);
        else if (kind == 1)
            check(filter_edits_change_header(e, name, index, "new", "f") == 0);
        else if (kind == 2)
            check(filter_edits_change_header(e, name, index, NULL, "f") == 0);
        else
            check(filter_edits_append_body(e, "new\nbody\r", 9, "f") == 0);
    }
    return e;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct message_edit_report rep;
    struct filter_edits *e;
    struct spool_msg *dst;
    size_t n, clen, rlen;
    const char *content;
    uint64_t off, len;
    char *out;
    int in, fd;

    if (size == 0)
        return 0;
    n = data[0] & 7;
    if (size < 1 + n)
        return 0;
    e = script(data + 1, n);
    content = (const char *)data + 1 + n;
    clen = size - 1 - n;
    in = memfd_create("content", MFD_CLOEXEC);
    check(in >= 0);
    check(clen == 0 || write(in, content, clen) == (ssize_t)clen);
    dst = spool_msg_begin(get_spool(), "fuzz");
    check(dst != NULL);
    check(message_edit_rewrite(e, in, 0, clen, dst, &rep) == 0);
    check(spool_msg_content(dst, &fd, &off, &len) == 0);
    check(rep.new_size == len && rep.old_size == clen);
    out = malloc(len + 1);
    check(out != NULL);
    check(len == 0 || pread(fd, out, len, (off_t)off) == (ssize_t)len);
    if (crlf_clean(content, clen)) { /* as the DATA reader leaves it */
        check(crlf_clean(out, len));
        if ((rlen = first_received(content, clen)) > 0)
            check(len >= rlen && memcmp(out, content, rlen) == 0);
    }
    free(out);
    spool_msg_abort(&dst);
    close(in);
    filter_edits_free(&e);
    return 0;
}

/*
 * fuzz-milter-reply — libFuzzer target for filters/milter-proto.c, the
 * parser of what an external milter sends: the input is a byte stream of
 * frames as they would come over the socket; each frame is cut with
 * milter_frame_parse (first from its 4 length bytes alone, as the
 * connection does before buffering), copied into a buffer of exactly its
 * size so that ASan sees any read past the end, and decoded; a REPLYCODE's
 * text goes through milter_replycode_parse. Invariants that fail abort(),
 * so the fuzzer and the replay run in make check both report them.
 */
#include "config.h"
#include "filters/milter-proto.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok)
{
    if (!ok)
        abort();
}

/* s is a NUL-terminated string inside [base, base + len). */
static void inside(const char *s, const uint8_t *base, size_t len)
{
    if (s == NULL)
        return;
    check((const uint8_t *)s >= base && (const uint8_t *)s < base + len);
    check(memchr(s, '\0', len - (size_t)((const uint8_t *)s - base)) != NULL);
}

static void check_status(const char *text)
{
    struct smtp_status st;
    const char *why = NULL;

    if (milter_replycode_parse(text, &st, &why) < 0) {
        check(why != NULL);
        return;
    }
    check(st.code >= 400 && st.code <= 559);
    check(strlen(st.text) < SMTP_STATUS_TEXT_MAX);
    for (const char *p = st.text; *p != '\0'; p++)
        check((*p >= 0x20 && *p <= 0x7e) || *p == '\n');
    check(st.enhanced[0] == '\0' || st.enhanced[0] == (char)('0' + st.code / 100));
}

static void check_reply(const struct milter_frame *f)
{
    struct milter_reply r;
    const char *why = NULL;

    if (milter_reply_decode(f, &r, &why) < 0) {
        check(why != NULL);
        return;
    }
    check(r.cmd == f->cmd);
    inside(r.name, f->data, f->len);
    inside(r.value, f->data, f->len);
    inside(r.addr, f->data, f->len);
    inside(r.args, f->data, f->len);
    inside(r.text, f->data, f->len);
    for (int i = 0; i < MILTER_M_COUNT; i++)
        inside(r.symlist[i], f->data, f->len);
    if (r.name != NULL)
        check(r.name[0] != '\0' && r.value != NULL);
    if (r.body != NULL)
        check(r.body == f->data && r.body_len == f->len);
    if (r.cmd == MILTER_REP_REPLYCODE)
        check_status(r.text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t off = 0;

    while (off < size) {
        struct milter_frame f;
        long head = milter_frame_parse(data + off, size - off < 4 ? size - off : 4, &f);
        long n;
        uint8_t *copy;

        check(head <= 0); /* 4 bytes never hold a whole frame */
        if (head < 0)
            return 0;
        n = milter_frame_parse(data + off, size - off, &f);
        if (n <= 0)
            return 0;
        check((size_t)n >= 5 && (size_t)n <= size - off && (size_t)n <= 4 + MILTER_FRAME_MAX);
        check(f.len == (size_t)n - 5);
        copy = malloc((size_t)n);
        if (copy == NULL)
            return 0;
        memcpy(copy, data + off, (size_t)n);
        check(milter_frame_parse(copy, (size_t)n, &f) == n);
        check_reply(&f);
        free(copy);
        off += (size_t)n;
    }
    return 0;
}

/*
 * smtp-cmd-bdat — BDAT (RFC 3030 CHUNKING): message content in chunks of a
 * declared size, no dot-stuffing. A BDAT that is refused still has its chunk
 * read (and dropped) before the refusal, so the stream stays in step.
 *
 * SECURITY: the declared size is untrusted: it is parsed strictly, and the
 * content is streamed through the same bounded reader as DATA.
 */
#include "config.h"
#include "gateway/smtp-session-private.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "lib/spool.h"
#include "lib/log.h"

static int parse_bdat(const char *args, size_t len, uint64_t *size, bool *last)
{
    size_t i = 0;
    uint64_t v = 0;

    while (i < len && args[i] >= '0' && args[i] <= '9') {
        if (v > (UINT64_MAX - 9) / 10 || i >= 20)
            return -1;
        v = v * 10 + (uint64_t)(args[i++] - '0');
    }
    if (i == 0)
        return -1;
    *size = v;
    *last = false;
    if (i == len)
        return 0;
    if (len - i == 5 && strncasecmp(args + i, " LAST", 5) == 0) {
        *last = true;
        return 0;
    }
    return -1;
}

/* Reads the chunk and then answers with err instead of taking it. */
static void bdat_refuse(struct smtp_session *s, unsigned code, const char *enh, const char *text)
{
    smtp_status_set(&s->bdat_error, code, enh, "%s", text);
    s->bdat_discard = true;
    s->state = SMTP_S_BDAT;
}

static void chunk_done(struct smtp_session *s)
{
    s->state = SMTP_S_COMMAND;
    if (s->bdat_discard) {
        s->bdat_discard = false;
        smtp_session_reset_txn(s);
        smtp_reply_error_status(s, &s->bdat_error);
        return;
    }
    if (s->bdat_last) {
        smtp_data_finished(s);
        return;
    }
    if (s->txn->reader.error != SMTP_DATA_OK || s->txn->data_failed) {
        smtp_data_finished(s); /* answers the error and ends the transaction */
        return;
    }
    smtp_reply(s, 250, "2.0.0", "Ok: %llu octets received",
               (unsigned long long)smtp_data_size(&s->txn->reader));
}

void smtp_session_bdat_input(struct smtp_session *s)
{
    struct evbuffer *in = bufferevent_get_input(s->bev);

    while (s->bdat_remaining > 0 && evbuffer_get_length(in) > 0) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        size_t n = v.iov_len < s->bdat_remaining ? v.iov_len : (size_t)s->bdat_remaining;
        bool end;
        if (!s->bdat_discard) {
            smtp_data_feed(&s->txn->reader, v.iov_base, n, s->txn->content, &end);
            smtp_data_flush(s->txn, false);
        }
        evbuffer_drain(in, n);
        s->bdat_remaining -= n;
    }
    if (s->bdat_remaining == 0)
        chunk_done(s);
}

static void bdat_stage_done(struct smtp_session *s, const struct smtp_hook_result *r)
{
    struct smtp_hook_result copy = *r;

    if (copy.verdict == SMTP_VERDICT_REJECT || copy.verdict == SMTP_VERDICT_TEMPFAIL) {
        bdat_refuse(s, copy.reply.code ? copy.reply.code : 554,
                    copy.reply.code ? copy.reply.enhanced : "5.7.1",
                    copy.reply.code ? copy.reply.text : "Error: data rejected");
    } else if (smtp_session_verdict_reply(s, &copy, "Error: data rejected")) {
        return; /* disconnect */
    } else if (smtp_data_begin(s, SMTP_DATA_RAW) < 0) {
        spool_msg_abort(&s->txn->msg);
        bdat_refuse(s, 451, "4.3.0", "Error: queue file write error");
    } else {
        s->state = SMTP_S_BDAT;
    }
    if (s->bdat_remaining == 0) {
        chunk_done(s);
        return;
    }
    smtp_session_resume(s, s->state);
}

void smtp_cmd_bdat(struct smtp_session *s, const char *args, size_t len)
{
    uint64_t size;
    bool last;

    if (!s->cfg->smtp.chunking || parse_bdat(args, len, &size, &last) < 0) {
        smtp_reply_error(s, 501, "5.5.4", "Syntax: BDAT size [LAST]");
        return; /* without a size we cannot skip a chunk: take it as a command error */
    }
    s->bdat_remaining = size;
    s->bdat_last = last;
    if (s->txn == NULL)
        bdat_refuse(s, 503, "5.5.1", "Error: need MAIL command");
    else if (s->txn->rcpt_count == 0)
        bdat_refuse(s, 503, "5.5.1", "Error: need RCPT command");
    else if (s->txn->content != NULL && !s->txn->bdat_seen)
        bdat_refuse(s, 503, "5.5.1", "Error: BDAT after DATA");
    else if (s->txn->bdat_seen)
        s->state = SMTP_S_BDAT;
    else {
        s->txn->bdat_seen = true;
        smtp_session_run_stage(s, SMTP_STAGE_DATA, bdat_stage_done);
        return;
    }
    if (size == 0)
        chunk_done(s);
}

/*
 * smtp-reply — see smtp-reply.h. Formats replies; the text was sanitized by
 * whoever set it, this module only splits it into lines.
 */
#include "config.h"
#include "lib/smtp-reply.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>

void smtp_status_set(struct smtp_status *st, unsigned code, const char *enhanced, const char *fmt,
                     ...)
{
    va_list ap;

    st->code = (unsigned short)code;
    snprintf(st->enhanced, sizeof(st->enhanced), "%s", enhanced == NULL ? "" : enhanced);
    va_start(ap, fmt);
    vsnprintf(st->text, sizeof(st->text), fmt, ap);
    va_end(ap);
}

void smtp_reply_format(struct evbuffer *out, const struct smtp_status *st, int enhanced)
{
    const char *text = st->text;
    int with_enh = enhanced && st->enhanced[0] != '\0';

    for (;;) {
        const char *nl = strchr(text, '\n');
        int len = nl == NULL ? (int)strlen(text) : (int)(nl - text);
        char sep = nl == NULL ? ' ' : '-';

        if (with_enh)
            evbuffer_add_printf(out, "%03u%c%s %.*s\r\n", st->code, sep, st->enhanced, len, text);
        else
            evbuffer_add_printf(out, "%03u%c%.*s\r\n", st->code, sep, len, text);
        if (nl == NULL)
            break;
        text = nl + 1;
    }
}

/*
 * smtp-command — see smtp-command.h. A table maps verbs to ids; the line is
 * checked for bytes that have no business in a command (NUL, controls other
 * than TAB) before anything looks at it. Non-ASCII bytes are allowed in the
 * arguments (SMTPUTF8 addresses) and checked by the address parser.
 */
#include "config.h"
#include "gateway/smtp-command.h"

#include <string.h>
#include <strings.h>

static const char *const verbs[SMTP_VERB_COUNT] = {
    [SMTP_VERB_INVALID] = "",        [SMTP_VERB_UNKNOWN] = "",
    [SMTP_VERB_EHLO] = "EHLO",       [SMTP_VERB_HELO] = "HELO",
    [SMTP_VERB_MAIL] = "MAIL",       [SMTP_VERB_RCPT] = "RCPT",
    [SMTP_VERB_DATA] = "DATA",       [SMTP_VERB_BDAT] = "BDAT",
    [SMTP_VERB_RSET] = "RSET",       [SMTP_VERB_NOOP] = "NOOP",
    [SMTP_VERB_QUIT] = "QUIT",       [SMTP_VERB_HELP] = "HELP",
    [SMTP_VERB_VRFY] = "VRFY",       [SMTP_VERB_EXPN] = "EXPN",
    [SMTP_VERB_STARTTLS] = "STARTTLS", [SMTP_VERB_AUTH] = "AUTH",
    [SMTP_VERB_XCLIENT] = "XCLIENT",
};

static int has_control(const char *line, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)line[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return 1;
    }
    return 0;
}

void smtp_command_parse(const char *line, size_t len, struct smtp_command *out)
{
    size_t vlen = 0;

    out->verb = SMTP_VERB_INVALID;
    out->args = line + len;
    out->args_len = 0;
    if (has_control(line, len))
        return;
    while (vlen < len && line[vlen] != ' ')
        vlen++;
    out->verb = SMTP_VERB_UNKNOWN;
    for (int v = SMTP_VERB_EHLO; v < SMTP_VERB_COUNT; v++) {
        if (strlen(verbs[v]) == vlen && strncasecmp(line, verbs[v], vlen) == 0) {
            out->verb = (enum smtp_verb)v;
            break;
        }
    }
    if (vlen < len) {
        out->args = line + vlen + 1;
        out->args_len = len - vlen - 1;
    }
}

const char *smtp_verb_name(enum smtp_verb verb)
{
    return verb < SMTP_VERB_COUNT ? verbs[verb] : "";
}

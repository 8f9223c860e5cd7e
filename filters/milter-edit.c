/*
 * milter-edit — the modifications a milter sends before its end-of-body
 * reply, handed to the filter API's message edits (filter.h) as they
 * come, in the milter's order. Nothing is kept here: the edits are bounded
 * and kept by the chain (filters/edit.h, which spills a replaced body to a
 * file), and the gateway applies them only when the message is accepted,
 * so those of a message the milter then rejects, discards or tempfails are
 * never applied.
 *
 * ADDHEADER appends the field at the end of the header (an insert past the
 * last field), where Sendmail and Postfix put it; filter_call_add_header
 * would put it on top with the chain's own trace fields.
 *
 * Translations: header values come with LF folds (Sendmail's form) and get
 * CR LF; with SMFIP_HDR_LEADSPC the value carries its own leading space,
 * which the gateway writes itself, so one is taken off. CHGHEADER with an
 * empty value deletes the field; index 0 means the first, as in Sendmail.
 * Addresses lose their angle brackets. Body chunks get CR LF line ends.
 */
#include "config.h"
#include "filters/milter-private.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"

uint32_t milter_mod_action(char cmd)
{
    switch (cmd) {
    case MILTER_REP_ADDHEADER:
        return MILTER_ACT_ADDHDRS;
    case MILTER_REP_INSHEADER:
        return MILTER_ACT_ADDHDRS;
    case MILTER_REP_CHGHEADER:
        return MILTER_ACT_CHGHDRS;
    case MILTER_REP_REPLBODY:
        return MILTER_ACT_CHGBODY;
    case MILTER_REP_ADDRCPT:
        return MILTER_ACT_ADDRCPT;
    case MILTER_REP_ADDRCPT_PAR:
        return MILTER_ACT_ADDRCPT_PAR;
    case MILTER_REP_DELRCPT:
        return MILTER_ACT_DELRCPT;
    case MILTER_REP_CHGFROM:
        return MILTER_ACT_CHGFROM;
    case MILTER_REP_QUARANTINE:
        return MILTER_ACT_QUARANTINE;
    default:
        return 0;
    }
}

/* A header value as the filter API wants it (malloc'd): LF folds as CR LF,
 * a lone CR dropped, one leading space less with HDR_LEADSPC. */
static char *header_value(const char *v, bool leadspc)
{
    size_t n = strlen(v);
    char *out = malloc(2 * n + 1), *o = out;

    if (out == NULL)
        return NULL;
    if (leadspc && *v == ' ')
        v++;
    for (; *v != '\0'; v++) {
        if (*v == '\r')
            continue;
        if (*v == '\n')
            *o++ = '\r';
        *o++ = *v;
    }
    *o = '\0';
    return out;
}

/* "<a@b>" -> "a@b" (malloc'd). */
static char *bare_address(const char *a)
{
    size_t n = strlen(a);

    while (n > 0 && (*a == ' ' || *a == '\t'))
        a++, n--;
    if (n >= 2 && a[0] == '<' && a[n - 1] == '>')
        return strndup(a + 1, n - 2);
    return strndup(a, n);
}

/* Body chunks with bare LF turned into CR LF; *cr carries whether the
 * previous chunk ended in CR. */
static int replace_body(struct filter_call *call, const uint8_t *data, size_t len, bool *cr)
{
    uint8_t *out = malloc(2 * len + 1);
    size_t o = 0;
    int rc;

    if (out == NULL)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (data[i] == '\n' && !*cr)
            out[o++] = '\r';
        out[o++] = data[i];
        *cr = data[i] == '\r';
    }
    rc = filter_call_replace_body(call, out, o);
    free(out);
    return rc;
}

int milter_mod_apply(struct milter_sess *s, const struct milter_reply *r)
{
    bool leadspc = (s->protocol & MILTER_P_HDR_LEADSPC) != 0;
    struct filter_call *call = s->call;
    char *v = NULL, what[64];
    int rc = -1;

    switch (r->cmd) {
    case MILTER_REP_ADDHEADER: /* appended to the header, as Sendmail does */
        if ((v = header_value(r->value, leadspc)) != NULL)
            rc = filter_call_insert_header(call, SIZE_MAX, r->name, v);
        break;
    case MILTER_REP_INSHEADER:
        if ((v = header_value(r->value, leadspc)) != NULL)
            rc = filter_call_insert_header(call, r->index, r->name, v);
        break;
    case MILTER_REP_CHGHEADER:
        if (r->value[0] == '\0')
            rc = filter_call_change_header(call, r->name, r->index == 0 ? 1 : r->index, NULL);
        else if ((v = header_value(r->value, leadspc)) != NULL)
            rc = filter_call_change_header(call, r->name, r->index == 0 ? 1 : r->index, v);
        break;
    case MILTER_REP_REPLBODY:
        rc = replace_body(call, r->body, r->body_len, &s->body_cr);
        break;
    case MILTER_REP_CHGFROM:
        if ((v = bare_address(r->addr)) != NULL)
            rc = filter_call_change_sender(call, v, r->args);
        break;
    case MILTER_REP_ADDRCPT:
    case MILTER_REP_ADDRCPT_PAR:
        if ((v = bare_address(r->addr)) != NULL)
            rc = filter_call_add_rcpt(call, v, r->args);
        break;
    case MILTER_REP_DELRCPT:
        if ((v = bare_address(r->addr)) != NULL)
            rc = filter_call_delete_rcpt(call, v);
        break;
    default:
        break;
    }
    free(v);
    if (rc == 0) {
        s->mod_count++;
        return 0;
    }
    if (r->name != NULL || r->addr != NULL) {
        const char *t = r->name != NULL ? r->name : r->addr;
        log_sanitize(what, sizeof(what), t, strlen(t));
    } else {
        snprintf(what, sizeof(what), "(%zu bytes)", r->body_len);
    }
    milter_warn(s->m, "%s: cannot apply %s %s: refused by the filter chain",
                s->txn != NULL && s->txn->queue_id != NULL ? s->txn->queue_id : "NOQUEUE",
                milter_rep_name(r->cmd), what);
    return -1;
}

/*
 * pmilter-edit — see pmilter-edit.h.
 */
#include "config.h"
#include "milter/pmilter-edit.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "filters/edit.h"
#include "filters/filter.h"
#include "gateway/message-edit.h"
#include "lib/log.h"
#include "milter/pmilter-text.h"

static char *mut(const char *s)
{
    return (char *)s; /* libmilter's prototypes lack const; it does not write */
}

int pmilter_add_field(SMFICTX *ctx, const char *name, const char *value, int index)
{
    char *v = pmilter_milter_value(value);
    int r;

    if (v == NULL)
        return -1;
    r = index < 0 ? smfi_addheader(ctx, mut(name), v) : smfi_insheader(ctx, index, mut(name), v);
    free(v);
    return r == MI_SUCCESS ? 0 : -1;
}

static int replace_body(SMFICTX *ctx, const struct filter_edits *e)
{
    unsigned char buf[65536];
    uint64_t off = 0;
    ssize_t n;

    if (filter_edits_body_len(e) == 0)
        return smfi_replacebody(ctx, buf, 0) == MI_SUCCESS ? 0 : -1;
    while ((n = filter_edits_body_read(e, off, buf, sizeof(buf))) > 0) {
        if (smfi_replacebody(ctx, buf, (int)n) != MI_SUCCESS)
            return -1;
        off += (uint64_t)n;
    }
    return n < 0 ? -1 : 0;
}

int pmilter_apply_edits(SMFICTX *ctx, const struct filter_edits *e, const char *queue_id)
{
    int r = MI_SUCCESS;

    if (queue_id == NULL)
        queue_id = "NOQUEUE";

    for (size_t i = 0; e != NULL && i < filter_edits_count(e) && r == MI_SUCCESS; i++) {
        const struct filter_edit *x = filter_edits_at(e, i);
        char *v;
        switch (x->kind) {
        case FILTER_EDIT_INSERT_HEADER:
            r = pmilter_add_field(ctx, x->name, x->value,
                                  x->index > 100000 ? 100000 : (int)x->index) == 0
                    ? MI_SUCCESS
                    : MI_FAILURE;
            break;
        case FILTER_EDIT_CHANGE_HEADER:
            v = x->value != NULL ? pmilter_milter_value(x->value) : NULL;
            if (x->value != NULL && v == NULL)
                return -1;
            r = smfi_chgheader(ctx, x->name, x->index > 100000 ? 100000 : (int)x->index, v);
            free(v);
            break;
        case FILTER_EDIT_CHANGE_SENDER:
            r = smfi_chgfrom(ctx, x->value, x->params);
            break;
        case FILTER_EDIT_ADD_RCPT:
            r = x->params != NULL ? smfi_addrcpt_par(ctx, x->value, x->params)
                                  : smfi_addrcpt(ctx, x->value);
            break;
        case FILTER_EDIT_DELETE_RCPT:
            r = smfi_delrcpt(ctx, x->value);
            break;
        }
        if (r != MI_SUCCESS)
            log_error("%s: the MTA refused edit %zu of filter %s", queue_id, i,
                      x->by != NULL ? x->by : "-");
    }
    if (r == MI_SUCCESS && e != NULL && filter_edits_body_replaced(e) && replace_body(ctx, e) < 0) {
        log_error("%s: the MTA refused the body of filter %s", queue_id, filter_edits_body_by(e));
        r = MI_FAILURE;
    }
    return r == MI_SUCCESS ? 0 : -1;
}

int pmilter_edited_content(const struct filter_edits *e, int in_fd, uint64_t len,
                           const char *tmp_dir, int *fd_r, uint64_t *len_r)
{
    struct message_edit_report rep;
    char path[4096];
    int fd, err;

    snprintf(path, sizeof(path), "%s/postern-milter.XXXXXX", tmp_dir);
    if ((fd = mkstemp(path)) < 0)
        return -1;
    unlink(path);
    if (message_edit_rewrite_fd(e, in_fd, 0, len, fd, &rep) < 0) {
        err = errno;
        close(fd);
        errno = err;
        return -1;
    }
    *fd_r = fd;
    *len_r = rep.new_size;
    return 0;
}

char *pmilter_fields_text(const struct filter_header *h, size_t n)
{
    size_t size = 1, o = 0;
    char *text;

    for (size_t i = 0; i < n; i++)
        size += strlen(h[i].name) + strlen(h[i].value) + 4;
    if ((text = malloc(size)) == NULL)
        return NULL;
    text[0] = '\0';
    for (size_t i = 0; i < n; i++)
        o += (size_t)snprintf(text + o, size - o, "%s: %s\r\n", h[i].name, h[i].value);
    return text;
}

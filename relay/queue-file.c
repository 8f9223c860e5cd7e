/*
 * queue-file — see queue-file.h. The file is read once in full (bounded by
 * the spool format's limits) and the records after END replayed in order.
 */
#include "config.h"
#include "relay/queue-file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#define QUEUE_TAIL_MAX (32u * 1024 * 1024)

static int read_tail(int fd, char **buf_r, size_t *len_r, uint64_t *clen_r, char *error,
                     size_t errsize)
{
    char header[SPOOL_HEADER_LEN];
    uint64_t clen, eoff;
    struct stat st;
    int rc;

    if (pread(fd, header, sizeof(header), 0) != (ssize_t)sizeof(header) || fstat(fd, &st) < 0)
        return 1;
    rc = spool_header_parse(header, &clen, &eoff);
    if (rc != 0) {
        snprintf(error, errsize, "corrupt or incomplete header");
        return rc;
    }
    if ((uint64_t)st.st_size < eoff)
        return 1;
    if ((uint64_t)st.st_size - eoff > QUEUE_TAIL_MAX) {
        snprintf(error, errsize, "envelope and records over %u octets", QUEUE_TAIL_MAX);
        return -1;
    }
    *len_r = (size_t)((uint64_t)st.st_size - eoff);
    if ((*buf_r = malloc(*len_r + 1)) == NULL ||
        pread(fd, *buf_r, *len_r, (off_t)eoff) != (ssize_t)*len_r) {
        snprintf(error, errsize, "read: %s", strerror(errno ? errno : EIO));
        free(*buf_r);
        *buf_r = NULL;
        return -1;
    }
    (*buf_r)[*len_r] = '\0';
    *clen_r = clen;
    return 0;
}

static void apply_reason(struct queue_file *qf, unsigned long idx, const char *rest)
{
    unsigned code;
    char enh[16];
    int used = 0;

    if (sscanf(rest, "%3u %15s %n", &code, enh, &used) < 2 || used == 0 || code < 200 || code > 599)
        return;
    smtp_status_set(&qf->reason[idx], code, strcmp(enh, "-") == 0 ? "" : enh, "%s", rest + used);
}

/* One record line (NUL-terminated, no '\n'). Unknown or bad lines are
 * ignored: they can only come from a torn write. */
static void apply_record(struct queue_file *qf, char *line)
{
    unsigned long idx, a;
    long long t;
    int used = 0;

    if ((line[0] == 'D' || line[0] == 'B') && sscanf(line + 1, " %lu %lld", &idx, &t) == 2 &&
        idx < qf->env->rcpt_count)
        qf->state[idx] = line[0] == 'D' ? QRCPT_DELIVERED : QRCPT_BOUNCED;
    else if (line[0] == 'T' && sscanf(line + 1, " %lld %lu", &t, &a) == 2) {
        qf->next_attempt = (time_t)t;
        qf->attempts = (unsigned)a;
    } else if (line[0] == 'R' && sscanf(line + 1, " %lu %n", &idx, &used) == 1 && used > 0 &&
               idx < qf->env->rcpt_count)
        apply_reason(qf, idx, line + 1 + used);
    else if (line[0] == 'W')
        qf->warned = true;
}

static void replay(struct queue_file *qf, char *p, size_t len)
{
    char *end = p + len;

    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL)
            break; /* a torn last record */
        *nl = '\0';
        apply_record(qf, p);
        p = nl + 1;
    }
}

int queue_file_load(const char *path, struct queue_file **qf_r, char *error, size_t errsize)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    struct queue_file *qf = NULL;
    char *buf = NULL;
    size_t len = 0, end = 0;
    uint64_t clen = 0;
    int rc;

    *qf_r = NULL;
    if (fd < 0) {
        snprintf(error, errsize, "open: %s", strerror(errno));
        return -1;
    }
    rc = read_tail(fd, &buf, &len, &clen, error, errsize);
    close(fd);
    if (rc == 0 && (qf = calloc(1, sizeof(*qf))) == NULL)
        rc = -1;
    if (rc == 0)
        rc = spool_envelope_parse(buf, len, &qf->env, &end, error, errsize);
    if (rc == 0 && qf->env->size != clen) {
        snprintf(error, errsize, "envelope size differs from the header");
        rc = -1;
    }
    if (rc == 0) {
        qf->content_off = SPOOL_HEADER_LEN;
        qf->content_len = clen;
        qf->state = calloc(qf->env->rcpt_count, sizeof(*qf->state));
        qf->reason = calloc(qf->env->rcpt_count, sizeof(*qf->reason));
        if (qf->state == NULL || qf->reason == NULL)
            rc = -1;
        else
            replay(qf, buf + end, len - end);
    }
    free(buf);
    if (rc != 0)
        queue_file_free(&qf);
    *qf_r = qf;
    return rc;
}

void queue_file_free(struct queue_file **qfp)
{
    struct queue_file *qf = *qfp;

    if (qf == NULL)
        return;
    spool_envelope_free(&qf->env);
    free(qf->state);
    free(qf->reason);
    free(qf);
    *qfp = NULL;
}

size_t queue_file_pending(const struct queue_file *qf)
{
    size_t n = 0;

    for (size_t i = 0; i < qf->env->rcpt_count; i++)
        n += qf->state[i] == QRCPT_PENDING;
    return n;
}

int queue_file_append(const char *path, const char *records, size_t len)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC | O_NOFOLLOW);
    ssize_t n;

    if (fd < 0)
        return -1;
    n = write(fd, records, len);
    close(fd);
    return n == (ssize_t)len ? 0 : -1;
}

size_t queue_file_reason_record(char *buf, size_t size, size_t idx, const struct smtp_status *st)
{
    char text[SMTP_STATUS_TEXT_MAX];
    size_t i;
    int n;

    for (i = 0; st->text[i] != '\0' && i + 1 < sizeof(text); i++)
        text[i] = (unsigned char)st->text[i] < 0x20 || st->text[i] == 0x7f ? ' ' : st->text[i];
    text[i] = '\0';
    n = snprintf(buf, size, "R %zu %03u %s %s\n", idx, st->code,
                 st->enhanced[0] != '\0' ? st->enhanced : "-", text);
    return n < 0 ? 0 : (size_t)n >= size ? size - 1 : (size_t)n;
}

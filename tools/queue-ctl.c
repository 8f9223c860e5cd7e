/*
 * queue-ctl — see queue-ctl.h. A file in hold/ may have been held here
 * (it then has the queue manager's state records) or committed there
 * straight by an SMTP worker (a HOLD verdict: no records, no attempt yet);
 * both are the same spool file format, and release makes either deliverable
 * by moving it to queue/ and telling the queue manager. Moves and deletions
 * fsync the directories they change, like the spool's commits, so a held
 * message stays held across a crash.
 */
#include "config.h"
#include "tools/queue-ctl.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "relay/qmgr.h"
#include "relay/queue-file.h"

static const char *const dirs[] = { "queue", "hold" };

static bool valid_id(const char *id)
{
    size_t n = strspn(id, "0123456789ABCDEFabcdef");
    return n > 0 && n <= SPOOL_QUEUE_ID_MAX && id[n] == '\0';
}

/* Finds ID in queue/ or hold/; returns the index into dirs or -1. */
static int locate(const char *spool, const char *id, char *path, size_t size)
{
    for (int i = 0; i < 2; i++) {
        snprintf(path, size, "%s/%s/%s", spool, dirs[i], id);
        if (access(path, F_OK) == 0)
            return i;
    }
    return -1;
}

/* Writes a line to the queue manager's FIFO; -1 when it is not running. */
static int tell_qmgr(const char *spool, const char *line)
{
    char path[4200];
    int fd;
    ssize_t n;

    snprintf(path, sizeof(path), "%s/%s", spool, QMGR_FIFO);
    fd = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return -1;
    n = write(fd, line, strlen(line));
    close(fd);
    return n == (ssize_t)strlen(line) ? 0 : -1;
}

static void print_entry(FILE *out, const char *id, const char *where, const struct queue_file *qf)
{
    char when[32];
    struct tm tm;
    time_t t = qf->env->received;

    localtime_r(&t, &tm);
    strftime(when, sizeof(when), "%a %b %d %H:%M:%S", &tm);
    fprintf(out, "%-20s%s %8llu %s  <%s>\n", id, where, (unsigned long long)qf->content_len,
            when, qf->env->sender);
    for (size_t i = 0; i < qf->env->rcpt_count; i++) {
        if (qf->state[i] != QRCPT_PENDING)
            continue;
        if (qf->reason[i].code != 0)
            fprintf(out, "    (%03u %s %s)\n", qf->reason[i].code, qf->reason[i].enhanced,
                    qf->reason[i].text);
        fprintf(out, "    <%s>\n", qf->env->rcpts[i].addr);
    }
    fputc('\n', out);
}

static int cmd_list(const char *spool, FILE *out)
{
    unsigned long long bytes = 0, count = 0;

    for (int i = 0; i < 2; i++) {
        char dir[4096], path[4096 + 300], error[256];
        DIR *d;
        struct dirent *de;

        snprintf(dir, sizeof(dir), "%s/%s", spool, dirs[i]);
        if ((d = opendir(dir)) == NULL)
            continue;
        while ((de = readdir(d)) != NULL) {
            struct queue_file *qf;
            if (!valid_id(de->d_name))
                continue;
            snprintf(path, sizeof(path), "%.4095s/%.255s", dir, de->d_name);
            if (queue_file_load(path, &qf, error, sizeof(error)) != 0)
                continue;
            print_entry(out, de->d_name, i == 1 ? "!" : qf->attempts > 0 ? " " : "*", qf);
            bytes += qf->content_len;
            count++;
            queue_file_free(&qf);
        }
        closedir(d);
    }
    if (count == 0)
        fprintf(out, "Mail queue is empty\n");
    else
        fprintf(out, "-- %llu Kbytes in %llu Request%s.\n", (bytes + 1023) / 1024, count,
                count == 1 ? "" : "s");
    return 0;
}

static void print_headers(FILE *out, const char *path, const struct queue_file *qf)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    char buf[65536];
    size_t want = qf->content_len < sizeof(buf) ? (size_t)qf->content_len : sizeof(buf);
    ssize_t n = fd < 0 ? -1 : pread(fd, buf, want, (off_t)qf->content_off);
    char *end;

    if (fd >= 0)
        close(fd);
    if (qf->env->add_headers != NULL) /* delivered before the content */
        fputs(qf->env->add_headers, out);
    if (n <= 0)
        return;
    end = memmem(buf, (size_t)n, "\r\n\r\n", 4);
    fwrite(buf, 1, end != NULL ? (size_t)(end - buf) + 2 : (size_t)n, out);
}

static int cmd_show(const char *spool, const char *id, FILE *out, FILE *err)
{
    static const char *const states[] = { "pending", "delivered", "bounced" };
    char path[4200], error[256];
    struct queue_file *qf;
    int where = locate(spool, id, path, sizeof(path));

    if (where < 0 || queue_file_load(path, &qf, error, sizeof(error)) != 0) {
        fprintf(err, "posternctl: %s: %s\n", id, where < 0 ? "no such message" : error);
        return 1;
    }
    fprintf(out, "queue_id: %s\nstate: %s\nsender: <%s>\nsize: %llu\nreceived: %lld\n"
                 "client: %s[%s]\nattempts: %u\n",
            id, where == 1 ? "hold" : "active", qf->env->sender,
            (unsigned long long)qf->content_len, (long long)qf->env->received,
            qf->env->client_name ? qf->env->client_name : "-",
            qf->env->client_addr ? qf->env->client_addr : "-", qf->attempts);
    for (size_t i = 0; i < qf->env->rcpt_count; i++)
        fprintf(out, "recipient: <%s> %s%s%s\n", qf->env->rcpts[i].addr, states[qf->state[i]],
                qf->reason[i].code ? " " : "", qf->reason[i].code ? qf->reason[i].text : "");
    fprintf(out, "\n");
    print_headers(out, path, qf);
    queue_file_free(&qf);
    return 0;
}

static int cmd_flush(const char *spool, const char *id, FILE *out, FILE *err)
{
    char line[64];

    if (id != NULL && !valid_id(id)) {
        fprintf(err, "posternctl: %s: not a queue id\n", id);
        return 2;
    }
    snprintf(line, sizeof(line), id != NULL ? "F %s\n" : "F\n", id);
    if (tell_qmgr(spool, line) < 0) {
        fprintf(err, "posternctl: the queue manager is not running (is posternd?)\n");
        return 1;
    }
    fprintf(out, "flush requested%s%s\n", id != NULL ? " for " : "", id != NULL ? id : "");
    return 0;
}

/* fsyncs spool/sub, so that a rename or unlink in it is durable. */
static int sync_dir(const char *spool, const char *sub)
{
    char path[4200];
    int fd, rc;

    snprintf(path, sizeof(path), "%s/%s", spool, sub);
    fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    rc = fsync(fd);
    close(fd);
    return rc;
}

/* Moves id from dirs[where] to the other directory without replacing a
 * file of the same name there (link and unlink where the file system has
 * no RENAME_NOREPLACE). */
static int move_file(const char *spool, int where, const char *id, const char *path)
{
    char to[4200];

    snprintf(to, sizeof(to), "%s/%s/%s", spool, dirs[1 - where], id);
    if (renameat2(AT_FDCWD, path, AT_FDCWD, to, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno != EINVAL && errno != ENOSYS)
        return -1;
    if (link(path, to) < 0)
        return -1;
    (void)unlink(path);
    return 0;
}

/* delete, hold, release: a file operation, then the queue manager is told. */
static int cmd_move(const char *spool, const char *cmd, const char *id, FILE *out, FILE *err)
{
    char path[4200], line[64];
    int where = valid_id(id) ? locate(spool, id, path, sizeof(path)) : -1;
    bool synced;
    int rc;

    if (where < 0 || (strcmp(cmd, "hold") == 0 && where == 1) ||
        (strcmp(cmd, "release") == 0 && where == 0)) {
        fprintf(err, "posternctl: %s: no such %smessage\n", id,
                where < 0 ? "" : where == 1 ? "active " : "held ");
        return 1;
    }
    if (strcmp(cmd, "delete") == 0)
        rc = unlink(path);
    else
        rc = move_file(spool, where, id, path);
    if (rc < 0) {
        fprintf(err, "posternctl: %s: %s\n", id, strerror(errno));
        return 1;
    }
    /* durable before the answer, destination first; the queue manager is
     * told either way, since the file did move */
    synced = (cmd[0] == 'd' || sync_dir(spool, dirs[1 - where]) == 0) &&
             sync_dir(spool, dirs[where]) == 0;
    if (!synced)
        fprintf(err, "posternctl: %s: fsync: %s (the change may not survive a crash)\n", id,
                strerror(errno));
    snprintf(line, sizeof(line), "C %s\n", id);
    tell_qmgr(spool, line);
    if (strcmp(cmd, "release") == 0) {
        snprintf(line, sizeof(line), "F %s\n", id);
        tell_qmgr(spool, line);
    }
    fprintf(out, "%s: %s\n", id,
            cmd[0] == 'd' ? "deleted" : cmd[0] == 'h' ? "held" : "released");
    return synced ? 0 : 1;
}

int queue_ctl(const char *spool, int argc, char **argv, FILE *out, FILE *err)
{
    const char *cmd = argc > 0 ? argv[0] : "";

    if (strcmp(cmd, "list") == 0 && argc == 1)
        return cmd_list(spool, out);
    if (strcmp(cmd, "show") == 0 && argc == 2)
        return cmd_show(spool, argv[1], out, err);
    if (strcmp(cmd, "flush") == 0 && argc <= 2)
        return cmd_flush(spool, argc == 2 ? argv[1] : NULL, out, err);
    if ((strcmp(cmd, "delete") == 0 || strcmp(cmd, "hold") == 0 ||
         strcmp(cmd, "release") == 0) && argc == 2)
        return cmd_move(spool, cmd, argv[1], out, err);
    fprintf(err, "usage: posternctl queue list | show ID | flush [ID] | delete ID | hold ID | "
                 "release ID\n");
    return 2;
}

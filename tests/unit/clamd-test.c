/*
 * clamd-test — see clamd-test.h.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>

#include "tests/unit/clamd-test.h"

#define READY_TRIES 3000 /* x 10 ms */
#define CHILD_ALARM_S 120

int clamd_test_free_port(void)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int port = -1;

    if (fd >= 0 && bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0 &&
        getsockname(fd, (struct sockaddr *)&sin, &len) == 0)
        port = ntohs(sin.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

static int connect_port(int port)
{
    struct sockaddr_in sin = {.sin_family = AF_INET,
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                              .sin_port = htons((uint16_t)port)};
    struct timeval tv = {.tv_sec = 1};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* True when clamd answers zPING with PONG. */
static bool clamd_ping(int port)
{
    int fd = connect_port(port);
    char buf[16] = "";
    bool ok = false;

    if (fd >= 0 && write(fd, "zPING", 6) == 6 && read(fd, buf, sizeof(buf) - 1) > 0)
        ok = strcmp(buf, "PONG") == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

static int write_file(const char *dir, const char *name, const char *text)
{
    char path[256];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if ((f = fopen(path, "w")) == NULL)
        return -1;
    fputs(text, f);
    return fclose(f);
}

/* db/local.ndb: the EICAR string anywhere in any file (target 0, offset *). */
static int write_database(const struct clamd_test *t)
{
    static const char eicar[] = CLAMD_TEST_EICAR;
    char db[128], sig[256];
    size_t o;

    snprintf(db, sizeof(db), "%s/db", t->dir);
    if (mkdir(db, 0700) < 0)
        return -1;
    o = (size_t)snprintf(sig, sizeof(sig), "%s:0:*:", CLAMD_TEST_SIGNATURE);
    for (size_t i = 0; i < sizeof(eicar) - 1 && o + 3 < sizeof(sig); i++)
        o += (size_t)snprintf(sig + o, sizeof(sig) - o, "%02x", (unsigned char)eicar[i]);
    snprintf(sig + o, sizeof(sig) - o, "\n");
    return write_file(db, "local.ndb", sig);
}

static int write_conf(const struct clamd_test *t)
{
    char conf[2048], tmp[128];

    snprintf(tmp, sizeof(tmp), "%s/tmp", t->dir);
    if (mkdir(tmp, 0700) < 0)
        return -1;
    snprintf(conf, sizeof(conf),
             "Foreground yes\nDatabaseDirectory %s/db\nTemporaryDirectory %s\n"
             "PidFile %s/clamd.pid\nLogFile %s/clamd.log\nLogSyslog no\n"
             "TCPAddr 127.0.0.1\nTCPSocket %d\nLocalSocket %s\n"
             "StreamMaxLength %d\nMaxFileSize %d\nMaxScanSize %d\nAlertExceedsMax yes\n"
             "SelfCheck 0\nScanMail yes\nMaxThreads 4\n",
             t->dir, tmp, t->dir, t->dir, t->port, t->socket, CLAMD_TEST_STREAM_MAX,
             CLAMD_TEST_FILE_MAX, CLAMD_TEST_SCAN_MAX);
    return write_file(t->dir, "clamd.conf", conf);
}

int clamd_test_start(struct clamd_test *t)
{
    char conf[128], out[128];

    memset(t, 0, sizeof(*t));
    snprintf(t->dir, sizeof(t->dir), "/tmp/test-clamd.XXXXXX");
    if (mkdtemp(t->dir) == NULL) {
        t->dir[0] = '\0';
        snprintf(t->why, sizeof(t->why), "mkdtemp: %s", strerror(errno));
        return -1;
    }
    if (access(CLAMD_TEST_PATH, X_OK) < 0) {
        snprintf(t->why, sizeof(t->why), "%s not installed (Debian package clamav-daemon)",
                 CLAMD_TEST_PATH);
        return -1;
    }
    snprintf(t->socket, sizeof(t->socket), "%s/clamd.sock", t->dir);
    snprintf(conf, sizeof(conf), "%s/clamd.conf", t->dir);
    snprintf(out, sizeof(out), "%s/clamd.out", t->dir);
    t->port = clamd_test_free_port();
    if (t->port < 0 || write_database(t) < 0 || write_conf(t) < 0) {
        snprintf(t->why, sizeof(t->why), "cannot write clamd's files in %s", t->dir);
        return -1;
    }
    if ((t->pid = fork()) == 0) {
        int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (fd >= 0) { /* clamd in the foreground reports each scan */
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execl(CLAMD_TEST_PATH, CLAMD_TEST_PATH, "-c", conf, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < READY_TRIES && t->pid > 0; i++) {
        if (clamd_ping(t->port))
            return 0;
        if (waitpid(t->pid, NULL, WNOHANG) == t->pid) {
            t->pid = 0;
            break;
        }
        usleep(10000);
    }
    snprintf(t->why, sizeof(t->why), "clamd did not answer zPING (see %s/clamd.out)", t->dir);
    return -1;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void clamd_test_stop(struct clamd_test *t)
{
    if (t->pid > 0) {
        kill(t->pid, SIGKILL);
        waitpid(t->pid, NULL, 0);
        t->pid = 0;
    }
    if (t->dir[0] != '\0')
        nftw(t->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    t->dir[0] = '\0';
}

/* ---- stand-ins ---- */

static bool read_exact(int fd, void *buf, size_t n)
{
    size_t got = 0;

    while (got < n) {
        ssize_t r = read(fd, (char *)buf + got, n - got);
        if (r <= 0)
            return false;
        got += (size_t)r;
    }
    return true;
}

/* Reads "zINSTREAM\0" and the chunks up to the zero-length one. */
static bool read_stream(int fd)
{
    static char buf[65536];
    uint32_t be;

    if (!read_exact(fd, buf, 10))
        return false;
    for (;;) {
        if (!read_exact(fd, &be, sizeof(be)))
            return false;
        uint32_t n = ntohl(be);
        if (n == 0)
            return true;
        while (n > 0) {
            size_t part = n < sizeof(buf) ? n : sizeof(buf);
            if (!read_exact(fd, buf, part))
                return false;
            n -= (uint32_t)part;
        }
    }
}

static void write_all(int fd, const void *buf, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, buf, n);
        if (w <= 0)
            return;
        buf = (const char *)buf + w;
        n -= (size_t)w;
    }
}

static void serve(int fd, enum standin_mode mode)
{
    static const char garbage[] = "HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\n<html>";
    static char longer[4000];
    char few[8];

    switch (mode) {
    case STANDIN_HANG:
        read_stream(fd);
        pause();
        break;
    case STANDIN_GARBAGE:
        if (read_stream(fd))
            write_all(fd, garbage, sizeof(garbage)); /* with its NUL */
        break;
    case STANDIN_CLOSE:
        (void)read_exact(fd, few, sizeof(few));
        break;
    case STANDIN_LONG:
        memset(longer, 'A', sizeof(longer));
        if (read_stream(fd))
            write_all(fd, longer, sizeof(longer));
        pause();
        break;
    case STANDIN_EARLY_OK:
        write_all(fd, "stream: OK", 11);
        pause();
        break;
    case STANDIN_SILENT_EOF:
        read_stream(fd);
        break;
    }
}

void standin_start(struct standin *s, enum standin_mode mode)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(lfd >= 0);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(listen(lfd, 16), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&sin, &len), 0);
    s->port = ntohs(sin.sin_port);
    s->pid = fork();
    assert_true(s->pid >= 0);
    if (s->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        signal(SIGPIPE, SIG_IGN);
        alarm(CHILD_ALARM_S);
        for (int i = 0; i < 64; i++) { /* a connection each, in its own child */
            int fd = accept(lfd, NULL, NULL);
            if (fd < 0)
                continue;
            if (fork() == 0) {
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                serve(fd, mode);
                _exit(0);
            }
            close(fd);
        }
        _exit(0);
    }
    close(lfd);
}

void standin_stop(struct standin *s)
{
    if (s->pid <= 0)
        return;
    kill(s->pid, SIGKILL); /* its connection children die with it */
    waitpid(s->pid, NULL, 0);
    s->pid = 0;
}

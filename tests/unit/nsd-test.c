/*
 * nsd-test — see nsd-test.h.
 */
#include "config.h"
#include "tests/unit/nsd-test.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

int nsd_test_silent_socket(int *port_r)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -1;
    if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
        getsockname(fd, (struct sockaddr *)&sin, &len) < 0) {
        close(fd);
        return -1;
    }
    *port_r = ntohs(sin.sin_port);
    return fd;
}

int nsd_test_free_port(void)
{
    for (int attempt = 0; attempt < 20; attempt++) {
        int port = -1, ok, one = 1;
        int u = nsd_test_silent_socket(&port);
        int t = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in sin = {.sin_family = AF_INET,
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                                  .sin_port = htons((uint16_t)port)};

        setsockopt(t, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        ok = u >= 0 && t >= 0 && bind(t, (struct sockaddr *)&sin, sizeof(sin)) == 0;
        if (u >= 0)
            close(u);
        if (t >= 0)
            close(t);
        if (ok)
            return port;
    }
    return -1;
}

/* nsd.conf for the zones, whose files are dir/<name>.zone. */
static int write_conf(const struct nsd_test *n, const struct nsd_zone *zones, size_t count)
{
    char path[160];
    FILE *conf;

    snprintf(path, sizeof(path), "%s/nsd.conf", n->dir);
    if ((conf = fopen(path, "w")) == NULL)
        return -1;
    fprintf(conf,
            "server:\n  ip-address: 127.0.0.1@%d\n  port: %d\n  username: \"\"\n  chroot: \"\"\n"
            "  zonesdir: \"%s\"\n  pidfile: \"%s/nsd.pid\"\n  database: \"\"\n"
            "  xfrdfile: \"%s/xfrd.state\"\n  zonelistfile: \"%s/zone.list\"\n"
            "  logfile: \"%s/nsd.log\"\nremote-control:\n  control-enable: no\n",
            n->port, n->port, n->dir, n->dir, n->dir, n->dir, n->dir);
    for (size_t i = 0; i < count; i++)
        fprintf(conf, "zone:\n  name: \"%s\"\n  zonefile: \"%s.zone\"\n", zones[i].name,
                zones[i].name);
    return fclose(conf);
}

/* The zone files of the zones that have records (the others the test wrote). */
static int write_zones(const struct nsd_test *n, const struct nsd_zone *zones, size_t count)
{
    char path[160];
    FILE *z;

    for (size_t i = 0; i < count; i++) {
        if (zones[i].records == NULL)
            continue;
        snprintf(path, sizeof(path), "%s/%s.zone", n->dir, zones[i].name);
        if ((z = fopen(path, "w")) == NULL)
            return -1;
        fprintf(z,
                "$ORIGIN %s.\n$TTL 300\n@ IN SOA ns.%s. hostmaster.%s. 1 3600 600 86400 300\n"
                "@ IN NS ns.%s.\n%s%s\n",
                zones[i].name, zones[0].name, zones[0].name, zones[0].name,
                i == 0 ? "ns IN A 127.0.0.1\n" : "", zones[i].records);
        if (fclose(z) != 0)
            return -1;
    }
    return 0;
}

static pid_t spawn(const struct nsd_test *n)
{
    char conf[128], out[128];
    pid_t pid;

    snprintf(conf, sizeof(conf), "%s/nsd.conf", n->dir);
    snprintf(out, sizeof(out), "%s/nsd.out", n->dir);
    pid = fork();
    if (pid == 0) {
        int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execl(NSD_TEST_PATH, "nsd", "-c", conf, "-d", (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* Whether nsd answers an SOA query for name with NOERROR and an answer. */
static int answers(int port, const char *name)
{
    uint8_t q[300] = {0x50, 0x57, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0}, r[512];
    size_t len = 12;
    struct sockaddr_in sin = {.sin_family = AF_INET,
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                              .sin_port = htons((uint16_t)port)};
    struct pollfd pfd;
    ssize_t got = -1;
    int fd;

    for (const char *p = name; *p != '\0' && len < 250;) {
        size_t l = strcspn(p, ".");
        q[len++] = (uint8_t)l;
        memcpy(q + len, p, l);
        len += l;
        p += l + (p[l] == '.');
    }
    memcpy(q + len, "\0\0\6\0\1", 5);
    len += 5;
    if ((fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0)
        return 0;
    pfd = (struct pollfd){.fd = fd, .events = POLLIN};
    if (sendto(fd, q, len, 0, (struct sockaddr *)&sin, sizeof(sin)) == (ssize_t)len &&
        poll(&pfd, 1, 300) == 1)
        got = recv(fd, r, sizeof(r), 0);
    close(fd);
    return got >= 12 && r[0] == 0x50 && r[1] == 0x57 && (r[3] & 0x0f) == 0 && (r[6] || r[7]);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* The start of nsd's own output, for the reason of a failed start. */
static void read_out(const struct nsd_test *n, char *out, size_t size)
{
    char path[128];
    size_t got = 0;
    FILE *f;

    snprintf(path, sizeof(path), "%s/nsd.out", n->dir);
    if (size > 0 && (f = fopen(path, "r")) != NULL) {
        got = fread(out, 1, size - 1, f);
        fclose(f);
    }
    if (size > 0)
        out[got] = '\0';
}

void nsd_test_stop(struct nsd_test *n)
{
    if (n->pid > 0) {
        kill(n->pid, SIGTERM);
        waitpid(n->pid, NULL, 0);
    }
    n->pid = -1;
    if (n->dir[0] != '\0')
        nftw(n->dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
    n->dir[0] = '\0';
}

int nsd_test_prepare(struct nsd_test *n, const char *tag, char *why, size_t whysize)
{
    memset(n, 0, sizeof(*n));
    n->pid = -1;
    if (access(NSD_TEST_PATH, X_OK) != 0) {
        snprintf(why, whysize, "%s not installed (apt-get install nsd)", NSD_TEST_PATH);
        return -1;
    }
    snprintf(n->dir, sizeof(n->dir), "/tmp/test-%s.XXXXXX", tag);
    if (mkdtemp(n->dir) == NULL || (n->port = nsd_test_free_port()) < 0) {
        snprintf(why, whysize, "cannot set up nsd: %s", strerror(errno));
        nsd_test_stop(n);
        return -1;
    }
    return 0;
}

int nsd_test_run(struct nsd_test *n, const struct nsd_zone *zones, size_t count, char *why,
                 size_t whysize)
{
    struct timespec pause = {.tv_nsec = 50 * 1000000L};
    int status;

    if (write_zones(n, zones, count) < 0 || write_conf(n, zones, count) < 0 ||
        (n->pid = spawn(n)) < 0) {
        snprintf(why, whysize, "cannot set up nsd: %s", strerror(errno));
        nsd_test_stop(n);
        return -1;
    }
    for (int i = 0; i < 200; i++) { /* 10 s */
        if (answers(n->port, zones[0].name))
            return 0;
        if (waitpid(n->pid, &status, WNOHANG) == n->pid) {
            n->pid = -1;
            break;
        }
        nanosleep(&pause, NULL);
    }
    snprintf(why, whysize, "nsd did not answer: ");
    read_out(n, why + strlen(why), whysize - strlen(why));
    nsd_test_stop(n);
    return -1;
}

int nsd_test_start(struct nsd_test *n, const struct nsd_zone *zones, size_t count, char *why,
                   size_t whysize)
{
    if (nsd_test_prepare(n, "nsd", why, whysize) < 0)
        return -1;
    return nsd_test_run(n, zones, count, why, whysize);
}

int nsd_test_reload(const struct nsd_test *n)
{
    return n->pid > 0 ? kill(n->pid, SIGHUP) : -1;
}

/*
 * kv-test — see kv-test.h.
 */
#include "config.h"

#include <ftw.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <event2/event.h>

#include "tests/unit/kv-test.h"

static int free_tcp_port(void)
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

/* True when redis answers PING on the port. */
static bool redis_ping(int port)
{
    struct sockaddr_in sin = {.sin_family = AF_INET,
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                              .sin_port = htons((uint16_t)port)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    char buf[16] = "";
    bool ok = false;

    if (fd >= 0 && connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0 &&
        write(fd, "PING\r\n", 6) == 6 && read(fd, buf, sizeof(buf) - 1) > 0)
        ok = strncmp(buf, "+PONG", 5) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

/* In the foreground as our child (SERVICES.md's flags). */
int kv_test_redis_start(struct kv_test *t)
{
    char port[16], log[128];

    snprintf(port, sizeof(port), "%d", t->redis_port);
    snprintf(log, sizeof(log), "%s/redis.log", t->dir);
    t->redis_pid = fork();
    if (t->redis_pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        execl(REDIS_PATH, REDIS_PATH, "--port", port, "--bind", "127.0.0.1", "--dir", t->dir,
              "--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", log,
              (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 300 && t->redis_pid > 0; i++) {
        if (redis_ping(t->redis_port))
            return 0;
        usleep(10000);
    }
    return -1;
}

void kv_test_redis_stop(struct kv_test *t)
{
    if (t->redis_pid <= 0)
        return;
    kill(t->redis_pid, SIGCONT);
    kill(t->redis_pid, SIGKILL);
    waitpid(t->redis_pid, NULL, 0);
    t->redis_pid = 0;
}

void kv_test_redis_pause(struct kv_test *t)
{
    kill(t->redis_pid, SIGSTOP);
}

void kv_test_redis_resume(struct kv_test *t)
{
    kill(t->redis_pid, SIGCONT);
}

bool kv_test_have_redis(const char *name)
{
    if (access(REDIS_PATH, X_OK) == 0)
        return true;
    fprintf(stderr, "%s: %s not installed: Redis half skipped\n", name, REDIS_PATH);
    return false;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int kv_test_group_setup(void **state, size_t size, enum kv_backend backend, const char *name)
{
    struct kv_test *t = calloc(1, size);

    if (t == NULL)
        return -1;
    t->backend = backend;
    snprintf(t->dir, sizeof(t->dir), "/tmp/%s.XXXXXX", name);
    if (mkdtemp(t->dir) == NULL) {
        free(t);
        return -1;
    }
    *state = t;
    if (backend == KV_BACKEND_REDIS) {
        t->redis_port = free_tcp_port();
        if (t->redis_port < 0 || kv_test_redis_start(t) < 0)
            return -1;
    }
    return 0;
}

int kv_test_group_teardown(void **state)
{
    struct kv_test *t = *state;

    kv_test_redis_stop(t);
    nftw(t->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(t);
    return 0;
}

int kv_test_open(const struct kv_test *t, struct event_base *base, const char *lmdb_name,
                 const char *prefix, unsigned timeout_ms, struct kv **kv_r, char *error,
                 size_t errsize)
{
    char lmdb[128], addr[64];
    struct kv_config cfg = {.backend = t->backend,
                            .timeout_ms = timeout_ms,
                            .lmdb_dir = lmdb,
                            /* no fsync per commit: on a loaded machine one can
                             * pass the short request timeouts the tests use,
                             * and durability is not what they check */
                            .lmdb_nosync = true,
                            .redis_address = addr,
                            .redis_prefix = prefix};

    snprintf(lmdb, sizeof(lmdb), "%s/%s", t->dir, lmdb_name);
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", t->redis_port);
    return kv_new(base, &cfg, kv_r, error, errsize);
}

int kv_test_store_open(const struct kv_test *t, struct kv_test_store *st, const char *lmdb_name,
                       unsigned timeout_ms, char *error, size_t errsize)
{
    char lmdb[32];

    st->serial++;
    snprintf(st->prefix, sizeof(st->prefix), "t%u:%ld:", st->serial, (long)getpid());
    if (lmdb_name == NULL) {
        snprintf(lmdb, sizeof(lmdb), "state%u", st->serial);
        lmdb_name = lmdb;
    }
    st->base = event_base_new();
    if (st->base == NULL) {
        snprintf(error, errsize, "event_base_new failed");
        return -1;
    }
    if (kv_test_open(t, st->base, lmdb_name, st->prefix, timeout_ms, &st->kv, error, errsize) < 0) {
        kv_test_store_close(st);
        return -1;
    }
    return 0;
}

void kv_test_store_close(struct kv_test_store *st)
{
    kv_free(&st->kv);
    if (st->base != NULL)
        event_base_free(st->base);
    st->base = NULL;
}

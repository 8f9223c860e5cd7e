/*
 * master — see master.h. The master keeps root only to bind sockets; every
 * worker drops to server.user right after fork. Workers get the read end of
 * a pipe whose write end only the master holds: when the master dies the
 * workers see EOF and drain instead of running unsupervised forever.
 */
#include "config.h"
#include "gateway/master.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#if defined(__SANITIZE_ADDRESS__)
#define POSTERN_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define POSTERN_LSAN 1
#endif
#endif
#ifdef POSTERN_LSAN
#include <sanitizer/lsan_interface.h>
#endif

#include "gateway/limits.h"
#include "gateway/listener.h"
#include "gateway/server-config.h"
#include "lib/spool.h"
#include "gateway/worker.h"
#include "lib/log.h"
#include "lib/privs.h"
#include "relay/qmgr.h"

#define MAX_SLOTS 128 /* worker rows in the limits table: two generations */

enum slot_role { SLOT_SMTP, SLOT_QMGR };

struct slot {
    pid_t pid;
    unsigned generation;
    time_t started;
    enum slot_role role;
    unsigned lane; /* SMTP: which of the listeners' per-worker sockets it accepts from */
};

struct master {
    struct event_base *base;
    struct postern_config *cfg;
    struct listener_socket *socks;
    size_t sock_count;
    struct limits *limits;
    struct slot slots[MAX_SLOTS];
    unsigned generation;
    unsigned workers;
    int pipe_fd[2];
    struct privs privs; /* the workers' user when started as root */
    bool stopping;
    struct event *sigs[4];
    struct event *respawn_timer;
};

int master_check_config(const char *config_path)
{
    struct cfg_errors errs = { 0 };
    struct postern_config *cfg = postern_config_load(config_path, &errs);

    cfg_errors_print(&errs, stderr);
    cfg_errors_clear(&errs);
    if (cfg == NULL)
        return 1;
    postern_config_free(&cfg);
    printf("%s: configuration is valid\n", config_path);
    return 0;
}

static void setup_logging(const struct postern_config *cfg)
{
    enum log_level level = LOG_LEVEL_INFO;

    log_level_parse(cfg->server.log_level, &level);
    log_setup("posternd",
              strcmp(cfg->server.log_target, "syslog") == 0 ? LOG_TARGET_SYSLOG : LOG_TARGET_STDERR,
              cfg->server.log_facility, level);
}

static int resolve_user(struct master *m)
{
    char error[512];

    if (privs_resolve(&m->privs, m->cfg->server.user, m->cfg->server.group, error,
                      sizeof(error)) < 0) {
        log_error("%s", error);
        return -1;
    }
    return 0;
}

/* The spool belongs to the workers' user. */
static int prepare_spool(struct master *m)
{
    static const char *const subdirs[] = { "", "/tmp", "/queue", "/corrupt", "/hold", "/free" };
    char path[4096], error[512];

    for (size_t i = 0; i < sizeof(subdirs) / sizeof(subdirs[0]); i++) {
        snprintf(path, sizeof(path), "%s%s", m->cfg->server.spool_dir, subdirs[i]);
        if (mkdir(path, 0700) < 0 && errno != EEXIST) {
            log_error("cannot create %s: %s", path, strerror(errno));
            return -1;
        }
        if (privs_chown(&m->privs, path, i == 0, error, sizeof(error)) < 0)
            log_warning("%s", error);
    }
    if (qmgr_fifo_create(m->cfg->server.spool_dir, error, sizeof(error)) < 0) {
        log_error("%s", error);
        return -1;
    }
    snprintf(path, sizeof(path), "%s/%s", m->cfg->server.spool_dir, QMGR_FIFO);
    if (privs_chown(&m->privs, path, false, error, sizeof(error)) < 0)
        log_warning("%s", error);
    if (spool_recover(m->cfg->server.spool_dir, error, sizeof(error)) < 0) {
        log_error("spool recovery: %s", error);
        return -1;
    }
    return 0;
}

static void drop_privileges(const struct master *m)
{
    char error[512];

    if (privs_drop(&m->privs, error, sizeof(error)) < 0) {
        log_error("%s", error);
        _exit(1);
    }
}

static void free_loop(struct master *m)
{
    for (size_t i = 0; i < 4; i++) {
        if (m->sigs[i] != NULL)
            event_free(m->sigs[i]);
        m->sigs[i] = NULL;
    }
    if (m->respawn_timer != NULL)
        event_free(m->respawn_timer);
    m->respawn_timer = NULL;
    if (m->base != NULL)
        event_base_free(m->base);
    m->base = NULL;
}

/* In a child after fork: the child runs its own loop and signal handlers.
 * The master's loop is reinitialized before it is freed: the epoll instance
 * and the signal pipe are shared with the master after fork, and freeing
 * them as they are would unregister the master's signal pipe from its
 * epoll, leaving the master deaf to SIGCHLD, SIGHUP and SIGTERM. */
static void leave_master_loop(struct master *m)
{
    event_reinit(m->base);
    free_loop(m);
}

/* A child whose loop has ended ignores further stop signals: the master
 * forwards SIGTERM to a group that may have got it already, and a second
 * one must not kill the child in the middle of its teardown. */
static void block_stop_signals(void)
{
    sigset_t set;

    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGUSR1);
    sigprocmask(SIG_BLOCK, &set, NULL);
}

static void child_main(struct master *m, unsigned slot, unsigned lane)
{
    struct worker w;
    char error[512], tag[32];
    int rc;

    leave_master_loop(m);
    prctl(PR_SET_NAME, "postern-smtp");
    snprintf(tag, sizeof(tag), "smtp[%u]", slot);
    log_set_process(tag);
    close(m->pipe_fd[1]);
    signal(SIGPIPE, SIG_IGN);
    drop_privileges(m);
    if (worker_init(&w, m->cfg, slot, m->limits, error, sizeof(error)) < 0) {
        log_error("worker start failed: %s", error);
        _exit(1);
    }
    m->sock_count = listeners_keep_lane(m->socks, m->sock_count, lane);
    rc = worker_run(&w, m->socks, m->sock_count, m->pipe_fd[0]);
    block_stop_signals();
    worker_free(&w);
#ifdef POSTERN_LSAN
    /* _exit skips the exit-time leak check of ASan builds: run it here, so
     * that what a worker leaks is reported (and fails its exit status). */
    __lsan_do_leak_check();
#endif
    _exit(rc);
}

static void qmgr_main(struct master *m)
{
    struct event_base *base;
    const struct postern_config *cfg = m->cfg;
    struct qmgr_params p = {
        .spool_dir = cfg->server.spool_dir,
        .hostname = cfg->server.hostname,
        .relay = &cfg->delivery,
        .nameservers = (const char *const *)cfg->dns.nameservers.items,
        .nameserver_count = cfg->dns.nameservers.count,
        .dns_timeout_ms = (unsigned)cfg->dns.timeout,
        .dns_attempts = (unsigned)cfg->dns.attempts,
        .dns_cache_size = (size_t)cfg->dns.cache_size,
        .dns_cache_max_ttl_s = (unsigned)(cfg->dns.cache_max_ttl / 1000),
        .shutdown_grace_ms = cfg->server.shutdown_grace,
    };
    int rc;

    leave_master_loop(m);
    prctl(PR_SET_NAME, "postern-qmgr");
    log_set_process("qmgr");
    close(m->pipe_fd[1]);
    signal(SIGPIPE, SIG_IGN);
    listeners_close(&m->socks, m->sock_count); /* the queue manager accepts nothing */
    drop_privileges(m);
    if ((base = event_base_new()) == NULL)
        _exit(1);
    rc = qmgr_run(base, &p);
    block_stop_signals();
    event_base_free(base);
    _exit(rc);
}

static int free_slot(const struct master *m)
{
    for (unsigned i = 0; i < MAX_SLOTS; i++) {
        if (m->slots[i].pid == 0)
            return (int)i;
    }
    return -1;
}

/* The lowest lane no running SMTP worker of this generation has. */
static unsigned free_lane(const struct master *m)
{
    for (unsigned lane = 0;; lane++) {
        bool used = false;
        for (unsigned i = 0; i < MAX_SLOTS && !used; i++)
            used = m->slots[i].pid != 0 && m->slots[i].role == SLOT_SMTP &&
                   m->slots[i].generation == m->generation && m->slots[i].lane == lane;
        if (!used)
            return lane;
    }
}

static void spawn(struct master *m, enum slot_role role)
{
    int slot = free_slot(m);
    unsigned lane = role == SLOT_SMTP ? free_lane(m) : 0;
    pid_t pid;

    if (slot < 0) {
        log_error("no free worker slot");
        return;
    }
    limits_clear_worker(m->limits, (unsigned)slot);
    pid = fork();
    if (pid < 0) {
        log_error("fork: %s", strerror(errno));
        return;
    }
    if (pid == 0 && role == SLOT_QMGR)
        qmgr_main(m);
    if (pid == 0)
        child_main(m, (unsigned)slot, lane);
    m->slots[slot] = (struct slot){ pid, m->generation, time(NULL), role, lane };
}

static unsigned running(const struct master *m, unsigned generation)
{
    unsigned n = 0;

    for (unsigned i = 0; i < MAX_SLOTS; i++)
        n += m->slots[i].pid != 0 && m->slots[i].generation == generation &&
             m->slots[i].role == SLOT_SMTP;
    return n;
}

static unsigned running_qmgr(const struct master *m)
{
    unsigned n = 0;

    for (unsigned i = 0; i < MAX_SLOTS; i++)
        n += m->slots[i].pid != 0 && m->slots[i].role == SLOT_QMGR;
    return n;
}

/* SMTP workers of this generation, and exactly one queue manager: a new
 * one starts only after the old one has exited (two would deliver twice). */
static void fill_workers(struct master *m)
{
    while (!m->stopping && running(m, m->generation) < m->workers)
        spawn(m, SLOT_SMTP);
    if (!m->stopping && running_qmgr(m) == 0)
        spawn(m, SLOT_QMGR);
}

static void on_respawn(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    fill_workers(arg);
}

static void reap(struct master *m)
{
    int status;
    pid_t pid;
    bool crashed_fast = false;

    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (unsigned i = 0; i < MAX_SLOTS; i++) {
            struct slot *sl = &m->slots[i];
            if (sl->pid != pid)
                continue;
            bool current = (sl->generation == m->generation || sl->role == SLOT_QMGR) &&
                           !m->stopping;
            if (WIFSIGNALED(status))
                log_error("worker %u (pid %d) killed by signal %d%s", i, (int)pid,
                          WTERMSIG(status), current ? "; restarting" : "");
            else if (current || WEXITSTATUS(status) != 0)
                log_warning("worker %u (pid %d) exited with status %d%s", i, (int)pid,
                            WEXITSTATUS(status), current ? "; restarting" : "");
            crashed_fast = crashed_fast || (current && time(NULL) - sl->started < 2);
            limits_clear_worker(m->limits, i);
            sl->pid = 0;
        }
    }
    if (m->stopping && running(m, m->generation) + running(m, m->generation - 1) +
                           running_qmgr(m) == 0) {
        event_base_loopexit(m->base, NULL);
        return;
    }
    struct timeval delay = { crashed_fast ? 1 : 0, 0 };
    evtimer_add(m->respawn_timer, &delay);
}

static void signal_generation(struct master *m, unsigned generation, int sig)
{
    for (unsigned i = 0; i < MAX_SLOTS; i++) {
        if (m->slots[i].pid != 0 && m->slots[i].generation == generation &&
            m->slots[i].role == SLOT_SMTP)
            kill(m->slots[i].pid, sig);
    }
}

static unsigned worker_count(const struct postern_config *cfg)
{
    long n = cfg->server.workers > 0 ? cfg->server.workers : sysconf(_SC_NPROCESSORS_ONLN);

    if (n < 1)
        n = 1;
    return n > MAX_SLOTS / 2 ? MAX_SLOTS / 2 : (unsigned)n;
}

static void reload(struct master *m)
{
    struct cfg_errors errs = { 0 };
    struct postern_config *cfg = postern_config_load(m->cfg->path, &errs);
    struct listener_socket *socks;
    size_t count;
    char error[512];

    if (cfg == NULL) {
        for (size_t i = 0; i < errs.count; i++)
            log_error("reload: %s", errs.msgs[i]);
        cfg_errors_clear(&errs);
        log_error("reload failed: keeping the running configuration");
        return;
    }
    if (listeners_bind(cfg, worker_count(cfg), m->socks, m->sock_count, &socks, &count, error,
                       sizeof(error)) < 0) {
        log_error("reload failed: %s", error);
        postern_config_free(&cfg);
        return;
    }
    listeners_close(&m->socks, m->sock_count);
    postern_config_free(&m->cfg);
    m->cfg = cfg;
    m->socks = socks;
    m->sock_count = count;
    m->workers = worker_count(cfg);
    signal_generation(m, m->generation, SIGUSR1);
    for (unsigned i = 0; i < MAX_SLOTS; i++) {
        if (m->slots[i].pid != 0 && m->slots[i].role == SLOT_QMGR)
            kill(m->slots[i].pid, SIGTERM);
    }
    m->generation++;
    log_info("reloaded %s: %u workers", cfg->path, m->workers);
    fill_workers(m);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct master *m = arg;

    (void)what;
    if (sig == SIGCHLD) {
        reap(m);
    } else if (sig == SIGHUP) {
        reload(m);
    } else if (!m->stopping) {
        log_info("stopping");
        m->stopping = true;
        for (unsigned i = 0; i < MAX_SLOTS; i++) {
            if (m->slots[i].pid != 0)
                kill(m->slots[i].pid, SIGTERM);
        }
        if (running(m, m->generation) + running(m, m->generation - 1) + running_qmgr(m) == 0)
            event_base_loopexit(m->base, NULL);
    }
}

/* Every session holds a descriptor, and the soft limit is often 1024 (below
 * max_sessions): take the whole hard limit, for the workers too (they
 * inherit it). The event loops use epoll, never select, so descriptors
 * above FD_SETSIZE are fine. */
static void raise_nofile_limit(void)
{
    struct rlimit rl;
    rlim_t old;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= rl.rlim_max)
        return;
    old = rl.rlim_cur;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
        log_warning("cannot raise the open file limit from %llu to %llu: %s",
                    (unsigned long long)old, (unsigned long long)rl.rlim_max, strerror(errno));
    else
        log_info("open file limit raised from %llu to %llu", (unsigned long long)old,
                 (unsigned long long)rl.rlim_max);
}

static int master_start(struct master *m)
{
    static const int sigs[] = { SIGCHLD, SIGHUP, SIGTERM, SIGINT };
    char error[512];

    raise_nofile_limit();
    if (resolve_user(m) < 0 || prepare_spool(m) < 0)
        return -1;
    if (listeners_bind(m->cfg, worker_count(m->cfg), NULL, 0, &m->socks, &m->sock_count, error,
                       sizeof(error)) < 0) {
        log_error("%s", error);
        return -1;
    }
    if ((m->limits = limits_create(MAX_SLOTS)) == NULL || pipe2(m->pipe_fd, O_CLOEXEC) < 0) {
        log_error("cannot set up shared state: %s", strerror(errno));
        return -1;
    }
    signal(SIGPIPE, SIG_IGN);
    m->base = event_base_new();
    for (size_t i = 0; i < 4; i++) {
        m->sigs[i] = evsignal_new(m->base, sigs[i], on_signal, m);
        event_add(m->sigs[i], NULL);
    }
    m->respawn_timer = evtimer_new(m->base, on_respawn, m);
    m->workers = worker_count(m->cfg);
    return 0;
}

static void master_free(struct master *m)
{
    free_loop(m);
    listeners_close(&m->socks, m->sock_count);
    limits_destroy(&m->limits);
    postern_config_free(&m->cfg);
}

int master_run(const char *config_path)
{
    struct master m = { .pipe_fd = { -1, -1 } };
    struct cfg_errors errs = { 0 };
    int rc = 1;

    m.cfg = postern_config_load(config_path, &errs);
    cfg_errors_print(&errs, stderr);
    cfg_errors_clear(&errs);
    if (m.cfg == NULL)
        return 1;
    setup_logging(m.cfg);
    if (master_start(&m) == 0) {
        log_info("posternd %s started: %u workers, %zu listening sockets", PACKAGE_VERSION,
                 m.workers, m.sock_count);
        if (m.cfg->server.pid_file != NULL) {
            FILE *f = fopen(m.cfg->server.pid_file, "w");
            if (f != NULL) {
                fprintf(f, "%ld\n", (long)getpid());
                fclose(f);
            }
        }
        fill_workers(&m);
        event_base_dispatch(m.base);
        log_info("posternd stopped");
        rc = 0;
    }
    master_free(&m);
    return rc;
}

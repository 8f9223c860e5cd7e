/*
 * log — see log.h. Lines go to stderr with a timestamp, or to syslog(3).
 * Trusts its callers to pass a constant format; sanitizes nothing itself
 * except through log_sanitize(), which callers use on network text.
 */
#include "config.h"
#include "lib/log.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>
#include <sys/time.h>

static struct {
    char ident[32];
    char process[32];
    enum log_target target;
    enum log_level level;
} log_state = { "postern", "", LOG_TARGET_STDERR, LOG_LEVEL_INFO };

/* The pid for each stderr line without a getpid() per line: cached, and
 * forgotten in a child after fork (pthread_atfork). */
static pid_t cached_pid;
static pthread_once_t pid_once = PTHREAD_ONCE_INIT;

static void forget_pid(void)
{
    cached_pid = 0;
}

static void register_forget_pid(void)
{
    pthread_atfork(NULL, NULL, forget_pid);
}

static pid_t log_pid(void)
{
    pthread_once(&pid_once, register_forget_pid);
    if (cached_pid == 0)
        cached_pid = getpid();
    return cached_pid;
}

static const struct {
    const char *name;
    int facility;
} facilities[] = {
    { "mail", LOG_MAIL },     { "daemon", LOG_DAEMON }, { "local0", LOG_LOCAL0 },
    { "local1", LOG_LOCAL1 }, { "local2", LOG_LOCAL2 }, { "local3", LOG_LOCAL3 },
    { "local4", LOG_LOCAL4 }, { "local5", LOG_LOCAL5 }, { "local6", LOG_LOCAL6 },
    { "local7", LOG_LOCAL7 },
};

static const char *const level_names[] = { "error", "warning", "info", "debug" };

void log_setup(const char *ident, enum log_target target, const char *facility,
               enum log_level level)
{
    int fac = LOG_MAIL;

    snprintf(log_state.ident, sizeof(log_state.ident), "%s", ident);
    log_state.target = target;
    log_state.level = level;
    for (size_t i = 0; facility != NULL && i < sizeof(facilities) / sizeof(facilities[0]); i++) {
        if (strcasecmp(facility, facilities[i].name) == 0)
            fac = facilities[i].facility;
    }
    if (target == LOG_TARGET_SYSLOG)
        openlog(log_state.ident, LOG_PID | LOG_NDELAY, fac);
}

void log_set_process(const char *tag)
{
    snprintf(log_state.process, sizeof(log_state.process), "%s", tag == NULL ? "" : tag);
}

int log_level_parse(const char *name, enum log_level *level_r)
{
    for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
        if (strcasecmp(name, level_names[i]) == 0) {
            *level_r = (enum log_level)i;
            return 0;
        }
    }
    return -1;
}

void log_msgv(enum log_level level, const char *fmt, va_list ap)
{
    static const int prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };
    char line[4096];

    if (level > log_state.level)
        return;
    vsnprintf(line, sizeof(line), fmt, ap);
    if (log_state.target == LOG_TARGET_SYSLOG) {
        if (log_state.process[0] != '\0')
            syslog(prio[level], "%s: %s", log_state.process, line);
        else
            syslog(prio[level], "%s", line);
        return;
    }

    struct timeval tv;
    struct tm tm;
    char stamp[32];

    gettimeofday(&tv, NULL);
    localtime_r(&tv.tv_sec, &tm);
    strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
    fprintf(stderr, "%s.%03ld %s[%ld]%s%s: %s%s%s\n", stamp, (long)(tv.tv_usec / 1000),
            log_state.ident, (long)log_pid(), log_state.process[0] != '\0' ? " " : "",
            log_state.process, level <= LOG_LEVEL_WARNING ? level_names[level] : "",
            level <= LOG_LEVEL_WARNING ? ": " : "", line);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_msgv(level, fmt, ap);
    va_end(ap);
}

char *log_sanitize(char *dst, size_t dstsize, const char *src, size_t srclen)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;

    if (dstsize == 0)
        return dst;
    for (size_t i = 0; i < srclen; i++) {
        unsigned char c = (unsigned char)src[i];
        if (c >= 0x20 && c < 0x7f && c != '\\') {
            if (o + 1 >= dstsize)
                break;
            dst[o++] = (char)c;
        } else {
            if (o + 4 >= dstsize)
                break;
            dst[o++] = '\\';
            dst[o++] = 'x';
            dst[o++] = hex[c >> 4];
            dst[o++] = hex[c & 15];
        }
    }
    dst[o] = '\0';
    return dst;
}

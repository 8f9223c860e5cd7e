/*
 * test-milter — a milter built with Sendmail's libmilter for Postern's
 * tests: it does what the test tells it and writes down what it saw.
 *
 *   test-milter -p SOCKET [-l LOG] [-C ACTION] [-n] [-L] [-s] [-x STEPS]
 *               [-m STAGE:MACROS]...
 *
 * -p  libmilter's socket: "inet:PORT@127.0.0.1", "inet6:PORT@::1",
 *     "unix:/path".
 * -l  appends one line per callback to LOG ("connect NAME ADDR", "helo X",
 *     "mail <a>", "rcpt <b>", "data", "header NAME: VALUE", "eoh",
 *     "body LEN", "eom", "abort", "close", and "macro STAGE NAME=VALUE" for
 *     each macro it knows of that has a value), flushed at once.
 * -C  at connect: accept, reject or tempfail.
 * -n  asks for every no-reply flag offered (SMFIP_NR_*).
 * -L  asks for SMFIP_HDR_LEADSPC.
 * -s  answers SKIP to the first body chunk (asks for SMFIP_SKIP).
 * -x  steps the MTA should not send: connect,helo,mail,rcpt,data,hdrs,eoh,body.
 * -m  a macro list for a stage (connect, helo, mail, rcpt, data, eoh, eom),
 *     e.g. -m "mail:{mail_addr} i".
 *
 * The envelope steers the early stages: HELO "reject.helo.test" /
 * "tempfail.helo.test"; a sender whose local part is mail-reject,
 * mail-tempfail, mail-accept or mail-replycode; a recipient rcpt-reject,
 * rcpt-tempfail, rcpt-replycode or rcpt-discard. Header fields
 * "X-Test-Milter-Eoh: reject|tempfail|discard|accept" act at end of header;
 * "X-Test-Milter: COMMAND ARGS" fields are run in order at end of message:
 *   reject | tempfail | discard | accept
 *   replycode CODE ENH TEXT        multiline CODE ENH LINE1|LINE2
 *   quarantine REASON
 *   addheader NAME VALUE           insheader INDEX NAME VALUE
 *   chgheader NAME INDEX VALUE     delheader NAME INDEX
 *   replbody TEXT                  chgfrom ADDR [ARGS]
 *   addrcpt ADDR                   addrcpt_par ADDR ARGS
 *   delrcpt ADDR                   progress SECONDS   sleep SECONDS
 * (values: "\n" and "\t" in VALUE or TEXT stand for a line break and a tab).
 *
 * A test helper, not part of Postern: it trusts its command line.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <libmilter/mfapi.h>

#define MAX_CMDS 32

static const char *log_path;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static const char *connect_action = "";
static bool want_nr, want_leadspc, want_skip;
static unsigned long no_steps;
static char *symlists[7];

struct priv {
    char *cmds[MAX_CMDS];
    int ncmds;
    char eoh_action[32];
    bool skipped;
};

static void logf_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void logf_(const char *fmt, ...)
{
    FILE *f;
    va_list ap;

    if (log_path == NULL)
        return;
    pthread_mutex_lock(&log_lock);
    if ((f = fopen(log_path, "a")) != NULL) {
        va_start(ap, fmt);
        vfprintf(f, fmt, ap);
        va_end(ap);
        fputc('\n', f);
        fclose(f);
    }
    pthread_mutex_unlock(&log_lock);
}

/* Control characters as \r, \n, \t, \xNN. */
static void escape(const char *in, char *out, size_t size)
{
    size_t o = 0;

    for (; *in != '\0' && o + 5 < size; in++) {
        unsigned char c = (unsigned char)*in;
        if (c == '\n')
            o += (size_t)snprintf(out + o, size - o, "\\n");
        else if (c == '\r')
            o += (size_t)snprintf(out + o, size - o, "\\r");
        else if (c == '\t')
            o += (size_t)snprintf(out + o, size - o, "\\t");
        else if (c < 0x20 || c > 0x7e)
            o += (size_t)snprintf(out + o, size - o, "\\x%02x", c);
        else
            out[o++] = (char)c;
    }
    out[o] = '\0';
}

static void log_macros(SMFICTX *ctx, const char *stage)
{
    static const char *const names[] = {"j",
                                        "{daemon_name}",
                                        "v",
                                        "_",
                                        "{client_addr}",
                                        "{client_name}",
                                        "{client_ptr}",
                                        "i",
                                        "{auth_authen}",
                                        "{mail_addr}",
                                        "{rcpt_addr}"};

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char *v = smfi_getsymval(ctx, (char *)names[i]);
        if (v != NULL)
            logf_("macro %s %s=%s", stage, names[i], v);
    }
}

static struct priv *priv(SMFICTX *ctx)
{
    struct priv *p = smfi_getpriv(ctx);

    if (p == NULL && (p = calloc(1, sizeof(*p))) != NULL)
        smfi_setpriv(ctx, p);
    return p;
}

static void priv_clear(struct priv *p)
{
    for (int i = 0; i < p->ncmds; i++)
        free(p->cmds[i]);
    p->ncmds = 0;
    p->eoh_action[0] = '\0';
    p->skipped = false;
}

static sfsistat action(SMFICTX *ctx, const char *a)
{
    if (strcmp(a, "reject") == 0)
        return SMFIS_REJECT;
    if (strcmp(a, "tempfail") == 0)
        return SMFIS_TEMPFAIL;
    if (strcmp(a, "discard") == 0)
        return SMFIS_DISCARD;
    if (strcmp(a, "accept") == 0)
        return SMFIS_ACCEPT;
    if (strcmp(a, "replycode") == 0) {
        smfi_setreply(ctx, "553", "5.7.0", "refused by the test milter");
        return SMFIS_REJECT;
    }
    return SMFIS_CONTINUE;
}

/* The local part's action: "rcpt-reject@x" with prefix "rcpt-" -> "reject". */
static sfsistat envelope_action(SMFICTX *ctx, const char *addr, const char *prefix)
{
    char a[64];
    const char *p = addr;
    size_t n;

    if (*p == '<')
        p++;
    if (strncasecmp(p, prefix, strlen(prefix)) != 0)
        return SMFIS_CONTINUE;
    p += strlen(prefix);
    n = strcspn(p, "@>");
    if (n >= sizeof(a))
        return SMFIS_CONTINUE;
    memcpy(a, p, n);
    a[n] = '\0';
    return action(ctx, a);
}

static sfsistat t_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1, unsigned long f2,
                            unsigned long f3, unsigned long *pf0, unsigned long *pf1,
                            unsigned long *pf2, unsigned long *pf3)
{
    static const int stages[7] = {SMFIM_CONNECT, SMFIM_HELO, SMFIM_ENVFROM, SMFIM_ENVRCPT,
                                  SMFIM_DATA,    SMFIM_EOH,  SMFIM_EOM};
    unsigned long want = no_steps;

    (void)f2, (void)f3;
    if (want_nr)
        want |= SMFIP_NR_CONN | SMFIP_NR_HELO | SMFIP_NR_MAIL | SMFIP_NR_RCPT | SMFIP_NR_DATA |
                SMFIP_NR_HDR | SMFIP_NR_EOH | SMFIP_NR_BODY | SMFIP_NR_UNKN;
    if (want_leadspc)
        want |= SMFIP_HDR_LEADSPC;
    if (want_skip)
        want |= SMFIP_SKIP;
    logf_("negotiate actions=0x%lx protocol=0x%lx", f0, f1);
    *pf0 = f0;
    *pf1 = f1 & want;
    *pf2 = 0;
    *pf3 = 0;
    for (int i = 0; i < 7; i++)
        if (symlists[i] != NULL)
            smfi_setsymlist(ctx, stages[i], symlists[i]);
    return SMFIS_CONTINUE;
}

static sfsistat t_connect(SMFICTX *ctx, char *host, _SOCK_ADDR *sa)
{
    char addr[64] = "-";

    if (sa != NULL && sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)sa)->sin_addr, addr, sizeof(addr));
    else if (sa != NULL && sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)sa)->sin6_addr, addr, sizeof(addr));
    logf_("connect %s %s", host, addr);
    log_macros(ctx, "connect");
    priv(ctx);
    return action(ctx, connect_action);
}

static sfsistat t_helo(SMFICTX *ctx, char *helo)
{
    logf_("helo %s", helo);
    log_macros(ctx, "helo");
    if (strcmp(helo, "reject.helo.test") == 0)
        return SMFIS_REJECT;
    if (strcmp(helo, "tempfail.helo.test") == 0)
        return SMFIS_TEMPFAIL;
    return SMFIS_CONTINUE;
}

static sfsistat t_envfrom(SMFICTX *ctx, char **argv)
{
    struct priv *p = priv(ctx);

    if (p != NULL)
        priv_clear(p);
    logf_("mail %s", argv[0]);
    log_macros(ctx, "mail");
    return envelope_action(ctx, argv[0], "mail-");
}

static sfsistat t_envrcpt(SMFICTX *ctx, char **argv)
{
    logf_("rcpt %s", argv[0]);
    log_macros(ctx, "rcpt");
    return envelope_action(ctx, argv[0], "rcpt-");
}

static sfsistat t_data(SMFICTX *ctx)
{
    logf_("data");
    log_macros(ctx, "data");
    return SMFIS_CONTINUE;
}

static sfsistat t_header(SMFICTX *ctx, char *name, char *value)
{
    struct priv *p = priv(ctx);
    char esc[4096];

    escape(value, esc, sizeof(esc));
    logf_("header %s:%s", name, esc);
    if (p == NULL)
        return SMFIS_CONTINUE;
    if (strcasecmp(name, "X-Test-Milter") == 0 && p->ncmds < MAX_CMDS) {
        const char *v = value;
        while (*v == ' ')
            v++;
        p->cmds[p->ncmds++] = strdup(v);
    }
    if (strcasecmp(name, "X-Test-Milter-Eoh") == 0) {
        const char *v = value;
        while (*v == ' ')
            v++;
        snprintf(p->eoh_action, sizeof(p->eoh_action), "%s", v);
    }
    return SMFIS_CONTINUE;
}

static sfsistat t_eoh(SMFICTX *ctx)
{
    struct priv *p = priv(ctx);

    logf_("eoh");
    log_macros(ctx, "eoh");
    return p != NULL ? action(ctx, p->eoh_action) : SMFIS_CONTINUE;
}

static sfsistat t_body(SMFICTX *ctx, unsigned char *data, size_t len)
{
    struct priv *p = priv(ctx);

    (void)data;
    logf_("body %zu", len);
    if (want_skip && p != NULL && !p->skipped) {
        p->skipped = true;
        return SMFIS_SKIP;
    }
    return SMFIS_CONTINUE;
}

/* "\n" and "\t" in a value as a line break and a tab. */
static void unescape(char *s)
{
    char *o = s;

    for (; *s != '\0'; s++) {
        if (s[0] == '\\' && (s[1] == 'n' || s[1] == 't')) {
            *o++ = s[1] == 'n' ? '\n' : '\t';
            s++;
        } else {
            *o++ = *s;
        }
    }
    *o = '\0';
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* One EOM command; returns the final reply it asks for, or -1 to go on. */
static int run_cmd(SMFICTX *ctx, char *cmd)
{
    char *save = NULL;
    char *verb = strtok_r(cmd, " ", &save);
    char *a = strtok_r(NULL, " ", &save);
    char *rest = save != NULL && *save != '\0' ? save : NULL;
    int r;

    if (verb == NULL)
        return -1;
    if (a != NULL)
        unescape(a);
    if (rest != NULL)
        unescape(rest);
    if (!strcmp(verb, "reject") || !strcmp(verb, "tempfail") || !strcmp(verb, "discard") ||
        !strcmp(verb, "accept"))
        return action(ctx, verb);
    if (!strcmp(verb, "replycode") && a != NULL && rest != NULL) {
        char *enh = strtok_r(NULL, " ", &save);
        r = smfi_setreply(ctx, a, enh, save);
        logf_("setreply %d", r);
        return a[0] == '4' ? SMFIS_TEMPFAIL : SMFIS_REJECT;
    }
    if (!strcmp(verb, "multiline") && a != NULL && rest != NULL) {
        char *enh = strtok_r(NULL, " ", &save);
        char *l1 = strtok_r(NULL, "|", &save);
        r = smfi_setmlreply(ctx, a, enh, l1, save, (char *)NULL);
        logf_("setmlreply %d", r);
        return a[0] == '4' ? SMFIS_TEMPFAIL : SMFIS_REJECT;
    }
    if (!strcmp(verb, "quarantine")) {
        char reason[1024];
        snprintf(reason, sizeof(reason), "%s%s%s", a != NULL ? a : "test", rest != NULL ? " " : "",
                 rest != NULL ? rest : "");
        r = smfi_quarantine(ctx, reason);
    } else if (!strcmp(verb, "addheader") && a != NULL)
        r = smfi_addheader(ctx, a, rest != NULL ? rest : "");
    else if (!strcmp(verb, "insheader") && a != NULL && rest != NULL) {
        char *name = strtok_r(NULL, " ", &save);
        r = smfi_insheader(ctx, atoi(a), name, save != NULL ? save : "");
    } else if (!strcmp(verb, "chgheader") && a != NULL && rest != NULL) {
        char *idx = strtok_r(NULL, " ", &save);
        r = smfi_chgheader(ctx, a, atoi(idx), save != NULL ? save : "");
    } else if (!strcmp(verb, "delheader") && a != NULL && rest != NULL)
        r = smfi_chgheader(ctx, a, atoi(rest), NULL);
    else if (!strcmp(verb, "replbody") && a != NULL) {
        char body[4096];
        snprintf(body, sizeof(body), "%s%s%s\r\n", a, rest != NULL ? " " : "",
                 rest != NULL ? rest : "");
        r = smfi_replacebody(ctx, (unsigned char *)body, (int)strlen(body));
    } else if (!strcmp(verb, "chgfrom") && a != NULL)
        r = smfi_chgfrom(ctx, a, rest);
    else if (!strcmp(verb, "addrcpt") && a != NULL)
        r = smfi_addrcpt(ctx, a);
    else if (!strcmp(verb, "addrcpt_par") && a != NULL)
        r = smfi_addrcpt_par(ctx, a, rest);
    else if (!strcmp(verb, "delrcpt") && a != NULL)
        r = smfi_delrcpt(ctx, a);
    else if (!strcmp(verb, "progress") && a != NULL) {
        long ms = (long)(atof(a) * 1000);
        for (long t = 0; t < ms; t += 200) {
            sleep_ms(200);
            smfi_progress(ctx);
        }
        r = MI_SUCCESS;
    } else if (!strcmp(verb, "sleep") && a != NULL) {
        sleep_ms((long)(atof(a) * 1000));
        r = MI_SUCCESS;
    } else {
        logf_("unknown command %s", verb);
        return -1;
    }
    logf_("%s %s", verb, r == MI_SUCCESS ? "ok" : "failed");
    return -1;
}

static sfsistat t_eom(SMFICTX *ctx)
{
    struct priv *p = priv(ctx);
    sfsistat rc = SMFIS_CONTINUE;

    logf_("eom");
    log_macros(ctx, "eom");
    for (int i = 0; p != NULL && i < p->ncmds; i++) {
        int r = run_cmd(ctx, p->cmds[i]);
        if (r >= 0) {
            rc = (sfsistat)r;
            break;
        }
    }
    if (p != NULL)
        priv_clear(p);
    return rc;
}

static sfsistat t_abort(SMFICTX *ctx)
{
    struct priv *p = smfi_getpriv(ctx);

    logf_("abort");
    if (p != NULL)
        priv_clear(p);
    return SMFIS_CONTINUE;
}

static sfsistat t_close(SMFICTX *ctx)
{
    struct priv *p = smfi_getpriv(ctx);

    logf_("close");
    if (p != NULL) {
        priv_clear(p);
        free(p);
        smfi_setpriv(ctx, NULL);
    }
    return SMFIS_CONTINUE;
}

static unsigned long step_flag(const char *name)
{
    static const struct {
        const char *name;
        unsigned long flag;
    } steps[] = {{"connect", SMFIP_NOCONNECT}, {"helo", SMFIP_NOHELO}, {"mail", SMFIP_NOMAIL},
                 {"rcpt", SMFIP_NORCPT},       {"data", SMFIP_NODATA}, {"hdrs", SMFIP_NOHDRS},
                 {"eoh", SMFIP_NOEOH},         {"body", SMFIP_NOBODY}};

    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++)
        if (strcmp(steps[i].name, name) == 0)
            return steps[i].flag;
    fprintf(stderr, "test-milter: unknown step %s\n", name);
    exit(2);
}

static void add_symlist(char *arg)
{
    static const char *const names[7] = {"connect", "helo", "mail", "rcpt", "data", "eoh", "eom"};
    char *colon = strchr(arg, ':');

    if (colon == NULL)
        exit(2);
    *colon = '\0';
    for (int i = 0; i < 7; i++)
        if (strcmp(names[i], arg) == 0) {
            symlists[i] = colon + 1;
            return;
        }
    exit(2);
}

int main(int argc, char **argv)
{
    struct smfiDesc desc = {
        .xxfi_name = "postern-test-milter",
        .xxfi_version = SMFI_VERSION,
        .xxfi_flags = SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_CHGBODY | SMFIF_ADDRCPT |
                      SMFIF_ADDRCPT_PAR | SMFIF_DELRCPT | SMFIF_QUARANTINE | SMFIF_CHGFROM |
                      SMFIF_SETSYMLIST,
        .xxfi_connect = t_connect,
        .xxfi_helo = t_helo,
        .xxfi_envfrom = t_envfrom,
        .xxfi_envrcpt = t_envrcpt,
        .xxfi_header = t_header,
        .xxfi_eoh = t_eoh,
        .xxfi_body = t_body,
        .xxfi_eom = t_eom,
        .xxfi_abort = t_abort,
        .xxfi_close = t_close,
        .xxfi_data = t_data,
        .xxfi_negotiate = t_negotiate,
    };
    const char *sock = NULL;
    int c;

    while ((c = getopt(argc, argv, "p:l:C:nLsx:m:")) != -1) {
        switch (c) {
        case 'p':
            sock = optarg;
            break;
        case 'l':
            log_path = optarg;
            break;
        case 'C':
            connect_action = optarg;
            break;
        case 'n':
            want_nr = true;
            break;
        case 'L':
            want_leadspc = true;
            break;
        case 's':
            want_skip = true;
            break;
        case 'x':
            for (char *save = NULL, *t = strtok_r(optarg, ",", &save); t != NULL;
                 t = strtok_r(NULL, ",", &save))
                no_steps |= step_flag(t);
            break;
        case 'm':
            add_symlist(optarg);
            break;
        default:
            fprintf(stderr, "usage: test-milter -p SOCKET [-l LOG] [-C ACTION] [-n] [-L] [-s] "
                            "[-x STEPS] [-m STAGE:MACROS]\n");
            return 2;
        }
    }
    if (sock == NULL) {
        fprintf(stderr, "test-milter: -p SOCKET is required\n");
        return 2;
    }
    if (strncmp(sock, "unix:", 5) == 0)
        unlink(sock + 5);
    if (smfi_setconn((char *)sock) == MI_FAILURE || smfi_register(desc) == MI_FAILURE) {
        fprintf(stderr, "test-milter: cannot set up %s\n", sock);
        return 1;
    }
    smfi_settimeout(60);
    if (smfi_opensocket(1) == MI_FAILURE) {
        fprintf(stderr, "test-milter: cannot open %s\n", sock);
        return 1;
    }
    /* posternd's workers run as another user (nobody) */
    if (strncmp(sock, "unix:", 5) == 0)
        chmod(sock + 5, 0666);
    logf_("ready");
    return smfi_main() == MI_SUCCESS ? 0 : 1;
}

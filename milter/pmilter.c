/*
 * pmilter — libmilter's callbacks of postern-milter (see pmilter.h). Each
 * callback fills the connection's struct filter_txn, hands the stage to the
 * loop (pmilter-loop.c) and turns the policy's decision into libmilter's
 * answer: REJECT → smfi_setreply + SMFIS_REJECT, TEMPFAIL → SMFIS_TEMPFAIL
 * with the reply, DISCONNECT → 421 + SMFIS_TEMPFAIL (the MTA closes),
 * DISCARD → SMFIS_DISCARD, HOLD and QUARANTINE → smfi_quarantine.
 *
 * The header fields and body are collected into an unlinked temporary file
 * (CRLF lines, as posternd's spool holds them) bounded by
 * smtp.message_size_limit; the end-of-message stage reads it. When the
 * message is accepted and a filter has a late step (DKIM signing), the
 * message the MTA will relay is made first, as posternd has it before its
 * commit: the collected copy with the chain's edits applied (a second
 * unlinked file; only when they touch the content), below the chain's
 * header fields and the policy's X-Spam-* (filter_txn.added_headers), with
 * the final envelope; the late step runs on that and may refuse the
 * message. Then the chain's message edits are applied with
 * smfi_insheader/chgheader/chgfrom/addrcpt(_par)/delrcpt/replacebody, the
 * chain's and the policy's fields are inserted at the top (smfi_insheader
 * 0) and the late step's fields above them, so that the MTA relays what
 * was signed. Header indexes are the MTA's (Postfix counts from the top of
 * the message as it received it; its own Received: is not shown).
 *
 * Started as root, pmilter_run opens libmilter's socket first, then
 * becomes server.user (pmilter-privs.c) and only then builds the filters
 * and the chain: no filter ever runs as root.
 *
 * libmilter gives its callbacks no context but the connection's private
 * pointer, so the process-wide part (config, loop, bounds) is one static
 * struct, set before smfi_main starts the threads and only read after.
 */
#include "config.h"
#include "milter/pmilter.h"

#include <errno.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <libmilter/mfapi.h>

#include "filters/edit.h"
#include "gateway/server-config.h"
#include "lib/log.h"
#include "milter/pmilter-private.h"
#include "milter/pmilter-edit.h"
#include "milter/pmilter-privs.h"
#include "milter/pmilter-text.h"

#define PM_RCPTS_MAX 10000 /* recipients of one transaction */
#define PM_HELO_MAX 1024

static struct {
    const struct postern_config *cfg;
    struct ploop *loop;
    const char *tmp_dir;
    unsigned timeout_ms;
    atomic_uint live; /* connections between xxfi_connect and xxfi_close */
} g;

static char *mut(const char *s)
{
    return (char *)s; /* libmilter's prototypes lack const; it does not write */
}

static void clear_message(struct pconn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    if (c->final_fd >= 0)
        close(c->final_fd);
    c->final_fd = -1;
    free(c->added_text);
    c->added_text = NULL;
    c->txn.added_headers = NULL;
    c->size = 0;
    c->too_big = false;
    c->header_end = false;
    c->txn.content_fd = -1;
    c->txn.content_off = c->txn.content_len = 0;
}

static void clear_txn(struct pconn *c)
{
    clear_message(c);
    for (size_t i = 0; i < c->rcpt_count; i++)
        free(c->rcpts[i]);
    free(c->rcpts);
    c->rcpts = NULL;
    c->rcpt_count = 0;
    free(c->sender);
    free(c->rcpt);
    free(c->queue_id);
    c->sender = c->rcpt = c->queue_id = NULL;
    c->txn.sender = c->txn.rcpt = c->txn.queue_id = NULL;
    c->txn.rcpts = NULL;
    c->txn.rcpt_count = 0;
    pconn_clear_answer(c);
}

static void refresh_macros(SMFICTX *ctx, struct pconn *c)
{
    const char *id = smfi_getsymval(ctx, mut("i"));
    const char *auth = smfi_getsymval(ctx, mut("{auth_authen}"));

    if (id != NULL && (c->queue_id == NULL || strcmp(id, c->queue_id) != 0)) {
        free(c->queue_id);
        c->queue_id = strndup(id, 64);
    }
    c->txn.queue_id = c->queue_id;
    if (auth != NULL && *auth != '\0' && c->auth_user == NULL &&
        (c->auth_user = strndup(auth, 256)) != NULL) {
        c->txn.authenticated = true;
        c->txn.auth_user = c->auth_user;
        c->txn.direction = FILTER_OUTBOUND;
    }
}

/* Sets the reply of a refusal; falls back to the default when the chain's
 * code is not of the class libmilter's answer needs. */
static void set_reply(SMFICTX *ctx, const struct smtp_status *st, unsigned cls, unsigned dflt,
                      const char *dflt_ext, const char *dflt_text)
{
    char code[8], text[sizeof(st->text)];
    const char *ext = dflt_ext;

    if (st->code / 100 == cls) {
        snprintf(code, sizeof(code), "%u", st->code);
        snprintf(text, sizeof(text), "%s", st->text[0] != '\0' ? st->text : dflt_text);
        if (st->enhanced[0] != '\0')
            ext = st->enhanced;
    } else {
        snprintf(code, sizeof(code), "%u", dflt);
        snprintf(text, sizeof(text), "%s", dflt_text);
    }
    pmilter_reply_text(text);
    if (smfi_setreply(ctx, code, mut(ext), text) != MI_SUCCESS)
        log_warning("cannot set the reply %s %s", code, text);
}

/* Runs stage and answers as the policy decided. */
static sfsistat run_stage(SMFICTX *ctx, struct pconn *c, enum filter_stage stage)
{
    const char *id = c->queue_id != NULL ? c->queue_id : "NOQUEUE";

    if (ploop_run(g.loop, c, stage, g.timeout_ms) < 0) {
        log_error("%s: the filters failed: answering 451", id);
        set_reply(ctx, &(struct smtp_status){0}, 4, 451, "4.3.0",
                  "Error: content filter unavailable");
        return SMFIS_TEMPFAIL;
    }
    switch (c->d.action) {
    case FILTER_ACTION_REJECT:
        log_info("%s: reject by %s", id, c->d.why != NULL ? c->d.why : "-");
        set_reply(ctx, &c->d.reply, 5, 554, "5.7.1", "Error: rejected");
        return SMFIS_REJECT;
    case FILTER_ACTION_TEMPFAIL:
        log_info("%s: tempfail by %s", id, c->d.why != NULL ? c->d.why : "-");
        set_reply(ctx, &c->d.reply, 4, 451, "4.7.1", "Error: try again later");
        return SMFIS_TEMPFAIL;
    case FILTER_ACTION_DISCONNECT:
        log_info("%s: disconnect by %s", id, c->d.why != NULL ? c->d.why : "-");
        set_reply(ctx, &(struct smtp_status){0}, 4, 421, "4.7.0", "Service not available");
        return SMFIS_TEMPFAIL;
    case FILTER_ACTION_DISCARD:
        if (stage == FILTER_EOM) {
            log_info("%s: discard by %s", id, c->d.why != NULL ? c->d.why : "-");
            return SMFIS_DISCARD;
        }
        return SMFIS_CONTINUE;
    default:
        return SMFIS_CONTINUE;
    }
}

static sfsistat pm_connect(SMFICTX *ctx, char *hostname, _SOCK_ADDR *sa)
{
    struct pconn *c = calloc(1, sizeof(*c));

    if (c == NULL)
        return SMFIS_TEMPFAIL;
    atomic_fetch_add(&g.live, 1);
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    c->fd = -1;
    c->final_fd = -1;
    if (sa == NULL || netaddr_from_sockaddr(sa, &c->txn.client) < 0)
        (void)netaddr_parse("127.0.0.1", &c->txn.client); /* a local client */
    if (netaddr_to_text(&c->txn.client, c->client_addr, sizeof(c->client_addr)) == NULL)
        snprintf(c->client_addr, sizeof(c->client_addr), "unknown");
    /* Postfix gives "[addr]" when the client has no verified name */
    c->client_name = strndup(hostname == NULL || hostname[0] == '[' ? "unknown" : hostname, 255);
    c->txn.listener = "milter";
    c->txn.client_addr = c->client_addr;
    c->txn.client_name = c->client_name != NULL ? c->client_name : "unknown";
    c->txn.trusted = netaddr_list_match(&g.cfg->trusted, &c->txn.client);
    c->txn.direction = c->txn.trusted ? FILTER_OUTBOUND : FILTER_INBOUND;
    c->txn.content_fd = -1;
    smfi_setpriv(ctx, c);
    return run_stage(ctx, c, FILTER_CONNECT);
}

static sfsistat pm_helo(SMFICTX *ctx, char *helo)
{
    struct pconn *c = smfi_getpriv(ctx);

    if (c == NULL)
        return SMFIS_TEMPFAIL;
    free(c->helo);
    c->helo = strndup(helo != NULL ? helo : "", PM_HELO_MAX);
    c->txn.helo = c->helo;
    return run_stage(ctx, c, FILTER_HELO);
}

static sfsistat pm_envfrom(SMFICTX *ctx, char **argv)
{
    struct pconn *c = smfi_getpriv(ctx);

    if (c == NULL)
        return SMFIS_TEMPFAIL;
    clear_txn(c);
    if ((c->sender = pmilter_envelope_addr(argv[0])) == NULL) {
        set_reply(ctx, &(struct smtp_status){0}, 5, 553, "5.1.7", "Error: bad sender address");
        return SMFIS_REJECT;
    }
    c->txn.sender = c->sender;
    refresh_macros(ctx, c);
    return run_stage(ctx, c, FILTER_MAIL);
}

static sfsistat pm_envrcpt(SMFICTX *ctx, char **argv)
{
    struct pconn *c = smfi_getpriv(ctx);
    sfsistat r;
    char **n;

    if (c == NULL)
        return SMFIS_TEMPFAIL;
    free(c->rcpt);
    c->txn.rcpt = NULL;
    if (c->rcpt_count >= PM_RCPTS_MAX) {
        set_reply(ctx, &(struct smtp_status){0}, 4, 452, "4.5.3", "Error: too many recipients");
        return SMFIS_TEMPFAIL;
    }
    if ((c->rcpt = pmilter_envelope_addr(argv[0])) == NULL) {
        set_reply(ctx, &(struct smtp_status){0}, 5, 553, "5.1.3", "Error: bad recipient address");
        return SMFIS_REJECT;
    }
    c->txn.rcpt = c->rcpt;
    refresh_macros(ctx, c);
    r = run_stage(ctx, c, FILTER_RCPT);
    c->txn.rcpt = NULL;
    if (r != SMFIS_CONTINUE)
        return r;
    if ((n = realloc(c->rcpts, (c->rcpt_count + 1) * sizeof(*n))) == NULL)
        return SMFIS_TEMPFAIL;
    c->rcpts = n;
    n[c->rcpt_count++] = c->rcpt;
    c->rcpt = NULL;
    c->txn.rcpts = (const char *const *)c->rcpts;
    c->txn.rcpt_count = c->rcpt_count;
    return SMFIS_CONTINUE;
}

static sfsistat pm_data(SMFICTX *ctx)
{
    struct pconn *c = smfi_getpriv(ctx);

    if (c == NULL)
        return SMFIS_TEMPFAIL;
    refresh_macros(ctx, c);
    return run_stage(ctx, c, FILTER_DATA);
}

static int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;

    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Appends to the collected message. Returns SMFIS_CONTINUE, or the answer
 * that ends the message (too big, no temporary file). */
static sfsistat collect(SMFICTX *ctx, struct pconn *c, const void *buf, size_t len)
{
    uint64_t limit = (uint64_t)g.cfg->smtp.message_size_limit;
    char path[4096];

    if (c->fd < 0) {
        snprintf(path, sizeof(path), "%s/postern-milter.XXXXXX", g.tmp_dir);
        if ((c->fd = mkstemp(path)) < 0) {
            log_error("cannot create a temporary file in %s: %s", g.tmp_dir, strerror(errno));
            set_reply(ctx, &(struct smtp_status){0}, 4, 451, "4.3.0", "Error: local trouble");
            return SMFIS_TEMPFAIL;
        }
        unlink(path);
    }
    if (limit > 0 && c->size + len > limit) {
        c->too_big = true;
        set_reply(ctx, &(struct smtp_status){0}, 5, 552, "5.3.4", "Error: message too big");
        return SMFIS_REJECT;
    }
    if (write_all(c->fd, buf, len) < 0) {
        log_error("cannot write a temporary file: %s", strerror(errno));
        set_reply(ctx, &(struct smtp_status){0}, 4, 451, "4.3.0", "Error: local trouble");
        return SMFIS_TEMPFAIL;
    }
    c->size += len;
    return SMFIS_CONTINUE;
}

/* Writes s with its line breaks made CR LF. */
static sfsistat collect_crlf(SMFICTX *ctx, struct pconn *c, const char *s)
{
    char *t = pmilter_crlf(s);
    sfsistat r;

    if (t == NULL) {
        set_reply(ctx, &(struct smtp_status){0}, 4, 451, "4.3.0", "Error: out of memory");
        return SMFIS_TEMPFAIL;
    }
    r = collect(ctx, c, t, strlen(t));
    free(t);
    return r;
}

static sfsistat pm_header(SMFICTX *ctx, char *name, char *value)
{
    struct pconn *c = smfi_getpriv(ctx);
    sfsistat r;

    if (c == NULL)
        return SMFIS_TEMPFAIL;
    if ((r = collect_crlf(ctx, c, name)) == SMFIS_CONTINUE &&
        (r = collect(ctx, c, ": ", 2)) == SMFIS_CONTINUE &&
        (r = collect_crlf(ctx, c, value != NULL ? value : "")) == SMFIS_CONTINUE)
        r = collect(ctx, c, "\r\n", 2);
    return r;
}

static sfsistat pm_eoh(SMFICTX *ctx)
{
    struct pconn *c = smfi_getpriv(ctx);

    if (c == NULL)
        return SMFIS_TEMPFAIL;
    c->header_end = true;
    return collect(ctx, c, "\r\n", 2);
}

static sfsistat pm_body(SMFICTX *ctx, unsigned char *chunk, size_t len)
{
    struct pconn *c = smfi_getpriv(ctx);

    if (c == NULL)
        return SMFIS_TEMPFAIL;
    return collect(ctx, c, chunk, len);
}

/* Whether envelope addresses a and b (as pmilter_envelope_addr gives
 * them) are the same: local parts exactly, domains in any case. */
static bool same_addr(const char *a, const char *b)
{
    const char *at = strrchr(a, '@'), *bt = strrchr(b, '@');

    if (at == NULL || bt == NULL)
        return at == bt && strcasecmp(a, b) == 0;
    return at - a == bt - b && strncmp(a, b, (size_t)(at - a)) == 0 && strcasecmp(at, bt) == 0;
}

/* One envelope edit applied to c's transaction as the MTA will apply it.
 * Returns 0, or -1 when out of memory. */
static int envelope_edit(struct pconn *c, const struct filter_edit *x)
{
    char *a = pmilter_envelope_addr(x->value), **n;
    size_t kept = 0;

    if (a == NULL)
        return -1;
    switch (x->kind) {
    case FILTER_EDIT_CHANGE_SENDER:
        free(c->sender);
        c->sender = a;
        return 0;
    case FILTER_EDIT_ADD_RCPT:
        for (size_t i = 0; i < c->rcpt_count; i++)
            if (same_addr(c->rcpts[i], a)) {
                free(a);
                return 0;
            }
        if ((n = realloc(c->rcpts, (c->rcpt_count + 1) * sizeof(*n))) == NULL) {
            free(a);
            return -1;
        }
        c->rcpts = n;
        n[c->rcpt_count++] = a;
        return 0;
    case FILTER_EDIT_DELETE_RCPT:
        for (size_t i = 0; i < c->rcpt_count; i++) {
            if (same_addr(c->rcpts[i], a))
                free(c->rcpts[i]);
            else
                c->rcpts[kept++] = c->rcpts[i];
        }
        c->rcpt_count = kept;
        break;
    default:
        break;
    }
    free(a);
    return 0;
}

/* The envelope the late step sees: the chain's envelope edits applied. */
static int final_envelope(struct pconn *c)
{
    for (size_t i = 0; c->edits != NULL && i < filter_edits_count(c->edits); i++)
        if (envelope_edit(c, filter_edits_at(c->edits, i)) < 0)
            return -1;
    c->txn.sender = c->sender;
    c->txn.rcpts = (const char *const *)c->rcpts;
    c->txn.rcpt_count = c->rcpt_count;
    return 0;
}

/* Makes c->txn the message the MTA will relay (the edits applied, the
 * fields to add above it) and runs the late step on it. Returns
 * SMFIS_CONTINUE, or the refusal (with its reply set). */
static sfsistat run_late(SMFICTX *ctx, struct pconn *c)
{
    const char *id = c->queue_id != NULL ? c->queue_id : "NOQUEUE";
    uint64_t len;

    if (final_envelope(c) < 0 ||
        (c->added_text = pmilter_fields_text(c->hdrs, c->hdr_count)) == NULL) {
        set_reply(ctx, &(struct smtp_status){0}, 4, 451, "4.3.0", "Error: out of memory");
        return SMFIS_TEMPFAIL;
    }
    if (c->edits != NULL && filter_edits_touch_content(c->edits)) {
        if (pmilter_edited_content(c->edits, c->fd, c->size, g.tmp_dir, &c->final_fd, &len) < 0) {
            log_error("%s: cannot apply the filters' changes to a copy of the message: %s", id,
                      strerror(errno));
            if (errno == E2BIG) {
                set_reply(ctx, &(struct smtp_status){0}, 5, 552, "5.3.4",
                          "Error: message header too big to edit");
                return SMFIS_REJECT;
            }
            set_reply(ctx, &(struct smtp_status){0}, 4, 451, "4.3.0",
                      "Error: cannot apply the filters' changes");
            return SMFIS_TEMPFAIL;
        }
        c->txn.content_fd = c->final_fd;
        c->txn.content_off = 0;
        c->txn.content_len = len;
    }
    c->txn.added_headers = c->added_text;
    if (ploop_run_late(g.loop, c, g.timeout_ms) < 0) {
        log_error("%s: the filters' late step failed: answering 451", id);
        set_reply(ctx, &(struct smtp_status){0}, 4, 451, "4.3.0",
                  "Error: content filter unavailable");
        return SMFIS_TEMPFAIL;
    }
    switch (c->late_action) {
    case FILTER_ACTION_REJECT:
        log_info("%s: reject by %s in the late step", id, c->late_by != NULL ? c->late_by : "-");
        set_reply(ctx, &c->late_reply, 5, 554, "5.7.1", "Error: rejected");
        return SMFIS_REJECT;
    case FILTER_ACTION_TEMPFAIL:
    case FILTER_ACTION_DISCONNECT:
        log_info("%s: tempfail by %s in the late step", id,
                 c->late_by != NULL ? c->late_by : "-");
        set_reply(ctx, &c->late_reply, 4, 451, "4.7.1", "Error: try again later");
        return SMFIS_TEMPFAIL;
    default:
        return SMFIS_CONTINUE;
    }
}

/* Inserts h[0..n) at the top of the header, h[0] topmost. A field the MTA
 * refuses is logged and left out. */
static void add_top(SMFICTX *ctx, const struct pconn *c, const struct filter_header *h, size_t n)
{
    for (size_t i = n; i-- > 0;)
        if (pmilter_add_field(ctx, h[i].name, h[i].value, 0) < 0)
            log_warning("%s: cannot add %s", c->queue_id != NULL ? c->queue_id : "NOQUEUE",
                        h[i].name);
}

static sfsistat pm_eom(SMFICTX *ctx)
{
    struct pconn *c = smfi_getpriv(ctx);
    sfsistat r;

    if (c == NULL)
        return SMFIS_TEMPFAIL;
    refresh_macros(ctx, c);
    if (!c->header_end && (r = collect(ctx, c, "\r\n", 2)) != SMFIS_CONTINUE) {
        clear_message(c);
        return r;
    }
    c->txn.content_fd = c->fd;
    c->txn.content_off = 0;
    c->txn.content_len = c->size;
    r = run_stage(ctx, c, FILTER_EOM);
    if (r == SMFIS_CONTINUE && ploop_has_late(g.loop))
        r = run_late(ctx, c);
    if (r == SMFIS_CONTINUE) {
        if (pmilter_apply_edits(ctx, c->edits, c->queue_id) < 0) {
            set_reply(ctx, &(struct smtp_status){0}, 4, 451, "4.3.0",
                      "Error: cannot apply the filters' changes");
            r = SMFIS_TEMPFAIL;
        }
    }
    if (r == SMFIS_CONTINUE) {
        add_top(ctx, c, c->hdrs, c->hdr_count);
        add_top(ctx, c, c->late_hdrs, c->late_count); /* above every other */
        if (c->d.action == FILTER_ACTION_HOLD || c->d.action == FILTER_ACTION_QUARANTINE) {
            char why[128];
            snprintf(why, sizeof(why), "Postern: %s by %s",
                     c->d.action == FILTER_ACTION_HOLD ? "held" : "quarantined",
                     c->d.why != NULL ? c->d.why : "policy");
            if (smfi_quarantine(ctx, why) != MI_SUCCESS) {
                set_reply(ctx, &(struct smtp_status){0}, 4, 451, "4.3.0",
                          "Error: cannot hold the message");
                r = SMFIS_TEMPFAIL;
            } else {
                log_info("%s: %s", c->queue_id != NULL ? c->queue_id : "NOQUEUE", why);
            }
        }
    }
    clear_message(c);
    pconn_clear_answer(c);
    return r;
}

static sfsistat pm_abort(SMFICTX *ctx)
{
    struct pconn *c = smfi_getpriv(ctx);

    if (c != NULL)
        clear_txn(c);
    return SMFIS_CONTINUE;
}

static sfsistat pm_close(SMFICTX *ctx)
{
    struct pconn *c = smfi_getpriv(ctx);

    if (c == NULL)
        return SMFIS_CONTINUE;
    smfi_setpriv(ctx, NULL);
    ploop_forget(g.loop, c);
    clear_txn(c);
    free(c->client_name);
    free(c->helo);
    free(c->auth_user);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    free(c);
    atomic_fetch_sub(&g.live, 1);
    return SMFIS_CONTINUE;
}

static void setup_logging(const struct postern_config *cfg)
{
    enum log_level level = LOG_LEVEL_INFO;

    log_level_parse(cfg->server.log_level, &level);
    log_setup("postern-milter",
              strcmp(cfg->server.log_target, "syslog") == 0 ? LOG_TARGET_SYSLOG : LOG_TARGET_STDERR,
              cfg->server.log_facility, level);
}

int pmilter_run(const struct pmilter_options *o)
{
    struct smfiDesc desc = {
        .xxfi_name = mut("postern-milter"),
        .xxfi_version = SMFI_VERSION,
        .xxfi_flags = SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_CHGBODY | SMFIF_ADDRCPT |
                      SMFIF_ADDRCPT_PAR | SMFIF_DELRCPT | SMFIF_CHGFROM | SMFIF_QUARANTINE,
        .xxfi_connect = pm_connect,
        .xxfi_helo = pm_helo,
        .xxfi_envfrom = pm_envfrom,
        .xxfi_envrcpt = pm_envrcpt,
        .xxfi_header = pm_header,
        .xxfi_eoh = pm_eoh,
        .xxfi_body = pm_body,
        .xxfi_eom = pm_eom,
        .xxfi_abort = pm_abort,
        .xxfi_close = pm_close,
        .xxfi_data = pm_data,
    };
    struct cfg_errors errs = {0};
    struct postern_config *cfg;
    struct privs privs;
    char error[512];
    sigset_t sigs;
    int ret = 1;

    if ((cfg = postern_config_load(o->config_path, &errs)) == NULL) {
        cfg_errors_print(&errs, stderr);
        cfg_errors_clear(&errs);
        return 1;
    }
    cfg_errors_clear(&errs);
    setup_logging(cfg);
    g.cfg = cfg;
    if (pmilter_privs_prepare(cfg, &privs) < 0)
        goto out;
    g.tmp_dir = o->tmp_dir != NULL ? o->tmp_dir : getenv("TMPDIR");
    if (g.tmp_dir == NULL || g.tmp_dir[0] == '\0')
        g.tmp_dir = "/tmp";
    /* libmilter's signal thread takes these with sigwait: the loop thread
     * (made now, inheriting the mask) must not take them itself */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGHUP);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* the socket is bound before the drop (a port below 1024, a unix
     * socket in a directory only root writes); the filters after it */
    if (smfi_setconn(mut(o->socket)) != MI_SUCCESS || smfi_register(desc) != MI_SUCCESS ||
        smfi_opensocket(true) != MI_SUCCESS) {
        log_error("cannot listen on %s", o->socket);
        goto out;
    }
    if (pmilter_privs_drop(cfg, &privs, g.tmp_dir) < 0)
        goto out;
    if (ploop_start(cfg, o->filters, &g.loop, error, sizeof(error)) < 0) {
        log_error("%s", error);
        goto out;
    }
    g.timeout_ms = o->timeout_ms != 0 ? o->timeout_ms : ploop_max_timeout(g.loop) + 5000;
    log_info("listening on %s (stage timeout %u ms)", o->socket, g.timeout_ms);
    ret = smfi_main() == MI_SUCCESS ? 0 : 1;
    /* smfi_main does not wait for the sessions' threads: give them 5 s to
     * close before the loop they use goes; past that, leave it (exit) */
    for (int i = 0; i < 100 && atomic_load(&g.live) > 0; i++)
        usleep(50000);
    if (atomic_load(&g.live) > 0) {
        log_warning("stopped with %u connection(s) open", atomic_load(&g.live));
        return ret;
    }
    log_info("stopped");
out:
    ploop_stop(&g.loop);
    postern_config_free(&cfg);
    return ret;
}

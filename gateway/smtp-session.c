/*
 * smtp-session — see smtp-session.h. The input loop reads what the current
 * state allows and no more: one command line at a time (bounded by
 * smtp.line_limit), content through the DATA reader, nothing while a hook,
 * an AUTH check or a spool commit is pending. Replies accumulate in the
 * output buffer, so a pipelined group is answered in one write.
 *
 * SECURITY: every byte here comes from an untrusted client. Lines are
 * bounded before they are copied; after STARTTLS whatever plaintext is
 * buffered is thrown away (CVE-2011-0411 class).
 */
#include "config.h"
#include "gateway/smtp-session-private.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/crypto.h>
#include <openssl/ssl.h>

#include "lib/smtp-sasl.h"

#include "gateway/client-name.h"
#include "gateway/limits.h"
#include "gateway/listener.h"
#include "gateway/proxy-proto.h"
#include "gateway/smtp-command.h"
#include "gateway/smtp-filters.h"
#include "filters/chain.h"
#include "lib/address.h"
#include "lib/spool.h"
#include "gateway/worker.h"
#include "lib/log.h"
#include "lib/tls.h"

#define INPUT_HIGH_WATERMARK (512 * 1024)
/* Replies waiting for a client that does not read: past this, no more
 * input is processed until they are written (on_write), so a pipelining
 * client cannot make the session buffer replies without bound. */
#define OUTPUT_HIGH_WATERMARK (64 * 1024)
#define MIN_RATE_GRACE_MS 10000

static void session_input(struct smtp_session *s);
static void session_free(struct smtp_session *s);
static void session_start_greeting(struct smtp_session *s);
static void session_start_lookup(struct smtp_session *s);

static long long ms_since(const struct timeval *t)
{
    struct timeval now, d;

    gettimeofday(&now, NULL);
    timersub(&now, t, &d);
    return (long long)d.tv_sec * 1000 + d.tv_usec / 1000;
}

struct evbuffer *smtp_session_output(struct smtp_session *s)
{
    if (s->tls)
        return bufferevent_get_output(s->bev);
    event_active(s->flush_ev, EV_WRITE, 0);
    return s->out;
}

/* Replies not yet handed to the socket, ours and the bufferevent's. */
static size_t output_length(struct smtp_session *s)
{
    return evbuffer_get_length(s->out) + evbuffer_get_length(bufferevent_get_output(s->bev));
}

/* Writes the collected plaintext replies: straight to the socket when
 * nothing is queued before them, the rest (a full socket buffer, an error
 * that bev will report) after whatever bev still holds. */
static void flush_output(struct smtp_session *s)
{
    struct evbuffer *queued = bufferevent_get_output(s->bev);

    if (evbuffer_get_length(s->out) == 0)
        return;
    if (evbuffer_get_length(queued) == 0)
        (void)evbuffer_write(s->out, bufferevent_getfd(s->bev));
    if (evbuffer_get_length(s->out) > 0)
        evbuffer_add_buffer(queued, s->out);
}

void smtp_reply_status(struct smtp_session *s, const struct smtp_status *st)
{
    smtp_reply_format(smtp_session_output(s), st, 1);
}

void smtp_reply(struct smtp_session *s, unsigned code, const char *enhanced, const char *fmt, ...)
{
    struct smtp_status st;
    va_list ap;

    st.code = (unsigned short)code;
    snprintf(st.enhanced, sizeof(st.enhanced), "%s", enhanced == NULL ? "" : enhanced);
    va_start(ap, fmt);
    vsnprintf(st.text, sizeof(st.text), fmt, ap);
    va_end(ap);
    smtp_reply_status(s, &st);
}

void smtp_reply_error_status(struct smtp_session *s, const struct smtp_status *st)
{
    smtp_reply_status(s, st);
    if (++s->errors >= (unsigned)s->cfg->smtp.error_limit) {
        log_info("too many errors from %s after %u errors", s->client_addr, s->errors);
        smtp_reply(s, 421, "4.7.0", "%s Error: too many errors", s->cfg->server.hostname);
        smtp_session_close_after_reply(s);
    }
}

void smtp_reply_error(struct smtp_session *s, unsigned code, const char *enhanced,
                      const char *fmt, ...)
{
    struct smtp_status st;
    va_list ap;

    st.code = (unsigned short)code;
    snprintf(st.enhanced, sizeof(st.enhanced), "%s", enhanced);
    va_start(ap, fmt);
    vsnprintf(st.text, sizeof(st.text), fmt, ap);
    va_end(ap);
    smtp_reply_error_status(s, &st);
}

void smtp_session_close_after_reply(struct smtp_session *s)
{
    long long ms = s->cfg->smtp.command_timeout;
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

    s->state = SMTP_S_CLOSING;
    bufferevent_disable(s->bev, EV_READ);
    /* A client that never reads its last reply is dropped after the command
     * timeout (on_timer) instead of holding the session forever. */
    evtimer_add(s->timer, &tv);
}

/* Over TLS, records the filter has handed to the socket bufferevent below
 * but that are not on the wire yet. */
static bool tls_output_pending(struct smtp_session *s)
{
    struct bufferevent *under = s->tls ? bufferevent_get_underlying(s->bev) : NULL;

    return under != NULL && evbuffer_get_length(bufferevent_get_output(under)) > 0;
}

/* Frees the session once its last reply is written. Over TLS the filter's
 * write callback fires when its own buffer is empty, while the records may
 * still wait in the socket bufferevent below, which calls nobody back when
 * it drains; freeing then would throw the last reply (221, 421) away. So:
 * close_notify, then look again every few ms (on_timer). */
static void maybe_finish_close(struct smtp_session *s)
{
    if (s->depth > 0)
        return; /* the input loop up the stack finishes the close */
    if (s->state != SMTP_S_CLOSING || output_length(s) > 0)
        return;
    if (s->tls) {
        SSL *ssl = bufferevent_openssl_get_ssl(s->bev);
        if (ssl != NULL && SSL_is_init_finished(ssl) &&
            !(SSL_get_shutdown(ssl) & SSL_SENT_SHUTDOWN))
            SSL_shutdown(ssl);
        if (tls_output_pending(s)) {
            struct timeval tv = { 0, 10000 };
            evtimer_add(s->timer, &tv);
            return;
        }
    }
    session_free(s);
}

/* Content is being read into a message: DATA after its 354, or an accepted
 * BDAT chunk. A refused chunk that is only skipped has no data_start, and
 * the command timeout alone applies to it. */
static bool in_data_transfer(const struct smtp_session *s)
{
    return (s->state == SMTP_S_DATA || s->state == SMTP_S_BDAT) && s->txn != NULL &&
           s->txn->content != NULL && !s->bdat_discard;
}

static void arm_timer(struct smtp_session *s)
{
    long long ms = s->cfg->smtp.command_timeout;

    if (in_data_transfer(s)) {
        long long left = s->cfg->smtp.data_timeout - ms_since(&s->txn->data_start);
        if (left < ms)
            ms = left < 1 ? 1 : left;
        if (s->cfg->smtp.min_data_rate > 0 && ms > 1000)
            ms = 1000; /* check the rate every second */
    }
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
    evtimer_add(s->timer, &tv);
}

/* The data timeouts: whole-transfer limit and minimum rate. */
static bool data_too_slow(struct smtp_session *s)
{
    long long elapsed;
    uint64_t size;

    if (!in_data_transfer(s))
        return false;
    elapsed = ms_since(&s->txn->data_start);
    if (elapsed >= s->cfg->smtp.data_timeout)
        return true;
    size = smtp_data_size(&s->txn->reader);
    return s->cfg->smtp.min_data_rate > 0 && elapsed > MIN_RATE_GRACE_MS &&
           size * 1000 < (uint64_t)s->cfg->smtp.min_data_rate * (uint64_t)elapsed;
}

static void timeout_close(struct smtp_session *s, const char *what)
{
    log_info("timeout after %s from %s", what, s->client_addr);
    smtp_reply(s, 421, "4.4.2", "%s Error: timeout exceeded", s->cfg->server.hostname);
    smtp_session_close_after_reply(s);
    maybe_finish_close(s);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct smtp_session *s = arg;

    (void)fd;
    (void)what;
    if (s->state == SMTP_S_CLOSING || s->state == SMTP_S_WAIT) {
        if (s->state == SMTP_S_CLOSING) {
            if (output_length(s) == 0 && tls_output_pending(s) &&
                ms_since(&s->last_input) < s->cfg->smtp.command_timeout) {
                struct timeval tv = { 0, 10000 };
                evtimer_add(s->timer, &tv); /* see maybe_finish_close */
                return;
            }
            session_free(s); /* the client does not read its last reply */
            return;
        }
        arm_timer(s);
        return;
    }
    if (s->state == SMTP_S_GREETING) {
        /* The greet pause is ours, not the client's idleness: the command
         * timeout starts with the greeting (send_greeting). */
        arm_timer(s);
        return;
    }
    if (data_too_slow(s)) {
        timeout_close(s, "DATA");
        return;
    }
    if (ms_since(&s->last_input) >= s->cfg->smtp.command_timeout) {
        timeout_close(s, s->state == SMTP_S_DATA ? "DATA" : "command");
        return;
    }
    arm_timer(s);
}

static void on_read(struct bufferevent *bev, void *arg)
{
    struct smtp_session *s = arg;

    (void)bev;
    gettimeofday(&s->last_input, NULL);
    session_input(s);
}

/* True when the replies waiting for the client are over the mark; then
 * reading stops too (libevent would otherwise call on_read again and again
 * for the input that is left at its high watermark), until on_write. */
static bool output_full(struct smtp_session *s)
{
    if (output_length(s) <= OUTPUT_HIGH_WATERMARK)
        return false;
    if (!s->input_paused)
        bufferevent_disable(s->bev, EV_READ);
    s->input_paused = true;
    return true;
}

/* The output is written out: goes on with the input held back by
 * output_full, or finishes a close. */
static void on_write(struct bufferevent *bev, void *arg)
{
    struct smtp_session *s = arg;

    (void)bev;
    if (s->input_paused && s->state != SMTP_S_CLOSING) {
        s->input_paused = false;
        bufferevent_enable(s->bev, EV_READ);
        session_input(s); /* which finishes a close itself */
        return;
    }
    maybe_finish_close(s);
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    struct smtp_session *s = arg;

    (void)fd;
    (void)what;
    flush_output(s);
    if (evbuffer_get_length(bufferevent_get_output(s->bev)) == 0)
        on_write(s->bev, s); /* written out at once: bev will not call it */
}

static void on_event(struct bufferevent *bev, short events, void *arg)
{
    struct smtp_session *s = arg;

    if (events & BEV_EVENT_CONNECTED) {
        SSL *ssl = bufferevent_openssl_get_ssl(bev);
        if (ssl != NULL) {
            tls_describe(ssl, s->tls_desc, sizeof(s->tls_desc));
            log_info("TLS established with %s: %s", s->client_addr, s->tls_desc);
        }
        return;
    }
    if (events & BEV_EVENT_ERROR && s->tls)
        log_info("TLS or I/O error with %s", s->client_addr);
    if (s->txn != NULL && s->state == SMTP_S_DATA)
        log_info("lost connection after DATA from %s", s->client_addr);
    session_free(s);
}

static void set_callbacks(struct smtp_session *s)
{
    bufferevent_setcb(s->bev, on_read, on_write, on_event, s);
    bufferevent_setwatermark(s->bev, EV_READ, 0,
                             (size_t)s->cfg->smtp.line_limit * 2 + INPUT_HIGH_WATERMARK);
    bufferevent_enable(s->bev, EV_READ | EV_WRITE);
}

static bool check_limits(struct smtp_session *s)
{
    struct limits_config lc = {
        .max_sessions = s->cfg->smtp.max_sessions,
        .max_per_ip = s->cfg->smtp.max_sessions_per_ip,
        .rate_per_minute = s->cfg->smtp.connection_rate_limit,
        .exempt = s->trusted,
    };
    enum limits_verdict v;

    if (s->worker->limits == NULL)
        return true;
    v = limits_session_open(s->worker->limits, s->worker->index, &s->client, &lc, time(NULL));
    if (v == LIMITS_OK) {
        s->limits_counted = true;
        return true;
    }
    log_info("connection from %s refused: %s", s->client_addr,
             v == LIMITS_TOO_MANY_SESSIONS ? "too many sessions"
             : v == LIMITS_TOO_MANY_FROM_IP ? "too many sessions from this address"
                                            : "connection rate limit");
    smtp_reply(s, 421, "4.7.0", "%s Error: too many connections%s%s", s->cfg->server.hostname,
               v == LIMITS_TOO_MANY_SESSIONS ? "" : " from ",
               v == LIMITS_TOO_MANY_SESSIONS ? "" : s->client_addr);
    return false;
}

static void set_client(struct smtp_session *s, const struct sockaddr *peer)
{
    if (netaddr_from_sockaddr(peer, &s->client) < 0)
        memset(&s->client, 0, sizeof(s->client));
    netaddr_to_text(&s->client, s->client_addr, sizeof(s->client_addr));
    s->client_port = peer->sa_family == AF_INET6
                         ? ntohs(((const struct sockaddr_in6 *)peer)->sin6_port)
                         : ntohs(((const struct sockaddr_in *)peer)->sin_port);
    s->trusted = netaddr_list_match(&s->cfg->trusted, &s->client);
    s->xclient_ok = netaddr_list_match(&s->cfg->xclient, &s->client);
    snprintf(s->client_name, sizeof(s->client_name), "unknown");
}

struct smtp_session *smtp_session_new(struct worker *w, const struct listener_socket *ls,
                                      struct bufferevent *bev, const struct sockaddr *peer,
                                      socklen_t peer_len)
{
    struct smtp_session *s = calloc(1, sizeof(*s));

    (void)peer_len;
    if (s == NULL || (s->timer = evtimer_new(w->base, on_timer, s)) == NULL ||
        (s->flush_ev = event_new(w->base, -1, 0, on_flush, s)) == NULL ||
        (s->out = evbuffer_new()) == NULL) {
        if (s != NULL && s->flush_ev != NULL)
            event_free(s->flush_ev);
        if (s != NULL && s->timer != NULL)
            event_free(s->timer);
        free(s);
        bufferevent_free(bev);
        return NULL;
    }
    s->worker = w;
    s->cfg = w->cfg;
    s->listener = ls->settings;
    s->bev = bev;
    gettimeofday(&s->connected, NULL);
    s->last_input = s->connected;
    set_client(s, peer);
    worker_session_added(w, s);
    set_callbacks(s);
    if (!check_limits(s)) {
        log_info("connect from %s[%s]:%u to %s", s->client_name, s->client_addr, s->client_port,
                 s->listener->name);
        smtp_session_close_after_reply(s);
        return s;
    }
    arm_timer(s);
    if (s->listener->proxy_protocol != PROXY_OFF) {
        log_info("connect from %s[%s]:%u to %s", s->client_name, s->client_addr, s->client_port,
                 s->listener->name);
        s->state = SMTP_S_PROXY;
    } else {
        session_start_lookup(s);
    }
    return s;
}

static void send_greeting(struct smtp_session *s)
{
    smtp_reply(s, 220, NULL, "%s %s", s->cfg->server.hostname, s->cfg->smtp.banner);
    s->state = SMTP_S_COMMAND;
    gettimeofday(&s->last_input, NULL); /* the client's turn starts now */
}

static void connect_stage_done(struct smtp_session *s, const struct smtp_hook_result *r)
{
    if (r->verdict == SMTP_VERDICT_CONTINUE || r->verdict == SMTP_VERDICT_ACCEPT) {
        send_greeting(s);
        smtp_session_resume(s, SMTP_S_COMMAND);
        return;
    }
    if (!smtp_session_verdict_reply(s, r, "Service unavailable"))
        smtp_reply(s, 554, "5.7.1", "%s Service unavailable", s->cfg->server.hostname);
    smtp_session_close_after_reply(s);
    maybe_finish_close(s);
}

void smtp_session_restart(struct smtp_session *s)
{
    if (s->worker->hooks->end != NULL)
        s->worker->hooks->end(s->worker->hooks->ctx, s); /* forget the old client's findings */
    smtp_session_run_stage(s, SMTP_STAGE_CONNECT, connect_stage_done);
}

static void on_greet_pause(evutil_socket_t fd, short what, void *arg)
{
    struct smtp_session *s = arg;

    (void)fd;
    (void)what;
    if (s->state != SMTP_S_GREETING)
        return;
    s->state = SMTP_S_COMMAND;
    smtp_session_run_stage(s, SMTP_STAGE_CONNECT, connect_stage_done);
}

static void session_start_greeting(struct smtp_session *s)
{
    long long pause = s->listener->greet_pause;

    if (pause <= 0) {
        s->state = SMTP_S_COMMAND;
        smtp_session_run_stage(s, SMTP_STAGE_CONNECT, connect_stage_done);
        return;
    }
    s->state = SMTP_S_GREETING;
    s->greet_timer = evtimer_new(s->worker->base, on_greet_pause, s);
    struct timeval tv = { pause / 1000, (pause % 1000) * 1000 };
    evtimer_add(s->greet_timer, &tv);
}

static void on_client_name(void *ctx, const char *name)
{
    struct smtp_session *s = ctx;

    s->name_lookup = NULL;
    snprintf(s->client_name, sizeof(s->client_name), "%s", name);
    log_info("connect from %s[%s]:%u to %s", s->client_name, s->client_addr, s->client_port,
             s->listener->name);
    s->depth++; /* a refusal at connect closes: not inside this call */
    session_start_greeting(s);
    s->depth--;
    smtp_session_resume(s, s->state);
}

/* The client's name first (smtp.reverse_lookup), so that the checks and the
 * Received header see it; what the client sends meanwhile waits. */
static void session_start_lookup(struct smtp_session *s)
{
    /* implicit TLS (RFC 8314): the handshake starts at once, whatever the
     * lookup takes; bytes already here are the client's hello, kept */
    if (s->listener->role == ROLE_SUBMISSIONS)
        smtp_session_start_tls(s, false);
    if (s->cfg->smtp.reverse_lookup && s->worker->dns != NULL &&
        (s->name_lookup = client_name_lookup(s->worker->dns, &s->client, on_client_name, s)) !=
            NULL) {
        s->state = SMTP_S_WAIT;
        return;
    }
    log_info("connect from %s[%s]:%u to %s", s->client_name, s->client_addr, s->client_port,
             s->listener->name);
    session_start_greeting(s);
}

void smtp_session_start_tls(struct smtp_session *s, bool after_starttls)
{
    struct evbuffer *in = bufferevent_get_input(s->bev);
    SSL *ssl = SSL_new(s->cfg->tls_ctx);
    struct bufferevent *tls;

    if (after_starttls) /* no plaintext pipelined after STARTTLS survives */
        evbuffer_drain(in, evbuffer_get_length(in));
    flush_output(s); /* the 220 goes out before the handshake */
    tls = ssl == NULL ? NULL
                      : bufferevent_openssl_filter_new(s->worker->base, s->bev, ssl,
                                                       BUFFEREVENT_SSL_ACCEPTING,
                                                       BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (tls == NULL) {
        log_error("cannot start TLS for %s", s->client_addr);
        smtp_session_close_after_reply(s);
        return;
    }
    bufferevent_openssl_set_allow_dirty_shutdown(tls, 1);
    /* The filter moves records down only while the socket's buffer is under
     * this, so replies a client does not read stay in the filter's output,
     * where output_full sees them. */
    bufferevent_setwatermark(s->bev, EV_WRITE, 0, OUTPUT_HIGH_WATERMARK);
    s->bev = tls;
    s->tls = true;
    set_callbacks(s);
}

/* PROXY header: replaces the client address with the balancer's word. */
static void proxy_input(struct smtp_session *s)
{
    struct evbuffer *in = bufferevent_get_input(s->bev);
    size_t len = evbuffer_get_length(in), want = len < 16 + PROXY_V2_MAX_LEN ? len : 16 + PROXY_V2_MAX_LEN;
    unsigned accept = (unsigned)s->listener->proxy_protocol; /* v1=1, v2=2, any=3 */
    struct proxy_info info;
    size_t used;
    const char *error;
    int rc = proxy_parse(evbuffer_pullup(in, (ev_ssize_t)want), want, accept, &info, &used, &error);

    if (rc == 0)
        return;
    if (rc < 0) {
        log_warning("bad PROXY header from %s: %s", s->client_addr, error);
        smtp_reply(s, 421, "4.7.0", "%s Error: bad PROXY header", s->cfg->server.hostname);
        smtp_session_close_after_reply(s);
        return;
    }
    evbuffer_drain(in, used);
    if (!info.local) {
        char old[64];
        snprintf(old, sizeof(old), "%s", s->client_addr);
        if (s->limits_counted)
            limits_session_close(s->worker->limits, s->worker->index, &s->client);
        s->limits_counted = false;
        set_client(s, (const struct sockaddr *)&info.src);
        log_info("PROXY from %s: client %s[%s]:%u", old, s->client_name, s->client_addr,
                 s->client_port);
        if (!check_limits(s)) {
            smtp_session_close_after_reply(s);
            return;
        }
    }
    session_start_lookup(s);
}

static smtp_cmd_fn *const handlers[SMTP_VERB_COUNT] = {
    [SMTP_VERB_EHLO] = smtp_cmd_ehlo,         [SMTP_VERB_HELO] = smtp_cmd_helo,
    [SMTP_VERB_MAIL] = smtp_cmd_mail,         [SMTP_VERB_RCPT] = smtp_cmd_rcpt,
    [SMTP_VERB_DATA] = smtp_cmd_data,         [SMTP_VERB_BDAT] = smtp_cmd_bdat,
    [SMTP_VERB_RSET] = smtp_cmd_rset,         [SMTP_VERB_NOOP] = smtp_cmd_noop,
    [SMTP_VERB_QUIT] = smtp_cmd_quit,         [SMTP_VERB_HELP] = smtp_cmd_help,
    [SMTP_VERB_VRFY] = smtp_cmd_vrfy,         [SMTP_VERB_EXPN] = smtp_cmd_expn,
    [SMTP_VERB_STARTTLS] = smtp_cmd_starttls, [SMTP_VERB_AUTH] = smtp_cmd_auth,
    [SMTP_VERB_XCLIENT] = smtp_cmd_xclient,
};

static void dispatch(struct smtp_session *s, const char *line, size_t len)
{
    struct smtp_command cmd;

    if (s->state == SMTP_S_AUTH) {
        smtp_session_auth_input(s, line, len);
        return;
    }
    smtp_command_parse(line, len, &cmd);
    if (cmd.verb == SMTP_VERB_INVALID)
        smtp_reply_error(s, 500, "5.5.2", "Error: bad syntax");
    else if (cmd.verb == SMTP_VERB_UNKNOWN)
        smtp_reply_error(s, 502, "5.5.2", "Error: command not recognized");
    else
        handlers[cmd.verb](s, cmd.args, cmd.args_len);
}

/* Reads one line; returns false when no whole line is buffered yet. */
static bool line_input(struct smtp_session *s)
{
    struct evbuffer *in = bufferevent_get_input(s->bev);
    size_t eol_len, limit = (size_t)s->cfg->smtp.line_limit;
    struct evbuffer_ptr p = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_CRLF);

    if (p.pos < 0) {
        if (evbuffer_get_length(in) > limit) {
            if (!s->skip_line)
                smtp_reply_error(s, 500, "5.5.2", "Error: line too long");
            s->skip_line = true;
            evbuffer_drain(in, evbuffer_get_length(in));
        }
        return false;
    }
    if (s->skip_line || (size_t)p.pos > limit) {
        if (!s->skip_line)
            smtp_reply_error(s, 500, "5.5.2", "Error: line too long");
        s->skip_line = false;
        evbuffer_drain(in, (size_t)p.pos + eol_len);
        return true;
    }
    char *line = malloc((size_t)p.pos + 1);
    if (line == NULL)
        return false;
    evbuffer_remove(in, line, (size_t)p.pos);
    evbuffer_drain(in, eol_len);
    line[p.pos] = '\0';
    dispatch(s, line, (size_t)p.pos);
    free(line);
    return true;
}

static void early_talker(struct smtp_session *s)
{
    log_info("early talker %s rejected", s->client_addr);
    smtp_reply(s, 554, "5.5.1", "%s Error: SMTP protocol violation (talked before greeting)",
               s->cfg->server.hostname);
    smtp_session_close_after_reply(s);
}

static void session_input(struct smtp_session *s)
{
    if (s->depth > 0)
        return; /* called back from inside the loop: it goes on by itself */
    s->depth++;
    for (;;) {
        struct evbuffer *in = bufferevent_get_input(s->bev);
        size_t before = evbuffer_get_length(in);
        enum smtp_state st = s->state;

        if (st == SMTP_S_WAIT || st == SMTP_S_CLOSING || before == 0 || output_full(s))
            break;
        if (st == SMTP_S_PROXY)
            proxy_input(s);
        else if (st == SMTP_S_GREETING)
            early_talker(s);
        else if (st == SMTP_S_DATA)
            smtp_session_data_input(s);
        else if (st == SMTP_S_BDAT)
            smtp_session_bdat_input(s);
        else if (!line_input(s))
            break;
        if (s->state == st && evbuffer_get_length(bufferevent_get_input(s->bev)) == before)
            break; /* waits for more input */
    }
    s->depth--;
    /* Each read re-arms the timer, so a client that trickles content faster
     * than the timer period would never meet the rate check in on_timer. */
    if (s->state != SMTP_S_CLOSING && data_too_slow(s)) {
        timeout_close(s, "DATA");
        return;
    }
    if (s->state != SMTP_S_CLOSING)
        arm_timer(s);
    maybe_finish_close(s);
}

void smtp_session_resume(struct smtp_session *s, enum smtp_state state)
{
    if (s->state == SMTP_S_CLOSING) {
        maybe_finish_close(s);
        return;
    }
    s->state = state;
    session_input(s);
}

/* One line per refusal the checks decided before the end of the message
 * (that one has the message's summary line), Postfix-like, with what the
 * filters found: the admin's way to see why a client was turned away. */
static void log_refusal(struct smtp_session *s, const struct smtp_hook_result *r)
{
    static const char *const verdicts[] = {
        [SMTP_VERDICT_REJECT] = "reject", [SMTP_VERDICT_TEMPFAIL] = "tempfail",
        [SMTP_VERDICT_DISCONNECT] = "disconnect"};
    static const char *const stages[SMTP_STAGE_COUNT] = {"CONNECT", "HELO", "MAIL", "RCPT",
                                                         "DATA", "END-OF-DATA"};
    char from[ADDR_PATH_MAX * 4 + 8] = "", to[ADDR_PATH_MAX * 4 + 8] = "";
    char findings[CHAIN_SYMBOLS_MAX * 24] = "";

    if (s->hook_stage >= SMTP_STAGE_EOM ||
        (r->verdict != SMTP_VERDICT_REJECT && r->verdict != SMTP_VERDICT_TEMPFAIL &&
         r->verdict != SMTP_VERDICT_DISCONNECT))
        return;
    if (s->txn != NULL) {
        addr_format(&s->txn->sender, from, sizeof(from));
        if (s->hook_stage == SMTP_STAGE_RCPT)
            addr_format(&s->txn->pending_rcpt.addr, to, sizeof(to));
    }
    (void)smtp_filters_summary(s, findings, sizeof(findings));
    log_info("%s: %s %s from %s[%s]: %u %s %s; from=<%s> to=<%s> helo=%s %s",
             s->txn != NULL ? s->txn->queue_id : "NOQUEUE", verdicts[r->verdict],
             stages[s->hook_stage], s->client_name, s->client_addr, r->reply.code,
             r->reply.enhanced, r->reply.text, from, to, s->helo_seen ? s->helo : "-", findings);
}

static void hook_done(struct smtp_session *s, const struct smtp_hook_result *r)
{
    smtp_hook_done_cb *cont = s->hook_cont;

    log_refusal(s, r);
    s->hook_pending = false;
    s->hook_cont = NULL;
    cont(s, r);
}

/* A stage that was pending ends: back to the state before it, then on with
 * what the client sent meanwhile. The depth keeps the session alive while
 * the continuation runs; a session closed meanwhile only finishes closing. */
static void hook_done_async(struct smtp_session *s, const struct smtp_hook_result *r)
{
    if (s->state == SMTP_S_CLOSING) {
        s->hook_pending = false;
        s->hook_cont = NULL;
        maybe_finish_close(s);
        return;
    }
    s->state = s->resume_state;
    s->depth++;
    hook_done(s, r);
    s->depth--;
    smtp_session_resume(s, s->state);
}

void smtp_session_run_stage(struct smtp_session *s, enum smtp_stage stage,
                            smtp_hook_done_cb *cont)
{
    const struct smtp_hooks *h = s->worker->hooks;
    struct smtp_hook_result r = { .verdict = SMTP_VERDICT_CONTINUE };
    int rc;

    s->hook_cont = cont;
    s->hook_pending = true;
    s->hook_stage = stage;
    s->resume_state = s->state;
    s->state = SMTP_S_WAIT;
    rc = h->stage(h->ctx, s, stage, &r, hook_done_async);
    if (rc == 0)
        return;
    s->state = s->resume_state;
    if (rc < 0) {
        r.verdict = SMTP_VERDICT_TEMPFAIL;
        smtp_status_set(&r.reply, 451, "4.3.0", "Error: internal error, try again later");
        log_error("hook failed at %s for %s", smtp_stage_name(stage), s->client_addr);
    }
    hook_done(s, &r);
}

bool smtp_session_verdict_reply(struct smtp_session *s, const struct smtp_hook_result *r,
                                const char *default_text)
{
    switch (r->verdict) {
    case SMTP_VERDICT_REJECT:
        if (r->reply.code != 0)
            smtp_reply_status(s, &r->reply);
        else
            smtp_reply(s, 554, "5.7.1", "%s", default_text);
        return true;
    case SMTP_VERDICT_TEMPFAIL:
        if (r->reply.code != 0)
            smtp_reply_status(s, &r->reply);
        else
            smtp_reply(s, 451, "4.7.1", "%s", default_text);
        return true;
    case SMTP_VERDICT_DISCONNECT:
        if (r->reply.code != 0)
            smtp_reply_status(s, &r->reply);
        else
            smtp_reply(s, 421, "4.7.0", "%s Service not available", s->cfg->server.hostname);
        smtp_session_close_after_reply(s);
        return true;
    default:
        return false;
    }
}

void smtp_session_shutdown(struct smtp_session *s)
{
    s->shutdown_requested = true;
    if (s->state == SMTP_S_WAIT && s->txn != NULL && s->txn->msg != NULL)
        return; /* the commit answers 250 and closes (see smtp-cmd-data.c) */
    smtp_reply(s, 421, "4.3.2", "%s Service shutting down", s->cfg->server.hostname);
    smtp_session_close_after_reply(s);
    maybe_finish_close(s);
}

static void session_free(struct smtp_session *s)
{
    client_name_cancel(s->name_lookup);
    if (s->hook_pending)
        s->worker->hooks->cancel(s->worker->hooks->ctx, s);
    if (s->worker->hooks->end != NULL)
        s->worker->hooks->end(s->worker->hooks->ctx, s);
    smtp_session_auth_cancel(s);
    smtp_session_reset_txn(s);
    if (s->limits_counted)
        limits_session_close(s->worker->limits, s->worker->index, &s->client);
    log_info("disconnect from %s[%s] messages=%llu errors=%u", s->client_name, s->client_addr,
             s->messages, s->errors);
    worker_session_removed(s->worker, s);
    event_free(s->timer);
    event_free(s->flush_ev);
    evbuffer_free(s->out);
    if (s->greet_timer != NULL)
        event_free(s->greet_timer);
    bufferevent_free(s->bev);
    free(s);
}

void smtp_session_destroy(struct smtp_session **_s)
{
    struct smtp_session *s = *_s;

    if (s == NULL)
        return;
    *_s = NULL;
    session_free(s);
}

const char *smtp_session_client_addr(const struct smtp_session *s)
{
    return s->client_addr;
}

const char *smtp_session_queue_id(const struct smtp_session *s)
{
    return s->txn == NULL ? NULL : s->txn->queue_id;
}

/*
 * smtp-cmd-auth — AUTH PLAIN and LOGIN (RFC 4954). The password is checked
 * on the worker's thread pool (crypt(3) is slow by design and must not block
 * the loop); the session reads nothing until the answer comes back. Failed
 * attempts count as errors, so error_limit ends a guessing session.
 *
 * SECURITY: credentials come from an untrusted client; they are decoded
 * with bounds, never logged (only the user name, sanitized), and wiped after
 * the check.
 */
#include "config.h"
#include "gateway/smtp-session-private.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "lib/smtp-sasl.h"
#include "gateway/worker.h"
#include "lib/log.h"
#include "lib/passwd.h"
#include "lib/workpool.h"

enum { MECH_NONE, MECH_PLAIN, MECH_LOGIN_USER, MECH_LOGIN_PASS };

struct sasl_job {
    struct smtp_session *session; /* NULL once the session went away */
    const struct passwd_db *db;
    struct sasl_credentials cred;
    int ok;
};

static void check_work(void *ctx)
{
    struct sasl_job *job = ctx;

    job->ok = passwd_db_verify(job->db, job->cred.authcid, job->cred.password);
}

/* The pool's done(): runs once per job, also when the worker shuts down
 * with the check still queued (cancelled: the password was never looked
 * at). Frees the job either way. */
static void check_done(void *ctx, bool cancelled)
{
    struct sasl_job *job = ctx;
    struct smtp_session *s = job->session;
    char user[SASL_USER_MAX];

    if (s != NULL) {
        s->auth_job = NULL;
        log_sanitize(user, sizeof(user), job->cred.authcid, strlen(job->cred.authcid));
        if (cancelled) {
            smtp_reply(s, 454, "4.7.0", "Temporary authentication failure");
        } else if (job->ok == 1) {
            s->authenticated = true;
            snprintf(s->auth_user, sizeof(s->auth_user), "%s", user);
            log_info("%s: authenticated as %s", s->client_addr, user);
            smtp_reply(s, 235, "2.7.0", "Authentication successful");
        } else {
            s->auth_failures++;
            log_info("%s: authentication failed for %s", s->client_addr, user);
            smtp_reply_error(s, 535, "5.7.8", "Error: authentication failed");
        }
    }
    OPENSSL_cleanse(job, sizeof(*job));
    free(job);
    if (s != NULL)
        smtp_session_resume(s, SMTP_S_COMMAND);
}

/* Wipes and frees the credentials being collected, if any. */
static void drop_pending(struct smtp_session *s)
{
    if (s->auth_job_pending == NULL)
        return;
    OPENSSL_cleanse(s->auth_job_pending, sizeof(*s->auth_job_pending));
    free(s->auth_job_pending);
    s->auth_job_pending = NULL;
}

void smtp_session_auth_cancel(struct smtp_session *s)
{
    if (s->auth_job != NULL)
        s->auth_job->session = NULL; /* check_done frees it */
    s->auth_job = NULL;
    drop_pending(s);
}

static void start_check(struct smtp_session *s, struct sasl_job *job)
{
    job->session = s;
    job->db = s->cfg->passwd;
    s->auth_mech = MECH_NONE;
    if (job->cred.authzid[0] != '\0' && strcmp(job->cred.authzid, job->cred.authcid) != 0) {
        OPENSSL_cleanse(job, sizeof(*job));
        free(job);
        smtp_reply_error(s, 535, "5.7.8", "Error: authorization identity not allowed");
        s->state = SMTP_S_COMMAND;
        return;
    }
    s->auth_job = job;
    s->state = SMTP_S_WAIT;
    if (workpool_submit(s->worker->auth_pool, check_work, check_done, job) < 0) {
        s->auth_job = NULL;
        OPENSSL_cleanse(job, sizeof(*job));
        free(job);
        s->state = SMTP_S_COMMAND;
        smtp_reply(s, 454, "4.7.0", "Temporary authentication failure");
    }
}

static void auth_fail_syntax(struct smtp_session *s, const char *error)
{
    drop_pending(s);
    s->auth_mech = MECH_NONE;
    s->state = SMTP_S_COMMAND;
    smtp_reply_error(s, 501, "5.5.2", "Error: %s", error);
}

/* One response from the client (initial response or continuation line). */
static void auth_step(struct smtp_session *s, const char *resp, size_t len)
{
    struct sasl_job *job = s->auth_job_pending;
    const char *error = "Invalid base64 data";

    if (s->auth_mech == MECH_PLAIN) {
        if (sasl_plain_decode(resp, len, &job->cred, &error) < 0)
            return auth_fail_syntax(s, error);
        s->auth_job_pending = NULL;
        start_check(s, job);
    } else if (s->auth_mech == MECH_LOGIN_USER) {
        if (sasl_login_decode(resp, len, job->cred.authcid, &error) < 0)
            return auth_fail_syntax(s, error);
        s->auth_mech = MECH_LOGIN_PASS;
        s->state = SMTP_S_AUTH;
        smtp_reply(s, 334, NULL, "UGFzc3dvcmQ6"); /* "Password:" */
    } else {
        if (sasl_login_decode(resp, len, job->cred.password, &error) < 0)
            return auth_fail_syntax(s, error);
        s->auth_job_pending = NULL;
        start_check(s, job);
    }
}

void smtp_session_auth_input(struct smtp_session *s, const char *line, size_t len)
{
    if (len == 1 && line[0] == '*') {
        drop_pending(s);
        s->auth_mech = MECH_NONE;
        s->state = SMTP_S_COMMAND;
        smtp_reply_error(s, 501, "5.7.0", "Error: authentication aborted");
        return;
    }
    auth_step(s, line, len);
}

static bool auth_allowed(struct smtp_session *s)
{
    if (s->authenticated) {
        smtp_reply_error(s, 503, "5.5.1", "Error: already authenticated");
    } else if (s->txn != NULL) {
        smtp_reply_error(s, 503, "5.5.1", "Error: MAIL transaction in progress");
    } else if (!smtp_session_may_auth(s) && s->cfg->passwd != NULL && !s->tls &&
               (s->listener->role != ROLE_MX || s->listener->auth)) {
        smtp_reply_error(s, 538, "5.7.11", "Encryption required for requested authentication mechanism");
    } else if (!smtp_session_may_auth(s)) {
        smtp_reply_error(s, 503, "5.5.1", "Error: authentication not enabled");
    } else {
        return true;
    }
    return false;
}

void smtp_cmd_auth(struct smtp_session *s, const char *args, size_t len)
{
    size_t mlen = 0;

    if (!auth_allowed(s))
        return;
    while (mlen < len && args[mlen] != ' ')
        mlen++;
    if (mlen == 5 && strncasecmp(args, "PLAIN", 5) == 0)
        s->auth_mech = MECH_PLAIN;
    else if (mlen == 5 && strncasecmp(args, "LOGIN", 5) == 0)
        s->auth_mech = MECH_LOGIN_USER;
    else {
        smtp_reply_error(s, 504, "5.5.4", "Error: unsupported authentication mechanism");
        return;
    }
    drop_pending(s);
    s->auth_job_pending = calloc(1, sizeof(struct sasl_job));
    if (s->auth_job_pending == NULL) {
        s->auth_mech = MECH_NONE;
        smtp_reply(s, 454, "4.7.0", "Temporary authentication failure");
        return;
    }
    if (mlen < len) {
        auth_step(s, args + mlen + 1, len - mlen - 1);
        return;
    }
    s->state = SMTP_S_AUTH;
    smtp_reply(s, 334, NULL, "%s", s->auth_mech == MECH_PLAIN ? "" : "VXNlcm5hbWU6");
}

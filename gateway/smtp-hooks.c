/*
 * smtp-hooks — the default stage hook: accepts every stage at once. Stands in
 * the place the filter chain takes; see smtp-hooks.h for the contract.
 */
#include "config.h"
#include "gateway/smtp-hooks.h"

static int accept_stage(void *ctx, struct smtp_session *session, enum smtp_stage stage,
                        struct smtp_hook_result *result, smtp_hook_done_cb *done)
{
    (void)ctx;
    (void)session;
    (void)stage;
    (void)done;
    result->verdict = SMTP_VERDICT_CONTINUE;
    result->reply.code = 0;
    return 1;
}

static void accept_cancel(void *ctx, struct smtp_session *session)
{
    (void)ctx;
    (void)session;
}

const struct smtp_hooks smtp_hooks_accept_all = {
    .stage = accept_stage,
    .cancel = accept_cancel,
    .end = NULL,
    .ctx = NULL,
};

const char *smtp_stage_name(enum smtp_stage stage)
{
    static const char *const names[SMTP_STAGE_COUNT] = { "connect", "helo", "mail",
                                                         "rcpt",    "data", "eom" };
    return stage < SMTP_STAGE_COUNT ? names[stage] : "?";
}

/*
 * test-policy — policy/policy.c: the action for a stage's findings per
 * direction (table-driven: asked actions, score thresholds, what waits for
 * the end of the message), the header lines of an accepted message, and the
 * policy section of posternd's config (defaults, values, errors with lines).
 */
#include "config.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "gateway/server-config.h"
#include "policy/policy.h"
#include "tests/unit/config-test.h"

static const struct policy_settings settings = {
    .inbound = {.tag_score = 5, .hold_score = 10, .tempfail_score = 12, .reject_score = 15},
    .outbound = {.hold_score = 3},
    .add_score_header = true,
};

static const struct row {
    const char *name;
    enum filter_direction dir;
    bool final;
    double score;
    enum filter_action asked, txn_action;
    enum filter_action want;
    unsigned want_code; /* 0: none set */
    bool want_tag;
} rows[] = {
    {"clean inbound", FILTER_INBOUND, true, 1, FILTER_ACTION_NONE, FILTER_ACTION_NONE,
     FILTER_ACTION_NONE, 0, false},
    {"tag at 5", FILTER_INBOUND, true, 5, FILTER_ACTION_NONE, FILTER_ACTION_NONE,
     FILTER_ACTION_NONE, 0, true},
    {"tag only at the end", FILTER_INBOUND, false, 6, FILTER_ACTION_NONE, FILTER_ACTION_NONE,
     FILTER_ACTION_NONE, 0, false},
    {"hold at 10", FILTER_INBOUND, true, 10, FILTER_ACTION_NONE, FILTER_ACTION_NONE,
     FILTER_ACTION_HOLD, 0, true},
    {"hold not before the end", FILTER_INBOUND, false, 10, FILTER_ACTION_NONE,
     FILTER_ACTION_NONE, FILTER_ACTION_NONE, 0, false},
    {"tempfail at 12, any stage", FILTER_INBOUND, false, 12, FILTER_ACTION_NONE,
     FILTER_ACTION_NONE, FILTER_ACTION_TEMPFAIL, 451, false},
    {"reject at 15", FILTER_INBOUND, false, 20, FILTER_ACTION_NONE, FILTER_ACTION_NONE,
     FILTER_ACTION_REJECT, 554, false},
    {"asked reject stands below the thresholds", FILTER_INBOUND, false, 0,
     FILTER_ACTION_REJECT, FILTER_ACTION_NONE, FILTER_ACTION_REJECT, 0, false},
    {"score reject beats asked tempfail", FILTER_INBOUND, false, 15, FILTER_ACTION_TEMPFAIL,
     FILTER_ACTION_NONE, FILTER_ACTION_REJECT, 554, false},
    {"accept: no score applies", FILTER_INBOUND, true, 100, FILTER_ACTION_ACCEPT,
     FILTER_ACTION_NONE, FILTER_ACTION_ACCEPT, 0, false},
    {"hold asked at RCPT waits", FILTER_OUTBOUND, false, 0, FILTER_ACTION_HOLD,
     FILTER_ACTION_HOLD, FILTER_ACTION_NONE, 0, false},
    {"hold asked at RCPT applies at the end", FILTER_OUTBOUND, true, 0, FILTER_ACTION_NONE,
     FILTER_ACTION_HOLD, FILTER_ACTION_HOLD, 0, false},
    {"outbound thresholds", FILTER_OUTBOUND, true, 3, FILTER_ACTION_NONE, FILTER_ACTION_NONE,
     FILTER_ACTION_HOLD, 0, false},
    {"outbound: no inbound reject", FILTER_OUTBOUND, false, 20, FILTER_ACTION_NONE,
     FILTER_ACTION_NONE, FILTER_ACTION_NONE, 0, false},
    {"discard carried to the end", FILTER_INBOUND, true, 0, FILTER_ACTION_NONE,
     FILTER_ACTION_DISCARD, FILTER_ACTION_DISCARD, 0, false},
};

static void test_decide(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const struct row *r = &rows[i];
        struct chain_result res = {.score = r->score, .action = r->asked,
                                   .txn_action = r->txn_action, .action_by = "f"};
        struct policy_decision d;

        policy_decide(&settings, r->dir, r->final, &res, &d);
        if (d.action != r->want || d.tag != r->want_tag || d.reply.code != r->want_code)
            fail_msg("%s: action %s tag %d code %u", r->name, filter_action_name(d.action),
                     d.tag, d.reply.code);
    }
}

struct collected {
    char text[4096];
    size_t len;
    bool fail;
};

static int collect(void *ctx, const char *name, const char *value)
{
    struct collected *c = ctx;

    if (c->fail)
        return -1;
    c->len += (size_t)snprintf(c->text + c->len, sizeof(c->text) - c->len, "%s: %s\r\n", name,
                               value);
    return 0;
}

static void test_headers(void **state)
{
    struct chain_result res = {.score = 7.5, .symbol_count = 2};
    struct policy_decision d = {.tag = true};
    struct collected c = {.len = 0};

    (void)state;
    snprintf(res.symbols[0].name, sizeof(res.symbols[0].name), "DNSBL_BL_TEST");
    res.symbols[0].score = 3.5;
    snprintf(res.symbols[1].name, sizeof(res.symbols[1].name), "GREYLIST_PASS");
    assert_int_equal(policy_headers(&settings, &d, &res, "mx.test", collect, &c), 2);
    assert_string_equal(c.text, "X-Spam-Flag: YES\r\n"
                                "X-Spam-Status: Yes, score=7.5 by=mx.test tests=DNSBL_BL_TEST(3.5),\r\n"
                                "\tGREYLIST_PASS(0)\r\n");
    /* long lists are folded: no line over 78 characters */
    res.symbol_count = 20;
    for (size_t i = 0; i < 20; i++)
        snprintf(res.symbols[i].name, sizeof(res.symbols[i].name), "SYMBOL_NUMBER_%zu", i);
    c.len = 0;
    assert_int_equal(policy_headers(&settings, &d, &res, "mx.test", collect, &c), 2);
    for (char *line = c.text, *eol; (eol = strstr(line, "\r\n")) != NULL; line = eol + 2)
        assert_true(eol - line <= 78);
    /* a failing add is reported */
    c.fail = true;
    assert_int_equal(policy_headers(&settings, &d, &res, "mx.test", collect, &c), -1);
    /* neither tagged nor a score header wanted */
    struct policy_settings quiet = settings;
    quiet.add_score_header = false;
    d.tag = false;
    c.fail = false;
    assert_int_equal(policy_headers(&quiet, &d, &res, "mx.test", collect, &c), 0);
}

static void test_config(void **state)
{
    static const struct {
        const char *text, *error;
    } configs[] = {
        {"", NULL},
        {"policy = { inbound = { reject_score = 15; tag_score = 5.5; }; score_header = false; };",
         NULL},
        {"policy = {\n inbound = { reject_score = \"high\"; }; };", ":3: "},
        {"policy = { inbound = 3; };", "inbound: expected a group"},
        {"policy = {\n\n outbound = { frob = 1; }; };", ":4: unknown key \"frob\""},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(configs) / sizeof(configs[0]); i++) {
        struct cfg_errors errs = {0};
        struct postern_config *cfg = config_test_load(configs[i].text, &errs);
        config_test_expect(i, cfg, &errs, configs[i].error);
        if (i == 0) {
            assert_true(cfg->filtering.policy.inbound.reject_score == 0);
            assert_true(cfg->filtering.policy.add_score_header);
        }
        if (i == 1) {
            assert_true(cfg->filtering.policy.inbound.reject_score == 15);
            assert_true(cfg->filtering.policy.inbound.tag_score == 5.5);
            assert_false(cfg->filtering.policy.add_score_header);
        }
        postern_config_free(&cfg);
        cfg_errors_clear(&errs);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decide),
        cmocka_unit_test(test_headers),
        cmocka_unit_test(test_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

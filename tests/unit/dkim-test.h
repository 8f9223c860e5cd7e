/*
 * dkim-test — the fixture of test-dkim and test-dmarc: a temp dir with an
 * RSA key made by opendkim-genkey (OpenDKIM's tool, package
 * opendkim-tools), an nsd (nsd-test.h) on a free loopback port serving the zones
 * example.com, example.org and example.net with that key as
 * "sel._domainkey", a revoked key "rev._domainkey" and the DMARC records
 * the tests need (listed in dkim-test.c), a UDP socket that never answers,
 * a resolver for each; and the runs of one filter instance (the module's
 * own, from a config text) at FILTER_EOM, or in its late step (signing),
 * over a message written to a file behind a few octets of something else,
 * as the spool has it.
 */
#ifndef POSTERN_DKIM_TEST_H
#define POSTERN_DKIM_TEST_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "filters/chain.h"
#include "gateway/server-config.h"
#include "tests/unit/filter-test.h"
#include "tests/unit/nsd-test.h"

#define DFX_HOSTNAME "mx.postern.test"
#define DFX_RUN_MS 8000

struct dfx {
    struct nsd_test nsd; /* its dir also holds the key and the messages */
    char key[128];       /* the private key, PEM */
    char record[2048];   /* its DNS record "v=DKIM1; ... p=..." */
    int silent_fd, silent_port;
    struct event_base *base;
    struct dns *dns;    /* at nsd */
    struct dns *silent; /* at the silent socket: every query times out (300 ms) */
};

/* NULL when nsd and opendkim-genkey are installed, else why not (the test
 * then exits 77 with it). */
const char *dfx_missing(void);

/* Makes the key, the zones, nsd and the resolvers. Fails the test when
 * one cannot be made. */
void dfx_start(struct dfx *fx);
void dfx_stop(struct dfx *fx);

/* cmocka group setup and teardown of the tests that need nsd: *state a
 * struct dfx, calloc'd and started; then stopped and freed. */
int dfx_group_setup(void **state);
int dfx_group_teardown(void **state);

/* One instance of the filter that filters_text ("filters = ( ... );")
 * configures, in a chain of its own, on fx's loop, with the nsd resolver
 * (or the silent one). */
struct dfx_run {
    struct postern_config *cfg;
    struct filter_test ft;
    struct chain_session *s;
    struct filter_test_result r;
};

void dfx_open(struct dfx *fx, struct dfx_run *run, const char *filters_text, bool silent);
void dfx_close(struct dfx_run *run);

/* The transaction of a run: sender "<user@example.com>"-style text, the
 * HELO name, earlier symbols (may be NULL). */
struct dfx_txn {
    enum filter_direction direction;
    const char *sender;
    const char *helo;
    const struct filter_symbol *symbols;
    size_t symbol_count;
};

/* Runs FILTER_EOM over content; the result is in run->r.res. */
void dfx_eom(struct dfx *fx, struct dfx_run *run, const char *content, const struct dfx_txn *t);

/* Runs the late step (chain_run_late) over content with the header fields
 * added (the txn's added_headers: "Name: value\r\n" each; NULL = none);
 * the result is in run->r.res, the fields it adds in its late_headers. */
void dfx_late(struct dfx *fx, struct dfx_run *run, const char *content, const char *added,
              const struct dfx_txn *t);

/* A message: the From: field's value (NULL: no From:), more fields ("Name:
 * value\r\n" each, may be ""), the body. malloc'd. */
char *dfx_message(const char *from, const char *fields, const char *body);

/* content signed by the dkim filter with keys_text ("keys = ( ... );",
 * more keys may follow) outbound from sender, in its late step: the
 * DKIM-Signature field in front of content. malloc'd. */
char *dfx_sign(struct dfx *fx, const char *keys_text, const char *content, const char *sender);
/* The same, with the fields added (as dfx_late) between the signature and
 * the content, as delivery writes them. */
char *dfx_sign_added(struct dfx *fx, const char *keys_text, const char *content,
                     const char *added, const char *sender);

/* The nth symbol called name in r, or NULL. */
const struct filter_symbol *dfx_symbol(const struct chain_result *r, const char *name, size_t nth);
/* The value of the first header field called name that r asks for, or NULL
 * (dfx_late_header: of those of the late step). */
const char *dfx_header(const struct chain_result *r, const char *name);
const char *dfx_late_header(const struct chain_result *r, const char *name);
/* "NAME(score) text; ..." of r, for failure messages. */
const char *dfx_symbols_text(const struct chain_result *r);

#endif

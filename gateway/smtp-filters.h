/*
 * smtp-filters — the filter chain (filters/) as the SMTP session's stage
 * hooks (smtp-hooks.h): each SMTP stage runs the chain's stage on a
 * struct filter_txn built from the session, and the chain's action becomes
 * the stage's verdict. One chain session per SMTP session, made at its
 * first stage and freed when the session ends. At the end of an accepted
 * message the end-of-message stage goes on past the chain: header fields
 * added, message edits applied, then the filters' late step (DKIM signing,
 * filters/filter.h) on the final message, all before the commit.
 *
 * Built by the worker on its event_base when the config lists filters.
 * Trusts the config (validated by server-config.c) and the chain's contract.
 */
#ifndef POSTERN_SMTP_FILTERS_H
#define POSTERN_SMTP_FILTERS_H

#include <stdbool.h>
#include <stddef.h>

#include "filters/filter.h"
#include "gateway/smtp-hooks.h"

struct dns;
struct event_base;
struct postern_config;
struct smtp_filters;
struct smtp_session;

/* Builds the chain of cfg->filters. Returns 0 and *f_r, or -1 with error. */
/* dns is the worker's resolver (not owned). */
int smtp_filters_new(struct event_base *base, struct dns *dns, const struct postern_config *cfg,
                     struct smtp_filters **f_r, char *error, size_t errsize);
void smtp_filters_free(struct smtp_filters **f);
const struct smtp_hooks *smtp_filters_hooks(const struct smtp_filters *f);
/* The instance of cfg->filtering.filters[i] (NULL past the end), for a
 * caller that builds its own chain of them (postern-milter). */
void *smtp_filters_instance(const struct smtp_filters *f, size_t i);

/* The stage verdict for a chain action (NONE is CONTINUE). */
enum smtp_verdict smtp_filters_verdict(enum filter_action action);

/* Writes "symbols=A(1),B(3.5) score=4.5" for the session's findings so far;
 * false (and nothing written) when the session has no chain session. */
bool smtp_filters_summary(const struct smtp_session *s, char *out, size_t size);

#endif

/*
 * pmilter — postern-milter: Postern's filter chain (the filters and policy
 * of a posternd config) served to an existing Postfix or Sendmail over the
 * milter protocol, with libmilter.
 *
 * libmilter calls its callbacks on its own threads and wants each answer
 * before it goes on; the chain runs on a libevent loop. So one loop thread
 * (pmilter-loop.c) owns the resolver, the state store, the filter
 * instances (built as posternd's worker builds them, gateway/smtp-filters.c)
 * and the chain, and each callback (pmilter.c) hands its stage to that loop
 * and waits for the verdict, bounded by a stage timeout.
 *
 * Trusts the config (validated by the loader) and libmilter; the MTA's
 * input (addresses, header fields, body) is bounded here.
 */
#ifndef POSTERN_PMILTER_H
#define POSTERN_PMILTER_H

struct pmilter_options {
    const char *config_path;
    const char *socket;  /* libmilter's: "inet:PORT@127.0.0.1", "unix:/path" */
    const char *filters; /* "id,id" of cfg's filters in chain order; NULL = all */
    const char *tmp_dir; /* where the message is collected; NULL = $TMPDIR or /tmp */
    unsigned timeout_ms; /* per stage; 0 = the longest filter timeout + 5 s */
};

/* Loads the config, starts the loop and serves until libmilter stops (a
 * signal). Returns the exit status: 0, or 1 with the reason logged. */
int pmilter_run(const struct pmilter_options *o);

#endif

/*
 * pmilter-text — what postern-milter does to the text the MTA gives over
 * the milter protocol (envelope addresses, header fields) and to the text
 * it gives back (header values, reply text). Pure functions, no state, so
 * a fuzz target (tests/fuzz/fuzz-pmilter-text.c) can drive them.
 *
 * Trusts nothing in its input; every result is bounded.
 */
#ifndef POSTERN_PMILTER_TEXT_H
#define POSTERN_PMILTER_TEXT_H

#include <stddef.h>

#define PMILTER_ADDR_MAX 1024 /* an envelope address, as the chain sees it */

/* "<a@b>" → "a@b", "<>" → "", anything else as given. A new string, or
 * NULL when longer than PMILTER_ADDR_MAX or out of memory. */
char *pmilter_envelope_addr(const char *arg);

/* A copy of s with every line break (CR LF, lone LF, lone CR) made CR LF:
 * header text as posternd's spool holds it. NULL when out of memory. */
char *pmilter_crlf(const char *s);

/* A copy of a folded header value with its CR LF made LF (libmilter's
 * form) and any other CR dropped. NULL when out of memory. */
char *pmilter_milter_value(const char *v);

/* Makes text fit for smfi_setreply: CR, LF and '%' become spaces. */
void pmilter_reply_text(char *text);

#endif

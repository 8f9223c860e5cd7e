/*
 * pmilter-edit — postern-milter's changes to an accepted message, made
 * through libmilter at end of message (pmilter.c's pm_eom): the chain's
 * message edits (filters/edit.h) become smfi_insheader, smfi_chgheader,
 * smfi_chgfrom, smfi_addrcpt(_par), smfi_delrcpt and smfi_replacebody;
 * header fields to add become smfi_insheader at the top (index 0).
 * Values are given in libmilter's form (folded with LF). Header indexes
 * are passed as they are (the MTA's count), capped at 100000.
 *
 * For the late step it also makes, ahead of those calls, the message the
 * MTA will relay: the collected copy with the edits applied
 * (gateway/message-edit.h's rewrite, into an unlinked file) and the fields
 * to add as text for filter_txn.added_headers.
 *
 * Called on a libmilter thread, inside xxfi_eom only (blocking file I/O is
 * fine there: the event loop is another thread). Trusts the edits
 * (checked when recorded, edit.c).
 */
#ifndef POSTERN_PMILTER_EDIT_H
#define POSTERN_PMILTER_EDIT_H

#include <stddef.h>
#include <stdint.h>

#include <libmilter/mfapi.h>

struct filter_edits;
struct filter_header;

/* Adds name: value at the end of the header (index < 0) or inserts it at
 * index. Returns 0, or -1 when the MTA refused or out of memory. */
int pmilter_add_field(SMFICTX *ctx, const char *name, const char *value, int index);

/* Applies e (NULL: nothing) in order, the body last. Returns 0, or -1
 * when the MTA refused one (logged with queue_id): the caller tempfails
 * the message rather than let it through half-edited. */
int pmilter_apply_edits(SMFICTX *ctx, const struct filter_edits *e, const char *queue_id);

/* Writes the content [0, len) of in_fd with e's header edits and body into
 * a new unlinked file in tmp_dir (the rewrite of posternd, without a
 * Postern Received: first). Returns 0 with *fd_r and *len_r, or -1 with
 * errno (E2BIG: a header section over gateway/message-edit.h's bound). */
int pmilter_edited_content(const struct filter_edits *e, int in_fd, uint64_t len,
                           const char *tmp_dir, int *fd_r, uint64_t *len_r);

/* The fields h[0..n) as header text, "Name: value" CR LF each (values are
 * filter.h's: folded with CR LF). A new string ("" for none), or NULL when
 * out of memory. */
char *pmilter_fields_text(const struct filter_header *h, size_t n);

#endif

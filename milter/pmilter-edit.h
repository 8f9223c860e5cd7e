/*
 * pmilter-edit — postern-milter's changes to an accepted message, made
 * through libmilter at end of message (pmilter.c's pm_eom): the chain's
 * message edits (filters/edit.h) become smfi_insheader, smfi_chgheader,
 * smfi_chgfrom, smfi_addrcpt(_par), smfi_delrcpt and smfi_replacebody;
 * header fields to add become smfi_addheader. Values are given in
 * libmilter's form (folded with LF). Header indexes are passed as they are
 * (the MTA's count), capped at 100000.
 *
 * Called on a libmilter thread, inside xxfi_eom only. Trusts the edits
 * (checked when recorded, edit.c).
 */
#ifndef POSTERN_PMILTER_EDIT_H
#define POSTERN_PMILTER_EDIT_H

#include <libmilter/mfapi.h>

struct filter_edits;

/* Adds name: value at the end of the header (index < 0) or inserts it at
 * index. Returns 0, or -1 when the MTA refused or out of memory. */
int pmilter_add_field(SMFICTX *ctx, const char *name, const char *value, int index);

/* Applies e (NULL: nothing) in order, the body last. Returns 0, or -1
 * when the MTA refused one (logged with queue_id): the caller tempfails
 * the message rather than let it through half-edited. */
int pmilter_apply_edits(SMFICTX *ctx, const struct filter_edits *e, const char *queue_id);

#endif

/*
 * queue-ctl — posternctl's queue commands: list, show, flush, delete, hold,
 * release. They act on the spool's files (queue/ is active, hold/ is held)
 * and tell a running queue manager through its FIFO, so they work whether
 * posternd runs or not (flush needs it running).
 *
 * Called by posternctl as root or the spool's user. Trusts the config;
 * reads queue files through queue-file.h (validated).
 */
#ifndef POSTERN_QUEUE_CTL_H
#define POSTERN_QUEUE_CTL_H

#include <stdio.h>

/* Runs one command ("list", "show", ...) with its arguments; prints to out,
 * errors to err. Returns the exit status: 0 done, 1 failed (no such
 * message, queue manager not running), 2 usage. */
int queue_ctl(const char *spool_dir, int argc, char **argv, FILE *out, FILE *err);

#endif

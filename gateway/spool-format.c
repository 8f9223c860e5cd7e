/* spool-format.c: not written yet */

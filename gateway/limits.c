/* limits.c: not written yet */

/* workpool.c: not written yet */

/* master.c: not written yet */

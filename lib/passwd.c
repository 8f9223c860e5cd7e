/* passwd.c: not written yet */

/* server-config.c: not written yet */

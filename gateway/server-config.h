/* server-config.h: not written yet */

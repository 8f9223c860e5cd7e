/* smtp-session-private.h: not written yet */

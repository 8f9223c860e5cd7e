/* smtp-session.c: not written yet */

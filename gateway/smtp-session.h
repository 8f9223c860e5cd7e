/* smtp-session.h: not written yet */

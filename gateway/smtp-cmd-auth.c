/* smtp-cmd-auth.c: not written yet */

/* smtp-cmd-helo.c: not written yet */

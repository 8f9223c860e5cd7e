/* smtp-cmd-misc.c: not written yet */

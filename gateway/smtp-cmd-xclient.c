/* smtp-cmd-xclient.c: not written yet */

/* smtp-cmd-data.c: not written yet */

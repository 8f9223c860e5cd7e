/* smtp-cmd-bdat.c: not written yet */

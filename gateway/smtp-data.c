/* smtp-data.c: not written yet */

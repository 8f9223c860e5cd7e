/* smtp-params.c: not written yet */

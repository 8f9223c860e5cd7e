/* smtp-hooks.c: not written yet */

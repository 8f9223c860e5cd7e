/* smtp-hooks.h: not written yet */

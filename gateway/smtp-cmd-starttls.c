/* smtp-cmd-starttls.c: not written yet */

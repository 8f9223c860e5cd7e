/* smtp-cmd-mail.c: not written yet */

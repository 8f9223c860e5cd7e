/* smtp-cmd-rcpt.c: not written yet */

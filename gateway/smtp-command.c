/* smtp-command.c: not written yet */

/* smtp-command.h: not written yet */

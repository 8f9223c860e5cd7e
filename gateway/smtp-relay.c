/* smtp-relay.c: not written yet */

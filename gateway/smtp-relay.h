/* smtp-relay.h: not written yet */

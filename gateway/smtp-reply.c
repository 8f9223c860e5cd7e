/* smtp-reply.c: not written yet */

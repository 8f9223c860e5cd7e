/* smtp-sasl.c: not written yet */

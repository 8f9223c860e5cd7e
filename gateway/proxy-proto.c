/* proxy-proto.c: not written yet */

/* listener.h: not written yet */

/* limits.h: not written yet */

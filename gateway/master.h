/* master.h: not written yet */

/* worker.h: not written yet */

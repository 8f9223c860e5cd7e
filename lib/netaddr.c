/* netaddr.c: not written yet */

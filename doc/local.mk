# doc/: the manual page, installed into $(man8dir) and shipped in the tarball.
dist_man8_MANS = doc/posternd.8

# tools/: posternctl (thin main) and its command modules in libtools.a.
noinst_LIBRARIES += tools/libtools.a
tools_libtools_a_SOURCES = tools/queue-ctl.c tools/queue-ctl.h

sbin_PROGRAMS += posternctl
posternctl_SOURCES = tools/posternctl.c
posternctl_LDADD = tools/libtools.a $(GATEWAY_LIBS)

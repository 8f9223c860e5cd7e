# milter/: postern-milter, the filter chain as a milter for Postfix or
# Sendmail (libmilter). Its logic lives in libpmilter.a; main.c is thin.
noinst_LIBRARIES += milter/libpmilter.a
milter_libpmilter_a_SOURCES = \
	milter/pmilter.c milter/pmilter.h \
	milter/pmilter-loop.c milter/pmilter-private.h \
	milter/pmilter-edit.c milter/pmilter-edit.h \
	milter/pmilter-privs.c milter/pmilter-privs.h \
	milter/pmilter-text.c milter/pmilter-text.h

sbin_PROGRAMS += postern-milter
postern_milter_SOURCES = milter/main.c
postern_milter_LDADD = milter/libpmilter.a $(GATEWAY_LIBS) $(MILTER_LIBS)
postern_milter_LDFLAGS = $(AM_LDFLAGS) -pthread
dist_man8_MANS += doc/postern-milter.8

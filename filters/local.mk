# filters/: the filter API, the chain that runs filters per SMTP stage, and
# one file per filter (registry.c lists them).
# Layering: filters/ includes only lib/ and filters/ headers.
noinst_LIBRARIES += filters/libfilters.a
filters_libfilters_a_SOURCES = \
	filters/filter.c filters/filter.h filters/filter-private.h \
	filters/chain.c filters/chain.h \
	filters/module.h filters/registry.c
filters_libfilters_a_SOURCES += filters/edit.c filters/edit.h
filters_libfilters_a_SOURCES += filters/dnsbl.c filters/dnsbl.h
filters_libfilters_a_SOURCES += filters/dnsbl-config.c
filters_libfilters_a_SOURCES += filters/greylist.c filters/greylist.h \
	filters/greylist-private.h filters/greylist-key.c filters/greylist-module.c
filters_libfilters_a_SOURCES += filters/ratelimit.c filters/ratelimit.h
filters_libfilters_a_SOURCES += filters/dha.c filters/dha.h
filters_libfilters_a_SOURCES += filters/dha-directory.c filters/dha-directory.h
filters_libfilters_a_SOURCES += filters/milter.c filters/milter.h filters/milter-private.h \
	filters/milter-proto.c filters/milter-proto.h filters/milter-config.c \
	filters/milter-conn.c filters/milter-macros.c filters/milter-msg.c filters/milter-edit.c \
	filters/milter-steps.c
filters_libfilters_a_SOURCES += filters/clamd.c filters/clamd.h filters/clamd-config.c \
	filters/clamd-reply.c
filters_libfilters_a_SOURCES += filters/spamd.c filters/spamd.h filters/spamd-config.c \
	filters/spamd-reply.c filters/spamd-reply.h
filters_libfilters_a_SOURCES += filters/spf.c filters/spf.h filters/spf-config.c \
	filters/spf-eval.c filters/spf-eval.h filters/spf-header.c \
	filters/dns-bridge.c filters/dns-bridge.h
# libspf2 (configure.ac: SPF2_LIBS) for everything that links the filters
POSTERN_LIBS += $(SPF2_LIBS)
filters_libfilters_a_SOURCES += filters/dkim.c filters/dkim.h filters/dkim-config.c \
	filters/dkim-verify.c filters/dkim-verify.h filters/dkim-sign.c filters/dkim-sign.h \
	filters/dkim-message.c filters/dkim-message.h filters/dkim-authres.c filters/dkim-authres.h
filters_libfilters_a_SOURCES += filters/dmarc.c filters/dmarc.h filters/dmarc-config.c \
	filters/dmarc-eval.c filters/dmarc-private.h
# libopendkim, libopendmarc, GMime (configure.ac) for everything that links the filters
POSTERN_LIBS += $(OPENDKIM_LIBS) $(OPENDMARC_LIBS) $(GMIME_LIBS)
AM_CFLAGS += $(GMIME_CFLAGS)
filters_libfilters_a_SOURCES += filters/attachments.c filters/attachments.h \
	filters/attachments-private.h filters/attachments-config.c filters/attachments-scan.c \
	filters/attachments-rules.c filters/attachments-magic.c filters/attachments-archive.c \
	filters/attachments-mime.c filters/attachments-strip.c
# libarchive and libmagic (configure.ac; GMime is above) for everything that links the filters
POSTERN_LIBS += $(LIBARCHIVE_LIBS) $(MAGIC_LIBS)
AM_CFLAGS += $(LIBARCHIVE_CFLAGS)

# gateway/: the SMTP edge. posternd's logic lives in libgateway.a; main.c is thin.
noinst_LIBRARIES += gateway/libgateway.a
gateway_libgateway_a_SOURCES = \
	gateway/server-config.c gateway/server-config.h \
	gateway/filter-config.c gateway/filter-config.h \
	gateway/master.c gateway/master.h \
	gateway/worker.c gateway/worker.h \
	gateway/listener.c gateway/listener.h \
	gateway/limits.c gateway/limits.h \
	gateway/proxy-proto.c gateway/proxy-proto.h \
	gateway/smtp-session.c gateway/smtp-session.h gateway/smtp-session-private.h \
	gateway/smtp-command.c gateway/smtp-command.h \
	gateway/smtp-data.c gateway/smtp-data.h \
	gateway/smtp-cmd-helo.c gateway/smtp-cmd-mail.c gateway/smtp-cmd-rcpt.c \
	gateway/smtp-cmd-data.c gateway/smtp-cmd-bdat.c gateway/smtp-cmd-auth.c \
	gateway/smtp-cmd-starttls.c gateway/smtp-cmd-misc.c gateway/smtp-cmd-xclient.c \
	gateway/smtp-relay.c gateway/smtp-relay.h \
	gateway/smtp-hooks.c gateway/smtp-hooks.h \
	gateway/smtp-filters.c gateway/smtp-filters.h \
	gateway/message-edit.c gateway/message-edit.h \
	gateway/rcpt-verify.c gateway/rcpt-verify.h \
	gateway/client-name.c gateway/client-name.h

GATEWAY_LIBS = gateway/libgateway.a policy/libpolicy.a filters/libfilters.a relay/librelay.a $(POSTERN_LIBS)

sbin_PROGRAMS += posternd
posternd_SOURCES = gateway/main.c
posternd_LDADD = $(GATEWAY_LIBS)

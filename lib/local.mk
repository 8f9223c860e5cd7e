# lib/: what every part uses and that knows nothing of mail policy.
noinst_LIBRARIES += lib/libpostern.a
lib_libpostern_a_SOURCES = \
	lib/log.c lib/log.h \
	lib/cfg.c lib/cfg.h \
	lib/address.c lib/address.h \
	lib/netaddr.c lib/netaddr.h \
	lib/passwd.c lib/passwd.h \
	lib/privs.c lib/privs.h \
	lib/workpool.c lib/workpool.h \
	lib/tls.c lib/tls.h \
	lib/dns.c lib/dns.h lib/dns-cache.c lib/dns-cache.h lib/dns-parse.c lib/dns-parse.h \
	lib/dns-servers.c lib/dns-servers.h \
	lib/smtp-reply.c lib/smtp-reply.h \
	lib/smtp-params.c lib/smtp-params.h \
	lib/smtp-sasl.c lib/smtp-sasl.h \
	lib/spool.c lib/spool.h lib/spool-pool.c lib/spool-pool.h \
	lib/sync-crew.c lib/sync-crew.h \
	lib/spool-format.c lib/spool-format.h
lib_libpostern_a_SOURCES += lib/kv.c lib/kv.h lib/kv-backend.h lib/kv-lmdb.c lib/kv-redis.c

POSTERN_LIBS = lib/libpostern.a $(LIBEVENT_LIBS) $(OPENSSL_LIBS) $(LIBCONFIG_LIBS) \
	$(CARES_LIBS) $(CRYPT_LIBS) $(PTHREAD_LIBS)
POSTERN_LIBS += $(HIREDIS_LIBS) $(LMDB_LIBS) -lm

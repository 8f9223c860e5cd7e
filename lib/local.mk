# lib/: what every part uses and that knows nothing of mail policy.
noinst_LIBRARIES += lib/libpostern.a
lib_libpostern_a_SOURCES = \
	lib/log.c lib/log.h \
	lib/cfg.c lib/cfg.h \
	lib/address.c lib/address.h \
	lib/netaddr.c lib/netaddr.h \
	lib/passwd.c lib/passwd.h \
	lib/workpool.c lib/workpool.h \
	lib/tls.c lib/tls.h \
	lib/dns.c lib/dns.h

POSTERN_LIBS = lib/libpostern.a $(LIBEVENT_LIBS) $(OPENSSL_LIBS) $(LIBCONFIG_LIBS) \
	$(CARES_LIBS) $(CRYPT_LIBS) $(PTHREAD_LIBS)

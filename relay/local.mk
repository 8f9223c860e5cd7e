# relay/: the queue manager and its outbound SMTP/LMTP client. Its logic is
# in librelay.a; the queue manager runs as a posternd child process.
noinst_LIBRARIES += relay/librelay.a
relay_librelay_a_SOURCES = \
	relay/smtp-client.c relay/smtp-client.h relay/smtp-client-private.h \
	relay/smtp-client-hello.c relay/smtp-client-send.c relay/smtp-client-data.c \
	relay/smtp-client-reply.c relay/smtp-client-reply.h \
	relay/dsn.c relay/dsn.h \
	relay/transport.c relay/transport.h \
	relay/relay-config.c relay/relay-config.h \
	relay/queue-file.c relay/queue-file.h \
	relay/qmgr.c relay/qmgr.h relay/qmgr-private.h \
	relay/qmgr-deliver.c relay/qmgr-finish.c

RELAY_LIBS = relay/librelay.a $(POSTERN_LIBS)

# Tests of the relay library (cmocka). test-smtp-client drives the client
# against Postfix's smtp-sink and against posternd itself.
RELAY_UNIT_TESTS = tests/unit/test-smtp-client-reply tests/unit/test-smtp-client \
	tests/unit/test-smtp-client-script tests/unit/test-dsn
check_PROGRAMS += $(RELAY_UNIT_TESTS)
TESTS += $(RELAY_UNIT_TESTS)
tests_unit_test_smtp_client_reply_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_smtp_client_reply_LDADD = $(RELAY_LIBS) $(CMOCKA_LIBS)
tests_unit_test_smtp_client_SOURCES = tests/unit/test-smtp-client.c \
	tests/unit/smtp-client-test.c tests/unit/smtp-client-test.h
tests_unit_test_smtp_client_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_smtp_client_LDADD = $(RELAY_LIBS) $(CMOCKA_LIBS)
tests_unit_test_smtp_client_script_SOURCES = tests/unit/test-smtp-client-script.c \
	tests/unit/smtp-client-test.c tests/unit/smtp-client-test.h
tests_unit_test_smtp_client_script_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_smtp_client_script_LDADD = $(RELAY_LIBS) $(CMOCKA_LIBS)
tests_unit_test_dsn_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_dsn_LDADD = $(RELAY_LIBS) $(CMOCKA_LIBS)

tests_fuzz_fuzz_smtp_reply_SOURCES = tests/fuzz/fuzz-smtp-reply.c $(FUZZ_MAIN)
tests_fuzz_fuzz_smtp_reply_CFLAGS = $(AM_CFLAGS) $(FUZZ_CFLAGS)
tests_fuzz_fuzz_smtp_reply_LDFLAGS = $(AM_LDFLAGS) $(FUZZ_CFLAGS)
tests_fuzz_fuzz_smtp_reply_LDADD = $(RELAY_LIBS)

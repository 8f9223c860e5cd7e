# tests/fuzz/: libFuzzer targets. With --enable-fuzzers (CC=clang) they are real
# fuzzers; otherwise they link a replay main and run over their seed corpus in make check.
# One replay script per target; they are the make check tests without
# --enable-fuzzers and are distributed either way.
FUZZ_REPLAY_TESTS = tests/fuzz/replay-address.sh tests/fuzz/replay-smtp-session.sh \
	tests/fuzz/replay-proxy.sh tests/fuzz/replay-smtp-reply.sh tests/fuzz/replay-dns-reply.sh
FUZZ_TARGETS = tests/fuzz/fuzz-address tests/fuzz/fuzz-smtp-session tests/fuzz/fuzz-proxy \
	tests/fuzz/fuzz-smtp-reply tests/fuzz/fuzz-dns-reply
FUZZ_REPLAY_TESTS += tests/fuzz/replay-clamd-reply.sh
FUZZ_TARGETS += tests/fuzz/fuzz-clamd-reply
FUZZ_REPLAY_TESTS += tests/fuzz/replay-milter-reply.sh
FUZZ_TARGETS += tests/fuzz/fuzz-milter-reply
FUZZ_REPLAY_TESTS += tests/fuzz/replay-message-edit.sh
FUZZ_TARGETS += tests/fuzz/fuzz-message-edit
FUZZ_REPLAY_TESTS += tests/fuzz/replay-spf-record.sh
FUZZ_TARGETS += tests/fuzz/fuzz-spf-record
FUZZ_REPLAY_TESTS += tests/fuzz/replay-pmilter-text.sh
FUZZ_TARGETS += tests/fuzz/fuzz-pmilter-text
if ENABLE_FUZZERS
FUZZ_CFLAGS = -fsanitize=fuzzer
FUZZ_MAIN =
noinst_PROGRAMS += $(FUZZ_TARGETS)
else
FUZZ_CFLAGS =
FUZZ_MAIN = tests/fuzz/replay-main.c
check_PROGRAMS += $(FUZZ_TARGETS)
TESTS += $(FUZZ_REPLAY_TESTS)
endif
# The corpora go in whole, one directory per target (cp -R).
EXTRA_DIST += tests/fuzz/corpus tests/fuzz/replay.sh $(FUZZ_REPLAY_TESTS)

tests_fuzz_fuzz_address_SOURCES = tests/fuzz/fuzz-address.c $(FUZZ_MAIN)
tests_fuzz_fuzz_address_CFLAGS = $(AM_CFLAGS) $(FUZZ_CFLAGS)
tests_fuzz_fuzz_address_LDFLAGS = $(AM_LDFLAGS) $(FUZZ_CFLAGS)
tests_fuzz_fuzz_address_LDADD = $(GATEWAY_LIBS)
tests_fuzz_fuzz_smtp_session_SOURCES = tests/fuzz/fuzz-smtp-session.c $(FUZZ_MAIN)
tests_fuzz_fuzz_smtp_session_CFLAGS = $(AM_CFLAGS) $(FUZZ_CFLAGS)
tests_fuzz_fuzz_smtp_session_LDFLAGS = $(AM_LDFLAGS) $(FUZZ_CFLAGS)
tests_fuzz_fuzz_smtp_session_LDADD = $(GATEWAY_LIBS)
tests_fuzz_fuzz_proxy_SOURCES = tests/fuzz/fuzz-proxy.c $(FUZZ_MAIN)
tests_fuzz_fuzz_proxy_CFLAGS = $(AM_CFLAGS) $(FUZZ_CFLAGS)
tests_fuzz_fuzz_proxy_LDFLAGS = $(AM_LDFLAGS) $(FUZZ_CFLAGS)
tests_fuzz_fuzz_proxy_LDADD = $(GATEWAY_LIBS)
tests_fuzz_fuzz_dns_reply_SOURCES = tests/fuzz/fuzz-dns-reply.c $(FUZZ_MAIN)
tests_fuzz_fuzz_dns_reply_CFLAGS = $(AM_CFLAGS) $(FUZZ_CFLAGS)
tests_fuzz_fuzz_dns_reply_LDFLAGS = $(AM_LDFLAGS) $(FUZZ_CFLAGS)
tests_fuzz_fuzz_dns_reply_LDADD = $(POSTERN_LIBS)
tests_fuzz_fuzz_message_edit_SOURCES = tests/fuzz/fuzz-message-edit.c $(FUZZ_MAIN)
tests_fuzz_fuzz_message_edit_CFLAGS = $(AM_CFLAGS) $(FUZZ_CFLAGS)
tests_fuzz_fuzz_message_edit_LDFLAGS = $(AM_LDFLAGS) $(FUZZ_CFLAGS)
tests_fuzz_fuzz_message_edit_LDADD = $(GATEWAY_LIBS)
tests_fuzz_fuzz_clamd_reply_SOURCES = tests/fuzz/fuzz-clamd-reply.c $(FUZZ_MAIN)
tests_fuzz_fuzz_clamd_reply_CFLAGS = $(AM_CFLAGS) $(FUZZ_CFLAGS)
tests_fuzz_fuzz_clamd_reply_LDFLAGS = $(AM_LDFLAGS) $(FUZZ_CFLAGS)
tests_fuzz_fuzz_clamd_reply_LDADD = $(GATEWAY_LIBS)
FUZZ_REPLAY_TESTS += tests/fuzz/replay-spamd-reply.sh
FUZZ_TARGETS += tests/fuzz/fuzz-spamd-reply
tests_fuzz_fuzz_spamd_reply_SOURCES = tests/fuzz/fuzz-spamd-reply.c $(FUZZ_MAIN)
tests_fuzz_fuzz_spamd_reply_CFLAGS = $(AM_CFLAGS) $(FUZZ_CFLAGS)
tests_fuzz_fuzz_spamd_reply_LDFLAGS = $(AM_LDFLAGS) $(FUZZ_CFLAGS)
tests_fuzz_fuzz_spamd_reply_LDADD = $(GATEWAY_LIBS)
tests_fuzz_fuzz_milter_reply_SOURCES = tests/fuzz/fuzz-milter-reply.c $(FUZZ_MAIN)
tests_fuzz_fuzz_milter_reply_CFLAGS = $(AM_CFLAGS) $(FUZZ_CFLAGS)
tests_fuzz_fuzz_milter_reply_LDFLAGS = $(AM_LDFLAGS) $(FUZZ_CFLAGS)
tests_fuzz_fuzz_milter_reply_LDADD = $(GATEWAY_LIBS)
tests_fuzz_fuzz_spf_record_SOURCES = tests/fuzz/fuzz-spf-record.c $(FUZZ_MAIN)
tests_fuzz_fuzz_spf_record_CFLAGS = $(AM_CFLAGS) $(FUZZ_CFLAGS)
tests_fuzz_fuzz_spf_record_LDFLAGS = $(AM_LDFLAGS) $(FUZZ_CFLAGS)
tests_fuzz_fuzz_spf_record_LDADD = $(GATEWAY_LIBS)
tests_fuzz_fuzz_pmilter_text_SOURCES = tests/fuzz/fuzz-pmilter-text.c $(FUZZ_MAIN)
tests_fuzz_fuzz_pmilter_text_CFLAGS = $(AM_CFLAGS) $(FUZZ_CFLAGS)
tests_fuzz_fuzz_pmilter_text_LDFLAGS = $(AM_LDFLAGS) $(FUZZ_CFLAGS)
tests_fuzz_fuzz_pmilter_text_LDADD = milter/libpmilter.a
FUZZ_REPLAY_TESTS += tests/fuzz/replay-dkim-message.sh
FUZZ_TARGETS += tests/fuzz/fuzz-dkim-message
tests_fuzz_fuzz_dkim_message_SOURCES = tests/fuzz/fuzz-dkim-message.c $(FUZZ_MAIN)
tests_fuzz_fuzz_dkim_message_CFLAGS = $(AM_CFLAGS) $(FUZZ_CFLAGS)
tests_fuzz_fuzz_dkim_message_LDFLAGS = $(AM_LDFLAGS) $(FUZZ_CFLAGS)
tests_fuzz_fuzz_dkim_message_LDADD = $(GATEWAY_LIBS)
FUZZ_REPLAY_TESTS += tests/fuzz/replay-attachments.sh
FUZZ_TARGETS += tests/fuzz/fuzz-attachments
tests_fuzz_fuzz_attachments_SOURCES = tests/fuzz/fuzz-attachments.c $(FUZZ_MAIN)
tests_fuzz_fuzz_attachments_CFLAGS = $(AM_CFLAGS) $(FUZZ_CFLAGS)
tests_fuzz_fuzz_attachments_LDFLAGS = $(AM_LDFLAGS) $(FUZZ_CFLAGS)
tests_fuzz_fuzz_attachments_LDADD = $(GATEWAY_LIBS)

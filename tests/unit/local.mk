# tests/unit/: table-driven cmocka tests that link the convenience libraries.
UNIT_TESTS = \
	tests/unit/test-config \
	tests/unit/test-address \
	tests/unit/test-smtp-params \
	tests/unit/test-smtp-command \
	tests/unit/test-smtp-data \
	tests/unit/test-proxy-proto \
	tests/unit/test-passwd \
	tests/unit/test-sasl \
	tests/unit/test-spool \
	tests/unit/test-netaddr \
	tests/unit/test-dns
UNIT_TESTS += tests/unit/test-kv
UNIT_TESTS += tests/unit/test-chain
check_PROGRAMS += $(UNIT_TESTS)
TESTS += $(UNIT_TESTS)
UNIT_CFLAGS = $(AM_CFLAGS) $(CMOCKA_CFLAGS)
# The fixtures shared by several tests, one concern each (see their headers).
UNIT_LOOP = tests/unit/loop-test.c tests/unit/loop-test.h
UNIT_SPOOL = tests/unit/spool-test.c tests/unit/spool-test.h
UNIT_KV = tests/unit/kv-test.c tests/unit/kv-test.h
UNIT_CONFIG = tests/unit/config-test.c tests/unit/config-test.h
UNIT_FILTER = tests/unit/filter-test.c tests/unit/filter-test.h
UNIT_LIBS = $(GATEWAY_LIBS) $(CMOCKA_LIBS)

tests_unit_test_config_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_config_LDADD = $(UNIT_LIBS)
tests_unit_test_address_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_address_LDADD = $(UNIT_LIBS)
tests_unit_test_smtp_params_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_smtp_params_LDADD = $(UNIT_LIBS)
tests_unit_test_smtp_command_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_smtp_command_LDADD = $(UNIT_LIBS)
tests_unit_test_smtp_data_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_smtp_data_LDADD = $(UNIT_LIBS)
tests_unit_test_proxy_proto_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_proxy_proto_LDADD = $(UNIT_LIBS)
tests_unit_test_passwd_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_passwd_LDADD = $(UNIT_LIBS)
tests_unit_test_sasl_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_sasl_LDADD = $(UNIT_LIBS)
tests_unit_test_spool_SOURCES = tests/unit/test-spool.c $(UNIT_SPOOL)
tests_unit_test_spool_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_spool_LDADD = $(UNIT_LIBS)
UNIT_TESTS += tests/unit/test-spool-format
tests_unit_test_spool_format_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_spool_format_LDADD = $(UNIT_LIBS)
tests_unit_test_netaddr_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_netaddr_LDADD = $(UNIT_LIBS)
UNIT_NSD = tests/unit/nsd-test.c tests/unit/nsd-test.h
UNIT_DNS = tests/unit/dns-test.c tests/unit/dns-test.h $(UNIT_NSD)
tests_unit_test_dns_SOURCES = tests/unit/test-dns.c $(UNIT_DNS)
tests_unit_test_dns_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_dns_LDADD = $(UNIT_LIBS)
UNIT_TESTS += tests/unit/test-dns-cache
tests_unit_test_dns_cache_SOURCES = tests/unit/test-dns-cache.c $(UNIT_DNS)
tests_unit_test_dns_cache_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_dns_cache_LDADD = $(UNIT_LIBS)
tests_unit_test_kv_SOURCES = tests/unit/test-kv.c $(UNIT_KV) $(UNIT_LOOP)
tests_unit_test_kv_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_kv_LDADD = $(UNIT_LIBS)
tests_unit_test_chain_SOURCES = tests/unit/test-chain.c $(UNIT_LOOP)
tests_unit_test_chain_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_chain_LDADD = $(UNIT_LIBS)
UNIT_TESTS += tests/unit/test-filter-edit tests/unit/test-message-edit
tests_unit_test_filter_edit_SOURCES = tests/unit/test-filter-edit.c $(UNIT_LOOP)
tests_unit_test_filter_edit_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_filter_edit_LDADD = $(UNIT_LIBS)
tests_unit_test_message_edit_SOURCES = tests/unit/test-message-edit.c $(UNIT_LOOP) $(UNIT_SPOOL)
tests_unit_test_message_edit_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_message_edit_LDADD = $(UNIT_LIBS)
UNIT_TESTS += tests/unit/test-policy
tests_unit_test_policy_SOURCES = tests/unit/test-policy.c $(UNIT_CONFIG)
tests_unit_test_policy_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_policy_LDADD = $(UNIT_LIBS)
UNIT_TESTS += tests/unit/test-attachments tests/unit/test-attachments-filter
UNIT_TESTS += tests/unit/test-attachments-bombs
tests_unit_test_attachments_bombs_SOURCES = tests/unit/test-attachments-bombs.c $(UNIT_ATTACH) \
	$(UNIT_CONFIG) $(UNIT_LOOP)
tests_unit_test_attachments_bombs_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_attachments_bombs_LDADD = $(UNIT_LIBS)
UNIT_ATTACH = tests/unit/attachments-test.c tests/unit/attachments-test.h
tests_unit_test_attachments_SOURCES = tests/unit/test-attachments.c $(UNIT_ATTACH) $(UNIT_CONFIG) \
	$(UNIT_LOOP)
tests_unit_test_attachments_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_attachments_LDADD = $(UNIT_LIBS)
tests_unit_test_attachments_filter_SOURCES = tests/unit/test-attachments-filter.c \
	$(UNIT_ATTACH) $(UNIT_CONFIG) $(UNIT_FILTER) $(UNIT_LOOP)
tests_unit_test_attachments_filter_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_attachments_filter_LDADD = $(UNIT_LIBS)
UNIT_TESTS += tests/unit/test-dnsbl
tests_unit_test_dnsbl_SOURCES = tests/unit/test-dnsbl.c $(UNIT_CONFIG) $(UNIT_FILTER) $(UNIT_LOOP)
tests_unit_test_dnsbl_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_dnsbl_LDADD = $(UNIT_LIBS)
UNIT_TESTS += tests/unit/test-greylist
tests_unit_test_greylist_SOURCES = tests/unit/test-greylist.c $(UNIT_KV) $(UNIT_CONFIG) \
	$(UNIT_FILTER) $(UNIT_LOOP)
tests_unit_test_greylist_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_greylist_LDADD = $(UNIT_LIBS)
UNIT_TESTS += tests/unit/test-dha
tests_unit_test_dha_SOURCES = tests/unit/test-dha.c $(UNIT_KV) $(UNIT_CONFIG) $(UNIT_FILTER) \
	$(UNIT_LOOP)
tests_unit_test_dha_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_dha_LDADD = $(UNIT_LIBS)
UNIT_TESTS += tests/unit/test-ratelimit
tests_unit_test_ratelimit_SOURCES = tests/unit/test-ratelimit.c $(UNIT_KV) $(UNIT_CONFIG) \
	$(UNIT_FILTER) $(UNIT_LOOP)
tests_unit_test_ratelimit_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_ratelimit_LDADD = $(UNIT_LIBS)
UNIT_TESTS += tests/unit/test-clamd
tests_unit_test_clamd_SOURCES = tests/unit/test-clamd.c tests/unit/clamd-test.c \
	tests/unit/clamd-test.h $(UNIT_CONFIG) $(UNIT_FILTER) $(UNIT_LOOP)
tests_unit_test_clamd_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_clamd_LDADD = $(UNIT_LIBS)
UNIT_TESTS += tests/unit/test-spamd-reply tests/unit/test-spamd
tests_unit_test_spamd_reply_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_spamd_reply_LDADD = $(UNIT_LIBS)
tests_unit_test_spamd_SOURCES = tests/unit/test-spamd.c $(UNIT_CONFIG) $(UNIT_FILTER) $(UNIT_LOOP)
tests_unit_test_spamd_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_spamd_LDADD = $(UNIT_LIBS)
UNIT_TESTS += tests/unit/test-spf
tests_unit_test_spf_SOURCES = tests/unit/test-spf.c $(UNIT_NSD) \
	$(UNIT_CONFIG) $(UNIT_FILTER) $(UNIT_LOOP)
tests_unit_test_spf_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_spf_LDADD = $(UNIT_LIBS)
UNIT_TESTS += tests/unit/test-milter-proto tests/unit/test-milter
tests_unit_test_milter_proto_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_milter_proto_LDADD = $(UNIT_LIBS)
tests_unit_test_milter_SOURCES = tests/unit/test-milter.c $(UNIT_CONFIG) $(UNIT_FILTER) $(UNIT_LOOP)
tests_unit_test_milter_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_milter_LDADD = $(UNIT_LIBS)
UNIT_TESTS += tests/unit/test-dkim tests/unit/test-dmarc
UNIT_DKIM = tests/unit/dkim-test.c tests/unit/dkim-test.h $(UNIT_NSD) $(UNIT_CONFIG) $(UNIT_FILTER) $(UNIT_LOOP)
tests_unit_test_dkim_SOURCES = tests/unit/test-dkim.c $(UNIT_DKIM)
tests_unit_test_dkim_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_dkim_LDADD = $(UNIT_LIBS)
tests_unit_test_dmarc_SOURCES = tests/unit/test-dmarc.c $(UNIT_DKIM)
tests_unit_test_dmarc_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_dmarc_LDADD = $(UNIT_LIBS)

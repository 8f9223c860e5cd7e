# tests/integration/: the real posternd driven by real clients (smtplib, swaks,
# openssl s_client, raw sockets). Each script exits 0 pass, 1 fail, 77 skip.
INTEGRATION_TESTS = \
	tests/integration/test_smtp_basic.py \
	tests/integration/test_tls_auth.py \
	tests/integration/test_daemon.py \
	tests/integration/test_edge_cases.py \
	tests/integration/test_relay.py \
	tests/integration/test_relay_more.py \
	tests/integration/test_crash.py \
	tests/integration/test_readme_run.py \
	tests/integration/test_dnsbl.py
INTEGRATION_TESTS += tests/integration/test_dha.py
INTEGRATION_TESTS += tests/integration/test_ratelimit.py
INTEGRATION_TESTS += tests/integration/test_hold.py
INTEGRATION_TESTS += tests/integration/test_attachments.py
INTEGRATION_TESTS += tests/integration/test_greylist.py
INTEGRATION_TESTS += tests/integration/test_client_name.py
INTEGRATION_TESTS += tests/integration/test_spf.py
INTEGRATION_TESTS += tests/integration/test_milter.py
INTEGRATION_TESTS += tests/integration/test_milter_real.py
INTEGRATION_TESTS += tests/integration/test_opendmarc.py
INTEGRATION_TESTS += tests/integration/test_message_edit.py
# The milter the milter tests drive (libmilter; see its header).
check_PROGRAMS += tests/milter/test-milter
tests_milter_test_milter_SOURCES = tests/milter/test-milter.c
tests_milter_test_milter_LDADD = $(MILTER_LIBS) $(PTHREAD_LIBS)
INTEGRATION_TESTS += tests/integration/test_spamd.py
INTEGRATION_TESTS += tests/integration/test_clamd.py
INTEGRATION_TESTS += tests/integration/test_postern_milter.py
INTEGRATION_TESTS += tests/integration/test_broken_mime.py
TESTS += $(INTEGRATION_TESTS)
EXTRA_DIST += $(INTEGRATION_TESTS) tests/integration/harness.py \
	tests/integration/pmilter_fixture.py tests/integration/make-test-ca.sh
TEST_EXTENSIONS = .py .sh
PY_LOG_COMPILER = python3
SH_LOG_COMPILER = $(SHELL)
INTEGRATION_TESTS += tests/integration/test_dkim.py
INTEGRATION_TESTS += tests/integration/test_dkim_milter.py

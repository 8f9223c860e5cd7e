/*
 * config-test — posternd's config as the tests of a section's keys load it:
 * the section's text after a minimal listener, written to a temp file and
 * read by postern_config_load (so the loader's own checks run and its errors
 * name "file:line:"), and the check of one row of a table of such texts:
 * it loads, or it fails with a given substring (":3: key: ...") in its first
 * error; and a whole such table, each row with the check of what it
 * loaded. Used by test-greylist, test-ratelimit, test-dha, test-dnsbl,
 * test-attachments-filter, test-milter, test-spamd, test-clamd, test-spf,
 * test-dkim, test-dmarc and test-policy.
 */
#ifndef POSTERN_CONFIG_TEST_H
#define POSTERN_CONFIG_TEST_H

#include <stddef.h>

#include "gateway/server-config.h"

/* Line 1 of every config loaded here: the text given starts on line 2. */
#define CONFIG_TEST_LISTENER "listeners = ( { name = \"mx\"; address = [\"127.0.0.1:2525\"]; } );\n"

/* Writes text to a new file "/tmp/<prefix>-XXXXXX" and returns its path
 * (malloc'd; the caller unlinks and frees it). */
char *config_test_file(const char *prefix, const char *text);

/* Loads CONFIG_TEST_LISTENER and text from a temp file (removed again);
 * NULL with the errors in errs when the config is refused. */
struct postern_config *config_test_load(const char *text, struct cfg_errors *errs);

/* Fails the test unless row's load came out as wanted: error NULL, cfg
 * loaded; otherwise cfg refused and the first error contains error. */
void config_test_expect(size_t row, const struct postern_config *cfg, const struct cfg_errors *errs,
                        const char *error);

/* One row of a table of texts: error NULL = it loads, and then check (when
 * not NULL) looks at what it loaded; else the substring of its first error. */
struct config_test_row {
    const char *filters;
    const char *error;
    void (*check)(const struct postern_config *cfg);
};

/* Loads each of the n rows, fails the test at the first that comes out
 * otherwise (config_test_expect with the row's index), runs its check. */
void config_test_rows(const struct config_test_row *rows, size_t n);

#endif

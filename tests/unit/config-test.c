/*
 * config-test — see config-test.h.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/unit/config-test.h"

char *config_test_file(const char *prefix, const char *text)
{
    char *path = malloc(64);
    int fd;
    FILE *f;

    assert_non_null(path);
    snprintf(path, 64, "/tmp/%s-XXXXXX", prefix);
    fd = mkstemp(path);
    assert_true(fd >= 0);
    f = fdopen(fd, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

struct postern_config *config_test_load(const char *text, struct cfg_errors *errs)
{
    size_t size = sizeof(CONFIG_TEST_LISTENER) + strlen(text) + 1;
    char *full = malloc(size);
    char *path;
    struct postern_config *cfg;

    assert_non_null(full);
    snprintf(full, size, CONFIG_TEST_LISTENER "%s\n", text);
    path = config_test_file("config-test", full);
    free(full);
    cfg = postern_config_load(path, errs);
    unlink(path);
    free(path);
    return cfg;
}

void config_test_expect(size_t row, const struct postern_config *cfg, const struct cfg_errors *errs,
                        const char *error)
{
    if (error == NULL && cfg == NULL)
        fail_msg("row %zu: %s", row, errs->count ? errs->msgs[0] : "?");
    if (error != NULL && (cfg != NULL || errs->count == 0 || strstr(errs->msgs[0], error) == NULL))
        fail_msg("row %zu: error \"%s\" lacks \"%s\"", row, errs->count ? errs->msgs[0] : "",
                 error);
}

void config_test_rows(const struct config_test_row *rows, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct cfg_errors errs = {0};
        struct postern_config *cfg = config_test_load(rows[i].filters, &errs);

        config_test_expect(i, cfg, &errs, rows[i].error);
        if (rows[i].check != NULL)
            rows[i].check(cfg);
        postern_config_free(&cfg);
        cfg_errors_clear(&errs);
    }
}

/*
 * dkim-config — the dkim filter's module (module.h): its config table
 * (filters.dkim and filters.dkim.keys), the checks the table alone cannot
 * make (host names, header field names, "from" signed, one key per
 * domain), and the key files, read and parsed here (OpenSSL) when the
 * config is loaded: the master reads them before it drops privileges, so
 * they may be readable by root only, and `posternd -t` names a bad one
 * with its line. Instances are made per worker (dkim.c).
 *
 * Trusts libconfig and lib/cfg for types and ranges; validates the rest.
 */
#include "config.h"
#include "filters/dkim.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <opendkim/dkim.h>

#define KEY_FILE_MAX (64 * 1024)

static const char *const sign_by_values[] = {"from_or_sender", "from", "sender", NULL};

#define S(field) offsetof(struct dkim_settings, field)
static const struct cfg_key dkim_keys[] = {
    FILTER_COMMON_KEYS("skip", "10s"),
    { "verify", CFG_BOOL, S(verify), "yes", 0, 0, NULL,
      "verify the DKIM signatures of inbound mail" },
    { "max_signatures", CFG_INT, S(max_signatures), "8", 1, 64, NULL,
      "signatures verified per message (the first ones; the rest are ignored)" },
    { "min_key_bits", CFG_INT, S(min_key_bits), "1024", 512, 16384, NULL,
      "smaller RSA keys make a signature invalid" },
    { "max_header_size", CFG_SIZE, S(max_header_size), "256K", 1024, 16 << 20, NULL,
      "longest header section read (longer: an error of the filter)" },
    { "threads", CFG_INT, S(threads), "2", 1, 64, NULL,
      "threads per worker process that hash, verify and sign" },
    { "score_valid", CFG_DOUBLE, S(score_valid), "-0.2", -1000, 1000, NULL,
      "score of DKIM_VALID (once per message)" },
    { "score_invalid", CFG_DOUBLE, S(score_invalid), "1", -1000, 1000, NULL,
      "score of DKIM_INVALID (once per message)" },
    { "score_temperror", CFG_DOUBLE, S(score_temperror), "0", -1000, 1000, NULL,
      "score of DKIM_TEMPERROR (once per message)" },
    { "score_none", CFG_DOUBLE, S(score_none), "0", -1000, 1000, NULL,
      "score of DKIM_NONE (no signature)" },
    { "authres", CFG_BOOL, S(authres), "no", 0, 0, NULL,
      "add Authentication-Results with the dkim results (for a chain without dmarc)" },
    { "sign_by", CFG_ENUM, S(sign_by), "from_or_sender", 0, 0, sign_by_values,
      "which domain picks the signing key: from_or_sender, from, sender" },
    { "sign_headers", CFG_STRLIST, S(sign_headers),
      "from, reply-to, subject, date, to, cc, message-id, in-reply-to, references, "
      "mime-version, content-type, content-transfer-encoding, list-id, list-unsubscribe",
      0, 0, NULL, "header fields signed when present (must include from)" },
    { "oversign_headers", CFG_STRLIST, S(oversign_headers), "from", 0, 0, NULL,
      "header fields also signed as absent, so that none can be added" },
    { "keys", CFG_GROUP, 0, NULL, 0, 0, NULL,
      "signing keys of outbound mail (see filters.dkim.keys.*)" },
    { .name = NULL },
};
#undef S

#define S(field) offsetof(struct dkim_sign_key, field)
static const struct cfg_key dkim_key_keys[] = {
    { "domain", CFG_STRING, S(domain), NULL, 0, 0, NULL,
      "signing domain (d=); signs for it and its subdomains (required)" },
    { "selector", CFG_STRING, S(selector), NULL, 0, 0, NULL, "selector (s=) (required)" },
    { "key_file", CFG_STRING, S(key_file), NULL, 0, 0, NULL,
      "PEM private key, RSA or Ed25519 (required; read at load, as root)" },
    { .name = NULL },
};
#undef S

static const config_setting_t *key_or_group(const config_setting_t *g, const char *key)
{
    const config_setting_t *s = config_setting_get_member(g, key);

    return s != NULL ? s : g;
}

static void lower(char *s)
{
    for (; *s != '\0'; s++)
        *s = (char)tolower((unsigned char)*s);
}

/* ---- key files ---- */

static char *read_key_file(const char *path, const char **why)
{
    FILE *f = fopen(path, "r");
    char *buf;
    size_t n;

    if (f == NULL) {
        *why = strerror(errno);
        return NULL;
    }
    if ((buf = malloc(KEY_FILE_MAX + 1)) == NULL) {
        fclose(f);
        *why = "out of memory";
        return NULL;
    }
    n = fread(buf, 1, KEY_FILE_MAX + 1, f);
    fclose(f);
    if (n == 0 || n > KEY_FILE_MAX) {
        *why = n == 0 ? "empty or unreadable" : "larger than 64 KiB";
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

static bool ed25519_supported(void)
{
    DKIM_LIB *lib = dkim_init(NULL, NULL);
    bool yes = lib != NULL && dkim_libfeature(lib, DKIM_FEATURE_ED25519);

    if (lib != NULL)
        dkim_close(lib);
    return yes;
}

/* The signing algorithm for the PEM key, or -1 with *why. */
static int key_alg(const char *pem, const char **why)
{
    BIO *bio = BIO_new_mem_buf(pem, -1);
    EVP_PKEY *pk = bio != NULL ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
    int alg = -1;

    if (pk == NULL) {
        *why = "not a PEM private key";
    } else if (EVP_PKEY_get_base_id(pk) == EVP_PKEY_RSA) {
        alg = DKIM_SIGN_RSASHA256;
        if (EVP_PKEY_get_bits(pk) < 1024) {
            *why = "an RSA key of fewer than 1024 bits";
            alg = -1;
        }
    } else if (EVP_PKEY_get_base_id(pk) == EVP_PKEY_ED25519 && ed25519_supported()) {
        alg = DKIM_SIGN_ED25519SHA256;
    } else {
        *why = "neither an RSA nor an Ed25519 key libopendkim can use";
    }
    EVP_PKEY_free(pk);
    BIO_free(bio);
    return alg;
}

static void load_key(struct dkim_sign_key *k, const config_setting_t *e, struct cfg_errors *errs)
{
    const char *why = NULL;

    if (k->domain == NULL || !dkim_domain_ok(k->domain))
        cfg_error_add(errs, key_or_group(e, "domain"), "dkim: key without a valid domain");
    else
        lower(k->domain);
    if (k->selector == NULL || !dkim_domain_ok(k->selector))
        cfg_error_add(errs, key_or_group(e, "selector"), "dkim: key without a valid selector");
    if (k->key_file == NULL) {
        cfg_error_add(errs, e, "dkim: key without a key_file");
        return;
    }
    if ((k->pem = read_key_file(k->key_file, &why)) == NULL ||
        (k->alg = key_alg(k->pem, &why)) < 0)
        cfg_error_add(errs, key_or_group(e, "key_file"), "dkim: key_file \"%s\": %s",
                      k->key_file, why);
}

static void load_keys(struct dkim_settings *f, const config_setting_t *ks,
                      struct cfg_errors *errs)
{
    int n = config_setting_length(ks);

    if (config_setting_type(ks) != CONFIG_TYPE_LIST) {
        cfg_error_add(errs, ks, "dkim: keys must be a list ( { domain = ...; } )");
        return;
    }
    if (n == 0 || (f->keys = calloc((size_t)n, sizeof(*f->keys))) == NULL)
        return;
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(ks, (unsigned)i);
        struct dkim_sign_key *k = &f->keys[f->key_count++];
        if (config_setting_type(e) != CONFIG_TYPE_GROUP) {
            cfg_error_add(errs, e, "each dkim key must be a group { ... }");
            continue;
        }
        cfg_section_load(e, dkim_key_keys, k, errs);
        load_key(k, e, errs);
        for (size_t j = 0; j + 1 < f->key_count && k->domain != NULL; j++) {
            if (f->keys[j].domain != NULL && strcasecmp(f->keys[j].domain, k->domain) == 0)
                cfg_error_add(errs, e, "dkim: two keys for domain %s", k->domain);
        }
    }
}

/* ---- header field names ---- */

static bool field_name_ok(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s != '\0'; s++) {
        if (*s < 33 || *s > 126 || *s == ':')
            return false;
    }
    return true;
}

static void check_names(struct cfg_strlist *l, const char *key, const config_setting_t *g,
                        struct cfg_errors *errs)
{
    for (size_t i = 0; i < l->count; i++) {
        lower(l->items[i]);
        if (!field_name_ok(l->items[i]))
            cfg_error_add(errs, key_or_group(g, key), "dkim: %s: \"%s\" is not a field name",
                          key, l->items[i]);
        else if (strcmp(l->items[i], "dkim-signature") == 0)
            cfg_error_add(errs, key_or_group(g, key), "dkim: %s: DKIM-Signature is never signed",
                          key);
    }
}

static void dkim_load(void *settings, const config_setting_t *g, struct cfg_errors *errs)
{
    struct dkim_settings *f = settings;
    const config_setting_t *ks = config_setting_get_member(g, "keys");
    bool from = false;

    check_names(&f->sign_headers, "sign_headers", g, errs);
    check_names(&f->oversign_headers, "oversign_headers", g, errs);
    for (size_t i = 0; i < f->sign_headers.count; i++)
        from = from || strcmp(f->sign_headers.items[i], "from") == 0;
    if (!from)
        cfg_error_add(errs, key_or_group(g, "sign_headers"),
                      "dkim: sign_headers must include \"from\" (RFC 6376 §5.4)");
    if (ks != NULL)
        load_keys(f, ks, errs);
}

static void dkim_free_settings(void *settings)
{
    struct dkim_settings *f = settings;

    for (size_t i = 0; i < f->key_count; i++) {
        cfg_section_free(dkim_key_keys, &f->keys[i]);
        free(f->keys[i].pem);
    }
    free(f->keys);
    f->keys = NULL;
    f->key_count = 0;
}

static void dkim_describe(FILE *out)
{
    cfg_section_describe(out, "filters.dkim.keys", dkim_key_keys);
}

static int dkim_create(const struct filter_env *env, const void *settings, void **instance,
                       char *error, size_t errsize)
{
    return dkim_filter_new(env, settings, (struct dkim_filter **)instance, error, errsize);
}

static void dkim_destroy(void *instance)
{
    struct dkim_filter *f = instance;

    dkim_filter_free(&f);
}

const struct filter_module dkim_module = {
    .name = "dkim",
    .ops = &dkim_filter_ops,
    .keys = dkim_keys,
    .settings_size = sizeof(struct dkim_settings),
    .load = dkim_load,
    .free_settings = dkim_free_settings,
    .describe = dkim_describe,
    .create = dkim_create,
    .destroy = dkim_destroy,
};

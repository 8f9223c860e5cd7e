/*
 * smtp-sasl — see smtp-sasl.h. Strict base64 (RFC 4648) and the PLAIN
 * (RFC 4616) and LOGIN answers of SMTP AUTH (RFC 4954).
 *
 * Everything here comes from the network and is untrusted. The base64 text
 * is validated here (alphabet, length, padding, zero pad bits) before
 * OpenSSL's EVP_DecodeBlock() sees it, because that function skips
 * whitespace, accepts '=' in odd places and counts padding as data.
 * Lengths are checked before anything is decoded; decoded credentials are
 * wiped from temporary buffers, and from the output on failure.
 */
#include "config.h"
#include "lib/smtp-sasl.h"

#include <limits.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#define ERR_BASE64 "Invalid base64 data"
#define ERR_PLAIN "Invalid PLAIN response"
#define ERR_LOGIN "Invalid LOGIN response"

/* authzid NUL authcid NUL password, each field at most SASL_FIELD_MAX. */
#define PLAIN_MAX (3 * SASL_FIELD_MAX + 2)
#define B64_LEN(n) (((n) + 2) / 3 * 4)

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Returns the number of '=' (0-2) of a well-formed non-empty base64 text,
 * or -1. The bits the padding leaves unused must be zero (canonical). */
static int b64_check(const char *in, size_t len)
{
    size_t pad = 0, i;
    int last;

    if (len == 0 || len % 4 != 0 || len > INT_MAX)
        return -1;
    if (in[len - 1] == '=')
        pad = in[len - 2] == '=' ? 2 : 1;
    for (i = 0; i < len - pad; i++) {
        if (b64_value((unsigned char)in[i]) < 0)
            return -1;
    }
    last = b64_value((unsigned char)in[len - pad - 1]);
    if ((pad == 1 && (last & 0x03) != 0) || (pad == 2 && (last & 0x0f) != 0))
        return -1;
    return (int)pad;
}

int sasl_base64_decode(const char *in, size_t len, unsigned char *out, size_t outsize)
{
    unsigned char tail[3];
    size_t head, total;
    int pad;

    if (len == 0 || (len == 1 && in[0] == '=')) {
        if (outsize > 0)
            out[0] = '\0';
        return 0;
    }
    if ((pad = b64_check(in, len)) < 0)
        return -1;
    total = len / 4 * 3 - (size_t)pad;
    if (total > outsize)
        return -1;
    /* EVP_DecodeBlock writes 3 bytes per quantum, padding included: decode
     * the last quantum aside so out never receives more than total bytes. */
    head = len - 4;
    if (head > 0 && EVP_DecodeBlock(out, (const unsigned char *)in, (int)head) < 0)
        return -1;
    if (EVP_DecodeBlock(tail, (const unsigned char *)in + head, 4) != 3)
        return -1;
    memcpy(out + head / 4 * 3, tail, 3 - (size_t)pad);
    OPENSSL_cleanse(tail, sizeof(tail));
    if (total < outsize)
        out[total] = '\0';
    return (int)total;
}

int sasl_base64_encode(const unsigned char *in, size_t len, char *out, size_t outsize)
{
    if (len > (size_t)INT_MAX / 4 * 3 || B64_LEN(len) >= outsize)
        return -1;
    return EVP_EncodeBlock((unsigned char *)out, in, (int)len);
}

/* Copies one field of at most SASL_FIELD_MAX octets, NUL-terminated. */
static int copy_field(char *dst, const unsigned char *src, size_t len)
{
    if (len > SASL_FIELD_MAX)
        return -1;
    memcpy(dst, src, len);
    dst[len] = '\0';
    return 0;
}

/* Splits "authzid NUL authcid NUL password": exactly two NULs, non-empty
 * authcid and password. */
static int plain_split(const unsigned char *msg, size_t len, struct sasl_credentials *out)
{
    const unsigned char *nul1, *nul2, *end = msg + len;

    nul1 = memchr(msg, '\0', len);
    if (nul1 == NULL)
        return -1;
    nul2 = memchr(nul1 + 1, '\0', (size_t)(end - nul1 - 1));
    if (nul2 == NULL || memchr(nul2 + 1, '\0', (size_t)(end - nul2 - 1)) != NULL)
        return -1;
    if (nul2 == nul1 + 1 || nul2 + 1 == end)
        return -1;
    if (copy_field(out->authzid, msg, (size_t)(nul1 - msg)) < 0 ||
        copy_field(out->authcid, nul1 + 1, (size_t)(nul2 - nul1 - 1)) < 0 ||
        copy_field(out->password, nul2 + 1, (size_t)(end - nul2 - 1)) < 0)
        return -1;
    return 0;
}

static void set_error(const char **error_r, const char *error)
{
    if (error_r != NULL)
        *error_r = error;
}

int sasl_plain_decode(const char *b64, size_t len, struct sasl_credentials *out,
                      const char **error_r)
{
    unsigned char msg[PLAIN_MAX + 1];
    int n = -1;
    const char *error = ERR_PLAIN;

    memset(out, 0, sizeof(*out));
    if (len <= B64_LEN(PLAIN_MAX)) {
        n = sasl_base64_decode(b64, len, msg, sizeof(msg));
        if (n < 0)
            error = ERR_BASE64;
        else if (plain_split(msg, (size_t)n, out) < 0)
            n = -1;
        OPENSSL_cleanse(msg, sizeof(msg));
    }
    if (n < 0) {
        OPENSSL_cleanse(out, sizeof(*out));
        set_error(error_r, error);
        return -1;
    }
    return 0;
}

int sasl_login_decode(const char *b64, size_t len, char *out, const char **error_r)
{
    unsigned char msg[SASL_FIELD_MAX + 3];
    int n = -1;
    const char *error = ERR_LOGIN;

    out[0] = '\0';
    if (len <= B64_LEN(SASL_FIELD_MAX)) {
        n = sasl_base64_decode(b64, len, msg, sizeof(msg));
        if (n < 0)
            error = ERR_BASE64;
        else if (n == 0 || memchr(msg, '\0', (size_t)n) != NULL ||
                 copy_field(out, msg, (size_t)n) < 0)
            n = -1;
        OPENSSL_cleanse(msg, sizeof(msg));
    }
    if (n < 0) {
        OPENSSL_cleanse(out, SASL_FIELD_MAX + 1);
        set_error(error_r, error);
        return -1;
    }
    return 0;
}

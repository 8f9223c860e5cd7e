/*
 * fuzz-proxy — libFuzzer target for proxy_parse (PROXY protocol v1/v2).
 *
 * Runs the input under each accept mask and aborts when the contract
 * breaks: consumed beyond the input, a version outside the mask, "need
 * more" at or past the largest header, an error without a text, an address
 * of the wrong family, or a valid header that does not parse the same on its
 * own and answer 0 for its proper prefixes. Prefixes are parsed from
 * exact-size heap copies so ASan sees any read past len.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include "gateway/proxy-proto.h"

#define MAX_HEADER (16 + PROXY_V2_MAX_LEN)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int parse_copy(const uint8_t *data, size_t len, unsigned accept, size_t *consumed_r)
{
    uint8_t *copy = malloc(len != 0 ? len : 1);
    struct proxy_info info;
    const char *error = NULL;
    int rc;

    if (copy == NULL)
        abort();
    memcpy(copy, data, len);
    rc = proxy_parse(copy, len, accept, &info, consumed_r, &error);
    free(copy);
    if (rc < 0 && error == NULL)
        abort();
    return rc;
}

static void check_addr(const struct sockaddr_storage *ss, socklen_t len)
{
    if (ss->ss_family == AF_INET && len == sizeof(struct sockaddr_in))
        return;
    if (ss->ss_family == AF_INET6 && len == sizeof(struct sockaddr_in6))
        return;
    abort();
}

/* A header that parsed: the same alone, and 0 for each proper prefix (all
 * of them for short headers, a sample for long v2 ones). */
static void check_header(const uint8_t *data, size_t consumed, unsigned accept)
{
    size_t again = 0;

    if (parse_copy(data, consumed, accept, &again) != 1 || again != consumed)
        abort();
    for (size_t k = 0; k < consumed; k++) {
        size_t unused;

        if (consumed > 128 && k > 20 && k + 2 < consumed && k % 61 != 0)
            continue;
        if (parse_copy(data, k, accept, &unused) != 0)
            abort();
    }
}

static void run_mask(const uint8_t *data, size_t size, unsigned accept)
{
    struct proxy_info info;
    size_t consumed = 0;
    const char *error = NULL;
    int rc = proxy_parse(data, size, accept, &info, &consumed, &error);

    if (rc == -1) {
        if (error == NULL)
            abort();
        return;
    }
    if (rc == 0) {
        if (size >= MAX_HEADER)
            abort();
        return;
    }
    if (rc != 1 || consumed == 0 || consumed > size || consumed > MAX_HEADER)
        abort();
    if ((info.version != 1 && info.version != 2) || (accept & (unsigned)info.version) == 0)
        abort();
    if (info.version == 1 && consumed > PROXY_V1_MAX)
        abort();
    if (!info.local) {
        check_addr(&info.src, info.src_len);
        check_addr(&info.dst, info.dst_len);
        if (info.src.ss_family != info.dst.ss_family)
            abort();
    }
    check_header(data, consumed, accept);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const unsigned masks[] = {
        PROXY_ACCEPT_V1, PROXY_ACCEPT_V2, PROXY_ACCEPT_V1 | PROXY_ACCEPT_V2,
    };

    for (size_t i = 0; i < sizeof(masks) / sizeof(masks[0]); i++)
        run_mask(data, size, masks[i]);
    return 0;
}

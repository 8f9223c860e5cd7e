/*
 * proxy-proto — parser for the HAProxy PROXY protocol header, version 1
 * (text) and version 2 (binary), that a load balancer sends before SMTP.
 *
 * Called by the session on listeners with proxy_protocol enabled, before the
 * greeting. Trusts nothing: the peer is only trusted to be the balancer by
 * the admin's config; bytes are bounded (v1: 107 octets, v2: 16 + length,
 * length capped at PROXY_V2_MAX_LEN) and every field is validated.
 */
#ifndef POSTERN_PROXY_PROTO_H
#define POSTERN_PROXY_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#define PROXY_V1_MAX 107       /* including CRLF */
#define PROXY_V2_MAX_LEN 1024  /* addresses + TLVs we accept after the 16-byte header */

enum proxy_accept { PROXY_ACCEPT_V1 = 1, PROXY_ACCEPT_V2 = 2 };

struct proxy_info {
    int version;   /* 1 or 2 */
    bool local;    /* v2 LOCAL command or v1 "UNKNOWN": keep the real peer address */
    struct sockaddr_storage src, dst; /* valid when !local; AF_INET or AF_INET6 */
    socklen_t src_len, dst_len;
};

/* Looks at buf[0..len). Returns 1 when a whole header was parsed (*out filled,
 * *consumed_r = its length: the SMTP dialogue starts after it), 0 when more
 * bytes are needed (and len is still below the maximum header size), -1 on
 * any error (*error_r = static text) including a header of a version not in
 * accept. TLVs in v2 are skipped. */
int proxy_parse(const unsigned char *buf, size_t len, unsigned accept, struct proxy_info *out,
                size_t *consumed_r, const char **error_r);

#endif

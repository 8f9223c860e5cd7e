/*
 * proxy-proto.c — HAProxy PROXY protocol v1 and v2 header parser (contract
 * in proxy-proto.h; format from haproxy's doc/proxy-protocol.txt).
 *
 * Called by the session before the greeting, on listeners that expect a
 * balancer, with whatever bytes have arrived so far. SECURITY: trusts none of
 * them. Reads only buf[0..len), never more than PROXY_V1_MAX octets for v1 or
 * 16 + PROXY_V2_MAX_LEN for v2. It answers "need more" (0) only while the
 * bytes seen are a prefix of some valid header, so a peer cannot hold the
 * session with garbage: v1 fields are checked as prefixes as they arrive, the
 * v2 fixed header as soon as each byte is there. Complete v1 addresses are
 * checked by inet_pton; ports are 0-65535 in plain decimal, no sign and no
 * leading zero.
 */
#include "config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "gateway/proxy-proto.h"

#define V2_HEADER 16
#define V2_CMD_LOCAL 0x0
#define V2_CMD_PROXY 0x1
#define V2_FAM_UNSPEC 0x00
#define V2_FAM_TCP4 0x11
#define V2_FAM_TCP6 0x21

static const unsigned char v2_sig[12] = {
    0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
};

enum v1_field { F_PROXY, F_PROTO, F_SRC, F_DST, F_SPORT, F_DPORT, V1_FIELDS };

static const char *const v1_errors[V1_FIELDS] = {
    "PROXY v1 header does not start with \"PROXY \"",
    "PROXY v1 header with an unknown protocol",
    "PROXY v1 header with a bad source address",
    "PROXY v1 header with a bad destination address",
    "PROXY v1 header with a bad source port",
    "PROXY v1 header with a bad destination port",
};

/* What the v1 fields said so far. */
struct v1_state {
    int family; /* AF_INET, AF_INET6, or AF_UNSPEC for UNKNOWN */
    bool unknown;
    unsigned char src[16], dst[16];
    unsigned sport, dport;
};

static int fail(const char **error_r, const char *error)
{
    *error_r = error;
    return -1;
}

/* Whether t[0..n) is the keyword kw (complete) or could still become it. */
static bool keyword_ok(const unsigned char *t, size_t n, const char *kw, bool complete)
{
    size_t kw_len = strlen(kw);

    if (complete ? n != kw_len : n > kw_len)
        return false;
    return memcmp(t, kw, n) == 0;
}

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static bool is_hex(unsigned char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* A port: 1-5 digits, no leading zero, at most 65535. A prefix may be empty. */
static bool port_ok(const unsigned char *t, size_t n, bool complete, unsigned *port_r)
{
    unsigned v = 0;

    if (n > 5 || (complete && n == 0) || (n > 1 && t[0] == '0'))
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!is_digit(t[i]))
            return false;
        v = v * 10 + (unsigned)(t[i] - '0');
    }
    *port_r = v;
    return v <= 65535;
}

/* Whether t[0..n) is, or could grow into, a dotted quad as inet_pton takes
 * it: 4 parts of 1-3 digits, each at most 255, without leading zeros. */
static bool v4_prefix_ok(const unsigned char *t, size_t n)
{
    unsigned dots = 0, digits = 0, part = 0;

    for (size_t i = 0; i < n; i++) {
        if (t[i] == '.') {
            if (digits == 0 || ++dots > 3)
                return false;
            digits = part = 0;
        } else if (is_digit(t[i])) {
            if (digits == 1 && part == 0)
                return false; /* leading zero */
            part = part * 10 + (unsigned)(t[i] - '0');
            if (++digits > 3 || part > 255)
                return false;
        } else {
            return false;
        }
    }
    return true;
}

/* Whether t[0..n) could grow into an IPv6 address: hex groups of at most 4
 * digits, at most 8 of them, one "::" at most, and an optional dotted quad
 * at the end. Looser than inet_pton, which checks the complete address. */
static bool v6_prefix_ok(const unsigned char *t, size_t n)
{
    unsigned groups = 0, digits = 0;
    bool double_colon = false;

    if (n > INET6_ADDRSTRLEN - 1)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (t[i] == ':') {
            if (i > 0 && t[i - 1] == ':') {
                if (double_colon || (i > 1 && t[i - 2] == ':'))
                    return false;
                double_colon = true;
            }
            groups += digits > 0;
            digits = 0;
        } else if (t[i] == '.') {
            return groups < 7 && v4_prefix_ok(t + i - digits, n - i + digits);
        } else if (!is_hex(t[i]) || ++digits > 4) {
            return false;
        }
    }
    return groups + (digits > 0) <= 8;
}

/* An address of the family the protocol field named. A complete one goes
 * through inet_pton into addr. */
static bool addr_ok(const struct v1_state *st, const unsigned char *t, size_t n,
                    bool complete, unsigned char addr[16])
{
    char text[INET6_ADDRSTRLEN];

    if (!complete)
        return st->family == AF_INET ? v4_prefix_ok(t, n) : v6_prefix_ok(t, n);
    /* A NUL would end the string early: "::1\0junk" must not pass as ::1. */
    if (n == 0 || n >= sizeof(text) || memchr(t, '\0', n) != NULL)
        return false;
    memcpy(text, t, n);
    text[n] = '\0';
    return inet_pton(st->family, text, addr) == 1;
}

static bool proto_ok(struct v1_state *st, const unsigned char *t, size_t n, bool complete)
{
    if (!complete)
        return keyword_ok(t, n, "TCP4", false) || keyword_ok(t, n, "TCP6", false) ||
               keyword_ok(t, n, "UNKNOWN", false);
    if (keyword_ok(t, n, "TCP4", true))
        st->family = AF_INET;
    else if (keyword_ok(t, n, "TCP6", true))
        st->family = AF_INET6;
    else if (keyword_ok(t, n, "UNKNOWN", true))
        st->unknown = true;
    else
        return false;
    return true;
}

/* Checks v1 field i, t[0..n); complete when no more octets can join it. */
static bool v1_field_ok(struct v1_state *st, enum v1_field i, const unsigned char *t, size_t n,
                        bool complete)
{
    switch (i) {
    case F_PROXY:
        return keyword_ok(t, n, "PROXY", complete);
    case F_PROTO:
        return proto_ok(st, t, n, complete);
    case F_SRC:
        return addr_ok(st, t, n, complete, st->src);
    case F_DST:
        return addr_ok(st, t, n, complete, st->dst);
    case F_SPORT:
        return port_ok(t, n, complete, &st->sport);
    default:
        return port_ok(t, n, complete, &st->dport);
    }
}

static void set_inet(struct sockaddr_storage *ss, socklen_t *len_r, int family,
                     const unsigned char *addr, unsigned port)
{
    memset(ss, 0, sizeof(*ss));
    if (family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)ss;

        sin->sin_family = AF_INET;
        memcpy(&sin->sin_addr, addr, 4);
        sin->sin_port = htons((uint16_t)port);
        *len_r = sizeof(*sin);
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

        sin6->sin6_family = AF_INET6;
        memcpy(&sin6->sin6_addr, addr, 16);
        sin6->sin6_port = htons((uint16_t)port);
        *len_r = sizeof(*sin6);
    }
}

/* The v1 line s[0..n) without CR LF. whole: the CR LF followed it, so the
 * last field is complete; otherwise more octets may follow and 0 means
 * "still a valid prefix". Fills *out when it returns 1. */
static int v1_line(const unsigned char *s, size_t n, bool whole, struct proxy_info *out,
                   const char **error_r)
{
    struct v1_state st = { .family = AF_UNSPEC };
    size_t pos = 0;

    if (memchr(s, '\r', n) != NULL)
        return fail(error_r, "PROXY v1 header with a bare CR");
    for (enum v1_field i = F_PROXY; i < V1_FIELDS; i++) {
        const unsigned char *sp = memchr(s + pos, ' ', n - pos);
        size_t end = sp != NULL ? (size_t)(sp - s) : n;

        if (!v1_field_ok(&st, i, s + pos, end - pos, sp != NULL || whole))
            return fail(error_r, v1_errors[i]);
        if (st.unknown || (sp == NULL && !whole))
            break; /* UNKNOWN ignores the rest of the line */
        if (sp == NULL && i != F_DPORT)
            return fail(error_r, "PROXY v1 header with too few fields");
        if (sp != NULL && i == F_DPORT)
            return fail(error_r, "PROXY v1 header with too many fields");
        pos = end + 1;
    }
    if (!whole)
        return 0;
    out->version = 1;
    out->local = st.unknown;
    if (!st.unknown) {
        set_inet(&out->src, &out->src_len, st.family, st.src, st.sport);
        set_inet(&out->dst, &out->dst_len, st.family, st.dst, st.dport);
    }
    return 1;
}

static int parse_v1(const unsigned char *buf, size_t len, struct proxy_info *out,
                    size_t *consumed_r, const char **error_r)
{
    size_t avail = len < PROXY_V1_MAX ? len : PROXY_V1_MAX;
    const unsigned char *lf = memchr(buf, '\n', avail);
    size_t n;
    int rc;

    if (lf == NULL) {
        if (len >= PROXY_V1_MAX)
            return fail(error_r, "PROXY v1 header too long");
        /* A CR at the very end can only be the CR of the CR LF. */
        if (buf[len - 1] == '\r')
            return v1_line(buf, len - 1, true, out, error_r) < 0 ? -1 : 0;
        return v1_line(buf, len, false, out, error_r);
    }
    n = (size_t)(lf - buf);
    if (n == 0 || buf[n - 1] != '\r')
        return fail(error_r, "PROXY v1 header with a bare LF");
    rc = v1_line(buf, n - 1, true, out, error_r);
    if (rc == 1)
        *consumed_r = n + 1;
    return rc;
}

/* The v2 fixed header, as far as it has arrived: 0 while it is a valid
 * prefix, 1 when all 16 octets are there and valid. */
static int v2_fixed(const unsigned char *buf, size_t len, const char **error_r)
{
    unsigned cmd;

    if (memcmp(buf, v2_sig, len < sizeof(v2_sig) ? len : sizeof(v2_sig)) != 0)
        return fail(error_r, "not a PROXY protocol header");
    if (len <= 12)
        return 0;
    if (buf[12] >> 4 != 2)
        return fail(error_r, "PROXY v2 header with an unknown version");
    cmd = buf[12] & 0x0f;
    if (cmd != V2_CMD_LOCAL && cmd != V2_CMD_PROXY)
        return fail(error_r, "PROXY v2 header with an unknown command");
    if (len <= 13)
        return 0;
    /* LOCAL ignores the family; PROXY must name one we can use. */
    if (cmd == V2_CMD_PROXY && buf[13] != V2_FAM_UNSPEC && buf[13] != V2_FAM_TCP4 &&
        buf[13] != V2_FAM_TCP6)
        return fail(error_r, "PROXY v2 header with an unsupported address family");
    if (len < V2_HEADER)
        return 0;
    return 1;
}

static int parse_v2(const unsigned char *buf, size_t len, struct proxy_info *out,
                    size_t *consumed_r, const char **error_r)
{
    int rc = v2_fixed(buf, len, error_r);
    size_t body;
    unsigned char fam;

    if (rc <= 0)
        return rc;
    body = (size_t)buf[14] << 8 | buf[15];
    fam = (buf[12] & 0x0f) == V2_CMD_LOCAL ? V2_FAM_UNSPEC : buf[13];
    if (body > PROXY_V2_MAX_LEN)
        return fail(error_r, "PROXY v2 header too long");
    if ((fam == V2_FAM_TCP4 && body < 12) || (fam == V2_FAM_TCP6 && body < 36))
        return fail(error_r, "PROXY v2 header with a short address block");
    if (len - V2_HEADER < body)
        return 0;
    out->version = 2;
    out->local = fam == V2_FAM_UNSPEC;
    if (fam == V2_FAM_TCP4) {
        set_inet(&out->src, &out->src_len, AF_INET, buf + 16, (unsigned)buf[24] << 8 | buf[25]);
        set_inet(&out->dst, &out->dst_len, AF_INET, buf + 20, (unsigned)buf[26] << 8 | buf[27]);
    } else if (fam == V2_FAM_TCP6) {
        set_inet(&out->src, &out->src_len, AF_INET6, buf + 16, (unsigned)buf[48] << 8 | buf[49]);
        set_inet(&out->dst, &out->dst_len, AF_INET6, buf + 32, (unsigned)buf[50] << 8 | buf[51]);
    }
    *consumed_r = V2_HEADER + body; /* TLVs after the addresses are skipped */
    return 1;
}

int proxy_parse(const unsigned char *buf, size_t len, unsigned accept, struct proxy_info *out,
                size_t *consumed_r, const char **error_r)
{
    memset(out, 0, sizeof(*out));
    if ((accept & (PROXY_ACCEPT_V1 | PROXY_ACCEPT_V2)) == 0)
        return fail(error_r, "no PROXY protocol version accepted");
    if (len == 0)
        return 0;
    if (buf[0] == 'P') {
        if ((accept & PROXY_ACCEPT_V1) == 0)
            return fail(error_r, "PROXY v1 header where only v2 is accepted");
        return parse_v1(buf, len, out, consumed_r, error_r);
    }
    if (buf[0] == v2_sig[0]) {
        if ((accept & PROXY_ACCEPT_V2) == 0)
            return fail(error_r, "PROXY v2 header where only v1 is accepted");
        return parse_v2(buf, len, out, consumed_r, error_r);
    }
    return fail(error_r, "not a PROXY protocol header");
}

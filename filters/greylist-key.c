/*
 * greylist-key — the greylist filter's keys and lists: the triplet's
 * identity (greylist.h: lower-cased, the sender normalized as postgrey
 * does, escaped so that "/" cannot join two parts into another triplet,
 * hashed with SHA-256 when too long for a key) and the matching of the
 * allow lists.
 *
 * Called by greylist.c and greylist-module.c. Trusts nothing in the
 * addresses beyond their being NUL-terminated: every byte outside a small
 * safe set is escaped, and every write is bounded by its buffer.
 */
#include "config.h"
#include "filters/greylist-private.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#define GL_PART_MAX 256  /* "<sender>/<rcpt>" longer than this is hashed */
#define GL_ADDR_MAX 2048 /* an address as the SMTP layer gives it, and more */

char greylist_ascii_lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_word(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

/* Appends c; false when out is full. */
static bool put(char *out, size_t size, size_t *o, char c)
{
    if (*o + 1 >= size)
        return false;
    out[(*o)++] = c;
    out[*o] = '\0';
    return true;
}

/* The local part of a sender as postgrey keys it: BATV's "prvs=tag=" dropped,
 * a "+extension" cut, a number standing alone (VERP) replaced by '#'. */
static bool normalize_local(const char *local, size_t len, char *out, size_t size, size_t *o)
{
    size_t i = 0, j;

    if (len > 16 && strncasecmp(local, "prvs=", 5) == 0 && local[15] == '=') {
        for (j = 5; j < 15 && is_word(local[j]); j++)
            ;
        if (j == 15)
            i = 16;
    }
    while (i < len && local[i] != '+') {
        if (is_digit(local[i]) && (i == 0 || !is_word(local[i - 1]))) {
            for (j = i; j < len && is_digit(local[j]); j++)
                ;
            if (j == len || !is_word(local[j])) {
                if (!put(out, size, o, '#'))
                    return false;
                i = j;
                continue;
            }
        }
        if (!put(out, size, o, greylist_ascii_lower(local[i++])))
            return false;
    }
    return true;
}

/* The sender as keyed: lower-cased, normalized, "<>" for the null sender. */
static int normalize_sender(const char *sender, char *out, size_t size)
{
    const char *at = strrchr(sender, '@');
    size_t o = 0;

    out[0] = '\0';
    if (sender[0] == '\0')
        return snprintf(out, size, "<>") < (int)size ? 0 : -1;
    if (at == NULL)
        at = sender + strlen(sender);
    if (!normalize_local(sender, (size_t)(at - sender), out, size, &o))
        return -1;
    for (; *at != '\0'; at++)
        if (!put(out, size, &o, greylist_ascii_lower(*at)))
            return -1;
    return 0;
}

static bool key_safe(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'z') || (c != '\0' && strchr(".@_+=#<>-", c) != NULL);
}

/* Appends text (already lower-cased) escaped; false when it does not fit. */
static bool put_escaped(char *out, size_t size, size_t *o, const char *text)
{
    static const char hex[] = "0123456789ABCDEF";

    for (const char *p = text; *p != '\0'; p++) {
        unsigned char c = (unsigned char)*p;
        if (key_safe(*p)) {
            if (!put(out, size, o, *p))
                return false;
        } else if (!put(out, size, o, '%') || !put(out, size, o, hex[c >> 4]) ||
                   !put(out, size, o, hex[c & 15])) {
            return false;
        }
    }
    return true;
}

/* "sha256:<hex>" of "sender\0rcpt". */
static int hash_part(const char *sender, const char *rcpt, char *out, size_t size)
{
    size_t sl = strlen(sender), rl = strlen(rcpt);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char *buf = malloc(sl + rl + 1);
    size_t o;
    int ok;

    if (buf == NULL)
        return -1;
    memcpy(buf, sender, sl + 1);
    memcpy(buf + sl + 1, rcpt, rl);
    ok = EVP_Digest(buf, sl + 1 + rl, md, &mdlen, EVP_sha256(), NULL);
    free(buf);
    if (!ok)
        return -1;
    o = (size_t)snprintf(out, size, "sha256:");
    for (unsigned int i = 0; i < mdlen && o < size; i++)
        o += (size_t)snprintf(out + o, size - o, "%02x", md[i]);
    return o < size ? 0 : -1;
}

void greylist_network_text(const struct netaddr *client, unsigned v4, unsigned v6, char *out,
                           size_t size)
{
    struct netaddr n = netaddr_network(client, v4, v6);
    char addr[48]; /* INET6_ADDRSTRLEN */

    netaddr_to_text(&n, addr, sizeof(addr));
    snprintf(out, size, "%s/%u", addr, netaddr_is_v4(client) ? v4 : v6);
}

int greylist_triplet_id(const struct netaddr *client, unsigned v4_prefix, unsigned v6_prefix,
                        const char *sender, const char *rcpt, char *out, size_t size)
{
    char net[GREYLIST_NET_MAX], s[GL_ADDR_MAX], r[GL_ADDR_MAX], part[GL_PART_MAX + 1];
    size_t o = 0, i;

    if (normalize_sender(sender, s, sizeof(s)) < 0 || strlen(rcpt) >= sizeof(r))
        return -1;
    for (i = 0; rcpt[i] != '\0'; i++)
        r[i] = greylist_ascii_lower(rcpt[i]);
    r[i] = '\0';
    part[0] = '\0';
    if (!put_escaped(part, sizeof(part), &o, s) || !put(part, sizeof(part), &o, '/') ||
        !put_escaped(part, sizeof(part), &o, r)) {
        if (hash_part(s, r, part, sizeof(part)) < 0)
            return -1;
    }
    greylist_network_text(client, v4_prefix, v6_prefix, net, sizeof(net));
    int n = snprintf(out, size, "%s/%s", net, part);
    return n < 0 || (size_t)n >= size ? -1 : 0;
}

/* ---- the lists ---- */

bool greylist_addr_listed(const struct cfg_strlist *l, const char *addr)
{
    const char *at = strrchr(addr, '@');
    size_t llen = at != NULL ? (size_t)(at - addr) : strlen(addr);
    const char *domain = at != NULL ? at + 1 : "";

    for (size_t i = 0; i < l->count; i++) {
        const char *e = l->items[i], *eat = strrchr(e, '@');
        if (strcmp(e, "<>") == 0) {
            if (addr[0] == '\0')
                return true;
        } else if (eat == e) {
            if (addr[0] != '\0' && strcasecmp(e + 1, domain) == 0)
                return true;
        } else if (eat != NULL && eat[1] == '\0') {
            if (llen == (size_t)(eat - e) && strncasecmp(addr, e, llen) == 0)
                return true;
        } else if (strcasecmp(e, addr) == 0) {
            return true;
        }
    }
    return false;
}

bool greylist_domain_listed(const struct cfg_strlist *l, const char *sender)
{
    const char *at = strrchr(sender, '@');
    size_t dl;

    if (at == NULL || at[1] == '\0')
        return false;
    dl = strlen(at + 1);
    for (size_t i = 0; i < l->count; i++) {
        size_t el = strlen(l->items[i]);
        if (dl == el && strcasecmp(at + 1, l->items[i]) == 0)
            return true;
        if (dl > el && at[dl - el] == '.' && strcasecmp(at + 1 + dl - el, l->items[i]) == 0)
            return true;
    }
    return false;
}

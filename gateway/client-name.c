/*
 * client-name — see client-name.h. PTR, then A or AAAA for up to
 * CLIENT_NAME_TRIES of the names, one after another; the answer is always
 * delivered through a zero timer or a DNS callback, never inside the call
 * that started the lookup.
 */
#include "config.h"
#include "gateway/client-name.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

struct client_name_lookup {
    struct dns *dns;
    struct netaddr addr;
    struct dns_query *q;
    client_name_cb *cb;
    void *ctx;
    char names[CLIENT_NAME_TRIES][DNS_NAME_MAX + 1];
    size_t count, next;
};

static void finish(struct client_name_lookup *l, const char *name)
{
    client_name_cb *cb = l->cb;
    void *ctx = l->ctx;

    free(l);
    cb(ctx, name);
}

static void try_next(struct client_name_lookup *l);

static void on_forward(void *ctx, enum dns_status st, const struct dns_addr *a, size_t n)
{
    struct client_name_lookup *l = ctx;

    l->q = NULL;
    for (size_t i = 0; st == DNS_OK && i < n; i++) {
        struct netaddr got;
        if (netaddr_from_sockaddr((const struct sockaddr *)&a[i].sa, &got) == 0 &&
            memcmp(got.a, l->addr.a, sizeof(got.a)) == 0) {
            char name[DNS_NAME_MAX + 1];
            snprintf(name, sizeof(name), "%s", l->names[l->next - 1]);
            finish(l, name);
            return;
        }
    }
    try_next(l);
}

/* Forward-confirms the next PTR name, or ends with "unknown". */
static void try_next(struct client_name_lookup *l)
{
    int family = netaddr_is_v4(&l->addr) ? AF_INET : AF_INET6;

    while (l->next < l->count) {
        const char *name = l->names[l->next++];
        if ((l->q = dns_query_addr(l->dns, name, family, on_forward, l)) != NULL)
            return;
    }
    finish(l, "unknown");
}

static void on_ptr(void *ctx, enum dns_status st, const char *const *names, size_t n)
{
    struct client_name_lookup *l = ctx;

    l->q = NULL;
    for (size_t i = 0; st == DNS_OK && i < n && l->count < CLIENT_NAME_TRIES; i++)
        snprintf(l->names[l->count++], sizeof(l->names[0]), "%s", names[i]);
    try_next(l);
}

struct client_name_lookup *client_name_lookup(struct dns *dns, const struct netaddr *addr,
                                              client_name_cb *cb, void *ctx)
{
    struct client_name_lookup *l = calloc(1, sizeof(*l));
    struct sockaddr_storage ss = {0};

    if (l == NULL)
        return NULL;
    l->dns = dns;
    l->addr = *addr;
    l->cb = cb;
    l->ctx = ctx;
    if (netaddr_is_v4(addr)) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        sin->sin_family = AF_INET;
        memcpy(&sin->sin_addr, addr->a + 12, 4);
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        sin6->sin6_family = AF_INET6;
        memcpy(&sin6->sin6_addr, addr->a, 16);
    }
    if ((l->q = dns_query_ptr(dns, (struct sockaddr *)&ss, on_ptr, l)) == NULL) {
        free(l);
        return NULL;
    }
    return l;
}

void client_name_cancel(struct client_name_lookup *l)
{
    if (l == NULL)
        return;
    if (l->q != NULL)
        dns_query_cancel(l->q);
    free(l);
}

/*
 * milter-macros — the Sendmail macros Postern can give a milter, filled
 * from the filter_txn: "j" (the server's hostname), "{daemon_name}" (the
 * listener's name), "v" (Postern's version), "_" ("name [addr]" of the
 * client), "{client_addr}", "{client_name}", "{client_ptr}" (the reverse
 * name, "unknown" when there is none), "i" (the queue id, from MAIL on),
 * "{auth_authen}" (the authenticated user), "{mail_addr}" (the sender,
 * from MAIL on) and "{rcpt_addr}" (the recipient of an RCPT command). A
 * macro without a value at a command is left out, as Postfix does.
 */
#include "config.h"
#include "filters/milter-private.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct macro_ctx {
    const struct milter *m;
    const struct filter_txn *txn;
    const char *rcpt;
};

typedef const char *macro_fn(const struct macro_ctx *c, char *buf, size_t size);

static const char *m_j(const struct macro_ctx *c, char *buf, size_t size)
{
    (void)buf, (void)size;
    return c->m->hostname;
}

static const char *m_daemon_name(const struct macro_ctx *c, char *buf, size_t size)
{
    (void)buf, (void)size;
    return c->txn->listener;
}

static const char *m_v(const struct macro_ctx *c, char *buf, size_t size)
{
    (void)c, (void)buf, (void)size;
    return "Postern " PACKAGE_VERSION;
}

static const char *m_underscore(const struct macro_ctx *c, char *buf, size_t size)
{
    if (c->txn->client_addr == NULL)
        return NULL;
    snprintf(buf, size, "%s [%s]", c->txn->client_name != NULL ? c->txn->client_name : "unknown",
             c->txn->client_addr);
    return buf;
}

static const char *m_client_addr(const struct macro_ctx *c, char *buf, size_t size)
{
    (void)buf, (void)size;
    return c->txn->client_addr;
}

static const char *m_client_name(const struct macro_ctx *c, char *buf, size_t size)
{
    (void)buf, (void)size;
    return c->txn->client_name;
}

static const char *m_i(const struct macro_ctx *c, char *buf, size_t size)
{
    (void)buf, (void)size;
    return c->txn->queue_id;
}

static const char *m_auth_authen(const struct macro_ctx *c, char *buf, size_t size)
{
    (void)buf, (void)size;
    return c->txn->authenticated ? c->txn->auth_user : NULL;
}

static const char *m_mail_addr(const struct macro_ctx *c, char *buf, size_t size)
{
    (void)buf, (void)size;
    return c->txn->queue_id != NULL ? c->txn->sender : NULL;
}

static const char *m_rcpt_addr(const struct macro_ctx *c, char *buf, size_t size)
{
    (void)buf, (void)size;
    return c->rcpt;
}

static const struct {
    const char *name;
    macro_fn *fn;
} macros[] = {
    {"j", m_j},
    {"{daemon_name}", m_daemon_name},
    {"v", m_v},
    {"_", m_underscore},
    {"{client_addr}", m_client_addr},
    {"{client_name}", m_client_name},
    {"{client_ptr}", m_client_name},
    {"i", m_i},
    {"{auth_authen}", m_auth_authen},
    {"{mail_addr}", m_mail_addr},
    {"{rcpt_addr}", m_rcpt_addr},
};

#define MACRO_COUNT (sizeof(macros) / sizeof(macros[0]))

static macro_fn *macro_find(const char *name)
{
    for (size_t i = 0; i < MACRO_COUNT; i++)
        if (strcmp(macros[i].name, name) == 0)
            return macros[i].fn;
    return NULL;
}

bool milter_macro_known(const char *name)
{
    return macro_find(name) != NULL;
}

void milter_macro_normalize(const char *name, size_t len, char *out, size_t size)
{
    if (len == 1 || (len >= 2 && name[0] == '{' && name[len - 1] == '}'))
        snprintf(out, size, "%.*s", (int)len, name);
    else
        snprintf(out, size, "{%.*s}", (int)len, name);
}

const char *milter_macro_key(size_t stage)
{
    static const char *const keys[MILTER_M_COUNT] = {
        [MILTER_M_CONNECT] = "connect_macros", [MILTER_M_HELO] = "helo_macros",
        [MILTER_M_MAIL] = "mail_macros",       [MILTER_M_RCPT] = "rcpt_macros",
        [MILTER_M_DATA] = "data_macros",       [MILTER_M_EOM] = "eom_macros",
        [MILTER_M_EOH] = "eoh_macros",
    };

    return stage < MILTER_M_COUNT ? keys[stage] : "?";
}

void milter_names_free(struct milter_names *n)
{
    for (size_t i = 0; i < n->count; i++)
        free(n->names[i]);
    free(n->names);
    n->names = NULL;
    n->count = 0;
}

static int names_add(struct milter_names *n, const char *name)
{
    char **grown;

    for (size_t i = 0; i < n->count; i++)
        if (strcmp(n->names[i], name) == 0)
            return 0;
    if ((grown = realloc(n->names, (n->count + 1) * sizeof(*grown))) == NULL)
        return -1;
    n->names = grown;
    if ((n->names[n->count] = strdup(name)) == NULL)
        return -1;
    n->count++;
    return 0;
}

int milter_names_set(struct milter_names *n, const char *const *items, size_t count,
                     bool known_only)
{
    milter_names_free(n);
    for (size_t i = 0; i < count; i++) {
        const char *p = items[i];
        while (*p != '\0') {
            size_t len = strcspn(p, " \t,");
            char name[MILTER_MACRO_NAME_MAX];
            if (len > 0 && len < MILTER_MACRO_NAME_MAX - 2) {
                milter_macro_normalize(p, len, name, sizeof(name));
                if ((!known_only || milter_macro_known(name)) && names_add(n, name) < 0)
                    return -1;
            }
            p += len;
            p += strspn(p, " \t,");
        }
    }
    return 0;
}

int milter_macros_put(struct evbuffer *out, char cmd, const struct milter_names *names,
                      const struct milter *m, const struct filter_txn *txn, const char *rcpt)
{
    const struct macro_ctx c = {.m = m, .txn = txn, .rcpt = rcpt};
    const char *nv[MACRO_COUNT], *vv[MACRO_COUNT];
    char bufs[MACRO_COUNT][512];
    size_t n = 0;

    for (size_t i = 0; i < names->count && n < MACRO_COUNT; i++) {
        macro_fn *fn = macro_find(names->names[i]);
        const char *v = fn != NULL ? fn(&c, bufs[n], sizeof(bufs[n])) : NULL;
        if (v == NULL)
            continue;
        nv[n] = names->names[i];
        vv[n] = v;
        n++;
    }
    return n == 0 ? 0 : milter_put_macros(out, cmd, nv, vv, n);
}

/*
 * filter — see filter.h. The calls a filter makes on its struct filter_call:
 * reading the transaction, adding symbols, asking for an action, keeping its
 * own state while pending and ending a pending call; and the names and the
 * order of the closed set of actions. The message edits are edit.c's.
 *
 * Trusts filters to keep the contract of filter.h; a broken one (an action
 * outside the set, filter_call_done twice, after cancel or from inside its
 * callback) is a bug and asserts. Symbol text and reply text come from
 * filters, which sanitize what they took from the network.
 */
#include "config.h"
#include "filters/filter.h"
#include "filters/filter-private.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool filter_call_live(const struct filter_call *call)
{
    return call->state == FILTER_CALL_RUNNING || call->state == FILTER_CALL_PENDING;
}

void filter_call_delay(struct filter_call *call, unsigned ms)
{
    assert(filter_call_live(call));
    if (ms > FILTER_DELAY_MAX_MS)
        ms = FILTER_DELAY_MAX_MS;
    if (ms > call->delay_ms)
        call->delay_ms = ms;
}

bool filter_txn_has_symbol(const struct filter_txn *txn, const char *prefix)
{
    size_t n = strlen(prefix);

    for (size_t i = 0; i < txn->symbol_count; i++) {
        if (strncmp(txn->symbols[i].name, prefix, n) == 0)
            return true;
    }
    return false;
}

const struct filter_txn *filter_call_txn(const struct filter_call *call)
{
    return call->txn;
}

enum filter_stage filter_call_stage(const struct filter_call *call)
{
    return call->stage;
}

bool filter_call_is_late(const struct filter_call *call)
{
    return call->late;
}

/* Room for one more symbol, or NULL (over the limit, or out of memory). */
static struct filter_symbol *filter_call_symbol_slot(struct filter_call *call)
{
    size_t n;
    struct filter_symbol *grown;

    if (call->symbol_count >= CHAIN_SYMBOLS_MAX)
        return NULL;
    if (call->symbol_count == call->symbol_alloc) {
        n = call->symbol_alloc == 0 ? 4 : call->symbol_alloc * 2;
        if (n > CHAIN_SYMBOLS_MAX)
            n = CHAIN_SYMBOLS_MAX;
        grown = realloc(call->symbols, n * sizeof(*grown));
        if (grown == NULL)
            return NULL;
        call->symbols = grown;
        call->symbol_alloc = n;
    }
    return &call->symbols[call->symbol_count++];
}

/* The score counts even when the symbol is dropped: a filter (or a client
 * that makes one fire many times) cannot lower a total by flooding. */
void filter_call_symbol(struct filter_call *call, const char *name, double score,
                        const char *text)
{
    struct filter_symbol *sym;

    assert(filter_call_live(call));
    assert(name != NULL);
    call->hit = true;
    call->score += score;
    sym = filter_call_symbol_slot(call);
    if (sym == NULL)
        return;
    snprintf(sym->name, sizeof(sym->name), "%s", name);
    sym->score = score;
    snprintf(sym->text, sizeof(sym->text), "%s", text == NULL ? "" : text);
}

bool filter_header_name_ok(const char *name)
{
    size_t n = strlen(name);

    if (n == 0 || n > FILTER_HEADER_NAME_MAX)
        return false;
    for (; *name != '\0'; name++) {
        if (*name < 33 || *name > 126 || *name == ':')
            return false;
    }
    return true;
}

/* Printable ASCII; CR LF only as a fold (followed by a space or tab). */
bool filter_header_value_ok(const char *value)
{
    if (strlen(value) > FILTER_HEADER_VALUE_MAX)
        return false;
    for (const char *p = value; *p != '\0'; p++) {
        if (*p == '\r' && p[1] == '\n' && (p[2] == ' ' || p[2] == '\t')) {
            p++;
            continue;
        }
        if ((*p < 32 && *p != '\t') || *p > 126)
            return false;
    }
    return true;
}

int filter_call_add_header(struct filter_call *call, const char *name, const char *value)
{
    struct filter_header *grown;

    assert(filter_call_live(call));
    if (!filter_header_name_ok(name) || !filter_header_value_ok(value) ||
        call->header_count >= CHAIN_HEADERS_MAX)
        return -1;
    grown = realloc(call->headers, (call->header_count + 1) * sizeof(*grown));
    if (grown == NULL)
        return -1;
    call->headers = grown;
    grown[call->header_count].name = strdup(name);
    grown[call->header_count].value = strdup(value);
    if (grown[call->header_count].name == NULL || grown[call->header_count].value == NULL) {
        free(grown[call->header_count].name);
        free(grown[call->header_count].value);
        return -1;
    }
    call->header_count++;
    return 0;
}

/* Whether code fits the action; a nonsense code gets the chain's default. */
static bool filter_reply_fits(enum filter_action action, unsigned code)
{
    switch (action) {
    case FILTER_ACTION_REJECT:
        return code >= 500 && code <= 599;
    case FILTER_ACTION_TEMPFAIL:
    case FILTER_ACTION_DISCONNECT:
        return code >= 400 && code <= 499;
    default:
        return false;
    }
}

void filter_call_action(struct filter_call *call, enum filter_action action, unsigned code,
                        const char *enhanced, const char *fmt, ...)
{
    va_list ap;

    assert(filter_call_live(call));
    assert(action >= FILTER_ACTION_NONE && action <= FILTER_ACTION_ACCEPT);
    if (action == FILTER_ACTION_NONE)
        return;
    call->hit = true;
    if (!filter_action_stronger(action, call->action))
        return;
    call->action = action;
    call->reply = (struct smtp_status){.code = 0};
    if (!filter_reply_fits(action, code))
        return;
    call->reply.code = (unsigned short)code;
    snprintf(call->reply.enhanced, sizeof(call->reply.enhanced), "%s",
             enhanced == NULL ? "" : enhanced);
    if (fmt != NULL) {
        va_start(ap, fmt);
        vsnprintf(call->reply.text, sizeof(call->reply.text), fmt, ap);
        va_end(ap);
    }
}

void filter_call_set_data(struct filter_call *call, void *data)
{
    call->data = data;
}

void *filter_call_data(const struct filter_call *call)
{
    return call->data;
}

void filter_call_done(struct filter_call *call, int result)
{
    /* twice, after cancel or timeout, or inside the stage callback: a bug */
    assert(call->state == FILTER_CALL_PENDING);
    assert(result == 1 || result == -1);
    chain_call_done(call, result);
}

bool filter_action_stronger(enum filter_action a, enum filter_action b)
{
    return a > b;
}

const char *filter_action_name(enum filter_action a)
{
    static const char *const names[] = {
        [FILTER_ACTION_NONE] = "none",
        [FILTER_ACTION_DISCARD] = "discard",
        [FILTER_ACTION_HOLD] = "hold",
        [FILTER_ACTION_QUARANTINE] = "quarantine",
        [FILTER_ACTION_TEMPFAIL] = "tempfail",
        [FILTER_ACTION_REJECT] = "reject",
        [FILTER_ACTION_DISCONNECT] = "disconnect",
        [FILTER_ACTION_ACCEPT] = "accept",
    };

    if ((unsigned)a >= sizeof(names) / sizeof(names[0]))
        return "unknown";
    return names[a];
}

const char *filter_stage_name(enum filter_stage s)
{
    static const char *const names[] = {
        [FILTER_CONNECT] = "connect", [FILTER_HELO] = "helo", [FILTER_MAIL] = "mail",
        [FILTER_RCPT] = "rcpt",       [FILTER_DATA] = "data", [FILTER_EOM] = "eom",
    };

    if ((unsigned)s >= FILTER_STAGES)
        return "unknown";
    return names[s];
}

/*
 * limits — see limits.h. Rows are per worker: sessions[] counts open
 * sessions per slot, rate[] counts connections per slot in the current
 * minute (the minute is stored with the count, so an old count reads as 0).
 */
#include "config.h"
#include "gateway/limits.h"

#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

struct limits_row {
    uint32_t total;
    uint32_t sessions[LIMITS_SLOTS];
    uint32_t rate_minute[LIMITS_SLOTS];
    uint32_t rate_count[LIMITS_SLOTS];
};

struct limits {
    unsigned workers;
    size_t mapped;
    /* 1 + the highest row ever cleared (the master clears a row before it
     * forks the row's worker): checks sum only rows[0..high), not all
     * `workers` rows, most of which never run. Each row is ~200 KB, so a
     * check over every row would touch hundreds of pages per new client
     * address (and keep them resident in every worker). */
    volatile unsigned high;
    struct limits_row rows[];
};

struct limits *limits_create(unsigned workers)
{
    size_t size = sizeof(struct limits) + (size_t)workers * sizeof(struct limits_row);
    struct limits *l = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

    if (l == MAP_FAILED)
        return NULL;
    l->workers = workers;
    l->mapped = size;
    return l;
}

void limits_destroy(struct limits **lp)
{
    if (*lp != NULL)
        munmap(*lp, (*lp)->mapped);
    *lp = NULL;
}

void limits_clear_worker(struct limits *l, unsigned worker)
{
    if (l != NULL && worker < l->workers) {
        memset(&l->rows[worker], 0, sizeof(l->rows[worker]));
        if (worker + 1 > l->high)
            l->high = worker + 1;
    }
}

static uint32_t slot_of(const struct netaddr *addr)
{
    return netaddr_hash(addr, 0x5eed) % LIMITS_SLOTS;
}

static void sum_slot(const struct limits *l, unsigned worker, uint32_t slot, uint32_t minute,
                     uint64_t *total, uint64_t *sessions, uint64_t *rate)
{
    unsigned rows = l->high > worker ? l->high : worker + 1;

    *total = *sessions = *rate = 0;
    for (unsigned w = 0; w < rows && w < l->workers; w++) {
        const volatile struct limits_row *r = &l->rows[w];
        *total += r->total;
        *sessions += r->sessions[slot];
        if (r->rate_minute[slot] == minute)
            *rate += r->rate_count[slot];
    }
}

enum limits_verdict limits_session_open(struct limits *l, unsigned worker,
                                        const struct netaddr *addr,
                                        const struct limits_config *cfg, time_t now)
{
    uint32_t slot = slot_of(addr), minute = (uint32_t)(now / 60);
    uint64_t total, sessions, rate;
    struct limits_row *row = &l->rows[worker];

    sum_slot(l, worker, slot, minute, &total, &sessions, &rate);
    if (cfg->max_sessions > 0 && total >= (uint64_t)cfg->max_sessions)
        return LIMITS_TOO_MANY_SESSIONS;
    if (!cfg->exempt && cfg->max_per_ip > 0 && sessions >= (uint64_t)cfg->max_per_ip)
        return LIMITS_TOO_MANY_FROM_IP;
    if (row->rate_minute[slot] != minute) {
        row->rate_minute[slot] = minute;
        row->rate_count[slot] = 0;
    }
    row->rate_count[slot]++;
    if (!cfg->exempt && cfg->rate_per_minute > 0 && rate + 1 > (uint64_t)cfg->rate_per_minute)
        return LIMITS_RATE_FROM_IP;
    row->total++;
    row->sessions[slot]++;
    return LIMITS_OK;
}

void limits_session_close(struct limits *l, unsigned worker, const struct netaddr *addr)
{
    struct limits_row *row = &l->rows[worker];
    uint32_t slot = slot_of(addr);

    if (row->total > 0)
        row->total--;
    if (row->sessions[slot] > 0)
        row->sessions[slot]--;
}

/*
 * spool-pool — see spool-pool.h. Taking: names are read from free/ in
 * batches of up to POOL_BATCH, and each is claimed by renaming it into
 * tmp/; a rename that finds the name gone (another process claimed it)
 * goes on with the next. Processes with an even pid go through the batch
 * from its start, those with an odd pid from its end, so that two workers
 * reading the same listing race for a name only where they meet; a name
 * found gone means they did, and the listing is read again. An empty free/ is read again after POOL_EMPTY_MS at the
 * earliest. Retiring: the files in free/ are counted with readdir once every
 * POOL_COUNT_MS, and what this process retires since is added to the count;
 * the other processes' takes only lower it, so the cap holds but for what
 * they retire in between. Once the count reaches the cap it is taken again
 * every POOL_RECOUNT_FULL_MS, so that a pool that the takers keep emptying
 * is not mistaken for a full one for long.
 */
#include "config.h"
#include "lib/spool-pool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define POOL_BATCH 64
#define POOL_NAME_MAX 40
#define POOL_EMPTY_MS 100
#define POOL_COUNT_MS 1000
#define POOL_RECOUNT_FULL_MS 10

struct spool_pool {
    int free_fd;
    DIR *dir; /* a dup of free_fd, for readdir */
    char names[POOL_BATCH][POOL_NAME_MAX + 1];
    unsigned count, next, left; /* the batch; the next to try; how many untried */
    bool backwards;
    uint64_t empty_until;       /* ms: free/ was empty, do not read it before */
    unsigned files;             /* in free/ when counted, plus retired since */
    uint64_t counted_at;        /* ms */
};

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

struct spool_pool *spool_pool_new(int free_fd)
{
    struct spool_pool *pool = calloc(1, sizeof(*pool));
    int fd;

    if (pool == NULL)
        return NULL;
    fd = fcntl(free_fd, F_DUPFD_CLOEXEC, 0);
    if (fd < 0 || (pool->dir = fdopendir(fd)) == NULL) {
        int err = errno;

        if (fd >= 0)
            close(fd);
        free(pool);
        errno = err;
        return NULL;
    }
    pool->free_fd = free_fd;
    return pool;
}

void spool_pool_free(struct spool_pool **_pool)
{
    struct spool_pool *pool = *_pool;

    if (pool == NULL)
        return;
    *_pool = NULL;
    closedir(pool->dir);
    free(pool);
}

static bool listed(const char *name)
{
    return strcmp(name, ".") != 0 && strcmp(name, "..") != 0 && strlen(name) <= POOL_NAME_MAX;
}

/* Reads the next batch of names; false when free/ has none. */
static bool refill(struct spool_pool *pool)
{
    struct dirent *de;
    uint64_t now = now_ms();

    pool->count = 0;
    if (now < pool->empty_until)
        return false;
    rewinddir(pool->dir);
    while (pool->count < POOL_BATCH && (de = readdir(pool->dir)) != NULL) {
        if (listed(de->d_name))
            strcpy(pool->names[pool->count++], de->d_name);
    }
    if (pool->count == 0) {
        pool->empty_until = now + POOL_EMPTY_MS;
        return false;
    }
    pool->backwards = getpid() % 2 == 1;
    pool->next = pool->backwards ? pool->count - 1 : 0;
    pool->left = pool->count;
    return true;
}

int spool_pool_take(struct spool_pool *pool, int to_dir_fd, const char *to_name)
{
    for (unsigned tries = 0; tries < 2 * POOL_BATCH + 1; tries++) {
        const char *name;
        int fd;

        if (pool->left == 0 && !refill(pool)) {
            errno = ENOENT;
            return -1;
        }
        name = pool->names[pool->next];
        pool->next = pool->backwards ? pool->next - 1 : pool->next + 1; /* unused at the end */
        pool->left--;
        if (renameat2(pool->free_fd, name, to_dir_fd, to_name, RENAME_NOREPLACE) < 0) {
            if (errno != ENOENT)
                return -1;
            pool->left = 0; /* another process took it: they met, read again */
            continue;
        }
        if (pool->files > 0)
            pool->files--;
        fd = openat(to_dir_fd, to_name, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
            int err = errno;

            (void)unlinkat(to_dir_fd, to_name, 0);
            errno = err;
        }
        return fd;
    }
    errno = ENOENT;
    return -1;
}

static unsigned count_files(struct spool_pool *pool)
{
    struct dirent *de;
    unsigned n = 0;

    rewinddir(pool->dir);
    while ((de = readdir(pool->dir)) != NULL) {
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            n++;
    }
    return n;
}

int spool_pool_retire(struct spool_pool *pool, int dir_fd, const char *name, uint64_t size)
{
    uint64_t now = now_ms();

    if (size <= SPOOL_POOL_FILE_MAX && strlen(name) <= POOL_NAME_MAX) {
        if (now >= pool->counted_at + POOL_COUNT_MS ||
            (pool->files >= SPOOL_POOL_MAX && now >= pool->counted_at + POOL_RECOUNT_FULL_MS)) {
            pool->files = count_files(pool);
            pool->counted_at = now;
        }
        if (pool->files < SPOOL_POOL_MAX) {
            if (renameat2(dir_fd, name, pool->free_fd, name, RENAME_NOREPLACE) == 0) {
                pool->files++;
                pool->empty_until = 0;
                return 0;
            }
            if (errno == ENOENT)
                return -1;
        } /* else full, or the rename failed: unlinked instead */
    }
    return unlinkat(dir_fd, name, 0);
}

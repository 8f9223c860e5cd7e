/*
 * listener — see listener.h.
 */
#include "config.h"
#include "gateway/listener.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gateway/server-config.h"

static evutil_socket_t bind_one(const char *address, char *error, size_t errsize)
{
    struct sockaddr_storage ss;
    int len, one = 1;
    evutil_socket_t fd;

    if (postern_listener_address_parse(address, &ss, &len, 0) < 0) {
        snprintf(error, errsize, "bad listener address %s", address);
        return -1;
    }
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(error, errsize, "socket for %s: %s", address, strerror(errno));
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) {
        snprintf(error, errsize, "SO_REUSEPORT on %s: %s", address, strerror(errno));
        close(fd);
        return -1;
    }
    if (ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&ss, (socklen_t)len) < 0 || listen(fd, 1024) < 0) {
        snprintf(error, errsize, "bind %s: %s", address, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static evutil_socket_t take_old(struct listener_socket *old, size_t old_count, const char *address,
                                unsigned lane)
{
    for (size_t i = 0; i < old_count; i++) {
        if (old[i].fd >= 0 && old[i].lane == lane && strcmp(old[i].address, address) == 0) {
            evutil_socket_t fd = old[i].fd;
            old[i].fd = -1;
            return fd;
        }
    }
    return -1;
}

/* A failed reload: the sockets taken from old go back there, so that the
 * running configuration (and the workers it starts later) keeps them. */
static void give_back(struct listener_socket *old, size_t old_count, struct listener_socket *socks,
                      size_t count)
{
    for (size_t k = 0; k < count; k++) {
        for (size_t i = 0; i < old_count && socks[k].fd >= 0; i++) {
            if (old[i].fd < 0 && old[i].lane == socks[k].lane &&
                strcmp(old[i].address, socks[k].address) == 0) {
                old[i].fd = socks[k].fd;
                socks[k].fd = -1;
            }
        }
    }
}

int listeners_bind(const struct postern_config *cfg, unsigned lanes, struct listener_socket *old,
                   size_t old_count, struct listener_socket **socks_r, size_t *count_r,
                   char *error, size_t errsize)
{
    size_t n = 0, total = 0;
    struct listener_socket *socks;

    for (size_t i = 0; i < cfg->listener_count; i++)
        total += cfg->listeners[i].address.count * lanes;
    socks = calloc(total + 1, sizeof(*socks));
    if (socks == NULL) {
        snprintf(error, errsize, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < cfg->listener_count; i++) {
        const struct listener_settings *l = &cfg->listeners[i];
        for (size_t j = 0; j < l->address.count; j++) {
            for (unsigned lane = 0; lane < lanes; lane++, n++) {
                const char *address = l->address.items[j];
                socks[n].settings = l;
                socks[n].lane = lane;
                snprintf(socks[n].address, sizeof(socks[n].address), "%s", address);
                socks[n].fd = take_old(old, old_count, address, lane);
                if (socks[n].fd < 0 && (socks[n].fd = bind_one(address, error, errsize)) < 0) {
                    give_back(old, old_count, socks, n);
                    listeners_close(&socks, n);
                    return -1;
                }
            }
        }
    }
    *socks_r = socks;
    *count_r = n;
    return 0;
}

size_t listeners_keep_lane(struct listener_socket *socks, size_t count, unsigned lane)
{
    size_t kept = 0;

    for (size_t i = 0; i < count; i++) {
        if (socks[i].lane != lane) {
            if (socks[i].fd >= 0)
                close(socks[i].fd);
            continue;
        }
        socks[kept++] = socks[i];
    }
    return kept;
}

void listeners_close(struct listener_socket **socks, size_t count)
{
    if (*socks == NULL)
        return;
    for (size_t i = 0; i < count; i++) {
        if ((*socks)[i].fd >= 0)
            close((*socks)[i].fd);
    }
    free(*socks);
    *socks = NULL;
}

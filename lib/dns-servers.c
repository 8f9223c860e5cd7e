/*
 * dns-servers — see dns-servers.h. Each entry is split into host and port
 * text, then the host must be an address literal of the form's family.
 */
#include "config.h"
#include "lib/dns-servers.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>

/* Port text of a nameserver: 1..65535, digits only. */
static int dns_port_parse(const char *text, int *port_r)
{
    unsigned long v;
    char *end;

    if (text[0] < '0' || text[0] > '9')
        return -1;
    v = strtoul(text, &end, 10);
    if (*end != '\0' || v == 0 || v > 65535)
        return -1;
    *port_r = (int)v;
    return 0;
}

/* Splits "ip", "ip:port" (IPv4 only), "[ipv6]" or "[ipv6]:port". */
static int dns_server_split(const char *text, char *host, size_t hostsize, const char **port_r)
{
    const char *sep;
    size_t hlen;

    *port_r = NULL;
    if (text[0] == '[') {
        sep = strchr(text, ']');
        if (sep == NULL || (sep[1] != '\0' && sep[1] != ':'))
            return -1;
        if (sep[1] == ':')
            *port_r = sep + 2;
        hlen = (size_t)(sep - text - 1);
        text++;
    } else {
        sep = strchr(text, ':');
        if (sep != NULL && strchr(sep + 1, ':') != NULL)
            sep = NULL; /* a bare IPv6 address */
        if (sep != NULL)
            *port_r = sep + 1;
        hlen = sep != NULL ? (size_t)(sep - text) : strlen(text);
    }
    if (hlen == 0 || hlen >= hostsize)
        return -1;
    memcpy(host, text, hlen);
    host[hlen] = '\0';
    return 0;
}

static int dns_server_parse(const char *text, struct ares_addr_port_node *node)
{
    char host[INET6_ADDRSTRLEN];
    const char *port;
    int portnum = 0; /* c-ares: 0 = 53 */
    bool bracket = text[0] == '[';

    if (dns_server_split(text, host, sizeof(host), &port) < 0)
        return -1;
    if (port != NULL && dns_port_parse(port, &portnum) < 0)
        return -1;
    if (!bracket && inet_pton(AF_INET, host, &node->addr.addr4) == 1)
        node->family = AF_INET;
    else if ((bracket || port == NULL) && inet_pton(AF_INET6, host, &node->addr.addr6) == 1)
        node->family = AF_INET6;
    else
        return -1;
    node->udp_port = portnum;
    node->tcp_port = portnum;
    return 0;
}

int dns_servers_set(ares_channel channel, const struct dns_config *cfg, char *error, size_t errsize)
{
    size_t count = cfg->nameserver_count;
    struct ares_addr_port_node *nodes;
    int rc;

    if (count == 0)
        return 0;
    nodes = cfg->nameservers != NULL ? calloc(count, sizeof(*nodes)) : NULL;
    if (nodes == NULL) {
        snprintf(error, errsize, "dns: no memory for %zu nameservers", count);
        return -1;
    }
    for (size_t i = 0; i < count; i++) {
        const char *text = cfg->nameservers[i] != NULL ? cfg->nameservers[i] : "";
        if (dns_server_parse(text, &nodes[i]) < 0) {
            snprintf(error, errsize,
                     "dns: bad nameserver \"%.80s\" (want ip, ip:port or [ipv6]:port)", text);
            free(nodes);
            return -1;
        }
        nodes[i].next = i + 1 < count ? &nodes[i + 1] : NULL;
    }
    rc = ares_set_servers_ports(channel, nodes);
    free(nodes);
    if (rc != ARES_SUCCESS) {
        snprintf(error, errsize, "dns: setting nameservers: %s", ares_strerror(rc));
        return -1;
    }
    return 0;
}

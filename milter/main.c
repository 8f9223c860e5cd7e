/*
 * postern-milter — Postern's filter chain as a milter for Postfix or
 * Sendmail. Parses the command line and hands over to pmilter.c; nothing
 * else lives here.
 */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "milter/pmilter.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: postern-milter -l SOCKET [-c FILE] [--filters ID,ID] [-T DIR] [-t MS] [-V]\n"
            "  -l SOCKET        where to listen: inet:PORT@127.0.0.1, inet6:PORT@::1,\n"
            "                   unix:/path (libmilter's syntax)\n"
            "  -c FILE          posternd's configuration (default %s/postern.conf)\n"
            "  --filters ID,ID  the filters to run, in order (default: every one)\n"
            "  -T DIR           where messages are collected (default $TMPDIR or /tmp)\n"
            "  -t MS            stage timeout (default: the longest filter timeout + 5000)\n"
            "  -V               print the version\n",
            SYSCONFDIR);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {{"filters", required_argument, NULL, 'f'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    struct pmilter_options o = {.config_path = SYSCONFDIR "/postern.conf"};
    char *end;
    int opt;

    while ((opt = getopt_long(argc, argv, "c:l:T:t:hV", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            o.config_path = optarg;
            break;
        case 'l':
            o.socket = optarg;
            break;
        case 'f':
            o.filters = optarg;
            break;
        case 'T':
            o.tmp_dir = optarg;
            break;
        case 't':
            o.timeout_ms = (unsigned)strtoul(optarg, &end, 10);
            if (*end != '\0' || o.timeout_ms == 0 || o.timeout_ms > 3600000) {
                fprintf(stderr, "postern-milter: -t wants 1..3600000 ms\n");
                return 2;
            }
            break;
        case 'V':
            printf("postern-milter %s\n", PACKAGE_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc || o.socket == NULL) {
        usage(stderr);
        return 2;
    }
    return pmilter_run(&o);
}

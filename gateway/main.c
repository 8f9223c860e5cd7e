/*
 * posternd — Postern's daemon. Parses the command line and hands over to
 * the master (gateway/master.c); nothing else lives here.
 */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "gateway/master.h"
#include "gateway/server-config.h"

static void usage(FILE *out)
{
    fprintf(out, "usage: posternd [-c FILE] [-t] [--list-keys] [-V]\n"
                 "  -c FILE      configuration (default %s/postern.conf)\n"
                 "  -t           check the configuration and exit (errors as file:line)\n"
                 "  --list-keys  print every configuration key with its default\n"
                 "  -V           print the version\n",
            SYSCONFDIR);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = { { "list-keys", no_argument, NULL, 'K' },
                                              { "help", no_argument, NULL, 'h' },
                                              { NULL, 0, NULL, 0 } };
    const char *path = SYSCONFDIR "/postern.conf";
    int opt, check = 0;

    while ((opt = getopt_long(argc, argv, "c:thV", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            path = optarg;
            break;
        case 't':
            check = 1;
            break;
        case 'K':
            postern_config_describe(stdout);
            return 0;
        case 'V':
            printf("posternd %s\n", PACKAGE_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    return check ? master_check_config(path) : master_run(path);
}

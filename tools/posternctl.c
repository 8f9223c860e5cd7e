/*
 * posternctl — Postern's admin command. Parses the command line, loads the
 * configuration for the spool's place, and hands over to the command's
 * module (tools/queue-ctl.c for "queue").
 */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "gateway/server-config.h"
#include "tools/queue-ctl.h"

static int usage(FILE *out)
{
    fprintf(out, "usage: posternctl [-c FILE] queue list | show ID | flush [ID] | delete ID |"
                 " hold ID | release ID\n");
    return 2;
}

int main(int argc, char **argv)
{
    const char *path = SYSCONFDIR "/postern.conf";
    struct cfg_errors errs = { 0 };
    struct postern_config *cfg;
    int opt, rc;

    while ((opt = getopt(argc, argv, "+c:h")) != -1) {
        if (opt == 'c')
            path = optarg;
        else
            return usage(opt == 'h' ? stdout : stderr);
    }
    if (optind >= argc || strcmp(argv[optind], "queue") != 0)
        return usage(stderr);
    cfg = postern_config_load(path, &errs);
    cfg_errors_print(&errs, stderr);
    cfg_errors_clear(&errs);
    if (cfg == NULL)
        return 1;
    rc = queue_ctl(cfg->server.spool_dir, argc - optind - 1, argv + optind + 1, stdout, stderr);
    postern_config_free(&cfg);
    return rc;
}

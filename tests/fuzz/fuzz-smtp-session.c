/*
 * fuzz-smtp-session — drives a whole SMTP session from fuzz input: the bytes
 * go to a session on a bufferevent pair (as a client would send them), the
 * loop runs until the session is idle, the client side closes, and replies
 * are thrown away. Any crash, leak or sanitizer report is a finding.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "gateway/listener.h"
#include "gateway/server-config.h"
#include "gateway/smtp-session.h"
#include "gateway/worker.h"
#include "lib/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct {
    struct postern_config *cfg;
    struct worker w;
    struct listener_socket sock;
    char dir[64];
} fz;

static void setup(void)
{
    char path[128], error[256];
    struct cfg_errors errs = { 0 };
    FILE *f;

    snprintf(fz.dir, sizeof(fz.dir), "/tmp/fuzz-smtp-XXXXXX");
    if (mkdtemp(fz.dir) == NULL)
        abort();
    snprintf(path, sizeof(path), "%s/postern.conf", fz.dir);
    f = fopen(path, "w");
    fprintf(f, "server = { hostname = \"fuzz.test\"; spool_dir = \"%s/spool\"; "
               "spool_min_free = 0; };\n"
               "smtp = { message_size_limit = \"64K\"; error_limit = 1000; };\n"
               "relay = { local_domains = [\"example.test\"]; };\n"
               "listeners = ( { name = \"mx\"; address = [\"127.0.0.1:1\"]; } );\n",
            fz.dir);
    fclose(f);
    log_setup("fuzz", LOG_TARGET_STDERR, NULL, LOG_LEVEL_ERROR);
    fz.cfg = postern_config_load(path, &errs);
    if (fz.cfg == NULL || worker_init(&fz.w, fz.cfg, 0, NULL, error, sizeof(error)) < 0)
        abort();
    fz.sock.settings = &fz.cfg->listeners[0];
    fz.sock.fd = -1;
}

static void run_loop(void)
{
    for (int i = 0; i < 8; i++)
        event_base_loop(fz.w.base, EVLOOP_NONBLOCK);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct bufferevent *pair[2];
    struct sockaddr_in peer = { .sin_family = AF_INET, .sin_port = htons(40000) };

    if (fz.cfg == NULL)
        setup();
    inet_pton(AF_INET, "192.0.2.1", &peer.sin_addr);
    if (bufferevent_pair_new(fz.w.base, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS, pair) < 0)
        return 0;
    smtp_session_new(&fz.w, &fz.sock, pair[0], (struct sockaddr *)&peer, sizeof(peer));
    bufferevent_enable(pair[1], EV_READ | EV_WRITE);
    bufferevent_write(pair[1], data, size);
    run_loop();
    usleep(0);
    run_loop(); /* spool commits come back from their thread */
    bufferevent_free(pair[1]);
    run_loop();
    return 0;
}

/*
 * smtp-client-test — what the smtp-client tests share: an event loop with
 * the client's callbacks recorded in a fixture, messages in a spool-like
 * file, and Postfix's smtp-sink started on a free loopback port with its
 * dumps read back. Used by test-smtp-client.c (against smtp-sink) and
 * test-smtp-client-script.c (against a scripted fault-injection server).
 */
#ifndef POSTERN_SMTP_CLIENT_TEST_H
#define POSTERN_SMTP_CLIENT_TEST_H

#include "config.h"
#include "relay/smtp-client-private.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "lib/smtp-params.h"

#define SINK_PATH "/usr/sbin/smtp-sink"
#define MAX_RCPTS 8
#define N_ELEMENTS(a) (sizeof(a) / sizeof((a)[0]))

struct sink {
    pid_t pid;
    int port;
    char dir[64];
};

struct fixture {
    struct sink sink; /* stopped by teardown if a test fails */
    struct event_base *base;
    struct event *guard;
    bool done, timed_out;
    struct smtp_status ready;
    size_t n;
    enum smtp_rcpt_outcome outcome[MAX_RCPTS];
    struct smtp_status status[MAX_RCPTS];
    bool usable;
};

struct test_msg {
    char path[64];
    struct smtp_client_msg m;
};

void on_guard(evutil_socket_t fd, short what, void *arg);
int setup(void **state);
int teardown(void **state);
void on_ready(void *ctx, struct smtp_client *c, const struct smtp_status *st);
void on_sent(void *ctx, struct smtp_client *c, const struct smtp_client_result *res);
void run_loop(struct fixture *f);
struct smtp_client_config default_config(void);
struct smtp_client *open_client(struct fixture *f, int port,
                                       const struct smtp_client_config *cfg);
void send_msg(struct fixture *f, struct smtp_client *c, const struct smtp_client_msg *m);
void close_client(struct fixture *f, struct smtp_client **c);
void assert_outcome(const struct fixture *f, size_t i, enum smtp_rcpt_outcome o,
                           unsigned code, const char *enhanced);
void msg_init(struct test_msg *t, const char *content, size_t len, const char *const *rcpts,
                     size_t n);
void msg_free(struct test_msg *t);
int free_port(void);
bool port_open(int port);
void sink_exec(const struct sink *s, const char *const *opts);
void sink_start(struct sink *s, const char *const *opts);
void sink_stop(struct sink *s);
char *read_file(const char *path);
char *sink_find(const struct sink *s, const char *marker, size_t *count);
size_t sink_count(const struct sink *s);
const char *dump_body(const char *dump);
void assert_dump(const struct sink *s, const char *marker, const char *body,
                        const char *mail_args);

extern const char *const two_rcpts[2];
extern const char tricky[];
extern const char tricky_dump[];

#endif

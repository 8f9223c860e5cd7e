/*
 * milter-conn — one session's socket to its milter: a non-blocking
 * connect (TCP_NODELAY on TCP), a bufferevent on the worker's loop, whole
 * frames cut from the input (milter_frame_parse: the length is checked
 * before the frame is buffered) and handed to milter.c, and one timer that
 * is the reply timeout while a stage runs and the idle timeout between
 * stages. Everything queued before control goes back to the loop leaves in
 * one write: a command's macros and the command, and the commands that
 * need no reply before the next one. On TCP: TCP_NODELAY, and TCP_QUICKACK
 * after every read and write (see quickack()), so that neither side's
 * small writes wait for a delayed ACK.
 */
#include "config.h"
#include "filters/milter-private.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

/* Our ACKs go out at once instead of up to 40 ms later: a milter does not
 * set TCP_NODELAY, and libmilter writes each reply frame by itself (a
 * modification, then the final reply), so its second small write waits in
 * Nagle's algorithm for our ACK of the first. Linux leaves quick-ACK mode
 * again on its own (when it sees us answer data with data), so this is
 * set anew after each of our writes and reads. */
static void quickack(struct milter_sess *s)
{
#ifdef TCP_QUICKACK
    int one = 1;

    if (s->bev != NULL && s->m->addr.tcp)
        (void)setsockopt(bufferevent_getfd(s->bev), IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
#else
    (void)s;
#endif
}

/* The size of the frame at the start of in (4 + its length field), 0 while
 * its 4 length bytes are not all in, -1 when the length is out of bounds
 * (known before the frame is buffered). */
static long frame_size(struct evbuffer *in)
{
    uint8_t head[4];
    struct milter_frame f;

    if (evbuffer_get_length(in) < 4)
        return 0;
    evbuffer_copyout(in, head, 4);
    if (milter_frame_parse(head, 4, &f) < 0)
        return -1;
    return 4 + (long)((uint32_t)head[0] << 24 | (uint32_t)head[1] << 16 | (uint32_t)head[2] << 8 |
                      head[3]);
}

static void on_read(struct bufferevent *bev, void *arg)
{
    struct milter_sess *s = arg;
    struct evbuffer *in = bufferevent_get_input(bev);

    quickack(s);
    while (s->bev == bev) {
        long size = frame_size(in);
        const uint8_t *p;
        struct milter_frame f;

        if (size < 0) {
            milter_sess_conn_error(s, "frame length 0 or over the limit");
            return;
        }
        if (size == 0 || evbuffer_get_length(in) < (size_t)size)
            return;
        if ((p = evbuffer_pullup(in, (ssize_t)size)) == NULL) {
            milter_sess_conn_error(s, "out of memory");
            return;
        }
        if (milter_frame_parse(p, (size_t)size, &f) != size) { /* cannot happen */
            milter_sess_conn_error(s, "bad frame");
            return;
        }
        milter_sess_frame(s, &f);
        if (s->bev != bev)
            return; /* closed while handling the frame: in is gone */
        evbuffer_drain(in, (size_t)size);
    }
}

static void on_write(struct bufferevent *bev, void *arg)
{
    struct milter_sess *s = arg;

    (void)bev;
    quickack(s);
    milter_sess_drained(s);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    struct milter_sess *s = arg;
    char why[128];
    int err = EVUTIL_SOCKET_ERROR();

    (void)bev;
    if (what & BEV_EVENT_CONNECTED)
        return;
    if (what & BEV_EVENT_EOF)
        snprintf(why, sizeof(why), "connection closed by the milter");
    else
        snprintf(why, sizeof(why), "%s: %s", s->ready ? "connection lost" : "cannot connect",
                 err != 0 ? strerror(err) : "error");
    milter_sess_conn_error(s, why);
}

int milter_conn_open(struct milter_sess *s, const char **why)
{
    const struct milter_address *a = &s->m->addr;
    int one = 1;
    int fd;

    fd = socket(a->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        *why = strerror(errno);
        return -1;
    }
    /* small writes that wait for the milter's reply must not wait for an
     * ACK the milter delays: no Nagle */
    if (a->tcp && setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0) {
        *why = strerror(errno);
        close(fd);
        return -1;
    }
    if ((s->bev = bufferevent_socket_new(s->m->base, fd, BEV_OPT_CLOSE_ON_FREE)) == NULL) {
        close(fd);
        *why = "out of memory";
        return -1;
    }
    bufferevent_setcb(s->bev, on_read, on_write, on_event, s);
    if (bufferevent_enable(s->bev, EV_READ | EV_WRITE) < 0 ||
        bufferevent_socket_connect(s->bev, (const struct sockaddr *)&a->sa, (int)a->len) < 0) {
        *why = strerror(errno != 0 ? errno : ECONNREFUSED);
        milter_conn_close(s, false);
        return -1;
    }
    if (milter_put_optneg(bufferevent_get_output(s->bev), MILTER_VERSION, MILTER_ACT_ALL,
                          MILTER_P_OFFERED) < 0) {
        *why = "out of memory";
        milter_conn_close(s, false);
        return -1;
    }
    return 0;
}

void milter_conn_close(struct milter_sess *s, bool quit)
{
    if (s->bev == NULL)
        return;
    if (quit && s->ready) {
        /* best effort, without waiting: the write is tried at once */
        struct evbuffer *out = bufferevent_get_output(s->bev);
        if (milter_put_empty(out, MILTER_CMD_QUIT) == 0)
            (void)evbuffer_write(out, bufferevent_getfd(s->bev));
    }
    bufferevent_free(s->bev);
    s->bev = NULL;
    s->ready = false;
    s->connect_sent = false;
    s->in_txn = false;
    s->data_sent = false;
    s->msg_accepted = false;
    s->waiting = false;
    s->wait_write = false;
    for (size_t i = 0; i < MILTER_M_COUNT; i++) {
        milter_names_free(&s->asked[i]);
        s->asked_set[i] = false;
    }
}

struct evbuffer *milter_conn_out(struct milter_sess *s)
{
    return bufferevent_get_output(s->bev);
}

size_t milter_conn_pending(struct milter_sess *s)
{
    return evbuffer_get_length(bufferevent_get_output(s->bev));
}

void milter_conn_timer(struct milter_sess *s, unsigned ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};

    if (s->timer == NULL)
        return;
    if (ms == 0)
        evtimer_del(s->timer);
    else
        evtimer_add(s->timer, &tv);
}

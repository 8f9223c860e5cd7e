/*
 * smtp-session — one SMTP server session (RFC 5321) on a bufferevent: the
 * state machine, the input loop, replies, timeouts, STARTTLS, and the hand-off
 * of each stage to the hooks (the filter chain's seat).
 *
 * Created by the worker for each accepted connection (or by the fuzz target
 * on a bufferevent pair). SECURITY: talks to untrusted clients; every line,
 * parameter and byte of data is bounded by the config before it is buffered.
 */
#ifndef POSTERN_SMTP_SESSION_H
#define POSTERN_SMTP_SESSION_H

#include <sys/socket.h>

struct bufferevent;
struct worker;
struct listener_socket;
struct smtp_session;

/* Starts a session on bev (which the session then owns). peer is the
 * client's address (from accept). Returns NULL when out of memory (bev is
 * freed). */
struct smtp_session *smtp_session_new(struct worker *w, const struct listener_socket *ls,
                                      struct bufferevent *bev, const struct sockaddr *peer,
                                      socklen_t peer_len);

/* SIGTERM: an idle session gets "421 4.3.2" and closes now; a session in
 * DATA is aborted the same way (nothing was acknowledged); a session waiting
 * for its spool commit answers 250 first and closes after. */
void smtp_session_shutdown(struct smtp_session *s);

/* Frees a session at once, without a reply (its worker is going away);
 * clears *s. Not from inside the session's own callbacks. */
void smtp_session_destroy(struct smtp_session **s);

/* Accessors for hooks and logs. */
const char *smtp_session_client_addr(const struct smtp_session *s);
const char *smtp_session_queue_id(const struct smtp_session *s);

#endif

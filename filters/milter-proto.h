/*
 * milter-proto — the milter wire protocol (version 6, as Sendmail's
 * libmilter speaks it), MTA side: the framing, the commands Postern sends
 * and a pure decoder of the milter's replies. No sockets and no state here:
 * filters/milter.c runs the session.
 *
 * A frame is a 32-bit big-endian length (counting the command byte), one
 * command byte, then length - 1 bytes of data. Strings in the data are
 * NUL-terminated; integers are 32-bit big-endian (the port of CONNECT is
 * 16-bit).
 *
 * SECURITY: milter_frame_parse and milter_reply_decode read what an external
 * program sends over a socket. Every length is checked before it is used (a
 * frame longer than MILTER_FRAME_MAX is refused before it is buffered),
 * every string must end inside its frame, and replies that Postern never
 * asked for (modifications outside end of message, flags it did not offer)
 * are refused by the caller, which knows the state.
 */
#ifndef POSTERN_MILTER_PROTO_H
#define POSTERN_MILTER_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/smtp-reply.h"

struct evbuffer;

#define MILTER_VERSION 6
/* Longest frame accepted from a milter (length field, i.e. command byte +
 * data). Postern does not offer SMFIP_MDS_256K/1M, so a well-behaved
 * milter sends at most 64 KiB; 1 MiB leaves room and still bounds memory. */
#define MILTER_FRAME_MAX (1024u * 1024u)
/* Largest data Postern puts in one frame (libmilter refuses more than its
 * MILTER_MAX_DATA_SIZE of 65535 without the MDS flags). */
#define MILTER_CHUNK_MAX 65535u

/* Commands, MTA to milter (SMFIC_*). */
enum milter_cmd {
    MILTER_CMD_ABORT = 'A',
    MILTER_CMD_BODY = 'B',
    MILTER_CMD_CONNECT = 'C',
    MILTER_CMD_MACRO = 'D',
    MILTER_CMD_BODYEOB = 'E',
    MILTER_CMD_HELO = 'H',
    MILTER_CMD_QUIT_NC = 'K',
    MILTER_CMD_HEADER = 'L',
    MILTER_CMD_MAIL = 'M',
    MILTER_CMD_EOH = 'N',
    MILTER_CMD_OPTNEG = 'O',
    MILTER_CMD_QUIT = 'Q',
    MILTER_CMD_RCPT = 'R',
    MILTER_CMD_DATA = 'T',
    MILTER_CMD_UNKNOWN = 'U',
};

/* Replies, milter to MTA (SMFIR_*). */
enum milter_rep {
    MILTER_REP_ADDRCPT = '+',
    MILTER_REP_DELRCPT = '-',
    MILTER_REP_ADDRCPT_PAR = '2',
    MILTER_REP_SHUTDOWN = '4',
    MILTER_REP_ACCEPT = 'a',
    MILTER_REP_REPLBODY = 'b',
    MILTER_REP_CONTINUE = 'c',
    MILTER_REP_DISCARD = 'd',
    MILTER_REP_CHGFROM = 'e',
    MILTER_REP_CONN_FAIL = 'f',
    MILTER_REP_ADDHEADER = 'h',
    MILTER_REP_INSHEADER = 'i',
    MILTER_REP_SETSYMLIST = 'l',
    MILTER_REP_CHGHEADER = 'm',
    MILTER_REP_OPTNEG = 'O',
    MILTER_REP_PROGRESS = 'p',
    MILTER_REP_QUARANTINE = 'q',
    MILTER_REP_REJECT = 'r',
    MILTER_REP_SKIP = 's',
    MILTER_REP_TEMPFAIL = 't',
    MILTER_REP_REPLYCODE = 'y',
};

/* Actions a milter may take (SMFIF_*), offered in OPTNEG. */
#define MILTER_ACT_ADDHDRS 0x001u
#define MILTER_ACT_CHGBODY 0x002u
#define MILTER_ACT_ADDRCPT 0x004u
#define MILTER_ACT_DELRCPT 0x008u
#define MILTER_ACT_CHGHDRS 0x010u
#define MILTER_ACT_QUARANTINE 0x020u
#define MILTER_ACT_CHGFROM 0x040u
#define MILTER_ACT_ADDRCPT_PAR 0x080u
#define MILTER_ACT_SETSYMLIST 0x100u
#define MILTER_ACT_ALL 0x1ffu

/* Protocol steps and flags (SMFIP_*). */
#define MILTER_P_NOCONNECT 0x00000001u
#define MILTER_P_NOHELO 0x00000002u
#define MILTER_P_NOMAIL 0x00000004u
#define MILTER_P_NORCPT 0x00000008u
#define MILTER_P_NOBODY 0x00000010u
#define MILTER_P_NOHDRS 0x00000020u
#define MILTER_P_NOEOH 0x00000040u
#define MILTER_P_NR_HDR 0x00000080u
#define MILTER_P_NOUNKNOWN 0x00000100u
#define MILTER_P_NODATA 0x00000200u
#define MILTER_P_SKIP 0x00000400u
#define MILTER_P_RCPT_REJ 0x00000800u
#define MILTER_P_NR_CONN 0x00001000u
#define MILTER_P_NR_HELO 0x00002000u
#define MILTER_P_NR_MAIL 0x00004000u
#define MILTER_P_NR_RCPT 0x00008000u
#define MILTER_P_NR_DATA 0x00010000u
#define MILTER_P_NR_UNKN 0x00020000u
#define MILTER_P_NR_EOH 0x00040000u
#define MILTER_P_NR_BODY 0x00080000u
#define MILTER_P_HDR_LEADSPC 0x00100000u
/* What Postern offers: every step may be skipped or left unanswered, SKIP
 * is understood, header values may keep their leading space. Not offered:
 * RCPT_REJ (the chain does not show a filter the recipients others refused)
 * and the MDS flags (frames stay within 64 KiB). */
#define MILTER_P_OFFERED                                                                           \
    (MILTER_P_NOCONNECT | MILTER_P_NOHELO | MILTER_P_NOMAIL | MILTER_P_NORCPT | MILTER_P_NOBODY |  \
     MILTER_P_NOHDRS | MILTER_P_NOEOH | MILTER_P_NR_HDR | MILTER_P_NOUNKNOWN | MILTER_P_NODATA |   \
     MILTER_P_SKIP | MILTER_P_NR_CONN | MILTER_P_NR_HELO | MILTER_P_NR_MAIL | MILTER_P_NR_RCPT |   \
     MILTER_P_NR_DATA | MILTER_P_NR_UNKN | MILTER_P_NR_EOH | MILTER_P_NR_BODY |                    \
     MILTER_P_HDR_LEADSPC)

/* The stages of a macro list the milter asks for (SMFIM_*, in SETSYMLIST). */
enum milter_macro_stage {
    MILTER_M_CONNECT,
    MILTER_M_HELO,
    MILTER_M_MAIL,
    MILTER_M_RCPT,
    MILTER_M_DATA,
    MILTER_M_EOM,
    MILTER_M_EOH,
    MILTER_M_COUNT
};

/* One frame found in a byte stream; data points into the stream. */
struct milter_frame {
    char cmd;
    const uint8_t *data;
    size_t len; /* of data, without the command byte */
};

/* Looks for one frame at the start of buf. Returns its total size (4 + the
 * length field) with *f filled, 0 when more bytes are needed (buf holds
 * less than a frame; at most 4 + MILTER_FRAME_MAX are ever needed), or -1
 * when the length field is 0 or over MILTER_FRAME_MAX (checked as soon as
 * the 4 bytes are in, before anything is buffered). */
long milter_frame_parse(const uint8_t *buf, size_t len, struct milter_frame *f);

/* A decoded reply. Pointers go into the frame's data. */
struct milter_reply {
    char cmd; /* enum milter_rep */
    /* OPTNEG */
    uint32_t version, actions, protocol;
    const char *symlist[MILTER_M_COUNT]; /* macro names per stage, or NULL */
    /* ADDHEADER, INSHEADER, CHGHEADER */
    uint32_t index;
    const char *name, *value;
    /* ADDRCPT, ADDRCPT_PAR, DELRCPT, CHGFROM: the address; args (PAR, CHGFROM) or NULL */
    const char *addr, *args;
    /* REPLBODY */
    const uint8_t *body;
    size_t body_len;
    /* REPLYCODE: the raw reply; QUARANTINE: the reason */
    const char *text;
};

/* Decodes f into r. Returns 0, or -1 with *error_r (a static string) for an
 * unknown reply or a malformed one (missing or extra strings, a string that
 * does not end in the frame, bad lengths). Checks shapes only. */
int milter_reply_decode(const struct milter_frame *f, struct milter_reply *r, const char **error_r);

/* Parses a REPLYCODE text: one line "550 5.7.1 text" or several
 * "550-5.7.1 one\r\n550 5.7.1 two" (LF alone accepted), every line with the
 * same 4xx or 5xx code, printable ASCII; the enhanced code, when there is
 * one, of the same class. Into st: the code, the enhanced code and the
 * lines' texts joined with '\n' (cut to fit). Returns 0, or -1 with
 * *error_r. */
int milter_replycode_parse(const char *text, struct smtp_status *st, const char **error_r);

/* The name of a reply or command byte for logs ("reject", "optneg", ...). */
const char *milter_rep_name(char cmd);

/* ---- encoding: each appends one whole frame to out; 0, or -1 when out
 * of memory or the data would pass MILTER_CHUNK_MAX ---- */

int milter_put_empty(struct evbuffer *out, char cmd);
int milter_put_optneg(struct evbuffer *out, uint32_t version, uint32_t actions, uint32_t protocol);
/* CONNECT: hostname, family ('4', '6', 'L' or 'U'), port, address (not
 * sent for 'U'). */
int milter_put_connect(struct evbuffer *out, const char *hostname, char family, uint16_t port,
                       const char *addr);
/* A command whose data is n NUL-terminated strings (HELO, MAIL, RCPT,
 * HEADER). */
int milter_put_strings(struct evbuffer *out, char cmd, const char *const *strs, size_t n);
/* MACRO for command cmd: the name/value pairs (names as "j" or "{name}"). */
int milter_put_macros(struct evbuffer *out, char cmd, const char *const *names,
                      const char *const *values, size_t n);
/* BODY: raw bytes (len <= MILTER_CHUNK_MAX). */
int milter_put_body(struct evbuffer *out, const void *data, size_t len);

#endif

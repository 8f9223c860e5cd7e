/*
 * spamd-reply — the spamd protocol as the spamd filter speaks it: the
 * request's header (SPAMC/1.5) and the parser of spamd's response.
 *
 * A response is a status line "SPAMD/1.x <code> <text>", header lines
 * ("Content-length: N", "Spam: True ; 20.0 / 5.0"), an empty line and a
 * body whose form depends on the command: SYMBOLS gives the names of the
 * rules that hit, comma-separated; REPORT gives SpamAssassin's report text,
 * from whose table (" pts rule name  description", a "----" line, then a
 * line per rule) the names and points are taken; HEADERS gives the header
 * fields SpamAssassin would add, from whose X-Spam-Status "tests=" list the
 * names are taken. A report or header part without that table or list
 * gives no rule names (the templates are configurable); a SYMBOLS body
 * that is not a list of rule names is an error.
 *
 * The response comes from the network and is not trusted: the parser
 * works on a bounded buffer (the caller stops reading past
 * SPAMD_REPLY_MAX), bounds every line, count and number, and answers
 * either a complete, valid reply or an error; never a score it did not
 * read. A spamd error code (non-zero, e.g. "76 Bad header line") is an
 * error too. Pure functions: called by spamd.c and the fuzz target.
 */
#ifndef POSTERN_SPAMD_REPLY_H
#define POSTERN_SPAMD_REPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The order of the values of the filter's command key. */
enum spamd_command { SPAMD_CMD_SYMBOLS, SPAMD_CMD_REPORT, SPAMD_CMD_HEADERS };

#define SPAMD_REPLY_MAX (256 * 1024) /* a whole response, header and body */
#define SPAMD_REPLY_HEAD_MAX 8192    /* status line and header lines */
#define SPAMD_REPLY_LINES_MAX 32     /* header lines */
#define SPAMD_RULES_MAX 64           /* rule names kept; more are counted */
#define SPAMD_RULE_MAX 128           /* longest rule name accepted */
#define SPAMD_SCORE_MAX 1000000.0    /* |score|, |threshold|, |points| */
#define SPAMD_USER_MAX 64            /* the User: value */
#define SPAMD_TEXT_MAX 128           /* the status line's text kept */

struct spamd_rule {
    char name[SPAMD_RULE_MAX + 1]; /* [A-Za-z0-9_]+ */
    bool has_points;               /* REPORT: the rule's points were given */
    double points;
};

struct spamd_reply {
    unsigned code;             /* spamd's exit code: 0 = EX_OK */
    char text[SPAMD_TEXT_MAX]; /* the status line's text, printable ASCII ("EX_OK") */
    bool is_spam;              /* SpamAssassin's own verdict ("Spam: True") */
    double score;
    double threshold;
    size_t rule_count;    /* in rules */
    size_t rules_dropped; /* past SPAMD_RULES_MAX */
    struct spamd_rule rules[SPAMD_RULES_MAX];
};

/* Parses the response in buf[0..len); eof: the peer has closed, nothing
 * more comes. Returns 1 with *out filled (a complete reply with code 0),
 * 0 when more is needed (never with eof), or -1 with *error_r (a static
 * string) when the response is bad, too long, a spamd error (then
 * out->code and out->text say which), or cut short at eof. A reply is
 * complete when its Content-length octets of body are in (more is an
 * error), or at eof when it has no Content-length. */
int spamd_reply_parse(const char *buf, size_t len, bool eof, enum spamd_command cmd,
                      struct spamd_reply *out, const char **error_r);

/* The request's header for a message of length octets ("SYMBOLS
 * SPAMC/1.5\r\nContent-length: N\r\n[User: u\r\n]\r\n"); user NULL or ""
 * for none, else it must pass spamd_user_ok. Returns its length, or -1
 * when it does not fit in size or user is bad. */
int spamd_request_header(enum spamd_command cmd, uint64_t length, const char *user, char *out,
                         size_t size);

/* Whether name may go into a User: header: 1..SPAMD_USER_MAX characters of
 * [A-Za-z0-9._+=@-], not starting with '-' or '.'. */
bool spamd_user_ok(const char *name);

/* "-0.5", "20", "1000.0" -> *out. At most 9 integer and 6 fraction
 * digits, within SPAMD_SCORE_MAX; no exponent, no locale. Returns the
 * characters read, or 0 when text does not start with such a number. */
size_t spamd_parse_number(const char *text, size_t len, double *out);

#endif

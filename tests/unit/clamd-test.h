/*
 * clamd-test — the servers test-clamd scans with: a real clamd from Debian
 * (package clamav-daemon) with a signature database the test writes itself
 * (no freshclam: one .ndb signature, Eicar-Test-Signature, for the EICAR
 * test string), listening on a free 127.0.0.1 port and on a unix socket in
 * a temp dir, with small limits (StreamMaxLength, MaxFileSize with
 * AlertExceedsMax) so that the limit replies can be provoked; and
 * hand-written stand-ins for the faults clamd does not make on demand (one
 * that never answers, one that answers garbage, one that closes early, ...).
 * Every server is our child, killed by its pid and reaped; each also dies
 * with the test (PR_SET_PDEATHSIG) and by an alarm. Nothing leaves
 * 127.0.0.1.
 */
#ifndef POSTERN_CLAMD_TEST_H
#define POSTERN_CLAMD_TEST_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define CLAMD_TEST_PATH "/usr/sbin/clamd"
/* The limits of the test's clamd.conf. */
#define CLAMD_TEST_STREAM_MAX (1024 * 1024) /* StreamMaxLength */
#define CLAMD_TEST_FILE_MAX (512 * 1024)    /* MaxFileSize; AlertExceedsMax */
#define CLAMD_TEST_SCAN_MAX (4096 * 1024)   /* MaxScanSize (a message and its parts) */
#define CLAMD_TEST_SIGNATURE "Eicar-Test-Signature"
/* The EICAR test string (68 octets). */
#define CLAMD_TEST_EICAR "X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"

struct clamd_test {
    char dir[64];
    char socket[128]; /* LocalSocket */
    int port;         /* TCPSocket on 127.0.0.1 */
    pid_t pid;        /* 0 when not running */
    char why[256];    /* why it could not start */
};

/* Writes the database and clamd.conf under a new temp dir and starts
 * clamd; 0 once it answers zPING on TCP, -1 with t->why (clamd missing, or
 * not ready within 30 s). t->dir is kept for clamd_test_stop either way. */
int clamd_test_start(struct clamd_test *t);
/* Kills clamd, reaps it and removes the dir; nothing when never started. */
void clamd_test_stop(struct clamd_test *t);

/* The behaviour of a stand-in. */
enum standin_mode {
    STANDIN_HANG,       /* reads the whole stream, never answers */
    STANDIN_GARBAGE,    /* reads the stream, answers an HTTP page and a NUL */
    STANDIN_CLOSE,      /* reads a few octets and closes */
    STANDIN_LONG,       /* reads the stream, answers 4000 octets without NUL */
    STANDIN_EARLY_OK,   /* answers "stream: OK" at once and never reads */
    STANDIN_SILENT_EOF, /* reads the stream and closes without a word */
};

struct standin {
    int port;
    pid_t pid;
};

/* Starts a stand-in on a free 127.0.0.1 port (the socket is listening
 * before this returns); it serves any number of connections, each in mode. */
void standin_start(struct standin *s, enum standin_mode mode);
void standin_stop(struct standin *s);

/* A TCP port on 127.0.0.1 where nothing listens (bound, then closed). */
int clamd_test_free_port(void);

#endif

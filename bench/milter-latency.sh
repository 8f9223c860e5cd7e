#!/bin/sh
# Messages per second of one SMTP session through OpenDKIM as a milter, over
# TCP and over a unix socket, posternd against Postfix (500 messages of 2 KB
# over one connection, 3 reps, medians; all on 127.0.0.1): shows that a TCP
# milter costs posternd no Nagle stall. Needs root, postfix (smtp-source,
# smtp-sink), opendkim and opendkim-tools. Options go to milter_latency.py
# (--help); POSTERND=/path/to/posternd skips the build (default: an -O2
# build in /var/tmp/postern-bench-build).
set -e
here=$(cd "$(dirname "$0")" && pwd)
exec python3 "$here/milter_latency.py" "$@"

#!/bin/sh
# Idle sessions: posternd's total RSS and PSS (master + workers + queue manager)
# with 5000 concurrent idle SMTP sessions (greeting, EHLO, then nothing), on 127.0.0.1.
# Options go to idle_sessions.py (--help); POSTERND=/path/to/posternd skips the build.
set -e
here=$(cd "$(dirname "$0")" && pwd)
# The client holds one descriptor per session, and posternd inherits this limit
# (posternd also raises its own soft limit to the hard limit at start).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
exec python3 "$here/idle_sessions.py" "$@"

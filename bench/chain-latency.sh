#!/bin/sh
# Added latency per message of the full envelope filter chain (dnsbl with two
# lists on our nsd, greylist with passed triplets, ratelimit under its limits,
# dha with the recipients listed), state on LMDB and on Redis, against the
# same posternd without filters: 2000 messages, 1 and 10 sessions, 3 runs
# each (medians of the per-run median and p99), all on 127.0.0.1.
# Needs root (posternd drops to nobody), postfix's smtp-sink, nsd,
# redis-server and a C compiler (the client, bench/smtp-latency.c, is built
# into the temp dir; SMTP_LATENCY=path uses another build). Options go to
# chain_latency.py (--help); POSTERND=/path/to/posternd skips the build
# (default: an -O2 build in /var/tmp/postern-bench-build).
set -e
here=$(cd "$(dirname "$0")" && pwd)
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
exec python3 "$here/chain_latency.py" "$@"

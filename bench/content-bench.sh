#!/bin/sh
# Messages per second through posternd's content chain (spf, dkim, dmarc,
# attachments, clamd, spamd) against the same spamd and clamd driven by their
# own clients (spamc, clamdscan) on the same messages, and the ratio:
# posternd's overhead on top of the scanners (target < 10 %). 200 messages of
# 5-50 KB (some with a zip or PDF, all DKIM-signed), concurrency 1 and 4,
# 3 runs each (medians), all on 127.0.0.1. Needs root (posternd drops to
# nobody, spamd to debian-spamd), clamav-daemon, spamd, nsd, opendkim-tools,
# python3-dkim and postfix's smtp-sink. Options go to content_bench.py
# (--help); POSTERND=/path/to/posternd skips the build (default: an -O2
# build in /var/tmp/postern-bench-build).
set -e
here=$(cd "$(dirname "$0")" && pwd)
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
# python3-dkim installs for Debian's python, which may not be the first on PATH
py=python3
[ -x /usr/bin/python3 ] && py=/usr/bin/python3
exec "$py" "$here/content_bench.py" "$@"

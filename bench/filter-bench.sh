#!/bin/sh
# Greylist and rate-limit decisions per second: posternd's greylist and
# ratelimit filters through the real chain, on LMDB and on Redis, side by side
# with postgrey (Postfix policy protocol) on the same triplets; 1 and 50
# decisions in flight, 20000 triplets first seen, retried and known, 3 runs
# each (medians), all on 127.0.0.1 with state under /var/tmp.
# Needs redis-server and postgrey (scripts/install-deps.sh); as root postgrey
# runs as nobody. Options go to filter_bench.py (--help);
# FILTER_BENCH=/path/to/bench/filter-bench skips the build (default: an -O2
# build in /var/tmp/postern-bench-build, `make bench/filter-bench`).
set -e
here=$(cd "$(dirname "$0")" && pwd)
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
exec python3 "$here/filter_bench.py" "$@"

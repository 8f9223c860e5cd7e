#!/bin/sh
# Relay throughput: smtp-source -> {smtp-sink | posternd | private Postfix} -> smtp-sink,
# 2 KB and 50 KB messages, 1/10/50 sessions, 3 runs each (medians), all on 127.0.0.1.
# Needs root (Postfix instance, posternd dropping to nobody) and the postfix package.
# Options go to relay_bench.py (--help); POSTERND=/path/to/posternd skips the build.
set -e
here=$(cd "$(dirname "$0")" && pwd)
# 50 sessions in and out of two servers, plus their spools: plenty of descriptors
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
exec python3 "$here/relay_bench.py" "$@"

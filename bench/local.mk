# bench/: benchmarks run by hand, never by make check (they need root, the
# postfix package and minutes of machine time). Shipped in the tarball.
#   bench/relay-bench.sh    relay throughput: one hop vs posternd vs Postfix
#   bench/idle-sessions.sh  memory with 5000 idle SMTP sessions
# Results and how they were taken: bench/RESULTS.md.
EXTRA_DIST += bench/relay-bench.sh bench/relay_bench.py \
	bench/idle-sessions.sh bench/idle_sessions.py bench/RESULTS.md

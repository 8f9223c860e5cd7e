# bench/: benchmarks run by hand, never by make check (they need root, the
# postfix package and minutes of machine time). Shipped in the tarball.
#   bench/relay-bench.sh    relay throughput: one hop vs posternd vs Postfix
#   bench/idle-sessions.sh  memory with 5000 idle SMTP sessions
# Results and how they were taken: bench/RESULTS.md.
EXTRA_DIST += bench/relay-bench.sh bench/relay_bench.py \
	bench/idle-sessions.sh bench/idle_sessions.py bench/RESULTS.md
#   bench/filter-bench.sh   greylist/ratelimit decisions/s (LMDB, Redis) vs postgrey
#   bench/chain-latency.sh  added latency per message of the envelope filter chain
# Their C drivers are built on request only (`make bench/filter-bench
# bench/smtp-latency`; the scripts do it in their own -O2 build).
EXTRA_PROGRAMS = bench/filter-bench bench/smtp-latency
bench_filter_bench_LDADD = $(GATEWAY_LIBS)
bench_smtp_latency_SOURCES = bench/smtp-latency.c
EXTRA_DIST += bench/filter-bench.sh bench/filter_bench.py bench/bench_util.py \
	bench/chain-latency.sh bench/chain_latency.py
#   bench/milter-latency.sh one session through OpenDKIM: TCP vs unix, posternd vs Postfix
EXTRA_DIST += bench/milter-latency.sh bench/milter_latency.py
#   bench/content-bench.sh  msg/s through the content chain vs spamc + clamdscan alone
EXTRA_DIST += bench/content-bench.sh bench/content_bench.py

#!/bin/sh
# Replays the proxy fuzz corpus (see replay.sh).
target=proxy
. "${top_srcdir:-.}/tests/fuzz/replay.sh"

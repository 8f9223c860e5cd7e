#!/bin/sh
# Replays the pmilter-text fuzz corpus (see replay.sh).
target=pmilter-text
. "${top_srcdir:-.}/tests/fuzz/replay.sh"

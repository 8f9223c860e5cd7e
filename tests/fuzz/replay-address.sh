#!/bin/sh
# Replays the address fuzz corpus (see replay.sh).
target=address
. "${top_srcdir:-.}/tests/fuzz/replay.sh"

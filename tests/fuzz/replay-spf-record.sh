#!/bin/sh
# Replays the spf-record fuzz corpus (see replay.sh).
target=spf-record
. "${top_srcdir:-.}/tests/fuzz/replay.sh"

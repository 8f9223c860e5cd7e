#!/bin/sh
# Replays the smtp-session fuzz corpus (see replay.sh).
target=smtp-session
. "${top_srcdir:-.}/tests/fuzz/replay.sh"

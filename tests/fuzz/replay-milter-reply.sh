#!/bin/sh
# Replays the milter-reply fuzz corpus (see replay.sh).
target=milter-reply
. "${top_srcdir:-.}/tests/fuzz/replay.sh"

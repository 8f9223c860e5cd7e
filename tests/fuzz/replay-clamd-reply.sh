#!/bin/sh
# Replays the clamd-reply fuzz corpus (see replay.sh).
target=clamd-reply
. "${top_srcdir:-.}/tests/fuzz/replay.sh"

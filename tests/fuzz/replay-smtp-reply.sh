#!/bin/sh
# Replays the smtp-reply fuzz corpus (see replay.sh).
target=smtp-reply
. "${top_srcdir:-.}/tests/fuzz/replay.sh"

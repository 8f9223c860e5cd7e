#!/bin/sh
# Replays the dkim-message fuzz corpus (see replay.sh).
target=dkim-message
. "${top_srcdir:-.}/tests/fuzz/replay.sh"

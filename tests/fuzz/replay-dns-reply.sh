#!/bin/sh
# Replays the dns-reply fuzz corpus (see replay.sh).
target=dns-reply
. "${top_srcdir:-.}/tests/fuzz/replay.sh"

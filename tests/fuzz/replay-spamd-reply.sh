#!/bin/sh
# Replays the spamd-reply fuzz corpus (see replay.sh).
target=spamd-reply
. "${top_srcdir:-.}/tests/fuzz/replay.sh"

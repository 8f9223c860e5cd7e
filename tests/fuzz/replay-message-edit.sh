#!/bin/sh
# Replays the message-edit fuzz corpus (see replay.sh).
target=message-edit
. "${top_srcdir:-.}/tests/fuzz/replay.sh"

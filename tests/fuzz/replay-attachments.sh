#!/bin/sh
# Replays the attachments fuzz corpus (see replay.sh).
target=attachments
. "${top_srcdir:-.}/tests/fuzz/replay.sh"

# Sourced by replay-*.sh with $target set: runs one fuzz target (built with
# the replay main) over its seed corpus. Fails when the target crashes or the
# corpus is empty.
exec "${top_builddir:-.}/tests/fuzz/fuzz-$target" "${top_srcdir:-.}/tests/fuzz/corpus/$target"

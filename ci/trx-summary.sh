#!/usr/bin/env bash
# ci/trx-summary.sh DIR -> "N passed, N failed, N skipped" summed over DIR/**/*.trx; exit 1 if none ran.
dir=${1:?results dir}
mapfile -t files < <(find "$dir" -name '*.trx')
[ ${#files[@]} -gt 0 ] || { echo "no TRX files in $dir" >&2; echo "0 passed, 1 failed"; exit 1; }
read -r p f s < <(grep -ho '<Counters [^>]*>' "${files[@]}" | awk '
  { for (i = 1; i <= NF; i++) { split($i, kv, "="); gsub(/[^0-9]/, "", kv[2]); v[kv[1]] += kv[2] } }
  END { printf "%d %d %d\n", v["passed"], v["failed"] + v["error"] + v["timeout"] + v["aborted"], v["total"] - v["executed"] }')
echo "$p passed, $f failed, $s skipped"
[ $((p + f)) -gt 0 ]

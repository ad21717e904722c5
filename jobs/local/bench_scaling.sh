#!/usr/bin/env bash
# Data-parallel scaling on inputs/bench_small.nml, in one run: 1 rank x 1 thread (the baseline),
# 2 ranks x 1 thread and 1 rank x 2 threads, then the scaling efficiency of the two 2-core layouts,
# tokens/s / (2 x baseline tokens/s), and the communication figures of the 2-rank run.
#   bash jobs/local/bench_scaling.sh          (after bash tests/build.sh; ~2 minutes on 2 cores)
# Extra arguments go to every run (e.g. --set bench%steps=4).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
log=$(mktemp)
trap 'rm -f "$log"' EXIT
run() {  # ranks threads -> tokens/s; the full report goes to $log
  OMP_NUM_THREADS=$2 mpirun --oversubscribe -np "$1" build/bin/torch-handle inputs/bench_small.nml \
    --set run%threads="$2" "${@:3}" >"$log.$1x$2" 2>&1 || { cat "$log.$1x$2" >&2; exit 1; }
  cat "$log.$1x$2" >>"$log"
  sed -n 's/^bench: tokens_per_s=\([0-9.]*\).*/\1/p' "$log.$1x$2"
  rm -f "$log.$1x$2"
}
echo "date: $(date -u +%FT%TZ)  host: $(nproc) cores  load: $(cut -d' ' -f1-3 /proc/loadavg)  git: $(git rev-parse --short HEAD 2>/dev/null || echo none)"
base=$(run 1 1 "$@"); two=$(run 2 1 "$@"); threads=$(run 1 2 "$@")
grep -E "gradient all-reduce|exposed communication|ZeRO stage" "$log" || true
awk -v b="$base" -v r="$two" -v t="$threads" 'BEGIN {
  printf "\n| layout | tokens/s | speed-up vs 1x1 | scaling efficiency |\n|---|---|---|---|\n"
  printf "| 1 rank x 1 thread | %.1f | 1.00 | 1.00 |\n", b
  printf "| 2 ranks x 1 thread | %.1f | %.2f | %.2f |\n", r, r / b, r / (2 * b)
  printf "| 1 rank x 2 threads | %.1f | %.2f | %.2f |\n", t, t / b, t / (2 * b)
}'

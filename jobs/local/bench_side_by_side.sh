#!/usr/bin/env bash
# Torch-Handle vs the PyTorch peer on inputs/bench_small.nml, both layouts, in one run.
#   bash jobs/local/bench_side_by_side.sh        (after bash tests/build.sh)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
peer=${TH_PEER:-$root/../shared/bench/torch_peer.py}
run_ours() {  # ranks threads
  OMP_NUM_THREADS=$2 mpirun --oversubscribe -np "$1" build/bin/torch-handle inputs/bench_small.nml \
    --set run%threads="$2" 2>&1 | tee /dev/stderr | grep '^bench: tokens_per_s'
}
run_peer() {  # procs threads
  /usr/bin/python3 "$peer" --procs "$1" --threads "$2" 2>&1 | grep '^peer:'
}
echo "date: $(date -u +%FT%TZ)  host: $(nproc) cores  git: $(git rev-parse --short HEAD 2>/dev/null || echo none)"
a=$(run_ours 2 1); b=$(run_ours 1 2); c=$(run_peer 2 1); d=$(run_peer 1 2)
printf '\n| code | layout | result |\n|---|---|---|\n'
printf '| torch-handle | 2 ranks x 1 thread | %s |\n' "$a"
printf '| torch-handle | 1 rank x 2 threads | %s |\n' "$b"
printf '| PyTorch peer (DDP, gloo) | 2 procs x 1 thread | %s |\n' "$c"
printf '| PyTorch peer | 1 proc x 2 threads | %s |\n' "$d"

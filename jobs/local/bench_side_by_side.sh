#!/usr/bin/env bash
# Torch-Handle vs the PyTorch peer on inputs/bench_small.nml, both layouts, fp32 and bf16, in one
# run (ours: precision%dtype = 'bf16'; the peer: --bf16, torch.autocast('cpu', bfloat16)).
#   bash jobs/local/bench_side_by_side.sh             (after bash tests/build.sh)
#   BUILD=build-cpu DTYPES="fp32" bash jobs/local/bench_side_by_side.sh
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
peer=${TH_PEER:-$root/../shared/bench/torch_peer.py}
build=${BUILD:-build}
dtypes=${DTYPES:-fp32 bf16}
run_ours() {  # ranks threads dtype
  OMP_NUM_THREADS=$2 mpirun --oversubscribe -np "$1" "$build/bin/torch-handle" inputs/bench_small.nml \
    --set run%threads="$2" --set "precision%dtype='$3'" 2>&1 | tee /dev/stderr | grep '^bench: tokens_per_s'
}
run_peer() {  # procs threads dtype
  local flag=""
  [[ $3 == bf16 ]] && flag=--bf16
  /usr/bin/python3 "$peer" --procs "$1" --threads "$2" $flag 2>&1 | grep '^peer:'
}
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
isa=$(grep -m1 -o -w -E 'amx_bf16|avx512_bf16' /proc/cpuinfo | sort -u | tr '\n' ' ' || true)
echo "date: $(date -u +%FT%TZ)  host: $(nproc) cores, ${cpu}, bf16 ISA: ${isa:-none}  git: $(git rev-parse --short HEAD 2>/dev/null || echo none)"
rows=()
for dt in $dtypes; do
  rows+=("| torch-handle | $dt | 2 ranks x 1 thread | $(run_ours 2 1 "$dt") |")
  rows+=("| torch-handle | $dt | 1 rank x 2 threads | $(run_ours 1 2 "$dt") |")
  rows+=("| PyTorch peer (DDP, gloo) | $dt | 2 procs x 1 thread | $(run_peer 2 1 "$dt") |")
  rows+=("| PyTorch peer | $dt | 1 proc x 2 threads | $(run_peer 1 2 "$dt") |")
done
printf '\n| code | dtype | layout | result |\n|---|---|---|---|\n'
printf '%s\n' "${rows[@]}"

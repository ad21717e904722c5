#!/usr/bin/env bash
# Torch-Handle vs the PyTorch peer on inputs/bench_small.nml, both layouts, fp32 and bf16, in one
# run (ours: precision%dtype = 'bf16'; the peer: --bf16, torch.autocast('cpu', bfloat16)).
#   bash jobs/local/bench_side_by_side.sh             (after bash tests/build.sh)
#   BUILD=build-cpu DTYPES="fp32" bash jobs/local/bench_side_by_side.sh
#   ROUNDS=3 bash jobs/local/bench_side_by_side.sh    (the whole set three times, interleaved)
# With ROUNDS > 1 (the machines are shared and noisy) every round prints its table, and a summary
# gives each line's median tokens/s and, per dtype, the best-vs-best ratio (ours over the peer's
# faster layout) of each round and their median.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
peer=${TH_PEER:-$root/../shared/bench/torch_peer.py}
build=${BUILD:-build}
dtypes=${DTYPES:-fp32 bf16}
rounds=${ROUNDS:-1}
[[ $rounds =~ ^[1-9][0-9]*$ ]] || { echo "bench_side_by_side.sh: ROUNDS='$rounds': expected a positive integer" >&2; exit 2; }
run_ours() {  # ranks threads dtype; the whole output to stderr, the bench line to stdout
  # (not `tee /dev/stderr`: with stderr redirected to a file, reopening it truncates that file)
  local out
  out=$(OMP_NUM_THREADS=$2 mpirun --oversubscribe -np "$1" "$build/bin/torch-handle" inputs/bench_small.nml \
    --set run%threads="$2" --set "precision%dtype='$3'" 2>&1)
  printf '%s\n' "$out" >&2
  grep -m1 '^bench: tokens_per_s' <<<"$out"
}
run_peer() {  # procs threads dtype
  local flag=""
  [[ $3 == bf16 ]] && flag=--bf16
  /usr/bin/python3 "$peer" --procs "$1" --threads "$2" $flag 2>&1 | grep '^peer:'
}
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
isa=$(grep -m1 -o -w -E 'amx_bf16|avx512_bf16' /proc/cpuinfo | sort -u | tr '\n' ' ' || true)
echo "date: $(date -u +%FT%TZ)  host: $(nproc) cores, ${cpu}, bf16 ISA: ${isa:-none}  git: $(git rev-parse --short HEAD 2>/dev/null || echo none)"
summary=$(mktemp)
trap 'rm -f "$summary"' EXIT
tps() { sed -n 's/.*tokens_per_s=\([0-9.]*\).*/\1/p' <<<"$1"; }
for ((r = 1; r <= rounds; r++)); do
  rows=()
  for dt in $dtypes; do
    for cfg in "ours 2 1 torch-handle|2 ranks x 1 thread" "ours 1 2 torch-handle|1 rank x 2 threads" \
               "peer 2 1 PyTorch peer (DDP, gloo)|2 procs x 1 thread" "peer 1 2 PyTorch peer|1 proc x 2 threads"; do
      read -r who n t label <<<"${cfg%%|*}"
      layout=${cfg#*|}
      line=$(run_$who "$n" "$t" "$dt")
      rows+=("| $label | $dt | $layout | $line |")
      echo "$r $dt $who $n $t $(tps "$line")" >>"$summary"
    done
  done
  [[ $rounds -gt 1 ]] && printf '\nround %d of %d' "$r" "$rounds"
  printf '\n| code | dtype | layout | result |\n|---|---|---|---|\n'
  printf '%s\n' "${rows[@]}"
done
[[ $rounds -gt 1 ]] || exit 0
# Each line's median over the rounds; per round and dtype, ours' best layout over the peer's.
awk -v rounds="$rounds" '
  function median(list,   a, n, i, j, t) {
    n = split(list, a, " ")
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  { key = $2 " " $3 " " $4 "x" $5; v[key] = v[key] " " $6; if (!(key in seen)) { seen[key] = 1; order[++k] = key }
    b = $2 SUBSEP $1 SUBSEP $3; if ($6 + 0 > best[b] + 0) best[b] = $6; dts[$2] = 1 }
  END {
    printf "\nmedian over %d rounds, tokens/s (ranks x threads):\n", rounds
    for (i = 1; i <= k; i++) printf "  %-22s %8.1f   (%s )\n", order[i], median(v[order[i]]), v[order[i]]
    for (dt in dts) {
      list = ""
      for (r = 1; r <= rounds; r++) {
        o = best[dt SUBSEP r SUBSEP "ours"]; p = best[dt SUBSEP r SUBSEP "peer"]
        if (p > 0) list = list " " sprintf("%.2f", o / p)
      }
      printf "%s best vs best, ours / PyTorch, per round:%s; median %.2fx\n", dt, list, median(list)
    }
  }' "$summary"

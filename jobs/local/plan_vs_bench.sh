#!/usr/bin/env bash
# Predicted step time (task = 'plan', calibrated on the spot) against the measured step of
# task = 'bench' for every layout that runs here: 1, 2 and 4 ranks x ZeRO stages 0-3 x offload
# none / cpu / nvme (stage 0: none only), inputs/bench_small.nml (global batch 32 x 64, so each
# rank's micro-batch is 32 / ranks sequences). Before each layout's bench the machine is
# calibrated with min(ranks, cores) ranks (more ranks than cores share them: the plan scales the
# rates) and the layout planned, so plan and bench see the same load of this shared machine.
#   bash jobs/local/plan_vs_bench.sh [RANKS...]      (after bash tests/build.sh; default 1 2 4)
# Prints one markdown row per layout: predicted (the mean of the plans made just before and just
# after the bench) and measured step, their ratio, and the split.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
ranks=("$@")
[[ ${#ranks[@]} -gt 0 ]] || ranks=(1 2 4)
cores=$(getconf _NPROCESSORS_ONLN)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
nvme="$out/nvme"
steps=${STEPS:-3}
echo "date: $(date -u +%FT%TZ)  host: $cores cores  load: $(cut -d' ' -f1-3 /proc/loadavg)  git: $(git rev-parse --short HEAD 2>/dev/null || echo none)"
echo
echo "| ranks | stage | offload | predicted step s (before, after) | measured step s | measured / predicted | predicted compute / comm exposed / offload s | measured fwd / bwd / exposed / opt s |"
echo "|---|---|---|---|---|---|---|---|"
for n in "${ranks[@]}"; do
  cal=$(( n < cores ? n : cores ))
  mb=$(( 32 / n ))
  for stage in 0 1 2 3; do
    for off in none cpu nvme; do
      [[ $stage == 0 && $off != none ]] && continue
      param=none
      [[ $stage == 3 ]] && param=$off
      # The layout planned on the machine as it is just before and just after its bench (the
      # prediction is the mean of the two), the bench in between.
      plan="$out/plan_${n}_${stage}_${off}"
      calibrate() {
        mpirun --oversubscribe -np "$cal" build/bin/torch-handle inputs/bench_small.nml --set "run%task='plan'" \
          --set "run%output_dir='$1'" --set plan%calibrate=.true. --set plan%ranks_per_node="$n" \
          --set plan%micro_batch="$mb" --set plan%seq_len=64 --set plan%zero_stages="$stage" --set "plan%offload='$off'" \
          --set "parallel%nvme_path='$nvme'" >"$1.log" 2>&1 || { cat "$1.log" >&2; exit 1; }
      }
      calibrate "$plan.before"
      log="$out/bench_${n}_${stage}_${off}.log"
      bench() {
        mpirun --oversubscribe -np "$n" build/bin/torch-handle inputs/bench_small.nml \
          --set "run%output_dir='$out/bench'" --set bench%steps="$steps" --set bench%warmup=1 \
          --set parallel%zero_stage="$stage" --set "parallel%offload_optimizer='$off'" \
          --set "parallel%offload_param='$param'" --set "parallel%nvme_path='$nvme'" >"$log" 2>&1
      }
      bench || { echo "bench failed once (shared machine?), again:" >&2; cat "$log" >&2; bench; } || { cat "$log" >&2; exit 1; }
      calibrate "$plan.after"
      /usr/bin/python3 - "$plan.before/plan.h5" "$plan.after/plan.h5" "$log" "$n" "$stage" "$off" <<'PY'
import re, sys, h5py
before, after, log, n, stage, off = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
P = [h5py.File(p, "r")["layouts"] for p in (before, after)]
mean = lambda k: sum(L[k][0] for L in P) / 2
text = open(log).read()
m = re.search(r"step ([0-9.]+) s = forward ([0-9.]+) \+ backward ([0-9.]+) \+ exposed allreduce ([0-9.]+) \+ optimizer ([0-9.]+)", text)
step = float(re.search(r"bench: tokens_per_s=[0-9.]+ step_s=([0-9.]+)", text).group(1))
pred = mean("step_s")
comp = mean("forward_s") + mean("backward_s") + mean("recompute_s") + mean("optimizer_s")
print(f"| {n} | {stage} | {off} | {pred:.3f} ({P[0]['step_s'][0]:.2f}, {P[1]['step_s'][0]:.2f}) | {step:.3f} | {step / pred:.2f} | "
      f"{comp:.3f} / {mean('comm_exposed_s'):.3f} / {mean('offload_io_s'):.3f} | {m.group(2)} / {m.group(3)} / {m.group(4)} / {m.group(5)} |",
      flush=True)
PY
      for w in before after; do
        grep -E "^(GEMM|memory|exp|all-reduce|NVMe)" "$plan.$w.log" | tr '\n' ';' | sed "s/^/  calibration $w $n ranks, stage $stage, offload $off: /" >&2
        echo >&2
      done
    done
  done
done

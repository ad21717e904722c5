#!/usr/bin/env bash
# Predicted step time (task = 'plan', calibrated on the spot) against the measured step of
# task = 'bench' for every layout that runs here: 1, 2 and 4 ranks x ZeRO stages 0-3 x offload
# none / cpu / nvme (stage 0: none only), inputs/bench_small.nml (global batch 32 x 64, so each
# rank's micro-batch is 32 / ranks sequences). Before each layout's bench the machine is
# calibrated with min(ranks, cores) ranks (more ranks than cores share them: the plan scales the
# rates) and the layout planned, so plan and bench see the same load of this shared machine.
#   bash jobs/local/plan_vs_bench.sh [RANKS...]      (after bash tests/build.sh; default 1 2 4)
# Prints one markdown row per layout: predicted and measured step, their ratio, and the split.
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
echo "| ranks | stage | offload | predicted step s | measured step s | measured / predicted | predicted compute / comm exposed / offload s | measured fwd / bwd / exposed / opt s |"
echo "|---|---|---|---|---|---|---|---|"
for n in "${ranks[@]}"; do
  cal=$(( n < cores ? n : cores ))
  mb=$(( 32 / n ))
  for stage in 0 1 2 3; do
    for off in none cpu nvme; do
      [[ $stage == 0 && $off != none ]] && continue
      param=none
      [[ $stage == 3 ]] && param=$off
      # The plan of this layout on the machine as it is right now, then the layout benched.
      plan="$out/plan_${n}_${stage}_${off}"
      mpirun --oversubscribe -np "$cal" build/bin/torch-handle inputs/bench_small.nml --set "run%task='plan'" \
        --set "run%output_dir='$plan'" --set plan%calibrate=.true. --set plan%ranks_per_node="$n" \
        --set plan%micro_batch="$mb" --set plan%seq_len=64 --set plan%zero_stages="$stage" --set "plan%offload='$off'" \
        --set "parallel%nvme_path='$nvme'" >"$plan.log" 2>&1 || { cat "$plan.log" >&2; exit 1; }
      log="$out/bench_${n}_${stage}_${off}.log"
      mpirun --oversubscribe -np "$n" build/bin/torch-handle inputs/bench_small.nml \
        --set "run%output_dir='$out/bench'" --set bench%steps="$steps" --set bench%warmup=1 \
        --set parallel%zero_stage="$stage" --set "parallel%offload_optimizer='$off'" \
        --set "parallel%offload_param='$param'" --set "parallel%nvme_path='$nvme'" >"$log" 2>&1 \
        || { cat "$log" >&2; exit 1; }
      /usr/bin/python3 - "$plan/plan.h5" "$log" "$n" "$stage" "$off" <<'PY'
import re, sys, h5py
plan, log, n, stage, off = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
L = h5py.File(plan, "r")["layouts"]
i = 0
text = open(log).read()
m = re.search(r"step ([0-9.]+) s = forward ([0-9.]+) \+ backward ([0-9.]+) \+ exposed allreduce ([0-9.]+) \+ optimizer ([0-9.]+)", text)
step = float(re.search(r"bench: tokens_per_s=[0-9.]+ step_s=([0-9.]+)", text).group(1))
pred = L["step_s"][i]
comp = L["forward_s"][i] + L["backward_s"][i] + L["recompute_s"][i] + L["optimizer_s"][i]
print(f"| {n} | {stage} | {off} | {pred:.3f} | {step:.3f} | {step / pred:.2f} | {comp:.3f} / {L['comm_exposed_s'][i]:.3f} / "
      f"{L['offload_io_s'][i]:.3f} | {m.group(2)} / {m.group(3)} / {m.group(4)} / {m.group(5)} |", flush=True)
PY
      grep -E "^(GEMM|memory|exp|all-reduce|NVMe)" "$plan.log" | tr '\n' ';' | sed "s/^/  calibration before $n ranks, stage $stage, offload $off: /" >&2
      echo >&2
    done
  done
done

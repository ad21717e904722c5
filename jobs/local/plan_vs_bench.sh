#!/usr/bin/env bash
# Predicted step time (task = 'plan', calibrated on the spot) against the measured step of
# task = 'bench' for every layout that runs here: 1, 2 and 4 ranks x ZeRO stages 0-3 x offload
# none / cpu / nvme (stage 0: none only), inputs/bench_small.nml (global batch 32 x 64, so each
# rank's micro-batch is 32 / ranks sequences). Before each layout's bench the machine is
# calibrated with min(ranks, cores) ranks (more ranks than cores share them: the plan scales the
# rates) and the layout planned, so plan and bench see the same load of this shared machine.
#   bash jobs/local/plan_vs_bench.sh [RANKS...]      (after bash tests/build.sh; default 1 2 4)
#   LAYOUTS="2:1:cpu 4:0:none" bash jobs/local/plan_vs_bench.sh 2 4     (only these ranks:stage:offload)
# Prints one markdown row per layout: predicted (the mean of the plans made just before and just
# after the bench) and measured step, their ratio, the split, and which attempt it is (a layout is
# measured again when the machine's load moved during it; rule below).
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
echo "| ranks | stage | offload | predicted step s (before, after) | measured step s | measured / predicted | predicted compute / comm exposed / offload s | measured fwd / bwd / exposed / opt s | attempt |"
echo "|---|---|---|---|---|---|---|---|---|"
for n in "${ranks[@]}"; do
  cal=$(( n < cores ? n : cores ))
  mb=$(( 32 / n ))
  for stage in 0 1 2 3; do
    for off in none cpu nvme; do
      [[ $stage == 0 && $off != none ]] && continue
      [[ -z ${LAYOUTS:-} || " $LAYOUTS " == *" $n:$stage:$off "* ]] || continue
      param=none
      [[ $stage == 3 ]] && param=$off
      plan="$out/plan_${n}_${stage}_${off}"
      log="$out/bench_${n}_${stage}_${off}.log"
      calibrate() {
        mpirun --oversubscribe -np "$cal" build/bin/torch-handle inputs/bench_small.nml --set "run%task='plan'" \
          --set "run%output_dir='$1'" --set plan%calibrate=.true. --set plan%ranks_per_node="$n" \
          --set plan%micro_batch="$mb" --set plan%seq_len=64 --set plan%zero_stages="$stage" --set "plan%offload='$off'" \
          --set "parallel%nvme_path='$nvme'" >"$1.log" 2>&1 || { cat "$1.log" >&2; exit 1; }
      }
      bench() {
        mpirun --oversubscribe -np "$n" build/bin/torch-handle inputs/bench_small.nml \
          --set "run%output_dir='$out/bench'" --set bench%steps="$steps" --set bench%warmup=1 \
          --set parallel%zero_stage="$stage" --set "parallel%offload_optimizer='$off'" \
          --set "parallel%offload_param='$param'" --set "parallel%nvme_path='$nvme'" >"$log" 2>&1
      }
      # The layout planned on the machine as it is just before and just after its bench (the
      # prediction is the mean of the two), the bench in between. The load of this shared
      # machine moves: a measurement counts when the machine held still, i.e. the two plans agree
      # within 15% and the GEMM rate the bench measures right after its steps is within 20% of
      # the calibrated one; otherwise the layout is measured again (at most 3 attempts; the last
      # one is reported either way, marked).
      for attempt in 1 2 3; do
        calibrate "$plan.before"
        bench || { echo "bench failed once (shared machine?), again:" >&2; cat "$log" >&2; bench; } || { cat "$log" >&2; exit 1; }
        calibrate "$plan.after"
        rc=0
        /usr/bin/python3 - "$plan.before/plan.h5" "$plan.after/plan.h5" "$log" "$n" "$stage" "$off" "$cal" "$attempt" <<'PY' || rc=$?
import re, sys, h5py
before, after, log, n, stage, off, cal, attempt = sys.argv[1:9]
n, stage, cal, attempt = int(n), int(stage), int(cal), int(attempt)
P = [h5py.File(p, "r") for p in (before, after)]
L = [f["layouts"] for f in P]
mean = lambda k: sum(x[k][0] for x in L) / 2
gemm = lambda f: float(re.search(r"peak_tflops_fp32 = ([0-9.e+-]+)", f["machine"][()].decode() if isinstance(f["machine"][()], bytes) else f["machine"][()]).group(1))
text = open(log).read()
m = re.search(r"step ([0-9.]+) s = forward ([0-9.]+) \+ backward ([0-9.]+) \+ exposed allreduce ([0-9.]+) \+ optimizer ([0-9.]+)", text)
step = float(re.search(r"bench: tokens_per_s=[0-9.]+ step_s=([0-9.]+)", text).group(1))
bench_gemm = float(re.search(r"GEMM rate measured ([0-9.]+) GFLOP/s", text).group(1)) * 1e9
cal_gemm = cal * 1e12 * (gemm(P[0]) + gemm(P[1])) / 2
pred = mean("step_s")
spread = abs(L[0]["step_s"][0] - L[1]["step_s"][0]) / pred
drift = abs(bench_gemm / cal_gemm - 1)
stable = spread <= 0.15 and drift <= 0.20
if not stable and attempt < 3:
    print(f"  {n} ranks, stage {stage}, offload {off}: the machine moved (plans differ by {100 * spread:.0f}%, bench GEMM "
          f"{100 * drift:.0f}% off the calibration): again", file=sys.stderr)
    sys.exit(3)
comp = mean("forward_s") + mean("backward_s") + mean("recompute_s") + mean("optimizer_s")
mark = "" if stable else " (machine moved)"
print(f"| {n} | {stage} | {off} | {pred:.3f} ({L[0]['step_s'][0]:.2f}, {L[1]['step_s'][0]:.2f}) | {step:.3f} | {step / pred:.2f}{mark} | "
      f"{comp:.3f} / {mean('comm_exposed_s'):.3f} / {mean('offload_io_s'):.3f} | {m.group(2)} / {m.group(3)} / {m.group(4)} / "
      f"{m.group(5)} | {attempt} |", flush=True)
PY
        [[ $rc == 3 ]] || break
      done
      [[ $rc == 0 ]] || exit 1
      for w in before after; do
        grep -E "^(GEMM|memory|exp|all-reduce|NVMe)" "$plan.$w.log" | tr '\n' ';' | sed "s/^/  calibration $w $n ranks, stage $stage, offload $off: /" >&2
        echo >&2
      done
    done
  done
done

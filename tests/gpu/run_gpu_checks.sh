#!/usr/bin/env bash
# GPU checks for a machine with an NVIDIA GPU (written for one H200, sm_90; about 16 cores).
# Configures a fresh build directory with the CUDA backend, builds the GPU tests and the
# executable, runs `ctest -L gpu` (every CUDA kernel against the CPU kernels; training steps of
# small models on the CUDA backend against the CPU backend), then trains on run%backend = 'cuda':
# the copy task on 1 rank and ZeRO-3 on 2 processes sharing the GPU (collectives staged through
# pinned memory to MPI) against the same runs on the CPU, and benchmarks bench_small and a
# GPT-2-124M-sized decoder in bf16 (tokens/s, MFU against the H200's 989 TFLOP/s dense bf16).
# Prints one line per kernel (largest normalised error, tolerance, PASS/FAIL) and a table last.
# Budget: under 8 minutes (each step has a timeout).
#
#   tests/gpu/run_gpu_checks.sh            # build dir: <repo>/build-gpu-checks (deleted first)
#   BUILD_DIR=/tmp/b CUDA_ARCH=90 JOBS=16 tests/gpu/run_gpu_checks.sh
#   PREBUILT=gpu-bundle.tar.xz tests/gpu/run_gpu_checks.sh
#
# PREBUILT: a tarball from tests/gpu/make_bundle.sh (a CUDA build made on another machine with its
# MPI, HDF5, oneDNN... libraries); for a GPU image that has the driver and the CUDA libraries but
# none of our other dependencies. Nothing is configured or compiled; the two GPU test programs
# run directly (not through ctest) and the bundled Open MPI runs the training.
#
# Exit status: 0 all passed; 1 a step or a check failed; 2 the tests were skipped (no GPU
# visible), which is not a pass.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD="${BUILD_DIR:-$ROOT/build-gpu-checks}"
ARCH="${CUDA_ARCH:-90}"
JOBS="${JOBS:-16}"
REPORT="$BUILD/gpu_kernel_report.tsv"
LOG="$BUILD/ctest_gpu.log"

step() { printf '\n==> [%s] %s\n' "$(date +%H:%M:%S)" "$*"; }
SECONDS=0

step "GPU"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "nvidia-smi not available"
echo "repo: $ROOT"
echo "build dir: $BUILD (CMAKE_CUDA_ARCHITECTURES=$ARCH, -j$JOBS)"

step "fresh build directory"
case "$BUILD" in "" | "/" | "$ROOT") echo "refusing to delete build dir '$BUILD'" >&2; exit 1 ;; esac
rm -rf "$BUILD"
mkdir -p "$BUILD"

if [[ -n "${PREBUILT:-}" ]]; then
  step "unpack $PREBUILT (no build on this machine)"
  mkdir -p "$BUILD/bundle"
  tar -xJf "$PREBUILT" -C "$BUILD/bundle"
  B="$BUILD/bundle"
  mkdir -p "$BUILD/bin"
  ln -s "$B"/bin/* "$BUILD/bin/"
  # The CUDA libraries: the toolkit's, else the ones Python's nvidia-* wheels carry.
  cudalibs=""
  for lib in libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libnccl.so.2; do
    found=$(find /usr/local/cuda/ /usr/local/cuda/lib64/ /usr/local/cuda/lib/ /usr/lib/x86_64-linux-gnu/ /opt/ /usr/local/lib/ -maxdepth 7 -name "$lib" 2>/dev/null | head -1 || true)
    [[ -n $found ]] || { echo "no $lib on this machine" >&2; exit 1; }
    echo "  $lib: $found"
    cudalibs="$cudalibs:$(dirname "$found")"
  done
  export LD_LIBRARY_PATH="$B/lib$cudalibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  P="$B/root/usr/lib/x86_64-linux-gnu/pmix2"
  export PATH="$B/root/usr/bin:$PATH" OPAL_PREFIX="$B/root/usr" PMIX_PREFIX="$P" PMIX_PKGLIBDIR="$P/lib/pmix" PMIX_PKGDATADIR="$P/share/pmix"
  export OMPI_MCA_btl=self,vader OMPI_MCA_pml=ob1 OMPI_MCA_btl_vader_single_copy_mechanism=none
  if ldd "$BUILD/bin/torch-handle" | grep "not found"; then echo "unresolved libraries" >&2; exit 1; fi

  step "GPU test programs (th_gpu_kernels, th_gpu_backend)"
  rm -f "$REPORT"
  status=0
  set +e
  for t in kernels backend; do
    (cd "$ROOT" && OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 TH_KERNEL_REPORT="$REPORT" timeout 150 "$BUILD/bin/th_gpu_$t") 2>&1 | tee -a "$LOG"
    rc=${PIPESTATUS[0]}
    echo "th_gpu_$t: exit $rc"
    [[ $rc -eq 0 ]] || status=1
  done
  set -e
  grep -q "^\[  SKIPPED \] [0-9]* test" "$LOG" && echo "Skipped" >>"$LOG"
else
step "configure"
if ! timeout 90 cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="$ARCH" \
     -DTH_ENABLE_CUDA=ON -DTH_BUILD_TESTS=ON >"$BUILD/configure.log" 2>&1; then
  tail -30 "$BUILD/configure.log" >&2
  echo "configure failed; full log: $BUILD/configure.log" >&2
  exit 1
fi
grep -E "^-- +(C\+\+ compiler|CUDA|NCCL|backends)" "$BUILD/configure.log" || true
if ! grep -q "backends built  : cpu cuda" "$BUILD/configure.log"; then
  echo "configure did not enable the CUDA backend (nvcc not found?); see $BUILD/configure.log" >&2
  exit 1
fi

step "build the GPU tests and torch-handle"
timeout 330 cmake --build "$BUILD" -j "$JOBS" --target th_gpu_kernels th_gpu_backend torch-handle

step "ctest -L gpu"
rm -f "$REPORT"
set +e
(cd "$BUILD" && TH_KERNEL_REPORT="$REPORT" timeout 150 ctest -L gpu --output-on-failure --timeout 120) 2>&1 | tee "$LOG"
status=${PIPESTATUS[0]}
set -e

fi

step "results (normalised max error = max|gpu - ref| / max|ref|; bit-identical checks count differing elements)"
if [[ -s "$REPORT" ]]; then
  awk -F'\t' '
    { k = $1; if (!(k in n)) { order[++nk] = k; err[k] = 0; fails[k] = 0 }
      n[k]++; if ($3 + 0 > err[k]) err[k] = $3 + 0; tol[k] = $4; if ($5 != "PASS") fails[k]++ }
    END {
      printf "%-30s %6s %12s %10s  %s\n", "kernel", "cases", "max error", "tolerance", "result"
      for (i = 1; i <= nk; i++) { k = order[i]
        printf "%-30s %6d %12.3e %10s  %s\n", k, n[k], err[k], tol[k], fails[k] ? "FAIL (" fails[k] ")" : "pass" }
    }' "$REPORT"
  if grep -qv "PASS$" "$REPORT"; then
    echo; echo "failing cases:"; grep -v "PASS$" "$REPORT" | column -t -s $'\t' || true
  fi
fi

grep -hE "TH_BACKEND_CHECK|TH_KERNEL_CHECK" "$BUILD"/Testing/Temporary/LastTest.log "$LOG" 2>/dev/null | sort -u | sed 's/^/  /' || true

# ---- training on the CUDA backend -----------------------------------------------------------
EXE="$BUILD/bin/torch-handle"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
MPI=(mpirun --oversubscribe)
[[ $(id -u) == 0 ]] && MPI+=(--allow-run-as-root)
ROWS=()
train_status=0
# final_loss LOG: the loss of the last progress line.
final_loss() { grep -E '^step [0-9]+/' "$1" | tail -1 | sed -E 's/.*\| loss ([0-9.]+) .*/\1/'; }
# compare_training NAME NP ARGS...: 50 steps of the copy task on cuda and cpu; last losses within 2%.
compare_training() {
  local name=$1 np=$2
  shift 2
  local out="$BUILD/train_$name"
  rm -rf "$out"
  for be in cpu cuda; do
    if ! timeout 120 "${MPI[@]}" -np "$np" "$EXE" "$ROOT/inputs/copy_task.nml" --set "run%backend='$be'" \
         --set run%max_steps=50 --set "run%output_dir='$out/$be'" "$@" >"$out.$be.log" 2>&1; then
      tail -15 "$out.$be.log"
      ROWS+=("$(printf '%-34s %s' "$name" "FAIL ($be run failed, log $out.$be.log)")")
      train_status=1
      return
    fi
  done
  local lc lg
  lc=$(final_loss "$out.cpu.log") lg=$(final_loss "$out.cuda.log")
  local verdict
  verdict=$(awk -v c="$lc" -v g="$lg" 'BEGIN { d = (g - c) / c; if (d < 0) d = -d; printf "%s (cpu %.4f, cuda %.4f, rel %.1e)", d < 0.02 ? "pass" : "FAIL", c, g, d }')
  [[ $verdict == pass* ]] || train_status=1
  ROWS+=("$(printf '%-34s %s' "$name" "$verdict")")
}
# bench NAME DECK ARGS...: task bench on cuda in bf16; tokens/s and MFU against 989 TFLOP/s.
bench() {
  local name=$1 deck=$2
  shift 2
  local log="$BUILD/bench_$name.log"
  if ! timeout 150 "${MPI[@]}" -np 1 "$EXE" "$deck" --set "run%task='bench'" --set "run%backend='cuda'" \
       --set "precision%dtype='bf16'" --set "run%output_dir='$BUILD/bench_$name'" --set bench%steps=50 "$@" >"$log" 2>&1; then
    tail -15 "$log"
    ROWS+=("$(printf '%-34s %s' "bench $name" "FAIL (log $log)")")
    train_status=1
    return
  fi
  local gflop tps step
  gflop=$(sed -nE 's/.*model ([0-9.]+) GFLOP\/step.*/\1/p' "$log")
  tps=$(sed -nE 's/^bench: tokens_per_s=([0-9.]+) step_s=([0-9.]+).*/\1/p' "$log")
  step=$(sed -nE 's/^bench: tokens_per_s=([0-9.]+) step_s=([0-9.]+).*/\2/p' "$log")
  ROWS+=("$(awk -v n="bench $name" -v g="$gflop" -v t="$tps" -v s="$step" 'BEGIN { printf "%-34s %.0f tok/s, %.4f s/step, %.1f TFLOP/s, MFU %.1f%% of 989 TFLOP/s", n, t, s, g / s / 1e3, 100 * g / s / 989e3 }')")
}

if grep -q "Skipped" "$LOG"; then
  ROWS+=("training and benchmarks: skipped (no GPU visible)")
else
  step "training: copy task, 1 rank, cuda vs cpu"
  compare_training "copy task fp32 1 rank" 1
  step "training: copy task, ZeRO-3 bf16, 2 processes on one GPU (MPI staged through pinned memory)"
  compare_training "copy task ZeRO-3 bf16 2 ranks" 2 --set parallel%zero_stage=3 --set "precision%dtype='bf16'" \
    --set "parallel%comm='mpi'"  # two ranks on one GPU: NCCL refuses a shared GPU
  step "bench: bench_small, bf16"
  bench "bench_small bf16" "$ROOT/inputs/bench_small.nml"
  step "bench: GPT-2-124M-sized decoder (d 768, 12 heads, 12 layers, seq 1024, vocab 50257), bf16"
  bench "gpt2_124m bf16 8x1024" "$ROOT/inputs/gpt2_124m.nml" --set bench%batch=8 --set bench%seq_len=1024 --set bench%warmup=3
fi

step "summary ($(date -u +%FT%TZ), $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1))"
printf '%s\n' "${ROWS[@]}"

echo
if grep -q "Skipped" "$LOG" || [[ ! -s "$REPORT" ]]; then
  echo "GPU CHECKS SKIPPED: no CUDA device was visible to the test (or it wrote no report). ${SECONDS}s"
  exit 2
fi
if [[ $status -ne 0 || $train_status -ne 0 ]]; then
  echo "GPU CHECKS FAILED (ctest exit $status). ${SECONDS}s"
  exit 1
fi
echo "GPU CHECKS PASSED. ${SECONDS}s"

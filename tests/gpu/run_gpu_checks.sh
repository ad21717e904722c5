#!/usr/bin/env bash
# GPU checks for a machine with an NVIDIA GPU (written for one H200, sm_90; about 16 cores).
# Configures a fresh build directory with the CUDA backend, builds only the GPU kernel test and
# what it needs, runs `ctest -L gpu`, and prints one line per kernel: largest normalised error
# over its cases, the tolerance, PASS/FAIL. Budget: under 8 minutes (each step has a timeout).
#
#   tests/gpu/run_gpu_checks.sh            # build dir: <repo>/build-gpu-checks (deleted first)
#   BUILD_DIR=/tmp/b CUDA_ARCH=90 JOBS=16 tests/gpu/run_gpu_checks.sh
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

step "build th_gpu_kernels (torch_handle, th_gtest_main and the test)"
timeout 300 cmake --build "$BUILD" -j "$JOBS" --target th_gpu_kernels

step "ctest -L gpu"
rm -f "$REPORT"
set +e
(cd "$BUILD" && TH_KERNEL_REPORT="$REPORT" timeout 100 ctest -L gpu --output-on-failure --timeout 90) 2>&1 | tee "$LOG"
status=${PIPESTATUS[0]}
set -e

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

echo
if grep -q "Skipped" "$LOG" || [[ ! -s "$REPORT" ]]; then
  echo "GPU CHECKS SKIPPED: no CUDA device was visible to the test (or it wrote no report). ${SECONDS}s"
  exit 2
fi
if [[ $status -ne 0 ]]; then
  echo "GPU CHECKS FAILED (ctest exit $status). ${SECONDS}s"
  exit 1
fi
echo "GPU CHECKS PASSED. ${SECONDS}s"

#!/usr/bin/env bash
# The test command: installs what is missing, builds (CPU + CUDA compile), runs the suite.
#   bash tests/run.sh              # everything
#   bash tests/run.sh -L unit      # extra arguments go to ctest (labels: unit mpi deck torch gpu slurm)
#   TH_SANITIZE=1 bash tests/run.sh  # also the sanitizer job (always under CI=true)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$root/tests/setup-deps.sh"
bash "$root/tests/build.sh"
cd "$root/build"
# Open MPI refuses to start as root unless told; tests oversubscribe 2 cores with up to 4 ranks.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
ctest --output-on-failure -j "${TH_TEST_JOBS:-2}" "$@"
# The sanitizer job (ASan + UBSan, tests/sanitize.sh): on the whole suite under CI, or TH_SANITIZE=1.
if [[ $# -eq 0 && "${TH_SANITIZE:-${CI:-0}}" =~ ^(1|true)$ ]]; then
  bash "$root/tests/sanitize.sh"
fi

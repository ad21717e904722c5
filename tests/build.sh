#!/usr/bin/env bash
# Configure and build into build/ (CPU backend always; CUDA sources too when nvcc is found).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
jobs=${TH_BUILD_JOBS:-$(nproc)}
cmake -S "$root" -B "$root/build" -DCMAKE_BUILD_TYPE="${TH_BUILD_TYPE:-Release}" ${TH_CMAKE_ARGS:-}
cmake --build "$root/build" -j "$jobs"

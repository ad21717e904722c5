#!/usr/bin/env bash
# The sanitizer job: AddressSanitizer + UndefinedBehaviorSanitizer on the unit tests and a subset
# of the MPI tests (2 ranks), in a separate build tree (build-asan/, CPU only). Any finding fails
# the test that made it (halt_on_error, no recovery from UB). Run by tests/run.sh after the main
# suite when TH_SANITIZE=1 (the default under CI); alone: bash tests/sanitize.sh.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build="$root/build-asan"
flags="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g -O1"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTH_ENABLE_CUDA=OFF \
  -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_C_FLAGS="$flags" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" >/dev/null
# The MPI subset: the communicator, data parallelism, the dataset reader, checkpoints, ZeRO,
# offload, the error agreement and mixed precision (the 2-byte stores' reserved ranges: the code
# with the most pointer arithmetic and buffer reuse).
mpi_subset="test_comm|test_data_parallel|test_data_reader|test_checkpoint_io|test_zero|test_offload|test_agree|test_mixed_precision"
targets=$(cd "$root/tests" && ls unit/test_*.cpp | sed 's#unit/\(.*\)\.cpp#th_\1#')
targets+=" $(echo "$mpi_subset" | tr '|' '\n' | sed 's/^/th_/')"
cmake --build "$build" -j "${TH_BUILD_JOBS:-$(nproc)}" --target $targets
# Leak checking is off: Open MPI loads its components with dlopen and unloads them in
# MPI_Finalize, so the process-lifetime allocations they make at MPI_Init are reported from
# "<unknown module>" and cannot be told apart from ours (measured: every report came from Open MPI,
# Kokkos, OpenBLAS or libc start-up, none from our code). Memory errors and UB are what this job is for.
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:detect_odr_violation=0:abort_on_error=0:exitcode=86"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
cd "$build"
ctest --output-on-failure -j "${TH_TEST_JOBS:-2}" -L unit -R "^unit_"
ctest --output-on-failure -j 1 -R "^(${mpi_subset})_np2\$"
n=$(ctest -N -L unit -R "^unit_" | grep -c '^  Test') 
m=$(ctest -N -R "^(${mpi_subset})_np2\$" | grep -c '^  Test')
echo "sanitizer job: ASan+UBSan, $n unit test programs and $m MPI test programs (2 ranks), no findings"

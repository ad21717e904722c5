#!/usr/bin/env bash
# The backend seam is the only road from the model and the training path to the kernels
# (docs/architecture.md, "Backends"): no th::cpu call in src/model, include/th/model or src/train
# other than the enum cpu::Activation and the named host-memory exceptions below, and no memcpy
# of model data in the optimizer path. The dynamic half is tests/unit/test_backend.cpp.
# usage: check_backend_seam.sh SOURCE_DIR
set -u
root=${1:?usage: check_backend_seam.sh SOURCE_DIR}
cd "$root" || exit 1
# Allowed: the Activation enum (a type, not a call); host loops over host memory by design:
# the offloaded optimizer's AdamW (src/train/offload.cpp), the 16-bit rounding of an NVMe
# chunk slot (round_to_compute_on_host in src/train/zero/precision.hpp) and the 2-byte
# conversions of a host-resident partition or a staged NVMe chunk (narrow_16bit_on_host,
# widen_16bit_on_host, ibid.).
bad=$(grep -n 'cpu::' src/model/*.cpp src/model/*.hpp include/th/model/*.hpp src/train/*.cpp src/train/zero/*.cpp \
        src/train/zero/*.hpp |
      grep -v 'cpu::Activation' |
      grep -v '^src/train/offload.cpp:.*cpu::\(host_for\|AdamWCoefficients\)' |
      grep -v '^src/train/zero/precision.hpp:.*cpu::round_to_\(bf16\|fp16\)(x, n);' |
      grep -v '^src/train/zero/precision.hpp:.*cpu::\(fp32_to_\(bf16\|fp16\)\|\(bf16\|fp16\)_to_fp32\)(y, x, n);' |
      grep -v '^[^:]*:[0-9]*: *//')
mem=$(grep -n 'memcpy\|memmove' src/train/optimizer.cpp src/train/grad_sync.cpp src/train/zero/optimizer_step.cpp \
        src/train/zero/grad_reduction.cpp src/train/zero/optimizer_store.cpp src/train/zero/replicated_params.cpp \
        src/model/*.cpp | grep -v '^[^:]*:[0-9]*: *//')
status=0
if [[ -n $bad ]]; then
  echo "FAIL: th::cpu called around the backend seam (use the Backend / Kernels<T> of th/backend/backend.hpp):"
  echo "$bad"
  status=1
fi
if [[ -n $mem ]]; then
  echo "FAIL: memcpy of model data around the backend seam (use copy_device / copy_to_host / copy_to_device):"
  echo "$mem"
  status=1
fi
[[ $status == 0 ]] && echo "PASS: the model and the optimizer path reach kernels and copies only through the backend"
exit $status

#!/usr/bin/env bash
# Packs a CUDA build made here into one tarball that runs on a GPU machine which has the NVIDIA
# driver and CUDA 13 libraries (cudart, cuBLAS, cuBLASLt, NCCL) but none of our other
# dependencies (no MPI, parallel HDF5, oneDNN, OpenBLAS, SentencePiece, Kokkos): a bare GPU
# image. tests/gpu/run_gpu_checks.sh runs from it with PREBUILT=<tarball> (no configure, no
# compile on the GPU machine, whose time is the scarce part).
#
#   tests/gpu/make_bundle.sh [BUILD_DIR] [OUT]    # defaults: build-cuda, gpu-bundle.tar.xz
#
# What goes in: bin/ (torch-handle, th_gpu_kernels, th_gpu_backend), lib/ (every shared library
# those and Open MPI's components need, except glibc, libstdc++/libgcc_s and the CUDA
# libraries, which the GPU machine has), and root/ (Open MPI's and PMIx's installation trees as
# Debian lays them out under /usr and /etc, so that OPAL_PREFIX and PMIX_PREFIX relocate them).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD="${1:-$ROOT/build-cuda}"
OUT="${2:-$ROOT/gpu-bundle.tar.xz}"
ML=/usr/lib/x86_64-linux-gnu

for exe in torch-handle th_gpu_kernels th_gpu_backend; do
  [[ -x "$BUILD/bin/$exe" ]] || { echo "missing $BUILD/bin/$exe: build it first (cmake --build $BUILD --target torch-handle th_gpu_kernels th_gpu_backend)" >&2; exit 1; }
done
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE/bin" "$STAGE/lib" "$STAGE/root/usr/bin" "$STAGE/root/usr/lib/x86_64-linux-gnu" "$STAGE/root/usr/share" "$STAGE/root/etc"
cp "$BUILD"/bin/{torch-handle,th_gpu_kernels,th_gpu_backend} "$STAGE/bin/"
cp /usr/bin/orterun /usr/bin/orted /usr/bin/ompi_info "$STAGE/root/usr/bin/"
ln -s orterun "$STAGE/root/usr/bin/mpirun"
cp -a "$ML/openmpi" "$ML/pmix2" "$STAGE/root/usr/lib/x86_64-linux-gnu/"
cp -a /usr/share/openmpi "$STAGE/root/usr/share/"
[[ -d /usr/share/pmix2 ]] && cp -a /usr/share/pmix2 "$STAGE/root/usr/share/"
cp -a /etc/openmpi "$STAGE/root/etc/"

# The shared libraries every carried program and component needs, minus what the GPU machine has.
skip='^(linux-vdso|ld-linux|libc\.so|libm\.so|libdl\.so|libpthread\.so|librt\.so|libresolv\.so|libutil\.so|libstdc\+\+\.so|libgcc_s\.so|libcuda\.so|libcudart\.so|libcublas\.so|libcublasLt\.so|libnccl\.so)'
objs=("$STAGE"/bin/* "$STAGE"/root/usr/bin/orterun "$STAGE"/root/usr/bin/orted "$STAGE"/root/usr/bin/ompi_info)
while IFS= read -r so; do objs+=("$so"); done < <(find "$STAGE/root" -name '*.so*' -type f)
missing=0
for obj in "${objs[@]}"; do
  while read -r name arrow path _; do
    [[ $arrow == "=>" ]] || continue
    [[ $name =~ $skip ]] && continue
    if [[ $path == "not" ]]; then
      # A component whose library is absent here too (ucx, libfabric...): leave it; Open MPI skips it.
      missing=$((missing + 1)); continue
    fi
    case "$path" in "$STAGE"/*) continue ;; esac
    [[ -e "$STAGE/lib/$name" ]] || cp -L "$path" "$STAGE/lib/$name"
  done < <(LD_LIBRARY_PATH="$ML/openmpi/lib:$ML/pmix2/lib" ldd "$obj" 2>/dev/null || true)
done
echo "libraries: $(ls "$STAGE/lib" | wc -l) ($(du -sh "$STAGE/lib" | cut -f1)); unresolved component links here too: $missing"
tar -C "$STAGE" -cf - . | xz -9 -T0 >"$OUT"
echo "wrote $OUT ($(du -h "$OUT" | cut -f1))"

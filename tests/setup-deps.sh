#!/usr/bin/env bash
# Installs what Torch-Handle needs from Debian's registry, only what is missing. Shared by
# jobs/local/quickstart.sh and tests/run.sh. On a cluster, load the site's modules instead and
# skip this (TH_SKIP_APT=1).
set -euo pipefail
[[ "${TH_SKIP_APT:-0}" == 1 ]] && exit 0
packages=(
  build-essential cmake pkg-config
  libopenmpi-dev openmpi-bin          # MPI
  libhdf5-openmpi-dev hdf5-tools      # parallel HDF5 (+ h5dump)
  libeigen3-dev libopenblas-dev       # dense math
  libdnnl-dev                         # oneDNN: the GEMM engine's second provider (bf16 matmuls)
  libtrilinos-kokkos-dev              # Kokkos (host kernels)
  libsentencepiece-dev                # tokenizer
  diatheke sword-text-web sword-text-sparv python3-sentencepiece   # Bible EN-ES corpus; h5py recipe check
  libgtest-dev                        # tests
  python3-torch python3-h5py python3-numpy   # PyTorch parity test and benchmark peer
  python3-matplotlib                  # jobs/analysis/plot_metrics.py
  slurmctld slurmd slurm-client munge slurm-wlm-basic-plugins   # one-node Slurm of the slurm test
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "setup-deps: all ${#packages[@]} packages present"
  exit 0
fi
echo "setup-deps: installing ${missing[*]}"
SUDO=""
[[ $(id -u) -ne 0 ]] && SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"

#!/usr/bin/env bash
# Quickstart on one machine: install what is missing, build, run the main job.
# The main job today: train the encoder-decoder on the synthetic copy task (inputs/copy_task.nml),
# on 2 ranks, and show where its outputs are. NP=1 bash jobs/local/quickstart.sh for one rank.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bash "$root/tests/setup-deps.sh"
bash "$root/tests/build.sh"
cd "$root"
np=${NP:-2}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
launcher=(mpirun -np "$np")
mpirun --version 2>/dev/null | grep -q "Open MPI" && launcher+=(--oversubscribe)
[[ $(id -u) -eq 0 ]] && launcher+=(--allow-run-as-root)
echo "quickstart: ${launcher[*]} build/bin/torch-handle inputs/copy_task.nml"
"${launcher[@]}" build/bin/torch-handle inputs/copy_task.nml --set run%output_dir=runs/quickstart
echo
echo "quickstart: outputs in runs/quickstart/ (deck.resolved.nml, metrics.h5); the loss curve:"
h5dump -d /train/loss runs/quickstart/metrics.h5 | sed -n '/DATA/,/}/p' | head -12

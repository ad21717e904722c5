#!/usr/bin/env bash
# A tiny GPT-style language model on the World English Bible, on one machine (build first:
# bash tests/build.sh):
#   1. prepare: the Bible's English side, a document per chapter, SentencePiece, HDF5   ~1 min
#   2. train inputs/lm_tiny.nml on 2 ranks: packed 128-token blocks, document mask    a few minutes
#   3. evaluate: perplexity per token and per byte on the held-out chapters
#   4. generate: continue a few prompts (seeded: the same text on any number of ranks)
# NP=1 for one rank; STEPS=N to train longer (default 300, about one epoch).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
np=${NP:-2}
steps=${STEPS:-300}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
launcher=(mpirun -np "$np")
mpirun --version 2>/dev/null | grep -q "Open MPI" && launcher+=(--oversubscribe)
[[ $(id -u) -eq 0 ]] && launcher+=(--allow-run-as-root)
out=runs/lm_tiny
th() { echo "lm_tiny: ${launcher[*]} build/bin/torch-handle $*"; "${launcher[@]}" build/bin/torch-handle "$@"; }

if [[ -f $out/data/train.h5 && -f $out/data/test.h5 ]]; then
  echo "lm_tiny: $out/data/*.h5 exist, not preparing again (delete them to redo)"
else
  th inputs/lm_tiny.nml --set "run%task='prepare'" --set "run%output_dir='$out/data'"
fi
# A fresh training run each time (the data stay).
rm -rf "$out/checkpoints" "$out/metrics.h5"
th inputs/lm_tiny.nml --set "run%max_steps=$steps"
echo
th inputs/lm_tiny.nml --set "run%task='evaluate'"
echo
printf '%s\n' "In the beginning" "Jesus said to them," "The Lord is my shepherd;" >"$out/prompts.txt"
th inputs/lm_tiny.nml --set "run%task='generate'" --set "generate%prompt=''" \
  --set "generate%input_file='$out/prompts.txt'" --set "generate%output_file='$out/generated.txt'"
paste -d'|' "$out/prompts.txt" "$out/generated.txt" | sed 's/|/ ... /'
echo "lm_tiny: outputs in $out/: metrics.h5 (train/ and valid/ curves, valid/byte_perplexity), checkpoints/,"
echo "  evaluate.h5, generated.txt"

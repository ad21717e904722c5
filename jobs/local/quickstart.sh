#!/usr/bin/env bash
# Quickstart on one machine: install what is missing, build, run the main job:
#   1. prepare the Bible EN->ES data (Debian's SWORD modules, SentencePiece, HDF5)  ~30 s
#   2. train a small encoder-decoder on 2 ranks (inputs/bible_train.nml)         a few minutes
#   3. evaluate it on the held-out test verses: loss, BLEU, sample translations     ~20 s
#   4. translate a sentence from stdin
# NP=1 bash jobs/local/quickstart.sh for one rank; STEPS=N to train longer (default 300).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bash "$root/tests/setup-deps.sh"
bash "$root/tests/build.sh"
cd "$root"
np=${NP:-2}
steps=${STEPS:-300}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
launcher=(mpirun -np "$np")
mpirun --version 2>/dev/null | grep -q "Open MPI" && launcher+=(--oversubscribe)
[[ $(id -u) -eq 0 ]] && launcher+=(--allow-run-as-root)
out=runs/quickstart
th() { echo "quickstart: ${launcher[*]} build/bin/torch-handle $*"; "${launcher[@]}" build/bin/torch-handle "$@"; }

if [[ -f runs/bible/train.h5 && -f runs/bible/test.h5 ]]; then
  echo "quickstart: runs/bible/*.h5 exist, not preparing again (delete them to redo)"
else
  th inputs/bible_en_es.nml
fi
# A fresh training run each time; its checkpoints go to $out/checkpoints.
rm -rf "$out"
th inputs/bible_train.nml --set "run%output_dir='$out'" --set "run%max_steps=$steps"
echo
th inputs/bible_train.nml --set "run%output_dir='$out'" --set "run%task='evaluate'" --set translate%beam_size=4
echo
echo "In the beginning God created the heavens and the earth." >"$out/example.en"
th inputs/bible_train.nml --set "run%output_dir='$out'" --set "run%task='translate'" \
  --set "translate%input_file='$out/example.en'" --set "translate%output_file='$out/example.es'"
echo "quickstart: '$(cat "$out/example.en")' -> '$(cat "$out/example.es")'"
echo
echo "quickstart: outputs in $out/: metrics.h5 (train/ and valid/ curves), checkpoints/, evaluate.h5,"
echo "  test.hyp.txt (the test split's translations); a short run gives a rough model: STEPS=1800"
echo "  (three epochs) reaches the BLEU quoted in docs/benchmarks.md."

#!/usr/bin/env bash
# fp32 vs bf16 vs fp16 on the Bible EN->ES data: the quickstart model (inputs/bible_train.nml,
# 2 ranks, same seed, 300 steps), training loss (mean of 20-step windows) and validation loss.
#   bash jobs/local/precision_curves.sh            (after bash tests/build.sh; prepares the data
#                                                   with inputs/bible_en_es.nml if it is missing)
#   BUILD=build-cpu STEPS=300 bash jobs/local/precision_curves.sh
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
build=${BUILD:-build}
steps=${STEPS:-300}
th() { mpirun --oversubscribe -np "${RANKS:-2}" "$build/bin/torch-handle" "$@"; }
[[ -f runs/bible/train.h5 && -f runs/bible/valid.h5 ]] || th inputs/bible_en_es.nml
echo "date: $(date -u +%FT%TZ)  git: $(git rev-parse --short HEAD 2>/dev/null || echo none)  steps: $steps"
for dt in fp32 bf16 fp16; do
  out=runs/precision_$dt
  rm -rf "$out"
  start=$(date +%s)
  th inputs/bible_train.nml --set "run%output_dir='$out'" --set "run%max_steps=$steps" \
    --set "log%valid_every_steps=$((steps / 3))" --set "checkpoint%resume='never'" \
    --set "precision%dtype='$dt'" > "$out.log" 2>&1 || { tail -20 "$out.log"; exit 1; }
  echo "$dt: $(( $(date +%s) - start )) s"
done
/usr/bin/python3 - "$steps" <<'PY'
import sys, h5py, numpy as np
steps = int(sys.argv[1]); marks = [steps // 3, 2 * steps // 3, steps]
rows = {}
for dt in ('fp32', 'bf16', 'fp16'):
    with h5py.File(f'runs/precision_{dt}/metrics.h5', 'r') as f:
        s, l = f['/train/step'][:], f['/train/loss'][:]
        vs, vl = f['/valid/step'][:], f['/valid/loss'][:]
        skipped = int(np.sum(f['/train/skipped'][:])) if '/train/skipped' in f else None
        scale = f['/train/loss_scale'][:]
    win = [float(np.mean(l[(s > m - 20) & (s <= m)])) for m in marks]
    val = [float(vl[vs == m][0]) if np.any(vs == m) else float('nan') for m in marks]
    rows[dt] = (win, val, float(scale.min()), float(scale.max()))
print(f"\n| dtype | train loss (20-step window) at {' / '.join(map(str, marks))} | validation loss at {' / '.join(map(str, marks))} | final validation vs fp32 | loss scale min-max |")
print('|---|---|---|---|---|')
ref = rows['fp32'][1][-1]
for dt, (win, val, smin, smax) in rows.items():
    rel = (val[-1] - ref) / ref * 100
    print(f"| {dt} | {' / '.join(f'{w:.4f}' for w in win)} | {' / '.join(f'{v:.4f}' for v in val)} | {rel:+.3f}% | {smin:g}-{smax:g} |")
PY

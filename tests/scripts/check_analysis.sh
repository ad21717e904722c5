#!/usr/bin/env bash
# check_analysis.sh TORCH_HANDLE DECK -- a short profiled copy-task run with validation every 20
# steps, then jobs/analysis/plot_metrics.py on its folder: the validation records are at steps 20
# and 40 with perplexity = exp(loss) and an accuracy in [0, 1]; the four PNGs are real PNG files;
# the printed tables carry the file's numbers (last training loss) and the trace summary.
set -u
exe=$1 deck=$2
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
OMP_NUM_THREADS=1 timeout 120 "$exe" "$deck" --set "run%output_dir='$out'" --set run%max_steps=40 \
  --set log%every_steps=10 --set log%valid_every_steps=20 --set profile%enabled=.true. \
  --set profile%start_step=5 --set profile%num_steps=2 >"$out/log" 2>&1 || { cat "$out/log"; fail "training run"; }
/usr/bin/python3 - "$out/metrics.h5" <<'PY' || fail "validation records"
import math, sys, h5py
v = h5py.File(sys.argv[1], "r")["valid"]
steps = list(v["step"][:])
assert steps == [20, 40], steps
for loss, ppl, acc in zip(v["loss"][:], v["perplexity"][:], v["accuracy"][:]):
    assert abs(ppl - math.exp(loss)) < 1e-9 * ppl and 0.0 <= acc <= 1.0, (loss, ppl, acc)
print("valid/step", steps, "loss", [round(x, 4) for x in v["loss"][:]], "accuracy", [round(x, 4) for x in v["accuracy"][:]])
PY
/usr/bin/python3 "$root/jobs/analysis/plot_metrics.py" "$out" >"$out/plot.log" 2>&1 || { cat "$out/plot.log"; fail "plot_metrics.py"; }
cat "$out/plot.log"
for png in loss valid throughput lr_scale; do
  f="$out/plots/$png.png"
  [[ -s $f ]] || fail "$png.png missing"
  [[ $(head -c 8 "$f" | od -An -tx1 | tr -d ' \n') == 89504e470d0a1a0a ]] || fail "$png.png is not a PNG"
  (( $(stat -c %s "$f") > 5000 )) || fail "$png.png is suspiciously small"
done
last=$(/usr/bin/python3 -c "import h5py; print('%.4g' % h5py.File('$out/metrics.h5','r')['train/loss'][-1])")
grep -qE "^ +40 +[0-9]+ +$last " "$out/plot.log" || fail "the training table lacks step 40 with loss $last"
grep -q "busy ms per category" "$out/plot.log" || fail "no trace summary"
grep -q "forward" "$out/plot.log" || fail "the trace summary lists no forward events"
echo PASS

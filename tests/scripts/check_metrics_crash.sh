#!/usr/bin/env bash
# check_metrics_crash.sh TORCH_HANDLE DECK -- the run dies without any cleanup at step 45 (TH_FAULT
# ...:exit, like kill -9); the metrics records flushed before (steps 10..40) must stay readable.
set -u
exe=$1 deck=$2
out=$(mktemp -d)
TH_FAULT="0:45:exit" OMP_NUM_THREADS=1 timeout 120 "$exe" "$deck" --set "run%output_dir='$out'" \
  --set log%every_steps=10 >"$out/log" 2>&1
rc=$?
[[ $rc -eq 9 ]] || { echo "FAIL: expected the injected exit (9), got $rc"; cat "$out/log"; exit 1; }
got=$(/usr/bin/python3 -c "import h5py; f = h5py.File('$out/metrics.h5', 'r'); print(list(f['train/step'][:]), len(f['train/loss'][:]))")
echo "after the crash: $got"
rm -rf "$out"
[[ "$got" == "[10, 20, 30, 40] 4" ]] || { echo "FAIL: expected steps [10, 20, 30, 40] and 4 losses"; exit 1; }

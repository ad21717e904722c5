#!/usr/bin/env bash
# check_no_hang.sh KIND MPIEXEC... -- runs a 3-rank training where rank 1 fails at step 3 (KIND
# throw or exit, see TH_FAULT in src/train/trainer.cpp) and checks: the job ends within 60 s,
# with a non-zero status, and (for throw) rank 1's message names it.
set -u
kind=$1; shift
out=$(mktemp -d)
start=$(date +%s%N)
TH_FAULT="1:3:${kind}" OMP_NUM_THREADS=1 timeout 60 "$@" --set "run%output_dir='${out}'" --set run%max_steps=10 \
  >"$out/stdout" 2>"$out/stderr"
rc=$?
elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))
echo "exit status $rc after ${elapsed_ms} ms"
cat "$out/stderr" | head -20
status=0
if [[ $rc -eq 124 || $rc -eq 137 ]]; then echo "FAIL: the job hung (killed by the 60 s timeout)"; status=1; fi
if [[ $rc -eq 0 ]]; then echo "FAIL: exit status 0 after a rank failed"; status=1; fi
if [[ $kind == throw ]] && ! grep -q "\[rank 1\] torch-handle: error: fault injected by TH_FAULT at step 3" "$out/stderr"; then
  echo "FAIL: no message naming rank 1"; status=1
fi
rm -rf "$out"
exit $status

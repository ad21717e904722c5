#!/usr/bin/env bash
# check_kill_during_save.sh MPIEXEC NPFLAG [FLAGS...] -- TORCH_HANDLE DECK
# A real SIGKILL of rank 0 in the middle of writing the step-10 checkpoint of a 2-rank run
# (TH_FAULT="0:10:save": the parameters are written, the Adam moments not yet), then a plain
# rerun with checkpoint%resume = 'auto'. Checks: the killed job left ckpt_5 committed and the step-10
# file only as a .tmp; the rerun resumes from step 5, finishes step 20, and its metrics records
# (one metrics.h5 for both runs) equal an uninterrupted run's bit for bit.
set -u
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
th_launcher "$@"
exe=${rest[0]} deck=${rest[1]}
th_workdir
export OMP_NUM_THREADS=1
run() {  # run DIR ARGS...
  local dir=$1; shift
  timeout 120 "$mpiexec" "$npflag" 2 "${flags[@]}" "$exe" "$deck" --set "run%output_dir='$dir'" \
    --set run%max_steps=20 --set log%every_steps=5 --set checkpoint%every_steps=5 --set model%dropout=0.1 \
    --set "run%gemm='openblas'" "$@"   # compared bit for bit: one GEMM library for every run
}
run "$out/straight" >"$out/straight.log" 2>&1 || { cat "$out/straight.log"; fail "uninterrupted run"; }
TH_FAULT="0:10:save" run "$out/killed" >"$out/killed.log" 2>&1
rc=$?
echo "killed run: exit status $rc"
[[ $rc -ne 0 && $rc -ne 124 ]] || { cat "$out/killed.log"; fail "expected the job to die from the SIGKILL"; }
ck="$out/killed/checkpoints"
ls -l "$ck"
[[ -f $ck/ckpt_00000005.h5 ]] || fail "ckpt_00000005.h5 should be committed"
[[ ! -f $ck/ckpt_00000010.h5 ]] || fail "ckpt_00000010.h5 must not exist: the save was killed before the commit"
[[ $(cat "$ck/latest") == ckpt_00000005.h5 ]] || fail "latest should still name ckpt_00000005.h5"
run "$out/killed" >"$out/resumed.log" 2>&1 || { cat "$out/resumed.log"; fail "the rerun failed"; }
grep -E "resumed from|metrics:" "$out/resumed.log"
grep -q "resumed from $ck/ckpt_00000005.h5: step 5" "$out/resumed.log" || fail "did not resume from step 5"
[[ ! -e $ck/ckpt_00000010.h5.tmp ]] || fail "the stale .tmp should be cleaned up by the next save"
/usr/bin/python3 - "$out/straight/metrics.h5" "$out/killed/metrics.h5" <<'PY' || fail "metrics differ"
import sys, h5py
a, b = (h5py.File(p, "r") for p in sys.argv[1:3])
for g in ("train", "valid"):
    for k in a[g]:
        x, y = a[g][k][:], b[g][k][:]
        if k in ("tokens_per_s", "step_s", "peak_bytes"):  # timings and memory differ, lengths must not
            assert len(x) == len(y), (g, k, len(x), len(y))
            continue
        assert list(x) == list(y), (g, k, list(x), list(y))
print("metrics equal bit for bit: train/step", list(b["train/step"][:]), "loss", [round(v, 6) for v in b["train/loss"][:]])
PY
echo PASS

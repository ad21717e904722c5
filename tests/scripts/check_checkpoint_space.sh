#!/usr/bin/env bash
# check_checkpoint_space.sh MODE MPIEXEC NPFLAG [FLAGS...] -- TORCH_HANDLE DECK
# A checkpoint save that lacks room must say "no space left on device" with the file and the bytes
# it needs, leave no partial .tmp, and keep the previous checkpoint the valid one (issue 15, item 3).
# A 2-rank copy-task run saves at steps 5 and 10 into checkpoint%dir:
#   MODE tmpfs: checkpoint%dir is a real 5 MiB tmpfs, mounted in a private mount namespace
#     (unshare -m; needs root: exit 77, reported as skipped, where mounting is not permitted). The
#     step-5 file (3.1 MB) fits, the step-10 one does not:
#     (a) the free-space check before the save refuses it (nothing written);
#     (b) with that check skipped (TH_FAULT=0:10:no_space_check) HDF5's write itself fails with
#         ENOSPC: same message, and the partial .tmp is removed.
#   MODE injected: an ordinary folder; TH_FAULT=0:10:disk_full makes the check see 0 bytes free.
set -u
mode=$1; shift
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
th_launcher "$@"
exe=${rest[0]} deck=${rest[1]}

if [[ $mode == tmpfs && -z ${TH_SPACE_TEST_NS:-} ]]; then
  unshare -m true 2>/dev/null || { echo "SKIP: unshare -m not permitted here"; exit 77; }
  exec unshare -m env TH_SPACE_TEST_NS=1 "$0" "$mode" "$mpiexec" "$npflag" "${flags[@]}" -- "$exe" "$deck"
fi

th_workdir
th_on_exit 'umount "$out/mnt" 2>/dev/null'
export OMP_NUM_THREADS=1
ckdir=$out/ckpt
if [[ $mode == tmpfs ]]; then
  ckdir=$out/mnt
  mkdir -p "$ckdir"
  mount -t tmpfs -o size=5m tmpfs "$ckdir" 2>/dev/null || { echo "SKIP: cannot mount a tmpfs here"; exit 77; }
fi

# case NAME [TH_FAULT]: run, then check the outcome.
case_run() {
  local name=$1 fault=${2:-}
  rm -rf "${ckdir:?}"/* "$out/run"
  echo "--- $name${fault:+ (TH_FAULT=$fault)}"
  TH_FAULT=$fault timeout 120 "$mpiexec" "$npflag" 2 "${flags[@]}" "$exe" "$deck" --set "run%output_dir='$out/run'" \
    --set "checkpoint%dir='$ckdir'" --set run%max_steps=12 --set checkpoint%every_steps=5 --set log%every_steps=5 \
    >"$out/$name.log" 2>&1
  local rc=$?
  echo "exit status $rc"
  grep -m1 "torch-handle: error" "$out/$name.log"
  ls -l "$ckdir"
  [[ $rc -ne 0 && $rc -ne 124 ]] || { cat "$out/$name.log"; fail "$name: expected the run to stop with an error"; }
  grep -q "no space left on device: checkpoint $ckdir/ckpt_00000010.h5[.tmp]* needs about [0-9]* bytes" "$out/$name.log" ||
    { cat "$out/$name.log"; fail "$name: no 'no space left on device' message with the file and the bytes needed"; }
  grep -q "free" "$out/$name.log" || fail "$name: the free space is not reported"
  ! ls "$ckdir"/*.tmp >/dev/null 2>&1 || fail "$name: a partial .tmp was left behind"
  [[ -f $ckdir/ckpt_00000005.h5 && $(cat "$ckdir/latest") == ckpt_00000005.h5 ]] ||
    fail "$name: the step-5 checkpoint should stay the committed one"
}

if [[ $mode == tmpfs ]]; then
  df -B1 "$ckdir" | tail -1
  case_run precheck
  case_run write_enospc "0:10:no_space_check"
  grep -q "was removed" "$out/write_enospc.log" || fail "write_enospc: the removal of the partial file is not reported"
else
  case_run injected "0:10:disk_full"
fi
echo PASS

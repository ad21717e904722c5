#!/usr/bin/env bash
# check_run_lock.sh MPIEXEC NPFLAG [FLAGS...] -- TORCH_HANDLE DECK
# One run per output folder (issue 15, item 3; docs/running.md, "One run per folder"):
#  1. while run A trains in folder X, run B on X stops at once (exit 2) naming A's host, pid and
#     Slurm job, and touches nothing there (deck.resolved.nml, metrics.h5, checkpoints unchanged);
#  2. evaluate in X while A trains is allowed (it takes no lock);
#  3. A stopped by SIGUSR1 releases the lock cleanly: a rerun on X resumes with no warning;
#  4. a run that crashed (rank 0 dies: TH_FAULT=0:3:exit) leaves a stale lock that the next run
#     takes over, with a warning naming the dead holder.
set -u
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
th_launcher "$@"
exe=${rest[0]} deck=${rest[1]}
a_pid=""
th_workdir
th_on_exit '[[ -n $a_pid ]] && kill -KILL "$a_pid" 2>/dev/null'
export OMP_NUM_THREADS=1
wait_for() { wait_for_line "$1" "$2" "$3" "$a_pid"; }  # wait_for FILE PATTERN SECONDS (while run A lives)

# 1. A second run on a live run's folder.
X=$out/x
# (-x: the ranks see a Slurm job id; mpirun itself must not think it runs under Slurm.)
"$mpiexec" "$npflag" 2 "${flags[@]}" -x SLURM_JOB_ID=4242 "$exe" "$deck" --set "run%output_dir='$X'" \
  --set data%synthetic_samples=1024 --set data%synthetic_valid_samples=16 --set log%every_steps=1 \
  --set run%max_steps=100000 --set checkpoint%every_steps=3 --set checkpoint%keep_last=1000 >"$out/a.log" 2>&1 &
a_pid=$!
wait_for "$out/a.log" "^step 4/" 120 || { cat "$out/a.log"; fail "run A did not reach step 4"; }
before=$(cd "$X" && md5sum deck.resolved.nml && ls checkpoints | sort | head -1)
start=$(date +%s%N)
timeout 60 "$mpiexec" "$npflag" 2 "${flags[@]}" "$exe" "$deck" --set "run%output_dir='$X'" --set run%max_steps=5 \
  >"$out/b.log" 2>&1
rc=$?
ms=$(( ($(date +%s%N) - start) / 1000000 ))
echo "run B: exit status $rc after $ms ms: $(grep -m1 'error' "$out/b.log")"
[[ $rc -eq 2 ]] || { cat "$out/b.log"; fail "run B should stop with exit status 2 (an input error), got $rc"; }
grep -q "run%output_dir = '$X' is in use by another run (host $(hostname), pid [0-9]*, Slurm job 4242, task train" \
  "$out/b.log" || { cat "$out/b.log"; fail "run B's message does not name the holder"; }
grep -q "^step" "$out/b.log" && fail "run B trained"
[[ $before == "$(cd "$X" && md5sum deck.resolved.nml && ls checkpoints | sort | head -1)" ]] || fail "run B changed run A's files"
[[ ! -e $X/metrics.h5.unreadable ]] || fail "run B renamed run A's metrics file"
kill -0 "$a_pid" 2>/dev/null || { cat "$out/a.log"; fail "run A died"; }
holder=$(cat "$X/torch-handle.lock")
echo "lock held by: $holder"
[[ $holder == "host $(hostname), pid "*", Slurm job 4242, task train, since "* ]] || fail "unexpected lock line '$holder'"

# 2. evaluate in the live training folder: no lock, reads a committed checkpoint.
timeout 120 "$mpiexec" "$npflag" 1 "${flags[@]}" "$exe" "$deck" --set "run%output_dir='$X'" \
  --set "run%task='evaluate'" --set data%synthetic_valid_samples=8 --set translate%beam_size=1 \
  >"$out/eval.log" 2>&1 || { cat "$out/eval.log"; fail "evaluate in a folder where training runs"; }
echo "evaluate during training: $(grep -m1 '^weights:' "$out/eval.log")"

# 3. A clean stop releases the lock; the rerun resumes without a warning.
kill -USR1 "$a_pid"
wait "$a_pid"
rc=$?
a_pid=""
[[ $rc -eq 0 ]] || { cat "$out/a.log"; fail "run A: exit status $rc after SIGUSR1"; }
k=$(sed -n 's/^stopped by a signal after step \([0-9]*\);.*/\1/p' "$out/a.log")
[[ -n $k ]] || { tail "$out/a.log"; fail "run A did not report its stop"; }
[[ ! -s $X/torch-handle.lock ]] || fail "a clean end should empty the lock line"
timeout 120 "$mpiexec" "$npflag" 2 "${flags[@]}" "$exe" "$deck" --set "run%output_dir='$X'" \
  --set data%synthetic_samples=1024 --set data%synthetic_valid_samples=16 --set run%max_steps=$((k + 1)) \
  >"$out/c.log" 2>&1 || { cat "$out/c.log"; fail "the rerun after a clean stop"; }
grep -q "resumed from $X/checkpoints/ckpt_$(printf %08d "$k").h5: step $k" "$out/c.log" || { cat "$out/c.log"; fail "no resume"; }
grep -q "warning" "$out/c.log" && { grep warning "$out/c.log"; fail "a warning after a clean stop"; }
echo "rerun after a clean stop at step $k: resumed, no warning"

# 4. A crashed run's lock is stale: taken over with a warning naming the dead holder.
Y=$out/y
TH_FAULT=0:3:exit timeout 120 "$mpiexec" "$npflag" 2 "${flags[@]}" "$exe" "$deck" --set "run%output_dir='$Y'" \
  --set data%synthetic_samples=1024 --set run%max_steps=10 >"$out/d.log" 2>&1
rc=$?
[[ $rc -ne 0 && $rc -ne 124 ]] || { cat "$out/d.log"; fail "the crashing run: exit status $rc"; }
dead=$(cat "$Y/torch-handle.lock")
echo "left by the crash: $dead"
[[ $dead == "host "* ]] || fail "the crashed run's line should stay in the lock file"
timeout 120 "$mpiexec" "$npflag" 2 "${flags[@]}" "$exe" "$deck" --set "run%output_dir='$Y'" \
  --set data%synthetic_samples=1024 --set run%max_steps=2 >"$out/e.log" 2>&1 || { cat "$out/e.log"; fail "run after a crash"; }
grep -F "taking over $Y/torch-handle.lock from a run that ended without releasing it ($dead)" "$out/e.log" ||
  { cat "$out/e.log"; fail "no warning about the stale lock"; }
echo PASS

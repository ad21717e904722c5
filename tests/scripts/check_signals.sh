#!/usr/bin/env bash
# check_signals.sh CASE MPIEXEC NPFLAG [FLAGS...] -- TORCH_HANDLE DECK
# What a signal does to a training run, as docs/running.md ("Signals") says (issue 15, item 4):
#   usr1_startup   SIGUSR1 to mpirun while the ranks are still starting up (a large synthetic set
#                  is being generated): no rank is killed; the run stops before or after its first
#                  step with exit status 0.
#   term_default   SIGTERM to mpirun with Open MPI's default grace (odls_base_sigkill_timeout 1):
#                  mpirun exits 1 within a few seconds and no rank outlives it; the last committed
#                  checkpoint stays valid and the rerun resumes from it.
#   term_grace     SIGTERM to mpirun with --mca odls_base_sigkill_timeout 15: the ranks get SIGTERM
#                  15 s later, finish their step, save a checkpoint and exit 0 (the lock's holder
#                  line emptied); mpirun exits 1. mpirun no longer reads the ranks' output by then:
#                  a rank must not block writing its log into the full pipe (stop_signal.cpp).
#   int_singleton  SIGINT to a rank started without mpirun (Ctrl-C): checkpoint, stop, exit 0; a
#                  second SIGINT during the stop would kill it (not tested: timing).
# The test's own launcher flags set odls_base_sigkill_timeout 0; it is taken out here.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
set -u
case_=$1 mpiexec=$2 npflag=$3; shift 3
flags=()
while [[ $# -gt 0 && $1 != -- ]]; do
  if [[ $1 == --mca && ${2:-} == odls_base_sigkill_timeout ]]; then shift 3; continue; fi
  flags+=("$1"); shift
done
shift
exe=$1 deck=$2
out=$(mktemp -d)
launcher=""
cleanup() { [[ -n $launcher ]] && kill -KILL "$launcher" 2>/dev/null; rm -rf "$out"; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; [[ -f $out/run.log ]] && tail -30 "$out/run.log"; exit 1; }
export OMP_NUM_THREADS=1
common=(--set "run%output_dir='$out/run'" --set log%every_steps=1 --set data%synthetic_valid_samples=16)
wait_for() { wait_for_line "$out/run.log" "$1" "$2" "$launcher"; }  # wait_for PATTERN SECONDS: in run.log, while the launcher lives
ranks_of() { pgrep -P "$1" -f torch-handle | tr '\n' ' '; }
running() {  # running PID: the process exists and is not a zombie (an exited child not yet reaped)
  local state
  state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [[ -n $state && $state != Z && $state != X ]]
}
none_left() {  # none_left PIDS: no rank process outlives the launcher (1 s of grace)
  local p i
  for p in $1; do
    for ((i = 0; i < 10; ++i)); do running "$p" || continue 2; sleep 0.1; done
    fail "rank process $p outlived the launcher"
  done
}
signal_after() {  # signal_after SIG PATTERN: send SIG to the launcher once PATTERN is logged
  wait_for "$2" 120 || fail "the run did not reach '$2'"
  ranks=$(ranks_of "$launcher")
  t0=$(date +%s%N)
  kill "-$1" "$launcher"
  wait "$launcher"
  rc=$?
  launcher=""
  ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  echo "$case_: SIG$1 -> exit status $rc after $ms ms"
}
committed() { [[ -f $out/run/checkpoints/$(cat "$out/run/checkpoints/latest") ]] && cat "$out/run/checkpoints/latest"; }

case $case_ in
  usr1_startup)
    "$mpiexec" "$npflag" 2 "${flags[@]}" "$exe" "$deck" "${common[@]}" --set data%synthetic_samples=400000 \
      --set run%max_steps=3 >"$out/run.log" 2>&1 &
    launcher=$!
    signal_after USR1 "^torch-handle "  # rank 0 has started MPI, so every rank has its handlers
    [[ $rc -eq 0 ]] || fail "exit status $rc (a rank killed by SIGUSR1 during start-up?)"
    grep -Eq "^stopped by a signal (before the first step|after step [0-9]+)" "$out/run.log" || fail "no stop reported"
    grep -m1 "^stopped by a signal" "$out/run.log"
    ;;
  term_default)
    "$mpiexec" "$npflag" 2 "${flags[@]}" "$exe" "$deck" "${common[@]}" --set data%synthetic_samples=2048 \
      --set run%max_steps=100000 --set checkpoint%every_steps=3 >"$out/run.log" 2>&1 &
    launcher=$!
    signal_after TERM "^step 7/"
    [[ $rc -eq 1 ]] || fail "mpirun should exit 1, got $rc"
    ((ms < 10000)) || fail "mpirun took $ms ms"
    none_left "$ranks"
    last=$(committed) || fail "no committed checkpoint"
    echo "committed: $last; left: $(ls "$out/run/checkpoints" | tr '\n' ' ')"
    step=$((10#$(echo "$last" | sed 's/^ckpt_\([0-9]*\)\.h5$/\1/')))
    ((step >= 6)) || fail "the step-6 checkpoint should be committed"
    timeout 120 "$mpiexec" "$npflag" 2 "${flags[@]}" "$exe" "$deck" "${common[@]}" --set data%synthetic_samples=2048 \
      --set run%max_steps=$((step + 1)) >"$out/rerun.log" 2>&1 || { cat "$out/rerun.log"; fail "the rerun"; }
    grep -q "resumed from $out/run/checkpoints/$last: step $step" "$out/rerun.log" || { cat "$out/rerun.log"; fail "no resume"; }
    ;;
  term_grace)
    "$mpiexec" "$npflag" 2 "${flags[@]}" --mca odls_base_sigkill_timeout 15 "$exe" "$deck" "${common[@]}" \
      --set data%synthetic_samples=2048 --set run%max_steps=100000 >"$out/run.log" 2>&1 &
    launcher=$!
    signal_after TERM "^step 4/"
    [[ $rc -eq 1 ]] || fail "mpirun should exit 1, got $rc"
    none_left "$ranks"
    # mpirun stops forwarding the ranks' output after the signal, so their "stopped by a signal"
    # line may never reach the log: the committed checkpoint and the released lock tell the stop.
    last=$(committed) || fail "no committed checkpoint: the ranks did not stop cleanly"
    k=$((10#$(echo "$last" | sed 's/^ckpt_\([0-9]*\)\.h5$/\1/')))
    ((k >= 4)) || fail "the checkpoint of the stop should be after step 4, got $last"
    [[ ! -s $out/run/torch-handle.lock ]] || fail "the lock still names its holder: a rank was killed ($(cat "$out/run/torch-handle.lock"))"
    ! ls "$out/run/checkpoints/"*.tmp >/dev/null 2>&1 || fail "a .tmp was left"
    logged=$(sed -n 's/^stopped by a signal after step \([0-9]*\);.*/\1/p' "$out/run.log")
    [[ -z $logged || $logged -eq $k ]] || fail "the log says step $logged, the checkpoint $last"
    echo "stopped after step $k with its checkpoint"
    ;;
  int_singleton)
    # env --default-signal: a shell starts background jobs with SIGINT ignored; Ctrl-C in a terminal
    # reaches a foreground process with its default. (Bounded: a rank ignoring SIGINT ends alone.)
    env --default-signal=INT "$exe" "$deck" "${common[@]}" --set data%synthetic_samples=2048 --set run%max_steps=300 \
      >"$out/run.log" 2>&1 &
    launcher=$!
    wait_for "^step 3/" 120 || fail "the run did not reach step 3"
    kill -INT "$launcher"
    wait "$launcher"
    rc=$?
    launcher=""
    echo "$case_: SIGINT -> exit status $rc"
    [[ $rc -eq 0 ]] || fail "exit status $rc"
    k=$(sed -n 's/^stopped by a signal after step \([0-9]*\);.*/\1/p' "$out/run.log")
    [[ -n $k && $(committed) == ckpt_$(printf %08d "$k").h5 ]] || fail "no checkpoint at the stop"
    echo "stopped after step $k with its checkpoint"
    ;;
  *) fail "unknown case $case_" ;;
esac
echo PASS

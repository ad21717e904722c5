#!/usr/bin/env bash
# run_slurm_test.sh ROOT EXE -- a real one-node Slurm on localhost for the jobs/slurm scripts.
#
# Starts munged, slurmctld and slurmd from Debian's packages (tests/setup-deps.sh) with every
# file (config, key, socket, state, spool, logs, pid files) in a fresh temp folder and ports of
# its own, so it neither needs nor disturbs a system Slurm or munged. Then submits, from a work
# folder in there, each script of ROOT/jobs/slurm with the copy task cut to a few steps on 2 ranks
# x 1 cpu (EXE is the torch-handle binary, passed to the scripts as TH_EXE):
#   1. train_single_node.sbatch (mpirun)              sbatch --wait: exit 0, metrics.h5, checkpoint
#   2. train_multi_node.sbatch --nodes=1 (srun pmix)  same
#   3. train_zero3.sbatch (ZeRO stage 3, srun pmix)   same, and the log reports stage 3
#   5. preemption + requeue: USR1 to the batch shell (scancel --signal=USR1 --batch, what
#      --signal=B:USR1@N does at the time limit); the job checkpoints at step K, requeues itself,
#      the second run (same job id, same folder) says "resumed from ... step K" and ends at 120
#   6. chained jobs: TH_REQUEUE=0 job stopped by USR1, then a job submitted with
#      --dependency=afterany on it and the same TH_RUN_NAME resumes and finishes
#   7. the interactive recipe: salloc, then srun --mpi=pmix and mpirun inside the allocation
# Every daemon is stopped by its pid (and the jobs cancelled) on exit, pass or fail.
# Exit status: 0 pass, 1 fail (daemons that do not start are a failure), 77 skipped (not root).
set -euo pipefail
root=${1:?usage: run_slurm_test.sh ROOT EXE}
exe=${2:?usage: run_slurm_test.sh ROOT EXE}
t_start=$(date +%s)

say() { echo "slurm-test [$(($(date +%s) - t_start))s]: $*"; }
fail() { echo "slurm-test: FAIL: $*" >&2; exit 1; }

if [[ $(id -u) -ne 0 ]]; then
  echo "slurm-test: SKIP: needs root (starts munged, slurmctld and slurmd as root)"
  exit 77
fi
for b in munged munge slurmctld slurmd sbatch scontrol scancel squeue sinfo mpirun h5dump; do
  command -v "$b" >/dev/null || [[ -x /usr/sbin/$b ]] ||
    fail "'$b' is not installed: run 'bash tests/setup-deps.sh' (packages slurmctld slurmd slurm-client munge slurm-wlm-basic-plugins)"
done
[[ -x $exe ]] || fail "no executable $exe"
export PATH=$PATH:/usr/sbin

# A Slurm job around this test (CI on a cluster) must not leak into the jobs submitted here.
for v in $(compgen -v | grep -E '^(SLURM|SBATCH|SALLOC|SRUN)_' || true); do unset "$v"; done
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1   # mpirun as root in the jobs

tmp=$(mktemp -d /tmp/th-slurm-test.XXXXXX)
chmod 755 "$tmp"   # munged wants every directory above its socket searchable by all
mkdir -p "$tmp/munge" "$tmp/state" "$tmp/spool" "$tmp/log" "$tmp/work"
export SLURM_CONF=$tmp/slurm.conf

# ---- clean-up: jobs, then slurmd, slurmctld, munged, each by its pid file, each waited for ----
stop_pid() {  # stop_pid NAME PIDFILE
  local pid
  [[ -s $2 ]] || return 0
  pid=$(cat "$2")
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  echo "slurm-test: $1 (pid $pid) ignored SIGTERM for 10 s: SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
}
# Processes left by this test's jobs (a slurmstepd or a rank outlives slurmd if a job was still
# running): the job processes carry TH_SLURM_TEST=$tmp in their environment (from sbatch), and
# they and the slurmstepds work in a folder under $tmp.
job_leftovers() {
  local p cwd
  for p in /proc/[0-9]*; do
    p=${p#/proc/}
    [[ $p == "$$" || $p == "$BASHPID" || $p == "${watchdog:-}" ]] && continue
    cwd=$(readlink "/proc/$p/cwd" 2>/dev/null || true)
    if [[ $cwd == "$tmp" || $cwd == "$tmp"/* ]] ||
       tr '\0' '\n' 2>/dev/null <"/proc/$p/environ" | grep -qx "TH_SLURM_TEST=$tmp"; then
      echo "$p"
    fi
  done
  return 0
}
cleanup() {
  local rc=$? left
  trap - EXIT
  trap '' INT TERM   # a late TERM (the watchdog's) must not cut the clean-up short
  set +e
  [[ -n ${watchdog:-} ]] && kill $(pgrep -P "$watchdog") "$watchdog" 2>/dev/null
  if [[ -s $tmp/slurmctld.pid ]] && kill -0 "$(cat "$tmp/slurmctld.pid")" 2>/dev/null; then
    timeout 10 scancel --quiet --user=root 2>/dev/null
    for _ in $(seq 50); do [[ -z $(timeout 5 squeue -h 2>/dev/null) ]] && break; sleep 0.2; done
  fi
  say "stopping slurmd, slurmctld, munged"
  stop_pid slurmd "$tmp/slurmd.pid"
  stop_pid slurmctld "$tmp/slurmctld.pid"
  stop_pid munged "$tmp/munge/munged.pid"
  say "daemons stopped"
  left=$(job_leftovers)
  if [[ -n $left ]]; then
    echo "slurm-test: killing processes left by the jobs: $left"
    # shellcheck disable=SC2086  # a list of pids
    kill -KILL $left 2>/dev/null
  fi
  if [[ $rc -ne 0 && $rc -ne 77 ]]; then
    for f in "$tmp"/log/*.log "$tmp"/munge/munged.log; do
      [[ -f $f ]] && { echo "---- last lines of $f"; tail -n 25 "$f"; }
    done
    for f in "$tmp"/work/*.out; do [[ -f $f ]] && { echo "---- last lines of $f"; tail -n 15 "$f"; }; done
  fi
  if [[ $rc -eq 0 || -z ${TH_SLURM_KEEP:-} ]]; then rm -rf "$tmp"; else echo "slurm-test: kept $tmp"; fi
  say "exit $rc"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# Overall limit (below CTest's TIMEOUT, whose SIGKILL would skip the clean-up): TERM to this
# script and to whatever it waits on, so that the EXIT trap runs.
limit=${TH_SLURM_TEST_LIMIT:-200}
(
  sleep "$limit"
  echo "slurm-test: FAIL: over the ${limit} s limit (TH_SLURM_TEST_LIMIT): stopping" >&2
  # shellcheck disable=SC2046  # a list of pids
  kill -TERM $(pgrep -P $$ | grep -vx "$BASHPID") $$ 2>/dev/null
) &
watchdog=$!

# ---- munged: a key, socket, pid and log of our own (a system munged may already run) ----
dd if=/dev/urandom of="$tmp/munge/munge.key" bs=1024 count=1 status=none
chmod 600 "$tmp/munge/munge.key"
sock=$tmp/munge/munge.socket
timeout 20 munged --socket="$sock" --pid-file="$tmp/munge/munged.pid" --key-file="$tmp/munge/munge.key" \
  --log-file="$tmp/munge/munged.log" --seed-file="$tmp/munge/munged.seed" ||
  fail "munged did not start (see $tmp/munge/munged.log below)"
timeout 10 munge -n -S "$sock" | timeout 10 unmunge -S "$sock" >/dev/null ||
  fail "munged started but does not encode/decode credentials on $sock"

# ---- slurm.conf: one node (this host, its CPU layout from slurmd -C), two free ports ----
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port=""
for _ in $(seq 50); do
  p=$((20000 + RANDOM % 20000))
  if port_free "$p" && port_free $((p + 1)); then port=$p; break; fi
done
[[ -n $port ]] || fail "no two free TCP ports found for slurmctld and slurmd"
host=$(hostname -s)
node=$(slurmd -C | head -n 1 | sed -E 's/ (RealMemory|UpTime)=[^ ]*//g')
[[ $node == NodeName=* ]] || fail "slurmd -C did not describe this node: $node"
cat >"$SLURM_CONF" <<EOF
# Written by tests/slurm/run_slurm_test.sh: a throw-away one-node cluster.
ClusterName=thtest
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire: a requeued job waits this long before it starts again (default 120 s)
AuthInfo=socket=$sock,cred_expire=5
StateSaveLocation=$tmp/state
SlurmdSpoolDir=$tmp/spool
SlurmctldPidFile=$tmp/slurmctld.pid
SlurmdPidFile=$tmp/slurmd.pid
SlurmctldLogFile=$tmp/log/slurmctld.log
SlurmdLogFile=$tmp/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=pmix
SchedulerType=sched/builtin
SchedulerParameters=batch_sched_delay=0,sched_interval=2
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MailProg=/bin/true
KillWait=5
MinJobAge=600
$node NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF

# TH_SLURM_TEST marks the daemons, their slurmstepds and (through the submit environment) every
# job process, for the leftover sweep of the clean-up.
export TH_SLURM_TEST=$tmp
say "starting slurmctld and slurmd (ports $port, $((port + 1)); folder $tmp)"
timeout 20 slurmctld -i -f "$SLURM_CONF" || fail "slurmctld did not start (its log is below)"
timeout 20 slurmd -N "$host" -f "$SLURM_CONF" || fail "slurmd did not start (its log is below)"
ok=""
for _ in $(seq 150); do
  st=$(timeout 5 sinfo -h -N -o '%T' 2>/dev/null || true)
  [[ $st == idle ]] && { ok=1; break; }
  sleep 0.2
done
[[ -n $ok ]] || fail "the node did not come up idle within 30 s (sinfo says '${st:-nothing}'); daemon logs below"
say "cluster up: $(sinfo -h -N -o '%N %c cpus %T')"

# ---- helpers ----
cd "$tmp/work"
cp "$root/inputs/copy_task.nml" tiny.nml   # submitted by a relative path, from the submit folder
export TH_ROOT=$root TH_EXE=$exe
small=(--set log%every_steps=5 --set data%max_tokens=256)

job_field() { { timeout 10 scontrol show job -o "$1" 2>/dev/null || true; } | tr ' ' '\n' | sed -n "s/^$2=//p"; }
# wait_done ID RESTARTS SECONDS: until the job has ended after RESTARTS requeues.
wait_done() {
  local st rs
  for _ in $(seq $(($3 * 4))); do
    st=$(job_field "$1" JobState); rs=$(job_field "$1" Restarts)
    case $st in
      COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|BOOT_FAIL|DEADLINE|PREEMPTED)
        [[ $rs -ge $2 ]] && return 0 ;;
    esac
    sleep 0.25
  done
  fail "job $1 not ended (restarts $2) within $3 s: JobState=$st Restarts=$rs"
}
# wait_log FILE PATTERN SECONDS
wait_log() {
  for _ in $(seq $(($3 * 5))); do grep -qE "$2" "$1" 2>/dev/null && return 0; sleep 0.2; done
  fail "'$2' did not appear in $1 within $3 s"
}
h5_ints() {  # h5_ints FILE DATASET: the values, space-separated
  h5dump -d "$2" -y -w 0 "$1" | sed -n '/DATA {/,/}/p' | sed '1d;$d' | tr ',' ' ' | xargs
}
# check_run ID STEPS: the job ended 0:0, its log reached STEPS, its metrics.h5 ends at STEPS and
# its final checkpoint is there.
check_run() {
  local id=$1 n=$2 dir=$tmp/work/runs/${3:-$1} log=$tmp/work/torch-handle-$1.out steps
  [[ $(job_field "$id" ExitCode) == 0:0 ]] || fail "job $id: ExitCode $(job_field "$id" ExitCode), expected 0:0"
  grep -q "^step $n/$n " "$log" || fail "job $id: no 'step $n/$n' line in $log"
  [[ -f $dir/metrics.h5 ]] || fail "job $id: no $dir/metrics.h5"
  steps=$(h5_ints "$dir/metrics.h5" /train/step)
  [[ ${steps##* } == "$n" ]] || fail "job $id: /train/step in metrics.h5 is '$steps', expected to end at $n"
  [[ -f $dir/checkpoints/$(printf 'ckpt_%08d.h5' "$n") ]] || fail "job $id: no checkpoint of step $n in $dir/checkpoints"
}
submit_wait() {  # submit_wait SBATCH-ARGS...: sbatch --wait under a timeout; sets id and rc
  local out
  rc=0
  out=$(timeout 120 sbatch --wait "$@") || rc=$?
  [[ $rc -ne 124 ]] || fail "sbatch --wait $* did not return within 120 s"
  [[ $out =~ Submitted\ batch\ job\ ([0-9]+) ]] || fail "sbatch $* did not submit (status $rc): $out"
  id=${BASH_REMATCH[1]}
}

# ---- 1, 2: the plain scripts ----
submit_wait "$root/jobs/slurm/train_single_node.sbatch" tiny.nml --set run%max_steps=20 "${small[@]}"
[[ $rc -eq 0 ]] || fail "train_single_node.sbatch: job $id exited $rc"
check_run "$id" 20
grep -q "launch: mpirun" "torch-handle-$id.out" || fail "job $id was not launched by mpirun"
say "PASS train_single_node.sbatch (job $id, mpirun, 20 steps, metrics.h5 and checkpoint)"

submit_wait --nodes=1 "$root/jobs/slurm/train_multi_node.sbatch" tiny.nml --set run%max_steps=20 "${small[@]}"
[[ $rc -eq 0 ]] || fail "train_multi_node.sbatch: job $id exited $rc"
check_run "$id" 20
grep -q "launch: srun --mpi=pmix" "torch-handle-$id.out" || fail "job $id was not launched by srun --mpi=pmix"
say "PASS train_multi_node.sbatch --nodes=1 (job $id, srun --mpi=pmix, 20 steps)"

# ---- 3: ZeRO stage 3 ----
submit_wait --nodes=1 "$root/jobs/slurm/train_zero3.sbatch" tiny.nml --set run%max_steps=20 "${small[@]}"
grep -q -- "--set parallel%zero_stage=3" "torch-handle-$id.out" || fail "train_zero3.sbatch did not set parallel%zero_stage=3"
[[ $rc -eq 0 ]] || fail "train_zero3.sbatch: job $id exited $rc"
check_run "$id" 20
grep -q "ZeRO stage 3" "torch-handle-$id.out" || fail "train_zero3.sbatch: job $id did not report ZeRO stage 3"
say "PASS train_zero3.sbatch (job $id): ZeRO stage 3, 20 steps"

# ---- 5: USR1 to the batch shell -> checkpoint at step K -> self-requeue -> resume -> 400 ----
# (enough steps that a fast CPU does not finish between step 10 and the signal: ~8 s on a Zen 5)
total=400
id=$(timeout 20 sbatch --parsable "$root/jobs/slurm/train_single_node.sbatch" tiny.nml --set run%max_steps=$total "${small[@]}")
log=torch-handle-$id.out
wait_log "$log" "^step 10/$total " 60
timeout 10 scancel --signal=USR1 --batch "$id"
wait_done "$id" 1 90
k=$(sed -n 's/^stopped by a signal after step \([0-9]*\);.*/\1/p' "$log" | head -n 1)
[[ -n $k ]] || fail "job $id: no 'stopped by a signal after step K' line after SIGUSR1"
((k < total)) || fail "job $id: stopped at step $k, not before the end ($total)"
grep -q "got SIGUSR1: asking the ranks to checkpoint" "$log" || fail "job $id: the batch shell did not forward SIGUSR1"
grep -q "requeueing job $id" "$log" || fail "job $id did not requeue itself"
grep -qE "^resumed from .*/runs/$id/checkpoints/$(printf 'ckpt_%08d.h5' "$k"): step $k," "$log" ||
  fail "job $id: the requeued run did not resume from step $k"
[[ $(job_field "$id" Restarts) == 1 ]] || fail "job $id: Restarts=$(job_field "$id" Restarts), expected 1"
check_run "$id" "$total"
say "PASS preemption + requeue (job $id): USR1 -> checkpoint at step $k -> requeued -> resumed from step $k -> step $total"

# ---- 6: chained jobs: stop (no requeue), then an afterany job on the same run name resumes ----
id1=$(TH_REQUEUE=0 TH_RUN_NAME=chain timeout 20 sbatch --parsable "$root/jobs/slurm/train_single_node.sbatch" tiny.nml \
      --set run%max_steps=$total "${small[@]}")
id2=$(TH_RUN_NAME=chain timeout 20 sbatch --parsable --dependency=afterany:"$id1" \
      "$root/jobs/slurm/train_single_node.sbatch" tiny.nml --set run%max_steps=$total "${small[@]}")
wait_log "torch-handle-$id1.out" "^step 10/$total " 60
timeout 10 scancel --signal=USR1 --batch "$id1"
wait_done "$id1" 0 60
wait_done "$id2" 0 90
k=$(sed -n 's/^stopped by a signal after step \([0-9]*\);.*/\1/p' "torch-handle-$id1.out" | head -n 1)
[[ -n $k ]] || fail "job $id1: no 'stopped by a signal' line"
[[ $(job_field "$id1" Restarts) == 0 && $(job_field "$id1" ExitCode) == 0:0 ]] ||
  fail "job $id1 (TH_REQUEUE=0): Restarts=$(job_field "$id1" Restarts) ExitCode=$(job_field "$id1" ExitCode), expected 0 and 0:0"
grep -qE "^resumed from .*/runs/chain/checkpoints/$(printf 'ckpt_%08d.h5' "$k"): step $k," "torch-handle-$id2.out" ||
  fail "job $id2 (afterany:$id1) did not resume from step $k of runs/chain"
check_run "$id2" "$total" chain
say "PASS chained jobs ($id1 stopped at step $k, $id2 --dependency=afterany:$id1 resumed and reached step $total)"

# ---- 7: the interactive recipe of docs/running.md: salloc, then srun --mpi=pmix and mpirun ----
cat >interactive.sh <<'EOF'
set -euo pipefail
export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1} OPENBLAS_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}
export SRUN_CPUS_PER_TASK=${SLURM_CPUS_PER_TASK:-1}
few=(--set run%max_steps=10 --set log%every_steps=5 --set data%max_tokens=256)
srun --mpi=pmix "$TH_EXE" tiny.nml --set "run%output_dir='runs/salloc-srun'" "${few[@]}"
mpirun "$TH_EXE" tiny.nml --set "run%output_dir='runs/salloc-mpirun'" "${few[@]}"
EOF
out=$(timeout 90 salloc --nodes=1 --ntasks-per-node=2 --cpus-per-task=1 --time=5 bash interactive.sh 2>&1) ||
  fail "salloc + srun/mpirun failed (status $?):
$out"
[[ $(grep -c "^  ranks 2 on 1 node(s)" <<<"$out") == 2 && $(grep -c "^step 10/10 " <<<"$out") == 2 ]] ||
  fail "salloc: expected two 2-rank runs reaching step 10:
$out"
[[ -f runs/salloc-srun/metrics.h5 && -f runs/salloc-mpirun/metrics.h5 ]] || fail "salloc: no metrics.h5 in runs/salloc-*"
say "PASS interactive recipe (salloc, then srun --mpi=pmix and mpirun: 2 ranks, 10 steps each)"

say "all Slurm checks passed"

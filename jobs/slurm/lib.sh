# shellcheck shell=bash
# Shared by jobs/slurm/*.sbatch (sourced, not run): paths, threads, and a launcher that turns a
# Slurm warning signal into a checkpoint and, for a requeue-able job, a requeue. See
# docs/running.md ("Slurm"). Everything here can be overridden from the environment of `sbatch`
# (sbatch exports the submitting shell's environment by default):
#   TH_ROOT      the Torch-Handle checkout (default: $SLURM_SUBMIT_DIR, i.e. submit from it)
#   TH_EXE       the executable (default: $TH_ROOT/build/bin/torch-handle)
#   TH_RUN_NAME  names the output folder $SLURM_SUBMIT_DIR/runs/$TH_RUN_NAME (default: the job id,
#                which a requeued job keeps); give chained jobs the same name to share checkpoints
#   TH_ENV       a file to source first (site set-up instead of `module load`), optional
#   TH_REQUEUE   1 (default): after a SIGUSR1 stop, requeue the job if it is requeue-able
#                (sbatch --requeue); 0: just stop
#   TH_MAX_RESTARTS  no self-requeue once SLURM_RESTART_COUNT reaches it (default 20)

th_log() { echo "th-job: $(date '+%F %T'): $*"; }
th_die() { echo "th-job: error: $*" >&2; exit 2; }

# th_init DECK: checks the inputs and sets th_exe, th_deck, th_out, th_cpus; exports the thread
# counts. The output folder is $SLURM_SUBMIT_DIR/runs/$SLURM_JOB_ID: stable across requeues, so
# checkpoint%resume = 'auto' (the default) finds the previous run's checkpoints.
th_init() {
  [[ $# -ge 1 && -n $1 ]] || th_die "usage: sbatch $(basename "$0") DECK [--set group%key=value ...]"
  local submit=${SLURM_SUBMIT_DIR:-$PWD}
  cd "$submit" || th_die "cannot enter the submit folder $submit"
  if [[ -n ${TH_ENV:-} ]]; then
    [[ -r $TH_ENV ]] || th_die "TH_ENV=$TH_ENV is not a readable file"
    # shellcheck disable=SC1090
    source "$TH_ENV"
  fi
  th_exe=${TH_EXE:-$th_root/build/bin/torch-handle}
  [[ -x $th_exe ]] || th_die "no executable at $th_exe (build with 'bash tests/build.sh' or set TH_EXE)"
  th_deck=$1
  [[ -r $th_deck ]] || th_die "cannot read the deck $th_deck (relative paths start at $submit)"
  th_out="$submit/runs/${TH_RUN_NAME:-${SLURM_JOB_ID:-local}}"
  mkdir -p "$th_out"
  # Threads per rank: the BLAS threads of each rank (run%threads = 0 reads OMP_NUM_THREADS).
  th_cpus=${SLURM_CPUS_PER_TASK:-1}
  export OMP_NUM_THREADS=$th_cpus OPENBLAS_NUM_THREADS=$th_cpus
  # Slurm 22.05 to 23.02: srun no longer takes --cpus-per-task from the job; pass it on explicitly.
  export SRUN_CPUS_PER_TASK=$th_cpus
  th_log "job ${SLURM_JOB_ID:-none} (restart ${SLURM_RESTART_COUNT:-0}) on ${SLURM_JOB_NODELIST:-$(hostname -s)}:" \
         "${SLURM_NTASKS:-?} ranks x $th_cpus thread(s); deck $th_deck; output $th_out"
}

th_signalled=""

# Asks the ranks to checkpoint and stop. With --signal=B:USR1@N (or scancel --batch) only this
# shell gets the signal: pass SIGUSR1 on to the launcher (Open MPI's mpirun and srun both forward
# it to every rank; the ranks agree on it, finish the step, save, exit 0). SIGTERM (scancel, the
# time limit, preemption) is passed on as SIGUSR1 too: a TERM to mpirun would kill the ranks.
th_forward() {
  th_signalled=${th_signalled:-$1}
  th_log "got SIG$1: asking the ranks to checkpoint and stop (SIGUSR1 to launcher pid $th_pid)"
  kill -USR1 "$th_pid" 2>/dev/null || true
}

# th_launch LAUNCHER ARGS...: runs the launch line in the background so that this shell can take
# signals, waits for it, and returns its exit status. After a SIGUSR1 stop of a requeue-able job,
# requeues it (same job id, same output folder: the next run resumes).
th_launch() {
  th_log "launch: $*"
  "$@" &
  th_pid=$!
  trap 'th_forward USR1' USR1
  trap 'th_forward TERM' TERM
  # wait returns early (128 + signal) when a trapped signal arrives: wait again until the launcher
  # is gone, then take its own status (bash keeps it for a second wait).
  while kill -0 "$th_pid" 2>/dev/null; do wait "$th_pid" || true; done
  local rc=0
  wait "$th_pid" || rc=$?
  trap - USR1 TERM
  th_log "launcher exited with status $rc"
  if [[ $rc -eq 0 && $th_signalled == USR1 && ${TH_REQUEUE:-1} == 1 && -n ${SLURM_JOB_ID:-} ]]; then
    if ((${SLURM_RESTART_COUNT:-0} >= ${TH_MAX_RESTARTS:-20})); then
      th_log "not requeueing: already restarted ${SLURM_RESTART_COUNT} times (TH_MAX_RESTARTS)"
    elif scontrol show job -o "$SLURM_JOB_ID" | grep -q ' Requeue=1'; then
      th_log "checkpoint written; requeueing job $SLURM_JOB_ID (the next run resumes from it)"
      scontrol requeue "$SLURM_JOB_ID" || th_log "scontrol requeue failed: resubmit by hand to continue"
    else
      th_log "checkpoint written; the job is not requeue-able (sbatch --requeue): resubmit to continue"
    fi
  fi
  return "$rc"
}

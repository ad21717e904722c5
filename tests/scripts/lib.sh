# Shared by the shell checks in this folder (sourced, not run):
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# The checks are called by CTest as  check_X.sh [OWN ARGS...] MPIEXEC NPFLAG [FLAGS...] -- REST...
# (tests/cmake/*.cmake): the launcher, its -np flag and its flags, then the check's files.

# th_launcher ARGS...: sets mpiexec, npflag, flags (array: the launcher's flags) and rest (array:
# what follows --).
th_launcher() {
  mpiexec=$1 npflag=$2
  shift 2
  flags=()
  while [[ $# -gt 0 && $1 != -- ]]; do flags+=("$1"); shift; done
  [[ $# -gt 0 ]] && shift
  rest=("$@")
}

# th_workdir: a fresh temporary folder in $out, removed when the script exits, after the
# commands registered with th_on_exit (e.g. killing a job still running, unmounting).
th_exit_cmds=()
th_on_exit() { th_exit_cmds+=("$1"); }
th_exit() {
  local c
  for c in "${th_exit_cmds[@]}"; do eval "$c"; done
  rm -rf "$out"
}
th_workdir() {
  out=$(mktemp -d)
  trap th_exit EXIT
}

fail() { echo "FAIL: $*"; exit 1; }

# wait_for_line FILE PATTERN SECONDS PID: 0 as soon as FILE holds a line matching PATTERN; 1 when
# process PID has ended first or SECONDS have passed.
wait_for_line() {
  local i
  for ((i = 0; i < $3 * 20; ++i)); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    kill -0 "$4" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}

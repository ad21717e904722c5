#!/usr/bin/env bash
# A bad deck must stop the run before any work: non-zero exit, no hang, and the expected message
# exactly once on stderr (rank 0 only reports), whatever the number of ranks.
#
#   check_deck_error.sh [--expect TEXT] DECK [ARG...] -- LAUNCHER... EXECUTABLE
#
# Runs `LAUNCHER... EXECUTABLE DECK ARG...`. TEXT defaults to the deck's first line
# "! expect: <text>", so the deck file carries its own expectation (the unit test
# tests/unit/test_deck.cpp checks the same line without MPI).
set -u

expect=""
if [ "${1:-}" = "--expect" ]; then
  expect="$2"
  shift 2
fi
deck="${1:?usage: check_deck_error.sh [--expect TEXT] DECK [ARG...] -- LAUNCHER... EXECUTABLE}"
shift
args=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
  args+=("$1")
  shift
done
[ "${1:-}" = "--" ] || { echo "FAIL: missing '--' before the launcher"; exit 1; }
shift
if [ -z "$expect" ]; then
  expect="$(sed -n '1s/^! expect: //p' "$deck")"
  [ -n "$expect" ] || { echo "FAIL: $deck has no '! expect: <message>' first line"; exit 1; }
fi

hang_limit=20   # seconds: beyond this the job is considered hung
accept_limit=2  # seconds: the acceptance target, reported, not enforced here
err="$(mktemp)"
out="$(mktemp)"
trap 'rm -f "$err" "$out"' EXIT

echo "run: $* $deck ${args[*]}"
echo "expect on stderr, once: $expect"
start=$(date +%s.%N)
timeout -k 5 "$hang_limit" "$@" "$deck" "${args[@]}" >"$out" 2>"$err"
status=$?
end=$(date +%s.%N)
elapsed=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }')

fail=0
report() { echo "FAIL: $*"; fail=1; }
if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
  report "no exit within ${hang_limit} s (a rank hangs?)"
elif [ "$status" -eq 0 ]; then
  report "exit status 0 for a bad deck"
fi
found=$(grep -cF -- "$expect" "$err")
[ "$found" -eq 1 ] || report "expected message found $found times on stderr, wanted exactly 1"
reports=$(grep -cF -- "torch-handle: error:" "$err")
[ "$reports" -eq 1 ] ||
  report "'torch-handle: error:' printed $reports times, wanted exactly 1 (rank 0 only)"

note=""
[ "$status" -eq 2 ] || note=" (main should exit 2 on an input error)"
echo "exit status: $status$note"
over=$(awk -v e="$elapsed" -v l="$accept_limit" 'BEGIN { if (e > l) printf "; OVER" }')
echo "elapsed: ${elapsed} s (acceptance: within ${accept_limit} s$over)"
if [ "$fail" -ne 0 ]; then
  echo "---- stderr ----"
  cat "$err"
  echo "---- stdout ----"
  cat "$out"
  exit 1
fi
echo "PASS"

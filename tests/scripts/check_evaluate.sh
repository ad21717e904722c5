#!/usr/bin/env bash
# check_evaluate.sh MPIEXEC NPFLAG [FLAGS...] -- TORCH_HANDLE DECK
# End to end on the copy task: train a model, then
#  - task='evaluate' on 1 and 3 ranks gives the same translations (test.hyp.txt, in input order),
#    the same BLEU line, and BLEU > 90 (the copy task is learnt);
#  - task='translate' on 3 ranks from a file equals 1 rank from stdin, line by line, and copies
#    most lines exactly (so line k's output belongs to line k: the lines have different lengths
#    and are decoded sorted by length on several ranks);
#  - evaluate without a checkpoint stops with a clear message.
set -u
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
th_launcher "$@"
exe=${rest[0]} deck=${rest[1]}
th_workdir
export OMP_NUM_THREADS=1
# The runs are compared bit for bit: pin the GEMM library ('auto' times the providers at start-up
# and could pick another one for another run or rank count).
run() {  # run NP ARGS...
  local np=$1; shift
  timeout 300 "$mpiexec" "$npflag" "$np" "${flags[@]}" "$exe" "$deck" --set "run%output_dir='$out/run'" \
    --set data%synthetic_valid_samples=64 --set "run%gemm='openblas'" "$@"
}

run 2 --set run%max_steps=300 >"$out/train.log" 2>&1 || { cat "$out/train.log"; fail "training failed"; }

run 1 --set "run%task='evaluate'" --set translate%beam_size=1 >"$out/eval1.log" 2>&1 || { cat "$out/eval1.log"; fail "evaluate on 1 rank"; }
cp "$out/run/test.hyp.txt" "$out/hyp1.txt"
run 3 --set "run%task='evaluate'" --set translate%beam_size=1 >"$out/eval3.log" 2>&1 || { cat "$out/eval3.log"; fail "evaluate on 3 ranks"; }
bleu1=$(grep "evaluate: BLEU" "$out/eval1.log" | sed 's/ (greedy.*//')
bleu3=$(grep "evaluate: BLEU" "$out/eval3.log" | sed 's/ (greedy.*//')
loss1=$(grep "evaluate: loss" "$out/eval1.log")
loss3=$(grep "evaluate: loss" "$out/eval3.log")
echo "1 rank:  $bleu1"; echo "         $loss1"
echo "3 ranks: $bleu3"; echo "         $loss3"
[[ $(wc -l <"$out/hyp1.txt") -eq 64 ]] || fail "test.hyp.txt should have 64 lines"
cmp -s "$out/hyp1.txt" "$out/run/test.hyp.txt" || fail "translations differ between 1 and 3 ranks"
[[ -n $bleu1 && $bleu1 == "$bleu3" ]] || fail "BLEU differs between 1 and 3 ranks"
[[ $loss1 == "$loss3" ]] || fail "loss/accuracy differ between 1 and 3 ranks"
score=$(echo "$bleu1" | awk '{print $4}')
awk -v s="$score" 'BEGIN { exit !(s > 90) }' || fail "BLEU $score <= 90 on the copy task"
/usr/bin/python3 - "$out/run/evaluate.h5" "$score" <<'EOF' || fail "evaluate.h5"
import sys, h5py
f = h5py.File(sys.argv[1], "r")
bleu = float(f["test/bleu"][0])
assert abs(bleu - float(sys.argv[2])) < 0.006, (bleu, sys.argv[2])
assert int(f["test/step"][0]) == 300 and int(f["test/sentences"][0]) == 64
print("evaluate.h5: test/bleu", round(bleu, 2), "step", int(f["test/step"][0]))
EOF

# Lines of different lengths (one empty): the copy model should give each line back.
printf '%s\n' "5 6 7 8 9" "10 11 12 13 14 15 16 17 18 19 20" "" "21 22 23 4" "4 9 14 19 5 10 15 20" \
  "6 6 7 7" "12 11 10 9 8 7 6 5 4" "23 5 17" "8 16 9 17 10 18 11" "13 14 15 16 17 18" >"$out/in.txt"
run 3 --set "run%task='translate'" --set "translate%input_file='$out/in.txt'" \
  --set "translate%output_file='$out/out3.txt'" >"$out/tr3.log" 2>&1 || { cat "$out/tr3.log"; fail "translate on 3 ranks"; }
run 1 --set "run%task='translate'" --set "translate%input_file='-'" <"$out/in.txt" >"$out/out1.txt" 2>"$out/tr1.log" ||
  { cat "$out/tr1.log"; fail "translate on 1 rank from stdin"; }
cmp -s "$out/out1.txt" "$out/out3.txt" || { diff "$out/out1.txt" "$out/out3.txt"; fail "translate: 1 rank (stdin) and 3 ranks (file) differ"; }
same=$(paste -d'|' "$out/in.txt" "$out/out3.txt" | awk -F'|' '$1 == $2' | wc -l)
echo "translate: $same of 10 lines copied exactly (beam 4, 3 ranks == 1 rank)"
[[ $(wc -l <"$out/out3.txt") -eq 10 ]] || fail "translate should write 10 lines"
[[ $same -ge 8 ]] || { paste "$out/in.txt" "$out/out3.txt"; fail "fewer than 8 of 10 lines copied: wrong order or untrained"; }
grep -q "^translate: 10 sentences" "$out/tr1.log" || fail "the stdin run's report should be on stderr"

# No checkpoint: a clear error, not a crash.
timeout 60 "$mpiexec" "$npflag" 2 "${flags[@]}" "$exe" "$deck" --set "run%output_dir='$out/empty'" \
  --set "run%task='evaluate'" >"$out/none.log" 2>&1
rc=$?
[[ $rc -ne 0 && $rc -ne 124 ]] || fail "evaluate without a checkpoint: exit status $rc"
grep -q "no checkpoint in $out/empty/checkpoints" "$out/none.log" || { cat "$out/none.log"; fail "no clear message"; }
echo "evaluate without a checkpoint: $(grep -m1 'error' "$out/none.log")"
echo PASS

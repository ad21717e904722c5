#!/usr/bin/env bash
# check_rank_failure.sh SCENARIO NP MPIEXEC NPFLAG [FLAGS...] -- TORCH_HANDLE TSV
# One rank (the last) fails while the job reads a real dataset (prepared here from TSV), and the
# job must end with that rank's message, non-zero, within 10 s of the failure, whatever the other
# ranks are doing. Scenarios (TH_FAULT kinds: include/th/core/error.hpp):
#   open       the reader throws at start-up, its file open in MPI-IO, while the others read
#              the offsets collectively
#   read       the reader throws on the prefetch thread reading the batches of step 3, while
#              the others are in step 3's gradient all-reduce
#   save       an exception while the checkpoint of step 2 is written (its file open in MPI-IO)
#   evaluate   task='evaluate' throws before the rank's first batch; the others reach the
#              all-reduce of the sums
#   evalopen   task='evaluate': the reader of the test file throws at its open (MPI-IO)
#   validate   the validation of step 2 throws on one rank during training
#   input      an InputError (which should be raised by every rank alike) raised by one rank
#              alone at step 3: the job is aborted once the others have not come within 3 s
#   badtoken   no fault injected: one example of the training file holds token id 123456
#   negtoken   likewise with token id -7 in a target
# For the injected faults the time is taken from the "TH_FAULT: ... injected at <ms>" line the
# failing rank prints; for the bad files from the start of the job (its whole length is bounded).
set -u
scenario=$1 np=$2; shift 2
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
th_launcher "$@"
exe=${rest[0]} tsv=${rest[1]}
th_workdir
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
fail() { echo "FAIL ($scenario, $np ranks): $*"; echo "--- stderr:"; head -30 "$out/stderr" 2>/dev/null; exit 1; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

cat >"$out/train.nml" <<EOF
&run task = 'train', output_dir = '$out/run', seed = 7, max_steps = 40 /
&model arch = 'encoder-decoder', d_model = 16, n_heads = 2, d_ff = 32, n_encoder_layers = 1,
       n_decoder_layers = 1, max_len = 128, vocab_size = 0 /
&data train_file = '$out/data/train.h5', valid_file = '$out/data/valid.h5', test_file = '$out/data/test.h5',
      max_tokens = 256 /
&translate beam_size = 1, max_len_ratio = 1.0 /
&log every_steps = 1 /
EOF
run() {  # run NP ARGS... (stdout, stderr into $out)
  local n=$1; shift
  timeout 120 "$mpiexec" "$npflag" "$n" "${flags[@]}" "$exe" "$out/train.nml" "$@" >"$out/stdout" 2>"$out/stderr" </dev/null
}
run 1 --set "run%task='prepare'" --set "run%output_dir='$out/data'" --set "prepare%source='$tsv'" \
  --set prepare%vocab_size=300 --set prepare%valid_fraction=0.1 --set prepare%test_fraction=0.1 || fail "prepare"

# Overwrites int32 number `index` of dataset `name` in an HDF5 file (contiguous, little-endian).
poke() {  # poke FILE DATASET INDEX VALUE
  local offset
  offset=$(h5dump -p -H -d "$2" "$1" | awk '/OFFSET/ { print $2; exit }')
  [[ -n $offset ]] || fail "no offset for $2 in $1"
  /usr/bin/python3 -c "import struct,sys; f=open(sys.argv[1],'r+b'); f.seek(int(sys.argv[2])+4*int(sys.argv[3])); f.write(struct.pack('<i',int(sys.argv[4])))" \
    "$1" "$offset" "$3" "$4"
}

bad=$((np - 1))
fault="" kind="" args=() expect=""
case $scenario in
  open) fault="$bad:1:open" kind="open 1" ;;
  read) fault="$bad:3:read" kind="read 3" ;;
  input) fault="$bad:3:input" kind="input 3" ;;
  save) fault="$bad:2:save_throw" kind="save_throw 2"; args=(--set checkpoint%every_steps=2) ;;
  validate) fault="$bad:1:evaluate" kind="evaluate 1"; args=(--set log%valid_every_steps=2) ;;
  evaluate | evalopen)
    run "$np" --set run%max_steps=2 || fail "training before evaluate"
    args=(--set "run%task='evaluate'")
    if [[ $scenario == evaluate ]]; then fault="$bad:1:evaluate" kind="evaluate 1"; else fault="$bad:1:open" kind="open 1"; fi ;;
  badtoken) poke "$out/data/train.h5" /src/tokens 100 123456; expect="token id 123456 in src/tokens of example" ;;
  negtoken) poke "$out/data/train.h5" /tgt/tokens 57 -7; expect="token id -7 in tgt/tokens of example" ;;
  *) fail "unknown scenario" ;;
esac

start=$(now_ms)
if [[ -n $fault ]]; then
  TH_FAULT=$fault run "$np" "${args[@]}"
  rc=$?
else
  run "$np" "${args[@]}"
  rc=$?
fi
end=$(now_ms)
echo "$scenario on $np ranks: exit status $rc, job $((end - start)) ms"
grep -E "torch-handle: error|TH_FAULT" "$out/stderr"
[[ $rc -ne 124 && $rc -ne 137 ]] || fail "the job hung (killed by the 120 s timeout)"
[[ $rc -ne 0 ]] || fail "exit status 0 after a rank failed"
if [[ -n $fault ]]; then
  grep -q "^\[rank $bad\] torch-handle: error: .*fault injected by TH_FAULT ($kind" "$out/stderr" ||
    fail "no message of rank $bad naming the fault"
  at=$(sed -n "s/^\[rank $bad\] TH_FAULT: $kind injected at \([0-9]*\)$/\1/p" "$out/stderr" | head -1)
  [[ -n $at ]] || fail "no TH_FAULT time stamp"
  echo "the job ended $((end - at)) ms after the fault"
  (( end - at <= 10000 )) || fail "the job ended $((end - at)) ms after the fault (more than 10 s)"
else
  grep -qE "^\[rank [0-9]+\] torch-handle: error: $out/data/train.h5: $expect [0-9]+ is outside the vocabulary \[0, [0-9]+\)" \
    "$out/stderr" || fail "no rank-prefixed message naming the file, the id and the example"
  (( end - start <= 60000 )) || fail "the job took $((end - start)) ms"
fi
echo "PASS"

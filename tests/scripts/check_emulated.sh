#!/usr/bin/env bash
# check_emulated.sh SCENARIO MPIEXEC NPFLAG [FLAGS...] -- TORCH_HANDLE DECK TSV
# run%backend = 'emulated' (th/backend/emulated.hpp: the CUDA backend's memory discipline and
# streams on the CPU kernels) against the CPU backend, 2 ranks, on DECK (the copy task):
#   stage<S>_<dtype>  20 steps of ZeRO stage S in fp32/bf16/fp16 on both backends: the progress
#                     lines (loss, grad norm), the validation line and every parameter and moment
#                     of the last checkpoint must be identical (h5diff on /model and /optimizer);
#                     in 16 bits both report the same parameters peak (2-byte compute copies).
#                     The emulated runs use the backend's device communicator (parallel%comm =
#                     'auto': the emulated device's stand-in for NCCL, the code path NCCL takes on
#                     CUDA); stage0_fp32 and stage1_bf16 also run with 'mpi' (the sync's own
#                     staging) and must match; stage0_fp32 checks that 'nccl' is refused on the
#                     CPU backend (no device communicator there) with an input error.
#   offload_opt       the same with the optimizer state offloaded to the host (stage 3, fp32)
#   offload_param     stage 3, bf16, parameters offloaded to the host and moments to NVMe files; and
#                     offload_param without offload_optimizer is refused on the emulated device
#   offload_nvme      stage 3, fp32, parameters and moments in NVMe files
#   lm                a decoder-only LM on packed blocks with the document mask, learned positions,
#                     dropout and activation checkpointing, ZeRO 2 (text prepared from the English
#                     side of TSV): the same comparison; then task 'generate' (sampling through
#                     the KV cache) gives the same text on both backends
#   evaluate          task 'evaluate' of a copy-task checkpoint (teacher-forced loss, beam-search
#                     translations through the KV cache) on both backends: the same figures and
#                     the same translations
#   resume            a checkpoint written on the emulated device resumes on the CPU backend and
#                     the other way round; both continue exactly as the uninterrupted CPU run.
#   skip_copy         TH_FAULT makes the first host_view() skip its copy (host code reading device
#                     memory): the job must fail with the emulated device's message, not finish.
#   skip_wait         TH_FAULT makes rank 0's first wait() return early (a missing synchronisation
#                     before MPI reads a pinned staging buffer): likewise.
#   skip_stream_wait  stage 3 with parameters and optimizer offloaded to the host: the parameter
#                     uploads run on the copy stream and the emulated run matches the CPU one;
#                     then TH_FAULT drops rank 0's stream_wait()s from the 2nd on (the compute
#                     stream no longer waits for the uploads) and the run must not match.
set -u
scenario=$1; shift
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
th_launcher "$@"
exe=${rest[0]} deck=${rest[1]} tsv=${rest[2]:-}
th_workdir
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
fail() { echo "FAIL ($scenario): $*"; exit 1; }

# run NAME BACKEND ARGS...: 2 ranks, output in $out/NAME (log: $out/NAME.log); returns the status.
# run%gemm is pinned: 'auto' times the GEMM libraries at start-up and could pick another one for
# the second run (different bits, not a backend difference).
run() {
  local name=$1 be=$2
  shift 2
  timeout 300 "$mpiexec" "${flags[@]}" "$npflag" 2 "$exe" "$deck" --set "run%backend='$be'" \
    --set "run%output_dir='$out/$name'" --set run%max_steps=20 --set log%every_steps=5 \
    --set checkpoint%every_steps=10 --set "run%gemm='openblas'" "$@" >"$out/$name.log" 2>&1
}
lines() { grep -E '^(step [0-9]+/|validation)' "$1" | sed -E 's/ \| [0-9]+ tok\/s.*//'; }
same_run() {  # same_run A B: identical progress and checkpoint contents
  diff <(lines "$out/$1.log") <(lines "$out/$2.log") || fail "$1 and $2 trained differently (diff above)"
  [[ -n $(lines "$out/$1.log") ]] || fail "$1 printed no progress: $(tail -5 "$out/$1.log")"
  local c1 c2
  c1=$(ls "$out/$1"/checkpoints/ckpt_*.h5 | tail -1) c2=$(ls "$out/$2"/checkpoints/ckpt_*.h5 | tail -1)
  for g in /model /optimizer; do
    h5diff -r "$c1" "$c2" "$g" >"$out/h5diff" 2>&1 || { cat "$out/h5diff" | head -20; fail "$g differs between $c1 and $c2"; }
  done
}

case $scenario in
  stage*_*)
    s=${scenario#stage}; stage=${s%_*} dt=${s#*_}
    for be in cpu emulated; do
      run "$be" "$be" --set parallel%zero_stage="$stage" --set "precision%dtype='$dt'" ||
        fail "$be run failed: $(tail -5 "$out/$be.log")"
    done
    same_run cpu emulated
    if [[ $dt != fp32 ]]; then
      # The emulated device holds the parameters' 2-byte compute copy as the CPU does. Stages 0-2:
      # the same parameters peak. Stage 3 gathers into device workspaces (a different peak than
      # the CPU's): its peak must be well under the same run with an fp32 compute copy (2 bytes
      # of 4 per gathered value, the shard's fp32 master aside: 0.5-0.6; an fp32 copy gives 1).
      pp() { grep -m1 -oE 'per category peak: parameters [0-9.]+ [KMG]iB' "$out/$1.log" | sed 's/.*parameters //'; }
      kib() { awk '{ print $1 * ($2 == "GiB" ? 1048576 : $2 == "MiB" ? 1024 : 1) }' <<<"$1"; }
      [[ -n $(pp cpu) && -n $(pp emulated) ]] || fail "no memory report in $out/cpu.log or $out/emulated.log"
      if [[ $stage != 3 ]]; then
        [[ $(pp cpu) == $(pp emulated) ]] ||
          fail "parameters peak: cpu $(pp cpu), emulated $(pp emulated) (expected equal: 2-byte compute copies)"
      else
        run fp32copy emulated --set parallel%zero_stage=3 --set "precision%dtype='$dt'" \
          --set "precision%param_storage='fp32'" || fail "param_storage 'fp32' run failed: $(tail -5 "$out/fp32copy.log")"
        awk -v a="$(kib "$(pp emulated)")" -v b="$(kib "$(pp fp32copy)")" 'BEGIN { exit !(b > 0 && a <= 0.75 * b) }' ||
          fail "parameters peak on the emulated device: $(pp emulated) with 2-byte compute copies, $(pp fp32copy) with fp32 ones"
      fi
    fi
    if [[ $scenario == stage0_fp32 || $scenario == stage1_bf16 ]]; then
      grep -q "collectives: the device communicator (emulated: staged inside it through pinned memory to MPI) (parallel%comm = 'auto')" \
        "$out/emulated.log" || fail "the emulated run does not say how it communicates"
      run mpi emulated --set parallel%zero_stage="$stage" --set "precision%dtype='$dt'" --set "parallel%comm='mpi'" ||
        fail "parallel%comm = 'mpi' failed: $(tail -5 "$out/mpi.log")"
      grep -q "collectives: MPI through pinned staging buffers (parallel%comm = 'mpi')" "$out/mpi.log" ||
        fail "the 'mpi' run does not say how it communicates"
      same_run cpu mpi
    fi
    if [[ $scenario == stage0_fp32 ]]; then
      if run nccl cpu --set "parallel%comm='nccl'"; then fail "parallel%comm = 'nccl' ran on the CPU backend"; fi
      grep -q "parallel%comm = 'nccl': the cpu backend has no NCCL communicator" "$out/nccl.log" ||
        fail "no clear refusal of parallel%comm = 'nccl': $(grep error "$out/nccl.log" | head -2)"
    fi ;;
  offload_opt)
    for be in cpu emulated; do
      run "$be" "$be" --set parallel%zero_stage=3 --set "parallel%offload_optimizer='cpu'" ||
        fail "$be run failed: $(tail -5 "$out/$be.log")"
    done
    same_run cpu emulated ;;
  offload_param|offload_nvme)
    mkdir -p "$out/nvme_cpu" "$out/nvme_emulated"
    if [[ $scenario == offload_param ]]; then set -- --set "precision%dtype='bf16'" --set "parallel%offload_param='cpu'"
    else set -- --set "parallel%offload_param='nvme'"; fi
    for be in cpu emulated; do
      run "$be" "$be" --set parallel%zero_stage=3 "$@" --set "parallel%offload_optimizer='nvme'" \
        --set "parallel%nvme_path='$out/nvme_$be'" || fail "$be run failed: $(tail -5 "$out/$be.log")"
    done
    same_run cpu emulated
    if [[ $scenario == offload_param ]]; then
      if run refused emulated --set parallel%zero_stage=3 --set "parallel%offload_param='cpu'"; then
        fail "offload_param without offload_optimizer ran on the emulated device"
      fi
      grep -q "offload_param = 'cpu' on the emulated backend needs parallel%offload_optimizer" "$out/refused.log" ||
        fail "no clear refusal: $(grep error "$out/refused.log" | head -2)"
    fi ;;
  lm)
    mkdir -p "$out/text"
    cut -f1 "$tsv" | awk -v f="$out/text/a.txt" '{ print > f; if (NR % 3 == 0) print "" > f }'
    cat >"$out/lm.nml" <<EOF
&run task = 'train', output_dir = '$out/run', seed = 5 /
&model arch = 'decoder-only', d_model = 32, n_heads = 4, d_ff = 64, n_encoder_layers = 0, n_decoder_layers = 2,
       activation = 'gelu', norm = 'pre', dropout = 0.1, max_len = 32, positions = 'learned' /
&data train_file = '$out/data/train.h5', valid_file = '$out/data/valid.h5', test_file = '$out/data/test.h5',
      packing = 'concat', document_mask = .true., max_tokens = 64 /
&prepare source = 'text:$out/text', vocab_size = 256, valid_fraction = 0.2, test_fraction = 0.1 /
&parallel zero_stage = 2, activation_checkpointing = T /
&optim lr = 3.0e-3, warmup_steps = 5 /
EOF
    timeout 300 "$mpiexec" "${flags[@]}" "$npflag" 1 "$exe" "$out/lm.nml" --set "run%task='prepare'" \
      --set "run%output_dir='$out/data'" --set "data%train_file=''" --set "data%valid_file=''" \
      --set "data%test_file=''" >"$out/prepare.log" 2>&1 || fail "prepare: $(tail -5 "$out/prepare.log")"
    deck=$out/lm.nml
    for be in cpu emulated; do
      run "$be" "$be" --set log%valid_every_steps=10 || fail "$be run failed: $(tail -5 "$out/$be.log")"
    done
    same_run cpu emulated
    printf 'In the beginning\nAnd God said\n' >"$out/prompts.txt"
    for be in cpu emulated; do
      timeout 300 "$mpiexec" "${flags[@]}" "$npflag" 2 "$exe" "$deck" --set "run%backend='$be'" --set "run%gemm='openblas'" \
        --set "run%output_dir='$out/cpu'" --set "run%task='generate'" --set "generate%input_file='$out/prompts.txt'" \
        --set "generate%output_file='$out/gen_$be.txt'" --set generate%max_new_tokens=10 --set generate%seed=3 \
        >"$out/gen_$be.log" 2>&1 || fail "generate on $be: $(tail -5 "$out/gen_$be.log")"
    done
    [[ -s $out/gen_cpu.txt ]] || fail "generate wrote nothing"
    cmp -s "$out/gen_cpu.txt" "$out/gen_emulated.txt" || fail "generated texts differ: $(paste "$out/gen_cpu.txt" "$out/gen_emulated.txt")" ;;
  evaluate)
    run train cpu || fail "training failed: $(tail -5 "$out/train.log")"
    for be in cpu emulated; do
      run train "$be" --set "run%task='evaluate'" || fail "evaluate on $be: $(tail -5 "$out/train.log")"
      grep '^evaluate:' "$out/train.log" | sed -E 's/ in [0-9.]+ s, [0-9.]+ sentences\/s//' >"$out/eval_$be.txt"
      cp "$out/train/test.hyp.txt" "$out/hyp_$be.txt" || fail "no translations from $be"
    done
    grep -q BLEU "$out/eval_cpu.txt" || fail "no BLEU line: $(cat "$out/eval_cpu.txt")"
    diff "$out/eval_cpu.txt" "$out/eval_emulated.txt" || fail "evaluate figures differ between the backends"
    cmp -s "$out/hyp_cpu.txt" "$out/hyp_emulated.txt" || fail "translations differ between the backends" ;;
  resume)
    run ref cpu --set parallel%zero_stage=1 || fail "reference run failed"
    for pair in "emulated cpu" "cpu emulated"; do
      set -- $pair
      run "first_$1" "$1" --set parallel%zero_stage=1 --set run%max_steps=10 || fail "first half on $1 failed"
      mkdir -p "$out/then_$2"
      cp -r "$out/first_$1/checkpoints" "$out/then_$2/"
      run "then_$2" "$2" --set parallel%zero_stage=1 --set "checkpoint%resume='auto'" ||
        fail "resume on $2 of a checkpoint from $1 failed: $(tail -5 "$out/then_$2.log")"
      diff <(lines "$out/ref.log" | grep -E '^step (15|20)/|^validation at step 20') \
           <(lines "$out/then_$2.log" | grep -E '^step (15|20)/|^validation at step 20') ||
        fail "resuming a $1 checkpoint on $2 does not continue the uninterrupted run"
      c=$(ls "$out/then_$2"/checkpoints/ckpt_00000020.h5) || fail "no step-20 checkpoint after resume on $2"
      h5diff -r "$out/ref/checkpoints/ckpt_00000020.h5" "$c" /model >/dev/null || fail "step-20 parameters differ after $1 -> $2"
    done ;;
  skip_copy|skip_wait)
    if TH_FAULT="0:1:$scenario" run fault emulated; then fail "the job finished although $scenario was injected"; fi
    grep -q "TH_FAULT: $scenario 1 injected" "$out/fault.log" || fail "the fault was not injected: $(tail -5 "$out/fault.log")"
    want="host access to emulated device memory"
    [[ $scenario == skip_wait ]] && want="host access to pinned memory .* while an asynchronous copy is in flight: a missing synchronisation"
    grep -qE "\[rank 0\] torch-handle: error: $want" "$out/fault.log" ||
      fail "no '$want' message: $(grep -v '^ ' "$out/fault.log" | tail -8)" ;;
  skip_stream_wait)
    # Stage 3 with parameters offloaded to the host: their uploads run on the copy stream and the
    # compute stream waits for each (stream_wait). First the correct run, then one where rank 0
    # drops every stream_wait from its 2nd on, its copies starting late: it must train otherwise.
    set -- --set parallel%zero_stage=3 --set "parallel%offload_param='cpu'" --set "parallel%offload_optimizer='cpu'" \
      --set run%max_steps=10
    for be in cpu emulated; do
      run "$be" "$be" "$@" || fail "$be run failed: $(tail -5 "$out/$be.log")"
    done
    same_run cpu emulated
    TH_FAULT="0:2:skip_stream_wait" run fault emulated "$@"  # may finish or fail; it must not match
    grep -q "TH_FAULT: skip_stream_wait 2 injected" "$out/fault.log" ||
      fail "the fault was not injected: $(tail -5 "$out/fault.log")"
    if diff -q <(lines "$out/cpu.log") <(lines "$out/fault.log") >/dev/null; then
      fail "a missing stream_wait went unnoticed: the run trained exactly as the CPU backend"
    fi ;;
  *) fail "unknown scenario" ;;
esac
echo "OK ($scenario)"

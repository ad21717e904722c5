#!/usr/bin/env bash
# check_lm.sh MPIEXEC NPFLAG [FLAGS...] -- TORCH_HANDLE FIXTURE
# A language model end to end on a small text corpus (the English side of the Genesis fixture,
# documents of three verses separated by blank lines):
#  - prepare from text on 1 and 3 ranks gives the same files; from JSON Lines of the same
#    documents the same token stream; the layout reads with h5py (every document ends with EOS,
#    offsets and counts agree); a malformed JSON line stops every rank with file:line;
#  - train a tiny decoder-only model for 40 steps on 2 ranks (packed blocks, document mask):
#    the validation perplexity falls (metrics.h5, per token and per byte);
#  - evaluate gives the perplexity per token and per byte (evaluate.h5);
#  - generate with a fixed seed gives the same text twice, on 1 and 3 ranks, from a file or
#    stdin, one line per prompt in input order; another seed gives another text;
#  - learned positions: trained at ZeRO stage 3, evaluated, generated on 1 and 3 ranks alike; a
#    sinusoidal deck on that checkpoint is refused.
set -u
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
th_launcher "$@"
exe=${rest[0]} fixture=${rest[1]}
th_workdir
export OMP_NUM_THREADS=1
py=/usr/bin/python3

mkdir -p "$out/text"
cut -f1 "$fixture" | awk -v dir="$out/text" '{ f = (NR <= 60) ? dir "/a.txt" : dir "/b.txt"; print > f; if (NR % 3 == 0) print "" > f }'
$py - "$out/text" "$out/genesis.jsonl" <<'EOF2' || fail "writing the JSON Lines copy"
import json, sys, re, os
docs = []
for name in ("a.txt", "b.txt"):
    docs += [d for d in open(os.path.join(sys.argv[1], name), encoding="utf-8").read().split("\n\n") if d.strip()]
with open(sys.argv[2], "w", encoding="utf-8") as f:
    for d in docs:
        f.write(json.dumps({"id": len(d), "text": d, "meta": {"lang": "en"}}, ensure_ascii=(len(d) % 2 == 0)) + "\n")
EOF2

# gemm = 'openblas': generated texts are compared bit for bit between runs, so the GEMM library
# is pinned ('auto' times the providers at start-up and could pick another one for another run).
cat >"$out/lm.nml" <<EOF2
&run task = 'train', output_dir = '$out/run', seed = 5, max_steps = 40, gemm = 'openblas' /
&model arch = 'decoder-only', d_model = 64, n_heads = 4, d_ff = 128, n_encoder_layers = 0,
       n_decoder_layers = 2, activation = 'gelu', norm = 'pre', dropout = 0.0, max_len = 32 /
&data train_file = '$out/data/train.h5', valid_file = '$out/data/valid.h5', test_file = '$out/data/test.h5',
      packing = 'concat', document_mask = .true., max_tokens = 64 /
&prepare source = 'text:$out/text', vocab_size = 256, valid_fraction = 0.2, test_fraction = 0.1 /
&optim lr = 3.0e-3, warmup_steps = 5, schedule = 'cosine', label_smoothing = 0.0, weight_decay = 0.01 /
&log every_steps = 10, valid_every_steps = 10 /
&generate max_new_tokens = 12, temperature = 0.9, top_k = 20, top_p = 0.95, repetition_penalty = 1.2,
          seed = 7, batch_prompts = 2 /
EOF2
run() {  # run NP ARGS...
  local np=$1; shift
  timeout 300 "$mpiexec" "$npflag" "$np" "${flags[@]}" "$exe" "$out/lm.nml" "$@"
}
prep() {  # prep NP DIR [ARGS...]
  local np=$1 dir=$2; shift 2
  run "$np" --set "run%task='prepare'" --set "run%output_dir='$dir'" --set "data%train_file=''" \
    --set "data%valid_file=''" --set "data%test_file=''" "$@"
}

prep 3 "$out/p3" >"$out/p3.log" 2>&1 || { cat "$out/p3.log"; fail "prepare on 3 ranks"; }
prep 1 "$out/data" >"$out/p1.log" 2>&1 || { cat "$out/p1.log"; fail "prepare on 1 rank"; }
grep "encode + write" "$out/p1.log"
prep 2 "$out/pj" --set "prepare%source='jsonl:$out/genesis.jsonl:text'" >"$out/pj.log" 2>&1 ||
  { cat "$out/pj.log"; fail "prepare from JSON Lines"; }
$py - "$out" <<'EOF2' || fail "the text datasets (h5py)"
import h5py, numpy as np, sys
out = sys.argv[1]
for split in ("train", "valid", "test"):
    a, b, j = (h5py.File(f"{out}/{d}/{split}.h5", "r") for d in ("data", "p3", "pj"))
    for name in ("tokens", "doc_offsets", "tokenizer/model"):
        assert np.array_equal(a[name][:], b[name][:]), f"{split}/{name}: 1 rank != 3 ranks"
        assert np.array_equal(a[name][:], j[name][:]), f"{split}/{name}: text != jsonl"
    tok, off = a["tokens"][:], a["doc_offsets"][:]
    assert a.attrs["format"] == "torch-handle-lm-dataset" and a.attrs["format_version"] == 1
    assert a.attrs["split"] == split and a.attrs["num_tokens"] == len(tok)
    assert a.attrs["num_documents"] == len(off) - 1 and off[0] == 0 and off[-1] == len(tok)
    assert np.all(np.diff(off) >= 2), "a document holds at least one token and its EOS"
    assert np.all(tok[off[1:] - 1] == a.attrs["eos_id"]), "every document ends with EOS"
    assert np.sum(tok == a.attrs["eos_id"]) == len(off) - 1, "EOS only between documents"
    assert tok.max() < a.attrs["vocab_size"] and not np.any(tok == a.attrs["pad_id"]) and not np.any(tok == a.attrs["bos_id"])
    assert j.attrs["documents"] == "line" and a.attrs["documents"] == "blank_line"
    print(f"{split}: {len(off) - 1} documents, {len(tok)} tokens; 1 rank == 3 ranks == jsonl")
EOF2

# A malformed JSON line: every rank stops, one message with file:line.
printf '{"text": "fine"}\n{"text": "broken}\n' >"$out/bad.jsonl"
prep 2 "$out/bad" --set "prepare%source='jsonl:$out/bad.jsonl:text'" >"$out/bad.log" 2>&1
rc=$?
[[ $rc -ne 0 && $rc -ne 124 ]] || fail "malformed JSON: exit status $rc"
grep -q "$out/bad.jsonl:2: malformed JSON: unterminated string" "$out/bad.log" || { cat "$out/bad.log"; fail "no file:line message"; }
[[ $(grep -c "malformed JSON" "$out/bad.log") -eq 1 ]] || { cat "$out/bad.log"; fail "the message should come once"; }
echo "malformed JSON line: $(grep -m1 'malformed' "$out/bad.log")"

run 2 >"$out/train.log" 2>&1 || { cat "$out/train.log"; fail "training on 2 ranks"; }
grep "^validation" "$out/train.log"
$py - "$out/run/metrics.h5" <<'EOF2' || fail "validation perplexity did not fall"
import h5py, sys
f = h5py.File(sys.argv[1], "r")
step, ppl, bppl = f["valid/step"][:], f["valid/perplexity"][:], f["valid/byte_perplexity"][:]
print("valid perplexity by step:", dict(zip(step.tolist(), [round(x, 2) for x in ppl.tolist()])))
assert list(step) == [10, 20, 30, 40], step
assert ppl[-1] < 0.8 * ppl[0], ("no fall", ppl)
assert ppl[-1] < 0.6 * 256, ("not well below the vocabulary size (an untrained model)", ppl)
assert all(1.0 < b < p for b, p in zip(bppl, ppl)), "per-byte perplexity between 1 and the per-token one"
assert f["train/loss"][-1] < f["train/loss"][0]
EOF2

run 2 --set "run%task='evaluate'" >"$out/eval.log" 2>&1 || { cat "$out/eval.log"; fail "evaluate on 2 ranks"; }
grep "^evaluate: loss" "$out/eval.log" || fail "no evaluate line"
$py - "$out/run/evaluate.h5" <<'EOF2' || fail "evaluate.h5"
import h5py, math, sys
t = h5py.File(sys.argv[1], "r")["test"]
loss, ppl, tokens, nbytes, bppl = (float(t[k][0]) for k in ("loss", "perplexity", "tokens", "bytes", "byte_perplexity"))
assert int(t["step"][0]) == 40
assert abs(ppl - math.exp(loss)) < 1e-9 * ppl and abs(bppl - math.exp(loss * tokens / nbytes)) < 1e-9 * bppl
print(f"evaluate.h5: perplexity {ppl:.2f} per token, {bppl:.4f} per byte over {tokens:.0f} tokens")
EOF2

printf '%s\n' "In the beginning" "And God said" "" "The serpent was more subtle" "Cain" >"$out/prompts.txt"
gen() {  # gen NP OUTPUT [ARGS...]
  local np=$1 o=$2; shift 2
  run "$np" --set "run%task='generate'" --set "generate%input_file='$out/prompts.txt'" \
    --set "generate%output_file='$o'" "$@"
}
gen 1 "$out/g1a.txt" >"$out/g1a.log" 2>&1 || { cat "$out/g1a.log"; fail "generate on 1 rank"; }
gen 1 "$out/g1b.txt" >/dev/null 2>&1 || fail "generate again"
gen 3 "$out/g3.txt" >"$out/g3.log" 2>&1 || { cat "$out/g3.log"; fail "generate on 3 ranks"; }
gen 1 "$out/g8.txt" --set generate%seed=8 >/dev/null 2>&1 || fail "generate with seed 8"
run 1 --set "run%task='generate'" --set "generate%input_file='-'" <"$out/prompts.txt" >"$out/gs.txt" 2>"$out/gs.log" ||
  { cat "$out/gs.log"; fail "generate from stdin"; }
cat "$out/g1a.txt"
[[ $(wc -l <"$out/g1a.txt") -eq 5 ]] || fail "one line per prompt"
cmp -s "$out/g1a.txt" "$out/g1b.txt" || fail "the same seed twice gave different text"
cmp -s "$out/g1a.txt" "$out/g3.txt" || { diff "$out/g1a.txt" "$out/g3.txt"; fail "1 and 3 ranks differ"; }
cmp -s "$out/g1a.txt" "$out/gs.txt" || fail "stdin/stdout differs from file/file"
cmp -s "$out/g1a.txt" "$out/g8.txt" && fail "another seed gave the same text"
grep -q "^generate: 5 prompts" "$out/gs.log" || { cat "$out/gs.log"; fail "the report belongs on stderr"; }
grep "^generate:" "$out/g3.log"

# Learned positions (model%positions = 'learned', GPT-2's): trained at ZeRO stage 3 on 2 ranks, the
# checkpoint evaluates and generates (the same text on 1 and 3 ranks), and a deck with sinusoidal
# positions is refused with the dataset it lacks a place for.
learned=(--set "model%positions='learned'" --set "run%output_dir='$out/runL'")
run 2 "${learned[@]}" --set run%max_steps=10 --set parallel%zero_stage=3 >"$out/trainL.log" 2>&1 ||
  { cat "$out/trainL.log"; fail "training with learned positions at stage 3"; }
run 1 "${learned[@]}" --set "run%task='evaluate'" >"$out/evalL.log" 2>&1 ||
  { cat "$out/evalL.log"; fail "evaluate with learned positions"; }
grep "^evaluate: loss" "$out/evalL.log" || fail "no evaluate line (learned positions)"
gen 1 "$out/gL1.txt" "${learned[@]}" >"$out/gL1.log" 2>&1 || { cat "$out/gL1.log"; fail "generate, learned positions"; }
gen 3 "$out/gL3.txt" "${learned[@]}" >"$out/gL3.log" 2>&1 || { cat "$out/gL3.log"; fail "generate on 3 ranks, learned"; }
[[ $(wc -l <"$out/gL1.txt") -eq 5 ]] || fail "one line per prompt (learned positions)"
cmp -s "$out/gL1.txt" "$out/gL3.txt" || { diff "$out/gL1.txt" "$out/gL3.txt"; fail "learned: 1 and 3 ranks differ"; }
gen 1 "$out/gLs.txt" --set "run%output_dir='$out/runL'" >"$out/gLs.log" 2>&1 && fail "a sinusoidal deck used learned weights"
grep -q "pos_embed/weight is not a tensor of this model" "$out/gLs.log" || { cat "$out/gLs.log"; fail "no clear mismatch message"; }
echo "learned positions: $(grep -m1 '^evaluate: loss' "$out/evalL.log"); sinusoidal deck refused"
echo PASS

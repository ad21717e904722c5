#!/usr/bin/env bash
# task = 'plan' end to end, under the launcher given:
#   check_plan.sh gpt3 LAUNCHER... EXE      inputs/plan_gpt3_175b.nml: the table, stage 3 on 128 x 8
#                                          first, plan.h5 with every layout, the plot script's PNG
#   check_plan.sh calibrate LAUNCHER... EXE bench_small with plan%calibrate: machine.nml written and
#                                          readable (a second plan from it lists the same layouts),
#                                          every rank finishes (no hang)
#   check_plan.sh bad-machine LAUNCHER... EXE an unknown machine key stops every rank with one
#                                          message naming file, line and key, exit status 2
set -u
mode=$1
shift
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
out=$(mktemp -d)
cd "$root"  # decks name files relative to the repository root
trap 'rm -rf "$out"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
case "$mode" in
  gpt3)
    timeout 120 "$@" "$root/inputs/plan_gpt3_175b.nml" --set "run%output_dir='$out'" >"$out/log" 2>&1 \
      || { cat "$out/log"; fail "plan run"; }
    cat "$out/log"
    grep -q "plan: fastest layout that fits: 128 node(s) x 8 rank(s), ZeRO stage 3" "$out/log" || fail "stage 3 on 128 x 8 is not first"
    grep -qE "^ +[0-9]+ +128 x 8 +1024 +1 +none .* NO, " "$out/log" || fail "stage 1 without offload should not fit"
    /usr/bin/python3 - "$out/plan.h5" <<'PY' || fail "plan.h5"
import sys, h5py
f = h5py.File(sys.argv[1], "r")
assert f.attrs["format"] == "torch-handle plan 1"
L = f["layouts"]
n = len(L["ranks"])
assert n == 4 * 3 * 3, n
for k in L.keys():
    assert len(L[k]) == n, k
step = L["step_s"][:]
for i in range(n):
    parts = L["forward_s"][i] + L["backward_s"][i] + L["recompute_s"][i] + L["optimizer_s"][i] + L["comm_exposed_s"][i] + L["offload_io_s"][i]
    assert abs(parts - step[i]) < 1e-9 * step[i], (i, parts, step[i])
    assert L["fits"][i] in (0.0, 1.0)
    assert (L["shortfall_bytes"][i] == 0) == (L["fits"][i] == 1.0)
print("plan.h5:", n, "layouts; first", int(L["nodes"][0]), "x", int(L["ranks_per_node"][0]), "stage", int(L["stage"][0]))
PY
    /usr/bin/python3 "$root/jobs/analysis/plot_plan.py" "$out/plan.h5" >"$out/plot.log" 2>&1 || { cat "$out/plot.log"; fail "plot_plan.py"; }
    cat "$out/plot.log"
    png="$out/plan_tokens_per_s.png"
    [[ $(head -c 8 "$png" | od -An -tx1 | tr -d ' \n') == 89504e470d0a1a0a ]] || fail "no PNG"
    (( $(stat -c %s "$png") > 5000 )) || fail "PNG too small"
    ;;
  calibrate)
    timeout 120 "$@" "$root/inputs/bench_small.nml" --set "run%task='plan'" --set "run%output_dir='$out'" \
      --set plan%calibrate=.true. --set plan%ranks_per_node=1,2 --set "plan%offload='none','cpu','nvme'" \
      --set "parallel%nvme_path='$out/nvme'" >"$out/log" 2>&1 || { cat "$out/log"; fail "calibrating plan run"; }
    cat "$out/log"
    [[ -s $out/machine.nml ]] || fail "no machine.nml"
    rows=$(grep -cE "^ +[0-9]+ +1 x [12] " "$out/log")
    [[ $rows == 20 ]] || fail "expected 20 layouts, got $rows"
    timeout 60 "$@" "$root/inputs/bench_small.nml" --set "run%task='plan'" --set "run%output_dir='$out/again'" \
      --set "plan%machine='$out/machine.nml'" --set plan%ranks_per_node=1,2 --set "plan%offload='none','cpu','nvme'" \
      >"$out/log2" 2>&1 || { cat "$out/log2"; fail "plan from the calibrated file"; }
    [[ $(grep -cE "^ +[0-9]+ +1 x [12] " "$out/log2") == 20 ]] || fail "the calibrated file plans differently"
    ;;
  bad-machine)
    printf "&machine name = 'x', device = 'gpu', devices_per_node = 8\n  hbm_gib = 80 /\n" >"$out/bad.nml"
    timeout 60 "$@" "$root/inputs/bench_small.nml" --set "run%task='plan'" --set "run%output_dir='$out'" \
      --set "plan%machine='$out/bad.nml'" >"$out/log" 2>&1
    rc=$?
    cat "$out/log"
    [[ $rc != 124 ]] || fail "hang"
    [[ $rc != 0 ]] || fail "exit status 0 for a bad machine file"
    [[ $(grep -c "bad.nml:2: 'machine%hbm_gib' is not a machine key" "$out/log") == 1 ]] || fail "expected the message once"
    ;;
  *) fail "unknown mode $mode" ;;
esac
echo PASS

#!/usr/bin/python3
"""Tokens/s against ranks from a plan (task = 'plan'), one line per ZeRO stage (h5py + matplotlib).

    /usr/bin/python3 jobs/analysis/plot_plan.py runs/plan_gpt3_175b/plan.h5 [--out FILE]

One line per (stage, offload) the plan holds, the colour by stage, the line style by offload
(solid none, dashed cpu, dotted nvme); filled markers for layouts that fit, open markers (at the
throughput they would have) for those that do not. Writes <plan folder>/plan_tokens_per_s.png
unless --out says otherwise, and prints the fastest fitting layout of every stage. Needs no
Torch-Handle code: only the plan.h5 schema of docs/planning.md.
"""
import argparse
import os
import sys
import textwrap

import h5py
import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

OFFLOAD = {0: "none", 1: "cpu", 2: "nvme"}
STYLE = {0: "-", 1: "--", 2: ":"}
COLOUR = {0: "tab:blue", 1: "tab:orange", 2: "tab:green", 3: "tab:red"}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("plan", help="plan.h5 written by task = 'plan'")
    ap.add_argument("--out", help="PNG to write (default: plan_tokens_per_s.png beside plan.h5)")
    args = ap.parse_args()
    with h5py.File(args.plan, "r") as f:
        if f.attrs.get("format", b"") not in ("torch-handle plan 1", b"torch-handle plan 1"):
            sys.exit(f"{args.plan}: not a torch-handle plan (format attribute)")
        lay = {k: f["layouts"][k][:] for k in f["layouts"].keys()}
        model = f.attrs.get("model", "")
        machine = f.attrs.get("machine", "")
    n = len(lay["ranks"])
    lines = {}
    for i in range(n):
        key = (int(lay["stage"][i]), int(lay["offload_optimizer"][i]))
        lines.setdefault(key, []).append(i)
    fig, ax = plt.subplots(figsize=(8, 5.5))
    for (stage, off), idx in sorted(lines.items()):
        idx.sort(key=lambda i: lay["ranks"][i])
        xs = [lay["ranks"][i] for i in idx]
        ys = [lay["tokens_per_s"][i] for i in idx]
        ax.plot(xs, ys, STYLE.get(off, "-"), color=COLOUR.get(stage, "k"),
                label=f"stage {stage}, offload {OFFLOAD.get(off, off)}")
        for i in idx:
            fits = lay["fits"][i] > 0.5
            ax.plot(lay["ranks"][i], lay["tokens_per_s"][i], "o", color=COLOUR.get(stage, "k"),
                    markerfacecolor=COLOUR.get(stage, "k") if fits else "none")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("ranks")
    ax.set_ylabel("tokens/s (whole job)")
    ax.set_title("\n".join(textwrap.wrap(f"{machine}: {model}", 110)), fontsize=8)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="best", title="filled: fits; open: does not fit", title_fontsize=7)
    fig.tight_layout()
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(args.plan)), "plan_tokens_per_s.png")
    fig.savefig(out, dpi=110)
    plt.close(fig)
    print(f"wrote {out}")
    print("fastest fitting layout per stage:")
    for stage in sorted({int(s) for s in lay["stage"]}):
        best = [i for i in range(n) if int(lay["stage"][i]) == stage and lay["fits"][i] > 0.5]
        if not best:
            print(f"  stage {stage}: none fits")
            continue
        i = max(best, key=lambda j: lay["tokens_per_s"][j])
        print(f"  stage {stage}: {int(lay['nodes'][i])} x {int(lay['ranks_per_node'][i])} ranks, offload "
              f"{OFFLOAD.get(int(lay['offload_optimizer'][i]))}: {lay['tokens_per_s'][i]:.4g} tokens/s, "
              f"step {lay['step_s'][i]:.3g} s, MFU {lay['mfu'][i]:.3f}, "
              f"device {lay['device_peak_bytes'][i] / 2**30:.3g} GiB")


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""Plots and tables from a Torch-Handle run folder (h5py + matplotlib from Debian).

    /usr/bin/python3 jobs/analysis/plot_metrics.py runs/quickstart [--out DIR] [--trace FILE]

Reads <run>/metrics.h5 (and <run>/trace.json, <run>/evaluate.h5 when present) and writes PNGs:
  loss.png        training loss per logged step, validation loss on top
  valid.png       validation perplexity and token accuracy
  throughput.png  tokens/s and seconds per step
  lr_scale.png    learning rate and loss scale
and prints tables: the last training records, every validation record, the evaluation, and the
trace summary (busy time per category and the longest events, per rank).
See docs/analysis.md. Needs no Torch-Handle code: only the file formats it documents.
"""
import argparse
import collections
import json
import os
import sys

import h5py
import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402


def read_group(f, name):
    """{field: numpy array} of one metrics group, {} when absent."""
    if name not in f:
        return {}
    return {k: f[name][k][:] for k in f[name].keys()}


def table(title, header, rows):
    print(f"\n{title}")
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(str(h)) for i, h in enumerate(header)]
    print("  " + "  ".join(str(h).rjust(w) for h, w in zip(header, widths)))
    for r in rows:
        print("  " + "  ".join(str(c).rjust(w) for c, w in zip(r, widths)))


def fmt(x, digits=4):
    return f"{x:.{digits}g}"


def plot_pair(path, series, xlabel, title):
    """series: list of (axis 0/1, x, y, label, style); two stacked axes sharing x."""
    fig, axes = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    for ax_index, xs, y, label, style in series:
        axes[ax_index].plot(xs, y, style, label=label)
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(loc="best")
    axes[1].set_xlabel(xlabel)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"wrote {path}")


def plot_metrics(run, out):
    path = os.path.join(run, "metrics.h5")
    with h5py.File(path, "r") as f:
        train, valid = read_group(f, "train"), read_group(f, "valid")
    if not train:
        sys.exit(f"{path}: no /train records yet")
    step = train["step"]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(step, train["loss"], "-", label="train loss (mean over the logged window)")
    if valid:
        ax.plot(valid["step"], valid["loss"], "o-", label="validation loss (NLL)")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats per token)")
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    ax.set_title(os.path.basename(os.path.abspath(run)))
    fig.tight_layout()
    fig.savefig(os.path.join(out, "loss.png"), dpi=100)
    plt.close(fig)
    print(f"wrote {os.path.join(out, 'loss.png')}")
    if valid and "perplexity" in valid:
        series = [(0, valid["step"], valid["perplexity"], "validation perplexity", "o-")]
        if "accuracy" in valid:
            series.append((1, valid["step"], 100 * valid["accuracy"], "validation token accuracy (%)", "o-"))
        plot_pair(os.path.join(out, "valid.png"), series, "step", "validation")
    plot_pair(os.path.join(out, "throughput.png"),
              [(0, step, train["tokens_per_s"], "tokens/s (all ranks)", "-"),
               (1, step, train["step_s"], "seconds per step", "-")], "step", "throughput")
    plot_pair(os.path.join(out, "lr_scale.png"),
              [(0, step, train["lr"], "learning rate", "-"),
               (1, step, train["loss_scale"], "loss scale", "-")], "step", "schedule")
    last = range(max(0, len(step) - 5), len(step))
    table("training (last records)", ["step", "epoch", "loss", "lr", "grad_norm", "tokens/s", "s/step", "peak MiB"],
          [[int(step[i]), int(train["epoch"][i]), fmt(train["loss"][i]), fmt(train["lr"][i], 3),
            fmt(train["grad_norm"][i], 3), fmt(train["tokens_per_s"][i]), fmt(train["step_s"][i], 3),
            fmt(train["peak_bytes"][i] / 2**20, 4)] for i in last])
    if valid:
        cols = [c for c in ("loss", "perplexity", "accuracy") if c in valid]
        table("validation", ["step"] + cols,
              [[int(valid["step"][i])] + [fmt(valid[c][i]) for c in cols] for i in range(len(valid["step"]))])


def print_evaluation(run):
    path = os.path.join(run, "evaluate.h5")
    if not os.path.exists(path):
        return
    with h5py.File(path, "r") as f:
        test = read_group(f, "test")
    if not test:
        return
    cols = [c for c in ("step", "loss", "perplexity", "accuracy", "bleu", "beam_size", "sentences", "sentences_per_s")
            if c in test]
    table("evaluation (evaluate.h5)", cols, [[fmt(test[c][i]) for c in cols] for i in range(len(test[cols[0]]))])


def summarize_trace(path, top):
    with open(path) as fh:
        events = json.load(fh)["traceEvents"]
    complete = [e for e in events if e.get("ph") == "X"]
    busy = collections.defaultdict(float)   # (rank, category) -> ms
    by_name = collections.defaultdict(lambda: [0, 0.0])  # (rank, name) -> count, ms
    for e in complete:
        busy[(e["pid"], e.get("cat", "other"))] += e["dur"] / 1000.0
        entry = by_name[(e["pid"], e["name"])]
        entry[0] += 1
        entry[1] += e["dur"] / 1000.0
    ranks = sorted({r for r, _ in busy})
    cats = sorted({c for _, c in busy})
    table(f"trace {path}: busy ms per category (nested events counted in each of their levels)",
          ["rank"] + cats, [[r] + [fmt(busy.get((r, c), 0.0)) for c in cats] for r in ranks])
    for r in ranks:
        names = sorted(((n, v) for (rr, n), v in by_name.items() if rr == r), key=lambda t: -t[1][1])[:top]
        table(f"rank {r}: longest events in total", ["event", "count", "total ms", "mean ms"],
              [[n, v[0], fmt(v[1]), fmt(v[1] / v[0])] for n, v in names])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", help="run folder (run%%output_dir) holding metrics.h5")
    ap.add_argument("--out", help="folder for the PNGs (default: <run>/plots)")
    ap.add_argument("--trace", help="trace.json to summarize (default: <run>/trace.json if present)")
    ap.add_argument("--top", type=int, default=8, help="longest events listed per rank")
    args = ap.parse_args()
    out = args.out or os.path.join(args.run, "plots")
    os.makedirs(out, exist_ok=True)
    plot_metrics(args.run, out)
    print_evaluation(args.run)
    trace = args.trace or os.path.join(args.run, "trace.json")
    if os.path.exists(trace):
        summarize_trace(trace, args.top)


if __name__ == "__main__":
    main()

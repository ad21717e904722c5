#!/usr/bin/env python3
"""Check a Torch-Handle trace (trace.json) and print what it holds.

    python3 tools/trace_check.py runs/x/trace.json [--ranks N] [--quiet]

Checks that the file is one valid JSON object with a "traceEvents" list, that every complete
("ph":"X") event has name/cat/ts/dur/pid/tid with dur >= 0, that the events of each (pid, tid) are
properly nested (a child lies inside its parent: what trace viewers need to draw a call tree),
that every process and thread carrying events is named by a "ph":"M" event, and, with --ranks N,
that events from ranks 0..N-1 are all present. Then prints, per rank, the busy time per category
(the union of the category's events) and the event count. Exit status 0 when every check passes,
1 otherwise (the messages say which). Standard library only.
"""
import argparse
import collections
import json
import sys

EPS_US = 1e-6  # ts and dur are printed with three decimals (ns); allow for float parsing


def union_length(intervals):
    total, end = 0.0, None
    for b, e in sorted(intervals):
        if end is None or b > end:
            total += e - b
            end = e
        elif e > end:
            total += e - end
            end = e
    return total


def check(trace, ranks=None):
    errors = []
    if not isinstance(trace, dict) or not isinstance(trace.get("traceEvents"), list):
        return ['top level must be an object with a "traceEvents" list'], {}
    if trace.get("displayTimeUnit") not in (None, "ms", "ns"):
        errors.append('displayTimeUnit must be "ms" or "ns"')
    tracks = collections.defaultdict(list)
    named_pids, named_tids = set(), set()
    for i, ev in enumerate(trace["traceEvents"]):
        ph = ev.get("ph")
        if ph == "M":
            if ev.get("name") == "process_name":
                named_pids.add(ev.get("pid"))
            elif ev.get("name") == "thread_name":
                named_tids.add((ev.get("pid"), ev.get("tid")))
            continue
        if ph != "X":
            errors.append(f"event {i}: unexpected ph {ph!r}")
            continue
        missing = [k for k in ("name", "cat", "ts", "dur", "pid", "tid") if k not in ev]
        if missing:
            errors.append(f"event {i}: missing {missing}")
            continue
        if ev["dur"] < 0 or ev["ts"] < 0:
            errors.append(f"event {i} ({ev['name']}): negative ts or dur")
        tracks[(ev["pid"], ev["tid"])].append(ev)

    for (pid, tid), evs in sorted(tracks.items()):
        if pid not in named_pids:
            errors.append(f"pid {pid} has events but no process_name")
        if (pid, tid) not in named_tids:
            errors.append(f"pid {pid} tid {tid} has events but no thread_name")
        evs.sort(key=lambda e: (e["ts"], -e["dur"]))
        stack = []  # end times of the open events, innermost last
        for ev in evs:
            b, e = ev["ts"], ev["ts"] + ev["dur"]
            while stack and stack[-1][0] <= b + EPS_US:
                stack.pop()
            if stack and e > stack[-1][0] + EPS_US:
                errors.append(f"pid {pid} tid {tid}: {ev['name']!r} [{b}, {e}] overlaps "
                              f"{stack[-1][1]!r} (ends {stack[-1][0]}) without nesting")
            stack.append((e, ev["name"]))

    per_rank = collections.defaultdict(lambda: collections.defaultdict(list))
    for (pid, _), evs in tracks.items():
        for ev in evs:
            per_rank[pid][ev["cat"]].append((ev["ts"], ev["ts"] + ev["dur"]))
    if ranks is not None:
        absent = [r for r in range(ranks) if r not in per_rank]
        if absent:
            errors.append(f"no events from ranks {absent}")
    return errors, per_rank


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trace")
    ap.add_argument("--ranks", type=int, help="require events from ranks 0..N-1")
    ap.add_argument("--quiet", action="store_true", help="print only errors")
    args = ap.parse_args()
    try:
        with open(args.trace, encoding="utf-8") as f:
            trace = json.load(f)
    except (OSError, ValueError) as e:
        print(f"{args.trace}: not a readable JSON file: {e}", file=sys.stderr)
        return 1
    errors, per_rank = check(trace, args.ranks)
    for e in errors[:50]:
        print(f"{args.trace}: {e}", file=sys.stderr)
    if len(errors) > 50:
        print(f"{args.trace}: ... {len(errors) - 50} more", file=sys.stderr)
    if not args.quiet:
        for pid in sorted(per_rank):
            cats = per_rank[pid]
            n = sum(len(v) for v in cats.values())
            busy = ", ".join(f"{c} {union_length(v) / 1e3:.3f} ms" for c, v in sorted(cats.items()))
            print(f"rank {pid}: {n} events; {busy}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())

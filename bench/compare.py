#!/usr/bin/env python3
"""Compares a burn benchmark CSV (`s2rm bench`) with the PyTorch reference CSV (bench/torch_reference.py).

    python3 bench/compare.py results/bench/burn.csv results/bench/torch.csv

Both files have the header `framework,device,threads,preset,benchmark,unit,median,min,max,runs`.
For every (preset, benchmark) present in both, prints a markdown table of the medians and
`speed burn/torch`: burn/torch for tokens/s rows, torch/burn for seconds rows, so that a value
above 1 always means burn is faster. Standard library only.
"""

import csv
import os
import sys

HEADER = ["framework", "device", "threads", "preset", "benchmark", "unit", "median", "min", "max", "runs"]
RATE_UNITS = {"tokens/s"}  # larger is faster
TIME_UNITS = {"s"}  # smaller is faster


def fail(msg):
    sys.exit(f"compare.py: {msg}")


def read(path):
    if not os.path.isfile(path):
        fail(f"{path}: no such file")
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header != HEADER:
            fail(f"{path}: header is {','.join(header or []) or '(empty file)'}; expected {','.join(HEADER)}")
        rows = {}
        order = []
        for n, r in enumerate(reader, start=2):
            if not r:
                continue
            if len(r) != len(HEADER):
                fail(f"{path}:{n}: {len(r)} fields, expected {len(HEADER)}")
            row = dict(zip(HEADER, r))
            try:
                row["median"] = float(row["median"])
            except ValueError:
                fail(f"{path}:{n}: median {row['median']!r} is not a number")
            key = (row["preset"], row["benchmark"])
            if key in rows:
                fail(f"{path}:{n}: duplicate row for preset {key[0]}, benchmark {key[1]}")
            rows[key] = row
            order.append(key)
    return rows, order


def describe(rows):
    fw = sorted({r["framework"] for r in rows.values()})
    dev = sorted({r["device"] for r in rows.values()})
    th = sorted({r["threads"] for r in rows.values()})
    return f"{', '.join(fw)} on {', '.join(dev)}, threads {', '.join(th)}"


def main():
    if len(sys.argv) != 3:
        fail("usage: python3 bench/compare.py BURN_CSV TORCH_CSV")
    burn_path, torch_path = sys.argv[1], sys.argv[2]
    burn, burn_order = read(burn_path)
    torch, _ = read(torch_path)
    common = [k for k in burn_order if k in torch]
    if not common:
        fail(f"no (preset, benchmark) pair is in both {burn_path} and {torch_path}")

    print(f"burn:  {describe(burn)} ({burn_path})")
    print(f"torch: {describe(torch)} ({torch_path})")
    print()
    print("| preset | benchmark | unit | burn median | torch median | speed burn/torch |")
    print("|---|---|---:|---:|---:|---:|")
    for key in common:
        b, t = burn[key], torch[key]
        if b["unit"] != t["unit"]:
            fail(f"preset {key[0]}, benchmark {key[1]}: unit {b['unit']} in {burn_path}, {t['unit']} in {torch_path}")
        bv, tv = b["median"], t["median"]
        if b["unit"] in RATE_UNITS:
            num, den = bv, tv
        elif b["unit"] in TIME_UNITS:
            num, den = tv, bv
        else:
            fail(f"preset {key[0]}, benchmark {key[1]}: unknown unit {b['unit']!r} (expected tokens/s or s)")
        ratio = f"{num / den:.2f}" if den > 0 else "n/a"
        print(f"| {key[0]} | {key[1]} | {b['unit']} | {bv:.6g} | {tv:.6g} | {ratio} |")

    only = sorted(set(burn) ^ set(torch))
    if only:
        print()
        for key in only:
            side = burn_path if key in burn else torch_path
            print(f"(only in {side}: {key[0]} {key[1]})")
    print()
    print("speed burn/torch > 1: burn is faster (tokens/s rows: burn/torch; seconds rows: torch/burn).")


if __name__ == "__main__":
    main()

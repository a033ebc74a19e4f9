"""Benchmark: ``ce-loss compare A B T`` against one ``ce-loss compute A T`` on the same files,
each as a whole process.

    python bench/compare.py            # two 1,000,000 x 100 float32 .npy files (400 MB each)
    python bench/compare.py --quick    # a small pair, for a smoke run

The issue's targets: compare's peak RSS under 150 MiB, and its wall time at most 2.2x one
compute (plain output, both; then table-free JSON, which adds the accuracies and
per-class changes). Runs are interleaved (compute, compare, compare --format json, ...),
medians of ``--reps``; peak RSS from GNU time. Also checks that compare's two losses
are compute's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CE_LOSS = str(Path(sys.executable).with_name("ce-loss"))


def generate(folder: Path, rows: int, classes: int) -> tuple[Path, Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    a, b, t = (folder / f"{n}{rows}.npy" for n in ("a", "b", "t"))
    if not all(p.exists() for p in (a, b, t)):
        rng = np.random.default_rng(0)
        x = rng.standard_normal((rows, classes), dtype=np.float32) * 2
        labels = rng.integers(0, classes, size=rows)
        np.save(a, x)
        x[np.arange(rows), labels] += 0.1
        np.save(b, x)
        np.save(t, labels)
    return a, b, t


def run_once(args: list[str]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MiB, stdout) of one ``ce-loss`` process."""
    start = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "%M", CE_LOSS, *args], capture_output=True,
                          text=True, check=True)
    wall = time.perf_counter() - start
    return wall, int(proc.stderr.strip().splitlines()[-1]) / 1024, proc.stdout.strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a small pair, for a smoke run")
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    if not os.path.exists("/usr/bin/time"):
        sys.exit("needs GNU time (/usr/bin/time) for peak RSS")
    rows = 20_000 if args.quick else 1_000_000
    a, b, t = (str(p) for p in generate(HERE / "data" / "compare", rows, 100))
    cases = {
        "compute A (plain)": ["compute", a, t, "--format", "plain", "-q"],
        "compare A B (plain)": ["compare", a, b, t, "--format", "plain", "-q"],
        "compare A B (json)": ["compare", a, b, t, "--format", "json", "-q"],
    }
    walls: dict[str, list[float]] = {k: [] for k in cases}
    rss: dict[str, list[float]] = {k: [] for k in cases}
    outs: dict[str, str] = {}
    for _ in range(args.reps):
        for name, cmd in cases.items():
            wall, peak, out = run_once(cmd)
            walls[name].append(wall)
            rss[name].append(peak)
            outs[name] = out
    doc = json.loads(outs["compare A B (json)"])
    assert doc["a"]["loss"] == float(outs["compute A (plain)"]), (doc["a"], outs)
    base = statistics.median(walls["compute A (plain)"])
    print(f"{rows:,} x 100 float32, medians of {args.reps} interleaved runs\n")
    print("| run | wall s | x compute | peak RSS MiB |")
    print("|---|---:|---:|---:|")
    for name in cases:
        w = statistics.median(walls[name])
        print(f"| {name} | {w:.2f} | {w / base:.2f} | {max(rss[name]):.0f} |")


if __name__ == "__main__":
    main()

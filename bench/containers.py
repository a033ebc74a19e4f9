"""Benchmark: one large array read from a torch .pt file and a .safetensors file, against
the same array as .npy, each as a whole ``ce-loss compute`` process.

    python bench/containers.py             # 5.4 M x 100 float32 logits: 2.16 GB a file
    python bench/containers.py --quick     # a small array, for a smoke run

Generates the files in bench/data/containers/ (kept between runs) with torch and the
safetensors package, then runs ``ce-loss compute LOGITS labels.npy`` on each, interleaved
(npy, pt, safetensors, npy, ...), and prints a markdown table of median wall times, their
ratio to .npy and peak RSS (GNU time). Every run's loss must agree with the .npy run's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CE_LOSS = str(Path(sys.executable).with_name("ce-loss"))


def generate(folder: Path, rows: int, classes: int) -> dict[str, Path]:
    """The logits as .npy, .pt and .safetensors (written once), and the labels."""
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    files = {"npy": folder / f"x{rows}.npy", "pt": folder / f"x{rows}.pt",
             "safetensors": folder / f"x{rows}.safetensors", "labels": folder / f"t{rows}.npy"}
    if all(p.exists() for p in files.values()):
        return files
    rng = np.random.default_rng(0)
    x = rng.standard_normal((rows, classes), dtype=np.float32)
    x *= 2
    np.save(files["labels"], rng.integers(0, classes, size=rows))
    np.save(files["npy"], x)
    tensor = torch.from_numpy(x)
    torch.save({"logits": tensor}, files["pt"])
    save_file({"logits": tensor}, str(files["safetensors"]))
    return files


def run_once(logits: str, labels: Path) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MiB, stdout) of one ``ce-loss compute``."""
    cmd = [CE_LOSS, "compute", logits, str(labels)]
    start = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], capture_output=True, text=True,
                          check=True)
    wall = time.perf_counter() - start
    return wall, int(proc.stderr.strip().splitlines()[-1]) / 1024, proc.stdout.strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a small array, for a smoke run")
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    if not os.path.exists("/usr/bin/time"):
        sys.exit("needs GNU time (/usr/bin/time) for peak RSS")
    rows, classes = (50_000, 100) if args.quick else (5_400_000, 100)
    files = generate(HERE / "data" / "containers", rows, classes)
    inputs = {"npy": str(files["npy"]), "pt": f"{files['pt']}:logits",
              "safetensors": f"{files['safetensors']}:logits"}
    walls: dict[str, list[float]] = {k: [] for k in inputs}
    rss: dict[str, list[float]] = {k: [] for k in inputs}
    losses: dict[str, set[str]] = {k: set() for k in inputs}
    for _ in range(args.reps):
        for name, logits in inputs.items():
            wall, peak, out = run_once(logits, files["labels"])
            walls[name].append(wall)
            rss[name].append(peak)
            losses[name].add(out)
    assert len({v for s in losses.values() for v in s}) == 1, losses  # the same loss
    base = statistics.median(walls["npy"])
    size = files["npy"].stat().st_size / 1e9
    print(f"{rows:,} x {classes} float32 logits ({size:.2f} GB a file), median of "
          f"{args.reps} interleaved runs, loss {losses['npy'].pop()}\n")
    print("| input | median wall | ratio to .npy | peak RSS |")
    print("|---|---|---|---|")
    for name in inputs:
        med = statistics.median(walls[name])
        print(f"| {name} | {med:.2f} s | {med / base:.2f} | {max(rss[name]):.0f} MiB |")


if __name__ == "__main__":
    main()

"""Benchmark: a folder of NPY shards, default engine vs --engine dask on 2 local workers.

    python bench/shards.py                 # 20 shards, 5.1 GB of float32 logits
    python bench/shards.py --quick         # 20 small shards, for a smoke run

Generates the data in bench/data/shards/ (kept between runs), then runs
``ce-loss compute x/ t/`` as whole processes, interleaving the default engine and the
Dask engine (a distributed.LocalCluster with 2 single-threaded worker processes, started
once), and prints a markdown table of median wall times, their ratio and peak RSS (the
command's own, and for Dask the largest worker's).
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


def generate(folder: Path, shards: int, rows: int, classes: int) -> float:
    """Write the shards (if missing); return the logits' total size in GB."""
    (folder / "x").mkdir(parents=True, exist_ok=True)
    (folder / "t").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    buf = np.empty((rows, classes), dtype=np.float32)
    for i in range(shards):
        xp, tp = folder / "x" / f"part-{i:03d}.npy", folder / "t" / f"part-{i:03d}.npy"
        if xp.exists() and tp.exists() and xp.stat().st_size >= rows * classes * 4:
            continue
        buf[:] = rng.standard_normal((rows, classes), dtype=np.float32)
        buf *= 2
        np.save(xp, buf)
        np.save(tp, rng.integers(0, classes, size=rows))
    return sum(p.stat().st_size for p in (folder / "x").iterdir()) / 1e9


def rss_of(cmd: list[str]) -> float:
    """Peak RSS (MiB) of one run, measured by GNU time when available."""
    if os.path.exists("/usr/bin/time"):
        proc = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], capture_output=True,
                              text=True)
        return int(proc.stderr.strip().splitlines()[-1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small shards, for a smoke run")
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    shards, classes = 20, 100
    rows = 20_000 if args.quick else 640_000
    folder = HERE / "data" / ("shards-quick" if args.quick else "shards")
    size = generate(folder, shards, rows, classes)
    x, t = str(folder / "x"), str(folder / "t")
    print(f"{shards} shards, {shards * rows:,} rows x {classes} classes, {size:.2f} GB of "
          "float32 logits", file=sys.stderr)

    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None, memory_limit="4GiB") as cluster, \
            Client(cluster) as client:
        default_cmd = [CE_LOSS, "compute", x, t, "--format", "plain"]
        dask_cmd = [*default_cmd, "--engine", "dask", "--scheduler",
                    cluster.scheduler_address]
        walls: dict[str, list[float]] = {"default": [], "dask": []}
        outputs = set()
        for _ in range(args.reps):  # interleaved, so drift hits both alike
            for name, cmd in (("default", default_cmd), ("dask", dask_cmd)):
                start = time.perf_counter()
                proc = subprocess.run(cmd, capture_output=True, text=True)
                walls[name].append(time.perf_counter() - start)
                if proc.returncode:
                    raise SystemExit(proc.stderr)
                outputs.add(proc.stdout.strip())
        default_rss = rss_of(default_cmd)
        client_rss = rss_of(dask_cmd)
        worker_rss = max(client.run(
            lambda: __import__("resource").getrusage(
                __import__("resource").RUSAGE_SELF).ru_maxrss).values()) / 1024

    d, k = statistics.median(walls["default"]), statistics.median(walls["dask"])
    print(f"\nloss printed: {', '.join(sorted(outputs))} (the same for both engines: "
          f"{len(outputs) == 1})\n")
    print("| engine | median wall (s) | ratio to default | peak RSS (MiB) |")
    print("|---|---|---|---|")
    print(f"| default | {d:.2f} | 1.00 | {default_rss:.0f} |")
    print(f"| dask, 2 local workers | {k:.2f} | {k / d:.2f} | client {client_rss:.0f}, "
          f"largest worker {worker_rss:.0f} |")
    print(f"\n{args.reps} interleaved runs each; walls default "
          f"{[round(v, 2) for v in walls['default']]}, dask "
          f"{[round(v, 2) for v in walls['dask']]}")


if __name__ == "__main__":
    main()

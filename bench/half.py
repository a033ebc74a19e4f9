"""Benchmark: torch's half-precision answer (float16 and bfloat16 logits, no ``--dtype``)
against the same logits in float32, each as a whole ``ce-loss compute`` process.

    python bench/half.py                  # (4, 1024, 32000) and (1,000,000, 100), 3 reductions
    python bench/half.py --quick          # small arrays, for a smoke run
    python bench/half.py --only llm --reduction mean --reps 7
    git archive OLD | tar -x -C /tmp/old     # then, before and after interleaved:
    python bench/half.py --root /tmp/old --root .

The logits are drawn once in float32 and saved three ways in bench/data/half/ (kept between
runs): float32 and float16 .npy, and bfloat16 .npy (ml_dtypes' ``<V2``, as ``np.save``
writes it). Each case runs ``ce-loss compute LOGITS LABELS --class-axis -1 --format plain``
(stdout to /dev/null) interleaved (float32, float16, bfloat16, float32, ...; with several
``--root`` checkouts, each of them in turn) and prints a
markdown table of median wall times, their ratio to float32 (the issue asks for <= 1.5),
median CPU time (user + system, steadier when other work shares the machine) and its
ratio, and peak RSS (GNU time).
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
ROOT = HERE.parent
DATA = HERE / "data" / "half"

#: the largest half / float32 wall-time ratio the issue asks for
TARGET = 1.5

#: name -> (logits shape, labels shape); the classes are last
SHAPES = {"llm": ((4, 1024, 32000), (4, 1024)), "rows": ((1_000_000, 100), (1_000_000,))}
QUICK = {"llm": ((2, 128, 32000), (2, 128)), "rows": ((100_000, 100), (100_000,))}
DTYPES = ("float32", "float16", "bfloat16")


def generate(name: str, shape: tuple[int, ...], labels: tuple[int, ...]
             ) -> dict[str, Path]:
    """The logits as float32, float16 and bfloat16 .npy files (written once), and labels."""
    import ml_dtypes

    DATA.mkdir(parents=True, exist_ok=True)
    tag = f"{name}-{'x'.join(map(str, shape))}"
    files = {dt: DATA / f"{tag}-{dt}.npy" for dt in DTYPES}
    files["labels"] = DATA / f"{tag}-labels.npy"
    if all(p.exists() for p in files.values()):
        return files
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape, dtype=np.float32)
    x *= 2
    np.save(files["labels"], rng.integers(0, shape[-1], size=labels))
    np.save(files["float32"], x)
    np.save(files["float16"], x.astype(np.float16))
    np.save(files["bfloat16"], x.astype(ml_dtypes.bfloat16))
    return files


def run_once(logits: Path, labels: Path, reduction: str, root: Path = ROOT
             ) -> tuple[float, float, float]:
    """(wall seconds, peak RSS MiB, CPU seconds) of one ``ce-loss compute``, its stdout
    discarded. CPU time (user + system) is the steadier number on a busy machine."""
    # -P: the checkout comes from PYTHONPATH, not from the working directory
    cmd = [sys.executable, "-P", "-m", "ce_cli", "compute", str(logits), str(labels),
           "--class-axis", "-1", "--reduction", reduction, "--format", "plain"]
    env = {**os.environ, "PYTHONPATH": str(root)}
    start = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "%M %U %S", *cmd], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, env=env)
    wall = time.perf_counter() - start
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr}")
    peak, user, system = proc.stderr.strip().splitlines()[-1].split()
    return wall, int(peak) / 1024, float(user) + float(system)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small arrays, for a smoke run")
    ap.add_argument("--reps", type=int, default=5, help="interleaved runs per case (>= 5)")
    ap.add_argument("--only", choices=sorted(SHAPES), action="append",
                    help="one shape (repeatable); default both")
    ap.add_argument("--reduction", choices=("mean", "sum", "none"), action="append",
                    help="one reduction (repeatable); default all three")
    ap.add_argument("--root", type=Path, action="append",
                    help="a ce-loss checkout to run (repeatable, runs interleaved; default "
                         "this one), e.g. an older commit exported by git archive")
    args = ap.parse_args()
    if not os.path.exists("/usr/bin/time"):
        sys.exit("needs GNU time (/usr/bin/time) for peak RSS")
    shapes = QUICK if args.quick else SHAPES
    roots: list[Path] = args.root or [ROOT]
    runs = [(root, dt) for root in roots for dt in DTYPES]
    rows = []
    for name in args.only or list(shapes):
        shape, labels = shapes[name]
        files = generate(name, shape, labels)
        for reduction in args.reduction or ["mean", "sum", "none"]:
            walls: dict[tuple[Path, str], list[float]] = {r: [] for r in runs}
            cpus: dict[tuple[Path, str], list[float]] = {r: [] for r in runs}
            rss: dict[tuple[Path, str], list[float]] = {r: [] for r in runs}
            for dt in DTYPES:  # warm the page cache
                run_once(files[dt], files["labels"], reduction, roots[0])
            for _ in range(args.reps):
                for root, dt in runs:
                    wall, peak, cpu = run_once(files[dt], files["labels"], reduction, root)
                    walls[root, dt].append(wall)
                    rss[root, dt].append(peak)
                    cpus[root, dt].append(cpu)
            for root, dt in runs:
                base = statistics.median(walls[root, "float32"])
                base_cpu = statistics.median(cpus[root, "float32"])
                med, cpu = statistics.median(walls[root, dt]), statistics.median(cpus[root, dt])
                ratio = med / base
                verdict = "-" if dt == "float32" else ("yes" if ratio <= TARGET else "**no**")
                rows.append(f"| {root.resolve().name} | {'x'.join(map(str, shape))} | "
                            f"{reduction} | {dt} | {med:.2f} s | {ratio:.2f} | {verdict} | "
                            f"{cpu:.2f} s | {cpu / base_cpu:.2f} | {max(rss[root, dt]):.0f} MiB |")
                print(rows[-1], file=sys.stderr)
    print(f"\nmedian of {args.reps} interleaved runs ({', '.join(DTYPES)}"
          f"{' for each checkout' if len(roots) > 1 else ''}); ratio = half / float32 of "
          f"the same checkout, target <= {TARGET}\n")
    print("| checkout | logits | reduction | dtype | median wall | ratio | <= 1.5 | median CPU "
          "| CPU ratio | peak RSS |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()

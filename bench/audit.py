"""Benchmark: the audit (table and JSON output) against the number alone (plain output).

    python bench/audit.py                  # 1M x 100 float32, (4, 1024, 32000) float16, bfloat16
    python bench/audit.py --quick          # small arrays, for a smoke run
    python bench/audit.py --only f16 --reps 7
    python bench/audit.py --root /tmp/ce-before   # another checkout's ce_cli (before/after)

Each case runs ``ce-loss compute X T --format plain``, ``--format json`` and ``--format
table`` (stdout to /dev/null) as whole processes (``python -P -m ce_cli`` with this
checkout, or ``--root``, on PYTHONPATH), interleaved (plain, json, table, plain, ...)
after one untimed warm-up each, and prints the median wall times, the json/plain and
table/plain ratios (issue 15 asks for <= 2), the same ratios of CPU time (user + system:
steadier than wall time on a shared machine) and peak RSS (GNU time's, the largest over
the runs). The JSON's loss must be the plain run's. Data goes to bench/data/ (gitignored).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from run import DATA, TIME, make_npy, table  # noqa: E402

#: the issue's target: table and JSON at most this many times the plain run's wall time
TARGET = 2.0


def make_lm(shape: tuple[int, int, int], dtype: str) -> tuple[Path, Path]:
    """(B, L, V) logits as .npy (float16, or bfloat16 as ml_dtypes saves it) and (B, L)
    labels, 5% of them -100 (padding), written once."""
    b, seq, v = shape
    DATA.mkdir(parents=True, exist_ok=True)
    xp = DATA / f"lm_{dtype}_{b}x{seq}x{v}.npy"
    tp = DATA / f"lm_labels_{b}x{seq}x{v}.npy"
    if not xp.exists():
        import ml_dtypes

        np_dtype = ml_dtypes.bfloat16 if dtype == "bfloat16" else np.dtype(dtype)
        rng = np.random.default_rng(2)
        x = np.lib.format.open_memmap(xp, mode="w+", dtype=np_dtype, shape=shape)
        for i in range(b):
            for s in range(0, seq, 128):
                part = rng.standard_normal((min(128, seq - s), v), dtype=np.float32)
                part *= 3
                x[i, s:s + 128] = part.astype(np_dtype)
        x.flush()
        del x
    if not tp.exists():
        rng = np.random.default_rng(3)
        t = rng.integers(0, v, (b, seq))
        t[rng.random((b, seq)) < 0.05] = -100
        np.save(tp, t)
    return xp, tp


def cases(quick: bool, only: str | None) -> list[tuple[str, Path, Path, list[str]]]:
    n, lm = (100_000, (2, 256, 32000)) if quick else (1_000_000, (4, 1024, 32000))
    out: list[tuple[str, Path, Path, list[str]]] = []
    if only in (None, "f32"):
        xp, tp = make_npy(n, 100)
        out.append((f"{n:,} x 100 float32", xp, tp, []))
    for dtype, key in (("float16", "f16"), ("bfloat16", "bf16")):
        if only in (None, key):
            xp, tp = make_lm(lm, dtype)
            out.append((f"{lm} {dtype} --class-axis -1", xp, tp, ["--class-axis", "-1"]))
    return out


def timed(argv: list[str], env: dict[str, str], keep: bool) -> tuple[float, float, float, str]:
    """(wall s, CPU s (user + system), peak RSS MiB, stdout) of one process; stdout is
    thrown away unless ``keep``. GNU time measures the command alone (a child forked from
    this process would inherit its RSS as a floor); without it, wait4's rusage."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as note:
        cmd = [TIME, "-f", "%U %S %M", "-o", note.name, *argv] if os.path.exists(TIME) \
            else argv
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE if keep else
                              subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            sys.exit(f"{' '.join(argv[-6:])} failed: {proc.stderr.strip()[-300:]}")
        if cmd is argv:
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            rss = after.ru_maxrss / 1024
        else:
            user, system, kib = note.read().split()[-3:]
            cpu, rss = float(user) + float(system), int(kib) / 1024
    return wall, cpu, rss, (proc.stdout or "").strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small arrays, for a smoke run")
    ap.add_argument("--reps", type=int, default=5, help="timed runs each (>= 5)")
    ap.add_argument("--only", choices=["f32", "f16", "bf16"], help="one case")
    ap.add_argument("--root", type=Path, default=ROOT,
                    help="the checkout whose ce_cli runs (default: this one)")
    args = ap.parse_args()
    reps = max(5, args.reps)
    env = {**os.environ, "PYTHONPATH": str(args.root)}
    ce = [sys.executable, "-P", "-m", "ce_cli", "compute"]  # -P: not the current folder's
    print(f"# ce-loss audit cost, {args.root} (medians of {reps} interleaved runs; "
          f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f} at start)\n",
          flush=True)
    fmts = ("plain", "json", "table")
    rows = []
    for label, xp, tp, extra in cases(args.quick, args.only):
        base = [*ce, str(xp), str(tp), *extra]
        for fmt in fmts:  # warm-up: the files in the page cache, the imports compiled
            timed([*base, "--format", fmt], env, keep=False)
        got: dict[str, list[tuple[float, float, float, str]]] = {f: [] for f in fmts}
        for _ in range(reps):
            for fmt in fmts:  # the table forced (stdout is not a terminal), thrown away
                got[fmt].append(timed([*base, "--format", fmt], env, keep=fmt != "table"))
        wall = {f: statistics.median(r[0] for r in got[f]) for f in fmts}
        cpu = {f: statistics.median(r[1] for r in got[f]) for f in fmts}
        plain_out = got["plain"][0][3]
        loss = json.loads(got["json"][0][3])["loss"]
        if str(loss) != plain_out and float(loss) != float(plain_out):
            sys.exit(f"{label}: json loss {loss} != plain {plain_out}")
        ratio = {f: wall[f] / wall["plain"] for f in fmts}
        rows.append([label, *(f"{wall[f]:.2f}" for f in fmts),
                     *(f"{ratio[f]:.2f} {'yes' if ratio[f] <= TARGET else '**no**'}"
                       for f in ("json", "table")),
                     " / ".join(f"{cpu[f] / cpu['plain']:.2f}" for f in ("json", "table")),
                     " / ".join(f"{max(r[2] for r in got[f]):.0f}" for f in fmts)])
        print(f"{label}: plain {wall['plain']:.2f} s, json {ratio['json']:.2f}x, table "
              f"{ratio['table']:.2f}x (CPU {cpu['json'] / cpu['plain']:.2f}x, "
              f"{cpu['table'] / cpu['plain']:.2f}x)", flush=True)
    print()
    print(table(["input", "plain s", "json s", "table s", f"json/plain (<= {TARGET:g})",
                 f"table/plain (<= {TARGET:g})", "CPU json / table to plain",
                 "peak RSS MiB plain / json / table"], rows))


if __name__ == "__main__":
    main()

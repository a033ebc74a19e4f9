"""Benchmark: the audit (table and JSON output) against the number alone (plain output).

    python bench/audit.py                  # 1M x 100 float32, (4, 1024, 32000) float16, bfloat16
    python bench/audit.py --quick          # small arrays, for a smoke run
    python bench/audit.py --only f16 --reps 7
    python bench/audit.py --root /tmp/ce-before   # another checkout's ce_cli (before/after)

Each case runs ``ce-loss compute X T --format plain``, ``--format json`` and ``--format
table`` (stdout to /dev/null) as whole processes (``python -P -m ce_cli`` with this
checkout, or ``--root``, on PYTHONPATH), interleaved (plain, json, table, plain, ...)
after one untimed warm-up each, and prints the median wall times, the json/plain and
table/plain ratios (issue 15 asks for <= 2) and peak RSS (GNU time's, the largest over
the runs). The JSON's loss must be the plain run's. Data goes to bench/data/ (gitignored).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from run import DATA, compare_processes, make_npy, table  # noqa: E402

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
    rows = []
    for label, xp, tp, extra in cases(args.quick, args.only):
        base = [*ce, str(xp), str(tp), *extra]
        runs = {fmt: [*base, "--format", fmt] for fmt in ("plain", "json")}
        # the table, forced (stdout is not a terminal), thrown away by a shell
        runs["table"] = ["sh", "-c", 'exec "$@" > /dev/null', "sh", *base, "--format", "table"]
        res = compare_processes(label, runs, reps, env)
        for fmt, r in res.items():
            if r["code"] != 0:
                sys.exit(f"{label} --format {fmt} failed: {r['out']}")
        plain = res["plain"]["wall_s"]
        got = json.loads(res["json"]["out"])["loss"]
        if str(got) != res["plain"]["out"] and float(got) != float(res["plain"]["out"]):
            sys.exit(f"{label}: json loss {got} != plain {res['plain']['out']}")
        r_json, r_table = res["json"]["wall_s"] / plain, res["table"]["wall_s"] / plain
        rows.append([label, f"{plain:.2f}", f"{res['json']['wall_s']:.2f}",
                     f"{res['table']['wall_s']:.2f}",
                     f"{r_json:.2f} {'yes' if r_json <= TARGET else '**no**'}",
                     f"{r_table:.2f} {'yes' if r_table <= TARGET else '**no**'}",
                     " / ".join(f"{res[f]['rss_mib']:.0f}" for f in ("plain", "json", "table"))])
        print(f"{label}: plain {plain:.2f} s, json {r_json:.2f}x, table {r_table:.2f}x",
              flush=True)
    print()
    print(table(["input", "plain s", "json s", "table s", f"json/plain (<= {TARGET:g})",
                 f"table/plain (<= {TARGET:g})", "peak RSS MiB plain / json / table"], rows))


if __name__ == "__main__":
    main()

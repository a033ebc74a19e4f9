"""Benchmark: a compressed .npz member (numpy.savez_compressed) vs the same array as .npy.

    python bench/npz.py                  # 2,700,000 x 100 float32 zeros: 1.08 GB declared
    python bench/npz.py --data lowent    # values from {0, 1, 2, 3}: low entropy, still small
    python bench/npz.py --rows 300000    # a smoke run

The compressed member is streamed (inflated a row block at a time into reused buffers), so
its peak RSS should stay near the .npy run's whatever its declared size; its wall time adds
the inflation (zlib, in a background thread). Runs whole processes, interleaved (npz, npy,
torch, npz, npy, torch, ...), after one untimed warm-up each; prints the medians of wall
time, the npz/npy ratio and the peak RSS (GNU time's, the largest over the runs). The torch
row (np.load of the .npz member, then F.cross_entropy) is the baseline that inflates the
member whole. Data goes to bench/data/ (gitignored).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import DATA, ce_loss_exe, compare_processes, table  # noqa: E402

TORCH_NPZ = ("import sys, numpy as np, torch, torch.nn.functional as F\n"
             "x = np.load(sys.argv[1])['logits']\n"
             "t = np.load(sys.argv[2])\n"
             "print(F.cross_entropy(torch.from_numpy(x), torch.from_numpy(t)).item())")


def generate(rows: int, classes: int, data: str) -> tuple[Path, Path, Path]:
    """(the .npz, the .npy of the same array, the labels), written if missing."""
    DATA.mkdir(parents=True, exist_ok=True)
    stem = DATA / f"npz_{data}_{rows}x{classes}"
    npz, npy, labels = (stem.with_suffix(".npz"), stem.with_suffix(".npy"),
                        DATA / f"npz_labels_{rows}.npy")
    if not (npz.exists() and npy.exists() and labels.exists()):
        if data == "zeros":
            x = np.zeros((rows, classes), np.float32)
        else:
            x = np.random.default_rng(0).integers(0, 4, (rows, classes)).astype(np.float32)
        np.save(npy, x)
        np.savez_compressed(npz, logits=x)
        del x
        np.save(labels, np.random.default_rng(1).integers(0, classes, rows))
    return npz, npy, labels


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2_700_000)
    ap.add_argument("--classes", type=int, default=100)
    ap.add_argument("--data", choices=["zeros", "lowent"], default="zeros")
    ap.add_argument("--reps", type=int, default=3, help="timed runs each (>= 3)")
    ap.add_argument("--no-torch", action="store_true", help="leave out the torch baseline")
    args = ap.parse_args()
    reps = max(3, args.reps)
    npz, npy, labels = generate(args.rows, args.classes, args.data)
    declared = args.rows * args.classes * 4
    ce = ce_loss_exe()
    runs = {
        "ce-loss compute x.npz (compressed member)": [ce, "compute", str(npz), str(labels),
                                                      "--format", "plain", "--quiet"],
        "ce-loss compute x.npy": [ce, "compute", str(npy), str(labels), "--format", "plain",
                                  "--quiet"],
    }
    if not args.no_torch:
        runs["torch: np.load(x.npz)['logits'], F.cross_entropy"] = [
            sys.executable, "-c", TORCH_NPZ, str(npz), str(labels)]
    print(f"# .npz compressed member vs .npy ({args.rows:,} x {args.classes} float32 "
          f"{args.data}: {declared / 1e9:.2f} GB declared, {npz.stat().st_size / 1e6:.1f} MB "
          f"compressed; medians of {reps} interleaved runs; {os.cpu_count()} CPUs; load "
          f"average {os.getloadavg()[0]:.1f} at start)\n", flush=True)
    res = compare_processes("npz", runs, reps)
    base = res["ce-loss compute x.npy"]["wall_s"]
    rows = [[k, f"{v['wall_s']:.2f}", f"{v['wall_s'] / base:.2f}", f"{v['rss_mib']:.0f}",
             v["out"][:24] if v["code"] == 0 else f"exit {v['code']}: {v['out'][:60]}"]
            for k, v in res.items()]
    print(table(["process", "median wall s", "/ the .npy run", "peak RSS MiB", "printed"],
                rows))
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()

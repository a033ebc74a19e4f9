"""Benchmark: the causal-LM loss at vocabulary scale, Hugging Face's recipe in torch
against ``ce-loss compute --shift --dtype float32``, as whole processes (issue 15, point 7).

    python bench/lm.py                          # both cases, 5 interleaved runs each
    python bench/lm.py --cases small --runs 7
    python bench/lm.py --cases large --runs 3   # a large run reads 8.4 GB from disk

Cases (one .safetensors file each, holding ``logits`` and ``labels``; generated once in
bench/data/lm/, git-ignored, and reused while its size is right):

    small  (4, 1024, 32000) float16 logits, 262 MB; (4, 1024) int64 labels
    large  (8, 4096, 128256) bfloat16 logits, 8.4 GB (more than the page cache holds);
           (8, 4096) int64 labels

Logits are ``3 * normal`` with the next token raised by 8..22 and three other tokens by
5..15 at every position (a mean loss near 3 nats); odd-numbered sequences end in -100
padding. The torch side is bench/lm_torch.py, transformers' ForCausalLMLoss
(``logits.float()``, labels padded right with -100 and shifted, ``F.cross_entropy``
with ``ignore_index=-100``): the small case loads the tensors whole, as HF evaluation
does; the large case reads one sequence at a time from the memory-mapped file and sums
``reduction='sum'`` and the counted tokens before dividing (the whole upcast and its
log_softmax would take 2 x 16.8 GB). ce-loss reads the same file (``FILE:logits
FILE:labels``). Runs alternate (torch, ce-loss, torch, ...); the small case starts with
one untimed run of each (its file then sits in the page cache for both), the large one
evicts the file's pages (posix_fadvise DONTNEED) before every run, so both read all of it
from disk (``--no-evict`` leaves it cached, when it fits). Prints the disk's sequential
read rate, then a markdown table: median wall time, ce/torch ratio, peak RSS (GNU time;
the largest over the runs; a memory map's resident file pages count too) and the printed
losses, which should agree to float32 rounding (README: within 1e-6 relative). One run of
``--dtype float64`` per case gives the exact loss, and how far each float32 answer is
from it. The small case also compares the answers without the upcast (torch on the
float16 logits, ``ce-loss`` without ``--dtype``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import DATA, ce_loss_exe, median, table, timed_process  # noqa: E402

TORCH_LM = HERE / "lm_torch.py"
#: the issue's targets: ce/torch wall time on both cases; ce-loss peak RSS on the large one
RATIO_TARGET = 0.5
LARGE_RSS_MIB = 200
#: printed losses agree if they differ by at most this, relative (a few float32 ulps: the
#: one-sequence-at-a-time torch sum rounds differently from one mean over all tokens)
AGREE_REL = 1e-6


@dataclass(frozen=True)
class Case:
    name: str
    shape: tuple[int, int, int]  # (B, L, V)
    dtype: str  # the safetensors dtype of the logits: F16 or BF16
    sequences: int  # lm_torch.py --sequences: 0 loads the tensors whole
    cold: bool  # evict the file from the page cache before every run

    @property
    def path(self) -> Path:
        return DATA / "lm" / f"{self.name}.safetensors"

    @property
    def logits_bytes(self) -> int:
        b, seq, v = self.shape
        return b * seq * v * 2


CASES = {
    "small": Case("small", (4, 1024, 32_000), "F16", sequences=0, cold=False),
    "large": Case("large", (8, 4096, 128_256), "BF16", sequences=1, cold=True),
}


# -- data ---------------------------------------------------------------------------------------


def _header(case: Case) -> bytes:
    b, seq, v = case.shape
    lb = b * seq * 8
    header = {"labels": {"dtype": "I64", "shape": [b, seq], "data_offsets": [0, lb]},
              "logits": {"dtype": case.dtype, "shape": [b, seq, v],
                         "data_offsets": [lb, lb + case.logits_bytes]},
              "__metadata__": {"format": "pt"}}
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # as safetensors pads it: the data starts 8-aligned
    return len(raw).to_bytes(8, "little") + raw


def _expected_size(case: Case) -> int:
    b, seq, _ = case.shape
    return len(_header(case)) + b * seq * 8 + case.logits_bytes


def _to_bfloat16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bits (round to nearest even; there are no NaNs here), in place."""
    u = x.view(np.uint32)
    u += np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))
    return (u >> np.uint32(16)).astype(np.uint16)


def generate(case: Case) -> Path:
    """Write ``case.path`` (if missing or of the wrong size) a block of positions at a time,
    never the whole array: labels first, then the logits."""
    path = case.path
    if path.exists() and path.stat().st_size == _expected_size(case):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    b, seq, v = case.shape
    rng = np.random.default_rng(15)
    labels = rng.integers(0, v, (b, seq), dtype=np.int64)
    for i in range(1, b, 2):  # right padding on odd-numbered sequences
        labels[i, seq - int(rng.integers(seq // 16, seq // 4)):] = -100
    # position t predicts token t + 1 (HF's shift); the last position predicts nothing
    nxt = np.concatenate([labels[:, 1:], np.full((b, 1), -100, dtype=np.int64)], axis=1)
    step = max(1, (16 << 20) // v)  # positions per block: 64 MB of float32
    tmp = path.with_suffix(".tmp")
    t0 = time.perf_counter()
    print(f"writing {path} ({_expected_size(case) / 1e9:.2f} GB) ...", file=sys.stderr,
          flush=True)
    with open(tmp, "wb") as f:
        f.write(_header(case))
        f.write(labels.tobytes())
        for i in range(b):
            for s in range(0, seq, step):
                m = min(step, seq - s)
                x = rng.standard_normal((m, v), dtype=np.float32)
                x *= 3
                rows = np.arange(m)
                tgt = nxt[i, s:s + m]
                ok = tgt >= 0
                x[rows[ok], tgt[ok]] += rng.uniform(8, 22, int(ok.sum())).astype(np.float32)
                others = rng.integers(0, v, (m, 3))
                x[rows[:, None], others] += rng.uniform(5, 15, (m, 3)).astype(np.float32)
                out = x.astype(np.float16) if case.dtype == "F16" else _to_bfloat16_bits(x)
                f.write(out.data)
            print(f"  sequence {i + 1}/{b} ({time.perf_counter() - t0:.0f} s)",
                  file=sys.stderr, flush=True)
    os.replace(tmp, path)
    return path


# -- page cache and disk ------------------------------------------------------------------------


def evict(path: Path) -> None:
    """Drop the file's clean pages from the page cache (no root needed, unlike drop_caches)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def read_rate(path: Path, cold: bool) -> tuple[float, float]:
    """(seconds, GB/s) of one sequential read of the whole file, as ``dd bs=16M``."""
    if cold:
        evict(path)
    buf = bytearray(16 << 20)
    view = memoryview(buf)
    t0 = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        while f.readinto(view):
            pass
    wall = time.perf_counter() - t0
    return wall, path.stat().st_size / wall / 1e9


# -- the runs -----------------------------------------------------------------------------------


def ce_has_shift() -> bool:
    out = subprocess.run([ce_loss_exe(), "compute", "--help"], capture_output=True, text=True)
    return "--shift" in out.stdout


def commands(case: Case, shift: bool) -> dict[str, list[str]]:
    path = str(case.path)
    torch_argv = [sys.executable, str(TORCH_LM), path]
    if case.sequences:
        torch_argv += ["--sequences", str(case.sequences)]
    # without --shift (before it lands): the unshifted loss, classes on the last axis;
    # its number is not the torch script's then
    layout = ["--shift"] if shift else ["--class-axis", "-1"]
    ce_argv = [ce_loss_exe(), "compute", f"{path}:logits", f"{path}:labels", *layout,
               "--dtype", "float32", "--format", "plain"]
    return {"torch": torch_argv, "ce-loss": ce_argv}


def interleaved(case: Case, runs: dict[str, list[str]], reps: int
                ) -> dict[str, dict[str, Any]]:
    """Median wall, max peak RSS, last output and exit code of each argv, alternating."""
    if not case.cold:
        for argv in runs.values():  # warm-up: page cache, bytecode
            timed_process(argv)
    walls: dict[str, list[float]] = {k: [] for k in runs}
    rss: dict[str, list[float]] = {k: [] for k in runs}
    outs: dict[str, str] = {}
    codes: dict[str, int] = {}
    for r in range(reps):
        for key, argv in runs.items():
            if case.cold:
                evict(case.path)
            wall, peak, out, code = timed_process(argv)
            walls[key].append(wall)
            rss[key].append(peak)
            outs[key], codes[key] = out, code
            print(f"  {case.name} run {r + 1}/{reps} {key:8s} {wall:7.2f} s "
                  f"{peak:7.0f} MiB  {out[:60]}", file=sys.stderr, flush=True)
    return {k: {"wall_s": median(walls[k]), "walls": walls[k], "rss_mib": max(rss[k]),
                "out": outs[k], "code": codes[k]} for k in runs}


def rel_diff(a: str, b: str) -> float:
    try:
        x, y = float(a), float(b)
    except ValueError:
        return float("nan")
    return abs(x - y) / max(abs(y), 1e-30)


def agreement(got: str, want: str) -> str:
    """How far ``got`` is from ``want``: relative, and in float32 ulps of ``want``."""
    diff = rel_diff(got, want)
    if diff == 0:
        return "identical"
    if diff != diff:
        return "**not a number**"
    ulps = abs(float(got) - float(want)) / float(np.spacing(np.float32(abs(float(want)))))
    return f"rel diff {diff:.1e} ({ulps:.0f} float32 ulps) " + \
        ("ok" if diff <= AGREE_REL else f"**over {AGREE_REL:.0e}**")


def exact_reference(case: Case, shift: bool) -> tuple[list[list[Any]], dict[str, Any]]:
    """One run of ``--dtype float64`` (outside the ratio): the loss of the upcast logits
    computed in float64 (within 1e-12 of exact), to tell which float32 answer is nearer."""
    if not shift:
        return [], {}
    path = str(case.path)
    if case.cold:
        evict(case.path)
    wall, peak, out, code = timed_process(
        [ce_loss_exe(), "compute", f"{path}:logits", f"{path}:labels", "--shift",
         "--dtype", "float64", "--format", "plain"])
    print(f"  {case.name} float64 reference {wall:7.2f} s {peak:7.0f} MiB  {out[:60]}",
          file=sys.stderr, flush=True)
    row = ["", "(reference: `ce-loss ... --shift --dtype float64`, one run)", f"{wall:.2f}",
           "", f"{peak:.0f}", out[:22] if code == 0 else f"exit {code}: {out[-60:]}"]
    return [row], {"wall_s": wall, "rss_mib": peak, "out": out, "code": code}


def bench_case(case: Case, reps: int, shift: bool) -> tuple[list[list[Any]], dict[str, Any]]:
    res = interleaved(case, commands(case, shift), reps)
    t, ce = res["torch"], res["ce-loss"]
    ratio = ce["wall_s"] / t["wall_s"]
    diff = rel_diff(ce["out"], t["out"])
    agree = "(unshifted: not comparable)" if not shift else agreement(ce["out"], t["out"])
    rss_note = ""
    if case.name == "large":
        ok = ce["rss_mib"] <= LARGE_RSS_MIB
        rss_note = f" {'yes' if ok else '**no**'} (<= {LARGE_RSS_MIB})"
    shape = "x".join(map(str, case.shape))
    dtype = {"F16": "float16", "BF16": "bfloat16"}[case.dtype]
    how = "whole" if case.sequences == 0 else f"{case.sequences} sequence(s) a step"
    rows = [
        [f"{case.name} {shape} {dtype}", f"torch HF recipe ({how})", f"{t['wall_s']:.2f}",
         "1.000", f"{t['rss_mib']:.0f}", t["out"][:22]],
        ["", "`ce-loss compute " + ("--shift" if shift else "--class-axis -1") +
         " --dtype float32`", f"{ce['wall_s']:.2f}",
         f"{ratio:.3f} {'yes' if ratio <= RATIO_TARGET else '**no**'} (<= {RATIO_TARGET})",
         f"{ce['rss_mib']:.0f}{rss_note}", f"{ce['out'][:22]} {agree}"],
    ]
    for key, r in res.items():
        if r["code"] != 0:
            rows.append(["", f"**{key} exit {r['code']}**", "", "", "", r["out"][-80:]])
    return rows, {"case": case.name, "shape": case.shape, "dtype": dtype, "ratio": ratio,
                  "rel_diff": diff, **{k: v for k, v in res.items()}}


def half_reference(case: Case, reps: int, shift: bool) -> tuple[list[list[Any]], dict[str, Any]]:
    """ce-loss without --dtype (torch's half-precision answer) against torch on the
    logits as saved (no ``.float()``), for reference."""
    path = str(case.path)
    layout = ["--shift"] if shift else ["--class-axis", "-1"]
    runs = {"torch half": [sys.executable, str(TORCH_LM), path, "--keep-dtype"],
            "ce-loss half": [ce_loss_exe(), "compute", f"{path}:logits", f"{path}:labels",
                             *layout, "--format", "plain"]}
    res = interleaved(case, runs, reps)
    t, ce = res["torch half"], res["ce-loss half"]
    diff = rel_diff(ce["out"], t["out"])
    agree = "(unshifted: not comparable)" if not shift else agreement(ce["out"], t["out"])
    rows = [["(reference: no upcast)", "torch, F.cross_entropy on the float16 logits",
             f"{t['wall_s']:.2f}", "1.000", f"{t['rss_mib']:.0f}", t["out"][:22]],
            ["", "`ce-loss compute " + " ".join(layout) + "` (no --dtype)",
             f"{ce['wall_s']:.2f}", f"{ce['wall_s'] / t['wall_s']:.3f}",
             f"{ce['rss_mib']:.0f}", f"{ce['out'][:22]} {agree}"]]
    return rows, {"rel_diff": diff, **res}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", default="small,large", help="comma-separated: small, large")
    ap.add_argument("--runs", type=int, default=5,
                    help="timed runs of each process per case (>= 5; 3 is allowed for a "
                         "long large case and said in the output)")
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    ap.add_argument("--no-evict", action="store_true",
                    help="leave the large file in the page cache between runs (if it fits)")
    args = ap.parse_args()
    if args.no_evict:
        for key, c in CASES.items():
            CASES[key] = replace(c, cold=False)
    names = [c for c in args.cases.split(",") if c]
    unknown = [c for c in names if c not in CASES]
    if unknown:
        ap.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    reps = max(3, args.runs)
    if not os.path.exists("/usr/bin/time"):
        sys.exit("needs GNU time (/usr/bin/time) for the peak RSS of each process")
    shift = ce_has_shift()
    import ce_cli

    few = " (fewer than 5: long runs)" if reps < 5 else ""
    unshifted = "" if shift else \
        "; **no --shift in this ce-loss: --class-axis -1 on unshifted data**"
    print(f"# causal-LM loss at vocabulary scale: HF recipe (torch) vs ce-loss\n\n"
          f"medians of {reps} interleaved runs{few}; {os.cpu_count()} CPUs; load average "
          f"{os.getloadavg()[0]:.1f} at start; ce_cli from {Path(ce_cli.__file__).parent}"
          f"{unshifted}\n")
    rows: list[list[Any]] = []
    distances: list[str] = []
    out: dict[str, Any] = {"reps": reps, "shift": shift, "cases": {}}
    for name in names:
        case = CASES[name]
        generate(case)
        wall, rate = read_rate(case.path, case.cold)
        state = "cold (evicted first)" if case.cold else "as cached"
        print(f"- {name}: {case.path.stat().st_size / 1e9:.2f} GB file read sequentially "
              f"in {wall:.2f} s: {rate:.2f} GB/s ({state})", flush=True)
        case_rows, found = bench_case(case, reps, shift)
        rows += case_rows
        ref_rows, found["float64"] = exact_reference(case, shift)
        rows += ref_rows
        if found["float64"].get("code") == 0:
            exact = found["float64"]["out"]
            for who in ("torch", "ce-loss"):
                far = agreement(found[who]["out"], exact)
                distances.append(f"{name}: {who} {far} from float64")
        found["read_s"], found["read_gb_s"] = wall, rate
        if name == "small":
            ref_rows, found["half"] = half_reference(case, reps, shift)
            rows += ref_rows
        out["cases"][name] = found
    print()
    print(table(["case", "process", "median wall s", "ce/torch", "peak RSS MiB", "printed"],
                rows))
    for line in distances:
        print(f"\n- {line}", end="")
    print(f"\n\nload average {os.getloadavg()[0]:.1f} at the end")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()

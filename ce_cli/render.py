"""Renderers: plain numbers, JSON, CSV and a rich table.

Each takes what to show and where to write it (a text stream or a rich Console);
none creates a console or touches sys.stdout itself.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import IO, Any

import numpy as np

from .loss import LossResult
from .names import FORMATS  # noqa: F401,E402  (re-exported)

#: the table is drawn at least this wide (COLUMNS=0, a tiny terminal)
MIN_WIDTH = 40


@dataclass
class Preview:
    """The first rows of a run, for the table and JSON: what the loss saw, row by row."""

    index: list[str] = field(default_factory=list)  # "0", "1", ... or "(0, 3, 5)" for K-dim
    targets: list[Any] = field(default_factory=list)  # class index, or "~k": a soft target's argmax
    losses: np.ndarray = field(default_factory=lambda: np.zeros(0))
    probs: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # (k, C) softmax
    total: int = 0  # positions in all


@dataclass
class Report:
    result: LossResult
    preview: Preview | None = None
    input_kind: str = "logits"
    sources: dict[str, str] = field(default_factory=dict)
    stats: dict[str, Any] | None = None  # metrics.AuditStats.summary()
    explain: dict[str, Any] | None = None  # metrics.explain()
    plots: bool = True
    #: the result's dtype where NumPy has none ("bfloat16": the loss holds bfloat16 values
    #: in float32 and is printed as its exact decimal value)
    dtype: str | None = None
    #: the classes' names (string labels or --classes); None: classes are shown as indices
    class_names: list[str] | None = None
    #: per-sequence perplexity (audit.sequences.SequenceStats.summary())
    sequences: dict[str, Any] | None = None

    @property
    def dtype_name(self) -> str:
        return self.dtype or self.result.spec.dtype.name

    def text(self, value: Any) -> str:
        """A loss as text: a half-precision result (float16, bfloat16) as its exact
        decimal value, so any reader recovers torch's number; else :func:`scalar_text`."""
        if self.dtype_name in ("float16", "bfloat16"):
            return exact_text(value)
        return scalar_text(value)


def scalar_text(value: Any) -> str:
    """Shortest text that reads back as the same value of its dtype; nan/inf as Python."""
    v = np.asarray(value)[()]
    if isinstance(v, np.floating):
        f = float(v)
        if math.isnan(f):
            return "nan"
        if math.isinf(f):
            return "inf" if f > 0 else "-inf"
        if v.dtype == np.float64:
            return repr(f)
        # numpy's shortest digits for the narrower dtype, spelled the way Python spells floats
        return repr(float(np.format_float_scientific(v, unique=True)))
    return str(v)


def exact_text(value: Any) -> str:
    """The exact decimal value of a float (a bfloat16 result: ``14.796875``); nan/inf as
    Python."""
    f = float(np.asarray(value)[()])
    if not math.isfinite(f):
        return scalar_text(np.float64(f))
    from decimal import Decimal

    text = format(Decimal(f), "f")
    return text if "." in text else text + ".0"


def class_name(names: list[str] | None, value: Any) -> Any:
    """The name of class ``value`` (an index), or ``value`` itself when it has none."""
    if names and isinstance(value, (int, np.integer)) and 0 <= int(value) < len(names):
        return names[int(value)]
    return value


def _named(stats: dict[str, Any], names: list[str] | None) -> dict[str, Any]:
    """The statistics with the class names beside the indices (as they are without)."""
    if not names:
        return stats
    stats = dict(stats)
    stats["per_class"] = [{**c, "class_name": class_name(names, c["class"])}
                          for c in stats["per_class"]]
    stats["worst"] = [{**w, "target_name": class_name(names, w["target"]),
                       "predicted_name": class_name(names, w["predicted"])}
                      for w in stats["worst"]]
    return stats


def _json_number(value: Any, report: Report | None = None) -> float | None:
    f = float(value)
    if math.isnan(f) or math.isinf(f):
        return None
    text = report.text(value) if report is not None else scalar_text(value)
    return float(text)


# -- plain ----------------------------------------------------------------------------------

def write_plain(report: Report, out: IO[str]) -> None:
    """One number for mean/sum; one loss per line for none (C order for K-dim)."""
    loss = report.result.loss
    if report.result.reduction == "none":
        out.write("".join(report.text(v) + "\n" for v in np.asarray(loss).reshape(-1)))
    else:
        out.write(report.text(loss) + "\n")


# -- json -----------------------------------------------------------------------------------

def loss_note(result: LossResult) -> str | None:
    """Why the aggregate is NaN or infinite, in one sentence (None when it is finite)."""
    loss = np.asarray(result.loss)
    if result.reduction == "none":
        bad = int((~np.isfinite(loss)).sum()) if loss.size else 0
        if not bad:
            return None
        return f"{bad} of {loss.size} per-sample losses are NaN or infinite (written as null)"
    f = float(loss)
    if math.isfinite(f):
        return None
    tot, spec = result.totals, result.spec
    if result.reduction == "mean" and tot.positions == 0:
        return "the input is empty: the mean of no targets is NaN, as in torch"
    if result.reduction == "mean" and spec.target_kind == "index" and tot.counted == 0:
        return (f"0 of {tot.positions} targets counted: all equal ignore_index "
                f"{spec.ignore_index}, and torch's mean is then 0/0 = NaN")
    if result.reduction == "mean" and spec.target_kind == "index" and tot.denominator == 0:
        return (f"the counted targets' weights sum to 0 ({tot.counted} targets counted), "
                "and torch's mean is then 0/0 = NaN")
    if tot.nonfinite:
        return (f"{tot.nonfinite} of {tot.counted} counted positions have a NaN or infinite "
                "loss (non-finite logits, or a target class with probability 0)")
    return f"the {result.reduction} overflows {spec.dtype.name}"


def as_dict(report: Report) -> dict[str, Any]:
    result = report.result
    spec, tot = result.spec, result.totals
    if result.reduction == "none":
        loss: Any = _nested(np.asarray(result.loss))
    else:
        loss = _json_number(result.loss, report)
    doc: dict[str, Any] = {"loss": loss}
    note = loss_note(result)
    if note:
        doc["loss_note"] = note
    doc.update({
        "reduction": result.reduction,
        "dtype": report.dtype_name,
        "n_classes": spec.n_classes,
        **({"classes": list(report.class_names)} if report.class_names else {}),
        "target_kind": spec.target_kind,
        "input_kind": report.input_kind,
        "positions": tot.positions,
        "counted": tot.counted,
        "ignored": tot.ignored,
        "nonfinite": tot.nonfinite,
        "weighted": spec.weight is not None,
        "ignore_index": spec.ignore_index if spec.target_kind == "index" else None,
        "label_smoothing": max(spec.label_smoothing, 0.0) if spec.smoothing else 0.0,
    })
    if spec.target_kind == "index":
        doc["denominator"] = _json_number(np.float64(tot.denominator))
    if report.sources:
        doc["sources"] = report.sources
    if report.explain is not None:
        doc["explain"] = dict(report.explain)
        conventions = dict(report.explain["conventions"])
        if result.reduction != "none":  # the same digits as "loss"
            conventions["torch"] = _json_number(result.loss, report)
        doc["explain"]["conventions"] = conventions
    if report.stats is not None:
        stats = _named(report.stats, report.class_names)
        stats["per_class"] = [c for c in stats["per_class"] if c["support"]]
        doc["metrics"] = stats
    if report.sequences is not None:
        doc["sequences"] = report.sequences
    if report.preview is not None:
        p = report.preview
        doc["rows"] = [
            {"index": p.index[i], "target": class_name(report.class_names, p.targets[i]),
             "loss": _json_number(p.losses[i]),
             "softmax": [_json_number(np.float64(v)) for v in p.probs[i]]}
            for i in range(len(p.index))
        ]
        doc["rows_not_shown"] = p.total - len(p.index)
    return doc


def _finite_only(value: Any) -> Any:
    """``value`` with every NaN or infinite float, however deep, as None (JSON null)."""
    if isinstance(value, dict):
        return {k: _finite_only(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_only(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _nested(a: np.ndarray) -> Any:
    if a.ndim == 0:
        return _json_number(a)
    return [_nested(v) for v in a]


def write_json(report: Report, out: IO[str]) -> None:
    doc = as_dict(report)
    for key in ("metrics", "explain"):  # statistics of wild input may be inf (1e308 probs)
        if key in doc:
            doc[key] = _finite_only(doc[key])
    json.dump(doc, out, allow_nan=False, indent=json_indent(out))
    out.write("\n")


def json_indent(out: IO[str]) -> int | None:
    """Pretty-printed on a terminal, compact (one line) when piped, as httpie and gh do."""
    from .console import is_terminal

    return 2 if is_terminal(out) else None


# -- csv ------------------------------------------------------------------------------------

def write_csv(report: Report, out: IO[str], targets: np.ndarray | None = None) -> None:
    """``index,loss`` per position for none (with target when known); else one summary row."""
    result = report.result
    if result.reduction == "none":
        losses = np.asarray(result.loss).reshape(-1)
        flat_t = None if targets is None or result.spec.target_kind != "index" \
            else np.asarray(targets).reshape(-1)
        out.write("index,target,loss\n" if flat_t is not None else "index,loss\n")
        for i, v in enumerate(losses):
            mid = f"{int(flat_t[i])}," if flat_t is not None else ""
            out.write(f"{i},{mid}{report.text(v)}\n")
        return
    tot = result.totals
    names = ["loss", "reduction", "dtype", "n_classes", "positions", "counted", "ignored"]
    values = [report.text(result.loss), result.reduction, report.dtype_name,
              str(result.spec.n_classes), str(tot.positions), str(tot.counted),
              str(tot.ignored)]
    if report.stats is not None:
        st = report.stats
        for k, v in [("accuracy", st["accuracy"])] + [
                (f"top{k}_accuracy", v) for k, v in st["top_k_accuracy"].items()] + [
                ("perplexity", st["perplexity"]), ("mean_entropy", st["mean_entropy"]),
                ("ece", st["ece"])]:
            names.append(k)
            values.append("" if v is None else repr(float(v)))
    out.write(",".join(names) + "\n")
    out.write(",".join(values) + "\n")


# -- table ----------------------------------------------------------------------------------

def write_table(report: Report, console: Any) -> None:
    """The aggregate, then the first rows with their losses and softmax probabilities."""
    from rich.text import Text

    result = report.result
    spec, tot = result.spec, result.totals
    head = Text()
    if result.reduction == "none":
        head.append("per-sample losses", style="bold")
    else:
        head.append(f"{result.reduction} loss  ", style="bold")
        head.append(report.text(result.loss), style="bold cyan")
    head.append(f"   {report.dtype_name}, {spec.n_classes} classes, "
                f"{tot.counted} of {tot.positions} targets counted")
    if tot.ignored:
        head.append(f", {tot.ignored} ignored (ignore_index {spec.ignore_index})")
    if spec.weight is not None and spec.target_kind == "index":
        head.append(f", weighted (denominator {tot.denominator:.6g})")
    if spec.smoothing:
        head.append(f", label smoothing {spec.label_smoothing:g}")
    console.print(head)
    note = loss_note(result)
    if note:
        console.print(Text(note, style="yellow"))
    if report.explain is not None:
        _print_explain(report.explain, console)
    if report.stats is not None:
        _print_metrics(report.stats, console)
    if report.sequences is not None:
        _print_sequences(report.sequences, console)
    if report.preview is not None and report.preview.index:
        _print_rows(report.preview, console, report.class_names)
    if report.stats is not None:
        stats = _named(report.stats, report.class_names)
        _print_worst(stats, console)
        _print_classes(stats, console)
        if report.plots:
            _print_histogram(report.stats, console)
            _print_reliability(report.stats, console)


def _print_rows(p: Preview, console: Any, names: list[str] | None = None) -> None:
    """The first rows: target, loss and softmax probabilities (or the top class's)."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("#", justify="right", style="dim", no_wrap=True)
    table.add_column("target", justify="right", no_wrap=True)
    table.add_column("loss", justify="right", style="cyan", no_wrap=True)
    n_classes = p.probs.shape[1]
    index_targets = all(isinstance(v, int) for v in p.targets)
    fits = max(1, (console.width - 36) // 8)
    if n_classes <= fits:
        for c in range(n_classes):
            table.add_column(Text(f"p[{class_name(names, c)}]"), justify="right",
                             no_wrap=True)
    else:  # too many classes for a column each: the target's and the top class's
        if index_targets:
            table.add_column(Text("p[target]"), justify="right", no_wrap=True)
        table.add_column("top class", justify="right", no_wrap=True)
        table.add_column(Text("p[top]"), justify="right", no_wrap=True)
    for i in range(len(p.index)):
        tgt = p.targets[i]
        probs = p.probs[i]
        cells: list[Any] = [p.index[i], str(class_name(names, tgt)), scalar_text(p.losses[i])]
        if n_classes <= fits:
            for c in range(n_classes):
                cell = _prob(probs[c])
                cells.append(Text(cell, style="bold") if index_targets and c == tgt else cell)
        else:
            if index_targets:
                cells.append(_prob(probs[tgt]) if 0 <= tgt < n_classes else "-")
            top = int(np.nanargmax(probs)) if np.isfinite(probs).any() else 0
            cells += [str(class_name(names, top)), _prob(probs[top])]
        table.add_row(*cells)
    console.print(table)
    rest = p.total - len(p.index)
    if rest > 0:
        console.print(Text(f"{rest} more rows not shown (--rows K shows more, "
                           "-o FILE writes every loss)", style="dim"))


def _f(v: Any, digits: int = 4) -> str:
    return "nan" if v is None else f"{v:.{digits}g}"


def _prob(v: Any, digits: int = 4) -> str:
    """A probability with ``digits`` decimals; a wild value (1e308) in a few characters."""
    v = math.nan if v is None else float(v)
    return f"{v:.{digits}f}" if not math.isfinite(v) or abs(v) < 1e6 else f"{v:.{digits}g}"


def _unit(v: Any) -> float | None:
    """``v`` clamped to [0, 1] for drawing; None when it is missing, NaN or infinite."""
    if v is None or not math.isfinite(float(v)):
        return None
    return min(1.0, max(0.0, float(v)))


def _print_explain(ex: dict[str, Any], console: Any) -> None:
    from rich.text import Text

    console.print(Text("explain", style="bold"))
    console.print(Text(f"  {ex['expression']}", overflow="fold"))
    console.print(Text(f"    = {ex['values']}" + (" (float64)" if ex.get("quotient") is not None
                                                     else "")))
    if ex.get("headline"):
        console.print(Text(f"  the headline is {ex['headline']}"))
    counts = f"  {ex['counted']} counted, {ex['ignored']} ignored"
    if ex.get("zero_weight") is not None:
        counts += f", {ex['zero_weight']} with weight 0"
    console.print(counts + f", {ex['nonfinite']} with a non-finite loss")
    if "nll_part" in ex:
        console.print(f"  nll part {_f(ex['nll_part'], 6)} + smoothing part "
                      f"{_f(ex['smoothing_part'], 6)}")
    conv = ex["conventions"]
    console.print("  the same data under other conventions:")
    for label, key in (("mean of the per-sample losses", "mean_of_per_sample_losses"),
                       ("Keras sum_over_batch_size", "keras_sum_over_batch_size"),
                       ("sklearn log_loss (clipped)", "sklearn_log_loss")):
        console.print(f"    {label:<30} {_f(conv[key], 6)}")


def _print_metrics(st: dict[str, Any], console: Any) -> None:
    from rich.text import Text

    parts = [f"accuracy {_f(st['accuracy'])}"]
    n_classes = len(st["per_class"])
    parts += [f"top-{k} {_f(v)}" for k, v in st["top_k_accuracy"].items()
              if 1 < int(k) < n_classes]
    parts.append(f"token perplexity {_f(st['perplexity'])}")
    parts.append(f"mean entropy {_f(st['mean_entropy'])}")
    parts.append(f"ECE {_f(st['ece'])} ({len(st['calibration_bins'])} bins)")
    console.print(Text("metrics", style="bold"))
    console.print(Text("  " + ", ".join(parts[:len(parts) - 3])))
    console.print(Text("  " + ", ".join(parts[len(parts) - 3:])))


def _print_sequences(sq: dict[str, Any], console: Any) -> None:
    from rich.text import Text

    p = sq["perplexity"]
    console.print(Text("per sequence", style="bold"))
    console.print(Text(
        f"  {sq['sequences']} sequences of {sq['tokens_per_sequence']} tokens; perplexity "
        f"{_f(sq['token_weighted_perplexity'])} over all tokens, per sequence median "
        f"{_f(p['median'])} (10th-90th percentile {_f(p['p10'])}-{_f(p['p90'])})"))
    if sq["worst"]:
        worst = ", ".join(f"#{w['sequence']} {_f(w['perplexity'])}" for w in sq["worst"])
        console.print(Text(f"  highest perplexity: {worst}"))


def _print_worst(st: dict[str, Any], console: Any) -> None:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    if not st["worst"]:
        return
    table = Table(title=Text(f"{len(st['worst'])} worst samples", style="bold"),
                  title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for name in ("#", "loss", "target", "predicted", "p[target]"):
        table.add_column(Text(name), justify="right", no_wrap=True)
    for w in st["worst"]:
        table.add_row(str(w.get("position", w["index"])), _f(w["loss"], 6),
                      str(w.get("target_name", w["target"])),
                      str(w.get("predicted_name", w["predicted"])), _f(w["p_target"]))
    console.print(table)


def _print_classes(st: dict[str, Any], console: Any, limit: int = 20) -> None:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    rows = [c for c in st["per_class"] if c["support"]]
    if not rows:
        return
    title = "per class"
    if len(rows) > limit:  # the classes with the highest mean loss first
        rows = sorted(rows, key=lambda c: -(c["mean_loss"] or 0.0))[:limit]
        title += f" ({limit} with the highest mean loss; --format json has all)"
    table = Table(title=Text(title, style="bold"), title_justify="left", box=box.SIMPLE_HEAD,
                  show_edge=False, pad_edge=False)
    for name in ("class", "support", "mean loss", "accuracy", "mean confidence"):
        table.add_column(Text(name), justify="right", no_wrap=True)
    for c in rows:
        table.add_row(str(c.get("class_name", c["class"])), str(c["support"]), _f(c["mean_loss"]),
                      _f(c["accuracy"]), _f(c["mean_confidence"]))
    console.print(table)


def _bar(fraction: float | None, width: int) -> str:
    cells = (_unit(fraction) or 0.0) * width
    full = int(cells)
    part = " ▏▎▍▌▋▊▉"[int((cells - full) * 8)] if full < width else ""
    return ("█" * full + part.strip()).ljust(width)


def _print_histogram(st: dict[str, Any], console: Any, max_rows: int = 16) -> None:
    from rich.text import Text

    edges = st["loss_histogram"]["edges"]
    counts = list(st["loss_histogram"]["counts"])
    nz = [i for i, c in enumerate(counts) if c]
    if not nz:
        return
    lo, hi = nz[0], nz[-1] + 1
    groups = [(edges[i], edges[i + 1], counts[i]) for i in range(lo, hi)]
    while len(groups) > max_rows:  # merge neighbours until it fits
        groups = [(groups[i][0], groups[min(i + 1, len(groups) - 1)][1],
                   groups[i][2] + (groups[i + 1][2] if i + 1 < len(groups) else 0))
                  for i in range(0, len(groups), 2)]
    top = max(g[2] for g in groups)
    width = max(10, min(40, console.width - 30))
    console.print(Text("loss histogram", style="bold"))
    for a, b, n in groups:
        label = f"{a:5.2f}-{'inf' if b is None else f'{b:.2f}':>5}"
        console.print(Text(f"  {label} ") + Text(_bar(n / top, width), style="cyan")
                      + Text(f" {n}"))


def _print_reliability(st: dict[str, Any], console: Any) -> None:
    from rich.text import Text

    bins = [b for b in st["calibration_bins"] if b["count"]]
    if not bins:
        return
    width = max(10, min(40, console.width - 40))
    console.print(Text("reliability (bar: accuracy, |: mean confidence)", style="bold"))
    for b in bins:
        bar = list(_bar(b["accuracy"], width))
        conf = _unit(b["confidence"])  # huge or NaN with probabilities that are not
        if conf is not None:
            bar[min(width - 1, int(conf * width))] = "|"
        console.print(Text(f"  {b['low']:.2f}-{b['high']:.2f} ") + Text("".join(bar),
                      style="green") + Text(f" acc {_prob(b['accuracy'], 2)} conf "
                                            f"{_prob(b['confidence'], 2)} n={b['count']}"))

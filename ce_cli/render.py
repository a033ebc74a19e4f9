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
from .tables import (
    LOSS_DECIMALS,
    column_texts,
    count_text,
    heading,
    number_text,
    print_indented,
    print_phrases,
)
from .tables import print_histogram as _print_histogram
from .tables import print_reliability as _print_reliability

#: the table is drawn at least this wide (COLUMNS=0, a tiny terminal)
MIN_WIDTH = 40
#: per-position losses (``--reduction none``) are spelled and written this many at a time
TEXT_CHUNK = 1 << 16
#: a JSON row lists this many of its most probable classes (``rows[].top``)
JSON_TOP_CLASSES = 5
#: up to this many classes a JSON row also carries its whole softmax (``rows[].softmax``);
#: a vocabulary's would be 32,000-256,000 numbers a row (``--softmax FILE`` writes them)
JSON_SOFTMAX_CLASSES = 1000


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

    def texts(self, values: np.ndarray) -> list[str]:
        """:meth:`text` of every value of ``values`` (flattened), in bulk: a million
        losses of ``--reduction none`` take about a second, not eight."""
        a = np.asarray(values).reshape(-1)
        if self.dtype_name in ("float16", "bfloat16") and a.dtype.itemsize in (2, 4):
            # at most 65536 distinct values (their bits: -0.0 is not 0.0), each said once
            bits = a.view(np.uint16 if a.dtype.itemsize == 2 else np.uint32)
            distinct, which = np.unique(bits, return_inverse=True)
            words = [exact_text(v) for v in distinct.view(a.dtype)]
            return [words[i] for i in which.reshape(-1).tolist()]
        return scalar_texts(a)


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


def scalar_texts(a: np.ndarray) -> list[str]:
    """:func:`scalar_text` of every value of the flat array ``a``: NumPy's shortest
    digits of a whole array at once (``astype(str)``), respelled as Python spells floats
    where NumPy chose an exponent (``1.2345679e+08`` is ``123456790.0``)."""
    if a.dtype.kind != "f":
        return [scalar_text(v) for v in a]
    if a.dtype == np.float64:
        return [repr(f) for f in a.tolist()]  # nan, inf and -inf as Python spells them
    spelled = a.astype(str)
    words: list[str] = spelled.tolist()
    for i in np.flatnonzero(np.char.find(spelled, "e") >= 0).tolist():
        words[i] = repr(float(words[i]))
    return words


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
        flat = np.asarray(loss).reshape(-1)
        for start in range(0, flat.size, TEXT_CHUNK):  # a chunk at a time: bounded memory
            out.write("\n".join(report.texts(flat[start:start + TEXT_CHUNK])) + "\n")
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
        loss: Any = _json_losses(np.asarray(result.loss), report)
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
        doc["rows"] = [_json_row(p, i, report.class_names) for i in range(len(p.index))]
        doc["rows_not_shown"] = p.total - len(p.index)
    return doc


def _json_row(p: Preview, i: int, names: list[str] | None) -> dict[str, Any]:
    """Row ``i`` of the preview: its target, loss, the target's probability and the most
    probable classes, and the whole softmax where the classes are few enough to read."""
    probs = np.asarray(p.probs[i], dtype=np.float64)
    target = p.targets[i]
    row: dict[str, Any] = {"index": p.index[i], "target": class_name(names, target),
                           "loss": _json_number(p.losses[i])}
    if isinstance(target, int):
        row["p_target"] = _json_number(probs[target]) if 0 <= target < probs.size else None
    k = min(JSON_TOP_CLASSES, probs.size)
    ranked = np.where(np.isnan(probs), -np.inf, probs)
    top = np.zeros(0, dtype=np.intp)
    if k:  # the k-th largest, then every class at least as probable
        top = np.flatnonzero(ranked >= -np.partition(-ranked, k - 1)[k - 1])
        top = top[np.lexsort((top, -ranked[top]))][:k]  # most probable first, ties by class
    row["top"] = [{"class": class_name(names, int(c)), "p": _json_number(probs[c])}
                  for c in top]
    if probs.size <= JSON_SOFTMAX_CLASSES:
        row["softmax"] = _json_floats(probs)
    return row


def _finite_only(value: Any) -> Any:
    """``value`` with every NaN or infinite float, however deep, as None (JSON null)."""
    if isinstance(value, dict):
        return {k: _finite_only(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_only(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _json_losses(a: np.ndarray, report: Report) -> Any:
    """Per-position losses as nested JSON lists of ``a``'s shape, each number what plain
    output prints (a half result's exact value), NaN and infinities as None."""
    flat = a.reshape(-1)
    values: list[float | None] = []
    for start in range(0, flat.size, TEXT_CHUNK):
        values += map(float, report.texts(flat[start:start + TEXT_CHUNK]))
    for i in np.flatnonzero(~np.isfinite(flat)).tolist():
        values[i] = None
    if a.ndim == 0:
        return values[0]
    nested = np.empty(len(values), dtype=object)
    nested[:] = values
    return nested.reshape(a.shape).tolist()


def _json_floats(a: np.ndarray) -> list[float | None]:
    """float64 values as JSON numbers (NaN and inf as None), a whole row at a time (a
    vocabulary's softmax is 100,000 of them)."""
    values = np.asarray(a, dtype=np.float64)
    out: list[float | None] = values.tolist()
    if not np.isfinite(values).all():
        for i in np.flatnonzero(~np.isfinite(values)):
            out[i] = None
    return out


def write_json(report: Report, out: IO[str]) -> None:
    doc = as_dict(report)
    for key in ("metrics", "explain"):  # statistics of wild input may be inf (1e308 probs)
        if key in doc:
            doc[key] = _finite_only(doc[key])
    # dumps, not dump: one string from the C encoder, many times faster on large documents
    out.write(json.dumps(doc, allow_nan=False, indent=json_indent(out)) + "\n")


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
        for start in range(0, losses.size, TEXT_CHUNK):
            end = min(start + TEXT_CHUNK, losses.size)
            words = report.texts(losses[start:end])
            index = range(start, end)
            if flat_t is not None:
                rows = map("{},{},{}\n".format, index, flat_t[start:end].tolist(), words)
            else:
                rows = map("{},{}\n".format, index, words)
            out.write("".join(rows))
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
    """The headline, then what a user acts on (metrics, per sequence, worst samples, per
    class), then the first rows and the plots; each section under a heading."""
    _print_headline(report, console)
    if report.explain is not None:
        _print_explain(report.explain, console)
    if report.stats is not None:
        _print_metrics(report.stats, console, tokens=report.sequences is not None)
    if report.sequences is not None:
        _print_sequences(report.sequences, console)
    if report.stats is not None:
        stats = _named(report.stats, report.class_names)
        _print_worst(stats, console)
        _print_classes(stats, console)
    if report.preview is not None and report.preview.index:
        _print_rows(report.preview, console, report.class_names)
    if report.stats is not None and report.plots:
        _print_histogram(report.stats, console)
        _print_reliability(report.stats, console)


def _print_headline(report: Report, console: Any) -> None:
    """The loss alone on the first line, exactly as torch's; what it was computed over on the
    next, wrapped between phrases; why it is NaN, if it is."""
    from rich.text import Text

    result = report.result
    spec, tot = result.spec, result.totals
    head = Text()
    if result.reduction == "none":
        head.append("per-sample losses", style="bold")
    else:
        head.append(f"{result.reduction} loss  ", style="bold")
        head.append(report.text(result.loss), style="bold cyan")
    console.print(head)
    details = [report.dtype_name, f"{count_text(spec.n_classes)} classes",
               f"{count_text(tot.counted)} of {count_text(tot.positions)} targets counted"]
    if tot.ignored:
        details.append(f"{count_text(tot.ignored)} ignored (ignore_index {spec.ignore_index})")
    if spec.weight is not None and spec.target_kind == "index":
        d = tot.denominator  # a sum of weights: 6 digits, or the whole of a large one
        details.append(f"weighted (denominator {d:,.0f})" if 1e6 <= abs(d) < 1e15
                       else f"weighted (denominator {d:,.6g})")
    if spec.smoothing:
        details.append(f"label smoothing {spec.label_smoothing:g}")
    print_phrases(console, details)
    note = loss_note(result)
    if note:
        print_indented(console, Text(note, style="yellow"))


def _print_rows(p: Preview, console: Any, names: list[str] | None = None) -> None:
    """The first rows: target, loss and softmax probabilities (or the top class's)."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    heading(console, f"first {count_text(len(p.index))} rows")
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("#", justify="right", style="dim", no_wrap=True)
    table.add_column("target", justify="right", no_wrap=True)
    table.add_column("loss", justify="right", style="cyan", no_wrap=True)
    n_rows, n_classes = p.probs.shape
    index_targets = all(isinstance(v, int) for v in p.targets)
    losses = column_texts(p.losses, LOSS_DECIMALS)
    fits = max(1, (console.width - 36) // 8)
    columns: list[list[str]] = []
    if n_classes <= fits:
        for c in range(n_classes):
            table.add_column(Text(f"p[{class_name(names, c)}]"), justify="right",
                             no_wrap=True)
            columns.append(column_texts(p.probs[:, c]))
    else:  # too many classes for a column each: the target's and the top class's
        if index_targets:
            table.add_column(Text("p[target]"), justify="right", no_wrap=True)
            columns.append(column_texts(
                [p.probs[i, t] if 0 <= t < n_classes else None
                 for i, t in enumerate(p.targets)], missing="-"))
        tops = [int(np.nanargmax(probs)) if np.isfinite(probs).any() else 0
                for probs in p.probs]
        table.add_column("top class", justify="right", no_wrap=True)
        table.add_column(Text("p[top]"), justify="right", no_wrap=True)
        columns.append([str(class_name(names, top)) for top in tops])
        columns.append(column_texts([p.probs[i, top] for i, top in enumerate(tops)]))
    for i in range(n_rows):
        tgt = p.targets[i]
        cells: list[Any] = [p.index[i], str(class_name(names, tgt)), losses[i]]
        for c, col in enumerate(columns):
            bold = n_classes <= fits and index_targets and c == tgt
            cells.append(Text(col[i], style="bold") if bold else col[i])
        table.add_row(*cells)
    console.print(table)
    rest = p.total - n_rows
    if rest > 0:
        console.print(Text(f"{count_text(rest)} more rows not shown (--rows K shows more, "
                           "-o FILE writes every loss)", style="dim"))


def _sums_text(ex: dict[str, Any]) -> str:
    """The numerator, denominator and quotient of ``--explain`` (10 significant digits, as
    explain() writes them), with thousands separators."""
    num, den, q = ex.get("numerator"), ex.get("denominator"), ex.get("quotient")
    if num is None or (ex.get("quotient") is not None and den is None):
        return str(ex["values"])
    text = f"{num:,.10g}"
    if q is not None:
        text += f" / {den:,.10g} = {q:,.10g}"
    elif " / " in str(ex["values"]):  # a mean that is NaN: keep what explain() said
        return str(ex["values"])
    return text


def _print_explain(ex: dict[str, Any], console: Any) -> None:
    from rich.table import Table
    from rich.text import Text

    heading(console, "explain")
    print_indented(console, Text(ex["expression"], overflow="fold"))
    print_indented(console, Text(f"= {_sums_text(ex)}" + (
        " (float64)" if ex.get("quotient") is not None else "")), 4)
    if ex.get("headline"):
        print_indented(console, Text(f"the headline is {ex['headline']}"))
    counts = [f"{count_text(ex['counted'])} counted", f"{count_text(ex['ignored'])} ignored"]
    if ex.get("zero_weight") is not None:
        counts.append(f"{count_text(ex['zero_weight'])} with weight 0")
    counts.append(f"{count_text(ex['nonfinite'])} with a non-finite loss")
    print_phrases(console, counts)
    if "nll_part" in ex:
        print_phrases(console, [f"nll part {number_text(ex['nll_part'], LOSS_DECIMALS)}",
                                f"smoothing part "
                                f"{number_text(ex['smoothing_part'], LOSS_DECIMALS)}"],
                      sep=" + ")
    conv = ex["conventions"]
    console.print("  the same data under other conventions:")
    weighted = "w[t]" in ex.get("expression", "")
    rows = (("mean of the per-sample losses, as Keras's ignore_class",
             "mean_of_per_sample_losses"),
            ("Keras, padding as sample_weight 0 (over all positions)",
             "keras_sum_over_batch_size"),
            ("sklearn log_loss" + (" with sample_weight=w[t]" if weighted else "")
             + " (clipped)", "sklearn_log_loss"))
    grid = Table.grid(padding=(0, 2))
    grid.add_column(min_width=2)  # the indent
    grid.add_column()
    grid.add_column(justify="right", no_wrap=True)
    for (label, _), value in zip(rows, column_texts([conv[key] for _, key in rows],
                                                    LOSS_DECIMALS)):
        grid.add_row("", Text(label), value)
    console.print(grid)


def _print_metrics(st: dict[str, Any], console: Any, tokens: bool = False) -> None:
    """Accuracy and top-k; perplexity ("token perplexity" for sequences), entropy, ECE."""
    heading(console, "metrics")
    n_classes = len(st["per_class"])
    print_phrases(console, [f"accuracy {number_text(st['accuracy'])}"] + [
        f"top-{k} {number_text(v)}" for k, v in st["top_k_accuracy"].items()
        if 1 < int(k) < n_classes])
    print_phrases(console, [
        f"{'token perplexity' if tokens else 'perplexity'} {number_text(st['perplexity'])}",
        f"mean entropy {number_text(st['mean_entropy'])}",
        f"ECE {number_text(st['ece'])} ({len(st['calibration_bins'])} bins)"])


def _print_sequences(sq: dict[str, Any], console: Any) -> None:
    p = sq["perplexity"]
    heading(console, "per sequence")
    print_phrases(console, [
        f"{count_text(sq['sequences'])} sequences of {count_text(sq['tokens_per_sequence'])} "
        "tokens",
        f"perplexity {number_text(sq['token_weighted_perplexity'])} over all tokens"])
    print_phrases(console, [
        f"per sequence: median {number_text(p['median'])}",
        f"10th-90th percentile {number_text(p['p10'])}-{number_text(p['p90'])}"])
    if sq["worst"]:
        worst = [f"#{w['sequence']} {number_text(w['perplexity'])}" for w in sq["worst"]]
        worst[0] = f"highest perplexity: {worst[0]}"
        print_phrases(console, worst)


def _print_worst(st: dict[str, Any], console: Any) -> None:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    worst = st["worst"]
    if not worst:
        return
    heading(console, f"{count_text(len(worst))} worst samples")
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for name in ("#", "loss", "target", "predicted", "p[target]"):
        table.add_column(Text(name), justify="right", no_wrap=True)
    losses = column_texts([w["loss"] for w in worst], LOSS_DECIMALS)
    probs = column_texts([w["p_target"] for w in worst], small=True)
    for w, loss, prob in zip(worst, losses, probs):
        table.add_row(str(w.get("position", w["index"])), loss,
                      str(w.get("target_name", w["target"])),
                      str(w.get("predicted_name", w["predicted"])), prob)
    console.print(table)


def _print_classes(st: dict[str, Any], console: Any, limit: int = 20) -> None:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    rows = [c for c in st["per_class"] if c["support"]]
    if not rows:
        return
    title = "per class"
    more = len(rows) > limit
    if more:  # the classes with the highest mean loss first
        title += f": {limit} of {count_text(len(rows))}, highest mean loss first"
        rows = sorted(rows, key=lambda c: -(c["mean_loss"] or 0.0))[:limit]
    heading(console, title)
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for name in ("class", "support", "mean loss", "accuracy", "mean confidence"):
        table.add_column(Text(name), justify="right", no_wrap=True)
    for c, loss, acc, conf in zip(rows, column_texts([c["mean_loss"] for c in rows],
                                                     LOSS_DECIMALS),
                                  column_texts([c["accuracy"] for c in rows]),
                                  column_texts([c["mean_confidence"] for c in rows])):
        table.add_row(str(c.get("class_name", c["class"])), count_text(c["support"]), loss,
                      acc, conf)
    console.print(table)
    if more:
        console.print(Text("--format json has every class", style="dim"))

"""The one report path of ``ce-loss compare``, whichever engine ran it: findings on stderr,
the partial result, the report on stdout (plain, JSON, CSV or a table) and the gate.
"""

from __future__ import annotations

import json
import math
from typing import IO, Any

import numpy as np

from . import render, report, tables, writers
from .audit.paired import FEW_CLUSTERS
from .console import say
from .errors import ExitCode
from .options import OutputOptions
from .run.compare import Comparison, to_document


def finish(c: Comparison, out: OutputOptions, *, fail_if_worse: bool = False,
           margin: float = 0.0, written: list[str] | None = None) -> ExitCode:
    """Say what each model's reading found, write the partial, print the comparison; exit 1
    when ``fail_if_worse`` and B is worse than A by more than ``margin`` (95% confidence),
    or the difference is NaN."""
    said = []
    for label, summary in (("A", c.a), ("B", c.b)):
        for f in report.findings_of(summary):
            said.append(f)
            if not out.quiet:
                say(f.kind, f"model {label}: {f.message}")
    c = Comparison(report.as_reported(c.a), report.as_reported(c.b), c.paired, c.names,
                   c.bootstrap)
    doc = as_dict(c)
    why = _worse(doc, margin) if fail_if_worse else None
    if fail_if_worse:
        doc["gate"] = {"margin": margin, "failed": why is not None}
    with writers.Batch(written) as batch:
        if out.partial is not None:
            writers.write_text(out.partial, json.dumps(to_document(c)) + "\n", batch=batch)
        report.emit_text(lambda stream: _write(doc, c, out.fmt, stream), batch)
    return report.exit_status(why, said, out.strict)


def _worse(doc: dict[str, Any], margin: float) -> str | None:
    """Why ``--fail-if-worse`` fails: the interval's lower bound above the margin, or NaN."""
    d = doc["difference"]
    lo = doc["ci95"][0]
    which = "95% interval"
    if doc.get("bootstrap"):
        lo = doc["bootstrap"]["ci95"][0]
        which = "bootstrap 95% interval"
    if d is None or lo is None:
        return ("the difference B - A is nan (or its interval is), which no --fail-if-worse "
                "passes: see the warnings (every target ignored? a NaN loss?)")
    if lo > margin:
        return (f"B is worse than A: B - A = {d:.6g}, {which} [{lo:.6g}, "
                f"{doc['bootstrap']['ci95'][1] if doc.get('bootstrap') else doc['ci95'][1]:.6g}]"
                f" lies above the margin {margin:g}")
    return None


# -- the document -------------------------------------------------------------------------------

def as_dict(c: Comparison) -> dict[str, Any]:
    """Everything the comparison says, JSON-ready (NaN and inf as None)."""
    p = c.paired
    lo, hi = p.ci95()
    models = {}
    for key, name, s in (("a", c.names[0], c.a), ("b", c.names[1], c.b)):
        rep = render.Report(result=s.result, dtype=s.result_dtype)
        tot = s.result.totals
        stats = s.stats_summary()
        models[key] = {"path": name, "loss": render._json_number(s.result.loss, rep),
                       "dtype": rep.dtype_name, "counted": tot.counted,
                       "accuracy": None if stats is None else stats["accuracy"]}
    doc: dict[str, Any] = {
        **models,
        "difference": _num(p.difference),
        "standard_error": _num(p.standard_error),
        "ci95": [_num(lo), _num(hi)],
        "clusters": p.clusters,
        "counted": p.counted,
        "b_better_share": _num(p.b_better / p.counted) if p.counted else None,
        "a_better_share": _num(p.a_better / p.counted) if p.counted else None,
    }
    if p.clusters < FEW_CLUSTERS:
        doc["note"] = (f"{p.clusters} clusters: with fewer than {FEW_CLUSTERS} the normal "
                       "interval is rough; --bootstrap N gives a percentile interval")
    if c.bootstrap is not None:
        n, seed, (blo, bhi) = c.bootstrap
        doc["bootstrap"] = {"resamples": n, "seed": seed, "ci95": [_num(blo), _num(bhi)]}
    doc["per_class"] = _per_class(c)
    shape = c.a.loss_shape
    doc["disagreements"] = [
        {"index": item[2],
         **({"position": render_position(item[2], shape)} if len(shape) > 1 else {}),
         "target": render.class_name(c.a.class_names, item[3]) if item[3] >= 0 else None,
         "a_loss": _num(item[4]), "b_loss": _num(item[5]),
         "difference": _num(item[5] - item[4])}
        for item in sorted(p.worst, reverse=True)]
    return doc


def render_position(pos: int, shape: tuple[int, ...]) -> str:
    from .run.summary import position_label

    return position_label(pos, shape)


def _per_class(c: Comparison) -> list[dict[str, Any]]:
    """Per class (by target): support and each model's mean per-sample loss, and B - A,
    largest changes first."""
    if c.a.stats is None or c.b.stats is None:
        return []
    sa, sb = c.a.stats, c.b.stats
    rows = []
    with np.errstate(all="ignore"):
        for k in np.flatnonzero(sa.class_support):
            n = int(sa.class_support[k])
            ma, mb = sa.class_loss[k] / n, sb.class_loss[k] / n
            rows.append({"class": render.class_name(c.a.class_names, int(k)), "support": n,
                         "a_mean_loss": _num(ma), "b_mean_loss": _num(mb),
                         "difference": _num(mb - ma)})
    rows.sort(key=lambda r: -abs(r["difference"]) if r["difference"] is not None else 0)
    return rows


def _num(v: Any) -> float | None:
    f = float(v)
    return None if math.isnan(f) or math.isinf(f) else f


# -- renderers ----------------------------------------------------------------------------------

def _write(doc: dict[str, Any], c: Comparison, fmt: str, out: IO[str]) -> None:
    if fmt == "plain":  # the difference alone: d=$(ce-loss compare ... --format plain)
        out.write(render.scalar_text(np.float64(c.paired.difference)) + "\n")
    elif fmt == "json":
        json.dump(doc, out, allow_nan=False, indent=render.json_indent(out))
        out.write("\n")
    elif fmt == "csv":
        names = ["a_loss", "b_loss", "difference", "standard_error", "ci95_low", "ci95_high",
                 "clusters", "counted", "b_better_share", "a_accuracy", "b_accuracy"]
        values = [doc["a"]["loss"], doc["b"]["loss"], doc["difference"],
                  doc["standard_error"], *doc["ci95"], doc["clusters"], doc["counted"],
                  doc["b_better_share"], doc["a"]["accuracy"], doc["b"]["accuracy"]]
        out.write(",".join(names) + "\n")
        out.write(",".join("" if v is None else repr(v) if isinstance(v, float) else str(v)
                           for v in values) + "\n")
    else:
        report.write_table(lambda console: _table(doc, console), out)
    out.flush()


def _table(doc: dict[str, Any], console: Any) -> None:
    """The two models, then B - A with its interval (the headline), then per class and the
    positions where the two differ most; numbers by the table's rule (render.py): losses
    with LOSS_DECIMALS decimals, each model's mean loss exactly as compute prints it."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    L = tables.LOSS_DECIMALS

    def f(v: Any, decimals: int = L) -> str:
        return tables.number_text(v, decimals)

    # each model's mean loss exactly as compute prints it: texts of different lengths, lined
    # up on their points by hand (rich strips the spaces a right-justified cell ends with)
    losses = _points_aligned(["nan" if doc[k]["loss"] is None else repr(doc[k]["loss"])
                              for k in ("a", "b")], "mean loss")
    models = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for name, justify in (("model", "left"), ("file", "left"), (losses[0], "left"),
                          ("accuracy", "right"), ("counted", "right")):
        models.add_column(Text(name), justify=justify, no_wrap=name != "file")
    accuracies = tables.column_texts([doc[k]["accuracy"] for k in ("a", "b")], missing="-")
    for key, loss, acc in zip(("a", "b"), losses[1:], accuracies):
        m = doc[key]
        models.add_row(key.upper(), m["path"], loss, acc, tables.count_text(m["counted"]))
    console.print(models)
    console.print()
    lo, hi = doc["ci95"]
    head = Text()
    head.append("B - A  ", style="bold")
    head.append(f(doc["difference"]), style="bold cyan")
    console.print(head)
    tables.print_phrases(console, [
        f"standard error {f(doc['standard_error'])}",
        f"95% interval [{f(lo)}, {f(hi)}] over {tables.count_text(doc['clusters'])} clusters"])
    if doc.get("bootstrap"):
        b = doc["bootstrap"]
        tables.print_phrases(console, [
            f"bootstrap 95% interval [{f(b['ci95'][0])}, {f(b['ci95'][1])}]",
            f"{tables.count_text(b['resamples'])} resamples, seed {b['seed']}"])
    if doc.get("note"):
        tables.print_indented(console, Text(doc["note"], style="yellow"))
    if doc["b_better_share"] is not None:
        tables.print_phrases(console, [
            f"B's loss is lower on {100 * doc['b_better_share']:.1f}% of the "
            f"{tables.count_text(doc['counted'])} counted targets",
            f"A's on {100 * doc['a_better_share']:.1f}%"])
    if doc.get("gate"):
        g = doc["gate"]
        console.print(Text(f"  --fail-if-worse (margin {g['margin']:g}): "
                           + ("FAILED" if g["failed"] else "passed"),
                           style="bold red" if g["failed"] else "green"))
    if doc["per_class"]:
        rows = doc["per_class"][:10]
        tables.heading(console, "per class, largest changes first" if len(rows) == len(
            doc["per_class"]) else f"per class: the {len(rows)} largest changes of "
            f"{tables.count_text(len(doc['per_class']))}")
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
        for name in ("class", "support", "A mean loss", "B mean loss", "B - A"):
            table.add_column(Text(name), justify="right", no_wrap=True)
        columns = [tables.column_texts([r[k] for r in rows], L, missing="-")
                   for k in ("a_mean_loss", "b_mean_loss", "difference")]
        for r, *cells in zip(rows, *columns):
            table.add_row(str(r["class"]), tables.count_text(r["support"]), *cells)
        console.print(table)
    if doc["disagreements"]:
        rows = doc["disagreements"]
        tables.heading(console, "where the two differ most")
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
        for name in ("#", "target", "A loss", "B loss", "B - A"):
            table.add_column(Text(name), justify="right", no_wrap=True)
        columns = [tables.column_texts([r[k] for r in rows], L, missing="-")
                   for k in ("a_loss", "b_loss", "difference")]
        for r, *cells in zip(rows, *columns):
            table.add_row(str(r.get("position", r["index"])),
                          "-" if r["target"] is None else str(r["target"]), *cells)
        console.print(table)


def _points_aligned(texts: list[str], header: str) -> list[str]:
    """``header`` and ``texts`` as cells of one width for a left-justified column: the
    header and the numbers to the right, the numbers' decimal points in line."""
    ints = max(t.index(".") if "." in t else len(t) for t in texts)
    fracs = max(len(t) - t.index(".") if "." in t else 0 for t in texts)
    cells = [(" " * (ints - (t.index(".") if "." in t else len(t))) + t).ljust(ints + fracs)
             for t in texts]
    width = max(len(header), ints + fracs)
    return [header.rjust(width)] + [c.rjust(width) for c in cells]

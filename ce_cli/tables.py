"""Pieces of the tables of ``ce-loss compute`` and ``compare``: the rule for their numbers,
section headings, lines that wrap between phrases only, and the two text plots (the loss
histogram and the reliability diagram).

Everything takes a rich Console and what to show; rich is imported where it is used.
"""

from __future__ import annotations

import math
from typing import Any

# One rule for the table's numbers: a loss (per-sample and mean losses, their differences)
# has LOSS_DECIMALS decimals and every other real number (probabilities, accuracies,
# confidences, ECE, entropy, perplexity) DECIMALS, so a right-justified column lines up on
# its decimal points; a column holding a value too large for fixed decimals is written in
# scientific form throughout, as NumPy prints arrays (SCIENTIFIC_DIGITS decimals before a
# two-digit exponent, one fewer before a three-digit one, so these line up too); counts have
# thousands separators; indices (the # column) stay as they are, to be copied. The headline
# is torch's number exactly (Report.text); plain, CSV and JSON are data and keep every digit.

#: decimals of a loss in the table
LOSS_DECIMALS = 6
#: decimals of every other real number in the table
DECIMALS = 4
#: from this magnitude on, a number (and its column) is written in scientific form
SCIENTIFIC_FROM = 1e6
#: decimals of a number in scientific form ("4.051e-15")
SCIENTIFIC_DIGITS = 3
#: section headings are rules at most this wide
HEADING_WIDTH = 80


def count_text(n: Any) -> str:
    """A count with thousands separators: ``1,000,000``."""
    return f"{int(n):,}"


def number_text(v: Any, decimals: int = DECIMALS, scientific: bool = False) -> str:
    """``v`` with ``decimals`` decimals, or in scientific form when ``scientific`` or when it
    is too large for them; None, NaN and infinities as ``nan``, ``inf``, ``-inf``."""
    f = math.nan if v is None else float(v)
    if math.isnan(f):
        return "nan"
    if math.isinf(f):
        return "inf" if f > 0 else "-inf"
    if scientific or abs(f) >= SCIENTIFIC_FROM:
        text = f"{f:.{SCIENTIFIC_DIGITS}e}"
        if len(text.split("e")[1]) > 3:  # e-300: one decimal fewer keeps the point in line
            text = f"{f:.{SCIENTIFIC_DIGITS - 1}e}"
        return text
    text = f"{f:.{decimals}f}"
    return text[1:] if text[0] == "-" and not text.strip("-0.") else text  # no "-0.0000"


def column_texts(values: Any, decimals: int = DECIMALS, *, small: bool = False,
                 missing: str = "nan") -> list[str]:
    """``values`` as one column of the table: all with ``decimals`` decimals, or all in
    scientific form when one is too large for that (or, with ``small``, would read as 0:
    the worst samples' tiny probabilities). None is ``missing``."""
    finite = [abs(float(v)) for v in values if v is not None and math.isfinite(float(v))]
    scientific = any(a >= SCIENTIFIC_FROM for a in finite) or (
        small and any(0 < a < 0.5 * 10.0 ** -decimals for a in finite))
    return [missing if v is None else number_text(v, decimals, scientific) for v in values]


def heading(console: Any, title: str) -> None:
    """A blank line, then ``title`` at the start of a rule: a section stands out without
    colour or bold (NO_COLOR, a pipe), and rich draws the rule with ``-`` where the output
    cannot take ``─``."""
    from rich.rule import Rule
    from rich.text import Text

    console.print()
    console.print(Rule(Text(title, style="bold"), align="left", style="dim"),
                  width=min(console.width, HEADING_WIDTH))


def print_phrases(console: Any, phrases: list[str], *, indent: int = 2, sep: str = ", ",
                  style: str | None = None) -> None:
    """``phrases`` joined by ``sep`` and wrapped between phrases only, never inside one
    (unless a phrase is wider than the console), each line indented by ``indent``."""
    from rich.cells import cell_len
    from rich.text import Text

    lines: list[list[str]] = []
    mark = sep.rstrip()  # ends a line that goes on
    for p in phrases:
        if lines and cell_len(" " * indent + sep.join([*lines[-1], p]) + mark) \
                <= console.width:
            lines[-1].append(p)
        else:
            lines.append([p])
    for i, group in enumerate(lines):
        end = mark if i < len(lines) - 1 else ""
        console.print(Text(" " * indent + sep.join(group) + end, style=style or ""))


def print_indented(console: Any, text: Any, indent: int = 2) -> None:
    """A paragraph (a rich Text) wrapped to the console, every line indented by
    ``indent``, with no trailing spaces."""
    from rich.text import Text

    for line in text.wrap(console, max(1, console.width - indent)):
        line.rstrip()
        console.print(Text(" " * indent) + line, no_wrap=True, overflow="ignore")


def unit(v: Any) -> float | None:
    """``v`` clamped to [0, 1] for drawing; None when it is missing, NaN or infinite."""
    if v is None or not math.isfinite(float(v)):
        return None
    return min(1.0, max(0.0, float(v)))


def bar(fraction: float | None, width: int) -> str:
    cells = (unit(fraction) or 0.0) * width
    full = int(cells)
    part = " ▏▎▍▌▋▊▉"[int((cells - full) * 8)] if full < width else ""
    return ("█" * full + part.strip()).ljust(width)


#: widths of the display rows the loss histogram may merge its bins into
HISTOGRAM_STEPS = (0.25, 0.5, 1.0, 2.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0)


def largest_loss(st: dict[str, Any]) -> float | None:
    """The largest finite per-sample loss, from the worst list (NaN and infinite losses sort
    first there, then the finite ones from the largest); None when it does not say."""
    for w in st["worst"]:
        if w["loss"] is not None and math.isfinite(w["loss"]):
            return float(w["loss"])
    return None


def histogram_rows(st: dict[str, Any], max_rows: int = 16
                   ) -> list[tuple[float, float, int, float]]:
    """The loss histogram as drawn: ``(low, high, count, width)`` rows over the losses'
    actual range, ``width`` being what the count is divided by for the bar.

    The bins are fixed (0.25 wide up to 10, then 10-15, 15-20, 20-50, 50-inf, so that
    partial results add up). Rows span from the first non-empty bin to the largest loss
    (from the worst list; the last non-empty bin's upper edge when the list does not say).
    Neighbouring narrow bins are merged into rows of one width, the narrowest that gives at
    most ``max_rows`` rows; a bin wider than that stays one row, never split (the counts
    inside a bin are not known). Bars are drawn by density, count per unit of loss, since the
    rows have unequal widths: a wide bin does not set the scale. The last row, cut at the
    largest loss, counts at least as wide as the narrowest bin, the histogram's resolution,
    so that one sample at the edge of a bin does not swamp the picture.
    """
    edges = [math.inf if e is None else float(e) for e in st["loss_histogram"]["edges"]]
    counts = [int(c) for c in st["loss_histogram"]["counts"]]
    full = [i for i, c in enumerate(counts) if c]
    if not full:
        return []
    bins = [(edges[i], edges[i + 1], counts[i]) for i in range(full[0], full[-1] + 1)]
    resolution = min(b - a for a, b, _ in bins)
    hi = largest_loss(st)
    if hi is None or not bins[-1][0] <= hi <= bins[-1][1]:
        hi = bins[-1][1]
    rows: list[list[float]] = []
    for step in HISTOGRAM_STEPS:
        rows = []
        for a, b, n in bins:
            if rows and b - a < step and rows[-1][3] == math.floor(a / step) \
                    and rows[-1][1] == a:
                rows[-1][1] = b
                rows[-1][2] += n
            else:
                rows.append([a, b, n, math.floor(a / step) if b - a < step else math.nan])
        if len(rows) <= max_rows:
            break
    rows[-1][1] = hi
    out = [(a, b, int(n), b - a) for a, b, n, _ in rows]
    a, b, n, width = out[-1]
    out[-1] = (a, b, n, width if math.isfinite(width) and width >= resolution
               else resolution)
    return out


def print_histogram(st: dict[str, Any], console: Any, max_rows: int = 16) -> None:
    from rich.text import Text

    rows = histogram_rows(st, max_rows)
    if not rows:
        return
    lows = [number_text(a, 2) for a, _, _, _ in rows]
    highs = [number_text(b, 2) for _, b, _, _ in rows]
    counts = [count_text(n) for _, _, n, _ in rows]
    wl, wh, wc = (max(len(t) for t in texts) for texts in (lows, highs, counts))
    top = max(n / width for _, _, n, width in rows)
    width = max(10, min(40, console.width - 5 - wl - wh - wc))
    heading(console, "loss histogram (bar: samples per unit of loss)")
    for (_, _, n, w), lo, hi, cnt in zip(rows, lows, highs, counts):
        cells = bar(n / w / top if top else 0.0, width)
        if n and not cells.strip():  # a count too small for a cell still shows
            cells = "▏" + cells[1:]
        console.print(Text(f"  {lo:>{wl}}-{hi:<{wh}} ") + Text(cells, style="cyan")
                      + Text(f" {cnt:>{wc}}"))


def print_reliability(st: dict[str, Any], console: Any) -> None:
    from rich.text import Text

    bins = [b for b in st["calibration_bins"] if b["count"]]
    if not bins:
        return
    accs = column_texts([b["accuracy"] for b in bins])
    confs = column_texts([b["confidence"] for b in bins])
    counts = [count_text(b["count"]) for b in bins]
    wa, wf, wc = (max(len(t) for t in texts) for texts in (accs, confs, counts))
    width = max(10, min(40, console.width - 26 - wa - wf - wc))
    heading(console, "reliability (bar: accuracy, |: mean confidence)")
    for b, acc, conf, cnt in zip(bins, accs, confs, counts):
        cells = list(bar(b["accuracy"], width))
        where = unit(b["confidence"])  # huge or NaN with probabilities that are not
        if where is not None:
            cells[min(width - 1, int(where * width))] = "|"
        console.print(Text(f"  {b['low']:.2f}-{b['high']:.2f} ")
                      + Text("".join(cells), style="green")
                      + Text(f" acc {acc:>{wa}} conf {conf:>{wf}} {'n=' + cnt:>{wc + 2}}"))

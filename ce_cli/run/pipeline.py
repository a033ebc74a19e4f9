"""One pass over two sources: aligned row blocks in, torch's loss and a preview out.

No click and no rendering here: the CLI opens the sources, this module runs the
pass, and the renderers show the result. Memory is O(block) plus O(N) only for the
per-sample losses the user asked for.
"""

from __future__ import annotations

import math
from collections.abc import Generator, Iterator
from dataclasses import replace
from typing import Any, Callable

import numpy as np

from .. import loss
from ..audit import metrics
from ..audit.alignment import Alignment
from ..audit.findings import Finding
from ..audit.scan import InputScan, label_counts
from ..audit.sequences import SequenceStats
from ..errors import OptionError, ShapeError
from ..options import AuditOptions
from ..readers.base import Source, array_source
from ..readers.validate import coerce_targets, logits_dtype
from ..render import Preview
from .summary import Layout, Summary, position_label

#: values per block read from a source (see rows_per_read), cut further by loss.iter_blocks
READ_ELEMENTS = 1 << 20


class _Rows:
    """Row blocks of one source, re-cut to the sizes asked for."""

    def __init__(self, source: Source, rows: int) -> None:
        self.source = source
        self.blocks = source.blocks(rows)
        self.parts: list[np.ndarray] = []
        self.have = 0
        self.done = False

    def fill(self, rows: int) -> None:
        while not self.done and self.have < rows:
            b = next(self.blocks, None)
            if b is None:
                self.done = True
            else:
                self.have += b.shape[0]
                # short of rows: the next read may reuse b's buffer, so keep a copy
                self.parts.append(b if self.have >= rows else np.array(b))

    def take(self, rows: int) -> np.ndarray:
        if not self.parts:
            return np.zeros((0, *self.source.row_shape), self.source.dtype)
        whole = self.parts[0] if len(self.parts) == 1 else np.concatenate(self.parts)
        # a reader may reuse its buffer for the next block: keep a copy of what is left
        rest = np.array(whole[rows:]) if whole.shape[0] > rows else None
        self.parts = [rest] if rest is not None else []
        self.have = 0 if rest is None else rest.shape[0]
        return whole[:rows]


def aligned_blocks(xs: Source, ts: Source, rows: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Blocks of the same row count from both sources, however each one chunks its file.

    When one source runs out first, a last pair of unequal lengths is yielded so the
    caller can count the rows of both and say so.
    """
    yield from aligned([xs, ts], rows)  # type: ignore[misc]


def aligned(sources: list[Source], rows: int) -> Iterator[tuple[np.ndarray, ...]]:
    """:func:`aligned_blocks` of any number of sources (``compare``: two logits, one
    targets); a last block of unequal lengths when one runs out first.

    The first source leads: each of its blocks goes out as it was read (a view, never
    copied) and the others are cut to its length; their blocks are copied only where
    they do not line up (the targets, small beside the logits).
    """
    lead = sources[0]
    rest = [_Rows(src, rows) for src in sources[1:]]
    short = False
    for piece in _at_most(lead.blocks(rows), rows):
        k = piece.shape[0]
        if short:  # another source has run out: count the lead's rows
            yield (piece, *(c.take(0) for c in rest))
            continue
        for c in rest:
            c.fill(k)
        if any(c.have < k for c in rest):
            short = True
            yield (piece, *(c.take(c.have) for c in rest))
            continue
        yield (piece, *(c.take(k) for c in rest))
    for c in rest:  # what the others hold past the lead's end, for the count
        while True:
            c.fill(rows)
            if not c.have:
                break
            got = c.take(c.have)
            yield (np.zeros((0, *lead.row_shape), lead.dtype),
                   *(got if d is c else np.zeros((0, *d.source.row_shape), d.source.dtype)
                     for d in rest))


def _at_most(blocks: Iterator[np.ndarray], rows: int) -> Iterator[np.ndarray]:
    """Non-empty views of at most ``rows`` rows (a reader may hand out bigger blocks)."""
    for b in blocks:
        for start in range(0, b.shape[0], rows):
            yield b[start:start + rows]


def _pass(
    xs: Source,
    ts: Source,
    *,
    weight: np.ndarray | None,
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
    input_kind: str,
    keep_losses: bool,
    keep_targets: bool = False,
    preview_rows: int = 0,
    class_axis: int | None = None,
    audit: AuditOptions | None = None,
    on_rows: Callable[[np.ndarray], None] | None = None,
    inputs: list[str] | None = None,
    dtype: str | None = None,
    before: list[Finding] | None = None,
    sequences: bool | None = None,
    shifted: bool = False,
) -> Generator[Any, Any, Summary]:
    """Compute torch's loss of ``xs`` against ``ts`` in one streaming pass (see :class:`Pass`).

    ``class_axis`` moves that axis of the logits to torch's class axis (1) first, so
    ``(B, L, V)`` sequence outputs read with ``class_axis=-1`` give torch's loss of
    ``x.movedim(-1, 1)``. ``audit`` gathers the audit statistics in the same pass.
    ``inputs`` names the input pair in a partial result (default: the two paths).
    ``before``: findings made before the pass (the weight's), said after the readers'
    notes. ``dtype`` casts the logits first (``F.cross_entropy(logits.to(dtype), ...)``); without
    it, bfloat16 logits give torch's bfloat16 result (float32 passes that round where
    torch rounds to bfloat16). ``sequences``: gather per-sequence sums (the last
    axis of the targets is the tokens); None: with ``audit``, for ``(B, L)`` targets of
    logits whose classes were put on the last axis (``--class-axis -1``, ``--shift``).
    ``shifted``: the sources were shifted (``--shift``), for the alignment check.
    """
    target_dtype = ts.dtype.name
    notes = [*xs.notes, *ts.notes]  # what the readers decided (a shared table's once)
    x_dtype, dtype_note = logits_dtype(xs.dtype, xs.path, dtype)
    result_dtype = "bfloat16" if xs.stored_dtype == "bfloat16" and dtype is None else None
    x_row, t_row = tuple(xs.row_shape), tuple(ts.row_shape)
    unbatched = xs.n_rows is not None and len(x_row) == 0  # a 1-D logits array: (C,)
    if unbatched:  # torch treats (C,) as one sample; so do we, and report a 0-d shape
        x_all, t_all = np.asarray(xs.read()), np.asarray(ts.read())
        if x_all.ndim == 0:
            raise ShapeError("Expected 1 or more dimensions (got 0); logits need a class "
                             "axis, shape (C,), (N, C) or (N, C, d1, ..., dk)")
        if t_all.shape == x_all.shape and t_all.dtype.kind in "iub" and t_all.size > 1:
            raise ShapeError(
                f"1-D logits of {x_all.size} values are one sample's logits (C,) for torch, "
                f"yet there are {t_all.size} integer labels; save the logits as (N, C) rows "
                "(for one binary logit z per sample, stack [0, z] as two columns)")
        if t_all.dtype.kind in "iubf":  # torch's own refusals for 1-D input, first
            t_kind = t_all.dtype if t_all.shape == x_all.shape else np.dtype(np.int64)
            loss.make_spec(x_all.shape, x_dtype, t_all.shape, t_kind, weight, ignore_index,
                           reduction, label_smoothing, input_kind)
        xs = array_source(xs.path, xs.role, x_all[None])
        one = t_all[None] if t_all.shape == x_all.shape else t_all.reshape(1)
        ts = array_source(ts.path, ts.role, one)
        x_row, t_row = tuple(xs.row_shape), tuple(ts.row_shape)
    # token rows of (B, ..., L, V) logits (--shift on a mapped file): the loss's shape
    grid = xs.tokens
    squeeze = t_row == (1,) and len(x_row) == 1 and x_row != (1,)
    if squeeze:  # a column of labels, (N, 1), as np.savetxt and DataFrames write them
        t_row = ()
    axis = class_axis_of(class_axis, 1 + len(x_row))
    # --shift: Hugging Face flattens the tokens to (B * (L - 1), V) rows, whose float16
    # arithmetic torch rounds as class-last rows (not as the K-dim loss of movedim(-1, 1))
    tokens = shifted and len(x_row) >= 2 and axis == len(x_row) and \
        t_row in (x_row[:-1], x_row)
    if axis != 1:
        x_row = (x_row[axis - 1],) + x_row[:axis - 1] + x_row[axis:]
    # unshifted sequences read as runs of tokens (run.shift.token_pair): torch's loss of
    # the (B, V, L) layout, its positions fed a run at a time
    runs = grid is not None and not shifted and not tokens
    if runs:
        x_row, t_row = (x_row[0], *grid[1:]), tuple(grid[1:])

    # torch decides the target kind by shape: compare the shapes of one row
    is_probs = t_row == x_row
    t_dtype = (ts.dtype if ts.dtype.kind == "f" else np.dtype(np.float64)) if is_probs \
        else np.dtype(np.int64)
    n_x_known, n_t_known = (grid[0], grid[0]) if runs else (xs.n_rows, ts.n_rows)
    n_guess = n_x_known if n_x_known is not None else 1
    t_guess = n_t_known if (n_t_known is not None and n_x_known is not None) else n_guess
    try:
        spec = loss.make_spec((n_guess, *x_row), x_dtype, (t_guess, *t_row), t_dtype, weight,
                              ignore_index, reduction, label_smoothing, input_kind)
    except ShapeError:
        if n_x_known is not None and n_t_known is not None:
            raise
        # a text source's rows are not known up front, and torch's message names them:
        # count them (the error path only), so the message and the caller show real shapes
        for src in (xs, ts):
            if src.n_rows is None:
                src.n_rows = sum(b.shape[0] for b in src.blocks(rows_per_read(src)))
        spec = loss.make_spec((xs.n_rows, *x_row), x_dtype, (ts.n_rows, *t_row), t_dtype,
                              weight, ignore_index, reduction, label_smoothing, input_kind)
    if tokens:
        spec = replace(spec, class_last=True)
    bfloat16 = result_dtype == "bfloat16"  # the logits: torch's bfloat16 log_softmax
    if spec.target_kind == "probs" and ts.stored_dtype != "bfloat16":
        result_dtype = None  # torch promotes bfloat16 with float probabilities to theirs
    if bfloat16:  # and torch sums bfloat16 losses in bfloat16: emulated
        # (against class indices its weight is a bfloat16 tensor too: torch needs the
        # logits' dtype there; probabilities take a float weight as it is)
        spec = replace(spec, bfloat16=True, weight=None if spec.weight is None or
                       spec.target_kind != "index" else loss.round_bfloat16(spec.weight))
    acc = loss.LossAccumulator(spec, keep_losses=keep_losses)
    scan = InputScan(input_kind)
    # Softmax outputs passed as logits: the loss they mean (their log, no second softmax)
    # rides along while every row so far looks like probabilities, dropped at the first
    # block that does not, so the warning can name it without a second pass.
    as_probs = loss.LossAccumulator(replace(spec, input_kind="probs"),
                                    keep_losses=reduction == "none") \
        if input_kind == "logits" else None
    stats = None if audit is None else metrics.AuditStats(
        spec.n_classes, top_k=audit.top_k, bins=audit.bins, worst_k=audit.worst)
    if stats is not None:  # the audit reads the kernel's exp(x) as it goes
        acc.hook = stats.kernel_rows(spec)
    if sequences is None:
        sequences = audit is not None and (grid is not None or (
            class_axis is not None and len(x_row) == 2 and axis == len(x_row)))
    # one sequence per leading index; a single row of tokens (L, V) is one sequence
    length = grid[-1] if grid is not None else x_row[-1] if len(x_row) > 1 else 1 << 62
    seqs = SequenceStats(length) if sequences else None
    # (B, L, V) with the classes last and class-index labels: are the labels aligned?
    align = Alignment() if spec.target_kind == "index" and (grid is not None or (
        len(x_row) == 2 and axis == len(x_row))) else None
    rows = rows_per_read(xs)
    n_x = n_t = position = 0
    # the sources as read (a (C,) sample became a batch of one), then the blocks come in
    # (Pass.feed) and their losses go out
    got = yield rows, xs, ts, spec
    kept_targets: list[np.ndarray] = []
    first_x: list[np.ndarray] = []
    first_t: list[np.ndarray] = []
    preview_have = 0
    labels: np.ndarray | None = None
    while got is not None:
        xb, tb = got
        block_losses: list[np.ndarray] = []
        n_x += xb.shape[0]
        n_t += tb.shape[0]
        if xb.shape[0] != tb.shape[0]:
            got = yield np.zeros(0, spec.dtype), None
            continue  # counted; reported below with torch's message
        xb = xb.astype(x_dtype, copy=False)
        if axis != 1:
            xb = np.moveaxis(xb, axis, 1)
        if squeeze:
            tb = tb.reshape(-1)
        tb = coerce_targets(tb, xb.shape, ts.path, offset=n_t - tb.shape[0],
                            line_of=ts.line_of)
        if keep_targets and spec.target_kind == "index":
            kept_targets.append(tb.reshape(-1))
        if align is not None and not align.full:
            if grid is None:
                align.update(np.moveaxis(xb, 1, -1), tb, spec.ignore_index)
            elif length:  # token rows: the whole sequences in the block, else a run
                m = xb.shape[0]
                skip = -(n_x - m) % length  # rows before the block's first sequence starts
                whole = max(0, (m - skip) // length)
                if whole:
                    end = skip + whole * length
                    align.update(xb[skip:end].reshape(whole, length, -1),
                                 tb[skip:end].reshape(whole, length), spec.ignore_index)
                else:
                    k = min(m, length - (n_x - m) % length)
                    align.update(xb[None, :k], tb[None, :k], spec.ignore_index)
        pieces = _token_rows(np.moveaxis(xb, 1, -1), tb, spec.target_kind) if tokens \
            else _runs(xb, tb, n_x - xb.shape[0], length, spec.target_kind) if runs \
            else loss.iter_blocks(xb, tb, spec.target_kind)
        for xbb, tbb in pieces:
            scan.update(xbb)
            if preview_have < preview_rows:
                take = min(preview_rows - preview_have, xbb.shape[0])
                first_x.append(np.array(xbb[:take]))
                first_t.append(np.array(tbb[:take]))
                preview_have += take
            losses = acc.update(xbb, tbb)
            block_losses.append(losses)
            scan.update_losses(losses)
            if as_probs is not None:
                if scan.looks_like_probabilities(x_dtype, spec.n_classes):
                    as_probs.update(xbb, tbb)
                else:
                    as_probs = None
            if spec.target_kind == "index":
                labels = label_counts(labels, tbb, spec.n_classes, spec.ignore_index)
            if stats is not None:
                stats.update(xbb, tbb, losses, spec, offset=position)
            if seqs is not None:
                _add_sequences(seqs, losses, tbb, spec, position)
            if spec.target_kind == "probs":
                scan.update_targets(tbb)
            position += xbb.shape[0]
            if on_rows is not None:
                on_rows(xbb)
        got = yield (block_losses[0] if len(block_losses) == 1 else
                     np.concatenate(block_losses) if block_losses else np.zeros(0, spec.dtype),
                     tb.reshape(-1) if spec.target_kind == "index" else None)
    if n_x != n_t:
        raise row_count_mismatch(n_x, n_t, xs.path, ts.path)
    result = acc.finalize(reduction if reduction != "none" or keep_losses else "mean")
    loss_shape = () if unbatched else (n_x, *x_row[1:])
    if grid is not None:  # token rows: the loss has the sequences' shape
        per = math.prod(grid[1:])
        loss_shape = (n_x // per if per else grid[0], *grid[1:])
        x_row = (x_row[0], *grid[1:])
        t_row = x_row if is_probs else tuple(grid[1:])
    if result.losses is not None:
        result.losses = result.losses.reshape(loss_shape)
        if reduction == "none":
            result.loss = result.losses
    xp = np.concatenate(first_x) if first_x else np.zeros((0, spec.n_classes), x_dtype)
    tp = np.concatenate(first_t) if first_t else np.zeros(0, np.int64)
    preview = _preview_from(xp, tp, spec, preview_rows, loss_shape)
    targets = np.concatenate(kept_targets) if kept_targets else None
    as_probs_totals = probs_loss = None
    if as_probs is not None and scan.looks_like_probabilities(x_dtype, spec.n_classes):
        as_probs_totals = as_probs.totals
        probs_loss = as_probs.finalize(reduction).loss
    layout = Layout(x_row, t_row, class_axis is not None, target_dtype, shifted)
    if seqs is not None:
        if len(x_row) == 1:  # one sequence of every position
            seqs.length = position
        n_seq = math.prod(loss_shape[:-1]) if len(loss_shape) > 1 else 1
        seqs.extend(n_seq if position or len(loss_shape) > 1 else 0)
    return Summary(result, scan, labels, stats, layout,
                   findings=[*(Finding("note", n) for n in dict.fromkeys(notes)),
                             *(before or []),
                             *([Finding("warning", dtype_note)] if dtype_note else [])],
                   as_probs=as_probs_totals, probs_loss=probs_loss,
                   sources={"logits": xs.path, "targets": ts.path},
                   inputs=inputs if inputs is not None else [f"{xs.path} {ts.path}"],
                   loss_shape=loss_shape, preview=preview, targets=targets,
                   result_dtype=result_dtype, sequences=seqs, alignment=align)


def _token_rows(xb: np.ndarray, tb: np.ndarray, target_kind: str
                ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(b, ..., L, V)`` logits (classes last) as ``(m, V)`` token rows in C order, as
    ``logits.view(-1, V)``: each sample's rows are a view when they are contiguous (the
    shifted ``logits[:, :-1]`` of a saved array are), small samples copied a block at a time."""
    v = xb.shape[-1]
    per_sample = math.prod(xb.shape[1:])
    probs = target_kind == "probs"
    if per_sample < (1 << 16) or xb.shape[0] <= 1:
        groups: Iterator[tuple[np.ndarray, np.ndarray]] = iter(
            [(xb.reshape(-1, v), tb.reshape(-1, v) if probs else tb.reshape(-1))])
    else:
        groups = ((xb[i].reshape(-1, v), tb[i].reshape(-1, v) if probs else tb[i].reshape(-1))
                  for i in range(xb.shape[0]))
    for xg, tg in groups:
        yield from loss.iter_blocks(xg, tg, target_kind)


def _runs(xb: np.ndarray, tb: np.ndarray, first: int, length: int, target_kind: str
          ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Token rows ``(m, V)`` from position ``first`` on, cut where a sequence of
    ``length`` tokens ends, each run as the ``(1, V, l)`` K-dim view torch's
    ``logits.movedim(-1, 1)`` holds (the loss is that layout's, not the rows')."""
    pos = 0
    m = xb.shape[0]
    while pos < m:
        end = min(m, pos + length - (first + pos) % length)
        yield from loss.iter_blocks(xb[pos:end].T[None], tb[pos:end][None], target_kind)
        pos = end


def _add_sequences(seqs: SequenceStats, losses: np.ndarray, tb: np.ndarray,
                   spec: loss.LossSpec, position: int) -> None:
    """One block's per-token losses into the per-sequence sums (weights as torch's mean
    divides by them: ``w[t]`` of counted class indices; every position of probabilities)."""
    if spec.target_kind == "index":
        t = tb.reshape(-1)
        counted = t != spec.ignore_index
        weights = None if spec.weight is None else \
            spec.weight.astype(np.float64)[np.where(counted, t, 0)]
    else:
        counted, weights = np.ones(losses.shape[0], bool), None
    seqs.update(losses, counted, weights, position)


class Pass:
    """One streaming pass that the caller feeds: :func:`run` feeds it one pair of sources,
    ``compare`` feeds two passes the same target blocks in step.

    ``Pass(xs, ts, **options)`` takes :func:`run`'s options and checks the shapes;
    ``feed(xb, tb)`` adds a block of rows of ``self.xs`` and ``self.ts`` (``rows`` rows
    suit them) and returns its
    per-position losses (torch's ``none``, in position order); ``finish()`` the Summary.
    """

    def __init__(self, xs: Source, ts: Source, **options: Any) -> None:
        self._steps = _pass(xs, ts, **options)
        #: rows per block, the sources to read them from (a (C,) sample: a batch of one),
        #: and the loss as torch was asked for it
        self.rows, self.xs, self.ts, self.spec = next(self._steps)
        #: the last block's class-index targets, flat and checked (None for probabilities)
        self.targets: np.ndarray | None = None

    def feed(self, xb: np.ndarray, tb: np.ndarray) -> np.ndarray:
        losses, self.targets = self._steps.send((xb, tb))
        return losses

    def finish(self) -> Summary:
        try:
            self._steps.send(None)
        except StopIteration as done:
            return done.value
        raise AssertionError("the pass went on after its last block")


def run(xs: Source, ts: Source, **options: Any) -> Summary:
    """Compute torch's loss of ``xs`` against ``ts`` in one streaming pass. Options:
    ``weight``, ``ignore_index``, ``reduction``, ``label_smoothing``, ``input_kind``,
    ``keep_losses`` (all required), and those :func:`_pass` documents."""
    one = Pass(xs, ts, **options)
    for xb, tb in aligned_blocks(one.xs, one.ts, one.rows):
        one.feed(xb, tb)
    return one.finish()


def row_count_mismatch(n_x: int, n_t: int, x_path: str, t_path: str) -> ShapeError:
    """The rows that do not match, said first, with the fix (one row more in a CSV file:
    its first line may be a header of class numbers, ``1,2,3``), then torch's sentence."""
    longer = x_path if n_x == n_t + 1 else t_path if n_t == n_x + 1 else None
    header = longer is not None and longer.lower().endswith((".csv", ".tsv", ".txt"))
    fix = (f"if line 1 of {longer} is a header (class names such as 1,2,3), pass --header; "
           "else pass" if header else "pass") + " the targets saved with these logits"
    return ShapeError(
        f"{x_path} has {n_x:,} rows of logits but {t_path} has {n_t:,} targets: one target "
        f"per row is needed; {fix} (torch: Expected input batch_size ({n_x}) to match "
        f"target batch_size ({n_t}))")


def rows_per_read(source: Source) -> int:
    """Rows of ``source`` per read: about :data:`READ_ELEMENTS` values (twice that
    for the token rows of a large vocabulary, whose blocks would be a few rows each)."""
    per_row = math.prod(source.row_shape) if source.row_shape else 1
    elements = READ_ELEMENTS * (2 if source.tokens is not None else 1)
    return max(1, elements // max(per_row, 1))


def class_axis_of(class_axis: int | None, ndim: int) -> int:
    """The logits axis that holds the classes, normalised (torch's default: 1)."""
    if class_axis is None:
        return 1
    axis = class_axis + ndim if class_axis < 0 else class_axis
    if not 1 <= axis < ndim:
        where = ("on axis 1 (or -1)" if ndim == 2 else
                 f"on one of axes 1 to {ndim - 1} (-1 for the last)")
        raise OptionError(
            f"--class-axis {class_axis} does not fit logits with {ndim} axes: axis 0 is the "
            f"batch, so the classes are {where}" if ndim > 1 else
            f"--class-axis {class_axis} does not fit 1-D logits: (C,) is one sample, whose "
            "classes are its only axis; leave --class-axis out")
    return axis


def _preview_from(xb: np.ndarray, tb: np.ndarray, spec: loss.LossSpec, rows: int,
                  loss_shape: tuple[int, ...]) -> Preview:
    total = math.prod(loss_shape) if loss_shape else 1
    xb, tb = xb[:rows], tb[:rows]
    if rows == 0 or xb.shape[0] == 0:
        return Preview(total=total)
    losses = loss.LossAccumulator(spec).update(xb, tb)
    probs = loss.softmax(xb, spec.input_kind)
    if spec.target_kind == "index":
        targets: list[Any] = [int(v) for v in tb]
    else:
        targets = [f"~{int(np.argmax(r))}" if r.size else "-" for r in tb]
    labels = [position_label(i, loss_shape) for i in range(xb.shape[0])]
    return Preview(index=labels, targets=targets, losses=losses, probs=probs, total=total)

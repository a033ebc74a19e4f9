"""``--shift``: a causal language model's logits against its input ids.

A causal LM's logits at position ``j`` predict the token at ``j + 1``, and Hugging Face
saves its labels unshifted (``labels = input_ids``, padding as -100). Its loss pads the
labels on the right with ``ignore_index``, shifts them one to the left and upcasts the
logits to float32; the padded last position never counts, so the loss equals that of
``logits[..., :-1, :]`` against ``labels[..., 1:]``, which is what :func:`shift_pair` reads.

The sources are shifted as they are read, so every engine (one pass, shards, partials,
Dask) sees the shifted pair: a sequence is one row of ``(B, L, V)`` logits and is never
split. A single sequence saved as ``(L, V)`` logits with ``(L,)`` labels is shifted along
the rows instead (the last logits row and the first label are left out).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import replace

import numpy as np

from ..errors import CeLossError, UsageError
from ..readers.base import Source


def shift_pair(xs: Source, ts: Source, class_axis: int | None) -> tuple[Source, Source]:
    """``xs`` and ``ts`` read as Hugging Face's causal-LM loss reads them (see the module).

    The classes must be on the logits' last axis and the sequence on the axis before it;
    pairs whose shapes do not fit are passed on unshifted, for the loss to refuse with
    the usual shape message.
    """
    x_row, t_row = tuple(xs.row_shape), tuple(ts.row_shape)
    ndim = 1 + len(x_row)
    if class_axis is not None and (class_axis if class_axis >= 0 else class_axis + ndim) \
            != ndim - 1:
        raise UsageError(
            f"--shift reads the classes on the logits' last axis and the sequence on the axis "
            f"before it, but --class-axis {class_axis} is not the last of {ndim} axes; "
            "leave --class-axis out, or pass --class-axis -1", option="--shift")
    if not x_row:
        raise CeLossError(
            f"{xs.path}: --shift needs logits with a sequence axis, (B, L, V) or (L, V), "
            f"but these are 1-D, one sample of {xs.n_rows} classes")
    probs = t_row == x_row
    if len(x_row) == 1:  # (L, V) logits, (L,) labels: one sequence along the rows
        if t_row not in ((), x_row):
            return xs, ts
        if xs.parts is not None or ts.parts is not None:
            raise CeLossError(
                f"{xs.path}: --shift on sharded (L, V) logits would lose the token at every "
                "shard boundary; save the sequences as (B, L, V) rows, or as one file")
        return _drop_rows(xs, last=True), _drop_rows(ts, last=False)
    if not probs and t_row != x_row[:-1]:
        return xs, ts
    if xs.flatten is not None and ts.flatten is not None and xs.n_rows is not None:
        # token rows: a sequence of a 128K vocabulary is 525M values, too many for a block
        length = x_row[-2]
        grid = (xs.n_rows, *x_row[:-2], max(length - 1, 0))  # the shifted loss's shape
        flat_x = _drop_every(_flattened(xs, 1), length, length - 1)
        flat_t = _drop_every(_flattened(ts, 1 if probs else 0), length, 0)
        flat_x.tokens = flat_t.tokens = grid
        return flat_x, flat_t

    def sliced(src: Source, keep: slice, axis: int) -> Source:
        index = (slice(None),) * (axis + 1) + (keep,)

        def blocks(rows: int) -> Iterator[np.ndarray]:
            for b in src.blocks(rows):
                yield b[index]

        row_shape = list(src.row_shape)
        row_shape[axis] = max(row_shape[axis] - 1, 0)
        return replace(src, row_shape=tuple(row_shape), _blocks=blocks,
                       array=None if src.array is None else src.array[index])

    seq = len(x_row) - 2  # the sequence axis of a row, just before the classes
    return sliced(xs, slice(None, -1), seq), sliced(ts, slice(1, None), seq)


def token_pair(xs: Source, ts: Source, class_axis: int | None, least: int
               ) -> tuple[Source, Source]:
    """Unshifted ``(B, ..., L, V)`` logits (``--class-axis -1``) against ``(B, ..., L)``
    class indices, as token rows when one sequence holds more than ``least`` values: a
    block is then a run of tokens, not a whole sequence (one of a 128K vocabulary is 2 GB
    in float32). The loss is still torch's of ``logits.movedim(-1, 1)``: the pass reads the
    runs as that layout's positions (``Source.tokens`` names the sequences' shape). Other
    pairs, and those whose readers cannot flatten, are passed on as they are."""
    x_row, t_row = tuple(xs.row_shape), tuple(ts.row_shape)
    ndim = 1 + len(x_row)
    if class_axis is None or len(x_row) < 2 or \
            (class_axis if class_axis >= 0 else class_axis + ndim) != ndim - 1:
        return xs, ts
    if t_row != x_row[:-1] or math.prod(x_row) <= least or xs.n_rows is None \
            or xs.n_rows != ts.n_rows or xs.flatten is None or ts.flatten is None:
        return xs, ts
    flat_x, flat_t = _flattened(xs, 1), _flattened(ts, 0)
    flat_x.tokens = flat_t.tokens = (xs.n_rows, *x_row[:-1])
    return flat_x, flat_t


def _flattened(src: Source, keep: int) -> Source:
    """``src.flatten(keep)`` with what the reader and the class names said of ``src``
    (its notes, names and stored dtype): the same file, read as token rows."""
    assert src.flatten is not None
    flat = src.flatten(keep)
    return replace(flat, notes=list(src.notes), class_names=src.class_names,
                   column_names=src.column_names, labels=src.labels,
                   stored_dtype=src.stored_dtype or flat.stored_dtype)


def _drop_every(src: Source, period: int, which: int) -> Source:
    """``src`` without row ``which`` of every ``period`` rows (the last token of each
    sequence of the logits, the first of the labels); blocks are views, cut there."""
    n = src.n_rows or 0
    kept = n // period * (period - 1) if period else 0

    def blocks(rows: int) -> Iterator[np.ndarray]:
        start = 0
        for b in src.blocks(rows):
            m = b.shape[0]
            pos = 0
            while pos < m:
                j = (start + pos) % period  # the block's row pos is token j of its sequence
                if j == which:
                    pos += 1
                    continue
                run = (which - j) % period  # rows up to the next dropped one
                piece = b[pos:pos + run]
                if piece.shape[0]:
                    yield piece
                pos += piece.shape[0]
            start += m

    return replace(src, n_rows=kept, _blocks=blocks, array=None, flatten=None)


def _drop_rows(src: Source, *, last: bool) -> Source:
    """``src`` without its last row (``last``) or its first."""
    n = None if src.n_rows is None else max(src.n_rows - 1, 0)
    if last:
        def blocks(rows: int) -> Iterator[np.ndarray]:
            if n is not None:  # known length: stop one row early
                left = n
                for b in src.blocks(rows):
                    if left <= 0:
                        return
                    yield b[:left]
                    left -= b.shape[0]
                return
            held = None  # unknown length (text, stdin): hold one block back
            for b in src.blocks(rows):
                if held is not None:
                    yield held
                held = np.array(b)  # the reader may reuse b's buffer for its next block
            if held is not None and held.shape[0] > 1:
                yield held[:-1]

        array = None if src.array is None else src.array[:-1]
        return replace(src, n_rows=n, _blocks=blocks, array=array)

    def first_dropped(rows: int) -> Iterator[np.ndarray]:
        skip = 1
        for b in src.blocks(rows):
            if skip:
                b, skip = b[1:], 0
            if b.shape[0]:
                yield b

    line_of = src.line_of
    return replace(src, n_rows=n, _blocks=first_dropped, line_of=lambda i: line_of(i + 1),
                   array=None if src.array is None else src.array[1:])

"""The streaming pass: block alignment and results independent of how files are chunked."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from helpers import torch_ce
from hypothesis import given, settings
from hypothesis import strategies as st

from ce_cli.readers.base import Source
from ce_cli.run import pipeline


def _chunked(array: np.ndarray, sizes: list[int], reuse: bool) -> Source:
    """A source that yields blocks of the given sizes (cycled), like a file reader would;
    with ``reuse`` it overwrites one buffer, as the buffered NPY reader does."""

    def blocks(rows: int) -> Iterator[np.ndarray]:
        buf = np.empty_like(array)
        start, i = 0, 0
        while start < array.shape[0]:
            m = min(sizes[i % len(sizes)], array.shape[0] - start)
            if reuse:
                out = buf[:m]
                out[...] = array[start:start + m]
            else:
                out = array[start:start + m].copy()
            yield out
            start, i = start + m, i + 1

    return Source("mem", "x", array.dtype, tuple(array.shape[1:]), array.shape[0], blocks)


@settings(max_examples=80, deadline=None)
@given(n=st.integers(0, 60), rows=st.integers(1, 17),
       x_sizes=st.lists(st.integers(1, 20), min_size=1, max_size=4),
       t_sizes=st.lists(st.integers(1, 20), min_size=1, max_size=4), reuse=st.booleans())
def test_aligned_blocks_pair_rows_whatever_the_chunking(n, rows, x_sizes, t_sizes, reuse):
    x = np.arange(n * 3, dtype=np.float64).reshape(n, 3)
    t = np.arange(n)
    pairs = [(a.copy(), b.copy()) for a, b in pipeline.aligned_blocks(
        _chunked(x, x_sizes, reuse), _chunked(t, t_sizes, reuse), rows)]
    assert all(a.shape[0] == b.shape[0] <= rows for a, b in pairs)
    got_x = np.concatenate([a for a, _ in pairs]) if pairs else np.zeros((0, 3))
    got_t = np.concatenate([b for _, b in pairs]) if pairs else np.zeros(0)
    np.testing.assert_array_equal(got_x, x)
    np.testing.assert_array_equal(got_t, t)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 300),
       sizes=st.lists(st.integers(1, 50), min_size=1, max_size=3))
def test_streamed_loss_equals_torch(seed, n, sizes):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5)) * 4
    t = rng.integers(0, 5, size=n)
    t[rng.random(n) < 0.1] = -100
    with pytest.MonkeyPatch.context() as mp:  # hypothesis tests cannot take monkeypatch
        mp.setattr(pipeline, "READ_ELEMENTS", 5 * 7)  # 7 rows per read: many blocks
        run = pipeline.run(_chunked(x, sizes, True), _chunked(t, sizes[::-1], False),
                           weight=None, ignore_index=-100, reduction="mean",
                           label_smoothing=0.1, input_kind="logits", keep_losses=True)
    np.testing.assert_allclose(run.result.loss, torch_ce(x, t, label_smoothing=0.1),
                               rtol=1e-9, equal_nan=True)
    np.testing.assert_allclose(run.result.losses,
                               torch_ce(x, t, label_smoothing=0.1, reduction="none"),
                               rtol=1e-9)


def test_the_alignment_checks_top_class_of_float16_is_numpys_argmax():
    """float16 is ranked by its bits: the same top class as NumPy's argmax, negatives,
    infinities, subnormals and NaN included."""
    from ce_cli.audit.alignment import top_class

    rng = np.random.default_rng(4)
    bits = rng.integers(0, 1 << 16, (400, 37), dtype=np.uint16)
    x = bits.view(np.float16).copy()
    x[np.isnan(x)] = 0  # NaN: below
    x[::7, 3] = np.inf
    x[::11] = -np.abs(x[::11])  # rows of negative values only
    x[5, :] = -np.inf
    x[6, :] = np.float16(-6e-8)  # a subnormal, everywhere: the first
    want = np.argmax(x, axis=-1)
    np.testing.assert_array_equal(top_class(x), want)
    np.testing.assert_array_equal(top_class(x[:, ::-1]), np.argmax(x[:, ::-1], axis=-1))
    x[9, 20] = np.nan  # NumPy's argmax picks a NaN; so does the bit order
    assert top_class(x)[9] == np.argmax(x, axis=-1)[9] == 20
    np.testing.assert_array_equal(top_class(x.astype(np.float32)), np.argmax(x, axis=-1))

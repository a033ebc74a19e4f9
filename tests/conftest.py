"""Shared hypothesis strategies and comparison helpers for the core tests, and a check
that no test leaves process state behind.

Nothing here imports torch: the relation tests must run without it. The test modules
import these names with ``from conftest import ...`` (pytest puts ``tests/`` on
``sys.path`` because it has no ``__init__.py``).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

#: torch's oracle runs on tiny tensors, for which its intra-op threads only cost: on a
#: machine whose cores are busy they make the suite 3x slower. Set here, before any test
#: module imports torch; a value given in the environment is kept.
os.environ.setdefault("OMP_NUM_THREADS", "1")

REDUCTIONS = ("mean", "sum", "none")

#: (rtol, atol) by the dtype the logits are computed in. float16: torch rounds
#: log_softmax to half and accumulates reductions in half, so only ~1e-2 agrees.
TOLERANCES = {
    np.dtype(np.float64): (1e-9, 1e-12),
    np.dtype(np.float32): (2e-5, 1e-6),
    np.dtype(np.float16): (1e-2, 1e-2),
}

#: database=None: no .hypothesis directory in the repository; deadline=None: the
#: first call of a NumPy/torch kernel can be slow.
SETTINGS = {
    "deadline": None,
    "database": None,
    "suppress_health_check": [
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
        HealthCheck.filter_too_much,
    ],
}


def ce_settings(max_examples: int) -> Any:
    return settings(max_examples=max_examples, **SETTINGS)


# -- shapes -------------------------------------------------------------------------------------


def class_axis(shape: tuple[int, ...]) -> int:
    return 0 if len(shape) == 1 else 1


def loss_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The input's shape without the class axis (torch's ``none`` shape)."""
    return () if len(shape) == 1 else (shape[0],) + tuple(shape[2:])


@st.composite
def input_shapes(draw: Any, *, max_n: int = 6, max_c: int = 5, allow_empty: bool = True,
                 kinds: tuple[str, ...] = ("1d", "2d", "2d", "kd")) -> tuple[int, ...]:
    """``(C,)``, ``(N, C)`` or ``(N, C, d1..dk)``, k in 1..3, small; 0-size N/d if allowed."""
    kind = draw(st.sampled_from(kinds))
    lo = 0 if allow_empty else 1
    c = draw(st.integers(1, max_c))
    if kind == "1d":
        return (c,)
    n = draw(st.integers(lo, max_n))
    if kind == "2d":
        return (n, c)
    k = draw(st.integers(1, 3))
    dmax = 3 if k < 3 else 2
    ds = tuple(draw(st.integers(lo, dmax)) for _ in range(k))
    return (n, c) + ds


# -- values -------------------------------------------------------------------------------------


def _width(dtype: np.dtype[Any]) -> int:
    return np.dtype(dtype).itemsize * 8


def _floats(lo: float, hi: float, dtype: Any) -> st.SearchStrategy[float]:
    return st.floats(lo, hi, width=_width(dtype), allow_nan=False, allow_infinity=False)


@st.composite
def logits(draw: Any, shape: tuple[int, ...], dtype: Any, *, specials: bool = True,
           scaled: bool = True, bound: float | None = None) -> np.ndarray:
    """Logits mostly in [-bound, bound]; sometimes scaled to 1e4/1e30 or offset by up to
    1e6 (not float16), and sometimes with a few -inf (masked class), +inf, NaN or large
    entries."""
    dtype = np.dtype(dtype)
    if bound is None:
        bound = 8.0 if dtype == np.float16 else 30.0
    x = draw(arrays(dtype, shape, elements=_floats(-bound, bound, dtype)))
    if scaled and dtype != np.float16:
        scale = draw(st.sampled_from([1.0, 1.0, 1.0, 1.0, 1e4, 1e30]))
        # a common offset: exp() of the unshifted logits under- or overflows around 700
        offset = draw(st.sampled_from([0.0] * 6 + [-745.0, -700.0, -88.0, 88.0, 700.0, 1e6]))
        x = (x * scale + offset).astype(dtype)
    if specials and x.size and draw(st.integers(0, 4)) == 0:
        big = [6e4, -6e4] if dtype == np.float16 else [1e4, -1e4, 1e30, -1e30]
        values = [-np.inf, -np.inf, np.inf, np.nan] + big
        for _ in range(draw(st.integers(1, 3))):
            x.flat[draw(st.integers(0, x.size - 1))] = draw(st.sampled_from(values))
    return x


@st.composite
def weights(draw: Any, n_classes: int, dtype: Any, *, negative: bool = True,
            none: bool = True) -> np.ndarray | None:
    """None, a non-negative vector (zeros included) or, if ``negative``, an integer-valued
    vector with both signs. Integer values keep every partial sum exact, so a weighted-mean
    denominator of 0 is 0 in any summation order."""
    kinds = ["positive", "positive"] + (["none", "none"] if none else [])
    kinds += ["signed"] if negative else []
    kind = draw(st.sampled_from(kinds))
    if kind == "none":
        return None
    if kind == "signed":
        w = draw(arrays(np.int64, (n_classes,), elements=st.integers(-2, 3)))
        return w.astype(dtype)
    # no tiny weights: sum/den would overflow in the tests' own arithmetic
    return draw(arrays(dtype, (n_classes,), elements=st.one_of(
        st.just(0.0), _floats(2.0**-10, 4.0, dtype))))


@st.composite
def ignore_indices(draw: Any, n_classes: int) -> int:
    """-100 (default), -1, a valid class id, or a value past the last class."""
    kind = draw(st.sampled_from(["default", "default", "minus_one", "class", "beyond"]))
    if kind == "default":
        return -100
    if kind == "minus_one":
        return -1
    if kind == "class":
        return draw(st.integers(0, n_classes - 1))
    return n_classes + draw(st.integers(0, 3))


@st.composite
def index_targets(draw: Any, shape: tuple[int, ...], dtype: Any = np.int64,
                  ignore_index: int = -100, *, ignored: bool = True) -> np.ndarray:
    """Class indices for an input of ``shape``: values in [0, C) and, if representable in
    ``dtype`` and ``ignored``, some equal to ``ignore_index``."""
    dtype = np.dtype(dtype)
    c = shape[class_axis(shape)]
    info = np.iinfo(dtype)
    elements: st.SearchStrategy[int] = st.integers(0, c - 1)
    if ignored and info.min <= ignore_index <= info.max:
        elements = st.integers(0, c).map(lambda v: ignore_index if v == c else v)
    return draw(arrays(dtype, loss_shape(shape), elements=elements))


def one_hot(t: np.ndarray, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """The probability target of ``shape`` that puts 1 on class ``t``."""
    axis = class_axis(shape)
    c = shape[axis]
    eye = np.eye(c, dtype=dtype)[t]  # class axis last
    return np.moveaxis(eye, -1, axis)


@st.composite
def prob_targets(draw: Any, shape: tuple[int, ...], dtype: Any, *,
                 signed: bool = True) -> np.ndarray:
    """A float target of the input's shape: normalized rows, one-hot rows, unnormalized
    non-negative rows, or (if ``signed``) entries in [-1, 2] - torch validates nothing."""
    dtype = np.dtype(dtype)
    kinds = ["normalized", "normalized", "onehot", "raw"] + (["signed"] if signed else [])
    kind = draw(st.sampled_from(kinds))
    axis = class_axis(shape)
    if kind == "onehot":
        t = draw(index_targets(shape, np.int64, ignored=False))
        return one_hot(t, shape, dtype)
    if kind == "signed":
        return draw(arrays(dtype, shape, elements=_floats(-1.0, 2.0, dtype)))
    p = draw(arrays(dtype, shape, elements=_floats(0.0, 1.0, dtype)))
    if kind == "normalized":
        total = p.sum(axis=axis, keepdims=True, dtype=np.float64)
        safe = np.where(total > 0, total, 1.0)
        p = (p / safe).astype(dtype)
    return p


label_smoothings = st.one_of(st.sampled_from([0.0, 0.0, 0.1, 1.0]), st.floats(0.0, 1.0))


# -- comparison ---------------------------------------------------------------------------------


def assert_close(got: Any, want: np.ndarray, *, rtol: float, atol: float,
                 scale: Any = 0.0, what: str = "") -> None:
    """``got`` (ours) equals ``want`` (torch's, as NumPy): same type, dtype and shape; NaN
    where it is NaN; the same infinity where it is infinite; elsewhere within
    ``atol + rtol * (|want| + scale)``. ``scale`` bounds the size of the terms that were
    summed (cancellation with negative weights or targets); non-finite scales count as 0."""
    assert isinstance(got, np.ndarray), f"{what}: expected np.ndarray, got {type(got)}"
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype}, torch {want.dtype}"
    assert got.shape == want.shape, f"{what}: shape {got.shape}, torch {want.shape}"
    g = got.astype(np.float64)
    w = want.astype(np.float64)
    s = np.abs(np.asarray(scale, dtype=np.float64))
    s = np.where(np.isfinite(s), s, 0.0)
    with np.errstate(all="ignore"):
        bad = np.isnan(g) != np.isnan(w)
        bad |= np.isinf(w) & (g != w)
        finite = np.isfinite(w)
        bad |= finite & ~(np.abs(g - w) <= atol + rtol * (np.abs(w) + s))
    if bad.any():
        idx = np.argwhere(np.atleast_1d(bad))[:5].tolist()
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {bad.size} values differ from torch "
            f"(rtol={rtol}, atol={atol}); first at {idx}\n"
            f" ours:  {np.array2string(np.atleast_1d(got)[np.atleast_1d(bad)][:5])}\n"
            f" torch: {np.array2string(np.atleast_1d(want)[np.atleast_1d(bad)][:5])}"
        )


def frozen(*arrays_: Any) -> list[Any]:
    """Copies to check afterwards that the arrays passed in were not modified."""
    return [None if a is None else np.array(a, copy=True) for a in arrays_]


def assert_unchanged(before: list[Any], *after: Any) -> None:
    for b, a in zip(before, after):
        if b is None:
            assert a is None
            continue
        assert a.dtype == b.dtype and a.shape == b.shape
        assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), "input was modified"


def denominator(target: np.ndarray, weight: np.ndarray | None, ignore_index: int,
                kind: str) -> tuple[float, float]:
    """torch's mean denominator and the same sum over |w|, in float64.

    Index targets: sum of w[t] over the non-ignored targets (their count without weight);
    probability targets: the number of loss positions."""
    if kind == "prob":
        n = float(np.prod(loss_shape(target.shape)))
        return n, n
    t = target.astype(np.int64).reshape(-1)
    counted = t[t != ignore_index]
    if weight is None:
        return float(counted.size), float(counted.size)
    w = weight.astype(np.float64)
    return float(w[counted].sum()), float(np.abs(w)[counted].sum())


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20240613)


# -- no test depends on, or leaves behind, process state ---------------------------------------

#: what ce-loss reads from the environment that changes its output: a value exported in the
#: shell that runs the tests must not change what they see
CE_LOSS_ENVIRONMENT = ("CE_LOSS_FORMAT", "CE_LOSS_TRACEBACK", "DASK_SCHEDULER_ADDRESS")

#: threads meant to live as long as the process: the kernel's pool (and ce-loss's reader
#: threads, daemons that stop on their own), and distributed's one offload executor
PROCESS_WIDE_THREADS = ("ce-loss", "Dask-Offload")


def _new_threads(before: set[threading.Thread]) -> list[str]:
    return [t.name for t in threading.enumerate() if t not in before and t.is_alive()
            and not t.daemon and not t.name.startswith(PROCESS_WIDE_THREADS)]


@pytest.fixture(autouse=True)
def _no_state_left_behind() -> Iterator[None]:
    """Each test starts without ce-loss's environment variables and must end with the
    environment, working directory, NumPy error state and threads it started with (new
    non-daemon threads get a few seconds to finish)."""
    with pytest.MonkeyPatch.context() as mp:
        for name in CE_LOSS_ENVIRONMENT:
            mp.delenv(name, raising=False)
        env, cwd, errstate = dict(os.environ), os.getcwd(), np.geterr()
        threads = set(threading.enumerate())
        yield
        changed = sorted(k for k in env.keys() | os.environ.keys()
                         if env.get(k) != os.environ.get(k) and k != "PYTEST_CURRENT_TEST")
        assert not changed, f"the test changed environment variables {changed}"
        assert os.getcwd() == cwd, f"the test left the working directory at {os.getcwd()}"
        assert np.geterr() == errstate, f"the test left np.seterr at {np.geterr()}"
        left = _new_threads(threads)
        deadline = time.monotonic() + 5
        while left and time.monotonic() < deadline:
            time.sleep(0.02)
            left = _new_threads(threads)
        assert not left, f"the test left threads running: {left}"

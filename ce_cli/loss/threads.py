"""Threads and per-thread scratch: how many threads, their pool, and their reused buffers.

NumPy's ufuncs release the GIL, so chunks of one array run side by side
(:func:`_run_parallel`); each thread writes its temporaries into buffers of its own,
kept from call to call (:func:`_buf`, :func:`_workspace`). The pool is made when a
second thread is first needed, so importing this starts no thread.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import OptionError

if TYPE_CHECKING:  # concurrent.futures is imported when a second thread is first needed
    from concurrent.futures import ThreadPoolExecutor

#: The default thread count never exceeds this (the kernel is bound by exp and memory).
MAX_DEFAULT_THREADS = 8


def default_threads() -> int:
    """Threads the kernel uses when none are given: ``CE_LOSS_THREADS`` if set, else the
    CPUs this process may run on (at most :data:`MAX_DEFAULT_THREADS`)."""
    env = os.environ.get("CE_LOSS_THREADS", "").strip()
    if env:
        n = int(env) if env.isdigit() else 0
        if n < 1:
            raise OptionError(f"CE_LOSS_THREADS must be a positive integer, got {env!r}")
        return n
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, MAX_DEFAULT_THREADS))


_LOCAL = threading.local()

#: Buffers up to this many elements are kept for the next call: four kernel chunks
#: (blocks.KERNEL_ELEMENTS) of the default size; a giant single row is not kept.
KEPT_ELEMENTS = 1 << 20


def _buf(name: str, n: int, dtype: Any) -> np.ndarray:
    """A 1-D per-thread buffer of ``n`` elements, reused from call to call (contents are
    garbage). Freshly allocated memory is slow to touch, so the kernel writes its
    temporaries here instead of allocating them per block."""
    dtype = np.dtype(dtype)
    bufs: dict[tuple[str, str], np.ndarray] | None = getattr(_LOCAL, "bufs", None)
    if bufs is None:
        bufs = _LOCAL.bufs = {}
    key = (name, dtype.char)
    b = bufs.get(key)
    if b is None or b.shape[0] < n:
        b = np.empty(max(n, 1), dtype)
        if n <= KEPT_ELEMENTS:
            bufs[key] = b
    return b[:n]


def _arange(n: int) -> np.ndarray:
    ar: np.ndarray | None = getattr(_LOCAL, "arange", None)
    if ar is None or ar.shape[0] < n:
        ar = _LOCAL.arange = np.arange(max(n, 1024), dtype=np.intp)
    return ar[:n]


class _Workspace:
    """One thread's scratch for chunks of one geometry, reused while chunks keep it:
    ``exp(x)`` (``e``), row sums, gather indices and gathered terms, and the index of
    each row's first class (``base``: ``i * C`` for rows, ``i + (i // L) (C - 1) L`` for
    ``(g, C, L)`` planes, to which ``t * L`` is added)."""

    def __init__(self, shape: tuple[int, ...], cdt: np.dtype[Any]) -> None:
        self.key = (shape, cdt)
        size = math.prod(shape)
        m = shape[0] * shape[2] if len(shape) == 3 else shape[0]
        self.e_flat = _buf("e", size, cdt)
        self.e = self.e_flat.reshape(shape)
        self.s = _buf("s", m, cdt)
        self.idx = _buf("idx", m, np.intp)
        self.e_t = _buf("e_t", m, cdt)
        self.base = _buf("base", m, np.intp)
        np.copyto(self.base, _arange(m))
        if len(shape) == 3:
            g, c, span = shape
            if g > 1:
                self.base += (_arange(m) // span) * ((c - 1) * span)
        else:
            self.base *= shape[1]


def _workspace(shape: tuple[int, ...], cdt: np.dtype[Any]) -> _Workspace:
    ws: _Workspace | None = getattr(_LOCAL, "workspace", None)
    if ws is None or ws.key != (shape, cdt):
        ws = _LOCAL.workspace = _Workspace(shape, cdt)
    return ws


_POOL: ThreadPoolExecutor | None = None
_POOL_SIZE = 0
_POOL_LOCK = threading.Lock()


def _executor(workers: int) -> ThreadPoolExecutor:
    from concurrent.futures import ThreadPoolExecutor

    global _POOL, _POOL_SIZE
    with _POOL_LOCK:
        if _POOL is None or _POOL_SIZE < workers:
            if _POOL is not None:
                _POOL.shutdown(wait=False)
            _POOL = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ce-loss")
            _POOL_SIZE = workers
        return _POOL


def _forget_pool() -> None:  # a forked child inherits the pool but not its threads
    global _POOL, _POOL_SIZE
    _POOL, _POOL_SIZE = None, 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def _run_parallel(n: int, work: Callable[[int], Any], threads: int) -> list[Any]:
    """``[work(0), ..., work(n - 1)]`` on up to ``threads`` threads, this one included.

    NumPy's ufuncs release the GIL, so chunks of one array run side by side.
    Workers take the next index as they finish; the results keep their order.
    """
    k = min(threads, n)
    if k <= 1:
        return [work(i) for i in range(n)]
    results: list[Any] = [None] * n
    lock = threading.Lock()  # a shared iterator is not thread-safe without a GIL
    indices = iter(range(n))
    stop: list[bool] = []

    def loop() -> None:
        with np.errstate(all="ignore"):  # the error state is per thread
            while not stop:
                with lock:
                    i = next(indices, None)
                if i is None:
                    return
                try:
                    results[i] = work(i)
                except BaseException:
                    stop.append(True)
                    raise

    from concurrent.futures import wait

    futures = [_executor(k - 1).submit(loop) for _ in range(k - 1)]
    try:
        loop()
    except BaseException:
        stop.append(True)
        raise
    finally:
        wait(futures)
    for f in futures:
        f.result()  # a worker's exception
    return results


"""``--engine dask``: the same kernel, one task per chunk, reduced as a Dask tree.

Each task opens its own rows (a shard, or a row range of a memory-mapped ``.npy``),
runs :func:`ce_cli.run.pipeline.run` on them and returns a partial-result document; the
documents are merged in a tree of :func:`ce_cli.run.partial.merge` calls. Tasks carry paths,
not data, so workers on other machines read the files themselves (they must see the
same paths). Runs on Dask's local threaded scheduler, or on a ``distributed`` cluster
when a scheduler address is given.

Dask is an optional extra: ``pip install 'ce-loss[dask]'``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .. import readers
from ..audit.findings import Finding
from ..errors import CeLossError, DTypeError, OptionError, ShapeError, TargetError
from ..options import AuditOptions, LossOptions, ReadOptions
from ..readers import shards
from . import partial, pipeline

#: elements of logits per task when a single .npy file is cut into row ranges
TASK_ELEMENTS = 1 << 25
#: partials merged per node of the reduction tree
FAN_IN = 8

INSTALL_HINT = "pip install 'ce-loss[dask]'"


def available() -> bool:
    try:
        import dask  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass(frozen=True)
class Task:
    """One chunk of the data: files (or one table), and a row range of a .npy file."""

    logits: str
    targets: str | None
    start: int = 0
    stop: int | None = None


def plan(logits: str, targets: str | None, *, fmt: str | None = None,
         task_elements: int | None = None) -> list[Task]:
    """Cut the input into tasks: one per shard, or row ranges of a single .npy file of
    about ``task_elements`` values each (default :data:`TASK_ELEMENTS`, read when called)."""
    if task_elements is None:
        task_elements = TASK_ELEMENTS
    if shards.is_sharded(logits):
        xf = shards.expand(logits, readers.SUFFIXES)
        if targets is None:
            return [Task(f, None) for f in xf]
        tf = shards.expand(targets, readers.SUFFIXES) if shards.is_sharded(targets) else None
        if tf is None or len(tf) != len(xf):
            raise OptionError(
                "--engine dask pairs logits and targets shard by shard: give TARGETS as a "
                f"folder or glob with one file per logits shard ({len(xf)})")
        return [Task(a, b) for a, b in zip(xf, tf)]
    if readers.is_stdin(logits) or readers.is_stdin(targets):
        raise OptionError("--engine dask reads files, not standard input; for stdin use the "
                          "default engine")
    if readers.detect_format(logits, fmt) == "npy":
        # the reader checks the header (truncated, damaged, object arrays) and maps it
        x = readers.open_source(logits, role="logits", fmt=fmt)
        if len(x.row_shape) >= 1 and x.n_rows:
            per_row = int(np.prod(x.row_shape))
            rows = max(1, task_elements // max(per_row, 1))
            return [Task(logits, targets, a, min(a + rows, x.n_rows))
                    for a in range(0, x.n_rows, rows)]
    return [Task(logits, targets)]


def _sliced(source: readers.Source, task: Task) -> readers.Source:
    """``source``'s rows ``task.start:task.stop``, with what its reader said of it (notes,
    stored dtype, names): a slice of its array where it maps one, else its blocks from
    the range's start (read and dropped before it) to its end, never the whole file."""
    start, stop = task.start, task.stop
    if start == 0 and stop is None:
        return source
    if source.array is not None:
        part = readers.base.array_source(source.path, source.role,
                                         source.array[start:stop])
        return replace(source, n_rows=part.n_rows, _blocks=part._blocks, array=part.array,
                       flatten=part.flatten)

    def blocks(rows: int) -> Iterator[np.ndarray]:
        pos = 0
        for b in source.blocks(rows):
            m = b.shape[0]
            lo, hi = max(start - pos, 0), m if stop is None else min(stop - pos, m)
            if lo < hi:
                yield b[lo:hi]
            pos += m
            if stop is not None and pos >= stop:
                return

    n = source.n_rows
    kept = None if n is None else max(0, (n if stop is None else min(stop, n)) - start)
    line_of = source.line_of  # a text file's lines, counted from the range's start
    return replace(source, n_rows=kept, _blocks=blocks, array=None, flatten=None,
                   line_of=lambda i: line_of(i + start))


@dataclass(frozen=True)
class Job:
    """What every task computes: how to read, the loss, its weight (parsed once, against
    the first task's logits) and the audit (None: none)."""

    read: ReadOptions
    loss: LossOptions
    weight: np.ndarray | None = None
    audit: AuditOptions | None = None
    #: what parsing the weight found, said once with the merged result
    said: tuple[Finding, ...] = ()
    #: per-sequence sums (pipeline.run's ``sequences``)
    sequences: bool | None = None


def _open(task: Task, read: ReadOptions, class_axis: int | None = None, *, cut: bool = True,
          tokens: bool = False) -> tuple[readers.Source, readers.Source]:
    """The logits and targets sources of ``task``, opened as the default engine opens them:
    its row range cut first (``cut``), then read shifted (``--shift``) like a whole file,
    or (``tokens``) long unshifted sequences as runs of tokens."""
    from .shift import shift_pair
    from .sources import as_tokens, open_sources

    xs, ts = open_sources(replace(read.with_paths(task.logits, task.targets), shift=False))
    names = xs.class_names
    if cut:
        xs, ts = _sliced(xs, task), _sliced(ts, task)
    if read.shift:
        xs, ts = shift_pair(xs, ts, class_axis)
    elif tokens:
        xs, ts = as_tokens(xs, ts, class_axis)
    xs.class_names = names
    return xs, ts


def check(tasks: list[Task], read: ReadOptions, class_axis: int | None = None) -> None:
    """Open every task's files here, before any task runs, so a missing, damaged or
    mismatched file is the same located error as with the default engine (and not a
    worker's exception). Opening reads headers and metadata only, not the data."""
    seen: set[tuple[str, str | None]] = set()
    for task in tasks:
        if (task.logits, task.targets) not in seen:
            seen.add((task.logits, task.targets))
            xs, ts = _open(task, read, class_axis, cut=False)
            n_x, n_t = xs.n_rows, ts.n_rows
            if task.stop is not None and n_x is not None and n_t is not None and n_x != n_t:
                # row-range tasks cut both files alike: say it as the default engine does
                raise pipeline.row_count_mismatch(n_x, n_t, xs.path, ts.path)


def run_task(task: Task, job: Job) -> dict[str, Any]:
    """The partial-result document of one task (runs on a worker)."""
    xs, ts = _open(task, job.read, job.loss.class_axis, tokens=True)
    names = xs.class_names  # merged partials must agree on them
    loss = job.loss
    try:
        summary = pipeline.run(
            xs, ts, weight=job.weight, ignore_index=loss.ignore_index,
            reduction=loss.reduction, label_smoothing=loss.label_smoothing,
            input_kind=loss.input_kind, class_axis=loss.class_axis, dtype=loss.dtype,
            keep_losses=False,
            audit=job.audit, inputs=[f"{task.logits}[{task.start}:{task.stop or ''}]"],
            sequences=job.sequences, shifted=job.read.shift,
            before=list(job.said))
    except TargetError as exc:  # torch's message, with the file it is about
        raise TargetError(f"{ts.path}: {exc}", exc.n_classes) from None
    except (ShapeError, DTypeError) as exc:
        raise type(exc)(f"{xs.path} and {ts.path}: {exc}") from None
    summary.class_names = names
    return partial.to_document(summary)


def compare(job: Any, scheduler: str | None = None, said: tuple[Finding, ...] = ()) -> Any:
    """``compare --engine dask``: one comparison per task (the same row ranges or shards of
    A, B and the targets), merged; the result equals one pass."""
    from . import compare as comparing

    tasks_a = plan(job.read.logits, job.read.targets, fmt=job.read.logits_format)
    tasks_b = plan(job.b_logits, job.read.targets, fmt=job.read.logits_format)
    if len(tasks_a) != len(tasks_b) or any(
            (a.start, a.stop, a.targets) != (b.start, b.stop, b.targets)
            for a, b in zip(tasks_a, tasks_b)):
        raise CeLossError(f"{job.read.logits} and {job.b_logits} do not split alike "
                          f"({len(tasks_a)} and {len(tasks_b)} parts): give both models' "
                          "outputs as files (or folders of shards) of the same shapes")
    check(tasks_a, job.read, job.loss.class_axis)
    check(tasks_b, job.read.with_paths(job.b_logits, job.read.targets), job.loss.class_axis)
    nodes = [dask_delayed()(_compare_task, pure=True)(a, b, job, said)
             for a, b in zip(tasks_a, tasks_b)]
    while len(nodes) > 1:
        nodes = [dask_delayed()(_merge_comparisons, pure=True)(*nodes[i:i + FAN_IN])
                 for i in range(0, len(nodes), FAN_IN)]
    doc = _run_graph(nodes[0], scheduler)
    return comparing.load_document(doc, "<dask>")


def _compare_task(a: Task, b: Task, job: Any, said: tuple[Finding, ...]) -> dict[str, Any]:
    from . import compare as comparing

    def opener(read: ReadOptions) -> tuple[readers.Source, readers.Source]:
        task = a if read.logits == a.logits else b
        return _open(task, read, job.loss.class_axis)

    where = f"[{a.start}:{a.stop or ''}]"
    c = comparing.run(comparing.with_paths(job, a.logits, b.logits, a.targets), said=list(said),
                      opener=opener, inputs=(f"{a.logits}{where}", f"{b.logits}{where}"))
    return comparing.to_document(c)


def _merge_comparisons(*docs: dict[str, Any]) -> dict[str, Any]:
    from . import compare as comparing

    runs = [comparing.load_document(d, "<dask task>") for d in docs]
    return comparing.to_document(comparing.merge(runs, ["<dask task>"] * len(runs)))


def dask_delayed() -> Any:
    import dask

    return dask.delayed


def _run_graph(node: Any, scheduler: str | None) -> dict[str, Any]:
    """Compute a graph's one result on local threads or at ``scheduler``."""
    scheduler = scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS") or None
    if not scheduler:
        from concurrent.futures import ThreadPoolExecutor

        # a pool of this run's own, shut down with it (Dask's default pool outlives it)
        with ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="ce-loss-dask") as pool:
            return node.compute(scheduler="threads", pool=pool)
    client = connect(scheduler)
    try:
        return client.compute(node).result()
    except (OSError, TimeoutError) as exc:
        raise CeLossError(f"lost the Dask scheduler at {scheduler} ({exc}); "
                          "check --scheduler or DASK_SCHEDULER_ADDRESS") from None
    finally:
        client.close()


def merge_documents(*docs: dict[str, Any]) -> dict[str, Any]:
    """One node of the reduction tree."""
    return partial.merge([partial.Partial(d, _where(d)) for d in docs]).doc


def _where(doc: dict[str, Any]) -> str:
    return ", ".join(doc.get("sources", [])) or "<dask task>"


def compute(tasks: list[Task], job: Job, scheduler: str | None = None) -> partial.Partial:
    """Run every task and merge them, on Dask; the result equals one ordinary run."""
    try:
        import dask
    except ImportError:
        raise OptionError(f"--engine dask needs Dask: {INSTALL_HINT}") from None
    check(tasks, job.read, job.loss.class_axis)
    nodes = [dask.delayed(run_task, pure=True)(t, job) for t in tasks]
    while len(nodes) > 1:
        nodes = [dask.delayed(merge_documents, pure=True)(*nodes[i:i + FAN_IN])
                 for i in range(0, len(nodes), FAN_IN)]
    return partial.Partial(_run_graph(nodes[0], scheduler), "<dask>")


#: seconds to wait for a scheduler: the TCP connection, then distributed's handshake
CONNECT_TIMEOUT = 10.0
#: the schemes whose address is a TCP host and port (a bare host:port is tcp), tried with a
#: socket first; distributed's other schemes go to its Client as they are
_TCP_SCHEMES = ("tcp", "tls", "ws", "wss")
_OTHER_SCHEMES = ("ucx", "inproc")


def connect(address: str, timeout: float | None = None) -> Any:
    """A ``distributed.Client`` of the scheduler at ``address``, or a one-line
    :class:`CeLossError` ("cannot reach the Dask scheduler") within ``timeout`` seconds.

    The address is parsed and its port tried with a plain socket first: a Client that
    fails half-built is left to the garbage collector, whose ``__del__`` may then stop
    distributed's shared event loop from inside the next Client's start and hang the
    process (or fail an assertion there). So only a reachable address gets a Client, and
    the wreck of one that still fails is collected here, outside any of distributed's locks.
    """
    timeout = CONNECT_TIMEOUT if timeout is None else timeout
    try:
        from distributed import Client
    except ImportError:
        raise OptionError(f"--scheduler needs dask.distributed: {INSTALL_HINT}") from None
    scheme = address.partition("://")[0] if "://" in address else "tcp"
    if scheme not in _OTHER_SCHEMES:
        scheme, host, port = _host_port(address)
        _probe(address, host, port, timeout, speaks_first=scheme == "tcp")
    client, problem = _new_client(Client, address, timeout)
    if client is None:
        import gc

        gc.collect()  # the half-built Client's __del__ runs now, not inside the next one
        raise _unreachable(address, problem)
    return client


def _unreachable(address: str, problem: str) -> CeLossError:
    return CeLossError(f"cannot reach the Dask scheduler at {address!r} ({problem}); check "
                       "--scheduler or DASK_SCHEDULER_ADDRESS (e.g. tcp://10.0.0.5:8786)")


def _host_port(address: str) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of ``tcp://host:port``, ``tls://host:port`` or ``host:port``."""
    scheme, sep, rest = address.partition("://")
    if not sep:
        scheme, rest = "tcp", address
    if scheme not in _TCP_SCHEMES:
        raise _unreachable(address, f"unknown protocol {scheme!r}; use tcp://, tls://, "
                           "ws://, wss://, ucx:// or inproc://")
    rest = rest.rstrip("/")
    if rest.startswith("["):  # [::1]:8786
        host, colon, port = rest[1:].partition("]:")
    else:
        host, colon, port = rest.rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise _unreachable(address, "no port: give host:port, e.g. tcp://10.0.0.5:8786")
    return scheme, host, int(port)


def _probe(address: str, host: str, port: int, timeout: float, speaks_first: bool) -> None:
    """Connect to ``host:port``; over plain TCP, also wait for the scheduler's greeting (a
    Dask server writes its handshake first, and distributed's Client waits for it with no
    time limit: a port that never answers would hang the run)."""
    import socket

    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            if speaks_first and not sock.recv(1):
                raise _unreachable(address, "the connection was closed without a greeting; "
                                   "is it a Dask scheduler's address?")
    except TimeoutError:
        raise _unreachable(address, f"no Dask greeting within {timeout:g} s; is it a Dask "
                           "scheduler's address?") from None
    except OSError as exc:  # refused, unknown host, unreachable network
        raise _unreachable(address, exc.strerror or str(exc) or type(exc).__name__) from None


def _new_client(client_type: Any, address: str, timeout: float) -> tuple[Any, str]:
    """``(client, "")``, or ``(None, why)``; the failed Client dies with this frame."""
    try:
        return client_type(address, timeout=f"{timeout}s", set_as_default=False), ""
    except Exception as exc:  # OSError, TimeoutError, distributed's own failures
        return None, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__

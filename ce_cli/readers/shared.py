"""One read of a table feeding several sources: a CSV pair (logits and targets from one
file) is parsed once, and either side read alone costs bounded memory."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from .base import prefetched


class SharedBatches:
    """One read of a table's batches feeding several sources (each a list of fields).

    A source's ``batches`` call joins the read the other source started, if that read is
    waiting for it; otherwise it starts a new read, which waits for the others. For a
    side that has not come yet the read keeps up to :data:`SHARED_LAG_BYTES` of batches;
    past that it lets the side go (a side read alone, say, to locate a bad label), and the
    side starts a read of its own when it comes. So a side read alone costs bounded
    memory; the command line reads both sides in step and parses the file once.
    """

    def __init__(self, table: Any, sides: list[list[Any]]) -> None:
        """``table``: a :class:`~ce_cli.readers.table.Table`; ``sides``: its fields per side."""
        self.table = table
        self.fields: list[Any] = []
        for fields in sides:
            self.fields += [f for f in fields if f not in self.fields]
        self.picks = [[self.fields.index(f) for f in fields] for fields in sides]
        self.waiting: dict[int, Fanout] = {}  # side -> a read it has not joined yet

    def batches(self, side: int, rows: int) -> Iterator[Any]:
        import pyarrow as pa

        read = self.waiting.pop(side, None)
        if read is None or not read.holds(side):
            read = Fanout(prefetched(iter(self.table.batches(self.fields, rows))),
                           len(self.picks), limit=SHARED_LAG_BYTES, size=_nbytes)
            self.waiting = {k: read for k in range(len(self.picks)) if k != side}
        names = [self.fields[i].name for i in self.picks[side]]
        for batch in read.branch(side):
            yield pa.RecordBatch.from_arrays([batch.column(i) for i in self.picks[side]],
                                             names=names)


#: bytes of batches kept for a side of a shared read that has not come yet, before it
#: is let go (or twice the largest batch, if more): the command line fills a whole block
#: of logits (1M values, 8 MB as float64; one or two 8 MB CSV pieces) before it asks for
#: the labels, and this must not send them to a second parse
SHARED_LAG_BYTES = 32 << 20


def _nbytes(batch: Any) -> int:
    return int(batch.nbytes)


class Fanout:
    """One iterator read by several sides, each getting every item (a bounded tee): a
    side that has not started is dropped once more than ``limit`` (or twice the largest
    item) is queued for it, measured by ``size`` (default: one per item)."""

    def __init__(self, items: Iterator[Any], n: int, *, limit: int,
                 size: Callable[[Any], int] = lambda item: 1) -> None:
        self.items = items
        self.limit = limit
        self.size = size
        self.queues: dict[int, deque[Any]] = {k: deque() for k in range(n)}
        self.held = dict.fromkeys(range(n), 0)
        self.largest = 0
        self.started: set[int] = set()
        self.error: BaseException | None = None
        self.done = False

    def holds(self, side: int) -> bool:
        return side in self.queues

    def branch(self, side: int) -> Iterator[Any]:
        queue = self.queues[side]
        self.started.add(side)
        try:
            while True:
                if queue:
                    item = queue.popleft()
                    self.held[side] -= self.size(item)
                    yield item
                    continue
                if self.done:
                    if self.error is not None:
                        raise self.error
                    return
                try:
                    item = next(self.items)
                except StopIteration:
                    self.done = True
                    continue
                except BaseException as exc:  # every side meets it where its data ends
                    self.done, self.error = True, exc
                    raise
                size = self.size(item)
                self.largest = max(self.largest, size)
                for k, q in list(self.queues.items()):
                    if k != side:
                        q.append(item)
                        self.held[k] += size
                        if self.held[k] > max(self.limit, 2 * self.largest) and \
                                k not in self.started:
                            del self.queues[k]  # it has not come: let it go
                yield item
        finally:
            self.queues.pop(side, None)

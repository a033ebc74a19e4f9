"""What the pyarrow-backed readers (Parquet, Arrow IPC) share: reading a file's first
bytes, the exceptions pyarrow raises on damaged input, and pandas' index columns.

pyarrow is imported inside the functions that use it.
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import InputFileError


def read_head(path: str, n: int) -> bytes:
    """The first ``n`` bytes of ``path`` (fewer if it is shorter), for its magic."""
    try:
        with open(path, "rb") as fh:
            return fh.read(n)
    except OSError as exc:
        raise InputFileError(path, f"cannot read the file ({exc.strerror or exc})") from None


def arrow_errors() -> tuple[type[BaseException], ...]:
    """What pyarrow raises on damaged input: its ArrowException family (ArrowInvalid is
    also a ValueError, ArrowIOError an OSError), and MemoryError or OverflowError when a
    damaged length asks for an impossible allocation."""
    import pyarrow as pa

    return (pa.ArrowException, OSError, ValueError, EOFError, MemoryError, OverflowError)


def pandas_index_columns(schema: Any) -> set[str]:
    """The index columns named in pandas' schema metadata (``df.to_parquet``)."""
    try:
        meta = (schema.metadata or {}).get(b"pandas")
        if not meta:
            return set()
        cols = json.loads(meta).get("index_columns", [])
        return {c for c in cols if isinstance(c, str)}
    except (ValueError, AttributeError, TypeError):
        return set()

"""Cross-entropy exactly as ``torch.nn.functional.cross_entropy`` computes it, in NumPy.

Pure NumPy: no I/O, no click, no rich. One kernel serves every caller:
:func:`cross_entropy` feeds a whole array through :class:`LossAccumulator` chunk by
chunk, and the command line feeds the same accumulator with the blocks it reads.
A block is 2-D with the class axis last, ``(m, C)``, in any memory layout: K-dim
inputs are read in place as class-first planes (or re-laid out one cache-sized block
at a time), never copied whole.

The kernel (issue 5) cuts blocks into cache-sized chunks (:data:`KERNEL_ELEMENTS`)
shared by a few threads (``CE_LOSS_THREADS``; NumPy releases the GIL) and merges their
totals in order, so the thread count never changes a bit of the result.

Semantics follow torch 2.13 (``aten/src/ATen/native/LossNLL.cpp``); the comments
say where a line copies one of its quirks.

The modules, each importing NumPy and ``ce_cli.errors``/``ce_cli.names`` only:

- :mod:`.spec`: the options and layout, checked in torch's order (:func:`make_spec`);
- :mod:`.threads`: thread count, pool and per-thread scratch buffers;
- :mod:`.blocks`: the one walker cutting arrays into blocks and kernel chunks;
- :mod:`.kinds`: logits, probabilities or log-probabilities (:func:`normalise`);
- :mod:`.sums`: row, plane and chunk sums; :mod:`.half`: torch's float16 roundings;
- :mod:`.kernel`: :class:`LossAccumulator` and its totals;
- :mod:`.api`: :func:`cross_entropy`, :func:`evaluate`, :func:`softmax`.

Constants the tests patch (:data:`~.blocks.KERNEL_ELEMENTS`,
:data:`~.blocks.BLOCK_ELEMENTS`) are read from :mod:`.blocks` when used: patch them
there, not here.
"""

from .api import cross_entropy, evaluate, loss_shape, softmax
from .blocks import BLOCK_ELEMENTS, KERNEL_ELEMENTS, iter_blocks, walk
from .half import round_bfloat16
from .kernel import LossAccumulator, LossResult, LossTotals
from .kinds import Normalised, normalise
from .spec import FLOAT_DTYPES, LossSpec, make_spec, validate_options
from .threads import MAX_DEFAULT_THREADS, default_threads

__all__ = [
    "BLOCK_ELEMENTS", "FLOAT_DTYPES", "KERNEL_ELEMENTS", "MAX_DEFAULT_THREADS",
    "LossAccumulator", "LossResult", "LossSpec", "LossTotals", "Normalised",
    "cross_entropy", "default_threads", "evaluate", "iter_blocks", "loss_shape",
    "make_spec", "normalise", "round_bfloat16", "softmax", "validate_options", "walk",
]

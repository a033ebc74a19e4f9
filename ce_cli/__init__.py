"""ce-loss: cross-entropy on saved model outputs, exact to PyTorch.

>>> import numpy as np
>>> from ce_cli import cross_entropy
>>> cross_entropy(np.array([[0.1, 0.2, 0.7], [0.8, 0.1, 0.1]]), np.array([2, 0]))
... # doctest: +ELLIPSIS
array(0.7288...)
"""

from typing import Any

from .errors import CeLossError

__version__ = "0.1.0"
__all__ = ["cross_entropy", "CeLossError", "__version__"]


def __getattr__(name: str) -> Any:
    # NumPy loads on first use, so the command line's --help starts fast
    if name == "cross_entropy":
        from .loss import cross_entropy

        return cross_entropy
    raise AttributeError(f"module 'ce_cli' has no attribute {name!r}")

"""``--explain``'s other conventions against their own tools: scikit-learn's ``log_loss``
(with the class weights as sample weights under ``--weight``) and Keras's two divisions."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import json_run

# imported at collection: scikit-learn sets a few environment variables when imported
sklearn_metrics = pytest.importorskip("sklearn.metrics")



@pytest.mark.parametrize("weighted", [False, True])
def test_explain_sklearn_line_is_sklearns_log_loss(tmp_path, weighted):
    """The sklearn line is sklearn.metrics.log_loss on the counted targets, with the class
    weights as sample weights under --weight (scikit-learn itself is the oracle)."""
    rng = np.random.default_rng(40)
    x = rng.normal(size=(300, 6)).astype(np.float32) * 2
    t = rng.integers(0, 6, 300)
    t[::11] = -100
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "t.npy", t)
    w = np.array([1.0, 2.0, 0.5, 1.5, 1.0, 3.0])
    opts = ["--weight", ",".join(map(str, w))] if weighted else []
    doc, _ = json_run("compute", tmp_path / "x.npy", tmp_path / "t.npy", "--explain", "-q",
                      *opts)
    keep = t != -100
    e = np.exp(x - x.max(axis=1, keepdims=True))
    p = (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
    want = sklearn_metrics.log_loss(t[keep], p[keep], labels=range(6),
                       sample_weight=w[t[keep]] if weighted else None)
    assert doc["explain"]["conventions"]["sklearn_log_loss"] == pytest.approx(want, rel=1e-5)
    # Keras's ignore_class divides by the valid entries; padding as weight 0 by all
    num, counted = doc["explain"]["numerator"], int(keep.sum())
    conv = doc["explain"]["conventions"]
    assert conv["mean_of_per_sample_losses"] == pytest.approx(num / counted)
    assert conv["keras_sum_over_batch_size"] == pytest.approx(num / len(t))

"""Which arrays of a file are the logits and which the targets, by the names people give
them, for files that hold both (``torch.save({"logits": x, "labels": y})``, an ``.npz``
of two arrays, a safetensors or HDF5 file, a table with a ``label`` column).
"""

from __future__ import annotations

#: names of the logits, most specific first (compared without case)
LOGITS_NAMES = ("logits", "logit", "scores", "score", "outputs", "output", "predictions",
                "prediction", "preds", "pred", "y_pred", "probs", "probabilities",
                "log_probs", "x", "input", "inputs")
#: names of the targets, most specific first
TARGET_NAMES = ("labels", "label", "targets", "target", "y_true", "y", "classes",
                "class", "gold", "truth")


def _leaf(name: str) -> str:
    """The last part of a nested name: ``outputs/logits`` -> ``logits``."""
    return name.replace(".", "/").rsplit("/", 1)[-1].lower()


def pick(names: list[str], wanted: tuple[str, ...]) -> str | None:
    """The one of ``names`` that ``wanted`` ranks first (by its last part, without case);
    None when none matches or two match equally well."""
    for want in wanted:
        found = [n for n in names if _leaf(n) == want]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            return None
    return None


def pick_pair(names: list[str]) -> tuple[str, str] | None:
    """``(logits name, targets name)`` among ``names`` by convention, or None when it
    cannot be told (then the caller lists the names and shows ``FILE:NAME``)."""
    targets = pick(names, TARGET_NAMES)
    rest = [n for n in names if n != targets]
    logits = pick(rest, LOGITS_NAMES)
    if logits is None and targets is not None and len(rest) == 1:
        logits = rest[0]  # two arrays, one of them the targets: the other is the logits
    if logits is None or targets is None:
        return None
    return logits, targets


def example_member(names: list[str], role: str) -> str:
    """The member most likely meant for ``role``, for the hint (else the first)."""
    words = ("label", "target") if role == "targets" else (role.rstrip("s"),)
    return next((n for n in names if any(w in n.lower() for w in words)), names[0])


def member_hint(path: str, role: str, name: str) -> str:
    """How to name one array of the archive ``path``: ``file.npz:name``; on stdin
    ``-:name``, after ``--`` so that Click does not take it for an option."""
    if path != "-":
        return f"name the one to read, e.g. {path}:{name}"
    if role == "targets":
        example = f"ce-loss compute [OPTIONS] LOGITS -- -:{name}"
    else:
        example = f"ce-loss compute [OPTIONS] -- -:{name} TARGETS"
    return f"name the one to read as -:NAME after '--', e.g. {example}"


def choose_pair(names: list[str], *, logits: str | None = None, targets: str | None = None
                ) -> tuple[str, str] | None:
    """``(logits name, targets name)`` among ``names``: those given (a member, or
    ``--logits-columns``/``--target-column``), the other one by convention (or the only
    other name); None when it cannot be told."""
    if logits is None and targets is None:
        return pick_pair(names)
    if targets is None:
        rest = [n for n in names if n != logits]
        targets = pick(rest, TARGET_NAMES) or (rest[0] if len(rest) == 1 else None)
    elif logits is None:
        rest = [n for n in names if n != targets]
        logits = pick(rest, LOGITS_NAMES) or (rest[0] if len(rest) == 1 else None)
    if logits is None or targets is None or logits == targets:
        return None
    return logits, targets


def taken_note(shown: str, pair: tuple[str, str], given: tuple[str | None, str | None]
               ) -> str | None:
    """The note saying which names were taken by convention (None: both were given)."""
    taken = [f"the logits from {pair[0]!r}"] if pair[0] != given[0] else []
    taken += [f"the targets from {pair[1]!r}"] if pair[1] != given[1] else []
    return f"{shown}: took {' and '.join(taken)}" if taken else None


def pair_hint(path: str, names: list[str]) -> str:
    """How to name both arrays of a file whose names do not tell them apart:
    ``name both as FILE:NAME, e.g. ce-loss compute f.npz:scores f.npz:y``."""
    x = example_member(sorted(names), "logits")
    t = example_member(sorted(n for n in names if n != x), "targets")
    if path == "-":
        example = f"ce-loss compute [OPTIONS] -- -:{x} TARGETS"
    else:
        example = f"ce-loss compute {path}:{x} {path}:{t}"
    return f"name both as FILE:NAME, e.g. {example}"

"""The package as pip builds it: every subpackage ships, the entry point resolves."""

from __future__ import annotations

import fnmatch
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

tomllib = pytest.importorskip("tomllib")  # Python 3.11+


def _config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_subpackage_is_in_the_wheel():
    """A subpackage missing from the package list installs fine in editable mode and
    is absent from a regular install (``ce_cli.readers`` once was)."""
    config = _config()["tool"]["setuptools"]["packages"]
    # a list names each package; find's include patterns match dotted names
    patterns = config if isinstance(config, list) else config["find"]["include"]

    def shipped(name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)
    packages = [".".join(p.parent.relative_to(ROOT).parts)
                for p in (ROOT / "ce_cli").rglob("__init__.py")]
    assert "ce_cli.readers" in packages
    missing = [p for p in packages if not shipped(p)]
    assert not missing, f"not in the wheel: {missing}"


def test_console_script_points_at_main():
    target = _config()["project"]["scripts"]["ce-loss"]
    module, func = target.split(":")
    import importlib

    assert callable(getattr(importlib.import_module(module), func))

"""The README's ``$ ce-loss ...`` transcripts: found, run, and (as a script) refreshed.

``python tests/readme_transcripts.py`` rewrites each transcript's output with what the
command prints now (stderr lines first, then stdout); ``test_docs`` checks they agree.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
BLOCK = re.compile(r"^([ \t]*)```console\n(.*?)^[ \t]*```", flags=re.S | re.M)


def ce_loss(args: list[str]) -> subprocess.CompletedProcess:
    """The installed ``ce-loss`` in a plain environment; PYTHONPATH is kept, so that it runs
    the ce_cli the tests import (a checkout that is not the installed one, say)."""
    exe = Path(sys.executable).with_name("ce-loss")
    env = {"PATH": "/usr/bin:/bin", "COLUMNS": "80", "NO_COLOR": "1"}
    if os.environ.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return subprocess.run([str(exe), *args], cwd=ROOT, capture_output=True, text=True,
                          env=env)


def transcripts(text: str) -> list[tuple[str, list[str]]]:
    """(command, shown output lines) for every ``$ ce-loss`` line of a console block."""
    found = []
    for indent, body in BLOCK.findall(text):
        lines = [line[len(indent):] for line in body.splitlines()]
        for i, line in enumerate(lines):
            if line.startswith("$ ce-loss "):
                shown = []
                for follow in lines[i + 1:]:
                    if follow.startswith("$ "):
                        break
                    shown.append(follow)
                found.append((line[2:], shown))
    return found


def real_output(command: str) -> tuple[int, list[str]]:
    proc = ce_loss(shlex.split(command)[1:])
    return proc.returncode, proc.stderr.splitlines() + proc.stdout.splitlines()


def refresh() -> None:
    text = README.read_text()

    def fill(match: re.Match) -> str:
        indent, body = match.group(1), match.group(2)
        out, lines, i = [], body.splitlines(), 0
        while i < len(lines):
            line = lines[i]
            out.append(line)
            i += 1
            if line[len(indent):].startswith("$ ce-loss "):
                while i < len(lines) and not lines[i][len(indent):].startswith("$ "):
                    i += 1
                _, real = real_output(line[len(indent) + 2:])
                out += [(indent + r).rstrip() for r in real]
        return f"{indent}```console\n" + "\n".join(out) + f"\n{indent}```"

    README.write_text(BLOCK.sub(fill, text))


if __name__ == "__main__":
    refresh()

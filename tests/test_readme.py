"""The README's library example runs and prints what its comment says."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_library_example_runs() -> None:
    text = README.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "the README has a Python example"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(blocks[0], "README.md", "exec"), {})
    assert out.getvalue().split() == ["3", "[4]", "[5]"]


def test_readme_starts_with_the_two_setup_commands() -> None:
    lines = README.read_text().splitlines()
    commands = [line for line in lines[:8] if line.startswith(("pip install", "scripts/"))]
    assert [c.split("#")[0].strip() for c in commands] == [
        "pip install . && fraudstream demo",
        "scripts/test",
    ]

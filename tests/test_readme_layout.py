"""README's layout section names every module and package of syncd/, and nothing that is gone."""

from __future__ import annotations

import re
from pathlib import Path

import syncd

PACKAGE = Path(syncd.__file__).parent
README = PACKAGE.parent / "README.md"


def layout_names(readme: str) -> set[str]:
    """The `syncd/` entries the README's layout block lists: on an entry line, `name.py` or `name/`
    first, or set off by two spaces on both sides (continuation lines, indented further, and
    descriptions name the files inside a package)."""
    block = readme.split("## Layout", 1)[1].split("```")[1]
    entries = [line for line in block.splitlines() if re.match(r"^  \S", line)]
    return {
        first or later
        for line in entries
        for first, later in re.findall(
            r"^  ([a-z_0-9]+(?:\.py|/)) |  ([a-z_0-9]+(?:\.py|/))  ", line
        )
    }


def test_the_layout_lists_the_tree() -> None:
    """A module added, moved or renamed shows in the README's layout (the front door's map)."""
    tree = {
        p.name + ("/" if p.is_dir() else "")
        for p in PACKAGE.iterdir()
        if (p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists()))
        and p.name not in {"__init__.py", "__main__.py"}
    }
    assert layout_names(README.read_text(encoding="utf-8")) == tree

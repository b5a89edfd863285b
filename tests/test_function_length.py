"""No function of the daemon runs over 70 lines: a longer one hides decisions in control flow.

The emulator is test equipment (long request handlers mirror the platforms' own), so it is left out.
"""

from __future__ import annotations

import ast
from pathlib import Path

import syncd

LIMIT = 70
PACKAGE = Path(syncd.__file__).parent


def long_functions(root: Path, limit: int = LIMIT) -> list[str]:
    """`path:line name (n lines)` for every function under `root` (emulator excluded) longer
    than `limit` lines, from its `def` line to its last line."""
    found = []
    for path in sorted(root.rglob("*.py")):
        if "emulator" in path.relative_to(root).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > limit:
                    found.append(f"{path.relative_to(root)}:{node.lineno} {node.name} ({length})")
    return found


def test_no_function_runs_over_the_limit() -> None:
    """Every function of syncd/ outside the emulator fits in LIMIT lines."""
    assert long_functions(PACKAGE) == []


def test_the_check_sees_a_long_function(tmp_path: Path) -> None:
    """The check itself can fail: a 71-line function is reported, the emulator's is not."""
    body = "def long() -> None:\n" + "    pass\n" * LIMIT
    (tmp_path / "mod.py").write_text(body)
    (tmp_path / "emulator").mkdir()
    (tmp_path / "emulator" / "handler.py").write_text(body)
    assert long_functions(tmp_path) == [f"mod.py:1 long ({LIMIT + 1})"]

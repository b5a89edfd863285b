"""The layering the README draws: a module imports only from its own layer or the ones before it."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import syncd

# config → store → auth → http → sources → sync → scheduler/daemon (+ ops) → cli/commands.
LAYER: dict[str, float] = {
    **dict.fromkeys(
        (
            "errors",
            "clock",
            "logging",
            "codec",
            "apscheduler3",
            "schedule",
            "gcpolicy",
            "redaction",
        ),
        0,
    ),
    "emulator": 0.5,  # a stand-in for the platforms: it may use only the foundation
    "config": 1,
    "store": 2,
    "auth": 3,
    "http": 4,
    "sources": 5,
    **dict.fromkeys(("checkpoint", "sync", "completeness", "commit_window"), 6),
    **dict.fromkeys(
        ("scheduler", "breaker", "daemon", "runtime", "wiring", "ops", "feed", "fleet"), 7
    ),
    **dict.fromkeys(("commands", "cli", "log_events"), 8),
}


def imported(path: Path, root: Path, package: str = "syncd") -> Iterator[tuple[int, str]]:
    """(line, absolute dotted name) of every module or name `path` imports, in every form:
    `import syncd.x`, `from syncd import x`, `from syncd.x import y` and relative imports."""
    relative = path.relative_to(root).with_suffix("")
    parts = [package, *relative.parts]
    if parts[-1] == "__init__":
        parts.pop()
    else:
        parts.pop()  # a module's relative imports start from its package
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = parts[: len(parts) - (node.level - 1)]
                module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            else:
                module = node.module or ""
            for alias in node.names:
                # `from syncd import http` imports the module syncd.http, not a name of syncd.
                yield node.lineno, f"{module}.{alias.name}" if module == package else module


def imports_upwards(root: Path | None = None, package: str = "syncd") -> list[str]:
    """Every import of a later layer, as `file:line imports module`."""
    root = root or Path(syncd.__file__).parent
    found: list[str] = []
    for path in sorted(root.rglob("*.py")):
        name = path.relative_to(root).parts[0].removesuffix(".py")
        if name not in LAYER:
            continue
        for lineno, module in imported(path, root, package):
            parts = module.split(".")
            if parts[0] != package or len(parts) < 2 or parts[1] == name:
                continue
            if LAYER.get(parts[1], -1) > LAYER[name]:
                found.append(f"{path.relative_to(root)}:{lineno} imports {module}")
    return found


def test_every_syncd_module_has_a_layer() -> None:
    """A new top-level module must be placed in the layering before it can be used."""
    root = Path(syncd.__file__).parent
    names = {p.name.removesuffix(".py") for p in root.iterdir() if p.suffix == ".py" or p.is_dir()}
    assert names - {"__init__", "__main__", "__pycache__"} <= set(LAYER)


def test_no_module_imports_from_a_later_layer() -> None:
    """E.g. the store never imports the engine, sources never import the daemon."""
    assert imports_upwards() == []


def test_every_import_form_is_seen(tmp_path: Path) -> None:
    """A store module reaching the engine is caught however it spells the import."""
    store = tmp_path / "store"
    store.mkdir()
    (store / "__init__.py").write_text("from .. import sync\n", encoding="utf-8")
    forms = {
        "a.py": "from syncd.sync import SyncEngine\n",
        "b.py": "import syncd.daemon\n",
        "c.py": "from syncd import cli\n",
        "d.py": "from ..http import client\n",
        "e.py": "def f() -> None:\n    import syncd.sources.base as b\n",
        "ok.py": "from syncd import errors\nfrom . import sqlite\nfrom ..config import x\n",
    }
    for name, text in forms.items():
        (store / name).write_text(text, encoding="utf-8")
    found = imports_upwards(tmp_path)
    assert sorted(line.split(":")[0] for line in found) == [
        "store/__init__.py",
        "store/a.py",
        "store/b.py",
        "store/c.py",
        "store/d.py",
        "store/e.py",
    ]

"""The layering the README draws: a module imports only from its own layer or the ones before it."""

from __future__ import annotations

import ast
from pathlib import Path

import syncd

# config → store → auth → http → sources → sync → scheduler/daemon (+ ops) → cli/commands.
LAYER: dict[str, float] = {
    **dict.fromkeys(("errors", "clock", "logging", "codec", "schedule", "gcpolicy"), 0),
    "emulator": 0.5,  # a stand-in for the platforms: it may use only the foundation
    "config": 1,
    "store": 2,
    "auth": 3,
    "http": 4,
    "sources": 5,
    **dict.fromkeys(("progress", "sync"), 6),
    **dict.fromkeys(("scheduler", "breaker", "daemon", "ops", "feed"), 7),
    **dict.fromkeys(("commands", "cli", "catalogue"), 8),
}


def imports_upwards() -> list[str]:
    root = Path(syncd.__file__).parent
    found: list[str] = []
    for path in sorted(root.rglob("*.py")):
        name = path.relative_to(root).parts[0].removesuffix(".py")
        if name not in LAYER:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.ImportFrom) and node.module):
                continue
            parts = node.module.split(".")
            if parts[0] != "syncd" or len(parts) < 2 or parts[1] == name:
                continue
            if LAYER.get(parts[1], -1) > LAYER[name]:
                found.append(f"{path.relative_to(root)}:{node.lineno} imports {node.module}")
    return found


def test_every_syncd_module_has_a_layer() -> None:
    """A new top-level module must be placed in the layering before it can be used."""
    root = Path(syncd.__file__).parent
    names = {p.name.removesuffix(".py") for p in root.iterdir() if p.suffix == ".py" or p.is_dir()}
    assert names - {"__init__", "__main__", "__pycache__"} <= set(LAYER)


def test_no_module_imports_from_a_later_layer() -> None:
    """E.g. the store never imports the engine, sources never import the daemon."""
    assert imports_upwards() == []

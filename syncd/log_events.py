"""The catalogue of log events, read from syncd's own source with `ast` so docs cannot drift.

An event is a logger call whose first argument is a dotted literal (`log.info("sync.finished",
items_seen=...)`). A helper that logs `f"token.{event}"` at `getattr(log, level)` is followed to its
call sites in the same module, so each literal it is called with is an event too.

    python -m syncd.log_events --write   # regenerate the table in docs/MONITORING.md
    python -m syncd.log_events --check   # exit 1 if the table is out of date (what the test does)
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

LEVELS = ("debug", "info", "warning", "error", "exception", "critical")
_EVENT = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$")
PACKAGE = Path(__file__).resolve().parent
DOC = PACKAGE.parent / "docs" / "MONITORING.md"
START, END = "<!-- catalogue:start -->", "<!-- catalogue:end -->"
UNDESCRIBED = "(undescribed: say what it means and what to do)"


@dataclass(frozen=True, slots=True)
class Emission:
    """One logger call (or one resolved call of a logging helper)."""

    name: str
    level: str
    fields: frozenset[str]
    module: str


@dataclass(frozen=True, slots=True)
class LogEvent:
    """Every emission of one event name, merged."""

    name: str
    levels: tuple[str, ...]
    fields: tuple[str, ...]
    modules: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Helper:
    """A function that logs `prefix{param}suffix` at a literal or parameter-given level."""

    function: ast.FunctionDef | ast.AsyncFunctionDef
    param: str
    prefix: str
    suffix: str
    level: str | None
    level_param: str | None
    fields: frozenset[str]


def _local_dicts(scope: ast.AST) -> dict[str, ast.Dict]:
    """`name = {...}` literals assigned in `scope`, to expand `**name` in a logger call."""
    return {
        target.id: node.value
        for node in ast.walk(scope)
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict)
        for target in node.targets
        if isinstance(target, ast.Name)
    }


def _fields(call: ast.Call, scope: ast.AST) -> frozenset[str]:
    names: set[str] = set()
    for keyword in call.keywords:
        if keyword.arg is not None:
            names.add(keyword.arg)
            continue
        value = keyword.value
        local = _local_dicts(scope).get(value.id) if isinstance(value, ast.Name) else None
        names.update(_dict_keys(local) if local else {f"**{ast.unparse(value)}"})
    return frozenset(names)


def _dict_keys(node: ast.Dict) -> set[str]:
    keys: set[str] = set()
    for key, value in zip(node.keys, node.values, strict=True):
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            keys.add(key.value)
        elif key is None:  # a `**splat` inside the literal
            keys.add(f"**{ast.unparse(value)}")
    return keys


def _level(call: ast.Call) -> tuple[str | None, str | None]:
    """(literal level, level parameter name) of a logger call, or (None, None) if it is none."""
    func = call.func
    if isinstance(func, ast.Attribute) and func.attr in LEVELS:
        return func.attr, None
    is_getattr = isinstance(func, ast.Call) and ast.unparse(func.func) == "getattr"
    if is_getattr and isinstance(func, ast.Call) and len(func.args) == 2:
        level = func.args[1]
        if isinstance(level, ast.Constant) and level.value in LEVELS:
            return str(level.value), None
        if isinstance(level, ast.Name):
            return None, level.id
    return None, None


def _template(node: ast.expr) -> tuple[str, str, str] | None:
    """(prefix, parameter, suffix) of an f-string like f"token.{event}"."""
    if not isinstance(node, ast.JoinedStr):
        return None
    parts = node.values
    holes = [i for i, p in enumerate(parts) if isinstance(p, ast.FormattedValue)]
    if len(holes) != 1:
        return None
    hole = parts[holes[0]]
    assert isinstance(hole, ast.FormattedValue)
    if not isinstance(hole.value, ast.Name):
        return None
    text = [str(p.value) if isinstance(p, ast.Constant) else "" for p in parts]
    return "".join(text[: holes[0]]), hole.value.id, "".join(text[holes[0] + 1 :])


def _functions(tree: ast.Module) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef | ast.Module]:
    yield tree
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def _own_calls(scope: ast.AST) -> Iterator[ast.Call]:
    """Calls in `scope` that are not inside a nested function (those are scanned on their own)."""
    for child in ast.iter_child_nodes(scope):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            continue
        if isinstance(child, ast.Call):
            yield child
        yield from _own_calls(child)


def scan_source(text: str, module: str) -> list[Emission]:
    """Every log event emitted by the module whose source is `text`."""
    if not any(f".{level}(" in text for level in LEVELS) and "getattr(" not in text:
        return []  # most modules (the emulator) never log: skip parsing them
    tree = ast.parse(text)
    found: list[Emission] = []
    helpers: dict[str, _Helper] = {}
    for scope in _functions(tree):
        for call in _own_calls(scope):
            level, level_param = _level(call)
            if (level is None and level_param is None) or not call.args:
                continue
            first = call.args[0]
            fields = _fields(call, scope)
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                if _EVENT.match(first.value) and level is not None:
                    found.append(Emission(first.value, level, fields, module))
                continue
            template = _template(first)
            if template and not isinstance(scope, ast.Module):
                prefix, param, suffix = template
                helper = _Helper(scope, param, prefix, suffix, level, level_param, fields)
                helpers[scope.name] = helper
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        call, func = node, node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if name in helpers:
            found.extend(_resolve(helpers[name], call, module))
    return found


def _resolve(helper: _Helper, call: ast.Call, module: str) -> Iterator[Emission]:
    args = helper.function.args
    params = [a.arg for a in [*args.posonlyargs, *args.args]]
    if params[:1] in (["self"], ["cls"]) and isinstance(call.func, ast.Attribute):
        params = params[1:]
    bound: dict[str, ast.expr] = dict(zip(params, call.args, strict=False))
    bound.update({k.arg: k.value for k in call.keywords if k.arg is not None})
    defaults = dict(
        zip([a.arg for a in args.kwonlyargs], args.kw_defaults, strict=True),
        **dict(zip(params[len(params) - len(args.defaults) :], args.defaults, strict=False)),
    )
    level = helper.level
    if helper.level_param is not None:
        given = bound.get(helper.level_param) or defaults.get(helper.level_param)
        levels = _literals(given)
        level = levels[0] if len(levels) == 1 else None
    for value in _literals(bound.get(helper.param)):
        name = f"{helper.prefix}{value}{helper.suffix}"
        if level in LEVELS and _EVENT.match(name):
            yield Emission(name, str(level), helper.fields, module)


def _literals(node: ast.expr | None) -> list[str]:
    """The strings an argument can be: a literal, or either branch of `a if cond else b`."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.IfExp):
        return _literals(node.body) + _literals(node.orelse)
    return []


def scan(root: Path = PACKAGE) -> list[LogEvent]:
    """The catalogue of `root` (syncd by default): one entry per event name, sorted."""
    emissions: list[Emission] = []
    for path in sorted(root.rglob("*.py")):
        module = ".".join(path.relative_to(root.parent).with_suffix("").parts)
        emissions.extend(scan_source(path.read_text(encoding="utf-8"), module))
    return merge(emissions)


def merge(emissions: Iterable[Emission]) -> list[LogEvent]:
    """Group emissions by name: levels in severity order, fields and modules sorted."""
    grouped: dict[str, list[Emission]] = {}
    for emission in emissions:
        grouped.setdefault(emission.name, []).append(emission)
    return [
        LogEvent(
            name,
            tuple(sorted({e.level for e in group}, key=LEVELS.index)),
            tuple(sorted(set().union(*(e.fields for e in group)))),
            tuple(sorted({e.module for e in group})),
        )
        for name, group in sorted(grouped.items())
    ]


def descriptions(doc: str) -> dict[str, str]:
    """event name -> the meaning written in the doc's current table."""
    found: dict[str, str] = {}
    for line in _table(doc).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0].startswith("`"):
            found[cells[0].strip("`")] = cells[4]
    return found


def _table(doc: str) -> str:
    if START not in doc or END not in doc:
        raise ValueError(f"the document has no {START} ... {END} section")
    return doc.split(START, 1)[1].split(END, 1)[0]


def render(events: Sequence[LogEvent], meanings: dict[str, str]) -> str:
    """The Markdown table, keeping each event's meaning from `meanings`."""
    lines = [
        "| event | level | fields | emitted by | meaning |",
        "|---|---|---|---|---|",
    ]
    for e in events:
        fields = ", ".join(f"`{f}`" for f in e.fields) or "-"
        modules = ", ".join(m.removeprefix("syncd.") for m in e.modules)
        meaning = meanings.get(e.name) or UNDESCRIBED
        lines.append(f"| `{e.name}` | {', '.join(e.levels)} | {fields} | {modules} | {meaning} |")
    return "\n".join(lines)


def regenerate(doc: str, events: Sequence[LogEvent]) -> str:
    """`doc` with its catalogue table replaced by one generated from `events`."""
    table = render(events, descriptions(doc))
    head, rest = doc.split(START, 1)
    return f"{head}{START}\n{table}\n{END}{rest.split(END, 1)[1]}"


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m syncd.log_events --check | --write [--doc PATH]`."""
    parser = argparse.ArgumentParser(prog="python -m syncd.log_events", description=__doc__)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help="exit 1 if the table is out of date")
    mode.add_argument("--write", action="store_true", help="rewrite the table in place")
    parser.add_argument("--doc", type=Path, default=DOC, help=f"default: {DOC}")
    args = parser.parse_args(argv)
    doc = args.doc.read_text(encoding="utf-8")
    try:
        fresh = regenerate(doc, scan())
    except ValueError as exc:
        print(f"syncd.log_events: {args.doc}: {exc}", file=sys.stderr)
        return 2
    if args.write:
        args.doc.write_text(fresh, encoding="utf-8")
        return 0
    if fresh != doc:
        print(
            f"{args.doc}: the log event table is out of date; run: python -m syncd.log_events --write",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

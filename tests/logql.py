"""Just enough LogQL to run docs/MONITORING.md's log queries over sample log records.

Supported: one stream selector per range aggregation, `| json` (bare or with field names),
label filters (`=`, `!=`, `=~`, `!~` on strings, combined with `and`, `or`, `,`, parentheses)
and `| unwrap FIELD`. As in Loki, a field a line lacks reads as "", regexes match whole values,
and a sample that `unwrap` cannot convert fails the whole query unless a later stage drops
`__error__` lines. Anything else is a ValueError: this is a test's model, not Loki.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

Labels = dict[str, str]
Predicate = Callable[[Labels], bool]

_RANGE = re.compile(r"\{[^{}]*\}((?:[^\[\]\"`]|\"(?:[^\"\\]|\\.)*\"|`[^`]*`)*)\[\d+[smhdw]\]")
_TOKEN = re.compile(
    r"""\s*(?:(?P<str>"(?:[^"\\]|\\.)*"|`[^`]*`)|(?P<op>=~|!~|!=|=)|(?P<open>\()|(?P<close>\))"""
    r"""|(?P<comma>,)|(?P<ident>[A-Za-z_][A-Za-z0-9_]*))"""
)


class QueryError(Exception):
    """What Loki would answer instead of a result (e.g. SampleExtractionErr)."""


@dataclass
class Filter:
    """A label filter expression, with what it compares (for checks on field names)."""

    test: Predicate
    comparisons: list[tuple[str, str, str]] = field(default_factory=list)


@dataclass
class Pipeline:
    """The log pipeline of one range aggregation."""

    text: str
    extracted: tuple[str, ...] | None = None
    """The fields `| json` extracts; None for a bare `| json` (every field)."""
    has_json: bool = False
    filters: list[Filter] = field(default_factory=list)
    unwrap: str | None = None
    stages: list[tuple[str, Any]] = field(default_factory=list)

    @property
    def fields(self) -> set[str]:
        """Every field the pipeline reads: extracted, filtered on, unwrapped."""
        used = set(self.extracted or ())
        used.update(name for f in self.filters for name, _, _ in f.comparisons)
        if self.unwrap:
            used.add(self.unwrap)
        return used

    @property
    def events(self) -> set[str]:
        """The event names the filters compare `event` with (alternatives of a regex included)."""
        names: set[str] = set()
        for f in self.filters:
            for name, op, value in f.comparisons:
                if name == "event" and op == "=":
                    names.add(value)
                elif name == "event" and op == "=~":
                    names.update(v.replace("\\.", ".") for v in value.split("|"))
        return names

    def run(self, record: dict[str, Any]) -> tuple[bool, float | None]:
        """(selected, unwrapped sample) for one log line given as its JSON object."""
        labels: Labels = {}
        for kind, stage in self.stages:
            if kind == "json":
                names = record.keys() if stage is None else stage
                labels.update({n: _label(record[n]) for n in names if n in record})
            elif kind == "filter":
                if not stage.test(labels):
                    return False, None
            else:  # unwrap
                try:
                    labels["__value__"] = str(float(labels.get(stage, "")))
                except ValueError:
                    labels["__error__"] = "SampleExtractionErr"
        if labels.get("__error__"):
            raise QueryError(f"{labels['__error__']} on {record}")
        value = labels.get("__value__")
        return True, None if value is None else float(value)


def pipelines(expr: str) -> list[Pipeline]:
    """Every log pipeline (`{selector} | ... [range]`) in a LogQL metric expression."""
    found = [_pipeline(m.group(1)) for m in _RANGE.finditer(expr)]
    if not found:
        raise ValueError(f"no range aggregation over a log pipeline in {expr!r}")
    return found


def grouping(expr: str) -> set[str]:
    """The labels of every `by (...)` clause."""
    return {
        name.strip()
        for group in re.findall(r"\bby\s*\(([^)]*)\)", expr)
        for name in group.split(",")
    }


def _label(value: Any) -> str:
    """A JSON value as Loki's json parser stores it in a label."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


def _split(text: str) -> Iterator[str]:
    """The stages of a pipeline: split on `|` outside strings and parentheses."""
    depth, quote, start = 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            if ch == quote and text[i - 1] != "\\":
                quote = ""
        elif ch in '"`':
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|" and depth == 0:
            yield text[start:i]
            start = i + 1
    yield text[start:]


def _pipeline(text: str) -> Pipeline:
    pipeline = Pipeline(text.strip())
    stages = list(_split(text))
    if stages[0].strip():
        raise ValueError(f"a line filter or text before the first stage: {stages[0]!r}")
    for raw in stages[1:]:
        stage = raw.strip()
        word, _, rest = stage.partition(" ")
        if word == "json":
            names = tuple(n.strip() for n in rest.split(",")) if rest.strip() else None
            if names and not all(re.fullmatch(r"[A-Za-z_]\w*", n) for n in names):
                raise ValueError(f"only bare field names after json: {stage!r}")
            pipeline.has_json, pipeline.extracted = True, names
            pipeline.stages.append(("json", names))
        elif word == "unwrap":
            pipeline.unwrap = rest.strip()
            pipeline.stages.append(("unwrap", pipeline.unwrap))
        else:
            parsed = _FilterParser(stage).parse()
            pipeline.filters.append(parsed)
            pipeline.stages.append(("filter", parsed))
    return pipeline


class _FilterParser:
    """Recursive descent: or-expression of and-expressions (`and`, `,` or a space) of matchers."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        while pos < len(text.rstrip()):
            match = _TOKEN.match(text, pos)
            if match is None or match.end() == pos:
                raise ValueError(f"cannot read label filter {text!r} at {text[pos:]!r}")
            kind = match.lastgroup
            assert kind is not None
            self.tokens.append((kind, match.group(kind)))
            pos = match.end()
        self.comparisons: list[tuple[str, str, str]] = []

    def parse(self) -> Filter:
        test = self._or()
        if self.tokens:
            raise ValueError(f"unexpected {self.tokens[0][1]!r} in label filter {self.text!r}")
        return Filter(test, self.comparisons)

    def _peek(self) -> tuple[str, str] | None:
        return self.tokens[0] if self.tokens else None

    def _or(self) -> Predicate:
        terms = [self._and()]
        while self._peek() == ("ident", "or"):
            self.tokens.pop(0)
            terms.append(self._and())
        return lambda labels: any(t(labels) for t in terms)

    def _and(self) -> Predicate:
        terms = [self._primary()]
        while (token := self._peek()) is not None and (
            token in (("ident", "and"), ("comma", ","))
            or token[0] == "open"
            or (token[0] == "ident" and token[1] != "or")
        ):
            if token[1] in ("and", ","):
                self.tokens.pop(0)
            terms.append(self._primary())
        return lambda labels: all(t(labels) for t in terms)

    def _primary(self) -> Predicate:
        kind, value = self.tokens.pop(0)
        if kind == "open":
            inner = self._or()
            if not self.tokens or self.tokens.pop(0)[0] != "close":
                raise ValueError(f"unbalanced parentheses in {self.text!r}")
            return inner
        if kind != "ident" or len(self.tokens) < 2:
            raise ValueError(f"expected a label matcher in {self.text!r}")
        (op_kind, op), (str_kind, quoted) = self.tokens.pop(0), self.tokens.pop(0)
        if op_kind != "op" or str_kind != "str":
            raise ValueError(f'expected NAME OP "VALUE" in {self.text!r}')
        want = quoted[1:-1] if quoted.startswith("`") else json.loads(quoted)
        self.comparisons.append((value, op, want))
        name = value
        if op == "=":
            return lambda labels: labels.get(name, "") == want
        if op == "!=":
            return lambda labels: labels.get(name, "") != want
        pattern = re.compile(want)
        if op == "=~":
            return lambda labels: pattern.fullmatch(labels.get(name, "")) is not None
        return lambda labels: pattern.fullmatch(labels.get(name, "")) is None

"""What a client process reports about its one run, as the last line of its stdout."""

from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, fields
from typing import Any, Literal

Tool = Literal["syncd", "baseline"]
RunKind = Literal["full", "incremental"]


@dataclass(frozen=True, slots=True)
class ClientOutcome:
    """One client run as the client saw it; the harness adds what the emulator saw."""

    tool: Tool
    kind: RunKind
    status: str
    concurrency: int
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    products: int
    pages: int
    requests: int
    rate_limited: int
    stored: int
    main_thread_cpu_s: float = 0.0
    other_threads_cpu_s: float = 0.0
    time_boxed: bool = False
    error: str | None = None
    stages: dict[str, float] | None = None
    server_cpu_s: float | None = None

    def to_json(self) -> str:
        """One line of JSON."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, line: str) -> ClientOutcome:
        """Inverse of `to_json`; ValueError if a field is missing."""
        data: dict[str, Any] = json.loads(line)
        names = {f.name for f in fields(cls)}
        optional = {f.name for f in fields(cls) if f.default is not MISSING}
        missing = names - set(data) - optional
        if missing:
            raise ValueError(f"client outcome lacks {sorted(missing)}")
        return cls(**{k: v for k, v in data.items() if k in names})

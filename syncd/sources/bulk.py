"""The garbage collector's policy while a full scan streams a catalog through the process.

A full scan allocates millions of short-lived dicts and lists (parsed JSON) and frees them a page
later. CPython's collector would meanwhile re-traverse every long-lived object the process holds
(imported modules, settings, the HTTP stack) each time its oldest generation fills: about a tenth
of a scan's CPU at 100k products. While any scan runs, the objects that existed before it are
frozen (excluded from collections) and young collections run less often; the last scan to finish
puts both back, so objects that became cyclic garbage meanwhile are collected then.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

# Young-generation threshold during a scan: a page in flight is ~6,000 container objects, so the
# default 700 would collect several times per page, for objects that die a page later anyway.
SCAN_THRESHOLD0 = 50_000

_active = 0
_saved: tuple[int, int, int] | None = None


@contextmanager
def bulk_read() -> Iterator[None]:
    """Tune the collector for a streaming read; nested and concurrent reads share one policy."""
    global _active, _saved
    if _active == 0:
        _saved = gc.get_threshold()
        gc.freeze()
        gc.set_threshold(SCAN_THRESHOLD0, _saved[1], _saved[2])
    _active += 1
    try:
        yield
    finally:
        _active -= 1
        if _active == 0 and _saved is not None:
            gc.set_threshold(*_saved)
            gc.unfreeze()
            _saved = None

"""The garbage collector's policy for a syncd process, set once at start-up by the console script.

A sync streams millions of short-lived dicts and lists (parsed JSON) through the process and frees
each page's a moment later. With CPython's defaults the collector runs several times per page and,
each time its oldest generation fills, re-traverses every long-lived object (modules, classes,
the HTTP stack): about a tenth of a full scan's CPU at 100k products. So the objects that exist at
start-up are frozen (they live as long as the process anyway) and young collections run less often.
A library user (tests, an embedding program) keeps its own collector policy: only `syncd`'s own
process entry points call this.
"""

from __future__ import annotations

import gc

STREAMING_THRESHOLD0 = 50_000
"""Young-generation threshold: a page in flight is ~6,000 container objects, and the default 700
would collect several times per page, for objects that die a page later anyway."""


def tune_for_streaming() -> None:
    """Freeze the objects that exist now and collect the young generation less often."""
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(STREAMING_THRESHOLD0, middle, oldest)

"""The collector policy of a full scan: applied while any scan runs, restored after the last."""

from __future__ import annotations

import gc

import pytest

from syncd.sources.bulk import SCAN_THRESHOLD0, bulk_read


def test_a_scan_freezes_old_objects_and_restores_everything_after() -> None:
    """Inside: pre-existing objects frozen, young threshold raised; after: as before."""
    before = gc.get_threshold()
    with bulk_read():
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold()[0] == SCAN_THRESHOLD0
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_overlapping_scans_restore_only_when_the_last_one_ends() -> None:
    """Two sources scanning at once: the first to finish leaves the policy to the other."""
    before = gc.get_threshold()
    outer = bulk_read()
    outer.__enter__()
    with bulk_read():
        pass
    assert gc.get_threshold()[0] == SCAN_THRESHOLD0
    outer.__exit__(None, None, None)
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


def test_a_failing_scan_restores_the_policy() -> None:
    """An exception inside the scan still puts the collector back."""
    before = gc.get_threshold()
    with pytest.raises(RuntimeError), bulk_read():
        raise RuntimeError("the store went away")
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0

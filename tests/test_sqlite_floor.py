"""benchmarks.sqlite_floor at a tiny size: the store's write path runs on plain sqlite3 and the
report names the statements it timed. No timings are asserted."""

from __future__ import annotations

from benchmarks.sqlite_floor import run


def test_the_floor_runs_the_store_write_path_and_names_its_statements() -> None:
    """300 products in pages of 100: three transactions, each statement kind in the report."""
    report = run(300, 100)
    first, *rest = report.splitlines()
    assert first.startswith("300 products in pages of 100: ")
    timed = {line.split("s  ", 1)[1] for line in rest}
    assert {
        "COMMIT",
        "INSERT OR ROLLBACK INTO products",
        "INSERT INTO product_changes",
        "INSERT OR IGNORE INTO full_scan_seen",  # the scan marks
    } <= timed

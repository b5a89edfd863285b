"""`syncd demo`, the README's first command: a full sync, then incremental runs that read only what changed."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncd.cli import main
from tests.support import query


def test_demo_syncs_in_full_then_reads_only_the_changed_products(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Run twice: 500 products in 5 pages, then 1% of them changed, read in one request."""
    db = tmp_path / "demo.db"
    assert main(["--log-level", "warning", "demo", "--products", "500", "--db", str(db)]) == 0
    first = capsys.readouterr().out
    assert "succeeded" in first and "(full run #1)" in first
    assert "500 seen: 500 new" in first and "requests   6 (0 retries" in first  # 5 pages, probe

    assert main(["--log-level", "warning", "demo", "--products", "500", "--db", str(db)]) == 0
    captured = capsys.readouterr()
    assert "changed 5 products since the last demo run" in captured.err
    assert "(incremental run #2)" in captured.out
    assert "5 seen: 0 new, 5 changed, 0 unchanged" in captured.out
    assert "requests   1 (0 retries" in captured.out
    assert query(db, "SELECT count(*) FROM products WHERE deleted_at IS NULL") == [(500,)]
    assert query(db, "SELECT kind, status FROM sync_runs ORDER BY id") == [
        ("full", "succeeded"),
        ("incremental", "succeeded"),
    ]


def test_demo_ignores_the_shells_syncd_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A production SYNCD_STORE__PATH in the shell must not send demo rows into that database."""
    production = tmp_path / "production.db"
    monkeypatch.setenv("SYNCD_STORE__PATH", str(production))
    monkeypatch.setenv("SYNCD_HTTP__MAX_ATTEMPTS", "not a number")
    db = tmp_path / "demo.db"
    assert main(["--log-level", "warning", "demo", "--products", "30", "--db", str(db)]) == 0
    assert f"30 products in {db}" in capsys.readouterr().out
    assert not production.exists()
    assert query(db, "SELECT count(*) FROM products") == [(30,)]

"""`[store] url` and the PostgreSQL password: selection, secret lookup, one-line refusals."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from syncd.cli import main
from syncd.config import load_settings
from syncd.errors import ConfigError
from syncd.store.factory import open_store, run_locks, store_name
from syncd.store.locks import SourceLocks
from syncd.store.postgres import PostgresStore, conninfo, describe
from syncd.store.postgres_locks import PostgresRunLocks, lock_key
from syncd.store.sqlite import SqliteStore

URL = "postgresql://syncd@db.internal:5432/catalog"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own SYNCD_* variables must not leak into these tests."""
    for name in list(os.environ):
        if name.upper().startswith("SYNCD_") or name == "CREDENTIALS_DIRECTORY":
            monkeypatch.delenv(name)


def config(tmp_path: Path, store: str, extra: str = "") -> Path:
    path = tmp_path / "syncd.toml"
    path.write_text(f"{extra}\n[store]\n{store}\n", encoding="utf-8")
    return path


def test_url_selects_postgres_and_path_sqlite(tmp_path: Path) -> None:
    """The factory follows the settings: a URL means PostgreSQL, else the SQLite path."""
    pg = load_settings(config(tmp_path, f'url = "{URL}"\npath = "ignored.db"')).store
    assert isinstance(open_store(pg), PostgresStore)
    assert isinstance(run_locks(pg), PostgresRunLocks)
    assert store_name(pg) == URL
    lite = load_settings(config(tmp_path, f'path = "{tmp_path / "s.db"}"')).store
    assert isinstance(open_store(lite), SqliteStore)
    assert isinstance(run_locks(lite), SourceLocks)
    assert store_name(lite) == str(tmp_path / "s.db")


def test_url_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SYNCD_STORE__URL overrides the file like every other key."""
    monkeypatch.setenv("SYNCD_STORE__URL", URL)
    assert load_settings(config(tmp_path, 'path = "x.db"')).store.url == URL
    socket = "postgresql:///catalog?host=/run/postgresql"
    monkeypatch.setenv("SYNCD_STORE__URL", socket)
    assert load_settings(config(tmp_path, 'path = "x.db"')).store.url == socket


def test_password_from_env_then_secret_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SYNCD_SECRET_STORE_PASSWORD wins over `<secrets_dir>/store.password`; both reach libpq."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "store.password").write_text("from-file\n", encoding="utf-8")
    path = config(tmp_path, f'url = "{URL}"', f'secrets_dir = "{secrets}"')
    store = load_settings(path).store
    assert store.password is not None and store.password.get_secret_value() == "from-file"
    monkeypatch.setenv("SYNCD_SECRET_STORE_PASSWORD", "from-env")
    store = load_settings(path).store
    assert store.password is not None and store.password.get_secret_value() == "from-env"
    assert "password=from-env" in conninfo(URL, "from-env")
    assert "from-env" not in repr(store) and "from-env" not in describe(conninfo(URL, "from-env"))


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mysql://db/x", "store.url: expected postgresql://user@host:5432/database"),
        ("postgresql:///socket-only", "store.url: expected postgresql://user@host:5432/database"),
        (
            "postgresql://syncd:s3cret-pw@db/x",
            "store.url: carries a password: remove it and set SYNCD_SECRET_STORE_PASSWORD "
            "(or the secret file store.password) instead",
        ),
    ],
)
def test_a_bad_url_is_one_line_that_never_shows_it(tmp_path: Path, url: str, expected: str) -> None:
    """The URL's value is not echoed (it may carry a password)."""
    with pytest.raises(ConfigError) as caught:
        load_settings(config(tmp_path, f'url = "{url}"'))
    assert caught.value.problems == [expected]


def test_an_empty_password_variable_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An empty secret is a mistake (an unset ${VAR}), not 'no password': exit 2, one line."""
    monkeypatch.setenv("SYNCD_SECRET_STORE_PASSWORD", " ")
    assert main(["--config", str(config(tmp_path, f'url = "{URL}"')), "check-config"]) == 2
    assert capsys.readouterr().err.strip() == (
        "syncd: config error: SYNCD_SECRET_STORE_PASSWORD: is set but empty: expected the "
        "database password, or unset it"
    )


def test_lock_keys_are_stable_signed_64_bit_and_distinct() -> None:
    """Every replica computes the same key for a source; different sources do not collide here."""
    keys = {lock_key(f"source-{i}") for i in range(1000)}
    assert len(keys) == 1000
    assert all(-(2**63) <= k < 2**63 for k in keys)
    # Pinned: a key that changed between versions would let an old and a new replica both run.
    assert lock_key("shop") == -6991544115841134534

"""`[changes]` and `[[webhooks]]`: defaults, the webhook secret lookup, one clear line per problem,
and no secret echoed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from syncd.config import load_settings
from syncd.errors import ConfigError

CONFIG = """
secrets_dir = "{secrets}"
[store]
path = "{db}"

[[sources]]
name = "shop"
kind = "adobe_commerce"
base_url = "https://shop.example.com"
[sources.auth]
client_id = "cid"
org_id = "ORG@AdobeOrg"
client_secret = "toml-secret"
{extra}
"""


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("SYNCD_") or name == "CREDENTIALS_DIRECTORY":
            monkeypatch.delenv(name)


def write(tmp_path: Path, extra: str) -> Path:
    secrets = tmp_path / "secrets"
    secrets.mkdir(exist_ok=True)
    path = tmp_path / "syncd.toml"
    path.write_text(CONFIG.format(secrets=secrets, db=tmp_path / "x.db", extra=extra))
    return path


HOOK = """
[[webhooks]]
name = "search-index"
url = "http://127.0.0.1:9000/hook"
{fields}
"""


def test_defaults_keep_a_week_and_have_no_webhook(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, ""))
    assert settings.changes.enabled and not settings.changes.store_payloads
    assert settings.changes.retention == 7 * 86400
    assert settings.webhooks == ()


def test_webhook_secret_from_env_then_file_then_toml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, HOOK.format(fields='secret = "toml-hook-secret"'))
    assert load_settings(path).webhooks[0].secret.get_secret_value() == "toml-hook-secret"
    (tmp_path / "secrets" / "webhook.search-index.secret").write_text("file-hook-secret\n")
    assert load_settings(path).webhooks[0].secret.get_secret_value() == "file-hook-secret"
    monkeypatch.setenv("SYNCD_SECRET_WEBHOOK_SEARCH_INDEX_SECRET", "env-hook-secret")
    hook = load_settings(path).webhooks[0]
    assert hook.secret.get_secret_value() == "env-hook-secret"
    assert hook.sources == () and hook.batch_size == 100
    assert "env-hook-secret" not in repr(hook)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ("", "webhooks[0].secret: is required"),
        ('secret = "s3cr3t-value"\nsources = ["nope"]', "source 'nope' is not configured"),
        ('secret = "s3cr3t-value"\nbatch_size = 0', "webhooks[0].batch_size: 0 is invalid"),
        ('secret = "s3cr3t-value"\nurl2 = "x"', "webhooks[0].url2: is not a known setting"),
    ],
)
def test_bad_webhooks_are_one_line_each(tmp_path: Path, fields: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, HOOK.format(fields=fields)))
    assert any(expected in p for p in caught.value.problems), caught.value.problems
    assert "s3cr3t-value" not in str(caught.value)


def test_a_bad_secret_value_is_never_echoed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, HOOK.format(fields="secret = 12345678")))
    assert "12345678" not in str(caught.value)
    assert "webhooks[0].secret" in str(caught.value)


def test_a_bad_retention_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"changes\.retention: 0 is invalid"):
        load_settings(write(tmp_path, "[changes]\nretention = 0"))

"""Settings: TOML shape, env overrides, secret lookup, and one clear line per bad field."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncd.cli import main
from syncd.config import IMS_TOKEN_URL, load_settings, secret_env_name
from syncd.errors import ConfigError

GOOD = """
[store]
path = "{db}"

[[sources]]
name = "main-store"
kind = "adobe_commerce"
base_url = "https://shop.example.com"
page_size = 200
max_concurrency = 6
schedule = "*/15 * * * *"

[sources.auth]
client_id = "cid"
org_id = "ORG@AdobeOrg"
{secret}
"""


def write(tmp_path: Path, secret: str = 'client_secret = "inline-secret"') -> Path:
    path = tmp_path / "syncd.toml"
    path.write_text(GOOD.format(db=tmp_path / "x.db", secret=secret))
    return path


def test_valid_file_loads_with_defaults(tmp_path: Path) -> None:
    """Keys from the file are read; everything else takes its documented default."""
    settings = load_settings(write(tmp_path))
    (source,) = settings.sources
    assert (source.name, source.page_size, source.max_concurrency) == ("main-store", 200, 6)
    assert str(source.auth.token_url) == IMS_TOKEN_URL  # type: ignore[union-attr]
    assert "commerce.accs" in source.auth.scopes  # type: ignore[union-attr]
    assert source.auth.client_secret.get_secret_value() == "inline-secret"  # type: ignore[union-attr]


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SYNCD_* variables (nested with __) win over the TOML file."""
    monkeypatch.setenv("SYNCD_STORE__PATH", "/elsewhere/syncd.db")
    monkeypatch.setenv("SYNCD_SHUTDOWN_GRACE", "3")
    settings = load_settings(write(tmp_path))
    assert settings.store.path == Path("/elsewhere/syncd.db")
    assert settings.shutdown_grace == 3


def test_config_path_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SYNCD_CONFIG names the file when --config is not given."""
    monkeypatch.setenv("SYNCD_CONFIG", str(write(tmp_path)))
    assert load_settings(None).sources[0].name == "main-store"


def test_secret_from_env_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SYNCD_SECRET_<SOURCE>_<FIELD> overrides the inline secret."""
    monkeypatch.setenv(secret_env_name("main-store", "client_secret"), "from-env")
    assert secret_env_name("main-store", "client_secret") == "SYNCD_SECRET_MAIN_STORE_CLIENT_SECRET"
    secret = load_settings(write(tmp_path)).sources[0].auth.client_secret  # type: ignore[union-attr]
    assert secret.get_secret_value() == "from-env"


def test_secret_from_systemd_credentials_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """systemd's LoadCredential= files are found through $CREDENTIALS_DIRECTORY."""
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "main-store.client_secret").write_text("from-file\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    settings = load_settings(write(tmp_path, secret=""))
    assert settings.sources[0].auth.client_secret.get_secret_value() == "from-file"  # type: ignore[union-attr]


def test_each_bad_field_gets_one_clear_line(tmp_path: Path) -> None:
    """Every problem names the field, the value and what was expected."""
    path = tmp_path / "bad.toml"
    path.write_text(
        """
[[sources]]
name = "main"
kind = "adobe_commerce"
base_url = "not a url"
page_size = 0
schedule = "every now and then"
[sources.auth]
client_id = "c"
client_secret = "hunter2-secret"
org_id = "o"
scopes = ["openid"]
"""
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    problems = caught.value.problems
    assert any(p.startswith("sources[0] (main).base_url: 'not a url' is invalid") for p in problems)
    assert any(p.startswith("sources[0] (main).page_size: 0 is invalid") for p in problems)
    assert any(
        "schedule: 'every now and then' is invalid: expected an interval" in p for p in problems
    )
    assert any("auth.scopes: must include 'commerce.accs'" in p for p in problems)
    assert len(problems) == 4
    assert "hunter2" not in str(problems)


def test_missing_secret_is_named_without_leaking(tmp_path: Path) -> None:
    """A missing secret is reported by field name."""
    with pytest.raises(
        ConfigError, match=r"sources\[0\] \(main-store\)\.auth\.client_secret: is required"
    ):
        load_settings(write(tmp_path, secret=""))


def test_duplicate_source_names_are_refused(tmp_path: Path) -> None:
    """Two sources with one name would share rows: refuse."""
    text = write(tmp_path).read_text()
    (tmp_path / "dup.toml").write_text(text + text.split("\n", 4)[4])
    with pytest.raises(ConfigError, match="source names must be unique, repeated: main-store"):
        load_settings(tmp_path / "dup.toml")


def test_unreadable_toml_is_one_line(tmp_path: Path) -> None:
    """A TOML syntax error names the file."""
    path = tmp_path / "broken.toml"
    path.write_text("[store\npath=1")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_settings(path)


def test_check_config_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`syncd check-config` exits 0 on a good file and 2 with one line per problem on a bad one."""
    assert main(["--config", str(write(tmp_path)), "check-config"]) == 0
    assert "config ok: 1 source(s)" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text('[store]\npath = 3\nlog_level = "loud"\n')
    assert main(["--config", str(bad), "check-config"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "syncd: config error: store.path: 3 is invalid: Input is not a valid path for "
        "<class 'pathlib.Path'>",
        "syncd: config error: store.log_level: is not a known setting "
        "(see config/syncd.example.toml)",
    ]


def test_missing_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A config path that does not exist: exit 2, one line."""
    assert main(["--config", str(tmp_path / "nope.toml"), "check-config"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"syncd: config error: config file '{tmp_path / 'nope.toml'}' does not exist"
    )


def test_resilience_keys_are_read_and_bad_ones_named(tmp_path: Path) -> None:
    """[http] rate/budget keys and per-source breaker keys load; a cut that is no cut is refused."""
    path = write(tmp_path)
    text = path.read_text().replace(
        "[store]",
        "[http]\nrate_decrease = 0.5\nretry_budget = 0.1\nretry_budget_min = 4\n\n[store]",
    )
    text = text.replace('schedule = "*/15', 'breaker_threshold = 5\nschedule = "*/15')
    path.write_text(text)
    settings = load_settings(path)
    http = settings.http
    assert (http.rate_decrease, http.retry_budget, http.retry_budget_min) == (0.5, 0.1, 4)
    assert (http.adaptive_rate, http.rate_recovery_interval, http.rate_floor) == (True, 2.0, 0.1)
    source = settings.sources[0]
    assert (source.breaker_threshold, source.breaker_base_delay) == (5, 60.0)
    path.write_text(text.replace("rate_decrease = 0.5", "rate_decrease = 1.5"))
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert caught.value.problems == [
        "http.rate_decrease: 1.5 is invalid: Input should be less than 1"
    ]


AC_SOURCE = """
[store]
path = "{db}"

[[sources]]
name = "ac"
kind = "americommerce"
base_url = "https://ac.example.com"

[sources.auth]
{auth}
"""


@pytest.mark.parametrize(
    ("auth", "field"),
    [
        ('app_id = "12"\napp_secret = ""', "app_secret"),
        ('app_id = "12"\napp_secret = "   "', "app_secret"),
        ('static_token = ""', "static_token"),
    ],
)
def test_a_blank_americommerce_secret_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], auth: str, field: str
) -> None:
    """An empty or all-space app_secret or static_token: exit 2, one line naming the field."""
    path = tmp_path / "ac.toml"
    path.write_text(AC_SOURCE.format(db=tmp_path / "x.db", auth=auth))
    assert main(["--config", str(path), "check-config"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"syncd: config error: sources[0] (ac).auth.{field}: expected a non-empty secret"
    ]


@pytest.mark.parametrize("blank", ["", " \t"])
def test_a_blank_ims_secret_is_refused_even_from_the_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, blank: str
) -> None:
    """An empty SYNCD_SECRET_* variable is refused by name (it would mask the file's secret), and
    a blank secret in the file is refused too: never `config ok`."""
    monkeypatch.setenv(secret_env_name("main-store", "client_secret"), blank)
    assert main(["--config", str(write(tmp_path)), "check-config"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "syncd: config error: SYNCD_SECRET_MAIN_STORE_CLIENT_SECRET: is set but empty: expected "
        "the secret, or unset it to use the secrets directory or the config file"
    ]
    monkeypatch.delenv(secret_env_name("main-store", "client_secret"))
    path = write(tmp_path, secret=f'client_secret = "{blank}"')
    with pytest.raises(ConfigError, match=r"auth\.client_secret: expected a non-empty secret$"):
        load_settings(path)


def test_a_breaker_base_delay_above_its_max_is_one_config_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """breaker_base_delay = 7200 with the default breaker_max_delay (3600): check-config says so
    in one line naming both fields, instead of the daemon failing at start with a ValueError."""
    path = write(tmp_path)
    path.write_text(path.read_text().replace("page_size = 200", "breaker_base_delay = 7200"))
    assert main(["--config", str(path), "check-config"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "syncd: config error: sources[0] (main-store): breaker_base_delay (7200) must not exceed "
        "breaker_max_delay (3600): raise breaker_max_delay or lower breaker_base_delay"
    ]
    path.write_text(path.read_text().replace("7200", "7200\nbreaker_max_delay = 7200"))
    assert main(["--config", str(path), "check-config"]) == 0

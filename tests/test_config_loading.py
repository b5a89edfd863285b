"""The settings loader's edges: unreadable files, environment overrides, secret lookup order."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncd.cli import main
from syncd.config import load_settings
from syncd.errors import ConfigError

CONFIG = """
[store]
path = "{db}"

[[sources]]
name = "main-store"
kind = "adobe_commerce"
base_url = "https://shop.example.com"
{extra}
[sources.auth]
client_id = "cid"
org_id = "ORG@AdobeOrg"
{secret}
"""
SECRET_ENV = "SYNCD_SECRET_MAIN_STORE_CLIENT_SECRET"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own SYNCD_* or systemd variables must not leak into these tests."""
    import os

    for name in list(os.environ):
        if name.upper().startswith("SYNCD_") or name == "CREDENTIALS_DIRECTORY":
            monkeypatch.delenv(name)


def write(
    tmp_path: Path,
    secret: str = 'client_secret = "toml-secret"',
    extra: str = "",
    top: str = "",
) -> Path:
    path = tmp_path / "syncd.toml"
    path.write_text(top + CONFIG.format(db=tmp_path / "x.db", secret=secret, extra=extra))
    return path


def problems_of(path: Path | None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    return caught.value.problems


def client_secret(path: Path) -> str:
    auth = load_settings(path).sources[0].auth
    return auth.client_secret.get_secret_value()  # type: ignore[union-attr]


def test_a_config_file_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 name the file and the line instead of raising UnicodeDecodeError."""
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[store]\npath = "caf\xe9.db"\n')
    assert problems_of(path) == [
        f"config file '{path}' is not UTF-8 text (line 2): expected a TOML file"
    ]


def test_a_directory_as_config_file_is_one_line(tmp_path: Path) -> None:
    """--config pointing at a directory says so."""
    assert problems_of(tmp_path) == [f"config file '{tmp_path}' cannot be read: Is a directory"]


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("SYNCD_SOURCES", "notjson", "SYNCD_SOURCES: is not valid JSON (at character 1): "),
        ("SYNCD_HTTP", '{"x":1', "SYNCD_HTTP: is not valid JSON (at character 7): "),
        (
            "SYNCD_SOURCES",
            '[{"auth": {"client_secret": "hunter2"}',
            "SYNCD_SOURCES: is not valid JSON (at character 39): expected a JSON list",
        ),
    ],
)
def test_malformed_json_in_an_environment_variable_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    """A table or list set from the environment must be JSON; the line names the variable only."""
    monkeypatch.setenv(variable, value)
    (problem,) = problems_of(write(tmp_path))
    assert problem.startswith(expected)
    assert value not in problem and "hunter2" not in problem


def test_secret_from_secrets_dir_in_the_file(tmp_path: Path) -> None:
    """`secrets_dir` in the TOML file is searched for <source>.<field>, over the inline value."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "main-store.client_secret").write_text("from-secrets-dir\n")
    assert client_secret(write(tmp_path, top=f'secrets_dir = "{secrets}"\n')) == "from-secrets-dir"


def test_secret_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Env variable, then SYNCD_SECRETS_DIR, then $CREDENTIALS_DIRECTORY, then the TOML value."""
    path = write(tmp_path)
    dirs = {}
    for name in ("secrets", "creds"):
        dirs[name] = tmp_path / name
        dirs[name].mkdir()
        (dirs[name] / "main-store.client_secret").write_text(f"from-{name}")
    assert client_secret(path) == "toml-secret"
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(dirs["creds"]))
    assert client_secret(path) == "from-creds"
    monkeypatch.setenv("SYNCD_SECRETS_DIR", str(dirs["secrets"]))
    assert client_secret(path) == "from-secrets"
    monkeypatch.setenv(SECRET_ENV, "from-env")
    assert client_secret(path) == "from-env"


def test_a_secrets_directory_that_does_not_exist_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A mistyped secrets directory is named, not silently skipped."""
    monkeypatch.setenv("SYNCD_SECRETS_DIR", str(tmp_path / "nope"))
    assert problems_of(write(tmp_path)) == [
        f"SYNCD_SECRETS_DIR: '{tmp_path / 'nope'}' is not a directory: "
        "expected the secrets directory"
    ]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"\xff\xfehunter2", "is not UTF-8 text"),
        (b" \n", "is empty: expected the secret, or remove the file"),
        (None, "is not a regular file"),
    ],
)
def test_a_bad_secret_file_is_named_without_its_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: bytes | None, expected: str
) -> None:
    """A secret file that cannot be used: one line with its path, never its bytes."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    target = secrets / "main-store.client_secret"
    if content is None:
        target.mkdir()
    else:
        target.write_bytes(content)
    monkeypatch.setenv("SYNCD_SECRETS_DIR", str(secrets))
    assert problems_of(write(tmp_path)) == [f"secret file '{target}' {expected}"]


def test_the_store_path_must_not_be_a_directory(tmp_path: Path) -> None:
    """check-config refuses a store path that is a directory instead of passing it."""
    path = write(tmp_path)
    path.write_text(path.read_text().replace(str(tmp_path / "x.db"), str(tmp_path)))
    assert problems_of(path) == [
        f"store.path: '{tmp_path}' is invalid: is a directory: "
        "expected the path of the SQLite database file"
    ]


def test_a_source_without_kind_says_kind_is_required(tmp_path: Path) -> None:
    """The discriminator error names the key and its choices."""
    path = write(tmp_path)
    path.write_text(path.read_text().replace('kind = "adobe_commerce"\n', ""))
    assert problems_of(path) == [
        "sources[0] (main-store).kind: is required: expected one of "
        "'adobe_commerce', 'americommerce'"
    ]


@pytest.mark.parametrize(
    "args",
    [
        ("check-config",),
        ("sync", "main-store"),
        ("status",),
    ],
)
def test_cli_reports_an_undecodable_config_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...]
) -> None:
    """Every command that reads the config exits 2 with one line, no traceback."""
    path = tmp_path / "bad.toml"
    path.write_bytes(b"\xff\xfe[store]\n")
    assert main(["--config", str(path), *args]) == 2
    assert capsys.readouterr().err == (
        f"syncd: config error: config file '{path}' is not UTF-8 text (line 1): "
        "expected a TOML file\n"
    )


@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_secret_variable_is_refused_not_masking_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """SYNCD_SECRET_* set but blank (an unset ${VAR} in compose) is named instead of silently used."""
    monkeypatch.setenv(SECRET_ENV, value)
    problems = problems_of(write(tmp_path))
    assert problems == [
        f"{SECRET_ENV}: is set but empty: expected the secret, or unset it to use the secrets "
        "directory or the config file"
    ]
    assert "toml-secret" not in str(problems)


SECOND = """
[[sources]]
name = "second"
kind = "adobe_commerce"
base_url = "https://second.example.com"
page_size = 20
[sources.auth]
client_id = "cid2"
client_secret = "s2"
org_id = "ORG2@AdobeOrg"
"""


def test_one_source_key_is_overridden_by_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SYNCD_SOURCES__<i>__<KEY> (nested with __) changes entry i and keeps the rest of the file."""
    path = write(tmp_path, extra="page_size = 200")
    path.write_text(path.read_text() + SECOND)
    monkeypatch.setenv("SYNCD_SOURCES__1__PAGE_SIZE", "50")
    monkeypatch.setenv("SYNCD_SOURCES__0__AUTH__CLIENT_ID", "cid-from-env")
    first, second = load_settings(path).sources
    assert (first.name, first.page_size, first.auth.client_id) == (  # type: ignore[union-attr]
        "main-store", 200, "cid-from-env"
    )  # fmt: skip
    assert (second.name, second.page_size, str(second.base_url)) == (
        "second", 50, "https://second.example.com/"
    )  # fmt: skip
    assert second.auth.client_id == "cid2"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("variable", "expected"),
    [
        (
            "SYNCD_SOURCES__1__PAGE_SIZE",
            "SYNCD_SOURCES__1__PAGE_SIZE: there is no sources[1] (1 [[sources]] entries in the "
            "config file): an index override changes an existing entry, it cannot add one",
        ),
        (
            "SYNCD_SOURCES__MAIN__PAGE_SIZE",
            "SYNCD_SOURCES__MAIN__PAGE_SIZE: expected SYNCD_SOURCES__<index>__<KEY> with the "
            "index of a [[sources]] entry (0 for the first), or SYNCD_SOURCES as a JSON list",
        ),
        ("SYNCD_SOURCES__00__PAGE_SIZE", "SYNCD_SOURCES__00__PAGE_SIZE: expected SYNCD_SOURCES__"),
        ("SYNCD_SOURCES__0", "SYNCD_SOURCES__0: expected SYNCD_SOURCES__<index>__<KEY>"),
    ],
)
def test_a_source_override_that_names_no_entry_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, expected: str
) -> None:
    """An index override must point at an existing entry; the line names the variable."""
    monkeypatch.setenv(variable, "50")
    (problem,) = problems_of(write(tmp_path))
    assert problem.startswith(expected)


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        (
            "SYNCD_SOURCES__0__PAGE_SIZE",
            "5000",
            "sources[0] (main-store).page_size (from SYNCD_SOURCES__0__PAGE_SIZE): '5000' is "
            "invalid: Input should be less than or equal to 1000",
        ),
        (
            "SYNCD_HTTP__MAX_ATTEMPTS",
            "0",
            "http.max_attempts (from SYNCD_HTTP__MAX_ATTEMPTS): '0' is invalid: Input should be "
            "greater than or equal to 1",
        ),
        (
            "SYNCD_HTTP",
            '{"max_attempts": 0}',
            "http.max_attempts (from SYNCD_HTTP): 0 is invalid: Input should be greater than or "
            "equal to 1",
        ),
    ],
)
def test_a_bad_value_from_the_environment_names_its_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    """The operator is told which variable to fix, not only which field."""
    monkeypatch.setenv(variable, value)
    assert problems_of(write(tmp_path)) == [expected]


def test_an_unreadable_secret_file_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Permission denied on a secret file (the suite may run as root, so the OS is faked)."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    target = secrets / "main-store.client_secret"
    target.write_text("hunter2")
    real = Path.read_text

    def read_text(self: Path, *args: object, **kwargs: object) -> str:
        if self == target:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "read_text", read_text)
    monkeypatch.setenv("SYNCD_SECRETS_DIR", str(secrets))
    assert problems_of(write(tmp_path)) == [
        f"secret file '{target}' cannot be read: Permission denied"
    ]


def test_a_malformed_auth_value_is_not_echoed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`auth` given as one string (say a pasted `client_secret=...`): the line names the field and
    what was expected, never the value, which may be a secret."""
    path = tmp_path / "syncd.toml"
    path.write_text(
        f'[store]\npath = "{tmp_path / "x.db"}"\n\n[[sources]]\nname = "main-store"\n'
        'kind = "adobe_commerce"\nbase_url = "https://shop.example.com"\n'
        'auth = "client_secret=SuperSecretValue123"\n'
    )
    assert main(["--config", str(path), "check-config"]) == 2
    err = capsys.readouterr().err
    assert "sources[0] (main-store).auth" in err and "SuperSecretValue123" not in err


def test_a_credentials_directory_loaded_as_a_whole_is_read(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`LoadCredential=syncd:/etc/syncd/credentials` names each file syncd_<file>: found too."""
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "syncd_main-store.client_secret").write_text("from-dir\n", encoding="utf-8")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    assert client_secret(write(tmp_path, secret="")) == "from-dir"


def test_config_defaults_apply_only_where_the_file_is_silent(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """$SYNCD_CONFIG_DEFAULTS fills in what the file leaves out; the file's own values win."""
    defaults = tmp_path / "defaults.toml"
    defaults.write_text("shutdown_grace = 5\nlog_format = 'json'\n[store]\npath = '/nowhere.db'\n")
    monkeypatch.setenv("SYNCD_CONFIG_DEFAULTS", str(defaults))
    settings = load_settings(write(tmp_path, top="shutdown_grace = 12\n"))
    assert settings.shutdown_grace == 12 and settings.log_format == "json"
    assert settings.store.path == tmp_path / "x.db"

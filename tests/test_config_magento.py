"""Adobe sources beyond ACCS in the configuration: auth kinds, IMS flavours, store codes, secrets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from syncd.config import (
    ImsAuthSettings,
    IntegrationBearerAuthSettings,
    IntegrationOAuth1AuthSettings,
    load_settings,
)
from syncd.config.sources import AdobeCommerceSourceSettings
from syncd.errors import ConfigError

CONFIG = """
[store]
path = "{db}"

[[sources]]
name = "shop"
kind = "adobe_commerce"
base_url = "https://shop.example.com"
{source}
[sources.auth]
{auth}
"""
OAUTH1 = """kind = "oauth1"
consumer_key = "ck"
"""


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own SYNCD_* or systemd variables must not leak into these tests."""
    for name in list(os.environ):
        if name.upper().startswith("SYNCD_") or name == "CREDENTIALS_DIRECTORY":
            monkeypatch.delenv(name)


def write(tmp_path: Path, auth: str, source: str = "") -> Path:
    path = tmp_path / "syncd.toml"
    path.write_text(CONFIG.format(db=tmp_path / "x.db", auth=auth, source=source))
    return path


def source_of(path: Path) -> AdobeCommerceSourceSettings:
    source = load_settings(path).sources[0]
    assert isinstance(source, AdobeCommerceSourceSettings)
    return source


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    return caught.value.problems


def test_an_auth_table_without_kind_is_ims_for_accs_as_before(tmp_path: Path) -> None:
    """Every existing config keeps its meaning: IMS, ACCS, commerce.accs required."""
    auth = 'client_id = "cid"\norg_id = "ORG@AdobeOrg"\nclient_secret = "s3cret"'
    source = source_of(write(tmp_path, auth))
    assert isinstance(source.auth, ImsAuthSettings)
    assert (source.auth.kind, source.auth.flavour) == ("ims", "accs")
    assert "commerce.accs" in source.auth.requested_scopes
    assert source.store_code is None
    assert source.rest_prefix == "https://shop.example.com/rest"


def test_accs_scope_is_required_only_for_accs(tmp_path: Path) -> None:
    """Without commerce.accs an ACCS source is refused naming auth.scopes; a PaaS one is not."""
    auth = 'client_id = "c"\norg_id = "O"\nclient_secret = "s"\nscopes = ["openid"]'
    (problem,) = problems_of(write(tmp_path, auth))
    assert problem.startswith("sources[0] (shop).auth.scopes: must include 'commerce.accs'")
    assert 'flavour = "paas"' in problem
    paas = source_of(write(tmp_path, auth + '\nflavour = "paas"'))
    assert isinstance(paas.auth, ImsAuthSettings)
    assert paas.auth.requested_scopes == ("openid",)


def test_paas_default_scopes_leave_the_accs_scope_out(tmp_path: Path) -> None:
    """A PaaS source left at the default scope list does not ask IMS for commerce.accs."""
    auth = 'kind = "ims"\nflavour = "paas"\nclient_id = "c"\norg_id = "O"\nclient_secret = "s"'
    source = source_of(write(tmp_path, auth))
    assert isinstance(source.auth, ImsAuthSettings)
    assert "commerce.accs" not in source.auth.requested_scopes
    assert "openid" in source.auth.requested_scopes


def test_bearer_token_comes_from_the_secret_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SYNCD_SECRET_<SOURCE>_ACCESS_TOKEN fills auth.access_token."""
    monkeypatch.setenv("SYNCD_SECRET_SHOP_ACCESS_TOKEN", "from-the-environment")
    source = source_of(write(tmp_path, 'kind = "bearer"', 'store_code = "default"'))
    assert isinstance(source.auth, IntegrationBearerAuthSettings)
    assert source.auth.access_token.get_secret_value() == "from-the-environment"
    assert source.rest_prefix == "https://shop.example.com/rest/default"


def test_oauth1_secrets_come_from_secret_files(tmp_path: Path) -> None:
    """Each of the three OAuth 1.0a secrets is read from `<secrets_dir>/<source>.<field>`."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for field in ("consumer_secret", "access_token", "access_token_secret"):
        (secrets / f"shop.{field}").write_text(f"file-{field}\n")
    path = tmp_path / "syncd.toml"
    path.write_text(f'secrets_dir = "{secrets}"\n' + write(tmp_path, OAUTH1).read_text())
    source = source_of(path)
    auth = source.auth
    assert isinstance(auth, IntegrationOAuth1AuthSettings)
    assert auth.consumer_key == "ck" and auth.signature_method == "HMAC-SHA256"
    assert auth.consumer_secret.get_secret_value() == "file-consumer_secret"
    assert auth.access_token.get_secret_value() == "file-access_token"
    assert auth.access_token_secret.get_secret_value() == "file-access_token_secret"


def test_missing_oauth1_secrets_are_one_line_each_naming_the_field(tmp_path: Path) -> None:
    """The auth kind's tag is not part of the path a user reads."""
    problems = sorted(problems_of(write(tmp_path, OAUTH1)))
    assert len(problems) == 3
    for problem, field in zip(
        problems, ("access_token", "access_token_secret", "consumer_secret"), strict=True
    ):
        # What follows "is required" (where to put the secret) is the loader's to say.
        assert problem.startswith(f"sources[0] (shop).auth.{field}: is required"), problem


@pytest.mark.parametrize(
    ("auth", "source", "expected"),
    [
        (
            'kind = "basic"',
            "",
            "sources[0] (shop).auth.kind: 'basic' is invalid: expected one of "
            "'ims', 'bearer', 'oauth1'",
        ),
        (
            OAUTH1 + 'signature_method = "PLAINTEXT"\nconsumer_secret = "a"\n'
            'access_token = "b"\naccess_token_secret = "c"',
            "",
            "sources[0] (shop).auth.signature_method: ",
        ),
        (
            'kind = "bearer"\naccess_token = "t0ken"',
            'store_code = "fr-FR"',
            "sources[0] (shop).store_code: 'fr-FR' is invalid: expected a Magento store code",
        ),
        (
            'kind = "bearer"\naccess_token = "t0ken"',
            'store_code = "1st"',
            "sources[0] (shop).store_code: '1st' is invalid",
        ),
        (
            'kind = "bearer"\naccess_token = "t0ken"\nclient_id = "cid"',
            "",
            "sources[0] (shop).auth.client_id: is not a known setting",
        ),
        (
            'kind = "bearer"\naccess_token = "   "',
            "",
            "sources[0] (shop).auth.access_token: expected a non-empty secret",
        ),
    ],
    ids=["kind", "signature-method", "store-code-dash", "store-code-digit", "ims-key", "blank"],
)
def test_bad_values_are_one_line_naming_the_field(
    tmp_path: Path, auth: str, source: str, expected: str
) -> None:
    """One clear line per problem, starting with the field's path."""
    (problem,) = problems_of(write(tmp_path, auth, source))
    assert problem.startswith(expected), problem
    assert "t0ken" not in problem


def test_store_code_shapes_magento_accepts() -> None:
    """Letters first, then letters, digits and underscores."""
    base = {"name": "s", "kind": "adobe_commerce", "base_url": "https://x.example"}
    auth = {"kind": "bearer", "access_token": "t"}
    for code in ("default", "fr_store", "B2B2"):
        source = AdobeCommerceSourceSettings.model_validate(
            {**base, "auth": auth, "store_code": code}
        )
        assert source.rest_prefix == f"https://x.example/rest/{code}"


EXAMPLE = Path(__file__).parent.parent / "config" / "syncd.example.toml"


@pytest.mark.parametrize("kind", ["bearer", "oauth1"])
def test_the_example_configs_magento_source_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """The example file loads, and so does its commented Magento source with either auth table."""
    text = EXAMPLE.read_text(encoding="utf-8")
    start = text.index('# [[sources]]\n# name = "magento-store"')
    block = text[start : text.index("\n\n", start)]
    lines = [line.removeprefix("#").removeprefix(" ") for line in block.splitlines()]
    tables = [i for i, line in enumerate(lines) if line.startswith("[sources.auth]")]
    assert len(tables) == 2
    chosen = lines[: tables[0]] + (
        lines[tables[0] : tables[1]] if kind == "bearer" else lines[tables[1] :]
    )
    monkeypatch.setenv("SYNCD_SECRET_MAIN_STORE_CLIENT_SECRET", "s")
    for field in ("consumer_secret", "access_token", "access_token_secret"):
        monkeypatch.setenv(f"SYNCD_SECRET_MAGENTO_STORE_{field.upper()}", f"v-{field}")
    if kind == "bearer":
        monkeypatch.delenv("SYNCD_SECRET_MAGENTO_STORE_CONSUMER_SECRET")
        monkeypatch.delenv("SYNCD_SECRET_MAGENTO_STORE_ACCESS_TOKEN_SECRET")
    path = tmp_path / "syncd.toml"
    text = text.replace('path = "syncd.db"', f'path = "{tmp_path / "x.db"}"', 1)
    path.write_text(text + "\n" + "\n".join(chosen) + "\n")
    settings = load_settings(path)
    magento = settings.source("magento-store")
    assert isinstance(magento, AdobeCommerceSourceSettings)
    assert magento.auth.kind == kind and magento.store_code == "default"
    main = settings.source("main-store")
    assert isinstance(main, AdobeCommerceSourceSettings) and main.auth.kind == "ims"
